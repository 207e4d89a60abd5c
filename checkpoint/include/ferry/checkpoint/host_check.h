// `ferry check`: the preflight a user runs before trusting a host with a migration.
//
// collectHostReport() gathers facts (versions, `criu check`, kernel features, cgroup
// mode, CPU, capabilities) through the CommandRunner / FileReader interfaces;
// evaluateHost() turns them into table rows with a reason for every ✗;
// comparePeers() says whether a checkpoint from one host restores on another;
// runDeepCheck() proves it with a real checkpoint + restore of a canary container.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"
#include "ferry/checkpoint/os.h"

namespace ferry::checkpoint {

// A dotted version such as 4.2.1 or 6.18.44 (the rest of the text is kept in `text`).
struct Version {
  int major = 0;
  int minor = 0;
  int patch = 0;
  std::string text;  // as the tool printed it

  [[nodiscard]] bool atLeast(int ma, int mi, int pa = 0) const;
  friend bool operator==(const Version& a, const Version& b) {
    return a.major == b.major && a.minor == b.minor && a.patch == b.patch;
  }
};

// The oldest CRIU that can dump TCP/UDP sockets on kernels ≥ 6.16.
inline constexpr int kCriuSocketsMajor = 4;
inline constexpr int kCriuSocketsMinor = 2;

struct ToolInfo {
  std::string name;     // "criu", "podman", "runc", "conmon"
  bool found = false;   // installed and printed a version we understood
  std::string path;     // where it was found
  Version version;      // valid when found
  std::string problem;  // why not found / not understood (one line with a hint)
};

// One `criu check --feature NAME`.
struct FeatureProbe {
  std::string name;
  bool supported = false;
  std::string detail;  // CRIU's own words when not supported
};

struct CriuCheck {
  bool ran = false;
  bool passed = false;                 // "Looks good." (plain `criu check`)
  std::string summary;                 // the verdict line CRIU printed
  std::vector<std::string> lines;      // warnings/errors of plain `criu check`
  bool all_passed = false;             // `criu check --all` said "Looks good."
  std::vector<std::string> all_lines;  // warnings/errors of `criu check --all`
};

enum class CgroupMode { kUnknown, kV1, kV2, kHybrid };
std::string cgroupModeName(CgroupMode mode);
CgroupMode cgroupModeFromName(const std::string& name);

struct CpuInfo {
  std::string vendor;
  std::string model;
  int count = 0;
  std::vector<std::string> flags;  // sorted
};

struct HostReport {
  std::string hostname;
  Version kernel;
  std::string machine;  // x86_64, aarch64 ...
  ToolInfo podman, runtime, conmon, criu;
  CriuCheck criu_check;
  std::vector<FeatureProbe> features;  // mem_dirty_track, uffd, uffd-noncoop, network_lock_nftables
  bool iptables_restore = false;       // CRIU's iptables network lock runs iptables-restore
  // net.ipv4.tcp_slow_start_after_idle (0 or 1; empty when unreadable). On (1), the peer
  // link's window restarts small after every pause: the freeze-time delta pays for it.
  std::optional<int> tcp_slow_start_after_idle;
  CgroupMode cgroup_mode = CgroupMode::kUnknown;
  CpuInfo cpu;
  std::optional<std::uint64_t> cap_eff;  // from /proc/self/status
  bool cap_sys_resource = false;
  bool prlimit_shim = false;  // the lab's ferry-lab-prlimit-shim is wired into criu
  std::string prlimit_shim_where;
  std::vector<std::string> problems;  // facts we could not read (with hints)

  [[nodiscard]] const FeatureProbe* feature(const std::string& name) const;
};

// One row of the table: ✓/✗, what it is, the value, and the reason for a ✗.
struct CheckItem {
  std::string key;    // stable id for JSON: "criu", "mode.precopy" ...
  std::string label;  // what a human reads
  bool ok = false;
  std::string value;
  std::string reason;  // why ✗ (or a note for ✓), empty otherwise
};

struct HostVerdict {
  std::vector<CheckItem> items;
  bool can_checkpoint = false;  // cold migration: dump + restore works as far as we can tell
  bool can_precopy = false;
  bool can_postcopy = false;
};

struct CollectOptions {
  std::chrono::milliseconds tool_timeout{std::chrono::seconds(30)};
};

HostReport collectHostReport(CommandRunner& runner, FileReader& files, const CollectOptions& options = {});
HostVerdict evaluateHost(const HostReport& report);

// JSON: {"host": {...facts...}, "items": [...], "modes": {...}} — stable keys.
nlohmann::json reportToJson(const HostReport& report, const HostVerdict& verdict);
Result<HostReport> reportFromJson(const nlohmann::json& j);
std::string renderHostTable(const HostReport& report, const HostVerdict& verdict);

// ---- peers ------------------------------------------------------------------
struct CpuCompat {
  bool checked = false;  // criu cpuinfo dump on the source + check on the target ran
  bool compatible = false;
  std::string detail;
};

struct PeerVerdict {
  std::string source, target;
  bool restorable = false;
  std::vector<CheckItem> items;
};

PeerVerdict comparePeers(const std::string& source_name, const HostReport& source,
                         const std::string& target_name, const HostReport& target, const CpuCompat& cpu);
nlohmann::json peerToJson(const PeerVerdict& verdict);
std::string renderPeerTable(const PeerVerdict& verdict);

// `criu cpuinfo dump` into a temporary directory; returns the raw cpuinfo.img.
Result<std::string> dumpCpuInfo(CommandRunner& runner);
// Writes the image into a temporary directory and runs `criu cpuinfo check` there.
CpuCompat checkCpuInfo(CommandRunner& runner, const std::string& image);

// ---- deep check ---------------------------------------------------------------
struct DeepCheckOptions {
  std::string image = "ferry-canary";
  std::string name;  // container name; empty: ferry-check-canary-<pid>
  std::chrono::milliseconds ready_timeout{std::chrono::seconds(20)};
  std::chrono::milliseconds step_timeout{std::chrono::seconds(120)};
};

struct DeepStep {
  std::string name;
  bool ok = false;
  std::string detail;
  double seconds = 0;
};

struct DeepCheckResult {
  bool passed = false;
  std::string broke;  // what broke, in words ("the listening TCP socket: ...")
  std::vector<DeepStep> steps;
};

DeepCheckResult runDeepCheck(CommandRunner& runner, FileReader& files, const DeepCheckOptions& options = {});
nlohmann::json deepToJson(const DeepCheckResult& result);
Result<DeepCheckResult> deepFromJson(const nlohmann::json& j);
std::string renderDeep(const DeepCheckResult& result);

}  // namespace ferry::checkpoint
