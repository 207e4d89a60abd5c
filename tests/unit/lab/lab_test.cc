// Argument validation of `ferry lab` (deploy/include/ferry/lab/lab.h) against a fake machine.
#include "ferry/lab/lab.h"

#include <gtest/gtest.h>

#include <map>

namespace ferry::lab {
namespace {

class FakeSystem final : public System {
 public:
  bool root = true;
  bool debootstrap = true;
  bool archive = true;
  bool cached = false;
  std::map<std::string, std::string> vars;
  mutable std::string last_url;

  [[nodiscard]] bool isRoot() const override { return root; }
  [[nodiscard]] bool hasProgram(const std::string& name) const override {
    return name == "debootstrap" && debootstrap;
  }
  [[nodiscard]] bool httpReachable(const std::string& url,
                                   std::chrono::milliseconds /*timeout*/) const override {
    last_url = url;
    return archive;
  }
  [[nodiscard]] std::string env(const std::string& name) const override {
    auto it = vars.find(name);
    return it == vars.end() ? std::string() : it->second;
  }
  [[nodiscard]] bool rootfsCached(const std::filesystem::path& /*deploy_dir*/) const override {
    return cached;
  }
};

struct UpCase {
  std::string name;
  std::string profile;
  bool root, debootstrap, archive, cached;
  bool ok;
  std::string what_contains;  // in Error::what
  std::string hint_contains;  // in Error::hint
};

TEST(LabValidateUp, Table) {
  const std::vector<UpCase> cases = {
      {"lan_ok", "lan", true, true, true, false, true, "", ""},
      {"edge_ok", "edge", true, true, true, false, true, "", ""},
      {"unknown_profile", "fast", true, true, true, true, false, "unknown profile 'fast'",
       "lan, cloud, wan, edge"},
      {"empty_profile", "", true, true, true, true, false, "unknown profile ''", "use one of"},
      {"profile_before_root", "nope", false, true, true, true, false, "unknown profile", ""},
      {"not_root", "lan", false, true, true, true, false, "needs root", "as root"},
      {"no_debootstrap", "cloud", true, false, true, false, false, "debootstrap is missing",
       "apt-get install debootstrap"},
      {"no_archive", "wan", true, true, false, false, false, "unreachable", "FERRY_DEBIAN_MIRROR"},
      // With the rootfs cached neither debootstrap nor the archive is needed.
      {"cached_no_debootstrap", "lan", true, false, false, true, true, "", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeSystem sys;
    sys.root = c.root;
    sys.debootstrap = c.debootstrap;
    sys.archive = c.archive;
    sys.cached = c.cached;
    UpOptions opts;
    opts.profile = c.profile;
    auto s = validateUp(opts, sys, "/nonexistent");
    EXPECT_EQ(s.ok(), c.ok);
    if (!s.ok()) {
      EXPECT_NE(s.error().what.find(c.what_contains), std::string::npos) << s.error().message();
      EXPECT_NE(s.error().hint.find(c.hint_contains), std::string::npos) << s.error().message();
      EXPECT_EQ(s.error().message().find('\n'), std::string::npos) << "one line";
    }
  }
}

TEST(LabValidateUp, ProbesTheConfiguredMirror) {
  FakeSystem sys;
  sys.vars["FERRY_DEBIAN_MIRROR"] = "http://mirror.example/debian";
  ASSERT_TRUE(validateUp({}, sys, "/nonexistent").ok());
  EXPECT_EQ(sys.last_url, "http://mirror.example/debian/dists/trixie/Release");
  sys.vars.clear();
  ASSERT_TRUE(validateUp({}, sys, "/nonexistent").ok());
  EXPECT_EQ(sys.last_url, "http://deb.debian.org/debian/dists/trixie/Release");
}

TEST(LabValidateExec, Table) {
  struct Case {
    std::string host;
    std::vector<std::string> command;
    bool ok;
    std::string what_contains;
  };
  const std::vector<Case> cases = {
      {"a", {"true"}, true, ""},
      {"client", {"sh", "-c", "exit 3"}, true, ""},
      {"lb", {"ls"}, true, ""},
      {"c", {"true"}, false, "unknown host 'c'"},
      {"A", {"true"}, false, "unknown host 'A'"},
      {"", {"true"}, false, "unknown host ''"},
      {"b", {}, false, "no command"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.host);
    auto s = validateExec(c.host, c.command);
    EXPECT_EQ(s.ok(), c.ok);
    if (!s.ok()) {
      EXPECT_NE(s.error().what.find(c.what_contains), std::string::npos) << s.error().message();
    }
  }
  auto s = validateHost("nowhere");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().hint, "use one of lb, a, b, client");
}

TEST(LabNames, HostsAndProfiles) {
  for (auto h : {"a", "b", "lb", "client"}) EXPECT_TRUE(isHost(h)) << h;
  for (auto p : {"lan", "cloud", "wan", "edge"}) EXPECT_TRUE(isProfile(p)) << p;
  EXPECT_FALSE(isHost("machine"));
  EXPECT_FALSE(isProfile("LAN"));
}

TEST(LabExec, NsenterArgvEntersMountNetAndUtsNamespaces) {
  auto argv = LabController::execArgv(42, {"podman", "ps", "--", "-a"});
  const std::vector<std::string> want = {"nsenter", "-t", "42",     "-m", "-n", "-u", "-r",
                                         "-w",      "--", "podman", "ps", "--", "-a"};
  EXPECT_EQ(argv, want);
}

TEST(LabDeployDir, EnvironmentOverridesTheSourceTree) {
  FakeSystem sys;
  sys.vars["FERRY_DEPLOY_DIR"] = "/opt/ferry/src/deploy";
  EXPECT_EQ(findDeployDir(sys), std::filesystem::path("/opt/ferry/src/deploy"));
  sys.vars.clear();
  EXPECT_TRUE(std::filesystem::exists(findDeployDir(sys) / "lab" / "lab.sh"));
}

TEST(LabHolder, AbsentHostIsNotRunning) {
  auto pid = holderPid("a", "/nonexistent/ferry-lab");
  ASSERT_FALSE(pid.ok());
  EXPECT_NE(pid.error().hint.find("ferry lab up"), std::string::npos);
}

}  // namespace
}  // namespace ferry::lab
