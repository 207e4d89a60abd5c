// ferry node run | status | sync --flush | verify
#include <malloc.h>

#include <chrono>
#include <csignal>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ferry/base/log.h"
#include "ferry/node/config.h"
#include "ferry/node/control.h"
#include "ferry/node/node.h"

namespace ferry::cli {
namespace {

constexpr const char* kDefaultConfig = "/etc/ferry/node.conf";

struct NodeFlags {
  std::string config = kDefaultConfig;
  std::string socket;  // empty: from the config (or its default)
  std::string output = "text";
  bool flush = false;
  bool pause = false;
  bool resume = false;
  int timeout_s = 60;
  int passes = 3;
  std::string wait;  // status --wait: a replica state to wait for
};

std::filesystem::path controlSocket(const NodeFlags& f) {
  if (!f.socket.empty()) return f.socket;
  auto c = node::loadConfig(f.config, /*missing_ok=*/true);
  return c ? c->control_socket : node::NodeConfig{}.control_socket;
}

Result<nlohmann::json> ask(const NodeFlags& f, nlohmann::json request) {
  request["timeout_ms"] = f.timeout_s * 1000;
  auto reply = node::controlRequest(controlSocket(f), request, std::chrono::seconds(f.timeout_s + 5));
  if (!reply) return reply.error();
  if (!reply->value("ok", false))
    return makeError("the node says: " + reply->value("error", std::string("(no reason)")));
  return reply;
}

// The daemon's buffers of a megabyte or more (ZeroMQ frames, block bundles, archive
// chunks) come and go at link speed. glibc's defaults give each back to the kernel (an
// mmap per buffer from 128 KiB up, and the heap's top trimmed once 128 KiB are free), so
// every page of the next one is a fresh page fault: about 20 µs each on a VM
// (docs/BENCHMARKS.md, "the standby's page faults"). Keep up to 64 MiB for reuse.
void keepLargeBuffers() {
  constexpr int kMiB = 1 << 20;
  mallopt(M_MMAP_THRESHOLD, 32 * kMiB);
  mallopt(M_TRIM_THRESHOLD, 64 * kMiB);
  mallopt(M_TOP_PAD, 16 * kMiB);
}

int runNode(const NodeFlags& f) {
  auto config = node::loadConfig(f.config, /*missing_ok=*/false);
  if (!config) return fail(config.error().message(), kExitUsage);
  keepLargeBuffers();
  log::setLevel(config->log_level);
  // Block the stop signals before any thread starts so that only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  auto n = node::Node::start(*config);
  if (!n) return fail(n.error().message());
  int sig = 0;
  sigwait(&signals, &sig);
  log::get("node")->info("signal {}: stopping", sig);
  n->reset();
  return kExitOk;
}

// The replica's state as this node sees it, with the link's: "in-sync" only counts while
// the peer is connected (the view of a standby that went away is stale). Shared storage
// has no replica to wait for: it is always in sync.
bool replicaIs(const nlohmann::json& s, const std::string& state) {
  const auto peer = s.value("peer", nlohmann::json::object()).value("state", std::string());
  const auto replica = s.value("replica", nlohmann::json::object()).value("state", std::string());
  if (state == "in-sync" && replica == "shared") return true;
  return replica == state && (state != "in-sync" || peer == "connected");
}

// status --wait: asks every 20 ms from this one process (a script that starts `ferry
// status` in a loop pays a process start per question and sees the change late).
Result<nlohmann::json> waitForState(const NodeFlags& f) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::seconds(f.timeout_s);
  const auto socket = controlSocket(f);
  std::string last = "no answer yet";
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto per_ask = std::clamp(left, std::chrono::milliseconds(100), std::chrono::milliseconds(5000));
    auto s = node::controlRequest(socket, {{"cmd", "status"}, {"timeout_ms", per_ask.count()}}, per_ask);
    if (!s) {
      last = s.error().message();
    } else if (!s->value("ok", false)) {
      last = "the node says: " + s->value("error", std::string("(no reason)"));
    } else {
      if (replicaIs(*s, f.wait)) return s;
      last = "replica " + s->value("replica", nlohmann::json::object()).value("state", std::string("?")) +
             ", peer " + s->value("peer", nlohmann::json::object()).value("state", std::string("?"));
    }
    if (Clock::now() >= deadline)
      return makeError(
          "the replica did not become " + f.wait + " within " + std::to_string(f.timeout_s) +
              " s (last: " + last + ")",
          "see 'ferry status' on both nodes and their logs; a larger --timeout for a big first copy");
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int printStatus(const NodeFlags& f) {
  auto s = f.wait.empty() ? ask(f, {{"cmd", "status"}}) : waitForState(f);
  if (!s) return fail(s.error().message());
  if (f.output == "json") {
    std::cout << s->dump(2) << "\n";
    return kExitOk;
  }
  const auto& peer = (*s)["peer"];
  const auto& replica = (*s)["replica"];
  std::cout << "node      " << s->value("node", "") << " (" << s->value("role", "") << ")\n"
            << "data      " << s->value("data_dir", "") << "\n"
            << "peer      " << peer.value("name", "?") << " " << peer.value("state", "?") << " via "
            << peer.value("endpoint", "") << "\n";
  if (replica.value("state", "") == "shared") {
    std::cout << "replica   none: the data directory is shared storage (shared_storage = on)\n";
  } else {
    std::cout << "replica   " << replica.value("state", "?") << ", lag "
              << replica.value("replica_lag_bytes", 0) << " bytes / " << replica.value("replica_lag_ms", 0)
              << " ms\n"
              << "rate      " << s->value("throughput_bytes_per_s", 0) / 1000 << " kB/s\n";
  }
  auto err = s->value("last_error", std::string());
  if (!err.empty()) std::cout << "last error " << err << "\n";
  return kExitOk;
}

int flushSync(const NodeFlags& f) {
  if (!f.flush && !f.pause && !f.resume)
    return fail("say what to do: ferry sync --flush | --pause | --resume", kExitUsage);
  if (f.pause || f.resume) {
    auto p = ask(f, {{"cmd", f.pause ? "pause" : "resume"}});
    if (!p) return fail(p.error().message());
    if (!f.flush) {
      std::cout << (f.pause ? "mirroring paused: changes wait for the next 'ferry sync --flush' or --resume\n"
                            : "mirroring resumed\n");
      return kExitOk;
    }
  }
  auto r = ask(f, {{"cmd", "flush"}});
  if (!r) return fail(r.error().message());
  if (f.output == "json") {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << "standby has everything up to batch " << r->value("flushed_seq", 0) << " ("
              << r->value("ms", 0) << " ms)\n";
  }
  return kExitOk;
}

int verify(const NodeFlags& f) {
  auto r = ask(f, {{"cmd", "verify"}, {"passes", f.passes}});
  if (!r) return fail(r.error().message());
  bool identical = r->value("identical", false);
  if (f.output == "json") {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << (identical ? "identical" : "DIFFERENT") << ": " << r->value("entries", 0)
              << " entries compared in " << r->value("passes", 1) << " pass(es)\n";
    for (const auto& d : (*r)["differences"]) {
      std::cout << "  " << d.value("path", "") << ": " << d.value("what", "") << " " << d.value("detail", "")
                << "\n";
    }
    for (const auto& p : r->value("settled", nlohmann::json::array()))
      std::cout << "  changed during the comparison, then matched: " << p.get<std::string>() << "\n";
  }
  return identical ? kExitOk : kExitFailure;
}

}  // namespace

void addNodeCommands(CLI::App& app, Cli& cli) {
  auto flags = std::make_shared<NodeFlags>();
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("--config", flags->config, "node configuration file")->capture_default_str();
    sub->add_option("--socket", flags->socket, "control socket (default: from the configuration)");
  };

