#include "ferry/checkpoint/runtime.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/checkpoint/check_parsers.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

std::string lastLine(const std::string& text) {
  auto end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return {};
  auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

template <typename T>
T number(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return T{};
  return it->get<T>();
}

double microsToMs(const json& j, const char* key) {
  return number<double>(j, key) / 1000.0;
}

// The object Podman prints for one container, or the first of a list.
Result<json> parseJson(std::string_view text, const char* what) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) {
    return makeError(std::string("cannot parse ") + what + ": not JSON (" +
                     std::string(text.substr(0, std::min<std::size_t>(text.size(), 120))) + ")");
  }
  return j;
}

Status writeSmallFile(const fs::path& path, std::string_view content) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return makeError("cannot open " + path.string() + ": " + std::strerror(errno));
  ssize_t w = ::write(fd, content.data(), content.size());
  int saved = errno;
  ::close(fd);
  if (w != static_cast<ssize_t>(content.size()))
    return makeError("cannot write '" + std::string(content) + "' to " + path.string() + ": " +
                     std::strerror(saved));
  return okStatus();
}

class PodmanRuntime final : public ContainerRuntime {
 public:
  PodmanRuntime(CommandRunner& runner, RuntimeOptions options)
      : runner_(runner), options_(std::move(options)) {}

  Result<ContainerInfo> inspect(const std::string& name) override {
    auto r = podman({"container", "inspect", name}, options_.command_timeout);
    if (!r) return r.error();
    if (!r->success()) {
      if (r->err.find("no such container") != std::string::npos)
        return makeError("no container named '" + name + "' on this host",
                         "check the name with 'podman ps -a' on the source host");
      return commandError("podman container inspect " + name, *r);
    }
    return parseInspect(r->out);
  }

  Result<bool> exists(const std::string& name) override {
    auto r = podman({"container", "exists", name}, options_.command_timeout);
    if (!r) return r.error();
    if (r->timed_out) return commandError("podman container exists " + name, *r);
    if (r->exit_code == 0) return true;
    if (r->exit_code == 1) return false;
    return commandError("podman container exists " + name, *r);
  }

  Result<std::optional<std::string>> imageId(const std::string& ref) override {
    auto r = podman({"image", "inspect", "--format", "{{.Id}}", ref}, options_.command_timeout);
    if (!r) return r.error();
    if (!r->success()) {
      if (r->err.find("image not known") != std::string::npos ||
          r->err.find("no such image") != std::string::npos)
        return std::optional<std::string>{};
      return commandError("podman image inspect " + ref, *r);
    }
    auto id = lastLine(r->out);
    if (id.empty()) return makeError("podman image inspect " + ref + " printed no ID");
    return std::optional<std::string>{id};
  }

  Status freeze(const ContainerInfo& c) override { return setFrozen(c, true); }
  Status thaw(const ContainerInfo& c) override { return setFrozen(c, false); }

  Result<bool> frozen(const ContainerInfo& c) override {
    auto paths = freezerPaths(options_.cgroup_root, c.cgroup_path);
    if (!paths) return paths.error();
    auto state = readFile(paths->state);
    if (!state) return state.error();
    return isFrozen(*paths, *state);
  }

  Result<std::uint64_t> memoryBytes(const ContainerInfo& c) override {
    if (c.cgroup_path.empty() || c.cgroup_path.front() != '/')
      return makeError("container " + c.name + " has no cgroup path");
    for (const auto& p : {options_.cgroup_root / "memory" / c.cgroup_path.substr(1) / "memory.stat",
                          options_.cgroup_root / c.cgroup_path.substr(1) / "memory.stat"}) {
      std::error_code ec;
      if (!fs::exists(p, ec)) continue;
      auto text = readFile(p);
      if (!text) return text.error();
      return parseMemoryStat(*text);
    }
    return makeError("no memory.stat for container " + c.name + " under " + options_.cgroup_root.string());
  }

