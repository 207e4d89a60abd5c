#include "ferry/node/node.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <capnp/message.h>

#include "coordinator.h"
#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/bench/http.h"
#include "ferry/checkpoint/os.h"
#include "ferry/checkpoint/runtime.h"
#include "ferry/node/control.h"
#include "ferry/protocol/framing.h"
#include "ferry/protocol/keys.h"
#include "ferry/protocol/peer_link.h"
#include "ferry/sync/mirror.h"
#include "ferry/sync/replica.h"
#include "ferry/sync/verify.h"
#include "journal.h"
#include "migration.h"
#include "wire_codec.h"

namespace ferry::node {
namespace {

using Clock = std::chrono::steady_clock;
using W = wire::Message::Body::Which;
using json = nlohmann::json;

constexpr Millis kSendTimeout{10000};     // a send that waits longer than this means the peer is gone
constexpr Millis kRoundInterval{50};      // how often the active node looks for changes
constexpr Millis kStatusInterval{1000};   // active -> standby status updates
constexpr Millis kPublishInterval{100};   // how fresh `ferry status` is
constexpr Millis kVerifyRetryPause{500};  // a standby's verify waits this long before comparing again
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

std::vector<std::string> splitWords(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  std::string w;
  while (in >> w) out.push_back(w);
  return out;
}

// FERRY_FAILPOINTS="target.restore,source.after_freeze": named steps that fail, for the
// integration tests that prove rollback on real hosts. Empty in production.
class EnvFailpoints final : public Failpoints {
 public:
  EnvFailpoints() {
    if (const char* v = std::getenv("FERRY_FAILPOINTS"); v != nullptr) {
      std::string s(v);
      std::size_t start = 0;
      while (start <= s.size()) {
        auto end = s.find(',', start);
        if (end == std::string::npos) end = s.size();
        if (end > start) names_.push_back(s.substr(start, end - start));
        start = end + 1;
      }
    }
  }
  bool hit(const std::string& name) override {
    for (const auto& n : names_)
      if (n == name) {
        log::get("node")->warn("failpoint {} hit (FERRY_FAILPOINTS)", name);
        return true;
      }
    return false;
  }
  [[nodiscard]] const std::vector<std::string>& names() const { return names_; }

 private:
  std::vector<std::string> names_;
};

// The container runtime the node's migrations use: Podman's CLI, and its REST API for
// what the API does faster when podman_api allows (see deploy/node/ferry-node.conf).
Result<std::unique_ptr<checkpoint::ContainerRuntime>> makeRuntime(const NodeConfig& c,
                                                                  checkpoint::CommandRunner& runner,
                                                                  const checkpoint::RuntimeOptions& ro,
                                                                  spdlog::logger& logger) {
  auto cli = checkpoint::makePodmanRuntime(runner, ro);
  if (c.podman_api == "off") {
    logger.info("podman: the CLI for every call (podman_api = off)");
    return cli;
  }
  const std::filesystem::path socket = c.podman_api == "auto" ? "/run/podman/podman.sock" : c.podman_api;
  if (auto s = checkpoint::pingPodmanApi(socket, Millis(2000)); !s) {
    if (c.podman_api != "auto") return s.error();
    logger.info("podman: the CLI for every call (no API service answers at {})", socket.string());
    return cli;
  }
  logger.info(
      "podman: its API at {} for inspect, exists, image lookups and remove; the CLI for checkpoints and "
      "restores",
      socket.string());
  return checkpoint::makeMixedPodmanRuntime(std::move(cli), checkpoint::makePodmanApiRuntime(socket, ro));
}

}  // namespace

struct Node::Impl final : public MigrationEnv {
  NodeConfig config;
  std::shared_ptr<spdlog::logger> logger = log::get("node");
  std::unique_ptr<protocol::PeerLink> link;
  std::unique_ptr<sync::DirectoryMirror> mirror;  // active
  std::unique_ptr<sync::ReplicaWriter> replica;   // standby
  std::unique_ptr<Journal> journal;
  std::unique_ptr<checkpoint::CommandRunner> runner;
  std::unique_ptr<checkpoint::ContainerRuntime> runtime;
  EnvFailpoints failpoints;
  std::unique_ptr<ControlServer> control;
  std::thread engine;
  std::atomic<bool> stopping{false};
  std::atomic<bool> is_active{false};
  std::atomic<std::uint64_t> node_epoch{1};
  std::atomic<bool> connected{false};
  std::string peer_name;

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
  int published_state = -1;  // the replica state in the snapshot (active: 0 initial, 1 mirroring, 2 in-sync)
  std::map<uint64_t, std::pair<uint64_t, Clock::time_point>> unacked;  // seq -> (bytes, sent at)
  uint64_t round_remaining = 0;             // file bytes the mirror's round under way has still to send
  std::deque<protocol::Received> deferred;  // taken off the link mid-round, for the loop
  Clock::time_point dirty_since{};
  bool dirty = false;
  std::uint64_t mirror_epoch = 1;

