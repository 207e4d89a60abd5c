// ferry migrate CONTAINER... --to HOST | ferry migrations list | show ID | resolve ID
// The daemon does the work (node/src/daemon/migration_*.cc); this file asks it over the
// control socket and draws what it reports.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ferry/node/config.h"
#include "ferry/node/control.h"

namespace ferry::cli {
namespace {

using json = nlohmann::json;

struct MigrateFlags {
  std::string config = "/etc/ferry/node.conf";
  std::string socket;
  std::vector<std::string> containers;
  std::string to;
  std::string mode = "auto";
  std::string switch_driver;
  std::string output = "text";
  std::string id;
  std::string outcome;
  int timeout_s = 900;
  std::size_t limit = 20;
};

std::filesystem::path controlSocket(const MigrateFlags& f) {
  if (!f.socket.empty()) return f.socket;
  auto c = node::loadConfig(f.config, /*missing_ok=*/true);
  return c ? c->control_socket : node::NodeConfig{}.control_socket;
}

std::string bytesText(double b) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(1);
  if (b >= 1e9) {
    o << b / 1e9 << " GB";
  } else if (b >= 1e6) {
    o << b / 1e6 << " MB";
  } else if (b >= 1e3) {
    o << b / 1e3 << " kB";
  } else {
    o << std::setprecision(0) << b << " B";
  }
  return o.str();
}

std::string msText(double ms) {
  std::ostringstream o;
  if (ms >= 1000) {
    o << std::fixed << std::setprecision(2) << ms / 1000 << " s";
  } else {
    o << std::fixed << std::setprecision(0) << ms << " ms";
  }
  return o.str();
}

// Draws the daemon's events: one line per finished phase; on a terminal, a live bar
// for the transfer (bytes, rate, ETA against the expected checkpoint size).
class LiveView {
 public:
  explicit LiveView(bool tty) : tty_(tty) {}

  void onEvent(const json& e) {
    auto kind = e.value("event", std::string());
    if (kind == "start") {
      std::cout << "migrating " << join(e.value("containers", json::array())) << " to " << e.value("to", "")
                << " (" << e.value("id", "") << ")\n";
    } else if (kind == "phase" && e.value("state", "") == "done") {
      clearBar();
      auto bytes = e.value("bytes", 0.0);
      std::cout << "  " << std::left << std::setw(11) << e.value("phase", "") << std::right << std::setw(10)
                << msText(e.value("ms", 0.0));
      if (bytes > 0) std::cout << "  " << bytesText(bytes);
      if (e.contains("ms_after_freeze"))
        std::cout << "  (archives complete " << msText(e["ms_after_freeze"]) << " after the freeze)";
      if (e.contains("target_restore_ms"))
        std::cout << "  (target: restore " << msText(e["target_restore_ms"]) << ", health "
                  << msText(e["target_health_ms"]) << ")";
      std::cout << std::endl;
    } else if (kind == "progress") {
      drawBar(e);
    } else if (kind == "note") {
      clearBar();
      std::cout << "  " << e.value("text", "") << std::endl;
    }
  }

  void clearBar() {
    if (tty_ && bar_shown_) {
      std::cout << "\r\033[K" << std::flush;
      bar_shown_ = false;
    }
  }

 private:
  static std::string join(const json& list) {
    std::string s;
    for (const auto& v : list) s += (s.empty() ? "" : " ") + v.get<std::string>();
    return s;
  }

  void drawBar(const json& e) {
    double bytes = e.value("bytes", 0.0);
    double expected = e.value("expected_bytes", 0.0);
    double t = e.value("t_ms", 0.0);
    if (last_t_ > 0 && t > last_t_) rate_ = (bytes - last_bytes_) / ((t - last_t_) / 1000.0);
    last_t_ = t;
    last_bytes_ = bytes;
    if (!tty_) return;
    std::ostringstream line;
    line << "  transfer   " << bytesText(bytes);
    if (expected > 0) {
      double frac = std::min(1.0, bytes / expected);
      int filled = static_cast<int>(std::lround(frac * 24));
      line << " [" << std::string(static_cast<std::size_t>(filled), '#')
           << std::string(static_cast<std::size_t>(24 - filled), '.') << "] of ~" << bytesText(expected);
      if (rate_ > 0 && bytes < expected) line << "  ETA " << msText((expected - bytes) / rate_ * 1000.0);
    }
    if (rate_ > 0) line << "  " << bytesText(rate_) << "/s";
    std::cout << "\r\033[K" << line.str() << std::flush;
    bar_shown_ = true;
  }

