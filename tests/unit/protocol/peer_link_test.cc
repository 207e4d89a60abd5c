// Two PeerLinks over tcp://127.0.0.1 with real CURVE and a real ZAP handler.
#include "ferry/protocol/peer_link.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>

#include <algorithm>
#include <functional>
#include <thread>

#include "ferry/base/log.h"
#include "ferry/protocol/framing.h"

namespace ferry::protocol {
namespace {

using namespace std::chrono_literals;

KeyPair keys() {
  auto k = generateKeyPair();
  EXPECT_TRUE(k.ok());
  return *k;
}

PeerLinkConfig fastConfig() {
  PeerLinkConfig c;
  c.heartbeatInterval = 100ms;
  c.peerTimeout = 1500ms;
  c.reconnectMin = 50ms;
  c.reconnectMax = 400ms;
  c.ackInterval = 20ms;
  c.linger = 0ms;
  return c;
}

struct Pair {
  KeyPair serverKeys = keys();
  KeyPair clientKeys = keys();

  PeerLinkConfig server(const std::string& endpoint = "tcp://127.0.0.1:*") const {
    PeerLinkConfig c = fastConfig();
    c.mode = PeerLinkConfig::Mode::kListen;
    c.endpoint = endpoint;
    c.keys = serverKeys;
    c.allowedPeers = {{"client", clientKeys.publicKey}};
    c.nodeId = "b";
    c.role = wire::Role::STANDBY;
    return c;
  }
  PeerLinkConfig client(const std::string& endpoint) const {
    PeerLinkConfig c = fastConfig();
    c.mode = PeerLinkConfig::Mode::kConnect;
    c.endpoint = endpoint;
    c.keys = clientKeys;
    c.serverPublicKey = serverKeys.publicKey;
    c.nodeId = "a";
    c.role = wire::Role::ACTIVE;
    return c;
  }
};

std::unique_ptr<PeerLink> startLink(PeerLinkConfig c) {
  auto link = PeerLink::start(std::move(c));
  EXPECT_TRUE(link.ok()) << link.error().message();
  return link.ok() ? std::move(link.value()) : nullptr;
}

// A block whose bytes encode `index`, `size` bytes long.
Result<uint64_t> sendBlock(PeerLink& link, uint64_t index, size_t size,
                           std::chrono::milliseconds timeout = 5s) {
  capnp::MallocMessageBuilder b;
  auto block = b.initRoot<wire::Message>().getBody().initBlockData();
  block.getFile().setPath("data/file");
  block.setOffset(index);
  block.setLength(static_cast<uint32_t>(size));
  block.setCompression(wire::Compression::NONE);
  auto data = block.initData(static_cast<unsigned>(size));
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<kj::byte>((index + i) & 0xff);
  return link.send(b, timeout);
}

uint64_t blockIndex(const Received& r) {
  auto block = r.message().getBody().getBlockData();
  auto data = block.getData();
  if (data.size() > 0 && data[0] != static_cast<kj::byte>(block.getOffset() & 0xff)) return UINT64_MAX;
  return block.getOffset();
}

class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(512)), logger_(log::get("link")) {
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

TEST(PeerLink, PairedPeersConnectAndMessagesFlowInOrderBothWays) {
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  const std::string endpoint = server->endpoint();
  ASSERT_NE(endpoint.find("tcp://127.0.0.1:"), std::string::npos) << endpoint;
  auto client = startLink(p.client(endpoint));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->waitConnected(5s).ok());
  ASSERT_TRUE(server->waitConnected(5s).ok());

  constexpr uint64_t kCount = 300;
  std::jthread sender([&] {
    for (uint64_t i = 1; i <= kCount; ++i) {
      auto seq = sendBlock(*client, i, 1000 + i);
      ASSERT_TRUE(seq.ok()) << seq.error().message();
      EXPECT_EQ(*seq, i);
    }
  });
  for (uint64_t i = 1; i <= kCount; ++i) {
    auto r = server->receive(5s);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->seq, i);
    EXPECT_EQ(blockIndex(*r), i);
    EXPECT_EQ(r->message().getBody().getBlockData().getData().size(), 1000 + i);
  }
  sender.join();
  EXPECT_TRUE(client->flush(5s).ok());

