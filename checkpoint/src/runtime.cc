#include "ferry/checkpoint/runtime.h"

#include <algorithm>
#include <cstdlib>

#include "ferry/base/log.h"
#include "ferry/checkpoint/check_parsers.h"

#include "cgroup_runtime.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using detail::lastLine;
using json = nlohmann::json;

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

class PodmanRuntime final : public detail::CgroupContainerRuntime {
 public:
  PodmanRuntime(CommandRunner& runner, RuntimeOptions options)
      : CgroupContainerRuntime(options.cgroup_root, options.freeze_timeout),
        runner_(runner),
        options_(std::move(options)) {}

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

  CommandRunner& runner_;
  RuntimeOptions options_;
};

}  // namespace

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
        const auto cport = std::strtol(key.substr(0, slash).c_str(), nullptr, 10);
        std::string proto = slash == std::string::npos ? "tcp" : key.substr(slash + 1);
        if (!bindings.is_array()) continue;
        for (const auto& b : bindings) {
          if (!b.is_object()) continue;
          const auto hport = std::strtol(b.value("HostPort", "0").c_str(), nullptr, 10);
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
