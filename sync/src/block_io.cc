#include "block_io.h"

#include <fcntl.h>
#include <lz4.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace ferry::sync::detail {
namespace {

constexpr std::size_t kReadChunk = std::size_t{1} << 20;  // one pread covers up to 1 MiB of data blocks

const std::vector<std::uint8_t>& zeros(std::size_t n) {
  static std::mutex mu;
  static std::vector<std::uint8_t> buf;
  std::lock_guard lock(mu);
  if (buf.size() < n) buf.assign(n, 0);
  return buf;
}

}  // namespace

std::uint64_t hashBytes(const void* data, std::size_t length) {
  return XXH3_64bits(data, length);
}

std::uint64_t zeroHash(std::uint32_t length) {
  static std::mutex mu;
  static std::unordered_map<std::uint32_t, std::uint64_t> cache;
  {
    std::lock_guard lock(mu);
    auto it = cache.find(length);
    if (it != cache.end()) return it->second;
  }
  std::uint64_t h = hashBytes(zeros(length).data(), length);
  std::lock_guard lock(mu);
  if (cache.size() < 64) cache[length] = h;
  return h;
}

static bool allZero(const std::uint8_t* p, std::size_t n) {
  // Cheap first look, then a memcmp against the shifted buffer.
  if (n == 0) return true;
  if (p[0] != 0 || p[n - 1] != 0) return false;
  return std::memcmp(p, p + 1, n - 1) == 0;
}

Status hashBlocks(int fd, std::uint64_t size, std::uint32_t block_size, std::uint64_t first,
                  std::uint64_t last, const std::function<Status(const BlockView&)>& fn,
                  std::uint64_t* bytes_read, bool* changed_under_us) {
  last = std::min(last, blockCount(size, block_size));
  std::size_t chunk = std::max<std::size_t>(kReadChunk, block_size);
  chunk -= chunk % block_size;
  std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[chunk]);
  // Current data extent [ds, de): blocks ending at or before ds lie in a hole.
  std::uint64_t ds = 0, de = 0;
  bool extent_known = false;
  auto findExtent = [&](std::uint64_t from) {
    off_t d = ::lseek(fd, static_cast<off_t>(from), SEEK_DATA);
    if (d < 0) {
      // ENXIO: no data after `from`; anything else (no SEEK_DATA support): assume data.
      if (errno == ENXIO) {
        ds = de = size;
      } else {
        ds = from;
        de = size;
      }
    } else {
      ds = static_cast<std::uint64_t>(d);
      off_t h = ::lseek(fd, d, SEEK_HOLE);
      de = h < 0 ? size : static_cast<std::uint64_t>(h);
    }
    extent_known = true;
  };
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::uint64_t i = first;
  while (i < last) {
    std::uint64_t bo = i * block_size;
    if (!extent_known || bo >= de) findExtent(bo);
    std::uint32_t len = blockLength(size, block_size, i);
    if (bo + len <= ds || ds >= size) {
      BlockView v{i, len, zeroHash(len), nullptr, true};
      FERRY_TRY(fn(v));
      ++i;
      continue;
    }
    // A run of blocks that touch data, up to the chunk size and the extent's end.
    std::uint64_t run_end = i + 1;
    std::uint64_t max_blocks = chunk / block_size;
    while (run_end < last && run_end - i < max_blocks && run_end * block_size < de) ++run_end;
    std::uint64_t run_bytes = std::min<std::uint64_t>(size, run_end * block_size) - bo;
    // Ask for the next chunk while this one is hashed (overlaps disk reads with hashing
    // when the file is not in the page cache, as with O_DIRECT writers).
    if (bo + run_bytes < size)
      ::posix_fadvise(fd, static_cast<off_t>(bo + run_bytes), static_cast<off_t>(chunk), POSIX_FADV_WILLNEED);
    std::size_t got = 0;
    while (got < run_bytes) {
      ssize_t r = ::pread(fd, buf.get() + got, run_bytes - got, static_cast<off_t>(bo + got));
      if (r < 0) {
        if (errno == EINTR) continue;
        return makeError(std::string("cannot read a file to hash it: ") + std::strerror(errno));
      }
      if (r == 0) break;
      got += static_cast<std::size_t>(r);
    }
    if (got < run_bytes) {
      std::memset(buf.get() + got, 0, run_bytes - got);
      if (changed_under_us) *changed_under_us = true;
    }
    if (bytes_read) *bytes_read += got;
    for (std::uint64_t j = i; j < run_end; ++j) {
      std::uint32_t l = blockLength(size, block_size, j);
      const std::uint8_t* p = buf.get() + (j - i) * block_size;
      std::uint64_t h = hashBytes(p, l);
      bool z = h == zeroHash(l) && allZero(p, l);
      BlockView v{j, l, h, p, z};
      FERRY_TRY(fn(v));
    }
    i = run_end;
  }
  return okStatus();
}

