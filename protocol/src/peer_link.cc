// PeerLink implementation. One thread (run()) owns every ZeroMQ socket: the
// network socket (ROUTER or DEALER), the ZAP handler (listen side), the socket
// monitor (connect side) and the inproc doorbell. Application threads only touch
// the mutex-guarded queues below and ring the doorbell.
#include "ferry/protocol/peer_link.h"

#include <zmq.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include "ferry/base/log.h"
#include "ferry/protocol/zap.h"

namespace ferry::protocol {

namespace {

using Clock = std::chrono::steady_clock;
using W = wire::Message::Body::Which;

std::atomic<uint64_t> gLinkCounter{0};  // unique inproc names; not state shared between links

struct Outgoing {
  uint64_t seq = 0;
  // Shared with libzmq while a send of it is queued (zero-copy frames).
  std::shared_ptr<kj::Array<capnp::word>> words;
  size_t bytes = 0;
};

// zmq free function for zero-copy frames (called from libzmq's I/O thread).
void releaseWords(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<kj::Array<capnp::word>>*>(hint);
}

bool decodeKey(const std::string& z85, std::array<unsigned char, 32>& out) {
  return z85.size() == 40 && zmq_z85_decode(out.data(), z85.c_str()) != nullptr;
}

uint64_t nowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count());
}

std::string msText(Millis ms) {
  return std::to_string(ms.count()) + " ms";
}

}  // namespace

std::string linkStateName(LinkState state) {
  switch (state) {
    case LinkState::kConnecting:
      return "connecting";
    case LinkState::kConnected:
      return "connected";
    case LinkState::kDisconnected:
      return "disconnected";
    case LinkState::kRefused:
      return "refused";
    case LinkState::kStopped:
      return "stopped";
  }
  return "unknown";
}

