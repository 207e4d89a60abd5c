// The switch-over control messages: round trips, the validation table, and the seeds
// of their fuzz targets (FERRY_WRITE_CORPUS=tests/fuzz/corpus rewrites them).
#include "wire.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "ferry/protocol/switch_messages.h"

namespace ferry::switchover::wirecodec {
namespace {

using namespace std::chrono_literals;
namespace wire = protocol::wire;

Request sampleRequest() {
  Request r;
  r.requestId = 0x1234;
  r.step = Step::kCommit;
  r.driver = "haproxy";
  r.nodeId = "a";
  r.plan.migration_id = "m-2026-1";
  r.plan.service = "ref";
  r.plan.source = {"a", 80};
  r.plan.target = {"10.231.0.12", 8080};
  r.plan.drain_timeout = 2s;
  r.plan.hold_timeout = 10s;
  return r;
}

SwitchReport sampleReport() {
  SwitchReport r;
  r.driver = "proxy";
  r.step = "commit";
  r.service = "ref";
  r.migration_id = "m-2026-1";
  r.held = 42;
  r.released = 41;
  r.max_hold_ms = 1234;
  r.retried = 2;
  r.refused = 1;
  r.failed = 0;
  r.drained = 3;
  r.in_flight_left = 0;
  r.steps = {{"health", 15ms}, {"release", 1ms}};
  r.note = "traffic to b:80";
  return r;
}

std::string bytesOf(zmq::message_t& m) {
  return std::string(static_cast<const char*>(m.data()), m.size());
}

Result<std::unique_ptr<protocol::DecodedFrame>> decodeBytes(const std::string& bytes) {
  zmq::message_t m(bytes.data(), bytes.size());
  return decode(std::move(m));
}

TEST(SwitchWire, ARequestSurvivesTheTrip) {
  auto frame = encodeRequest(sampleRequest());
  ASSERT_TRUE(frame.ok());
  auto decoded = decodeBytes(bytesOf(*frame));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  auto r = readRequest(**decoded);
  ASSERT_TRUE(r.ok()) << r.error().message();
  const Request want = sampleRequest();
  EXPECT_EQ(r->requestId, want.requestId);
  EXPECT_EQ(r->step, Step::kCommit);
  EXPECT_EQ(r->driver, "haproxy");
  EXPECT_EQ(r->nodeId, "a");
  EXPECT_EQ(r->plan.migration_id, want.plan.migration_id);
  EXPECT_EQ(r->plan.service, "ref");
  EXPECT_EQ(r->plan.source, want.plan.source);
  EXPECT_EQ(r->plan.target, want.plan.target);
  EXPECT_EQ(r->plan.drain_timeout, 2s);
  EXPECT_EQ(r->plan.hold_timeout, 10s);
  EXPECT_FALSE(readReply(**decoded).ok());
}

TEST(SwitchWire, RepliesSurviveTheTrip) {
  zmq::message_t ok = encodeReply(7, sampleReport());
  auto d1 = decodeBytes(bytesOf(ok));
  ASSERT_TRUE(d1.ok()) << d1.error().message();
  auto r1 = readReply(**d1);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->requestId, 7u);
  ASSERT_TRUE(r1->result.ok());
  EXPECT_EQ(r1->result->toJson(), sampleReport().toJson());

  zmq::message_t failed = encodeReply(8, makeError("haproxy: no spare server", "add one"));
  auto d2 = decodeBytes(bytesOf(failed));
  ASSERT_TRUE(d2.ok());
  auto r2 = readReply(**d2);
  ASSERT_TRUE(r2.ok());
  ASSERT_FALSE(r2->result.ok());
  EXPECT_EQ(r2->result.error().what, "haproxy: no spare server");
  EXPECT_EQ(r2->result.error().hint, "add one");
}

// Every way a request can be wrong, and the field the refusal names.
struct InvalidCase {
  std::string name;
  std::function<void(wire::SwitchMessage::Builder)> mutate;
  std::string says;
};

class Invalid : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(Invalid, IsRefusedNamingTheField) {
  auto frame = encodeRequest(sampleRequest());
  ASSERT_TRUE(frame.ok());
  auto decoded = decodeBytes(bytesOf(*frame));
  ASSERT_TRUE(decoded.ok());
  capnp::MallocMessageBuilder b;
  b.setRoot((*decoded)->root<wire::SwitchMessage>());
  GetParam().mutate(b.getRoot<wire::SwitchMessage>());
  zmq::message_t bad = protocol::encodeFrame(b);
  auto refused = decode(std::move(bad));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().what.find(GetParam().says), std::string::npos) << refused.error().what;
}

