// The switch agent and its node-side client over real CURVE on 127.0.0.1: a paired
// node drives the hand-off proxy; an unknown key, a wrong agent key, an unknown
// service, a driver mismatch and garbage are refused with errors that say so.
#include "ferry/switchover/agent.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>

#include <filesystem>
#include <thread>

#include <zmq.hpp>

#include "fake_backend.h"
#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "test_client.h"

namespace ferry::switchover {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::FakeBackend;

protocol::KeyPair keys() {
  auto k = protocol::generateKeyPair();
  EXPECT_TRUE(k.ok());
  return *k;
}

class LogCapture {
 public:
  LogCapture()
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(512)), logger_(log::get("switch")) {
    logger_->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() const {
    std::string all;
    for (const auto& line : sink_->last_formatted()) all += line;
    return all;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> logger_;
};

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() /
           ("ferry-agent-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter()++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

struct AgentRig {
  FakeBackend a{"A"};
  FakeBackend b{"B"};
  protocol::KeyPair agentKeys = keys();
  protocol::KeyPair nodeKeys = keys();
  TempDir state;
  std::unique_ptr<Agent> agent;

  AgentConfig config() const {
    AgentConfig c;
    c.listen = "tcp://127.0.0.1:*";
    c.state_dir = state.path.string();
    AgentServiceConfig s;
    s.name = "ref";
    s.driver = "proxy";
    s.health_path = "/health";
    s.proxy.name = "ref";
    s.proxy.front = {"127.0.0.1", 0};
    s.proxy.backend = a.endpoint();
    c.services = {s};
    return c;
  }

  AgentRig() {
    auto started = Agent::start(config(), agentKeys, {{"a", nodeKeys.publicKey}});
    EXPECT_TRUE(started.ok()) << started.error().message();
    agent = std::move(started.value());
  }
  ~AgentRig() {
    if (agent) agent->stop();
  }

  DriverConfig driverConfig(const protocol::KeyPair& node, const std::string& kind = "proxy") const {
    DriverConfig d;
    d.kind = kind;
    d.agent_endpoint = agent->endpoint();
    d.agent_public_key = agentKeys.publicKey;
    d.node_public_key = node.publicKey;
    d.node_secret_key = node.secretKey;
    d.node_name = "a";
    d.agent_margin = 2s;
    return d;
  }

  SwitchPlan plan(const std::string& service = "ref") const {
    SwitchPlan p;
    p.migration_id = "m1";
    p.service = service;
    p.source = a.endpoint();
    p.target = b.endpoint();
    p.drain_timeout = 200ms;
    p.hold_timeout = 5s;
    return p;
  }

  Endpoint front() const { return *agent->proxyFront("ref"); }
};

std::unique_ptr<Driver> driver(const DriverConfig& c) {
  auto d = makeDriver(c);
  EXPECT_TRUE(d.ok()) << d.error().message();
  return d.ok() ? std::move(d.value()) : nullptr;
}

TEST(Agent, APairedNodeMovesTrafficThroughIt) {
  AgentRig rig;
  auto d = driver(rig.driverConfig(rig.nodeKeys));
  ASSERT_TRUE(d);
  EXPECT_EQ(testing::fetch(rig.front(), "GET", "/hello").backend, "A");

  auto prepared = d->prepare(rig.plan());
  ASSERT_TRUE(prepared.ok()) << prepared.error().message();
  EXPECT_EQ(prepared->driver, "proxy");
  EXPECT_EQ(prepared->step, "prepare");
  auto held = testing::async([&] { return testing::fetch(rig.front(), "GET", "/hello", "", 20s); });
  for (int i = 0; i < 2000; ++i) {
    auto c = rig.agent->proxyCounters("ref");
    ASSERT_TRUE(c.ok());
    if (c->held_now == 1) break;
    std::this_thread::sleep_for(5ms);
  }
  const auto committedAt = testing::Clock::now();
  auto committed = d->commit(rig.plan());
  ASSERT_TRUE(committed.ok()) << committed.error().message();
  testing::HttpResult r = held.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.backend, "B");
  EXPECT_GE(r.finished, committedAt);
  EXPECT_EQ(committed->held, 1u);
  EXPECT_EQ(committed->released, 1u);
  EXPECT_EQ(committed->refused, 0u);
  EXPECT_EQ(rig.a.requests("/hello"), 1);  // only the first one, before prepare
  EXPECT_EQ(testing::fetch(rig.front(), "GET", "/hello").backend, "B");
  // Idempotent: a repeated commit answers the same way.
  EXPECT_TRUE(d->commit(rig.plan()).ok());
  // The backend is remembered for a restarted agent.
  auto remembered = readFile(rig.state.path / "ref.backend");
  ASSERT_TRUE(remembered.ok());
  EXPECT_EQ(*remembered, rig.b.endpoint().str() + "\n");

  auto rolled = d->rollback(rig.plan());
  ASSERT_TRUE(rolled.ok()) << rolled.error().message();
  EXPECT_EQ(testing::fetch(rig.front(), "GET", "/hello").backend, "A");
  EXPECT_GE(rig.agent->stats().requests, 4u);
  EXPECT_EQ(rig.agent->stats().auth_refusals, 0u);
}

TEST(Agent, ACommitWaitsForAHealthyTargetAndFailsClearlyWithoutOne) {
  AgentRig rig;
  auto d = driver(rig.driverConfig(rig.nodeKeys));
  ASSERT_TRUE(d);
  rig.b.setListening(false);
  SwitchPlan p = rig.plan();
  p.hold_timeout = 300ms;
  ASSERT_TRUE(d->prepare(p).ok());
  auto committed = d->commit(p);
  ASSERT_FALSE(committed.ok());
  EXPECT_NE(committed.error().what.find("is not healthy"), std::string::npos) << committed.error().what;
  EXPECT_NE(committed.error().what.find("connection refused"), std::string::npos) << committed.error().what;
  EXPECT_FALSE(committed.error().hint.empty());
  ASSERT_TRUE(d->rollback(p).ok());
  EXPECT_EQ(testing::fetch(rig.front(), "GET", "/hello").backend, "A");
}

TEST(Agent, AnUnknownNodeKeyIsRefusedAndLoggedByFingerprint) {
  LogCapture logs;
  AgentRig rig;
  const protocol::KeyPair stranger = keys();
  auto d = driver(rig.driverConfig(stranger));
  ASSERT_TRUE(d);
  auto r = d->prepare(rig.plan());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("refused this node's key"), std::string::npos) << r.error().what;
  EXPECT_NE(r.error().hint.find("ferry pair"), std::string::npos) << r.error().hint;
  // The node hears the refusal from libzmq's I/O thread; the agent counts it just after.
  for (int i = 0; i < 500 && rig.agent->stats().auth_refusals == 0; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_GE(rig.agent->stats().auth_refusals, 1u);
  EXPECT_EQ(rig.agent->stats().requests, 0u);
  // Nothing was held.
  EXPECT_EQ(testing::fetch(rig.front(), "GET", "/hello").backend, "A");
  rig.agent->stop();
  const std::string text = logs.text();
  EXPECT_NE(text.find("unknown key"), std::string::npos) << text;
  EXPECT_NE(text.find(protocol::fingerprint(stranger.publicKey)), std::string::npos) << text;
  for (const auto& k :
       {stranger.secretKey, stranger.publicKey, rig.agentKeys.secretKey, rig.nodeKeys.secretKey})
    EXPECT_EQ(text.find(k), std::string::npos) << "a key was logged";
}

TEST(Agent, AWrongAgentKeyTimesOutWithAHint) {
  AgentRig rig;
  DriverConfig c = rig.driverConfig(rig.nodeKeys);
  c.agent_public_key = keys().publicKey;  // not the agent's
  c.agent_margin = 500ms;
  auto d = driver(c);
  ASSERT_TRUE(d);
  SwitchPlan p = rig.plan();
  p.drain_timeout = 100ms;
  auto r = d->prepare(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("no answer within 600 ms"), std::string::npos) << r.error().what;
  EXPECT_NE(r.error().hint.find("ferry proxy run"), std::string::npos);
}

struct RefusedCase {
  std::string name;
  std::string service;
  std::string kind;
  std::string says;
};

class AgentRefuses : public ::testing::TestWithParam<RefusedCase> {};

TEST_P(AgentRefuses, WithAnErrorThatSaysWhy) {
  AgentRig rig;
  auto d = driver(rig.driverConfig(rig.nodeKeys, GetParam().kind));
  ASSERT_TRUE(d);
  auto r = d->prepare(rig.plan(GetParam().service));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find(GetParam().says), std::string::npos) << r.error().what;
  EXPECT_FALSE(r.error().hint.empty());
  EXPECT_EQ(rig.agent->stats().malformed, 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Agent, AgentRefuses,
    ::testing::Values(RefusedCase{"UnknownService", "other", "proxy", "has no service 'other'"},
                      RefusedCase{"DriverMismatch", "ref", "haproxy",
                                  "uses the proxy driver on the load balancer, but node 'a' "
                                  "asked for haproxy"}),
    [](const ::testing::TestParamInfo<RefusedCase>& p) { return p.param.name; });

TEST(Agent, GarbageFromAPairedNodeIsRefusedAndTheAgentCarriesOn) {
  AgentRig rig;
  {
    zmq::context_t ctx(1);
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::curve_serverkey, rig.agentKeys.publicKey);  // Z85 text
    s.set(zmq::sockopt::curve_publickey, rig.nodeKeys.publicKey);
    s.set(zmq::sockopt::curve_secretkey, rig.nodeKeys.secretKey);
    s.set(zmq::sockopt::linger, 0);
    s.connect(rig.agent->endpoint());
    for (const std::string& garbage :
         {std::string("not capnp"), std::string(64, '\0'), std::string(16, '\xff')}) {
      zmq::message_t m(garbage.data(), garbage.size());
      (void)s.send(m, zmq::send_flags::none);
    }
    for (int i = 0; i < 500 && rig.agent->stats().malformed < 3; ++i) std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(rig.agent->stats().malformed, 3u);
  auto d = driver(rig.driverConfig(rig.nodeKeys));
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->prepare(rig.plan()).ok());
  EXPECT_TRUE(d->rollback(rig.plan()).ok());
}

TEST(Agent, RefusesToStartWithoutPairedNodes) {
  AgentRig rig;
  auto again = Agent::start(rig.config(), rig.agentKeys, {});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().what.find("no paired node keys"), std::string::npos);
  EXPECT_NE(again.error().hint.find("ferry pair"), std::string::npos);
}

