// `ferry lab`: the multi-host lab on this machine (library: deploy/include/ferry/lab/lab.h;
// the work is done by deploy/lab/lab.sh).
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "ferry/lab/lab.h"

namespace ferry::cli {
namespace {

struct LabFlags {
  lab::UpOptions up;
  std::string output = "text";
};

int fromScript(const Result<int>& r) {
  if (!r.ok()) return fail(r.error().message());
  return *r;
}

lab::LabController makeController() {
  auto system = lab::makeSystem();
  auto dir = lab::findDeployDir(*system);
  return lab::LabController(std::move(system), dir);
}

}  // namespace

void addLabCommands(CLI::App& app, Cli& cli) {
  auto* labCmd = app.add_subcommand("lab", "the multi-host lab on this machine: hosts a, b, lb, client");
  labCmd->require_subcommand(1);
  auto flags = std::make_shared<LabFlags>();

  auto* up = labCmd->add_subcommand("up", "create (or refresh) the lab hosts; needs root");
  up->add_option("--profile", flags->up.profile, "link profile: lan, cloud, wan or edge")
      ->capture_default_str();
  up->add_flag("--shared-storage", flags->up.shared_storage,
               "one shared directory /srv/ferry-shared in a and b");
  up->callback([&cli, flags] {
    cli.action = [flags] {
      auto controller = makeController();
      if (auto s = lab::validateUp(flags->up, controller.system(), controller.deployDir()); !s.ok()) {
        return fail(s.error().message(), kExitUsage);
      }
      return fromScript(controller.up(flags->up));
    };
  });

  auto* down = labCmd->add_subcommand("down", "remove every trace of the lab; needs root");
  down->callback([&cli] {
    cli.action = [] {
      auto controller = makeController();
      if (!controller.system().isRoot())
        return fail("'ferry lab down' needs root — run it as root", kExitUsage);
      return fromScript(controller.down());
    };
  });

  auto* status = labCmd->add_subcommand("status", "the lab's hosts and link profile");
  status->add_option("--output", flags->output, "text or json")->check(CLI::IsMember({"text", "json"}));
  status->callback([&cli, flags] {
    cli.action = [flags] { return fromScript(makeController().status(flags->output == "json")); };
  });

  auto* exec =
      labCmd->add_subcommand("exec", "run a command inside a host: ferry lab exec HOST -- CMD ARGS...");
  exec->prefix_command();
  exec->callback([&cli, exec] {
    std::vector<std::string> rest = exec->remaining();
    cli.action = [rest] {
      if (rest.empty()) return fail("no host given — usage: ferry lab exec HOST -- CMD ARGS...", kExitUsage);
      const std::string& host = rest.front();
      std::vector<std::string> command(rest.begin() + 1, rest.end());
      if (!command.empty() && command.front() == "--") command.erase(command.begin());
      if (auto s = lab::validateExec(host, command); !s.ok()) return fail(s.error().message(), kExitUsage);
      auto controller = makeController();
      auto err = controller.execInHost(host, command);  // returns only on failure
      return fail(err.message(), lab::holderPid(host).ok() ? kExitFailure : kExitUsage);
    };
  });

  auto* linkTest =
      labCmd->add_subcommand("link-test", "measure throughput and RTT between a and b (links.sh test)");
  linkTest->allow_extras();
  linkTest->callback([&cli, linkTest] {
    std::vector<std::string> rest = linkTest->remaining();
    cli.action = [rest] { return fromScript(makeController().linkTest(rest)); };
  });
}

}  // namespace ferry::cli
