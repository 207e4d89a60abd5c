// Mirroring scenarios: a change on the source, one round, and the replica must be
// identical by content and metadata. Every scenario runs with inotify and with walks only.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <functional>

#include <gtest/gtest.h>

#include "sync_test_util.h"

namespace ferry::sync {
namespace {

using namespace testutil;
namespace fs = std::filesystem;

constexpr std::size_t kBlock = kDefaultBlockSize;

struct Scenario {
  const char* name;
  std::function<void(const fs::path&)> setup;
  std::function<void(const fs::path&)> change;
  std::uint64_t max_block_bytes;  // data bytes the change may send (~0: no bound)
  bool needs_root = false;        // chown to another uid
};

void baseTree(const fs::path& s) {
  fs::create_directories(s / "db" / "sub");
  writeFile(s / "db" / "ibdata1", randomBytes(8 * kBlock + 100, 1));
  writeFile(s / "db" / "sub" / "t1.ibd", randomBytes(3 * kBlock, 2));
  writeFile(s / "small.txt", "hello");
  fs::create_symlink("db/ibdata1", s / "link");
}

const Scenario kScenarios[] = {
    {"NewFile", baseTree,
     [](const fs::path& s) { writeFile(s / "db" / "new.ibd", randomBytes(kBlock + 7, 3)); }, 2 * kBlock},
    {"NewDirectoryTree", baseTree,
     [](const fs::path& s) {
       fs::create_directories(s / "a" / "b" / "c");
       writeFile(s / "a" / "b" / "c" / "f", "deep");
     },
     kBlock},
    {"GrownFile", baseTree,
     [](const fs::path& s) {
       int fd = ::open((s / "db" / "sub" / "t1.ibd").c_str(), O_WRONLY | O_APPEND);
       std::string more = randomBytes(2 * kBlock, 4);
       ASSERT_EQ(::write(fd, more.data(), more.size()), static_cast<ssize_t>(more.size()));
       ::close(fd);
     },
     2 * kBlock},
    {"TruncatedFile", baseTree,
     [](const fs::path& s) { fs::resize_file(s / "db" / "ibdata1", 2 * kBlock + 5); }, kBlock},
    {"RewriteOnePageInPlace", baseTree,
     [](const fs::path& s) { writeAt(s / "db" / "ibdata1", 5 * kBlock + 16384, randomBytes(16384, 5)); },
     kBlock},
    {"DeletedFile", baseTree, [](const fs::path& s) { fs::remove(s / "small.txt"); }, 0},
    {"DeletedTree", baseTree, [](const fs::path& s) { fs::remove_all(s / "db" / "sub"); }, 0},
    {"RenamedFile", baseTree,
     [](const fs::path& s) { fs::rename(s / "db" / "ibdata1", s / "db" / "ibdata2"); }, 0},
    {"RenamedDirectory", baseTree, [](const fs::path& s) { fs::rename(s / "db" / "sub", s / "moved"); }, 0},
    {"AtomicReplace", baseTree,
     [](const fs::path& s) {
       std::string c = readAll(s / "db" / "ibdata1");
       c.replace(kBlock, 10, "0123456789");
       writeFile(s / "db" / "ibdata1.tmp", c);
       fs::rename(s / "db" / "ibdata1.tmp", s / "db" / "ibdata1");
     },
     kBlock},
    {"Chmod", baseTree,
     [](const fs::path& s) {
       ASSERT_EQ(::chmod((s / "db" / "sub" / "t1.ibd").c_str(), 0600), 0);
       ASSERT_EQ(::chmod((s / "db").c_str(), 0750), 0);
     },
     0},
    {"Chown", baseTree,
     [](const fs::path& s) {
       ASSERT_EQ(::chown((s / "db" / "ibdata1").c_str(), 1000, 1000), 0);
       ASSERT_EQ(::chown((s / "db" / "sub").c_str(), 1000, 1001), 0);
       ASSERT_EQ(::lchown((s / "link").c_str(), 1002, 1002), 0);
     },
     0, true},
    {"SymlinkRetargeted", baseTree,
     [](const fs::path& s) {
       fs::remove(s / "link");
       fs::create_symlink("/etc/passwd", s / "link");
     },
     0},
    {"FileBecomesDirectory", baseTree,
     [](const fs::path& s) {
       fs::remove(s / "small.txt");
       fs::create_directories(s / "small.txt");
       writeFile(s / "small.txt" / "inner", "x");
     },
     kBlock},
    {"SwappedFiles", baseTree,
     [](const fs::path& s) {
       fs::rename(s / "db" / "ibdata1", s / "tmp");
       fs::rename(s / "small.txt", s / "db" / "ibdata1");
       fs::rename(s / "tmp", s / "small.txt");
     },
     ~0ull},
    {"RenameIntoNewDirectory", baseTree,
     [](const fs::path& s) {
       fs::create_directories(s / "n1" / "n2");
       fs::rename(s / "db" / "ibdata1", s / "n1" / "n2" / "ibdata1");
       fs::rename(s / "db" / "sub", s / "n1" / "sub");
     },
     0},
    {"NameReusedByADirectory", baseTree,
     [](const fs::path& s) {
       fs::rename(s / "small.txt", s / "renamed.txt");
       fs::create_directories(s / "small.txt");
     },
     0},
    {"BlockBecomesZero", baseTree,
     [](const fs::path& s) { writeAt(s / "db" / "ibdata1", 2 * kBlock, std::string(kBlock, '\0')); }, 0},
};

class MirrorScenario : public ::testing::TestWithParam<std::tuple<Scenario, bool>> {};

TEST_P(MirrorScenario, ReplicaIdenticalAfterOneRound) {
  const auto& [sc, watch] = GetParam();
  if (sc.needs_root && ::geteuid() != 0) GTEST_SKIP() << "needs root (chown to uid 1000)";
  TempTrees t;
  sc.setup(t.src());
  MirrorOptions mo;
  mo.watch = watch;
  Pair p(t, mo);
  auto first = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(first.ok()) << first.error().message();
  ASSERT_EQ(differences(t.src(), t.dst()), "");
  EXPECT_TRUE(p.replica->consistent());

  sc.change(t.src());
  p.link->resetCounters();
  auto second = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(second.ok()) << second.error().message();
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  EXPECT_LE(p.link->counters().block_bytes, sc.max_block_bytes);
  EXPECT_TRUE(p.replica->consistent());

  // A further round with no change sends nothing.
  p.link->resetCounters();
  auto third = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(p.link->counters().block_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(Sync, MirrorScenario,
                         ::testing::Combine(::testing::ValuesIn(kScenarios), ::testing::Bool()),
                         [](const auto& tp) {
                           return std::string(std::get<0>(tp.param).name) +
                                  (std::get<1>(tp.param) ? "_inotify" : "_walk");
                         });

TEST(Mirror, SparseFileStaysSparse) {
  TempTrees t;
  auto f = t.src() / "sparse";
  {
    int fd = ::open(f.c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 256 * 1024 * 1024), 0);
    std::string data = randomBytes(kBlock, 9);
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 100 * 1024 * 1024), static_cast<ssize_t>(data.size()));
    ::close(fd);
  }
  Pair p(t);
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  EXPECT_LE(r->bytes_read, 2 * kBlock);  // holes are not read
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat(f.c_str(), &a), 0);
  ASSERT_EQ(::stat((t.dst() / "sparse").c_str(), &b), 0);
  EXPECT_EQ(b.st_size, a.st_size);
  EXPECT_LE(b.st_blocks, a.st_blocks + 256);  // 512-byte units: at most 128 KiB more
  EXPECT_LT(b.st_blocks, 1024);

