// Podman over its REST API where a process start per call is the cost, over the CLI
// where the CLI does better: see makeMixedPodmanRuntime() in runtime.h.
#include <memory>
#include <utility>

#include "ferry/checkpoint/runtime.h"
#include "ferry/checkpoint/unix_http.h"

namespace ferry::checkpoint {
namespace {

class MixedPodmanRuntime final : public ContainerRuntime {
 public:
  MixedPodmanRuntime(std::unique_ptr<ContainerRuntime> cli, std::unique_ptr<ContainerRuntime> api)
      : cli_(std::move(cli)), api_(std::move(api)) {}

  // Questions and removal: the API.
  Result<ContainerInfo> inspect(const std::string& name) override { return api_->inspect(name); }
  Result<bool> exists(const std::string& name) override { return api_->exists(name); }
  Result<std::optional<std::string>> imageId(const std::string& ref) override { return api_->imageId(ref); }
  Status remove(const std::string& name, std::chrono::seconds stop_timeout) override {
    return api_->remove(name, stop_timeout);
  }

  // The checkpoint: the CLI writes its archive while CRIU dumps, so it streams at once;
  // the API hands it over only once complete. The restore: the API copies the uploaded
  // archive to a file of its own first, which cost more than the CLI's start-up (10
  // migrations in the lab: Podman's restore of db 2375 ms mean against 1672). Images:
  // files either way, the CLI's is tested.
  Result<CheckpointStats> checkpoint(const std::string& name, const CheckpointOptions& o) override {
    return cli_->checkpoint(name, o);
  }
  Result<RestoreStats> restore(const std::string& name, const RestoreOptions& o) override {
    return cli_->restore(name, o);
  }
  Status saveImage(const std::string& image_id, const std::filesystem::path& archive) override {
    return cli_->saveImage(image_id, archive);
  }
  Result<std::string> loadImage(const std::filesystem::path& archive) override {
    return cli_->loadImage(archive);
  }

  // The cgroup itself, the same in both.
  Status freeze(const ContainerInfo& c) override { return cli_->freeze(c); }
  Status thaw(const ContainerInfo& c) override { return cli_->thaw(c); }
  Result<bool> frozen(const ContainerInfo& c) override { return cli_->frozen(c); }
  Result<std::uint64_t> memoryBytes(const ContainerInfo& c) override { return cli_->memoryBytes(c); }

 private:
  std::unique_ptr<ContainerRuntime> cli_;
  std::unique_ptr<ContainerRuntime> api_;
};

}  // namespace

Status pingPodmanApi(const std::filesystem::path& socket, std::chrono::milliseconds timeout) {
  UnixHttpRequest req;
  req.target = "/_ping";
  req.connect_timeout = timeout;
  req.timeout = timeout;
  auto r = unixHttpRequest(socket, req);
  if (!r.ok())
    return makeError("Podman's API at " + socket.string() + " does not answer (" + r.detail + ")",
                     "start it (systemctl enable --now podman.socket) or set podman_api = off");
  if (r.status != 200 || r.body != "OK")
    return makeError("Podman's API at " + socket.string() + " answered _ping with HTTP " +
                     std::to_string(r.status));
  return okStatus();
}

std::unique_ptr<ContainerRuntime> makeMixedPodmanRuntime(std::unique_ptr<ContainerRuntime> cli,
                                                         std::unique_ptr<ContainerRuntime> api) {
  return std::make_unique<MixedPodmanRuntime>(std::move(cli), std::move(api));
}

}  // namespace ferry::checkpoint
