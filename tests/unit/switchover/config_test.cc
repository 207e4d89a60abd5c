// The switch agent's config file and the plan checks: what is accepted, and what each
// mistake is told.
#include <gtest/gtest.h>

#include "ferry/switchover/agent.h"

namespace ferry::switchover {
namespace {

using namespace std::chrono_literals;

TEST(AgentConfig, AFullFileParses) {
  const std::string text = R"(# the lab's agent
listen = tcp://0.0.0.0:7400
key_dir = /etc/ferry
state_dir = /var/lib/ferry/switch
hold_lease = 90s

[service ref]
driver = proxy
front = 0.0.0.0:80
backend = a:80          # where traffic goes at start
mode = http
health_path = /health.php
max_held = 500
connect_timeout = 500ms

[service ref-ha]
driver = haproxy
stats_socket = /run/haproxy/admin.sock
haproxy_backend = ferry_ref
servers = s1 s2
health_path = none

[service ref-nginx]
driver = nginx
nginx_conf = /etc/ferry/lb/nginx.conf
pid_file = /run/ferry-lb/nginx.pid
upstream_file = /etc/ferry/lb/upstream.conf
upstream_name = ferry_service
)";
  auto c = parseAgentConfig(text, "agent.conf");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->listen, "tcp://0.0.0.0:7400");
  EXPECT_EQ(c->hold_lease, 90s);
  ASSERT_EQ(c->services.size(), 3u);
  const auto& p = c->services[0];
  EXPECT_EQ(p.name, "ref");
  EXPECT_EQ(p.driver, "proxy");
  EXPECT_EQ(p.proxy.name, "ref");
  EXPECT_EQ(p.proxy.backend, (Endpoint{"a", 80}));
  EXPECT_EQ(p.proxy.front, (Endpoint{"0.0.0.0", 80}));
  EXPECT_EQ(p.proxy.max_held, 500u);
  EXPECT_EQ(p.proxy.connect_timeout, 500ms);
  EXPECT_EQ(p.health_path, "/health.php");
  const auto& h = c->services[1];
  EXPECT_EQ(h.haproxy.service, "ref-ha");
  EXPECT_EQ(h.haproxy.backend, "ferry_ref");
  EXPECT_EQ(h.haproxy.servers, (std::vector<std::string>{"s1", "s2"}));
  EXPECT_EQ(h.haproxy.health_path, "");
  EXPECT_EQ(c->services[2].nginx.upstream_name, "ferry_service");
}

struct BadConfig {
  std::string name;
  std::string text;
  std::string says;
};

class AgentConfigErrors : public ::testing::TestWithParam<BadConfig> {};

