// Checkpoint and image archives on the peer link, as CheckpointChunks.
//
// Source: streamFile() sends a file while Podman is still writing it (reads what is
// there, waits for more until the writer has exited, or for a tar archive until its
// closing blocks are written: Podman cleans up for a while after that), LZ4 per chunk
// when that helps, an XXH3 of every chunk's bytes and of the whole file; afterwards it
// re-reads the file and refuses if it changed behind the reader (a writer that rewrote
// earlier bytes).
// Target: StagingFile appends received chunks in order to a 0600 file, checks each
// chunk's hash before writing and the whole file's at the end.
#pragma once

#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "ferry/base/error.h"
#include "migration.h"

namespace ferry::node {

struct ChunkTarget {
  std::string migration_id;
  std::uint64_t epoch = 0;
  std::string container;  // a container name; for images a label
  std::string file_name;  // relative name on the target, e.g. "web.tar"
  wire::ChunkKind kind = wire::ChunkKind::CHECKPOINT;
  std::string image_id;  // kind = image
};

struct StreamStats {
  std::uint64_t raw_bytes = 0;
  std::uint64_t wire_bytes = 0;
  std::uint64_t chunks = 0;
  double ms = 0;
  bool ended_at_tar_end = false;  // the archive's closing blocks ended it, not the writer's exit
  // When its last byte was read: the closing blocks seen, or the end after the writer's exit
  // (before the last chunk went out and the file was checked again).
  std::chrono::steady_clock::time_point complete_at;
};

// What ends the file: the writer's exit only, or also (for a tar archive such as
// Podman's export) its closing blocks, with nothing written after them. A file the
// tracker cannot follow as a tar falls back to the writer's exit.
enum class StreamEnd { kWriterExit, kTarEnd };

// Sends `path`; `writer_done` says the producing process has exited (so EOF is the
// end). Adds raw bytes to `*sent` as they go (progress). Fails at `deadline`.
Result<StreamStats> streamFile(MigrationEnv& env, const std::filesystem::path& path,
                               const ChunkTarget& target, const std::function<bool()>& writer_done,
                               const MigrationSettings& settings,
                               std::chrono::steady_clock::time_point deadline,
                               std::atomic<std::uint64_t>* sent, StreamEnd end = StreamEnd::kWriterExit);

class StagingFile {
 public:
  // Creates `path` (O_EXCL, 0600); its directory must exist.
  static Result<std::unique_ptr<StagingFile>> create(const std::filesystem::path& path);
  ~StagingFile();
  StagingFile(const StagingFile&) = delete;
  StagingFile& operator=(const StagingFile&) = delete;

  // Appends one chunk (in order, by offset); checks its hash, and on the last one the
  // total size and the whole file's hash.
  Status append(wire::CheckpointChunk::Reader chunk);
  [[nodiscard]] bool complete() const { return complete_; }
  [[nodiscard]] std::uint64_t bytes() const { return bytes_; }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  StagingFile(std::filesystem::path path, int fd);
  std::filesystem::path path_;
  int fd_;
  std::uint64_t bytes_ = 0;
  bool complete_ = false;
  XXH3_state_t* hash_;
  // Where LZ4 chunks are unpacked: allocated once, on the first one, and not zeroed (a fresh
  // 16 MiB vector per chunk cost about 2 ms each in page faults and memset, and the target
  // fell hundreds of ms behind the source's stream).
  std::unique_ptr<char[]> unpacked_;
};

// Creates `dir` (and parents) and makes it 0700: archives hold process memory.
Status preparePrivateDir(const std::filesystem::path& dir);

}  // namespace ferry::node
