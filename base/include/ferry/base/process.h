// Running other programs (podman, criu, nsenter, ip, nft) with a deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "ferry/base/error.h"

namespace ferry {

struct ProcessOptions {
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
  std::string stdin_data;                  // written to the child's stdin, then closed
  std::map<std::string, std::string> env;  // added to (or overriding) the environment
  std::string cwd;                         // empty: inherit
  bool capture_stdout = true;              // false: child inherits our stdout
  bool capture_stderr = true;              // false: child inherits our stderr
  // When set and it becomes true, the child is stopped like at the deadline
  // (ProcessResult::cancelled instead of timed_out).
  const std::atomic<bool>* cancel = nullptr;
  // Between SIGTERM to the child's process group and SIGKILL.
  std::chrono::milliseconds kill_grace{std::chrono::seconds(1)};
};

struct ProcessResult {
  int exit_code = -1;      // exit status, or 128+signal if killed by a signal
  bool timed_out = false;  // killed because the deadline passed
  bool cancelled = false;  // stopped because ProcessOptions::cancel became true
  std::string out;         // captured stdout (if capture_stdout)
  std::string err;         // captured stderr (if capture_stderr)
  std::chrono::milliseconds elapsed{0};

  [[nodiscard]] bool success() const { return exit_code == 0 && !timed_out && !cancelled; }
};

// Runs argv[0] (looked up in PATH) with the given arguments. Fails only when the
// program cannot be started at all (not found, not executable); a non-zero exit
// is reported in ProcessResult. On timeout (or cancel) the child's whole process group
// gets SIGTERM, then SIGKILL after `kill_grace`.
Result<ProcessResult> runProcess(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// Convenience: runs and turns a non-zero exit or timeout into an Error whose
// text names the command and quotes the last line of its stderr.
Result<ProcessResult> runChecked(const std::vector<std::string>& argv, const ProcessOptions& options = {});

// Finds a program in PATH; empty if absent.
std::string findInPath(const std::string& program);

// Shell-style quoting for messages and logs (never used to build shell commands).
std::string joinArgv(const std::vector<std::string>& argv);

}  // namespace ferry