TEST_P(AgentConfigErrors, NameTheLineAndTheProblem) {
  auto c = parseAgentConfig(GetParam().text, "agent.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().what.find(GetParam().says), std::string::npos) << c.error().what;
}

INSTANTIATE_TEST_SUITE_P(
    AgentConfig, AgentConfigErrors,
    ::testing::Values(
        BadConfig{"NoService", "listen = tcp://0.0.0.0:7400\n", "no [service NAME] section"},
        BadConfig{"UnknownKey", "lisen = tcp://x:1\n", "agent.conf:1: unknown setting 'lisen'"},
        BadConfig{"NotTcp", "listen = ipc:///tmp/x\n[service a]\ndriver=proxy\nbackend=a:80\n",
                  "agent.conf:1: bad value"},
        BadConfig{"NoDriver", "[service a]\nbackend = a:80\n", "has no `driver`"},
        BadConfig{"UnknownDriver", "[service a]\ndriver = f5\n", "agent.conf:2: bad value 'f5'"},
        BadConfig{"ProxyWithoutBackend", "[service a]\ndriver = proxy\n", "needs `backend = HOST:PORT`"},
        BadConfig{"KeyOfAnotherDriver", "[service a]\ndriver = proxy\nbackend = a:80\nstats_socket = /x\n",
                  "'stats_socket' is a setting of the haproxy driver"},
        BadConfig{"BackendWithoutPort", "[service a]\ndriver = proxy\nbackend = a\n",
                  "agent.conf:3: bad value 'a'"},
        BadConfig{"Twice", "[service a]\ndriver=proxy\nbackend=a:80\n[service a]\n", "configured twice"},
        BadConfig{"BadName", "[service a/b]\n", "service name 'a/b' is not valid"},
        BadConfig{"BadSection", "[proxy]\n", "expected '[service NAME]'"},
        BadConfig{"ZeroDuration", "[service a]\ndriver=proxy\nbackend=a:80\nconnect_timeout = 0\n",
                  "bad value '0'"},
        BadConfig{"HaproxyWithoutSocket", "[service a]\ndriver = haproxy\nhaproxy_backend = be\n",
                  "needs `stats_socket` and `haproxy_backend`"},
        BadConfig{"NginxIncomplete", "[service a]\ndriver = nginx\nnginx_conf = /x\n", "needs `nginx_conf`"}),
    [](const ::testing::TestParamInfo<BadConfig>& p) { return p.param.name; });

struct EndpointCase {
  std::string text;
  bool ok;
  std::string host;
  uint16_t port;
};

class Endpoints : public ::testing::TestWithParam<EndpointCase> {};

TEST_P(Endpoints, Parse) {
  auto e = parseEndpoint(GetParam().text);
  ASSERT_EQ(e.ok(), GetParam().ok) << GetParam().text;
  if (!e.ok()) return;
  EXPECT_EQ(e->host, GetParam().host);
  EXPECT_EQ(e->port, GetParam().port);
  EXPECT_EQ(parseEndpoint(e->str())->host, e->host);
}

INSTANTIATE_TEST_SUITE_P(
    Switch, Endpoints,
    ::testing::Values(EndpointCase{"a:80", true, "a", 80},
                      EndpointCase{"10.231.0.11:8080", true, "10.231.0.11", 8080},
                      EndpointCase{"[fd00::1]:443", true, "fd00::1", 443}, EndpointCase{"a", false, "", 0},
                      EndpointCase{"a:http", false, "", 0}, EndpointCase{"a:70000", false, "", 0},
                      EndpointCase{"fd00::1:80", false, "", 0}, EndpointCase{"a b:80", false, "", 0},
                      EndpointCase{":80", false, "", 0}));

struct PlanCase {
  std::string name;
  std::function<void(SwitchPlan&)> mutate;
  std::string says;  // empty: valid
};

class Plans : public ::testing::TestWithParam<PlanCase> {};

TEST_P(Plans, AreCheckedBeforeAnythingMoves) {
  SwitchPlan p;
  p.migration_id = "m1";
  p.service = "ref";
  p.source = {"a", 80};
  p.target = {"b", 80};
  GetParam().mutate(p);
  Status s = validatePlan(p);
  if (GetParam().says.empty()) {
    EXPECT_TRUE(s.ok()) << s.error().what;
  } else {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.error().what.find(GetParam().says), std::string::npos) << s.error().what;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Switch, Plans,
    ::testing::Values(PlanCase{"Valid", [](SwitchPlan&) {}, ""},
                      PlanCase{"NoId", [](SwitchPlan& p) { p.migration_id.clear(); }, "migration id"},
                      PlanCase{"BadService", [](SwitchPlan& p) { p.service = "a b"; }, "service name"},
                      PlanCase{"SameEnds", [](SwitchPlan& p) { p.target = p.source; }, "both a:80"},
                      PlanCase{"NoPort", [](SwitchPlan& p) { p.target.port = 0; }, "target 'b:0'"},
                      PlanCase{"NoDrain", [](SwitchPlan& p) { p.drain_timeout = 0ms; }, "drain_timeout"},
                      PlanCase{"HourLongHold", [](SwitchPlan& p) { p.hold_timeout = std::chrono::hours(1); },
                               "hold_timeout"}),
    [](const ::testing::TestParamInfo<PlanCase>& p) { return p.param.name; });

}  // namespace
}  // namespace ferry::switchover
