// Wraps the skeleton bpftool generated from bpf/write_tracker.bpf.c (the ELF object is
// embedded in it). Compiled in its own target: generated code, relaxed warnings.
#include "bpf_skeleton.h"

#include <bpf/bpf.h>
#include <unistd.h>

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
  // The iterators are attached below, each to its own link.
  bpf_program__set_autoattach(s->progs.identify, false);
  bpf_program__set_autoattach(s->progs.scan_mappings, false);
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
  s->bss->probe_tgid = static_cast<unsigned int>(::getpid());
  union bpf_iter_link_info own {};
  own.task.pid = static_cast<__u32>(::getpid());
  DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, own_opts, .link_info = &own, .link_info_len = sizeof own);
  bpf_link* identify = bpf_program__attach_iter(s->progs.identify, &own_opts);
  if (!identify)  // kernels before 6.1 cannot restrict it; the program filters by process
    identify = bpf_program__attach_iter(s->progs.identify, nullptr);
  bpf_link* scan = identify ? bpf_program__attach_iter(s->progs.scan_mappings, nullptr) : nullptr;
  if (!identify || !scan) {
    *error = std::string("attach the BPF iterators: ") + std::strerror(errno);
    if (identify) bpf_link__destroy(identify);
    delete out;
    return nullptr;
  }
  out->identify_link_ = identify;
  out->scan_link_ = scan;
  return out;
}

BpfSkeleton::~BpfSkeleton() {
  if (identify_link_) bpf_link__destroy(static_cast<bpf_link*>(identify_link_));
  if (scan_link_) bpf_link__destroy(static_cast<bpf_link*>(scan_link_));
  ferry_write_tracker::destroy(static_cast<ferry_write_tracker*>(skel_));
}

namespace {

// Runs an iterator once; reads at most `size` bytes of its output into `out` (the rest is
// consumed and dropped). Returns the bytes kept, or -errno.
long runIterator(bpf_link* link, void* out, std::size_t size) {
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) return -errno;
  std::size_t got = 0;
  char scratch[4096];
  for (;;) {
    char* dst = got < size ? static_cast<char*>(out) + got : scratch;
    std::size_t room = got < size ? size - got : sizeof scratch;
    ssize_t n = ::read(fd, dst, room);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return -e;
    }
    if (n == 0) break;
    if (got < size) got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  return static_cast<long>(got);
}

}  // namespace

bool BpfSkeleton::identify(int fd, ft_probe* out, std::string* error) {
  auto* s = static_cast<ferry_write_tracker*>(skel_);
  s->bss->probe_fd = static_cast<unsigned int>(fd);
  long n = runIterator(static_cast<bpf_link*>(identify_link_), out, sizeof *out);
  if (n < 0) {
    *error = std::string("the identity iterator failed: ") + std::strerror(static_cast<int>(-n));
    return false;
  }
  if (static_cast<std::size_t>(n) != sizeof *out) {
    *error = "the identity iterator did not find descriptor " + std::to_string(fd);
    return false;
  }
  return true;
}

bool BpfSkeleton::scanMappings(std::string* error) {
  long n = runIterator(static_cast<bpf_link*>(scan_link_), nullptr, 0);
  if (n < 0) {
    *error = std::string("the mapping scan failed: ") + std::strerror(static_cast<int>(-n));
    return false;
  }
  return true;
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
  c.flag_mismatch = &s->bss->flag_mismatch;
  return c;
}

}  // namespace ferry::sync::detail
