// Fakes of the checkpoint library's OS interfaces: recorded program outputs and files.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ferry/checkpoint/os.h"

namespace ferry::checkpoint::testing {

struct Reply {
  int exit_code = 0;
  std::string out;
  std::string err;
};

// Answers a command line by the longest registered prefix of its arguments.
class FakeRunner final : public CommandRunner {
 public:
  void program(const std::string& name, const std::string& path = "") {
    paths_[name] = path.empty() ? "/usr/bin/" + name : path;
  }
  void reply(std::vector<std::string> argv_prefix, Reply r) {
    replies_.emplace_back(std::move(argv_prefix), r);
  }

  Result<ProcessResult> run(const std::vector<std::string>& argv, const ProcessOptions&) override {
    calls.push_back(argv);
    std::vector<std::string> args = argv;
    // Registered by program name, called by path: compare by name.
    auto slash = args[0].rfind('/');
    if (slash != std::string::npos) args[0] = args[0].substr(slash + 1);
    if (paths_.find(args[0]) == paths_.end()) {
      return makeError("'" + args[0] + "' was not found in PATH", "install it or add its directory to PATH");
    }
    const Reply* best = nullptr;
    std::size_t best_len = 0;
    for (const auto& [prefix, r] : replies_) {
      if (prefix.size() > args.size() || prefix.size() < best_len) continue;
      if (std::equal(prefix.begin(), prefix.end(), args.begin())) {
        best = &r;
        best_len = prefix.size();
      }
    }
    ProcessResult pr;
    if (best == nullptr) {
      pr.exit_code = 127;
      pr.err = "fake: no reply recorded";
      return pr;
    }
    pr.exit_code = best->exit_code;
    pr.out = best->out;
    pr.err = best->err;
    return pr;
  }
  std::string findProgram(const std::string& name) override {
    auto it = paths_.find(name);
    return it == paths_.end() ? std::string() : it->second;
  }

  std::vector<std::vector<std::string>> calls;

 private:
  std::map<std::string, std::string> paths_;
  std::vector<std::pair<std::vector<std::string>, Reply>> replies_;
};

class FakeFiles final : public FileReader {
 public:
  std::map<std::string, std::string> files;
  Result<std::string> read(const std::string& path) override {
    auto it = files.find(path);
    if (it == files.end()) return makeError("cannot read " + path + ": No such file or directory");
    return it->second;
  }
  bool exists(const std::string& path) override { return files.count(path) != 0; }
};

}  // namespace ferry::checkpoint::testing