  // ---- published to the control thread (guarded by mu) -------------------------
  std::mutex mu;
  std::condition_variable cv;
  json snapshot = json::object();
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
  // migration requests to the engine
  bool mirroring_paused = false;  // source: no rounds (frozen / committing)
  bool admin_paused = false;      // `ferry sync --pause`: only flushes run rounds
  bool final_requested = false;   // source: run the final round
  bool final_done = false;
  Result<FinalDelta> final_result = makeError("no final round ran");
  bool replica_fenced = false;  // target: refuse batches (the service runs here)
  bool invalidate_requested = false;
  bool resume_requested = false;  // source after a rollback: resume with the replica
  int role_request = 0;           // 1: become active, 2: become standby
  std::uint64_t role_epoch = 0;
  bool role_done = false;
  Status role_result;
  ReplicaView replica_view;

  // ---- migrations -------------------------------------------------------------------
  std::unique_ptr<MigrationCoordinator> coordinator;

  [[nodiscard]] bool active() const { return is_active.load(); }

  MigrationDeps deps() {
    MigrationDeps d;
    d.env = this;
    d.runtime = runtime.get();
    d.journal = journal.get();
    d.failpoints = failpoints.names().empty() ? nullptr : &failpoints;
    auto& s = d.settings;
    s.data_dir = config.data_dir;
    s.staging_dir = config.staging_dir;
    s.health_url = config.health_url;
    s.health_timeout = config.health_timeout;
    s.prepare_timeout = config.prepare_timeout;
    s.presync_timeout = config.presync_timeout;
    s.checkpoint_timeout = config.checkpoint_timeout;
    s.restore_timeout = config.restore_timeout;
    s.commit_timeout = config.commit_timeout;
    s.shared_storage = config.shared_storage;
    s.switch_driver = config.switch_driver;
    s.switch_service = config.switch_service;
    s.switch_port = config.switch_port;
    s.switch_drain_timeout = config.switch_drain_timeout;
    s.switch_hold_timeout = config.switch_hold_timeout;
    d.switch_factory = [this](const std::string& kind) { return makeSwitchDriver(kind); };
    return d;
  }

  // The traffic switch-over driver of `kind`, from this node's configuration and keys.
  Result<std::unique_ptr<switchover::Driver>> makeSwitchDriver(const std::string& kind) {
    switchover::DriverConfig dc;
    dc.kind = kind;
    dc.node_name = config.name;
    if (kind == "exec") {
      if (config.switch_exec.empty()) {
        return makeError("switch driver exec: no command configured",
                         "set switch_exec = COMMAND in the node's configuration");
      }
      dc.command = splitWords(config.switch_exec);
      dc.exec_timeout = config.switch_exec_timeout;
    } else {
      auto keys = protocol::loadKeyPair(config.key_dir);
      if (!keys) return keys.error();
      auto agent_key = switchover::loadAgentKey(config.switch_key_dir.string(), config.switch_agent_name);
      if (!agent_key) return agent_key.error();
      dc.agent_endpoint = config.switch_agent;
      dc.agent_public_key = *agent_key;
      dc.node_public_key = keys->publicKey;
      dc.node_secret_key = keys->secretKey;
    }
    return switchover::makeDriver(dc);
  }

  // ---- sending -----------------------------------------------------------------
  Status sendBuilder(capnp::MallocMessageBuilder& builder, Millis timeout = kSendTimeout) {
    auto r = link->send(builder, timeout);
    if (!r) return r.error();
    return okStatus();
  }

  template <typename Fill>
  Status sendWith(Fill&& fill) {
    capnp::MallocMessageBuilder builder;
    auto m = builder.initRoot<wire::Message>();
    fill(m);
    return sendBuilder(builder);
  }

  // The mirror's messages onto the link. A peer that speaks protocol 2 gets consecutive
  // blocks in bundles of up to kBundleBytes (one frame instead of one per 16 KiB block:
  // the per-frame cost — queues, doorbells, poll and send calls on both nodes — dominated
  // an initial copy); any other message first sends the blocks held before it, so the
  // order on the wire is the mirror's.
  class LinkSink : public sync::DeltaSink {
   public:
    static constexpr std::size_t kBundleBytes = std::size_t{1} << 20;

    explicit LinkSink(Impl& impl)
        : impl_(impl), bundle_(impl.link->stats().peerProtocolVersion >= protocol::kBundleProtocolVersion) {}

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
      sent_ += bytes;
      // A long round (an initial copy: minutes on a slow link) runs inside one loop
      // turn: refresh `ferry status` from here too (rate-limited like the loop's).
      if (Clock::now() - impl_.last_publish >= kPublishInterval) {
        impl_.takeAcknowledgements();
        impl_.publish(impl_.link->stats());
      }
      if (auto* block = std::get_if<sync::Block>(&message); block != nullptr && bundle_) {
        held_bytes_ += block->bytes.size() + block->path.size();
        held_.push_back(std::move(*block));
        if (held_bytes_ >= kBundleBytes || held_.size() >= protocol::kMaxBundleBlocks) return finish();
        return okStatus();
      }
      FERRY_TRY(finish());
      return impl_.sendWith([&](wire::Message::Builder m) { encodeSync(message, m); });
    }

    void roundRemaining(std::uint64_t bytes) override { impl_.round_remaining = bytes; }

    // Sends the blocks still held (a round that ended without a BatchEnd).
    Status finish() {
      if (held_.empty()) return okStatus();
      auto s = held_.size() == 1
                   ? impl_.sendWith([&](wire::Message::Builder m) { encodeSync(held_.front(), m); })
                   : impl_.sendWith([&](wire::Message::Builder m) { encodeBlockBundle(held_, m); });
      held_.clear();
      held_bytes_ = 0;
      return s;
    }

