// runs.csv (columns, rows, reading and appending), the method runners' JSON line, the
// statistics per cell and the study's published runs. The report itself: report.cc.
#include "ferry/bench/results.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "ferry/base/files.h"

namespace ferry::bench {

namespace {

using json = nlohmann::json;
using enum ColumnType;

constexpr Column kColumns[] = {
    // Written by the bench.
    {"seq", kInteger, false},
    {"status", kText, false},
    {"attempt", kInteger, false},
    {"started_unix_ms", kInteger, false},
    {"wall_ms", kInteger, false},
    {"load_1m", kNumber, false},
    {"profile", kText, false},
    {"shared_storage", kBool, false},
    {"method", kText, false},
    {"rows", kInteger, false},
    {"state_mb", kInteger, false},
    {"video_mb", kInteger, false},
    {"run", kInteger, false},
    {"direction", kText, false},
    {"error", kText, false},
    // From the method runner's JSON line.
    {"mode", kText, true},
    {"switch_driver", kText, true},
    {"result", kText, true},
    {"bytes_moved", kInteger, true},
    {"checkpoint_bytes", kInteger, true},
    {"checkpoint_wire_bytes", kInteger, true},
    {"last_delta_bytes", kInteger, true},
    {"data_sync_bytes", kInteger, true},
    {"downtime_study_ms", kNumber, true},
    {"migration_study_ms", kNumber, true},
    {"sender_total_ms", kNumber, true},
    {"receiver_total_ms", kNumber, true},
    {"downtime_ferry_ms", kNumber, true},
    {"migration_ferry_ms", kNumber, true},
    {"down_unix_ms", kNumber, true},
    {"up_unix_ms", kNumber, true},
    {"client_downtime_ms", kNumber, true},
    {"failed_requests", kInteger, true},
    {"max_request_ms", kNumber, true},
    {"probe_sent", kInteger, true},
    {"probe_recovered", kBool, true},
    {"probe_max_send_lag_ms", kNumber, true},
    {"writes_acknowledged", kInteger, true},
    {"lost_writes", kInteger, true},
    {"writes_unknown", kInteger, true},
    {"writes_duplicated", kInteger, true},
    {"session_kept", kBool, true},
    {"browser_session_kept", kBoolOrEmpty, true},
    {"phases", kJson, true},
    {"timeline", kText, true},
    {"run_dir", kText, true},
};

constexpr std::string_view kMetrics[] = {
    "downtime_study_ms",  "downtime_ferry_ms", "migration_study_ms", "migration_ferry_ms",
    "client_downtime_ms", "failed_requests",   "max_request_ms",     "lost_writes",
};

// Cells never hold line breaks: one run is one line of runs.csv.
std::string oneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  std::replace(s.begin(), s.end(), '\r', ' ');
  return s;
}

std::string typeName(ColumnType t) {
  switch (t) {
    case kText:
      return "a string";
    case kInteger:
      return "an integer";
    case kNumber:
      return "a number";
    case kBool:
      return "true or false";
    case kBoolOrEmpty:
      return "true, false or null";
    case kJson:
      return "a JSON array";
  }
  return "?";
}

// The cell text of a JSON value for a column, or nullopt when the type is wrong.
std::optional<std::string> cellOf(const json& v, ColumnType t) {
  switch (t) {
    case kText:
      if (v.is_string()) return oneLine(v.get<std::string>());
      return std::nullopt;
    case kInteger:
      if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
      if (v.is_number_float() && std::isfinite(v.get<double>()) &&
          std::floor(v.get<double>()) == v.get<double>())
        return formatNumber(v.get<double>());
      return std::nullopt;
    case kNumber:
      if (v.is_number() && std::isfinite(v.get<double>())) return formatNumber(v.get<double>());
      return std::nullopt;
    case kBool:
      if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
      return std::nullopt;
    case kBoolOrEmpty:
      if (v.is_null()) return std::string();
      if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
      return std::nullopt;
    case kJson:
      if (v.is_array()) return v.dump();
      return std::nullopt;
  }
  return std::nullopt;
}

std::vector<std::string> splitCsvLine(std::string_view line) {
  std::vector<std::string> fields(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        fields.back() += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += c;
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else {
      fields.back() += c;
    }
  }
  return fields;
}

std::string csvField(const std::string& s) {
  if (s.find_first_of(",\"") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::span<const Column> runColumns() {
  return kColumns;
}

double profileLinkMbit(std::string_view profile) {
  if (profile == "lan") return 3650;
  if (profile == "cloud") return 1750;
  if (profile == "wan") return 45;
  if (profile == "edge") return 5;
  return 0;
}

std::span<const std::string_view> summaryMetrics() {
  return kMetrics;
}

const std::string& RunRow::get(std::string_view column) const {
  static const std::string kEmpty;
  auto it = cells_.find(column);
  return it == cells_.end() ? kEmpty : it->second;
}

void RunRow::set(std::string_view column, std::string value) {
  cells_[std::string(column)] = oneLine(std::move(value));
}

std::string attemptKey(const RunRow& row) {
  std::string key;
  for (std::string_view c : {"profile", "shared_storage", "method", "rows", "state_mb", "run", "attempt"})
    key += row.get(c) + "|";
  return key;
}

std::optional<double> RunRow::number(std::string_view column) const {
  const std::string& s = get(column);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string formatNumber(double value) {
  char buf[64];
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
  } else {
    std::snprintf(buf, sizeof buf, "%.3f", value);
  }
  return buf;
}

Status applyMethodLine(RunRow& row, std::string_view line) {
  auto j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return makeError("the runner's output is not one JSON object: '" + std::string(line.substr(0, 120)) + "'",
                     "a runner prints exactly one JSON line on stdout (bench/methods/lib.sh)");
  }
  auto mismatch = [&](const std::string& key, const std::string& got, const std::string& want) {
    return makeError("the runner reports " + key + " " + got + " but the bench deployed " + want,
                     "the service on the lab is not the one this run expects: check 'ferry lab deploy'");
  };
  if (j.contains("method") && j["method"] != row.get("method"))
    return mismatch("method", j["method"].dump(), row.get("method"));
  if (j.contains("from") && j.contains("to") && j["from"].is_string() && j["to"].is_string()) {
    std::string dir = j["from"].get<std::string>() + "->" + j["to"].get<std::string>();
    if (dir != row.get("direction")) return mismatch("direction", dir, row.get("direction"));
  }
  for (std::string_view key : {"rows", "state_mb", "video_mb"}) {
    if (!j.contains(key)) continue;
    auto want = row.number(key);
    if (!j[key].is_number() || !want || j[key].get<double>() != *want)
      return mismatch(std::string(key), j[key].dump(), row.get(key));
  }
  if (!j.contains("result") || !j["result"].is_string())
    return makeError("the runner's JSON line has no \"result\"",
                     "see the runner contract in bench/methods/lib.sh");
  const std::string result = j["result"].get<std::string>();
  row.set("result", result);
  if (result != "committed") {
    // A failed run: keep whatever it measured, say why.
    row.set("status", std::string(kStatusFailed));
    std::string error = j.value("error", std::string());
    row.set("error", error.empty() ? "result: " + result : error);
    for (const auto& c : kColumns) {
      if (!c.from_method || !j.contains(c.name)) continue;
      if (auto cell = cellOf(j[c.name], c.type)) row.set(c.name, *cell);
    }
    return okStatus();
  }
  for (const auto& c : kColumns) {
    if (!c.from_method) continue;
    const std::string key(c.name);
    if (!j.contains(key)) {
      return makeError("the runner's JSON line has no \"" + key + "\"",
                       "every method column must be present (bench/README.md lists them)");
    }
    auto cell = cellOf(j[key], c.type);
    if (!cell) {
      return makeError("the runner's \"" + key + "\" is " + j[key].dump().substr(0, 60) + ", not " +
                       typeName(c.type));
    }
    row.set(key, *cell);
  }
  row.set("status", std::string(kStatusOk));
  row.set("error", "");
  return okStatus();
}

// ---- runs.csv ---------------------------------------------------------------------------

std::string csvHeader() {
  std::string out;
  for (const auto& c : kColumns) out += (out.empty() ? "" : ",") + std::string(c.name);
  return out + "\n";
}

std::string csvLine(const RunRow& row) {
  std::string out;
  bool first = true;
  for (const auto& c : kColumns) {
    if (!first) out += ',';
    first = false;
    out += csvField(row.get(c.name));
  }
  return out + "\n";
}

Result<RunsFile> parseRunsCsv(std::string_view text) {
  RunsFile f;
  const std::string header = csvHeader();
  std::size_t pos = 0;
  std::size_t line_no = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string_view::npos) {  // no line break: written half-way
      f.torn_tail = std::string(text.substr(pos));
      break;
    }
    std::string_view line = text.substr(pos, nl - pos);
    ++line_no;
    if (line_no == 1) {
      if (std::string(line) + "\n" != header) {
        return makeError("runs.csv has other columns than this version of ferry bench writes",
                         "it belongs to another version: use a new --out directory");
      }
    } else {
      auto fields = splitCsvLine(line);
      if (fields.size() != std::size(kColumns)) {
        if (nl + 1 == text.size()) {  // the last line is short: cut off like a torn tail
          f.torn_tail = std::string(line) + "\n";
          break;
        }
        return makeError("runs.csv line " + std::to_string(line_no) + " has " +
                             std::to_string(fields.size()) + " fields, not " +
                             std::to_string(std::size(kColumns)),
                         "the file was edited or damaged: move it away (or use a new --out) and rerun");
      }
      RunRow row;
      for (std::size_t i = 0; i < fields.size(); ++i) row.set(kColumns[i].name, std::move(fields[i]));
      f.rows.push_back(std::move(row));
    }
    pos = nl + 1;
    f.complete_bytes = pos;
  }
  return f;
}

