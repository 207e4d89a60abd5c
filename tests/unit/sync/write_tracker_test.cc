// Write tracking: the mirror with a FakeWriteTracker (table-driven: what is re-read for
// what was recorded), and the eBPF tracker on this kernel (skipped when it cannot load).
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "sync_test_util.h"

namespace ferry::sync {
namespace {

using namespace testutil;
namespace fs = std::filesystem;

constexpr std::uint64_t kBlock = kDefaultBlockSize;
constexpr std::uint64_t kFileBlocks = 64;

FileId idOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0);
  return FileId{st.st_dev, st.st_ino};
}

struct Case {
  const char* name;
  // Changes the file and tells the fake (or not) what changed.
  std::function<void(const fs::path& file, FakeWriteTracker& fake)> change;
  std::uint64_t max_read_blocks;  // bytes_read bound of the round, in blocks
  bool identical;                 // the replica must be identical afterwards
};

const Case kCases[] = {
    {"RecordedPage",
     [](const fs::path& f, FakeWriteTracker& t) {
       writeAt(f, 10 * kBlock, randomBytes(kBlock, 7));
       t.record(idOf(f), {10 * kBlock, kBlock});
     },
     1, true},
    {"UnalignedRangeSpansTwoBlocks",
     [](const fs::path& f, FakeWriteTracker& t) {
       writeAt(f, 3 * kBlock + 100, randomBytes(kBlock, 8));
       t.record(idOf(f), {3 * kBlock + 100, kBlock});
     },
     2, true},
    {"ScatteredPages",
     [](const fs::path& f, FakeWriteTracker& t) {
       for (std::uint64_t b : {1ull, 17ull, 40ull, 63ull}) {
         writeAt(f, b * kBlock, randomBytes(kBlock, b));
         t.record(idOf(f), {b * kBlock, kBlock});
       }
     },
     4, true},
    {"GrownFileReadsTheTail",
     [](const fs::path& f, FakeWriteTracker& t) {
       writeAt(f, kFileBlocks * kBlock, randomBytes(2 * kBlock, 9));
       t.record(idOf(f), {kFileBlocks * kBlock, 2 * kBlock});
     },
     3, true},
    {"ShrunkFile",
     [](const fs::path& f, FakeWriteTracker& t) {
       ASSERT_EQ(::truncate(f.c_str(), 10 * kBlock + 5), 0);
       t.record(idOf(f), {10 * kBlock + 5, kToEof});
     },
     1, true},
    {"LostRecordsReadWhole",
     [](const fs::path& f, FakeWriteTracker& t) {
       writeAt(f, 5 * kBlock, randomBytes(kBlock, 10));
       t.lose(idOf(f));
     },
     kFileBlocks, true},
    {"AllLostReadsWhole",
     [](const fs::path& f, FakeWriteTracker& t) {
       writeAt(f, 5 * kBlock, randomBytes(kBlock, 11));
       t.loseAll();
     },
     kFileBlocks, true},
    {"MappedFileFallsBack",
     [](const fs::path& f, FakeWriteTracker& t) {
       writeAt(f, 6 * kBlock, randomBytes(kBlock, 12));
       t.map(idOf(f));
     },
     kFileBlocks, true},
    // The tracker is authoritative for tracked files: a write it did not report is not
    // read (this is why it must see every write; the eBPF test below checks that it does).
    {"UnrecordedWriteIsNotRead",
     [](const fs::path& f, FakeWriteTracker&) { writeAt(f, 7 * kBlock, randomBytes(kBlock, 13)); }, 0, false},
};

class SyncWriteTracking : public ::testing::TestWithParam<Case> {};

