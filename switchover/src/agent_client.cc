// The node side of `proxy`, `haproxy` and `nginx`: each step is one request to the
// switch agent on the load balancer, over a fresh CURVE connection (a DEALER), with
// a deadline of the step's own bound plus a margin. A socket monitor turns a refused
// key into an error at once instead of a timeout.
#include <zmq.h>

#include <array>
#include <atomic>
#include <cstring>
#include <mutex>
#include <random>

#include "exec_driver.h"
#include "ferry/base/log.h"
#include "ferry/protocol/keys.h"
#include "ferry/protocol/switch_messages.h"
#include "wire.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;
namespace wc = wirecodec;

std::atomic<uint64_t> gClientCounter{0};

bool decodeKey(const std::string& z85, std::array<unsigned char, 32>& out) {
  return z85.size() == 40 && zmq_z85_decode(out.data(), z85.c_str()) != nullptr;
}

class AgentClientDriver final : public Driver {
 public:
  explicit AgentClientDriver(DriverConfig config)
      : cfg_(std::move(config)), log_(log::get("switch")), ctx_(1) {
    std::random_device rd;
    rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  }
  ~AgentClientDriver() override {
    serverKey_.fill(0);
    ownSecret_.fill(0);
    ctx_.close();
  }

  Status init() {
    if (!decodeKey(cfg_.agent_public_key, serverKey_))
      return makeError(
          "switch driver " + cfg_.kind + ": the agent's public key is missing or invalid",
          "pair the agent: ferry pair --dir /etc/ferry/switch --name lb --peer-key <lb's node.pub>");
    if (!decodeKey(cfg_.node_public_key, ownPublic_) || !decodeKey(cfg_.node_secret_key, ownSecret_))
      return makeError("switch driver " + cfg_.kind + ": this node has no valid key pair",
                       "run 'ferry keygen'");
    if (cfg_.agent_endpoint.rfind("tcp://", 0) != 0)
      return makeError("switch driver " + cfg_.kind + ": agent endpoint '" + cfg_.agent_endpoint +
                           "' is not tcp://HOST:PORT",
                       "e.g. tcp://lb:7400");
    return okStatus();
  }

  std::string name() const override { return cfg_.kind; }

  Result<SwitchReport> prepare(const SwitchPlan& plan) override {
    return call(wc::Step::kPrepare, plan, plan.drain_timeout);
  }
  Result<SwitchReport> commit(const SwitchPlan& plan) override {
    return call(wc::Step::kCommit, plan, plan.hold_timeout);
  }
  Result<SwitchReport> rollback(const SwitchPlan& plan) override {
    return call(wc::Step::kRollback, plan, plan.hold_timeout);
  }