  bool tty_;
  bool bar_shown_ = false;
  double last_t_ = 0;
  double last_bytes_ = 0;
  double rate_ = 0;
};

void printSummary(const json& r) {
  auto result = r.value("result", std::string("?"));
  auto to = r.value("to", std::string("?"));
  auto from = r.value("from", std::string("?"));
  std::string names;
  for (const auto& c : r.value("containers", json::array()))
    names += (names.empty() ? "" : " ") + c.get<std::string>();
  if (result == "committed") {
    std::cout << "committed: " << names << " now run on " << to << "; " << from << " is the warm standby\n";
  } else if (result == "rolled_back") {
    std::cout << "ROLLED BACK: " << names << " run on " << from << " again — " << r.value("reason", "")
              << "\n";
  } else if (result == "refused") {
    std::cout << "refused (nothing was frozen): " << r.value("reason", "") << "\n";
  } else {
    std::cout << "IN DOUBT: " << r.value("reason", "") << "\n";
  }
  if (r.contains("downtime_ms"))
    std::cout << "  downtime    " << msText(r["downtime_ms"]) << "  (first freeze on " << from
              << " to last restore done" << (result == "committed" ? " on " + to : "") << ")\n";
  if (r.contains("migration_ms"))
    std::cout << "  migration   " << msText(r["migration_ms"]) << "  (command start to the end)\n";
  if (r.value("checkpoint_bytes", 0.0) > 0) {
    std::cout << "  moved       checkpoint " << bytesText(r.value("checkpoint_bytes", 0.0)) << " ("
              << bytesText(r.value("checkpoint_wire_bytes", 0.0)) << " on the wire), last delta "
              << bytesText(r.value("last_delta_bytes", 0.0));
    if (r.value("image_bytes", 0.0) > 0) std::cout << ", images " << bytesText(r.value("image_bytes", 0.0));
    std::cout << "\n";
  }
}

int runMigrate(const MigrateFlags& f) {
  if (f.containers.empty())
    return fail("name at least one container: ferry migrate CONTAINER... --to HOST", kExitUsage);
  json request = {{"cmd", "migrate"}, {"containers", f.containers}, {"to", f.to}, {"mode", f.mode}};
  if (!f.id.empty()) request["id"] = f.id;
  if (!f.switch_driver.empty()) request["switch"] = f.switch_driver;
  bool text = f.output == "text";
  LiveView view(text && ::isatty(STDOUT_FILENO) != 0);
  auto reply =
      node::controlRequest(controlSocket(f), request, std::chrono::seconds(f.timeout_s), [&](const json& e) {
        if (text) view.onEvent(e);
      });
  if (!reply) return fail(reply.error().message());
  if (!reply->contains("result")) return fail(reply->value("error", std::string("the node refused")));
  if (text) {
    view.clearBar();
    printSummary(*reply);
  } else {
    json out = *reply;
    out.erase("ok");
    std::cout << out.dump(2) << "\n";
  }
  auto result = reply->value("result", std::string());
  if (result == "committed") return kExitOk;
  if (result == "refused") return kExitUsage;
  return kExitFailure;
}

Result<json> ask(const MigrateFlags& f, const json& request) {
  auto reply = node::controlRequest(controlSocket(f), request, std::chrono::seconds(f.timeout_s));
  if (!reply) return reply.error();
  if (!reply->value("ok", false))
    return makeError("the node says: " + reply->value("error", std::string("(no reason)")));
  return reply;
}

int listMigrations(const MigrateFlags& f) {
  auto r = ask(f, {{"cmd", "migrations"}, {"limit", f.limit}});
  if (!r) return fail(r.error().message());
  if (f.output == "json") {
    std::cout << (*r)["migrations"].dump(2) << "\n";
    return kExitOk;
  }
  std::cout << std::left << std::setw(30) << "ID" << std::setw(8) << "SIDE" << std::setw(16) << "STATE"
            << std::setw(11) << "DOWNTIME"
            << "CONTAINERS\n";
  for (const auto& m : (*r)["migrations"]) {
    std::string names;
    for (const auto& c : m.value("containers", json::array()))
      names += (names.empty() ? "" : " ") + c.get<std::string>();
    auto downtime = m.value("downtime_ms", json());
    std::cout << std::left << std::setw(30) << m.value("id", "") << std::setw(8) << m.value("side", "")
              << std::setw(16) << m.value("state", "") << std::setw(11)
              << (downtime.is_number() ? msText(downtime.get<double>()) : "-") << names << "\n";
  }
  return kExitOk;
}

int showMigration(const MigrateFlags& f) {
  auto r = ask(f, {{"cmd", "migration"}, {"id", f.id}});
  if (!r) return fail(r.error().message());
  if (f.output == "json") {
    json out = *r;
    out.erase("ok");
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "migration " << r->value("id", "") << " (" << r->value("side", "") << " side, peer "
            << r->value("peer", "") << ", epoch " << r->value("epoch", 0) << ")\n"
            << "state     " << r->value("state", "") << (r->value("running", false) ? " (in progress)" : "")
            << "\n";
  if (!r->value("reason", std::string()).empty()) std::cout << "reason    " << r->value("reason", "") << "\n";
  const auto& report = (*r)["report"];
  if (report.is_object() && report.contains("phases")) {
    for (const auto& p : report["phases"])
      std::cout << "  " << std::left << std::setw(11) << p.value("name", "") << std::right << std::setw(10)
                << msText(p.value("ms", 0.0)) << "\n";
  }
  if (report.is_object() && report.contains("result")) printSummary(report);
  return kExitOk;
}

int resolveMigration(const MigrateFlags& f) {
  json request = {{"cmd", "resolve"}, {"id", f.id}};
  if (!f.outcome.empty()) request["outcome"] = f.outcome;
  LiveView view(false);
  auto reply = node::controlRequest(controlSocket(f), request, std::chrono::seconds(f.timeout_s),
                                    [&](const json& e) { view.onEvent(e); });
  if (!reply) return fail(reply.error().message());
  if (reply->contains("error")) return fail(reply->value("error", std::string()));
  std::cout << "migration " << f.id << ": " << reply->value("state", reply->value("result", std::string("?")))
            << "\n";
  if (reply->contains("reason")) std::cout << "  " << reply->value("reason", "") << "\n";
  return reply->value("ok", false) ? kExitOk : kExitFailure;
}

}  // namespace

void addMigrateCommands(CLI::App& app, Cli& cli) {
  auto flags = std::make_shared<MigrateFlags>();
  auto common = [flags](CLI::App* sub) {
    sub->add_option("--config", flags->config, "node configuration file")->capture_default_str();
    sub->add_option("--socket", flags->socket, "control socket (default: from the configuration)");
    sub->add_option("--output", flags->output, "text or json")->check(CLI::IsMember({"text", "json"}));
  };

  auto* migrate = app.add_subcommand(
      "migrate",
      "move running containers to the standby host: one consistent cut, checkpoint plus the last "
      "delta, Commit; any failure rolls back");
  migrate->add_option("containers", flags->containers, "the containers to move together")->required();
  migrate->add_option("--to", flags->to, "the target node (this node's peer)")->required();
  migrate->add_option("--mode", flags->mode, "stop-and-copy | pre-copy | post-copy | auto")
      ->check(CLI::IsMember({"auto", "stop-and-copy", "pre-copy", "post-copy"}))
      ->capture_default_str();
  migrate
      ->add_option(
          "--switch", flags->switch_driver,
          "how traffic follows: none | proxy | haproxy | nginx | exec (default: the node's `switch`)")
      ->check(CLI::IsMember({"none", "proxy", "haproxy", "nginx", "exec"}));
  migrate->add_option("--id", flags->id, "migration id (default: m-<time>-<node>)");
  migrate->add_option("--timeout", flags->timeout_s, "seconds to wait for the result")->capture_default_str();
  common(migrate);
  migrate->callback([&cli, flags] { cli.action = [flags] { return runMigrate(*flags); }; });

  auto* migrations = app.add_subcommand("migrations", "the migrations this node's journal knows");
  migrations->require_subcommand(1);
  auto* list = migrations->add_subcommand("list", "newest first");
  list->add_option("--limit", flags->limit, "how many")->capture_default_str();
  common(list);
  list->callback([&cli, flags] { cli.action = [flags] { return listMigrations(*flags); }; });
  auto* show = migrations->add_subcommand("show", "one migration: state, phases, statistics");
  show->add_option("id", flags->id, "migration id")->required();
  common(show);
  show->callback([&cli, flags] { cli.action = [flags] { return showMigration(*flags); }; });
  auto* resolve = migrations->add_subcommand(
      "resolve", "settle a migration in doubt: ask the peer, or (peer gone for good) state the outcome");
  resolve->add_option("id", flags->id, "migration id")->required();
  resolve
      ->add_option("--outcome", flags->outcome,
                   "committed (the service runs on the target) or rolled-back (it must run on the source); "
                   "only when the peer cannot be asked")
      ->check(CLI::IsMember({"committed", "rolled-back"}));
  resolve->add_option("--timeout", flags->timeout_s, "seconds to wait")->capture_default_str();
  common(resolve);
  resolve->callback([&cli, flags] { cli.action = [flags] { return resolveMigration(*flags); }; });
}

}  // namespace ferry::cli
