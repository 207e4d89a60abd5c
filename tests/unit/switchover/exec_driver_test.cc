// The exec driver with a real script: what it is given, and what its failures say.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ferry/base/files.h"
#include "ferry/switchover/driver.h"

namespace ferry::switchover {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

struct Script {
  fs::path dir;
  fs::path path;
  explicit Script(const std::string& body) {
    static int n = 0;
    dir = fs::temp_directory_path() /
          ("ferry-exec-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir);
    path = dir / "switch.sh";
    std::ofstream(path) << "#!/bin/sh\nOUT='" << dir.string() << "'\n" << body;
    ::chmod(path.c_str(), 0755);
  }
  ~Script() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string read(const std::string& name) const {
    auto t = readFile(dir / name);
    return t.ok() ? *t : "";
  }
};

SwitchPlan plan() {
  SwitchPlan p;
  p.migration_id = "m7";
  p.service = "ref";
  p.source = {"a", 80};
  p.target = {"b", 8080};
  p.drain_timeout = 1500ms;
  p.hold_timeout = 9s;
  return p;
}

std::unique_ptr<Driver> execDriver(const Script& s, Millis timeout = 10s) {
  DriverConfig c;
  c.kind = "exec";
  c.command = {s.path.string(), "--zone", "lab"};
  c.exec_timeout = timeout;
  auto d = makeDriver(c);
  EXPECT_TRUE(d.ok()) << d.error().message();
  return d.ok() ? std::move(d.value()) : nullptr;
}

TEST(ExecDriver, TheCommandGetsTheStepAndBothEndsInArgvAndEnv) {
  Script s(R"(echo "$@" > "$OUT/args"
env | grep '^FERRY_SWITCH_' | sort > "$OUT/env"
echo "pointed the cloud LB at $FERRY_SWITCH_TARGET"
)");
  auto d = execDriver(s);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->name(), "exec");
  for (const std::string step : {"prepare", "commit", "rollback"}) {
    Result<SwitchReport> r = step == "prepare"  ? d->prepare(plan())
                             : step == "commit" ? d->commit(plan())
                                                : d->rollback(plan());
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->step, step);
    EXPECT_EQ(r->driver, "exec");
    EXPECT_EQ(r->note, "pointed the cloud LB at b:8080");
    EXPECT_EQ(s.read("args"), "--zone lab " + step + " a:80 b:8080\n");
  }
  EXPECT_EQ(s.read("env"),
            "FERRY_SWITCH_DRAIN_TIMEOUT_MS=1500\n"
            "FERRY_SWITCH_HOLD_TIMEOUT_MS=9000\n"
            "FERRY_SWITCH_MIGRATION_ID=m7\n"
            "FERRY_SWITCH_SERVICE=ref\n"
            "FERRY_SWITCH_SOURCE=a:80\n"
            "FERRY_SWITCH_SOURCE_HOST=a\n"
            "FERRY_SWITCH_SOURCE_PORT=80\n"
            "FERRY_SWITCH_STEP=rollback\n"
            "FERRY_SWITCH_TARGET=b:8080\n"
            "FERRY_SWITCH_TARGET_HOST=b\n"
            "FERRY_SWITCH_TARGET_PORT=8080\n");
}

struct FailureCase {
  std::string name;
  std::string body;
  Millis timeout;
  std::string says;
};

class ExecFailures : public ::testing::TestWithParam<FailureCase> {};

TEST_P(ExecFailures, SayWhatHappened) {
  Script s(GetParam().body);
  auto d = execDriver(s, GetParam().timeout);
  ASSERT_TRUE(d);
  auto r = d->commit(plan());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find(GetParam().says), std::string::npos) << r.error().what;
  EXPECT_FALSE(r.error().hint.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Exec, ExecFailures,
    ::testing::Values(FailureCase{"NonZeroExitQuotesStderr", "echo 'the DNS API said 403' >&2\nexit 3\n", 10s,
                                  "exited 3: the DNS API said 403"},
                      FailureCase{"TimeoutKillsIt", "sleep 20\n", 300ms, "did not finish within 300 ms"}),
    [](const ::testing::TestParamInfo<FailureCase>& p) { return p.param.name; });

TEST(ExecDriver, AMissingCommandSaysSo) {
  DriverConfig c;
  c.kind = "exec";
  c.command = {"/nonexistent/ferry-switch"};
  auto d = makeDriver(c);
  ASSERT_TRUE(d.ok());
  auto r = (*d)->prepare(plan());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("/nonexistent/ferry-switch"), std::string::npos) << r.error().what;
}

}  // namespace
}  // namespace ferry::switchover
