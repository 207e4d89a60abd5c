// The `nginx` driver: rewrite the service's upstream file, `nginx -t`, `nginx -s
// reload`, and wait until the master has started new workers (the reload took).
#include <dirent.h>
#include <csignal>

#include <arpa/inet.h>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/base/process.h"
#include "ferry/switchover/local.h"
#include "health.h"
#include "local_common.h"
#include "net.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;

Millis since(Clock::time_point t) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t);
}

Result<std::string> numericEndpoint(const Endpoint& e) {
  auto a = net::resolve(e);
  if (!a.ok()) return a.error();
  return a->str();
}

// Children of `parent` (from /proc/<pid>/stat: the 4th field is the parent pid).
std::set<int> childrenOf(int parent) {
  std::set<int> out;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) return out;
  while (const dirent* e = ::readdir(dir)) {
    int pid = 0;
    const std::string_view name(e->d_name);
    auto [ptr, ec] = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (ec != std::errc() || ptr != name.data() + name.size()) continue;
    std::ifstream in("/proc/" + std::string(name) + "/stat");
    std::string stat;
    std::getline(in, stat);
    const size_t close = stat.rfind(')');  // the command may hold spaces and ')'
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state = 0;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') out.insert(pid);
  }
  ::closedir(dir);
  return out;
}

