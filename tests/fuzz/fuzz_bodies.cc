#include "fuzz_bodies.h"

#include "fuzz_common.h"

namespace ferry::protocol::fuzz {

#define FERRY_FUZZ_DEFINE(T)                                                                                \
  int fuzz##T(const uint8_t* data, size_t size) {                                                           \
    return fuzzBody<wire::T>(data, size,                                                                    \
                             [](wire::Message::Body::Builder body, wire::T::Reader r) { body.set##T(r); }); \
  }
FERRY_FUZZ_BODIES(FERRY_FUZZ_DEFINE)
#undef FERRY_FUZZ_DEFINE

}  // namespace ferry::protocol::fuzz
