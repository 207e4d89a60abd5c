// The replica refuses what it must refuse and survives crashes without believing a torn
// state is consistent; resume repairs it without a full re-copy.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <random>

#include <gtest/gtest.h>

#include "sync_test_util.h"

namespace ferry::sync {
namespace {

using namespace testutil;
namespace fs = std::filesystem;

constexpr std::uint32_t kBlock = kDefaultBlockSize;

Block rawBlock(const std::string& path, std::uint64_t offset, const std::string& data) {
  Block b;
  b.path = path;
  b.offset = offset;
  b.length = static_cast<std::uint32_t>(data.size());
  b.xxh3 = XXH3_64bits(data.data(), data.size());
  b.bytes.assign(data.begin(), data.end());
  return b;
}

FileMeta fileMeta(const std::string& path, std::uint64_t size) {
  FileMeta m;
  m.path = path;
  m.mode = 0644;
  m.uid = ::geteuid();
  m.gid = ::getegid();
  m.size = size;
  return m;
}

TEST(Replica, RefusesABlockWhoseHashDoesNotMatch) {
  TempTrees t;
  auto r = ReplicaWriter::open(t.dst(), t.stateFile());
  ASSERT_TRUE(r.ok());
  auto& rep = **r;
  ASSERT_TRUE(rep.apply(BatchBegin{1, 1, {"f"}}).ok());
  ASSERT_TRUE(rep.apply(fileMeta("f", 4)).ok());
  ASSERT_TRUE(rep.apply(Truncate{"f", 4}).ok());
  Block b = rawBlock("f", 0, "good");
  b.bytes = {'e', 'v', 'i', 'l'};
  Status s = rep.apply(b);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().what.find("XXH3"), std::string::npos);
  EXPECT_EQ(readAll(t.dst() / "f"), std::string(4, '\0'));
  EXPECT_FALSE(rep.consistent());
  EXPECT_EQ(rep.stats().refused, 1u);
}

struct EscapeCase {
  const char* name;
  std::string path;
};

class ReplicaEscape : public ::testing::TestWithParam<EscapeCase> {};

TEST_P(ReplicaEscape, PathOutsideTheRootIsRefused) {
  TempTrees t;
  fs::create_directories(t.base() / "outside");
  fs::create_symlink(t.base() / "outside", t.dst() / "evil");       // a symlinked parent
  fs::create_symlink(t.base() / "outside" / "x", t.dst() / "lnk");  // a symlink as the file
  auto r = ReplicaWriter::open(t.dst(), t.stateFile());
  ASSERT_TRUE(r.ok());
  auto& rep = **r;
  const std::string& p = GetParam().path;
  // Either the batch is refused up front (bad path) or the message is.
  Status begin = rep.apply(BatchBegin{1, 1, {p}});
  if (begin.ok()) {
    Status s1 = rep.apply(fileMeta(p, 3));
    Status s2 = s1.ok() ? rep.apply(rawBlock(p, 0, "pwn")) : s1;
    EXPECT_FALSE(s1.ok() && s2.ok());
  }
  EXPECT_FALSE(fs::exists(t.base() / "outside" / "f"));
  EXPECT_FALSE(fs::exists(t.base() / "outside" / "x"));
  EXPECT_FALSE(fs::exists(t.base() / "pwn"));
  EXPECT_TRUE(fs::is_symlink(t.dst() / "evil"));
}

INSTANTIATE_TEST_SUITE_P(Sync, ReplicaEscape,
                         ::testing::Values(EscapeCase{"DotDot", "../pwn"}, EscapeCase{"Absolute", "/tmp/pwn"},
                                           EscapeCase{"InnerDotDot", "a/../../pwn"}, EscapeCase{"Empty", ""},
                                           EscapeCase{"DoubleSlash", "a//b"}, EscapeCase{"Dot", "./pwn"},
                                           EscapeCase{"SymlinkedParent", "evil/f"},
                                           EscapeCase{"DeepSymlinkedParent", "evil/f/g"}),
                         [](const auto& tp) { return std::string(tp.param.name); });

TEST(Replica, RenameAndDeleteRefuseEscapes) {
  TempTrees t;
  writeFile(t.base() / "victim", "keep");
  auto r = ReplicaWriter::open(t.dst(), t.stateFile());
  ASSERT_TRUE(r.ok());
  auto& rep = **r;
  EXPECT_FALSE(rep.apply(BatchBegin{1, 1, {"../victim"}}).ok());
  ASSERT_TRUE(rep.apply(BatchBegin{1, 2, {"a"}}).ok());
  EXPECT_FALSE(rep.apply(Delete{"../victim"}).ok());
  EXPECT_TRUE(fs::exists(t.base() / "victim"));
}

TEST(Replica, IntentListSurvivesARestartWithOddNames) {
  TempTrees t;
  const std::string odd = "sp ace/new\nline%25\x01\xff";
  {
    auto r = ReplicaWriter::open(t.dst(), t.stateFile());
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE((*r)->apply(BatchBegin{1, 1, {odd, "plain"}}).ok());
  }  // dies mid-batch
  auto r = ReplicaWriter::open(t.dst(), t.stateFile());
  ASSERT_TRUE(r.ok());
  ResumeState rs = (*r)->resumeState();
  EXPECT_FALSE(rs.consistent);
  EXPECT_EQ(rs.seq, 0u);
  ASSERT_EQ(rs.intent.size(), 2u);
  EXPECT_TRUE(std::find(rs.intent.begin(), rs.intent.end(), odd) != rs.intent.end());
}

TEST(Replica, StateFileMustLiveOutsideTheReplica) {
  TempTrees t;
  EXPECT_FALSE(ReplicaWriter::open(t.dst(), t.dst() / "state").ok());
}

TEST(Replica, RefusesOutOfOrderAndUnannouncedMessages) {
  TempTrees t;
  auto r = ReplicaWriter::open(t.dst(), t.stateFile());
  ASSERT_TRUE(r.ok());
  auto& rep = **r;
  EXPECT_FALSE(rep.apply(fileMeta("f", 0)).ok());  // no batch open
  ASSERT_TRUE(rep.apply(BatchBegin{1, 1, {"f"}}).ok());
  EXPECT_FALSE(rep.apply(fileMeta("g", 0)).ok());  // not in the intent list
  ASSERT_TRUE(rep.apply(BatchBegin{1, 2, {"f"}}).ok());
  ASSERT_TRUE(rep.apply(fileMeta("f", 0)).ok());
  EXPECT_FALSE(rep.apply(BatchEnd{1, 2, 5, false}).ok());  // wrong op count
  ASSERT_TRUE(rep.apply(BatchBegin{1, 3, {"f"}}).ok());
  ASSERT_TRUE(rep.apply(BatchEnd{1, 3, 0, false}).ok());
  EXPECT_TRUE(rep.consistent());
  EXPECT_FALSE(rep.apply(BatchBegin{1, 3, {"f"}}).ok());  // already applied
}

// Random message sequences with hostile paths: nothing is ever written outside the root
// and the replica never crashes (a cheap, deterministic cousin of the fuzz targets).
TEST(Replica, RandomHostileMessagesNeverEscape) {
  TempTrees t;
  fs::create_directories(t.base() / "outside");
  writeFile(t.base() / "outside" / "keep", "keep");
  fs::create_symlink(t.base() / "outside", t.dst() / "evil");
  auto r = ReplicaWriter::open(t.dst(), t.stateFile());
  ASSERT_TRUE(r.ok());
  auto& rep = **r;
  const std::vector<std::string> pool = {"a",       "a/b", "a/b/c", "evil", "evil/x",    "../x", "/tmp/x",
                                         "a/../..", "",    "a//b",  ".",    "evil/../x", "d",    "d/e"};
  std::mt19937_64 rng(12345);
  std::uint64_t seq = 1;
  for (int i = 0; i < 3000; ++i) {
    const std::string& p = pool[rng() % pool.size()];
    const std::string& q = pool[rng() % pool.size()];
    switch (rng() % 8) {
      case 0: {
        std::vector<std::string> paths;
        for (int k = 0; k < 4; ++k) paths.push_back(pool[rng() % pool.size()]);
        (void)rep.apply(BatchBegin{1, seq++, paths});
        break;
      }
      case 1: {
        FileMeta m = fileMeta(p, rng() % 100000);
        m.kind = static_cast<FileKind>(rng() % 4);
        m.target = q;
        (void)rep.apply(m);
        break;
      }
      case 2:
        (void)rep.apply(Truncate{p, rng() % 200000});
        break;
      case 3: {
        Block b = rawBlock(p, rng() % 100000, randomBytes(rng() % 5000, rng()));
        if (rng() % 3 == 0) b.xxh3 ^= 1;
        if (rng() % 5 == 0) b.compression = static_cast<Compression>(rng() % 4);
        (void)rep.apply(b);
        break;
      }
      case 4:
        (void)rep.apply(Rename{p, q});
        break;
      case 5:
        (void)rep.apply(Delete{p});
        break;
      case 6:
        (void)rep.apply(BatchEnd{1, seq - 1, rng() % 4, false});
        break;
      default:
        (void)rep.hashFiles(HashRequest{kBlock, rng() % 2 == 0, {p, q}});
        break;
    }
  }
  EXPECT_EQ(readAll(t.base() / "outside" / "keep"), "keep");
  EXPECT_EQ(std::distance(fs::directory_iterator(t.base() / "outside"), {}), 1);
  EXPECT_FALSE(fs::exists(t.base() / "x"));
}

// ---- crashes -------------------------------------------------------------------------

struct CrashCase {
  const char* name;
  const char* point;
  std::uint64_t nth;
  bool on_link;         // the link dies (source side) instead of the replica
  bool lose_unsynced;   // also scribble over a block the batch touched (lost write)
  bool restart_source;  // the source loses its memory too
};

class ReplicaCrash : public ::testing::TestWithParam<CrashCase> {};

TEST_P(ReplicaCrash, ResumeEndsIdenticalWithoutAFullRecopy) {
  const CrashCase& c = GetParam();
  TempTrees t;
  constexpr int kFiles = 8;
  constexpr std::uint64_t kFileSize = 32 * kBlock;  // 2 MiB each, 16 MiB in all
  for (int i = 0; i < kFiles; ++i)
    writeFile(t.src() / ("f" + std::to_string(i)), randomBytes(kFileSize, static_cast<std::uint64_t>(i)));
  CrashPoints faults;
  Pair p(t, {}, c.on_link ? &faults : nullptr);
  if (!c.on_link) p.reopenReplica(&faults);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  ASSERT_EQ(differences(t.src(), t.dst()), "");

  // Rewrite 3 blocks in each of 3 files and add one file, then crash mid-batch.
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 3; ++k)
      writeAt(t.src() / ("f" + std::to_string(i)), static_cast<std::uint64_t>(k) * 10 * kBlock,
              randomBytes(kBlock, 100 + static_cast<std::uint64_t>(i * 3 + k)));
  writeFile(t.src() / "new", randomBytes(2 * kBlock, 200));
  faults.arm(c.point, c.nth);
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(faults.fired());
  EXPECT_FALSE(r.ok());

