// The lab against the real machine (root): namespaces, mounts, Podman, runc, CRIU.
// Every test starts with `ferry lab up` (cheap when the lab is already up), so the lab
// comes up once and stays up for the next test; the up/down/up test puts it back up.
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/process.h"

namespace {

using std::chrono::minutes;
using std::chrono::seconds;

ferry::ProcessResult run(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = seconds(120),
                         const std::string& stdin_data = {}) {
  ferry::ProcessOptions opts;
  opts.timeout = timeout;
  opts.stdin_data = stdin_data;
  auto r = ferry::runProcess(argv, opts);
  if (!r.ok()) {
    ADD_FAILURE() << "cannot run " << ferry::joinArgv(argv) << ": " << r.error().message();
    return {};
  }
  return *r;
}

ferry::ProcessResult ferryCmd(std::vector<std::string> args, std::chrono::milliseconds timeout = seconds(120),
                              const std::string& stdin_data = {}) {
  args.insert(args.begin(), FERRY_BIN);
  return run(args, timeout, stdin_data);
}

ferry::ProcessResult inHost(const std::string& host, const std::vector<std::string>& cmd,
                            std::chrono::milliseconds timeout = seconds(120)) {
  std::vector<std::string> args{"lab", "exec", host, "--"};
  args.insert(args.end(), cmd.begin(), cmd.end());
  return ferryCmd(args, timeout);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// What the lab may leave on the machine: network namespaces, mounts, lab processes,
// Podman's cgroups, lab network interfaces in the machine's namespace.
std::set<std::string> machineSnapshot() {
  std::set<std::string> out;
  {
    std::istringstream in(run({"ip", "netns", "list"}).out);
    for (std::string line; std::getline(in, line);) out.insert("netns " + line.substr(0, line.find(' ')));
  }
  {
    std::ifstream in("/proc/mounts");
    for (std::string line; std::getline(in, line);) out.insert("mount " + line);
  }
  {
    std::istringstream in(
        run({"pgrep", "-fa", "^(ferry-lab-holder|/usr/bin/conmon)|(^|/)ferry-delayline( |$)"}).out);
    for (std::string line; std::getline(in, line);) out.insert("process " + line);
  }
  for (const auto& ctl : std::filesystem::directory_iterator("/sys/fs/cgroup")) {
    if (std::filesystem::exists(ctl.path() / "libpod_parent")) out.insert("cgroup " + ctl.path().string());
  }
  {
    std::istringstream in(run({"ip", "-o", "link", "show"}).out);
    for (std::string line; std::getline(in, line);) {
      if (line.find("podman") != std::string::npos || line.find("lab-") != std::string::npos)
        out.insert("link " + line);
    }
  }
  return out;
}

std::string diff(const std::set<std::string>& before, const std::set<std::string>& after) {
  std::string d;
  for (const auto& s : after) {
    if (before.count(s) == 0) d += "  + " + s + "\n";
  }
  for (const auto& s : before) {
    if (after.count(s) == 0) d += "  - " + s + "\n";
  }
  return d;
}

class LabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the lab needs root";
    auto r = ferryCmd({"lab", "up"}, minutes(30));
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
};

TEST_F(LabTest, UpDownUpLeavesNoLeftovers) {
  // A container and a process started through exec must not survive `down` either.
  ASSERT_EQ(
      inHost("a", {"podman", "run", "-d", "--name", "leftover", "localhost/ferry-canary", "sleep", "600"})
          .exit_code,
      0);
  ASSERT_EQ(inHost("b", {"sh", "-c", "setsid sleep 600 </dev/null >/dev/null 2>&1 &"}).exit_code, 0);
  auto down = ferryCmd({"lab", "down"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  const auto before = machineSnapshot();
  EXPECT_FALSE(std::filesystem::exists("/run/ferry-lab"));
  EXPECT_FALSE(std::filesystem::exists("/var/lib/ferry-lab"));

  auto up = ferryCmd({"lab", "up"}, minutes(30));
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_NE(before, machineSnapshot()) << "up left no mark: the snapshot would not catch leftovers";
  ASSERT_EQ(inHost("a", {"podman", "run", "-d", "localhost/ferry-canary", "sleep", "600"}).exit_code, 0);
  down = ferryCmd({"lab", "down"});
  ASSERT_EQ(down.exit_code, 0) << down.err;
  const auto after = machineSnapshot();
  EXPECT_EQ(before, after) << "leftovers after up/down:\n" << diff(before, after);

  up = ferryCmd({"lab", "up"}, minutes(30));
  ASSERT_EQ(up.exit_code, 0) << up.err;
}

TEST_F(LabTest, UpIsIdempotent) {
  auto status1 = nlohmann::json::parse(ferryCmd({"lab", "status", "--output", "json"}).out);
  auto up = ferryCmd({"lab", "up"}, minutes(30));
  ASSERT_EQ(up.exit_code, 0) << up.err;
  auto status2 = nlohmann::json::parse(ferryCmd({"lab", "status", "--output", "json"}).out);
  EXPECT_EQ(status1["hosts"], status2["hosts"]) << "a second up must keep the running hosts";
}

TEST_F(LabTest, SharedStorageIsOneDirectoryInAAndB) {
  auto up = ferryCmd({"lab", "up", "--shared-storage"}, minutes(30));
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_EQ(inHost("a", {"sh", "-c", "echo from-a > /srv/ferry-shared/lab-test"}).exit_code, 0);
  EXPECT_EQ(inHost("b", {"cat", "/srv/ferry-shared/lab-test"}).out, "from-a\n");
  EXPECT_NE(inHost("lb", {"ls", "/srv/ferry-shared/lab-test"}).exit_code, 0) << "only a and b share it";
  up = ferryCmd({"lab", "up"}, minutes(30));  // back to the default lab for the next tests
  ASSERT_EQ(up.exit_code, 0) << up.err;
  EXPECT_NE(inHost("b", {"ls", "/srv/ferry-shared/lab-test"}).exit_code, 0);
}

TEST_F(LabTest, StatusJsonListsTheHosts) {
  auto r = ferryCmd({"lab", "status", "--output", "json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["up"].get<bool>());
  std::map<std::string, std::string> want{
      {"lb", "10.231.0.10"}, {"a", "10.231.0.11"}, {"b", "10.231.0.12"}, {"client", "10.231.0.20"}};
  ASSERT_EQ(j["hosts"].size(), want.size());
  for (const auto& h : j["hosts"]) {
    EXPECT_EQ(h["address"].get<std::string>(), want[h["name"].get<std::string>()]);
    EXPECT_TRUE(h["running"].get<bool>());
  }
}

TEST_F(LabTest, ExecPassesExitCodeStdinStdout) {
  EXPECT_EQ(inHost("client", {"sh", "-c", "exit 7"}).exit_code, 7);
  EXPECT_EQ(inHost("a", {"true"}).exit_code, 0);
  EXPECT_EQ(inHost("lb", {"false"}).exit_code, 1);
  auto cat = ferryCmd({"lab", "exec", "b", "--", "cat"}, seconds(60), "line one\nline two\n");
  EXPECT_EQ(cat.exit_code, 0);
  EXPECT_EQ(cat.out, "line one\nline two\n");
  auto err = inHost("a", {"sh", "-c", "echo to-stderr >&2; exit 3"});
  EXPECT_EQ(err.exit_code, 3);
  EXPECT_NE(err.err.find("to-stderr"), std::string::npos);
  // Options after the command belong to the command.
  EXPECT_EQ(trim(inHost("a", {"ls", "-d", "/opt/ferry/src"}).out), "/opt/ferry/src");
}

TEST_F(LabTest, BadInputIsAUsageError) {
  auto host = ferryCmd({"lab", "exec", "nowhere", "--", "true"});
  EXPECT_EQ(host.exit_code, 2);
  EXPECT_NE(host.err.find("unknown host"), std::string::npos) << host.err;
  auto profile = ferryCmd({"lab", "up", "--profile", "moon"});
  EXPECT_EQ(profile.exit_code, 2);
  EXPECT_NE(profile.err.find("unknown profile"), std::string::npos) << profile.err;
  EXPECT_EQ(std::count(profile.err.begin(), profile.err.end(), '\n'), 1) << "one line: " << profile.err;
}

TEST_F(LabTest, HostsAreSeparateAndReachEachOtherByName) {
  const std::vector<std::string> hosts{"lb", "a", "b", "client"};
  for (const auto& h : hosts) {
    EXPECT_EQ(trim(inHost(h, {"hostname"}).out), h);
    EXPECT_EQ(trim(inHost(h, {"cat", "/etc/os-release"}).out).find("trixie") != std::string::npos, true) << h;
    for (const auto& peer : hosts) {
      if (peer == h) continue;
      auto ping = inHost(h, {"ping", "-c", "1", "-W", "2", peer});
      EXPECT_EQ(ping.exit_code, 0) << h << " -> " << peer << ": " << ping.out << ping.err;
    }
  }
  // Private /dev/shm, /tmp and /run: what a writes, b does not see.
  ASSERT_EQ(
      inHost("a", {"sh", "-c", "echo x > /dev/shm/lab-test; echo x > /tmp/lab-test; echo x > /run/lab-test"})
          .exit_code,
      0);
  EXPECT_NE(inHost("b", {"sh", "-c", "ls /dev/shm/lab-test /tmp/lab-test /run/lab-test"}).exit_code, 0);
  inHost("a", {"rm", "-f", "/dev/shm/lab-test", "/tmp/lab-test", "/run/lab-test"});
  // The host's root is the root of its own mount namespace (pivot_root, not chroot).
  EXPECT_EQ(trim(inHost("a", {"findmnt", "-n", "-o", "FSTYPE", "/"}).out), "overlay");
  // ferry on PATH, the repository read-only.
  EXPECT_EQ(inHost("b", {"ferry", "--version"}).exit_code, 0);
  EXPECT_NE(inHost("b", {"touch", "/opt/ferry/src/lab-test"}).exit_code, 0);
  auto criu = inHost("a", {"criu", "--version"});
  EXPECT_NE(criu.out.find("Version: 4.2"), std::string::npos) << criu.out << criu.err;
}

TEST_F(LabTest, CanaryCheckpointRestoreKeepsState) {
  inHost("a", {"podman", "rm", "-f", "-t", "0", "lab-canary"});
  inHost("b", {"podman", "rm", "-f", "-t", "0", "lab-canary"});
  // The canary image has the same ID on a and b (loaded from one `podman save`).
  auto ida = trim(inHost("a", {"podman", "image", "inspect", "-f", "{{.Id}}", "localhost/ferry-canary"}).out);
  auto idb = trim(inHost("b", {"podman", "image", "inspect", "-f", "{{.Id}}", "localhost/ferry-canary"}).out);
  ASSERT_FALSE(ida.empty());
  EXPECT_EQ(ida, idb);

  // A counter in memory, a listening TCP socket, a file lock, a non-root process.
  const std::string script =
      "mkdir -p /tmp/www; (flock /tmp/lock sleep 100000 &); su canary -c 'httpd -p 8080 -h /tmp/www'; "
      "i=0; while true; do i=$((i+1)); echo $i > /tmp/www/n; sleep 0.1; done";
  ASSERT_EQ(inHost("a", {"podman", "run", "-d", "--name", "lab-canary", "-p", "8080:8080",
                         "localhost/ferry-canary", "sh", "-c", script})
                .exit_code,
            0);
  auto counter = [](const std::string& host) {
    auto r = inHost("client", {"curl", "-fsS", "--max-time", "2", "http://" + host + ":8080/n"});
    return r.exit_code == 0 ? std::atol(r.out.c_str()) : -1L;
  };
  long c0 = -1;
  for (int i = 0; i < 50 && c0 < 10; ++i) {
    c0 = counter("a");
    ::usleep(200000);
  }
  ASSERT_GE(c0, 10);

  // In place.
  auto cp = inHost("a", {"podman", "container", "checkpoint", "lab-canary"});
  ASSERT_EQ(cp.exit_code, 0) << cp.err;
  auto rs = inHost("a", {"podman", "container", "restore", "lab-canary"});
  ASSERT_EQ(rs.exit_code, 0) << rs.err;
  long c1 = counter("a");
  EXPECT_GE(c1, c0);

  // Across hosts: export on a, copy, import on b.
  cp = inHost("a", {"podman", "container", "checkpoint", "--export", "/tmp/lab-canary.tar", "lab-canary"});
  ASSERT_EQ(cp.exit_code, 0) << cp.err;
  auto copy = run({"sh", "-c",
                   std::string(FERRY_BIN) + " lab exec a -- cat /tmp/lab-canary.tar | " + FERRY_BIN +
                       " lab exec b -- sh -c 'cat > /tmp/lab-canary.tar'"});
  ASSERT_EQ(copy.exit_code, 0) << copy.err;
  rs = inHost("b", {"podman", "container", "restore", "--import", "/tmp/lab-canary.tar"});
  ASSERT_EQ(rs.exit_code, 0) << rs.err;
  long c2 = counter("b");
  EXPECT_GE(c2, c1) << "the counter restarted on b";
  auto uid = inHost("b", {"podman", "exec", "lab-canary", "sh", "-c", "ps -o user,args | grep [h]ttpd"});
  EXPECT_NE(uid.out.find("canary"), std::string::npos) << uid.out;

  inHost("a", {"podman", "rm", "-f", "-t", "0", "lab-canary"});
  inHost("b", {"podman", "rm", "-f", "-t", "0", "lab-canary"});
  inHost("a", {"rm", "-f", "/tmp/lab-canary.tar"});
  inHost("b", {"rm", "-f", "/tmp/lab-canary.tar"});
}

}  // namespace
