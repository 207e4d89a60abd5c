// A fake of Podman's REST API service: an HTTP/1.1 server on a unix socket in a
// temporary directory, one thread, one connection at a time. A handler decides each
// answer; the server records every request with its whole body, and can misbehave:
// answer in chunks with a hook between them, end the body by closing, send raw bytes,
// answer before reading the request body, or never answer at all.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ferry/base/http.h"

namespace ferry::checkpoint::testing {

struct FakeRequest {
  std::string method;
  std::string target;  // as sent
  std::string path;    // decoded, without the query
  std::string query;   // raw, after '?'
  http::Headers headers;
  std::string body;
  bool chunked = false;  // the body came with Transfer-Encoding: chunked
  [[nodiscard]] bool hasParam(const std::string& name_value) const;  // "keep=true"
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
    return http::findHeader(headers, name);
  }
};

struct FakeResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  bool chunked = false;                      // Transfer-Encoding: chunked, in pieces of chunk_size
  std::size_t chunk_size = 65521;            // odd on purpose: never aligned with tar blocks
  bool close_delimited = false;              // no length: the body ends at the close
  std::string raw;                           // if set: sent verbatim instead, then the connection closes
  bool never_answer = false;                 // hold the connection without a word until the client leaves
  bool hang_up = false;                      // close the connection without a word
  std::function<void(std::size_t)> on_sent;  // after each piece of the body, with the bytes sent so far
};

using FakeHandler = std::function<FakeResponse(const FakeRequest&)>;

// Podman's error body (pkg/api/handlers/utils/errors.go).
std::string podmanError(int status, const std::string& cause, const std::string& message);

class FakePodmanApi {
 public:
  explicit FakePodmanApi(FakeHandler handler);
  ~FakePodmanApi();
  FakePodmanApi(const FakePodmanApi&) = delete;
  FakePodmanApi& operator=(const FakePodmanApi&) = delete;

  [[nodiscard]] const std::filesystem::path& socket() const { return socket_; }
  [[nodiscard]] const std::filesystem::path& dir() const { return dir_; }
  std::vector<FakeRequest> requests();
  // false: answer right after the request head, without reading its body.
  void setReadBodies(bool read) { read_bodies_.store(read); }

 private:
  void loop();
  void serve(int fd);
  bool readRequest(int fd, FakeRequest& req);
  bool waitReadable(int fd, int timeout_ms);

  FakeHandler handler_;
  std::filesystem::path dir_;
  std::filesystem::path socket_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::atomic<bool> read_bodies_{true};
  std::mutex mu_;
  std::vector<FakeRequest> requests_;
  std::thread thread_;
};

// Deterministic bytes for bodies and archives (xorshift from `seed`).
inline std::string pattern(std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761U + 1;
  for (auto& c : s) {
    x ^= x << 13U;
    x ^= x >> 17U;
    x ^= x << 5U;
    c = static_cast<char>(x & 0xffU);
  }
  return s;
}

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void spit(const std::filesystem::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << data;
}

}  // namespace ferry::checkpoint::testing
