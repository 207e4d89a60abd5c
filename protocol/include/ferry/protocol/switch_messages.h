// The switch-over control messages (schema/switchover.capnp): what a node and the
// switch agent on the load-balancer host (`ferry proxy run`) exchange. They travel
// as one SwitchMessage per ZeroMQ frame, decoded with decodeFrame() like every
// other frame (size, alignment, traversal and nesting limits) and then checked
// here before anything acts on them.
#pragma once

#include <cstdint>
#include <string>

#include "ferry/base/error.h"
#include "ferry/protocol/framing.h"
#include "ferry/protocol/schema/switchover.capnp.h"

namespace ferry::protocol {

inline constexpr uint32_t kSwitchProtocolVersion = wire::SWITCH_PROTOCOL_VERSION;
inline constexpr uint32_t kMinSwitchProtocolVersion = 1;

// Control frames are small: a request is a few hundred bytes, a reply under 16 KiB.
inline constexpr size_t kMaxSwitchFrameBytes = size_t{64} << 10;

// Semantic checks on a decoded SwitchMessage: a known body, a version and request id,
// a known step and driver, a service name of [A-Za-z0-9._-], host names without
// spaces or control bytes, ports 1..65535, bounded timeouts and texts. Never throws;
// a failure names the field.
Status validateSwitchMessage(wire::SwitchMessage::Reader message);
// The same on a decoded frame, reading its root inside the guard.
Status validateSwitchFrame(const DecodedFrame& frame);

// "prepare", "commit", "rollback"; "unknown(N)" otherwise.
std::string switchStepName(wire::SwitchStep step);
// "proxy", "haproxy", "nginx"; "unknown(N)" otherwise.
std::string switchDriverName(wire::SwitchDriver driver);

}  // namespace ferry::protocol
