// Internal: the generated libbpf skeleton behind a small interface, so that only
// bpf_skeleton.cc (compiled with the generated code's relaxed warnings) includes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

struct ft_probe;

namespace ferry::sync::detail {

struct BpfCounters {
  volatile std::uint64_t* lost_total = nullptr;
  volatile std::uint64_t* events_total = nullptr;
  volatile std::uint64_t* mapped_total = nullptr;
  volatile std::uint32_t* probe_tgid = nullptr;
  volatile ft_probe* probe = nullptr;
};

class BpfSkeleton {
 public:
  // Opens, loads and attaches the program. On failure returns null and sets *error to the
  // step and the errno text.
  static BpfSkeleton* open(std::string* error);
  ~BpfSkeleton();
  BpfSkeleton(const BpfSkeleton&) = delete;
  BpfSkeleton& operator=(const BpfSkeleton&) = delete;
  [[nodiscard]] int watchedFd() const;
  [[nodiscard]] int eventsFd() const;
  [[nodiscard]] std::vector<int> programFds() const;
  [[nodiscard]] BpfCounters counters() const;

 private:
  BpfSkeleton() = default;
  void* skel_ = nullptr;
};

}  // namespace ferry::sync::detail
