// The eBPF WriteTracker: loads bpf/write_tracker.bpf.c (tracepoints), fills its `watched`
// map with the real inodes of the mirror's files and turns ring-buffer records into
// per-file dirty ranges. sync/README.md ("Write tracking") has the why.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <vector>

#include "bpf_skeleton.h"
#include "ferry/base/log.h"
#include "ferry/sync/write_tracker.h"
#include "write_tracker_abi.h"

namespace ferry::sync {

namespace {

constexpr std::uint64_t kExt4Magic = 0xEF53;
constexpr std::uint64_t kExt4InlineData = 0x8000;  // EXT4_FEATURE_INCOMPAT_INLINE_DATA

struct KeyLess {
  bool operator()(const ft_key& a, const ft_key& b) const {
    return a.dev != b.dev ? a.dev < b.dev : a.ino < b.ino;
  }
};

std::string kernelRelease() {
  struct utsname u {};
  return ::uname(&u) == 0 ? std::string(u.release) : std::string("?");
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

class BpfWriteTracker final : public WriteTracker {
 public:
  explicit BpfWriteTracker(detail::BpfSkeleton* skel) : skel_(skel) {}
  ~BpfWriteTracker() override {
    if (ring_) ring_buffer__free(ring_);
  }
  BpfWriteTracker(const BpfWriteTracker&) = delete;
  BpfWriteTracker& operator=(const BpfWriteTracker&) = delete;

  Status init() {
    ring_ = ring_buffer__new(skel_->eventsFd(), &BpfWriteTracker::onRecord, this, nullptr);
    if (!ring_)
      return makeError(std::string("cannot read the write tracker's ring buffer: ") + std::strerror(errno));
    misses_ = recursionMisses();
    return okStatus();
  }

  Status watch(const std::string& path, FileId id) override {
    if (by_id_.contains(id)) return okStatus();
    int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return makeError("cannot open " + path + " to track it: " + std::strerror(errno));
    FdCloser closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != id.ino || st.st_dev != id.dev)
      return makeError(path + " changed while it was being tracked", "the next round looks again");
    ft_probe p{};
    std::string why;
    if (!skel_->identify(fd, &p, &why)) return makeError("cannot track " + path + ": " + why);
    if (p.overlay_lower_only) return makeError(path + ": overlayfs file not copied up yet");
    if (p.real_magic != kExt4Magic)
      return makeError(path + ": not on ext4 (the tracker reads ext4 tracepoints)");
    if (p.ext4_incompat & kExt4InlineData)
      return makeError(path + ": ext4 with inline_data (writes bypass the tracepoints)");
    ft_state zero{};
    if (bpf_map_update_elem(skel_->watchedFd(), &p.real, &zero, BPF_NOEXIST) != 0 && errno != EEXIST)
      return makeError("cannot track " + path + ": " + std::strerror(errno),
                       "too many files? (65536 at most)");
    by_key_[p.real] = id;
    by_id_[id] = p.real;
    seen_[p.real] = ft_state{};
    unsettled_.push_back(id);
    return okStatus();
  }

  void settleWatches() override {
    if (unsettled_.empty()) return;
    std::string why;
    if (!skel_->scanMappings(&why)) {  // unknown: the next drain untracks the new files
      log::get("sync")->warn("write tracker: {}; {} newly watched files are re-read whole from now on", why,
                             unsettled_.size());
      scan_failed_.insert(unsettled_.begin(), unsettled_.end());
    }
    unsettled_.clear();
  }

  void unwatch(FileId id) override {
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return;
    bpf_map_delete_elem(skel_->watchedFd(), &it->second);
    by_key_.erase(it->second);
    seen_.erase(it->second);
    by_id_.erase(it);
  }

  TrackedChanges drain() override {
    out_ = TrackedChanges{};
    ring_buffer__consume(ring_);
    for (auto& id : scan_failed_) {
      if (!by_id_.contains(id)) continue;
      out_.untracked.insert(id);
      unwatch(id);
    }
    scan_failed_.clear();
    auto c = skel_->counters();
    std::uint64_t lost = *c.lost_total, mapped = *c.mapped_total;
    if (lost != last_lost_ || mapped != last_mapped_) {
      last_lost_ = lost;
      last_mapped_ = mapped;
      std::vector<FileId> drop;
      for (auto& [key, id] : by_key_) {
        ft_state st{};
        if (bpf_map_lookup_elem(skel_->watchedFd(), &key, &st) != 0) {
          out_.whole.insert(id);
          continue;
        }
        ft_state& was = seen_[key];
        if (st.mapped != was.mapped || st.unordered != was.unordered) drop.push_back(id);
        if (st.lost != was.lost) out_.whole.insert(id);
        was = st;
      }
      for (auto& id : drop) {
        out_.untracked.insert(id);
        unwatch(id);
      }
    }
    if (std::uint64_t m = *c.flag_mismatch; m != last_mismatch_) {
      last_mismatch_ = m;
      log::get("sync")->warn(
          "write tracker: an asynchronous direct I/O's IOCB_WRITE flag disagreed with its direction on "
          "Linux {} (has the flag's value changed?); the files concerned are re-read whole from now on",
          kernelRelease());
    }
    // A tracepoint program that was already running on a CPU (interrupted by a completion
    // on the same CPU) is skipped by the kernel and counted in recursion_misses.
    std::uint64_t misses = recursionMisses();
    if (misses != misses_) {
      misses_ = misses;
      out_.all_lost = true;
    }
    return std::move(out_);
  }

  [[nodiscard]] std::string name() const override { return "ebpf"; }

 private:
  static int onRecord(void* ctx, void* data, std::size_t size) {
    auto* self = static_cast<BpfWriteTracker*>(ctx);
    if (size < sizeof(ft_event)) return 0;
    ft_event ev{};
    std::memcpy(&ev, data, sizeof ev);
    auto it = self->by_key_.find(ev.key);
    if (it == self->by_key_.end()) return 0;  // unwatched since
    self->out_.ranges[it->second].push_back({ev.offset, ev.length});
    return 0;
  }

  [[nodiscard]] std::uint64_t recursionMisses() const {
    std::uint64_t total = 0;
    for (int fd : skel_->programFds()) {
      bpf_prog_info info{};
      std::uint32_t len = sizeof info;
      if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) total += info.recursion_misses;
    }
    return total;
  }

