// The switch agent. The control thread owns every ZeroMQ socket (the ROUTER, the ZAP
// handler, the doorbell); the worker thread runs the steps; they meet in two
// mutex-guarded queues (jobs in, replies out) and an inproc doorbell.
#include "ferry/switchover/agent.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/protocol/switch_messages.h"
#include "ferry/protocol/zap.h"
#include "wire.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;
namespace wc = wirecodec;

std::atomic<uint64_t> gAgentCounter{0};  // unique inproc names; no state shared between agents

struct Job {
  std::string rid;   // ZeroMQ routing id of the node's connection
  std::string node;  // the paired name the ZAP handler gave it
  wc::Request request;
};

struct Outgoing {
  std::string rid;
  zmq::message_t frame;
};

class AgentImpl final : public Agent {
 public:
  AgentImpl(AgentConfig config, protocol::KeyPair keys, std::vector<protocol::PeerKey> allowed)
      : cfg_(std::move(config)),
        keys_(std::move(keys)),
        allowed_(std::move(allowed)),
        log_(log::get("switch")),
        ctx_(1),
        wakeEndpoint_("inproc://ferry-agent-wake-" + std::to_string(gAgentCounter.fetch_add(1))) {}

  ~AgentImpl() override { stop(); }

  Status init() {
    FERRY_TRY(startDrivers());
    try {
      wakeTx_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
      wakeTx_.set(zmq::sockopt::linger, 0);
      wakeTx_.set(zmq::sockopt::sndhwm, 16);
    } catch (const zmq::error_t& e) {
      return makeError(std::string("switch agent: cannot create its doorbell: ") + e.what());
    }
    auto started = std::make_shared<std::promise<Status>>();
    auto ready = started->get_future();
    control_ = std::thread([this, started] { runControl(*started); });
    if (ready.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      return makeError("switch agent: the control thread did not start within 10 s",
                       "this is a bug; report it with the log");
    }
    FERRY_TRY(ready.get());
    try {
      std::lock_guard<std::mutex> lock(wakeMu_);
      wakeTx_.connect(wakeEndpoint_);
    } catch (const zmq::error_t& e) {
      return makeError(std::string("switch agent: cannot connect its doorbell: ") + e.what());
    }
    worker_ = std::thread([this] { runWorker(); });
    return okStatus();
  }

