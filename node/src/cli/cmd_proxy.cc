// `ferry proxy run`: the switch agent on the load-balancer host (and ferry's hand-off
// proxy); `ferry proxy switch STEP`: one switch-over step by hand, as `ferry migrate`
// runs it (library: switchover/).
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ferry/base/log.h"
#include "ferry/bench/http.h"
#include "ferry/protocol/keys.h"
#include "ferry/switchover/agent.h"
#include "ferry/switchover/driver.h"

namespace ferry::cli {
namespace {

namespace sw = ferry::switchover;
namespace proto = ferry::protocol;

struct RunFlags {
  std::string config = "/etc/ferry/lb.conf";
};

struct SwitchFlags {
  std::string step;
  std::string driver;
  std::string service;
  std::string from;
  std::string to;
  std::string migration_id;
  std::string drain_timeout = "2s";
  std::string hold_timeout = "10s";
  std::string agent = "tcp://lb:7400";
  std::string agent_key_dir = "/etc/ferry/switch";
  std::string agent_name = "lb";
  std::string key_dir = proto::kDefaultKeyDir;
  std::string node_name;
  std::string exec;
  std::string exec_timeout = "30s";
  std::string output = "text";
};

int runAgent(const RunFlags& f) {
  auto config = sw::loadAgentConfig(f.config);
  if (!config.ok()) return fail(config.error().message(), kExitUsage);
  log::setLevel(config->log_level);
  auto keys = proto::loadKeyPair(config->key_dir);
  if (!keys.ok()) return fail(keys.error().message());
  auto peers = proto::loadPeerKeys(config->key_dir);
  if (!peers.ok()) return fail(peers.error().message());
  // Block the stop signals before any thread starts, so only sigwait() sees them.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  auto agent = sw::Agent::start(*config, *keys, *peers);
  if (!agent.ok()) return fail(agent.error().message());
  log::get("switch")->info("agent: ready on {} (SIGTERM or SIGINT stops it)", (*agent)->endpoint());
  int sig = 0;
  sigwait(&stopSignals, &sig);
  log::get("switch")->info("agent: stopping ({})", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*agent)->stop();
  return kExitOk;
}

Result<sw::Millis> duration(const std::string& flag, const std::string& text) {
  auto d = bench::parseDuration(text);
  if (!d.ok()) return makeError(flag + ": " + d.error().what, "e.g. 2s or 500ms");
  return std::chrono::duration_cast<sw::Millis>(*d);
}

int runSwitch(const SwitchFlags& f) {
  sw::SwitchPlan plan;
  plan.migration_id = f.migration_id;
  plan.service = f.service;
  auto from = sw::parseEndpoint(f.from);
  if (!from.ok()) return fail("--from: " + from.error().message(), kExitUsage);
  auto to = sw::parseEndpoint(f.to);
  if (!to.ok()) return fail("--to: " + to.error().message(), kExitUsage);
  plan.source = *from;
  plan.target = *to;
  auto drain = duration("--drain-timeout", f.drain_timeout);
  if (!drain.ok()) return fail(drain.error().message(), kExitUsage);
  auto hold = duration("--hold-timeout", f.hold_timeout);
  if (!hold.ok()) return fail(hold.error().message(), kExitUsage);
  plan.drain_timeout = *drain;
  plan.hold_timeout = *hold;
  Status valid = sw::validatePlan(plan);
  if (!valid.ok()) return fail(valid.error().message(), kExitUsage);

  sw::DriverConfig dc;
  dc.kind = f.driver;
  if (f.driver == "exec") {
    if (f.exec.empty()) return fail("--driver exec needs --exec 'COMMAND [ARGS]'", kExitUsage);
    std::istringstream words(f.exec);
    for (std::string w; words >> w;) dc.command.push_back(w);
    auto t = duration("--exec-timeout", f.exec_timeout);
    if (!t.ok()) return fail(t.error().message(), kExitUsage);
    dc.exec_timeout = *t;
  } else {
    auto keys = proto::loadKeyPair(f.key_dir);
    if (!keys.ok()) return fail(keys.error().message());
    auto agentKey = sw::loadAgentKey(f.agent_key_dir, f.agent_name);
    if (!agentKey.ok()) return fail(agentKey.error().message());
    dc.agent_endpoint = f.agent;
    dc.agent_public_key = *agentKey;
    dc.node_public_key = keys->publicKey;
    dc.node_secret_key = keys->secretKey;
    dc.node_name = f.node_name;
  }
  auto driver = sw::makeDriver(dc);
  if (!driver.ok()) return fail(driver.error().message(), kExitUsage);
  Result<sw::SwitchReport> report = makeError("unknown step");
  if (f.step == "prepare") {
    report = (*driver)->prepare(plan);
  } else if (f.step == "commit") {
    report = (*driver)->commit(plan);
  } else {
    report = (*driver)->rollback(plan);
  }
  if (!report.ok()) return fail(report.error().message());
  if (f.output == "json") {
    std::cout << report->toJson().dump(2) << "\n";
  } else {
    std::cout << report->summary() << "\n";
  }
  return kExitOk;
}

}  // namespace

void addProxyCommands(CLI::App& app, Cli& cli) {
  auto* proxy = app.add_subcommand(
      "proxy",
      "the switch agent on the load balancer (ferry's hand-off proxy, HAProxy, nginx) and its client");
  proxy->require_subcommand(1);

  auto rf = std::make_shared<RunFlags>();
  auto* run = proxy->add_subcommand(
      "run",
      "run the switch agent: serve `proxy` services and switch them (and HAProxy/nginx ones) for the nodes");
  run->add_option("--config", rf->config, "the agent's config (see deploy/switchover/agent.conf)")
      ->capture_default_str();
  run->callback([&cli, rf] { cli.action = [rf] { return runAgent(*rf); }; });

  auto sf = std::make_shared<SwitchFlags>();
  auto* sw = proxy->add_subcommand("switch", "run one switch-over step by hand, as `ferry migrate` does");
  sw->add_option("step", sf->step, "prepare, commit or rollback")
      ->required()
      ->check(CLI::IsMember({"prepare", "commit", "rollback"}));
  sw->add_option("--driver", sf->driver, "proxy, haproxy, nginx or exec")
      ->required()
      ->check(CLI::IsMember({"proxy", "haproxy", "nginx", "exec"}));
  sw->add_option("--service", sf->service, "the service's name in the agent's config")->required();
  sw->add_option("--from", sf->from, "the source as the load balancer reaches it, e.g. a:80")->required();
  sw->add_option("--to", sf->to, "the target as the load balancer reaches it, e.g. b:80")->required();
  sw->add_option("--migration-id", sf->migration_id, "the migration this step belongs to")->required();
  sw->add_option("--drain-timeout", sf->drain_timeout, "prepare: in-flight requests may finish this long")
      ->capture_default_str();
  sw->add_option("--hold-timeout", sf->hold_timeout, "held requests wait at most this long")
      ->capture_default_str();
  sw->add_option("--agent", sf->agent, "the switch agent's endpoint")->capture_default_str();
  sw->add_option("--agent-key-dir", sf->agent_key_dir,
                 "where the agent's public key is paired (peers/NAME.pub)")
      ->capture_default_str();
  sw->add_option("--agent-name", sf->agent_name, "the agent's paired name")->capture_default_str();
  sw->add_option("--key-dir", sf->key_dir, "this node's key pair")->capture_default_str();
  sw->add_option("--node-name", sf->node_name, "this node's name, for the agent's log");
  sw->add_option("--exec", sf->exec, "exec: the command (step, source and target are appended)");
  sw->add_option("--exec-timeout", sf->exec_timeout, "exec: the command's deadline")->capture_default_str();
  sw->add_option("--output", sf->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  sw->callback([&cli, sf] { cli.action = [sf] { return runSwitch(*sf); }; });
}

}  // namespace ferry::cli
