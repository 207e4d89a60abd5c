#include <functional>

#include <gtest/gtest.h>

#include "ferry/checkpoint/check_parsers.h"
#include "ferry/checkpoint/host_check.h"

namespace ferry::checkpoint {
namespace {

HostReport labHost(const std::string& name) {
  HostReport r;
  r.hostname = name;
  r.kernel = parseVersion("6.18.44-fc-v769").value();
  r.machine = "x86_64";
  auto tool = [](const std::string& n, const std::string& v) {
    ToolInfo t;
    t.name = n;
    t.found = true;
    t.path = "/usr/bin/" + n;
    t.version = parseVersion(v).value();
    return t;
  };
  r.podman = tool("podman", "5.4.2");
  r.runtime = tool("runc", "1.1.15");
  r.conmon = tool("conmon", "2.1.12");
  r.criu = tool("criu", "4.2.1");
  r.criu_check.ran = true;
  r.criu_check.passed = true;
  r.criu_check.summary = "Looks good.";
  r.features = {{"mem_dirty_track", false, "Dirty tracking is OFF. Memory snapshot will not work."},
                {"uffd", true, ""},
                {"uffd-noncoop", true, ""},
                {"network_lock_nftables", true, ""}};
  r.iptables_restore = true;
  r.cgroup_mode = CgroupMode::kHybrid;
  r.cpu.model = "Intel(R) Xeon(R) Processor";
  r.cpu.count = 2;
  r.cpu.flags = {"avx", "avx2", "sse", "sse2"};
  r.prlimit_shim = true;
  return r;
}

struct PeerCase {
  std::string name;
  std::function<void(HostReport& source, HostReport& target, CpuCompat& cpu)> change;
  bool restorable;
  std::string failing_key;
  std::string reason_has;
};

class CheckPeerTest : public ::testing::TestWithParam<PeerCase> {};

TEST_P(CheckPeerTest, Verdict) {
  const auto& c = GetParam();
  auto a = labHost("a");
  auto b = labHost("b");
  CpuCompat cpu{true, true, ""};
  if (c.change) c.change(a, b, cpu);
  auto v = comparePeers("a", a, "b", b, cpu);
  EXPECT_EQ(v.restorable, c.restorable);
  bool found = c.failing_key.empty();
  for (const auto& i : v.items) {
    if (!i.ok) {
      EXPECT_FALSE(i.reason.empty()) << i.key;
    }
    if (i.key == c.failing_key) {
      found = true;
      EXPECT_FALSE(i.ok);
      EXPECT_NE(i.reason.find(c.reason_has), std::string::npos) << i.reason;
    }
  }
  EXPECT_TRUE(found) << c.failing_key;
  auto j = peerToJson(v);
  EXPECT_EQ(j["restorable"], c.restorable);
  EXPECT_NE(renderPeerTable(v).find(c.restorable ? "verdict: yes" : "verdict: no"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Table, CheckPeerTest,
    ::testing::Values(
        PeerCase{"same_lab_hosts", nullptr, true, "", ""},
        PeerCase{"older_criu_on_target",
                 [](HostReport&, HostReport& b, CpuCompat&) { b.criu.version = parseVersion("4.2").value(); },
                 false, "criu", "older"},
        PeerCase{"newer_criu_on_target",
                 [](HostReport&, HostReport& b, CpuCompat&) { b.criu.version = parseVersion("4.3").value(); },
                 true, "", ""},
        PeerCase{"cpu_mismatch",
                 [](HostReport&, HostReport& b, CpuCompat& cpu) {
                   cpu.compatible = false;
                   cpu.detail = "CPU capabilities do not match run time";
                   b.cpu.flags = {"sse", "sse2"};
                 },
                 false, "cpu", "avx"},
        PeerCase{"cpuinfo_not_run",
                 [](HostReport&, HostReport&, CpuCompat& cpu) {
                   cpu = CpuCompat{false, false, "criu cpuinfo dump failed: exit 1"};
                 },
                 false, "cpu", "could not run"},
        PeerCase{"different_runtime", [](HostReport&, HostReport& b, CpuCompat&) { b.runtime.name = "crun"; },
                 false, "runtime", "same OCI runtime"},
        PeerCase{
            "podman_major_differs",
            [](HostReport&, HostReport& b, CpuCompat&) { b.podman.version = parseVersion("4.9.3").value(); },
            false, "podman", "major"},
        PeerCase{"cgroup_differs",
                 [](HostReport&, HostReport& b, CpuCompat&) { b.cgroup_mode = CgroupMode::kV2; }, false,
                 "cgroup", "cgroup layout"},
        PeerCase{"target_cannot_checkpoint",
                 [](HostReport&, HostReport& b, CpuCompat&) {
                   b.prlimit_shim = false;
                   b.cap_sys_resource = false;
                 },
                 false, "target_ready", "CAP_SYS_RESOURCE"},
        PeerCase{"arch_differs", [](HostReport&, HostReport& b, CpuCompat&) { b.machine = "aarch64"; }, false,
                 "machine", "architecture"}),
    [](const ::testing::TestParamInfo<PeerCase>& i) { return i.param.name; });

}  // namespace
}  // namespace ferry::checkpoint
