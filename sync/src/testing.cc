#include "ferry/sync/testing.h"

namespace ferry::sync {

void CrashPoints::arm(std::string point, std::uint64_t nth) {
  point_ = std::move(point);
  nth_ = nth;
  fired_ = false;
  hits_.clear();
}

bool CrashPoints::shouldFail(std::string_view point) {
  auto it = hits_.find(point);
  if (it == hits_.end()) it = hits_.emplace(std::string(point), 0).first;
  std::uint64_t n = ++it->second;
  if (!fired_ && nth_ > 0 && point == point_ && n == nth_) {
    fired_ = true;
    return true;
  }
  return false;
}

std::uint64_t CrashPoints::hits(const std::string& point) const {
  auto it = hits_.find(point);
  return it == hits_.end() ? 0 : it->second;
}

LoopbackLink::LoopbackLink(DirectoryMirror& mirror, ReplicaWriter& replica, FaultInjector* faults)
    : mirror_(mirror), replica_(&replica), faults_(faults) {}

Status LoopbackLink::send(Message message) {
  if (cut_) return makeError("loopback link is cut", "reconnect");
  if (faults_ != nullptr && faults_->shouldFail("link.send")) {
    cut_ = true;
    return makeError("loopback link cut at an injected crash point");
  }
  ++counters_.messages;
  counters_.wire_bytes += wireSize(message);
  if (const auto* b = std::get_if<Block>(&message)) {
    if (b->compression != Compression::kZeros) {
      ++counters_.blocks;
      counters_.block_bytes += b->length;
    }
  }
  const auto* end = std::get_if<BatchEnd>(&message);
  std::uint64_t epoch = end ? end->epoch : 0, seq = end ? end->seq : 0;
  Status s = replica_->apply(message);
  if (!s.ok()) {
    cut_ = true;  // a real link would drop the session too
    return s;
  }
  if (end) mirror_.acknowledge(epoch, seq);
  return okStatus();
}

Status LoopbackLink::reconnect(ReplicaWriter& replica) {
  replica_ = &replica;
  cut_ = false;
  ResumeState state = replica.resumeState();
  HashRequest req = mirror_.resumeRequest(state);
  auto hashes = replica.hashFiles(req);
  if (!hashes.ok()) return hashes.error();
  for (auto& f : *hashes) counters_.resume_bytes += 64 + f.path.size() + 8 * f.hashes.size();
  return mirror_.resume(state, *hashes);
}

ThreadedLoopbackLink::ThreadedLoopbackLink(DirectoryMirror& mirror, ReplicaWriter& replica,
                                           std::size_t window)
    : mirror_(mirror), replica_(replica), window_(window == 0 ? 1 : window) {
  thread_ = std::thread([this] { run(); });
}

ThreadedLoopbackLink::~ThreadedLoopbackLink() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

void ThreadedLoopbackLink::run() {
  std::deque<Message> batch;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      replica_waiting_ = true;
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      replica_waiting_ = false;
      if (queue_.empty()) return;  // stop_ and drained
      batch.swap(queue_);
    }
    for (Message& m : batch) {
      const auto* end = std::get_if<BatchEnd>(&m);
      std::uint64_t epoch = end ? end->epoch : 0, seq = end ? end->seq : 0;
      Status s = error_ ? okStatus() : replica_.apply(m);
      std::lock_guard lock(mu_);
      if (!s.ok() && !error_) error_ = s.error();
      if (s.ok() && end && !error_) acks_.emplace_back(epoch, seq);
      --in_flight_;
      if (room_waiters_ > 0) room_cv_.notify_all();
    }
    batch.clear();
  }
}

void ThreadedLoopbackLink::deliverAcks() {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> acks;
  {
    std::lock_guard lock(mu_);
    acks.swap(acks_);
  }
  for (auto& [e, q] : acks) mirror_.acknowledge(e, q);
}

Status ThreadedLoopbackLink::send(Message message) {
  wire_bytes_ += wireSize(message);
  {
    std::unique_lock lock(mu_);
    ++room_waiters_;
    bool room =
        room_cv_.wait_for(lock, std::chrono::minutes(5), [&] { return error_ || in_flight_ < window_; });
    --room_waiters_;
    if (!room) return makeError("threaded loopback link: the replica took no message for 5 minutes");
    if (error_) return *error_;
    queue_.push_back(std::move(message));
    ++in_flight_;
    if (replica_waiting_) work_cv_.notify_one();
  }
  deliverAcks();
  return okStatus();
}

Status ThreadedLoopbackLink::flush(std::chrono::milliseconds timeout) {
  {
    std::unique_lock lock(mu_);
    ++room_waiters_;
    bool drained = room_cv_.wait_for(lock, timeout, [&] { return error_ || in_flight_ == 0; });
    --room_waiters_;
    if (!drained) return makeError("threaded loopback link: replica did not drain in time");
    if (error_) return *error_;
  }
  deliverAcks();
  return okStatus();
}

Status FakeWriteTracker::watch(const std::string& path, FileId id) {
  if (!refuse_.empty() && path.find(refuse_) != std::string::npos)
    return makeError(path + ": refused (test)");
  watched_.insert(id);
  return okStatus();
}

void FakeWriteTracker::record(FileId id, DirtyRange r) {
  if (watched_.contains(id)) next_.ranges[id].push_back(r);
}

void FakeWriteTracker::map(FileId id) {
  if (watched_.erase(id) > 0) next_.untracked.insert(id);
}

TrackedChanges FakeWriteTracker::drain() {
  TrackedChanges out = std::move(next_);
  next_ = TrackedChanges{};
  return out;
}

}  // namespace ferry::sync
