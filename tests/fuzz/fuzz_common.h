// Shared by the fuzz targets: feed bytes to the receive path exactly as the
// PeerLink does, then read every field (capnp readers validate lazily).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/string.h>

#include "ferry/protocol/framing.h"

namespace ferry::protocol::fuzz {

inline std::span<const std::byte> asSpan(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const std::byte*>(data), size};
}

// Decode, validate, and stringify (which visits every field of every struct).
inline void exerciseFrame(const DecodedFrame& frame) {
  (void)validateFrame(frame);
  (void)readGuarded("fuzz: reading every field", [&]() -> Status {
    kj::String text = kj::str(frame.message());
    (void)text;
    return okStatus();
  });
}

// Per-type targets: the input is one body struct as the root; it is copied into an
// envelope (as a handler would after receiving it), re-encoded and fed back.
template <typename Body, typename Setter>
int fuzzBody(const uint8_t* data, size_t size, Setter set) {
  auto decoded = decodeFrame(asSpan(data, size));
  if (!decoded.ok()) return 0;
  (void)readGuarded("fuzz: body", [&]() -> Status {
    capnp::MallocMessageBuilder builder;
    auto envelope = builder.initRoot<wire::Message>();
    envelope.setEpoch(1);
    envelope.setSeq(1);
    set(envelope.getBody(), (*decoded)->root<Body>());
    kj::Array<capnp::word> words = encodeMessage(builder);
    auto bytes = words.asBytes();
    auto again = decodeFrame(asSpan(bytes.begin(), bytes.size()));
    if (again.ok()) exerciseFrame(**again);
    return okStatus();
  });
  return 0;
}

}  // namespace ferry::protocol::fuzz
