// `ferry check` against the real lab (issue 2, item 4): on hosts a and b CRIU ≥ 4.2,
// memory pre-copy unavailable (no soft-dirty), post-copy available; a → b restorable;
// --deep really checkpoints and restores the canary on a and leaves nothing behind;
// bad input is a one-line error with exit code 2.
// Needs root; brings the lab up with `ferry lab up` when it is not running, and makes
// sure the hosts run this build of ferry (the bundle is refreshed from FERRY_BIN).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "ferry/base/process.h"
#include "lab_support.h"

namespace {

using ferry::labtest::kFerry;
using ferry::labtest::run;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string firstWord(const std::string& path) {
  std::ifstream in(path);
  std::string w;
  in >> w;
  return w;
}

nlohmann::json parse(const std::string& out) {
  return nlohmann::json::parse(out, nullptr, false);
}

const nlohmann::json* item(const nlohmann::json& j, const std::string& key) {
  for (const auto& i : j.at("items")) {
    if (i.at("key") == key) return &i;
  }
  return nullptr;
}

std::vector<int> versionOf(const std::string& text) {
  std::vector<int> v;
  std::istringstream in(text);
  std::string part;
  while (v.size() < 3 && std::getline(in, part, '.')) v.push_back(std::atoi(part.c_str()));
  while (v.size() < 3) v.push_back(0);
  return v;
}

class CheckTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    auto pid = firstWord("/run/ferry-lab/hosts/a/pid");
    bool up = !pid.empty() && fs::exists("/proc/" + pid);
    // `lab up` on a running lab only refreshes the hosts' ferry bundle.
    // The hosts' bundle is a copy: refresh it when it came from elsewhere or is older.
    const fs::path bundled = "/run/ferry-lab/bundle/bin/ferry";
    std::error_code ec;
    bool stale = firstWord("/run/ferry-lab/bundle/source") != kFerry || !fs::exists(bundled, ec) ||
                 fs::last_write_time(kFerry, ec) > fs::last_write_time(bundled, ec);
    if (!up || stale) {
      auto r = run({kFerry, "lab", "up"}, 20min, {{"FERRY_BIN", kFerry}});
      ASSERT_TRUE(r.success()) << "ferry lab up failed:\n" << r.out << r.err;
    }
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (the lab)";
  }
};

