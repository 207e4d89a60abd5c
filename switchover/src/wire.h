// Internal: SwitchMessage frames (protocol/schema/switchover.capnp) to and from the
// plain structs of driver.h. Received frames are decoded with protocol's
// decodeFrame and checked with validateSwitchFrame before these read them.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>

#include "ferry/base/error.h"
#include "ferry/protocol/framing.h"
#include "ferry/switchover/driver.h"

namespace ferry::switchover::wirecodec {

enum class Step { kPrepare, kCommit, kRollback };
std::string stepName(Step step);

struct Request {
  uint64_t requestId = 0;
  Step step = Step::kPrepare;
  std::string driver;  // "proxy", "haproxy", "nginx"
  SwitchPlan plan;
  std::string nodeId;
};

struct Reply {
  uint64_t requestId = 0;
  Result<SwitchReport> result = makeError("no reply");
};

// `request.driver` must be proxy, haproxy or nginx.
Result<zmq::message_t> encodeRequest(const Request& request);
zmq::message_t encodeReply(uint64_t requestId, const Result<SwitchReport>& result);

// Decodes and validates untrusted bytes (size, alignment, traversal limits, then
// validateSwitchFrame, then a version check).
Result<std::unique_ptr<protocol::DecodedFrame>> decode(zmq::message_t&& frame);
// The request id of a decoded message, even one that is otherwise refused (0: none).
uint64_t requestIdOf(const protocol::DecodedFrame& frame);
Result<Request> readRequest(const protocol::DecodedFrame& frame);
Result<Reply> readReply(const protocol::DecodedFrame& frame);

}  // namespace ferry::switchover::wirecodec
