// The `ferry` command line: each file cmd_*.cc adds one group of subcommands.
// Commands stay thin: they parse flags, call a library, and print.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>

#include "ferry/base/error.h"

namespace ferry::cli {

// What main() runs after parsing: the chosen subcommand's action.
struct Cli {
  std::function<int()> action;  // returns the process exit code
};

// Exit codes shared by all commands.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // the operation failed
inline constexpr int kExitUsage = 2;    // bad input: unknown host, profile, flag

void addLabCommands(CLI::App& app, Cli& cli);      // cmd_lab.cc      (deploy/)
void addCheckCommands(CLI::App& app, Cli& cli);    // cmd_check.cc    (checkpoint/)
void addBenchCommands(CLI::App& app, Cli& cli);    // cmd_bench.cc    (bench/: probe, writer, bench)
void addNodeCommands(CLI::App& app, Cli& cli);     // cmd_node.cc     (node/, protocol/, sync/)
void addServiceCommands(CLI::App& app, Cli& cli);  // cmd_service.cc  (deploy/service/: adds `lab deploy`)
void addKeysCommands(CLI::App& app, Cli& cli);     // cmd_keys.cc     (protocol/: keygen, pair)
void addMigrateCommands(CLI::App& app, Cli& cli);  // cmd_migrate.cc  (node/: migrate, migrations)
void addProxyCommands(CLI::App& app, Cli& cli);    // cmd_proxy.cc    (switchover/: the switch agent)

// Prints "ferry: <message>" to stderr and returns `code`.
int fail(const std::string& message, int code = kExitFailure);

// The ferry checkout that holds `marker` (a path inside it, e.g. "deploy/service/deploy.sh"):
// $FERRY_SOURCE_DIR, else the first ancestor of this executable that has it (a build tree
// inside the checkout), else /opt/ferry/src (where the lab mounts the repository).
Result<std::filesystem::path> findSourceDir(const std::string& marker);

}  // namespace ferry::cli
