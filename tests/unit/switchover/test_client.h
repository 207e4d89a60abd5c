// Blocking HTTP/1.1 requests with deadlines for the switch-over tests, on a fresh
// connection or a kept-alive one, and a way to run many at once.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "ferry/switchover/driver.h"

namespace ferry::switchover::testing {

using Clock = std::chrono::steady_clock;

struct HttpResult {
  int status = 0;  // 0: no complete answer
  std::string body;
  std::string reason;   // X-Ferry-Reason, when ferry answered itself
  std::string backend;  // X-Backend, when a fake backend answered
  std::string error;    // why there is no answer
  Clock::time_point finished{};
};

// "GET /path" on a new connection (Connection: close).
HttpResult fetch(const Endpoint& via, const std::string& method, const std::string& path,
                 const std::string& body = "", Millis timeout = Millis(10000));

// Sends raw bytes on a new connection and reads until the answer is complete or closed.
HttpResult raw(const Endpoint& via, const std::string& bytes, Millis timeout = Millis(10000));

// One kept-alive client connection.
class KeepAlive {
 public:
  explicit KeepAlive(const Endpoint& via);
  ~KeepAlive();
  KeepAlive(const KeepAlive&) = delete;
  KeepAlive& operator=(const KeepAlive&) = delete;
  HttpResult request(const std::string& method, const std::string& path, const std::string& body = "",
                     Millis timeout = Millis(10000));
  [[nodiscard]] bool connected() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
  std::string pending_;
};

// Starts `fn` on its own thread; get() the result later.
std::future<HttpResult> async(std::function<HttpResult()> fn);

// True while `pid` runs (a zombie does not: daemons are reaped by init, late).
bool running(int pid);

// A free TCP port on 127.0.0.1 (bound and released; for programs that need a port number).
uint16_t freePort();

}  // namespace ferry::switchover::testing
