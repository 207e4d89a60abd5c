// Block-granular write tracking for the mirror (sync/README.md, "Write tracking"): which
// byte ranges of which files were written since the last drain, so that a round re-reads
// those blocks instead of whole files. The eBPF implementation records each range AFTER
// its bytes are in place (page cache for buffered writes, disk for direct I/O); a round
// drains first and reads afterwards, so every drained range reads back its new bytes, and
// a write that lands later is drained (and read) by a later round.
#pragma once

#include <compare>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ferry/base/error.h"

namespace ferry::sync {

// A file as stat() names it in the mirror's namespace.
struct FileId {
  std::uint64_t dev = 0;
  std::uint64_t ino = 0;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>
  auto operator<=>(const FileId&) const = default;
};

inline constexpr std::uint64_t kToEof = ~0ull;

struct DirtyRange {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;  // kToEof: to the end of the file
  auto operator<=>(const DirtyRange&) const = default;
};

struct TrackedChanges {
  std::map<FileId, std::vector<DirtyRange>> ranges;
  // Ranges were lost (ring buffer full): re-read these files whole, once.
  std::set<FileId> whole;
  // Can no longer be tracked (a shared writable mapping, or a change the tracker could not
  // order): back to whole-file re-reads for good; the tracker has already forgotten them.
  std::set<FileId> untracked;
  // Something was missed and the tracker cannot say where: re-read every tracked file.
  bool all_lost = false;
};

class WriteTracker {
 public:
  virtual ~WriteTracker() = default;
  // Starts recording writes to `path` (id from lstat). Call BEFORE reading the file for the
  // round that establishes its hashes. An error says why this file cannot be tracked (not
  // ext4, inline data, ...): the caller re-reads it whole on every change, as without a
  // tracker.
  virtual Status watch(const std::string& path, FileId id) = 0;
  virtual void unwatch(FileId id) = 0;
  // Call after a batch of watch() calls and before reading those files: looks for shared
  // writable mappings of them that already existed (the next drain() reports such files as
  // untracked). New mappings are seen as they are made.
  virtual void settleWatches() {}
  // Everything recorded since the last drain.
  virtual TrackedChanges drain() = 0;
  [[nodiscard]] virtual std::string name() const = 0;
};

// The eBPF tracker (tracepoints and iterators; x86-64 Linux with BTF). On failure the error
// names what is missing (no BTF, not permitted, built without eBPF...). Its ranges for
// fallocate are recorded while the writer holds the inode's i_rwsem: the reader must take
// it (lseek SEEK_DATA or SEEK_HOLE on ext4) after drain() and before it reads.
Result<std::unique_ptr<WriteTracker>> openBpfWriteTracker();

}  // namespace ferry::sync
