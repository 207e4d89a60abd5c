// The `proxy` driver on the load-balancer host: the three steps over HandoffProxy.
#include <chrono>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/switchover/local.h"
#include "health.h"
#include "local_common.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;

Millis since(Clock::time_point t) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t);
}

class ProxyDriver final : public Driver {
 public:
  ProxyDriver(HandoffProxy& proxy, ProxyDriverConfig config)
      : proxy_(proxy), cfg_(std::move(config)), log_(log::get("switch")) {}

  std::string name() const override { return "proxy"; }

  Result<SwitchReport> prepare(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    if (plan.migration_id == lastCommitted_) {
      return makeError("proxy: migration " + plan.migration_id + " of '" + cfg_.service +
                           "' was already committed here (traffic on " + plan.target.str() + ")",
                       "repeat commit (idempotent) or roll back; a new migration needs a new id");
    }
    SwitchReport r = report(plan, "prepare");
    auto before = proxy_.counters(cfg_.service);
    if (!before.ok()) return before.error();
    if (!(before->backend == plan.source) && !before->holding) {
      r.note = "traffic went to " + before->backend.str() + ", not to the plan's source " +
               plan.source.str() + "; held anyway";
      log_->warn("proxy '{}': {}", cfg_.service, r.note);
    }
    const auto t0 = Clock::now();
    auto held = proxy_.hold(cfg_.service, plan.hold_timeout, plan.drain_timeout, cfg_.lease);
    if (!held.ok()) return held.error();
    r.steps.push_back({"drain", since(t0)});
    r.drained = held->drained;
    r.in_flight_left = held->in_flight_left;
    if (r.note.empty()) {
      r.note = std::string(held->already_holding ? "already holding" : "holding new requests") + "; " +
               std::to_string(held->in_flight_left) + " still in flight after the drain";
    }
    fillCounts(r);
    return r;
  }

  Result<SwitchReport> commit(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "commit");
    auto t0 = Clock::now();
    HealthCheck check;
    check.path = cfg_.health_path;
    Status healthy = waitHealthy(plan.target, check, plan.hold_timeout);
    r.steps.push_back({"health", since(t0)});
    if (!healthy.ok()) {
      return makeError(
          "proxy: not switching '" + cfg_.service + "' to " + plan.target.str() + ": " + healthy.error().what,
          "held requests stay held (each up to the hold timeout); roll back to send them to the "
          "source");
    }
    t0 = Clock::now();
    auto released = proxy_.release(cfg_.service, plan.target);
    if (!released.ok()) return released.error();
    r.steps.push_back({"release", since(t0)});
    lastCommitted_ = plan.migration_id;
    persist(plan.target);
    r.note = "traffic to " + plan.target.str() + "; " + std::to_string(released->cut) +
             " request(s) still at the source were ended (" + std::to_string(released->retried) + " re-sent)";
    fillCounts(r);
    return r;
  }

  Result<SwitchReport> rollback(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "rollback");
    const auto t0 = Clock::now();
    auto released = proxy_.release(cfg_.service, plan.source);
    if (!released.ok()) return released.error();
    r.steps.push_back({"release", since(t0)});
    if (lastCommitted_ == plan.migration_id) lastCommitted_.clear();
    persist(plan.source);
    r.note = "traffic back to " + plan.source.str();
    fillCounts(r);
    return r;
  }

 private:
  Status checkPlan(const SwitchPlan& plan) const {
    return detail::checkLocalPlan(plan, "proxy", cfg_.service);
  }

  SwitchReport report(const SwitchPlan& plan, const char* step) const {
    return detail::startReport(plan, "proxy", cfg_.service, step);
  }

  void fillCounts(SwitchReport& r) const {
    auto c = proxy_.counters(cfg_.service);
    if (!c.ok()) return;
    r.held = c->held;
    r.released = c->released;
    r.max_hold_ms = c->max_hold_ms;
    r.retried = c->retried;
    r.refused = c->refused;
    r.failed = c->failed;
  }

  void persist(const Endpoint& backend) const {
    if (cfg_.state_file.empty()) return;
    Status s = writeFileAtomic(cfg_.state_file, backend.str() + "\n", 0644);
    if (!s.ok()) {
      log_->warn(
          "proxy '{}': cannot remember the backend in {}: {} (after a restart the agent starts with the "
          "configured backend)",
          cfg_.service, cfg_.state_file, s.error().message());
    }
  }

  HandoffProxy& proxy_;
  ProxyDriverConfig cfg_;
  std::shared_ptr<spdlog::logger> log_;
  std::string lastCommitted_;
};

}  // namespace

std::unique_ptr<Driver> makeProxyDriver(HandoffProxy& proxy, ProxyDriverConfig config) {
  return std::make_unique<ProxyDriver>(proxy, std::move(config));
}

}  // namespace ferry::switchover
