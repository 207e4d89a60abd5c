// PeerLink: the encrypted, reliable message stream between two ferry nodes.
//
// One side listens (ROUTER, CURVE server, a ZAP handler that admits only paired
// public keys), the other connects (DEALER). After the CURVE handshake both send
// Hello; from then on the link is symmetric: each side sends a numbered stream
// (epoch, seq) and receives the peer's.
//
// Guarantees: messages are delivered in order, exactly once per epoch, across
// reconnects (unacknowledged messages are kept and resent from the peer's resume
// point); the sender never has more in flight than the receiver granted (Credit);
// every call takes a timeout. One internal thread owns the ZeroMQ sockets; the
// methods below talk to it through a mutex-guarded queue and an inproc doorbell,
// so they may be called from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <capnp/message.h>

#include "ferry/base/error.h"
#include "ferry/protocol/framing.h"
#include "ferry/protocol/keys.h"

namespace ferry::protocol {

using Millis = std::chrono::milliseconds;

struct StreamPosition {
  uint64_t epoch = 0;
  uint64_t seq = 0;  // highest contiguous seq held
};

struct PeerLinkConfig {
  enum class Mode { kListen, kConnect };
  Mode mode = Mode::kConnect;
  std::string endpoint;  // listen: "tcp://0.0.0.0:7300" ("tcp://127.0.0.1:*" picks a port); connect:
                         // "tcp://host:7300"

  KeyPair keys;                       // this node's CURVE key pair
  std::vector<PeerKey> allowedPeers;  // listen: the only client keys the ZAP handler admits
  std::string serverPublicKey;        // connect: the listener's public key (Z85)

  std::string nodeId = "node";
  wire::Role role = wire::Role::UNSPECIFIED;
  // This node's outbound stream epoch. 0: derived from the wall clock, so a restarted
  // node starts a new stream. A node that persists its stream may pass it back.
  uint64_t epoch = 0;
  // What the application already holds of the peer's stream (after a restart);
  // the peer resends from resumeFrom.seq + 1 when the epochs match.
  StreamPosition resumeFrom;

  Millis heartbeatInterval{1000};
  Millis peerTimeout{4000};  // silence after which the peer is considered dead
  // Back-off between connection attempts, doubling up to reconnectMax: a node started
  // just before its peer listens finds it within milliseconds of that.
  Millis reconnectMin{10};
  Millis reconnectMax{5000};
  Millis ackInterval{50};  // acks and credit at least this often while receiving

  size_t maxMessageBytes = kDefaultMaxFrameBytes;  // larger frames are refused (ZMQ_MAXMSGSIZE too)
  // Credit: what this side lets the peer have in flight beyond what its application has
  // consumed. It is what arrived in the busiest `windowTime` of the last few, between
  // windowBytes and maxWindowBytes: enough for the application to pause that long (the
  // standby's fsyncs at a batch's end) without stalling a fast link, while on a slow
  // link no more than that much time's worth queues ahead of the next message.
  uint64_t windowBytes = uint64_t{8} << 20;
  uint64_t maxWindowBytes = uint64_t{64} << 20;
  Millis windowTime{250};
  uint32_t windowMessages = 1024;
  uint64_t maxBufferedBytes = uint64_t{96} << 20;  // unacknowledged + unsent; send() waits beyond
  int highWaterMark = 4096;                        // ZeroMQ HWM: only a sanity bound
  Millis linger{200};
};

enum class LinkState { kConnecting, kConnected, kDisconnected, kRefused, kStopped };
std::string linkStateName(LinkState state);

struct LinkStats {
  LinkState state = LinkState::kConnecting;
  std::string peerNodeId;
  std::string peerFingerprint;       // of the peer's CURVE public key, when known
  uint32_t peerProtocolVersion = 0;  // from the peer's Hello (0: no Hello yet)
  std::string lastError;             // the latest problem, for `ferry status`
  uint64_t epoch = 0;                // our outbound stream
  uint64_t nextSeq = 1;              // the seq the next send() gets
  uint64_t ackedSeq = 0;             // highest seq the peer has consumed
  uint64_t peerEpoch = 0;            // the peer's stream
  uint64_t deliveredSeq = 0;         // highest seq of it handed to our application
  uint64_t messagesSent = 0, bytesSent = 0, messagesResent = 0;
  uint64_t messagesReceived = 0, bytesReceived = 0, duplicatesDropped = 0;
  uint64_t messagesRefused = 0;  // malformed, path-escaping, unknown: never delivered
  uint64_t authRefusals = 0;     // listen: connections the ZAP handler refused
  uint64_t connects = 0;         // successful Hello exchanges
  uint64_t bufferedBytes = 0;    // ours, waiting for an ack
  uint64_t inFlightBytes = 0;    // sent beyond the peer's credit point
  uint64_t maxInFlightBytes = 0;
  uint64_t inboxBytes = 0, maxInboxBytes = 0;
  uint64_t grantedWindowBytes = 0;  // the credit this side grants the peer now
  uint64_t creditViolations = 0;    // the peer sent beyond our grant
  uint64_t framesCopied = 0;        // received frames copied because libzmq's buffer was misaligned
};

// One delivered message.
struct Received {
  uint64_t epoch = 0;
  uint64_t seq = 0;
  std::unique_ptr<DecodedFrame> frame;
  wire::Message::Reader message() const { return frame->message(); }
};

class PeerLink {
 public:
  // Binds or connects and starts the link thread. Fails on a bad endpoint, bad
  // keys, or (listen) no allowed peers.
  static Result<std::unique_ptr<PeerLink>> start(PeerLinkConfig config);
  virtual ~PeerLink() = default;

  // Numbers (sets epoch and seq in the root wire::Message) and queues a message;
  // waits up to `timeout` for room in the send buffer. Returns the seq.
  virtual Result<uint64_t> send(capnp::MessageBuilder& message, Millis timeout) = 0;
  // The peer's next message in order; an error after `timeout`.
  virtual Result<Received> receive(Millis timeout) = 0;
  // Waits until the peer has consumed everything sent so far.
  virtual Status flush(Millis timeout) = 0;
  // Waits until a Hello exchange has completed (state kConnected).
  virtual Status waitConnected(Millis timeout) = 0;

  virtual LinkStats stats() const = 0;
  // The endpoint actually bound (listen with port "*") or connected to.
  virtual std::string endpoint() const = 0;
  // Stops the thread and closes the sockets (bounded by linger). Idempotent.
  virtual void stop() = 0;
};

}  // namespace ferry::protocol