  // A data block that becomes zero turns into a hole on the replica.
  writeAt(f, 100 * 1024 * 1024, std::string(kBlock, '\0'));
  r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->zero_blocks, 1u);
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  ASSERT_EQ(::stat((t.dst() / "sparse").c_str(), &b), 0);
  EXPECT_LT(b.st_blocks, 64);
}

TEST(Mirror, OnlyChangedBlocksCrossTheLink) {
  TempTrees t;
  writeFile(t.src() / "big", randomBytes(256 * kBlock, 11));  // 16 MiB
  Pair p(t);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  EXPECT_EQ(p.link->counters().block_bytes, 256 * kBlock);
  for (int i = 0; i < 3; ++i)
    writeAt(t.src() / "big", static_cast<std::uint64_t>(i) * 40 * kBlock + 100, "xyz");
  p.link->resetCounters();
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(p.link->counters().blocks, 3u);
  EXPECT_EQ(r->files_hashed, 1u);
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

TEST(Mirror, WipedReplicaIsRefilledNotTrusted) {
  // The standby lost everything it had acknowledged (a new disk, a wiped directory):
  // it comes back at (epoch 0, seq 0) and the mirror must ask for every hash, not
  // believe its memory of what the replica held.
  TempTrees t;
  writeFile(t.src() / "a", randomBytes(4 * kBlock, 21));
  writeFile(t.src() / "b", "small");
  Pair p(t);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  ASSERT_EQ(differences(t.src(), t.dst()), "");
  std::filesystem::remove_all(t.dst());
  std::filesystem::create_directories(t.dst());
  std::filesystem::remove(t.stateFile());
  p.reopenReplica();
  EXPECT_TRUE(p.mirror->resumeRequest(p.replica->resumeState()).all);
  ASSERT_TRUE(p.link->reconnect(*p.replica).ok());
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

class MirrorThreads : public ::testing::TestWithParam<std::uint32_t> {};

TEST_P(MirrorThreads, BigKnownFileDeltaIsTheSameWithAnyThreadCount) {
  TempTrees t;
  writeFile(t.src() / "big", randomBytes(768 * kBlock, 21));  // 12 MiB: above the parallel threshold
  MirrorOptions mo;
  mo.hash_threads = GetParam();
  Pair p(t, mo);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  writeAt(t.src() / "big", 0, "first");
  writeAt(t.src() / "big", 400 * kBlock - 2, "straddles two blocks");
  writeAt(t.src() / "big", 768 * kBlock - 1, "L");
  writeAt(t.src() / "big", 500 * kBlock, std::string(kBlock, '\0'));
  p.link->resetCounters();
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(p.link->counters().blocks, 4u);
  EXPECT_EQ(r->zero_blocks, 1u);
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

INSTANTIATE_TEST_SUITE_P(Sync, MirrorThreads, ::testing::Values(1u, 2u, 3u));

TEST(Mirror, CompressibleBlocksTravelCompressed) {
  TempTrees t;
  writeFile(t.src() / "text", std::string(4 * kBlock, 'a'));
  writeFile(t.src() / "noise", randomBytes(4 * kBlock, 12));
  Pair p(t);
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  // The noise goes raw (4 blocks), the text shrinks to almost nothing.
  EXPECT_LT(r->bytes_sent, 4 * kBlock + 4 * 1024);
  EXPECT_GT(r->bytes_sent, 4 * kBlock);
}

TEST(Mirror, LargeFilesSplitAcrossBatches) {
  TempTrees t;
  writeFile(t.src() / "big", randomBytes(40 * kBlock, 13));
  MirrorOptions mo;
  mo.max_batch_bytes = 16 * kBlock;
  Pair p(t, mo);
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->batches, 3u);
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

// Passes messages on and records what the round says it has left to send.
class RemainingRecorder : public DeltaSink {
 public:
  explicit RemainingRecorder(DeltaSink& next) : next_(next) {}
  Status send(Message message) override { return next_.send(std::move(message)); }
  void roundRemaining(std::uint64_t bytes) override { seen.push_back(bytes); }
  std::vector<std::uint64_t> seen;

 private:
  DeltaSink& next_;
};

TEST(Mirror, RoundCountsDownWhatItHasLeftToSend) {
  TempTrees t;
  writeFile(t.src() / "a", randomBytes(20 * kBlock + 100, 21));
  writeFile(t.src() / "b", randomBytes(5 * kBlock, 22));
  writeFile(t.src() / "empty", "");
  MirrorOptions mo;
  mo.max_batch_bytes = 8 * kBlock;  // several batches
  mo.track_writes = false;          // whole changed files are re-read, on any kernel
  Pair p(t, mo);

  RemainingRecorder initial(*p.link);
  auto r = p.mirror->computeDelta(initial);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_GT(r->batches, 1u);
  ASSERT_GE(initial.seen.size(), 3u);
  EXPECT_EQ(initial.seen.front(), 25 * kBlock + 100);  // the whole plan, before anything is sent
  EXPECT_TRUE(std::is_sorted(initial.seen.rbegin(), initial.seen.rend())) << "it only goes down";
  EXPECT_TRUE(std::any_of(initial.seen.begin(), initial.seen.end(), [](auto b) {
    return b > 0 && b < 25 * kBlock;
  })) << "it counts down as blocks go, not only per round";
  EXPECT_EQ(initial.seen.back(), 0u);

  // One byte of b changed: the round re-reads b (whole, without write tracking) and
  // sends one block; a's blocks are not in its plan.
  writeAt(t.src() / "b", 2 * kBlock, "x");
  RemainingRecorder delta(*p.link);
  ASSERT_TRUE(p.mirror->computeDelta(delta).ok());
  ASSERT_FALSE(delta.seen.empty());
  EXPECT_EQ(delta.seen.front(), 5 * kBlock);
  EXPECT_EQ(delta.seen.back(), 0u);

  RemainingRecorder idle(*p.link);  // nothing changed: nothing planned
  ASSERT_TRUE(p.mirror->computeDelta(idle).ok());
  EXPECT_TRUE(std::all_of(idle.seen.begin(), idle.seen.end(), [](auto b) { return b == 0; }));
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

TEST(Mirror, FinalDeltaMarksAPointInTimeCopy) {
  TempTrees t;
  baseTree(t.src());
  Pair p(t);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  EXPECT_FALSE(p.replica->finalApplied());
  writeAt(t.src() / "db" / "ibdata1", 0, "changed");
  auto r = p.mirror->finalDelta(*p.link);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->walked);
  EXPECT_EQ(r->files_hashed, 1u);
  EXPECT_TRUE(p.replica->finalApplied());
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

TEST(Mirror, ThreadedLinkAppliesOnAnotherThreadAndAcknowledges) {
  TempTrees t;
  baseTree(t.src());
  for (int i = 0; i < 4; ++i)
    writeFile(t.src() / ("f" + std::to_string(i)),
              randomBytes(300 * kBlock, 40 + static_cast<std::uint64_t>(i)));
  MirrorOptions mo;
  mo.max_batch_bytes = 64 * kBlock;
  Pair p(t, mo);
  {
    ThreadedLoopbackLink link(*p.mirror, *p.replica, 8);
    auto r = p.mirror->computeDelta(link);
    ASSERT_TRUE(r.ok()) << r.error().message();
    ASSERT_TRUE(link.flush().ok());
    EXPECT_EQ(p.mirror->lastAckedSeq(), p.mirror->lastSentSeq());
    writeAt(t.src() / "f2", 5 * kBlock, "x");
    r = p.mirror->finalDelta(link);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(link.flush().ok());
  }
  EXPECT_TRUE(p.replica->finalApplied());
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

TEST(Mirror, LagShowsPendingChangesUntilTheyAreShipped) {
  TempTrees t;
  baseTree(t.src());
  Pair p(t);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  MirrorLag idle = p.mirror->lag();
  EXPECT_EQ(idle.pending_paths, 0u);
  EXPECT_EQ(idle.unacked_bytes, 0u);
  EXPECT_EQ(idle.oldest_change_ms, 0.0);
  writeAt(t.src() / "db" / "ibdata1", 0, "x");
  MirrorLag busy = p.mirror->lag();
  EXPECT_GE(busy.pending_paths, 1u);
  EXPECT_GE(busy.pending_bytes_max, 8 * kBlock);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  MirrorLag drained = p.mirror->lag();
  EXPECT_EQ(drained.pending_paths, 0u);
  EXPECT_EQ(drained.unacked_bytes, 0u);
  EXPECT_EQ(drained.oldest_change_ms, 0.0);
}

TEST(Mirror, EpochFencesAnOlderSource) {
  TempTrees t;
  writeFile(t.src() / "f", "one");
  MirrorOptions newer;
  newer.epoch = 2;
  Pair p(t, newer);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  MirrorOptions older;
  older.epoch = 1;
  p.restartMirror(older);
  auto req = p.mirror->resumeRequest(p.replica->resumeState());
  auto hashes = p.replica->hashFiles(req);
  ASSERT_TRUE(hashes.ok());
  EXPECT_FALSE(p.mirror->resume(p.replica->resumeState(), *hashes).ok());
  // And the replica refuses the older epoch's batches outright.
  EXPECT_FALSE(p.replica->apply(BatchBegin{1, 99, {"f"}}).ok());
}

}  // namespace
}  // namespace ferry::sync
