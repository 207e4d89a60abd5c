// ferry_sync_bench: in-process benchmark of the mirroring engine against rsync.
//
// No network: DirectoryMirror -> ThreadedLoopbackLink -> ReplicaWriter in one process
// (the replica applies on its own thread, as another host would); the replica fsyncs
// every batch. rsync runs local to local with
// `-a --inplace --no-whole-file --cc=xxh128 --fsync`, the same durability.
//
//   initial   full copy of a tree of video-like (incompressible) files: time, bytes, CPU
//   freeze    a 1 GiB file, X MiB rewritten in place since the last round; time from
//             "freeze" (finalDelta) until the replica is identical and fsynced
//   overhead  (--overhead) what the eBPF write tracker costs every other process: tight
//             loops of cheap syscalls with and without the tracker loaded
//   steady    (--steady) CPU of the mirror while a writer rewrites random pages of a
//             1 GiB file at ~200 writes/s and a round runs every 50 ms, as in the node
//
// Every run is checked with compareTrees (content and metadata) and fails loudly if the
// replica differs.
#if FERRY_BENCH_BPF_STATS
#include <bpf/bpf.h>
#endif
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ferry/base/process.h"
#include "ferry/sync/mirror.h"
#include "ferry/sync/replica.h"
#include "ferry/sync/testing.h"
#include "ferry/sync/verify.h"

namespace fs = std::filesystem;
using namespace ferry;
using namespace ferry::sync;

namespace {

struct Config {
  fs::path dir = "/tmp/ferry-sync-bench";
  std::uint64_t tree_mib = 625;
  std::uint64_t file_mib = 1024;
  std::vector<std::uint64_t> changes_mib = {1, 10, 100};
  std::vector<std::string> patterns = {"pages", "extents"};
  std::uint32_t block_kib = 16;
  int repeat = 3;
  bool rsync = true;
  bool cold = true;  // also run with the file dropped from the page cache (like O_DIRECT)
  bool initial = true;
  bool freeze = true;
  bool overhead = false;  // --overhead: syscall cost with and without the write tracker
  bool steady = false;    // --steady: mirror CPU per minute under a steady writer
  int steady_seconds = 60;
};

bool g_track_writes = true;  // --no-tracking: whole-file re-reads (the mirror without a write tracker)

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "ferry_sync_bench: %s\n", what.c_str());
  std::exit(1);
}

double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double cpuSelf() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
double cpuChildren() {
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// splitmix64 stream: fast incompressible bytes.
void fillRandom(std::uint8_t* p, std::size_t n, std::uint64_t& state) {
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    std::memcpy(p + i, &z, std::min<std::size_t>(8, n - i));
  }
}

void writeRandomFile(const fs::path& p, std::uint64_t bytes, std::uint64_t seed) {
  int fd = ::open(p.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0640);
  if (fd < 0) die("cannot create " + p.string());
  std::vector<std::uint8_t> buf(1 << 20);
  std::uint64_t st = seed;
  for (std::uint64_t off = 0; off < bytes; off += buf.size()) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), bytes - off));
    fillRandom(buf.data(), n, st);
    if (::write(fd, buf.data(), n) != static_cast<ssize_t>(n)) die("short write to " + p.string());
  }
  ::fsync(fd);
  ::close(fd);
}

