// In-process fakes for tests and benchmarks: a link that connects a DirectoryMirror to a
// ReplicaWriter without a network, and RocksDB-style crash points.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "ferry/sync/mirror.h"
#include "ferry/sync/replica.h"
#include "ferry/sync/write_tracker.h"

namespace ferry::sync {

// Fires once, at the nth hit (1-based, counted from arm()) of a named point.
class CrashPoints : public FaultInjector {
 public:
  void arm(std::string point, std::uint64_t nth);
  bool shouldFail(std::string_view point) override;
  [[nodiscard]] bool fired() const { return fired_; }
  [[nodiscard]] std::uint64_t hits(const std::string& point) const;

 private:
  std::string point_;
  std::uint64_t nth_ = 0;
  bool fired_ = false;
  std::map<std::string, std::uint64_t, std::less<>> hits_;
};

// Applies every message to the replica as it is sent and acknowledges each applied
// batch to the mirror. Crash point "link.send" (checked before each message) cuts the
// link: that message and every later one is lost until reconnect().
class LoopbackLink : public DeltaSink {
 public:
  LoopbackLink(DirectoryMirror& mirror, ReplicaWriter& replica, FaultInjector* faults = nullptr);
  Status send(Message message) override;

  // The resume handshake (ResumeState -> HashRequest -> FileHashes -> resume), possibly
  // with a reopened replica. Hash bytes exchanged count in resume_bytes.
  Status reconnect(ReplicaWriter& replica);

  struct Counters {
    std::uint64_t messages = 0;
    std::uint64_t blocks = 0;
    std::uint64_t block_bytes = 0;  // uncompressed bytes of data blocks
    std::uint64_t wire_bytes = 0;   // wireSize() of every message delivered
    std::uint64_t resume_bytes = 0;
  };
  [[nodiscard]] const Counters& counters() const { return counters_; }
  void resetCounters() { counters_ = {}; }
  [[nodiscard]] bool cut() const { return cut_; }

 private:
  DirectoryMirror& mirror_;
  ReplicaWriter* replica_;
  FaultInjector* faults_;
  bool cut_ = false;
  Counters counters_;
};

// Like LoopbackLink, but the replica applies messages on its own thread, as on another
// host: the source never has more than `window` messages in flight (credit-based flow
// control, as the real link). Acknowledgements reach the mirror on the caller's thread,
// in send() and flush(). For benchmarks that want source and replica to overlap.
class ThreadedLoopbackLink : public DeltaSink {
 public:
  ThreadedLoopbackLink(DirectoryMirror& mirror, ReplicaWriter& replica, std::size_t window = 256);
  ~ThreadedLoopbackLink() override;
  ThreadedLoopbackLink(const ThreadedLoopbackLink&) = delete;
  ThreadedLoopbackLink& operator=(const ThreadedLoopbackLink&) = delete;

  Status send(Message message) override;
  // Waits (at most `timeout`) until every message sent is applied; delivers the acks.
  Status flush(std::chrono::milliseconds timeout = std::chrono::minutes(5));
  [[nodiscard]] std::uint64_t wireBytes() const { return wire_bytes_; }

 private:
  void run();
  void deliverAcks();

  DirectoryMirror& mirror_;
  ReplicaWriter& replica_;
  std::size_t window_;
  std::mutex mu_;
  // A thread is woken only when it waits (a wakeup per message would cost more than the
  // mirror's work per block on a VM): the replica thread for work, senders for room.
  std::condition_variable work_cv_, room_cv_;
  bool replica_waiting_ = false;
  std::size_t room_waiters_ = 0;
  std::deque<Message> queue_;
  std::size_t in_flight_ = 0;
  bool stop_ = false;
  std::optional<Error> error_;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> acks_;
  std::uint64_t wire_bytes_ = 0;
  std::thread thread_;
};

// A WriteTracker the test feeds by hand: record() what a write changed, lose() records,
// map() a file. refuse() makes watch() fail for paths containing a string.
class FakeWriteTracker : public WriteTracker {
 public:
  Status watch(const std::string& path, FileId id) override;
  void unwatch(FileId id) override { watched_.erase(id); }
  TrackedChanges drain() override;
  [[nodiscard]] std::string name() const override { return "fake"; }
  void record(FileId id, DirtyRange r);
  void lose(FileId id) { next_.whole.insert(id); }
  void map(FileId id);
  void loseAll() { next_.all_lost = true; }
  void refuse(std::string substring) { refuse_ = std::move(substring); }
  [[nodiscard]] bool watching(FileId id) const { return watched_.contains(id); }

 private:
  std::set<FileId> watched_;
  TrackedChanges next_;
  std::string refuse_;
};

}  // namespace ferry::sync
