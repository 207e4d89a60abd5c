// The lab: several Linux hosts on one machine (deploy/lab/lab.sh does the work; see
// /work/team/LAB_CONTRACT.md). This library validates what a user asks for, with one-line
// errors that say what to do, and runs the scripts.
#pragma once

#include <array>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/base/error.h"

namespace ferry::lab {

inline constexpr std::array<std::string_view, 4> kHosts{"lb", "a", "b", "client"};
inline constexpr std::array<std::string_view, 4> kProfiles{"lan", "cloud", "wan", "edge"};
inline constexpr std::string_view kRunDir = "/run/ferry-lab";
inline constexpr std::string_view kDefaultMirror = "http://deb.debian.org/debian";

bool isHost(std::string_view name);
bool isProfile(std::string_view name);

// What the lab needs from the machine, behind an interface so tests can fake it.
class System {
 public:
  virtual ~System() = default;
  [[nodiscard]] virtual bool isRoot() const = 0;
  [[nodiscard]] virtual bool hasProgram(const std::string& name) const = 0;
  // An HTTP HEAD of `url` answered within `timeout`.
  [[nodiscard]] virtual bool httpReachable(const std::string& url,
                                           std::chrono::milliseconds timeout) const = 0;
  // Empty when unset.
  [[nodiscard]] virtual std::string env(const std::string& name) const = 0;
  // Whether the hosts' rootfs for the current package list is already cached.
  [[nodiscard]] virtual bool rootfsCached(const std::filesystem::path& deploy_dir) const = 0;
};

std::unique_ptr<System> makeSystem();

struct UpOptions {
  std::string profile = "lan";
  bool shared_storage = false;
};

// Bad input or an unprepared machine; every error here is a usage error (exit 2).
Status validateProfile(std::string_view profile);
Status validateHost(std::string_view host);
Status validateUp(const UpOptions& options, const System& system, const std::filesystem::path& deploy_dir);
Status validateExec(std::string_view host, const std::vector<std::string>& command);

// Where deploy/ is: $FERRY_DEPLOY_DIR, else the source tree ferry was built from.
std::filesystem::path findDeployDir(const System& system);

// Runs deploy/lab/lab.sh and deploy/lab/links.sh with the terminal passed through.
class LabController {
 public:
  LabController(std::unique_ptr<System> system, std::filesystem::path deploy_dir);

  [[nodiscard]] const System& system() const { return *system_; }
  [[nodiscard]] const std::filesystem::path& deployDir() const { return deploy_dir_; }

  // Each returns the script's exit code, or an error when it could not be run at all.
  Result<int> up(const UpOptions& options) const;
  Result<int> down() const;
  Result<int> status(bool json) const;
  Result<int> linkTest(const std::vector<std::string>& args) const;

  // Replaces this process with `nsenter` into HOST running `command` (stdin, stdout,
  // stderr and the exit code pass straight through). Returns only on failure.
  Error execInHost(const std::string& host, const std::vector<std::string>& command) const;

  // The nsenter command line execInHost runs for a host's holder PID (for tests).
  static std::vector<std::string> execArgv(int holder_pid, const std::vector<std::string>& command);

 private:
  Result<int> runScript(const std::string& script, const std::vector<std::string>& args,
                        std::chrono::milliseconds timeout) const;

  std::unique_ptr<System> system_;
  std::filesystem::path deploy_dir_;
};

// The running host's holder PID from /run/ferry-lab/hosts/HOST/pid (checked against the
// process's command line), or an error saying to run `ferry lab up`.
Result<int> holderPid(const std::string& host, const std::filesystem::path& run_dir = kRunDir);

}  // namespace ferry::lab
