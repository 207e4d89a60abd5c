// Traffic switch-over (issue 6): the step of `ferry migrate` that moves a service's
// traffic from the source host to the target, through a pluggable driver.
//
// The node that runs a migration calls, in this order:
//   prepare(plan)   before the freeze: new requests/connections to the source are held
//                   (or, for drivers that cannot hold, at least not sent there), in-flight
//                   ones may finish for plan.drain_timeout;
//   commit(plan)    the target is restored and healthy: traffic goes to the target and held
//                   requests are released to it; returns only once the target answers
//                   through the load balancer's path;
//   rollback(plan)  anything failed: traffic back to the source, held requests released there.
// A failed commit means no commit of the migration. Every call is idempotent (a
// restarted node may repeat it) and bounded: prepare by drain_timeout, commit and
// rollback by hold_timeout, each plus a few seconds for the agent's round trip.
//
// Drivers: `proxy`, `haproxy` and `nginx` act on the load-balancer host through the
// switch agent there (`ferry proxy run`, authenticated with CurveZMQ); `exec` runs a
// command on the node itself. What each promises: switchover/README.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ferry/base/error.h"

namespace ferry::switchover {

using Millis = std::chrono::milliseconds;

// A backend as the load balancer reaches it, e.g. {"a", 80}.
struct Endpoint {
  std::string host;
  uint16_t port = 0;

  [[nodiscard]] std::string str() const;  // "a:80"
  bool operator==(const Endpoint&) const = default;
};

// "host:port" (host a name, an IPv4 address, or [IPv6]); the port is required.
Result<Endpoint> parseEndpoint(const std::string& text);

struct SwitchPlan {
  std::string migration_id;
  std::string service;  // the name the load balancer side knows (e.g. "ref")
  Endpoint source;
  Endpoint target;
  Millis drain_timeout{2000};  // in-flight requests to the source may finish this long
  Millis hold_timeout{10000};  // held requests wait at most this long, then a 503 with the reason
};

// Checks a plan before it is sent anywhere: names, endpoints, timeouts (1 ms .. 10 min).
Status validatePlan(const SwitchPlan& plan);

struct StepTiming {
  std::string name;  // "drain", "health", "release", "reload", ...
  Millis took{0};
};

// What a step did. Counts are since prepare of this migration; a driver that cannot
// count something leaves it 0 and says so in `note`.
struct SwitchReport {
  std::string driver;  // "proxy", "haproxy", "nginx", "exec"
  std::string step;    // "prepare", "commit", "rollback"
  std::string service;
  std::string migration_id;
  uint64_t held = 0;            // requests/connections held since prepare
  uint64_t released = 0;        // of those, handed to a backend
  uint64_t max_hold_ms = 0;     // the longest any of them waited
  uint64_t retried = 0;         // re-sent after the backend connection broke before any response byte
  uint64_t refused = 0;         // answered 503 by the load balancer (hold queue full, hold timeout)
  uint64_t failed = 0;          // other failures it could not save (502, cut connections)
  uint64_t drained = 0;         // in flight at prepare and finished within drain_timeout
  uint64_t in_flight_left = 0;  // still in flight when drain_timeout passed
  std::vector<StepTiming> steps;
  std::string note;  // what the driver did, one line

  [[nodiscard]] nlohmann::json toJson() const;
  [[nodiscard]] std::string summary() const;  // one line for logs and the CLI
};

class Driver {
 public:
  virtual ~Driver() = default;
  [[nodiscard]] virtual std::string name() const = 0;
  virtual Result<SwitchReport> prepare(const SwitchPlan& plan) = 0;
  virtual Result<SwitchReport> commit(const SwitchPlan& plan) = 0;
  virtual Result<SwitchReport> rollback(const SwitchPlan& plan) = 0;
};

// How the node reaches its driver (the node's configuration or `--switch DRIVER`).
struct DriverConfig {
  std::string kind;  // "proxy", "haproxy", "nginx" or "exec"

  // proxy, haproxy, nginx: the switch agent on the load-balancer host.
  std::string agent_endpoint;    // e.g. "tcp://lb:7400"
  std::string agent_public_key;  // Z85; see loadAgentKey()
  std::string node_public_key;   // this node's CURVE key pair (node.key); the agent
  std::string node_secret_key;   //   admits it only if paired there
  std::string node_name;         // for the agent's logs
  Millis agent_margin{5000};     // waited beyond a step's own bound for the agent's answer

  // exec: argv of the user's command; the step, the source and the target ("host:port")
  // are appended, and FERRY_SWITCH_* variables describe the plan (see README.md).
  std::vector<std::string> command;
  Millis exec_timeout{30000};  // per step; the command's process group is killed after it
};

// The driver for `config.kind`; fails with what is missing (keys, endpoint, command).
Result<std::unique_ptr<Driver>> makeDriver(const DriverConfig& config);

// The agent's public key as paired on this node:
//   ferry pair --dir /etc/ferry/switch --name lb --peer-key <lb's node.pub>
// (a directory of its own, so the node's peer link never admits the agent's key).
Result<std::string> loadAgentKey(const std::string& dir, const std::string& name);

}  // namespace ferry::switchover
