// The migration protocol end to end in one process: both sides' real procedures and
// coordinators, fake container runtimes and link (migration_fakes.h). Each case names
// what must hold: where the service runs afterwards, and what each journal says.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "migration_fakes.h"

namespace ferry::node::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kWebImage = "aaaa1111";
constexpr const char* kDbImage = "bbbb2222";

struct Pair {
  fs::path dir;
  std::unique_ptr<FakeNode> a;  // source, active, runs web + db
  std::unique_ptr<FakeNode> b;  // target, standby

  explicit Pair(const std::string& tag) {
    dir = fs::temp_directory_path() / ("ferry-migration-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    a = std::make_unique<FakeNode>("a", true, dir);
    b = std::make_unique<FakeNode>("b", false, dir);
    a->connect(b.get());
    b->connect(a.get());
    a->runtime.add("web", {"0123abcd", kWebImage, "running", false, false, {80}});
    a->runtime.add("db", {"4567ef01", kDbImage, "running", false, false, {}});
    b->runtime.addImage(kWebImage);
    b->runtime.addImage(kDbImage);
  }
  ~Pair() {
    // Both coordinators stop (joining their migration threads) before either node goes:
    // a target still waiting for a decision talks to its peer until it is stopped.
    a->coordinator.reset();
    b->coordinator.reset();
    a.reset();
    b.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }

  json migrate(std::vector<std::string> containers = {"web", "db"}, std::string to = "b") {
    MigrateRequest req;
    req.containers = std::move(containers);
    req.to = std::move(to);
    req.mode = "auto";
    auto progress = a->coordinator->startSource(req);
    EXPECT_TRUE(progress.ok()) << (progress.ok() ? "" : progress.error().message());
    if (!progress) return {};
    std::size_t next = 0;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& e : (*progress)->since(next, 200ms)) {
        ++next;
        if (e.value("final", false)) return e;
      }
    }
    ADD_FAILURE() << "the migration did not finish within 30 s";
    return {};
  }

  // Waits until the target side's thread has finished too.
  void settleTarget() {
    for (int i = 0; i < 300 && b->coordinator->running(); ++i) std::this_thread::sleep_for(10ms);
  }

  static std::string state(FakeNode& n, const std::string& name) {
    auto c = n.runtime.containers();
    auto it = c.find(name);
    if (it == c.end()) return "absent";
    return it->second.status + (it->second.frozen ? "+frozen" : "");
  }

  static std::string journalState(FakeNode& n, const std::string& id) {
    auto r = n.journal->get(id);
    if (!r || !r->has_value()) return "none";
    return phaseName((*r)->phase);
  }
};

TEST(Migration, CommitsMovesTheServiceAndSwapsRoles) {
  Pair p("commit");
  auto r = p.migrate();
  p.settleTarget();
  ASSERT_EQ(r.value("result", ""), "committed") << r.dump(2);
  EXPECT_EQ(Pair::state(*p.a, "web"), "absent");
  EXPECT_EQ(Pair::state(*p.a, "db"), "absent");
  EXPECT_EQ(Pair::state(*p.b, "web"), "running");
  EXPECT_EQ(Pair::state(*p.b, "db"), "running");
  EXPECT_TRUE(p.b->isActive());
  EXPECT_FALSE(p.a->isActive());
  EXPECT_EQ(p.b->epoch(), 2u);
  EXPECT_EQ(p.a->epoch(), 2u);
  auto id = r.value("id", "");
  EXPECT_EQ(Pair::journalState(*p.a, id), "committed");
  EXPECT_EQ(Pair::journalState(*p.b, id), "committed");
  EXPECT_GT(r.value("checkpoint_bytes", 0), 0);
  EXPECT_EQ(r.value("last_delta_bytes", 0), 1000);
  // What the link carried: the checkpoint as sent (LZ4 where it helped) and the last delta.
  EXPECT_EQ(r.value("bytes_transferred", 0), r.value("checkpoint_wire_bytes", 0) + 1000);
  EXPECT_TRUE(r.contains("downtime_ms"));
  std::vector<std::string> phases;
  for (const auto& ph : r["phases"]) phases.push_back(ph.value("name", ""));
  EXPECT_EQ(phases, (std::vector<std::string>{"preflight", "presync", "freeze", "checkpoint", "transfer",
                                              "restore", "commit", "cleanup"}));
  // Nothing of process memory is left in the staging directories.
  for (auto* n : {p.a.get(), p.b.get()}) {
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(n->settings.staging_dir, ec))
      ADD_FAILURE() << "left behind: " << f.path();
  }
}

