// The node daemons in the lab (issue 4): a (active) mirrors /srv/ferry/ref to b
// (standby) over the CURVE link. Changes of every kind arrive; `sync --flush` then
// `verify` says identical; `status` shows the lag while a writes, and it drains; an
// unpaired key is refused; killing either node mid-stream
// and restarting it resumes without a full re-copy; an initial copy shows what is left.
// Needs root; brings the lab up when it is not running and starts the nodes with
// deploy/lab/nodes.sh.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/base/process.h"
#include "lab_support.h"

namespace {

using ferry::labtest::kFerry;
using ferry::labtest::kNodes;
using ferry::labtest::run;
using ferry::labtest::sh;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// The nodes mirror a directory of their own here, so this test never touches the
// reference service's data (other tests deploy it).
const std::string kDataDir = "/srv/ferry-nodetest";
const std::string kTestDir = kDataDir + "/node-test";

// deploy/lab/nodes.sh CMD with this test's data directory: the nodes mirror kDataDir.
ferry::ProcessResult nodesSh(const std::string& cmd) {
  return run({"bash", kNodes, cmd}, 60s, {{"FERRY_SERVICE_DATA", kDataDir}});
}

nlohmann::json json(const std::string& host, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kFerry, "lab", "exec", host, "--", "ferry"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.emplace_back("--output");
  argv.emplace_back("json");
  auto r = run(argv);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return nlohmann::json{{"exit_code", r.exit_code}, {"stderr", r.err}};
  j["exit_code"] = r.exit_code;
  return j;
}

nlohmann::json flushAndVerify() {
  auto flushed = json("a", {"sync", "--flush", "--timeout", "300"});
  EXPECT_EQ(flushed["exit_code"], 0) << flushed.dump();
  return json("a", {"verify", "--timeout", "300"});
}

// The `ferry status --output json` samples of a sampling loop, one per line: those that
// parse and have a replica section.
std::vector<nlohmann::json> statusSamples(const std::string& out) {
  std::vector<nlohmann::json> samples;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.contains("replica")) samples.push_back(std::move(j));
  }
  return samples;
}

std::string firstWord(const std::string& path) {
  std::ifstream in(path);
  std::string w;
  in >> w;
  return w;
}

class NodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    auto pid = firstWord("/run/ferry-lab/hosts/a/pid");
    if (pid.empty() || !fs::exists("/proc/" + pid) || firstWord("/run/ferry-lab/bundle/source") != kFerry) {
      auto up = run({kFerry, "lab", "up"}, 20min);
      ASSERT_TRUE(up.success()) << up.out << up.err;
    }
    auto r = sh("a", "mkdir -p " + kTestDir);
    ASSERT_TRUE(r.success()) << r.err;
    auto started = nodesSh("start");
    ASSERT_TRUE(started.success()) << started.out << started.err;
  }
  static void TearDownTestSuite() {
    if (geteuid() != 0) return;
    // Leave no daemon behind: later tests deploy and move the service on a and b.
    nodesSh("stop");
    sh("a", "rm -rf " + kDataDir);
    sh("b", "rm -rf " + kDataDir + " /var/lib/ferry/replica.state");
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (the lab)";
  }
};

TEST_F(NodeTest, StandbyReachesInSyncAndVerifyIsIdentical) {
  auto v = flushAndVerify();
  EXPECT_EQ(v["exit_code"], 0) << v.dump();
  EXPECT_EQ(v["identical"], true) << v.dump();
  auto status = json("a", {"status"});
  EXPECT_EQ(status["role"], "active");
  EXPECT_EQ(status["peer"]["state"], "connected") << status.dump();
  auto standby = json("b", {"status"});
  EXPECT_EQ(standby["role"], "standby");
}

// While the active side writes, `ferry status` shows the standby behind (mirroring,
// lag in bytes or ms, a throughput), and once the writing stops the lag drains to zero.
// Sampled inside a (a lab exec per sample would be slower than the write).
TEST_F(NodeTest, StatusShowsTheLagWhileWritingAndItDrains) {
  const std::string f = kTestDir + "/lag";
  ASSERT_EQ(flushAndVerify()["identical"], true);
  auto samples = sh(
      "a",
      "rm -f " + f + ".done; (head -c 400000000 /dev/urandom > " + f + "; touch " + f +
          ".done) >/dev/null 2>&1 & for i in $(seq 40); do ferry status --output json | tr -d '\\n'; echo; "
          "sleep 0.05; done",
      120s);
  ASSERT_TRUE(samples.success()) << samples.err;
  bool saw_mirroring = false;
  bool saw_lag = false;
  bool saw_rate = false;
  for (const auto& j : statusSamples(samples.out)) {
    const auto& r = j["replica"];
    saw_mirroring |= r.value("state", "") == "mirroring";
    saw_lag |= r.value("replica_lag_bytes", 0) > 0 || r.value("replica_lag_ms", 0) > 0;
    saw_rate |= j.value("throughput_bytes_per_s", 0) > 0;
  }
  EXPECT_TRUE(saw_mirroring) << samples.out;
  EXPECT_TRUE(saw_lag) << samples.out;
  EXPECT_TRUE(saw_rate) << samples.out;
  // The writer ends; the standby catches up and says so.
  auto waited = sh("a",
                   "for i in $(seq 600); do test -e " + f + ".done && break; sleep 0.1; done; test -e " + f +
                       ".done && ferry status --wait in-sync --timeout 120 >/dev/null",
                   180s);
  ASSERT_TRUE(waited.success()) << waited.out << waited.err;
  auto done = json("a", {"status"});
  EXPECT_EQ(done["replica"]["state"], "in-sync") << done.dump();
  EXPECT_EQ(done["replica"]["replica_lag_bytes"], 0) << done.dump();
  EXPECT_EQ(done["replica"]["replica_lag_ms"], 0) << done.dump();
  EXPECT_EQ(flushAndVerify()["identical"], true);
  sh("a", "rm -f " + f + " " + f + ".done");
}