    [[nodiscard]] std::uint64_t sent() const { return sent_; }

   private:
    Impl& impl_;
    const bool bundle_;
    uint64_t current_ = 0;
    std::uint64_t sent_ = 0;
    std::vector<sync::Block> held_;
    std::size_t held_bytes_ = 0;
  };

  // ---- MigrationEnv ----------------------------------------------------------------
  [[nodiscard]] std::string nodeName() const override { return config.name; }
  [[nodiscard]] std::string peerName() const override { return peer_name; }
  [[nodiscard]] bool peerConnected() const override { return connected.load(); }
  [[nodiscard]] std::uint64_t peerSessions() const override { return link->stats().connects; }
  [[nodiscard]] bool isActive() const override { return active(); }
  [[nodiscard]] std::uint64_t epoch() const override { return node_epoch.load(); }

  Status send(const std::function<void(wire::Message::Builder)>& fill, Millis timeout) override {
    capnp::MallocMessageBuilder builder;
    fill(builder.initRoot<wire::Message>());
    return sendBuilder(builder, timeout);
  }

  Status flushLink(Millis timeout) override {
    auto deadline = Clock::now() + timeout;
    auto sessions = link->stats().connects;
    while (true) {
      auto s = link->flush(Millis(100));
      if (s) return okStatus();
      auto st = link->stats();
      if (st.state != protocol::LinkState::kConnected || st.connects != sessions)
        return makeError("the link to " + peer_name + " dropped before it took everything (" +
                         protocol::linkStateName(st.state) + ")");
      if (Clock::now() > deadline) return s;
    }
  }

  Status flushMirror(Millis timeout) override {
    auto r = flush(timeout);
    if (r.value("ok", false)) return okStatus();
    return makeError(r.value("error", std::string("flush failed")));
  }

  Result<FinalDelta> finalDelta(Millis timeout) override {
    std::unique_lock lock(mu);
    mirroring_paused = true;
    final_requested = true;
    final_done = false;
    if (!cv.wait_for(lock, timeout, [&] { return final_done || stopping.load(); }))
      return makeError("the final mirroring round did not finish within " + std::to_string(timeout.count()) +
                       " ms");
    if (!final_done) return makeError("the node is stopping");
    return final_result;
  }

  Status syncSharedData(Millis timeout) override {
    // syncfs has no timeout of its own: it runs on a thread of its own and is waited for
    // at most `timeout` (a hung NFS server must not hang the migration forever).
    int fd = ::open(config.data_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      return makeError("cannot open the data directory " + config.data_dir.string() + ": " +
                       std::strerror(errno));
    }
    auto done = std::make_shared<std::promise<int>>();
    auto result = done->get_future();
    std::thread([fd, done] {
      int rc = ::syncfs(fd) == 0 ? 0 : errno;
      ::close(fd);
      done->set_value(rc);
    }).detach();
    if (result.wait_for(timeout) != std::future_status::ready) {
      return makeError("syncfs of " + config.data_dir.string() + " did not finish within " +
                           std::to_string(timeout.count()) + " ms",
                       "check the shared storage (server, network)");
    }
    if (int rc = result.get(); rc != 0)
      return makeError("syncfs of " + config.data_dir.string() + ": " + std::strerror(rc));
    return okStatus();
  }

  void resumeMirroring() override {
    std::lock_guard lock(mu);
    mirroring_paused = false;
    resume_requested = true;
  }

  ReplicaView replicaView() override {
    if (config.shared_storage) return {true, true, 0, 0};  // the replica is the storage itself
    std::lock_guard lock(mu);
    return replica_view;
  }

  void fenceReplica(bool fenced) override {
    std::lock_guard lock(mu);
    replica_fenced = fenced;
  }

  void invalidateReplica() override {
    std::lock_guard lock(mu);
    invalidate_requested = true;
  }

  Status changeRole(int request, std::uint64_t epoch) {
    std::unique_lock lock(mu);
    role_request = request;
    role_epoch = epoch;
    role_done = false;
    if (!cv.wait_for(lock, Millis(60000), [&] { return role_done || stopping.load(); }))
      return makeError("the engine did not change the role within 60 s");
    return role_result;
  }
  Status becomeActive(std::uint64_t epoch) override { return changeRole(1, epoch); }
  Status becomeStandby(std::uint64_t epoch) override { return changeRole(2, epoch); }

  Result<std::uint64_t> stagingFreeBytes() override {
    std::filesystem::path p = config.staging_dir;
    std::error_code ec;
    while (!p.empty() && !std::filesystem::exists(p, ec)) p = p.parent_path();
    struct statvfs st {};
    if (::statvfs(p.empty() ? "/" : p.c_str(), &st) != 0)
      return makeError("cannot read the free space of " + config.staging_dir.string());
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  }

  bool hostPortFree(std::uint16_t port) override {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return true;  // cannot tell: restore will say
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 || errno != EADDRINUSE;
    ::close(fd);
    return free;
  }