  std::string endpoint() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return endpoint_;
  }

  Result<Endpoint> proxyFront(const std::string& service) const override {
    if (!proxy_) return makeError("the agent runs no proxy service");
    return proxy_->front(service);
  }

  Result<ProxyCounters> proxyCounters(const std::string& service) const override {
    if (!proxy_) return makeError("the agent runs no proxy service");
    return proxy_->counters(service);
  }

  AgentStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

  void stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopRequested_) return;
      stopRequested_ = true;
    }
    stopping_.store(true);
    jobsCv_.notify_all();
    ring();
    if (worker_.joinable()) worker_.join();
    if (control_.joinable()) control_.join();
    {
      std::lock_guard<std::mutex> lock(wakeMu_);
      wakeTx_.close();
    }
    ctx_.close();
    drivers_.clear();
    if (proxy_) proxy_->stop();
  }

 private:
  // ---- drivers -----------------------------------------------------------------
  std::string stateFile(const std::string& service) const {
    return (std::filesystem::path(cfg_.state_dir) / (service + ".backend")).string();
  }

  Status startDrivers() {
    std::vector<ProxyServiceConfig> proxied;
    for (auto& s : cfg_.services) {
      if (s.driver != "proxy") continue;
      ProxyServiceConfig p = s.proxy;
      // The backend of the last switch-over, if this agent ran one before a restart.
      auto remembered = readFile(stateFile(s.name));
      if (remembered.ok()) {
        std::string text = *remembered;
        while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
        auto e = parseEndpoint(text);
        if (e.ok()) {
          if (!(*e == p.backend))
            log_->info("agent: service '{}' starts on {} (the last switch-over, {})", s.name, e->str(),
                       stateFile(s.name));
          p.backend = *e;
        }
      }
      proxied.push_back(p);
    }
    if (!proxied.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(cfg_.state_dir, ec);
      if (ec) {
        log_->warn("agent: cannot create {} ({}); the proxy's backend will not survive a restart",
                   cfg_.state_dir, ec.message());
      }
      auto proxy = HandoffProxy::start(proxied);
      if (!proxy.ok()) return proxy.error();
      proxy_ = std::move(proxy.value());
    }
    for (auto& s : cfg_.services) {
      if (s.driver == "proxy") {
        ProxyDriverConfig pc;
        pc.service = s.name;
        pc.health_path = s.health_path;
        pc.lease = cfg_.hold_lease;
        pc.state_file = stateFile(s.name);
        drivers_[s.name] = makeProxyDriver(*proxy_, pc);
      } else if (s.driver == "haproxy") {
        auto d = makeHaproxyDriver(s.haproxy);
        if (!d.ok()) return d.error();
        drivers_[s.name] = std::move(d.value());
      } else if (s.driver == "nginx") {
        auto d = makeNginxDriver(s.nginx);
        if (!d.ok()) return d.error();
        drivers_[s.name] = std::move(d.value());
      } else {
        return makeError("service '" + s.name + "': unknown driver '" + s.driver + "'",
                         "proxy, haproxy or nginx");
      }
    }
    return okStatus();
  }

  // ---- control thread ------------------------------------------------------------
  void runControl(std::promise<Status>& started) {
    try {
      wakeRx_ = zmq::socket_t(ctx_, zmq::socket_type::pair);
      wakeRx_.set(zmq::sockopt::linger, 0);
      wakeRx_.bind(wakeEndpoint_);
      // The ZAP handler first: a CURVE server without one admits any client.
      auto zap = protocol::ZapHandler::bind(ctx_, allowed_, "agent", log_);
      if (!zap.ok()) {
        closeAll();
        started.set_value(makeError("switch agent: " + zap.error().what, zap.error().hint));
        return;
      }
      zap_ = std::move(zap.value());
      router_ = zmq::socket_t(ctx_, zmq::socket_type::router);
      router_.set(zmq::sockopt::linger, 0);
      router_.set(zmq::sockopt::router_mandatory, 1);
      router_.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(protocol::kMaxSwitchFrameBytes));
      router_.set(zmq::sockopt::sndhwm, 1000);
      router_.set(zmq::sockopt::rcvhwm, 1000);
      Status curve = protocol::makeCurveServer(router_, keys_.secretKey, *log_, "agent");
      if (!curve.ok()) {
        closeAll();
        started.set_value(curve);
        return;
      }
      router_.bind(cfg_.listen);
      const std::string bound = router_.get(zmq::sockopt::last_endpoint);
      {
        std::lock_guard<std::mutex> lock(mu_);
        endpoint_ = bound;
      }
      log_->info("agent: listening on {} (CURVE, {} paired node key(s), own key {}); services: {}", bound,
                 zap_->allowedCount(), protocol::fingerprint(keys_.publicKey), serviceList());
    } catch (const zmq::error_t& e) {
      closeAll();
      started.set_value(makeError("switch agent: cannot listen on " + cfg_.listen + ": " + e.what(),
                                  "check the address and that the port is free"));
      return;
    }
    started.set_value(okStatus());
    try {
      while (!stopping_.load()) {
        std::array<zmq::pollitem_t, 3> items{{{wakeRx_.handle(), 0, ZMQ_POLLIN, 0},
                                              {router_.handle(), 0, ZMQ_POLLIN, 0},
                                              {zap_->socket().handle(), 0, ZMQ_POLLIN, 0}}};
        zmq::poll(items.data(), items.size(), std::chrono::milliseconds(100));
        if ((items[0].revents & ZMQ_POLLIN) != 0) drainWake();
        if ((items[2].revents & ZMQ_POLLIN) != 0) handleZap();
        if ((items[1].revents & ZMQ_POLLIN) != 0) receive();
        sendReplies();
      }
    } catch (const zmq::error_t& e) {
      log_->critical("agent: control thread failed: {}", e.what());
      std::lock_guard<std::mutex> lock(mu_);
      stats_.last_error = std::string("control thread failed: ") + e.what();
    }
    closeAll();
  }

  std::string serviceList() const {
    std::string out;
    for (const auto& s : cfg_.services) out += (out.empty() ? "" : ", ") + s.name + " (" + s.driver + ")";
    return out;
  }

  void closeAll() {
    if (router_) router_.close();
    zap_.reset();
    if (wakeRx_) wakeRx_.close();
  }

  void drainWake() {
    zmq::message_t m;
    for (int i = 0; i < 1024; ++i) {
      if (!wakeRx_.recv(m, zmq::recv_flags::dontwait)) break;
    }
  }

  void handleZap() {
    for (int budget = 0; budget < 64; ++budget) {
      auto d = zap_->handleOne();
      if (!d) return;
      if (d->admitted) continue;
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.auth_refusals;
      stats_.last_error =
          "refused a connection from " + d->address + ": " + d->reason + " (key " + d->fingerprint + ")";
    }
  }

  void receive() {
    for (int budget = 0; budget < 256; ++budget) {
      zmq::message_t rid;
      if (!router_.recv(rid, zmq::recv_flags::dontwait)) return;
      if (!rid.more()) continue;
      zmq::message_t payload;
      if (!router_.recv(payload, zmq::recv_flags::dontwait)) continue;
      bool extra = payload.more();
      while (extra) {  // one message per frame: drop anything after it
        zmq::message_t rest;
        if (!router_.recv(rest, zmq::recv_flags::dontwait)) break;
        extra = rest.more();
      }
      const char* uid = zmq_msg_gets(payload.handle(), "User-Id");
      const std::string node = uid != nullptr ? uid : "?";
      handleFrame(std::string(static_cast<const char*>(rid.data()), rid.size()), node, std::move(payload));
    }
  }

  void refuse(const std::string& rid, const std::string& node, uint64_t requestId, const Error& error) {
    log_->warn("agent: refused a request from node '{}': {}", node, error.message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.malformed;
      stats_.last_error = error.what;
    }
    if (requestId != 0) queueReply(rid, wc::encodeReply(requestId, error));
  }

  void handleFrame(const std::string& rid, const std::string& node, zmq::message_t payload) {
    auto decoded = wc::decode(std::move(payload));
    if (!decoded.ok()) {
      refuse(rid, node, 0, decoded.error());
      return;
    }
    const uint64_t requestId = wc::requestIdOf(**decoded);
    auto request = wc::readRequest(**decoded);
    if (!request.ok()) {
      refuse(rid, node, requestId, request.error());
      return;
    }
    const AgentServiceConfig* svc = nullptr;
    for (const auto& s : cfg_.services) {
      if (s.name == request->plan.service) svc = &s;
    }
    if (svc == nullptr) {
      refuse(rid, node, requestId,
             makeError("the switch agent has no service '" + request->plan.service + "' (it has " +
                           serviceList() + ")",
                       "use the service name from the agent's config, or add a [service " +
                           request->plan.service + "] section there"));
      return;
    }
    if (svc->driver != request->driver) {
      refuse(
          rid, node, requestId,
          makeError("service '" + svc->name + "' uses the " + svc->driver +
                        " driver on the load balancer, but node '" + node + "' asked for " + request->driver,
                    "set the node's switch driver to " + svc->driver + " (or change the agent's config)"));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.requests;
      if (jobs_.size() >= cfg_.max_queued) {
        stats_.last_error = "step queue full";
        queueReply(rid,
                   wc::encodeReply(requestId, makeError("the switch agent is busy (" +
                                                            std::to_string(jobs_.size()) + " steps queued)",
                                                        "retry the step in a moment (it is idempotent)")));
        return;
      }
      log_->info("agent: {} of '{}' (migration {}, {} -> {}) from node '{}'", wc::stepName(request->step),
                 request->plan.service, request->plan.migration_id, request->plan.source.str(),
                 request->plan.target.str(), node);
      jobs_.push_back(Job{rid, node, std::move(request.value())});
    }
    jobsCv_.notify_one();
  }

  // Any thread: a reply for the control thread to send.
  void queueReply(const std::string& rid, zmq::message_t frame) {
    {
      std::lock_guard<std::mutex> lock(outMu_);
      outbox_.push_back(Outgoing{rid, std::move(frame)});
    }
    ring();
  }

  void ring() {
    std::lock_guard<std::mutex> lock(wakeMu_);
    if (!wakeTx_) return;
    try {
      zmq::message_t bell(static_cast<size_t>(0));
      (void)wakeTx_.send(bell, zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

  void sendReplies() {
    std::deque<Outgoing> out;
    {
      std::lock_guard<std::mutex> lock(outMu_);
      out.swap(outbox_);
    }
    for (auto& o : out) {
      try {
        zmq::message_t rid(o.rid.data(), o.rid.size());
        if (!router_.send(rid, zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
          log_->warn("agent: could not send a reply (the node's queue is full)");
          continue;
        }
        (void)router_.send(o.frame, zmq::send_flags::dontwait);
      } catch (const zmq::error_t& e) {
        // router_mandatory: the node disconnected; it will repeat the step (idempotent).
        log_->warn("agent: the node that asked is gone; its reply was dropped ({})", e.what());
      }
    }
  }

  // ---- worker thread ---------------------------------------------------------------
  void runWorker() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        jobsCv_.wait(lock, [&] { return stopping_.load() || !jobs_.empty(); });
        if (stopping_.load()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      Driver& driver = *drivers_.at(job.request.plan.service);
      const auto t0 = Clock::now();
      Result<SwitchReport> result = makeError("unknown step");
      switch (job.request.step) {
        case wc::Step::kPrepare:
          result = driver.prepare(job.request.plan);
          break;
        case wc::Step::kCommit:
          result = driver.commit(job.request.plan);
          break;
        case wc::Step::kRollback:
          result = driver.rollback(job.request.plan);
          break;
      }
      const auto ms = std::chrono::duration_cast<Millis>(Clock::now() - t0).count();
      if (result.ok()) {
        log_->info("agent: {} ({} ms)", result->summary(), ms);
      } else {
        log_->error("agent: {} of '{}' (migration {}) failed after {} ms: {}", wc::stepName(job.request.step),
                    job.request.plan.service, job.request.plan.migration_id, ms, result.error().message());
        std::lock_guard<std::mutex> lock(mu_);
        ++stats_.failed_steps;
        stats_.last_error = result.error().what;
      }
      queueReply(job.rid, wc::encodeReply(job.request.requestId, result));
    }
  }

  AgentConfig cfg_;
  protocol::KeyPair keys_;
  std::vector<protocol::PeerKey> allowed_;
  std::shared_ptr<spdlog::logger> log_;
  zmq::context_t ctx_;
  std::string wakeEndpoint_;

  std::unique_ptr<HandoffProxy> proxy_;
  std::map<std::string, std::unique_ptr<Driver>> drivers_;  // by service; used by the worker only after init

  std::thread control_, worker_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;  // guards the fields below
  std::condition_variable jobsCv_;
  std::deque<Job> jobs_;
  AgentStats stats_;
  std::string endpoint_;
  bool stopRequested_ = false;

  std::mutex outMu_;
  std::deque<Outgoing> outbox_;

  std::mutex wakeMu_;
  zmq::socket_t wakeTx_;  // guarded by wakeMu_

  // Control thread only.
  zmq::socket_t wakeRx_, router_;
  std::unique_ptr<protocol::ZapHandler> zap_;
};

}  // namespace

Result<std::unique_ptr<Agent>> Agent::start(AgentConfig config, protocol::KeyPair keys,
                                            std::vector<protocol::PeerKey> allowed) {
  if (!protocol::validateZ85Key(keys.publicKey).ok() || !protocol::validateZ85Key(keys.secretKey).ok())
    return makeError("switch agent: no valid CURVE key pair", "run 'ferry keygen' on the load balancer");
  if (allowed.empty()) {
    return makeError("switch agent: no paired node keys, so no node could ever ask for a switch-over",
                     "pair each node here: ferry pair --peer-key <the node's node.pub> --name <node>");
  }
  if (config.services.empty()) return makeError("switch agent: no service configured");
  auto agent = std::make_unique<AgentImpl>(std::move(config), std::move(keys), std::move(allowed));
  Status s = agent->init();
  if (!s.ok()) {
    agent->stop();
    return s.error();
  }
  return std::unique_ptr<Agent>(std::move(agent));
}

}  // namespace ferry::switchover
