#include "ferry/checkpoint/host_check.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "ferry/base/log.h"
#include "ferry/checkpoint/check_parsers.h"

namespace ferry::checkpoint {
namespace {

const char* const kShimName = "ferry-lab-prlimit-shim";
const char* const kSlowStartAfterIdle = "/proc/sys/net/ipv4/tcp_slow_start_after_idle";

std::string installHint(const std::string& tool) {
  if (tool == "criu") return "install criu ≥ 4.2 (Debian unstable)";
  if (tool == "podman") return "install podman (Debian 13 has 5.4)";
  if (tool == "runc") return "install runc (crun refuses hybrid cgroups)";
  if (tool == "conmon") return "install conmon";
  return "install " + tool;
}

std::string firstLine(const std::string& s) {
  auto start = s.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return {};
  auto end = s.find('\n', start);
  return s.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

ToolInfo probeTool(CommandRunner& runner, const std::string& name, const CollectOptions& options) {
  ToolInfo t;
  t.name = name;
  t.path = runner.findProgram(name);
  if (t.path.empty()) {
    t.problem = name + " not found — " + installHint(name);
    return t;
  }
  ProcessOptions po;
  po.timeout = options.tool_timeout;
  auto r = runner.run({t.path, "--version"}, po);
  if (!r.ok()) {
    t.problem = name + " cannot be started: " + r.error().what + " — " + installHint(name);
    return t;
  }
  if (!r->success()) {
    std::string why = r->timed_out ? "timed out" : "exited " + std::to_string(r->exit_code);
    auto line = firstLine(r->err.empty() ? r->out : r->err);
    t.problem = name + " --version " + why + (line.empty() ? "" : ": " + line) + " — " + installHint(name);
    return t;
  }
  auto v = name == "criu" ? parseCriuVersion(r->out + r->err) : parseToolVersion(name, r->out + r->err);
  if (!v.ok()) {
    t.problem = v.error().message();
    return t;
  }
  t.version = v.value();
  t.found = true;
  return t;
}

bool criuTooOldForSockets(const HostReport& r) {
  return r.criu.found && r.kernel.atLeast(6, 16) &&
         !r.criu.version.atLeast(kCriuSocketsMajor, kCriuSocketsMinor);
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string joinLines(const std::vector<std::string>& lines, std::size_t max) {
  std::string s;
  for (std::size_t i = 0; i < lines.size() && i < max; ++i) {
    if (!s.empty()) s += "; ";
    s += lines[i];
  }
  if (lines.size() > max) s += "; +" + std::to_string(lines.size() - max) + " more";
  return s;
}

}  // namespace

std::string cgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::kV1:
      return "v1";
    case CgroupMode::kV2:
      return "v2";
    case CgroupMode::kHybrid:
      return "hybrid";
    case CgroupMode::kUnknown:
    default:
      return "unknown";
  }
}

CgroupMode cgroupModeFromName(const std::string& name) {
  if (name == "v1") return CgroupMode::kV1;
  if (name == "v2") return CgroupMode::kV2;
  if (name == "hybrid") return CgroupMode::kHybrid;
  return CgroupMode::kUnknown;
}

const FeatureProbe* HostReport::feature(const std::string& name) const {
  for (const auto& f : features) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

HostReport collectHostReport(CommandRunner& runner, FileReader& files, const CollectOptions& options) {
  auto logger = log::get("checkpoint");
  HostReport r;
  if (auto h = files.read("/proc/sys/kernel/hostname"); h.ok()) r.hostname = firstLine(*h);
  if (auto k = files.read("/proc/sys/kernel/osrelease"); k.ok()) {
    auto v = parseVersion(firstLine(*k));
    if (v.ok()) {
      r.kernel = v.value();
      r.kernel.text = firstLine(*k);
    } else {
      r.problems.push_back("kernel release: " + v.error().message());
    }
  } else {
    r.problems.push_back(k.error().message());
  }
  {
    ProcessOptions po;
    po.timeout = options.tool_timeout;
    auto m = runner.run({"uname", "-m"}, po);
    r.machine = m.ok() && m->success() ? firstLine(m->out) : "unknown";
  }

  r.podman = probeTool(runner, "podman", options);
  r.runtime = probeTool(runner, "runc", options);
  r.conmon = probeTool(runner, "conmon", options);
  r.criu = probeTool(runner, "criu", options);

  if (r.criu.found) {
    ProcessOptions po;
    po.timeout = options.tool_timeout;
    auto plain = runner.run({r.criu.path, "check"}, po);
    if (plain.ok()) {
      auto p = parseCriuCheck(plain->exit_code, plain->out, plain->err);
      r.criu_check.ran = true;
      r.criu_check.passed = p.passed;
      r.criu_check.summary = p.summary;
      r.criu_check.lines = p.lines;
    } else {
      r.criu_check.summary = "criu check could not run: " + plain.error().message();
    }
    auto all = runner.run({r.criu.path, "check", "--all"}, po);
    if (all.ok()) {
      auto p = parseCriuCheck(all->exit_code, all->out, all->err);
      r.criu_check.all_passed = p.passed;
      r.criu_check.all_lines = p.lines;
    }
    for (const char* name : {"mem_dirty_track", "uffd", "uffd-noncoop", "network_lock_nftables"}) {
      auto f = runner.run({r.criu.path, "check", "--feature", name}, po);
      if (f.ok()) {
        r.features.push_back(parseCriuFeature(name, f->exit_code, f->out, f->err));
      } else {
        r.features.push_back(FeatureProbe{name, false, f.error().message()});
      }
    }
  } else {
    r.criu_check.summary = "not run: needs CRIU";
  }
  r.iptables_restore = !runner.findProgram("iptables-restore").empty();
  if (auto t = files.read(kSlowStartAfterIdle);
      t.ok() && !t->empty() && (t->front() == '0' || t->front() == '1'))
    r.tcp_slow_start_after_idle = t->front() - '0';

  if (auto m = files.read("/proc/self/mounts"); m.ok()) {
    r.cgroup_mode = parseCgroupMode(*m);
  } else {
    r.problems.push_back(m.error().message());
  }
  if (auto c = files.read("/proc/cpuinfo"); c.ok()) {
    r.cpu = parseCpuInfo(*c);
  } else {
    r.problems.push_back(c.error().message());
  }
  if (auto s = files.read("/proc/self/status"); s.ok()) {
    auto cap = parseCapEff(*s);
    if (cap.ok()) {
      r.cap_eff = cap.value();
      r.cap_sys_resource = ((cap.value() >> static_cast<unsigned>(kCapSysResource)) & 1U) != 0;
    } else {
      r.problems.push_back(cap.error().message());
    }
  } else {
    r.problems.push_back(s.error().message());
  }

  // The lab's prlimit shim: wired in via /etc/ld.so.preload or a criu wrapper script.
  if (auto pre = files.read("/etc/ld.so.preload"); pre.ok() && pre->find(kShimName) != std::string::npos) {
    r.prlimit_shim = true;
    r.prlimit_shim_where = "/etc/ld.so.preload";
  }
  if (!r.prlimit_shim && r.criu.found) {
    if (auto w = files.read(r.criu.path);
        w.ok() && w->rfind("#!", 0) == 0 && w->find(kShimName) != std::string::npos) {
      r.prlimit_shim = true;
      r.prlimit_shim_where = r.criu.path + " (wrapper)";
    }
  }
  logger->debug("host report for {}: criu {} podman {}", r.hostname, r.criu.version.text,
                r.podman.version.text);
  return r;
}

HostVerdict evaluateHost(const HostReport& r) {
  HostVerdict v;
  auto add = [&v](std::string key, std::string label, bool ok, std::string value, std::string reason) {
    v.items.push_back(CheckItem{std::move(key), std::move(label), ok, std::move(value), std::move(reason)});
  };
  add("kernel", "kernel", !r.kernel.text.empty(), r.kernel.text + (r.machine.empty() ? "" : " " + r.machine),
      r.kernel.text.empty() ? "cannot read /proc/sys/kernel/osrelease" : "");
  auto tool = [&add](const std::string& key, const std::string& label, const ToolInfo& t) {
    add(key, label, t.found, t.found ? t.version.text : "missing", t.found ? "" : t.problem);
  };
  tool("podman", "Podman", r.podman);
  tool("runtime", "OCI runtime (runc)", r.runtime);
  tool("conmon", "conmon", r.conmon);

  bool criu_ok = r.criu.found && !criuTooOldForSockets(r);
  std::string criu_reason;
  if (!r.criu.found) {
    criu_reason = r.criu.problem;
  } else if (criuTooOldForSockets(r)) {
    criu_reason = "CRIU " + r.criu.version.text + " cannot dump TCP/UDP sockets on kernel " + r.kernel.text +
                  " (kernels ≥ 6.16 refuse socket option 1:16; fixed in CRIU 4.2) — install criu >= 4.2 "
                  "(Debian unstable)";
  }
  add("criu", "CRIU", criu_ok, r.criu.found ? r.criu.version.text : "missing", criu_reason);

  std::string check_reason;
  if (!r.criu_check.passed) {
    check_reason = r.criu_check.lines.empty() ? r.criu_check.summary : joinLines(r.criu_check.lines, 3);
  }
  add("criu_check", "criu check", r.criu_check.passed,
      r.criu_check.ran ? r.criu_check.summary.substr(0, r.criu_check.summary.find(':')) : "not run",
      check_reason);
  if (r.criu.found) {
    add("criu_check_all", "criu check --all", r.criu_check.all_passed,
        r.criu_check.all_passed ? "Looks good." : std::to_string(r.criu_check.all_lines.size()) + " missing",
        joinLines(r.criu_check.all_lines, 4));
  }

  bool rlimits_ok = r.cap_sys_resource || r.prlimit_shim;
  std::string cap_value = !r.cap_eff ? "unknown" : (r.cap_sys_resource ? "present" : "absent");
  std::string cap_reason;
  if (r.cap_sys_resource) {
    if (r.prlimit_shim)
      cap_reason = "lab prlimit shim wired in although not needed (" + r.prlimit_shim_where + ")";
  } else if (r.prlimit_shim) {
    cap_reason =
        "lab-only " + std::string(kShimName) + " answers CRIU's rlimit reads (" + r.prlimit_shim_where + ")";
  } else {
    cap_reason =
        "CRIU cannot read rlimits of tasks of other users (mysql, www-data): their dumps fail with "
        "'Can't get rlimit' — run with CAP_SYS_RESOURCE";
  }
  add("cap_sys_resource", "CAP_SYS_RESOURCE", rlimits_ok, cap_value + (r.prlimit_shim ? " + shim" : ""),
      cap_reason);

  std::string cg_reason;
  if (r.cgroup_mode == CgroupMode::kHybrid) {
    cg_reason = "crun refuses hybrid; runc with --cgroup-manager cgroupfs works";
  } else if (r.cgroup_mode == CgroupMode::kUnknown) {
    cg_reason = "no cgroup mounts under /sys/fs/cgroup";
  }
  add("cgroup", "cgroup mode", r.cgroup_mode != CgroupMode::kUnknown, cgroupModeName(r.cgroup_mode),
      cg_reason);
  add("cpu", "CPU", !r.cpu.model.empty(),
      (r.cpu.model.empty() ? "unknown" : r.cpu.model) + ", " + std::to_string(r.cpu.count) + " cpus, " +
          std::to_string(r.cpu.flags.size()) + " flags",
      r.cpu.model.empty() ? "cannot read /proc/cpuinfo" : "");

  // Modes.
  std::vector<std::string> missing;
  if (!r.podman.found) missing.emplace_back("Podman");
  if (!r.runtime.found) missing.emplace_back("runc");
  if (!r.conmon.found) missing.emplace_back("conmon");
  if (!criu_ok) missing.emplace_back(r.criu.found ? "CRIU ≥ 4.2" : "CRIU");
  if (r.criu.found && !r.criu_check.passed) missing.emplace_back("a passing criu check");
  if (!rlimits_ok) missing.emplace_back("CAP_SYS_RESOURCE");
  v.can_checkpoint = missing.empty();
  std::string cold_reason;
  if (!v.can_checkpoint) cold_reason = "needs " + joinLines(missing, 6);
  add("mode.checkpoint", "checkpoint/restore (cold)", v.can_checkpoint,
      v.can_checkpoint ? "available" : "unavailable", cold_reason);

  const FeatureProbe* dirty = r.feature("mem_dirty_track");
  bool dirty_ok = dirty != nullptr && dirty->supported;
  v.can_precopy = v.can_checkpoint && dirty_ok;
  std::string pre_reason;
  if (dirty == nullptr) {
    pre_reason = "cannot tell: soft-dirty tracking is probed with CRIU, which is not available";
  } else if (!dirty_ok) {
    pre_reason =
        "kernel lacks soft-dirty page tracking (criu check --feature mem_dirty_track: " + dirty->detail + ")";
  } else if (!v.can_checkpoint) {
    pre_reason = "checkpoint/restore itself is unavailable";
  }
  add("mode.precopy", "memory pre-copy", v.can_precopy, v.can_precopy ? "available" : "unavailable",
      pre_reason);

  const FeatureProbe* uffd = r.feature("uffd");
  const FeatureProbe* noncoop = r.feature("uffd-noncoop");
  bool uffd_ok = uffd != nullptr && uffd->supported && noncoop != nullptr && noncoop->supported;
  v.can_postcopy = v.can_checkpoint && uffd_ok;
  std::string post_reason;
  if (uffd == nullptr || noncoop == nullptr) {
    post_reason = "cannot tell: userfaultfd is probed with CRIU, which is not available";
  } else if (!uffd_ok) {
    const FeatureProbe* bad = (uffd == nullptr || !uffd->supported) ? uffd : noncoop;
    post_reason = "userfaultfd missing (criu check --feature " +
                  std::string(bad != nullptr ? bad->name + ": " + bad->detail : "uffd: not probed") + ")";
  } else if (!v.can_checkpoint) {
    post_reason = "checkpoint/restore itself is unavailable";
  }
  add("mode.postcopy", "post-copy (lazy pages)", v.can_postcopy, v.can_postcopy ? "available" : "unavailable",
      post_reason);

  add("netlock.iptables", "network lock: iptables", r.iptables_restore,
      r.iptables_restore ? "iptables-restore found" : "unavailable",
      r.iptables_restore ? "" : "iptables-restore not found — install iptables");
  const FeatureProbe* nft = r.feature("network_lock_nftables");
  bool nft_ok = nft != nullptr && nft->supported;
  add("netlock.nftables", "network lock: nftables", nft_ok, nft_ok ? "supported" : "unavailable",
      nft_ok ? "" : (nft != nullptr ? nft->detail : "cannot tell: probed with CRIU, which is not available"));

  // Not needed to migrate, but it sets the freeze-time delta's cost on a long link.
  const auto ssai = r.tcp_slow_start_after_idle;
  add("net.slow_start_after_idle", "TCP window after a pause", ssai != 1,
      !ssai ? "unknown" : (*ssai == 0 ? "kept" : "restarts small"),
      ssai != 1 ? ""
                : "the peer link's window restarts small after each pause, so the delta sent after a "
                  "freeze waits extra round trips (1 MiB on a 50 ms link: 0.54 s instead of 0.30 s) — "
                  "set net.ipv4.tcp_slow_start_after_idle = 0 (deploy/node/90-ferry.conf, in /etc/sysctl.d)");

  for (const auto& p : r.problems) add("problem", "could not read", false, "", p);
  return v;
}

// ---- JSON -------------------------------------------------------------------

namespace {

nlohmann::json toolJson(const ToolInfo& t) {
  return {{"found", t.found}, {"path", t.path}, {"version", t.version.text}, {"problem", t.problem}};
}

ToolInfo toolFromJson(const std::string& name, const nlohmann::json& j) {
  ToolInfo t;
  t.name = name;
  t.found = j.value("found", false);
  t.path = j.value("path", "");
  t.problem = j.value("problem", "");
  auto text = j.value("version", "");
  if (t.found) {
    auto v = parseVersion(text);
    if (v.ok()) {
      t.version = v.value();
    } else {
      t.found = false;
      t.problem = name + ": " + v.error().message();
    }
  }
  t.version.text = text;
  return t;
}

}  // namespace

nlohmann::json reportToJson(const HostReport& r, const HostVerdict& v) {
  nlohmann::json features = nlohmann::json::object();
  for (const auto& f : r.features) features[f.name] = {{"supported", f.supported}, {"detail", f.detail}};
  nlohmann::json host = {
      {"hostname", r.hostname},
      {"kernel", r.kernel.text},
      {"machine", r.machine},
      {"tools",
       {{"podman", toolJson(r.podman)},
        {"runtime", toolJson(r.runtime)},
        {"conmon", toolJson(r.conmon)},
        {"criu", toolJson(r.criu)}}},
      {"runtime_name", r.runtime.name},
      {"criu_check",
       {{"ran", r.criu_check.ran},
        {"passed", r.criu_check.passed},
        {"summary", r.criu_check.summary},
        {"lines", r.criu_check.lines},
        {"all_passed", r.criu_check.all_passed},
        {"all_lines", r.criu_check.all_lines}}},
      {"features", features},
      {"iptables_restore", r.iptables_restore},
      {"tcp_slow_start_after_idle",
       r.tcp_slow_start_after_idle ? nlohmann::json(*r.tcp_slow_start_after_idle) : nlohmann::json()},
      {"cgroup_mode", cgroupModeName(r.cgroup_mode)},
      {"cpu",
       {{"vendor", r.cpu.vendor}, {"model", r.cpu.model}, {"count", r.cpu.count}, {"flags", r.cpu.flags}}},
      {"cap_eff", r.cap_eff ? hex(*r.cap_eff) : ""},
      {"cap_sys_resource", r.cap_sys_resource},
      {"prlimit_shim", r.prlimit_shim},
      {"prlimit_shim_where", r.prlimit_shim_where},
      {"problems", r.problems},
  };
  nlohmann::json items = nlohmann::json::array();
  for (const auto& i : v.items) {
    items.push_back(
        {{"key", i.key}, {"label", i.label}, {"ok", i.ok}, {"value", i.value}, {"reason", i.reason}});
  }
  return {
      {"schema", "ferry.check.host/1"},
      {"host", host},
      {"items", items},
      {"modes", {{"checkpoint", v.can_checkpoint}, {"precopy", v.can_precopy}, {"postcopy", v.can_postcopy}}},
      {"ok", v.can_checkpoint}};
}

Result<HostReport> reportFromJson(const nlohmann::json& j) {
  try {
    if (!j.is_object() || j.value("schema", "") != "ferry.check.host/1" || !j.contains("host")) {
      return makeError("not a ferry check report (schema ferry.check.host/1 expected)",
                       "is the host running the same ferry build?");
    }
    const auto& h = j.at("host");
    HostReport r;
    r.hostname = h.value("hostname", "");
    r.kernel.text = h.value("kernel", "");
    if (auto k = parseVersion(r.kernel.text); k.ok()) {
      r.kernel = k.value();
      r.kernel.text = h.value("kernel", "");
    }
    r.machine = h.value("machine", "");
    const auto& t = h.at("tools");
    r.podman = toolFromJson("podman", t.at("podman"));
    r.runtime = toolFromJson(h.value("runtime_name", "runc"), t.at("runtime"));
    r.conmon = toolFromJson("conmon", t.at("conmon"));
    r.criu = toolFromJson("criu", t.at("criu"));
    const auto& c = h.at("criu_check");
    r.criu_check.ran = c.value("ran", false);
    r.criu_check.passed = c.value("passed", false);
    r.criu_check.summary = c.value("summary", "");
    r.criu_check.lines = c.value("lines", std::vector<std::string>{});
    r.criu_check.all_passed = c.value("all_passed", false);
    r.criu_check.all_lines = c.value("all_lines", std::vector<std::string>{});
    for (const auto& [name, f] : h.at("features").items()) {
      r.features.push_back(FeatureProbe{name, f.value("supported", false), f.value("detail", "")});
    }
    r.iptables_restore = h.value("iptables_restore", false);
    if (auto it = h.find("tcp_slow_start_after_idle"); it != h.end() && it->is_number_integer())
      r.tcp_slow_start_after_idle = it->get<int>();
    r.cgroup_mode = cgroupModeFromName(h.value("cgroup_mode", ""));
    const auto& cpu = h.at("cpu");
    r.cpu.vendor = cpu.value("vendor", "");
    r.cpu.model = cpu.value("model", "");
    r.cpu.count = cpu.value("count", 0);
    r.cpu.flags = cpu.value("flags", std::vector<std::string>{});
    auto cap = h.value("cap_eff", "");
    if (!cap.empty()) {
      auto parsed = parseCapEff("CapEff:\t" + cap + "\n");
      if (parsed.ok()) r.cap_eff = parsed.value();
    }
    r.cap_sys_resource = h.value("cap_sys_resource", false);
    r.prlimit_shim = h.value("prlimit_shim", false);
    r.prlimit_shim_where = h.value("prlimit_shim_where", "");
    r.problems = h.value("problems", std::vector<std::string>{});
    return r;
  } catch (const nlohmann::json::exception& e) {
    return makeError(std::string("malformed ferry check report: ") + e.what(),
                     "is the host running the same ferry build?");
  }
}

// ---- text -------------------------------------------------------------------

namespace {

// Display width of a UTF-8 string (counts code points; good enough for our labels).
std::size_t displayWidth(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned>(static_cast<unsigned char>(c)) & 0xC0U) != 0x80U) ++n;
  }
  return n;
}