TEST_P(SyncWriteTracking, ReadsWhatWasRecorded) {
  const Case& c = GetParam();
  TempTrees t;
  fs::path f = t.src() / "ibdata1";
  writeFile(f, randomBytes(kFileBlocks * kBlock, 1));
  auto fake = std::make_shared<FakeWriteTracker>();
  MirrorOptions mo;
  mo.write_tracker = fake;
  Pair pair(t, mo);
  auto first = pair.mirror->computeDelta(*pair.link);
  ASSERT_TRUE(first.ok()) << first.error().message();
  ASSERT_TRUE(fake->watching(idOf(f)));
  c.change(f, *fake);
  auto r = pair.mirror->finalDelta(*pair.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_LE(r.value().bytes_read, c.max_read_blocks * kBlock) << c.name;
  std::string diff = differences(t.src(), t.dst());
  if (c.identical)
    EXPECT_EQ(diff, "") << c.name;
  else
    EXPECT_NE(diff, "") << c.name;
}

INSTANTIATE_TEST_SUITE_P(Sync, SyncWriteTracking, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

// The ranged reader (many scattered blocks, split into reads of at most 1 MiB, hashed on
// hash_threads threads, delivered in order): exactly the recorded blocks are read and the
// replica ends identical, whatever the thread count.
struct RangedCase {
  const char* name;
  std::uint64_t file_bytes;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> writes;  // (offset, length)
  std::uint32_t threads;
};

std::vector<std::pair<std::uint64_t, std::uint64_t>> everyNthPage(std::uint64_t n, std::uint64_t count) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> w;
  for (std::uint64_t i = 0; i < count; ++i) w.emplace_back(i * n * kBlock, kBlock);
  return w;
}

const RangedCase kRangedCases[] = {
    {"ScatteredOneThread", 256 * kBlock, everyNthPage(5, 50), 1},
    {"ScatteredTwoThreads", 256 * kBlock, everyNthPage(5, 50), 2},
    {"ScatteredFourThreads", 256 * kBlock, everyNthPage(3, 80), 4},
    {"LongRunIsSplit", 512 * kBlock, {{10 * kBlock, 200 * kBlock}, {300 * kBlock, 3}}, 2},
    {"UnalignedTail", 100 * kBlock + 777, {{99 * kBlock + 5, 700}, {0, 1}, {40 * kBlock, 17 * kBlock}}, 2},
    {"ManySmallAndOneLarge", 1024 * kBlock,
     [] {
       auto w = everyNthPage(7, 100);
       w.emplace_back(800 * kBlock, 100 * kBlock);
       return w;
     }(),
     3},
};

class SyncRangedReads : public ::testing::TestWithParam<RangedCase> {};

TEST_P(SyncRangedReads, ReadsExactlyTheRecordedBlocks) {
  const RangedCase& c = GetParam();
  TempTrees t;
  fs::path f = t.src() / "ibdata1";
  writeFile(f, randomBytes(c.file_bytes, 21));
  auto fake = std::make_shared<FakeWriteTracker>();
  MirrorOptions mo;
  mo.write_tracker = fake;
  mo.hash_threads = c.threads;
  Pair pair(t, mo);
  ASSERT_TRUE(pair.mirror->computeDelta(*pair.link).ok());
  std::set<std::uint64_t> blocks;
  std::uint64_t seed = 100;
  for (auto [off, len] : c.writes) {
    writeAt(f, off, randomBytes(len, ++seed));
    fake->record(idOf(f), {off, len});
    for (std::uint64_t b = off / kBlock; b * kBlock < off + len; ++b) blocks.insert(b);
  }
  std::uint64_t expected = 0;
  for (std::uint64_t b : blocks) expected += std::min(kBlock, c.file_bytes - b * kBlock);
  auto r = pair.mirror->finalDelta(*pair.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r.value().bytes_read, expected) << c.name;
  EXPECT_EQ(r.value().blocks_sent, blocks.size()) << c.name;
  EXPECT_EQ(differences(t.src(), t.dst()), "") << c.name;
}

INSTANTIATE_TEST_SUITE_P(Sync, SyncRangedReads, ::testing::ValuesIn(kRangedCases),
                         [](const ::testing::TestParamInfo<RangedCase>& p) {
                           return std::string(p.param.name);
                         });

TEST(SyncWriteTrackingFallback, RefusedFileIsReadWhole) {
  TempTrees t;
  fs::path f = t.src() / "untracked.ibd";
  writeFile(f, randomBytes(16 * kBlock, 2));
  auto fake = std::make_shared<FakeWriteTracker>();
  fake->refuse("untracked");
  MirrorOptions mo;
  mo.write_tracker = fake;
  Pair pair(t, mo);
  ASSERT_TRUE(pair.mirror->computeDelta(*pair.link).ok());
  EXPECT_FALSE(fake->watching(idOf(f)));
  writeAt(f, 2 * kBlock, randomBytes(kBlock, 3));
  auto r = pair.mirror->finalDelta(*pair.link);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().bytes_read, 16 * kBlock);
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

// ---- the eBPF tracker on this kernel ------------------------------------------------------

std::unique_ptr<WriteTracker> bpfOrSkip(std::string* why) {
  auto t = openBpfWriteTracker();
  if (!t.ok()) {
    *why = t.error().message();
    return nullptr;
  }
  return std::move(t).value();
}

std::vector<DirtyRange> rangesOf(WriteTracker& t, FileId id) {
  TrackedChanges c = t.drain();
  EXPECT_FALSE(c.all_lost);
  EXPECT_TRUE(c.whole.empty());
  auto it = c.ranges.find(id);
  return it == c.ranges.end() ? std::vector<DirtyRange>{} : it->second;
}

bool covers(const std::vector<DirtyRange>& rs, std::uint64_t off, std::uint64_t len) {
  for (auto& r : rs)
    if (r.offset <= off && (r.length == kToEof || r.offset + r.length >= off + len)) return true;
  return false;
}

struct alignas(4096) Page {
  char bytes[kBlock];
};

TEST(SyncBpfWriteTracker, SeesEveryWritePath) {
  std::string why;
  auto tracker = bpfOrSkip(&why);
  if (!tracker) GTEST_SKIP() << "eBPF write tracking not available here: " << why;
  TempTrees t;
  fs::create_directories(t.src());
  fs::path f = t.src() / "data.ibd";
  writeFile(f, randomBytes(64 * kBlock, 4));
  FileId id = idOf(f);
  ASSERT_TRUE(tracker->watch(f.string(), id).ok());
  auto page = std::make_unique<Page>();
  std::memset(page->bytes, 'p', sizeof page->bytes);
  int fd = ::open(f.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);

  ASSERT_EQ(::pwrite(fd, page->bytes, kBlock, 3 * kBlock), static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 3 * kBlock, kBlock)) << "pwrite";

  ASSERT_EQ(::lseek(fd, 5 * kBlock, SEEK_SET), static_cast<off_t>(5 * kBlock));
  ASSERT_EQ(::write(fd, page->bytes, 100), 100);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 5 * kBlock, 100)) << "buffered write";

  iovec iov[2] = {{page->bytes, 4096}, {page->bytes, 8192}};
  ASSERT_EQ(::pwritev(fd, iov, 2, 7 * kBlock), 12288);
  auto rs = rangesOf(*tracker, id);
  EXPECT_TRUE(covers(rs, 7 * kBlock, 4096) && covers(rs, 7 * kBlock + 4096, 8192)) << "pwritev";

  int dfd = ::open(f.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(dfd, 0);
  ASSERT_EQ(::pwrite(dfd, page->bytes, kBlock, 9 * kBlock), static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 9 * kBlock, kBlock)) << "O_DIRECT pwrite";
  ASSERT_EQ(::pread(dfd, page->bytes, kBlock, 20 * kBlock), static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(rangesOf(*tracker, id).empty()) << "an O_DIRECT read is not a write";
  iovec dv = {page->bytes, kBlock};
  ASSERT_EQ(::pwritev2(dfd, &dv, 1, 13 * kBlock, 0), static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 13 * kBlock, kBlock)) << "O_DIRECT pwritev2";
  ASSERT_EQ(::preadv2(dfd, &dv, 1, 20 * kBlock, 0), static_cast<ssize_t>(kBlock));
  EXPECT_TRUE(rangesOf(*tracker, id).empty()) << "an O_DIRECT preadv2 is not a write";

  // libaio's io_submit, O_DIRECT (InnoDB's path): the range arrives with the completion.
  aio_context_t ctx = 0;
  ASSERT_EQ(::syscall(SYS_io_setup, 4, &ctx), 0);
  auto aio = [&](std::uint16_t op, std::uint64_t offset) {
    iocb cb{};
    cb.aio_fildes = static_cast<std::uint32_t>(dfd);
    cb.aio_lio_opcode = op;
    cb.aio_buf = reinterpret_cast<std::uintptr_t>(page->bytes);
    cb.aio_nbytes = kBlock;
    cb.aio_offset = static_cast<std::int64_t>(offset);
    iocb* cbs[1] = {&cb};
    EXPECT_EQ(::syscall(SYS_io_submit, ctx, 1, cbs), 1);
    io_event ev{};
    timespec ts{5, 0};
    EXPECT_EQ(::syscall(SYS_io_getevents, ctx, 1, 1, &ev, &ts), 1);
    return ev.res;
  };
  EXPECT_EQ(aio(IOCB_CMD_PWRITE, 11 * kBlock), static_cast<std::int64_t>(kBlock));
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 11 * kBlock, kBlock)) << "libaio O_DIRECT";
  // A direct read at EOF ends without iomap_dio_complete and leaves its kiocb address behind;
  // libaio's next kiocb (a write) comes from the same slab and likely has that address.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(aio(IOCB_CMD_PREAD, 1000 * kBlock), 0);
    EXPECT_EQ(aio(IOCB_CMD_PWRITE, static_cast<std::uint64_t>(12 + i) * kBlock),
              static_cast<std::int64_t>(kBlock));
    EXPECT_TRUE(covers(rangesOf(*tracker, id), static_cast<std::uint64_t>(12 + i) * kBlock, kBlock))
        << "libaio O_DIRECT write after a read at EOF";
  }
  EXPECT_EQ(aio(IOCB_CMD_PREAD, 20 * kBlock), static_cast<std::int64_t>(kBlock));
  EXPECT_TRUE(rangesOf(*tracker, id).empty()) << "a libaio O_DIRECT read is not a write";
  ::syscall(SYS_io_destroy, ctx);

  ASSERT_EQ(::ftruncate(fd, 30 * kBlock), 0);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 30 * kBlock, kBlock)) << "ftruncate";

  // fallocate: recorded under i_rwsem (the tracker checks that this task holds it; if not,
  // the file would come back as untracked and rangesOf would find nothing).
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 2 * kBlock, kBlock), 0);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 2 * kBlock, kBlock)) << "punch hole";
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 4 * kBlock, kBlock), 0);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 4 * kBlock, kBlock)) << "zero range";
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_INSERT_RANGE, 6 * kBlock, kBlock), 0);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 6 * kBlock, 25 * kBlock)) << "insert range: to EOF";
  ASSERT_EQ(::fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 6 * kBlock, kBlock), 0);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 6 * kBlock, 24 * kBlock)) << "collapse range: to EOF";
  ASSERT_EQ(::fallocate(fd, 0, 40 * kBlock, 2 * kBlock), 0);
  EXPECT_TRUE(covers(rangesOf(*tracker, id), 40 * kBlock, 2 * kBlock)) << "allocate (grows the file)";

  // Another file, not watched: nothing.
  fs::path other = t.src() / "other";
  writeFile(other, randomBytes(kBlock, 5));
  EXPECT_TRUE(tracker->drain().ranges.empty() || !tracker->drain().ranges.contains(idOf(other)));

  // A shared writable mapping makes the file untrackable.
  void* m = ::mmap(nullptr, kBlock, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(m, MAP_FAILED);
  EXPECT_TRUE(tracker->drain().untracked.contains(id)) << "mmap(MAP_SHARED, PROT_WRITE)";
  ::munmap(m, kBlock);
  ::close(dfd);
  ::close(fd);
}

