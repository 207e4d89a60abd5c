#include "ferry/protocol/zap.h"

#include <zmq.h>

#include <cstring>

namespace ferry::protocol {

namespace {

constexpr int kZmqZapEnforceDomain = 93;  // ZMQ_ZAP_ENFORCE_DOMAIN: honoured by 4.3.4, hidden behind DRAFT
constexpr const char* kZapEndpoint = "inproc://zeromq.zap.01";

bool decodeKey(const std::string& z85, std::array<unsigned char, 32>& out) {
  return z85.size() == 40 && zmq_z85_decode(out.data(), z85.c_str()) != nullptr;
}

}  // namespace

Result<std::unique_ptr<ZapHandler>> ZapHandler::bind(zmq::context_t& ctx, const std::vector<PeerKey>& allowed,
                                                     std::string tag, std::shared_ptr<spdlog::logger> log) {
  if (allowed.empty()) {
    return makeError("no paired peer keys: a CURVE listener would admit nobody",
                     "pair the peer first: ferry pair --peer-key KEY --name NAME");
  }
  std::unique_ptr<ZapHandler> zap(new ZapHandler(std::move(tag), std::move(log)));
  for (const auto& peer : allowed) {
    std::array<unsigned char, 32> raw{};
    if (!decodeKey(peer.publicKey, raw))
      return makeError("paired peer '" + peer.name + "' has an invalid public key", "pair it again");
    zap->allowed_.push_back({raw, peer.name});
  }
  try {
    zap->socket_ = zmq::socket_t(ctx, zmq::socket_type::rep);
    zap->socket_.set(zmq::sockopt::linger, 0);
    zap->socket_.bind(kZapEndpoint);
  } catch (const zmq::error_t& e) {
    return makeError(std::string("cannot bind the ZAP handler: ") + e.what(),
                     "one ZAP handler per ZeroMQ context; this is a bug if it happens");
  }
  return zap;
}

ZapHandler::~ZapHandler() {
  for (auto& a : allowed_) a.key.fill(0);
}

std::string ZapHandler::fingerprintOf(const std::string& name) const {
  for (const auto& a : allowed_) {
    if (a.name == name) return fingerprintRaw(a.key.data());
  }
  return {};
}

std::optional<ZapDecision> ZapHandler::handleOne() {
  std::vector<zmq::message_t> parts;
  for (;;) {
    zmq::message_t part;
    if (!socket_.recv(part, zmq::recv_flags::dontwait)) break;
    const bool more = part.more();
    parts.push_back(std::move(part));
    if (!more || parts.size() > 16) break;
  }
  if (parts.empty()) return std::nullopt;
  auto text = [&](size_t i) {
    return i < parts.size() ? std::string(static_cast<const char*>(parts[i].data()), parts[i].size())
                            : std::string();
  };
  const std::string version = text(0);
  const std::string requestId = text(1);
  const std::string domain = text(2);
  const std::string mechanism = text(5);
  ZapDecision d;
  d.address = text(3);
  d.fingerprint = "none";
  if (version != "1.0" || parts.size() < 7) {
    d.reason = "malformed ZAP request";
  } else if (domain != kZapDomain) {
    d.reason = "wrong ZAP domain '" + domain + "'";
  } else if (mechanism != "CURVE") {
    d.reason = "mechanism " + mechanism + " (only CURVE is accepted)";
  } else if (parts[6].size() != 32) {
    d.reason = "malformed CURVE credentials";
  } else {
    const auto* key = static_cast<const unsigned char*>(parts[6].data());
    d.fingerprint = fingerprintRaw(key);
    for (const auto& a : allowed_) {
      if (std::memcmp(a.key.data(), key, 32) == 0) {
        d.admitted = true;
        d.name = a.name;
      }
    }
    if (!d.admitted) d.reason = "unknown key";
  }
  if (d.admitted) {
    log_->info("[{}] admitted peer '{}' [{}] from {}", tag_, d.name, d.fingerprint, d.address);
  } else {
    // One warning per key and minute: a misconfigured peer retries every few seconds.
    const auto now = std::chrono::steady_clock::now();
    auto& last = lastRefusalLog_[d.fingerprint];
    const bool loud =
        last == std::chrono::steady_clock::time_point{} || now - last >= std::chrono::minutes(1);
    if (loud) last = now;
    log_->log(
        loud ? spdlog::level::warn : spdlog::level::debug,
        "[{}] refused a connection from {}: {} (key fingerprint {}) — if that node is yours, pair it here "
        "with 'ferry pair --peer-key KEY --name NAME'",
        tag_, d.address, d.reason, d.fingerprint);
  }
  const std::string status = d.admitted ? "200" : "400";
  const std::array<std::string, 6> reply{"1.0", requestId, status, d.admitted ? "OK" : d.reason, d.name, ""};
  for (size_t i = 0; i < reply.size(); ++i) {
    zmq::message_t m(reply[i].data(), reply[i].size());
    (void)socket_.send(m, i + 1 < reply.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
  }
  return d;
}

Status makeCurveServer(zmq::socket_t& socket, const std::string& secretKeyZ85, spdlog::logger& log,
                       const std::string& tag) {
  std::array<unsigned char, 32> secret{};
  if (!decodeKey(secretKeyZ85, secret))
    return makeError("this node's secret key is invalid", "run ferry keygen");
  socket.set(zmq::sockopt::curve_server, 1);
  socket.set(zmq::sockopt::curve_secretkey, zmq::const_buffer(secret.data(), secret.size()));
  secret.fill(0);
  socket.set(zmq::sockopt::zap_domain, kZapDomain);
  int one = 1;
  if (zmq_setsockopt(socket.handle(), kZmqZapEnforceDomain, &one, sizeof one) != 0) {
    log.warn("[{}] libzmq refused ZMQ_ZAP_ENFORCE_DOMAIN: {}", tag, zmq_strerror(zmq_errno()));
  }
  return okStatus();
}

}  // namespace ferry::protocol