  // And back: the link is symmetric once connected.
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(sendBlock(*server, 100 + i, 64).ok());
  for (uint64_t i = 1; i <= 10; ++i) {
    auto r = client->receive(5s);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(blockIndex(*r), 100 + i);
  }
  EXPECT_TRUE(server->flush(5s).ok());

  LinkStats s = server->stats();
  EXPECT_EQ(s.state, LinkState::kConnected);
  EXPECT_EQ(s.peerNodeId, "a");
  EXPECT_EQ(s.peerFingerprint, fingerprint(p.clientKeys.publicKey));
  EXPECT_EQ(s.messagesReceived, kCount);
  EXPECT_EQ(s.deliveredSeq, kCount);
  EXPECT_EQ(s.messagesRefused, 0u);
  EXPECT_EQ(s.authRefusals, 0u);
  LinkStats c = client->stats();
  EXPECT_EQ(c.ackedSeq, kCount);
  EXPECT_EQ(c.bufferedBytes, 0u);
  EXPECT_EQ(c.peerNodeId, "b");
}

TEST(PeerLink, UnknownClientKeyIsRefusedAndLogged) {
  LogCapture logs;
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  KeyPair stranger = keys();
  PeerLinkConfig cc = p.client(server->endpoint());
  cc.keys = stranger;  // knows the server's key, but is not paired there
  auto client = startLink(cc);
  ASSERT_TRUE(client);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(sendBlock(*client, i, 100).ok());

  // The refusal is observable on both sides.
  for (int i = 0; i < 100 && server->stats().authRefusals == 0; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_GE(server->stats().authRefusals, 1u);
  EXPECT_FALSE(client->waitConnected(1s).ok());
  for (int i = 0; i < 60 && client->stats().state != LinkState::kRefused; ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(client->stats().state, LinkState::kRefused) << client->stats().lastError;
  EXPECT_NE(client->stats().lastError.find("refused this node's key"), std::string::npos);

  // Nothing got through.
  auto r = server->receive(300ms);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(server->stats().messagesReceived, 0u);
  EXPECT_NE(server->stats().state, LinkState::kConnected);
  EXPECT_EQ(client->stats().ackedSeq, 0u);

  // The log names the reason and the key's fingerprint, never a key.
  const std::string text = logs.text();
  client->stop();
  server->stop();
  EXPECT_NE(text.find("refused a connection from"), std::string::npos) << text;
  EXPECT_NE(text.find("unknown key"), std::string::npos) << text;
  EXPECT_NE(text.find(fingerprint(stranger.publicKey)), std::string::npos) << text;
  for (const auto& k :
       {stranger.secretKey, stranger.publicKey, p.serverKeys.secretKey, p.clientKeys.secretKey}) {
    EXPECT_EQ(text.find(k), std::string::npos) << "a key was logged";
  }
}

TEST(PeerLink, ListenerWithoutPairedPeersRefusesToStart) {
  Pair p;
  PeerLinkConfig c = p.server();
  c.allowedPeers.clear();
  auto link = PeerLink::start(c);
  ASSERT_FALSE(link.ok());
  EXPECT_NE(link.error().what.find("no paired peer"), std::string::npos);
}

struct BadCreditCase {
  std::string name;
  std::function<void(PeerLinkConfig&)> spoil;
};

class BadCreditSettings : public ::testing::TestWithParam<BadCreditCase> {};

TEST_P(BadCreditSettings, AreRefusedAtStartWithWhatMustHold) {
  Pair p;
  PeerLinkConfig c = p.server();
  GetParam().spoil(c);
  auto link = PeerLink::start(c);
  ASSERT_FALSE(link.ok());
  EXPECT_NE(link.error().what.find("maxWindowBytes ≥ windowBytes"), std::string::npos) << link.error().what;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadCreditSettings,
    ::testing::Values(BadCreditCase{"CapBelowFloor",
                                    [](PeerLinkConfig& c) { c.maxWindowBytes = c.windowBytes - 1; }},
                      BadCreditCase{"NoWindowTime", [](PeerLinkConfig& c) { c.windowTime = 0ms; }},
                      BadCreditCase{"NoFloor", [](PeerLinkConfig& c) { c.windowBytes = 0; }},
                      BadCreditCase{"BufferBelowAMessage",
                                    [](PeerLinkConfig& c) { c.maxBufferedBytes = c.maxMessageBytes - 1; }}),
    [](const ::testing::TestParamInfo<BadCreditCase>& param) { return param.param.name; });

TEST(PeerLink, CreditCapsBytesInFlightWithASlowReceiver) {
  Pair p;
  PeerLinkConfig sc = p.server();
  sc.windowBytes = 256 * 1024;  // the receiver grants 256 KiB, whatever the rate
  sc.maxWindowBytes = sc.windowBytes;
  sc.windowMessages = 1000;
  auto server = startLink(sc);
  ASSERT_TRUE(server);
  auto client = startLink(p.client(server->endpoint()));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->waitConnected(5s).ok());

  constexpr uint64_t kCount = 120;
  constexpr size_t kBlock = 16 * 1024;
  std::jthread sender([&] {
    for (uint64_t i = 1; i <= kCount; ++i) ASSERT_TRUE(sendBlock(*client, i, kBlock, 20s).ok());
  });
  for (uint64_t i = 1; i <= kCount; ++i) {
    std::this_thread::sleep_for(2ms);  // a slow consumer
    auto r = server->receive(10s);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(blockIndex(*r), i);
  }
  sender.join();
  const LinkStats c = client->stats();
  const LinkStats s = server->stats();
  EXPECT_GT(c.maxInFlightBytes, 0u);
  EXPECT_LE(c.maxInFlightBytes, sc.windowBytes);
  EXPECT_LE(s.maxInboxBytes, sc.windowBytes + kBlock);
  EXPECT_EQ(s.creditViolations, 0u);
}

TEST(PeerLink, CreditFollowsTheReceivingRateWithinItsBoundsAndFallsBackWhenQuiet) {
  Pair p;
  PeerLinkConfig sc = p.server();
  sc.windowBytes = 64 * 1024;       // at least 64 KiB
  sc.maxWindowBytes = 1024 * 1024;  // at most 1 MiB
  sc.windowTime = 100ms;
  auto server = startLink(sc);
  ASSERT_TRUE(server);
  auto client = startLink(p.client(server->endpoint()));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->waitConnected(5s).ok());
  EXPECT_EQ(server->stats().grantedWindowBytes, sc.windowBytes);

  // A receiver that keeps up: 16 MiB arrive far faster than 64 KiB per 100 ms.
  constexpr uint64_t kCount = 1024;
  constexpr size_t kBlock = 16 * 1024;
  std::jthread sender([&] {
    for (uint64_t i = 1; i <= kCount; ++i) ASSERT_TRUE(sendBlock(*client, i, kBlock, 20s).ok());
  });
  uint64_t most_granted = 0;
  for (uint64_t i = 1; i <= kCount; ++i) {
    auto r = server->receive(10s);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(blockIndex(*r), i);
    most_granted = std::max(most_granted, server->stats().grantedWindowBytes);
  }
  sender.join();
  EXPECT_GT(most_granted, sc.windowBytes);
  EXPECT_LE(most_granted, sc.maxWindowBytes);
  EXPECT_LE(client->stats().maxInFlightBytes, sc.maxWindowBytes);
  EXPECT_EQ(server->stats().creditViolations, 0u);

  // Quiet for longer than the periods it remembers: back to the floor (granted with the
  // next heartbeat).
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (server->stats().grantedWindowBytes != sc.windowBytes && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(server->stats().grantedWindowBytes, sc.windowBytes);
}

TEST(PeerLink, SendWaitsThenTimesOutWhenThePeerConsumesNothing) {
  Pair p;
  PeerLinkConfig sc = p.server();
  sc.windowBytes = 64 * 1024;
  sc.maxWindowBytes = sc.windowBytes;
  auto server = startLink(sc);
  ASSERT_TRUE(server);
  PeerLinkConfig cc = p.client(server->endpoint());
  cc.maxMessageBytes = 64 * 1024;
  cc.maxBufferedBytes = 256 * 1024;  // the sender's own memory bound
  auto client = startLink(cc);
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->waitConnected(5s).ok());
  Status last;
  int sent = 0;
  for (int i = 1; i <= 100; ++i) {
    auto r = sendBlock(*client, static_cast<uint64_t>(i), 16 * 1024, 300ms);
    if (!r.ok()) {
      last = r.error();
      break;
    }
    ++sent;
  }
  ASSERT_FALSE(last.ok()) << "send never blocked";
  EXPECT_NE(last.error().what.find("timed out"), std::string::npos);
  EXPECT_LT(sent, 20);
  EXPECT_LE(client->stats().bufferedBytes, cc.maxBufferedBytes);
  EXPECT_LE(server->stats().maxInboxBytes, sc.windowBytes + 17 * 1024);
}

