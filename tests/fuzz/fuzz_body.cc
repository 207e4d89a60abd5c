// Fuzz target for one message type, chosen at build time:
//   -DFERRY_FUZZ_BODY=FileMeta  builds the target for wire::FileMeta.
#include "fuzz_common.h"

#ifndef FERRY_FUZZ_BODY
#error "define FERRY_FUZZ_BODY as a wire struct name, e.g. FileMeta"
#endif

#define FERRY_FUZZ_CAT2(a, b) a##b
#define FERRY_FUZZ_CAT(a, b) FERRY_FUZZ_CAT2(a, b)

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::protocol;
  using Body = wire::FERRY_FUZZ_BODY;
  return fuzz::fuzzBody<Body>(data, size, [](wire::Message::Body::Builder body, Body::Reader reader) {
    body.FERRY_FUZZ_CAT(set, FERRY_FUZZ_BODY)(reader);
  });
}
