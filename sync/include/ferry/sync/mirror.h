// Source side of mirroring: keeps, in memory, what the replica holds for every entry of
// a data directory (metadata and one XXH3-64 per fixed 16 KiB block) and turns changes
// into batches of block deltas. Not thread-safe: one thread drives a mirror.
//
// How changes are found (docs/ARCHITECTURE.md has the longer story):
// - inotify (recursive watches) names the files that changed, not the blocks. For each
//   named regular file the mirror re-reads and re-hashes the whole file but sends only
//   the blocks whose hash differs from the replica's. Hashing is ~30 GB/s; reading is
//   what costs (page cache ~7–10 GB/s; files written with O_DIRECT, like MariaDB's, are
//   read from disk). With a WriteTracker (eBPF, write_tracker.h) a tracked file is
//   re-read only in the blocks its writes touched, read_depth reads at a time.
// - A size/mtime/inode walk (every entry, no reads) is the safety net: on inotify queue
//   overflow, when watches cannot be added, on request (a timer in the node), and by
//   default inside finalDelta(): it costs one lstat per entry.
// - Renames are found by inode: an entry that vanished and an entry that appeared with
//   its inode become one Rename (directories move with their subtree).
//
// Why 16 KiB blocks: InnoDB (innodb_page_size default) writes 16 KiB pages, mostly
// scattered over its files; a block that matches the page sends exactly the changed
// bytes. Measured (bench/sync_bench.cc, 256 MiB file, 1 and 10 MiB of random 16 KiB pages
// rewritten): 64 KiB blocks sent 4.0 and 35 MiB, 16 KiB blocks 1.0 and 10 MiB, at the same
// read/hash cost (hashing speed does not depend on the block size). The price is memory
// (8 bytes per 16 KiB: 512 KiB per GiB mirrored) and 4x more messages on an initial copy
// (about 0.2 % overhead). Smaller blocks (4 KiB) would quadruple both for no gain on
// InnoDB. The size is an option (4 KiB multiples); both ends use the source's.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/sync/messages.h"
#include "ferry/sync/write_tracker.h"

