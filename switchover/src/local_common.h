// What the drivers acting on the load-balancer host (proxy, haproxy, nginx) share:
// the check that a plan is one for their service, and a report's common fields.
#pragma once

#include <string>

#include "ferry/base/error.h"
#include "ferry/switchover/driver.h"

namespace ferry::switchover::detail {

// A valid plan (validatePlan) for `service`; a plan for another service is an agent bug.
inline Status checkLocalPlan(const SwitchPlan& plan, const std::string& driver, const std::string& service) {
  FERRY_TRY(validatePlan(plan));
  if (plan.service != service) {
    return makeError(driver + " driver of '" + service + "' got a plan for '" + plan.service + "'",
                     "this is a bug in the agent");
  }
  return okStatus();
}

// A report of `step` by `driver` for `plan`, counts still zero.
inline SwitchReport startReport(const SwitchPlan& plan, const std::string& driver, const std::string& service,
                                const char* step) {
  SwitchReport r;
  r.driver = driver;
  r.step = step;
  r.service = service;
  r.migration_id = plan.migration_id;
  return r;
}

}  // namespace ferry::switchover::detail