  auto* node_cmd = app.add_subcommand("node", "the node daemon");
  node_cmd->require_subcommand(1);
  auto* run = node_cmd->add_subcommand("run", "run the node daemon in the foreground (systemd runs this)");
  run->add_option("--config", flags->config, "node configuration file")->capture_default_str();
  run->callback([&cli, flags] { cli.action = [flags] { return runNode(*flags); }; });

  auto* status = app.add_subcommand("status", "role, peer link and replica state of this node");
  add_common(status);
  status->add_option("--output", flags->output, "text or json")->check(CLI::IsMember({"text", "json"}));
  status
      ->add_option("--wait", flags->wait,
                   "wait until the replica is in this state (in-sync also needs the peer connected), then "
                   "print the status; exit 1 after --timeout")
      ->check(CLI::IsMember({"initial-sync", "mirroring", "in-sync"}));
  status->add_option("--timeout", flags->timeout_s, "seconds --wait waits")->capture_default_str();
  status->callback([&cli, flags] { cli.action = [flags] { return printStatus(*flags); }; });

  auto* sync_cmd = app.add_subcommand("sync", "control mirroring");
  add_common(sync_cmd);
  auto* flush_flag =
      sync_cmd->add_flag("--flush", flags->flush, "wait until the standby has everything written so far");
  auto* pause_flag = sync_cmd->add_flag("--pause", flags->pause,
                                        "stop the continuous rounds (a --flush still ships everything); for "
                                        "maintenance and benchmarks");
  auto* resume_flag = sync_cmd->add_flag("--resume", flags->resume, "continue the rounds after --pause");
  pause_flag->excludes(resume_flag);
  (void)flush_flag;
  sync_cmd->add_option("--timeout", flags->timeout_s, "seconds to wait")->capture_default_str();
  sync_cmd->add_option("--output", flags->output, "text or json")->check(CLI::IsMember({"text", "json"}));
  sync_cmd->callback([&cli, flags] { cli.action = [flags] { return flushSync(*flags); }; });

  auto* verify_cmd =
      app.add_subcommand("verify", "compare the data directory on both nodes by content and metadata");
  add_common(verify_cmd);
  verify_cmd->add_option("--timeout", flags->timeout_s, "seconds to wait")->capture_default_str();
  verify_cmd
      ->add_option("--passes", flags->passes,
                   "compare up to this many times, flushing before each retry, so a file written during "
                   "the comparison is not reported as a difference (1: report the first comparison)")
      ->check(CLI::Range(1, 10))
      ->capture_default_str();
  verify_cmd->add_option("--output", flags->output, "text or json")->check(CLI::IsMember({"text", "json"}));
  verify_cmd->callback([&cli, flags] { cli.action = [flags] { return verify(*flags); }; });
}

}  // namespace ferry::cli