  Status waitHealthy(const std::string& url_text, Millis timeout) override {
    auto url = bench::parseUrl(url_text);
    if (!url) return url.error();
    auto endpoint = bench::resolve(*url);
    if (!endpoint) return endpoint.error();
    auto client = bench::HttpClient::create();
    if (!client) return client.error();
    auto deadline = Clock::now() + timeout;
    std::string last = "no answer";
    bench::HttpRequest req;
    req.target = url->target;
    bench::Timeouts t;
    t.connect = std::chrono::milliseconds(300);
    t.total = std::chrono::milliseconds(1000);
    while (Clock::now() < deadline) {
      auto a = bench::fetchOnce(**client, *endpoint, req, t);
      if (a.response.status >= 200 && a.response.status < 300) return okStatus();
      last = a.response.status != 0 ? "HTTP " + std::to_string(a.response.status)
                                    : std::string(bench::kindName(a.kind));
      std::this_thread::sleep_for(Millis(20));
    }
    return makeError(url_text + " did not answer 2xx within " + std::to_string(timeout.count()) +
                     " ms (last: " + last + ")");
  }

  // ---- the engine ----------------------------------------------------------------
  void run() {
    while (!stopping.load()) {
      auto stats = link->stats();
      connected = stats.state == protocol::LinkState::kConnected;
      if (stats.connects != seen_connects) {
        seen_connects = stats.connects;
        onConnected(stats);
      }
      serviceRequests();
      if (!deferred.empty()) {
        dispatch(std::move(deferred.front()), stats);
        deferred.pop_front();
      } else if (auto received = link->receive(active() ? Millis(10) : Millis(50)); received) {
        dispatch(std::move(*received), stats);
      }
      if (active()) activeTick(stats);
      publish(stats);
      coordinator->reap();
    }
  }

  void dispatch(protocol::Received received, const protocol::LinkStats& stats) {
    auto which = received.message().getBody().which();
    if (isMigrationBody(which)) {
      Status s = protocol::readGuarded("routing " + protocol::bodyName(which),
                                       [&]() -> Status { return coordinator->route(std::move(received)); });
      if (!s) logger->warn("peer {}: {}", stats.peerNodeId, s.error().message());
      return;
    }
    Status s = protocol::readGuarded("handling " + protocol::bodyName(which),
                                     [&]() -> Status { return handle(received.message()); });
    if (!s) {
      logger->warn("peer {}: {}", stats.peerNodeId, s.error().message());
      setError(s.error().message());
    }
  }

