// ferry's hand-off proxy: the data plane of the `proxy` driver, run by the switch
// agent (`ferry proxy run`) on the load-balancer host.
//
// One thread runs an epoll loop over every front (one per service) and every
// connection; nothing in it blocks. Per service it forwards to one backend and can:
//   hold     new HTTP requests (and, in tcp mode, new connections) are accepted and
//            read but not forwarded; requests already in flight may finish;
//   release  point at a backend and hand it what is held, oldest first.
// HTTP/1.1 is parsed only to find message boundaries; bytes go through unchanged
// apart from an added X-Forwarded-For. An idempotent request (GET, HEAD, OPTIONS,
// TRACE, PUT, DELETE) whose backend connection fails or closes before the first
// response byte is sent again (if it fits the retry buffer), on whatever backend is
// current then — during a hold that means it waits for the release. Every bound is
// explicit: held requests, client connections, buffers per connection, time per
// phase; past one the client gets a 503 (HTTP) or a close (tcp) and the reason is
// logged and counted.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/switchover/driver.h"

namespace ferry::switchover {

enum class ProxyMode { kHttp, kTcp };

struct ProxyServiceConfig {
  std::string name;               // the service ("ref")
  Endpoint front{"0.0.0.0", 80};  // where clients connect (port 0: any, for tests)
  ProxyMode mode = ProxyMode::kHttp;
  Endpoint backend;                         // where traffic goes at start
  size_t max_held = 1024;                   // held requests (tcp: connections); more get a 503 (tcp: closed)
  size_t max_connections = 4096;            // client connections at once; more get a 503 (tcp: closed)
  size_t buffer_bytes = size_t{64} * 1024;  // per connection and direction; also the largest head
  size_t retry_bytes = size_t{64} * 1024;   // an idempotent request is kept for a retry only up to this size
  int max_attempts = 3;                     // sends of one request, the first included
  Millis connect_timeout{1000};             // to a backend
  Millis request_timeout{10000};            // a client's request head must arrive within this
  Millis response_timeout{60000};           // a backend must start answering within this after the request
  Millis idle_timeout{60000};               // a connection (or tunnel) without a byte either way is closed
};

// Counts since the proxy started, and of the current or last switch (since hold()).
struct ProxyCounters {
  Endpoint backend;  // where new traffic goes now
  bool holding = false;
  uint64_t connections = 0;  // accepted
  uint64_t open_connections = 0;
  uint64_t requests = 0;   // HTTP requests read (tcp: connections)
  uint64_t completed = 0;  // answered by a backend in full (tcp: closed cleanly)
  uint64_t in_flight = 0;  // at a backend now
  uint64_t held_now = 0;
  // of the current or last switch:
  uint64_t held = 0, released = 0, max_hold_ms = 0, retried = 0, refused = 0, failed = 0;
  // since start:
  uint64_t total_retried = 0, total_refused = 0, total_failed = 0;
};

struct HoldOutcome {
  uint64_t in_flight_at_start = 0;  // requests/connections at the backend when the hold began
  uint64_t drained = 0;             // of those, finished within the drain time
  uint64_t in_flight_left = 0;      // still at the backend when the drain time passed
  bool already_holding = false;     // a repeated hold (idempotent)
};

struct ReleaseOutcome {
  uint64_t released = 0;  // held requests handed to the backend now
  uint64_t max_hold_ms = 0;
  uint64_t cut = 0;      // requests/connections still at the old backend, ended (see README)
  uint64_t retried = 0;  // of those, idempotent requests re-sent to the new backend
};

class HandoffProxy {
 public:
  // Binds every front and starts the loop thread. Fails on a duplicate service name,
  // a front that cannot be bound, or a backend that does not resolve.
  static Result<std::unique_ptr<HandoffProxy>> start(std::vector<ProxyServiceConfig> services);
  virtual ~HandoffProxy() = default;

  // The address a service's front is bound to (the real port when 0 was asked).
  [[nodiscard]] virtual Result<Endpoint> front(const std::string& service) const = 0;

  // Starts holding new requests of `service` (idempotent: a repeated call keeps the
  // requests held so far and their clocks), then waits up to `drain` for those in
  // flight to finish. Held requests wait at most `hold_timeout` each; if no release
  // comes within `lease`, the proxy releases to the backend it had before the hold
  // (a node that died mid-switch must not leave traffic held for ever).
  virtual Result<HoldOutcome> hold(const std::string& service, Millis hold_timeout, Millis drain,
                                   Millis lease) = 0;

  // Points `service` at `to` (resolved here) and hands it every held request. When
  // `to` differs from the backend before, what is still in flight at that backend
  // is ended: idempotent requests without an answer byte are re-sent to `to`, others
  // get a 502 saying so, tunnels are closed. Idempotent.
  virtual Result<ReleaseOutcome> release(const std::string& service, const Endpoint& to) = 0;

  [[nodiscard]] virtual Result<ProxyCounters> counters(const std::string& service) const = 0;

  // Closes every front and connection and joins the thread. Idempotent.
  virtual void stop() = 0;
};

}  // namespace ferry::switchover
