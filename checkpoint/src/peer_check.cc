#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <system_error>

#include "ferry/base/files.h"
#include "ferry/checkpoint/check_parsers.h"
#include "ferry/checkpoint/host_check.h"

namespace ferry::checkpoint {
namespace {

std::string versionPair(const ToolInfo& a, const ToolInfo& b) {
  auto show = [](const ToolInfo& t) { return t.found ? t.version.text : std::string("missing"); };
  return show(a) + " → " + show(b);
}

// A private temporary directory that is removed when it goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-cpuinfo-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string criuErrors(const ProcessResult& r) {
  std::vector<std::string> lines;
  std::string all = r.out + "\n" + r.err;
  std::size_t start = 0;
  while (start < all.size()) {
    auto end = all.find('\n', start);
    if (end == std::string::npos) end = all.size();
    auto line = all.substr(start, end - start);
    if (line.rfind("Error", 0) == 0 || line.rfind("Warn", 0) == 0) lines.push_back(stripCriuPrefix(line));
    start = end + 1;
  }
  std::string s;
  for (const auto& l : lines) s += (s.empty() ? "" : "; ") + l;
  if (s.empty()) s = r.timed_out ? "timed out" : "exit " + std::to_string(r.exit_code);
  return s;
}

}  // namespace

PeerVerdict comparePeers(const std::string& source_name, const HostReport& source,
                         const std::string& target_name, const HostReport& target, const CpuCompat& cpu) {
  PeerVerdict v;
  v.source = source_name;
  v.target = target_name;
  auto add = [&v](std::string key, std::string label, bool ok, std::string value, std::string reason) {
    v.items.push_back(CheckItem{std::move(key), std::move(label), ok, std::move(value), std::move(reason)});
  };

  auto sv = evaluateHost(source);
  auto tv = evaluateHost(target);
  auto notReady = [](const std::string& name, const HostVerdict& hv) {
    std::string why;
    for (const auto& i : hv.items) {
      if (i.key == "mode.checkpoint" && !i.ok) why = i.reason;
    }
    return name + " cannot checkpoint/restore: " + why;
  };
  add("source_ready", "source " + source_name + " ready", sv.can_checkpoint, sv.can_checkpoint ? "yes" : "no",
      sv.can_checkpoint ? "" : notReady(source_name, sv));
  add("target_ready", "target " + target_name + " ready", tv.can_checkpoint, tv.can_checkpoint ? "yes" : "no",
      tv.can_checkpoint ? "" : notReady(target_name, tv));

  add("machine", "architecture", source.machine == target.machine, source.machine + " → " + target.machine,
      source.machine == target.machine ? "" : "a checkpoint holds machine code state of one architecture");

  bool criu_ok = source.criu.found && target.criu.found &&
                 target.criu.version.atLeast(source.criu.version.major, source.criu.version.minor,
                                             source.criu.version.patch);
  std::string criu_reason;
  if (!source.criu.found || !target.criu.found) {
    criu_reason = "CRIU missing on " + (source.criu.found ? target_name : source_name);
  } else if (!criu_ok) {
    criu_reason = target_name + "'s CRIU " + target.criu.version.text + " is older than " + source_name +
                  "'s " + source.criu.version.text +
                  ": images written by a newer CRIU may not restore — upgrade " + target_name;
  } else if (!(source.criu.version == target.criu.version)) {
    criu_reason = "newer on the target: fine";
  }
  add("criu", "CRIU", criu_ok, versionPair(source.criu, target.criu), criu_reason);

  bool rt_ok = source.runtime.found && target.runtime.found && source.runtime.name == target.runtime.name;
  std::string rt_reason;
  if (!rt_ok) {
    rt_reason =
        "both hosts need the same OCI runtime (" + source.runtime.name + " vs " + target.runtime.name + ")";
    if (!source.runtime.found || !target.runtime.found) {
      rt_reason = source.runtime.name + " missing on " + (source.runtime.found ? target_name : source_name);
    }
  } else if (!(source.runtime.version == target.runtime.version)) {
    rt_reason = "versions differ";
  }
  add("runtime", "OCI runtime " + source.runtime.name, rt_ok, versionPair(source.runtime, target.runtime),
      rt_reason);

  bool podman_ok = source.podman.found && target.podman.found &&
                   source.podman.version.major == target.podman.version.major;
  std::string podman_reason;
  if (!source.podman.found || !target.podman.found) {
    podman_reason = "Podman missing on " + (source.podman.found ? target_name : source_name);
  } else if (!podman_ok) {
    podman_reason = "Podman major versions differ: the checkpoint archive layout may not be understood";
  } else if (!(source.podman.version == target.podman.version)) {
    podman_reason = "versions differ within one major";
  }
  add("podman", "Podman", podman_ok, versionPair(source.podman, target.podman), podman_reason);

  add("kernel", "kernel", true, source.kernel.text + " → " + target.kernel.text,
      source.kernel == target.kernel ? ""
                                     : "kernels differ; CRIU restores across kernels when features match");

  bool cg_ok = source.cgroup_mode == target.cgroup_mode && source.cgroup_mode != CgroupMode::kUnknown;
  add("cgroup", "cgroup mode", cg_ok,
      cgroupModeName(source.cgroup_mode) + " → " + cgroupModeName(target.cgroup_mode),
      cg_ok ? "" : "the container's cgroup layout must exist on the target");

  // CPU: CRIU's own verdict, plus the flags the target lacks as a hint.
  std::vector<std::string> lacking;
  std::set_difference(source.cpu.flags.begin(), source.cpu.flags.end(), target.cpu.flags.begin(),
                      target.cpu.flags.end(), std::back_inserter(lacking));
  std::string lacking_text;
  for (std::size_t i = 0; i < lacking.size() && i < 8; ++i) lacking_text += (i == 0 ? "" : " ") + lacking[i];
  if (lacking.size() > 8) lacking_text += " +" + std::to_string(lacking.size() - 8);
  bool cpu_ok = cpu.checked && cpu.compatible;
  std::string cpu_reason;
  if (!cpu.checked) {
    cpu_reason = "criu cpuinfo could not run: " + cpu.detail;
  } else if (!cpu.compatible) {
    cpu_reason = "criu cpuinfo check on " + target_name + ": " + cpu.detail +
                 (lacking.empty() ? "" : " (missing flags: " + lacking_text + ")");
  } else if (!lacking.empty()) {
    cpu_reason = "target lacks flags " + lacking_text + " but CRIU accepts the image";
  }
  add("cpu", "CPU (criu cpuinfo)", cpu_ok,
      (cpu_ok ? "compatible" : "incompatible") + std::string(", ") + source.cpu.model + " → " +
          target.cpu.model,
      cpu_reason);

  v.restorable = std::all_of(v.items.begin(), v.items.end(), [](const CheckItem& i) { return i.ok; });
  return v;
}