  // The process is gone; the replica restarts from disk and must not claim consistency.
  p.reopenReplica();
  EXPECT_FALSE(p.replica->consistent());
  ResumeState rs = p.replica->resumeState();
  EXPECT_FALSE(rs.consistent);
  if (std::string(c.point) != "replica.begin" || !c.on_link) {
    EXPECT_FALSE(rs.intent.empty());
  }
  if (c.lose_unsynced) {
    // An unsynced write lost by the crash: the replica's copy of f1 block 10 is garbage.
    writeAt(t.dst() / "f1", 10 * kBlock, randomBytes(kBlock, 999));
  }
  if (c.restart_source) p.restartMirror();

  p.link->resetCounters();
  Status s = p.link->reconnect(*p.replica);
  ASSERT_TRUE(s.ok()) << s.error().message();
  auto again = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  EXPECT_TRUE(p.replica->consistent());
  // At most the changed blocks (9 + 2 new) are re-sent, not the 16 MiB tree.
  EXPECT_LE(p.link->counters().block_bytes, 11u * kBlock);
  EXPECT_LT(p.link->counters().resume_bytes, 64u * 1024);
}

INSTANTIATE_TEST_SUITE_P(
    Sync, ReplicaCrash,
    ::testing::Values(CrashCase{"ReplicaAfterIntent", "replica.begin", 1, false, false, false},
                      CrashCase{"ReplicaMidBatch", "replica.op", 7, false, false, false},
                      CrashCase{"ReplicaMidBatchLostWrite", "replica.op", 9, false, true, false},
                      CrashCase{"ReplicaBeforeFsync", "replica.fsync", 1, false, true, false},
                      CrashCase{"ReplicaBeforeCommit", "replica.commit", 1, false, false, false},
                      CrashCase{"LinkCutMidBatch", "link.send", 5, true, false, false},
                      CrashCase{"SourceRestartsMidBatch", "link.send", 6, true, false, true},
                      CrashCase{"BothRestart", "replica.op", 4, false, true, true}),
    [](const auto& tp) { return std::string(tp.param.name); });

