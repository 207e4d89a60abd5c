#include "ferry/lab/lab.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/base/process.h"

namespace ferry::lab {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

const std::string kHostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

template <std::size_t N>
std::string joinNames(const std::array<std::string_view, N>& names) {
  std::string out;
  for (auto n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

std::string selfExe() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

class RealSystem final : public System {
 public:
  [[nodiscard]] bool isRoot() const override { return ::geteuid() == 0; }

  [[nodiscard]] bool hasProgram(const std::string& name) const override {
    if (!findInPath(name).empty()) return true;
    // debootstrap lives in /usr/sbin, which a non-login shell may lack in PATH.
    for (const char* dir : {"/usr/sbin", "/sbin", "/usr/local/sbin"}) {
      if (::access((fs::path(dir) / name).c_str(), X_OK) == 0) return true;
    }
    return false;
  }

  [[nodiscard]] bool httpReachable(const std::string& url, milliseconds timeout) const override {
    auto secs = std::to_string(std::max<long long>(1, (timeout.count() + 999) / 1000));
    ProcessOptions opts;
    opts.timeout = timeout + seconds(2);
    auto r = runProcess(
        {"curl", "-sS", "-o", "/dev/null", "-I", "--max-time", secs, "--connect-timeout", secs, url}, opts);
    return r.ok() && r->success();
  }

  [[nodiscard]] std::string env(const std::string& name) const override {
    const char* v = std::getenv(name.c_str());
    return v == nullptr ? std::string() : std::string(v);
  }

  [[nodiscard]] bool rootfsCached(const fs::path& deploy_dir) const override {
    ProcessOptions opts;
    opts.timeout = seconds(30);
    auto r = runProcess({"bash", (deploy_dir / "lab" / "rootfs.sh").string(), "--cached"}, opts);
    return r.ok() && r->success();
  }
};

}  // namespace

bool isHost(std::string_view name) {
  return std::find(kHosts.begin(), kHosts.end(), name) != kHosts.end();
}

bool isProfile(std::string_view name) {
  return std::find(kProfiles.begin(), kProfiles.end(), name) != kProfiles.end();
}

std::unique_ptr<System> makeSystem() {
  return std::make_unique<RealSystem>();
}

Status validateProfile(std::string_view profile) {
  if (isProfile(profile)) return okStatus();
  return makeError("unknown profile '" + std::string(profile) + "'", "use one of " + joinNames(kProfiles));
}

Status validateHost(std::string_view host) {
  if (isHost(host)) return okStatus();
  return makeError("unknown host '" + std::string(host) + "'", "use one of " + joinNames(kHosts));
}

Status validateUp(const UpOptions& options, const System& system, const fs::path& deploy_dir) {
  FERRY_TRY(validateProfile(options.profile));
  if (!system.isRoot()) return makeError("'ferry lab up' needs root", "run it as root (sudo ferry lab up)");
  if (system.rootfsCached(deploy_dir)) return okStatus();
  // The hosts' rootfs must be built: that needs debootstrap and Debian's archive.
  if (!system.hasProgram("debootstrap")) {
    return makeError("debootstrap is missing (needed to build the lab hosts' Debian 13 userland)",
                     "apt-get install debootstrap (or make deps)");
  }
  std::string mirror = system.env("FERRY_DEBIAN_MIRROR");
  if (mirror.empty()) mirror = std::string(kDefaultMirror);
  if (!system.httpReachable(mirror + "/dists/trixie/Release", seconds(5))) {
    return makeError(
        "Debian's archive " + mirror + " is unreachable (needed once to build the lab hosts' userland)",
        "check the network or proxy, or set FERRY_DEBIAN_MIRROR to a reachable mirror");
  }
  return okStatus();
}

Status validateExec(std::string_view host, const std::vector<std::string>& command) {
  FERRY_TRY(validateHost(host));
  if (command.empty()) return makeError("no command to run", "usage: ferry lab exec HOST -- CMD ARGS...");
  return okStatus();
}

fs::path findDeployDir(const System& system) {
  std::string dir = system.env("FERRY_DEPLOY_DIR");
  return dir.empty() ? fs::path(FERRY_SOURCE_DEPLOY_DIR) : fs::path(dir);
}

Result<int> holderPid(const std::string& host, const fs::path& run_dir) {
  const Error not_running =
      makeError("lab host '" + host + "' is not running", "run 'ferry lab up' first (as root)");
  auto text = readFile(run_dir / "hosts" / host / "pid");
  if (!text.ok()) return not_running;
  const int pid = static_cast<int>(std::strtol(text->c_str(), nullptr, 10));
  if (pid <= 0) return not_running;
  auto cmdline = readFile(fs::path("/proc") / std::to_string(pid) / "cmdline");
  if (!cmdline.ok() || cmdline->rfind("ferry-lab-holder:" + host + std::string(1, '\0'), 0) != 0)
    return not_running;
  return pid;
}

LabController::LabController(std::unique_ptr<System> system, fs::path deploy_dir)
    : system_(std::move(system)), deploy_dir_(std::move(deploy_dir)) {}

Result<int> LabController::runScript(const std::string& script, const std::vector<std::string>& args,
                                     milliseconds timeout) const {
  fs::path path = deploy_dir_ / "lab" / script;
  if (!fs::exists(path)) {
    return makeError("lab script " + path.string() + " not found",
                     "set FERRY_DEPLOY_DIR to the repository's deploy/ directory");
  }
  std::vector<std::string> argv{"bash", path.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions opts;
  opts.timeout = timeout;
  opts.capture_stdout = false;
  opts.capture_stderr = false;
  if (auto exe = selfExe(); !exe.empty()) opts.env["FERRY_BIN"] = exe;
  log::get("lab")->debug("running {}", joinArgv(argv));
  auto r = runProcess(argv, opts);
  if (!r.ok()) return r.error();
  if (r->timed_out) {
    return makeError(joinArgv(argv) + " timed out", "run 'ferry lab down' and retry");
  }
  return r->exit_code;
}

Result<int> LabController::up(const UpOptions& options) const {
  std::vector<std::string> args{"up", "--profile", options.profile};
  if (options.shared_storage) args.emplace_back("--shared-storage");
  return runScript("lab.sh", args, minutes(30));  // a cold rootfs build downloads ~100 MB
}

Result<int> LabController::down() const {
  return runScript("lab.sh", {"down"}, minutes(5));
}

Result<int> LabController::status(bool json) const {
  std::vector<std::string> args{"status"};
  if (json) args.emplace_back("--json");
  return runScript("lab.sh", args, seconds(30));
}

Result<int> LabController::linkTest(const std::vector<std::string>& args) const {
  fs::path links = deploy_dir_ / "lab" / "links.sh";
  if (!fs::exists(links)) {
    return makeError("link test unavailable: " + links.string() + " does not exist yet",
                     "the links helper provides it; pull the latest tree");
  }
  std::vector<std::string> full{"test"};
  full.insert(full.end(), args.begin(), args.end());
  return runScript("links.sh", full, minutes(20));
}

std::vector<std::string> LabController::execArgv(int holder_pid, const std::vector<std::string>& command) {
  std::vector<std::string> argv{"nsenter", "-t", std::to_string(holder_pid), "-m", "-n", "-u", "-r",
                                "-w",      "--"};
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

Error LabController::execInHost(const std::string& host, const std::vector<std::string>& command) const {
  if (auto s = validateExec(host, command); !s.ok()) return s.error();
  auto pid = holderPid(host);
  if (!pid.ok()) return pid.error();
  if (system_->isRoot()) {
    // Keep the hosts' `ferry` current with this binary (cheap when nothing changed).
    ProcessOptions opts;
    opts.timeout = seconds(60);
    if (auto exe = selfExe(); !exe.empty()) opts.env["FERRY_BIN"] = exe;
    auto r = runProcess({"bash", (deploy_dir_ / "lab" / "lab.sh").string(), "bundle", "--if-changed"}, opts);
    if (r.ok() && !r->success())
      log::get("lab")->warn("could not refresh the hosts' ferry bundle: {}", r->err);
  }
  auto argv = execArgv(*pid, command);
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  // The host's environment, not the machine's: its own PATH, Podman's v1 warning off.
  ::setenv("PATH", kHostPath.c_str(), 1);
  ::setenv("HOME", "/root", 1);
  ::setenv("PODMAN_IGNORE_CGROUPSV1_WARNING", "1", 1);
  ::execvp(cargv[0], cargv.data());
  return makeError("cannot run nsenter: " + std::string(std::strerror(errno)),
                   "install util-linux (apt-get install util-linux)");
}

}  // namespace ferry::lab
