// `ferry lab deploy`: the reference service (deploy/service/) on a lab server host.
// The lab group itself belongs to cmd_lab.cc; this file only adds `deploy` under it.
#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli.h"
#include "ferry/base/error.h"
#include "ferry/base/process.h"

namespace ferry::cli {
namespace {

namespace fs = std::filesystem;

struct DeployOptions {
  std::string on;
  int rows = 1000;
  int video_mb = 20;
  int state_mb = 0;
  int timeout_s = 0;          // 0: the script's own default (grows with --state-mb)
  std::string switch_driver;  // empty: the study's nginx with both servers (lb.sh)
};

Result<fs::path> findServiceDir() {
  auto root = findSourceDir("deploy/service/deploy.sh");
  if (!root) return root.error();
  return *root / "deploy" / "service";
}

int runDeploy(const DeployOptions& o) {
  auto dir = findServiceDir();
  if (!dir) return fail(dir.error().message());
  std::vector<std::string> argv = {(*dir / "deploy.sh").string(),
                                   "--on",
                                   o.on,
                                   "--rows",
                                   std::to_string(o.rows),
                                   "--video-mb",
                                   std::to_string(o.video_mb),
                                   "--state-mb",
                                   std::to_string(o.state_mb)};
  if (o.timeout_s > 0) {
    argv.emplace_back("--timeout");
    argv.push_back(std::to_string(o.timeout_s));
  }
  if (!o.switch_driver.empty()) {
    argv.emplace_back("--switch");
    argv.push_back(o.switch_driver);
  }
  ProcessOptions po;
  // Images, videos and the seed are cached; a cold first run (debootstrap, 625 MB of
  // video, a large --state-mb) takes minutes.
  po.timeout = std::chrono::minutes(45);
  po.capture_stdout = false;
  po.capture_stderr = false;
  auto r = runProcess(argv, po);
  if (!r) return fail(r.error().message());
  if (r->timed_out)
    return fail("lab deploy on " + o.on + " did not finish within 45 minutes — see the log above");
  if (r->exit_code == kExitUsage) return kExitUsage;
  if (r->exit_code != 0)
    return fail("lab deploy on " + o.on + " failed (exit " + std::to_string(r->exit_code) + ")");
  return kExitOk;
}

}  // namespace

void addServiceCommands(CLI::App& app, Cli& cli) {
  CLI::App* lab = nullptr;
  try {
    lab = app.get_subcommand("lab");
  } catch (const CLI::OptionNotFound&) {
    lab = app.add_subcommand("lab", "the lab: hosts a, b, lb and client on this machine");
  }
  auto opts = std::make_shared<DeployOptions>();
  auto* deploy = lab->add_subcommand("deploy",
                                     "start the reference service (MariaDB + Apache/PHP video site) on a "
                                     "server host and point the lb at it");
  deploy->add_option("--on", opts->on, "the server host: a or b")->required();
  deploy->add_option("--rows", opts->rows, "seeded users: 100, 500, 1000, 5000 or 10000")
      ->capture_default_str();
  deploy->add_option("--video-mb", opts->video_mb, "total size of the test videos in MB (the study: 625)")
      ->capture_default_str();
  deploy->add_option("--state-mb", opts->state_mb, "MB of incompressible rows held in MariaDB's buffer pool")
      ->capture_default_str();
  deploy->add_option("--timeout", opts->timeout_s,
                     "seconds to wait for /health.php (default: 180 + state-mb/3)");
  deploy
      ->add_option(
          "--switch", opts->switch_driver,
          "the front on lb, switched by `ferry proxy run` there: proxy (ferry's hand-off proxy), haproxy "
          "or nginx; without it, the study's nginx with both servers")
      ->check(CLI::IsMember({"proxy", "haproxy", "nginx"}));
  deploy->callback([&cli, opts] {
    cli.action = [opts]() -> int {
      static constexpr std::array<int, 5> kRows = {100, 500, 1000, 5000, 10000};
      if (opts->on != "a" && opts->on != "b")
        return fail("--on must be a or b, not '" + opts->on + "' — the service runs on a server host",
                    kExitUsage);
      if (std::find(kRows.begin(), kRows.end(), opts->rows) == kRows.end())
        return fail("--rows must be 100, 500, 1000, 5000 or 10000 — the study's table sizes", kExitUsage);
      if (opts->video_mb < 1 || opts->video_mb > 100000)
        return fail("--video-mb must be between 1 and 100000 — e.g. 20 (demo) or 625 (the study)",
                    kExitUsage);
      if (opts->state_mb < 0 || opts->state_mb > 16384)
        return fail("--state-mb must be between 0 and 16384 — MB of database state to hold in memory",
                    kExitUsage);
      if (opts->timeout_s < 0) return fail("--timeout must be positive seconds", kExitUsage);
      return runDeploy(*opts);
    };
  });
}

}  // namespace ferry::cli