Result<RunsFile> loadRunsCsv(const std::filesystem::path& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return RunsFile{};
  auto text = readFile(file);
  if (!text) return text.error();
  auto parsed = parseRunsCsv(*text);
  if (!parsed) return makeError(file.string() + ": " + parsed.error().what, parsed.error().hint);
  if (parsed->complete_bytes < text->size()) {
    if (::truncate(file.c_str(), static_cast<off_t>(parsed->complete_bytes)) != 0) {
      return makeError(
          "cannot cut the half-written last line off " + file.string() + ": " + std::strerror(errno),
          "check the directory's permissions");
    }
  }
  return parsed;
}

Status appendRunCsv(const std::filesystem::path& file, const RunRow& row) {
  int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return makeError("cannot open " + file.string() + " to append: " + std::strerror(errno),
                     "check that --out is a writable directory");
  }
  struct stat st {};
  std::string data = csvLine(row);
  if (::fstat(fd, &st) == 0 && st.st_size == 0) data = csvHeader() + data;
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::write(fd, data.data() + off, data.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      int saved = errno;
      ::close(fd);
      return makeError("cannot append to " + file.string() + ": " + std::strerror(saved),
                       "is the disk full?");
    }
    off += static_cast<std::size_t>(w);
  }
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) return makeError("cannot fsync " + file.string() + ": " + std::strerror(saved));
  return okStatus();
}

