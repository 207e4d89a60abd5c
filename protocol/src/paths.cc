#include "ferry/protocol/paths.h"

#include <string>

namespace ferry::protocol {

namespace {

std::string quoted(std::string_view path) {
  std::string out = "'";
  for (char c : path.substr(0, 120)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  if (path.size() > 120) out += "...";
  return out + "'";
}

Error refused(std::string_view path, const std::string& why) {
  return makeError(
      "path " + quoted(path) + " refused: " + why,
      "a peer may only name normalised paths inside the data directory; the message was not applied");
}

}  // namespace

Status validateWirePath(std::string_view path, size_t maxBytes) {
  if (path.empty()) return refused(path, "empty");
  if (path.size() > maxBytes) return refused(path, "longer than " + std::to_string(maxBytes) + " bytes");
  if (path.find('\0') != std::string_view::npos) return refused(path, "contains a NUL byte");
  if (path.front() == '/') return refused(path, "absolute");
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part.empty()) return refused(path, "empty component (\"//\" or a trailing '/')");
    if (part == ".") return refused(path, "'.' component: not normalised");
    if (part == "..") return refused(path, "'..' component escapes the data directory");
    if (part.size() > kMaxWireNameBytes) {
      return refused(path, "a component is longer than " + std::to_string(kMaxWireNameBytes) + " bytes");
    }
    start = end + 1;
  }
  return okStatus();
}

}  // namespace ferry::protocol
