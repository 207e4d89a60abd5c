// The nginx driver against the real nginx from Debian on 127.0.0.1 (its own
// configuration, pid file and logs in a temporary directory). Skipped, saying so,
// where nginx is not installed.
#include <signal.h>
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

#define SKIP_WITHOUT_NGINX()                                                                             \
  if (findInPath("nginx").empty())                                                                       \
  GTEST_SKIP() << "nginx is not installed: the nginx driver is NOT tested here (apt-get install nginx; " \
                  "deploy/packages/switchover.txt)"

class Nginx {
 public:
  explicit Nginx(const Endpoint& source) {
    static int n = 0;
    dir_ = fs::temp_directory_path() /
           ("ferry-nginx-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir_);
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    port_ = testing::freePort();
    const std::string d = dir_.string();
    std::ofstream(dir_ / "upstream.conf") << "upstream ferry_test {\n    server " << source.str() << ";\n}\n";
    std::ofstream(dir_ / "nginx.conf")
        << "pid " << d << "/nginx.pid;\n"
        << "error_log " << d << "/error.log warn;\n"
        << "worker_processes 1;\n"
        << "events { worker_connections 64; }\n"
        << "http {\n"
        << "  access_log off;\n"
        << "  client_body_temp_path " << d << "/body;\n  proxy_temp_path " << d << "/proxy;\n"
        << "  fastcgi_temp_path " << d << "/fastcgi;\n  uwsgi_temp_path " << d << "/uwsgi;\n"
        << "  scgi_temp_path " << d << "/scgi;\n"
        << "  include " << d << "/upstream.conf;\n"
        << "  server {\n    listen 127.0.0.1:" << port_ << ";\n"
        << "    location / { proxy_pass http://ferry_test; }\n  }\n}\n";
    auto r = runProcess({"nginx", "-c", conf()});
    started_ = r.ok() && r->success();
    if (!started_) error_ = r.ok() ? r->err : r.error().what;
    for (int i = 0; i < 500 && started_ && !fs::exists(pidFile()); ++i) std::this_thread::sleep_for(10ms);
  }
  ~Nginx() {
    auto pid = readFile(pidFile());
    if (pid.ok() && std::stoi(*pid) > 1) {
      const int p = std::stoi(*pid);  // our own master, from our own pid file
      ::kill(p, SIGTERM);
      for (int i = 0; i < 200 && testing::running(p); ++i) std::this_thread::sleep_for(10ms);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  [[nodiscard]] bool started() const { return started_; }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string conf() const { return (dir_ / "nginx.conf").string(); }
  [[nodiscard]] std::string pidFile() const { return (dir_ / "nginx.pid").string(); }
  [[nodiscard]] std::string upstreamFile() const { return (dir_ / "upstream.conf").string(); }
  [[nodiscard]] Endpoint front() const { return {"127.0.0.1", port_}; }

 private:
  fs::path dir_;
  uint16_t port_ = 0;
  bool started_ = false;
  std::string error_;
};

struct Rig {
  FakeBackend a{"A"};
  FakeBackend b{"B"};
  std::unique_ptr<Nginx> nginx;
  NginxConfig config;

  Rig() {
    nginx = std::make_unique<Nginx>(a.endpoint());
    config.service = "ref";
    config.conf = nginx->conf();
    config.pid_file = nginx->pidFile();
    config.upstream_file = nginx->upstreamFile();
    config.upstream_name = "ferry_test";
    config.health_path = "/health";
  }

  std::unique_ptr<Driver> driver() const {
    auto d = makeNginxDriver(config);
    EXPECT_TRUE(d.ok());
    return d.ok() ? std::move(d.value()) : nullptr;
  }

  SwitchPlan plan() const {
    SwitchPlan p;
    p.migration_id = "m1";
    p.service = "ref";
    p.source = a.endpoint();
    p.target = b.endpoint();
    p.drain_timeout = 1s;
    p.hold_timeout = 5s;
    return p;
  }

  std::string upstream() const {
    auto t = readFile(nginx->upstreamFile());
    return t.ok() ? *t : "";
  }
};

TEST(NginxDriver, RewritesTheUpstreamAndReloadsForEachStep) {
  SKIP_WITHOUT_NGINX();
  Rig rig;
  ASSERT_TRUE(rig.nginx->started()) << rig.nginx->error();
  auto d = rig.driver();
  ASSERT_TRUE(d);
  EXPECT_EQ(testing::fetch(rig.nginx->front(), "GET", "/hello").backend, "A");

  auto prepared = d->prepare(rig.plan());
  ASSERT_TRUE(prepared.ok()) << prepared.error().message();
  EXPECT_NE(rig.upstream().find("server " + rig.a.endpoint().str() + " max_fails=0;"), std::string::npos)
      << rig.upstream();
  EXPECT_NE(rig.upstream().find("server " + rig.b.endpoint().str() + " max_fails=0 backup;"),
            std::string::npos)
      << rig.upstream();
  EXPECT_EQ(testing::fetch(rig.nginx->front(), "GET", "/hello").backend, "A");

  auto committed = d->commit(rig.plan());
  ASSERT_TRUE(committed.ok()) << committed.error().message();
  EXPECT_EQ(rig.upstream().find(rig.a.endpoint().str()), std::string::npos) << rig.upstream();
  EXPECT_EQ(testing::fetch(rig.nginx->front(), "GET", "/hello").backend, "B");
  // Idempotent: the same upstream is not reloaded again.
  auto again = d->commit(rig.plan());
  ASSERT_TRUE(again.ok());
  ASSERT_FALSE(again->steps.empty());
  EXPECT_EQ(again->steps.back().name, "reload");
  EXPECT_EQ(again->steps.back().took.count(), 0);

  auto rolled = d->rollback(rig.plan());
  ASSERT_TRUE(rolled.ok()) << rolled.error().message();
  EXPECT_EQ(testing::fetch(rig.nginx->front(), "GET", "/hello").backend, "A");
}

TEST(NginxDriver, AConfigurationNginxRejectsIsPutBack) {
  SKIP_WITHOUT_NGINX();
  Rig rig;
  ASSERT_TRUE(rig.nginx->started()) << rig.nginx->error();
  rig.config.upstream_name = "not_the_one_proxy_pass_names";
  const std::string before = rig.upstream();
  auto d = rig.driver();
  ASSERT_TRUE(d);
  auto r = d->prepare(rig.plan());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("does not pass `nginx -t`"), std::string::npos) << r.error().what;
  EXPECT_NE(r.error().hint.find("was put back"), std::string::npos);
  EXPECT_EQ(rig.upstream(), before);
  EXPECT_EQ(testing::fetch(rig.nginx->front(), "GET", "/hello").backend, "A");
}

TEST(NginxDriver, ANginxThatDoesNotRunIsAClearError) {
  SKIP_WITHOUT_NGINX();
  Rig rig;
  rig.config.pid_file = "/nonexistent/nginx.pid";
  auto d = rig.driver();
  ASSERT_TRUE(d);
  auto r = d->prepare(rig.plan());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("cannot read its pid file /nonexistent/nginx.pid"), std::string::npos)
      << r.error().what;
}

}  // namespace
}  // namespace ferry::switchover