// ---- statistics --------------------------------------------------------------------------

Stat describe(std::vector<double> values) {
  Stat s;
  s.n = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  auto rank = [&](double p) {
    auto r = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
    return values[std::clamp<std::size_t>(r, 1, values.size()) - 1];
  };
  s.p50 = rank(50);
  s.p95 = rank(95);
  s.min = values.front();
  s.max = values.back();
  return s;
}

std::vector<std::pair<std::string, double>> exclusivePhases(std::string_view phases_json) {
  struct Phase {
    std::string name;
    double start, end;
  };
  std::vector<Phase> phases;
  auto j = json::parse(phases_json, nullptr, false);
  if (!j.is_array()) return {};
  for (const auto& p : j) {
    if (!p.is_object() || !p.contains("name") || !p["name"].is_string()) continue;
    double s = p.value("start_ms", 0.0);
    double e = p.value("end_ms", s);
    phases.push_back({p["name"].get<std::string>(), s, std::max(s, e)});
  }
  std::stable_sort(phases.begin(), phases.end(),
                   [](const Phase& a, const Phase& b) { return a.start < b.start; });
  std::vector<double> cuts;
  for (const auto& p : phases) {
    cuts.push_back(p.start);
    cuts.push_back(p.end);
  }
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<std::pair<std::string, double>> out;
  out.reserve(phases.size());
  for (const auto& p : phases) out.emplace_back(p.name, 0.0);
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const double a = cuts[i];
    const double b = cuts[i + 1];
    for (std::size_t k = 0; k < phases.size(); ++k) {
      if (phases[k].start <= a && phases[k].end >= b) {
        out[k].second += b - a;
        break;
      }
    }
  }
  return out;
}

