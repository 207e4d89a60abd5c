// The messages the mirroring engine emits (source side) and consumes (replica side).
//
// Plain structs, independent of any transport: the node daemon translates them to and
// from the Cap'n Proto schemas in protocol/ (one schema struct per struct here, same
// field names). A delta is a stream of batches:
//
//   BatchBegin{epoch, seq, paths}  (FileMeta | Truncate | Block | Rename | Delete)*  BatchEnd
//
// The replica applies a batch and makes it durable before it acknowledges BatchEnd;
// the source resumes after a disconnect from the replica's ResumeState.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

namespace ferry::sync {

// Default fixed block size: 16 KiB, InnoDB's page size (mirror.h explains the choice).
inline constexpr std::uint32_t kDefaultBlockSize = 16 * 1024;

enum class FileKind : std::uint8_t { kRegular = 0, kDirectory = 1, kSymlink = 2 };

// Creates or updates one entry: a directory, a symlink (target), or a regular file whose
// size becomes `size` (grow leaves a hole, shrink truncates). Ownership and mode are
// applied at once; `mtime_ns` is applied when the batch ends (after the data).
struct FileMeta {
  std::string path;  // relative to the mirrored root, '/'-separated, no "." or ".."
  FileKind kind = FileKind::kRegular;
  std::uint32_t mode = 0;  // permission bits incl. setuid/setgid/sticky (07777)
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;     // regular files: the size after this batch
  std::int64_t mtime_ns = 0;  // nanoseconds since the epoch
  std::string target;         // symlinks: the link's target (never followed)
};

enum class Compression : std::uint8_t {
  kNone = 0,   // bytes are the block's content
  kLz4 = 1,    // bytes are an LZ4 block (LZ4_compress_default) of `length` bytes
  kZeros = 2,  // the block is all zeros: bytes empty; the replica punches a hole
};

// One fixed-offset block of a regular file. `xxh3` is XXH3-64 of the uncompressed
// `length` bytes; the replica refuses the block (and the batch) if it does not match.
struct Block {
  std::string path;
  std::uint64_t offset = 0;
  std::uint32_t length = 0;
  std::uint64_t xxh3 = 0;
  Compression compression = Compression::kNone;
  std::vector<std::uint8_t> bytes;
};

// Sets a regular file's size (shrink or grow; growing leaves a hole).
struct Truncate {
  std::string path;
  std::uint64_t size = 0;
};

// Removes a file, symlink or directory (recursively).
struct Delete {
  std::string path;
};

// Renames `path` to `target` (replacing whatever is at `target`).
struct Rename {
  std::string path;
  std::string target;
};

// Starts batch `seq` of `epoch`. `paths` lists every path the batch may modify (both
// ends of a rename): the replica records it as its intent list before touching anything,
// so after a crash it knows which files to re-hash instead of re-copying everything.
struct BatchBegin {
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  std::vector<std::string> paths;
};

// Ends the batch. `final` is set on the batch computed after the writer was frozen: once
// it is applied the replica is a point-in-time copy of the source.
struct BatchEnd {
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t ops = 0;  // number of messages between begin and end (a sanity check)
  bool final = false;
  // Added later; kept after `final` so BatchEnd{epoch, seq, ops, final} stays valid.
  std::uint64_t bytes = 0;          // wireSize() of those messages (statistics)
  std::uint64_t source_lag_ms = 0;  // age of the oldest change in this batch on the source
};

using Message = std::variant<BatchBegin, FileMeta, Truncate, Block, Rename, Delete, BatchEnd>;

// ---- resume ------------------------------------------------------------------------

// What the replica reports when a link (re)connects.
struct ResumeState {
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;            // last batch applied and durable
  bool consistent = true;           // false: a batch was interrupted (see `intent`)
  std::vector<std::string> intent;  // paths the interrupted batch may have touched
};

// The source asks for the block hashes of some paths, or of every entry (`all`: a
// source that restarted and lost its in-memory view asks for the whole manifest).
struct HashRequest {
  std::uint32_t block_size = kDefaultBlockSize;
  bool all = false;
  std::vector<std::string> paths;
};

// The replica's view of one path, answered to a HashRequest.
struct FileHashes {
  std::string path;
  bool exists = false;
  FileMeta meta;                      // valid when exists
  std::vector<std::uint64_t> hashes;  // regular files: XXH3-64 per block
};

// Name of a message type, for logs and errors.
const char* messageName(const Message& m);

// Bytes a message costs on a link, approximately (payload plus paths and fixed fields);
// used for statistics and benchmarks.
std::uint64_t wireSize(const Message& m);

}  // namespace ferry::sync
