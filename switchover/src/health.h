// "Is the target answering?" — asked before traffic is pointed at it. Blocking, with
// a deadline on every step; for the switch agent's worker thread, never for the
// proxy's loop.
#pragma once

#include <chrono>
#include <string>

#include "ferry/base/error.h"
#include "ferry/switchover/driver.h"

namespace ferry::switchover {

struct HealthCheck {
  std::string path;              // HTTP GET this (2xx/3xx is healthy); empty: a TCP connect only
  Millis attempt_timeout{1000};  // per attempt: connect, send, answer
  Millis interval{50};           // between attempts
};

// One attempt. The error says what failed ("connection refused", "answered 503").
Status checkOnce(const Endpoint& target, const HealthCheck& check);

// Attempts until one succeeds or `deadline` passes; the error quotes the last failure
// and how many attempts were made.
Status waitHealthy(const Endpoint& target, const HealthCheck& check, Millis deadline);

}  // namespace ferry::switchover
