// A keep-alive HTTP/1.1 backend on 127.0.0.1 (port 0) in its own thread, for the
// switch-over tests. Every answer names the backend, so a test sees who served it.
//   GET  /hello          200, body "<name>"
//   GET  /slow/<ms>      200 after <ms> milliseconds
//   GET  /big/<bytes>    200 with <bytes> bytes ('x'), Content-Length
//   GET  /chunked/<n>    200, chunked, n chunks of "<name>\n"
//   GET  /health         200 "ok"
//   POST /echo           200, body "<name>:<request body>"
//   anything else        404
// It can stall every answer until told otherwise (a frozen container), close the next
// N requests' connections without answering, or refuse connections (no listener).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ferry/switchover/driver.h"

namespace ferry::switchover::testing {

class FakeBackend {
 public:
  explicit FakeBackend(std::string name);
  ~FakeBackend();
  FakeBackend(const FakeBackend&) = delete;
  FakeBackend& operator=(const FakeBackend&) = delete;

  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] Endpoint endpoint() const { return {"127.0.0.1", port_}; }
  [[nodiscard]] const std::string& name() const { return name_; }

  void setStalled(bool stalled);      // hold every answer (requests are still read and counted)
  void closeNext(int n);              // read the next n requests, then close without answering
  void setListening(bool listening);  // false: connections are refused; waits until it took effect

  // Requests read so far (also those closed or stalled), by path and in total.
  [[nodiscard]] int requests(const std::string& path) const;
  [[nodiscard]] int totalRequests() const;
  [[nodiscard]] std::string lastForwardedFor() const;

 private:
  struct Conn {
    int fd = -1;
    std::string in;
    std::string out;
    size_t outOff = 0;
    bool closeAfter = false;
    // A parsed request waiting to be answered (stall, slow).
    bool waiting = false;
    std::string method, path, body;
    std::chrono::steady_clock::time_point answerAt{};
  };

  void loop();
  bool parse(Conn& c);
  void answer(Conn& c);
  void openListener();

  std::string name_;
  int listenFd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> stalled_{false};
  std::atomic<int> closeNext_{0};
  std::atomic<int> wantListening_{1};
  std::atomic<int> listening_{1};
  mutable std::mutex mu_;
  std::map<std::string, int> counts_;
  int total_ = 0;
  std::string lastXff_;
  std::vector<Conn> conns_;
  std::thread thread_;
};

}  // namespace ferry::switchover::testing
