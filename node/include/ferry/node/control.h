// The node's local control socket: the CLI asks the daemon for status, a flush,
// a verify, a migration. One JSON object per line each way over a unix stream
// socket that only root (or the daemon's own uid) may use: the socket file is
// 0600 and every connection's SO_PEERCRED is checked.
//
// A request may be answered by any number of event lines ({"event": ...}, e.g. a
// migration's progress) before its one answer line (no "event" key). Each
// connection is served on its own thread (at most kMaxConnections at once), so a
// long request (flush, migrate) never blocks `ferry status`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"

namespace ferry::node {

// Sends one event line to the client; false once the client has gone.
using ControlEmit = std::function<bool(const nlohmann::json& event)>;
using ControlHandler = std::function<nlohmann::json(const nlohmann::json& request, const ControlEmit& emit)>;

class ControlServer {
 public:
  static constexpr int kMaxConnections = 16;
  // Binds the socket (replacing a stale one) and starts serving on its own thread.
  // Each request is answered by `handler`; a handler that throws answers
  // {"ok": false, "error": ...}.
  static Result<std::unique_ptr<ControlServer>> start(const std::filesystem::path& path,
                                                      ControlHandler handler);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  ~ControlServer();  // stops the thread and removes the socket file

 private:
  ControlServer(std::filesystem::path path, int listen_fd, int wake_fd, ControlHandler handler);
  void run();
  void serve(int conn);

  std::filesystem::path path_;
  int listen_fd_;
  int wake_read_fd_;
  int wake_write_fd_ = -1;
  ControlHandler handler_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  int connections_ = 0;  // serving threads alive (guarded by mu_)
  bool stopping_ = false;
};

// Sends one request and waits (at most `timeout`) for the answer; event lines that
// come first go to `on_event` (if given).
Result<nlohmann::json> controlRequest(const std::filesystem::path& path, const nlohmann::json& request,
                                      std::chrono::milliseconds timeout,
                                      const std::function<void(const nlohmann::json&)>& on_event = {});

}  // namespace ferry::node
