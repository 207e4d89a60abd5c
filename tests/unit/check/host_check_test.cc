#include "ferry/checkpoint/host_check.h"

#include <functional>

#include <gtest/gtest.h>

#include "fake_os.h"
#include "recorded.h"

namespace ferry::checkpoint {
namespace {

using namespace testing;  // NOLINT(google-build-using-namespace)

// A lab host as recorded: Debian 13 + CRIU 4.2.1 on kernel 6.18, no soft-dirty,
// no CAP_SYS_RESOURCE, the lab's prlimit shim in a criu wrapper script.
struct Host {
  FakeRunner runner;
  FakeFiles files;

  Host() {
    for (const char* p : {"podman", "runc", "conmon", "uname", "iptables-restore"}) runner.program(p);
    runner.program("criu", "/usr/local/sbin/criu");
    runner.reply({"uname", "-m"}, {0, "x86_64\n", ""});
    runner.reply({"podman", "--version"}, {0, kPodmanVersion, ""});
    runner.reply({"runc", "--version"}, {0, kRuncVersion, ""});
    runner.reply({"conmon", "--version"}, {0, kConmonVersion, ""});
    runner.reply({"criu", "--version"}, {0, kCriuVersion421, ""});
    runner.reply({"criu", "check"}, {0, kCheckGood, ""});
    runner.reply({"criu", "check", "--all"}, {0, kCheckAllOut, kCheckAllErr});
    runner.reply({"criu", "check", "--feature", "mem_dirty_track"}, {1, "", kCheckAllErr});
    runner.reply({"criu", "check", "--feature", "uffd"}, {0, "uffd is supported\n", ""});
    runner.reply({"criu", "check", "--feature", "uffd-noncoop"}, {0, "uffd-noncoop is supported\n", ""});
    runner.reply({"criu", "check", "--feature", "network_lock_nftables"},
                 {0, "network_lock_nftables is supported\n", ""});
    files.files["/proc/sys/kernel/hostname"] = "a\n";
    files.files["/proc/sys/kernel/osrelease"] = "6.18.44-fc-v769\n";
    files.files["/proc/self/mounts"] = kMountsHybrid;
    files.files["/proc/cpuinfo"] = kCpuinfo;
    files.files["/proc/self/status"] = kStatusNoSysResource;
    files.files["/proc/sys/net/ipv4/tcp_slow_start_after_idle"] =
        "0\n";  // as deploy/node/90-ferry.conf sets it
    files.files["/usr/local/sbin/criu"] =
        "#!/bin/sh\nLD_PRELOAD=/usr/local/lib/ferry-lab-prlimit-shim.so exec /usr/sbin/criu.real \"$@\"\n";
  }
};

struct HostCase {
  std::string name;
  std::function<void(Host&)> change;
  bool can_checkpoint, can_precopy, can_postcopy;
  std::string failing_key;  // an item expected to be ✗ ("" = none besides precopy/criu_check_all)
  std::string reason_has;   // text its reason must contain
};

class HostCheckTest : public ::testing::TestWithParam<HostCase> {};

const CheckItem* item(const HostVerdict& v, const std::string& key) {
  for (const auto& i : v.items) {
    if (i.key == key) return &i;
  }
  return nullptr;
}

TEST_P(HostCheckTest, Verdicts) {
  const auto& c = GetParam();
  Host h;
  if (c.change) c.change(h);
  auto report = collectHostReport(h.runner, h.files);
  auto v = evaluateHost(report);
  EXPECT_EQ(v.can_checkpoint, c.can_checkpoint);
  EXPECT_EQ(v.can_precopy, c.can_precopy);
  EXPECT_EQ(v.can_postcopy, c.can_postcopy);
  if (!c.failing_key.empty()) {
    const auto* i = item(v, c.failing_key);
    ASSERT_NE(i, nullptr) << c.failing_key;
    EXPECT_FALSE(i->ok);
    EXPECT_NE(i->reason.find(c.reason_has), std::string::npos) << i->reason;
  }
  // Every ✗ carries a reason.
  for (const auto& i : v.items) {
    if (!i.ok) {
      EXPECT_FALSE(i.reason.empty()) << i.key;
    }
  }
  // JSON round trip keeps the verdicts.
  auto j = reportToJson(report, v);
  auto back = reportFromJson(j);
  ASSERT_TRUE(back.ok()) << back.error().message();
  auto v2 = evaluateHost(*back);
  EXPECT_EQ(reportToJson(*back, v2), j);
}

INSTANTIATE_TEST_SUITE_P(
    Table, HostCheckTest,
    ::testing::Values(
        HostCase{"lab_host", nullptr, true, false, true, "mode.precopy", "soft-dirty"},
        HostCase{"precopy_reason_quotes_criu", nullptr, true, false, true, "mode.precopy",
                 "Dirty tracking is OFF"},
        HostCase{"no_cap_no_shim",
                 [](Host& h) {
                   h.files.files["/usr/local/sbin/criu"] =
                       "\x7f"
                       "ELF binary";
                 },
                 false, false, false, "cap_sys_resource", "Can't get rlimit"},
        HostCase{"shim_via_ld_so_preload",
                 [](Host& h) {
                   h.files.files["/usr/local/sbin/criu"] =
                       "\x7f"
                       "ELF";
                   h.files.files["/etc/ld.so.preload"] = "/usr/local/lib/ferry-lab-prlimit-shim.so\n";
                 },
                 true, false, true, "", ""},
        HostCase{"full_caps_v2",
                 [](Host& h) {
                   h.files.files["/usr/local/sbin/criu"] =
                       "\x7f"
                       "ELF";
                   h.files.files["/proc/self/status"] = kStatusFullCaps;
                   h.files.files["/proc/self/mounts"] = kMountsV2;
                 },
                 true, false, true, "", ""},
        HostCase{"criu_missing",
                 [](Host& h) {
                   h.runner = FakeRunner();
                   h.runner.program("podman");
                 },
                 false, false, false, "criu", "criu not found — install criu ≥ 4.2 (Debian unstable)"},
        HostCase{"criu_411_on_618",
                 [](Host& h) {
                   h.runner.reply({"criu", "--version"}, {0, kCriuVersion411, ""});
                 },
                 false, false, false, "criu", "cannot dump TCP/UDP sockets"},
        HostCase{"criu_411_on_612",
                 [](Host& h) {
                   h.runner.reply({"criu", "--version"}, {0, kCriuVersion411, ""});
                   h.files.files["/proc/sys/kernel/osrelease"] = "6.12.48+deb13-amd64\n";
                 },
                 true, false, true, "", ""},
        HostCase{"criu_317_vdso",
                 [](Host& h) {
                   h.runner.reply({"criu", "--version"}, {0, "Version: 3.17.1\n", ""});
                   h.runner.reply({"criu", "check"}, {1, "", kCriu317VdsoErr});
                 },
                 false, false, false, "criu_check", "Unexpected rt vDSO area bounds"},
        HostCase{"criu_odd_version",
                 [](Host& h) {
                   h.runner.reply({"criu", "--version"}, {0, "criu 9\n", ""});
                 },
                 false, false, false, "criu", "Version:"},
        HostCase{"no_uffd",
                 [](Host& h) {
                   h.runner.reply({"criu", "check", "--feature", "uffd"},
                                  {1, "", "Error (criu/cr-check.c:1225): UFFD is not supported\n"});
                 },
                 true, false, false, "mode.postcopy", "UFFD is not supported"},
        HostCase{"soft_dirty_present",
                 [](Host& h) {
                   h.runner.reply({"criu", "check", "--feature", "mem_dirty_track"},
                                  {0, "mem_dirty_track is supported\n", ""});
                 },
                 true, true, true, "", ""},
        HostCase{"no_nftables_lock",
                 [](Host& h) {
                   h.runner.reply({"criu", "check", "--feature", "network_lock_nftables"},
                                  {1, "",
                                   "Warn  (criu/cr-check.c:1348): Nftables based locking requires "
                                   "libnftables and set concatenations support\n"});
                 },
                 true, false, true, "netlock.nftables", "libnftables"},
        HostCase{"podman_missing",
                 [](Host& h) {
                   FakeRunner r;
                   for (const char* p : {"runc", "conmon", "criu", "uname"}) r.program(p);
                   h.runner = std::move(r);
                 },
                 false, false, false, "podman", "podman not found"},
        HostCase{"slow_start_after_idle_on",
                 [](Host& h) { h.files.files["/proc/sys/net/ipv4/tcp_slow_start_after_idle"] = "1\n"; }, true,
                 false, true, "net.slow_start_after_idle", "net.ipv4.tcp_slow_start_after_idle = 0"},
        HostCase{"slow_start_after_idle_unreadable",
                 [](Host& h) { h.files.files.erase("/proc/sys/net/ipv4/tcp_slow_start_after_idle"); }, true,
                 false, true, "", ""},
        HostCase{"proc_unreadable", [](Host& h) { h.files.files.erase("/proc/self/status"); }, true, false,
                 true, "problem", "/proc/self/status"}),
    [](const ::testing::TestParamInfo<HostCase>& i) { return i.param.name; });

TEST(HostCheck, ReportFacts) {
  Host h;
  auto r = collectHostReport(h.runner, h.files);
  EXPECT_EQ(r.hostname, "a");
  EXPECT_EQ(r.kernel.major, 6);
  EXPECT_EQ(r.kernel.minor, 18);
  EXPECT_EQ(r.machine, "x86_64");
  EXPECT_EQ(r.criu.version.text, "4.2.1");
  EXPECT_EQ(r.podman.version.text, "5.4.2");
  EXPECT_EQ(r.runtime.version.text, "1.1.15+ds1");
  EXPECT_EQ(r.conmon.version.text, "2.1.12");
  EXPECT_TRUE(r.criu_check.passed);
  EXPECT_FALSE(r.criu_check.all_passed);
  EXPECT_EQ(r.cgroup_mode, CgroupMode::kHybrid);
  EXPECT_FALSE(r.cap_sys_resource);
  EXPECT_TRUE(r.prlimit_shim);
  EXPECT_TRUE(r.iptables_restore);
  EXPECT_EQ(r.tcp_slow_start_after_idle, 0);
  ASSERT_NE(r.feature("uffd"), nullptr);
  EXPECT_TRUE(r.feature("uffd")->supported);
  EXPECT_FALSE(r.feature("mem_dirty_track")->supported);
}

TEST(HostCheck, TableShowsMarksAndReasons) {
  Host h;
  auto r = collectHostReport(h.runner, h.files);
  auto text = renderHostTable(r, evaluateHost(r));
  EXPECT_NE(text.find("✓ CRIU"), std::string::npos) << text;
  EXPECT_NE(text.find("✗ memory pre-copy"), std::string::npos) << text;
  EXPECT_NE(text.find("soft-dirty"), std::string::npos) << text;
  EXPECT_NE(text.find("✓ post-copy"), std::string::npos) << text;
}

TEST(HostCheck, JsonIsStable) {
  Host h;
  auto r = collectHostReport(h.runner, h.files);
  auto j = reportToJson(r, evaluateHost(r));
  EXPECT_EQ(j["schema"], "ferry.check.host/1");
  EXPECT_EQ(j["host"]["tools"]["criu"]["version"], "4.2.1");
  EXPECT_EQ(j["modes"]["precopy"], false);
  EXPECT_EQ(j["modes"]["postcopy"], true);
  EXPECT_EQ(j["host"]["cgroup_mode"], "hybrid");
  EXPECT_EQ(j["host"]["cap_eff"], "000001fffeffffff");
  EXPECT_EQ(j["host"]["tcp_slow_start_after_idle"], 0);
}

TEST(HostCheck, RejectsForeignJson) {
  EXPECT_FALSE(reportFromJson(nlohmann::json{{"hello", 1}}).ok());
  EXPECT_FALSE(
      reportFromJson(nlohmann::json{{"schema", "ferry.check.host/1"}, {"host", {{"tools", 1}}}}).ok());
}

}  // namespace
}  // namespace ferry::checkpoint