// verify compares more than once on a live service, flushing in between; a real
// difference must survive every pass and be reported, never "settled" away.
TEST_F(NodeTest, VerifyReportsADifferenceThatPersistsAfterEveryPass) {
  const std::string f = kTestDir + "/tampered";
  ASSERT_TRUE(sh("a", "echo original > " + f).success());
  ASSERT_EQ(flushAndVerify()["identical"], true);
  // Change the replica behind the active node's back (same size, so only content differs).
  ASSERT_TRUE(sh("b", "printf 'tampered\\n' > " + f).success());
  auto v = json("a", {"verify", "--passes", "3", "--timeout", "300"});
  EXPECT_EQ(v["exit_code"], 1) << v.dump();
  EXPECT_EQ(v["identical"], false) << v.dump();
  EXPECT_EQ(v["passes"], 3) << v.dump();
  ASSERT_FALSE(v["differences"].empty()) << v.dump();
  for (const auto& d : v["differences"]) EXPECT_EQ(d["path"], "node-test/tampered") << v.dump();
  EXPECT_EQ(v["differences"][0]["what"], "content") << v.dump();
  EXPECT_EQ(v["settled"].size(), 0u) << v.dump();
  // The next write on the active side repairs it.
  ASSERT_TRUE(sh("a", "echo repaired > " + f).success());
  EXPECT_EQ(flushAndVerify()["identical"], true);
}

TEST_F(NodeTest, EveryKindOfChangeArrives) {
  const std::string d = kTestDir + "/changes";
  ASSERT_TRUE(sh("a", "rm -rf " + d + " && mkdir -p " + d + "/sub && cd " + d +
                          " && head -c 3000000 /dev/urandom > big && echo one > small && echo keep > moved"
                          " && truncate -s 50M sparse && echo tail >> sparse && ln -s small link"
                          " && echo x > sub/f && chown 1000:1000 small")
                  .success());
  auto v = flushAndVerify();
  EXPECT_EQ(v["identical"], true) << v.dump();

  ASSERT_TRUE(sh("a", "cd " + d +
                          " && truncate -s 1000000 big && dd if=/dev/urandom of=big bs=4096 count=2 seek=5"
                          " conv=notrunc 2>/dev/null && mv moved renamed && chmod 600 small && rm -rf sub")
                  .success());
  v = flushAndVerify();
  EXPECT_EQ(v["identical"], true) << v.dump();
  auto on_b = sh("b", "cd " + d +
                          " && stat -c '%n %s %a %u' big small renamed && test ! -e moved && test ! -e sub"
                          " && echo blocks $(stat -c %b sparse)");
  EXPECT_TRUE(on_b.success()) << on_b.out << on_b.err;
  EXPECT_NE(on_b.out.find("big 1000000"), std::string::npos) << on_b.out;
  EXPECT_NE(on_b.out.find("small 4 600 1000"), std::string::npos) << on_b.out;
  EXPECT_NE(on_b.out.find("renamed"), std::string::npos) << on_b.out;
  // Sparse stays sparse: 50 MB apparent, a few blocks allocated.
  auto pos = on_b.out.find("blocks ");
  ASSERT_NE(pos, std::string::npos);
  EXPECT_LT(std::stoll(on_b.out.substr(pos + 7)), 1024) << on_b.out;
}

