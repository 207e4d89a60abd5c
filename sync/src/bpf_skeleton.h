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
  volatile std::uint64_t* flag_mismatch = nullptr;
};

class BpfSkeleton {
 public:
  // Opens, loads and attaches the programs (the iterators to links of their own: identity
  // restricted to this process, the mapping scan over all). On failure returns null and
  // sets *error to the step and the errno text.
  static BpfSkeleton* open(std::string* error);
  ~BpfSkeleton();
  BpfSkeleton(const BpfSkeleton&) = delete;
  BpfSkeleton& operator=(const BpfSkeleton&) = delete;
  [[nodiscard]] int watchedFd() const;
  [[nodiscard]] int eventsFd() const;
  [[nodiscard]] std::vector<int> programFds() const;
  [[nodiscard]] BpfCounters counters() const;
  // What descriptor `fd` of this process is (the task_file iterator). False with *error set
  // when the iterator fails or says nothing.
  bool identify(int fd, ft_probe* out, std::string* error);
  // Runs the task_vma iterator over every process: watched files with a shared writable
  // mapping get their `mapped` counter raised.
  bool scanMappings(std::string* error);

 private:
  BpfSkeleton() = default;
  void* skel_ = nullptr;
  void* identify_link_ = nullptr;  // bpf_link*
  void* scan_link_ = nullptr;      // bpf_link*
};

}  // namespace ferry::sync::detail