TEST(PeerLink, ReconnectAfterListenerRestartResumesWithoutLossOrDuplication) {
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  const std::string endpoint = server->endpoint();  // the port picked; the restart reuses it
  auto client = startLink(p.client(endpoint));
  ASSERT_TRUE(client);
  ASSERT_TRUE(client->waitConnected(5s).ok());

  constexpr uint64_t kFirst = 100;
  constexpr uint64_t kTotal = 200;
  for (uint64_t i = 1; i <= kFirst; ++i) ASSERT_TRUE(sendBlock(*client, i, 512).ok());
  // The application on the listener consumes 40, then the listener dies.
  std::vector<uint64_t> got;
  uint64_t peerEpoch = 0;
  for (int i = 0; i < 40; ++i) {
    auto r = server->receive(5s);
    ASSERT_TRUE(r.ok()) << r.error().message();
    got.push_back(blockIndex(*r));
    peerEpoch = r->epoch;
  }
  server->stop();
  server.reset();

  // The sender keeps going while the peer is away.
  for (uint64_t i = kFirst + 1; i <= kTotal; ++i) ASSERT_TRUE(sendBlock(*client, i, 512).ok());

  // The restarted listener says what it has applied; the client resends the rest.
  PeerLinkConfig again = p.server(endpoint);
  again.resumeFrom = {peerEpoch, got.size()};
  server = startLink(again);
  ASSERT_TRUE(server);
  ASSERT_TRUE(server->waitConnected(10s).ok());
  while (got.size() < kTotal) {
    auto r = server->receive(10s);
    ASSERT_TRUE(r.ok()) << r.error().message() << " after " << got.size();
    EXPECT_EQ(r->seq, got.size() + 1);
    got.push_back(blockIndex(*r));
  }
  EXPECT_FALSE(server->receive(200ms).ok()) << "a duplicate arrived";
  for (uint64_t i = 0; i < kTotal; ++i) ASSERT_EQ(got[i], i + 1) << "at " << i;
  EXPECT_TRUE(client->flush(5s).ok());
  EXPECT_GE(client->stats().connects, 2u);
  EXPECT_GT(client->stats().messagesResent, 0u);
}

