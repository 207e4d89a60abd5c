#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "cli.h"
#include "ferry/base/log.h"

namespace ferry::cli {

int fail(const std::string& message, int code) {
  std::cerr << "ferry: " << message << "\n";
  return code;
}

Result<std::filesystem::path> findSourceDir(const std::string& marker) {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("FERRY_SOURCE_DIR"); env != nullptr && *env != '\0')
    candidates.emplace_back(env);
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path p = exe.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path())
      candidates.push_back(p);
  }
  candidates.emplace_back("/opt/ferry/src");
  for (const auto& root : candidates) {
    if (fs::exists(root / marker, ec)) return root;
  }
  return makeError("cannot find " + marker + " near " + exe.string() + " or in /opt/ferry/src",
                   "set FERRY_SOURCE_DIR to the ferry checkout");
}

}  // namespace ferry::cli

int main(int argc, char** argv) {
  CLI::App app{"ferry: keep a warm standby of a containerised service and live-migrate it"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ferry 0.1.0");
  std::string level = "info";
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off")->capture_default_str();

  ferry::cli::Cli cli;
  ferry::cli::addLabCommands(app, cli);
  ferry::cli::addServiceCommands(app, cli);  // after addLabCommands: adds `lab deploy`
  ferry::cli::addCheckCommands(app, cli);
  ferry::cli::addBenchCommands(app, cli);
  ferry::cli::addNodeCommands(app, cli);
  ferry::cli::addKeysCommands(app, cli);
  ferry::cli::addMigrateCommands(app, cli);
  ferry::cli::addProxyCommands(app, cli);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : ferry::cli::kExitUsage;
  }
  ferry::log::setLevel(level);
  if (!cli.action) return ferry::cli::fail("nothing to do: run 'ferry --help'", ferry::cli::kExitUsage);
  return cli.action();
}
