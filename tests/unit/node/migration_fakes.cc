#include "migration_fakes.h"

#include <fstream>
#include <random>

#include <capnp/message.h>

#include "../check/tar_builder.h"
#include "ferry/protocol/framing.h"

namespace ferry::node::testing {

namespace fs = std::filesystem;

void FakeRuntime::add(const std::string& name, FakeContainer c) {
  std::lock_guard lock(mu_);
  images_.insert(c.image_id);
  containers_[name] = std::move(c);
}

std::map<std::string, FakeContainer> FakeRuntime::containers() {
  std::lock_guard lock(mu_);
  return containers_;
}

bool FakeRuntime::hasImage(const std::string& id) {
  std::lock_guard lock(mu_);
  return images_.count(id) != 0;
}

Result<checkpoint::ContainerInfo> FakeRuntime::inspect(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = containers_.find(name);
  if (it == containers_.end()) return makeError("no container named '" + name + "' on " + host_);
  checkpoint::ContainerInfo i;
  i.name = name;
  i.id = it->second.id;
  i.image_id = it->second.image_id;
  i.status = it->second.status;
  i.running = it->second.status == "running";
  i.cgroup_path = "/fake/" + name;
  i.mounts.push_back({"bind", data_mount, data_mount});
  for (auto p : it->second.ports) i.ports.push_back({"tcp", p, "0.0.0.0", p});
  return i;
}

Result<bool> FakeRuntime::exists(const std::string& name) {
  std::lock_guard lock(mu_);
  return containers_.count(name) != 0;
}

Result<std::optional<std::string>> FakeRuntime::imageId(const std::string& ref) {
  std::lock_guard lock(mu_);
  if (images_.count(ref) != 0) return std::optional<std::string>{ref};
  return std::optional<std::string>{};
}

Status FakeRuntime::freeze(const checkpoint::ContainerInfo& c) {
  std::lock_guard lock(mu_);
  if (failures_.count("freeze:" + c.name) != 0) return makeError("freezing " + c.name + " failed (fake)");
  containers_[c.name].frozen = true;
  return okStatus();
}

Status FakeRuntime::thaw(const checkpoint::ContainerInfo& c) {
  std::lock_guard lock(mu_);
  containers_[c.name].frozen = false;
  return okStatus();
}

Result<bool> FakeRuntime::frozen(const checkpoint::ContainerInfo& c) {
  std::lock_guard lock(mu_);
  return containers_[c.name].frozen;
}

Result<std::uint64_t> FakeRuntime::memoryBytes(const checkpoint::ContainerInfo&) {
  return std::uint64_t{archive_bytes};
}

Result<checkpoint::CheckpointStats> FakeRuntime::checkpoint(const std::string& name,
                                                            const checkpoint::CheckpointOptions& o) {
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(name);
    if (it == containers_.end()) return makeError("no container " + name);
    if (failures_.count("checkpoint:" + name) != 0)
      return makeError("checkpoint of " + name + " failed (fake)");
    if (!it->second.frozen) return makeError("fake: " + name + " was dumped without being frozen first");
  }
  // An archive of random bytes (or a tar holding them), written in pieces like
  // Podman's export.
  std::mt19937_64 rng(std::hash<std::string>{}(name));
  std::ofstream out(o.archive, std::ios::binary | std::ios::trunc);
  if (tar_archives) {
    namespace tb = checkpoint::testing;
    std::string header = tb::tarMember("checkpoint/pages-1.img", "", '0', tb::octal(archive_bytes, 12));
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
  }
  std::vector<char> block(4096);
  for (std::size_t written = 0; written < archive_bytes; written += block.size()) {
    for (auto& b : block) b = static_cast<char>(rng());
    out.write(block.data(), static_cast<std::streamsize>(std::min(block.size(), archive_bytes - written)));
    out.flush();
  }
  if (tar_archives) {
    std::string tail((512 - archive_bytes % 512) % 512 + 1024, '\0');
    out.write(tail.data(), static_cast<std::streamsize>(tail.size()));
  }
  out.close();
  if (after_archive) after_archive();
  std::lock_guard lock(mu_);
  auto& c = containers_[name];
  c.status = "exited";
  c.frozen = false;
  c.checkpoint_kept = o.keep;
  if (failures_.count("after-archive:" + name) != 0)
    return makeError("podman cleanup of " + name + " failed (fake)");
  checkpoint::CheckpointStats s;
  s.podman_ms = 10;
  return s;
}

std::size_t FakeRuntime::archiveFileBytes() const {
  return tar_archives ? 512 + (archive_bytes + 511) / 512 * 512 + 1024 : archive_bytes;
}

Result<checkpoint::RestoreStats> FakeRuntime::restore(const std::string& name,
                                                      const checkpoint::RestoreOptions& o) {
  std::lock_guard lock(mu_);
  if (failures_.count("restore:" + name) != 0) return makeError("restore of " + name + " failed (fake)");
  if (o.archive.empty()) {
    auto it = containers_.find(name);
    if (it == containers_.end() || !it->second.checkpoint_kept)
      return makeError("fake: no kept checkpoint for " + name);
    it->second.status = "running";
    it->second.checkpoint_kept = false;
  } else {
    std::error_code ec;
    ++imports;
    if (fs::file_size(o.archive, ec) != archiveFileBytes())
      return makeError("fake: archive of " + name + " has the wrong size");
    if (containers_.count(name) != 0) return makeError("fake: " + name + " already exists");
    FakeContainer c;
    c.id = "ab12" + name;
    c.status = "running";
    containers_[name] = c;
  }
  checkpoint::RestoreStats s;
  s.podman_ms = 20;
  return s;
}

