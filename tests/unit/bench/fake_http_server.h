// A tiny HTTP server on 127.0.0.1 (port 0) in its own thread that plays the reference
// service's contract (health, login, whoami, write, writes) and can be told to
// misbehave: refuse connections, stall answers (like a frozen container), close
// connections, answer 503, commit a write but drop the answer, or stop accepting.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ferry::bench::testing {

class FakeHttpServer {
 public:
  enum class Mode {
    kAnswer,          // answer normally (and answer requests held while stalled)
    kStall,           // read requests but hold the answers until the mode changes
    kClose,           // accept and close at once
    kRefuse,          // close the listening socket: connections are refused
    k503,             // answer 503
    kCommitNoAnswer,  // writes are committed but the connection is closed without an answer
    kNoAccept,        // stop accepting with a backlog of 0: new handshakes do not finish
  };

  FakeHttpServer();
  ~FakeHttpServer();
  FakeHttpServer(const FakeHttpServer&) = delete;
  FakeHttpServer& operator=(const FakeHttpServer&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string origin() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Asks the server thread to switch; returns once it did, with the time it switched.
  std::chrono::steady_clock::time_point setMode(Mode mode);

  void setSessionValid(bool valid) { session_valid_.store(valid); }

  // Writes committed so far, answered or not: lets a test wait for the writer instead
  // of sleeping for it.
  [[nodiscard]] std::int64_t writesCommitted() const { return writes_committed_.load(); }

  // The writes table.
  std::vector<std::pair<std::int64_t, std::int64_t>> rows(const std::string& writer);
  bool deleteRow(const std::string& writer, std::int64_t seq);
  void insertRow(const std::string& writer, std::int64_t seq);

 private:
  struct Client {
    int fd = -1;
    std::string in;
    bool held = false;  // a complete request waiting for kStall to end
  };

  void loop();
  bool openListener();
  void closeListener();
  void handleRequest(Client& c, Mode mode);
  std::string route(const std::string& method, const std::string& target, const std::string& cookie,
                    const std::string& body, Mode mode, bool& answer);

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> wanted_{0};
  std::atomic<int> current_{0};
  std::atomic<std::int64_t> switched_ns_{0};
  std::atomic<bool> session_valid_{true};
  std::atomic<std::int64_t> writes_committed_{0};
  std::mutex mu_;
  std::vector<std::pair<std::string, std::pair<std::int64_t, std::int64_t>>> table_;  // writer, (id, seq)
  std::int64_t next_id_ = 1;
  std::vector<Client> clients_;
  std::thread thread_;
};

}  // namespace ferry::bench::testing
