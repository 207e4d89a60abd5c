// Two nodes in one process for the migration tests: each side has a fake container
// runtime (containers and images in memory; checkpoints are real files of random
// bytes so the archive streaming runs for real), a fake MigrationEnv whose send()
// encodes the message, decodes it as the peer's link would and routes it through the
// peer's real MigrationCoordinator, and a real SQLite journal in a temporary directory.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "coordinator.h"
#include "journal.h"
#include "migration.h"

namespace ferry::node::testing {

struct FakeContainer {
  std::string id;
  std::string image_id;
  std::string status = "running";  // running | exited
  bool frozen = false;
  bool checkpoint_kept = false;  // a kept checkpoint (restore in place works)
  std::vector<std::uint16_t> ports;
};

class FakeRuntime final : public checkpoint::ContainerRuntime {
 public:
  explicit FakeRuntime(std::string host) : host_(std::move(host)) {}

  void add(const std::string& name, FakeContainer c);
  std::string data_mount = "/srv/ferry/ref";  // every container bind-mounts this (set before migrating)
  void addImage(const std::string& id) { images_.insert(id); }
  void failOn(const std::string& what) { failures_.insert(what); }  // "checkpoint:db", "restore:web", "load"
  [[nodiscard]] std::map<std::string, FakeContainer> containers();
  [[nodiscard]] bool hasImage(const std::string& id);
  std::size_t archive_bytes = 200000;
  // The archive is a tar that closes (as Podman's export is), and `after_archive` runs
  // between its last byte and checkpoint()'s return: Podman's cleanup. A failure set
  // with failOn("after-archive:NAME") is returned after it.
  bool tar_archives = false;
  std::function<void()> after_archive;
  std::atomic<int> imports{0};  // restore() calls with an archive
  [[nodiscard]] std::size_t archiveFileBytes() const;

  Result<checkpoint::ContainerInfo> inspect(const std::string& name) override;
  Result<bool> exists(const std::string& name) override;
  Result<std::optional<std::string>> imageId(const std::string& ref) override;
  Status freeze(const checkpoint::ContainerInfo& c) override;
  Status thaw(const checkpoint::ContainerInfo& c) override;
  Result<bool> frozen(const checkpoint::ContainerInfo& c) override;
  Result<std::uint64_t> memoryBytes(const checkpoint::ContainerInfo& c) override;
  Result<checkpoint::CheckpointStats> checkpoint(const std::string& name,
                                                 const checkpoint::CheckpointOptions& options) override;
  Result<checkpoint::RestoreStats> restore(const std::string& name,
                                           const checkpoint::RestoreOptions& options) override;
  Status remove(const std::string& name, std::chrono::seconds stop_timeout) override;
  Status saveImage(const std::string& image_id, const std::filesystem::path& archive) override;
  Result<std::string> loadImage(const std::filesystem::path& archive) override;

 private:
  std::string host_;
  std::mutex mu_;
  std::map<std::string, FakeContainer> containers_;
  std::set<std::string> images_;
  std::set<std::string> failures_;
};

class FakeFailpoints final : public Failpoints {
 public:
  explicit FakeFailpoints(std::set<std::string> names) : names_(std::move(names)) {}
  bool hit(const std::string& name) override { return names_.count(name) != 0; }

 private:
  std::set<std::string> names_;
};

// The traffic switch-over as the source sees it: records each step with the state of
// the source's "web" container at that moment, fails the steps it is told to.
class FakeSwitch {
 public:
  explicit FakeSwitch(FakeRuntime& source) : source_(source) {}
  void failOn(const std::string& step) {
    std::lock_guard lock(mu_);
    failures_.insert(step);
  }
  [[nodiscard]] std::vector<std::string> steps() {
    std::lock_guard lock(mu_);
    return steps_;
  }
  Result<switchover::SwitchReport> step(const std::string& name, const switchover::SwitchPlan& plan);
  std::unique_ptr<switchover::Driver> driver();  // a Driver that forwards here

