#include "ferry/node/node.h"

#include <poll.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include <capnp/message.h>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/node/control.h"
#include "ferry/protocol/framing.h"
#include "ferry/protocol/keys.h"
#include "ferry/protocol/peer_link.h"
#include "ferry/sync/mirror.h"
#include "ferry/sync/replica.h"
#include "ferry/sync/verify.h"
#include "wire_codec.h"

namespace ferry::node {
namespace {

using Clock = std::chrono::steady_clock;
using Millis = std::chrono::milliseconds;
using W = wire::Message::Body::Which;

constexpr Millis kSendTimeout{10000};    // a send that waits longer than this means the peer is gone
constexpr Millis kRoundInterval{50};     // how often the active node looks for changes
constexpr Millis kStatusInterval{1000};  // active -> standby status updates
constexpr Millis kPublishInterval{100};  // how fresh `ferry status` is
constexpr std::size_t kHashesPerMessage = 200000;  // 1.6 MB of hashes per FileHashes message
constexpr std::size_t kManifestEntriesPerMessage = 2000;

std::int64_t msSince(Clock::time_point t) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t).count();
}

std::string replicaStateName(int s) {
  switch (s) {
    case 0:
      return "initial-sync";
    case 1:
      return "mirroring";
    default:
      return "in-sync";
  }
}

}  // namespace

struct Node::Impl {
  NodeConfig config;
  std::shared_ptr<spdlog::logger> logger = log::get("node");
  std::unique_ptr<protocol::PeerLink> link;
  std::unique_ptr<sync::DirectoryMirror> mirror;  // active
  std::unique_ptr<sync::ReplicaWriter> replica;   // standby
  std::unique_ptr<ControlServer> control;
  std::thread engine;
  std::atomic<bool> stopping{false};

  // ---- engine-thread state -----------------------------------------------------
  uint64_t seen_connects = 0;
  bool resumed = false;  // active: mirror in step with the replica
  bool awaiting_hashes = false;
  sync::ResumeState pending_resume;
  std::vector<sync::FileHashes> hash_answer;
  Clock::time_point last_round{};
  Clock::time_point last_walk = Clock::now();  // the size/mtime safety net runs every scan_interval
  Clock::time_point last_status_sent{};
  Clock::time_point last_publish{};
  std::map<uint64_t, std::pair<uint64_t, Clock::time_point>> unacked;  // seq -> (bytes, sent at)
  Clock::time_point dirty_since{};
  bool dirty = false;

  // ---- published to the control thread (guarded by mu) -------------------------
  std::mutex mu;
  std::condition_variable cv;
  nlohmann::json snapshot = nlohmann::json::object();
  uint64_t last_sent_seq = 0;
  uint64_t last_acked_seq = 0;
  bool initial_done = false;
  uint64_t flush_requested = 0;  // generation asked by the CLI
  uint64_t flush_started = 0;    // generation whose round the engine has run
  uint64_t flush_target = 0;     // seq that round ended with
  std::string engine_error;
  // verify: one at a time
  uint64_t manifest_request_id = 0;
  bool manifest_done = false;
  std::string manifest_error;
  sync::TreeManifest peer_manifest;
  // throughput (bytes of sync messages sent or applied), for a 5 s moving rate
  std::deque<std::pair<Clock::time_point, uint64_t>> rate_samples;
  uint64_t sync_bytes = 0;

  [[nodiscard]] bool active() const { return config.role == "active"; }

  // ---- sending -----------------------------------------------------------------
  Status send(capnp::MallocMessageBuilder& builder) {
    auto r = link->send(builder, kSendTimeout);
    if (!r) return r.error();
    return okStatus();
  }

