// Fuzz target: the envelope decoder, i.e. any bytes a peer can put in a frame.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ferry::protocol;
  auto decoded = decodeFrame(fuzz::asSpan(data, size));
  if (decoded.ok()) fuzz::exerciseFrame(**decoded);
  return 0;
}
