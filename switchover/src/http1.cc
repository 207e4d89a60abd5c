#include "http1.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <vector>

namespace ferry::switchover::http1 {

namespace {

bool isTokenChar(char c) {
  if (std::isalnum(static_cast<unsigned char>(c)) != 0) return true;
  switch (c) {
    case '!':
    case '#':
    case '$':
    case '%':
    case '&':
    case '\'':
    case '*':
    case '+':
    case '-':
    case '.':
    case '^':
    case '_':
    case '`':
    case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Calls fn(element) for each comma-separated element of a list header.
template <typename F>
void forEachElement(std::string_view value, F&& fn) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    fn(trim(value.substr(0, comma)));
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
}

struct Header {
  std::string_view name;
  std::string_view value;
};

// Splits the head into its first line and headers. False on a malformed header.
bool splitHead(std::string_view head, std::string_view& first, std::vector<Header>& headers,
               std::string& error) {
  size_t eol = head.find("\r\n");
  first = head.substr(0, eol);
  size_t pos = eol + 2;
  while (pos < head.size()) {
    eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    if (line.empty()) break;
    if (line.front() == ' ' || line.front() == '\t') {
      error = "folded header line (obsolete line folding is refused)";
      return false;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      error = "header line without a name";
      return false;
    }
    std::string_view name = line.substr(0, colon);
    if (!std::all_of(name.begin(), name.end(), isTokenChar)) {
      error = "invalid header name '" + std::string(name) + "'";
      return false;
    }
    std::string_view value = trim(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) { return c == '\0' || c == '\r' || c == '\n'; })) {
      error = "control character in header '" + std::string(name) + "'";
      return false;
    }
    headers.push_back({name, value});
  }
  return true;
}

bool parseVersion(std::string_view v, int& minor) {
  if (v.size() != 8 || v.substr(0, 7) != "HTTP/1.") return false;
  if (v[7] != '0' && v[7] != '1') return false;
  minor = v[7] - '0';
  return true;
}

struct Framing {
  bool hasLength = false;
  uint64_t length = 0;
  bool hasTransferEncoding = false;
  bool chunkedLast = false;
  bool close = false;
  bool keepAlive = false;
  bool connectionUpgrade = false;
  bool hasUpgrade = false;
};

bool readFraming(const std::vector<Header>& headers, Framing& f, std::string& error) {
  for (const auto& h : headers) {
    if (iequals(h.name, "content-length")) {
      uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(h.value.data(), h.value.data() + h.value.size(), n);
      if (h.value.empty() || ec != std::errc() || ptr != h.value.data() + h.value.size()) {
        error = "invalid Content-Length '" + std::string(h.value) + "'";
        return false;
      }
      if (f.hasLength && f.length != n) {
        error = "two different Content-Length values";
        return false;
      }
      f.hasLength = true;
      f.length = n;
    } else if (iequals(h.name, "transfer-encoding")) {
      f.hasTransferEncoding = true;
      f.chunkedLast = false;
      forEachElement(h.value, [&](std::string_view e) { f.chunkedLast = iequals(e, "chunked"); });
    } else if (iequals(h.name, "connection")) {
      forEachElement(h.value, [&](std::string_view e) {
        if (iequals(e, "close")) f.close = true;
        if (iequals(e, "keep-alive")) f.keepAlive = true;
        if (iequals(e, "upgrade")) f.connectionUpgrade = true;
      });
    } else if (iequals(h.name, "upgrade")) {
      f.hasUpgrade = true;
    }
  }
  return true;
}

}  // namespace

Parse parseRequestHead(std::string_view buf, RequestHead& out, std::string& error) {
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) return Parse::kIncomplete;
  const std::string_view head = buf.substr(0, end + 4);
  std::string_view first;
  std::vector<Header> headers;
  if (!splitHead(head, first, headers, error)) return Parse::kBad;
  const size_t sp1 = first.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : first.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || first.find(' ', sp2 + 1) != std::string_view::npos) {
    error = "malformed request line";
    return Parse::kBad;
  }
  const std::string_view method = first.substr(0, sp1);
  const std::string_view target = first.substr(sp1 + 1, sp2 - sp1 - 1);
  if (method.empty() || !std::all_of(method.begin(), method.end(), isTokenChar)) {
    error = "invalid method";
    return Parse::kBad;
  }
  if (target.empty() || std::any_of(target.begin(), target.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
      })) {
    error = "invalid request target";
    return Parse::kBad;
  }
  RequestHead r;
  if (!parseVersion(first.substr(sp2 + 1), r.minor)) {
    error = "not HTTP/1.0 or HTTP/1.1";
    return Parse::kBad;
  }
  Framing f;
  if (!readFraming(headers, f, error)) return Parse::kBad;
  if (f.hasTransferEncoding && f.hasLength) {
    error = "both Content-Length and Transfer-Encoding";
    return Parse::kBad;
  }
  if (f.hasTransferEncoding) {
    if (!f.chunkedLast || r.minor == 0) {
      error = "a Transfer-Encoding other than chunked";
      return Parse::kBad;
    }
    r.body = BodyKind::kChunked;
  } else if (f.hasLength && f.length > 0) {
    r.body = BodyKind::kLength;
    r.length = f.length;
  }
  r.method = std::string(method);
  r.target = std::string(target);
  r.keepAlive = r.minor == 1 ? !f.close : (f.keepAlive && !f.close);
  r.upgrade = f.connectionUpgrade && f.hasUpgrade;
  r.headBytes = head.size();
  out = std::move(r);
  return Parse::kDone;
}

