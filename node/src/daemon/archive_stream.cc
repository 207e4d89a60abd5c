#include "archive_stream.h"

#include <fcntl.h>
#include <lz4.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "ferry/base/log.h"
#include "ferry/checkpoint/tar_end.h"

namespace ferry::node {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kKeepCompressedBelow = 0.9;  // LZ4 output must be ≤ 90 % of the input to be worth it

std::string errnoText() {
  return std::strerror(errno);
}

// Reads up to `want` bytes at `offset` (short at EOF).
Result<std::size_t> readAt(int fd, std::uint64_t offset, char* buf, std::size_t want) {
  std::size_t got = 0;
  while (got < want) {
    ssize_t n = ::pread(fd, buf + got, want - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return makeError("read failed: " + errnoText());
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

// -1 when fstat fails (then nothing is taken as the end).
std::int64_t fileSize(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -1;
  return st.st_size;
}

Result<std::uint64_t> hashWholeFile(const fs::path& path, std::uint64_t expected_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return makeError("cannot reopen " + path.string() + ": " + errnoText());
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> buf(4u << 20);
  std::uint64_t total = 0;
  Status failed;
  while (true) {
    auto n = readAt(fd, total, buf.data(), buf.size());
    if (!n) {
      failed = n.error();
      break;
    }
    if (*n == 0) break;
    XXH3_64bits_update(st, buf.data(), *n);
    total += *n;
  }
  std::uint64_t h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  ::close(fd);
  if (!failed) return failed.error();
  if (total != expected_bytes) {
    return makeError(path.string() + " is " + std::to_string(total) + " bytes after the writer exited, " +
                     std::to_string(expected_bytes) + " were streamed");
  }
  return h;
}

}  // namespace

Status preparePrivateDir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    return makeError("cannot create " + dir.string() + ": " + ec.message(),
                     "check staging_dir in the node config");
  if (::chmod(dir.c_str(), 0700) != 0)
    return makeError("cannot make " + dir.string() + " private: " + errnoText());
  return okStatus();
}

Result<StreamStats> streamFile(MigrationEnv& env, const fs::path& path, const ChunkTarget& target,
                               const std::function<bool()>& writer_done, const MigrationSettings& settings,
                               Clock::time_point deadline, std::atomic<std::uint64_t>* sent, StreamEnd end) {
  auto started = Clock::now();
  int fd = -1;
  // The writer creates the file; wait for it (bounded by the deadline). Whether the writer
  // has finished is read before each attempt: a writer that creates, writes and finishes
  // between a failed open and that check has still written the file.
  while (true) {
    const bool done = writer_done();
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) break;
    if (errno != ENOENT) return makeError("cannot open " + path.string() + ": " + errnoText());
    if (done) return makeError(path.string() + " was never written");
    if (Clock::now() > deadline) return makeError("timed out waiting for " + path.string() + " to appear");
    std::this_thread::sleep_for(Millis(2));
  }
  StreamStats stats;
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::vector<char> raw(settings.chunk_bytes);
  std::vector<char> packed(
      static_cast<std::size_t>(LZ4_compressBound(static_cast<int>(settings.chunk_bytes))));
  std::uint64_t offset = 0;
  std::optional<checkpoint::TarEndTracker> tar;
  if (end == StreamEnd::kTarEnd) tar.emplace();
  Status result;
  while (true) {
    bool done = writer_done();  // read before the data: if it is true, EOF below is the end
    auto n = readAt(fd, offset, raw.data(), raw.size());
    if (!n) {
      result = makeError("streaming " + path.string() + ": " + n.error().what);
      break;
    }
    bool last = done && *n < raw.size();
    if (tar && !tar->failed()) {
      tar->feed(std::string_view(raw.data(), *n));
      if (tar->failed()) {
        log::get("node")->debug("{}: not followed as a tar ({}); it ends when its writer exits",
                                path.string(), tar->failure());
      } else if (!last && tar->end() && *tar->end() == offset + *n &&
                 fileSize(fd) == static_cast<std::int64_t>(*tar->end())) {
        // The closing blocks are written and nothing follows them: complete.
        last = true;
        stats.ended_at_tar_end = true;
      }
    }
    if (last) stats.complete_at = Clock::now();
    if (*n == 0 && !last) {
      if (Clock::now() > deadline) {
        result = makeError("timed out streaming " + path.string() + " (the writer did not finish)");
        break;
      }
      std::this_thread::sleep_for(Millis(3));
      continue;
    }
    // Start the disk write of what the writer put there (does not wait): the source's
    // durable "committing" record, written right after, would otherwise wait for all of
    // it (260–280 ms in the lab after a 118 MB dump).
    if (*n > 0)
      ::sync_file_range(fd, static_cast<off_t>(offset), static_cast<off_t>(*n), SYNC_FILE_RANGE_WRITE);
    XXH3_64bits_update(st, raw.data(), *n);
    std::uint64_t chunk_hash = XXH3_64bits(raw.data(), *n);
    const char* data = raw.data();
    std::size_t data_len = *n;
    auto compression = wire::Compression::NONE;
    if (settings.compress && *n > 0) {
      int c = LZ4_compress_default(raw.data(), packed.data(), static_cast<int>(*n),
                                   static_cast<int>(packed.size()));
      if (c > 0 && static_cast<double>(c) <= kKeepCompressedBelow * static_cast<double>(*n)) {
        data = packed.data();
        data_len = static_cast<std::size_t>(c);
        compression = wire::Compression::LZ4;
      }
    }
    std::uint64_t file_hash = last ? XXH3_64bits_digest(st) : 0;
    std::uint64_t chunk_offset = offset;
    std::size_t raw_len = *n;
    Status s = env.send(
        [&](wire::Message::Builder m) {
          auto c = m.getBody().initCheckpointChunk();
          c.setMigrationId(target.migration_id);
          c.setEpoch(target.epoch);
          c.setContainer(target.container);
          c.setFileName(target.file_name);
          c.setKind(target.kind);
          if (!target.image_id.empty()) c.setImageId(target.image_id);
          c.setOffset(chunk_offset);
          c.setData(kj::arrayPtr(reinterpret_cast<const kj::byte*>(data), data_len));
          c.setXxh3(chunk_hash);
          c.setCompression(compression);
          c.setLast(last);
          if (last) {
            c.setFileBytes(chunk_offset + raw_len);
            c.setFileXxh3(file_hash);
          }
        },
        std::chrono::duration_cast<Millis>(std::max(deadline - Clock::now(), Clock::duration(Millis(1)))));
    if (!s) {
      result = makeError("sending " + target.file_name + " to the peer: " + s.error().message());
      break;
    }
    offset += raw_len;
    stats.raw_bytes += raw_len;
    stats.wire_bytes += data_len;
    ++stats.chunks;
    if (sent != nullptr) sent->fetch_add(raw_len);
    if (last) break;
  }
  std::uint64_t streamed_hash = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  ::close(fd);
  if (!result) return result.error();
  // A writer that went back and rewrote bytes we had already sent would leave the
  // target a different file than this one: check before anyone restores from it.
  auto now_hash = hashWholeFile(path, offset);
  if (!now_hash) return now_hash.error();
  if (*now_hash != streamed_hash)
    return makeError(path.string() + " changed behind the stream (the writer rewrote bytes already sent)",
                     "this Podman does not write its export sequentially; report it");
  stats.ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  return stats;
}

StagingFile::StagingFile(fs::path path, int fd) : path_(std::move(path)), fd_(fd), hash_(XXH3_createState()) {
  XXH3_64bits_reset(hash_);
}

StagingFile::~StagingFile() {
  if (fd_ >= 0) ::close(fd_);
  XXH3_freeState(hash_);
}

Result<std::unique_ptr<StagingFile>> StagingFile::create(const fs::path& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return makeError("cannot create staging file " + path.string() + ": " + errnoText());
  return std::unique_ptr<StagingFile>(new StagingFile(path, fd));
}

Status StagingFile::append(wire::CheckpointChunk::Reader chunk) {
  if (complete_) return makeError(path_.string() + ": a chunk after the last one");
  if (chunk.getOffset() != bytes_) {
    return makeError(path_.string() + ": chunk at offset " + std::to_string(chunk.getOffset()) +
                     ", expected " + std::to_string(bytes_));
  }
  auto data = chunk.getData();
  const char* bytes = reinterpret_cast<const char*>(data.begin());
  std::size_t len = data.size();
  if (chunk.getCompression() == wire::Compression::LZ4) {
    // A chunk is at most the sender's chunk size (1 MiB default); 16 MiB is a hard cap.
    constexpr int kMaxChunk = 16 << 20;
    if (!unpacked_) unpacked_ = std::make_unique_for_overwrite<char[]>(kMaxChunk);
    int n = LZ4_decompress_safe(bytes, unpacked_.get(), static_cast<int>(len), kMaxChunk);
    if (n < 0)
      return makeError(path_.string() + ": LZ4 data at offset " + std::to_string(bytes_) + " is corrupt");
    bytes = unpacked_.get();
    len = static_cast<std::size_t>(n);
  } else if (chunk.getCompression() != wire::Compression::NONE) {
    return makeError(path_.string() + ": unknown chunk compression");
  }
  if (XXH3_64bits(bytes, len) != chunk.getXxh3())
    return makeError(path_.string() + ": chunk at offset " + std::to_string(bytes_) + " fails its hash");
  std::size_t off = 0;
  while (off < len) {
    ssize_t w = ::write(fd_, bytes + off, len - off);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      return makeError("cannot write " + path_.string() + ": " + errnoText(),
                       errno == ENOSPC ? "the staging disk is full: free space or point staging_dir elsewhere"
                                       : std::string());
    }
    off += static_cast<std::size_t>(w);
  }
  // Start its disk write now (does not wait), as the replica does: the durable journal
  // write at Commit would otherwise wait behind the whole staged archive.
  ::sync_file_range(fd_, static_cast<off_t>(bytes_), static_cast<off_t>(len), SYNC_FILE_RANGE_WRITE);
  XXH3_64bits_update(hash_, bytes, len);
  bytes_ += len;
  if (chunk.getLast()) {
    if (chunk.getFileBytes() != bytes_)
      return makeError(path_.string() + ": " + std::to_string(bytes_) + " bytes received, the sender says " +
                       std::to_string(chunk.getFileBytes()));
    if (XXH3_64bits_digest(hash_) != chunk.getFileXxh3())
      return makeError(path_.string() + ": the whole file fails its hash");
    ::close(fd_);
    fd_ = -1;
    complete_ = true;
  }
  return okStatus();
}

}  // namespace ferry::node
