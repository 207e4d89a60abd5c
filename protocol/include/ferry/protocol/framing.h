// One Cap'n Proto message per ZeroMQ frame, checked before anything reads it.
//
// Untrusted bytes come in through decodeFrame(): the size must be a multiple of 8
// and under a maximum, a misaligned buffer is copied, the reader has tight
// traversal and nesting limits, and the whole pointer tree is bounds-checked once
// eagerly. Readers still validate lazily, so code that reads fields of a received
// message runs inside readGuarded(), which turns a kj::Exception into an Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <zmq.hpp>

#include "ferry/base/error.h"
#include "ferry/protocol/schema/message.capnp.h"

namespace ferry::protocol {

// The protocol version this build speaks (from link.capnp) and the oldest it accepts.
inline constexpr uint32_t kProtocolVersion = wire::PROTOCOL_VERSION;
inline constexpr uint32_t kMinProtocolVersion = 1;

inline constexpr size_t kDefaultMaxFrameBytes = size_t{8} << 20;  // 8 MiB

// Protocol version 2: the most blocks one blockBundle may carry (at 16 KiB blocks, 4 MiB,
// half of the default frame limit).
inline constexpr uint32_t kBundleProtocolVersion = 2;
inline constexpr size_t kMaxBundleBlocks = 256;

struct DecodeLimits {
  size_t maxFrameBytes = kDefaultMaxFrameBytes;
  // Words the reader may traverse in total; 0 means 4 × the frame's words + 1024
  // (reading every field a few times, never an amplification attack).
  uint64_t traversalLimitWords = 0;
  int nestingLimit = 16;  // ferry's schemas nest 4 deep
};

namespace detail {
struct FrameDecoder;
}

// A received frame: owns the (aligned) bytes and the reader over them.
class DecodedFrame {
 public:
  DecodedFrame(const DecodedFrame&) = delete;
  DecodedFrame& operator=(const DecodedFrame&) = delete;
  ~DecodedFrame();

  template <typename T>
  typename T::Reader root() const {
    return reader_->getRoot<T>();
  }
  wire::Message::Reader message() const { return root<wire::Message>(); }
  size_t sizeBytes() const { return sizeBytes_; }
  bool copied() const { return copied_; }  // true when alignment forced a copy

 private:
  friend struct detail::FrameDecoder;
  DecodedFrame() = default;
  zmq::message_t frame_;         // kept when its data was already aligned
  kj::Array<capnp::word> copy_;  // used otherwise
  std::unique_ptr<capnp::FlatArrayMessageReader> reader_;
  size_t sizeBytes_ = 0;
  bool copied_ = false;
};

// Decodes a frame taken from a socket (no copy when libzmq's buffer is aligned).
Result<std::unique_ptr<DecodedFrame>> decodeFrame(zmq::message_t&& frame, const DecodeLimits& limits = {});
// Decodes bytes (always copied into an aligned buffer).
Result<std::unique_ptr<DecodedFrame>> decodeFrame(std::span<const std::byte> bytes,
                                                  const DecodeLimits& limits = {});

// Serialises a message as one flat frame (segment table + segments).
kj::Array<capnp::word> encodeMessage(capnp::MessageBuilder& message);
zmq::message_t encodeFrame(capnp::MessageBuilder& message);

// Semantic checks on a decoded envelope: a known body, paths that stay inside the
// data directory (validateWirePath), block lengths that match their data. Never
// throws; a failure names the field.
Status validateMessage(wire::Message::Reader message);
// The same on a decoded frame, reading its root inside the guard too.
Status validateFrame(const DecodedFrame& frame);

// Name of a body kind for logs ("hello", "blockData", ...); "unknown(N)" otherwise.
std::string bodyName(wire::Message::Body::Which which);

// True for hello, heartbeat, credit and ack: link control, never sequenced.
bool isLinkControl(wire::Message::Body::Which which);

// Runs `fn` (returning Status) and turns a kj::Exception from a lazily validating
// reader into an Error naming `what`. Use it wherever received fields are read.
template <typename F>
Status readGuarded(std::string_view what, F&& fn) noexcept {
  try {
    return std::forward<F>(fn)();
  } catch (const kj::Exception& e) {
    return makeError(
        std::string(what) + ": malformed message (" + std::string(e.getDescription().cStr()) + ")",
        "the peer sent bytes that do not parse; it was refused and not applied");
  } catch (const std::exception& e) {
    return makeError(std::string(what) + ": " + e.what());
  }
}

}  // namespace ferry::protocol
