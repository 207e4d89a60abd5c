// Built when clang, bpftool or libbpf were missing at build time.
#include "ferry/sync/write_tracker.h"

namespace ferry::sync {

Result<std::unique_ptr<WriteTracker>> openBpfWriteTracker() {
  return makeError("write tracking off: ferry was built without eBPF (clang, bpftool, libbpf-dev)",
                   "install them (deploy/packages/sync.txt) and rebuild");
}

}  // namespace ferry::sync