TEST(PeerLink, ClientRestartWithANewEpochIsANewStream) {
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  PeerLinkConfig cc = p.client(server->endpoint());
  cc.epoch = 1000;
  auto client = startLink(cc);
  ASSERT_TRUE(client);
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(sendBlock(*client, i, 64).ok());
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(server->receive(5s).ok());
  client->stop();
  client.reset();
  cc.epoch = 2000;
  client = startLink(cc);
  ASSERT_TRUE(client);
  ASSERT_TRUE(sendBlock(*client, 77, 64).ok());
  auto r = server->receive(10s);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->epoch, 2000u);
  EXPECT_EQ(r->seq, 1u);
  EXPECT_EQ(blockIndex(*r), 77u);
}

// A paired peer that misbehaves: garbage and a path-escaping message are refused
// (counted, answered with an Error, never delivered); the stream goes on.
TEST(PeerLink, MalformedAndPathEscapingMessagesAreRefusedNotDelivered) {
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  zmq::context_t ctx(1);
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::curve_serverkey, p.serverKeys.publicKey);
  raw.set(zmq::sockopt::curve_publickey, p.clientKeys.publicKey);
  raw.set(zmq::sockopt::curve_secretkey, p.clientKeys.secretKey);
  raw.set(zmq::sockopt::rcvtimeo, 5000);
  raw.connect(server->endpoint());
  auto sendMsg = [&](const std::function<void(wire::Message::Builder)>& fill) {
    capnp::MallocMessageBuilder b;
    fill(b.initRoot<wire::Message>());
    zmq::message_t frame = encodeFrame(b);
    ASSERT_TRUE(raw.send(frame, zmq::send_flags::none));
  };
  constexpr uint64_t kEpoch = 42;
  sendMsg([](wire::Message::Builder m) {
    auto h = m.getBody().initHello();
    h.setProtocolVersion(kProtocolVersion);
    h.setMinProtocolVersion(kMinProtocolVersion);
    h.setNodeId("rogue");
    h.setEpoch(kEpoch);
    h.setFirstSeq(1);
  });
  ASSERT_TRUE(server->waitConnected(5s).ok());
  zmq::message_t garbage(std::string(24, '\x7f'));
  ASSERT_TRUE(raw.send(garbage, zmq::send_flags::none));
  sendMsg([](wire::Message::Builder m) {
    m.setEpoch(kEpoch);
    m.setSeq(1);
    auto f = m.getBody().initFileMeta();
    f.setPath("../../etc/cron.d/evil");
    f.setKind(wire::FileKind::FILE);
  });
  sendMsg([](wire::Message::Builder m) {
    m.setEpoch(kEpoch);
    m.setSeq(2);
    auto f = m.getBody().initFileMeta();
    f.setPath("ok/file");
    f.setKind(wire::FileKind::FILE);
  });
  auto r = server->receive(5s);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->seq, 2u);
  EXPECT_EQ(std::string(r->message().getBody().getFileMeta().getPath().cStr()), "ok/file");
  EXPECT_FALSE(server->receive(200ms).ok());
  EXPECT_EQ(server->stats().messagesRefused, 2u);
  EXPECT_EQ(server->stats().deliveredSeq, 2u);

  // The peer was told why.
  bool sawPathRefused = false;
  for (int i = 0; i < 50 && !sawPathRefused; ++i) {
    zmq::message_t in;
    if (!raw.recv(in)) break;
    auto d = decodeFrame(std::move(in));
    ASSERT_TRUE(d.ok());
    auto body = (*d)->message().getBody();
    if (body.isError() && body.getError().getCode() == wire::ErrorCode::PATH_REFUSED) {
      sawPathRefused = true;
      EXPECT_EQ(body.getError().getRefusedSeq(), 1u);
    }
  }
  EXPECT_TRUE(sawPathRefused);
}