  template <typename Fill>
  Status sendWith(Fill&& fill) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<wire::Message>();
    fill(m);
    return send(builder);
  }

  class LinkSink : public sync::DeltaSink {
   public:
    explicit LinkSink(Impl& impl) : impl_(impl) {}
    Status send(sync::Message message) override {
      auto bytes = sync::wireSize(message);
      if (const auto* begin = std::get_if<sync::BatchBegin>(&message)) {
        impl_.unacked[begin->seq] = {0, Clock::now()};
        current_ = begin->seq;
      }
      if (auto it = impl_.unacked.find(current_); it != impl_.unacked.end()) it->second.first += bytes;
      {
        std::lock_guard lock(impl_.mu);
        impl_.sync_bytes += bytes;
      }
      return impl_.sendWith([&](wire::Message::Builder m) { encodeSync(message, m); });
    }

   private:
    Impl& impl_;
    uint64_t current_ = 0;
  };

  // ---- the engine ----------------------------------------------------------------
  void run() {
    while (!stopping.load()) {
      auto stats = link->stats();
      if (stats.connects != seen_connects) {
        seen_connects = stats.connects;
        onConnected(stats);
      }
      auto received = link->receive(active() ? Millis(10) : Millis(100));
      if (received) {
        Status s =
            protocol::readGuarded("handling " + protocol::bodyName(received->message().getBody().which()),
                                  [&]() -> Status { return handle(received->message()); });
        if (!s) {
          logger->warn("peer {}: {}", stats.peerNodeId, s.error().message());
          setError(s.error().message());
        }
      }
      if (active()) activeTick(stats);
      publish(stats);
    }
  }

  void onConnected(const protocol::LinkStats& stats) {
    logger->info("peer {} connected (key {})", stats.peerNodeId, stats.peerFingerprint);
    // The standby drives the handshake: it says where it stands on every connect, and
    // the active resumes when that arrives. (The active must not reset anything here:
    // the standby's ResumeState can be delivered before this loop sees the connect.)
    if (!active()) sendResumeState();
  }

  void sendResumeState() {
    auto state = replica->resumeState();
    Status s = sendWith([&](wire::Message::Builder m) { encodeResumeState(state, m); });
    if (!s) setError("sending the replica's resume state: " + s.error().message());
  }

  void activeTick(const protocol::LinkStats& stats) {
    if (stats.state != protocol::LinkState::kConnected) return;
    if (!resumed) return;
    uint64_t flush_gen = 0;
    {
      std::lock_guard lock(mu);
      if (flush_requested > flush_started) flush_gen = flush_requested;
    }
    if (flush_gen == 0 && Clock::now() - last_round < kRoundInterval) return;
    last_round = Clock::now();
    if (flush_gen != 0 || Clock::now() - last_walk > config.scan_interval) {
      mirror->requestWalk();
      last_walk = Clock::now();
    }
    auto pending = mirror->pendingChanges();
    if (pending > 0 && !dirty) {
      dirty = true;
      dirty_since = Clock::now();
    }
    LinkSink sink(*this);
    auto r = mirror->computeDelta(sink);
    if (!r) {
      logger->warn("mirroring round failed: {}", r.error().message());
      setError("mirroring: " + r.error().message());
      resumed = false;
      // Ask the standby where it stands; the link may still be up.
      (void)sendWith([](wire::Message::Builder m) { m.getBody().setResumeQuery(); });
      return;
    }
    if (mirror->pendingChanges() == 0) dirty = false;
    std::lock_guard lock(mu);
    last_sent_seq = mirror->lastSentSeq();
    if (flush_gen != 0) {
      flush_started = flush_gen;
      flush_target = last_sent_seq;
      cv.notify_all();
    }
  }

  Status handle(wire::Message::Reader m) {
    auto which = m.getBody().which();
    if (isSyncBody(which)) {
      if (active())
        return makeError("refused a mirroring message: this node is active (the peer believes otherwise)");
      auto msg = decodeSync(m);
      if (!msg) return msg.error();
      auto bytes = sync::wireSize(*msg);
      auto applied = replica->apply(*msg);
      {
        std::lock_guard lock(mu);
        sync_bytes += bytes;
      }
      if (!applied) {
        // The batch is abandoned; tell the active where we stand so it resumes.
        sendResumeState();
        return makeError("applying " + std::string(sync::messageName(*msg)) + ": " +
                         applied.error().message());
      }
      if (const auto* end = std::get_if<sync::BatchEnd>(&*msg)) {
        return sendWith([&](wire::Message::Builder out) {
          auto a = out.getBody().initBatchApplied();
          a.setEpoch(end->epoch);
          a.setSeq(end->seq);
        });
      }
      return okStatus();
    }
    switch (which) {
      case W::RESUME_QUERY:
        if (!active()) sendResumeState();
        return okStatus();
      case W::RESUME_STATE: {
        if (!active()) return makeError("refused a resume state: this node is the standby");
        auto state = decodeResumeState(m.getBody().getResumeState());
        if (awaiting_hashes && state.epoch == pending_resume.epoch && state.seq == pending_resume.seq &&
            state.consistent == pending_resume.consistent) {
          return okStatus();  // the same state twice (connect + a refused batch): one answer is enough
        }
        pending_resume = std::move(state);
        auto request = mirror->resumeRequest(pending_resume);
        hash_answer.clear();
        awaiting_hashes = true;
        resumed = false;
        logger->info("standby holds epoch {} seq {} ({}); asking for {} hashes", pending_resume.epoch,
                     pending_resume.seq, pending_resume.consistent ? "consistent" : "interrupted batch",
                     request.all ? std::string("all") : std::to_string(request.paths.size()));
        return sendWith([&](wire::Message::Builder out) { encodeHashRequest(request, out); });
      }
      case W::HASH_REQUEST: {
        if (active()) return makeError("refused a hash request: this node is active");
        auto hashes = replica->hashFiles(decodeHashRequest(m.getBody().getHashRequest()));
        if (!hashes) return hashes.error();
        return sendHashes(*hashes);
      }
      case W::FILE_HASHES: {
        if (!active()) return makeError("unexpected file hashes: this node is the standby");
        if (!awaiting_hashes) return okStatus();  // an answer to a resume that was superseded
        decodeFileHashes(m.getBody().getFileHashes(), hash_answer);
        if (!m.getBody().getFileHashes().getLast()) return okStatus();
        awaiting_hashes = false;
        auto s = mirror->resume(pending_resume, hash_answer);
        hash_answer.clear();
        if (!s) return makeError("resuming the mirror: " + s.error().message());
        resumed = true;
        unacked.clear();
        logger->info("mirror resumed: {} entries known", mirror->entries());
        return okStatus();
      }
      case W::BATCH_APPLIED: {
        auto a = m.getBody().getBatchApplied();
        if (!active()) return makeError("unexpected batch acknowledgement");
        mirror->acknowledge(a.getEpoch(), a.getSeq());
        unacked.erase(unacked.begin(), unacked.upper_bound(a.getSeq()));
        std::lock_guard lock(mu);
        last_acked_seq = mirror->lastAckedSeq();
        if (!initial_done && last_acked_seq >= last_sent_seq && mirror->lastSentSeq() > 0)
          initial_done = true;
        cv.notify_all();
        return okStatus();
      }
      case W::MANIFEST_REQUEST:
        return sendManifest(m.getBody().getManifestRequest().getRequestId());
      case W::MANIFEST_CHUNK: {
        auto c = m.getBody().getManifestChunk();
        std::lock_guard lock(mu);
        if (c.getRequestId() != manifest_request_id) return okStatus();  // a late answer to an old request
        if (c.getError().size() > 0) manifest_error = c.getError().cStr();
        for (auto e : c.getEntries()) decodeManifestEntry(e, peer_manifest);
        if (c.getLast()) {
          manifest_done = true;
          cv.notify_all();
        }
        return okStatus();
      }
      case W::STATUS: {
        auto st = m.getBody().getStatus();
        std::lock_guard lock(mu);
        snapshot["peer_view"] = {
            {"replica_state", st.getReplicaState() == wire::ReplicaState::IN_SYNC        ? "in-sync"
                              : st.getReplicaState() == wire::ReplicaState::INITIAL_SYNC ? "initial-sync"
                                                                                         : "mirroring"},
            {"replica_lag_bytes", st.getLagBytes()},
            {"replica_lag_ms", st.getLagMs()}};
        return okStatus();
      }
      case W::ERROR: {
        auto e = m.getBody().getError();
        logger->warn("peer reported: {} — {}", e.getWhat().cStr(), e.getHint().cStr());
        return okStatus();
      }
      default:
        break;
    }
    return makeError("message " + protocol::bodyName(which) + " is not handled by the node yet");
  }

  Status sendHashes(const std::vector<sync::FileHashes>& hashes) {
    std::size_t begin = 0;
    do {
      std::size_t end = begin;
      std::size_t count = 0;
      while (end < hashes.size() && (end == begin || count + hashes[end].hashes.size() < kHashesPerMessage) &&
             end - begin < kManifestEntriesPerMessage) {
        count += hashes[end].hashes.size();
        ++end;
      }
      bool last = end >= hashes.size();
      FERRY_TRY(
          sendWith([&](wire::Message::Builder out) { encodeFileHashes(hashes, begin, end, last, out); }));
      begin = end;
    } while (begin < hashes.size());
    return okStatus();
  }

  Status sendManifest(uint64_t request_id) {
    auto manifest = sync::manifestOf(config.data_dir);
    if (!manifest) {
      return sendWith([&](wire::Message::Builder out) {
        auto c = out.getBody().initManifestChunk();
        c.setRequestId(request_id);
        c.setError(manifest.error().message());
        c.setLast(true);
      });
    }
    auto it = manifest->begin();
    do {
      std::vector<std::pair<const std::string*, const sync::ManifestEntry*>> chunk;
      for (; it != manifest->end() && chunk.size() < kManifestEntriesPerMessage; ++it) {
        chunk.emplace_back(&it->first, &it->second);
      }
      bool last = it == manifest->end();
      FERRY_TRY(sendWith([&](wire::Message::Builder out) {
        auto c = out.getBody().initManifestChunk();
        c.setRequestId(request_id);
        auto entries = c.initEntries(static_cast<unsigned>(chunk.size()));
        for (unsigned i = 0; i < chunk.size(); ++i)
          encodeManifestEntry(*chunk[i].first, *chunk[i].second, entries[i]);
        c.setLast(last);
      }));
    } while (it != manifest->end());
    return okStatus();
  }

  void setError(const std::string& error) {
    std::lock_guard lock(mu);
    engine_error = error;
  }

  // ---- status --------------------------------------------------------------------
  void publish(const protocol::LinkStats& stats) {
    auto now = Clock::now();
    // The CLI reads a snapshot; rebuilding it every loop (10 ms) would be waste.
    if (now - last_publish < kPublishInterval) return;
    last_publish = now;
    int state = 2;
    uint64_t lag_bytes = 0;
    int64_t lag_ms = 0;
    if (active()) {
      for (const auto& [seq, v] : unacked) lag_bytes += v.first;
      if (!unacked.empty()) lag_ms = msSince(unacked.begin()->second.second);
      if (dirty) lag_ms = std::max<int64_t>(lag_ms, msSince(dirty_since));
      bool caught_up = resumed && unacked.empty() && !dirty;
      std::lock_guard lock(mu);
      state = !initial_done ? 0 : (caught_up ? 2 : 1);
    }
    std::lock_guard lock(mu);
    rate_samples.emplace_back(now, sync_bytes);
    while (rate_samples.size() > 2 && now - rate_samples.front().first > std::chrono::seconds(5)) {
      rate_samples.pop_front();
    }
    double secs = std::chrono::duration<double>(now - rate_samples.front().first).count();
    double rate = secs > 0.1 ? static_cast<double>(sync_bytes - rate_samples.front().second) / secs : 0.0;
    nlohmann::json peer_view = snapshot.value("peer_view", nlohmann::json());
    snapshot = {
        {"node", config.name},
        {"role", config.role},
        {"data_dir", config.data_dir.string()},
        {"peer",
         {{"state", protocol::linkStateName(stats.state)},
          {"name", stats.peerNodeId},
          {"key_fingerprint", stats.peerFingerprint},
          {"endpoint", link->endpoint()},
          {"auth_refusals", stats.authRefusals},
          {"messages_refused", stats.messagesRefused},
          {"last_error", stats.lastError}}},
        {"throughput_bytes_per_s", static_cast<uint64_t>(rate)},
        {"sync_bytes_total", sync_bytes},
        {"last_error", engine_error},
    };
    if (active()) {
      snapshot["replica"] = {{"state", replicaStateName(state)}, {"replica_lag_bytes", lag_bytes},
                             {"replica_lag_ms", lag_ms},         {"last_sent_seq", last_sent_seq},
                             {"last_acked_seq", last_acked_seq}, {"resumed", resumed}};
    } else {
      auto rs = replica->resumeState();
      auto st = replica->stats();
      snapshot["replica"] = {
          {"state", peer_view.is_null() ? "unknown" : peer_view.value("replica_state", "unknown")},
          {"replica_lag_bytes", peer_view.is_null() ? 0 : peer_view.value("replica_lag_bytes", 0)},
          {"replica_lag_ms", peer_view.is_null() ? 0 : peer_view.value("replica_lag_ms", 0)},
          {"applied_epoch", rs.epoch},
          {"applied_seq", rs.seq},
          {"consistent", rs.consistent},
          {"batches", st.batches},
          {"bytes_written", st.bytes_written},
          {"refused", st.refused}};
      snapshot["peer_view"] = peer_view;
    }
    if (active() && stats.state == protocol::LinkState::kConnected &&
        now - last_status_sent > kStatusInterval) {
      last_status_sent = now;
      auto wire_state = state == 0   ? wire::ReplicaState::INITIAL_SYNC
                        : state == 1 ? wire::ReplicaState::MIRRORING
                                     : wire::ReplicaState::IN_SYNC;
      (void)sendWith([&](wire::Message::Builder m) {
        auto s = m.getBody().initStatus();
        s.setRole(wire::Role::ACTIVE);
        s.setReplicaState(wire_state);
        s.setLagBytes(lag_bytes);
        s.setLagMs(static_cast<uint64_t>(lag_ms));
      });
    }
  }

  // ---- control requests (control thread) ----------------------------------------------
  nlohmann::json flush(Millis timeout) {
    if (!active())
      return {{"ok", false},
              {"error", "this node is the standby; run 'ferry sync --flush' on the active node"}};
    auto deadline = Clock::now() + timeout;
    auto started = Clock::now();
    std::unique_lock lock(mu);
    uint64_t gen = ++flush_requested;
    bool ok =
        cv.wait_until(lock, deadline, [&] { return flush_started >= gen && last_acked_seq >= flush_target; });
    if (!ok) {
      return {{"ok", false},
              {"error",
               "the standby did not confirm everything within " + std::to_string(timeout.count()) + " ms"},
              {"last_sent_seq", last_sent_seq},
              {"last_acked_seq", last_acked_seq}};
    }
    return {{"ok", true}, {"flushed_seq", flush_target}, {"ms", msSince(started)}};
  }

  nlohmann::json verify(Millis timeout) {
    auto deadline = Clock::now() + timeout;
    uint64_t id = 0;
    {
      std::lock_guard lock(mu);
      id = ++manifest_request_id;
      manifest_done = false;
      manifest_error.clear();
      peer_manifest.clear();
    }
    Status sent =
        sendWith([&](wire::Message::Builder m) { m.getBody().initManifestRequest().setRequestId(id); });
    if (!sent)
      return {{"ok", false}, {"error", "asking the peer for its manifest: " + sent.error().message()}};
    auto local = sync::manifestOf(config.data_dir);
    if (!local) return {{"ok", false}, {"error", local.error().message()}};
    std::unique_lock lock(mu);
    if (!cv.wait_until(lock, deadline, [&] { return manifest_done; })) {
      return {{"ok", false}, {"error", "the peer did not send its manifest in time"}};
    }
    if (!manifest_error.empty()) return {{"ok", false}, {"error", "peer: " + manifest_error}};
    const auto& source = active() ? *local : peer_manifest;
    const auto& standby = active() ? peer_manifest : *local;
    auto diff = sync::compareManifests(source, standby);
    nlohmann::json differences = nlohmann::json::array();
    for (const auto& d : diff.differences)
      differences.push_back({{"path", d.path}, {"what", d.what}, {"detail", d.detail}});
    return {
        {"ok", true}, {"identical", diff.identical}, {"entries", diff.entries}, {"differences", differences}};
  }
};

