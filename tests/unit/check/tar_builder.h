// Builds tar archives the way Go's archive/tar (Podman's writer) lays them out, for
// tests: ustar members, PAX extended headers, the closing blocks; and CRIU's stats-dump
// image that Podman's checkpoint export holds.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "ferry/checkpoint/criu_stats.h"

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
// overrides the size field (for header-only members and PAX-sized ones); `prefix` fills
// the ustar prefix field.
inline std::string tarMember(const std::string& name, const std::string& content, char type = '0',
                             std::string size_field = {}, const std::string& prefix = "") {
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
  std::memcpy(h.data() + 345, prefix.data(), std::min<std::size_t>(prefix.size(), 155));
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

inline void putVarint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7fU) | 0x80U));
    v >>= 7U;
  }
  out.push_back(static_cast<char>(v));
}

// CRIU's stats-dump: two magics, the size, a stats_entry{dump = 1}.
inline std::string criuStatsImage(const CriuDumpStats& s, bool with_restore_entry = false) {
  std::string dump;
  auto field = [&](unsigned number, std::uint64_t v) {
    putVarint(dump, (number << 3U) | 0U);
    putVarint(dump, v);
  };
  field(1, s.freezing_time);
  field(2, s.frozen_time);
  field(3, s.memdump_time);
  field(4, s.memwrite_time);
  field(5, s.pages_scanned);
  field(6, s.pages_skipped_parent);
  field(7, s.pages_written);
  field(9, 0);   // pages_lazy: a field ferry does not read
  field(12, 5);  // shpages_scanned
  std::string entry;
  if (with_restore_entry) {  // field 2 first: the reader must skip it
    putVarint(entry, (2U << 3U) | 2U);
    putVarint(entry, 2);
    entry += std::string("\x08\x01", 2);
  }
  putVarint(entry, (1U << 3U) | 2U);
  putVarint(entry, dump.size());
  entry += dump;
  std::string out;
  auto le32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xffU));
  };
  le32(0x55105940);
  le32(0x57093306);
  le32(static_cast<std::uint32_t>(entry.size()));
  return out + entry;
}

}  // namespace ferry::checkpoint::testing