  Result<CheckpointStats> checkpoint(const std::string& name, const CheckpointOptions& o) override {
    std::vector<std::string> args{"container", "checkpoint", "--print-stats"};
    if (!o.archive.empty()) {
      args.push_back("--export=" + o.archive.string());
      args.push_back("--compress=" + o.compress);
    }
    if (o.keep) args.emplace_back("--keep");
    if (o.tcp_established) args.emplace_back("--tcp-established");
    if (o.file_locks) args.emplace_back("--file-locks");
    args.push_back(name);
    auto r = podman(args, o.timeout);
    if (!r) return r.error();
    if (!r->success()) return criuError("checkpoint of " + name, *r);
    return parseCheckpointStats(r->out);
  }

  Result<RestoreStats> restore(const std::string& name, const RestoreOptions& o) override {
    std::vector<std::string> args{"container", "restore", "--print-stats"};
    if (o.tcp_established) args.emplace_back("--tcp-established");
    if (o.file_locks) args.emplace_back("--file-locks");
    if (!o.archive.empty()) {
      args.push_back("--import=" + o.archive.string());
    } else {
      args.push_back(name);
    }
    auto r = podman(args, o.timeout);
    if (!r) return r.error();
    if (!r->success()) return criuError("restore of " + name, *r);
    return parseRestoreStats(r->out);
  }

  Status remove(const std::string& name, std::chrono::seconds stop_timeout) override {
    auto r = podman(
        {"container", "rm", "--force", "--ignore", "--time", std::to_string(stop_timeout.count()), name},
        options_.command_timeout + stop_timeout);
    if (!r) return r.error();
    if (!r->success()) return commandError("podman container rm " + name, *r);
    return okStatus();
  }

  Status saveImage(const std::string& image_id, const fs::path& archive) override {
    auto r = podman({"image", "save", "--format", "oci-archive", "--output", archive.string(), image_id},
                    std::chrono::minutes(10));
    if (!r) return r.error();
    if (!r->success()) return commandError("podman image save " + image_id, *r);
    return okStatus();
  }

  Result<std::string> loadImage(const fs::path& archive) override {
    auto r = podman({"image", "load", "--input", archive.string()}, std::chrono::minutes(10));
    if (!r) return r.error();
    if (!r->success()) return commandError("podman image load " + archive.string(), *r);
    // "Loaded image: localhost/x:y" or "Loaded image(s): sha256:..." — the caller checks
    // the ID it expects with imageId(), which is what restore needs.
    return lastLine(r->out);
  }

 private:
  Result<ProcessResult> podman(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
    std::vector<std::string> argv{options_.podman};
    argv.insert(argv.end(), options_.global_args.begin(), options_.global_args.end());
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessOptions po;
    po.timeout = timeout;
    po.env["PODMAN_IGNORE_CGROUPSV1_WARNING"] = "1";
    log::get("checkpoint")->debug("running {}", joinArgv(argv));
    auto r = runner_.run(argv, po);
    if (!r)
      return makeError(r.error().what,
                       "install podman (Debian: apt-get install podman) or set podman = in the node config");
    return r;
  }

  static Error commandError(const std::string& what, const ProcessResult& r) {
    if (r.timed_out) return makeError(what + " timed out after " + std::to_string(r.elapsed.count()) + " ms");
    auto line = lastLine(r.err.empty() ? r.out : r.err);
    return makeError(what + " failed (exit " + std::to_string(r.exit_code) + "): " + line);
  }

  static Error criuError(const std::string& what, const ProcessResult& r) {
    Error e = commandError(what, r);
    auto diagnosis = diagnoseCriuFailure(r.err + "\n" + r.out);
    if (!diagnosis.empty()) e.hint = diagnosis;
    return e;
  }

  static bool isFrozen(const FreezerPaths& p, const std::string& state) {
    if (p.v1) return state.rfind("FROZEN", 0) == 0;
    return state.find("frozen 1") != std::string::npos;
  }

