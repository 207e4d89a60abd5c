// `ferry migrate` in the real lab (issue 5): the reference service (web + db) moves
// between the node daemons on a and b and back, with a logged-in session and the
// consistency writer running through the load balancer; failures are injected where
// the protocol must roll back (the target's restore, the target's node killed during
// the transfer, the source's node killed after the freeze) and refusals must come
// before anything is frozen. Every test starts from wherever the service runs now.
// Needs root; brings the lab up when it is not running.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lab_support.h"

namespace {

using namespace ferry::labtest;
using json = nlohmann::json;

class MigrateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!isRoot()) return;
    if (!ensureLab()) return;
    // A fresh start: the service on a, nodes with no journal (a active, b standby).
    nodes({"reset"});
    auto d = run({kFerry, "lab", "deploy", "--on", "a", "--rows", "1000", "--video-mb", "20"}, 900s);
    ASSERT_EQ(d.exit_code, 0) << d.err;
    sh("b", "rm -rf /srv/ferry/ref");
    nodes({"start"});
    waitInSync("a");
  }
  static void TearDownTestSuite() {
    if (isRoot()) nodes({"stop"});
  }
  void SetUp() override {
    if (!isRoot()) GTEST_SKIP() << "needs root (the lab)";
  }
};

TEST_F(MigrateTest, ThereAndBackKeepsTheSessionEveryWriteAndTheData) {
  const std::string from = activeHost();
  const std::string to = other(from);
  ASSERT_TRUE(waitInSync(from));
  ASSERT_EQ(sh("client",
               "rm -f /tmp/mt-cookies; curl -fsS -o /dev/null --max-time 5 -c /tmp/mt-cookies "
               "-d user=user2 -d password=pass2 http://lb/login.php")
                .exit_code,
            0);
  // The writer runs through the load balancer across both moves.
  ASSERT_EQ(
      sh("client",
         "rm -f /tmp/mt-writer.json; ferry writer --url http://lb --writer mt-$$ --duration 600s "
         "--output json >/tmp/mt-writer.json 2>/tmp/mt-writer.err </dev/null & echo $! >/tmp/mt-writer.pid")
          .exit_code,
      0);
  std::this_thread::sleep_for(2s);

  for (const auto& [src, dst] : {std::pair{from, to}, std::pair{to, from}}) {
    auto r = migrate(src, dst);
    ASSERT_EQ(r.value("result", std::string()), "committed") << r.dump(2);
    EXPECT_EQ(r["exit_code"], 0);
    EXPECT_TRUE(answers(dst)) << "the service does not answer on " << dst;
    EXPECT_FALSE(answers(src)) << "the service still answers on " << src << ": it must never run twice";
    EXPECT_EQ(status(dst).value("role", std::string()), "active");
    EXPECT_EQ(status(src).value("role", std::string()), "standby");
    EXPECT_GT(r.value("downtime_ms", 0.0), 0.0);
    EXPECT_GT(r.value("checkpoint_bytes", 0), 0);
    for (const char* key : {"id", "containers", "mode", "migration_ms", "bytes_transferred",
                            "last_delta_bytes", "phases", "checkpoint", "restore"})
      EXPECT_TRUE(r.contains(key)) << "the report lacks " << key;
    // The roles swapped and mirroring runs the other way, without a full re-copy.
    ASSERT_TRUE(waitInSync(dst));
    // Compared at a quiet moment: with the writer committing every 20 ms, InnoDB rewrites
    // its redo log faster than any comparison of both sides can run. Paused (SIGSTOP),
    // not stopped: it goes on across the next move.
    ASSERT_EQ(sh("client", "kill -STOP $(cat /tmp/mt-writer.pid)").exit_code, 0);
    auto v = verify(dst);
    ASSERT_EQ(sh("client", "kill -CONT $(cat /tmp/mt-writer.pid)").exit_code, 0);
    EXPECT_EQ(v.value("identical", false), true) << v.dump(2);
  }

  ASSERT_EQ(sh("client",
               "kill -TERM $(cat /tmp/mt-writer.pid); for i in $(seq 100); do "
               "kill -0 $(cat /tmp/mt-writer.pid) 2>/dev/null || exit 0; sleep 0.2; done; exit 1")
                .exit_code,
            0);
  auto w = json::parse(sh("client", "cat /tmp/mt-writer.json").out, nullptr, false);
  ASSERT_FALSE(w.is_discarded()) << sh("client", "cat /tmp/mt-writer.err").out;
  EXPECT_GT(w.value("acknowledged", 0), 50) << w.dump();
  EXPECT_EQ(w.value("missing", -1), 0) << "acknowledged writes were lost: " << w.dump();
  auto who = sh("client", "curl -fsS --max-time 5 -b /tmp/mt-cookies http://lb/whoami.php");
  EXPECT_NE(who.out.find("\"logged_in\":true"), std::string::npos) << who.out;
}

TEST_F(MigrateTest, ATargetRestoreThatFailsRollsBackToTheSource) {
  const std::string from = activeHost();
  const std::string to = other(from);
  nodes({"stop", to});
  nodes({"start", to}, {{"FERRY_FAILPOINTS", "target.restore"}});
  ASSERT_TRUE(waitInSync(from));
  auto r = migrate(from, to);
  nodes({"stop", to});
  nodes({"start", to});
  EXPECT_EQ(r.value("result", std::string()), "rolled_back") << r.dump(2);
  EXPECT_NE(r.value("reason", std::string()).find("failpoint target.restore"), std::string::npos)
      << r.dump(2);
  EXPECT_EQ(r["exit_code"], 1);
  EXPECT_TRUE(answers(from));
  EXPECT_FALSE(answers(to));
  EXPECT_EQ(containers(to).find("web"), std::string::npos) << containers(to);
  EXPECT_EQ(status(from).value("role", std::string()), "active");
  ASSERT_TRUE(waitInSync(from));
  EXPECT_EQ(verify(from).value("identical", false), true);
}

