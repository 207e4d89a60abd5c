#include "ferry/node/config.h"

#include <gtest/gtest.h>

namespace ferry::node {
namespace {

using namespace std::chrono_literals;

TEST(Config, EmptyGivesDefaults) {
  auto c = parseConfig("");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->listen, "tcp://0.0.0.0:7700");
  EXPECT_EQ(c->role, "standby");
  EXPECT_EQ(c->heartbeat, 1000ms);
  EXPECT_EQ(c->podman_api, "auto");
  EXPECT_FALSE(c->name.empty());
}

TEST(Config, ParsesEveryKey) {
  auto c = parseConfig(R"(# a comment
name = a
listen = tcp://10.231.0.11:7700
peer = tcp://b:7700   # trailing comment
key_dir = /etc/ferry
data_dir = /srv/ferry/ref
state_dir = /var/lib/ferry
control_socket = /run/ferry/node.sock
role = active
heartbeat = 500ms
peer_timeout = 3s
scan_interval = 1m
log_level = debug
shared_storage = on
podman_api = /run/podman/podman.sock
)");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->name, "a");
  EXPECT_EQ(c->peer, "tcp://b:7700");
  EXPECT_EQ(c->role, "active");
  EXPECT_EQ(c->heartbeat, 500ms);
  EXPECT_EQ(c->peer_timeout, 3000ms);
  EXPECT_EQ(c->scan_interval, 60000ms);
  EXPECT_TRUE(c->shared_storage);
  EXPECT_EQ(c->podman_api, "/run/podman/podman.sock");
}

TEST(Config, ParsesTheSwitchOverSettings) {
  auto c = parseConfig(R"(switch = proxy
switch_agent = tcp://lb:7401
switch_key_dir = /etc/ferry/lb-keys
switch_agent_name = front
switch_service = shop
switch_port = 8080
switch_drain_timeout = 500ms
switch_hold_timeout = 20s
switch_exec = /usr/local/bin/switch-dns --zone example
switch_exec_timeout = 5s
)");
  ASSERT_TRUE(c.ok()) << c.error().message();
  EXPECT_EQ(c->switch_driver, "proxy");
  EXPECT_EQ(c->switch_agent, "tcp://lb:7401");
  EXPECT_EQ(c->switch_key_dir, "/etc/ferry/lb-keys");
  EXPECT_EQ(c->switch_agent_name, "front");
  EXPECT_EQ(c->switch_service, "shop");
  EXPECT_EQ(c->switch_port, 8080);
  EXPECT_EQ(c->switch_drain_timeout, 500ms);
  EXPECT_EQ(c->switch_hold_timeout, 20000ms);
  EXPECT_EQ(c->switch_exec, "/usr/local/bin/switch-dns --zone example");
  EXPECT_EQ(c->switch_exec_timeout, 5000ms);
}

struct BadCase {
  std::string text;
  std::string expected;  // a fragment of the error
};

class ConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConfigBadTest, NamesTheLineAndTheProblem) {
  auto c = parseConfig(GetParam().text, "node.conf");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().what.find(GetParam().expected), std::string::npos) << c.error().what;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigBadTest,
    ::testing::Values(
        BadCase{"colour = blue", "node.conf:1: unknown setting 'colour'"},
        BadCase{"\nrole = leader", "node.conf:2: bad value 'leader' for 'role'"},
        BadCase{"listen = 0.0.0.0:7700", "bad value"}, BadCase{"data_dir = relative/path", "bad value"},
        BadCase{"heartbeat = fast", "bad value 'fast'"}, BadCase{"heartbeat = -5ms", "bad value"},
        BadCase{"just words", "expected 'key = value'"},
        BadCase{"switch = dns", "bad value 'dns' for 'switch'"}, BadCase{"switch_port = 70000", "bad value"},
        BadCase{"switch_port = 80x", "bad value"}, BadCase{"shared_storage = yes", "bad value 'yes'"},
        BadCase{"switch_agent = lb:7400", "bad value"}, BadCase{"podman_api = yes", "bad value 'yes'"},
        BadCase{"heartbeat = 5s\npeer_timeout = 1s", "peer_timeout must be longer"}));

TEST(Config, MissingFile) {
  EXPECT_FALSE(loadConfig("/nonexistent/ferry.conf").ok());
  EXPECT_TRUE(loadConfig("/nonexistent/ferry.conf", /*missing_ok=*/true).ok());
}

}  // namespace
}  // namespace ferry::node
