// CRIU's statistics image (stats-dump), read without CRIU or protobuf libraries, and a
// tap that picks one member out of a tar stream as it passes by.
//
// Why: Podman's API exports a checkpoint as the response body and drops the report
// that would carry --print-stats (pkg/api/handlers/libpod/containers.go, Checkpoint:
// with export=true only the tar is written). The tar itself holds CRIU's
// stats-dump (libpod/container_internal_common.go, exportCheckpoint), so the API
// runtime reads the numbers from there while it writes the archive.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ferry/base/error.h"

namespace ferry::checkpoint {

// dump_stats_entry (CRIU images/stats.proto). Times in microseconds.
struct CriuDumpStats {
  std::uint64_t freezing_time = 0;
  std::uint64_t frozen_time = 0;
  std::uint64_t memdump_time = 0;
  std::uint64_t memwrite_time = 0;
  std::uint64_t pages_scanned = 0;
  std::uint64_t pages_skipped_parent = 0;
  std::uint64_t pages_written = 0;
};

// The whole stats-dump file: magic 0x55105940, magic 0x57093306, a little-endian
// 32-bit size, then a stats_entry message whose field 1 is the dump entry.
Result<CriuDumpStats> parseCriuDumpStats(std::string_view image);

// Feed it a tar stream piece by piece; it keeps the content of the first member with
// `name` (a leading "./" ignored; ustar prefix, PAX path and GNU long names honoured)
// if it is at most `max_bytes` long. It never fails the stream: a malformed tar only
// means nothing is captured.
class TarMemberTap {
 public:
  TarMemberTap(std::string name, std::size_t max_bytes) : name_(std::move(name)), max_(max_bytes) {}
  void feed(std::string_view data);
  // The member's content once it has passed completely.
  [[nodiscard]] const std::optional<std::string>& content() const { return content_; }

 private:
  enum class State { kHeader, kData, kPadding, kStopped };
  void onHeader();

  std::string name_;
  std::size_t max_;
  State state_ = State::kHeader;
  std::string block_;                       // a header being collected
  std::uint64_t left_ = 0;                  // data bytes left in the current member
  std::uint64_t padding_ = 0;               // padding bytes after it
  char type_ = '0';                         // of the current member
  bool capture_ = false;                    // the current member is the one wanted
  std::string data_;                        // its content so far (or of a PAX / long-name record)
  std::string next_name_;                   // from a PAX header or a GNU long name, for the next member
  std::optional<std::uint64_t> next_size_;  // from a PAX header
  std::optional<std::string> content_;
};

}  // namespace ferry::checkpoint
