// Internal: per-block hashing of a file (sparse-aware), LZ4 block coding, path helpers.
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/sync/messages.h"

namespace ferry::sync::detail {

// XXH3-64 of `length` zero bytes (cached for the common lengths).
std::uint64_t zeroHash(std::uint32_t length);
std::uint64_t hashBytes(const void* data, std::size_t length);

// A block seen while hashing: `data` is null for a block that lies entirely in a hole
// (never read), else points at `length` bytes valid only during the call.
struct BlockView {
  std::uint64_t index = 0;
  std::uint32_t length = 0;
  std::uint64_t hash = 0;
  const std::uint8_t* data = nullptr;
  bool zero = false;  // all zeros (a hole, or data that happens to be zero)
};

// Hashes blocks [first, last) of an open file of `size` bytes. Holes (SEEK_DATA /
// SEEK_HOLE) are not read. A short read (the file shrank under us) pads with zeros and
// sets *changed_under_us. Adds the bytes actually read to *bytes_read.
Status hashBlocks(int fd, std::uint64_t size, std::uint32_t block_size, std::uint64_t first,
                  std::uint64_t last, const std::function<Status(const BlockView&)>& fn,
                  std::uint64_t* bytes_read, bool* changed_under_us);

// Hashes the blocks of `ranges` (sorted, disjoint [first, last) block ranges) of an open
// file of `size` bytes, for a tracked file's dirty blocks, scattered over the file:
// - it first takes the file's i_rwsem (lseek SEEK_DATA; ext4 takes it shared), so that a
//   change recorded under it (the write tracker's fallocate records) is complete;
// - adjacent blocks are read together (up to 1 MiB per pread); readahead is off for the
//   descriptor (POSIX_FADV_RANDOM): scattered pages must not pull their neighbours in;
// - scattered pages that are not in the page cache (O_DIRECT writers) are read many at a
//   time, not one by one: with `threads` > 1 and at least 16 reads, that many threads read
//   and hash (each keeps one read in flight) while the calling thread only consumes; fewer
//   reads run on the calling thread, the next ones requested ahead (POSIX_FADV_WILLNEED).
// `fn` is called on the calling thread for every block: in file order within a read of up
// to 1 MiB, reads in the order they complete. Holes are read (as zeros). A short read pads
// with zeros and sets *changed_under_us.
using BlockRanges = std::vector<std::pair<std::uint64_t, std::uint64_t>>;
Status hashBlockRanges(int fd, std::uint64_t size, std::uint32_t block_size, const BlockRanges& ranges,
                       std::uint32_t threads, const std::function<Status(const BlockView&)>& fn,
                       std::uint64_t* bytes_read, bool* changed_under_us);

inline std::uint64_t blockCount(std::uint64_t size, std::uint32_t block_size) {
  return (size + block_size - 1) / block_size;
}
inline std::uint32_t blockLength(std::uint64_t size, std::uint32_t block_size, std::uint64_t index) {
  std::uint64_t off = index * block_size;
  std::uint64_t rest = size - off;
  return rest < block_size ? static_cast<std::uint32_t>(rest) : block_size;
}

// Fills block.bytes/compression from raw data: LZ4 when it shrinks the block to at most
// `max_ratio` of its size, raw otherwise.
void encodeBlock(const std::uint8_t* data, std::uint32_t length, bool compress, double max_ratio,
                 Block& block);

// Decodes a block into `out` (resized to block.length). Verifies the hash.
Status decodeBlock(const Block& block, std::vector<std::uint8_t>& out);

// A relative path inside the root: non-empty, '/'-separated, no empty, "." or ".."
// component, no leading '/', no NUL, at most 4095 bytes.
bool isSafeRelativePath(std::string_view path);
std::string joinPath(const std::string& dir, const std::string& name);
std::string parentOf(const std::string& path);                  // "" for top-level entries
bool isUnder(const std::string& path, const std::string& dir);  // path == dir or below it

FileKind kindOf(mode_t mode);
bool isSupported(mode_t mode);  // regular file, directory or symlink
std::int64_t mtimeNs(const struct stat& st);

// Percent-encoding for paths stored in line-based files.
std::string escapePath(std::string_view path);
std::string unescapePath(std::string_view text);

}  // namespace ferry::sync::detail