 private:
  Result<SwitchReport> call(wc::Step step, const SwitchPlan& plan, Millis bound) {
    FERRY_TRY(validatePlan(plan));
    std::lock_guard<std::mutex> lock(mu_);  // one step at a time per driver
    wc::Request request;
    do {
      request.requestId = rng_();
    } while (request.requestId == 0);
    request.step = step;
    request.driver = cfg_.kind;
    request.plan = plan;
    request.nodeId = cfg_.node_name;
    auto frame = wc::encodeRequest(request);
    if (!frame.ok()) return frame.error();
    const Millis timeout = bound + cfg_.agent_margin;
    const std::string what =
        wc::stepName(step) + " of '" + plan.service + "' at the switch agent " + cfg_.agent_endpoint;
    try {
      zmq::socket_t sock(ctx_, zmq::socket_type::dealer);
      sock.set(zmq::sockopt::linger, 0);
      sock.set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(protocol::kMaxSwitchFrameBytes));
      sock.set(zmq::sockopt::curve_serverkey, zmq::const_buffer(serverKey_.data(), serverKey_.size()));
      sock.set(zmq::sockopt::curve_publickey, zmq::const_buffer(ownPublic_.data(), ownPublic_.size()));
      sock.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(ownSecret_.data(), ownSecret_.size()));
      sock.set(zmq::sockopt::handshake_ivl, static_cast<int>(std::min<int64_t>(timeout.count(), 30000)));
      sock.set(zmq::sockopt::reconnect_ivl, 100);
      sock.set(zmq::sockopt::reconnect_ivl_max, 1000);
      const std::string monEndpoint =
          "inproc://ferry-switch-client-mon-" + std::to_string(gClientCounter.fetch_add(1));
      if (zmq_socket_monitor(sock.handle(), monEndpoint.c_str(),
                             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
        throw zmq::error_t();
      }
      zmq::socket_t mon(ctx_, zmq::socket_type::pair);
      mon.set(zmq::sockopt::linger, 0);
      mon.connect(monEndpoint);
      sock.connect(cfg_.agent_endpoint);
      // Queued until the CURVE handshake completes.
      (void)sock.send(*frame, zmq::send_flags::dontwait);
      const auto deadline = Clock::now() + timeout;
      std::string handshakeProblem;
      Result<SwitchReport> result = makeError("no answer");
      bool answered = false;
      while (!answered) {
        const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
        if (left <= Millis(0)) break;
        std::array<zmq::pollitem_t, 2> items{
            {{sock.handle(), 0, ZMQ_POLLIN, 0}, {mon.handle(), 0, ZMQ_POLLIN, 0}}};
        zmq::poll(items.data(), items.size(), std::min(left, Millis(200)));
        if ((items[1].revents & ZMQ_POLLIN) != 0) {
          zmq::message_t head;
          zmq::message_t addr;
          if (mon.recv(head, zmq::recv_flags::dontwait) && head.more())
            (void)mon.recv(addr, zmq::recv_flags::dontwait);
          uint16_t event = 0;
          if (head.size() >= 2) std::memcpy(&event, head.data(), sizeof event);
          if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
            (void)zmq_socket_monitor(sock.handle(), nullptr, 0);
            return makeError(
                what + ": the agent refused this node's key (fingerprint " +
                    protocol::fingerprint(cfg_.node_public_key) + ")",
                "pair this node on the load balancer: ferry pair --peer-key <this node's node.pub> "
                "--name " +
                    (cfg_.node_name.empty() ? std::string("NODE") : cfg_.node_name));
          }
          if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
            handshakeProblem = "the CURVE handshake failed (is the agent's public key right?)";
          }
        }
        if ((items[0].revents & ZMQ_POLLIN) != 0) {
          zmq::message_t reply;
          if (!sock.recv(reply, zmq::recv_flags::dontwait)) continue;
          auto decoded = wc::decode(std::move(reply));
          if (!decoded.ok()) {
            log_->warn("switch: refused an answer from the agent at {}: {}", cfg_.agent_endpoint,
                       decoded.error().message());
            continue;
          }
          auto parsed = wc::readReply(**decoded);
          if (!parsed.ok()) {
            log_->warn("switch: refused an answer from the agent at {}: {}", cfg_.agent_endpoint,
                       parsed.error().message());
            continue;
          }
          if (parsed->requestId != request.requestId) continue;  // a late answer to an earlier call
          result = std::move(parsed->result);
          answered = true;
        }
      }
      (void)zmq_socket_monitor(sock.handle(), nullptr, 0);
      if (!answered) {
        return makeError(
            what + ": no answer within " + std::to_string(timeout.count()) + " ms" +
                (handshakeProblem.empty() ? "" : " (" + handshakeProblem + ")"),
            "is 'ferry proxy run' running on the load balancer and reachable? The step is idempotent: "
            "it may be repeated");
      }
      if (!result.ok()) return makeError(what + " failed: " + result.error().what, result.error().hint);
      return result;
    } catch (const zmq::error_t& e) {
      return makeError(what + ": " + e.what(), "check the agent endpoint (tcp://HOST:PORT)");
    }
  }

  DriverConfig cfg_;
  std::shared_ptr<spdlog::logger> log_;
  zmq::context_t ctx_;
  std::array<unsigned char, 32> serverKey_{}, ownPublic_{}, ownSecret_{};
  std::mutex mu_;
  std::mt19937_64 rng_;
};

}  // namespace

Result<std::unique_ptr<Driver>> makeDriver(const DriverConfig& config) {
  if (config.kind == "exec") return makeExecDriver(config.command, config.exec_timeout);
  if (config.kind == "proxy" || config.kind == "haproxy" || config.kind == "nginx") {
    auto d = std::make_unique<AgentClientDriver>(config);
    FERRY_TRY(d->init());
    return std::unique_ptr<Driver>(std::move(d));
  }
  return makeError("unknown switch driver '" + config.kind + "'", "proxy, haproxy, nginx or exec");
}

Result<std::string> loadAgentKey(const std::string& dir, const std::string& name) {
  auto peers = protocol::loadPeerKeys(dir);
  if (!peers.ok()) return peers.error();
  for (const auto& p : *peers) {
    if (p.name == name) return p.publicKey;
  }
  return makeError(
      "no key for the switch agent '" + name + "' in " + dir + "/peers",
      "pair it: ferry pair --dir " + dir + " --name " + name + " --peer-key <the agent's node.pub>");
}

}  // namespace ferry::switchover
