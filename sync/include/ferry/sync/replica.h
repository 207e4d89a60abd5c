// Replica side of mirroring: applies batches into the standby directory.
//
// Safety: every path is checked (relative, no "." / ".." components) and opened beneath
// the root without following any symlink (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS,
// or an O_NOFOLLOW walk on kernels without openat2); every block's XXH3 is checked
// before it is written.
//
// Crash consistency: a state file (outside the replica directory) records
// (epoch, seq, consistent|applying, intent paths), written atomically with fsync. A batch
// first records "applying" with the paths it may touch, then writes, fsyncs every file and
// directory it touched, then records "consistent" with its seq. A replica that finds
// "applying" at start reports itself inconsistent, with the intent list, so the source
// re-hashes only those paths (resume) instead of re-copying everything.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/sync/messages.h"

namespace ferry::sync {

// Crash points, RocksDB style: returns true to make the caller fail at `point` as if the
// process died there (see CrashPoints in testing.h). Points of the replica:
// "replica.begin" (intent recorded), "replica.op" (before each message of a batch),
// "replica.fsync" (data written, not yet fsynced), "replica.commit" (fsynced, state not
// yet "consistent").
class FaultInjector {
 public:
  virtual ~FaultInjector() = default;
  virtual bool shouldFail(std::string_view point) = 0;
};

struct ReplicaOptions {
  bool preserve_owner = true;       // chown to the source's uid/gid (needs root)
  bool durable = true;              // fsync data, directories and the state file
  FaultInjector* faults = nullptr;  // not owned; tests only
};

struct ReplicaStats {
  std::uint64_t batches = 0;
  std::uint64_t blocks_written = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t holes_punched = 0;
  std::uint64_t refused = 0;           // messages refused (bad path, bad hash, out of order)
  std::uint64_t background_syncs = 0;  // fdatasyncs run while batches were still arriving
};

class ReplicaWriter {
 public:
  // `root` must exist and be a directory; `state_file` lives outside it.
  static Result<std::unique_ptr<ReplicaWriter>> open(const std::filesystem::path& root,
                                                     const std::filesystem::path& state_file,
                                                     ReplicaOptions options = {});
  ~ReplicaWriter();
  ReplicaWriter(const ReplicaWriter&) = delete;
  ReplicaWriter& operator=(const ReplicaWriter&) = delete;

  // Applies one message. An error aborts the current batch: the replica stays
  // inconsistent until the source resumes and completes a later batch.
  Status apply(const Message& message);

  [[nodiscard]] ResumeState resumeState() const;
  // Hashes of the requested paths as found on disk (never following symlinks).
  Result<std::vector<FileHashes>> hashFiles(const HashRequest& request);

  [[nodiscard]] bool consistent() const;    // no batch open or interrupted
  [[nodiscard]] bool finalApplied() const;  // the last batch applied was `final`
  [[nodiscard]] ReplicaStats stats() const;

 private:
  struct Impl;
  explicit ReplicaWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::sync
