// The drivers that act on the load-balancer host itself. The switch agent
// (`ferry proxy run`) runs one per configured service for the nodes; tests run them
// directly. Each implements the three steps of driver.h with the same promises:
// idempotent, bounded, an error that says what failed and what to do.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/switchover/driver.h"
#include "ferry/switchover/proxy.h"

namespace ferry::switchover {

// `proxy`: ferry's hand-off proxy (proxy.h). prepare holds and drains; commit waits
// until the target is healthy, then releases to it; rollback releases to the source.
struct ProxyDriverConfig {
  std::string service;
  std::string health_path = "/";  // GET on the target before commit (2xx/3xx); empty: TCP connect only
  Millis lease{60000};            // a hold without commit/rollback ends after this (back to the source)
  std::string state_file;         // where the current backend is kept across agent restarts; empty: nowhere
};
// `proxy` must outlive the driver (the agent owns both).
std::unique_ptr<Driver> makeProxyDriver(HandoffProxy& proxy, ProxyDriverConfig config);

// `haproxy`: HAProxy's runtime API on a local stats socket (`stats socket ... level
// admin`). The backend has one server per host that may run the service (a "slot";
// spare slots start `disabled`). prepare: the target's slot gets the target's address
// and `ready` — before the target listens, so HAProxy's connection retries hold new
// requests there — and the source's slot `drain`; it waits until the source has no
// session. commit: once the target is healthy, the source's slot goes to `maint`.
// rollback: source `ready`, target `maint`. See README.md for the HAProxy settings
// this relies on (retries, option redispatch, timeout connect).
struct HaproxyConfig {
  std::string service;
  std::string socket;                // the stats socket, e.g. /run/haproxy/admin.sock
  std::string backend;               // HAProxy's backend name
  std::vector<std::string> servers;  // the slots the driver may use; empty: every server of the backend
  std::string health_path = "/";
  Millis command_timeout{2000};  // per runtime API command
  Millis poll_interval{50};      // while draining
};
Result<std::unique_ptr<Driver>> makeHaproxyDriver(HaproxyConfig config);

// `nginx`: ferry owns one small file that nginx.conf includes, holding only the
// service's `upstream` block; each step rewrites it, checks the configuration
// (`nginx -t`) and reloads gracefully (old workers finish their requests), then waits
// until new workers run. nginx cannot hold requests: prepare lists the target as a
// backup server behind the source; commit leaves only the target; rollback only the
// source.
struct NginxConfig {
  std::string service;
  std::string nginx = "nginx";                // the binary
  std::string conf;                           // nginx.conf to test and reload (-c)
  std::string pid_file;                       // the master's pid file (its `pid` directive)
  std::string upstream_file;                  // the file ferry rewrites (included by conf)
  std::string upstream_name;                  // the upstream block's name, as proxy_pass uses it
  std::string server_params = "max_fails=0";  // appended to every `server` line
  std::string health_path = "/";
  Millis reload_timeout{10000};
};
Result<std::unique_ptr<Driver>> makeNginxDriver(NginxConfig config);

}  // namespace ferry::switchover
