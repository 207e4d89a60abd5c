// Just enough HTTP/1.1 (RFC 9112) for the hand-off proxy to find message boundaries:
// request and response heads, how long a body is, chunked bodies as a stream, and
// which requests may be re-sent. Bytes are forwarded unchanged; nothing here
// interprets a body. Strict where smuggling lives: both Content-Length and
// Transfer-Encoding, differing Content-Lengths, whitespace before a colon and folded
// header lines are refused.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::switchover::http1 {

enum class Parse { kIncomplete, kDone, kBad };

enum class BodyKind {
  kNone,        // no body
  kLength,      // Content-Length bytes
  kChunked,     // chunked transfer coding (the last coding)
  kUntilClose,  // responses only: the body ends when the server closes
};

struct RequestHead {
  std::string method;
  std::string target;
  int minor = 1;  // HTTP/1.<minor>
  BodyKind body = BodyKind::kNone;
  uint64_t length = 0;
  bool keepAlive = true;  // the client keeps the connection after this exchange
  bool upgrade = false;   // asks for a protocol switch (Connection: upgrade + Upgrade)
  size_t headBytes = 0;   // request line + headers + the empty line
};

struct ResponseHead {
  int status = 0;
  int minor = 1;
  BodyKind body = BodyKind::kNone;
  uint64_t length = 0;
  bool keepAlive = true;  // the server keeps the connection after this exchange
  size_t headBytes = 0;
};

// Parses the head at the start of `buf`. kIncomplete: no empty line yet (the caller
// refuses heads over its limit). kBad: `error` says why (a client gets 400).
Parse parseRequestHead(std::string_view buf, RequestHead& out, std::string& error);
// `requestMethod` decides whether a body follows (HEAD never has one).
Parse parseResponseHead(std::string_view buf, std::string_view requestMethod, ResponseHead& out,
                        std::string& error);

// Walks a chunked body as it streams by, without changing it.
class ChunkedScanner {
 public:
  // Consumes bytes of `data` that belong to the body, up to its end; returns how many.
  // Sets `bad` on malformed framing.
  size_t feed(std::string_view data, bool& bad);
  [[nodiscard]] bool done() const { return state_ == State::kDone; }

 private:
  enum class State {
    kSize,
    kExtension,
    kSizeLf,
    kData,
    kDataCr,
    kDataLf,
    kTrailerStart,
    kTrailer,
    kTrailerLf,
    kDone
  };
  State state_ = State::kSize;
  uint64_t size_ = 0;
  int digits_ = 0;
  bool emptyTrailerLine_ = true;
};

// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2): may be sent again when
// the connection broke before any answer.
bool isIdempotent(std::string_view method);

// The head with one header line added before the empty line.
std::string withHeader(std::string_view head, std::string_view name, std::string_view value);

}  // namespace ferry::switchover::http1