namespace ferry::sync {

// Where the engine's messages go. The node daemon implements it over the peer link; the
// tests with a LoopbackLink (testing.h). A failed send interrupts the round; the mirror
// then needs resume() before the next round.
class DeltaSink {
 public:
  virtual ~DeltaSink() = default;
  virtual Status send(Message message) = 0;
  // The file bytes the round under way has still to read and send: its whole plan when
  // it starts, less every block as it goes, 0 when it ends (also when it fails). An
  // initial copy is one long round; this is how `ferry status` shows what is left of it.
  virtual void roundRemaining(std::uint64_t /*bytes*/) {}
};

struct MirrorOptions {
  std::uint32_t block_size = kDefaultBlockSize;
  std::uint64_t epoch = 1;                               // fencing token, from the node
  std::uint64_t max_batch_bytes = 256ull * 1024 * 1024;  // file bytes scanned per batch
  bool compress = true;                                  // LZ4 when it helps
  double max_compress_ratio = 0.9;                       // keep raw unless LZ4 ≤ 0.9x
  bool watch = true;                                     // inotify; false: walks only
  bool walk_on_final = true;                             // size/mtime walk inside finalDelta()
  std::uint32_t hash_threads = 2;                        // re-hash big known files in parallel
  // Reads in flight (threads) when a tracked file's scattered dirty blocks are re-read: pages
  // written with O_DIRECT are not in the page cache, and a disk serves 16 KiB random reads
  // far faster many at a time (here: 1700/s one at a time, 25000/s at 16; sync/README.md).
  std::uint32_t read_depth = 16;
  // Block-granular write tracking (sync/README.md, "Write tracking"): with inotify on, a
  // round re-reads only the recorded ranges of tracked files. `write_tracker` set: use it
  // (tests pass a FakeWriteTracker); unset and track_writes: try the eBPF tracker, and if
  // it cannot load, say once why and re-read whole files as before.
  bool track_writes = true;
  std::shared_ptr<WriteTracker> write_tracker;
};

struct DeltaStats {
  std::uint64_t batches = 0;
  std::uint64_t messages = 0;
  std::uint64_t files_hashed = 0;
  std::uint64_t bytes_read = 0;   // file bytes read to hash them
  std::uint64_t blocks_sent = 0;  // data blocks (zero blocks count separately)
  std::uint64_t zero_blocks = 0;  // blocks sent as "punch a hole"
  std::uint64_t bytes_raw = 0;    // uncompressed size of the blocks sent
  std::uint64_t bytes_sent = 0;   // approximate wire bytes (wireSize of every message)
  std::uint64_t renames = 0;
  std::uint64_t deletes = 0;
  std::uint64_t entries_checked = 0;
  std::uint64_t files_ranged = 0;  // tracked files re-read only where writes were recorded
  bool walked = false;             // a size/mtime walk ran in this round
  double seconds = 0;
};

// How far the replica is behind, for `ferry status` (replica_lag_bytes / replica_lag_ms).
struct MirrorLag {
  std::uint64_t pending_paths = 0;      // changed paths not yet in a batch
  std::uint64_t pending_bytes_max = 0;  // sizes of changed files not yet scanned (upper bound)
  std::uint64_t unacked_bytes = 0;      // sent, not yet acknowledged as durable
  double oldest_change_ms = 0;          // age of the oldest change not yet acknowledged (0: none)
};

class DirectoryMirror {
 public:
  // Opens `root`. Watches are added, and data read, by the first round (a full walk).
  static Result<std::unique_ptr<DirectoryMirror>> open(const std::filesystem::path& root,
                                                       const MirrorOptions& options = {});
  ~DirectoryMirror();
  DirectoryMirror(const DirectoryMirror&) = delete;
  DirectoryMirror& operator=(const DirectoryMirror&) = delete;

  // One round while the service runs: ships everything changed since the last round
  // (the first round is the full copy). Sends nothing when nothing changed.
  Result<DeltaStats> computeDelta(DeltaSink& sink);

  // The freeze-time round, called after the writer stopped: drains notifications,
  // stat-walks (unless disabled) and ships the rest; always ends with a `final` batch.
  Result<DeltaStats> finalDelta(DeltaSink& sink);

  // The next round compares size/mtime/inode of every entry (the safety net).
  void requestWalk();

  // The replica applied and made durable every batch up to `seq`.
  void acknowledge(std::uint64_t epoch, std::uint64_t seq);

  // Resume after a (re)connect: ask the replica for the hashes of the paths this returns
  // (every entry if this mirror is new: it knows nothing about the replica), then pass
  // the answer to resume(). Paths are the replica's intent list plus every path of the
  // batches it has not acknowledged. Refuses a replica at a newer epoch (fenced).
  [[nodiscard]] HashRequest resumeRequest(const ResumeState& replica) const;
  Status resume(const ResumeState& replica, const std::vector<FileHashes>& answer);

  // The descriptor to poll for change notifications (-1 without inotify).
  [[nodiscard]] int notifyFd() const;
  // Paths known to have changed and not yet shipped (a lag hint for `ferry status`).
  [[nodiscard]] std::uint64_t pendingChanges();
  [[nodiscard]] MirrorLag lag();
  [[nodiscard]] std::uint64_t lastSentSeq() const;
  [[nodiscard]] std::uint64_t lastAckedSeq() const;
  [[nodiscard]] std::uint64_t entries() const;
  [[nodiscard]] bool needsResume() const;
  // "ebpf", "fake"..., or empty when whole files are re-read.
  [[nodiscard]] std::string writeTracking() const;

 private:
  struct Impl;
  explicit DirectoryMirror(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::sync
