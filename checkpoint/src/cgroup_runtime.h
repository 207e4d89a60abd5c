// What both container runtimes (the podman CLI and Podman's REST API) share: freezing,
// thawing and measuring a container through its cgroup files, which Podman does not
// do for ferry (see runtime.h for why), and small text helpers. Internal to
// ferry_checkpoint.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "ferry/checkpoint/runtime.h"

namespace ferry::checkpoint::detail {

// The last non-blank line of a program's output or of a message.
std::string lastLine(const std::string& text);

// freeze/thaw/frozen/memoryBytes from the cgroup files under `cgroup_root`.
class CgroupContainerRuntime : public ContainerRuntime {
 public:
  CgroupContainerRuntime(std::filesystem::path cgroup_root, std::chrono::milliseconds freeze_timeout)
      : cgroup_root_(std::move(cgroup_root)), freeze_timeout_(freeze_timeout) {}

  Status freeze(const ContainerInfo& c) final { return setFrozen(c, true); }
  Status thaw(const ContainerInfo& c) final { return setFrozen(c, false); }
  Result<bool> frozen(const ContainerInfo& c) final;
  Result<std::uint64_t> memoryBytes(const ContainerInfo& c) final;

 private:
  Status setFrozen(const ContainerInfo& c, bool freeze);

  std::filesystem::path cgroup_root_;
  std::chrono::milliseconds freeze_timeout_;
};

}  // namespace ferry::checkpoint::detail
