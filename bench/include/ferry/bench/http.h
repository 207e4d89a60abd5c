// A small non-blocking HTTP/1.1 client for measuring a service, not for general use.
//
// Every request opens a fresh TCP connection with its own non-blocking connect() and
// its own deadlines (connect and total), so an attempt never inherits the kernel's SYN
// back-off (1 s, 3 s, ...): the attempt is given up at its deadline and the next one,
// due a few milliseconds later, sends a new SYN. Many requests may be in flight at once;
// one epoll set drives them all from the caller's thread. Requests carry
// "Connection: close"; answers are delimited by Content-Length, chunked encoding or
// the close. Only plain http:// with numeric ports; names are resolved once.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/base/http.h"
#include "ferry/bench/stats.h"

namespace ferry::bench {

using Clock = std::chrono::steady_clock;

struct Url {
  std::string host;
  std::uint16_t port = 80;
  std::string target = "/";  // path and query, as sent on the request line

  // "http://host[:port]" (port only when not 80).
  [[nodiscard]] std::string origin() const;
  // Same host and port, another path.
  [[nodiscard]] Url withTarget(std::string t) const;
};

// Parses "http://host[:port][/path[?query]]". https and other schemes are refused.
Result<Url> parseUrl(std::string_view text);

// Parses "10ms", "1s", "2.5s", "500us", "3m", "1h"; a bare number is milliseconds.
Result<std::chrono::microseconds> parseDuration(std::string_view text);

// The message parsing lives in base/ (ferry/base/http.h), shared with the Podman API client.
using http::Headers;  // names in lower case
using http::HttpResponse;
using http::ParseOutcome;
using http::parseResponse;
using http::ParseState;

struct HttpRequest {
  std::string method = "GET";
  std::string target = "/";
  Headers headers;   // extra headers (Cookie, Content-Type ...)
  std::string body;  // sent with Content-Length when non-empty or method is POST
};

using http::formEncode;  // application/x-www-form-urlencoded body from name/value pairs

// The bytes sent for a request to `host_header`.
std::string serializeRequest(const HttpRequest& request, const std::string& host_header);

// A resolved address plus the Host header to send.
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string host_header;
};

Result<Endpoint> resolve(const Url& url);

struct Timeouts {
  std::chrono::microseconds connect{std::chrono::milliseconds(500)};  // for the handshake
  std::chrono::microseconds total{std::chrono::seconds(1)};           // for the whole request
};

// One finished attempt.
struct Attempt {
  std::uint64_t tag = 0;  // the caller's tag from start()
  FailureKind kind = FailureKind::kOk;
  int sys_errno = 0;           // the errno behind a network failure, else 0
  bool sent = false;           // some request bytes were handed to the kernel
  Clock::time_point started;   // just before connect()
  Clock::time_point finished;  // answer complete, or the attempt given up
  HttpResponse response;       // status != 0 when a complete answer arrived
};

class HttpClient {
 public:
  static Result<std::unique_ptr<HttpClient>> create();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request now, on a new connection. Never blocks; an attempt that cannot
  // even start is reported by the next poll() as kLocalError.
  void start(const Endpoint& endpoint, const HttpRequest& request, std::uint64_t tag,
             const Timeouts& timeouts);

  // Drives the connections until `until` or until at least one attempt finished,
  // whichever is first, and returns the attempts that finished (in completion order).
  std::vector<Attempt> poll(Clock::time_point until);

  // Requests started but not finished.
  [[nodiscard]] std::size_t inFlight() const;

  // Closes every connection without reporting it (used when giving up entirely).
  void abortAll();

 private:
  struct Impl;
  explicit HttpClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Convenience: one request, waited for. Never fails itself; the outcome is in Attempt.
Attempt fetchOnce(HttpClient& client, const Endpoint& endpoint, const HttpRequest& request,
                  const Timeouts& timeouts);

// Raises this process's open-file limit to its hard limit (many connections in flight).
void raiseFileLimit();

}  // namespace ferry::bench
