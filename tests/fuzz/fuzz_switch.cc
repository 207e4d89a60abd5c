// Fuzz targets for the switch-over control messages (protocol/schema/switchover.capnp),
// everything a node or the switch agent can put in a frame:
//   (default)                         the whole SwitchMessage, as the agent receives it
//   -DFERRY_FUZZ_SWITCH_BODY=Request  a SwitchRequest as the root, copied into an envelope
//   -DFERRY_FUZZ_SWITCH_BODY=Reply    a SwitchReply likewise
// Each input is decoded with the agent's limits, validated, printed (kj::str visits
// every field) and read by the codec the agent and the node use.
#include "ferry/protocol/switch_messages.h"
#include "fuzz_common.h"
#include "wire.h"

namespace {

namespace proto = ferry::protocol;
namespace wire = ferry::protocol::wire;
namespace wc = ferry::switchover::wirecodec;

void exercise(const proto::DecodedFrame& frame) {
  (void)proto::validateSwitchFrame(frame);
  (void)proto::readGuarded("fuzz: reading every field", [&]() -> ferry::Status {
    kj::String text = kj::str(frame.root<wire::SwitchMessage>());
    (void)text;
    return ferry::okStatus();
  });
  (void)wc::readRequest(frame);
  (void)wc::readReply(frame);
  (void)wc::requestIdOf(frame);
}

proto::DecodeLimits limits() {
  proto::DecodeLimits l;
  l.maxFrameBytes = proto::kMaxSwitchFrameBytes;
  return l;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto decoded = proto::decodeFrame(proto::fuzz::asSpan(data, size), limits());
  if (!decoded.ok()) return 0;
#ifndef FERRY_FUZZ_SWITCH_BODY
  exercise(**decoded);
#else
#define FERRY_FUZZ_CAT2(a, b) a##b
#define FERRY_FUZZ_CAT(a, b) FERRY_FUZZ_CAT2(a, b)
  using Body = wire::FERRY_FUZZ_CAT(Switch, FERRY_FUZZ_SWITCH_BODY);
  (void)proto::readGuarded("fuzz: body", [&]() -> ferry::Status {
    capnp::MallocMessageBuilder builder;
    auto envelope = builder.initRoot<wire::SwitchMessage>();
    envelope.setProtocolVersion(proto::kSwitchProtocolVersion);
    envelope.setMinProtocolVersion(proto::kMinSwitchProtocolVersion);
    envelope.setRequestId(1);
    envelope.getBody().FERRY_FUZZ_CAT(set, FERRY_FUZZ_SWITCH_BODY)((*decoded)->root<Body>());
    kj::Array<capnp::word> words = proto::encodeMessage(builder);
    auto bytes = words.asBytes();
    auto again = proto::decodeFrame(proto::fuzz::asSpan(bytes.begin(), bytes.size()), limits());
    if (again.ok()) exercise(**again);
    return ferry::okStatus();
  });
#endif
  return 0;
}
