// `ferry check --deep`: `criu check` says "Looks good" where real dumps still fail (old
// CRIU and sockets, no CAP_SYS_RESOURCE, missing --file-locks), so checkpoint and restore
// a canary container holding a listening TCP socket, a file lock and a process of a
// non-root user, and say which of them broke. Nothing is left behind.
#include <unistd.h>

#include <chrono>
#include <thread>

#include "ferry/base/log.h"
#include "ferry/checkpoint/check_parsers.h"
#include "ferry/checkpoint/host_check.h"

namespace ferry::checkpoint {
namespace {

using Clock = std::chrono::steady_clock;

// Runs inside the canary: busybox plus util-linux flock copied from the host with its
// loader and libc into /tmp/ferry-canary (the image's busybox has no flock applet).
// The three things a dump must carry: a listening TCP socket, a file lock, a process
// of a non-root user (the image's user `canary`, uid 1000).
const char* const kCanaryScript =
    // A restored sleep returns EINTR (CRIU cannot restore a syscall restart block), so
    // the holders loop instead of sleeping once.
    "B=/bin/busybox; T=/tmp/ferry-canary; L='while :; do /bin/busybox sleep 3600; done'; "
    "$B mkdir -p /tmp/canary/www; echo canary-ok > /tmp/canary/www/index.html; "
    "$B httpd -f -p 7070 -h /tmp/canary/www & "
    "$T/loader --library-path $T $T/flock -x /tmp/canary/lock $B sh -c \"$L\" & "
    "$B su -s /bin/sh canary -c \"$L\" & "
    "wait";

// Prints socket=ok lock=ok user=ok for what is still there.
const char* const kVerifyScript =
    "B=/bin/busybox; T=/tmp/ferry-canary; "
    "$B wget -q -T 3 -O - http://127.0.0.1:7070/ 2>/dev/null | $B grep -q canary-ok && echo socket=ok; "
    "[ -e /tmp/canary/lock ] && { $T/loader --library-path $T $T/flock -n -x /tmp/canary/lock $B true "
    "2>/dev/null || echo lock=ok; }; "
    "for s in /proc/[0-9]*/status; do "
    "$B grep -q '^Uid:[[:space:]]*1000[[:space:]]' $s 2>/dev/null && { echo user=ok; break; }; done; true";

std::vector<std::string> podman(std::vector<std::string> args) {
  std::vector<std::string> argv{"podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::string lastLines(const std::string& text, std::size_t n) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    auto line = text.substr(start, end - start);
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.push_back(line);
    start = end + 1;
  }
  std::string s;
  for (std::size_t i = lines.size() > n ? lines.size() - n : 0; i < lines.size(); ++i) {
    s += (s.empty() ? "" : " | ") + lines[i];
  }
  return s;
}

std::string errorLines(const std::string& log) {
  std::string s;
  std::size_t start = 0;
  while (start < log.size()) {
    auto end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    auto line = log.substr(start, end - start);
    if (line.find("Error (") != std::string::npos) s += line + "\n";
    start = end + 1;
  }
  return s;
}

std::string missingWords(const CanaryState& s) {
  std::string w;
  auto add = [&w](const char* what) { w += (w.empty() ? "" : ", ") + std::string(what); };
  if (!s.socket) add("the listening TCP socket (port 7070 does not answer)");
  if (!s.lock) add("the file lock (/tmp/canary/lock is not held)");
  if (!s.user) add("the non-root process (no task of uid 1000)");
  return w;
}

class Deep {
 public:
  Deep(CommandRunner& runner, FileReader& files, const DeepCheckOptions& options)
      : runner_(runner), files_(files), options_(options) {
    name_ = options.name.empty() ? "ferry-check-canary-" + std::to_string(::getpid()) : options.name;
  }

  DeepCheckResult run() {
    removeLeftovers();
    bool ok = steps();
    cleanup();
    result_.passed = ok;
    return std::move(result_);
  }

 private:
  Result<ProcessResult> exec(const std::vector<std::string>& argv) {
    ProcessOptions po;
    po.timeout = options_.step_timeout;
    po.env["PODMAN_IGNORE_CGROUPSV1_WARNING"] = "1";
    return runner_.run(argv, po);
  }

  // Records a step; returns ok.
  bool record(const std::string& name, Clock::time_point start, bool ok, std::string detail) {
    auto secs = std::chrono::duration<double>(Clock::now() - start).count();
    result_.steps.push_back(DeepStep{name, ok, std::move(detail), secs});
    return ok;
  }

  bool fail(const std::string& broke) {
    if (result_.broke.empty()) result_.broke = broke;
    return false;
  }