TEST(Replica, LinkCutInAnEarlyBatchLosesNoLaterChange) {
  TempTrees t;
  for (int i = 0; i < 6; ++i)
    writeFile(t.src() / ("f" + std::to_string(i)),
              randomBytes(8 * kBlock, 300 + static_cast<std::uint64_t>(i)));
  CrashPoints faults;
  MirrorOptions mo;
  mo.max_batch_bytes = 8 * kBlock;  // one file per batch
  Pair p(t, mo, &faults);
  ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  for (int i = 0; i < 6; ++i) writeAt(t.src() / ("f" + std::to_string(i)), 3 * kBlock, "changed");
  faults.arm("link.send", 8);  // inside the second batch; batches 3-6 never begin
  ASSERT_FALSE(p.mirror->computeDelta(*p.link).ok());
  ASSERT_TRUE(faults.fired());
  EXPECT_TRUE(p.mirror->needsResume());
  ASSERT_TRUE(p.link->reconnect(*p.replica).ok());
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(differences(t.src(), t.dst()), "");
}

TEST(Replica, NewSourceAgainstAPopulatedReplicaSendsOnlyDifferences) {
  TempTrees t;
  for (int i = 0; i < 4; ++i)
    writeFile(t.src() / ("f" + std::to_string(i)),
              randomBytes(16 * kBlock, 50 + static_cast<std::uint64_t>(i)));
  {
    Pair p(t);
    ASSERT_TRUE(p.mirror->computeDelta(*p.link).ok());
  }
  writeAt(t.src() / "f2", 3 * kBlock, "changed while no node ran");
  fs::remove(t.src() / "f3");
  Pair p(t);
  ASSERT_TRUE(p.link->reconnect(*p.replica).ok());
  auto r = p.mirror->computeDelta(*p.link);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(differences(t.src(), t.dst()), "");
  EXPECT_EQ(p.link->counters().blocks, 1u);
}

