// The Podman runtime behind `ferry migrate`: parsers against recorded output (Podman
// 5.4.2, runc 1.1.15, CRIU 4.2.1 in the lab), the command lines it runs, the error
// words it gives, and the cgroup freezer against a fake cgroup tree.
#include "ferry/checkpoint/runtime.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "fake_os.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing::FakeRunner;
using testing::Reply;

// `podman container inspect web` in the lab (fields the runtime reads).
const char* const kInspectWeb =
    R"([{"Id": "2a6744187f94943077046efab75d479cb342dd1cc48b59315c31d889cb03072d", "Name": "web", "Image": "acb0adf96d4173808cb4aa74b8078971fe33bccb7d5b9aec6b97d2d222b124f7", "ImageName": "localhost/ferry-web:0dbd9670495e2845", "StaticDir": "/var/lib/containers/storage/overlay-containers/2a6744187f94943077046efab75d479cb342dd1cc48b59315c31d889cb03072d/userdata", "Mounts": [{"Type": "bind", "Source": "/srv/ferry/ref", "Destination": "/srv/ferry/ref", "Driver": "", "Mode": "", "Options": ["rbind"], "RW": true, "Propagation": "rprivate"}], "State": {"Status": "running", "Running": true, "Paused": false, "Pid": 7710, "CgroupPath": "/libpod_parent/libpod-2a6744187f94943077046efab75d479cb342dd1cc48b59315c31d889cb03072d"}, "HostConfig": {"PortBindings": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "80"}]}}, "NetworkSettings": {"Networks": {"ferry": {"IPAddress": "10.89.0.3"}}}}])";

const char* const kCheckpointStats = R"({
    "podman_checkpoint_duration": 1806860,
    "container_statistics": [{"Id": "2a67", "runtime_checkpoint_duration": 982070,
      "criu_statistics": {"freezing_time": 5106, "frozen_time": 567580, "memdump_time": 52841,
                          "memwrite_time": 13779, "pages_scanned": 5200, "pages_written": 4507}}]})";

const char* const kRestoreStats = R"({"podman_restore_duration": 1746140, "container_statistics": [
    {"Id": "2a67", "runtime_restore_duration": 1270460,
     "criu_statistics": {"pages_compared": 2567, "forking_time": 26134, "restore_time": 982745, "pages_restored": 2159}}]})";

TEST(CheckRuntime, ParsesInspect) {
  auto c = parseInspect(kInspectWeb);
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->name, "web");
  EXPECT_EQ(c->id.substr(0, 12), "2a6744187f94");
  EXPECT_EQ(c->image_name, "localhost/ferry-web:0dbd9670495e2845");
  EXPECT_TRUE(c->running);
  EXPECT_EQ(c->status, "running");
  EXPECT_EQ(c->cgroup_path.rfind("/libpod_parent/libpod-", 0), 0u);
  ASSERT_EQ(c->mounts.size(), 1u);
  EXPECT_EQ(c->mounts[0].type, "bind");
  EXPECT_EQ(c->mounts[0].source, "/srv/ferry/ref");
  ASSERT_EQ(c->ports.size(), 1u);
  EXPECT_EQ(c->ports[0].container_port, 80);
  EXPECT_EQ(c->ports[0].host_port, 80);
  EXPECT_EQ(c->addresses.at("ferry"), "10.89.0.3");
}

struct BadInspect {
  const char* name;
  const char* text;
};
class CheckRuntimeBadInspect : public ::testing::TestWithParam<BadInspect> {};
TEST_P(CheckRuntimeBadInspect, IsAnErrorNotACrash) {
  EXPECT_FALSE(parseInspect(GetParam().text).ok());
}
INSTANTIATE_TEST_SUITE_P(CheckRuntime, CheckRuntimeBadInspect,
                         ::testing::Values(BadInspect{"NotJson", "Error: no such container"},
                                           BadInspect{"Empty", "[]"},
                                           BadInspect{"NoId", R"([{"Name": "web"}])"},
                                           BadInspect{"Scalar", "42"}),
                         [](const auto& tp) { return std::string(tp.param.name); });

TEST(CheckRuntime, ParsesStatistics) {
  auto c = parseCheckpointStats(kCheckpointStats);
  ASSERT_TRUE(c.ok());
  EXPECT_DOUBLE_EQ(c->podman_ms, 1806.86);
  EXPECT_DOUBLE_EQ(c->criu_frozen_ms, 567.58);
  EXPECT_EQ(c->pages_written, 4507u);
  auto r = parseRestoreStats(kRestoreStats);
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ(r->criu_restore_ms, 982.745);
  EXPECT_EQ(r->pages_restored, 2159u);
  EXPECT_FALSE(parseRestoreStats("{oops").ok());
}

