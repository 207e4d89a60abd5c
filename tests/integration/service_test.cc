// The reference service in the real lab (issue 3): deploy on `a`, the HTTP contract
// (login, wrong password, Range, health, writes), the real-browser LMF_04 check, and
// the manual Podman move a → b that must keep the sessions logged in.
// Needs root; brings the lab up with `ferry lab up` when it is not running.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "ferry/base/process.h"
#include "lab_support.h"

namespace {

using ferry::labtest::kFerry;
using ferry::labtest::run;

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const std::string kService = std::string(FERRY_SOURCE_DIR) + "/deploy/service";
const std::string kData = "/srv/ferry/ref";

std::string hostPid(const std::string& host) {
  std::ifstream in("/run/ferry-lab/hosts/" + host + "/pid");
  std::string pid;
  in >> pid;
  return pid;
}

// Runs a command inside a lab host (its mount and network namespaces).
ferry::ProcessResult onHost(const std::string& host, std::vector<std::string> argv,
                            std::chrono::milliseconds timeout = 60s) {
  std::vector<std::string> full = {"nsenter", "-t", hostPid(host), "-m", "-n", "-u", "-r", "-w", "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  return run(full, timeout);
}

// curl from the client host; -w appends "\n<code> <redirect>" to the body.
struct Http {
  int code = 0;
  std::string redirect;
  std::string body;
};

Http curl(std::vector<std::string> args) {
  std::vector<std::string> argv = {"curl", "-sS", "--max-time", "10", "-w", "\n%{http_code} %{redirect_url}"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = onHost("client", argv);
  Http h;
  auto nl = r.out.rfind('\n');
  if (nl == std::string::npos) return h;
  h.body = r.out.substr(0, nl);
  std::istringstream tail(r.out.substr(nl + 1));
  tail >> h.code >> h.redirect;
  return h;
}

nlohmann::json lastJsonLine(const std::string& out) {
  std::istringstream in(out);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty() && line.front() == '{') last = line;
  return nlohmann::json::parse(last, nullptr, false);
}

class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    if (hostPid("a").empty() || !fs::exists("/proc/" + hostPid("a"))) {
      // The hosts get this build of ferry in their bundle.
      auto up = run({kFerry, "lab", "up"}, 20min, {{"FERRY_BIN", kFerry}});
      ASSERT_TRUE(up.success()) << "ferry lab up failed:\n" << up.err;
    }
    auto r = run({kFerry, "lab", "deploy", "--on", "a", "--rows", "100", "--video-mb", "20"}, 30min);
    deployed_ = r.success();
    ASSERT_TRUE(deployed_) << "ferry lab deploy --on a failed:\n" << r.out << r.err;
  }
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    ASSERT_TRUE(deployed_) << "deploy failed in SetUpTestSuite";
  }
  static inline bool deployed_ = false;
};

TEST_F(ServiceTest, DeployRejectsBadInput) {
  EXPECT_EQ(run({kFerry, "lab", "deploy", "--on", "lb"}).exit_code, 2);
  EXPECT_EQ(run({kFerry, "lab", "deploy", "--on", "a", "--rows", "7"}).exit_code, 2);
}

TEST_F(ServiceTest, HealthAnswersOkThroughTheLoadBalancer) {
  auto h = curl({"http://lb/health.php"});
  EXPECT_EQ(h.code, 200);
  EXPECT_EQ(h.body, "ok");
}

TEST_F(ServiceTest, SeededUserLogsInAndWrongPasswordIsRefused) {
  const std::string jar = "/tmp/service-test-cookies";
  auto login = curl({"-c", jar, "-d", "user=user7", "-d", "password=pass7", "http://lb/login.php"});
  EXPECT_EQ(login.code, 302);
  EXPECT_EQ(login.redirect, "http://lb/videos.php");
  auto who = nlohmann::json::parse(curl({"-b", jar, "http://lb/whoami.php"}).body, nullptr, false);
  EXPECT_EQ(who.value("logged_in", false), true);
  EXPECT_EQ(who.value("user", std::string()), "user7");
  auto videos = curl({"-b", jar, "http://lb/videos.php"});
  EXPECT_EQ(videos.code, 200);
  EXPECT_NE(videos.body.find("player.php?v=clip01.mp4"), std::string::npos) << videos.body;

  auto wrong = curl({"-d", "user=user7", "-d", "password=pass8", "http://lb/login.php"});
  EXPECT_EQ(wrong.code, 401);
  EXPECT_NE(wrong.body.find("Wrong user name or password"), std::string::npos);
  auto unknown = curl({"-d", "user=nobody", "-d", "password=pass1", "http://lb/login.php"});
  EXPECT_EQ(unknown.code, 401);
  auto anon = nlohmann::json::parse(curl({"http://lb/whoami.php"}).body, nullptr, false);
  EXPECT_EQ(anon.value("logged_in", true), false);
  EXPECT_EQ(curl({"http://lb/videos.php"}).code, 302);
}

