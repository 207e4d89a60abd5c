// The fields of a 512-byte tar header that both readers of Podman's export need
// (tar_end.cc follows an archive to its closing blocks, criu_stats.cc taps one member).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ferry::checkpoint::tar {

inline constexpr std::size_t kBlock = 512;

// A numeric field: octal digits (leading spaces, ended by a space or NUL) or GNU base-256
// (high bit of the first byte set); nullopt when it is neither, or negative.
std::optional<std::uint64_t> numericField(std::string_view block, std::size_t at, std::size_t len);

// Whether the checksum field matches the header: the unsigned byte sum, or the signed one
// some old writers stored.
bool checksumMatches(std::string_view block);

}  // namespace ferry::checkpoint::tar
