#include "cli.h"

namespace ferry::cli {

void addBenchCommands(CLI::App& app, Cli& cli) {
  (void)app;
  (void)cli;
}

}  // namespace ferry::cli