TEST_F(ServiceTest, RangeRequestReturns206WithTheFilesBytes) {
  std::ifstream file("/proc/" + hostPid("a") + "/root" + kData + "/www/media/clip01.mp4", std::ios::binary);
  ASSERT_TRUE(file) << "clip01.mp4 missing in host a's data directory";
  std::string content((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ASSERT_GT(content.size(), 200000U);
  struct Case {
    std::string range;
    size_t from, to;  // inclusive
  };
  const size_t n = content.size();
  for (const Case& c :
       {Case{"1000-1999", 1000, 1999}, Case{"0-0", 0, 0}, Case{std::to_string(n - 500) + "-", n - 500, n - 1},
        Case{"123456-133455", 123456, 133455}}) {
    auto out =
        onHost("client", {"sh", "-c",
                          "curl -sS --max-time 10 -H 'Range: bytes=" + c.range +
                              "' -o /tmp/service-test-range -w '%{http_code}' http://lb/media/clip01.mp4"
                              " && echo && base64 -w0 /tmp/service-test-range"});
    std::istringstream in(out.out);
    int code = 0;
    std::string b64;
    in >> code >> b64;
    EXPECT_EQ(code, 206) << c.range;
    auto decoded = run({"sh", "-c", "echo '" + b64 + "' | base64 -d | od -An -v -tx1 | tr -d ' \\n'"});
    auto expected = run({"sh", "-c",
                         "tail -c +" + std::to_string(c.from + 1) + " '/proc/" + hostPid("a") + "/root" +
                             kData + "/www/media/clip01.mp4' | head -c " + std::to_string(c.to - c.from + 1) +
                             " | od -An -v -tx1 | tr -d ' \\n'"});
    EXPECT_EQ(decoded.out.size(), 2 * (c.to - c.from + 1)) << c.range;
    EXPECT_EQ(decoded.out, expected.out) << "bytes differ for range " << c.range;
  }
}

TEST_F(ServiceTest, WritesAreAcknowledgedAndListedInOrder) {
  const std::string writer = "service-test-" + std::to_string(getpid());
  for (int seq = 1; seq <= 3; ++seq) {
    auto w = curl({"-d", "writer=" + writer, "-d", "seq=" + std::to_string(seq), "http://lb/api/write.php"});
    ASSERT_EQ(w.code, 200) << w.body;
    auto j = nlohmann::json::parse(w.body, nullptr, false);
    EXPECT_EQ(j.value("ok", false), true);
    EXPECT_EQ(j.value("seq", 0), seq);
  }
  auto list = nlohmann::json::parse(curl({"http://lb/api/writes.php?writer=" + writer}).body, nullptr, false);
  ASSERT_TRUE(list.contains("rows")) << list.dump();
  ASSERT_EQ(list["rows"].size(), 3U);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(list["rows"][static_cast<size_t>(i)]["seq"].get<int>(), i + 1);
}

TEST_F(ServiceTest, BrowserLogsInAndThePlayerPlays) {
  const std::string state = "/var/tmp/service-test-browser.json";
  auto r = run({kService + "/browser/run.sh", "login", "--state", state}, 3min);
  auto j = lastJsonLine(r.out);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(j.value("logged_in", false), true) << r.out;
  EXPECT_EQ(j.value("player", false), true) << r.out;
  EXPECT_EQ(j.value("plays", false), true) << r.out;
  auto again = lastJsonLine(run({kService + "/browser/run.sh", "check", "--state", state}, 3min).out);
  EXPECT_EQ(again.value("logged_in", false), true) << again.dump();
}

// Last: moves the service to b with the study's manual method (it stays there).
TEST_F(ServiceTest, ManualMoveToBKeepsBrowserAndCurlSessionsLoggedIn) {
  // Rows acknowledged before the move must be in the database after it.
  const std::string writer = "move-test-" + std::to_string(getpid());
  for (int seq = 1; seq <= 5; ++seq) {
    ASSERT_EQ(
        curl({"-d", "writer=" + writer, "-d", "seq=" + std::to_string(seq), "http://lb/api/write.php"}).code,
        200);
  }
  auto r = run({kService + "/manual-move.sh", "--from", "a", "--to", "b", "--browser"}, 15min);
  auto j = lastJsonLine(r.out);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(j.value("curl_session_logged_in", false), true) << r.out;
  ASSERT_TRUE(j.contains("browser_after") && j["browser_after"].is_object()) << r.out;
  EXPECT_EQ(j["browser_after"].value("logged_in", false), true) << r.out;
  EXPECT_EQ(j["browser_after"].value("plays", false), true) << r.out;
  EXPECT_GT(j.value("downtime_s", 0.0), 0.0);
  auto ps = onHost(
      "b", {"podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "ps", "--format", "{{.Names}}"});
  EXPECT_NE(ps.out.find("web"), std::string::npos);
  EXPECT_NE(ps.out.find("db"), std::string::npos);
  auto h = curl({"http://lb/health.php"});
  EXPECT_EQ(h.code, 200);
  auto list = nlohmann::json::parse(curl({"http://lb/api/writes.php?writer=" + writer}).body, nullptr, false);
  ASSERT_TRUE(list.contains("rows")) << list.dump();
  EXPECT_EQ(list["rows"].size(), 5U) << list.dump();
}

}  // namespace