  std::unique_ptr<detail::BpfSkeleton> skel_;
  ring_buffer* ring_ = nullptr;
  std::map<ft_key, FileId, KeyLess> by_key_;
  std::map<FileId, ft_key> by_id_;
  std::map<ft_key, ft_state, KeyLess> seen_;
  std::uint64_t last_lost_ = 0, last_mapped_ = 0, last_mismatch_ = 0, misses_ = 0;
  std::vector<FileId> unsettled_;  // watched since the last mapping scan
  std::set<FileId> scan_failed_;   // the mapping scan failed after these were watched
  TrackedChanges out_;
};

}  // namespace

Result<std::unique_ptr<WriteTracker>> openBpfWriteTracker() {
  if (::access("/sys/kernel/btf/vmlinux", R_OK) != 0)
    return makeError("write tracking off: the kernel has no BTF (/sys/kernel/btf/vmlinux)",
                     "a kernel built with CONFIG_DEBUG_INFO_BTF=y enables it");
  struct utsname u {};
  if (::uname(&u) != 0 || std::strcmp(u.machine, "x86_64") != 0)
    return makeError(std::string("write tracking off: only x86-64 is supported, this is ") + u.machine);
  std::string why;
  detail::BpfSkeleton* skel = detail::BpfSkeleton::open(&why);
  if (!skel)
    return makeError(
        "write tracking off: cannot " + why,
        "needs root with CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) and tracepoint BTF (Linux >= 5.5)");
  auto tracker = std::make_unique<BpfWriteTracker>(skel);
  FERRY_TRY(tracker->init());
  return std::unique_ptr<WriteTracker>(std::move(tracker));
}

}  // namespace ferry::sync