 private:
  FakeRuntime& source_;
  std::mutex mu_;
  std::vector<std::string> steps_;  // "prepare web=running a:80->b:80"
  std::set<std::string> failures_;
};

// One side: env + runtime + journal + coordinator.
class FakeNode final : public MigrationEnv {
 public:
  FakeNode(std::string name, bool active, const std::filesystem::path& dir);
  ~FakeNode() override;
  void connect(FakeNode* peer) { peer_ = peer; }
  void setLinkUp(bool up) { link_up_ = up; }  // false: sends fail, nothing is delivered
  // From the first message with this body on, everything this node sends is lost
  // (a link that dies at that point).
  void dropFrom(const std::string& body_name) {
    std::lock_guard lock(drop_mu_);
    drop_from_ = body_name;
  }

  FakeRuntime runtime;
  std::unique_ptr<Journal> journal;
  std::unique_ptr<MigrationCoordinator> coordinator;
  MigrationSettings settings;
  std::unique_ptr<FakeFailpoints> failpoints;
  std::unique_ptr<FakeSwitch> switcher;  // set: settings.switch_driver = "proxy" uses it
  std::uint64_t free_bytes = 10ull << 30;
  std::set<std::uint16_t> busy_ports;
  bool healthy = true;
  std::atomic<int> became_active{0};
  std::atomic<int> became_standby{0};
  std::atomic<int> invalidated{0};
  std::atomic<bool> fenced{false};
  std::atomic<bool> mirroring_paused{false};

  // MigrationEnv
  [[nodiscard]] std::string nodeName() const override { return name_; }
  [[nodiscard]] std::string peerName() const override { return peer_ != nullptr ? peer_->name_ : "?"; }
  [[nodiscard]] bool peerConnected() const override { return link_up_.load(); }
  [[nodiscard]] std::uint64_t peerSessions() const override { return sessions.load(); }
  std::atomic<std::uint64_t> sessions{1};
  bool reconnect_during_final = false;  // the link "reconnects" while the final round runs
  [[nodiscard]] bool isActive() const override { return active_.load(); }
  Status send(const std::function<void(wire::Message::Builder)>& fill, Millis timeout) override;
  Status flushMirror(Millis) override { return okStatus(); }
  Status flushLink(Millis) override {
    return link_up_.load() && !drop_.load() ? okStatus() : makeError("link down (fake)");
  }
  Result<FinalDelta> finalDelta(Millis) override;
  void resumeMirroring() override { mirroring_paused = false; }
  Status syncSharedData(Millis) override {
    ++shared_syncs;
    return okStatus();
  }
  std::atomic<int> shared_syncs{0};
  std::atomic<int> final_rounds{0};
  ReplicaView replicaView() override;
  void fenceReplica(bool f) override { fenced = f; }
  void invalidateReplica() override { ++invalidated; }
  Status becomeActive(std::uint64_t epoch) override;
  Status becomeStandby(std::uint64_t epoch) override;
  [[nodiscard]] std::uint64_t epoch() const override { return epoch_.load(); }
  Result<std::uint64_t> stagingFreeBytes() override { return free_bytes; }
  bool hostPortFree(std::uint16_t port) override { return busy_ports.count(port) == 0; }
  Status waitHealthy(const std::string&, Millis) override {
    return healthy ? okStatus() : makeError("health check failed (fake)");
  }

  // The final batch the source "sent" (the target's replica view follows it).
  std::atomic<std::uint64_t> final_seq{0};

 private:
  std::string name_;
  std::atomic<bool> active_;
  std::atomic<std::uint64_t> epoch_{1};
  std::atomic<bool> link_up_{true};
  std::atomic<bool> drop_{false};
  std::mutex drop_mu_;
  std::string drop_from_;
  FakeNode* peer_ = nullptr;
};

}  // namespace ferry::node::testing
