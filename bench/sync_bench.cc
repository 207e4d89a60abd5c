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
//
// Every run is checked with compareTrees (content and metadata) and fails loudly if the
// replica differs.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
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
    else {
      std::fprintf(
          stderr,
          "usage: ferry_sync_bench [--dir D] [--tree-mib 625] [--file-mib 1024] [--changes-mib 1,10,100]\n"
          "  [--patterns pages,extents,contiguous] [--block-kib 16] [--repeat 3] [--no-rsync] [--warm-only]\n"
          "  [--initial-only|--freeze-only] [--no-tracking]\n");
      return 2;
    }
  }
  if (c.rsync && findInPath("rsync").empty())
    die("rsync not found — apt-get install -y rsync, or pass --no-rsync");
  fs::create_directories(c.dir);
  std::printf("# ferry_sync_bench (in-process, no network), %d repeats, dir %s, write tracking %s\n", c.repeat,
              c.dir.c_str(), g_track_writes ? "auto" : "off");
  if (c.initial) benchInitial(c);
  if (c.freeze) benchFreeze(c);
  return 0;
}
