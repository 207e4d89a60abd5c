#include "ferry/base/http.h"

#include <algorithm>
#include <cctype>
#include <charconv>

namespace ferry::http {

namespace {

constexpr std::size_t kMaxHead = std::size_t{64} * 1024;
constexpr std::size_t kMaxChunkLine = 1024;
constexpr std::size_t kMaxTrailers = std::size_t{16} * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// "name: value" lines after the first line of a head; false on a line without a name.
bool parseHeaderLines(std::string_view lines, Headers& out) {
  while (!lines.empty()) {
    std::size_t e = lines.find("\r\n");
    std::string_view line = lines.substr(0, e);
    lines = e == std::string_view::npos ? std::string_view{} : lines.substr(e + 2);
    std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) return false;
    out.emplace_back(lower(name), std::string(trim(line.substr(colon + 1))));
  }
  return true;
}

}  // namespace

std::optional<std::string> findHeader(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

// ---- responses ---------------------------------------------------------------------

HeadOutcome parseResponseHead(std::string_view raw) {
  HeadOutcome out;
  std::size_t offset = 0;
  while (true) {
    std::string_view rest = raw.substr(offset);
    std::size_t head_end = rest.find("\r\n\r\n");
    if (head_end == std::string_view::npos) {
      out.state = rest.size() > kMaxHead ? ParseState::kBad : ParseState::kIncomplete;
      return out;
    }
    if (head_end > kMaxHead) {
      out.state = ParseState::kBad;
      return out;
    }
    std::string_view head = rest.substr(0, head_end);
    std::size_t line_end = head.find("\r\n");
    std::string_view status_line = head.substr(0, line_end);
    // "HTTP/1.1 200 OK"
    if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12 || status_line[8] != ' ') {
      out.state = ParseState::kBad;
      return out;
    }
    int status = 0;
    auto [ptr, ec] = std::from_chars(status_line.data() + 9, status_line.data() + 12, status);
    if (ec != std::errc() || ptr != status_line.data() + 12 || status < 100 || status > 999) {
      out.state = ParseState::kBad;
      return out;
    }
    ResponseHead parsed;
    parsed.status = status;
    std::string_view lines =
        line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
    if (!parseHeaderLines(lines, parsed.headers)) {
      out.state = ParseState::kBad;
      return out;
    }
    offset += head_end + 4;
    if (status < 200) continue;  // interim answer (100 Continue): the real one follows
    out.state = ParseState::kComplete;
    out.head = std::move(parsed);
    out.bytes = offset;
    return out;
  }
}

std::optional<Framing> responseFraming(const ResponseHead& head, bool request_was_head) {
  Framing f;
  if (request_was_head || head.status == 204 || head.status == 304 || head.status < 200) {
    f.kind = Framing::kNone;
    return f;
  }
  if (auto te = head.header("transfer-encoding")) {
    // Only a final "chunked" delimits the body; any other coding runs to the close.
    f.kind = lower(trim(*te)).ends_with("chunked") ? Framing::kChunked : Framing::kClose;
    return f;
  }
  if (auto cl = head.header("content-length")) {
    std::uint64_t length = 0;
    auto [p, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), length);
    if (cl->empty() || ec != std::errc() || p != cl->data() + cl->size()) return std::nullopt;
    f.kind = Framing::kLength;
    f.length = length;
    return f;
  }
  f.kind = Framing::kClose;
  return f;
}

ParseState ChunkedDecoder::feed(std::string_view in, std::string& out, std::size_t& used) {
  std::size_t pos = 0;
  auto finish = [&](ParseState s) {
    used = pos;
    return s;
  };
  while (pos < in.size()) {
    switch (state_) {
      case State::kSize: {
        std::size_t nl = in.find('\n', pos);
        std::size_t take = (nl == std::string_view::npos ? in.size() : nl) - pos;
        line_.append(in.substr(pos, take));
        if (line_.size() > kMaxChunkLine) {
          state_ = State::kBad;
          return finish(ParseState::kBad);
        }
        if (nl == std::string_view::npos) {
          pos = in.size();
          break;
        }
        pos = nl + 1;
        std::string_view size_text = line_;
        size_text = trim(size_text.substr(0, size_text.find(';')));
        std::uint64_t size = 0;
        auto [p, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), size, 16);
        if (size_text.empty() || ec != std::errc() || p != size_text.data() + size_text.size()) {
          state_ = State::kBad;
          return finish(ParseState::kBad);
        }
        line_.clear();
        if (size == 0) {
          state_ = State::kTrailer;
        } else {
          remaining_ = size;
          state_ = State::kData;
        }
        break;
      }
      case State::kData: {
        std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, in.size() - pos));
        out.append(in.substr(pos, take));
        pos += take;
        remaining_ -= take;
        if (remaining_ == 0) state_ = State::kDataEnd;
        break;
      }
      case State::kDataEnd: {
        // Exactly CRLF after the data.
        line_.push_back(in[pos++]);
        if (line_ == "\r") break;
        if (line_ != "\r\n") {
          state_ = State::kBad;
          return finish(ParseState::kBad);
        }
        line_.clear();
        state_ = State::kSize;
        break;
      }
      case State::kTrailer: {
        std::size_t nl = in.find('\n', pos);
        std::size_t take = (nl == std::string_view::npos ? in.size() : nl) - pos;
        line_.append(in.substr(pos, take));
        trailer_bytes_ += take;
        if (trailer_bytes_ > kMaxTrailers) {
          state_ = State::kBad;
          return finish(ParseState::kBad);
        }
        if (nl == std::string_view::npos) {
          pos = in.size();
          break;
        }
        pos = nl + 1;
        bool empty = line_.empty() || line_ == "\r";
        line_.clear();
        if (empty) {
          state_ = State::kDone;
          return finish(ParseState::kComplete);
        }
        break;
      }
      case State::kDone:
        return finish(ParseState::kComplete);
      case State::kBad:
        return finish(ParseState::kBad);
    }
  }
  used = pos;
  if (state_ == State::kDone) return ParseState::kComplete;
  if (state_ == State::kBad) return ParseState::kBad;
  return ParseState::kIncomplete;
}