void renderItems(std::ostringstream& out, const std::vector<CheckItem>& items) {
  std::size_t width = 0;
  for (const auto& i : items) width = std::max(width, displayWidth(i.label));
  for (const auto& i : items) {
    out << "  " << (i.ok ? "✓" : "✗") << " " << i.label << std::string(width - displayWidth(i.label) + 2, ' ')
        << i.value;
    if (!i.reason.empty()) out << (i.ok ? "  (" + i.reason + ")" : "  — " + i.reason);
    out << "\n";
  }
}

}  // namespace

std::string renderHostTable(const HostReport& r, const HostVerdict& v) {
  std::ostringstream out;
  out << "ferry check: " << (r.hostname.empty() ? "this host" : r.hostname) << "\n";
  renderItems(out, v.items);
  out << "verdict: "
      << (v.can_checkpoint ? "ready for checkpoint/restore" : "NOT ready for checkpoint/restore")
      << "; pre-copy " << (v.can_precopy ? "yes" : "no") << ", post-copy " << (v.can_postcopy ? "yes" : "no")
      << "\n";
  return out.str();
}

std::string renderPeerTable(const PeerVerdict& v) {
  std::ostringstream out;
  out << "ferry check: can a checkpoint from " << v.source << " be restored on " << v.target << "?\n";
  renderItems(out, v.items);
  out << "verdict: " << (v.restorable ? "yes" : "no") << "\n";
  return out.str();
}

}  // namespace ferry::checkpoint