Status FakeRuntime::remove(const std::string& name, std::chrono::seconds) {
  std::lock_guard lock(mu_);
  containers_.erase(name);
  return okStatus();
}

Status FakeRuntime::saveImage(const std::string& image_id, const fs::path& archive) {
  std::ofstream(archive, std::ios::binary) << "image " << image_id << std::string(5000, 'x');
  return okStatus();
}

Result<std::string> FakeRuntime::loadImage(const fs::path& archive) {
  std::ifstream in(archive, std::ios::binary);
  std::string word;
  std::string id;
  in >> word >> id;
  id = id.substr(0, id.find('x'));
  std::lock_guard lock(mu_);
  if (failures_.count("load") != 0) return makeError("podman load failed (fake)");
  images_.insert(id);
  return "Loaded image: " + id;
}

FakeNode::FakeNode(std::string name, bool active, const fs::path& dir)
    : runtime(name), name_(std::move(name)), active_(active) {
  fs::create_directories(dir / name_);
  auto j = Journal::open(dir / name_ / "journal.db");
  journal = std::move(*j);
  settings.data_dir = "/srv/ferry/ref";
  settings.staging_dir = dir / name_ / "staging";
  settings.prepare_timeout = Millis(3000);
  settings.commit_timeout = Millis(3000);
  settings.idle_timeout = Millis(3000);
  settings.chunk_bytes = 64 * 1024;
  coordinator = std::make_unique<MigrationCoordinator>([this] {
    MigrationDeps d;
    d.env = this;
    d.runtime = &runtime;
    d.journal = journal.get();
    d.settings = settings;
    d.failpoints = failpoints.get();
    d.switch_factory = [this](const std::string& kind) -> Result<std::unique_ptr<switchover::Driver>> {
      if (!switcher) return makeError("no fake switch for " + kind);
      return switcher->driver();
    };
    return d;
  });
}

Result<switchover::SwitchReport> FakeSwitch::step(const std::string& name,
                                                  const switchover::SwitchPlan& plan) {
  std::string web = "absent";
  if (auto c = source_.containers(); c.count("web") != 0) web = c["web"].frozen ? "frozen" : c["web"].status;
  std::lock_guard lock(mu_);
  steps_.push_back(name + " web=" + web + " " + plan.source.str() + "->" + plan.target.str());
  if (failures_.count(name) != 0) return makeError(name + " failed (fake switch)");
  switchover::SwitchReport r;
  r.driver = "fake";
  r.step = name;
  r.service = plan.service;
  r.migration_id = plan.migration_id;
  return r;
}

std::unique_ptr<switchover::Driver> FakeSwitch::driver() {
  class Forward final : public switchover::Driver {
   public:
    explicit Forward(FakeSwitch& s) : s_(s) {}
    [[nodiscard]] std::string name() const override { return "fake"; }
    Result<switchover::SwitchReport> prepare(const switchover::SwitchPlan& p) override {
      return s_.step("prepare", p);
    }
    Result<switchover::SwitchReport> commit(const switchover::SwitchPlan& p) override {
      return s_.step("commit", p);
    }
    Result<switchover::SwitchReport> rollback(const switchover::SwitchPlan& p) override {
      return s_.step("rollback", p);
    }

   private:
    FakeSwitch& s_;
  };
  return std::make_unique<Forward>(*this);
}

FakeNode::~FakeNode() {
  coordinator.reset();
}

Status FakeNode::send(const std::function<void(wire::Message::Builder)>& fill, Millis timeout) {
  if (!link_up_.load() || peer_ == nullptr) return makeError("link down (fake)");
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<wire::Message>());
  {
    std::lock_guard lock(drop_mu_);
    auto body = protocol::bodyName(builder.getRoot<wire::Message>().getBody().which());
    if (!drop_from_.empty() && body == drop_from_) drop_ = true;
  }
  if (drop_.load()) return okStatus();  // "sent", never arrives
  auto words = protocol::encodeMessage(builder);
  auto bytes = words.asBytes();
  auto frame = protocol::decodeFrame(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()));
  if (!frame) return frame.error();
  if (auto v = protocol::validateFrame(**frame); !v)
    return makeError("the peer would refuse this: " + v.error().message());
  protocol::Received r;
  r.frame = std::move(*frame);
  return peer_->coordinator->route(std::move(r), timeout);
}

Result<FinalDelta> FakeNode::finalDelta(Millis) {
  mirroring_paused = true;
  ++final_rounds;
  if (reconnect_during_final) ++sessions;
  FinalDelta f{epoch_.load(), 42, 1000, 1.0};
  if (peer_ != nullptr) peer_->final_seq = 42;
  return f;
}

ReplicaView FakeNode::replicaView() {
  ReplicaView v;
  v.consistent = true;
  v.final_applied = final_seq.load() != 0;
  v.seq = final_seq.load();
  v.epoch = peer_ != nullptr ? peer_->epoch() : 1;
  return v;
}

Status FakeNode::becomeActive(std::uint64_t epoch) {
  active_ = true;
  epoch_ = epoch;
  ++became_active;
  return okStatus();
}

Status FakeNode::becomeStandby(std::uint64_t epoch) {
  active_ = false;
  epoch_ = epoch;
  ++became_standby;
  return okStatus();
}

}  // namespace ferry::node::testing