INSTANTIATE_TEST_SUITE_P(
    SwitchWire, Invalid,
    ::testing::Values(
        InvalidCase{"NoVersion", [](auto m) { m.setProtocolVersion(0); }, "protocolVersion"},
        InvalidCase{"NoRequestId", [](auto m) { m.setRequestId(0); }, "requestId"},
        InvalidCase{"NoBody", [](auto m) { m.getBody().setUnspecified(); }, "not one this build knows"},
        InvalidCase{"UnknownStep",
                    [](auto m) { m.getBody().getRequest().setStep(static_cast<wire::SwitchStep>(9)); },
                    "request.step"},
        InvalidCase{"UnknownDriver",
                    [](auto m) { m.getBody().getRequest().setDriver(wire::SwitchDriver::UNSPECIFIED); },
                    "request.driver"},
        InvalidCase{"ServiceWithSlash",
                    [](auto m) { m.getBody().getRequest().getPlan().setService("../etc"); }, "plan.service"},
        InvalidCase{"EmptyMigrationId", [](auto m) { m.getBody().getRequest().getPlan().setMigrationId(""); },
                    "plan.migrationId"},
        InvalidCase{"MigrationIdWithNewline",
                    [](auto m) { m.getBody().getRequest().getPlan().setMigrationId("m\n1"); },
                    "plan.migrationId"},
        InvalidCase{"HostWithSpace",
                    [](auto m) { m.getBody().getRequest().getPlan().getSource().setHost("a b"); },
                    "plan.source"},
        InvalidCase{"PortZero", [](auto m) { m.getBody().getRequest().getPlan().getTarget().setPort(0); },
                    "plan.target port"},
        InvalidCase{"NoDrain", [](auto m) { m.getBody().getRequest().getPlan().setDrainTimeoutMs(0); },
                    "plan.drainTimeoutMs"},
        InvalidCase{"HoldOfAnHour",
                    [](auto m) { m.getBody().getRequest().getPlan().setHoldTimeoutMs(3600 * 1000); },
                    "plan.holdTimeoutMs"},
        InvalidCase{"NoPlan", [](auto m) { m.getBody().getRequest().disownPlan(); }, "request.plan"}),
    [](const ::testing::TestParamInfo<InvalidCase>& p) { return p.param.name; });

TEST(SwitchWire, ANewerPeerIsToldToUpgrade) {
  auto frame = encodeRequest(sampleRequest());
  ASSERT_TRUE(frame.ok());
  auto decoded = decodeBytes(bytesOf(*frame));
  ASSERT_TRUE(decoded.ok());
  capnp::MallocMessageBuilder b;
  b.setRoot((*decoded)->root<wire::SwitchMessage>());
  b.getRoot<wire::SwitchMessage>().setProtocolVersion(7);
  b.getRoot<wire::SwitchMessage>().setMinProtocolVersion(5);
  zmq::message_t newer = protocol::encodeFrame(b);
  auto d = decode(std::move(newer));
  ASSERT_TRUE(d.ok());
  auto r = readRequest(**d);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("protocol mismatch"), std::string::npos);
  EXPECT_NE(r.error().hint.find("same ferry version"), std::string::npos);
}

TEST(SwitchWire, OversizedFramesAreRefusedBeforeParsing) {
  std::string big(protocol::kMaxSwitchFrameBytes + 8, '\0');
  auto d = decodeBytes(big);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().what.find("exceeds the limit"), std::string::npos);
}

TEST(SwitchWire, SeedsTheFuzzCorpus) {
  const char* dir = std::getenv("FERRY_WRITE_CORPUS");
  if (dir == nullptr) GTEST_SKIP() << "set FERRY_WRITE_CORPUS=tests/fuzz/corpus to (re)write the seeds";
  namespace fs = std::filesystem;
  auto write = [&](const std::string& target, const std::string& name, const std::string& bytes) {
    fs::create_directories(fs::path(dir) / target);
    std::ofstream(fs::path(dir) / target / name, std::ios::binary) << bytes;
  };
  auto request = encodeRequest(sampleRequest());
  ASSERT_TRUE(request.ok());
  zmq::message_t reply = encodeReply(7, sampleReport());
  zmq::message_t error = encodeReply(8, makeError("what", "hint"));
  write("switchMessage", "request.bin", bytesOf(*request));
  write("switchMessage", "reply.bin", bytesOf(reply));
  write("switchMessage", "reply-error.bin", bytesOf(error));
  // The bodies alone, as roots: the per-body targets' input.
  auto decoded = decodeBytes(bytesOf(*request));
  ASSERT_TRUE(decoded.ok());
  {
    capnp::MallocMessageBuilder b;
    b.setRoot((*decoded)->root<wire::SwitchMessage>().getBody().getRequest());
    auto words = protocol::encodeMessage(b);
    write("switchRequest", "sample.bin", std::string(words.asChars().begin(), words.asChars().size()));
  }
  auto decodedReply = decodeBytes(bytesOf(reply));
  ASSERT_TRUE(decodedReply.ok());
  {
    capnp::MallocMessageBuilder b;
    b.setRoot((*decodedReply)->root<wire::SwitchMessage>().getBody().getReply());
    auto words = protocol::encodeMessage(b);
    write("switchReply", "sample.bin", std::string(words.asChars().begin(), words.asChars().size()));
  }
}

}  // namespace
}  // namespace ferry::switchover::wirecodec
