// A minimal HTTP/1.1 client over a unix socket, for Podman's REST API service. One
// request per connection ("Connection: close"): no pooling, safe from any thread.
// Bodies of any size are streamed: a request body from a file (Content-Length for a
// regular file, chunked otherwise), a successful answer's body into a file as it
// arrives. Every exchange has deadlines (connect, and the whole exchange); a failure
// is reported with the phase it happened in, never thrown and never waited out.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "ferry/base/http.h"

namespace ferry::checkpoint {

struct UnixHttpRequest {
  std::string method = "GET";
  std::string target = "/";  // path and query, already percent-encoded
  http::Headers headers;     // extra headers
  std::string body;          // a small body, sent with Content-Length (always for POST/PUT)
  // Or stream this file as the body: Content-Length for a regular file, chunked for
  // anything else (a FIFO).
  std::filesystem::path body_file;
  // A 2xx answer's body goes into this file as it arrives (created 0600 or truncated;
  // a FIFO is opened when a reader is there). Other answers stay in memory.
  std::filesystem::path response_file;
  // Sees every piece of a 2xx body written to response_file, in order.
  std::function<void(std::string_view)> on_response_data;
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(5)};
  std::chrono::milliseconds timeout{std::chrono::seconds(30)};  // the whole exchange, connect included
  std::size_t max_body_in_memory = std::size_t{16} << 20;
};

enum class HttpFailure {
  kNone,
  kNoSocket,     // the socket file does not exist
  kRefused,      // it exists but nobody listens (or we may not connect: see detail)
  kConnect,      // connect() failed otherwise
  kTimeout,      // a deadline passed (see phase)
  kClosed,       // the server closed the connection before the answer was complete
  kBadResponse,  // not HTTP, or larger than allowed
  kLocal,        // a local file could not be read or written
};

enum class HttpPhase { kConnecting, kSending, kWaiting, kReceiving, kDone };

struct UnixHttpResult {
  HttpFailure failure = HttpFailure::kNone;
  HttpPhase phase = HttpPhase::kConnecting;  // where the exchange ended
  std::string detail;                        // what went wrong, for messages
  int status = 0;                            // 0 without a complete answer head
  http::Headers headers;
  std::string body;                   // answers not written to response_file
  std::uint64_t body_bytes = 0;       // body bytes received (into the file or memory)
  std::uint64_t sent_body_bytes = 0;  // request body bytes handed to the kernel
  std::chrono::milliseconds elapsed{0};

  [[nodiscard]] bool ok() const { return failure == HttpFailure::kNone; }
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
    return http::findHeader(headers, name);
  }
};

// Never fails itself: the outcome, good or bad, is in the result.
UnixHttpResult unixHttpRequest(const std::filesystem::path& socket, const UnixHttpRequest& request);

std::string_view phaseName(HttpPhase phase);

}  // namespace ferry::checkpoint