namespace {

// One pread of the ranged reader: blocks [first, first + blocks).
struct Span {
  std::uint64_t first = 0;
  std::uint64_t blocks = 0;
};

constexpr std::uint64_t kAheadBytes = 32ull << 20;   // requested ahead (one thread)...
constexpr std::size_t kAheadSpans = 256;             // ...in at most this many reads
constexpr std::size_t kParallelSpans = 16;           // fewer reads: the calling thread alone
constexpr std::uint64_t kWindowBytes = 16ull << 20;  // read, not yet consumed (parallel readers)

// Reads `len` bytes at `off` (retrying short reads); pads what is missing with zeros.
// Returns the bytes read, or -errno.
long long readFull(int fd, std::uint8_t* buf, std::size_t len, std::uint64_t off) {
  std::size_t got = 0;
  while (got < len) {
    ssize_t r = ::pread(fd, buf + got, len - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  if (got < len) std::memset(buf + got, 0, len - got);
  return static_cast<long long>(got);
}

// The hashes of one span, computed by whichever thread read it.
struct HashedSpan {
  std::vector<std::uint64_t> hashes;
  std::vector<char> zero;
  // `zero_hash`: zeroHash(bs), looked up once (zeroHash takes a lock).
  void compute(const std::uint8_t* buf, std::uint64_t size, std::uint32_t bs, std::uint64_t zero_hash,
               const Span& sp) {
    hashes.resize(sp.blocks);
    zero.resize(sp.blocks);
    for (std::uint64_t k = 0; k < sp.blocks; ++k) {
      std::uint32_t l = blockLength(size, bs, sp.first + k);
      const std::uint8_t* p = buf + k * bs;
      hashes[k] = hashBytes(p, l);
      zero[k] = hashes[k] == (l == bs ? zero_hash : zeroHash(l)) && allZero(p, l) ? 1 : 0;
    }
  }
};

}  // namespace

Status hashBlockRanges(int fd, std::uint64_t size, std::uint32_t block_size, const BlockRanges& ranges,
                       std::uint32_t threads, const std::function<Status(const BlockView&)>& fn,
                       std::uint64_t* bytes_read, bool* changed_under_us) {
  const std::uint64_t bs = block_size;
  const std::uint64_t n_blocks = blockCount(size, block_size);
  const std::uint64_t per = std::max<std::uint64_t>(1, kReadChunk / bs);
  std::vector<Span> spans;
  for (auto [lo, hi] : ranges) {
    hi = std::min(hi, n_blocks);
    for (std::uint64_t b = lo; b < hi; b += per) spans.push_back({b, std::min(per, hi - b)});
  }
  if (spans.empty()) return okStatus();
  auto bytesOf = [&](const Span& sp) { return std::min(size, (sp.first + sp.blocks) * bs) - sp.first * bs; };
  // Takes i_rwsem (shared) once: an fallocate recorded before our drain has finished.
  (void)::lseek(fd, 0, SEEK_DATA);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
  // Small sets on the calling thread, with the next reads requested ahead (WILLNEED: each
  // call submits its reads and returns). Large sets: `threads` blocking readers, which keep
  // that many reads in flight; on this VM that beats WILLNEED, whose submissions (a virtio
  // notification each) all land on one thread.
  std::uint64_t largest = 0;
  for (const Span& sp : spans) largest = std::max(largest, bytesOf(sp));
  const std::uint64_t zero_hash = zeroHash(block_size);
  auto deliver = [&](const Span& sp, const std::uint8_t* buf, const HashedSpan& h) -> Status {
    for (std::uint64_t k = 0; k < sp.blocks; ++k) {
      BlockView v{sp.first + k, blockLength(size, block_size, sp.first + k), h.hashes[k], buf + k * bs,
                  h.zero[k] != 0};
      FERRY_TRY(fn(v));
    }
    return okStatus();
  };
  auto readError = [](long long e) {
    return makeError(std::string("cannot read a file to hash it: ") + std::strerror(static_cast<int>(-e)));
  };

  if (threads <= 1 || spans.size() < kParallelSpans) {
    std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[largest]);
    HashedSpan h;
    std::uint64_t ahead_bytes = 0;  // requested ahead, not yet read
    std::size_t issued = 1;         // spans [1, issued) were requested ahead
    for (std::size_t i = 0; i < spans.size(); ++i) {
      std::uint64_t len = bytesOf(spans[i]);
      if (i > 0 && i < issued) ahead_bytes -= len;  // read now
      issued = std::max(issued, i + 1);
      while (issued < spans.size() && issued - i <= kAheadSpans && ahead_bytes < kAheadBytes) {
        const Span& sp = spans[issued++];
        ::posix_fadvise(fd, static_cast<off_t>(sp.first * bs), static_cast<off_t>(bytesOf(sp)),
                        POSIX_FADV_WILLNEED);
        ahead_bytes += bytesOf(sp);
      }
      long long got = readFull(fd, buf.get(), len, spans[i].first * bs);
      if (got < 0) return readError(got);
      if (static_cast<std::uint64_t>(got) < len && changed_under_us) *changed_under_us = true;
      if (bytes_read) *bytes_read += static_cast<std::uint64_t>(got);
      h.compute(buf.get(), size, block_size, zero_hash, spans[i]);
      FERRY_TRY(deliver(spans[i], buf.get(), h));
    }
    return okStatus();
  }

  // `threads` workers take the next span and a free slot, read and hash it, and queue the
  // slot; the caller takes every queued slot at once and calls fn for its blocks. Waits
  // notify only a thread that is waiting: on a VM every wakeup is dear.
  // Four slots per reader; fewer readers for big spans (the window stays under kWindowBytes).
  // Fresh buffer pages fault on first touch, which costs on a VM: keep the window small.
  threads = static_cast<std::uint32_t>(
      std::clamp<std::uint64_t>(kWindowBytes / (4 * largest), 2, std::uint64_t{threads}));
  struct Slot {
    std::unique_ptr<std::uint8_t[]> buf;
    HashedSpan hashed;
    std::size_t span = 0;
    long long got = 0;
  };
  std::vector<Slot> slots(std::min<std::size_t>(spans.size(), 4 * std::size_t{threads}));
  std::vector<std::size_t> free_slots, ready, batch;
  for (std::size_t k = 0; k < slots.size(); ++k) {
    slots[k].buf.reset(new std::uint8_t[largest]);
    free_slots.push_back(k);
  }
  std::mutex mu;
  std::condition_variable ready_cv, free_cv;
  std::size_t next = 0, idle_workers = 0;
  std::size_t caller_wants = 0;  // > 0: the caller sleeps until this many slots are ready
  bool stop = false;
  auto worker = [&] {
    std::unique_lock lock(mu);
    for (;;) {
      while (!stop && next < spans.size() && free_slots.empty()) {
        ++idle_workers;
        free_cv.wait(lock);
        --idle_workers;
      }
      if (stop || next >= spans.size()) return;
      std::size_t i = next++, k = free_slots.back();
      free_slots.pop_back();
      lock.unlock();
      Slot& sl = slots[k];
      sl.span = i;
      sl.got = readFull(fd, sl.buf.get(), bytesOf(spans[i]), spans[i].first * bs);
      if (sl.got >= 0) sl.hashed.compute(sl.buf.get(), size, block_size, zero_hash, spans[i]);
      lock.lock();
      ready.push_back(k);
      if (caller_wants > 0 && ready.size() >= caller_wants) ready_cv.notify_one();
    }
  };
  std::vector<std::thread> pool;
  for (std::uint32_t t = 0; t < threads; ++t) pool.emplace_back(worker);
  Status result = okStatus();
  for (std::size_t delivered = 0; delivered < spans.size() && result.ok();) {
    {
      // Wake for a few reads at a time, not for each one.
      std::unique_lock lock(mu);
      caller_wants = std::min<std::size_t>(std::max<std::size_t>(1, threads / 4), spans.size() - delivered);
      ready_cv.wait(lock, [&] { return ready.size() >= caller_wants; });
      caller_wants = 0;
      batch.swap(ready);
    }
    for (std::size_t k : batch) {
      Slot& sl = slots[k];
      ++delivered;
      if (!result.ok()) continue;
      std::uint64_t len = bytesOf(spans[sl.span]);
      if (sl.got < 0) {
        result = readError(sl.got);
        continue;
      }
      if (static_cast<std::uint64_t>(sl.got) < len && changed_under_us) *changed_under_us = true;
      if (bytes_read) *bytes_read += static_cast<std::uint64_t>(sl.got);
      result = deliver(spans[sl.span], sl.buf.get(), sl.hashed);
    }
    std::lock_guard lock(mu);
    free_slots.insert(free_slots.end(), batch.begin(), batch.end());
    batch.clear();
    if (idle_workers > 0) free_cv.notify_all();
  }
  {
    std::lock_guard lock(mu);
    stop = true;
    free_cv.notify_all();
  }
  for (auto& th : pool) th.join();
  return result;
}

void encodeBlock(const std::uint8_t* data, std::uint32_t length, bool compress, double max_ratio,
                 Block& block) {
  block.length = length;
  if (compress && length >= 512) {
    int bound = LZ4_compressBound(static_cast<int>(length));
    block.bytes.resize(static_cast<std::size_t>(bound));
    int n =
        LZ4_compress_default(reinterpret_cast<const char*>(data), reinterpret_cast<char*>(block.bytes.data()),
                             static_cast<int>(length), bound);
    if (n > 0 && static_cast<double>(n) <= max_ratio * static_cast<double>(length)) {
      block.bytes.resize(static_cast<std::size_t>(n));
      block.compression = Compression::kLz4;
      return;
    }
  }
  block.compression = Compression::kNone;
  block.bytes.assign(data, data + length);
}

Status decodeBlock(const Block& block, std::vector<std::uint8_t>& out) {
  constexpr std::uint32_t kMaxBlock = 64u * 1024 * 1024;
  if (block.length > kMaxBlock)
    return makeError("block of " + block.path + " at " + std::to_string(block.offset) + " is too large (" +
                     std::to_string(block.length) + " bytes)");
  out.resize(block.length);
  switch (block.compression) {
    case Compression::kNone:
      if (block.bytes.size() != block.length)
        return makeError("block of " + block.path + " at " + std::to_string(block.offset) + " has " +
                         std::to_string(block.bytes.size()) + " bytes, expected " +
                         std::to_string(block.length));
      std::memcpy(out.data(), block.bytes.data(), block.length);
      break;
    case Compression::kLz4: {
      int n = LZ4_decompress_safe(reinterpret_cast<const char*>(block.bytes.data()),
                                  reinterpret_cast<char*>(out.data()), static_cast<int>(block.bytes.size()),
                                  static_cast<int>(block.length));
      if (n < 0 || static_cast<std::uint32_t>(n) != block.length)
        return makeError("block of " + block.path + " at " + std::to_string(block.offset) +
                         " does not decompress to its length");
      break;
    }
    case Compression::kZeros:
      if (!block.bytes.empty())
        return makeError("zero block of " + block.path + " at " + std::to_string(block.offset) +
                         " carries bytes");
      std::memset(out.data(), 0, block.length);
      break;
    default:
      return makeError("block of " + block.path + " has an unknown compression " +
                       std::to_string(static_cast<int>(block.compression)));
  }
  std::uint64_t h =
      block.compression == Compression::kZeros ? zeroHash(block.length) : hashBytes(out.data(), out.size());
  if (h != block.xxh3)
    return makeError("block of " + block.path + " at offset " + std::to_string(block.offset) +
                         " fails its XXH3 check; refused",
                     "the sender or the link corrupts data: resume the link");
  return okStatus();
}

bool isSafeRelativePath(std::string_view path) {
  if (path.empty() || path.size() > 4095 || path.front() == '/' || path.back() == '/') return false;
  if (path.find('\0') != std::string_view::npos) return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view comp = path.substr(start, end - start);
    if (comp.empty() || comp == "." || comp == ".." || comp.size() > 255) return false;
    start = end + 1;
  }
  return true;
}

std::string joinPath(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

std::string parentOf(const std::string& path) {
  auto pos = path.rfind('/');
  return pos == std::string::npos ? std::string() : path.substr(0, pos);
}

bool isUnder(const std::string& path, const std::string& dir) {
  if (dir.empty()) return true;
  return path.size() >= dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         (path.size() == dir.size() || path[dir.size()] == '/');
}

FileKind kindOf(mode_t mode) {
  if (S_ISDIR(mode)) return FileKind::kDirectory;
  if (S_ISLNK(mode)) return FileKind::kSymlink;
  return FileKind::kRegular;
}

bool isSupported(mode_t mode) {
  return S_ISREG(mode) || S_ISDIR(mode) || S_ISLNK(mode);
}

std::int64_t mtimeNs(const struct stat& st) {
  return static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000LL + st.st_mtim.tv_nsec;
}

std::string escapePath(std::string_view path) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (char ch : path) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '%') {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}

std::string unescapePath(std::string_view text) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() + 0 && val(text[i + 1]) >= 0 && val(text[i + 2]) >= 0) {
      out += static_cast<char>(val(text[i + 1]) * 16 + val(text[i + 2]));
      i += 2;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace ferry::sync::detail