// Podman cleans a container up (storage, network, state) for a while after its archive
// is complete. The archive's closing blocks end its stream: the target restores while
// the source's podman is still cleaning up (the fake's cleanup waits until both
// containers were imported there, or 10 s).
TEST(Migration, TargetRestoresWhilePodmanStillCleansUpTheSource) {
  Pair p("early");
  p.a->runtime.tar_archives = true;
  p.b->runtime.tar_archives = true;
  std::atomic<int> restored_first{0};
  p.a->runtime.after_archive = [&] {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (p.b->runtime.imports.load() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(5ms);
    if (p.b->runtime.imports.load() >= 2) ++restored_first;
  };
  auto r = p.migrate();
  p.settleTarget();
  ASSERT_EQ(r.value("result", ""), "committed") << r.dump(2);
  EXPECT_EQ(restored_first.load(), 2) << "the target restored only after the source's podman exited";
  for (const char* name : {"web", "db"}) {
    const auto& c = r["checkpoint"][name];
    EXPECT_TRUE(c.value("archive_complete_before_exit", false)) << name << ": " << c.dump();
    // Podman ran on at least until the target had imported both archives.
    EXPECT_GT(c.value("exit_after_archive_ms", 0.0), 0.0) << name << ": " << c.dump();
    EXPECT_EQ(c.value("podman_ms", 0.0), 10.0) << name << ": the statistics arrive once podman exits";
    EXPECT_EQ(Pair::state(*p.a, name), "absent");
    EXPECT_EQ(Pair::state(*p.b, name), "running");
  }
}

// A podman that fails after writing a complete archive (its cleanup) has already dumped
// the container: the migration goes on, and the report says what failed.
TEST(Migration, APodmanFailureAfterACompleteArchiveIsReported) {
  Pair p("late-failure");
  p.a->runtime.tar_archives = true;
  p.b->runtime.tar_archives = true;
  p.a->runtime.failOn("after-archive:db");
  p.a->runtime.after_archive = [&] {
    auto until = std::chrono::steady_clock::now() + 10s;
    while (p.b->runtime.imports.load() < 2 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(5ms);
  };
  auto r = p.migrate();
  p.settleTarget();
  ASSERT_EQ(r.value("result", ""), "committed") << r.dump(2);
  EXPECT_NE(r["checkpoint"]["db"].value("error_after_archive", "").find("cleanup of db failed"),
            std::string::npos)
      << r["checkpoint"].dump();
  EXPECT_TRUE(r["checkpoint"]["web"].value("archive_complete_before_exit", false));
  EXPECT_EQ(Pair::state(*p.b, "db"), "running");
}

// Shared storage: both hosts mount the data directory; nothing is mirrored, the final
// round is a syncfs, and the target agrees only if it sees the source's marker there.
struct SharedCase {
  const char* name;
  bool a_shared, b_shared;
  bool same_directory;
  bool target_lacks_image;  // a second Prepare follows the image: the marker must still be there
  const char* result;
  const char* reason;  // a fragment of it ("" when committed)
};

class SharedStorage : public ::testing::TestWithParam<SharedCase> {};

TEST_P(SharedStorage, MovesOnlyTheCheckpointAndOnlyWhenBothSeeTheSameStorage) {
  const auto& c = GetParam();
  Pair p(std::string("shared-") + c.name);
  fs::create_directories(p.dir / "shared");
  fs::create_directories(p.dir / "elsewhere");
  p.a->settings.data_dir = p.dir / "shared";
  p.a->runtime.data_mount = p.a->settings.data_dir.string();
  p.b->settings.data_dir = p.dir / (c.same_directory ? "shared" : "elsewhere");
  p.a->settings.shared_storage = c.a_shared;
  p.b->settings.shared_storage = c.b_shared;
  if (c.target_lacks_image) p.a->runtime.add("web", {"0123abcd", "cccc3333", "running", false, false, {80}});
  auto r = p.migrate();
  p.settleTarget();
  EXPECT_EQ(r.value("result", ""), c.result) << r.dump(2);
  EXPECT_NE(r.value("reason", "").find(c.reason), std::string::npos) << r.dump(2);
  if (std::string(c.result) == "committed") {
    EXPECT_EQ(Pair::state(*p.b, "web"), "running");
    EXPECT_EQ(r.value("last_delta_bytes", -1), 0);
    if (!c.target_lacks_image) {  // else the image's wire bytes count too
      EXPECT_EQ(r.value("bytes_transferred", 0), r.value("checkpoint_wire_bytes", 0));
    }
    EXPECT_EQ(p.a->shared_syncs.load(), 1);
    EXPECT_EQ(p.a->final_rounds.load(), 0) << "nothing is mirrored on shared storage";
  } else {
    EXPECT_EQ(Pair::state(*p.a, "web"), "running") << "refused before any freeze";
    EXPECT_EQ(Pair::state(*p.b, "web"), "absent");
    EXPECT_EQ(p.a->shared_syncs.load(), 0);
  }
  // The marker is gone either way.
  for (const auto& f : fs::directory_iterator(p.dir / "shared"))
    ADD_FAILURE() << "left in the data directory: " << f.path();
}

INSTANTIATE_TEST_SUITE_P(
    Table, SharedStorage,
    ::testing::Values(SharedCase{"both_shared", true, true, true, false, "committed", ""},
                      SharedCase{"both_shared_image_sent_first", true, true, true, true, "committed", ""},
                      SharedCase{"not_the_same_storage", true, true, false, false, "refused",
                                 "the data directory is not shared"},
                      SharedCase{"only_the_source_shared", true, false, true, false, "refused",
                                 "shared_storage is on on a but off on b"},
                      SharedCase{"only_the_target_shared", false, true, true, false, "refused",
                                 "shared_storage is off on a but on on b"}),
    [](const auto& tp) { return std::string(tp.param.name); });

// The traffic switch-over is part of the commit protocol: prepared before the freeze
// (while the service still runs), committed once the target is restored and before the
// decision; any failure puts traffic back on the source after the service runs there.
struct SwitchCase {
  const char* name;
  const char* fail_switch_step;  // "" | "prepare" | "commit"
  const char* target_failpoint;  // "" | "target.restore" ...
  const char* result;
  std::vector<std::string> steps;  // the switch's steps, "step web=STATE" (web on the source)
  const char* web_on_source;       // after the migration
};

class Switches : public ::testing::TestWithParam<SwitchCase> {};

TEST_P(Switches, TrafficMovesOnlyWithTheService) {
  const auto& c = GetParam();
  Pair p(std::string("switch-") + c.name);
  p.a->settings.switch_driver = "proxy";
  p.a->switcher = std::make_unique<FakeSwitch>(p.a->runtime);
  if (*c.fail_switch_step != '\0') p.a->switcher->failOn(c.fail_switch_step);
  if (*c.target_failpoint != '\0')
    p.b->failpoints = std::make_unique<FakeFailpoints>(std::set<std::string>{c.target_failpoint});
  auto r = p.migrate();
  p.settleTarget();
  EXPECT_EQ(r.value("result", ""), c.result) << r.dump(2);
  std::vector<std::string> steps;
  for (const auto& s : p.a->switcher->steps()) {
    EXPECT_NE(s.find(" a:80->b:80"), std::string::npos) << s;
    steps.push_back(s.substr(0, s.find(' ', s.find(' ') + 1)));
  }
  EXPECT_EQ(steps, c.steps);
  EXPECT_EQ(Pair::state(*p.a, "web"), c.web_on_source);
  if (std::string(c.result) != "committed") {
    EXPECT_NE(Pair::state(*p.b, "web"), "running");
    EXPECT_NE(r.value("reason", "").find(*c.fail_switch_step != '\0' ? "switch-over" : ""), std::string::npos)
        << r.value("reason", "");
  } else {
    EXPECT_EQ(r["switch"].value("driver", ""), "proxy");
    EXPECT_TRUE(r["switch"].contains("commit"));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Migration, Switches,
    ::testing::Values(
        SwitchCase{"commit", "", "", "committed", {"prepare web=running", "commit web=exited"}, "absent"},
        SwitchCase{"prepare-fails",
                   "prepare",
                   "",
                   "refused",
                   {"prepare web=running", "rollback web=running"},
                   "running"},
        SwitchCase{"commit-fails",
                   "commit",
                   "",
                   "rolled_back",
                   {"prepare web=running", "commit web=exited", "rollback web=running"},
                   "running"},
        SwitchCase{"restore-fails",
                   "",
                   "target.restore",
                   "rolled_back",
                   {"prepare web=running", "rollback web=running"},
                   "running"}),
    [](const auto& tp) {
      std::string n = tp.param.name;
      std::replace(n.begin(), n.end(), '-', '_');
      return n;
    });

// Refusals happen before anything is frozen: the service keeps running on the source.
struct RefusalCase {
  const char* name;
  std::function<void(Pair&)> setup;
  std::vector<std::string> containers;
  const char* to;
  const char* reason_contains;
};

class Refusals : public ::testing::TestWithParam<RefusalCase> {};

TEST_P(Refusals, NothingIsFrozenAndTheReasonIsClear) {
  const auto& c = GetParam();
  Pair p(c.name);
  c.setup(p);
  auto r = p.migrate(c.containers, c.to);
  p.settleTarget();
  EXPECT_EQ(r.value("result", ""), "refused") << r.dump(2);
  EXPECT_NE(r.value("reason", "").find(c.reason_contains), std::string::npos) << r.value("reason", "");
  EXPECT_EQ(Pair::state(*p.a, "web"), "running");
  EXPECT_EQ(Pair::state(*p.a, "db"), "running");
  EXPECT_TRUE(p.a->isActive());
  EXPECT_FALSE(p.b->isActive());
}

INSTANTIATE_TEST_SUITE_P(
    Migration, Refusals,
    ::testing::Values(
        RefusalCase{"MissingContainer", [](Pair&) {}, {"web", "nope"}, "b", "no container named 'nope'"},
        RefusalCase{"WrongPeer", [](Pair&) {}, {"web", "db"}, "c", "this node's peer is 'b'"},
        RefusalCase{"NameClashOnTarget",
                    [](Pair& p) {
                      p.b->runtime.add("db", {"9999", kDbImage, "running", false, false, {}});
                    },
                    {"web", "db"},
                    "b",
                    "a container named db already exists on b"},
        RefusalCase{"PortInUseOnTarget",
                    [](Pair& p) { p.b->busy_ports.insert(80); },
                    {"web", "db"},
                    "b",
                    "host port 80"},
        RefusalCase{"NoRoomOnTarget",
                    [](Pair& p) { p.b->free_bytes = 1 << 20; },
                    {"web", "db"},
                    "b",
                    "not enough room on b"},
        RefusalCase{
            "PeerDown", [](Pair& p) { p.a->setLinkUp(false); }, {"web", "db"}, "b", "is not connected"},
        RefusalCase{"ImageLoadFails",
                    [](Pair& p) {
                      p.a->runtime.add("web", {"0123abcd", "cccc3333", "running", false, false, {80}});
                      p.b->runtime.failOn("load");
                    },
                    {"web", "db"},
                    "b",
                    "podman load failed"}),
    [](const auto& tp) { return std::string(tp.param.name); });

TEST(Migration, SendsAMissingImageBeforeTheFreeze) {
  Pair p("image");
  p.a->runtime.add("web", {"0123abcd", "cccc3333", "running", false, false, {80}});
  ASSERT_FALSE(p.b->runtime.hasImage("cccc3333"));
  auto r = p.migrate();
  p.settleTarget();
  ASSERT_EQ(r.value("result", ""), "committed") << r.dump(2);
  EXPECT_TRUE(p.b->runtime.hasImage("cccc3333"));
  EXPECT_GT(r.value("image_bytes", 0), 0);
}

// Failures after the freeze and before the target's decision: the service runs on the
// source again (restored from its kept checkpoint, or thawed) and nowhere else.
struct RollbackCase {
  const char* name;
  std::function<void(Pair&)> setup;
  const char* reason_contains;
};

class Rollbacks : public ::testing::TestWithParam<RollbackCase> {};

TEST_P(Rollbacks, TheServiceRunsOnTheSourceAndOnlyThere) {
  const auto& c = GetParam();
  Pair p(c.name);
  c.setup(p);
  auto r = p.migrate();
  p.settleTarget();
  EXPECT_EQ(r.value("result", ""), "rolled_back") << r.dump(2);
  EXPECT_NE(r.value("reason", "").find(c.reason_contains), std::string::npos) << r.value("reason", "");
  EXPECT_EQ(Pair::state(*p.a, "web"), "running");
  EXPECT_EQ(Pair::state(*p.a, "db"), "running");
  EXPECT_EQ(Pair::state(*p.b, "web"), "absent");
  EXPECT_EQ(Pair::state(*p.b, "db"), "absent");
  EXPECT_TRUE(p.a->isActive());
  EXPECT_FALSE(p.b->isActive());
  EXPECT_FALSE(p.a->mirroring_paused.load()) << "mirroring must resume after a rollback";
  EXPECT_FALSE(p.b->fenced.load());
  auto id = r.value("id", "");
  EXPECT_EQ(Pair::journalState(*p.a, id), "rolled-back");
  EXPECT_EQ(Pair::journalState(*p.b, id), "rolled-back");
}

INSTANTIATE_TEST_SUITE_P(
    Migration, Rollbacks,
    ::testing::Values(
        RollbackCase{"TargetRestoreFails", [](Pair& p) { p.b->runtime.failOn("restore:db"); },
                     "restore of db"},
        RollbackCase{"TargetUnhealthy",
                     [](Pair& p) {
                       p.b->healthy = false;
                       p.b->settings.health_url = "http://x/";
                     },
                     "not healthy"},
        RollbackCase{"SourceCheckpointFails", [](Pair& p) { p.a->runtime.failOn("checkpoint:db"); },
                     "checkpoint of db failed"},
        RollbackCase{"FreezeFails", [](Pair& p) { p.a->runtime.failOn("freeze:db"); }, "freezing db"},
        RollbackCase{"FailpointAfterFreeze",
                     [](Pair& p) {
                       p.a->failpoints =
                           std::make_unique<FakeFailpoints>(std::set<std::string>{"source.after_freeze"});
                     },
                     "source.after_freeze"},
        RollbackCase{"LinkReconnectsDuringTransfer", [](Pair& p) { p.a->reconnect_during_final = true; },
                     "broke during the transfer"},
        RollbackCase{"DecisionRollback",
                     [](Pair& p) {
                       p.a->failpoints =
                           std::make_unique<FakeFailpoints>(std::set<std::string>{"source.before_decision"});
                     },
                     "source.before_decision"}),
    [](const auto& tp) { return std::string(tp.param.name); });

TEST(Migration, TargetRollbackAfterRestoreInvalidatesItsReplica) {
  Pair p("invalidate");
  p.b->healthy = false;
  p.b->settings.health_url = "http://x/";
  auto r = p.migrate();
  p.settleTarget();
  ASSERT_EQ(r.value("result", ""), "rolled_back");
  // The restored service may have written there: the next resume compares everything.
  EXPECT_EQ(p.b->invalidated.load(), 1);
}

// The target's answer never arrives: the source must not guess.
TEST(Migration, NoAnswerAfterCommitIsInDoubtAndNothingRestartsOnTheSource) {
  Pair p("doubt");
  p.b->dropFrom("restored");  // b restores, then everything it says is lost
  auto r = p.migrate();
  EXPECT_EQ(r.value("result", ""), "in_doubt") << r.dump(2);
  EXPECT_NE(Pair::state(*p.a, "web"), "running");
  EXPECT_NE(Pair::state(*p.a, "db"), "running");
  EXPECT_EQ(Pair::state(*p.b, "db"), "running") << "the target keeps the service until it is told otherwise";
  EXPECT_EQ(Pair::journalState(*p.a, r.value("id", "")), "in-doubt");
}

// A restarted source in "committing" learns the outcome from the target's journal.
TEST(Migration, RestartedSourceFinishesFromTheTargetsAnswer) {
  Pair p("recover");
  // The target restored and is waiting for the decision; the source died before it.
  p.a->failpoints = std::make_unique<FakeFailpoints>(std::set<std::string>{});
  MigrationRecord rec;
  rec.id = "m-test-recover";
  rec.side = "target";
  rec.peer = "a";
  rec.epoch = 2;
  rec.phase = MigrationPhase::kRestored;
  rec.containers = {"web", "db"};
  ASSERT_TRUE(p.b->journal->put(rec).ok());
  p.b->runtime.add("web", {"0123abcd", kWebImage, "running", false, false, {80}});
  p.b->runtime.add("db", {"4567ef01", kDbImage, "running", false, false, {}});
  p.a->runtime.add("web", {"0123abcd", kWebImage, "exited", false, true, {80}});
  p.a->runtime.add("db", {"4567ef01", kDbImage, "exited", false, true, {}});
  MigrationRecord src = rec;
  src.side = "source";
  src.peer = "b";
  src.phase = MigrationPhase::kCommitting;
  ASSERT_TRUE(p.a->journal->put(src).ok());
  // The target waits (as after its own restart); the source settles.
  ASSERT_TRUE(p.b->coordinator->startSettle(rec, "").ok());
  auto progress = p.a->coordinator->startSettle(src, "");
  ASSERT_TRUE(progress.ok());
  json result;
  std::size_t next = 0;
  for (int i = 0; i < 150 && result.is_null(); ++i)
    for (auto& e : (*progress)->since(next, 100ms)) {
      ++next;
      if (e.value("final", false)) result = e;
    }
  p.settleTarget();
  EXPECT_EQ(result.value("result", ""), "committed") << result.dump(2);
  EXPECT_EQ(Pair::journalState(*p.a, rec.id), "committed");
  EXPECT_EQ(Pair::journalState(*p.b, rec.id), "committed");
  EXPECT_TRUE(p.b->isActive());
  EXPECT_EQ(Pair::state(*p.a, "db"), "absent");
}

// A target that restarted in the middle of restoring rolls back on its own; the source
// (waiting in "committing") then restores its own copy.
TEST(Migration, TargetRestartedWhileRestoringRollsBackAndTheSourceRestores) {
  Pair p("tgt-restart");
  MigrationRecord rec;
  rec.id = "m-test-tgt";
  rec.side = "target";
  rec.peer = "a";
  rec.epoch = 2;
  rec.phase = MigrationPhase::kRestoring;
  rec.containers = {"web", "db"};
  ASSERT_TRUE(p.b->journal->put(rec).ok());
  p.b->runtime.add("db", {"4567ef01", kDbImage, "running", false, false, {}});  // restored before the crash
  p.a->runtime.add("web", {"0123abcd", kWebImage, "exited", false, true, {80}});
  p.a->runtime.add("db", {"4567ef01", kDbImage, "exited", false, true, {}});
  MigrationRecord src = rec;
  src.side = "source";
  src.peer = "b";
  src.phase = MigrationPhase::kCommitting;
  ASSERT_TRUE(p.a->journal->put(src).ok());
  ASSERT_TRUE(p.b->coordinator->startSettle(rec, "").ok());
  p.settleTarget();
  EXPECT_EQ(Pair::state(*p.b, "db"), "absent");
  auto progress = p.a->coordinator->startSettle(src, "");
  ASSERT_TRUE(progress.ok());
  json result;
  std::size_t next = 0;
  for (int i = 0; i < 150 && result.is_null(); ++i)
    for (auto& e : (*progress)->since(next, 100ms)) {
      ++next;
      if (e.value("final", false)) result = e;
    }
  EXPECT_EQ(result.value("result", ""), "rolled_back") << result.dump(2);
  EXPECT_EQ(Pair::state(*p.a, "web"), "running");
  EXPECT_EQ(Pair::state(*p.a, "db"), "running");
}

TEST(Migration, StaleEpochIsRefused) {
  Pair p("stale");
  ASSERT_TRUE(p.b->becomeStandby(5).ok());  // b has seen epoch 5; a is at 1
  auto r = p.migrate();
  p.settleTarget();
  EXPECT_EQ(r.value("result", ""), "refused");
  EXPECT_NE(r.value("reason", "").find("epoch"), std::string::npos) << r.value("reason", "");
  EXPECT_EQ(Pair::state(*p.a, "db"), "running");
}

TEST(Migration, ModesTheKernelCannotRunAreRefusedWithTheReason) {
  EXPECT_EQ(*chooseMode("auto"), "stop-and-copy");
  EXPECT_EQ(*chooseMode("stop-and-copy"), "stop-and-copy");
  auto pre = chooseMode("pre-copy");
  ASSERT_FALSE(pre.ok());
  EXPECT_NE(pre.error().what.find("soft-dirty"), std::string::npos);
  EXPECT_FALSE(chooseMode("post-copy").ok());
  EXPECT_FALSE(chooseMode("warp").ok());
}

}  // namespace
}  // namespace ferry::node::testing