class CheckHostTest : public CheckTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(CheckHostTest, CriuModernNoPrecopyPostcopyAvailable) {
  auto r = run({kFerry, "check", "--host", GetParam(), "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = parse(r.out);
  ASSERT_TRUE(j.is_object()) << r.out << r.err;
  EXPECT_EQ(j["schema"], "ferry.check.host/1");
  EXPECT_EQ(j["host"]["hostname"], GetParam());

  const auto& criu = j["host"]["tools"]["criu"];
  ASSERT_TRUE(criu["found"].get<bool>()) << criu.dump();
  auto v = versionOf(criu["version"].get<std::string>());
  EXPECT_TRUE(v[0] > 4 || (v[0] == 4 && v[1] >= 2)) << criu["version"];
  EXPECT_TRUE(j["host"]["criu_check"]["passed"].get<bool>()) << j["host"]["criu_check"].dump();

  EXPECT_TRUE(j["modes"]["checkpoint"].get<bool>());
  EXPECT_FALSE(j["modes"]["precopy"].get<bool>());
  const auto* pre = item(j, "mode.precopy");
  ASSERT_NE(pre, nullptr);
  EXPECT_NE(pre->at("reason").get<std::string>().find("soft-dirty"), std::string::npos) << pre->dump();
  EXPECT_TRUE(j["modes"]["postcopy"].get<bool>());
  EXPECT_TRUE(j["host"]["features"]["uffd"]["supported"].get<bool>());
  EXPECT_TRUE(j["host"]["features"]["uffd-noncoop"]["supported"].get<bool>());
  EXPECT_NE(j["host"]["cgroup_mode"], "unknown");
  EXPECT_FALSE(j["host"]["cpu"]["flags"].empty());
  // Without CAP_SYS_RESOURCE the lab's shim must be what makes dumps possible.
  if (!j["host"]["cap_sys_resource"].get<bool>()) {
    EXPECT_TRUE(j["host"]["prlimit_shim"].get<bool>());
  }
}

TEST_F(CheckTest, HumanTableMarksWhatIsMissing) {
  auto r = run({kFerry, "check", "--host", "a"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("✓ CRIU"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("✗ memory pre-copy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("soft-dirty"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("✓ post-copy"), std::string::npos) << r.out;
}

TEST_F(CheckTest, PeerAToBIsRestorable) {
  auto r = run({kFerry, "check", "--host", "a", "--peer", "b", "--output", "json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = parse(r.out);
  ASSERT_TRUE(j.is_object()) << r.out << r.err;
  EXPECT_EQ(j["schema"], "ferry.check.peer/1");
  EXPECT_TRUE(j["restorable"].get<bool>()) << j["items"].dump(2);
  const auto* cpu = item(j, "cpu");
  ASSERT_NE(cpu, nullptr);
  EXPECT_TRUE(cpu->at("ok").get<bool>()) << cpu->dump();  // criu cpuinfo dump on a, check on b

  auto text = run({kFerry, "check", "--host", "a", "--peer", "b"});
  EXPECT_NE(text.out.find("verdict: yes"), std::string::npos) << text.out << text.err;
}

TEST_P(CheckHostTest, DeepPassesAndLeavesNothingBehind) {
  const std::string host = GetParam();
  auto r = run({kFerry, "check", "--host", host, "--deep", "--output", "json"}, 10min);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  auto j = parse(r.out);
  ASSERT_TRUE(j.is_object()) << r.out << r.err;
  ASSERT_TRUE(j.contains("deep"));
  EXPECT_TRUE(j["deep"]["passed"].get<bool>()) << j["deep"].dump(2);
  EXPECT_EQ(j["deep"]["broke"], "");
  std::vector<std::string> steps;
  for (const auto& s : j["deep"]["steps"]) steps.push_back(s["name"]);
  EXPECT_EQ(steps, (std::vector<std::string>{"image", "stage flock", "start canary", "checkpoint", "remove",
                                             "restore", "verify", "cleanup"}));

  auto ps = run({kFerry, "lab", "exec", host, "--", "podman", "ps", "-a", "--format", "{{.Names}}"});
  EXPECT_TRUE(ps.success()) << ps.err;
  EXPECT_EQ(ps.out.find("ferry-check-canary"), std::string::npos) << ps.out;
  auto tmp =
      run({kFerry, "lab", "exec", host, "--", "sh", "-c", "ls -d /tmp/ferry-check-* 2>/dev/null; true"});
  EXPECT_TRUE(tmp.success()) << tmp.err;
  EXPECT_EQ(tmp.out, "") << "staging directories left in " << host << "'s /tmp";
}

INSTANTIATE_TEST_SUITE_P(Hosts, CheckHostTest, ::testing::Values("a", "b"));

struct BadInput {
  std::vector<std::string> args;
  std::string says;
};

class CheckBadInputTest : public CheckTest, public ::testing::WithParamInterface<BadInput> {};

TEST_P(CheckBadInputTest, OneLineAndExitTwo) {
  std::vector<std::string> argv{kFerry, "check"};
  argv.insert(argv.end(), GetParam().args.begin(), GetParam().args.end());
  auto r = run(argv, 60s);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
  EXPECT_EQ(r.err.rfind("ferry: ", 0), 0U) << r.err;
  EXPECT_NE(r.err.find(GetParam().says), std::string::npos) << r.err;
}

INSTANTIATE_TEST_SUITE_P(
    Table, CheckBadInputTest,
    ::testing::Values(BadInput{{"--host", "nosuchhost"}, "unknown lab host 'nosuchhost'"},
                      BadInput{{"--host", "a", "--peer", "nosuchhost"}, "unknown lab host 'nosuchhost'"},
                      BadInput{{"--peer", "b"}, "--peer needs --host"},
                      BadInput{{"--host", "a", "--peer", "a"}, "same host"},
                      BadInput{{"--host", "a", "--output", "yaml"}, "--output must be text or json"}));

}  // namespace