class PeerLinkImpl final : public PeerLink {
 public:
  explicit PeerLinkImpl(PeerLinkConfig config)
      : cfg_(std::move(config)), log_(log::get("link")), ctx_(1), id_(gLinkCounter.fetch_add(1)) {
    epoch_ = cfg_.epoch != 0 ? cfg_.epoch
                             : static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                         std::chrono::system_clock::now().time_since_epoch())
                                                         .count());
    recvEpoch_ = cfg_.resumeFrom.epoch;
    receivedSeq_ = cfg_.resumeFrom.seq;
    deliveredSeq_ = cfg_.resumeFrom.seq;
    ackSentSeq_ = cfg_.resumeFrom.seq;
    peerMaxMessageBytes_ = cfg_.maxMessageBytes;
    stats_.epoch = epoch_;
    stats_.peerEpoch = recvEpoch_;
    stats_.deliveredSeq = deliveredSeq_;
    limits_.maxFrameBytes = cfg_.maxMessageBytes;
    wakeEndpoint_ = "inproc://ferry-link-wake-" + std::to_string(id_);
    backoff_ = cfg_.reconnectMin;
    maxGranted_ = cfg_.windowBytes;
    stats_.grantedWindowBytes = cfg_.windowBytes;
  }

  ~PeerLinkImpl() override { stop(); }

  Status startThread() {
    try {
      wakeTx_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
      wakeTx_.set(zmq::sockopt::linger, 0);
      wakeTx_.set(zmq::sockopt::sndhwm, 16);
    } catch (const zmq::error_t& e) {
      return makeError(std::string("cannot create the link's doorbell socket: ") + e.what());
    }
    std::promise<Status> started;
    auto ready = started.get_future();
    thread_ = std::thread([this, &started] { run(started); });
    if (ready.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      stop();
      return makeError("the link thread did not start within 10 s", "this is a bug; report it with the log");
    }
    Status s = ready.get();
    if (!s.ok()) {
      stop();
      return s;
    }
    try {
      std::lock_guard<std::mutex> lock(wakeMu_);
      wakeTx_.connect(wakeEndpoint_);
    } catch (const zmq::error_t& e) {
      stop();
      return makeError(std::string("cannot connect the link's doorbell: ") + e.what());
    }
    return okStatus();
  }

  Result<uint64_t> send(capnp::MessageBuilder& message, Millis timeout) override {
    auto root = message.getRoot<wire::Message>();
    const W which = root.getBody().which();
    if (which == W::UNSPECIFIED || isLinkControl(which)) {
      return makeError("PeerLink::send: a '" + bodyName(which) + "' body is not an application message",
                       "this is a bug in the caller");
    }
    const uint64_t estimate = capnp::computeSerializedSizeInWords(message) * sizeof(capnp::word);
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t limit = std::min<uint64_t>(cfg_.maxMessageBytes, peerMaxMessageBytes_);
    if (estimate > limit) {
      return makeError("message of " + std::to_string(estimate) + " bytes exceeds the link's limit of " +
                           std::to_string(limit),
                       "split it (blocks and checkpoint chunks must stay under maxMessageBytes)");
    }
    const bool room = sendCv_.wait_for(lock, timeout, [&] {
      return stopped_ || bufferedBytes_ == 0 || bufferedBytes_ + estimate <= cfg_.maxBufferedBytes;
    });
    if (stopped_) return makeError("PeerLink::send: the link is stopped");
    if (!room) {
      return makeError("send to peer " + peerName() + " timed out after " + msText(timeout) + ": " +
                           std::to_string(bufferedBytes_) + " bytes still unacknowledged (link " +
                           linkStateName(stats_.state) + ")",
                       "the peer is slow or unreachable; check 'ferry status' on both nodes");
    }
    const uint64_t seq = nextSeq_++;
    root.setEpoch(epoch_);
    root.setSeq(seq);
    Outgoing out;
    out.seq = seq;
    out.words = std::make_shared<kj::Array<capnp::word>>(capnp::messageToFlatArray(message));
    out.bytes = out.words->size() * sizeof(capnp::word);
    bufferedBytes_ += out.bytes;
    buffer_.push_back(std::move(out));
    stats_.nextSeq = nextSeq_;
    stats_.bufferedBytes = bufferedBytes_;
    lock.unlock();
    wake();
    return seq;
  }

  Result<Received> receive(Millis timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (!recvCv_.wait_until(lock, deadline, [&] { return stopped_ || !inbox_.empty(); })) {
        return makeError("no message from peer " + peerName() + " within " + msText(timeout) + " (link " +
                         linkStateName(stats_.state) + ")");
      }
      if (inbox_.empty()) return makeError("PeerLink::receive: the link is stopped");
      Received item = std::move(inbox_.front());
      inbox_.pop_front();
      const size_t bytes = item.frame ? item.frame->sizeBytes() : 0;
      inboxBytes_ -= bytes;
      stats_.inboxBytes = inboxBytes_;
      if (item.epoch == recvEpoch_ && item.seq > deliveredSeq_) deliveredSeq_ = item.seq;
      stats_.deliveredSeq = deliveredSeq_;
      consumedSinceAck_ += bytes;
      const bool ackDue = deliveredSeq_ - ackSentSeq_ >= std::max<uint64_t>(1, cfg_.windowMessages / 4) ||
                          consumedSinceAck_ >= cfg_.windowBytes / 4 || inbox_.empty();
      if (ackDue) {
        lock.unlock();
        wake();
        lock.lock();
      }
      if (item.frame) return item;
      // A refused message keeps its place in the sequence but is never delivered.
    }
  }

  Status flush(Millis timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    const uint64_t target = nextSeq_ - 1;
    if (!sendCv_.wait_for(lock, timeout, [&] { return stopped_ || ackedSeq_ >= target; })) {
      return makeError("flush: peer " + peerName() + " acknowledged seq " + std::to_string(ackedSeq_) +
                           " of " + std::to_string(target) + " within " + msText(timeout),
                       "the peer is slow or unreachable; check 'ferry status'");
    }
    if (ackedSeq_ < target)
      return makeError("flush: the link stopped before the peer acknowledged everything");
    return okStatus();
  }

  Status waitConnected(Millis timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!stateCv_.wait_for(lock, timeout,
                           [&] { return stopped_ || stats_.state == LinkState::kConnected; })) {
      return makeError("no connection to the peer at " + endpoint_ + " within " + msText(timeout) +
                           " (link " + linkStateName(stats_.state) +
                           (stats_.lastError.empty() ? "" : ": " + stats_.lastError) + ")",
                       "check that the peer's node runs, the address, and that both nodes are paired");
    }
    if (stats_.state != LinkState::kConnected) return makeError("the link stopped before it connected");
    return okStatus();
  }

  LinkStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  std::string endpoint() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return endpoint_;
  }

  void stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopRequested_) return;
      stopRequested_ = true;
    }
    stopping_.store(true);
    wake();
    if (thread_.joinable()) thread_.join();
    {
      std::lock_guard<std::mutex> lock(wakeMu_);
      wakeTx_.close();
    }
    ctx_.close();
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
      stats_.state = LinkState::kStopped;
    }
    sendCv_.notify_all();
    recvCv_.notify_all();
    stateCv_.notify_all();
  }

 private:
  // ---- called from any thread ----------------------------------------------
  void wake() {
    std::lock_guard<std::mutex> lock(wakeMu_);
    if (!wakeTx_) return;
    try {
      zmq::message_t bell(static_cast<size_t>(0));
      (void)wakeTx_.send(bell, zmq::send_flags::dontwait);  // full pipe: the thread is awake anyway
    } catch (const zmq::error_t&) {
    }
  }

  std::string peerName() const {  // mu_ held
    std::string name = stats_.peerNodeId.empty() ? endpoint_ : stats_.peerNodeId;
    return stats_.peerFingerprint.empty() ? name : name + " [" + stats_.peerFingerprint + "]";
  }

  // ---- the link thread -----------------------------------------------------
  void run(std::promise<Status>& started) {
    try {
      wakeRx_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
      wakeRx_.set(zmq::sockopt::linger, 0);
      wakeRx_.bind(wakeEndpoint_);
      if (cfg_.mode == PeerLinkConfig::Mode::kListen) {
        Status s = openListener();
        if (!s.ok()) {
          closeAll();
          started.set_value(s);
          return;
        }
      } else {
        Status s = prepareConnector();
        if (!s.ok()) {
          closeAll();
          started.set_value(s);
          return;
        }
        openDealer();
      }
    } catch (const zmq::error_t& e) {
      closeAll();
      started.set_value(makeError("cannot set up the peer link on " + cfg_.endpoint + ": " + e.what(),
                                  "check the address and that the port is free"));
      return;
    }
    started.set_value(okStatus());
    try {
      loop();
    } catch (const zmq::error_t& e) {
      // A libzmq failure after start-up is a bug or a dying process: say so loudly.
      log_->critical("[{}] link thread failed: {}", cfg_.nodeId, e.what());
      setError(std::string("link thread failed: ") + e.what());
    }
    closeAll();
  }

  Status openListener() {
    if (cfg_.allowedPeers.empty()) {
      return makeError("refusing to listen on " + cfg_.endpoint + ": no paired peer keys",
                       "pair the peer first: ferry pair --peer-key KEY --name NAME");
    }
    // The ZAP handler first: a CURVE server without one admits any client.
    auto zap = ZapHandler::bind(ctx_, cfg_.allowedPeers, cfg_.nodeId, log_);
    if (!zap.ok()) return zap.error();
    zap_ = std::move(zap.value());

    net_ = zmq::socket_t(ctx_, zmq::socket_type::router);
    setCommonOptions();
    net_.set(zmq::sockopt::router_mandatory, 1);
    FERRY_TRY(makeCurveServer(net_, cfg_.keys.secretKey, *log_, cfg_.nodeId));
    net_.bind(cfg_.endpoint);
    std::string bound = net_.get(zmq::sockopt::last_endpoint);
    {
      std::lock_guard<std::mutex> lock(mu_);
      endpoint_ = bound;
      stats_.state = LinkState::kDisconnected;
    }
    log_->info("[{}] listening on {} (CURVE, {} paired peer key(s), own key {})", cfg_.nodeId, bound,
               zap_->allowedCount(), fingerprint(cfg_.keys.publicKey));
    return okStatus();
  }

  Status prepareConnector() {
    if (!decodeKey(cfg_.serverPublicKey, serverKey_)) {
      return makeError("the peer's public key is invalid", "pair again: ferry pair --peer-key KEY");
    }
    if (!decodeKey(cfg_.keys.secretKey, ownSecret_) || !decodeKey(cfg_.keys.publicKey, ownPublic_)) {
      return makeError("this node's key pair is invalid", "run ferry keygen");
    }
    std::lock_guard<std::mutex> lock(mu_);
    endpoint_ = cfg_.endpoint;
    stats_.peerFingerprint = fingerprintRaw(serverKey_.data());
    return okStatus();
  }

  void setCommonOptions() {
    net_.set(zmq::sockopt::linger, static_cast<int>(cfg_.linger.count()));
    net_.set(zmq::sockopt::sndhwm, cfg_.highWaterMark);
    net_.set(zmq::sockopt::rcvhwm, cfg_.highWaterMark);
    // Frames carry a few bytes of ZMTP framing beyond the capnp message.
    net_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(cfg_.maxMessageBytes));
  }

  void openDealer() {
    net_ = zmq::socket_t(ctx_, zmq::socket_type::dealer);
    setCommonOptions();
    net_.set(zmq::sockopt::curve_serverkey, zmq::const_buffer(serverKey_.data(), serverKey_.size()));
    net_.set(zmq::sockopt::curve_publickey, zmq::const_buffer(ownPublic_.data(), ownPublic_.size()));
    net_.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(ownSecret_.data(), ownSecret_.size()));
    net_.set(zmq::sockopt::reconnect_ivl, static_cast<int>(cfg_.reconnectMin.count()));
    net_.set(zmq::sockopt::reconnect_ivl_max, static_cast<int>(cfg_.reconnectMax.count()));
    net_.set(zmq::sockopt::handshake_ivl, static_cast<int>(cfg_.peerTimeout.count()));
    const std::string monEndpoint =
        "inproc://ferry-link-mon-" + std::to_string(id_) + "-" + std::to_string(++socketGeneration_);
    const int events = ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |
                       ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                       ZMQ_EVENT_DISCONNECTED;
    if (zmq_socket_monitor(net_.handle(), monEndpoint.c_str(), events) != 0) throw zmq::error_t();
    mon_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
    mon_.set(zmq::sockopt::linger, 0);
    mon_.connect(monEndpoint);
    net_.connect(cfg_.endpoint);
    openedAt_ = Clock::now();
    refusedLogged_ = false;
    setState(LinkState::kConnecting);
  }

  void closeDealer() {
    if (mon_) {
      (void)zmq_socket_monitor(net_.handle(), nullptr, 0);
      mon_.close();
    }
    net_.close();
  }

  void closeAll() {
    if (mon_) closeDealer();
    if (net_) net_.close();
    zap_.reset();
    if (wakeRx_) wakeRx_.close();
    ownSecret_.fill(0);
  }

  void loop() {
    while (!stopping_.load()) {
      const auto now = Clock::now();
      timers(now);
      const bool blocked = pump();
      std::vector<zmq::pollitem_t> items;
      items.push_back({wakeRx_.handle(), 0, ZMQ_POLLIN, 0});
      const size_t netIdx = items.size();
      if (net_) items.push_back({net_.handle(), 0, ZMQ_POLLIN, 0});
      const size_t zapIdx = items.size();
      if (zap_) items.push_back({zap_->socket().handle(), 0, ZMQ_POLLIN, 0});
      const size_t monIdx = items.size();
      if (mon_) items.push_back({mon_.handle(), 0, ZMQ_POLLIN, 0});
      Millis timeout = std::min<Millis>(cfg_.ackInterval, Millis(100));
      if (blocked) timeout = Millis(5);  // the socket's HWM was full: retry soon
      zmq::poll(items, timeout);
      if ((items[0].revents & ZMQ_POLLIN) != 0) drainWake();
      if (zap_ && (items[zapIdx].revents & ZMQ_POLLIN) != 0) handleZap();
      if (mon_ && (items[monIdx].revents & ZMQ_POLLIN) != 0) handleMonitor();
      if (net_ && netIdx < items.size() && (items[netIdx].revents & ZMQ_POLLIN) != 0) receiveFrames();
    }
  }

  void drainWake() {
    zmq::message_t m;
    for (int i = 0; i < 1024; ++i) {
      if (!wakeRx_.recv(m, zmq::recv_flags::dontwait)) break;
    }
  }

  // ---- state helpers -------------------------------------------------------
  void setState(LinkState state) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stats_.state == state) return;
      stats_.state = state;
    }
    stateCv_.notify_all();
  }

  LinkState state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_.state;
  }

  void setError(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.lastError = what;
  }

  void linkDown(const std::string& why) {
    if (state() == LinkState::kConnected) {
      log_->warn("[{}] link to {} down: {}", cfg_.nodeId, peerNameLocked(), why);
    }
    setError(why);
    setState(LinkState::kDisconnected);
    currentRid_.reset();
    if (cfg_.mode == PeerLinkConfig::Mode::kConnect) {
      closeDealer();
      reopenAt_ = Clock::now() + backoff_;
      log_->info("[{}] reconnecting to {} in {}", cfg_.nodeId, cfg_.endpoint, msText(backoff_));
      backoff_ = std::min(backoff_ * 2, cfg_.reconnectMax);
    }
  }

  std::string peerNameLocked() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peerName();
  }

  void timers(Clock::time_point now) {
    const LinkState st = state();
    if (cfg_.mode == PeerLinkConfig::Mode::kConnect) {
      if (!net_) {
        if (now >= reopenAt_) openDealer();
        return;
      }
      if (st != LinkState::kConnected && now - openedAt_ > cfg_.peerTimeout) {
        linkDown(st == LinkState::kRefused
                     ? "the peer refused this node's key"
                     : "no Hello from " + cfg_.endpoint + " within " + msText(cfg_.peerTimeout));
        if (st == LinkState::kRefused) setState(LinkState::kRefused);
        return;
      }
    }
    if (st != LinkState::kConnected) return;
    if (now - lastHeard_ > cfg_.peerTimeout) {
      linkDown("peer silent for more than " + msText(cfg_.peerTimeout));
      return;
    }
    if (now - lastHeartbeat_ >= cfg_.heartbeatInterval) {
      lastHeartbeat_ = now;
      capnp::MallocMessageBuilder b;
      auto hb = b.initRoot<wire::Message>().getBody().initHeartbeat();
      hb.setSentAtMs(nowMs());
      hb.setEchoMs(lastPeerHeartbeatMs_);
      sendControl(b);
      sendAckCredit();  // repeat state now and then: a lost ack or credit heals itself
      lastAckAt_ = now;
      return;
    }
    bool due = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      due = deliveredSeq_ != ackSentSeq_ &&
            (now - lastAckAt_ >= cfg_.ackInterval || deliveredSeq_ - ackSentSeq_ >= cfg_.windowMessages / 4 ||
             consumedSinceAck_ >= cfg_.windowBytes / 4 || inbox_.empty());
    }
    if (due) {
      sendAckCredit();
      lastAckAt_ = now;
    }
  }

  // ---- sending ---------------------------------------------------------------
  // Sends one frame to the peer; false when it could not be queued (HWM) or the peer
  // is gone (the link is then down).
  bool sendFrame(zmq::message_t& payload) {
    try {
      if (cfg_.mode == PeerLinkConfig::Mode::kListen) {
        if (!currentRid_) return false;
        zmq::message_t rid(currentRid_->data(), currentRid_->size());
        if (!net_.send(rid, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) return false;
        // After the routing frame is accepted the payload part always is.
        (void)net_.send(payload, zmq::send_flags::dontwait);
        return true;
      }
      if (!net_) return false;
      return net_.send(payload, zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t& e) {
      if (e.num() == EHOSTUNREACH) {
        linkDown("the peer's connection is gone");
        return false;
      }
      throw;
    }
  }

  void sendControl(capnp::MallocMessageBuilder& b) {
    zmq::message_t frame = encodeFrame(b);
    (void)sendFrame(frame);
  }

  // ---- credit sized by the link's rate (link thread only) ----------------------

  // Starts a new period for every windowTime gone by; after a long quiet spell all of
  // them read 0.
  void rotatePeriods(Clock::time_point now) {
    if (rxPeriodStart_ == Clock::time_point{}) rxPeriodStart_ = now;
    for (size_t n = 0; now - rxPeriodStart_ >= cfg_.windowTime; ++n) {
      if (n == rxPeriods_.size()) {
        rxPeriodStart_ = now;
        break;
      }
      std::rotate(rxPeriods_.rbegin(), rxPeriods_.rbegin() + 1, rxPeriods_.rend());
      rxPeriods_.front() = 0;
      rxPeriodStart_ += cfg_.windowTime;
    }
  }

  void noteReceived(uint64_t bytes, Clock::time_point now) {
    rotatePeriods(now);
    rxPeriods_.front() += bytes;
  }

  // What the busiest recent period brought, within [windowBytes, maxWindowBytes].
  uint64_t grantBytes(Clock::time_point now) {
    rotatePeriods(now);
    const uint64_t busiest = *std::max_element(rxPeriods_.begin(), rxPeriods_.end());
    const uint64_t grant = std::clamp(busiest, cfg_.windowBytes, cfg_.maxWindowBytes);
    std::lock_guard<std::mutex> lock(mu_);
    maxGranted_ = std::max(maxGranted_, grant);
    stats_.grantedWindowBytes = grant;
    return grant;
  }

  void sendAckCredit() {
    uint64_t epoch = 0;
    uint64_t delivered = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      epoch = recvEpoch_;
      delivered = deliveredSeq_;
      ackSentSeq_ = delivered;
      consumedSinceAck_ = 0;
    }
    if (epoch == 0) return;  // the peer's stream is not known yet
    {
      capnp::MallocMessageBuilder b;
      auto ack = b.initRoot<wire::Message>().getBody().initAck();
      ack.setEpoch(epoch);
      ack.setSeq(delivered);
      sendControl(b);
    }
    capnp::MallocMessageBuilder b;
    auto credit = b.initRoot<wire::Message>().getBody().initCredit();
    credit.setEpoch(epoch);
    credit.setThroughSeq(delivered);
    credit.setWindowBytes(grantBytes(Clock::now()));
    credit.setWindowMessages(cfg_.windowMessages);
    sendControl(b);
  }

  void sendHello() {
    capnp::MallocMessageBuilder b;
    auto h = b.initRoot<wire::Message>().getBody().initHello();
    h.setProtocolVersion(kProtocolVersion);
    h.setMinProtocolVersion(kMinProtocolVersion);
    h.setNodeId(cfg_.nodeId);
    h.setRole(cfg_.role);
    h.setMaxMessageBytes(static_cast<uint32_t>(std::min<size_t>(cfg_.maxMessageBytes, UINT32_MAX)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      h.setEpoch(epoch_);
      h.setFirstSeq(buffer_.empty() ? nextSeq_ : buffer_.front().seq);
      h.setResumeEpoch(recvEpoch_);
      h.setResumeSeq(receivedSeq_);
    }
    sendControl(b);
  }

  void sendError(wire::ErrorCode code, const Error& error, uint64_t epoch, uint64_t seq) {
    capnp::MallocMessageBuilder b;
    auto e = b.initRoot<wire::Message>().getBody().initError();
    e.setCode(code);
    e.setWhat(error.what.substr(0, 1024));
    e.setHint(error.hint.substr(0, 1024));
    e.setRefusedEpoch(epoch);
    e.setRefusedSeq(seq);
    zmq::message_t frame = encodeFrame(b);
    (void)sendFrame(frame);
  }

  // Sends queued messages within the peer's credit. Returns true when the socket
  // refused more (HWM) so the loop should come back soon.
  bool pump() {
    if (state() != LinkState::kConnected || !creditKnown_) return false;
    for (int budget = 0; budget < 256; ++budget) {
      zmq::message_t frame;
      uint64_t seq = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (buffer_.empty() || sendCursor_ >= nextSeq_) return false;
        if (sendCursor_ < buffer_.front().seq) sendCursor_ = buffer_.front().seq;
        if (sendCursor_ >= nextSeq_) return false;
        if (sendCursor_ > creditThrough_ + peerWindowMessages_) return false;
        uint64_t inflight = 0;
        const uint64_t front = buffer_.front().seq;
        for (uint64_t s = std::max(creditThrough_ + 1, front); s < sendCursor_; ++s)
          inflight += buffer_[s - front].bytes;
        const Outgoing& next = buffer_[sendCursor_ - front];
        if (inflight > 0 && inflight + next.bytes > peerWindowBytes_) return false;
        // Zero-copy: libzmq holds a reference until it has written (or dropped) the frame.
        kj::ArrayPtr<const kj::byte> bytes = next.words->asBytes();
        auto* ref = new std::shared_ptr<kj::Array<capnp::word>>(next.words);
        frame = zmq::message_t(const_cast<kj::byte*>(bytes.begin()), bytes.size(), &releaseWords, ref);
        seq = next.seq;
        stats_.inFlightBytes = inflight + next.bytes;
        stats_.maxInFlightBytes = std::max(stats_.maxInFlightBytes, stats_.inFlightBytes);
      }
      const size_t size = frame.size();
      if (!sendFrame(frame)) return state() == LinkState::kConnected;
      std::lock_guard<std::mutex> lock(mu_);
      if (sendCursor_ != seq) continue;  // a Hello moved the cursor meanwhile
      ++sendCursor_;
      ++stats_.messagesSent;
      stats_.bytesSent += size;
      if (seq <= highestSent_) {
        ++stats_.messagesResent;
      } else {
        highestSent_ = seq;
      }
    }
    return true;
  }

  // ---- receiving -------------------------------------------------------------
  void receiveFrames() {
    for (int budget = 0; budget < 256; ++budget) {
      std::optional<std::string> rid;
      zmq::message_t first;
      if (!net_.recv(first, zmq::recv_flags::dontwait)) return;
      zmq::message_t payload;
      if (cfg_.mode == PeerLinkConfig::Mode::kListen) {
        rid = std::string(static_cast<const char*>(first.data()), first.size());
        if (!first.more() || !net_.recv(payload, zmq::recv_flags::dontwait)) continue;
      } else {
        payload = std::move(first);
      }
      bool extra = payload.more();
      while (extra) {  // one message per frame: drop anything after it
        zmq::message_t rest;
        if (!net_.recv(rest, zmq::recv_flags::dontwait)) break;
        extra = rest.more();
      }
      std::string userId;
      if (rid) {
        const char* uid = zmq_msg_gets(payload.handle(), "User-Id");
        if (uid != nullptr) userId = uid;
      }
      handleFrame(rid, userId, std::move(payload));
    }
  }

  void refuse(const std::optional<std::string>& rid, const Error& error, wire::ErrorCode code, uint64_t epoch,
              uint64_t seq) {
    log_->warn("[{}] refused a message from {}: {}", cfg_.nodeId, peerNameLocked(), error.message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.messagesRefused;
      stats_.lastError = error.what;
    }
    const bool fromPeer =
        cfg_.mode == PeerLinkConfig::Mode::kConnect || (rid && currentRid_ && *rid == *currentRid_);
    if (fromPeer && state() == LinkState::kConnected) sendError(code, error, epoch, seq);
  }

  void handleFrame(const std::optional<std::string>& rid, const std::string& userId, zmq::message_t payload) {
    auto decoded = decodeFrame(std::move(payload), limits_);
    if (!decoded.ok()) {
      refuse(rid, decoded.error(), wire::ErrorCode::MALFORMED, 0, 0);
      return;
    }
    std::unique_ptr<DecodedFrame> frame = std::move(decoded.value());
    if (frame->copied()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.framesCopied;
    }
    W which = W::UNSPECIFIED;
    uint64_t epoch = 0;
    uint64_t seq = 0;
    Status read = readGuarded("reading a message header", [&]() -> Status {
      auto m = frame->message();
      which = m.getBody().which();
      epoch = m.getEpoch();
      seq = m.getSeq();
      return okStatus();
    });
    if (!read.ok()) {
      refuse(rid, read.error(), wire::ErrorCode::MALFORMED, 0, 0);
      return;
    }
    const bool current =
        cfg_.mode == PeerLinkConfig::Mode::kConnect || (rid && currentRid_ && *rid == *currentRid_);
    if (!current && which != W::HELLO) return;  // a stale connection, or one that has not said Hello
    lastHeard_ = Clock::now();
    Status valid = validateFrame(*frame);
    if (!valid.ok()) {
      const bool pathProblem = valid.error().what.find("path '") != std::string::npos;
      if (seq != 0) markRefused(epoch, seq);
      refuse(rid, valid.error(), pathProblem ? wire::ErrorCode::PATH_REFUSED : wire::ErrorCode::MALFORMED,
             epoch, seq);
      return;
    }
    Status handled = readGuarded("handling a " + bodyName(which) + " message", [&]() -> Status {
      auto body = frame->message().getBody();
      switch (which) {
        case W::HELLO:
          return onHello(rid, userId, body.getHello());
        case W::HEARTBEAT:
          lastPeerHeartbeatMs_ = body.getHeartbeat().getSentAtMs();
          return okStatus();
        case W::CREDIT:
          onCredit(body.getCredit());
          return okStatus();
        case W::ACK:
          onAck(body.getAck());
          return okStatus();
        default:
          break;
      }
      if (seq == 0) return makeError("a '" + bodyName(which) + "' message without a sequence number");
      if (state() != LinkState::kConnected) return okStatus();  // before Hello: it will be resent
      onData(epoch, seq, std::move(frame));
      return okStatus();
    });
    if (!handled.ok()) refuse(rid, handled.error(), wire::ErrorCode::MALFORMED, epoch, seq);
  }

  Status onHello(const std::optional<std::string>& rid, const std::string& userId, wire::Hello::Reader h) {
    const std::string peerId(h.getNodeId().cStr(), h.getNodeId().size());
    if (h.getProtocolVersion() < kMinProtocolVersion || h.getMinProtocolVersion() > kProtocolVersion) {
      Error e = makeError("peer " + peerId + " speaks protocol " + std::to_string(h.getProtocolVersion()) +
                              " (accepts ≥ " + std::to_string(h.getMinProtocolVersion()) + "), this node " +
                              std::to_string(kProtocolVersion) + " (accepts ≥ " +
                              std::to_string(kMinProtocolVersion) + ")",
                          "run the same ferry version on both nodes");
      log_->error("[{}] {}", cfg_.nodeId, e.message());
      if (rid) currentRid_ = rid;
      sendError(wire::ErrorCode::VERSION_MISMATCH, e, 0, 0);
      currentRid_.reset();
      setError(e.what);
      setState(LinkState::kRefused);
      return okStatus();
    }
    if (rid) currentRid_ = rid;
    uint64_t from = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.peerNodeId = peerId;
      stats_.peerProtocolVersion = h.getProtocolVersion();
      if (rid && zap_) {
        // The ZAP handler set User-Id to the paired name; find its fingerprint.
        const std::string fp = zap_->fingerprintOf(userId);
        if (!fp.empty()) stats_.peerFingerprint = fp;
      }
      peerMaxMessageBytes_ = h.getMaxMessageBytes() == 0 ? cfg_.maxMessageBytes : h.getMaxMessageBytes();
      // The peer's stream, which we receive.
      if (h.getEpoch() == recvEpoch_) {
        if (h.getFirstSeq() > receivedSeq_ + 1) {
          log_->error("[{}] peer {} can resend only from seq {} but this node holds {}: seqs lost",
                      cfg_.nodeId, peerId, h.getFirstSeq(), receivedSeq_);
          stats_.lastError = "peer stream gap: seqs " + std::to_string(receivedSeq_ + 1) + ".." +
                             std::to_string(h.getFirstSeq() - 1) + " lost";
          receivedSeq_ = h.getFirstSeq() - 1;
        }
      } else {
        log_->info("[{}] peer {} stream epoch {} starts at seq {}", cfg_.nodeId, peerId, h.getEpoch(),
                   h.getFirstSeq());
        recvEpoch_ = h.getEpoch();
        receivedSeq_ = h.getFirstSeq() == 0 ? 0 : h.getFirstSeq() - 1;
        deliveredSeq_ = receivedSeq_;
        ackSentSeq_ = receivedSeq_;
        stats_.peerEpoch = recvEpoch_;
        stats_.deliveredSeq = deliveredSeq_;
      }
      // Our stream: resume where the peer says it is.
      const uint64_t oldest = buffer_.empty() ? nextSeq_ : buffer_.front().seq;
      if (h.getResumeEpoch() == epoch_) {
        from = h.getResumeSeq() + 1;
        if (from < oldest) {
          log_->error("[{}] peer {} resumes from seq {} but seqs before {} were acknowledged and freed",
                      cfg_.nodeId, peerId, from, oldest);
          stats_.lastError = "peer resumes behind what it acknowledged; the application must resynchronise";
          from = oldest;
        }
        from = std::min(from, nextSeq_);
      } else {
        from = oldest;
      }
      sendCursor_ = from;
      creditKnown_ = false;
      ++stats_.connects;
      stats_.lastError.clear();
    }
    log_->info("[{}] connected to {} ({}, protocol {}), resending from seq {}", cfg_.nodeId, peerId,
               rid ? "inbound" : "outbound", h.getProtocolVersion(), from);
    backoff_ = cfg_.reconnectMin;
    if (cfg_.mode == PeerLinkConfig::Mode::kListen) sendHello();
    setState(LinkState::kConnected);
    lastHeard_ = Clock::now();
    sendAckCredit();
    lastAckAt_ = Clock::now();
    return okStatus();
  }

  void onCredit(wire::Credit::Reader c) {
    std::lock_guard<std::mutex> lock(mu_);
    if (c.getEpoch() != epoch_) return;
    creditThrough_ = c.getThroughSeq();
    peerWindowBytes_ = c.getWindowBytes();
    peerWindowMessages_ = c.getWindowMessages();
    creditKnown_ = true;
  }

  void onAck(wire::Ack::Reader a) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (a.getEpoch() != epoch_) return;
      const uint64_t acked = std::min(a.getSeq(), nextSeq_ - 1);
      while (!buffer_.empty() && buffer_.front().seq <= acked) {
        bufferedBytes_ -= buffer_.front().bytes;
        buffer_.pop_front();
      }
      ackedSeq_ = std::max(ackedSeq_, acked);
      stats_.ackedSeq = ackedSeq_;
      stats_.bufferedBytes = bufferedBytes_;
    }
    sendCv_.notify_all();
  }

  // A sequenced message that was refused keeps its place in the order, undelivered.
  void markRefused(uint64_t epoch, uint64_t seq) {
    std::lock_guard<std::mutex> lock(mu_);
    if (epoch != recvEpoch_ || seq != receivedSeq_ + 1) return;
    receivedSeq_ = seq;
    inbox_.push_back(Received{epoch, seq, nullptr});
    recvCv_.notify_one();
  }

  void onData(uint64_t epoch, uint64_t seq, std::unique_ptr<DecodedFrame> frame) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (epoch != recvEpoch_) {
        log_->debug("[{}] dropped seq {} of old epoch {}", cfg_.nodeId, seq, epoch);
        return;
      }
      if (seq <= receivedSeq_) {
        ++stats_.duplicatesDropped;
        return;
      }
      if (seq != receivedSeq_ + 1) {
        log_->warn("[{}] dropped seq {} from {}: expected {}", cfg_.nodeId, seq, peerName(),
                   receivedSeq_ + 1);
        return;
      }
      receivedSeq_ = seq;
      const size_t bytes = frame->sizeBytes();
      ++stats_.messagesReceived;
      stats_.bytesReceived += bytes;
      inboxBytes_ += bytes;
      stats_.inboxBytes = inboxBytes_;
      stats_.maxInboxBytes = std::max(stats_.maxInboxBytes, inboxBytes_);
      noteReceived(bytes, Clock::now());
      if (seq - deliveredSeq_ > cfg_.windowMessages || inboxBytes_ > maxGranted_ + cfg_.maxMessageBytes) {
        ++stats_.creditViolations;
      }
      inbox_.push_back(Received{epoch, seq, std::move(frame)});
    }
    recvCv_.notify_one();
  }

  // ---- ZAP (listen side) -------------------------------------------------------
  void handleZap() {
    for (int budget = 0; budget < 64; ++budget) {
      std::optional<ZapDecision> d = zap_->handleOne();
      if (!d) return;
      if (d->admitted) continue;
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.authRefusals;
      stats_.lastError =
          "refused a connection from " + d->address + ": " + d->reason + " (key " + d->fingerprint + ")";
    }
  }

  // ---- socket monitor (connect side) -----------------------------------------
  void handleMonitor() {
    for (int budget = 0; budget < 64; ++budget) {
      zmq::message_t head;
      if (!mon_.recv(head, zmq::recv_flags::dontwait)) return;
      zmq::message_t addr;
      if (head.more()) (void)mon_.recv(addr, zmq::recv_flags::dontwait);
      if (head.size() < 6) continue;
      uint16_t event = 0;
      uint32_t value = 0;
      std::memcpy(&event, head.data(), sizeof event);
      std::memcpy(&value, static_cast<const char*>(head.data()) + 2, sizeof value);
      switch (event) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
          // A fresh CURVE session (first connect or libzmq's own reconnect): introduce ourselves.
          log_->debug("[{}] CURVE handshake with {} done", cfg_.nodeId, cfg_.endpoint);
          if (state() == LinkState::kConnected) setState(LinkState::kConnecting);
          openedAt_ = Clock::now();
          sendHello();
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
          if (!refusedLogged_) {
            log_->error(
                "[{}] the peer at {} refused this node's key (ZAP status {}, our key {}) — pair it on the "
                "peer: ferry pair --peer-key <this node's node.pub>",
                cfg_.nodeId, cfg_.endpoint, value, fingerprint(cfg_.keys.publicKey));
            refusedLogged_ = true;
          }
          setError("the peer at " + cfg_.endpoint + " refused this node's key (ZAP status " +
                   std::to_string(value) + ")");
          setState(LinkState::kRefused);
          break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
          setError(
              "CURVE handshake with " + cfg_.endpoint +
              " failed (wrong server key, or not a ferry node) — check the peer key given to ferry pair");
          log_->warn("[{}] {}", cfg_.nodeId, stats().lastError);
          break;
        case ZMQ_EVENT_DISCONNECTED:
          if (state() == LinkState::kConnected) {
            log_->warn("[{}] TCP connection to {} lost", cfg_.nodeId, cfg_.endpoint);
            setState(LinkState::kConnecting);
            openedAt_ = Clock::now();
          }
          break;
        default:
          break;
      }
    }
  }

  PeerLinkConfig cfg_;
  std::shared_ptr<spdlog::logger> log_;
  zmq::context_t ctx_;
  const uint64_t id_;
  std::string wakeEndpoint_;
  DecodeLimits limits_;

  std::mutex wakeMu_;
  zmq::socket_t wakeTx_;  // application side of the doorbell (guarded by wakeMu_)
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  // Shared with application threads (guarded by mu_).
  mutable std::mutex mu_;
  std::condition_variable sendCv_, recvCv_, stateCv_;
  bool stopRequested_ = false;
  bool stopped_ = false;
  std::string endpoint_;
  LinkStats stats_;
  uint64_t epoch_ = 0;
  uint64_t nextSeq_ = 1;
  std::deque<Outgoing> buffer_;  // unacknowledged, contiguous seqs
  uint64_t bufferedBytes_ = 0;
  uint64_t ackedSeq_ = 0;
  uint64_t sendCursor_ = 1;  // next seq to put on the wire
  uint64_t highestSent_ = 0;
  uint64_t creditThrough_ = 0;
  uint64_t peerWindowBytes_ = 0;
  uint64_t peerWindowMessages_ = 0;
  bool creditKnown_ = false;
  uint64_t peerMaxMessageBytes_ = 0;
  std::deque<Received> inbox_;
  uint64_t inboxBytes_ = 0;
  uint64_t recvEpoch_ = 0;
  uint64_t receivedSeq_ = 0;  // highest contiguous seq received (in the inbox or delivered)
  uint64_t deliveredSeq_ = 0;
  uint64_t ackSentSeq_ = 0;
  uint64_t consumedSinceAck_ = 0;
  uint64_t maxGranted_ = 0;  // the largest credit granted: more in the inbox is a violation

  // Link thread only: bytes received in each of the last windowTime periods, newest first.
  std::array<uint64_t, 4> rxPeriods_{};
  Clock::time_point rxPeriodStart_{};

  // Link thread only.
  zmq::socket_t wakeRx_, net_, mon_;
  std::unique_ptr<ZapHandler> zap_;
  std::array<unsigned char, 32> serverKey_{}, ownPublic_{}, ownSecret_{};
  std::optional<std::string> currentRid_;
  Clock::time_point openedAt_{}, reopenAt_{}, lastHeard_{}, lastHeartbeat_{}, lastAckAt_{};
  Millis backoff_{100};
  uint64_t socketGeneration_ = 0;
  uint64_t lastPeerHeartbeatMs_ = 0;
  bool refusedLogged_ = false;
};