TEST(Agent, ARestartedAgentStartsWhereTheLastSwitchLeftTraffic) {
  AgentRig rig;
  {
    auto d = driver(rig.driverConfig(rig.nodeKeys));
    ASSERT_TRUE(d);
    ASSERT_TRUE(d->prepare(rig.plan()).ok());
    ASSERT_TRUE(d->commit(rig.plan()).ok());
  }
  rig.agent->stop();
  auto restarted = Agent::start(rig.config(), rig.agentKeys, {{"a", rig.nodeKeys.publicKey}});
  ASSERT_TRUE(restarted.ok()) << restarted.error().message();
  EXPECT_EQ(testing::fetch(*(*restarted)->proxyFront("ref"), "GET", "/hello").backend, "B");
  (*restarted)->stop();
}

TEST(DriverFactory, SaysWhatIsMissing) {
  DriverConfig c;
  c.kind = "teleport";
  auto unknown = makeDriver(c);
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().what.find("unknown switch driver 'teleport'"), std::string::npos);
  c.kind = "proxy";
  auto noKey = makeDriver(c);
  ASSERT_FALSE(noKey.ok());
  EXPECT_NE(noKey.error().what.find("agent's public key"), std::string::npos);
  c.kind = "exec";
  auto noCommand = makeDriver(c);
  ASSERT_FALSE(noCommand.ok());
  EXPECT_NE(noCommand.error().what.find("no command"), std::string::npos);
}

}  // namespace
}  // namespace ferry::switchover
