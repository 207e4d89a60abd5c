// Fuzz target for one message type, chosen at build time:
//   -DFERRY_FUZZ_BODY=FileMeta  builds the target for wire::FileMeta.
// The work is in fuzz_bodies.cc (compiled once for all types).
#include "fuzz_bodies.h"

#ifndef FERRY_FUZZ_BODY
#error "define FERRY_FUZZ_BODY as a wire struct name, e.g. FileMeta"
#endif

#define FERRY_FUZZ_CAT2(a, b) a##b
#define FERRY_FUZZ_CAT(a, b) FERRY_FUZZ_CAT2(a, b)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ferry::protocol::fuzz::FERRY_FUZZ_CAT(fuzz, FERRY_FUZZ_BODY)(data, size);
}
