// What the lab integration tests share: running commands (on this machine and inside
// a lab host) with deadlines, `ferry ... --output json` inside a host, and bringing
// the lab up. Header-only: each integration test is its own executable.
#pragma once

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/base/process.h"

namespace ferry::labtest {

using namespace std::chrono_literals;

inline const std::string kFerry = FERRY_BIN;
inline const std::string kSource = FERRY_SOURCE_DIR;

// Runs a program on this machine; a program that cannot start is a test failure.
inline ProcessResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout = 180s,
                         std::map<std::string, std::string> env = {}) {
  ProcessOptions o;
  o.timeout = timeout;
  o.env = std::move(env);
  o.env.emplace("FERRY_BIN", kFerry);
  auto r = runProcess(argv, o);
  if (!r) {
    ADD_FAILURE() << "cannot start " << joinArgv(argv) << ": " << r.error().message();
    return {};
  }
  return std::move(r.value());
}

// A shell script inside a lab host.
inline ProcessResult sh(const std::string& host, const std::string& script,
                        std::chrono::milliseconds t = 180s) {
  return run({kFerry, "lab", "exec", host, "--", "sh", "-c", script}, t);
}

// `ferry ARGS... --output json` inside a host; adds "exit_code" (and "stderr" when the
// output is not JSON).
inline nlohmann::json ferryJson(const std::string& host, std::vector<std::string> args,
                                std::chrono::milliseconds t = 300s) {
  std::vector<std::string> argv = {kFerry, "lab", "exec", host, "--", "ferry"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.emplace_back("--output");
  argv.emplace_back("json");
  auto r = run(argv, t);
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return nlohmann::json{{"exit_code", r.exit_code}, {"stderr", r.err}, {"stdout", r.out}};
  j["exit_code"] = r.exit_code;
  return j;
}

inline std::string firstWord(const std::string& text) {
  auto b = text.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  auto e = text.find_first_of(" \t\r\n", b);
  return text.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

// Brings the lab up unless it runs; returns false (and fails the test) when it cannot.
inline bool ensureLab(const std::string& profile = "") {
  auto status = run({kFerry, "lab", "status", "--output", "json"}, 30s);
  auto j = nlohmann::json::parse(status.out, nullptr, false);
  bool up = !j.is_discarded() && j.value("up", false);
  if (up && (profile.empty() || j.value("profile", std::string()) == profile)) return true;
  std::vector<std::string> argv = {kFerry, "lab", "up"};
  if (!profile.empty()) {
    argv.emplace_back("--profile");
    argv.emplace_back(profile);
  }
  auto r = run(argv, 900s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return r.exit_code == 0;
}

inline bool isRoot() {
  return ::geteuid() == 0;
}

// ---- the node daemons on a and b (deploy/lab/nodes.sh) --------------------------------

inline const std::string kNodes = kSource + "/deploy/lab/nodes.sh";

inline std::string other(const std::string& host) {
  return host == "a" ? "b" : "a";
}

inline nlohmann::json status(const std::string& host) {
  return ferryJson(host, {"status"}, 30s);
}

// The host whose node is active (it owns the service).
inline std::string activeHost() {
  for (const auto* h : {"a", "b"}) {
    if (status(h).value("role", std::string()) == "active") return h;
  }
  ADD_FAILURE() << "no node is active";
  return "a";
}

// `ferry status --wait in-sync` on the active host: the CLI's own wait (it also needs the
// peer connected), so the tests exercise what scripts use.
inline bool waitInSync(const std::string& active, std::chrono::seconds timeout = 240s) {
  auto s = ferryJson(active, {"status", "--wait", "in-sync", "--timeout", std::to_string(timeout.count())},
                     timeout + 30s);
  auto part = [&](const char* key) {
    return s.value(key, nlohmann::json::object()).value("state", std::string());
  };
  if (s.value("exit_code", -1) == 0 && part("replica") == "in-sync" && part("peer") == "connected")
    return true;
  ADD_FAILURE() << "the standby of " << active << " did not reach in-sync: " << s.dump();
  return false;
}

// The service answers directly on `host` (not through the load balancer).
inline bool answers(const std::string& host) {
  return sh("client", "curl -fsS -o /dev/null --max-time 3 http://" + host + "/health.php", 10s).exit_code ==
         0;
}

inline std::string containers(const std::string& host) {
  auto r = sh(host, "podman ps -a --format '{{.Names}}:{{.State}}' | sort | tr '\\n' ' '", 30s);
  return r.out;
}

inline nlohmann::json migrate(const std::string& from, const std::string& to,
                              std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"migrate", "web", "db", "--to", to};
  args.insert(args.end(), extra.begin(), extra.end());
  return ferryJson(from, args, 600s);
}

inline nlohmann::json verify(const std::string& host) {
  auto flushed = ferryJson(host, {"sync", "--flush", "--timeout", "300"});
  EXPECT_EQ(flushed["exit_code"], 0) << flushed.dump();
  return ferryJson(host, {"verify", "--timeout", "300"});
}

inline void nodes(const std::vector<std::string>& args, std::map<std::string, std::string> env = {}) {
  std::vector<std::string> argv = {kNodes};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run(argv, 120s, std::move(env));
  EXPECT_EQ(r.exit_code, 0) << ferry::joinArgv(argv) << ": " << r.err;
}

}  // namespace ferry::labtest
