// Helpers for the sync tests: temporary trees under /tmp and small file operations.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "ferry/sync/mirror.h"
#include "ferry/sync/replica.h"
#include "ferry/sync/testing.h"

namespace ferry::sync::testutil {

// /tmp/ferry-sync-<pid>-<n>/{src,dst,state}; removed on destruction.
class TempTrees {
 public:
  TempTrees();
  ~TempTrees();
  TempTrees(const TempTrees&) = delete;
  TempTrees& operator=(const TempTrees&) = delete;
  [[nodiscard]] std::filesystem::path src() const { return base_ / "src"; }
  [[nodiscard]] std::filesystem::path dst() const { return base_ / "dst"; }
  [[nodiscard]] std::filesystem::path stateFile() const { return base_ / "replica.state"; }
  [[nodiscard]] std::filesystem::path base() const { return base_; }

 private:
  std::filesystem::path base_;
};

std::string randomBytes(std::size_t n, std::uint64_t seed);
void writeFile(const std::filesystem::path& p, const std::string& content);
void writeAt(const std::filesystem::path& p, std::uint64_t offset, const std::string& content);
std::string readAll(const std::filesystem::path& p);

// A mirror + replica + loopback link over a TempTrees.
struct Pair {
  explicit Pair(const TempTrees& t, MirrorOptions mo = {}, FaultInjector* faults = nullptr);
  void reopenReplica(FaultInjector* faults = nullptr);
  void restartMirror(MirrorOptions mo = {});
  const TempTrees& trees;
  std::unique_ptr<DirectoryMirror> mirror;
  std::unique_ptr<ReplicaWriter> replica;
  std::unique_ptr<LoopbackLink> link;
  FaultInjector* link_faults;
};

// Identical by content and metadata; on failure the message lists the differences.
std::string differences(const std::filesystem::path& a, const std::filesystem::path& b);

}  // namespace ferry::sync::testutil
