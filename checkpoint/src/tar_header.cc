#include "tar_header.h"

#include <charconv>
#include <climits>

namespace ferry::checkpoint::tar {

std::optional<std::uint64_t> numericField(std::string_view block, std::size_t at, std::size_t len) {
  const auto first = static_cast<unsigned char>(block[at]);
  if ((first & 0x80U) != 0) {
    if ((first & 0x40U) != 0) return std::nullopt;  // negative
    std::uint64_t v = first & 0x3fU;
    for (std::size_t i = 1; i < len; ++i) {
      if (v > (UINT64_MAX >> 8U)) return std::nullopt;
      v = (v << 8U) | static_cast<unsigned char>(block[at + i]);
    }
    return v;
  }
  std::string_view f = block.substr(at, len);
  auto start = f.find_first_not_of(' ');
  if (start == std::string_view::npos) return 0;
  f.remove_prefix(start);
  f = f.substr(0, f.find_first_of(std::string_view(" \0", 2)));
  if (f.empty()) return 0;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), v, 8);
  if (ec != std::errc() || p != f.data() + f.size()) return std::nullopt;
  return v;
}

bool checksumMatches(std::string_view block) {
  unsigned sum = 0;
  int signed_sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i) {
    const bool in_field = i >= 148 && i < 156;
    sum += in_field ? unsigned{' '} : static_cast<unsigned char>(block[i]);
    signed_sum += in_field ? int{' '} : static_cast<signed char>(block[i]);
  }
  auto stored = numericField(block, 148, 8);
  return stored && (*stored == sum || static_cast<std::int64_t>(*stored) == signed_sum);
}

std::optional<std::size_t> forEachPaxRecord(
    std::string_view data, const std::function<void(std::string_view key, std::string_view value)>& record) {
  std::size_t pos = 0;
  while (pos < data.size()) {
    auto space = data.find(' ', pos);
    std::size_t len = 0;
    if (space != std::string_view::npos) {
      auto [p, ec] = std::from_chars(data.data() + pos, data.data() + space, len);
      if (ec != std::errc() || p != data.data() + space) space = std::string_view::npos;
    }
    if (space == std::string_view::npos || len <= space - pos + 1 || len > data.size() - pos ||
        data[pos + len - 1] != '\n')
      return pos;
    std::string_view rec = data.substr(space + 1, pos + len - space - 2);
    auto eq = rec.find('=');
    if (eq != std::string_view::npos) record(rec.substr(0, eq), rec.substr(eq + 1));
    pos += len;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> paxNumber(std::string_view value) {
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || p != value.data() + value.size()) return std::nullopt;
  return v;
}

}  // namespace ferry::checkpoint::tar
