// Builds tar archives the way Go's archive/tar (Podman's writer) lays them out, for
// tests: ustar members, PAX extended headers, the closing blocks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace ferry::checkpoint::testing {

inline std::string octal(std::uint64_t v, std::size_t width) {
  std::string digits(width - 1, '0');
  for (std::size_t i = width - 1; i-- > 0 && v != 0;) {
    digits[i] = static_cast<char>('0' + (v & 7U));
    v >>= 3U;
  }
  return digits + '\0';
}

// One member: its header, `content` and the padding to a 512-byte boundary. `size`
// overrides the size field (for header-only members and PAX-sized ones).
inline std::string tarMember(const std::string& name, const std::string& content, char type = '0',
                             std::string size_field = {}) {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<std::size_t>(name.size(), 100));
  std::memcpy(h.data() + 100, octal(0600, 8).data(), 8);
  std::memcpy(h.data() + 108, octal(0, 8).data(), 8);
  std::memcpy(h.data() + 116, octal(0, 8).data(), 8);
  if (size_field.empty()) size_field = octal(content.size(), 12);
  std::memcpy(h.data() + 124, size_field.data(), std::min<std::size_t>(size_field.size(), 12));
  std::memcpy(h.data() + 136, octal(1700000000, 12).data(), 12);
  h[156] = type;
  std::memcpy(h.data() + 257,
              "ustar\0"
              "00",
              8);
  std::memset(h.data() + 148, ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::string chk = octal(sum, 7) + " ";
  std::memcpy(h.data() + 148, chk.data(), 8);
  std::string out = h + content;
  out.append((512 - content.size() % 512) % 512, '\0');
  return out;
}

// A PAX extended header ('x') with "LEN key=value\n" records.
inline std::string paxMember(const std::vector<std::pair<std::string, std::string>>& records) {
  std::string data;
  for (const auto& [k, v] : records) {
    std::string body = " " + k + "=" + v + "\n";
    std::size_t len = body.size() + 1;
    while (std::to_string(len).size() + body.size() != len) ++len;
    data += std::to_string(len) + body;
  }
  return tarMember("PaxHeaders/x", data, 'x');
}

// GNU base-256 for the 12-byte size field.
inline std::string base256(std::uint64_t v) {
  std::string f(12, '\0');
  for (std::size_t i = 12; i-- > 1;) {
    f[i] = static_cast<char>(v & 0xffU);
    v >>= 8U;
  }
  f[0] = static_cast<char>(0x80);
  return f;
}

inline std::string tarEnd() {
  return std::string(1024, '\0');
}

}  // namespace ferry::checkpoint::testing
