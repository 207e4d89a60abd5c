// The container runtime as a migration sees it: inspect, freeze, checkpoint, restore,
// remove, and move images. Two implementations with the same semantics: one drives
// Podman's command line (Podman has no stable library API) through the CommandRunner
// interface, so unit tests replay recorded outputs; the other talks to Podman's REST
// API service over its unix socket (no podman start-up per call). Every call has a
// deadline.
//
// Why freezing is separate from checkpointing: a migration of several containers must
// be one consistent cut — every container stopped before any is dumped, so no message
// between them is half-sent in one image and missing from the other. Podman checkpoints
// one container at a time and refuses a container it has paused itself ("paused" is
// not running), so ferry freezes the containers' cgroups directly (Podman still sees
// them running), then lets Podman/runc/CRIU dump each: CRIU adopts an already frozen
// cgroup (runc passes it as freeze_cgroup). Verified with Podman 5.4.2, runc 1.1.15 and
// CRIU 4.2.1 (docs/ARCHITECTURE.md, "Migration").
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"
#include "ferry/checkpoint/os.h"

namespace ferry::checkpoint {

struct PortBinding {
  std::string protocol = "tcp";
  std::uint16_t container_port = 0;
  std::string host_ip;
  std::uint16_t host_port = 0;
};

struct MountInfo {
  std::string type;  // bind, volume, tmpfs ...
  std::string source;
  std::string destination;
};

// What `podman inspect` says about one container (the fields a migration needs).
struct ContainerInfo {
  std::string name;
  std::string id;
  std::string image_id;
  std::string image_name;
  std::string status;  // created, running, paused, exited ...
  bool running = false;
  int pid = 0;
  std::string static_dir;   // Podman's per-container userdata directory
  std::string cgroup_path;  // e.g. /libpod_parent/libpod-<id>
  std::vector<MountInfo> mounts;
  std::vector<PortBinding> ports;
  std::map<std::string, std::string> addresses;  // network name -> IPv4 address
};

// `podman inspect NAME` (a JSON array with one object).
Result<ContainerInfo> parseInspect(std::string_view text);

// `--print-stats` of `podman container checkpoint` / `restore`. Times in milliseconds.
struct CheckpointStats {
  double podman_ms = 0;   // podman_checkpoint_duration
  double runtime_ms = 0;  // runtime_checkpoint_duration (runc + CRIU)
  double criu_freezing_ms = 0;
  double criu_frozen_ms = 0;  // how long CRIU kept the tasks frozen
  double criu_memdump_ms = 0;
  double criu_memwrite_ms = 0;
  std::uint64_t pages_scanned = 0;
  std::uint64_t pages_written = 0;
  nlohmann::json raw;  // what Podman printed
};
struct RestoreStats {
  double podman_ms = 0;   // podman_restore_duration
  double runtime_ms = 0;  // runtime_restore_duration
  double criu_restore_ms = 0;
  double criu_forking_ms = 0;
  std::uint64_t pages_restored = 0;
  nlohmann::json raw;
};
Result<CheckpointStats> parseCheckpointStats(std::string_view text);
Result<RestoreStats> parseRestoreStats(std::string_view text);
nlohmann::json toJson(const CheckpointStats& stats);
nlohmann::json toJson(const RestoreStats& stats);

struct CheckpointOptions {
  std::filesystem::path archive;  // --export target (a file, or a FIFO a reader drains)
  bool keep = true;               // keep CRIU's images locally: the source can restore in place on rollback
  bool tcp_established = true;
  bool file_locks = true;
  std::string compress = "none";  // ferry compresses on the wire (LZ4); Podman's zstd would be paid twice
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
};

struct RestoreOptions {
  std::filesystem::path archive;  // --import ARCHIVE; empty: restore in place from the kept checkpoint
  bool tcp_established = true;
  bool file_locks = true;
  std::chrono::milliseconds timeout{std::chrono::seconds(120)};
};

struct RuntimeOptions {
  std::string podman = "podman";
  std::vector<std::string> global_args;  // e.g. --runtime runc --cgroup-manager cgroupfs
  std::filesystem::path cgroup_root = "/sys/fs/cgroup";
  std::chrono::milliseconds command_timeout{std::chrono::seconds(30)};
  std::chrono::milliseconds freeze_timeout{std::chrono::seconds(5)};
};

class ContainerRuntime {
 public:
  virtual ~ContainerRuntime() = default;
  // Fails with "no such container" (and a hint) when it does not exist.
  virtual Result<ContainerInfo> inspect(const std::string& name) = 0;
  virtual Result<bool> exists(const std::string& name) = 0;
  // The full ID of an image by ID or name; nullopt when this host does not have it.
  virtual Result<std::optional<std::string>> imageId(const std::string& ref) = 0;
  // Freezes (thaws) every task of the container through its cgroup and waits until
  // the kernel reports it frozen (thawed), within freeze_timeout.
  virtual Status freeze(const ContainerInfo& container) = 0;
  virtual Status thaw(const ContainerInfo& container) = 0;
  virtual Result<bool> frozen(const ContainerInfo& container) = 0;
  // Anonymous + shared memory of the container's tasks (what CRIU dumps), from its
  // memory cgroup: an estimate of the checkpoint's size.
  virtual Result<std::uint64_t> memoryBytes(const ContainerInfo& container) = 0;
  virtual Result<CheckpointStats> checkpoint(const std::string& name, const CheckpointOptions& options) = 0;
  // With options.archive: `restore --import` (a new container from the archive);
  // without: restores `name` in place from the checkpoint it kept.
  virtual Result<RestoreStats> restore(const std::string& name, const RestoreOptions& options) = 0;
  // Removes the container (stopping it first, at most `stop_timeout`); absent is fine.
  virtual Status remove(const std::string& name, std::chrono::seconds stop_timeout) = 0;
  virtual Status saveImage(const std::string& image_id, const std::filesystem::path& archive) = 0;
  // Loads an image archive; returns the image ID it produced.
  virtual Result<std::string> loadImage(const std::filesystem::path& archive) = 0;
};

std::unique_ptr<ContainerRuntime> makePodmanRuntime(CommandRunner& runner, RuntimeOptions options = {});

// Podman's REST API (`podman system service`, systemd's podman.socket) at `socket`,
// e.g. /run/podman/podman.sock. Uses options.cgroup_root, freeze_timeout and
// command_timeout; podman and global_args belong to the service's own command line
// there (`podman --runtime runc system service ...`). Differences from the CLI: a
// checkpoint's archive arrives only after Podman has written it completely to a
// temporary file of its own (no overlap with ferry's transfer), is never compressed,
// and its statistics come from CRIU's stats-dump in the archive (runtime_ms is 0).
std::unique_ptr<ContainerRuntime> makePodmanApiRuntime(const std::filesystem::path& socket,
                                                       RuntimeOptions options = {});

// Both: the API for inspect, exists, image lookup and remove — no process start per call
// (in the lab 3–7 ms against 130–140 ms) — and the CLI for the checkpoint (its archive
// grows while CRIU dumps, so ferry streams it at once; the API hands it over only when
// complete), the restore (the API first copies the uploaded archive to a file of its own:
// slower at a 100 MB archive), images, and the cgroup freezer.
std::unique_ptr<ContainerRuntime> makeMixedPodmanRuntime(std::unique_ptr<ContainerRuntime> cli,
                                                         std::unique_ptr<ContainerRuntime> api);

// Asks the API service at `socket` for /_ping within `timeout`: ok when it answers "OK".
Status pingPodmanApi(const std::filesystem::path& socket, std::chrono::milliseconds timeout);

// Where the kernel exposes a container's freezer: cgroup v1 (…/freezer<path>/freezer.state,
// FROZEN/THAWED) or v2 (…<path>/cgroup.freeze, 1/0 with cgroup.events "frozen 1").
struct FreezerPaths {
  std::filesystem::path control;  // the file written
  std::filesystem::path state;    // the file read back
  bool v1 = true;
};
Result<FreezerPaths> freezerPaths(const std::filesystem::path& cgroup_root, const std::string& cgroup_path);

// Sums the anonymous and shared memory in a memory.stat (v1: total_rss + total_shmem;
// v2: anon + shmem).
std::uint64_t parseMemoryStat(std::string_view text);

}  // namespace ferry::checkpoint