// A big batch is made durable while it arrives (background syncs every 2 MiB of a file),
// so its end has little left to sync; a replica that is not durable syncs nothing.
struct DurableCase {
  const char* name;
  bool durable;
  std::uint64_t file_bytes;
  bool expect_background;
};

class ReplicaBackgroundSync : public ::testing::TestWithParam<DurableCase> {};

TEST_P(ReplicaBackgroundSync, ABigBatchIsSyncedWhileItArrives) {
  const auto& c = GetParam();
  TempTrees t;
  ReplicaOptions o;
  o.durable = c.durable;
  o.preserve_owner = false;
  auto r = ReplicaWriter::open(t.dst(), t.stateFile(), o);
  ASSERT_TRUE(r.ok()) << r.error().message();
  auto& rep = **r;
  ASSERT_TRUE(rep.apply(BatchBegin{1, 1, {"ibdata1"}}).ok());
  ASSERT_TRUE(rep.apply(fileMeta("ibdata1", c.file_bytes)).ok());
  ASSERT_TRUE(rep.apply(Truncate{"ibdata1", c.file_bytes}).ok());
  std::string content;
  std::uint64_t ops = 2;
  for (std::uint64_t off = 0; off < c.file_bytes; off += kBlock, ++ops) {
    std::string block = randomBytes(kBlock, off);
    content += block;
    ASSERT_TRUE(rep.apply(rawBlock("ibdata1", off, block)).ok());
  }
  Status s = rep.apply(BatchEnd{1, 1, ops, false});
  ASSERT_TRUE(s.ok()) << s.error().message();
  EXPECT_TRUE(rep.consistent());
  EXPECT_EQ(rep.stats().background_syncs > 0, c.expect_background) << rep.stats().background_syncs;
  EXPECT_EQ(readAll(t.dst() / "ibdata1"), content);
}

INSTANTIATE_TEST_SUITE_P(Sizes, ReplicaBackgroundSync,
                         ::testing::Values(DurableCase{"DurableSixMiB", true, 6u << 20, true},
                                           DurableCase{"DurableOneMiB", true, 1u << 20,
                                                       false},  // the batch end's fsync alone
                                           DurableCase{"NotDurableSixMiB", false, 6u << 20, false}),
                         [](const ::testing::TestParamInfo<DurableCase>& p) { return p.param.name; });

}  // namespace
}  // namespace ferry::sync