nlohmann::json peerToJson(const PeerVerdict& v) {
  nlohmann::json items = nlohmann::json::array();
  for (const auto& i : v.items) {
    items.push_back(
        {{"key", i.key}, {"label", i.label}, {"ok", i.ok}, {"value", i.value}, {"reason", i.reason}});
  }
  return {{"schema", "ferry.check.peer/1"},
          {"source", v.source},
          {"target", v.target},
          {"restorable", v.restorable},
          {"items", items}};
}

Result<std::string> dumpCpuInfo(CommandRunner& runner) {
  TempDir dir;
  if (dir.path().empty()) return makeError("cannot create a temporary directory for criu cpuinfo dump");
  ProcessOptions po;
  po.timeout = std::chrono::seconds(30);
  auto r = runner.run({"criu", "cpuinfo", "dump", "-D", dir.path()}, po);
  if (!r.ok())
    return makeError("criu cpuinfo dump: " + r.error().what, "install criu ≥ 4.2 (Debian unstable)");
  if (!r->success()) return makeError("criu cpuinfo dump failed: " + criuErrors(*r));
  auto img = readFile(std::filesystem::path(dir.path()) / "cpuinfo.img");
  if (!img.ok()) return makeError("criu cpuinfo dump wrote no cpuinfo.img: " + img.error().what);
  return img;
}

CpuCompat checkCpuInfo(CommandRunner& runner, const std::string& image) {
  CpuCompat c;
  TempDir dir;
  if (dir.path().empty()) {
    c.detail = "cannot create a temporary directory for criu cpuinfo check";
    return c;
  }
  auto st = writeFileAtomic(std::filesystem::path(dir.path()) / "cpuinfo.img", image, 0600);
  if (!st.ok()) {
    c.detail = st.error().message();
    return c;
  }
  ProcessOptions po;
  po.timeout = std::chrono::seconds(30);
  auto r = runner.run({"criu", "cpuinfo", "check", "-D", dir.path()}, po);
  if (!r.ok()) {
    c.detail = "criu cpuinfo check: " + r.error().message();
    return c;
  }
  c.checked = !r->timed_out;
  c.compatible = r->success();
  if (!c.compatible) c.detail = criuErrors(*r);
  return c;
}

}  // namespace ferry::checkpoint
