#include "cgroup_runtime.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <thread>

#include "ferry/base/files.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Status writeSmallFile(const fs::path& path, std::string_view content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return makeError("cannot open " + path.string() + ": " + std::strerror(errno));
  ssize_t w = ::write(fd, content.data(), content.size());
  int saved = errno;
  ::close(fd);
  if (w != static_cast<ssize_t>(content.size()))
    return makeError("cannot write '" + std::string(content) + "' to " + path.string() + ": " +
                     std::strerror(saved));
  return okStatus();
}

bool isFrozen(const FreezerPaths& p, const std::string& state) {
  if (p.v1) return state.rfind("FROZEN", 0) == 0;
  return state.find("frozen 1") != std::string::npos;
}

}  // namespace

namespace detail {

std::string lastLine(const std::string& text) {
  auto end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return {};
  auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

Result<bool> CgroupContainerRuntime::frozen(const ContainerInfo& c) {
  auto paths = freezerPaths(cgroup_root_, c.cgroup_path);
  if (!paths) return paths.error();
  auto state = readFile(paths->state);
  if (!state) return state.error();
  return isFrozen(*paths, *state);
}

Result<std::uint64_t> CgroupContainerRuntime::memoryBytes(const ContainerInfo& c) {
  if (c.cgroup_path.empty() || c.cgroup_path.front() != '/')
    return makeError("container " + c.name + " has no cgroup path");
  for (const auto& p : {cgroup_root_ / "memory" / c.cgroup_path.substr(1) / "memory.stat",
                        cgroup_root_ / c.cgroup_path.substr(1) / "memory.stat"}) {
    std::error_code ec;
    if (!fs::exists(p, ec)) continue;
    auto text = readFile(p);
    if (!text) return text.error();
    return parseMemoryStat(*text);
  }
  return makeError("no memory.stat for container " + c.name + " under " + cgroup_root_.string());
}

Status CgroupContainerRuntime::setFrozen(const ContainerInfo& c, bool freeze) {
  auto paths = freezerPaths(cgroup_root_, c.cgroup_path);
  if (!paths) return paths.error();
  std::string_view value = paths->v1 ? (freeze ? "FROZEN" : "THAWED") : (freeze ? "1" : "0");
  FERRY_TRY(writeSmallFile(paths->control, value));
  auto deadline = Clock::now() + freeze_timeout_;
  while (true) {
    auto state = readFile(paths->state);
    if (!state) return state.error();
    if (isFrozen(*paths, *state) == freeze) return okStatus();
    if (Clock::now() > deadline) {
      return makeError(std::string(freeze ? "freezing" : "thawing") + " container " + c.name +
                           " did not finish within " + std::to_string(freeze_timeout_.count()) +
                           " ms (state: " + lastLine(*state) + ")",
                       "a task may be stuck in an uninterruptible wait (D state); check 'ps -eo "
                       "pid,stat,wchan' on the host");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace detail

Result<FreezerPaths> freezerPaths(const fs::path& cgroup_root, const std::string& cgroup_path) {
  if (cgroup_path.empty() || cgroup_path.front() != '/' || cgroup_path.find("..") != std::string::npos)
    return makeError("container cgroup path '" + cgroup_path + "' is not an absolute cgroup path");
  std::error_code ec;
  fs::path v1 = cgroup_root / "freezer" / cgroup_path.substr(1);
  if (fs::exists(v1 / "freezer.state", ec))
    return FreezerPaths{v1 / "freezer.state", v1 / "freezer.state", true};
  fs::path v2 = cgroup_root / cgroup_path.substr(1);
  if (fs::exists(v2 / "cgroup.freeze", ec))
    return FreezerPaths{v2 / "cgroup.freeze", v2 / "cgroup.events", false};
  return makeError("no freezer for cgroup " + cgroup_path + " under " + cgroup_root.string(),
                   "the kernel needs the cgroup v1 freezer controller or cgroup v2 (cgroup.freeze); is the "
                   "container running?");
}

std::uint64_t parseMemoryStat(std::string_view text) {
  std::uint64_t v1 = 0;
  std::uint64_t v2 = 0;
  bool has_v1 = false;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    auto line = text.substr(start, end - start);
    start = end + 1;
    auto space = line.find(' ');
    if (space == std::string_view::npos) continue;
    auto key = line.substr(0, space);
    std::uint64_t value = std::strtoull(std::string(line.substr(space + 1)).c_str(), nullptr, 10);
    if (key == "total_rss" || key == "total_shmem") {
      v1 += value;
      has_v1 = true;
    } else if (key == "anon" || key == "shmem") {
      v2 += value;
    }
  }
  return has_v1 ? v1 : v2;
}

}  // namespace ferry::checkpoint
