// The `exec` driver: the user's command does the switch-over (a cloud load balancer's
// API, DNS, keepalived ...). It runs on the node, once per step, with a deadline.
#include "exec_driver.h"

#include "ferry/base/log.h"
#include "ferry/base/process.h"

namespace ferry::switchover {

namespace {

std::string lastLine(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  const size_t nl = t.rfind('\n');
  std::string line = nl == std::string::npos ? t : t.substr(nl + 1);
  if (line.size() > 512) line = line.substr(0, 512) + "...";
  return line;
}

class ExecDriver final : public Driver {
 public:
  ExecDriver(std::vector<std::string> command, Millis timeout)
      : command_(std::move(command)), timeout_(timeout), log_(log::get("switch")) {}

  std::string name() const override { return "exec"; }
  Result<SwitchReport> prepare(const SwitchPlan& plan) override { return run(plan, "prepare"); }
  Result<SwitchReport> commit(const SwitchPlan& plan) override { return run(plan, "commit"); }
  Result<SwitchReport> rollback(const SwitchPlan& plan) override { return run(plan, "rollback"); }

 private:
  Result<SwitchReport> run(const SwitchPlan& plan, const std::string& step) const {
    FERRY_TRY(validatePlan(plan));
    std::vector<std::string> argv = command_;
    argv.push_back(step);
    argv.push_back(plan.source.str());
    argv.push_back(plan.target.str());
    ProcessOptions po;
    po.timeout = timeout_;
    po.env = {{"FERRY_SWITCH_STEP", step},
              {"FERRY_SWITCH_SERVICE", plan.service},
              {"FERRY_SWITCH_MIGRATION_ID", plan.migration_id},
              {"FERRY_SWITCH_SOURCE", plan.source.str()},
              {"FERRY_SWITCH_SOURCE_HOST", plan.source.host},
              {"FERRY_SWITCH_SOURCE_PORT", std::to_string(plan.source.port)},
              {"FERRY_SWITCH_TARGET", plan.target.str()},
              {"FERRY_SWITCH_TARGET_HOST", plan.target.host},
              {"FERRY_SWITCH_TARGET_PORT", std::to_string(plan.target.port)},
              {"FERRY_SWITCH_DRAIN_TIMEOUT_MS", std::to_string(plan.drain_timeout.count())},
              {"FERRY_SWITCH_HOLD_TIMEOUT_MS", std::to_string(plan.hold_timeout.count())}};
    log_->info("exec: {} ({} of '{}', migration {})", joinArgv(argv), step, plan.service, plan.migration_id);
    auto r = runProcess(argv, po);
    if (!r.ok()) {
      return makeError("switch command " + joinArgv(argv) + " could not start: " + r.error().what,
                       "check switch_exec in the node's config (an absolute path, executable)");
    }
    if (r->timed_out) {
      return makeError("switch command " + joinArgv(argv) + " did not finish within " +
                           std::to_string(timeout_.count()) + " ms and was killed",
                       "make the command finish sooner, or raise the exec timeout");
    }
    if (r->exit_code != 0) {
      const std::string why = lastLine(r->err).empty() ? lastLine(r->out) : lastLine(r->err);
      return makeError("switch command " + joinArgv(argv) + " exited " + std::to_string(r->exit_code) +
                           (why.empty() ? "" : ": " + why),
                       "the command must exit 0 once traffic is where the step says (switchover/README.md)");
    }
    SwitchReport report;
    report.driver = "exec";
    report.step = step;
    report.service = plan.service;
    report.migration_id = plan.migration_id;
    report.steps.push_back({"command", r->elapsed});
    report.note = lastLine(r->out);
    return report;
  }

  std::vector<std::string> command_;
  Millis timeout_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

Result<std::unique_ptr<Driver>> makeExecDriver(std::vector<std::string> command, Millis timeout) {
  if (command.empty() || command.front().empty())
    return makeError("exec driver: no command", "set switch_exec to the command that moves the traffic");
  if (timeout <= Millis(0)) return makeError("exec driver: the timeout must be positive");
  return std::unique_ptr<Driver>(std::make_unique<ExecDriver>(std::move(command), timeout));
}

}  // namespace ferry::switchover
