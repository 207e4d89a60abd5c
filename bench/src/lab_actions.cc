// The real LabActions: `ferry lab up/deploy/exec`, deploy/lab/nodes.sh and the method
// runners bench/methods/METHOD.sh, each with a deadline; their output goes to
// DIR/bench.log (and a runner's to its run directory).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include "ferry/base/process.h"
#include "ferry/bench/experiment.h"
#include "ferry/bench/results.h"

namespace ferry::bench {

namespace {

using std::chrono::minutes;
using std::chrono::seconds;

constexpr std::string_view kLocalData = "/srv/ferry/ref";  // deploy/service/lib.sh's DATA_DIR
constexpr std::string_view kSharedData = "/srv/ferry-shared/ref";

std::string lastLine(const std::string& text) {
  auto end = text.find_last_not_of("\n\r ");
  if (end == std::string::npos) return {};
  auto start = text.rfind('\n', end);
  start = start == std::string::npos ? 0 : start + 1;
  return text.substr(start, end - start + 1);
}

class ScriptLab final : public LabActions {
 public:
  explicit ScriptLab(LabPaths paths) : p_(std::move(paths)) {}

  Status up(const BenchOptions& o) override {
    std::vector<std::string> argv = {p_.ferry.string(), "lab", "up", "--profile", o.profile};
    if (o.shared_storage) argv.emplace_back("--shared-storage");
    return step(o, "ferry lab up", argv, minutes(30));
  }

  Status prepare(const BenchOptions& o, const RunSpec& run) override {
    const std::string nodes = (p_.repo / "deploy/lab/nodes.sh").string();
    // The nodes would mirror behind the Podman methods' backs (and their roles would no
    // longer match where the service is): stopped before every deploy.
    FERRY_TRY(step(o, "nodes.sh stop", {"bash", nodes, "stop"}, minutes(2)));
    std::vector<std::string> deploy = {p_.ferry.string(),
                                       "lab",
                                       "deploy",
                                       "--on",
                                       run.from,
                                       "--rows",
                                       std::to_string(run.rows),
                                       "--video-mb",
                                       std::to_string(o.video_mb),
                                       "--state-mb",
                                       std::to_string(run.state_mb)};
    // ferry's front on lb is its switch-over driver's; the other methods get the study's nginx.
    if (run.method == "ferry" && o.switch_driver != "none") {
      deploy.emplace_back("--switch");
      deploy.push_back(o.switch_driver);
    }
    FERRY_TRY(step(o, "ferry lab deploy", deploy, minutes(60)));
    if (run.method != "ferry") return okStatus();
    // A fresh pair: the standby's old copy goes (a fresh replica fills it from scratch),
    // the nodes forget their roles and start with run.from active. On shared storage
    // there is no copy: both hosts see the service's own data (nodes.sh then starts the
    // nodes with shared_storage = on).
    const std::string standby = run.from == "a" ? "b" : "a";
    if (!o.shared_storage) {
      FERRY_TRY(step(o, "removing the old copy on " + standby,
                     {p_.ferry.string(), "lab", "exec", standby, "--", "rm", "-rf", serviceData(o)},
                     minutes(2)));
    }
    FERRY_TRY(step(o, "nodes.sh reset --active " + run.from, {"bash", nodes, "reset", "--active", run.from},
                   minutes(2)));
    FERRY_TRY(step(o, "nodes.sh start", {"bash", nodes, "start"}, minutes(2)));
    auto t = transferSeconds(o, run);
    return step(o, "ferry sync --flush on " + run.from,
                {p_.ferry.string(), "lab", "exec", run.from, "--", "ferry", "sync", "--flush", "--timeout",
                 std::to_string(t.count())},
                t + minutes(2));
  }

