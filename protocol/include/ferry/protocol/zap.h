// The ZAP handler of every CurveZMQ listener in ferry (the node's PeerLink and the
// switch agent): CURVE alone authenticates only the server, so a listener admits a
// client only when this handler, bound in the same ZeroMQ context before the
// listener, finds the client's public key among the paired ones.
#pragma once

#include <array>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "ferry/base/error.h"
#include "ferry/protocol/keys.h"

namespace ferry::protocol {

// The ZAP domain ferry's listeners enforce (ZMQ_ZAP_ENFORCE_DOMAIN).
inline constexpr const char* kZapDomain = "ferry";

// One answered ZAP request.
struct ZapDecision {
  bool admitted = false;
  std::string name;         // the paired name (admitted); also the ZMTP User-Id of its frames
  std::string fingerprint;  // of the client's key; "none" when it sent no usable key
  std::string address;      // the client's IP address
  std::string reason;       // why it was refused
};

// Answers ZAP requests (ZeroMQ RFC 27) for the CURVE listeners of one context. It is
// owned and polled by the thread that owns the listener; it logs every admission,
// and every refusal with the address, the reason and the key's fingerprint (one
// warning per key and minute, the rest at debug) — never a key.
class ZapHandler {
 public:
  // Binds inproc://zeromq.zap.01 in `ctx`; call it before the listener binds.
  // Refuses an empty allow-list or an invalid key. `tag` prefixes every log line.
  static Result<std::unique_ptr<ZapHandler>> bind(zmq::context_t& ctx, const std::vector<PeerKey>& allowed,
                                                  std::string tag, std::shared_ptr<spdlog::logger> log);
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  // For zmq::poll.
  zmq::socket_t& socket() { return socket_; }
  // Answers one pending request; nullopt when none is waiting. Never blocks.
  std::optional<ZapDecision> handleOne();
  // The fingerprint of a paired key by its name; empty when the name is unknown.
  [[nodiscard]] std::string fingerprintOf(const std::string& name) const;
  [[nodiscard]] size_t allowedCount() const { return allowed_.size(); }

 private:
  ZapHandler(std::string tag, std::shared_ptr<spdlog::logger> log)
      : tag_(std::move(tag)), log_(std::move(log)) {}

  struct AllowedKey {
    std::array<unsigned char, 32> key;
    std::string name;
  };

  std::string tag_;
  std::shared_ptr<spdlog::logger> log_;
  zmq::socket_t socket_;
  std::vector<AllowedKey> allowed_;
  std::map<std::string, std::chrono::steady_clock::time_point>
      lastRefusalLog_;  // fingerprint -> last warning
};

// Makes `socket` (a listener not yet bound) a CURVE server with this secret key whose
// clients the ZapHandler of the same context must admit (domain `kZapDomain`,
// enforced). Fails on an invalid key.
Status makeCurveServer(zmq::socket_t& socket, const std::string& secretKeyZ85, spdlog::logger& log,
                       const std::string& tag);

}  // namespace ferry::protocol
