#include "ferry/checkpoint/os.h"

#include <filesystem>
#include <system_error>

#include "ferry/base/files.h"

namespace ferry::checkpoint {
namespace {

class SystemRunner final : public CommandRunner {
 public:
  Result<ProcessResult> run(const std::vector<std::string>& argv, const ProcessOptions& options) override {
    return runProcess(argv, options);
  }
  std::string findProgram(const std::string& name) override { return findInPath(name); }
};

class SystemFileReader final : public FileReader {
 public:
  Result<std::string> read(const std::string& path) override { return readFile(path); }
  bool exists(const std::string& path) override {
    std::error_code ec;
    return std::filesystem::exists(path, ec);
  }
};

}  // namespace

std::unique_ptr<CommandRunner> makeSystemRunner() {
  return std::make_unique<SystemRunner>();
}
std::unique_ptr<FileReader> makeSystemFileReader() {
  return std::make_unique<SystemFileReader>();
}

}  // namespace ferry::checkpoint