ParseState dechunk(std::string_view data, std::string& body) {
  body.clear();
  ChunkedDecoder d;
  std::size_t used = 0;
  return d.feed(data, body, used);
}

ParseOutcome parseResponse(std::string_view raw, bool peer_closed) {
  ParseOutcome out;
  const ParseState if_short = peer_closed ? ParseState::kBad : ParseState::kIncomplete;
  HeadOutcome h = parseResponseHead(raw);
  if (h.state != ParseState::kComplete) {
    out.state = h.state == ParseState::kBad ? ParseState::kBad : if_short;
    return out;
  }
  std::string_view rest = raw.substr(h.bytes);
  auto framing = responseFraming(h.head);
  if (!framing) {
    out.state = ParseState::kBad;
    return out;
  }
  HttpResponse response;
  response.status = h.head.status;
  response.headers = std::move(h.head.headers);
  switch (framing->kind) {
    case Framing::kNone:
      out.state = ParseState::kComplete;
      break;
    case Framing::kChunked: {
      ParseState s = dechunk(rest, response.body);
      out.state = s == ParseState::kIncomplete ? if_short : s;
      break;
    }
    case Framing::kLength:
      if (rest.size() < framing->length) {
        out.state = if_short;
      } else {
        response.body = std::string(rest.substr(0, static_cast<std::size_t>(framing->length)));
        out.state = ParseState::kComplete;
      }
      break;
    case Framing::kClose:
      if (peer_closed) {
        response.body = std::string(rest);
        out.state = ParseState::kComplete;
      } else {
        out.state = ParseState::kIncomplete;
      }
      break;
  }
  if (out.state == ParseState::kComplete) out.response = std::move(response);
  return out;
}

// ---- requests ----------------------------------------------------------------------

RequestHeadOutcome parseRequestHead(std::string_view raw) {
  RequestHeadOutcome out;
  std::size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    out.state = raw.size() > kMaxHead ? ParseState::kBad : ParseState::kIncomplete;
    return out;
  }
  std::string_view head = raw.substr(0, head_end);
  std::size_t line_end = head.find("\r\n");
  std::string_view request_line = head.substr(0, line_end);
  // "GET /path HTTP/1.1"
  std::size_t sp1 = request_line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : request_line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || sp1 == 0 || sp2 == sp1 + 1 ||
      !request_line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    out.state = ParseState::kBad;
    return out;
  }
  out.head.method = std::string(request_line.substr(0, sp1));
  out.head.target = std::string(request_line.substr(sp1 + 1, sp2 - sp1 - 1));
  std::string_view lines =
      line_end == std::string_view::npos ? std::string_view{} : head.substr(line_end + 2);
  if (!parseHeaderLines(lines, out.head.headers)) {
    out.state = ParseState::kBad;
    return out;
  }
  out.state = ParseState::kComplete;
  out.bytes = head_end + 4;
  return out;
}

// ---- encoding ----------------------------------------------------------------------

std::string percentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::optional<std::string> percentDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    if (i + 2 >= text.size()) return std::nullopt;
    unsigned value = 0;
    auto [p, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
    if (ec != std::errc() || p != text.data() + i + 3) return std::nullopt;
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

std::string formEncode(const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [k, v] : fields) {
    if (!out.empty()) out.push_back('&');
    out += percentEncode(k);
    out.push_back('=');
    out += percentEncode(v);
  }
  return out;
}

}  // namespace ferry::http