void dropCache(const fs::path& root) {
  for (auto& e : fs::recursive_directory_iterator(root)) {
    if (!e.is_regular_file()) continue;
    int fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

// Rewrites `mib` MiB of `file` in place: "pages" = random 16 KiB pages (InnoDB page
// writes), "extents" = random 1 MiB extents (InnoDB extent flushes), "contiguous" = one
// run. Writes use O_DIRECT like MariaDB, so the new pages are not in the page cache.
void rewrite(const fs::path& file, std::uint64_t file_bytes, std::uint64_t mib, const std::string& pattern,
             std::uint64_t seed) {
  std::uint64_t unit = pattern == "pages" ? 16384 : pattern == "extents" ? (1u << 20) : mib << 20;
  std::uint64_t count = (mib << 20) / unit;
  std::uint64_t slots = file_bytes / unit;
  std::mt19937_64 rng(seed);
  std::set<std::uint64_t> chosen;
  if (pattern == "contiguous") {
    chosen.insert(rng() % (file_bytes / unit));
  } else {
    while (chosen.size() < count) chosen.insert(rng() % slots);
  }
  int fd = ::open(file.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
  bool direct = fd >= 0;
  if (!direct) fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) die("cannot open " + file.string());
  void* raw = nullptr;
  if (::posix_memalign(&raw, 4096, unit) != 0) die("out of memory");
  std::unique_ptr<std::uint8_t, decltype(&std::free)> buf(static_cast<std::uint8_t*>(raw), &std::free);
  std::uint64_t st = seed * 7919 + 1;
  for (auto slot : chosen) {
    fillRandom(buf.get(), unit, st);
    if (::pwrite(fd, buf.get(), unit, static_cast<off_t>(slot * unit)) != static_cast<ssize_t>(unit))
      die("rewrite failed: " + std::string(std::strerror(errno)));
  }
  ::close(fd);
}

void checkIdentical(const fs::path& a, const fs::path& b, const std::string& what) {
  auto d = compareTrees(a, b);
  if (!d.ok()) die("verify failed for " + what + ": " + d.error().message());
  if (!d->identical) {
    std::string s;
    for (std::size_t i = 0; i < d->differences.size() && i < 5; ++i)
      s += " " + d->differences[i].path + ":" + d->differences[i].what;
    die(what + ": replica differs:" + s);
  }
}

// Source and replica as two "hosts" in one process: the replica applies on its own
// thread behind a bounded window (ThreadedLoopbackLink), like the real link.
struct Engine {
  std::unique_ptr<DirectoryMirror> mirror;
  std::unique_ptr<ReplicaWriter> replica;
  std::unique_ptr<LoopbackLink> link;  // for the resume handshake
  std::unique_ptr<ThreadedLoopbackLink> tlink;
};

Engine makeEngine(const fs::path& src, const fs::path& dst, const fs::path& state, std::uint32_t block) {
  Engine e;
  MirrorOptions mo;
  mo.block_size = block;
  mo.track_writes = g_track_writes;
  auto m = DirectoryMirror::open(src, mo);
  if (!m.ok()) die(m.error().message());
  e.mirror = std::move(*m);
  auto r = ReplicaWriter::open(dst, state);
  if (!r.ok()) die(r.error().message());
  e.replica = std::move(*r);
  e.link = std::make_unique<LoopbackLink>(*e.mirror, *e.replica);
  Status s = e.link->reconnect(*e.replica);
  if (!s.ok()) die(s.error().message());
  e.tlink = std::make_unique<ThreadedLoopbackLink>(*e.mirror, *e.replica);
  return e;
}

struct RsyncRun {
  double seconds = 0, cpu = 0;
  std::uint64_t sent = 0;
};

RsyncRun runRsync(const fs::path& src, const fs::path& dst) {
  std::vector<std::string> argv = {"rsync",
                                   "-a",
                                   "--inplace",
                                   "--no-whole-file",
                                   "--cc=xxh128",
                                   "--fsync",
                                   "--modify-window=-1",
                                   "--stats",
                                   src.string() + "/",
                                   dst.string() + "/"};
  ProcessOptions po;
  po.timeout = std::chrono::minutes(10);
  double c0 = cpuChildren(), t0 = now();
  auto r = runChecked(argv, po);
  RsyncRun out;
  out.seconds = now() - t0;
  out.cpu = cpuChildren() - c0;
  if (!r.ok()) die(r.error().message());
  // "Total bytes sent: 1,234" (the sender's side of the pipe, literal + matched data tokens)
  auto pos = r->out.find("Total bytes sent: ");
  if (pos != std::string::npos) {
    std::string digits;
    for (std::size_t i = pos + 18;
         i < r->out.size() && (std::isdigit(static_cast<unsigned char>(r->out[i])) || r->out[i] == ','); ++i)
      if (r->out[i] != ',') digits += r->out[i];
    if (!digits.empty()) out.sent = std::stoull(digits);
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
// "median [min-max]" with `decimals` digits.
std::string spread(const std::vector<double>& v, double scale, int decimals) {
  if (v.empty()) return "-";
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.*f [%.*f-%.*f]", decimals, median(v) * scale, decimals, *lo * scale,
                decimals, *hi * scale);
  return buf;
}

void benchInitial(const Config& c) {
  fs::path base = c.dir / "initial";
  fs::remove_all(base);
  fs::create_directories(base / "src" / "videos");
  std::uint64_t total = c.tree_mib << 20;
  std::uint64_t per = 25ull << 20;
  std::uint64_t made = 0;
  for (int i = 0; made < total; ++i) {
    std::uint64_t n = std::min(per, total - made);
    writeRandomFile(base / "src" / "videos" / ("clip" + std::to_string(i) + ".mp4"), n,
                    1000 + static_cast<std::uint64_t>(i));
    made += n;
  }
  std::printf(
      "\n## initial full sync: %llu MiB tree (%llu files of <= 25 MiB, incompressible), page cache warm\n",
      static_cast<unsigned long long>(c.tree_mib), static_cast<unsigned long long>((total + per - 1) / per));
  std::printf("| tool | time s (median [min-max]) | bytes moved | CPU s |\n|---|---|---|---|\n");
  std::vector<double> ft, fc, rt, rc;
  std::uint64_t fb = 0, rb = 0;
  for (int k = 0; k < c.repeat; ++k) {
    fs::remove_all(base / "dst");
    fs::remove(base / "state");
    fs::create_directories(base / "dst");
    ::sync();
    double c0 = cpuSelf(), t0 = now();
    Engine e = makeEngine(base / "src", base / "dst", base / "state", c.block_kib * 1024);
    auto r = e.mirror->computeDelta(*e.tlink);
    if (!r.ok()) die(r.error().message());
    Status f = e.tlink->flush();
    if (!f.ok()) die(f.error().message());
    ft.push_back(now() - t0);
    fc.push_back(cpuSelf() - c0);
    fb = e.tlink->wireBytes();
    checkIdentical(base / "src", base / "dst", "ferry initial sync");
    if (c.rsync) {
      fs::remove_all(base / "rsync");
      fs::create_directories(base / "rsync");
      ::sync();
      RsyncRun rr = runRsync(base / "src", base / "rsync");
      rt.push_back(rr.seconds);
      rc.push_back(rr.cpu);
      rb = rr.sent;
      checkIdentical(base / "src", base / "rsync", "rsync initial sync");
    }
  }
  std::printf("| ferry (in-process, LZ4 when it helps, fsync per batch) | %s | %llu | %s |\n",
              spread(ft, 1, 2).c_str(), static_cast<unsigned long long>(fb), spread(fc, 1, 2).c_str());
  if (c.rsync)
    std::printf(
        "| rsync -a --inplace --no-whole-file --cc=xxh128 --fsync --modify-window=-1 | %s | %llu | %s |\n",
        spread(rt, 1, 2).c_str(), static_cast<unsigned long long>(rb), spread(rc, 1, 2).c_str());
  fs::remove_all(base);
}

void benchFreeze(const Config& c) {
  fs::path base = c.dir / "freeze";
  fs::remove_all(base);
  fs::create_directories(base / "src");
  fs::create_directories(base / "dst");
  fs::create_directories(base / "rsync");
  std::uint64_t file_bytes = c.file_mib << 20;
  writeRandomFile(base / "src" / "ibdata1", file_bytes, 42);
  // A few small files so the directory looks like a data directory.
  for (int i = 0; i < 20; ++i)
    writeRandomFile(base / "src" / ("t" + std::to_string(i) + ".frm"), 4096,
                    7 + static_cast<std::uint64_t>(i));
  Engine e = makeEngine(base / "src", base / "dst", base / "state", c.block_kib * 1024);
  auto first = e.mirror->computeDelta(*e.tlink);
  if (!first.ok()) die(first.error().message());
  if (Status f = e.tlink->flush(); !f.ok()) die(f.error().message());
  if (c.rsync) {
    RsyncRun rr = runRsync(base / "src", base / "rsync");
    (void)rr;
  }
  checkIdentical(base / "src", base / "dst", "ferry initial copy");
  std::printf(
      "\n## freeze-time final delta: %llu MiB file, X MiB rewritten in place (O_DIRECT) since the last "
      "round\n",
      static_cast<unsigned long long>(c.file_mib));
  std::printf(
      "block size %u KiB; ferry = finalDelta() (drain inotify, stat walk, re-hash touched files, send "
      "changed "
      "blocks) until the replica thread has written, fsynced and recorded the final batch; rsync = -a "
      "--inplace --no-whole-file --cc=xxh128 --fsync --modify-window=-1, same change\n",
      c.block_kib);
  std::printf(
      "| pattern | X MiB | cache | ferry ms (median [min-max]) | source done / replica tail ms | ferry read "
      "MiB | "
      "ferry sent MiB | ferry CPU ms | rsync ms (median [min-max]) | rsync sent MiB | rsync CPU ms |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|\n");
  std::uint64_t seed = 1;
  for (const auto& pattern : c.patterns) {
    for (auto mib : c.changes_mib) {
      for (int cold = 0; cold <= (c.cold ? 1 : 0); ++cold) {
        std::vector<double> ft, fcpu, rt, rcpu, fsrc, ftail;
        double fread = 0, fsent = 0, rsent = 0;
        for (int k = 0; k < c.repeat; ++k) {
          rewrite(base / "src" / "ibdata1", file_bytes, mib, pattern, seed++);
          if (cold) {
            dropCache(base / "src");
            dropCache(base / "dst");
          }
          double c0 = cpuSelf(), t0 = now();
          auto r = e.mirror->finalDelta(*e.tlink);
          double t_src = now();
          if (!r.ok()) die(r.error().message());
          if (Status f = e.tlink->flush(); !f.ok()) die(f.error().message());
          double t1 = now();
          fsrc.push_back(t_src - t0);
          ftail.push_back(t1 - t_src);
          if (!e.replica->finalApplied()) die("replica did not reach the final state");
          ft.push_back(t1 - t0);
          fcpu.push_back(cpuSelf() - c0);
          fread = static_cast<double>(r->bytes_read) / (1 << 20);
          fsent = static_cast<double>(r->bytes_sent) / (1 << 20);
          checkIdentical(base / "src", base / "dst", "ferry freeze delta");
          if (c.rsync) {
            if (cold) {
              dropCache(base / "src");
              dropCache(base / "rsync");
            }
            RsyncRun rr = runRsync(base / "src", base / "rsync");
            rt.push_back(rr.seconds);
            rcpu.push_back(rr.cpu);
            rsent = static_cast<double>(rr.sent) / (1 << 20);
            checkIdentical(base / "src", base / "rsync", "rsync freeze delta");
          }
        }
        std::printf("| %s | %llu | %s | %s | %.0f / %.0f | %.0f | %.1f | %.0f | %s | %.1f | %.0f |\n",
                    pattern.c_str(), static_cast<unsigned long long>(mib), cold ? "cold" : "warm",
                    spread(ft, 1000, 0).c_str(), median(fsrc) * 1000, median(ftail) * 1000, fread, fsent,
                    median(fcpu) * 1000, c.rsync ? spread(rt, 1000, 0).c_str() : "-", rsent,
                    median(rcpu) * 1000);
        std::fflush(stdout);
      }
    }
  }
  fs::remove_all(base);
}

double threadCpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// ---- --overhead: the write tracker's cost to every other process --------------------------
// `repeat` rounds; each runs every operation with the tracker unloaded ("off"), then loaded
// and watching the ext4 file ("on"). Reported: on-CPU nanoseconds per operation of the
// looping thread (CLOCK_THREAD_CPUTIME_ID: time preempted by other load does not count; for
// O_DIRECT the disk wait does not either), min and median over the rounds, and the wall-time
// median. The ring buffer is drained between batches of 10000 operations (not timed).
struct AlignedBuffer {
  explicit AlignedBuffer(std::size_t n) {
    if (::posix_memalign(&p, 4096, n) != 0) die("out of memory");
    std::memset(p, 'o', n);
  }
  ~AlignedBuffer() { std::free(p); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  void* p = nullptr;
};

// Run time of BPF programs as the kernel counts it (only while a BPF_ENABLE_STATS fd is
// open): the programs loaded since baseline(), summed.
class BpfRunTime {
 public:
#if FERRY_BENCH_BPF_STATS
  BpfRunTime() : stats_fd_(bpf_enable_stats(BPF_STATS_RUN_TIME)) {}
  ~BpfRunTime() {
    if (stats_fd_ >= 0) ::close(stats_fd_);
  }
  // Around loading the tracker: its programs are the ones that appeared in between (not
  // those another process loads later).
  void baseline() {
    before_ = ids();
  }
  void loaded() {
    mine_.clear();
    for (std::uint32_t id : ids())
      if (!before_.contains(id)) mine_.insert(id);
  }
  // Names of BPF programs loaded by others right now (another ferry node's tracker...).
  [[nodiscard]] std::set<std::string> foreign() const {
    std::set<std::string> out;
    for (std::uint32_t id : ids()) {
      if (mine_.contains(id)) continue;
      int fd = bpf_prog_get_fd_by_id(id);
      if (fd < 0) continue;
      bpf_prog_info info{};
      std::uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) out.insert(info.name);
      ::close(fd);
    }
    return out;
  }
  // (run_time_ns, run_cnt) of the tracker's programs, by name.
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> byName() const {
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> out;
    for (std::uint32_t id : mine_) {
      int fd = bpf_prog_get_fd_by_id(id);
      if (fd < 0) continue;
      bpf_prog_info info{};
      std::uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) {
        auto& [ns, cnt] = out[info.name];
        ns += info.run_time_ns;
        cnt += info.run_cnt;
      }
      ::close(fd);
    }
    return out;
  }
  std::pair<std::uint64_t, std::uint64_t> sample() const {
    std::uint64_t ns = 0, cnt = 0;
    for (auto& [name, v] : byName()) {
      ns += v.first;
      cnt += v.second;
    }
    return {ns, cnt};
  }
  [[nodiscard]] bool on() const {
    return stats_fd_ >= 0;
  }

 private:
  static std::set<std::uint32_t> ids() {
    std::set<std::uint32_t> out;
    std::uint32_t id = 0;
    while (bpf_prog_get_next_id(id, &id) == 0) out.insert(id);
    return out;
  }
  int stats_fd_ = -1;
  std::set<std::uint32_t> before_, mine_;
#else
  void baseline() {}
  void loaded() {}
  [[nodiscard]] std::set<std::string> foreign() const {
    return {};
  }
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> byName() const {
    return {};
  }
  std::pair<std::uint64_t, std::uint64_t> sample() const {
    return {0, 0};
  }
  [[nodiscard]] bool on() const {
    return false;
  }
#endif
  BpfRunTime(const BpfRunTime&) = delete;
  BpfRunTime& operator=(const BpfRunTime&) = delete;
};

void benchOverhead(const Config& c) {
  fs::path base = c.dir / "overhead";
  fs::remove_all(base);
  fs::create_directories(base);
  constexpr std::uint64_t kSpan = 64ull << 20;  // offsets cycle over 64 MiB
  constexpr std::size_t kPage = 16384;
  fs::path tracked = base / "tracked.ibd";
  writeRandomFile(tracked, kSpan, 99);
  fs::path other = base / "other.ibd";  // ext4, never watched: what every other service pays
  writeRandomFile(other, kSpan, 98);
  std::string shm = "/dev/shm/ferry-overhead-" + std::to_string(::getpid());
  int shm_fd = ::open(shm.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  int buf_fd = ::open(tracked.c_str(), O_RDWR | O_CLOEXEC);
  int dio_fd = ::open(tracked.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  int other_fd = ::open(other.c_str(), O_RDWR | O_CLOEXEC);
  int other_dio_fd = ::open(other.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC);
  if (shm_fd < 0 || buf_fd < 0 || dio_fd < 0 || other_fd < 0 || other_dio_fd < 0)
    die("cannot open the overhead files under " + base.string());
  AlignedBuffer page(kPage);
  struct Op {
    const char* name;
    std::uint64_t count;
    std::function<void(std::uint64_t)> run;
  };
  auto off = [&](std::uint64_t i) { return static_cast<off_t>((i * kPage * 7919) % kSpan); };
  const Op ops[] = {
      {"getppid()", 200000, [](std::uint64_t) { ::syscall(SYS_getppid); }},
      {"pwrite 16 KiB, tmpfs (/dev/shm)", 50000,
       [&](std::uint64_t i) {
         if (::pwrite(shm_fd, page.p, kPage, off(i)) != static_cast<ssize_t>(kPage))
           die("tmpfs pwrite failed");
       }},
      {"pwrite 16 KiB, ext4 buffered, untracked file", 30000,
       [&](std::uint64_t i) {
         if (::pwrite(other_fd, page.p, kPage, off(i)) != static_cast<ssize_t>(kPage))
           die("ext4 pwrite failed");
       }},
      {"pread 16 KiB, ext4 O_DIRECT, untracked file", 2000,
       [&](std::uint64_t i) {
         if (::pread(other_dio_fd, page.p, kPage, off(i)) != static_cast<ssize_t>(kPage))
           die("O_DIRECT pread failed");
       }},
      {"pwrite 16 KiB, ext4 buffered, tracked file", 30000,
       [&](std::uint64_t i) {
         if (::pwrite(buf_fd, page.p, kPage, off(i)) != static_cast<ssize_t>(kPage))
           die("ext4 pwrite failed");
       }},
      {"pwrite 16 KiB, ext4 O_DIRECT, tracked file", 2000,
       [&](std::uint64_t i) {
         if (::pwrite(dio_fd, page.p, kPage, off(i)) != static_cast<ssize_t>(kPage))
           die("O_DIRECT pwrite failed");
       }},
      {"mmap+munmap 4 KiB anonymous", 50000,
       [&](std::uint64_t) {
         void* m = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         if (m == MAP_FAILED) die("mmap failed");
         ::munmap(m, 4096);
       }},
  };
  constexpr std::size_t kOps = sizeof ops / sizeof ops[0];
  std::unique_ptr<WriteTracker> tracker;
  BpfRunTime runtime;
  auto load = [&](bool on) {
    tracker.reset();
    if (!on) return;
    runtime.baseline();
    auto t = openBpfWriteTracker();
    if (!t.ok()) die(t.error().message());
    tracker = std::move(t).value();
    runtime.loaded();
    struct stat st {};
    ::stat(tracked.c_str(), &st);
    Status w = tracker->watch(tracked.string(), FileId{st.st_dev, st.st_ino});
    if (!w.ok()) die(w.error().message());
  };
  std::vector<double> cpu[kOps][2], wall[kOps][2];
  std::uint64_t prog_ns[kOps] = {}, prog_runs[kOps] = {}, prog_ops[kOps] = {};
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> per_prog[kOps];
  std::set<std::string> foreign;  // programs of other processes seen during the runs
  for (int k = 0; k < c.repeat; ++k) {
    for (int on = 0; on <= 1; ++on) {
      load(on == 1);
      for (std::size_t o = 0; o < kOps; ++o) {
        constexpr std::uint64_t kBatch = 10000;
        double w = 0, u = 0;
        for (auto& name : runtime.foreign()) foreign.insert(name);
        auto p0 = runtime.sample();
        auto n0 = runtime.byName();
        for (std::uint64_t done = 0; done < ops[o].count;) {
          std::uint64_t n = std::min(kBatch, ops[o].count - done);
          double t0 = now(), c0 = threadCpu();
          for (std::uint64_t i = done; i < done + n; ++i) ops[o].run(i);
          u += threadCpu() - c0;
          w += now() - t0;
          done += n;
          if (tracker) (void)tracker->drain();
        }
        if (on) {
          auto p1 = runtime.sample();
          prog_ns[o] += p1.first - p0.first;
          prog_runs[o] += p1.second - p0.second;
          prog_ops[o] += ops[o].count;
          for (auto& [name, v] : runtime.byName()) {
            per_prog[o][name].first += v.first - n0[name].first;
            per_prog[o][name].second += v.second - n0[name].second;
          }
        }
        cpu[o][on].push_back(u / static_cast<double>(ops[o].count));
        wall[o][on].push_back(w / static_cast<double>(ops[o].count));
      }
    }
  }
  tracker.reset();
  std::printf(
      "\n## write tracker overhead on other processes: CPU ns per operation (min / median of %d rounds), "
      "wall median; BPF: the tracker's programs as the kernel counts them (%s)\n",
      c.repeat, runtime.on() ? "BPF_ENABLE_STATS" : "unavailable");
  std::printf(
      "| operation | tracker off: CPU | tracker on: CPU | added CPU (min / median) | wall median off / on | "
      "BPF "
      "runs per op | BPF ns per op |\n|---|---|---|---|---|---|---|\n");
  for (std::size_t o = 0; o < kOps; ++o) {
    double off_min = *std::min_element(cpu[o][0].begin(), cpu[o][0].end()) * 1e9;
    double on_min = *std::min_element(cpu[o][1].begin(), cpu[o][1].end()) * 1e9;
    double off_med = median(cpu[o][0]) * 1e9, on_med = median(cpu[o][1]) * 1e9;
    double n = static_cast<double>(std::max<std::uint64_t>(prog_ops[o], 1));
    std::printf("| %s | %.0f / %.0f | %.0f / %.0f | %+.0f / %+.0f | %.0f / %.0f | %.2f | %.0f |\n",
                ops[o].name, off_min, off_med, on_min, on_med, on_min - off_min, on_med - off_med,
                median(wall[o][0]) * 1e9, median(wall[o][1]) * 1e9, static_cast<double>(prog_runs[o]) / n,
                static_cast<double>(prog_ns[o]) / n);
  }
  if (runtime.on()) {
    std::printf("\nBPF programs of other processes loaded during the runs (they affect both columns):");
    for (auto& name : foreign) std::printf(" %s", name.c_str());
    std::printf("%s\n", foreign.empty() ? " none" : "");
    std::printf("\nper program (runs per op, ns per run):\n");
    for (std::size_t o = 0; o < kOps; ++o) {
      std::printf("- %s:", ops[o].name);
      double n = static_cast<double>(std::max<std::uint64_t>(prog_ops[o], 1));
      for (auto& [name, v] : per_prog[o])
        if (v.second > 0)
          std::printf(" %s %.2f x %.0f ns;", name.c_str(), static_cast<double>(v.second) / n,
                      static_cast<double>(v.first) / static_cast<double>(v.second));
      std::printf("\n");
    }
  }
  ::close(shm_fd);
  ::close(buf_fd);
  ::close(dio_fd);
  ::close(other_fd);
  ::close(other_dio_fd);
  ::unlink(shm.c_str());
  fs::remove_all(base);
}

// ---- --steady: the mirror's CPU while the service runs --------------------------------------
// A writer thread rewrites random 16 KiB pages of a 1 GiB file with O_DIRECT (as InnoDB) at
// ~200 writes/s; the mirror runs a round every 50 ms (as the node) into a sink that only
// counts (the replica's cost is the other host's). Mirror CPU = this process's CPU minus the
// writer thread's (which includes the tracker's programs, run in the writer's syscalls).
class CountingSink : public DeltaSink {
 public:
  Status send(Message) override {
    ++messages;
    return okStatus();
  }
  std::uint64_t messages = 0;
};

void benchSteady(const Config& c) {
  fs::path base = c.dir / "steady";
  fs::remove_all(base);
  fs::create_directories(base / "src");
  std::uint64_t file_bytes = c.file_mib << 20;
  fs::path file = base / "src" / "ibdata1";
  writeRandomFile(file, file_bytes, 42);
  for (int i = 0; i < 20; ++i)
    writeRandomFile(base / "src" / ("t" + std::to_string(i) + ".frm"), 4096,
                    7 + static_cast<std::uint64_t>(i));
  MirrorOptions mo;
  mo.block_size = c.block_kib * 1024;
  mo.track_writes = g_track_writes;
  auto opened = DirectoryMirror::open(base / "src", mo);
  if (!opened.ok()) die(opened.error().message());
  DirectoryMirror& mirror = **opened;
  CountingSink sink;
  auto first = mirror.computeDelta(sink);
  if (!first.ok()) die(first.error().message());
  mirror.acknowledge(mo.epoch, mirror.lastSentSeq());

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> writes{0};
  std::atomic<double> writer_cpu{0};
  std::thread writer([&] {
    int fd = ::open(file.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) die("cannot open " + file.string());
    AlignedBuffer page(16384);
    std::mt19937_64 rng(5);
    std::uint64_t st = 77;
    auto next = std::chrono::steady_clock::now();
    while (!stop.load()) {
      fillRandom(static_cast<std::uint8_t*>(page.p), 16384, st);
      auto slot = static_cast<off_t>((rng() % (file_bytes / 16384)) * 16384);
      if (::pwrite(fd, page.p, 16384, slot) != 16384) die("steady writer: pwrite failed");
      writes.fetch_add(1);
      writer_cpu.store(threadCpu());
      next += std::chrono::milliseconds(5);  // 200 writes/s
      std::this_thread::sleep_until(next);
    }
    ::close(fd);
  });
  auto runFor = [&](double seconds, bool measure) {
    double t_end = now() + seconds;
    double c0 = cpuSelf(), w0 = writer_cpu.load(), t0 = now();
    std::uint64_t writes0 = writes.load(), rounds = 0, read = 0, blocks = 0, ranged = 0;
    double busy = 0;
    while (now() < t_end) {
      double r0 = now();
      auto r = mirror.computeDelta(sink);
      if (!r.ok()) die(r.error().message());
      mirror.acknowledge(mo.epoch, mirror.lastSentSeq());
      busy += now() - r0;
      ++rounds;
      read += r->bytes_read;
      blocks += r->blocks_sent;
      ranged += r->files_ranged;
      std::this_thread::sleep_until(std::chrono::steady_clock::now() +
                                    std::chrono::duration<double>(std::max(0.0, r0 + 0.05 - now())));
    }
    if (!measure) return;
    double wall = now() - t0;
    double cpu = (cpuSelf() - c0) - (writer_cpu.load() - w0);
    double n = static_cast<double>(std::max<std::uint64_t>(rounds, 1));
    std::printf("| %s | %.0f | %llu | %.1f | %.2f | %.1f | %.1f | %.2f |\n",
                mirror.writeTracking().empty() ? "whole-file re-read (no tracking)"
                                               : ("tracked (" + mirror.writeTracking() + ")").c_str(),
                static_cast<double>(writes.load() - writes0) / wall, static_cast<unsigned long long>(rounds),
                busy / n * 1000, static_cast<double>(read) / n / (1 << 20), static_cast<double>(blocks) / n,
                cpu / wall * 60, cpu / n * 1000);
    (void)ranged;
  };
  std::printf(
      "\n## steady state: writer rewrites random 16 KiB pages of a %llu MiB file (O_DIRECT), round every 50 "
      "ms, %d s\n",
      static_cast<unsigned long long>(c.file_mib), c.steady_seconds);
  std::printf(
      "| mirror | writes/s | rounds | round ms (mean) | read MiB/round | blocks sent/round | mirror CPU s "
      "per "
      "minute | CPU ms per round |\n|---|---|---|---|---|---|---|---|\n");
  runFor(3, false);  // settle
  runFor(c.steady_seconds, true);
  stop = true;
  writer.join();
  fs::remove_all(base);
}

std::vector<std::uint64_t> parseList(const std::string& s) {
  std::vector<std::uint64_t> out;
  std::size_t start = 0;
  while (start < s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    out.push_back(std::stoull(s.substr(start, end - start)));
    start = end + 1;
  }
  return out;
}

std::vector<std::string> parseWords(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) die("missing value after " + a);
      return argv[++i];
    };
    if (a == "--dir")
      c.dir = val();
    else if (a == "--tree-mib")
      c.tree_mib = std::stoull(val());
    else if (a == "--file-mib")
      c.file_mib = std::stoull(val());
    else if (a == "--changes-mib")
      c.changes_mib = parseList(val());
    else if (a == "--patterns")
      c.patterns = parseWords(val());
    else if (a == "--block-kib")
      c.block_kib = static_cast<std::uint32_t>(std::stoul(val()));
    else if (a == "--repeat")
      c.repeat = std::stoi(val());
    else if (a == "--no-rsync")
      c.rsync = false;
    else if (a == "--warm-only")
      c.cold = false;
    else if (a == "--initial-only")
      c.freeze = false;
    else if (a == "--freeze-only")
      c.initial = false;
    else if (a == "--no-tracking")
      g_track_writes = false;
    else if (a == "--overhead")
      c.overhead = true;
    else if (a == "--steady")
      c.steady = true;
    else if (a == "--steady-seconds")
      c.steady_seconds = std::stoi(val());
    else {
      std::fprintf(
          stderr,
          "usage: ferry_sync_bench [--dir D] [--tree-mib 625] [--file-mib 1024] [--changes-mib 1,10,100]\n"
          "  [--patterns pages,extents,contiguous] [--block-kib 16] [--repeat 3] [--no-rsync] [--warm-only]\n"
          "  [--initial-only|--freeze-only] [--no-tracking]\n"
          "  [--overhead] (only: the write tracker's cost to other processes' syscalls)\n"
          "  [--steady [--steady-seconds 60]] (only: mirror CPU under a steady writer, 50 ms rounds)\n");
      return 2;
    }
  }
  if (c.rsync && !c.overhead && !c.steady && findInPath("rsync").empty())
    die("rsync not found — apt-get install -y rsync, or pass --no-rsync");
  fs::create_directories(c.dir);
  std::printf("# ferry_sync_bench (in-process, no network), %d repeats, dir %s, write tracking %s\n",
              c.repeat, c.dir.c_str(), g_track_writes ? "auto" : "off");
  if (c.overhead) {
    benchOverhead(c);
    return 0;
  }
  if (c.steady) {
    benchSteady(c);
    return 0;
  }
  if (c.initial) benchInitial(c);
  if (c.freeze) benchFreeze(c);
  return 0;
}
