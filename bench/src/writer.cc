#include "ferry/bench/writer.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "ferry/base/files.h"
#include "ferry/base/log.h"

namespace ferry::bench {

namespace {

// A JSON number or a string of digits (PHP's PDO may hand integers out as strings).
bool asInt(const nlohmann::json& v, std::int64_t& out) {
  if (v.is_number_integer()) {
    out = v.get<std::int64_t>();
    return true;
  }
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty() || s.size() > 18 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return false;
    }
    out = std::stoll(s);
    return true;
  }
  return false;
}

}  // namespace

WriteOutcome classifyWrite(const Attempt& attempt, const std::string& writer, std::int64_t seq) {
  // No request byte left this process: the service cannot have committed anything.
  if (!attempt.sent) return WriteOutcome::kNotSent;
  if (attempt.kind != FailureKind::kOk || attempt.response.status != 200) return WriteOutcome::kUnknown;
  auto j = nlohmann::json::parse(attempt.response.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return WriteOutcome::kUnknown;
  auto ok = j.find("ok");
  auto w = j.find("writer");
  auto s = j.find("seq");
  std::int64_t got = 0;
  if (ok == j.end() || !ok->is_boolean() || !ok->get<bool>()) return WriteOutcome::kUnknown;
  if (w == j.end() || !w->is_string() || w->get<std::string>() != writer) return WriteOutcome::kUnknown;
  if (s == j.end() || !asInt(*s, got) || got != seq) return WriteOutcome::kUnknown;
  return WriteOutcome::kAcknowledged;
}

Result<WriterRun> runWriter(const WriterOptions& options, const std::atomic<bool>& stop) {
  auto log = log::get("bench");
  auto client_r = HttpClient::create();
  if (!client_r) return client_r.error();
  HttpClient& client = **client_r;
  Url url = options.url.withTarget("/api/write.php");
  auto ep = resolve(url);
  if (!ep) return ep.error();

  WriterRun run;
  run.writer = options.writer;
  std::int64_t seq = 1;
  const auto t0 = Clock::now();
  const auto end = t0 + options.duration;
  auto next = t0;
  while (true) {
    if (stop.load()) {
      run.stopped_by_signal = true;
      break;
    }
    auto now = Clock::now();
    if (now >= end) break;
    if (now < next) {
      std::this_thread::sleep_for(std::min(next, end) - now);
      continue;
    }
    next = std::max(next + options.interval, now);
    HttpRequest req;
    req.method = "POST";
    req.target = url.target;
    req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
    req.body = formEncode({{"writer", options.writer}, {"seq", std::to_string(seq)}});
    Attempt a = fetchOnce(client, *ep, req, options.timeouts);
    ++run.attempts;
    if (a.kind != FailureKind::kOk) ++run.failed_by_kind[std::string(kindName(a.kind))];
    switch (classifyWrite(a, options.writer, seq)) {
      case WriteOutcome::kAcknowledged:
        run.acknowledged.push_back(seq++);
        break;
      case WriteOutcome::kNotSent:
        ++run.retried;  // same seq at the next tick
        break;
      case WriteOutcome::kUnknown:
        if (a.kind == FailureKind::kOk) ++run.failed_by_kind["not_acknowledged"];
        log->debug("write {}/{} outcome unknown ({}, HTTP {})", options.writer, seq, kindName(a.kind),
                   a.response.status);
        run.unknown.push_back(seq++);
        break;
    }
  }
  return run;
}

Result<std::vector<ServerRow>> parseRows(std::string_view json, const std::string& writer) {
  auto j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) {
    return makeError("the rows of writer " + writer + " are not readable: " + why,
                     "check GET /api/writes.php?writer=" + writer + " by hand");
  };
  if (!j.is_object()) return bad("not a JSON object");
  auto rows = j.find("rows");
  if (rows == j.end() || !rows->is_array()) return bad("no 'rows' array");
  auto w = j.find("writer");
  if (w != j.end() && (!w->is_string() || w->get<std::string>() != writer))
    return bad("answer is for another writer");
  std::vector<ServerRow> out;
  out.reserve(rows->size());
  for (const auto& r : *rows) {
    ServerRow row;
    if (!r.is_object() || !r.contains("id") || !r.contains("seq") || !asInt(r["id"], row.id) ||
        !asInt(r["seq"], row.seq)) {
      return bad("a row without integer id and seq: " + r.dump());
    }
    out.push_back(row);
  }
  return out;
}

constexpr auto kReadBackPatience = std::chrono::seconds(20);

Result<std::vector<ServerRow>> fetchRows(const Url& url, const std::string& writer,
                                         const Timeouts& timeouts) {
  Url u = url.withTarget("/api/writes.php?" + formEncode({{"writer", writer}}));
  auto ep = resolve(u);
  if (!ep) return ep.error();
  auto client = HttpClient::create();
  if (!client) return client.error();
  HttpRequest req;
  req.target = u.target;
  // Reading the rows is idempotent: tries for up to kReadBackPatience ride out an outage
  // right after a move (nginx, for one, answers 502 for 10 s once it has marked every
  // server of an upstream failed).
  Attempt a;
  const auto deadline = std::chrono::steady_clock::now() + kReadBackPatience;
  do {
    a = fetchOnce(**client, *ep, req, timeouts);
    if (a.kind == FailureKind::kOk && a.response.status == 200) return parseRows(a.response.body, writer);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  } while (std::chrono::steady_clock::now() < deadline);
  return makeError("cannot read the rows of writer " + writer + " from " + u.origin() + u.target + ": " +
                       std::string(kindName(a.kind)) +
                       (a.response.status != 0 ? " (HTTP " + std::to_string(a.response.status) + ")" : ""),
                   "check that the service answers: ferry probe --url " + u.origin() + "/health.php");
}

