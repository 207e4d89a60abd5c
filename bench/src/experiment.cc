// `ferry bench`: the plan, resuming from runs.csv, and the loop over the runs.
// The lab side (scripts, ferry lab ...) is in lab_actions.cc behind LabActions.
#include "ferry/bench/experiment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include "ferry/base/files.h"

namespace ferry::bench {

namespace {

constexpr std::array<std::string_view, 4> kProfiles{"lan", "cloud", "wan", "edge"};
constexpr std::array<int, 5> kRows{100, 500, 1000, 5000, 10000};  // what the service can seed

std::vector<std::string_view> splitComma(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (true) {
    auto comma = text.find(',', pos);
    auto item = text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    out.push_back(item);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::string join(const auto& items, std::string_view sep = ", ") {
  std::ostringstream o;
  bool first = true;
  for (const auto& i : items) {
    o << (first ? "" : sep) << i;
    first = false;
  }
  return o.str();
}

// profile|shared|method|rows|state|run: one run of the plan, whatever its attempt.
std::string runKey(const std::string& profile, bool shared, const std::string& method, int rows, int state,
                   int run) {
  return profile + "|" + (shared ? "true" : "false") + "|" + method + "|" + std::to_string(rows) + "|" +
         std::to_string(state) + "|" + std::to_string(run);
}

std::string runKey(const RunRow& r) {
  return runKey(r.get("profile"), r.isTrue("shared_storage"), r.get("method"),
                static_cast<int>(r.number("rows").value_or(0)),
                static_cast<int>(r.number("state_mb").value_or(0)),
                static_cast<int>(r.number("run").value_or(0)));
}

std::string duration(double ms) {
  auto s = static_cast<long long>(std::llround(ms / 1000.0));
  std::ostringstream o;
  if (s >= 3600) {
    o << s / 3600 << "h" << (s % 3600) / 60 << "m";
  } else if (s >= 60) {
    o << s / 60 << "m" << (s % 60 < 10 ? "0" : "") << s % 60 << "s";
  } else {
    o << s << "s";
  }
  return o.str();
}

std::string seconds(const RunRow& r, std::string_view column) {
  auto v = r.number(column);
  if (!v) return "?";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f s", *v / 1000.0);
  return buf;
}

// Holds an exclusive lock on DIR/.lock while the bench writes DIR.
class DirLock {
 public:
  static Result<DirLock> take(const std::filesystem::path& dir) {
    auto path = dir / ".lock";
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return makeError("cannot open " + path.string() + ": " + std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      ::close(fd);
      return makeError("another ferry bench is writing " + dir.string(),
                       "wait for it to finish, or use another --out");
    }
    return DirLock(fd);
  }
  DirLock(DirLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  DirLock(const DirLock&) = delete;
  DirLock& operator=(const DirLock&) = delete;
  DirLock& operator=(DirLock&&) = delete;
  ~DirLock() {
    if (fd_ >= 0) ::close(fd_);
  }

 private:
  explicit DirLock(int fd) : fd_(fd) {}
  int fd_;
};

std::string planText(const BenchOptions& o, std::size_t total) {
  std::ostringstream t;
  t << "Plan: profile " << o.profile << (o.shared_storage ? " with shared storage" : "") << "; methods "
    << join(o.methods) << "; rows " << join(o.rows) << "; state " << join(o.state_mb) << " MB; video "
    << o.video_mb << " MB; " << o.runs << " run" << (o.runs == 1 ? "" : "s")
    << " per cell, directions alternating a→b, b→a (" << total << " runs).";
  if (std::find(o.methods.begin(), o.methods.end(), "ferry") != o.methods.end()) {
    t << " ferry moves the traffic with "
      << (o.switch_driver == "none" ? std::string("the study's nginx (both hosts in one upstream)")
                                    : "its switch-over driver `" + o.switch_driver + "`")
      << ".";
  }
  if (!o.command_line.empty()) t << " Command: `" << o.command_line << "`.";
  return t.str();
}

std::filesystem::path runDirOf(const BenchOptions& o, const RunSpec& s, int attempt) {
  char name[128];
  std::snprintf(name, sizeof name, "%04d-%s-rows%d-state%d-run%d-a%d", s.seq, s.method.c_str(), s.rows,
                s.state_mb, s.run, attempt);
  return o.out_dir / "runs" / name;
}

std::string relativeTo(const std::filesystem::path& base, const std::string& path) {
  if (path.empty()) return path;
  std::error_code ec;
  auto rel = std::filesystem::relative(path, base, ec);
  if (ec || rel.empty() || rel.native().starts_with("..")) return path;
  return rel.string();
}

}  // namespace

Result<std::vector<int>> parseIntList(std::string_view text, std::string_view flag) {
  std::vector<int> out;
  for (auto item : splitComma(text)) {
    int v = 0;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size()) {
      return makeError("--" + std::string(flag) + ": '" + std::string(item) + "' is not a whole number",
                       "give a comma-separated list, e.g. --" + std::string(flag) + " 100,10000");
    }
    if (std::find(out.begin(), out.end(), v) != out.end())
      return makeError("--" + std::string(flag) + ": " + std::to_string(v) + " is listed twice");
    out.push_back(v);
  }
  return out;
}

Result<std::vector<std::string>> parseMethods(std::string_view text) {
  std::vector<std::string> out;
  for (auto item : splitComma(text)) {
    if (std::find(kMethods.begin(), kMethods.end(), item) == kMethods.end()) {
      return makeError("--methods: unknown method '" + std::string(item) + "'",
                       "choose from thesis, podman, ferry (comma-separated)");
    }
    if (std::find(out.begin(), out.end(), item) != out.end())
      return makeError("--methods: " + std::string(item) + " is listed twice");
    out.emplace_back(item);
  }
  return out;
}

Status validateOptions(const BenchOptions& o) {
  if (std::find(kProfiles.begin(), kProfiles.end(), o.profile) == kProfiles.end())
    return makeError("--profile must be lan, cloud, wan or edge, not '" + o.profile + "'");
  if (o.rows.empty()) return makeError("--rows is empty", "e.g. --rows 100,10000");
  for (int r : o.rows) {
    if (std::find(kRows.begin(), kRows.end(), r) == kRows.end())
      return makeError("--rows: " + std::to_string(r) + " is not one of the study's table sizes",
                       "use 100, 500, 1000, 5000 or 10000");
  }
  if (o.state_mb.empty()) return makeError("--state-mb is empty", "e.g. --state-mb 0,256");
  for (int s : o.state_mb) {
    if (s < 0 || s > 16384)
      return makeError("--state-mb: " + std::to_string(s) + " is not between 0 and 16384");
  }
  if (o.runs < 1 || o.runs > 1000) return makeError("--runs must be between 1 and 1000");
  if (o.methods.empty()) return makeError("--methods is empty", "e.g. --methods thesis,podman,ferry");
  if (o.video_mb < 1 || o.video_mb > 100000)
    return makeError("--video-mb must be between 1 and 100000", "the study had 625");
  static constexpr std::array<std::string_view, 4> kSwitches = {"none", "proxy", "haproxy", "nginx"};
  if (std::find(kSwitches.begin(), kSwitches.end(), o.switch_driver) == kSwitches.end())
    return makeError("--switch must be none, proxy, haproxy or nginx, not '" + o.switch_driver + "'");
  if (o.out_dir.empty())
    return makeError("--out is required", "a directory for runs.csv, summary.md and plots");
  return okStatus();
}

std::vector<RunSpec> planRuns(const BenchOptions& o) {
  std::vector<RunSpec> out;
  int seq = 0;
  for (int state : o.state_mb) {
    for (int rows : o.rows) {
      for (const auto& method : o.methods) {
        for (int run = 1; run <= o.runs; ++run) {
          RunSpec s;
          s.seq = ++seq;
          s.method = method;
          s.rows = rows;
          s.state_mb = state;
          s.run = run;
          s.from = run % 2 == 1 ? "a" : "b";
          s.to = run % 2 == 1 ? "b" : "a";
          out.push_back(std::move(s));
        }
      }
    }
  }
  return out;
}

Result<ResumeState> resumeState(const BenchOptions& o, const std::vector<RunSpec>& plan,
                                const std::vector<RunRow>& existing) {
  struct Seen {
    int max_attempt = 0;
    const RunRow* last_of_max = nullptr;
  };
  std::map<std::string, Seen> seen;
  for (const auto& r : existing) {
    bool shared = r.isTrue("shared_storage");
    if (r.get("profile") != o.profile || shared != o.shared_storage) {
      return makeError("the directory holds runs on profile " + r.get("profile") +
                           (shared ? " with shared storage" : "") + ", not " + o.profile +
                           (o.shared_storage ? " with shared storage" : ""),
                       "one directory is one experiment: use another --out for this one");
    }
    if (r.number("video_mb") != static_cast<double>(o.video_mb)) {
      return makeError("the directory holds runs with --video-mb " + r.get("video_mb") + ", not " +
                           std::to_string(o.video_mb),
                       "use the same --video-mb to resume, or another --out");
    }
    if (r.get("method") == "ferry" && !r.get("switch_driver").empty() &&
        r.get("switch_driver") != o.switch_driver) {
      return makeError("the directory holds ferry runs with --switch " + r.get("switch_driver") + ", not " +
                           o.switch_driver,
                       "use the same --switch to resume, or another --out");
    }
    auto& s = seen[runKey(r)];
    int attempt = static_cast<int>(r.number("attempt").value_or(1));
    if (attempt >= s.max_attempt) {
      s.max_attempt = attempt;
      s.last_of_max = &r;
    }
  }
  ResumeState st;
  for (const auto& spec : plan) {
    auto it = seen.find(runKey(o.profile, o.shared_storage, spec.method, spec.rows, spec.state_mb, spec.run));
    if (it == seen.end()) {
      st.todo.push_back(spec);
      st.attempt.push_back(1);
      continue;
    }
    const std::string& status = it->second.last_of_max->get("status");
    if (status == kStatusOk || status == kStatusFailed) {
      ++st.finished;
      continue;
    }
    if (status == kStatusStarted) st.interrupted.push_back(*it->second.last_of_max);
    st.todo.push_back(spec);
    st.attempt.push_back(it->second.max_attempt + 1);
  }
  return st;
}

Result<BenchOutcome> runBench(const BenchOptions& o, LabActions& lab, std::ostream& progress,
                              const std::atomic<bool>& stop) {
  FERRY_TRY(validateOptions(o));
  std::error_code ec;
  std::filesystem::create_directories(o.out_dir, ec);
  if (ec) return makeError("cannot create --out " + o.out_dir.string() + ": " + ec.message());
  auto lock = DirLock::take(o.out_dir);
  if (!lock) return lock.error();
  const auto csv = o.out_dir / "runs.csv";
  auto loaded = loadRunsCsv(csv);
  if (!loaded) return loaded.error();
  if (!loaded->torn_tail.empty())
    progress << "ferry bench: cut a half-written last line off " << csv.string()
             << " (a run that was being recorded)\n";
  const auto plan = planRuns(o);
  auto resume = resumeState(o, plan, loaded->rows);
  if (!resume) return resume.error();

  BenchOutcome outcome;
  outcome.skipped = resume->finished;
  for (auto row : resume->interrupted) {
    row.set("status", std::string(kStatusInterrupted));
    row.set("error",
            "the bench stopped during this run (found unfinished when it started again): run again as the "
            "next attempt");
    FERRY_TRY(appendRunCsv(csv, row));
    ++outcome.marked_interrupted;
  }
  progress << "ferry bench: " << plan.size() << " runs in " << o.out_dir.string() << " — " << resume->finished
           << " already done, " << outcome.marked_interrupted << " interrupted run(s) marked, "
           << resume->todo.size() << " to go\n"
           << "  " << planText(o, plan.size()) << "\n";

  auto writeReportNow = [&]() {
    auto rows = loadRunsCsv(csv);
    ReportInput in;
    if (rows) in.rows = std::move(rows->rows);
    in.method_order = {"thesis", "podman", "ferry"};
    in.plan_text = planText(o, plan.size());
    if (auto text = readFile(o.published_csv)) {
      if (auto pub = parsePublishedCsv(*text)) in.published = std::move(*pub);
    }
    auto st = writeReport(o.out_dir, in, /*run_gnuplot=*/true);
    if (!st.ok()) progress << "ferry bench: the report is incomplete: " << st.error().message() << "\n";
    progress << "ferry bench: " << (o.out_dir / "summary.md").string() << ", plots in "
             << (o.out_dir / "plots").string() << "\n";
  };

  if (!resume->todo.empty()) {
    if (auto s = lab.up(o); !s.ok()) {
      return makeError("bringing the lab to profile " + o.profile + " failed: " + s.error().what,
                       s.error().hint);
    }
  }
  const auto loop_start = lab.nowUnixMs();
  std::string service_at;  // where the current cell's service is; "" = unknown
  std::string cell;
  const std::size_t total = plan.size();
  for (std::size_t i = 0; i < resume->todo.size(); ++i) {
    if (stop.load()) {
      outcome.stopped = true;
      break;
    }
    const RunSpec& spec = resume->todo[i];
    const int attempt = resume->attempt[i];
    const std::string this_cell =
        spec.method + "|" + std::to_string(spec.rows) + "|" + std::to_string(spec.state_mb);
    const std::size_t done_now = i;
    const auto now = lab.nowUnixMs();
    std::string eta = done_now == 0 ? "ETA after the first run"
                                    : "ETA ~" + duration(static_cast<double>(now - loop_start) /
                                                         static_cast<double>(done_now) *
                                                         static_cast<double>(resume->todo.size() - done_now));
    progress << "[" << resume->finished + outcome.ok + outcome.failed + 1 << "/" << total << "] " << o.profile
             << (o.shared_storage ? "+shared" : "") << " · " << spec.method << " · rows " << spec.rows
             << " · state " << spec.state_mb << " MB · run " << spec.run << "/" << o.runs << " · "
             << spec.from << "→" << spec.to << (attempt > 1 ? " · attempt " + std::to_string(attempt) : "")
             << "   (elapsed " << duration(static_cast<double>(now - loop_start)) << ", " << eta << ")"
             << std::endl;

    if (this_cell != cell || service_at != spec.from) {
      progress << "  preparing: fresh service on " << spec.from << " (rows " << spec.rows << ", state "
               << spec.state_mb << " MB, video " << o.video_mb << " MB)"
               << (spec.method == "ferry" ? ", nodes reset and in sync" : "") << std::endl;
      if (auto s = lab.prepare(o, spec); !s.ok()) {
        writeReportNow();
        return makeError("preparing run " + std::to_string(spec.seq) + " (" + spec.method + ", rows " +
                             std::to_string(spec.rows) + ") failed: " + s.error().what,
                         s.error().hint.empty()
                             ? "fix it and run the same command again: finished runs are kept"
                             : s.error().hint);
      }
      cell = this_cell;
      service_at = spec.from;
    }

    const auto run_dir = runDirOf(o, spec, attempt);
    std::filesystem::create_directories(run_dir, ec);
    RunRow row;
    row.set("seq", std::to_string(spec.seq));
    row.set("status", std::string(kStatusStarted));
    row.set("attempt", std::to_string(attempt));
    row.set("started_unix_ms", std::to_string(lab.nowUnixMs()));
    row.set("load_1m", formatNumber(std::round(lab.loadAverage() * 100) / 100));
    row.set("profile", o.profile);
    row.set("shared_storage", o.shared_storage ? "true" : "false");
    row.set("method", spec.method);
    row.set("rows", std::to_string(spec.rows));
    row.set("state_mb", std::to_string(spec.state_mb));
    row.set("video_mb", std::to_string(o.video_mb));
    row.set("run", std::to_string(spec.run));
    row.set("direction", spec.from + "->" + spec.to);
    FERRY_TRY(appendRunCsv(csv, row));

    const auto t0 = lab.nowUnixMs();
    auto line = lab.migrate(o, spec, run_dir);
    row.set("wall_ms", std::to_string(lab.nowUnixMs() - t0));
    if (stop.load()) {
      row.set("status", std::string(kStatusInterrupted));
      row.set("error", "stopped by the user (SIGINT/SIGTERM) during the run: run again as the next attempt");
      FERRY_TRY(appendRunCsv(csv, row));
      outcome.stopped = true;
      progress << "  interrupted: recorded as such; run the same command again to resume" << std::endl;
      break;
    }
    if (!line) {
      row.set("status", std::string(kStatusFailed));
      row.set("error", line.error().message());
    } else if (auto s = applyMethodLine(row, *line); !s.ok()) {
      row.set("status", std::string(kStatusFailed));
      row.set("error", "the " + spec.method + " runner broke its contract: " + s.error().message());
    }
    row.set("timeline", relativeTo(o.out_dir, row.get("timeline")));
    row.set("run_dir",
            relativeTo(o.out_dir, row.get("run_dir").empty() ? run_dir.string() : row.get("run_dir")));
    FERRY_TRY(appendRunCsv(csv, row));
    if (row.get("status") == kStatusOk) {
      ++outcome.ok;
      service_at = spec.to;
      progress << "  ok: downtime " << seconds(row, "downtime_study_ms") << " (ferry's definition "
               << seconds(row, "downtime_ferry_ms") << "), client-observed "
               << seconds(row, "client_downtime_ms") << ", migration " << seconds(row, "migration_study_ms")
               << "; " << row.get("failed_requests") << " failed requests, " << row.get("lost_writes")
               << " lost writes, session " << (row.isTrue("session_kept") ? "kept" : "LOST") << std::endl;
    } else {
      ++outcome.failed;
      service_at.clear();  // unknown: the next run deploys afresh
      progress << "  FAILED: " << row.get("error") << " (details: " << row.get("run_dir") << ")" << std::endl;
    }
  }
  writeReportNow();
  return outcome;
}

Status reportFromDirectory(const std::filesystem::path& dir, const std::filesystem::path& published_csv,
                           bool run_gnuplot) {
  auto csv = dir / "runs.csv";
  std::error_code ec;
  if (!std::filesystem::exists(csv, ec))
    return makeError("no runs.csv in " + dir.string(), "give the --out directory of an earlier ferry bench");
  auto lock = DirLock::take(dir);
  if (!lock) return lock.error();
  auto rows = loadRunsCsv(csv);
  if (!rows) return rows.error();
  ReportInput in;
  in.rows = std::move(rows->rows);
  in.method_order = {"thesis", "podman", "ferry"};
  if (auto text = readFile(published_csv)) {
    auto pub = parsePublishedCsv(*text);
    if (!pub) return makeError(published_csv.string() + ": " + pub.error().what, pub.error().hint);
    in.published = std::move(*pub);
  }
  return writeReport(dir, in, run_gnuplot);
}

}  // namespace ferry::bench
