// Wraps the skeleton bpftool generated from bpf/write_tracker.bpf.c (the ELF object is
// embedded in it). Compiled in its own target: generated code, relaxed warnings.
#include "bpf_skeleton.h"

#include <cerrno>
#include <cstring>

// clang-format off
#include "write_tracker_abi.h"
#include "write_tracker.skel.h"
// clang-format on

namespace ferry::sync::detail {

BpfSkeleton* BpfSkeleton::open(std::string* error) {
  libbpf_set_print(nullptr);  // the caller reports one clear line instead
  ferry_write_tracker* s = ferry_write_tracker::open();
  if (!s) {
    *error = std::string("open the embedded BPF object: ") + std::strerror(errno);
    return nullptr;
  }
  int r = ferry_write_tracker::load(s);
  if (r != 0) {
    *error = std::string("load the BPF programs: ") + std::strerror(-r);
    ferry_write_tracker::destroy(s);
    return nullptr;
  }
  r = ferry_write_tracker::attach(s);
  if (r != 0) {
    *error = std::string("attach to the tracepoints: ") + std::strerror(-r);
    ferry_write_tracker::destroy(s);
    return nullptr;
  }
  auto* out = new BpfSkeleton();
  out->skel_ = s;
  return out;
}

BpfSkeleton::~BpfSkeleton() {
  ferry_write_tracker::destroy(static_cast<ferry_write_tracker*>(skel_));
}

int BpfSkeleton::watchedFd() const {
  return bpf_map__fd(static_cast<ferry_write_tracker*>(skel_)->maps.watched);
}
int BpfSkeleton::eventsFd() const {
  return bpf_map__fd(static_cast<ferry_write_tracker*>(skel_)->maps.events);
}
std::vector<int> BpfSkeleton::programFds() const {
  auto* s = static_cast<ferry_write_tracker*>(skel_);
  std::vector<int> fds;
  bpf_program* p = nullptr;
  bpf_object__for_each_program(p, s->obj) fds.push_back(bpf_program__fd(p));
  return fds;
}
BpfCounters BpfSkeleton::counters() const {
  auto* s = static_cast<ferry_write_tracker*>(skel_);
  BpfCounters c;
  c.lost_total = &s->bss->lost_total;
  c.events_total = &s->bss->events_total;
  c.mapped_total = &s->bss->mapped_total;
  c.probe_tgid = &s->bss->probe_tgid;
  c.probe = &s->bss->probe;
  return c;
}

}  // namespace ferry::sync::detail