TEST_F(NodeTest, UnpairedKeyIsRefused) {
  // A node on `client` with a fresh key pair that a never paired: a's ZAP handler
  // must refuse it, and a's status must count the refusal.
  auto before = json("a", {"status"});
  ASSERT_TRUE(sh("client",
                 "rm -rf /tmp/intruder && mkdir -p /tmp/intruder/data && "
                 "ferry keygen --dir /tmp/intruder >/dev/null")
                  .success());
  // Pair the intruder with a's real public key (it knows the server key, like an attacker would).
  auto a_pub = sh("a", "sed -n 's/^public-key = \"\\(.*\\)\"/\\1/p' /etc/ferry/node.pub");
  ASSERT_TRUE(a_pub.success());
  std::string key = a_pub.out.substr(0, a_pub.out.find('\n'));
  ASSERT_TRUE(
      sh("client", "ferry pair --dir /tmp/intruder --name a --peer-key '" + key + "' >/dev/null").success());
  ASSERT_TRUE(sh("client",
                 "printf 'name = intruder\\npeer = tcp://a:7700\\nkey_dir = /tmp/intruder\\n"
                 "data_dir = /tmp/intruder/data\\nstate_dir = /tmp/intruder/state\\n"
                 "control_socket = /tmp/intruder/node.sock\\nrole = standby\\n' > /tmp/intruder/node.conf")
                  .success());
  auto intruder = sh("client",
                     "timeout 6 ferry node run --config /tmp/intruder/node.conf > /tmp/intruder/log 2>&1;"
                     "cat /tmp/intruder/log; ls /tmp/intruder/data | wc -l",
                     30s);
  auto after = json("a", {"status"});
  EXPECT_GT(after["peer"]["auth_refusals"].get<int>(), before["peer"]["auth_refusals"].get<int>())
      << after.dump();
  // Nothing was mirrored to the intruder.
  EXPECT_NE(intruder.out.rfind("0\n"), std::string::npos) << intruder.out;
  sh("client", "rm -rf /tmp/intruder");
}

TEST_F(NodeTest, KilledNodesResumeWithoutFullRecopy) {
  const std::string d = kTestDir + "/resume";
  ASSERT_TRUE(
      sh("a", "rm -rf " + d + " && mkdir -p " + d + " && head -c 100000000 /dev/urandom > " + d + "/base")
          .success());
  auto v = flushAndVerify();
  ASSERT_EQ(v["identical"], true) << v.dump();
  auto before = json("a", {"status"});
  // Kill the standby in the middle of a 60 MB change, then restart it.
  ASSERT_TRUE(sh("a", "head -c 60000000 /dev/urandom > " + d + "/more").success());
  sh("b", "sleep 0.3; kill -KILL $(cat /run/ferry/node.pid)");
  ASSERT_TRUE(nodesSh("start").success());
  v = flushAndVerify();
  EXPECT_EQ(v["identical"], true) << v.dump();
  // Kill the active node too, mid-change, and restart it.
  ASSERT_TRUE(sh("a", "dd if=/dev/urandom of=" + d + "/base bs=1M count=4 seek=10 conv=notrunc 2>/dev/null")
                  .success());
  sh("a", "kill -KILL $(cat /run/ferry/node.pid)");
  ASSERT_TRUE(nodesSh("start").success());
  v = flushAndVerify();
  EXPECT_EQ(v["identical"], true) << v.dump();
  auto after = json("b", {"status"});
  // No full re-copy: the standby wrote far less than the 160 MB in the directory since
  // its own restart (its counters start at zero when it starts).
  EXPECT_LT(after["replica"]["bytes_written"].get<uint64_t>(), 100'000'000u) << after.dump();
  (void)before;
}

// An initial copy is one long round: `status` says how much of it is not yet durable on
// the standby (sent and unacknowledged, plus what is still to send), and that figure
// falls as the standby acknowledges each batch, not only when the copy ends.
TEST_F(NodeTest, AnInitialCopyShowsWhatIsLeftAndItDrains) {
  constexpr std::uint64_t kBytes = 600'000'000;  // more than two batches of 256 MiB
  ASSERT_TRUE(nodesSh("stop").success());
  ASSERT_TRUE(
      sh("a", "head -c " + std::to_string(kBytes) + " /dev/urandom > " + kTestDir + "/initial").success());
  ASSERT_TRUE(sh("b", "rm -rf " + kDataDir + " && mkdir -p " + kDataDir).success());
  ASSERT_TRUE(nodesSh("reset").success());
  ASSERT_TRUE(nodesSh("start").success());
  auto samples = sh("a",
                    "for i in $(seq 1200); do s=$(ferry status --output json | tr -d '\\n'); echo \"$s\"; "
                    "case $s in *'\"in-sync\"'*) break;; esac; sleep 0.05; done",
                    180s);
  ASSERT_TRUE(samples.success()) << samples.err;
  std::uint64_t most = 0;
  bool drained_while_copying = false;
  bool in_sync = false;
  for (const auto& j : statusSamples(samples.out)) {
    const auto& r = j["replica"];
    const auto lag = r.value("replica_lag_bytes", std::uint64_t{0});
    if (r.value("state", "") == "initial-sync") {
      drained_while_copying |= lag > 0 && lag < most;
      most = std::max(most, lag);
    }
    in_sync = r.value("state", "") == "in-sync" && lag == 0;
  }
  EXPECT_GE(most, kBytes) << "the copy's whole plan counts as behind from its start\n" << samples.out;
  EXPECT_TRUE(drained_while_copying) << samples.out;
  EXPECT_TRUE(in_sync) << samples.out;
  auto v = flushAndVerify();
  EXPECT_EQ(v["identical"], true) << v.dump();
  sh("a", "rm -f " + kTestDir + "/initial");
}

}  // namespace
