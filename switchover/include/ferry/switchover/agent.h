// The switch agent: `ferry proxy run --config FILE` on the load-balancer host.
//
// It listens for the nodes' switch-over requests on a CurveZMQ ROUTER whose ZAP
// handler admits only paired node keys (protocol/zap.h), and performs each step
// locally with the service's driver (local.h): ferry's hand-off proxy (which it also
// runs), HAProxy's runtime API, or nginx. Threads: the control thread owns the
// ZeroMQ sockets; one worker runs the steps one at a time (each bounded by the
// plan's timeouts), so a long drain never delays a CURVE handshake; the proxy has
// its own loop thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/protocol/keys.h"
#include "ferry/switchover/driver.h"
#include "ferry/switchover/local.h"
#include "ferry/switchover/proxy.h"

namespace ferry::switchover {

struct AgentServiceConfig {
  std::string name;
  std::string driver;  // "proxy", "haproxy" or "nginx"
  ProxyServiceConfig proxy;
  std::string health_path = "/";
  HaproxyConfig haproxy;
  NginxConfig nginx;
};

struct AgentConfig {
  std::string listen = "tcp://0.0.0.0:7400";        // CURVE only; paired node keys only
  std::string key_dir = "/etc/ferry";               // node.key, peers/<node>.pub
  std::string state_dir = "/var/lib/ferry/switch";  // the proxy's current backends, across restarts
  Millis hold_lease{60000};                         // a hold without commit/rollback ends after this
  size_t max_queued = 16;                           // steps waiting for the worker; more are refused
  std::string log_level = "info";
  std::vector<AgentServiceConfig> services;
};

// The agent's config file: `key = value` lines, then one `[service NAME]` section per
// service (annotated example: deploy/switchover/agent.conf). Unknown keys and bad
// values are errors naming the line.
Result<AgentConfig> parseAgentConfig(const std::string& text, const std::string& origin = "config");
Result<AgentConfig> loadAgentConfig(const std::filesystem::path& path);

struct AgentStats {
  uint64_t requests = 0;       // well-formed requests from admitted nodes
  uint64_t auth_refusals = 0;  // connections the ZAP handler refused
  uint64_t malformed = 0;      // frames refused before any step ran
  uint64_t failed_steps = 0;   // steps that returned an error
  std::string last_error;
};

class Agent {
 public:
  // Starts the drivers (and the proxy), binds `config.listen` and starts the threads.
  // `keys` is the agent's own key pair; `allowed` the node keys it admits (refuses to
  // start with none).
  static Result<std::unique_ptr<Agent>> start(AgentConfig config, protocol::KeyPair keys,
                                              std::vector<protocol::PeerKey> allowed);
  virtual ~Agent() = default;

  // The bound control endpoint (the real port when "tcp://127.0.0.1:*" was asked).
  [[nodiscard]] virtual std::string endpoint() const = 0;
  // Where a `proxy` service's front listens.
  [[nodiscard]] virtual Result<Endpoint> proxyFront(const std::string& service) const = 0;
  // A `proxy` service's counters (where traffic goes, what is held now, ...).
  [[nodiscard]] virtual Result<ProxyCounters> proxyCounters(const std::string& service) const = 0;
  [[nodiscard]] virtual AgentStats stats() const = 0;
  // Stops listening, finishes nothing new, joins the threads. Idempotent.
  virtual void stop() = 0;
};

}  // namespace ferry::switchover