  // From inside a long mirroring round (an initial copy is one round of minutes on a slow
  // link): takes the standby's acknowledgements off the link, so the lag shown drains as
  // batches become durable instead of at the round's end. Anything else, and everything
  // after it, waits in order for the loop.
  void takeAcknowledgements() {
    for (;;) {
      auto received = link->receive(Millis(0));
      if (!received) return;
      const bool ack = received->message().getBody().which() == W::BATCH_APPLIED;
      if (ack && deferred.empty()) {
        dispatch(std::move(*received), link->stats());
      } else {
        deferred.push_back(std::move(*received));
      }
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
    if (!replica) return;
    auto state = replica->resumeState();
    Status s = sendWith([&](wire::Message::Builder m) { encodeResumeState(state, m); });
    if (!s) setError("sending the replica's resume state: " + s.error().message());
  }

  void publishReplicaView() {
    if (!replica) return;
    auto rs = replica->resumeState();
    std::lock_guard lock(mu);
    replica_view.consistent = replica->consistent();
    replica_view.final_applied = replica->finalApplied();
    replica_view.epoch = rs.epoch;
    replica_view.seq = rs.seq;
  }

  // Requests from migration threads, carried out on the engine thread that owns the
  // mirror and the replica.
  void serviceRequests() {
    int role = 0;
    std::uint64_t epoch = 0;
    bool invalidate = false;
    bool final = false;
    bool resume = false;
    {
      std::lock_guard lock(mu);
      role = role_request;
      epoch = role_epoch;
      invalidate = std::exchange(invalidate_requested, false);
      final = final_requested;
      resume = std::exchange(resume_requested, false);
    }
    if (final && active() && mirror) {
      auto started = Clock::now();
      LinkSink sink(*this);
      auto r = mirror->finalDelta(sink);
      if (auto f = sink.finish(); r && !f) r = f.error();
      Result<FinalDelta> result = makeError("final round failed");
      if (!r) {
        result = r.error();
        resumed = false;
      } else {
        FinalDelta f;
        f.epoch = mirror_epoch;
        f.seq = mirror->lastSentSeq();
        f.bytes = sink.sent();
        f.ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
        result = f;
      }
      std::lock_guard lock(mu);
      last_sent_seq = mirror->lastSentSeq();
      final_result = std::move(result);
      final_requested = false;
      final_done = true;
      cv.notify_all();
    } else if (final) {
      std::lock_guard lock(mu);
      final_result = makeError(active() ? "the mirror is not open" : "this node is not active");
      final_requested = false;
      final_done = true;
      cv.notify_all();
    }
    if (invalidate && replica) {
      // The service ran here after the final batch: forget what the replica believed,
      // so the next resume compares every file.
      replica.reset();
      auto r = openReplica(/*fresh=*/true);
      if (!r) {
        setError("reopening the replica: " + r.error().message());
      } else {
        replica = std::move(*r);
      }
      publishReplicaView();
      sendResumeState();
    }
    if (resume && active()) {
      resumed = false;
      (void)sendWith([](wire::Message::Builder m) { m.getBody().setResumeQuery(); });
    }
    if (role != 0) {
      Status result = role == 1 ? switchToActive(epoch) : switchToStandby(epoch);
      std::lock_guard lock(mu);
      role_request = 0;
      role_result = result;
      role_done = true;
      cv.notify_all();
    }
  }

  // The mirror (active) and the replica (standby) over the data directory. On shared
  // storage neither exists — both hosts see the same files — and these give nullptr.
  Result<std::unique_ptr<sync::DirectoryMirror>> openMirror(std::uint64_t epoch) {
    if (config.shared_storage) return std::unique_ptr<sync::DirectoryMirror>();
    sync::MirrorOptions options;
    options.epoch = epoch;
    options.track_writes = config.track_writes;
    return sync::DirectoryMirror::open(config.data_dir, options);
  }
  // fresh: forget what the replica believed, so the next resume compares every file.
  Result<std::unique_ptr<sync::ReplicaWriter>> openReplica(bool fresh) {
    if (config.shared_storage) return std::unique_ptr<sync::ReplicaWriter>();
    auto state = config.state_dir / "replica.state";
    if (fresh) {
      std::error_code ec;
      std::filesystem::remove(state, ec);
    }
    return sync::ReplicaWriter::open(config.data_dir, state);
  }

  Status persistRole(const std::string& role, std::uint64_t epoch) {
    FERRY_TRY(journal->setValue("epoch", std::to_string(epoch)));
    return journal->setValue("role", role);
  }

  Status switchToActive(std::uint64_t epoch) {
    if (active() && mirror_epoch == epoch) return okStatus();
    FERRY_TRY(persistRole("active", epoch));
    auto opened = openMirror(epoch);
    if (!opened) return opened.error();
    replica.reset();
    mirror = std::move(*opened);
    mirror_epoch = epoch;
    node_epoch = std::max(node_epoch.load(), epoch);
    resumed = false;
    awaiting_hashes = false;
    unacked.clear();
    dirty = false;
    {
      std::lock_guard lock(mu);
      initial_done = false;
      last_sent_seq = 0;
      last_acked_seq = 0;
      mirroring_paused = false;
      replica_fenced = false;
    }
    is_active = true;
    logger->info("this node is active now (epoch {}); asking the standby where it stands", epoch);
    (void)sendWith([](wire::Message::Builder m) { m.getBody().setResumeQuery(); });
    return okStatus();
  }

  Status switchToStandby(std::uint64_t epoch) {
    if (!active() && (replica || config.shared_storage)) {
      node_epoch = std::max(node_epoch.load(), epoch);
      return persistRole("standby", node_epoch.load());
    }
    FERRY_TRY(persistRole("standby", epoch));
    mirror.reset();
    // A fresh replica state: the new active (a new mirror) compares every file anyway.
    auto r = openReplica(/*fresh=*/true);
    if (!r) return r.error();
    replica = std::move(*r);
    node_epoch = std::max(node_epoch.load(), epoch);
    is_active = false;
    resumed = false;
    unacked.clear();
    {
      std::lock_guard lock(mu);
      mirroring_paused = false;
      final_requested = false;
    }
    publishReplicaView();
    logger->info("this node is the standby now (epoch {})", epoch);
    sendResumeState();
    return okStatus();
  }

  void activeTick(const protocol::LinkStats& stats) {
    if (stats.state != protocol::LinkState::kConnected) return;
    if (!resumed || !mirror) return;
    uint64_t flush_gen = 0;
    {
      std::lock_guard lock(mu);
      if (mirroring_paused) return;
      if (flush_requested > flush_started) flush_gen = flush_requested;
      if (admin_paused && flush_gen == 0) return;
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
    if (auto f = sink.finish(); r && !f) r = f.error();
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

  // ---- migrations (control threads) --------------------------------------------------
  json migrate(const json& request, const ControlEmit& emit) {
    MigrateRequest req;
    req.to = request.value("to", std::string());
    req.mode = request.value("mode", std::string("auto"));
    req.id = request.value("id", std::string());
    req.switch_driver = request.value("switch", std::string());
    if (request.contains("containers") && request["containers"].is_array())
      for (const auto& c : request["containers"])
        if (c.is_string()) req.containers.push_back(c.get<std::string>());
    auto progress = coordinator->startSource(req);
    if (!progress) return {{"ok", false}, {"error", progress.error().message()}};
    return follow(**progress, emit);
  }

  // Streams a migration's events to the client until its result; the result is the answer.
  json follow(MigrationProgress& progress, const ControlEmit& emit) {
    std::size_t next = 0;
    bool client_gone = false;
    while (!stopping.load()) {
      auto events = progress.since(next, Millis(500));
      for (auto& e : events) {
        ++next;
        if (e.value("final", false)) {
          json answer = e;
          answer.erase("event");
          answer.erase("final");
          answer["ok"] = e.value("result", std::string()) == "committed";
          return answer;
        }
        if (!client_gone && !emit(e)) client_gone = true;  // the migration goes on without a watcher
      }
      if (client_gone && progress.finished()) break;
    }
    return {{"ok", false},
            {"error", "the node is stopping; the migration's end is in 'ferry migrations show'"}};
  }

  json listMigrations(std::size_t limit) {
    auto list = journal->list(limit);
    if (!list) return {{"ok", false}, {"error", list.error().message()}};
    json out = json::array();
    for (const auto& r : *list) {
      auto j = toJson(r);
      j.erase("report");
      j["downtime_ms"] = r.report.value("downtime_ms", json());
      j["migration_ms"] = r.report.value("migration_ms", json());
      j["result"] = r.report.value("result", json());
      out.push_back(j);
    }
    return {{"ok", true}, {"migrations", out}};
  }

  json showMigration(const std::string& id) {
    auto r = journal->get(id);
    if (!r) return {{"ok", false}, {"error", r.error().message()}};
    if (!r->has_value())
      return {{"ok", false}, {"error", "no migration '" + id + "' in this node's journal"}};
    json j = toJson(**r);
    auto running = coordinator->running();
    j["running"] = running.has_value() && running->first == id;
    j["ok"] = true;
    return j;
  }

  json resolve(const std::string& id, const std::string& outcome, const ControlEmit& emit) {
    auto r = journal->get(id);
    if (!r) return {{"ok", false}, {"error", r.error().message()}};
    if (!r->has_value())
      return {{"ok", false}, {"error", "no migration '" + id + "' in this node's journal"}};
    const auto& record = **r;
    if (isTerminal(record.phase))
      return {{"ok", true}, {"id", id}, {"state", phaseName(record.phase)}, {"note", "already settled"}};
    if (!outcome.empty() && outcome != "committed" && outcome != "rolled-back")
      return {{"ok", false}, {"error", "--outcome must be committed or rolled-back"}};
    auto progress = coordinator->startSettle(record, outcome);
    if (!progress) return {{"ok", false}, {"error", progress.error().message()}};
    auto answer = follow(**progress, emit);
    auto after = journal->get(id);
    bool settled = after && after->has_value() && isTerminal((*after)->phase);
    if (after && after->has_value()) answer["state"] = phaseName((*after)->phase);
    answer["ok"] = settled;
    return answer;
  }

  // The standby: one engine message into the replica; a batch's end is acknowledged.
  Status applySync(const sync::Message& msg) {
    auto bytes = sync::wireSize(msg);
    auto applied = replica->apply(msg);
    {
      std::lock_guard lock(mu);
      sync_bytes += bytes;
    }
    if (!applied) {
      // The batch is abandoned; tell the active where we stand so it resumes.
      publishReplicaView();
      sendResumeState();
      return makeError("applying " + std::string(sync::messageName(msg)) + ": " + applied.error().message());
    }
    if (const auto* end = std::get_if<sync::BatchEnd>(&msg)) {
      publishReplicaView();
      node_epoch = std::max(node_epoch.load(), end->epoch);
      return sendWith([&](wire::Message::Builder out) {
        auto a = out.getBody().initBatchApplied();
        a.setEpoch(end->epoch);
        a.setSeq(end->seq);
      });
    }
    return okStatus();
  }

  Status handle(wire::Message::Reader m) {
    auto which = m.getBody().which();
    if (isSyncBody(which)) {
      if (active())
        return makeError("refused a mirroring message: this node is active (the peer believes otherwise)");
      if (!replica) return makeError("refused a mirroring message: no replica is open");
      {
        std::lock_guard lock(mu);
        if (replica_fenced)
          return makeError("refused a mirroring message: a migration restored the service here (fenced)");
      }
      std::vector<sync::Message> msgs;
      FERRY_TRY(decodeSyncMessages(m, msgs));
      for (const auto& msg : msgs) FERRY_TRY(applySync(msg));
      return okStatus();
    }
    switch (which) {
      case W::RESUME_QUERY:
        if (!active()) sendResumeState();
        return okStatus();
      case W::RESUME_STATE: {
        if (!active()) return okStatus();  // roles are swapping; the new active asks again
        if (!mirror) {
          return makeError(
              "refused the standby's resume state: this node has shared_storage = on and mirrors nothing "
              "(set it the same on both nodes)");
        }
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
        if (active() || !replica) return makeError("refused a hash request: this node is active");
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
        if (!active() || !mirror) return makeError("unexpected batch acknowledgement");
        mirror->acknowledge(a.getEpoch(), a.getSeq());
        unacked.erase(unacked.begin(), unacked.upper_bound(a.getSeq()));
        std::lock_guard lock(mu);
        last_acked_seq = mirror->lastAckedSeq();
        // The mirror's own count: an acknowledgement taken mid-round must not end the
        // initial copy with the round's later batches still to come.
        if (!initial_done && mirror->lastSentSeq() > 0 && last_acked_seq >= mirror->lastSentSeq())
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
    int state = 2;
    if (active()) {
      bool caught_up = resumed && unacked.empty() && !dirty;
      std::lock_guard lock(mu);
      state = !initial_done ? 0 : (caught_up ? 2 : 1);
    }
    // The CLI reads a snapshot; rebuilding it every loop (10 ms) would be waste. A new
    // replica state is shown at once: `ferry status --wait in-sync` is waiting for it
    // (with the interval alone it learned of the end of an initial copy 0-100 ms late).
    if (now - last_publish < kPublishInterval && state == published_state) return;
    last_publish = now;
    published_state = state;
    uint64_t lag_bytes = 0;
    int64_t lag_ms = 0;
    if (active()) {
      // Sent and not yet durable on the standby, plus what the round has still to send.
      lag_bytes = round_remaining;
      for (const auto& [seq, v] : unacked) lag_bytes += v.first;
      if (!unacked.empty()) lag_ms = msSince(unacked.begin()->second.second);
      if (dirty) lag_ms = std::max<int64_t>(lag_ms, msSince(dirty_since));
    }
    json migration = json();
    if (auto running = coordinator->running(); running)
      migration = {{"id", running->first}, {"side", running->second}};
    std::lock_guard lock(mu);
    rate_samples.emplace_back(now, sync_bytes);
    while (rate_samples.size() > 2 && now - rate_samples.front().first > std::chrono::seconds(5)) {
      rate_samples.pop_front();
    }
    double secs = std::chrono::duration<double>(now - rate_samples.front().first).count();
    double rate = secs > 0.1 ? static_cast<double>(sync_bytes - rate_samples.front().second) / secs : 0.0;
    json peer_view = snapshot.value("peer_view", json());
    snapshot = {
        {"node", config.name},
        {"role", active() ? "active" : "standby"},
        {"epoch", node_epoch.load()},
        {"data_dir", config.data_dir.string()},
        {"peer",
         {{"state", protocol::linkStateName(stats.state)},
          {"name", stats.peerNodeId.empty() ? peer_name : stats.peerNodeId},
          {"key_fingerprint", stats.peerFingerprint},
          {"endpoint", link->endpoint()},
          {"auth_refusals", stats.authRefusals},
          {"messages_refused", stats.messagesRefused},
          {"last_error", stats.lastError}}},
        {"throughput_bytes_per_s", static_cast<uint64_t>(rate)},
        {"sync_bytes_total", sync_bytes},
        {"last_error", engine_error},
        {"migration", migration},
    };
    if (config.shared_storage) {
      snapshot["replica"] = {{"state", "shared"}, {"replica_lag_bytes", 0}, {"replica_lag_ms", 0}};
    } else if (active()) {
      snapshot["replica"] = {{"state", replicaStateName(state)},
                             {"replica_lag_bytes", lag_bytes},
                             {"replica_lag_ms", lag_ms},
                             {"last_sent_seq", last_sent_seq},
                             {"last_acked_seq", last_acked_seq},
                             {"resumed", resumed},
                             {"paused", mirroring_paused || admin_paused}};
    } else if (replica) {
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
          {"refused", st.refused},
          {"fenced", replica_fenced}};
      snapshot["peer_view"] = peer_view;
    }
    if (active() && !config.shared_storage && stats.state == protocol::LinkState::kConnected &&
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

  // ---- control requests (control threads) ----------------------------------------------
  json flush(Millis timeout) {
    if (!active())
      return {{"ok", false},
              {"error", "this node is the standby; run 'ferry sync --flush' on the active node"}};
    if (config.shared_storage) return {{"ok", true}, {"flushed_seq", 0}, {"ms", 0}, {"shared_storage", true}};
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

  // One comparison of both sides' manifests.
  Result<sync::TreeDiff> compareOnce(Clock::time_point deadline) {
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
    if (!sent) return makeError("asking the peer for its manifest: " + sent.error().message());
    auto local = sync::manifestOf(config.data_dir);
    if (!local) return local.error();
    std::unique_lock lock(mu);
    if (!cv.wait_until(lock, deadline, [&] { return manifest_done; }))
      return makeError("the peer did not send its manifest in time");
    if (!manifest_error.empty()) return makeError("peer: " + manifest_error);
    const auto& source = active() ? *local : peer_manifest;
    const auto& standby = active() ? peer_manifest : *local;
    return sync::compareManifests(source, standby);
  }

  // On a live service a file can change between the flush and the comparison (InnoDB's
  // redo log does, every second). A difference counts only if it is still there after
  // the standby has confirmed everything written since: up to `passes` comparisons, a
  // flush before each retry. Paths that differed once and then matched are listed as
  // "settled" so nothing is hidden.
  json verify(Millis timeout, int passes) {
    auto deadline = Clock::now() + timeout;
    std::set<std::string> settled;
    Result<sync::TreeDiff> diff = makeError("no comparison ran");
    int pass = 0;
    while (true) {
      ++pass;
      diff = compareOnce(deadline);
      if (!diff) return {{"ok", false}, {"error", diff.error().message()}};
      if (diff->identical || pass >= passes || Clock::now() >= deadline) break;
      for (const auto& d : diff->differences) settled.insert(d.path);
      if (active()) {
        auto remaining = std::chrono::duration_cast<Millis>(deadline - Clock::now());
        auto flushed = flush(remaining);
        if (!flushed.value("ok", false)) break;
      } else {
        std::this_thread::sleep_for(kVerifyRetryPause);
      }
    }
    json differences = json::array();
    for (const auto& d : diff->differences) {
      settled.erase(d.path);
      differences.push_back({{"path", d.path}, {"what", d.what}, {"detail", d.detail}});
    }
    return {{"ok", true},     {"identical", diff->identical}, {"entries", diff->entries},
            {"passes", pass}, {"differences", differences},   {"settled", json(settled)}};
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
  impl->peer_name = peers->front().name;

  auto journal = Journal::open(c.state_dir / "journal.db");
  if (!journal) return journal.error();
  impl->journal = std::move(*journal);
  // The role and epoch the last migration left win over the configured initial role.
  std::string role = c.role;
  if (auto r = impl->journal->value("role"); r && r->has_value()) role = **r;
  if (auto e = impl->journal->value("epoch"); e && e->has_value()) {
    impl->node_epoch = std::strtoull((*e)->c_str(), nullptr, 10);
    if (impl->node_epoch.load() == 0) impl->node_epoch = 1;
  }
  impl->mirror_epoch = impl->node_epoch.load();
  impl->is_active = role == "active";

  // An unfinished migration decides how the engine starts: a source that may have
  // handed the service over must not mirror; a target that may run it must not apply.
  if (auto unfinished = impl->journal->unfinished(); unfinished) {
    for (const auto& r : *unfinished) {
      if (r.side == "source" && r.phase != MigrationPhase::kPreparing) impl->mirroring_paused = true;
      if (r.side == "target" && (r.phase == MigrationPhase::kRestoring ||
                                 r.phase == MigrationPhase::kRestored || r.phase == MigrationPhase::kInDoubt))
        impl->replica_fenced = true;
    }
  }

  impl->runner = checkpoint::makeSystemRunner();
  checkpoint::RuntimeOptions ro;
  ro.podman = c.podman;
  ro.global_args = splitWords(c.podman_args);
  auto runtime = makeRuntime(c, *impl->runner, ro, *impl->logger);
  if (!runtime) return runtime.error();
  impl->runtime = std::move(*runtime);
  if (!impl->failpoints.names().empty()) {
    std::string names;
    for (const auto& n : impl->failpoints.names()) names += (names.empty() ? "" : ",") + n;
    impl->logger->warn("FAILPOINTS ARMED (testing only): {}", names);
  }

  if (impl->active()) {
    auto mirror = impl->openMirror(impl->mirror_epoch);
    if (!mirror) return mirror.error();
    impl->mirror = std::move(*mirror);
  } else {
    auto replica = impl->openReplica(/*fresh=*/false);
    if (!replica) return replica.error();
    impl->replica = std::move(*replica);
    impl->publishReplicaView();
  }

  protocol::PeerLinkConfig lc;
  lc.keys = *keys;
  lc.nodeId = c.name;
  lc.role = impl->active() ? protocol::wire::Role::ACTIVE : protocol::wire::Role::STANDBY;
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

  impl->coordinator = std::make_unique<MigrationCoordinator>([i = impl.get()] { return i->deps(); });
  auto node = std::unique_ptr<Node>(new Node(std::move(impl)));
  auto* raw = node.get();
  auto control = ControlServer::start(
      node->impl_->config.control_socket,
      [raw](const json& request, const ControlEmit& emit) { return raw->handle(request, emit); });
  if (!control) return control.error();
  node->impl_->control = std::move(*control);
  node->impl_->engine = std::thread([i = node->impl_.get()] { i->run(); });
  node->impl_->logger->info("node {} started as {} (epoch {}): data {}, {} {}", node->impl_->config.name,
                            node->impl_->active() ? "active" : "standby", node->impl_->node_epoch.load(),
                            node->impl_->config.data_dir.string(),
                            node->impl_->config.peer.empty() ? "listening on" : "connecting to",
                            node->impl_->link->endpoint());
  node->impl_->coordinator->recoverAtStart();
  return node;
}

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() {
  impl_->stopping = true;
  {
    std::lock_guard lock(impl_->mu);
    impl_->cv.notify_all();
  }
  impl_->control.reset();  // no new requests; waits for the serving threads
  if (impl_->engine.joinable()) impl_->engine.join();
  impl_->coordinator.reset();  // a migration thread waiting for messages gives up; joined
  impl_->link->stop();
}

json Node::handle(const json& request, const ControlEmit& emit) {
  auto cmd = request.value("cmd", "");
  auto timeout = Millis(request.value("timeout_ms", 60000));
  if (cmd == "status") {
    std::lock_guard lock(impl_->mu);
    auto s = impl_->snapshot;
    s["ok"] = true;
    return s;
  }
  if (cmd == "flush") return impl_->flush(timeout);
  if (cmd == "pause" || cmd == "resume") {
    if (!impl_->active())
      return {{"ok", false}, {"error", "this node is the standby; pause mirroring on the active node"}};
    std::lock_guard lock(impl_->mu);
    impl_->admin_paused = cmd == "pause";
    return {{"ok", true}, {"paused", impl_->admin_paused}};
  }
  if (cmd == "verify") return impl_->verify(timeout, std::clamp(request.value("passes", 3), 1, 10));
  if (cmd == "migrate") return impl_->migrate(request, emit);
  if (cmd == "migrations") return impl_->listMigrations(request.value("limit", std::size_t{50}));
  if (cmd == "migration") return impl_->showMigration(request.value("id", std::string()));
  if (cmd == "resolve")
    return impl_->resolve(request.value("id", std::string()), request.value("outcome", std::string()), emit);
  return {{"ok", false}, {"error", "unknown control command '" + cmd + "'"}};
}

}  // namespace ferry::node
