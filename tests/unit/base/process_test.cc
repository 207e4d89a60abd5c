#include "ferry/base/process.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace ferry {
namespace {

using namespace std::chrono_literals;

struct ExitCase {
  std::vector<std::string> argv;
  int exit_code;
  std::string out;
};

class ProcessExitTest : public ::testing::TestWithParam<ExitCase> {};

TEST_P(ProcessExitTest, ReportsExitCodeAndOutput) {
  const auto& c = GetParam();
  auto r = runProcess(c.argv);
  ASSERT_TRUE(r.ok()) << r.error().message();
  EXPECT_EQ(r->exit_code, c.exit_code);
  EXPECT_EQ(r->out, c.out);
  EXPECT_FALSE(r->timed_out);
}

INSTANTIATE_TEST_SUITE_P(Table, ProcessExitTest,
                         ::testing::Values(ExitCase{{"true"}, 0, ""}, ExitCase{{"false"}, 1, ""},
                                           ExitCase{{"echo", "hello"}, 0, "hello\n"},
                                           ExitCase{{"sh", "-c", "exit 7"}, 7, ""},
                                           ExitCase{{"sh", "-c", "kill -9 $$"}, 128 + 9, ""}));

TEST(Process, MissingProgramIsAnError) {
  auto r = runProcess({"ferry-no-such-program"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("not found in PATH"), std::string::npos);
}

TEST(Process, PassesStdin) {
  ProcessOptions o;
  o.stdin_data = "abc";
  auto r = runProcess({"cat"}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out, "abc");
}

TEST(Process, LargeStdinAndStdoutDoNotDeadlock) {
  ProcessOptions o;
  o.stdin_data = std::string(4 << 20, 'x');
  auto r = runProcess({"cat"}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->out.size(), o.stdin_data.size());
}

TEST(Process, KillsOnTimeout) {
  ProcessOptions o;
  o.timeout = 200ms;
  auto r = runProcess({"sleep", "30"}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->timed_out);
  EXPECT_FALSE(r->success());
}

TEST(Process, CancelStopsTheChildAndGivesItsTermHandlerTheGrace) {
  // The child traps SIGTERM and needs a moment to clean up (like a method runner
  // stopping its clients); cancel must not cut that short, and must not count as a timeout.
  std::atomic<bool> cancel{false};
  ProcessOptions o;
  o.timeout = 30s;
  o.cancel = &cancel;
  o.kill_grace = 5s;
  std::thread raiser([&] {
    std::this_thread::sleep_for(300ms);
    cancel = true;
  });
  auto r = runProcess({"bash", "-c", "trap 'sleep 0.3; echo cleaned; exit 143' TERM; sleep 30 & wait"}, o);
  raiser.join();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->cancelled);
  EXPECT_FALSE(r->timed_out);
  EXPECT_FALSE(r->success());
  EXPECT_EQ(r->out, "cleaned\n");
  EXPECT_LT(r->elapsed, 10s);
}

TEST(Process, CapturesStderrAndEnv) {
  ProcessOptions o;
  o.env["FERRY_TEST_VAR"] = "42";
  auto r = runProcess({"sh", "-c", "echo $FERRY_TEST_VAR >&2"}, o);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->err, "42\n");
}

TEST(Process, RunCheckedNamesCommandAndStderr) {
  auto r = runChecked({"sh", "-c", "echo boom >&2; exit 3"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("exit code 3"), std::string::npos);
  EXPECT_NE(r.error().what.find("boom"), std::string::npos);
}

TEST(Process, JoinArgvQuotes) {
  EXPECT_EQ(joinArgv({"a", "b c", "it's"}), "a 'b c' 'it'\\''s'");
}

}  // namespace
}  // namespace ferry
