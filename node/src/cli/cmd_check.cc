// `ferry check`: the preflight before trusting a host (library: checkpoint/host_check.h).
#include <unistd.h>

#include <array>
#include <iostream>
#include <iterator>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ferry/checkpoint/check_parsers.h"
#include "ferry/checkpoint/host_check.h"

namespace ferry::cli {
namespace {

namespace ck = ferry::checkpoint;

struct CheckFlags {
  std::string host;
  std::string peer;
  std::string output = "text";
  bool deep = false;
  bool cpuinfo_dump = false;   // hidden: used by --peer inside a lab host
  bool cpuinfo_check = false;  // hidden: used by --peer inside a lab host
};

const std::set<std::string> kLabHosts{"a", "b", "lb", "client"};

std::string selfExe() {
  std::array<char, 4096> buf{};
  auto n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  return n > 0 ? std::string(buf.data(), static_cast<std::size_t>(n)) : std::string("ferry");
}

// Validates a lab host name; returns an exit code (0 = fine) after printing the error.
int checkLabHost(const std::string& host, ck::FileReader& files) {
  if (!kLabHosts.contains(host)) {
    return fail("unknown lab host '" + host + "' — lab hosts are a, b, lb, client", kExitUsage);
  }
  auto pid = files.read("/run/ferry-lab/hosts/" + host + "/pid");
  std::string p = pid.ok() ? pid->substr(0, pid->find_first_of(" \n")) : std::string();
  if (p.empty() || !files.exists("/proc/" + p + "/cmdline")) {
    return fail("lab host '" + host + "' is not running — run 'ferry lab up' first");
  }
  return kExitOk;
}

// Runs `ferry ARGS...` inside a lab host through `ferry lab exec`.
Result<ProcessResult> inHost(ck::CommandRunner& runner, const std::string& host,
                             std::vector<std::string> args, std::chrono::milliseconds timeout,
                             std::string stdin_data = {}) {
  std::vector<std::string> argv{selfExe(), "lab", "exec", host, "--", "ferry"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessOptions po;
  po.timeout = timeout;
  po.stdin_data = std::move(stdin_data);
  auto r = runner.run(argv, po);
  if (r.ok() && r->timed_out) {
    return makeError("'ferry " + args.front() + "' in lab host " + host + " timed out",
                     "is the host wedged? try 'ferry lab status'");
  }
  return r;
}

std::string lastLine(const std::string& s) {
  auto end = s.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return {};
  auto start = s.rfind('\n', end);
  return s.substr(start == std::string::npos ? 0 : start + 1,
                  end - (start == std::string::npos ? 0 : start + 1) + 1);
}

struct RemoteCheck {
  nlohmann::json json;
  ck::HostReport report;
};

Result<RemoteCheck> remoteCheck(ck::CommandRunner& runner, const std::string& host, bool deep) {
  std::vector<std::string> args{"check", "--output", "json"};
  if (deep) args.emplace_back("--deep");
  auto r = inHost(runner, host, args, deep ? std::chrono::minutes(6) : std::chrono::minutes(2));
  if (!r.ok()) return r.error();
  nlohmann::json j = nlohmann::json::parse(r->out, nullptr, false);
  if (j.is_discarded()) {
    auto why = lastLine(r->err);
    return makeError("ferry check in lab host " + host + " printed no report (exit " +
                         std::to_string(r->exit_code) + (why.empty() ? ")" : "): " + why),
                     "run 'ferry lab exec " + host + " -- ferry check' to see it");
  }
  auto report = ck::reportFromJson(j);
  if (!report.ok()) return report.error();
  return RemoteCheck{std::move(j), std::move(report.value())};
}

int printHost(const nlohmann::json& j, const ck::HostReport& report, const CheckFlags& flags) {
  auto verdict = ck::evaluateHost(report);
  bool ok = verdict.can_checkpoint;
  std::optional<ck::DeepCheckResult> deep;
  if (j.contains("deep")) {
    auto d = ck::deepFromJson(j.at("deep"));
    if (d.ok()) deep = d.value();
  }
  if (deep && !deep->passed) ok = false;
  if (flags.output == "json") {
    auto out = ck::reportToJson(report, verdict);
    if (deep) out["deep"] = ck::deepToJson(*deep);
    out["ok"] = ok;
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << ck::renderHostTable(report, verdict);
    if (deep) std::cout << ck::renderDeep(*deep);
  }
  return ok ? kExitOk : kExitFailure;
}

int runLocal(const CheckFlags& flags) {
  auto runner = ck::makeSystemRunner();
  auto files = ck::makeSystemFileReader();
  auto report = ck::collectHostReport(*runner, *files);
  auto j = nlohmann::json::object();
  if (flags.deep) j["deep"] = ck::deepToJson(ck::runDeepCheck(*runner, *files));
  return printHost(j, report, flags);
}

int runRemote(const CheckFlags& flags) {
  auto runner = ck::makeSystemRunner();
  auto files = ck::makeSystemFileReader();
  if (int rc = checkLabHost(flags.host, *files); rc != kExitOk) return rc;
  auto r = remoteCheck(*runner, flags.host, flags.deep);
  if (!r.ok()) return fail(r.error().message());
  return printHost(r->json, r->report, flags);
}

int runPeer(const CheckFlags& flags) {
  auto runner = ck::makeSystemRunner();
  auto files = ck::makeSystemFileReader();
  if (flags.host == flags.peer)
    return fail("--host and --peer name the same host '" + flags.host + "'", kExitUsage);
  for (const auto* h : {&flags.host, &flags.peer}) {
    if (int rc = checkLabHost(*h, *files); rc != kExitOk) return rc;
  }
  auto src = remoteCheck(*runner, flags.host, false);
  if (!src.ok()) return fail(src.error().message());
  auto dst = remoteCheck(*runner, flags.peer, false);
  if (!dst.ok()) return fail(dst.error().message());

  // CPU: criu cpuinfo dump on the source, the image through our stdout/stdin, check on the target.
  ck::CpuCompat cpu;
  auto dump = inHost(*runner, flags.host, {"check", "--cpuinfo-dump"}, std::chrono::seconds(60));
  if (!dump.ok()) {
    cpu.detail = dump.error().message();
  } else if (!dump->success()) {
    cpu.detail = "on " + flags.host + ": " + lastLine(dump->err);
  } else {
    auto check =
        inHost(*runner, flags.peer, {"check", "--cpuinfo-check"}, std::chrono::seconds(60), dump->out);
    nlohmann::json cj = check.ok() ? nlohmann::json::parse(check->out, nullptr, false) : nlohmann::json();
    if (!check.ok()) {
      cpu.detail = check.error().message();
    } else if (cj.is_discarded() || !cj.is_object()) {
      cpu.detail = "on " + flags.peer + ": " + lastLine(check->err);
    } else {
      cpu.checked = cj.value("checked", false);
      cpu.compatible = cj.value("compatible", false);
      cpu.detail = cj.value("detail", "");
    }
  }

  auto verdict = ck::comparePeers(flags.host, src->report, flags.peer, dst->report, cpu);
  if (flags.output == "json") {
    auto out = ck::peerToJson(verdict);
    out["hosts"] = {{flags.host, src->json}, {flags.peer, dst->json}};
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << ck::renderPeerTable(verdict);
  }
  return verdict.restorable ? kExitOk : kExitFailure;
}

int runCpuinfoDump() {
  auto runner = ck::makeSystemRunner();
  auto img = ck::dumpCpuInfo(*runner);
  if (!img.ok()) return fail(img.error().message());
  std::cout << ck::base64Encode(*img) << "\n";
  return kExitOk;
}

int runCpuinfoCheck() {
  std::string in{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  auto img = ck::base64Decode(in);
  if (!img.ok()) return fail(img.error().message(), kExitUsage);
  if (img->empty())
    return fail("no cpuinfo image on stdin — pipe in the output of 'ferry check --cpuinfo-dump'", kExitUsage);
  auto runner = ck::makeSystemRunner();
  auto c = ck::checkCpuInfo(*runner, *img);
  std::cout
      << nlohmann::json{{"checked", c.checked}, {"compatible", c.compatible}, {"detail", c.detail}}.dump()
      << "\n";
  return c.checked ? kExitOk : kExitFailure;
}

}  // namespace

void addCheckCommands(CLI::App& app, Cli& cli) {
  auto flags = std::make_shared<CheckFlags>();
  auto* cmd =
      app.add_subcommand("check", "preflight: can this host (or lab host) checkpoint, restore, migrate?");
  cmd->add_option("--host", flags->host, "run the check inside this lab host (a, b, lb, client)");
  cmd->add_option("--peer", flags->peer,
                  "with --host: can a checkpoint from --host be restored on this host?");
  cmd->add_option("--output", flags->output, "text or json");
  cmd->add_flag("--deep", flags->deep,
                "also checkpoint and restore a canary container (TCP listener, file lock, non-root process)");
  cmd->add_flag("--cpuinfo-dump", flags->cpuinfo_dump, "print criu's cpuinfo.img as base64")->group("");
  cmd->add_flag("--cpuinfo-check", flags->cpuinfo_check, "check a base64 cpuinfo.img from stdin")->group("");
  cmd->callback([flags, &cli] {
    cli.action = [flags]() -> int {
      if (flags->output != "text" && flags->output != "json") {
        return fail("--output must be text or json, not '" + flags->output + "'", kExitUsage);
      }
      if (flags->cpuinfo_dump) return runCpuinfoDump();
      if (flags->cpuinfo_check) return runCpuinfoCheck();
      if (!flags->peer.empty()) {
        if (flags->host.empty()) return fail("--peer needs --host (the source host)", kExitUsage);
        if (flags->deep) return fail("--deep and --peer cannot be combined: run --deep per host", kExitUsage);
        return runPeer(*flags);
      }
      if (!flags->host.empty()) return runRemote(*flags);
      return runLocal(*flags);
    };
  });
}

}  // namespace ferry::cli