std::vector<CellSummary> summarizeRuns(const std::vector<RunRow>& rows,
                                       const std::vector<std::string>& method_order) {
  auto keyOf = [](const RunRow& r) {
    CellKey k;
    k.method = r.get("method");
    k.profile = r.get("profile");
    k.shared_storage = r.isTrue("shared_storage");
    k.rows = static_cast<int>(r.number("rows").value_or(0));
    k.state_mb = static_cast<int>(r.number("state_mb").value_or(0));
    return k;
  };
  // The last word on each attempt (seq, attempt): a "started" row with nothing after it
  // is a run that died half-way.
  std::map<std::string, const RunRow*> last;
  for (const auto& r : rows) last[attemptKey(r)] = &r;

  std::map<CellKey, CellSummary> cells;
  std::map<CellKey, std::map<std::string, std::vector<double>, std::less<>>> values;
  std::map<CellKey, std::map<std::string, double, std::less<>>> phase_sum;
  for (const auto& [id, r] : last) {
    CellKey k = keyOf(*r);
    auto& c = cells[k];
    c.key = k;
    const std::string& status = r->get("status");
    if (status == kStatusFailed) {
      ++c.failed;
      continue;
    }
    if (status != kStatusOk) {
      ++c.interrupted;
      continue;
    }
    ++c.ok;
    for (auto m : kMetrics) {
      if (auto v = r->number(m)) values[k][std::string(m)].push_back(*v);
    }
    for (std::string_view extra : {"bytes_moved", "checkpoint_bytes", "last_delta_bytes"}) {
      if (auto v = r->number(extra)) values[k][std::string(extra)].push_back(*v);
    }
    if (r->isTrue("session_kept")) ++c.session_kept;
    if (!r->get("browser_session_kept").empty()) {
      ++c.browser_checked;
      if (r->isTrue("browser_session_kept")) ++c.browser_kept;
    }
    for (const auto& [name, ms] : exclusivePhases(r->get("phases"))) {
      if (std::find(c.phase_order.begin(), c.phase_order.end(), name) == c.phase_order.end())
        c.phase_order.push_back(name);
      phase_sum[k][name] += ms;
    }
  }
  std::vector<CellSummary> out;
  for (auto& [k, c] : cells) {
    for (auto& [m, v] : values[k]) c.metrics[m] = describe(std::move(v));
    for (const auto& [name, sum] : phase_sum[k])
      c.phase_ms[name] = c.ok > 0 ? sum / static_cast<double>(c.ok) : 0;
    out.push_back(std::move(c));
  }
  auto methodRank = [&](const std::string& m) {
    auto it = std::find(method_order.begin(), method_order.end(), m);
    return static_cast<std::size_t>(it - method_order.begin());
  };
  std::stable_sort(out.begin(), out.end(), [&](const CellSummary& a, const CellSummary& b) {
    const auto& x = a.key;
    const auto& y = b.key;
    return std::tuple(x.profile, x.shared_storage, x.state_mb, x.rows, methodRank(x.method), x.method) <
           std::tuple(y.profile, y.shared_storage, y.state_mb, y.rows, methodRank(y.method), y.method);
  });
  return out;
}

// ---- the study's published runs -----------------------------------------------------------

Result<std::vector<PublishedRun>> parsePublishedCsv(std::string_view text) {
  std::vector<PublishedRun> out;
  std::vector<std::string> header;
  std::size_t pos = 0;
  std::size_t line_no = 0;
  auto index = [&](const std::string& name) -> std::optional<std::size_t> {
    auto it = std::find(header.begin(), header.end(), name);
    if (it == header.end()) return std::nullopt;
    return static_cast<std::size_t>(it - header.begin());
  };
  std::optional<std::size_t> env, rows, run, down, mig, cp;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.size() - pos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    ++line_no;
    auto fields = splitCsvLine(line);
    if (line_no == 1) {
      header = fields;
      env = index("environment");
      rows = index("rows");
      run = index("run");
      down = index("downtime_s");
      mig = index("migration_time_s");
      cp = index("checkpoint_mb");
      if (!env || !rows || !run || !down || !mig) {
        return makeError("the study's CSV lacks one of environment, rows, run, downtime_s, migration_time_s",
                         "use bench/reference/thesis-results.csv");
      }
      continue;
    }
    if (fields.size() != header.size()) {
      return makeError("the study's CSV line " + std::to_string(line_no) + " has " +
                       std::to_string(fields.size()) + " fields, not " + std::to_string(header.size()));
    }
    auto num = [&](std::size_t i, double& outv) {
      char* end = nullptr;
      outv = std::strtod(fields[i].c_str(), &end);
      return !fields[i].empty() && end == fields[i].c_str() + fields[i].size();
    };
    PublishedRun p;
    p.environment = fields[*env];
    double r = 0, n = 0, d = 0, m = 0, c = 0;
    if (!num(*rows, r) || !num(*run, n) || !num(*down, d) || !num(*mig, m) || (cp && !num(*cp, c))) {
      return makeError("the study's CSV line " + std::to_string(line_no) +
                       " has a field that is not a number");
    }
    p.rows = static_cast<int>(r);
    p.run = static_cast<int>(n);
    p.downtime_ms = d * 1000.0;
    p.migration_ms = m * 1000.0;
    p.checkpoint_mb = c;
    out.push_back(std::move(p));
  }
  if (out.empty()) return makeError("the study's CSV has no runs");
  return out;
}

std::string publishedEnvironment(std::string_view profile, bool shared_storage) {
  if (profile == "lan") return shared_storage ? "local-nfs" : "local";
  if (profile == "cloud" && !shared_storage) return "cloud";
  return "";
}

}  // namespace ferry::bench