  // Text of the CRIU log the failed podman call left in the container directory.
  std::string criuLog(const std::string& file) {
    auto r = exec(podman({"container", "inspect", "--format", "{{.StaticDir}}", name_}));
    if (!r.ok() || !r->success()) return {};
    auto dir = lastLines(r->out, 1);
    if (dir.empty()) return {};
    auto log = files_.read(dir + "/" + file);
    return log.ok() ? errorLines(*log) : std::string();
  }

  CanaryState probe() {
    auto r = exec(podman({"exec", name_, "/bin/busybox", "sh", "-c", kVerifyScript}));
    if (!r.ok() || !r->success()) return {};
    return parseCanaryState(r->out);
  }

  CanaryState waitFor(Clock::duration timeout) {
    auto deadline = Clock::now() + timeout;
    CanaryState s = probe();
    while (!s.all() && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      s = probe();
    }
    return s;
  }

  bool steps() {
    auto t = Clock::now();
    auto img = exec(podman({"image", "exists", options_.image}));
    if (!img.ok()) {
      record("podman", t, false, img.error().message());
      return fail("podman: " + img.error().message());
    }
    if (!img->success()) {
      record("image", t, false, "image '" + options_.image + "' is not on this host");
      return fail("the canary image '" + options_.image + "' is missing — the lab loads it into a and b");
    }
    record("image", t, true, options_.image);

    t = Clock::now();
    if (auto why = stageTools(); !why.empty()) {
      record("stage flock", t, false, why);
      return fail(why);
    }
    record("stage flock", t, true, staging_);

    t = Clock::now();
    auto create = exec(podman({"create", "--name", name_, "--user", "0", "--entrypoint", "/bin/busybox",
                               options_.image, "sh", "-c", kCanaryScript}));
    std::string why;
    if (!create.ok() || !create->success()) {
      why = create.ok() ? lastLines(create->err, 2) : create.error().message();
    } else if (auto cp = exec(podman({"cp", staging_ + "/ferry-canary", name_ + ":/tmp/"}));
               !cp.ok() || !cp->success()) {
      why = "podman cp: " + (cp.ok() ? lastLines(cp->err, 2) : cp.error().message());
    } else if (auto st = exec(podman({"start", name_})); !st.ok() || !st->success()) {
      why = st.ok() ? lastLines(st->err, 2) : st.error().message();
    }
    if (!why.empty()) {
      record("start canary", t, false, why);
      return fail("the canary container did not start: " + why);
    }
    auto before = waitFor(options_.ready_timeout);
    if (!before.all()) {
      record("start canary", t, false, "missing " + missingWords(before));
      return fail("the canary never got " + missingWords(before) + " (before any checkpoint)");
    }
    record("start canary", t, true, "socket, lock and uid-1000 process up");

    t = Clock::now();
    auto cp = exec(podman(
        {"container", "checkpoint", "--file-locks", "--compress", "none", "--export", archive_, name_}));
    if (!cp.ok() || !cp->success()) {
      std::string text = cp.ok() ? cp->err + "\n" + cp->out : cp.error().message();
      text += "\n" + criuLog("dump.log");
      auto words = diagnoseCriuFailure(text);
      record("checkpoint", t, false, lastLines(text, 3));
      return fail("checkpoint failed: " + (words.empty() ? lastLines(text, 2) : words));
    }
    record("checkpoint", t, true, "exported " + archive_);

    t = Clock::now();
    auto rm = exec(podman({"rm", "-f", "-t", "0", name_}));
    if (!rm.ok() || !rm->success()) {
      auto rm_why = rm.ok() ? lastLines(rm->err, 2) : rm.error().message();
      record("remove", t, false, rm_why);
      return fail("removing the checkpointed canary failed: " + rm_why);
    }
    record("remove", t, true, "");

    t = Clock::now();
    auto rs = exec(podman({"container", "restore", "--file-locks", "--import", archive_, "--name", name_}));
    if (!rs.ok() || !rs->success()) {
      std::string text = rs.ok() ? rs->err + "\n" + rs->out : rs.error().message();
      text += "\n" + criuLog("restore.log");
      auto words = diagnoseCriuFailure(text);
      record("restore", t, false, lastLines(text, 3));
      return fail("restore failed: " + (words.empty() ? lastLines(text, 2) : words));
    }
    record("restore", t, true, "");

    t = Clock::now();
    auto after = waitFor(std::chrono::seconds(5));
    if (!after.all()) {
      record("verify", t, false, "lost " + missingWords(after));
      return fail("after restore the canary lost " + missingWords(after));
    }
    record("verify", t, true, "socket answers, lock held, uid-1000 process alive");
    return true;
  }