TEST(CheckRuntime, MemoryStatCountsAnonymousAndShared) {
  EXPECT_EQ(parseMemoryStat("cache 1040384\nrss 96645120\ntotal_rss 96645120\ntotal_shmem 2592768\n"),
            96645120u + 2592768u);
  EXPECT_EQ(parseMemoryStat("anon 1000\nfile 5000\nshmem 24\n"), 1024u);
  EXPECT_EQ(parseMemoryStat(""), 0u);
}

TEST(CheckRuntime, RunsPodmanWithTheMigrationFlags) {
  FakeRunner runner;
  runner.program("podman");
  runner.reply({"podman", "container", "checkpoint"}, Reply{0, kCheckpointStats, ""});
  runner.reply({"podman", "container", "restore"}, Reply{0, kRestoreStats, ""});
  auto rt = makePodmanRuntime(runner, RuntimeOptions{});
  CheckpointOptions co;
  co.archive = "/var/lib/ferry/staging/m1-db.tar";
  ASSERT_TRUE(rt->checkpoint("db", co).ok());
  EXPECT_EQ(runner.calls.back(),
            (std::vector<std::string>{"podman", "container", "checkpoint", "--print-stats",
                                      "--export=/var/lib/ferry/staging/m1-db.tar", "--compress=none",
                                      "--keep", "--tcp-established", "--file-locks", "db"}));
  RestoreOptions ro;
  ro.archive = "/x/db.tar";
  ASSERT_TRUE(rt->restore("db", ro).ok());
  EXPECT_EQ(runner.calls.back(),
            (std::vector<std::string>{"podman", "container", "restore", "--print-stats", "--tcp-established",
                                      "--file-locks", "--import=/x/db.tar"}));
  ASSERT_TRUE(rt->restore("db", RestoreOptions{}).ok());
  EXPECT_EQ(runner.calls.back().back(), "db");  // in place: by name, no --import
}

TEST(CheckRuntime, SaysWhatWentWrong) {
  FakeRunner runner;
  runner.program("podman");
  runner.reply({"podman", "container", "inspect"}, Reply{125, "", "Error: no such container nosuch\n"});
  runner.reply({"podman", "image", "inspect"}, Reply{125, "", "Error: nope: image not known\n"});
  runner.reply({"podman", "container", "checkpoint"},
               Reply{125, "", "Error: ... sockets: Can't get 1:16 opt: Operation not supported\n"});
  auto rt = makePodmanRuntime(runner, RuntimeOptions{});
  auto i = rt->inspect("nosuch");
  ASSERT_FALSE(i.ok());
  EXPECT_EQ(i.error().what, "no container named 'nosuch' on this host");
  auto img = rt->imageId("nope");
  ASSERT_TRUE(img.ok());
  EXPECT_FALSE(img->has_value());
  auto c = rt->checkpoint("db", CheckpointOptions{});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().what.find("checkpoint of db failed (exit 125)"), std::string::npos) << c.error().what;
  EXPECT_FALSE(c.error().hint.empty()) << "CRIU's socket failure has a known diagnosis";
  FakeRunner none;  // podman not installed
  auto rt2 = makePodmanRuntime(none, RuntimeOptions{});
  auto e = rt2->inspect("web");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().hint.find("apt-get install podman"), std::string::npos);
}

// The freezer against a fake cgroup v1 tree: the "kernel" (a thread) answers FROZEN.
TEST(CheckRuntime, FreezesAndThawsThroughTheCgroup) {
  auto root = fs::temp_directory_path() / ("ferry-cgroup-" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto dir = root / "freezer" / "libpod_parent" / "libpod-abc";
  fs::create_directories(dir);
  std::ofstream(dir / "freezer.state") << "THAWED\n";
  FakeRunner runner;
  RuntimeOptions o;
  o.cgroup_root = root;
  auto rt = makePodmanRuntime(runner, o);
  ContainerInfo c;
  c.name = "db";
  c.cgroup_path = "/libpod_parent/libpod-abc";
  ASSERT_TRUE(rt->freeze(c).ok());
  EXPECT_TRUE(*rt->frozen(c));
  ASSERT_TRUE(rt->thaw(c).ok());
  EXPECT_FALSE(*rt->frozen(c));
  c.cgroup_path = "/libpod_parent/../../etc";
  EXPECT_FALSE(rt->freeze(c).ok());
  c.cgroup_path = "/libpod_parent/gone";
  auto missing = rt->freeze(c);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().what.find("no freezer for cgroup"), std::string::npos);
  fs::remove_all(root);
}

}  // namespace
}  // namespace ferry::checkpoint