Result<std::unique_ptr<Node>> Node::start(NodeConfig config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  auto& c = impl->config;
  std::error_code ec;
  std::filesystem::create_directories(c.state_dir, ec);
  if (ec) return makeError("cannot create the state directory " + c.state_dir.string() + ": " + ec.message());
  std::filesystem::create_directories(c.data_dir, ec);
  if (ec) return makeError("cannot create the data directory " + c.data_dir.string() + ": " + ec.message());

  auto keys = protocol::loadKeyPair(c.key_dir);
  if (!keys) return makeError(keys.error().what, "run 'ferry keygen --dir " + c.key_dir.string() + "' first");
  auto peers = protocol::loadPeerKeys(c.key_dir);
  if (!peers) return peers.error();
  if (peers->empty()) {
    return makeError("no paired peer in " + (c.key_dir / "peers").string(),
                     "run 'ferry pair' with the peer's public key (its node.pub)");
  }

  if (c.role == "active") {
    sync::MirrorOptions options;
    auto mirror = sync::DirectoryMirror::open(c.data_dir, options);
    if (!mirror) return mirror.error();
    impl->mirror = std::move(*mirror);
  } else {
    auto replica = sync::ReplicaWriter::open(c.data_dir, c.state_dir / "replica.state");
    if (!replica) return replica.error();
    impl->replica = std::move(*replica);
  }

  protocol::PeerLinkConfig lc;
  lc.keys = *keys;
  lc.nodeId = c.name;
  lc.role = c.role == "active" ? protocol::wire::Role::ACTIVE : protocol::wire::Role::STANDBY;
  lc.heartbeatInterval = c.heartbeat;
  lc.peerTimeout = c.peer_timeout;
  if (c.peer.empty()) {
    lc.mode = protocol::PeerLinkConfig::Mode::kListen;
    lc.endpoint = c.listen;
    lc.allowedPeers = *peers;
  } else {
    lc.mode = protocol::PeerLinkConfig::Mode::kConnect;
    lc.endpoint = c.peer;
    lc.serverPublicKey = peers->front().publicKey;
  }
  auto link = protocol::PeerLink::start(std::move(lc));
  if (!link) return link.error();
  impl->link = std::move(*link);

  auto node = std::unique_ptr<Node>(new Node(std::move(impl)));
  auto* raw = node.get();
  auto control = ControlServer::start(node->impl_->config.control_socket,
                                      [raw](const nlohmann::json& request) { return raw->handle(request); });
  if (!control) return control.error();
  node->impl_->control = std::move(*control);
  node->impl_->engine = std::thread([i = node->impl_.get()] { i->run(); });
  node->impl_->logger->info("node {} started as {}: data {}, {} {}", node->impl_->config.name,
                            node->impl_->config.role, node->impl_->config.data_dir.string(),
                            node->impl_->config.peer.empty() ? "listening on" : "connecting to",
                            node->impl_->link->endpoint());
  return node;
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() {
  impl_->control.reset();  // no new requests
  impl_->stopping = true;
  if (impl_->engine.joinable()) impl_->engine.join();
  impl_->link->stop();
}

nlohmann::json Node::handle(const nlohmann::json& request) {
  auto cmd = request.value("cmd", "");
  auto timeout = Millis(request.value("timeout_ms", 60000));
  if (cmd == "status") {
    std::lock_guard lock(impl_->mu);
    auto s = impl_->snapshot;
    s["ok"] = true;
    return s;
  }
  if (cmd == "flush") return impl_->flush(timeout);
  if (cmd == "verify") return impl_->verify(timeout);
  return {{"ok", false}, {"error", "unknown control command '" + cmd + "'"}};
}

}  // namespace ferry::node