// A peer whose TCP connection stays up but whose loop is wedged (no heartbeats):
// libzmq alone would keep the connection; the application-level heartbeat
// declares it dead after peerTimeout.
TEST(PeerLink, ASilentPeerIsDeclaredDeadByHeartbeatTimeout) {
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  zmq::context_t ctx(1);
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::curve_serverkey, p.serverKeys.publicKey);
  raw.set(zmq::sockopt::curve_publickey, p.clientKeys.publicKey);
  raw.set(zmq::sockopt::curve_secretkey, p.clientKeys.secretKey);
  raw.connect(server->endpoint());
  capnp::MallocMessageBuilder b;
  auto h = b.initRoot<wire::Message>().getBody().initHello();
  h.setProtocolVersion(kProtocolVersion);
  h.setMinProtocolVersion(kMinProtocolVersion);
  h.setNodeId("wedged");
  h.setEpoch(7);
  h.setFirstSeq(1);
  zmq::message_t hello = encodeFrame(b);
  ASSERT_TRUE(raw.send(hello, zmq::send_flags::none));
  ASSERT_TRUE(server->waitConnected(5s).ok());
  // Say nothing more; the TCP connection stays open.
  for (int i = 0; i < 100 && server->stats().state == LinkState::kConnected; ++i)
    std::this_thread::sleep_for(50ms);
  EXPECT_EQ(server->stats().state, LinkState::kDisconnected);
  EXPECT_NE(server->stats().lastError.find("silent"), std::string::npos) << server->stats().lastError;
}

TEST(PeerLink, LinkControlBodiesCannotBeSentByTheApplication) {
  Pair p;
  auto server = startLink(p.server());
  ASSERT_TRUE(server);
  capnp::MallocMessageBuilder b;
  b.initRoot<wire::Message>().getBody().initAck();
  auto r = server->send(b, 100ms);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("not an application message"), std::string::npos);
}

}  // namespace
}  // namespace ferry::protocol