Parse parseResponseHead(std::string_view buf, std::string_view requestMethod, ResponseHead& out,
                        std::string& error) {
  const size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) return Parse::kIncomplete;
  const std::string_view head = buf.substr(0, end + 4);
  std::string_view first;
  std::vector<Header> headers;
  if (!splitHead(head, first, headers, error)) return Parse::kBad;
  ResponseHead r;
  if (first.size() < 12 || !parseVersion(first.substr(0, 8), r.minor) || first[8] != ' ') {
    error = "malformed status line";
    return Parse::kBad;
  }
  const std::string_view code = first.substr(9, 3);
  auto [ptr, ec] = std::from_chars(code.data(), code.data() + 3, r.status);
  if (ec != std::errc() || ptr != code.data() + 3 || r.status < 100 || r.status > 599 ||
      (first.size() > 12 && first[12] != ' ')) {
    error = "malformed status code";
    return Parse::kBad;
  }
  Framing f;
  if (!readFraming(headers, f, error)) return Parse::kBad;
  r.keepAlive = r.minor == 1 ? !f.close : (f.keepAlive && !f.close);
  if (requestMethod == "HEAD" || r.status < 200 || r.status == 204 || r.status == 304) {
    r.body = BodyKind::kNone;
  } else if (f.hasTransferEncoding) {
    // The server decides; anything but chunked last is delimited by the close.
    r.body = f.chunkedLast ? BodyKind::kChunked : BodyKind::kUntilClose;
    if (f.hasLength) r.keepAlive = false;  // RFC 9112 §6.3: close after such a message
  } else if (f.hasLength) {
    r.body = f.length > 0 ? BodyKind::kLength : BodyKind::kNone;
    r.length = f.length;
  } else {
    r.body = BodyKind::kUntilClose;
  }
  if (r.body == BodyKind::kUntilClose) r.keepAlive = false;
  r.headBytes = head.size();
  out = r;
  return Parse::kDone;
}

size_t ChunkedScanner::feed(std::string_view data, bool& bad) {
  size_t i = 0;
  bad = false;
  while (i < data.size() && state_ != State::kDone) {
    const char c = data[i];
    switch (state_) {
      case State::kSize: {
        int v = -1;
        if (c >= '0' && c <= '9') v = c - '0';
        if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
        if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
        if (v >= 0) {
          if (++digits_ > 15) {  // more than 2^60 bytes: nonsense
            bad = true;
            return i;
          }
          size_ = size_ * 16 + static_cast<uint64_t>(v);
          ++i;
          break;
        }
        if (digits_ == 0) {
          bad = true;
          return i;
        }
        if (c == ';' || c == ' ' || c == '\t') {
          state_ = State::kExtension;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          bad = true;
          return i;
        }
        ++i;
        break;
      }
      case State::kExtension:
        if (c == '\r')
          state_ = State::kSizeLf;
        else if (c == '\n') {
          bad = true;
          return i;
        }
        ++i;
        break;
      case State::kSizeLf:
        if (c != '\n') {
          bad = true;
          return i;
        }
        ++i;
        digits_ = 0;
        if (size_ == 0) {
          state_ = State::kTrailerStart;
        } else {
          state_ = State::kData;
        }
        break;
      case State::kData: {
        const uint64_t take = std::min<uint64_t>(size_, data.size() - i);
        i += static_cast<size_t>(take);
        size_ -= take;
        if (size_ == 0) state_ = State::kDataCr;
        break;
      }
      case State::kDataCr:
        if (c != '\r') {
          bad = true;
          return i;
        }
        ++i;
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') {
          bad = true;
          return i;
        }
        ++i;
        state_ = State::kSize;
        break;
      case State::kTrailerStart:
        // After the last chunk: trailer lines, then an empty line.
        emptyTrailerLine_ = true;
        state_ = State::kTrailer;
        break;
      case State::kTrailer:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (c == '\n') {
          bad = true;
          return i;
        } else {
          emptyTrailerLine_ = false;
        }
        ++i;
        break;
      case State::kTrailerLf:
        if (c != '\n') {
          bad = true;
          return i;
        }
        ++i;
        state_ = emptyTrailerLine_ ? State::kDone : State::kTrailerStart;
        break;
      case State::kDone:
        break;
    }
  }
  return i;
}

bool isIdempotent(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "TRACE" || method == "PUT" ||
         method == "DELETE";
}

std::string withHeader(std::string_view head, std::string_view name, std::string_view value) {
  // head ends with "\r\n\r\n": insert before the final CRLF.
  std::string out;
  out.reserve(head.size() + name.size() + value.size() + 4);
  out.append(head.substr(0, head.size() - 2));
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n\r\n");
  return out;
}

}  // namespace ferry::switchover::http1