TEST_F(MigrateTest, TheTargetsNodeKilledDuringTheTransferRollsBack) {
  const std::string from = activeHost();
  const std::string to = other(from);
  ASSERT_TRUE(waitInSync(from));
  // Start the move, and kill the target's node as soon as the source has frozen.
  ASSERT_EQ(sh(from, "rm -f /tmp/mt-migrate.out; ferry migrate web db --to " + to +
                         " >/tmp/mt-migrate.out 2>&1 </dev/null & echo $! >/tmp/mt-migrate.pid")
                .exit_code,
            0);
  auto frozen =
      sh(from,
         "for i in $(seq 600); do grep -q '^  freeze' /tmp/mt-migrate.out && exit 0; sleep 0.02; done; "
         "cat /tmp/mt-migrate.out; exit 1",
         30s);
  ASSERT_EQ(frozen.exit_code, 0) << frozen.out;
  nodes({"kill", to});
  auto done =
      sh(from,
         "for i in $(seq 1200); do kill -0 $(cat /tmp/mt-migrate.pid) 2>/dev/null || break; sleep 0.1; done; "
         "cat /tmp/mt-migrate.out",
         200s);
  nodes({"start", to});
  EXPECT_NE(done.out.find("ROLLED BACK"), std::string::npos) << done.out;
  EXPECT_TRUE(answers(from));
  EXPECT_FALSE(answers(to));
  ASSERT_TRUE(waitInSync(from));
  EXPECT_EQ(verify(from).value("identical", false), true);
}

TEST_F(MigrateTest, TheSourcesNodeKilledAfterTheFreezeSettlesFromItsJournal) {
  const std::string from = activeHost();
  const std::string to = other(from);
  ASSERT_TRUE(waitInSync(from));
  ASSERT_EQ(
      sh(from, "rm -f /tmp/mt-migrate.out; ferry migrate web db --to " + to +
                   " --id mt-crash-$$ >/tmp/mt-migrate.out 2>&1 </dev/null & echo $! >/tmp/mt-migrate.pid")
          .exit_code,
      0);
  auto frozen =
      sh(from,
         "for i in $(seq 600); do grep -q '^  freeze' /tmp/mt-migrate.out && exit 0; sleep 0.02; done; "
         "cat /tmp/mt-migrate.out; exit 1",
         30s);
  ASSERT_EQ(frozen.exit_code, 0) << frozen.out;
  nodes({"kill", from});
  std::this_thread::sleep_for(2s);
  nodes({"start", from});
  // The restarted node finishes or rolls back what its journal says; either way the
  // service runs on exactly one host.
  json last;
  auto deadline = std::chrono::steady_clock::now() + 300s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto raw = sh(from, "ferry migrations list --output json", 30s);
    auto arr = json::parse(raw.out, nullptr, false);
    if (arr.is_array() && !arr.empty()) {
      auto state = arr.front().value("state", std::string());
      if (state == "committed" || state == "rolled-back") {
        last = arr.front();
        break;
      }
      last = arr.front();
    }
    std::this_thread::sleep_for(1s);
  }
  auto state = last.value("state", std::string());
  ASSERT_TRUE(state == "committed" || state == "rolled-back") << last.dump(2);
  const std::string runs_on = state == "committed" ? to : from;
  EXPECT_TRUE(answers(runs_on)) << "state " << state << " but the service does not answer on " << runs_on;
  EXPECT_FALSE(answers(other(runs_on))) << "the service answers on both hosts";
  EXPECT_EQ(activeHost(), runs_on);
  ASSERT_TRUE(waitInSync(runs_on));
  EXPECT_EQ(verify(runs_on).value("identical", false), true);
}

TEST_F(MigrateTest, AContainerThatDoesNotExistIsRefusedBeforeAnythingFreezes) {
  const std::string from = activeHost();
  auto r = ferryJson(from, {"migrate", "web", "nosuch", "--to", other(from)});
  EXPECT_EQ(r.value("result", std::string()), "refused") << r.dump(2);
  EXPECT_NE(r.value("reason", std::string()).find("no container named 'nosuch'"), std::string::npos)
      << r.dump(2);
  EXPECT_EQ(r["exit_code"], 2);
  EXPECT_TRUE(answers(from));
  EXPECT_NE(containers(from).find("web:running"), std::string::npos) << containers(from);
}

TEST_F(MigrateTest, ATargetWithoutRoomIsRefusedBeforeAnythingFreezes) {
  const std::string from = activeHost();
  const std::string to = other(from);
  // The target's staging directory on a 4 MiB tmpfs.
  nodes({"stop", to});
  ASSERT_EQ(sh(to, "mkdir -p /mnt/ferry-tiny && mount -t tmpfs -o size=4m tmpfs /mnt/ferry-tiny").exit_code,
            0);
  nodes({"start", to}, {{"FERRY_NODE_EXTRA", "staging_dir = /mnt/ferry-tiny"}});
  ASSERT_TRUE(waitInSync(from));
  auto r = migrate(from, to);
  nodes({"stop", to});
  sh(to, "umount /mnt/ferry-tiny");
  nodes({"start", to});
  EXPECT_EQ(r.value("result", std::string()), "refused") << r.dump(2);
  EXPECT_NE(r.value("reason", std::string()).find("not enough room on " + to), std::string::npos)
      << r.dump(2);
  EXPECT_TRUE(answers(from));
  EXPECT_NE(containers(from).find("db:running"), std::string::npos) << containers(from);
}

}  // namespace
