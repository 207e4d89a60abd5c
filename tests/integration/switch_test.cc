// Traffic follows the service (issue 6), in the real lab: for each switch-over driver
// the front on lb is deployed (`lb-deploy.sh --switch DRIVER`), then web + db move
// under the probe (a request every 10 ms) and the consistency writer, both through lb,
// with `ferry migrate --switch DRIVER`. What each driver promises is asserted; what it
// does not promise (failed requests for haproxy and nginx) is recorded as a test
// property, not hidden. Then a restore that fails under load: traffic stays on the
// source and no write is lost. Needs root; brings the lab up when it is not running.
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "lab_support.h"

namespace {

using namespace ferry::labtest;
using json = nlohmann::json;

// Requests may be held for the whole cut-over: the clients' deadlines are longer than
// any downtime here, so a failure is the load balancer's, not the client's patience.
constexpr const char* kClientTimeout = "15s";

void front(const std::string& driver, const std::string& on) {
  auto r = run({kSource + "/deploy/switchover/lb-deploy.sh", "--switch", driver, "--on", on}, 180s);
  ASSERT_EQ(r.exit_code, 0) << "lb-deploy.sh --switch " << driver << " --on " << on << ": " << r.err;
}

struct Load {
  json probe;
  json writer;
};

void startLoad(const std::string& tag) {
  std::string t = kClientTimeout;
  auto r = sh("client", "rm -f /tmp/" + tag +
                            "-*.json; ferry probe --url http://lb/health.php --interval 10ms "
                            "--timeout " +
                            t + " --duration 600s --login user2:pass2 --output json >/tmp/" + tag +
                            "-probe.json 2>/tmp/" + tag + "-probe.err </dev/null & echo $! >/tmp/" + tag +
                            "-probe.pid; ferry writer --url http://lb --writer " + tag + "-$$ --timeout " +
                            t + " --duration 600s --output json >/tmp/" + tag + "-writer.json 2>/tmp/" + tag +
                            "-writer.err </dev/null & echo $! >/tmp/" + tag + "-writer.pid");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::this_thread::sleep_for(3s);
}

Load stopLoad(const std::string& tag) {
  Load load;
  for (const char* what : {"probe", "writer"}) {
    const std::string pid = "/tmp/" + tag + "-" + what + ".pid";
    auto stopped = sh("client", "kill -TERM $(cat " + pid + "); for i in $(seq 150); do kill -0 $(cat " +
                                    pid + ") 2>/dev/null || exit 0; sleep 0.2; done; exit 1");
    EXPECT_EQ(stopped.exit_code, 0) << what << " did not stop";
    auto out = sh("client", "cat /tmp/" + tag + "-" + what + ".json");
    auto j = json::parse(out.out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << what << ": "
                                   << sh("client", "cat /tmp/" + tag + "-" + what + ".err").out;
    (std::string(what) == "probe" ? load.probe : load.writer) = j.is_discarded() ? json::object() : j;
  }
  return load;
}

// Failed requests of the writer: attempts without an answer it could account for.
int writerFailures(const json& w) {
  int n = 0;
  if (w.contains("failed_by_kind") && w["failed_by_kind"].is_object())
    for (const auto& [kind, count] : w["failed_by_kind"].items()) n += count.get<int>();
  return n;
}

class SwitchTest : public ::testing::TestWithParam<std::string> {
 protected:
  // ctest runs each test in a process of its own: every test starts from a fresh deploy.
  static void SetUpTestSuite() {
    static bool deployed = false;
    if (!isRoot() || deployed) return;
    if (!ensureLab()) return;
    deployed = true;
    nodes({"reset"});
    auto d =
        run({kFerry, "lab", "deploy", "--on", "a", "--rows", "1000", "--video-mb", "20", "--switch", "proxy"},
            900s);
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

TEST_P(SwitchTest, MovesTheServiceUnderLoadAndKeepsItsPromises) {
  const std::string driver = GetParam();
  const std::string from = activeHost();
  const std::string to = other(from);
  front(driver, from);
  ASSERT_TRUE(waitInSync(from));
  const std::string tag = "sw-" + driver;
  startLoad(tag);
  auto r = migrate(from, to, {"--switch", driver});
  std::this_thread::sleep_for(2s);
  auto load = stopLoad(tag);
  ASSERT_EQ(r.value("result", std::string()), "committed") << r.dump(2);
  EXPECT_EQ(r["switch"].value("driver", std::string()), driver) << r.dump(2);
  EXPECT_TRUE(r["switch"].contains("prepare") && r["switch"].contains("commit")) << r["switch"].dump(2);
  EXPECT_TRUE(answers(to));
  EXPECT_FALSE(answers(from)) << "the service still answers on " << from;

  const double downtime = r.value("downtime_ms", 0.0);
  const int probe_failed = load.probe.value("failed", -1);
  const int writer_failed = writerFailures(load.writer);
  RecordProperty("server_downtime_ms", std::to_string(downtime));
  RecordProperty("client_downtime_ms", std::to_string(load.probe.value("client_downtime_ms", -1.0)));
  RecordProperty("max_request_ms", std::to_string(load.probe.value("max_ms", -1.0)));
  RecordProperty("probe_failed", std::to_string(probe_failed));
  RecordProperty("writer_failed", std::to_string(writer_failed));
  std::cout << driver << ": server downtime " << downtime << " ms, client downtime "
            << load.probe.value("client_downtime_ms", -1.0) << " ms, longest request "
            << load.probe.value("max_ms", -1.0) << " ms, failed requests " << probe_failed << " (probe) + "
            << writer_failed << " (writer)\n";

  // Every driver: no acknowledged write lost, the session kept.
  EXPECT_GT(load.writer.value("acknowledged", 0), 20) << load.writer.dump();
  EXPECT_EQ(load.writer.value("missing", -1), 0) << "acknowledged writes were lost: " << load.writer.dump();
  EXPECT_GT(load.probe.value("ok", 0), 100) << load.probe.dump();
  EXPECT_TRUE(load.probe.value("session_kept", false)) << load.probe.dump();
  if (driver == "proxy") {
    // ferry's hand-off proxy holds instead of failing: nothing fails, nobody waits
    // longer than the cut-over.
    EXPECT_EQ(probe_failed, 0) << load.probe.dump();
    EXPECT_EQ(writer_failed, 0) << load.writer.dump();
    EXPECT_LE(load.probe.value("max_ms", 1e9), downtime + 500) << load.probe.dump();
    EXPECT_EQ(r["switch"]["commit"].value("refused", -1), 0) << r["switch"].dump(2);
    EXPECT_EQ(r["switch"]["commit"].value("failed", -1), 0) << r["switch"].dump(2);
  }
}

INSTANTIATE_TEST_SUITE_P(Drivers, SwitchTest, ::testing::Values("proxy", "haproxy", "nginx"),
                         [](const auto& tp) { return tp.param; });

// A restore that fails on the target under load: traffic stays on (returns to) the
// source, the service answers there, nothing the writer was told is lost.
class SwitchRollbackTest : public SwitchTest {};

TEST_F(SwitchRollbackTest, AFailedRestoreLeavesTrafficOnTheSource) {
  const std::string from = activeHost();
  const std::string to = other(from);
  front("proxy", from);
  nodes({"stop", to});
  nodes({"start", to}, {{"FERRY_FAILPOINTS", "target.restore"}});
  ASSERT_TRUE(waitInSync(from));
  startLoad("sw-rollback");
  auto r = migrate(from, to, {"--switch", "proxy"});
  std::this_thread::sleep_for(2s);
  auto load = stopLoad("sw-rollback");
  nodes({"stop", to});
  nodes({"start", to});
  EXPECT_EQ(r.value("result", std::string()), "rolled_back") << r.dump(2);
  EXPECT_TRUE(r["switch"].contains("rollback")) << r.dump(2);
  EXPECT_TRUE(answers(from));
  EXPECT_FALSE(answers(to));
  EXPECT_EQ(status(from).value("role", std::string()), "active");
  EXPECT_EQ(load.writer.value("missing", -1), 0) << load.writer.dump();
  EXPECT_EQ(load.probe.value("failed", -1), 0) << load.probe.dump();
  EXPECT_EQ(writerFailures(load.writer), 0) << load.writer.dump();
  EXPECT_TRUE(load.probe.value("session_kept", false)) << load.probe.dump();
  // Traffic reaches the source through lb afterwards.
  EXPECT_EQ(sh("client", "curl -fsS -o /dev/null --max-time 3 http://lb/health.php", 10s).exit_code, 0);
}

}  // namespace
