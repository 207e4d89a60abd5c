// What both readers of Podman's export need from a tar (tar_end.cc follows an archive to
// its closing blocks, criu_stats.cc taps one member): a 512-byte header's numeric fields
// and checksum, and the records of a PAX extended header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
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

// A PAX extended header's "LEN key=value\n" records, in order: `record(key, value)` for
// each well-formed one. Returns the byte offset of the first malformed record (the ones
// before it were passed on), or nullopt when every record was well-formed.
std::optional<std::size_t> forEachPaxRecord(
    std::string_view data, const std::function<void(std::string_view key, std::string_view value)>& record);

// A PAX record's decimal number ("size"), or nullopt when it is not one.
std::optional<std::uint64_t> paxNumber(std::string_view value);

}  // namespace ferry::checkpoint::tar