  Result<std::string> migrate(const BenchOptions& o, const RunSpec& run,
                              const std::filesystem::path& run_dir) override {
    std::vector<std::string> argv = {"bash",      (p_.repo / "bench/methods" / (run.method + ".sh")).string(),
                                     "--from",    run.from,
                                     "--to",      run.to,
                                     "--run-dir", run_dir.string()};
    if (o.shared_storage) argv.emplace_back("--shared-storage");
    if (o.browser) argv.emplace_back("--browser");
    auto inner = p_.run_timeout.count() > 0 ? p_.run_timeout : transferSeconds(o, run) + minutes(10);
    ProcessOptions po = options(o);
    po.env["FERRY_BENCH_TIMEOUT_S"] = std::to_string(inner.count());
    po.env["FERRY_BENCH_SWITCH"] = o.switch_driver;
    po.timeout = inner + minutes(10);
    po.cancel = stop_;
    po.kill_grace = seconds(90);  // the runner stops its clients and prints its line
    auto r = runProcess(argv, po);
    if (!r) return makeError("cannot start the " + run.method + " runner: " + r.error().message());
    {
      std::ofstream(run_dir / "runner.log") << r->err;
      std::ofstream(run_dir / "runner.out") << r->out;
    }
    // Its one JSON line: the last line of stdout that is an object.
    std::string line;
    std::size_t pos = 0;
    while (pos < r->out.size()) {
      auto nl = r->out.find('\n', pos);
      std::string l = r->out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      if (!l.empty() && l.front() == '{') line = l;
      pos = nl == std::string::npos ? r->out.size() : nl + 1;
    }
    if (!line.empty()) return line;
    std::string why = r->timed_out
                          ? "did not finish within " + std::to_string(po.timeout.count() / 60000) + " min"
                          : "exit " + std::to_string(r->exit_code) + ": " + lastLine(r->err);
    return makeError("the " + run.method + " runner printed no JSON line (" + why + ")",
                     "see " + (run_dir / "runner.log").string());
  }

  [[nodiscard]] std::int64_t nowUnixMs() const override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  [[nodiscard]] double loadAverage() const override {
    double l = 0;
    std::ifstream in("/proc/loadavg");
    in >> l;
    return l;
  }

  void setStop(const std::atomic<bool>* stop) { stop_ = stop; }

 private:
  static std::string serviceData(const BenchOptions& o) {
    return std::string(o.shared_storage ? kSharedData : kLocalData);
  }

  ProcessOptions options(const BenchOptions& o) const {
    ProcessOptions po;
    po.env["FERRY_BIN"] = p_.ferry.string();  // the hosts get this very binary
    po.env["FERRY_SOURCE_DIR"] = p_.repo.string();
    po.env["FERRY_SERVICE_DATA"] = serviceData(o);
    return po;
  }

  // A deadline for moving the service's bytes a few times over the profile's link.
  static seconds transferSeconds(const BenchOptions& o, const RunSpec& run) {
    double mb = 3.0 * (o.video_mb + run.state_mb + 700);  // data + archives (+ images), with room
    return seconds(900 + static_cast<long long>(mb * 8 / std::max(profileLinkMbit(o.profile), 1.0)));
  }

  // Runs one step with its output appended to DIR/bench.log.
  Status step(const BenchOptions& o, const std::string& what, const std::vector<std::string>& argv,
              std::chrono::milliseconds timeout) const {
    ProcessOptions po = options(o);
    po.timeout = timeout;
    po.cancel = stop_;
    po.kill_grace = seconds(10);
    auto r = runProcess(argv, po);
    if (!r) return makeError(what + ": " + r.error().message());
    const auto log = o.out_dir / "bench.log";
    {
      std::ofstream out(log, std::ios::app);
      out << "==== " << what << ": " << joinArgv(argv) << "\n"
          << r->out << r->err << "==== exit " << r->exit_code << (r->timed_out ? " (timed out)" : "") << "\n";
    }
    if (r->cancelled) return makeError(what + " was stopped (SIGINT/SIGTERM)");
    if (r->timed_out) {
      return makeError(what + " did not finish within " + std::to_string(timeout.count() / 60000) + " min",
                       "see " + log.string());
    }
    if (r->exit_code != 0) {
      std::string line = lastLine(r->err);
      if (line.empty()) line = lastLine(r->out);
      return makeError(what + " failed (exit " + std::to_string(r->exit_code) + "): " + line,
                       "see " + log.string());
    }
    return okStatus();
  }

  LabPaths p_;
  const std::atomic<bool>* stop_ = nullptr;
};

}  // namespace

std::unique_ptr<LabActions> makeLabActions(LabPaths paths, const std::atomic<bool>* stop) {
  auto lab = std::make_unique<ScriptLab>(std::move(paths));
  lab->setStop(stop);
  return lab;
}

}  // namespace ferry::bench