// Which mappings make a file untrackable: shared ones that can write (PROT_WRITE, or an fd
// open for writing, which mprotect could upgrade), made before or after watch().
struct MapCase {
  const char* name;
  int open_flags;
  int prot;
  int flags;
  bool before_watch;  // mapped before watch(): found by settleWatches()' scan
  bool untracked;
};

const MapCase kMapCases[] = {
    {"SharedWritable", O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED, false, true},
    {"SharedReadOnlyOfWritableFd", O_RDWR, PROT_READ, MAP_SHARED, false, true},
    {"SharedValidateWritable", O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED_VALIDATE, false, true},
    {"SharedReadOnlyFd", O_RDONLY, PROT_READ, MAP_SHARED, false, false},
    {"PrivateWritable", O_RDWR, PROT_READ | PROT_WRITE, MAP_PRIVATE, false, false},
    {"SharedWritableBeforeWatch", O_RDWR, PROT_READ | PROT_WRITE, MAP_SHARED, true, true},
    {"PrivateBeforeWatch", O_RDWR, PROT_READ | PROT_WRITE, MAP_PRIVATE, true, false},
};

class SyncBpfMappings : public ::testing::TestWithParam<MapCase> {};

TEST_P(SyncBpfMappings, UntrackOnlySharedWritable) {
  const MapCase& c = GetParam();
  std::string why;
  auto tracker = bpfOrSkip(&why);
  if (!tracker) GTEST_SKIP() << "eBPF write tracking not available here: " << why;
  TempTrees t;
  fs::create_directories(t.src());
  fs::path f = t.src() / "mapped.ibd";
  writeFile(f, randomBytes(4 * kBlock, 14));
  FileId id = idOf(f);
  int fd = ::open(f.c_str(), c.open_flags);
  ASSERT_GE(fd, 0);
  void* m = MAP_FAILED;
  if (c.before_watch) m = ::mmap(nullptr, kBlock, c.prot, c.flags, fd, 0);
  ASSERT_TRUE(tracker->watch(f.string(), id).ok());
  tracker->settleWatches();
  if (!c.before_watch) m = ::mmap(nullptr, kBlock, c.prot, c.flags, fd, 0);
  ASSERT_NE(m, MAP_FAILED);
  TrackedChanges changes = tracker->drain();
  EXPECT_EQ(changes.untracked.contains(id), c.untracked) << c.name;
  ::munmap(m, kBlock);
  if (!c.untracked) {  // still tracked: a write is still seen
    int wfd = ::open(f.c_str(), O_WRONLY);
    ASSERT_GE(wfd, 0);
    ASSERT_EQ(::pwrite(wfd, "x", 1, 100), 1);
    ::close(wfd);
    EXPECT_TRUE(covers(rangesOf(*tracker, id), 100, 1)) << c.name;
  }
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(Sync, SyncBpfMappings, ::testing::ValuesIn(kMapCases),
                         [](const ::testing::TestParamInfo<MapCase>& p) {
                           return std::string(p.param.name);
                         });

// A file already mapped shared and writable when the mirror first reads it: stores through
// the mapping pass no hook, so the mirror must find the mapping (settleWatches) and re-read
// the file whole; tracked, it would read nothing and the replica would differ.
TEST(SyncBpfWriteTracker, MirrorFindsAMappingOlderThanTheTracker) {
  std::string why;
  if (!bpfOrSkip(&why)) GTEST_SKIP() << "eBPF write tracking not available here: " << why;
  TempTrees t;
  fs::create_directories(t.src());
  fs::path f = t.src() / "mapped.ibd";
  writeFile(f, randomBytes(8 * kBlock, 15));
  int fd = ::open(f.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  void* m = ::mmap(nullptr, 8 * kBlock, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(m, MAP_FAILED);
  Pair pair(t);
  ASSERT_EQ(pair.mirror->writeTracking(), "ebpf");
  ASSERT_TRUE(pair.mirror->computeDelta(*pair.link).ok());
  std::memset(static_cast<char*>(m) + 3 * kBlock, 'm', kBlock);
  auto r = pair.mirror->finalDelta(*pair.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  ::munmap(m, 8 * kBlock);
  ::close(fd);
}

// The race the design relies on: a write whose record was drained is already in place (an
// fallocate's is complete once the reader holds i_rwsem), so reading after the drain
// returns it. Many rounds against a concurrent writer: after the
// writer stops and a last round runs, the replica must be identical.
TEST(SyncBpfWriteTracker, MirrorStaysExactUnderConcurrentWrites) {
  std::string why;
  if (!bpfOrSkip(&why)) GTEST_SKIP() << "eBPF write tracking not available here: " << why;
  TempTrees t;
  fs::create_directories(t.src());
  fs::path f = t.src() / "hot.ibd";
  writeFile(f, randomBytes(256 * kBlock, 6));
  Pair pair(t);
  ASSERT_EQ(pair.mirror->writeTracking(), "ebpf");
  ASSERT_TRUE(pair.mirror->computeDelta(*pair.link).ok());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    int fd = ::open(f.c_str(), O_RDWR | O_DIRECT);
    auto page = std::make_unique<Page>();
    std::uint64_t seed = 1;
    for (std::uint64_t n = 0; !stop.load(); ++n) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      auto at = static_cast<off_t>(((seed >> 20) % 256) * kBlock);
      if (n % 8 == 3) {  // fallocate: recorded under i_rwsem, read after the mirror takes it
        ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, static_cast<off_t>(kBlock));
      } else if (n % 8 == 7) {
        ::fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, at + 4096, 8192);
      } else {
        std::memset(page->bytes, static_cast<int>(seed >> 56), sizeof page->bytes);
        ::pwrite(fd, page->bytes, kBlock, at);
      }
    }
    ::close(fd);
  });
  for (int i = 0; i < 30; ++i) {
    auto r = pair.mirror->computeDelta(*pair.link);
    ASSERT_TRUE(r.ok()) << r.error().message();
  }
  stop = true;
  writer.join();
  auto r = pair.mirror->finalDelta(*pair.link);
  ASSERT_TRUE(r.ok());
  EXPECT_LT(r.value().bytes_read, 256 * kBlock) << "the final round read only ranges";
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

}  // namespace
}  // namespace ferry::sync