VerifyReport verifyWrites(const std::vector<std::int64_t>& acknowledged,
                          const std::vector<std::int64_t>& unknown, std::vector<ServerRow> rows) {
  VerifyReport r;
  std::stable_sort(rows.begin(), rows.end(),
                   [](const ServerRow& a, const ServerRow& b) { return a.id < b.id; });
  const std::set<std::int64_t> acked(acknowledged.begin(), acknowledged.end());
  const std::set<std::int64_t> unk(unknown.begin(), unknown.end());
  r.acknowledged = static_cast<std::int64_t>(acked.size());
  r.unknown = static_cast<std::int64_t>(unk.size());
  r.rows = static_cast<std::int64_t>(rows.size());
  std::unordered_map<std::int64_t, int> seen;
  std::int64_t highest = 0;
  bool any = false;
  for (const auto& row : rows) {
    int& count = seen[row.seq];
    ++count;
    if (count > 1) {
      r.duplicated.push_back(row.seq);
      continue;
    }
    if (any && row.seq < highest) ++r.out_of_order;
    highest = any ? std::max(highest, row.seq) : row.seq;
    any = true;
    if (!acked.contains(row.seq) && !unk.contains(row.seq)) r.unexpected.push_back(row.seq);
    if (unk.contains(row.seq)) ++r.unknown_committed;
  }
  for (auto s : acked) {
    if (!seen.contains(s)) r.missing.push_back(s);
  }
  return r;
}

Status saveWriterState(const std::filesystem::path& path, const WriterRun& run, const Url& url) {
  nlohmann::json j;
  j["writer"] = run.writer;
  j["url"] = url.origin();
  j["acknowledged"] = run.acknowledged;
  j["unknown"] = run.unknown;
  return writeFileAtomic(path, j.dump() + "\n");
}

Result<WriterRun> loadWriterState(const std::filesystem::path& path) {
  auto text = readFile(path);
  if (!text) {
    return makeError("no state of the writer at " + path.string(),
                     "run 'ferry writer' first (same --writer and --state), or pass --state FILE");
  }
  auto j = nlohmann::json::parse(*text, nullptr, false);
  WriterRun run;
  try {
    run.writer = j.at("writer").get<std::string>();
    run.acknowledged = j.at("acknowledged").get<std::vector<std::int64_t>>();
    run.unknown = j.at("unknown").get<std::vector<std::int64_t>>();
  } catch (const nlohmann::json::exception&) {
    return makeError("the writer state " + path.string() + " is damaged",
                     "run the writer again with a new --writer ID");
  }
  return run;
}

namespace {

nlohmann::json firstFew(const std::vector<std::int64_t>& v) {
  constexpr std::size_t kShown = 100;
  return nlohmann::json(std::vector<std::int64_t>(
      v.begin(), v.begin() + static_cast<std::ptrdiff_t>(std::min(v.size(), kShown))));
}

}  // namespace

nlohmann::json writerReportJson(const WriterRun* run, const VerifyReport& report) {
  nlohmann::json j;
  if (run != nullptr) {
    j["writer"] = run->writer;
    j["attempts"] = run->attempts;
    j["retried_not_sent"] = run->retried;
    j["failed_by_kind"] = nlohmann::json::object();
    for (const auto& [k, v] : run->failed_by_kind) j["failed_by_kind"][k] = v;
    j["stopped_by"] = run->stopped_by_signal ? "signal" : "duration";
  }
  j["acknowledged"] = report.acknowledged;
  j["unknown"] = report.unknown;
  j["unknown_committed"] = report.unknown_committed;
  j["rows"] = report.rows;
  j["missing"] = static_cast<std::int64_t>(report.missing.size());
  j["duplicated"] = static_cast<std::int64_t>(report.duplicated.size());
  j["out_of_order"] = report.out_of_order;
  j["unexpected"] = static_cast<std::int64_t>(report.unexpected.size());
  j["missing_seqs"] = firstFew(report.missing);
  j["duplicated_seqs"] = firstFew(report.duplicated);
  j["unexpected_seqs"] = firstFew(report.unexpected);
  j["pass"] = report.pass();
  return j;
}

std::string writerReportText(const WriterRun* run, const VerifyReport& report) {
  std::ostringstream o;
  if (run != nullptr) {
    o << "writer " << run->writer << ": " << run->attempts << " attempts, " << run->retried
      << " not sent and retried";
    for (const auto& [k, v] : run->failed_by_kind) o << ", " << k << " " << v;
    o << "\n";
  }
  o << report.acknowledged << " acknowledged, " << report.unknown << " unknown (" << report.unknown_committed
    << " of them committed), " << report.rows << " rows on the server\n";
  o << report.missing.size() << " missing, " << report.duplicated.size() << " duplicated, "
    << report.out_of_order << " out of order, " << report.unexpected.size() << " unexpected\n";
  if (!report.missing.empty()) {
    o << "missing seqs:";
    for (std::size_t i = 0; i < std::min<std::size_t>(report.missing.size(), 20); ++i)
      o << " " << report.missing[i];
    o << (report.missing.size() > 20 ? " ..." : "") << "\n";
  }
  o << (report.pass() ? "PASS: every acknowledged write is there\n"
                      : "FAIL: acknowledged writes are missing\n");
  return o.str();
}

}  // namespace ferry::bench