  Status setFrozen(const ContainerInfo& c, bool freeze) {
    auto paths = freezerPaths(options_.cgroup_root, c.cgroup_path);
    if (!paths) return paths.error();
    std::string_view value = paths->v1 ? (freeze ? "FROZEN" : "THAWED") : (freeze ? "1" : "0");
    FERRY_TRY(writeSmallFile(paths->control, value));
    auto deadline = Clock::now() + options_.freeze_timeout;
    while (true) {
      auto state = readFile(paths->state);
      if (!state) return state.error();
      if (isFrozen(*paths, *state) == freeze) return okStatus();
      if (Clock::now() > deadline) {
        return makeError(std::string(freeze ? "freezing" : "thawing") + " container " + c.name +
                             " did not finish within " + std::to_string(options_.freeze_timeout.count()) +
                             " ms (state: " + lastLine(*state) + ")",
                         "a task may be stuck in an uninterruptible wait (D state); check 'ps -eo "
                         "pid,stat,wchan' on the host");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  CommandRunner& runner_;
  RuntimeOptions options_;
};

}  // namespace

Result<FreezerPaths> freezerPaths(const fs::path& cgroup_root, const std::string& cgroup_path) {
  if (cgroup_path.empty() || cgroup_path.front() != '/' || cgroup_path.find("..") != std::string::npos)
    return makeError("container cgroup path '" + cgroup_path + "' is not an absolute cgroup path");
  std::error_code ec;
  fs::path v1 = cgroup_root / "freezer" / cgroup_path.substr(1);
  if (fs::exists(v1 / "freezer.state", ec))
    return FreezerPaths{v1 / "freezer.state", v1 / "freezer.state", true};
  fs::path v2 = cgroup_root / cgroup_path.substr(1);
  if (fs::exists(v2 / "cgroup.freeze", ec))
    return FreezerPaths{v2 / "cgroup.freeze", v2 / "cgroup.events", false};
  return makeError("no freezer for cgroup " + cgroup_path + " under " + cgroup_root.string(),
                   "the kernel needs the cgroup v1 freezer controller or cgroup v2 (cgroup.freeze); is the "
                   "container running?");
}

std::uint64_t parseMemoryStat(std::string_view text) {
  std::uint64_t v1 = 0;
  std::uint64_t v2 = 0;
  bool has_v1 = false;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    auto line = text.substr(start, end - start);
    start = end + 1;
    auto space = line.find(' ');
    if (space == std::string_view::npos) continue;
    auto key = line.substr(0, space);
    std::uint64_t value = std::strtoull(std::string(line.substr(space + 1)).c_str(), nullptr, 10);
    if (key == "total_rss" || key == "total_shmem") {
      v1 += value;
      has_v1 = true;
    } else if (key == "anon" || key == "shmem") {
      v2 += value;
    }
  }
  return has_v1 ? v1 : v2;
}

Result<ContainerInfo> parseInspect(std::string_view text) {
  auto parsed = parseJson(text, "podman inspect output");
  if (!parsed) return parsed.error();
  json j = *parsed;
  if (j.is_array()) {
    if (j.empty()) return makeError("podman inspect printed an empty list");
    j = j.front();
  }
  if (!j.is_object()) return makeError("podman inspect output is not an object");
  ContainerInfo c;
  c.name = j.value("Name", "");
  c.id = j.value("Id", "");
  c.image_id = j.value("Image", "");
  c.image_name = j.value("ImageName", "");
  if (c.id.empty() || c.name.empty()) return makeError("podman inspect output has no Id or Name");
  if (auto s = j.find("State"); s != j.end() && s->is_object()) {
    c.status = s->value("Status", "");
    c.running = s->value("Running", false);
    c.pid = s->value("Pid", 0);
    c.cgroup_path = s->value("CgroupPath", "");
  }
  c.static_dir = j.value("StaticDir", "");
  if (auto m = j.find("Mounts"); m != j.end() && m->is_array()) {
    for (const auto& e : *m) {
      if (!e.is_object()) continue;
      c.mounts.push_back({e.value("Type", ""), e.value("Source", ""), e.value("Destination", "")});
    }
  }
  if (auto hc = j.find("HostConfig"); hc != j.end() && hc->is_object()) {
    if (auto pb = hc->find("PortBindings"); pb != hc->end() && pb->is_object()) {
      for (const auto& [key, bindings] : pb->items()) {
        // "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]
        auto slash = key.find('/');
        int cport = std::atoi(key.substr(0, slash).c_str());
        std::string proto = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
        if (!bindings.is_array()) continue;
        for (const auto& b : bindings) {
          if (!b.is_object()) continue;
          int hport = std::atoi(b.value("HostPort", "0").c_str());
          if (cport <= 0 || cport > 65535 || hport < 0 || hport > 65535) continue;
          c.ports.push_back({proto, static_cast<std::uint16_t>(cport), b.value("HostIp", ""),
                             static_cast<std::uint16_t>(hport)});
        }
      }
    }
  }
  if (auto ns = j.find("NetworkSettings"); ns != j.end() && ns->is_object()) {
    if (auto nets = ns->find("Networks"); nets != ns->end() && nets->is_object()) {
      for (const auto& [net, v] : nets->items()) {
        if (v.is_object() && !v.value("IPAddress", "").empty()) c.addresses[net] = v.value("IPAddress", "");
      }
    }
  }
  return c;
}

Result<CheckpointStats> parseCheckpointStats(std::string_view text) {
  auto parsed = parseJson(text, "podman checkpoint --print-stats output");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (!j.is_object()) return makeError("podman checkpoint statistics are not a JSON object");
  CheckpointStats s;
  s.raw = j;
  s.podman_ms = microsToMs(j, "podman_checkpoint_duration");
  if (auto cs = j.find("container_statistics"); cs != j.end() && cs->is_array() && !cs->empty()) {
    const json& c = cs->front();
    s.runtime_ms = microsToMs(c, "runtime_checkpoint_duration");
    if (auto criu = c.find("criu_statistics"); criu != c.end() && criu->is_object()) {
      s.criu_freezing_ms = microsToMs(*criu, "freezing_time");
      s.criu_frozen_ms = microsToMs(*criu, "frozen_time");
      s.criu_memdump_ms = microsToMs(*criu, "memdump_time");
      s.criu_memwrite_ms = microsToMs(*criu, "memwrite_time");
      s.pages_scanned = number<std::uint64_t>(*criu, "pages_scanned");
      s.pages_written = number<std::uint64_t>(*criu, "pages_written");
    }
  }
  return s;
}

Result<RestoreStats> parseRestoreStats(std::string_view text) {
  auto parsed = parseJson(text, "podman restore --print-stats output");
  if (!parsed) return parsed.error();
  const json& j = *parsed;
  if (!j.is_object()) return makeError("podman restore statistics are not a JSON object");
  RestoreStats s;
  s.raw = j;
  s.podman_ms = microsToMs(j, "podman_restore_duration");
  if (auto cs = j.find("container_statistics"); cs != j.end() && cs->is_array() && !cs->empty()) {
    const json& c = cs->front();
    s.runtime_ms = microsToMs(c, "runtime_restore_duration");
    if (auto criu = c.find("criu_statistics"); criu != c.end() && criu->is_object()) {
      s.criu_restore_ms = microsToMs(*criu, "restore_time");
      s.criu_forking_ms = microsToMs(*criu, "forking_time");
      s.pages_restored = number<std::uint64_t>(*criu, "pages_restored");
    }
  }
  return s;
}

nlohmann::json toJson(const CheckpointStats& s) {
  return {{"podman_ms", s.podman_ms},
          {"runtime_ms", s.runtime_ms},
          {"criu_freezing_ms", s.criu_freezing_ms},
          {"criu_frozen_ms", s.criu_frozen_ms},
          {"criu_memdump_ms", s.criu_memdump_ms},
          {"criu_memwrite_ms", s.criu_memwrite_ms},
          {"pages_scanned", s.pages_scanned},
          {"pages_written", s.pages_written}};
}

nlohmann::json toJson(const RestoreStats& s) {
  return {{"podman_ms", s.podman_ms},
          {"runtime_ms", s.runtime_ms},
          {"criu_restore_ms", s.criu_restore_ms},
          {"criu_forking_ms", s.criu_forking_ms},
          {"pages_restored", s.pages_restored}};
}

std::unique_ptr<ContainerRuntime> makePodmanRuntime(CommandRunner& runner, RuntimeOptions options) {
  return std::make_unique<PodmanRuntime>(runner, std::move(options));
}

}  // namespace ferry::checkpoint