// nginx retitles a worker that stopped accepting: "nginx: worker process is shutting down".
bool shuttingDown(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
  std::string title((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return title.find("shutting down") != std::string::npos;
}

class NginxDriver final : public Driver {
 public:
  explicit NginxDriver(NginxConfig config) : cfg_(std::move(config)), log_(log::get("switch")) {}

  std::string name() const override { return "nginx"; }

  Result<SwitchReport> prepare(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "prepare");
    auto src = numericEndpoint(plan.source);
    if (!src.ok()) return src.error();
    auto tgt = numericEndpoint(plan.target);
    if (!tgt.ok()) return tgt.error();
    // The target as a backup: a request the frozen source refuses may still find it.
    FERRY_TRY(apply(plan, {*src}, {*tgt}, r));
    r.note = "upstream " + cfg_.upstream_name + ": " + *src + ", backup " + *tgt +
             "; nginx cannot hold or drain — requests that reach the source while it is frozen may fail";
    return r;
  }

  Result<SwitchReport> commit(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "commit");
    auto tgt = numericEndpoint(plan.target);
    if (!tgt.ok()) return tgt.error();
    const auto t0 = Clock::now();
    HealthCheck check;
    check.path = cfg_.health_path;
    Status healthy = waitHealthy(plan.target, check, plan.hold_timeout);
    r.steps.push_back({"health", since(t0)});
    if (!healthy.ok()) {
      return makeError(
          "nginx: not switching '" + cfg_.service + "' to " + plan.target.str() + ": " + healthy.error().what,
          "roll back to send traffic to the source again");
    }
    FERRY_TRY(apply(plan, {*tgt}, {}, r));
    r.note =
        "upstream " + cfg_.upstream_name + ": " + *tgt + " only; nginx counts no failures (see the probe)";
    return r;
  }

  Result<SwitchReport> rollback(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "rollback");
    auto src = numericEndpoint(plan.source);
    if (!src.ok()) return src.error();
    FERRY_TRY(apply(plan, {*src}, {}, r));
    r.note = "upstream " + cfg_.upstream_name + ": " + *src + " only";
    return r;
  }

 private:
  Status checkPlan(const SwitchPlan& plan) const {
    return detail::checkLocalPlan(plan, "nginx", cfg_.service);
  }

  SwitchReport report(const SwitchPlan& plan, const char* step) const {
    return detail::startReport(plan, "nginx", cfg_.service, step);
  }

  std::string render(const SwitchPlan& plan, const std::vector<std::string>& primary,
                     const std::vector<std::string>& backup) const {
    std::string params = cfg_.server_params.empty() ? "" : " " + cfg_.server_params;
    std::string out = "# Written by ferry's switch agent for service '" + cfg_.service + "' (migration " +
                      plan.migration_id + "). ferry rewrites this file at every switch-over.\n";
    out += "upstream " + cfg_.upstream_name + " {\n";
    for (const auto& s : primary) out += "    server " + s + params + ";\n";
    for (const auto& s : backup) out += "    server " + s + params + " backup;\n";
    out += "}\n";
    return out;
  }

  Result<int> masterPid() const {
    auto text = readFile(cfg_.pid_file);
    if (!text.ok()) {
      return makeError("nginx: cannot read its pid file " + cfg_.pid_file + ": " + text.error().what,
                       "is nginx running with `pid " + cfg_.pid_file + ";`?");
    }
    int pid = 0;
    const std::string& t = *text;
    auto [ptr, ec] = std::from_chars(t.data(), t.data() + t.size(), pid);
    if (ec != std::errc() || pid <= 1 || ::kill(pid, 0) != 0) {
      return makeError("nginx: the master process in " + cfg_.pid_file + " is not running",
                       "start nginx: " + cfg_.nginx + " -c " + cfg_.conf);
    }
    return pid;
  }

  // Writes the upstream file (unless it already says this), tests the configuration,
  // reloads and waits for new workers.
  Status apply(const SwitchPlan& plan, const std::vector<std::string>& primary,
               const std::vector<std::string>& backup, SwitchReport& r) {
    const std::string content = render(plan, primary, backup);
    auto master = masterPid();
    if (!master.ok()) return master.error();
    auto old = readFile(cfg_.upstream_file);
    // Idempotent: the same servers need no reload (the comment line names the migration).
    auto body = [](const std::string& text) {
      return text.substr(std::min(text.size(), text.find('\n') + 1));
    };
    if (old.ok() && body(*old) == body(content)) {
      r.steps.push_back({"reload", Millis(0)});
      return okStatus();
    }
    const auto t0 = Clock::now();
    FERRY_TRY(writeFileAtomic(cfg_.upstream_file, content, 0644));
    ProcessOptions po;
    po.timeout = cfg_.reload_timeout;
    auto tested = runProcess({cfg_.nginx, "-t", "-q", "-c", cfg_.conf}, po);
    if (!tested.ok() || !tested->success()) {
      if (old.ok()) (void)writeFileAtomic(cfg_.upstream_file, *old, 0644);
      const std::string why = !tested.ok() ? tested.error().what : tested->err;
      return makeError("nginx: the configuration with the new upstream does not pass `nginx -t`: " + why,
                       "the previous " + cfg_.upstream_file + " was put back; check that " + cfg_.conf +
                           " includes it and names the upstream '" + cfg_.upstream_name + "'");
    }
    const std::set<int> before = childrenOf(*master);
    auto reloaded = runProcess({cfg_.nginx, "-c", cfg_.conf, "-s", "reload"}, po);
    if (!reloaded.ok() || !reloaded->success()) {
      const std::string why = !reloaded.ok() ? reloaded.error().what : reloaded->err;
      return makeError("nginx: reload failed: " + why, "see nginx's error log");
    }
    // The reload took when the master runs a worker it did not have before and every
    // old worker is gone or "is shutting down" (it no longer accepts connections; it
    // may still finish requests in flight).
    const auto deadline = t0 + cfg_.reload_timeout;
    for (;;) {
      const std::set<int> now = childrenOf(*master);
      const bool fresh = std::any_of(now.begin(), now.end(), [&](int pid) { return !before.contains(pid); });
      const bool oldStopped = std::all_of(before.begin(), before.end(),
                                          [&](int pid) { return !now.contains(pid) || shuttingDown(pid); });
      if (fresh && oldStopped) break;
      if (Clock::now() >= deadline) {
        return makeError("nginx: the reload did not take within " +
                             std::to_string(cfg_.reload_timeout.count()) + " ms (" +
                             (fresh ? "old workers still accept connections" : "no new worker") + ")",
                         "see nginx's error log; the old configuration may still be active");
      }
      std::this_thread::sleep_for(Millis(5));
    }
    r.steps.push_back({"reload", since(t0)});
    log_->info("nginx '{}': upstream {} now {}{}", cfg_.service, cfg_.upstream_name, primary.front(),
               backup.empty() ? "" : " (backup " + backup.front() + ")");
    return okStatus();
  }

  NginxConfig cfg_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

Result<std::unique_ptr<Driver>> makeNginxDriver(NginxConfig config) {
  for (const auto& [key, value] :
       {std::pair{"nginx_conf", &config.conf}, std::pair{"pid_file", &config.pid_file},
        std::pair{"upstream_file", &config.upstream_file},
        std::pair{"upstream_name", &config.upstream_name}}) {
    if (value->empty()) {
      return makeError("nginx service '" + config.service + "': " + key + " is not set",
                       "see deploy/switchover/agent.conf for an example");
    }
  }
  return std::unique_ptr<Driver>(std::make_unique<NginxDriver>(std::move(config)));
}

}  // namespace ferry::switchover
