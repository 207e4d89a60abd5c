#include "ferry/base/process.h"

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include <array>
#include <cerrno>
#include <cstring>
#include <sstream>

extern char** environ;  // NOLINT(readability-redundant-declaration)

namespace ferry {
namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~Fd() { reset(); }
  [[nodiscard]] int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

struct Pipe {
  Fd read;
  Fd write;
};

Result<Pipe> makePipe() {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) {
    return makeError(std::string("pipe2 failed: ") + std::strerror(errno));
  }
  return Pipe{Fd(fds[0]), Fd(fds[1])};
}

std::string lastLine(const std::string& text) {
  auto end = text.find_last_not_of("\n\r ");
  if (end == std::string::npos) return {};
  auto start = text.rfind('\n', end);
  start = (start == std::string::npos) ? 0 : start + 1;
  return text.substr(start, end - start + 1);
}

std::vector<std::string> buildEnv(const std::map<std::string, std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string entry(*e);
    auto eq = entry.find('=');
    if (eq != std::string::npos && extra.contains(entry.substr(0, eq))) continue;
    env.push_back(std::move(entry));
  }
  for (const auto& [k, v] : extra) env.push_back(k + "=" + v);
  return env;
}

}  // namespace

std::string findInPath(const std::string& program) {
  if (program.find('/') != std::string::npos) {
    return ::access(program.c_str(), X_OK) == 0 ? program : std::string();
  }
  const char* path = std::getenv("PATH");
  std::stringstream ss(path != nullptr ? path
                                       : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + program;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return {};
}

std::string joinArgv(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !a.empty() && a.find_first_of(" \t\n'\"\\$`*?[]{}()<>|;&") == std::string::npos;
    if (plain) {
      out += a;
    } else {
      out += '\'';
      for (char c : a) {
        if (c == '\'')
          out += "'\\''";
        else
          out += c;
      }
      out += '\'';
    }
  }
  return out;
}

Result<ProcessResult> runProcess(const std::vector<std::string>& argv, const ProcessOptions& options) {
  if (argv.empty()) return makeError("runProcess: empty command line");
  std::string exe = findInPath(argv[0]);
  if (exe.empty()) {
    return makeError("'" + argv[0] + "' was not found in PATH", "install it or add its directory to PATH");
  }

  auto in = makePipe();
  auto out = makePipe();
  auto err = makePipe();
  if (!in) return in.error();
  if (!out) return out.error();
  if (!err) return err.error();

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in->read.get(), STDIN_FILENO);
  if (options.capture_stdout) posix_spawn_file_actions_adddup2(&actions, out->write.get(), STDOUT_FILENO);
  if (options.capture_stderr) posix_spawn_file_actions_adddup2(&actions, err->write.get(), STDERR_FILENO);
  if (!options.cwd.empty()) {
    // posix_spawn_file_actions_addchdir_np is glibc >= 2.29.
    posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigdefault(&attr, &all);

  std::vector<std::string> env = buildEnv(options.env);
  std::vector<char*> cargv;
  cargv.reserve(argv.size() + 1);
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));  // NOLINT
  cargv.push_back(nullptr);
  std::vector<char*> cenv;
  cenv.reserve(env.size() + 1);
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  auto started = Clock::now();
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, exe.c_str(), &actions, &attr, cargv.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    return makeError("cannot start '" + argv[0] + "': " + std::strerror(rc));
  }
  in->read.reset();
  out->write.reset();
  err->write.reset();
  if (!options.capture_stdout) out->read.reset();
  if (!options.capture_stderr) err->read.reset();

  // Non-blocking stdin so a child that never reads cannot wedge us.
  ::fcntl(in->write.get(), F_SETFL, O_NONBLOCK);
  std::size_t stdin_off = 0;
  if (options.stdin_data.empty()) in->write.reset();

  ProcessResult result;
  auto deadline = started + options.timeout;
  bool term_sent = false;
  Clock::time_point kill_at{};
  std::array<char, 65536> buf{};

  while (out->read.get() >= 0 || err->read.get() >= 0 || in->write.get() >= 0) {
    std::vector<pollfd> pfds;
    if (out->read.get() >= 0) pfds.push_back({out->read.get(), POLLIN, 0});
    if (err->read.get() >= 0) pfds.push_back({err->read.get(), POLLIN, 0});
    if (in->write.get() >= 0) pfds.push_back({in->write.get(), POLLOUT, 0});
    auto now = Clock::now();
    const bool cancelled = options.cancel != nullptr && options.cancel->load();
    if (!term_sent && (now >= deadline || cancelled)) {
      (cancelled ? result.cancelled : result.timed_out) = true;
      ::kill(-pid, SIGTERM);
      term_sent = true;
      kill_at = now + options.kill_grace;
    }
    if (term_sent && now >= kill_at) {
      ::kill(-pid, SIGKILL);
      break;  // do not wait for grandchildren that keep the pipes open
    }
    auto wait_until = term_sent ? kill_at : deadline;
    auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wait_until - now).count();
    int n =
        ::poll(pfds.data(), pfds.size(), static_cast<int>(std::max<long>(1, std::min<long>(wait_ms, 1000))));
    if (n < 0 && errno != EINTR) break;
    for (const auto& p : pfds) {
      if (p.revents == 0) continue;
      if (p.fd == in->write.get()) {
        ssize_t w =
            ::write(p.fd, options.stdin_data.data() + stdin_off, options.stdin_data.size() - stdin_off);
        if (w > 0) stdin_off += static_cast<std::size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) stdin_off = options.stdin_data.size();
        if (stdin_off >= options.stdin_data.size()) in->write.reset();
        continue;
      }
      ssize_t r = ::read(p.fd, buf.data(), buf.size());
      if (r > 0) {
        (p.fd == out->read.get() ? result.out : result.err).append(buf.data(), static_cast<std::size_t>(r));
      } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
        if (p.fd == out->read.get())
          out->read.reset();
        else
          err->read.reset();
      }
    }
  }

  int status = 0;
  while (true) {
    pid_t w = ::waitpid(pid, &status, term_sent ? 0 : WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    if (w == 0) {
      // Pipes closed but child still running (it closed its stdout): wait with the deadline.
      auto now = Clock::now();
      const bool cancelled = options.cancel != nullptr && options.cancel->load();
      if (now >= deadline || cancelled) {
        (cancelled ? result.cancelled : result.timed_out) = true;
        ::kill(-pid, SIGKILL);
        term_sent = true;
        continue;
      }
      ::usleep(2000);
    }
  }
  if (WIFEXITED(status))
    result.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status))
    result.exit_code = 128 + WTERMSIG(status);
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return result;
}

Result<ProcessResult> runChecked(const std::vector<std::string>& argv, const ProcessOptions& options) {
  auto r = runProcess(argv, options);
  if (!r) return r.error();
  if (r->timed_out) {
    return makeError("'" + joinArgv(argv) + "' did not finish within " +
                     std::to_string(options.timeout.count()) + " ms");
  }
  if (r->cancelled) return makeError("'" + joinArgv(argv) + "' was stopped (cancelled)");
  if (r->exit_code != 0) {
    std::string line = lastLine(r->err);
    if (line.empty()) line = lastLine(r->out);
    return makeError("'" + joinArgv(argv) + "' failed with exit code " + std::to_string(r->exit_code) +
                     (line.empty() ? "" : ": " + line));
  }
  return r;
}

}  // namespace ferry
