// The node's local control socket: the CLI asks the daemon for status, a flush,
// a verify, a migration. One JSON object per line each way over a unix stream
// socket that only root (or the daemon's own uid) may use: the socket file is
// 0600 and every connection's SO_PEERCRED is checked.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"

namespace ferry::node {

using ControlHandler = std::function<nlohmann::json(const nlohmann::json& request)>;

class ControlServer {
 public:
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

  std::filesystem::path path_;
  int listen_fd_;
  int wake_read_fd_;
  int wake_write_fd_ = -1;
  ControlHandler handler_;
  std::thread thread_;
};

// Sends one request and waits (at most `timeout`) for the answer.
Result<nlohmann::json> controlRequest(const std::filesystem::path& path, const nlohmann::json& request,
                                      std::chrono::milliseconds timeout);

}  // namespace ferry::node