  void removeLeftovers() {
    // A canary of this name can only be a leftover of a killed run of ours.
    (void)exec(podman({"rm", "-f", "-t", "0", "--ignore", name_}));
  }

  void cleanup() {
    auto t = Clock::now();
    auto rm = exec(podman({"rm", "-f", "-t", "0", "--ignore", name_}));
    bool ok = rm.ok() && rm->success();
    std::string detail = ok ? "canary removed" : "podman rm -f " + name_ + " failed";
    if (!staging_.empty()) {
      auto rmdir = exec({"rm", "-rf", "--", staging_});
      bool dir_ok = rmdir.ok() && rmdir->success();
      ok = ok && dir_ok;
      detail += dir_ok ? ", its checkpoint and " + staging_ + " deleted" : ", rm -rf " + staging_ + " failed";
    }
    record("cleanup", t, ok, detail);
    if (!ok) log::get("checkpoint")->warn("deep check left something behind: {}", detail);
  }

  // Copies the host's flock with its loader and libraries into STAGING/ferry-canary
  // (the loader as `loader`); the checkpoint archive goes to STAGING too. Returns an
  // error text, empty on success.
  std::string stageTools() {
    auto flock = runner_.findProgram("flock");
    if (flock.empty()) return "util-linux flock not found on this host — install util-linux";
    auto ldd = exec({"ldd", flock});
    if (!ldd.ok() || !ldd->success()) {
      return "ldd " + flock + " failed: " + (ldd.ok() ? lastLines(ldd->err, 1) : ldd.error().message());
    }
    auto libs = parseLddOutput(ldd->out);
    if (libs.loader.empty()) return "ldd " + flock + " named no program loader: " + lastLines(ldd->out, 2);
    auto dir = exec({"mktemp", "-d", "/tmp/ferry-check-XXXXXX"});
    if (!dir.ok() || !dir->success()) return "mktemp -d failed";
    staging_ = lastLines(dir->out, 1);
    if (staging_.rfind("/tmp/ferry-check-", 0) != 0) {
      staging_.clear();
      return "mktemp printed an odd path";
    }
    archive_ = staging_ + "/checkpoint.tar";
    const std::string tools = staging_ + "/ferry-canary";
    std::vector<std::string> copy{"cp", "-L", flock};
    copy.insert(copy.end(), libs.libraries.begin(), libs.libraries.end());
    copy.push_back(tools + "/");
    auto mk = exec({"mkdir", "-m", "0755", tools});
    auto cp = exec(copy);
    auto ld = exec({"cp", "-L", libs.loader, tools + "/loader"});
    for (const auto* r : {&mk, &cp, &ld}) {
      if (!r->ok() || !(*r)->success()) {
        return "copying flock and its libraries failed: " +
               (r->ok() ? lastLines((*r)->err, 1) : r->error().message());
      }
    }
    return {};
  }

  CommandRunner& runner_;
  FileReader& files_;
  const DeepCheckOptions& options_;
  std::string name_;
  std::string staging_;  // host directory with the tools and the checkpoint archive
  std::string archive_;
  DeepCheckResult result_;
};

}  // namespace

DeepCheckResult runDeepCheck(CommandRunner& runner, FileReader& files, const DeepCheckOptions& options) {
  return Deep(runner, files, options).run();
}

nlohmann::json deepToJson(const DeepCheckResult& r) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : r.steps) {
    steps.push_back({{"name", s.name}, {"ok", s.ok}, {"detail", s.detail}, {"seconds", s.seconds}});
  }
  return {{"passed", r.passed}, {"broke", r.broke}, {"steps", steps}};
}

Result<DeepCheckResult> deepFromJson(const nlohmann::json& j) {
  try {
    DeepCheckResult r;
    r.passed = j.at("passed").get<bool>();
    r.broke = j.value("broke", "");
    for (const auto& s : j.at("steps")) {
      r.steps.push_back(DeepStep{s.value("name", ""), s.value("ok", false), s.value("detail", ""),
                                 s.value("seconds", 0.0)});
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return makeError(std::string("malformed deep check result: ") + e.what());
  }
}

std::string renderDeep(const DeepCheckResult& r) {
  std::string out = "deep check (checkpoint + restore of a canary container):\n";
  for (const auto& s : r.steps) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.2f s", s.seconds);
    out += "  " + std::string(s.ok ? "✓" : "✗") + " " + s.name + "  " + secs;
    if (!s.detail.empty()) out += "  " + s.detail;
    out += "\n";
  }
  out += r.passed ? "deep check: passed\n" : "deep check: FAILED — " + r.broke + "\n";
  return out;
}

}  // namespace ferry::checkpoint
