// The `ferry` command line: each file cmd_*.cc adds one group of subcommands.
// Commands stay thin: they parse flags, call a library, and print.
#pragma once

#include <functional>
#include <string>

#include <CLI/CLI.hpp>

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
void addBenchCommands(CLI::App& app, Cli& cli);    // cmd_bench.cc    (bench/)
void addNodeCommands(CLI::App& app, Cli& cli);     // cmd_node.cc     (node/, protocol/, sync/)
void addServiceCommands(CLI::App& app, Cli& cli);  // cmd_service.cc  (deploy/service/: adds `lab deploy`)
void addKeysCommands(CLI::App& app, Cli& cli);     // cmd_keys.cc     (protocol/: keygen, pair)
void addMigrateCommands(CLI::App& app, Cli& cli);  // cmd_migrate.cc  (node/: migrate, migrations)
void addProxyCommands(CLI::App& app, Cli& cli);    // cmd_proxy.cc    (switchover/: the switch agent)

// Prints "ferry: <message>" to stderr and returns `code`.
int fail(const std::string& message, int code = kExitFailure);

}  // namespace ferry::cli
