#include <algorithm>

#include <gtest/gtest.h>

#include "fake_os.h"
#include "ferry/checkpoint/host_check.h"

namespace ferry::checkpoint {
namespace {

using namespace testing;  // NOLINT(google-build-using-namespace)

const std::vector<std::string> kPodman{"podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"};

std::vector<std::string> pod(std::vector<std::string> args) {
  auto v = kPodman;
  v.insert(v.end(), args.begin(), args.end());
  return v;
}

struct DeepCase {
  std::string name;
  std::function<void(FakeRunner&, FakeFiles&)> change;
  bool passed;
  std::string broke_has;
};

class CheckDeepTest : public ::testing::TestWithParam<DeepCase> {};

TEST_P(CheckDeepTest, NamesWhatBrokeAndCleansUp) {
  const auto& c = GetParam();
  FakeRunner r;
  FakeFiles f;
  for (const char* p : {"podman", "flock", "ldd", "mktemp", "mkdir", "cp", "rm"}) r.program(p);
  r.reply({"ldd"}, {0,
                    "\tlinux-vdso.so.1 (0x00007f260ea8f000)\n"
                    "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f260e886000)\n"
                    "\t/lib64/ld-linux-x86-64.so.2 (0x00007f260ea91000)\n",
                    ""});
  r.reply({"mktemp"}, {0, "/tmp/ferry-check-AbC123\n", ""});
  r.reply({"mkdir"}, {0, "", ""});
  r.reply({"cp"}, {0, "", ""});
  r.reply({"rm"}, {0, "", ""});
  r.reply(pod({"create"}), {0, "0123abcd\n", ""});
  r.reply(pod({"cp"}), {0, "", ""});
  r.reply(pod({"start"}), {0, "", ""});
  r.reply(pod({"image", "exists"}), {0, "", ""});
  r.reply(pod({"exec"}), {0, "socket=ok\nlock=ok\nuser=ok\n", ""});
  r.reply(pod({"container", "checkpoint"}), {0, "canary\n", ""});
  r.reply(pod({"rm"}), {0, "", ""});
  r.reply(pod({"container", "restore"}), {0, "canary\n", ""});
  r.reply(pod({"container", "inspect"}),
          {0, "/var/lib/containers/storage/overlay-containers/x/userdata\n", ""});
  if (c.change) c.change(r, f);
  DeepCheckOptions o;
  o.name = "canary-test";
  o.ready_timeout = std::chrono::milliseconds(300);
  auto res = runDeepCheck(r, f, o);
  EXPECT_EQ(res.passed, c.passed);
  if (!c.passed) {
    EXPECT_NE(res.broke.find(c.broke_has), std::string::npos) << res.broke;
  }
  // The last podman call always removes the canary; the staging directory (which holds
  // the checkpoint archive) goes too when it was made.
  std::vector<std::string> last_podman;
  bool made_dir = false, removed_dir = false;
  for (const auto& call : r.calls) {
    if (call[0] == "podman") last_podman = call;
    if (call[0] == "mktemp") made_dir = true;
    if (call == std::vector<std::string>{"rm", "-rf", "--", "/tmp/ferry-check-AbC123"}) removed_dir = true;
  }
  EXPECT_NE(std::find(last_podman.begin(), last_podman.end(), "rm"), last_podman.end());
  EXPECT_NE(std::find(last_podman.begin(), last_podman.end(), "canary-test"), last_podman.end());
  EXPECT_EQ(made_dir, removed_dir);
  EXPECT_EQ(res.steps.back().name, "cleanup");
  // And the result survives JSON.
  auto back = deepFromJson(deepToJson(res));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->passed, res.passed);
  EXPECT_EQ(back->broke, res.broke);
}

INSTANTIATE_TEST_SUITE_P(
    Table, CheckDeepTest,
    ::testing::Values(
        DeepCase{"passes", nullptr, true, ""},
        DeepCase{"no_image",
                 [](FakeRunner& r, FakeFiles&) {
                   r.reply(pod({"image", "exists"}), {1, "", ""});
                 },
                 false, "ferry-canary"},
        DeepCase{"old_criu_sockets",
                 [](FakeRunner& r, FakeFiles& f) {
                   r.reply(pod({"container", "checkpoint"}),
                           {125, "", "Error: criu failed: type NOTIFY errno 0\nlog file: .../dump.log\n"});
                   f.files["/var/lib/containers/storage/overlay-containers/x/userdata/dump.log"] =
                       "(00.012) Error (criu/sockets.c:548): sockets: Can't get 1:16 opt: Operation not "
                       "supported\n";
                 },
                 false, "TCP socket"},
        DeepCase{"no_cap_sys_resource",
                 [](FakeRunner& r, FakeFiles&) {
                   r.reply(pod({"container", "checkpoint"}),
                           {125, "",
                            "Error (criu/cr-dump.c:1030): Can't get rlimit 0: Operation not permitted\n"});
                 },
                 false, "non-root process"},
        DeepCase{"restore_fails",
                 [](FakeRunner& r, FakeFiles&) {
                   r.reply(pod({"container", "restore"}), {125, "", "Error: something new went wrong\n"});
                 },
                 false, "something new went wrong"},
        DeepCase{"canary_never_ready",
                 [](FakeRunner& r, FakeFiles&) {
                   r.reply(pod({"exec"}), {0, "socket=ok\nlock=ok\n", ""});
                 },
                 false, "non-root process"},
        DeepCase{"podman_missing", [](FakeRunner& r, FakeFiles&) { r = FakeRunner(); }, false, "podman"},
        DeepCase{"no_flock",
                 [](FakeRunner& r, FakeFiles&) {
                   FakeRunner n;
                   for (const char* p : {"podman", "ldd", "mktemp", "mkdir", "cp", "rm"}) n.program(p);
                   n.reply(pod({"image", "exists"}), {0, "", ""});
                   n.reply(pod({"rm"}), {0, "", ""});
                   r = std::move(n);
                 },
                 false, "flock not found"},
        DeepCase{"create_fails",
                 [](FakeRunner& r, FakeFiles&) {
                   r.reply(pod({"create"}), {125, "", "Error: short-name resolution failed\n"});
                 },
                 false, "did not start: Error: short-name"}),
    [](const ::testing::TestParamInfo<DeepCase>& i) { return i.param.name; });

}  // namespace
}  // namespace ferry::checkpoint
