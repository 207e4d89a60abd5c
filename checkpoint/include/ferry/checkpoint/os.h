// The operating system as the checkpoint library sees it: programs it runs (podman,
// criu, runc, conmon) and files it reads (/proc, /sys, /etc). Both are small
// interfaces so unit tests can feed recorded outputs instead of a real host.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/base/process.h"

namespace ferry::checkpoint {

class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Same contract as ferry::runProcess: an Error only when the program cannot be
  // started (not installed); a non-zero exit is reported in the ProcessResult.
  virtual Result<ProcessResult> run(const std::vector<std::string>& argv, const ProcessOptions& options) = 0;
  // Absolute path of a program in PATH, or empty when it is not installed.
  virtual std::string findProgram(const std::string& name) = 0;
};

class FileReader {
 public:
  virtual ~FileReader() = default;
  virtual Result<std::string> read(const std::string& path) = 0;
  virtual bool exists(const std::string& path) = 0;
};

// The real ones: ferry::runProcess / ferry::readFile on this machine.
std::unique_ptr<CommandRunner> makeSystemRunner();
std::unique_ptr<FileReader> makeSystemFileReader();

}  // namespace ferry::checkpoint
