// The haproxy driver against the real HAProxy from Debian on 127.0.0.1 (its stats
// socket in a temporary directory). Skipped, saying so, where haproxy is not
// installed (deploy/packages/switchover.txt installs it).
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "fake_backend.h"
#include "ferry/base/files.h"
#include "ferry/base/process.h"
#include "ferry/switchover/local.h"
#include "test_client.h"

namespace ferry::switchover {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::FakeBackend;

// One HAProxy in the background with a frontend on a free port and a backend of two
// slots: s1 at the source, s2 spare (disabled).
class Haproxy {
 public:
  Haproxy(const Endpoint& source, const std::string& extra) {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("ferry-haproxy-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir_);
    port_ = testing::freePort();
    const std::string cfg =
        "global\n"
        "  stats socket " +
        socket() +
        " mode 600 level admin\n"
        "  pidfile " +
        (dir_ / "haproxy.pid").string() +
        "\n"
        "  daemon\n"
        "defaults\n"
        "  mode http\n"
        "  timeout connect 100ms\n"
        "  timeout client 20s\n"
        "  timeout server 20s\n"
        "  retries 100\n"
        "  option redispatch 1\n"
        "  retry-on conn-failure empty-response\n"
        "frontend fe\n"
        "  bind 127.0.0.1:" +
        std::to_string(port_) +
        "\n"
        "  default_backend be\n"
        "backend be\n"
        "  server s1 " +
        source.str() + extra +
        "\n"
        "  server s2 127.0.0.1:1 disabled" +
        extra + "\n";
    std::ofstream(dir_ / "haproxy.cfg") << cfg;
    auto r = runProcess({"haproxy", "-f", (dir_ / "haproxy.cfg").string()});
    started_ = r.ok() && r->success();
    if (!started_) error_ = r.ok() ? r->err : r.error().what;
    for (int i = 0; i < 500 && started_ && !fs::exists(socket()); ++i) std::this_thread::sleep_for(10ms);
  }
  ~Haproxy() {
    auto pid = readFile(dir_ / "haproxy.pid");
    if (pid.ok() && std::stoi(*pid) > 1) {
      const int p = std::stoi(*pid);
      ::kill(p, SIGTERM);
      for (int i = 0; i < 200 && testing::running(p); ++i) std::this_thread::sleep_for(10ms);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  [[nodiscard]] bool started() const { return started_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string socket() const { return (dir_ / "admin.sock").string(); }
  [[nodiscard]] Endpoint front() const { return {"127.0.0.1", port_}; }

  // One runtime API command, for the test's own look at HAProxy.
  std::string command(const std::string& cmd) const {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", socket().c_str());
    std::string out;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      const std::string line = cmd + "\n";
      (void)!::write(fd, line.data(), line.size());
      char buf[4096];
      ssize_t n = 0;
      while ((n = ::read(fd, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  // "ready", "drain" or "maint" and the address of a server, from `show servers state`.
  std::string server(const std::string& name) const {
    const std::string text = command("show servers state be");
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::vector<std::string> v;
      for (std::string w; f >> w;) v.push_back(w);
      if (v.size() > 18 && v[3] == name) {
        const unsigned admin = static_cast<unsigned>(std::stoul(v[6]));
        const std::string state = (admin & 0x63) != 0 ? "maint" : (admin & 0x18) != 0 ? "drain" : "ready";
        return state + " " + v[4] + ":" + v[18];
      }
    }
    return "missing";
  }

  // A backend counter from `show stat`.
  uint64_t stat(const std::string& column) const {
    const std::string text = command("show stat");
    std::istringstream in(text);
    std::string line;
    std::vector<std::string> columns;
    while (std::getline(in, line)) {
      std::vector<std::string> v;
      std::istringstream f(line.rfind("# ", 0) == 0 ? line.substr(2) : line);
      for (std::string w; std::getline(f, w, ',');) v.push_back(w);
      if (line.rfind("# ", 0) == 0) {
        columns = v;
        continue;
      }
      if (v.size() > 1 && v[0] == "be" && v[1] == "BACKEND") {
        for (size_t i = 0; i < columns.size() && i < v.size(); ++i) {
          if (columns[i] == column) return v[i].empty() ? 0 : std::stoull(v[i]);
        }
      }
    }
    return 0;
  }

 private:
  fs::path dir_;
  uint16_t port_ = 0;
  bool started_ = false;
  std::string error_;
};

struct Rig {
  FakeBackend a{"A"};
  FakeBackend b{"B"};
  std::unique_ptr<Haproxy> haproxy;
  std::unique_ptr<Driver> driver;

  explicit Rig(const std::string& extra = "") {
    haproxy = std::make_unique<Haproxy>(a.endpoint(), extra);
    if (!haproxy->started()) return;
    HaproxyConfig c;
    c.service = "ref";
    c.socket = haproxy->socket();
    c.backend = "be";
    c.health_path = "/health";
    auto d = makeHaproxyDriver(c);
    EXPECT_TRUE(d.ok());
    driver = std::move(d.value());
  }

  SwitchPlan plan() const {
    SwitchPlan p;
    p.migration_id = "m1";
    p.service = "ref";
    p.source = a.endpoint();
    p.target = b.endpoint();
    p.drain_timeout = 2s;
    p.hold_timeout = 5s;
    return p;
  }
};

#define SKIP_WITHOUT_HAPROXY()                                                                        \
  if (findInPath("haproxy").empty())                                                                  \
  GTEST_SKIP()                                                                                        \
      << "haproxy is not installed: the haproxy driver is NOT tested here (apt-get install haproxy; " \
         "deploy/packages/switchover.txt)"

TEST(HaproxyDriver, HoldsNewRequestsInItsRetriesAndMovesThemToTheTarget) {
  SKIP_WITHOUT_HAPROXY();
  Rig rig;
  ASSERT_TRUE(rig.haproxy->started()) << rig.haproxy->error();
  EXPECT_EQ(testing::fetch(rig.haproxy->front(), "GET", "/hello").backend, "A");

  rig.b.setListening(false);  // the target is not restored yet
  auto prepared = rig.driver->prepare(rig.plan());
  ASSERT_TRUE(prepared.ok()) << prepared.error().message();
  EXPECT_EQ(rig.haproxy->server("s1"), "drain " + rig.a.endpoint().str());
  // Parked: the target's slot takes requests but points where nothing listens.
  EXPECT_EQ(rig.haproxy->server("s2"), "ready " + rig.b.endpoint().host + ":1");
  EXPECT_EQ(prepared->in_flight_left, 0u);

  // A request now waits in HAProxy's connection retries against the target...
  const uint64_t retriesBefore = rig.haproxy->stat("wretr");
  auto held = testing::async([&] { return testing::fetch(rig.haproxy->front(), "GET", "/hello", "", 20s); });
  for (int i = 0; i < 1000 && rig.haproxy->stat("wretr") == retriesBefore; ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_GT(rig.haproxy->stat("wretr"), retriesBefore) << "the request was not retried";
  // ... even once the target listens (restored, not yet checked) ...
  rig.b.setListening(true);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(rig.b.requests("/hello"), 0) << "a request reached the target before the commit";
  // ... and gets there when the switch commits.
  auto committed = rig.driver->commit(rig.plan());
  ASSERT_TRUE(committed.ok()) << committed.error().message();
  testing::HttpResult r = held.get();
  EXPECT_EQ(r.status, 200) << r.error;
  EXPECT_EQ(r.backend, "B");
  EXPECT_EQ(rig.a.requests("/hello"), 1);
  EXPECT_EQ(rig.haproxy->server("s1"), "maint " + rig.a.endpoint().str());
  EXPECT_EQ(rig.haproxy->server("s2"), "ready " + rig.b.endpoint().str());
  EXPECT_GE(committed->retried, 1u);
  EXPECT_EQ(committed->failed, 0u);
  EXPECT_EQ(testing::fetch(rig.haproxy->front(), "GET", "/hello").backend, "B");
  // Idempotent.
  EXPECT_TRUE(rig.driver->commit(rig.plan()).ok());
  EXPECT_EQ(rig.haproxy->server("s1"), "maint " + rig.a.endpoint().str());

  auto rolled = rig.driver->rollback(rig.plan());
  ASSERT_TRUE(rolled.ok()) << rolled.error().message();
  EXPECT_EQ(rig.haproxy->server("s1"), "ready " + rig.a.endpoint().str());
  EXPECT_EQ(rig.haproxy->server("s2"), "maint " + rig.b.endpoint().str());
  EXPECT_EQ(testing::fetch(rig.haproxy->front(), "GET", "/hello").backend, "A");
}

TEST(HaproxyDriver, PrepareWaitsForTheSourceToDrain) {
  SKIP_WITHOUT_HAPROXY();
  Rig rig;
  ASSERT_TRUE(rig.haproxy->started()) << rig.haproxy->error();
  auto slow = testing::async([&] { return testing::fetch(rig.haproxy->front(), "GET", "/slow/400"); });
  for (int i = 0; i < 500 && rig.a.requests("/slow/400") == 0; ++i) std::this_thread::sleep_for(5ms);
  auto prepared = rig.driver->prepare(rig.plan());
  ASSERT_TRUE(prepared.ok()) << prepared.error().message();
  EXPECT_EQ(prepared->drained, 1u);
  EXPECT_EQ(prepared->in_flight_left, 0u);
  EXPECT_EQ(slow.get().backend, "A");
  ASSERT_TRUE(rig.driver->rollback(rig.plan()).ok());
}

TEST(HaproxyDriver, HealthChecksOfTheTargetArePausedWhileItIsNotRestored) {
  SKIP_WITHOUT_HAPROXY();
  Rig rig(" check inter 100ms fall 1 rise 1");
  ASSERT_TRUE(rig.haproxy->started()) << rig.haproxy->error();
  rig.b.setListening(false);
  ASSERT_TRUE(rig.driver->prepare(rig.plan()).ok());
  // With its checks running the refusing target would go DOWN (and requests would get 503).
  auto held = testing::async([&] { return testing::fetch(rig.haproxy->front(), "GET", "/hello", "", 20s); });
  std::this_thread::sleep_for(400ms);  // several check intervals: not an assertion on time
  rig.b.setListening(true);
  ASSERT_TRUE(rig.driver->commit(rig.plan()).ok());
  testing::HttpResult r = held.get();
  EXPECT_EQ(r.status, 200) << r.error << r.body;
  EXPECT_EQ(r.backend, "B");
}

struct HaproxyErrorCase {
  std::string name;
  std::string backend;
  bool wrongSource;
  std::string says;
};

class HaproxyErrors : public ::testing::TestWithParam<HaproxyErrorCase> {};

TEST_P(HaproxyErrors, SayWhatIsWrongWithTheSetup) {
  SKIP_WITHOUT_HAPROXY();
  Rig rig;
  ASSERT_TRUE(rig.haproxy->started()) << rig.haproxy->error();
  HaproxyConfig c;
  c.service = "ref";
  c.socket = rig.haproxy->socket();
  c.backend = GetParam().backend;
  auto d = makeHaproxyDriver(c);
  ASSERT_TRUE(d.ok());
  SwitchPlan p = rig.plan();
  if (GetParam().wrongSource) p.source = {"127.0.0.1", 9};
  auto r = (*d)->prepare(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find(GetParam().says), std::string::npos) << r.error().what;
  EXPECT_FALSE(r.error().hint.empty());
}

INSTANTIATE_TEST_SUITE_P(
    HaproxyDriver, HaproxyErrors,
    ::testing::Values(HaproxyErrorCase{"UnknownBackend", "nope", false, "show servers state nope"},
                      HaproxyErrorCase{"SourceNotInTheBackend", "be", true,
                                       "no server of backend 'be' has the source address"}),
    [](const ::testing::TestParamInfo<HaproxyErrorCase>& p) { return p.param.name; });

TEST(HaproxyDriver, ADeadStatsSocketIsAClearError) {
  HaproxyConfig c;
  c.service = "ref";
  c.socket = "/nonexistent/admin.sock";
  c.backend = "be";
  auto d = makeHaproxyDriver(c);
  ASSERT_TRUE(d.ok());
  SwitchPlan p;
  p.migration_id = "m1";
  p.service = "ref";
  p.source = {"127.0.0.1", 80};
  p.target = {"127.0.0.1", 81};
  auto r = (*d)->prepare(p);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("cannot connect to the stats socket /nonexistent/admin.sock"),
            std::string::npos)
      << r.error().what;
  EXPECT_NE(r.error().hint.find("level admin"), std::string::npos);
}

}  // namespace
}  // namespace ferry::switchover
