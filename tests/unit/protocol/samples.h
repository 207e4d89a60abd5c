// One realistic message of every body type: the round-trip tests, the golden files
// and the fuzz seed corpus are all made from these.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <capnp/message.h>

#include "ferry/protocol/framing.h"

namespace ferry::protocol::testing {

struct Sample {
  std::string name;  // == bodyName() of its body
  std::function<void(wire::Message::Builder)> fill;
};

const std::vector<Sample>& samples();

// The sample as an encoded envelope.
kj::Array<capnp::word> encodeSample(const Sample& sample);
// The sample's body alone as the root struct (the per-type fuzz targets' input);
// empty for a Void body.
kj::Array<capnp::word> encodeSampleBody(const Sample& sample);

std::string toBytes(kj::ArrayPtr<const capnp::word> words);

}  // namespace ferry::protocol::testing