Result<std::unique_ptr<PeerLink>> PeerLink::start(PeerLinkConfig config) {
  if (config.endpoint.empty())
    return makeError("peer link: no endpoint", "set the peer address in the config");
  if (!validateZ85Key(config.keys.publicKey).ok() || !validateZ85Key(config.keys.secretKey).ok()) {
    return makeError("peer link: this node has no valid CURVE key pair", "run 'ferry keygen'");
  }
  if (config.mode == PeerLinkConfig::Mode::kConnect && !validateZ85Key(config.serverPublicKey).ok()) {
    return makeError("peer link: the peer's public key is missing or invalid",
                     "pair first: ferry pair --peer-key KEY --name NAME");
  }
  if (config.windowBytes == 0 || config.windowMessages == 0 || config.maxWindowBytes < config.windowBytes ||
      config.windowTime.count() <= 0 || config.maxBufferedBytes < config.maxMessageBytes) {
    return makeError(
        "peer link: windowBytes, windowMessages and windowTime must be positive, "
        "maxWindowBytes ≥ windowBytes and maxBufferedBytes ≥ maxMessageBytes");
  }
  auto link = std::make_unique<PeerLinkImpl>(std::move(config));
  FERRY_TRY(link->startThread());
  return std::unique_ptr<PeerLink>(std::move(link));
}

}  // namespace ferry::protocol
