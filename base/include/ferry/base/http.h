// HTTP/1.1 message parsing, without any I/O: response heads, the body's framing, an
// incremental chunked-encoding decoder (bodies of any size pass through a bounded
// buffer), whole-buffer answers, request heads (for test servers) and percent-encoding.
// The probe's client (bench/) and the Podman API client (checkpoint/) share it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ferry::http {

using Headers = std::vector<std::pair<std::string, std::string>>;  // names in lower case

// First header with this (lower-case) name.
std::optional<std::string> findHeader(const Headers& headers, std::string_view name);

enum class ParseState { kIncomplete, kComplete, kBad };

// ---- responses ---------------------------------------------------------------------

struct ResponseHead {
  int status = 0;
  Headers headers;
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
    return findHeader(headers, name);
  }
};

struct HeadOutcome {
  ParseState state = ParseState::kIncomplete;
  ResponseHead head;      // filled when complete
  std::size_t bytes = 0;  // of `raw` taken by the head (and any 1xx answers before it)
};

// Parses the status line and headers at the start of `raw`, skipping interim (1xx)
// answers. kIncomplete until the empty line arrives; kBad for a malformed head or
// one longer than 64 KiB.
HeadOutcome parseResponseHead(std::string_view raw);

// How the body after a head is delimited (RFC 9112 §6.3).
struct Framing {
  enum Kind { kNone, kLength, kChunked, kClose } kind = kClose;
  std::uint64_t length = 0;  // kLength
};
// nullopt when Content-Length is malformed. `request_was_head`: a HEAD answer has no body.
std::optional<Framing> responseFraming(const ResponseHead& head, bool request_was_head = false);

// Decodes a chunked body piece by piece; feed it whatever arrived.
class ChunkedDecoder {
 public:
  // Appends the data bytes found in `in` to `out`; `used` is how much of `in` was
  // taken (less than all only once the body is complete: the rest is the next
  // message). kComplete after the last chunk and its trailers, kBad on a malformed
  // chunk, else kIncomplete.
  ParseState feed(std::string_view in, std::string& out, std::size_t& used);
  [[nodiscard]] bool done() const { return state_ == State::kDone; }

 private:
  enum class State { kSize, kData, kDataEnd, kTrailer, kDone, kBad };
  State state_ = State::kSize;
  std::string line_;             // a size or trailer line being collected
  std::uint64_t remaining_ = 0;  // data bytes left in the current chunk
  std::size_t trailer_bytes_ = 0;
};

// A whole chunked body in `data`. kIncomplete when more bytes are needed.
ParseState dechunk(std::string_view data, std::string& body);

struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;  // de-chunked
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
    return findHeader(headers, name);
  }
};

struct ParseOutcome {
  ParseState state = ParseState::kIncomplete;
  HttpResponse response;  // filled when complete
};

// Parses a raw HTTP/1.x answer held in memory. `peer_closed`: the connection ended,
// so a body with neither length nor chunking ends here and anything still
// incomplete is kBad.
ParseOutcome parseResponse(std::string_view raw, bool peer_closed);

// ---- requests (what a server reads) ------------------------------------------------

struct RequestHead {
  std::string method;
  std::string target;  // as sent: path and query, percent-encoded
  Headers headers;
  [[nodiscard]] std::optional<std::string> header(std::string_view name) const {
    return findHeader(headers, name);
  }
};

struct RequestHeadOutcome {
  ParseState state = ParseState::kIncomplete;
  RequestHead head;
  std::size_t bytes = 0;
};

RequestHeadOutcome parseRequestHead(std::string_view raw);

// ---- encoding ----------------------------------------------------------------------

// Every byte but the unreserved ones (A-Z a-z 0-9 - . _ ~) as %XX: safe in a path
// segment and in a query value.
std::string percentEncode(std::string_view text);
// The inverse; nullopt on a malformed escape.
std::optional<std::string> percentDecode(std::string_view text);

// application/x-www-form-urlencoded body from name/value pairs.
std::string formEncode(const std::vector<std::pair<std::string, std::string>>& fields);

}  // namespace ferry::http
