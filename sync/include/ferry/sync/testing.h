// In-process fakes for tests and benchmarks: a link that connects a DirectoryMirror to a
// ReplicaWriter without a network, and RocksDB-style crash points.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "ferry/sync/mirror.h"
#include "ferry/sync/replica.h"

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

}  // namespace ferry::sync
