// The `haproxy` driver: HAProxy's runtime API over its local stats socket
// (https://docs.haproxy.org/2.6/management.html#9.3). One command per connection
// (non-interactive mode): write it, read until HAProxy closes.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>

#include "ferry/base/log.h"
#include "ferry/switchover/local.h"
#include "health.h"
#include "local_common.h"
#include "net.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;

Millis since(Clock::time_point t) {
  return std::chrono::duration_cast<Millis>(Clock::now() - t);
}

// srv_admin_state bits (HAProxy's SRV_ADMF_*). CMAINT (0x04, `disabled` in the config)
// stays set after `set server ... state ready` although the server then takes traffic,
// so it does not count: a disabled server starts with FMAINT (0x01) as well.
constexpr unsigned kMaintBits = 0x01 | 0x02 | 0x20 | 0x40;  // forced, inherited, resolution, hostname
constexpr unsigned kDrainBits = 0x08 | 0x10;                // forced, inherited
// Between prepare and commit the target's slot points at the target host on this port,
// where nothing listens: new requests wait in HAProxy's connection retries (refused,
// retried every min(timeout connect, 1 s)) without ever reaching the target's service
// port while it is being restored. Connections accepted there mid-restore were never
// answered (measured: maxconn of them stuck per migration until `timeout server`, the
// queue behind them collapsing); commit moves the slot to the real port once the
// target answers its health check, and the retries find it there.
constexpr uint16_t kParkPort = 1;
// srv_check_state bits (CHK_ST_*).
constexpr unsigned kCheckConfigured = 0x02;

struct Server {
  std::string name;
  std::string addr;
  uint16_t port = 0;
  unsigned opState = 0;  // 0 stopped, 1 starting, 2 running, 3 stopping
  unsigned adminState = 0;
  unsigned checkState = 0;

  [[nodiscard]] bool maint() const { return (adminState & kMaintBits) != 0; }
  [[nodiscard]] bool drain() const { return (adminState & kDrainBits) != 0; }
  [[nodiscard]] bool ready() const { return !maint() && !drain(); }
  [[nodiscard]] bool checked() const { return (checkState & kCheckConfigured) != 0; }
  [[nodiscard]] std::string state() const { return maint() ? "maint" : drain() ? "drain" : "ready"; }
};

// A row of `show stat` as name -> value.
using StatRow = std::map<std::string, std::string>;

uint64_t num(const StatRow& row, const std::string& key) {
  auto it = row.find(key);
  if (it == row.end()) return 0;
  uint64_t v = 0;
  std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
  return v;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

std::string firstLine(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  if (line.size() > 200) line = line.substr(0, 200) + "...";
  return line;
}

// The numeric address of an endpoint, as HAProxy shows it.
Result<std::pair<std::string, uint16_t>> numeric(const Endpoint& e) {
  auto a = net::resolve(e);
  if (!a.ok()) return a.error();
  char host[INET6_ADDRSTRLEN] = {};
  if (a->addr.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&a->addr)->sin_addr, host, sizeof host);
  } else {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&a->addr)->sin6_addr, host, sizeof host);
  }
  return std::make_pair(std::string(host), e.port);
}

class HaproxyDriver final : public Driver {
 public:
  explicit HaproxyDriver(HaproxyConfig config) : cfg_(std::move(config)), log_(log::get("switch")) {}

  std::string name() const override { return "haproxy"; }

  Result<SwitchReport> prepare(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "prepare");
    auto src = numeric(plan.source);
    if (!src.ok()) return src.error();
    auto tgt = numeric(plan.target);
    if (!tgt.ok()) return tgt.error();
    auto servers = serversState();
    if (!servers.ok()) return servers.error();
    const Server* source = findByAddress(*servers, *src, "");
    if (source == nullptr) {
      return makeError("haproxy: no server of backend '" + cfg_.backend + "' has the source address " +
                           plan.source.str() + " (" + src->first + ":" + std::to_string(src->second) +
                           "); servers: " + describe(*servers),
                       "the plan's source must be the server that serves now");
    }
    const std::pair<std::string, uint16_t> parked{tgt->first, kParkPort};
    const Server* target = findByAddress(*servers, *tgt, source->name);
    if (target == nullptr) target = findByAddress(*servers, parked, source->name);
    if (target == nullptr) target = spareSlot(*servers, source->name);
    if (target == nullptr) {
      return makeError(
          "haproxy: backend '" + cfg_.backend + "' has no spare server for the target " + plan.target.str() +
              "; servers: " + describe(*servers),
          "give the backend a second server that starts `disabled` (see deploy/switchover/haproxy.cfg.tmpl)");
    }
    const std::string sname = source->name;
    const std::string tname = target->name;
    const bool tChecked = target->checked();
    auto stats = backendStats();
    if (stats.ok()) baselines_[plan.migration_id] = *stats;

    const auto t0 = Clock::now();
    if (target->addr != parked.first || target->port != parked.second) {
      FERRY_TRY(command("set server " + cfg_.backend + "/" + tname + " addr " + parked.first + " port " +
                        std::to_string(parked.second)));
    }
    // Health checks would mark the target down before it listens; the agent checks it instead.
    if (tChecked) FERRY_TRY(expectQuiet("disable health " + cfg_.backend + "/" + tname));
    // Target first: with the source draining and nothing else usable HAProxy would answer 503.
    FERRY_TRY(expectQuiet("set server " + cfg_.backend + "/" + tname + " state ready"));
    FERRY_TRY(expectQuiet("set server " + cfg_.backend + "/" + sname + " state drain"));
    FERRY_TRY(verify(tname, parked, "ready"));
    FERRY_TRY(verify(sname, *src, "drain"));
    r.steps.push_back({"configure", since(t0)});

    // Drain: wait until the source has no session left.
    const auto t1 = Clock::now();
    const auto deadline = t1 + plan.drain_timeout;
    uint64_t atStart = 0;
    uint64_t left = 0;
    for (bool first = true;; first = false) {
      auto row = serverStats(sname);
      if (!row.ok()) return row.error();
      left = num(*row, "scur");
      if (first) atStart = left;
      if (left == 0 || Clock::now() >= deadline) break;
      std::this_thread::sleep_for(cfg_.poll_interval);
    }
    r.steps.push_back({"drain", since(t1)});
    r.drained = atStart > left ? atStart - left : 0;
    r.in_flight_left = left;
    r.note = cfg_.backend + "/" + tname + " -> " + plan.target.str() + " ready, parked on port " +
             std::to_string(kParkPort) + " (requests wait in HAProxy's connection retries until commit), " +
             cfg_.backend + "/" + sname + " drain";
    return r;
  }

  Result<SwitchReport> commit(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "commit");
    auto src = numeric(plan.source);
    if (!src.ok()) return src.error();
    auto tgt = numeric(plan.target);
    if (!tgt.ok()) return tgt.error();
    auto t0 = Clock::now();
    HealthCheck check;
    check.path = cfg_.health_path;
    Status healthy = waitHealthy(plan.target, check, plan.hold_timeout);
    r.steps.push_back({"health", since(t0)});
    if (!healthy.ok()) {
      return makeError("haproxy: not switching '" + cfg_.service + "' to " + plan.target.str() + ": " +
                           healthy.error().what,
                       "roll back to send traffic to the source again");
    }
    t0 = Clock::now();
    auto servers = serversState();
    if (!servers.ok()) return servers.error();
    const Server* source = findByAddress(*servers, *src, "");
    const std::string except = source != nullptr ? source->name : "";
    const Server* target = findByAddress(*servers, *tgt, except);
    if (target == nullptr) target = findByAddress(*servers, {tgt->first, kParkPort}, except);
    if (target != nullptr && target->port != tgt->second) {
      FERRY_TRY(command("set server " + cfg_.backend + "/" + target->name + " addr " + tgt->first + " port " +
                        std::to_string(tgt->second)));
    }
    if (target == nullptr) {
      // prepare never ran here (or HAProxy was reloaded since): give the target a slot now.
      target = spareSlot(*servers, source != nullptr ? source->name : "");
      if (target == nullptr) {
        return makeError("haproxy: backend '" + cfg_.backend + "' has no server for the target " +
                             plan.target.str() + "; servers: " + describe(*servers),
                         "run prepare first, or add a spare `disabled` server to the backend");
      }
      FERRY_TRY(command("set server " + cfg_.backend + "/" + target->name + " addr " + tgt->first + " port " +
                        std::to_string(tgt->second)));
    }
    const std::string tname = target->name;
    const bool tChecked = target->checked();
    FERRY_TRY(expectQuiet("set server " + cfg_.backend + "/" + tname + " state ready"));
    if (tChecked) FERRY_TRY(expectQuiet("enable health " + cfg_.backend + "/" + tname));
    std::string sname;
    if (source != nullptr) {
      sname = source->name;
      FERRY_TRY(expectQuiet("set server " + cfg_.backend + "/" + sname + " state maint"));
      FERRY_TRY(verify(sname, *src, "maint"));
    }
    FERRY_TRY(verify(tname, *tgt, "ready"));
    r.steps.push_back({"switch", since(t0)});
    fillDeltas(plan, r);
    r.note = "traffic to " + cfg_.backend + "/" + tname + " (" + plan.target.str() + ")" +
             (sname.empty() ? "" : ", " + cfg_.backend + "/" + sname + " maint") +
             "; retried = HAProxy's retries, failed = 5xx answers of the backend since prepare";
    return r;
  }

  Result<SwitchReport> rollback(const SwitchPlan& plan) override {
    FERRY_TRY(checkPlan(plan));
    SwitchReport r = report(plan, "rollback");
    auto src = numeric(plan.source);
    if (!src.ok()) return src.error();
    auto tgt = numeric(plan.target);
    if (!tgt.ok()) return tgt.error();
    const auto t0 = Clock::now();
    auto servers = serversState();
    if (!servers.ok()) return servers.error();
    const Server* source = findByAddress(*servers, *src, "");
    if (source == nullptr) {
      return makeError("haproxy: cannot roll back '" + cfg_.service + "': no server of backend '" +
                           cfg_.backend + "' has the source address " + plan.source.str() +
                           "; servers: " + describe(*servers),
                       "point a server at the source by hand: set server " + cfg_.backend +
                           "/NAME addr ADDRESS port PORT; set server " + cfg_.backend + "/NAME state ready");
    }
    const std::string sname = source->name;
    const Server* target = findByAddress(*servers, *tgt, sname);
    if (target == nullptr) target = findByAddress(*servers, {tgt->first, kParkPort}, sname);
    // Source first, so requests retrying at the target can be redispatched to it.
    FERRY_TRY(expectQuiet("set server " + cfg_.backend + "/" + sname + " state ready"));
    std::string tname;
    if (target != nullptr) {
      tname = target->name;
      const bool tChecked = target->checked();
      FERRY_TRY(expectQuiet("set server " + cfg_.backend + "/" + tname + " state maint"));
      if (tChecked) FERRY_TRY(expectQuiet("enable health " + cfg_.backend + "/" + tname));
    }
    FERRY_TRY(verify(sname, *src, "ready"));
    r.steps.push_back({"switch", since(t0)});
    fillDeltas(plan, r);
    r.note = "traffic back to " + cfg_.backend + "/" + sname + " (" + plan.source.str() + ")" +
             (tname.empty() ? "" : ", " + cfg_.backend + "/" + tname + " maint");
    return r;
  }

 private:
  Status checkPlan(const SwitchPlan& plan) const {
    return detail::checkLocalPlan(plan, "haproxy", cfg_.service);
  }

  SwitchReport report(const SwitchPlan& plan, const char* step) const {
    return detail::startReport(plan, "haproxy", cfg_.service, step);
  }

  // ---- the runtime API ---------------------------------------------------------
  Result<std::string> command(const std::string& cmd) const {
    const auto deadline = Clock::now() + cfg_.command_timeout;
    auto remaining = [&] {
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
      return left <= 0 ? 0 : static_cast<int>(left);
    };
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (cfg_.socket.size() >= sizeof addr.sun_path)
      return makeError("haproxy: stats socket path '" + cfg_.socket + "' is too long");
    std::memcpy(addr.sun_path, cfg_.socket.c_str(), cfg_.socket.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return makeError("haproxy: socket(): " + net::errnoText(errno));
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS &&
        errno != EAGAIN) {
      return makeError(
          "haproxy: cannot connect to the stats socket " + cfg_.socket + ": " + net::errnoText(errno),
          "is HAProxy running with `stats socket " + cfg_.socket + " level admin`?");
    }
    const std::string line = cmd + "\n";
    size_t sent = 0;
    while (sent < line.size()) {
      const ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        pollfd p{fd, POLLOUT, 0};
        if (::poll(&p, 1, remaining()) <= 0) break;
        continue;
      }
      return makeError("haproxy: writing '" + cmd + "' to " + cfg_.socket + ": " + net::errnoText(errno));
    }
    std::string out;
    char buf[8192];
    for (;;) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, remaining()) <= 0) {
        return makeError("haproxy: no complete answer to '" + cmd + "' within " +
                             std::to_string(cfg_.command_timeout.count()) + " ms",
                         "HAProxy may be overloaded or stuck; check it with `echo 'show info' | socat - " +
                             cfg_.socket + "`");
      }
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > (size_t{4} << 20)) return makeError("haproxy: answer to '" + cmd + "' over 4 MiB");
        continue;
      }
      if (n == 0) break;
      if (errno == EAGAIN || errno == EINTR) continue;
      return makeError("haproxy: reading the answer to '" + cmd + "': " + net::errnoText(errno));
    }
    log_->debug("haproxy '{}': {} -> {}", cfg_.service, cmd, firstLine(out));
    return out;
  }

  // A command that answers nothing when it worked.
  Status expectQuiet(const std::string& cmd) const {
    auto out = command(cmd);
    if (!out.ok()) return out.error();
    std::string text = *out;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (!text.empty()) {
      return makeError("haproxy: '" + cmd + "' answered: " + firstLine(text),
                       "check the backend and server names in the agent's config against haproxy.cfg");
    }
    return okStatus();
  }

  Result<std::vector<Server>> serversState() const {
    auto out = command("show servers state " + cfg_.backend);
    if (!out.ok()) return out.error();
    std::istringstream in(*out);
    std::string line;
    std::vector<std::string> columns;
    std::vector<Server> servers;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (line.rfind("# ", 0) == 0) {
        columns = split(line.substr(2), ' ');
        continue;
      }
      if (columns.empty()) {
        if (line == "1") continue;  // the format version
        return makeError("haproxy: 'show servers state " + cfg_.backend + "' answered: " + firstLine(line),
                         "is '" + cfg_.backend + "' the name of a backend in haproxy.cfg?");
      }
      const auto values = split(line, ' ');
      std::map<std::string, std::string> v;
      for (size_t i = 0; i < columns.size() && i < values.size(); ++i) v[columns[i]] = values[i];
      if (v["be_name"] != cfg_.backend) continue;
      Server s;
      s.name = v["srv_name"];
      s.addr = v["srv_addr"];
      unsigned port = 0;
      std::from_chars(v["srv_port"].data(), v["srv_port"].data() + v["srv_port"].size(), port);
      s.port = static_cast<uint16_t>(port);
      std::from_chars(v["srv_op_state"].data(), v["srv_op_state"].data() + v["srv_op_state"].size(),
                      s.opState);
      std::from_chars(v["srv_admin_state"].data(), v["srv_admin_state"].data() + v["srv_admin_state"].size(),
                      s.adminState);
      std::from_chars(v["srv_check_state"].data(), v["srv_check_state"].data() + v["srv_check_state"].size(),
                      s.checkState);
      if (cfg_.servers.empty() ||
          std::find(cfg_.servers.begin(), cfg_.servers.end(), s.name) != cfg_.servers.end()) {
        servers.push_back(s);
      }
    }
    if (servers.empty()) {
      return makeError("haproxy: backend '" + cfg_.backend + "' has no server ferry may use",
                       cfg_.servers.empty() ? "add servers to the backend in haproxy.cfg"
                                            : "check `servers` in the agent's config against haproxy.cfg");
    }
    return servers;
  }

  Result<std::vector<StatRow>> stat() const {
    auto out = command("show stat");
    if (!out.ok()) return out.error();
    std::istringstream in(*out);
    std::string line;
    std::vector<std::string> columns;
    std::vector<StatRow> rows;
    while (std::getline(in, line)) {
      if (line.rfind("# ", 0) == 0) {
        columns = split(line.substr(2), ',');
        continue;
      }
      if (line.empty() || columns.empty()) continue;
      const auto values = split(line, ',');
      StatRow row;
      for (size_t i = 0; i < columns.size() && i < values.size(); ++i) row[columns[i]] = values[i];
      if (row["pxname"] == cfg_.backend) rows.push_back(std::move(row));
    }
    return rows;
  }

  Result<StatRow> serverStats(const std::string& server) const {
    auto rows = stat();
    if (!rows.ok()) return rows.error();
    for (auto& row : *rows) {
      if (row["svname"] == server) return row;
    }
    return makeError("haproxy: 'show stat' has no row for " + cfg_.backend + "/" + server);
  }

  Result<StatRow> backendStats() const { return serverStats("BACKEND"); }

  void fillDeltas(const SwitchPlan& plan, SwitchReport& r) const {
    auto now = backendStats();
    auto it = baselines_.find(plan.migration_id);
    if (!now.ok() || it == baselines_.end()) return;
    auto delta = [&](const char* key) {
      const uint64_t a = num(it->second, key);
      const uint64_t b = num(*now, key);
      return b > a ? b - a : 0;
    };
    r.retried = delta("wretr") + delta("wredis");
    r.failed = delta("hrsp_5xx");
  }

  // ---- servers -----------------------------------------------------------------
  static const Server* findByAddress(const std::vector<Server>& servers,
                                     const std::pair<std::string, uint16_t>& addr,
                                     const std::string& except) {
    const Server* found = nullptr;
    for (const auto& s : servers) {
      if (s.name == except || s.addr != addr.first || s.port != addr.second) continue;
      // Prefer a server that takes traffic over one in maintenance.
      if (found == nullptr || (found->maint() && !s.maint())) found = &s;
    }
    return found;
  }

  const Server* spareSlot(const std::vector<Server>& servers, const std::string& except) const {
    for (const auto& s : servers) {
      if (s.name != except && s.maint()) return &s;
    }
    return nullptr;
  }

  static std::string describe(const std::vector<Server>& servers) {
    std::string out;
    for (const auto& s : servers) {
      if (!out.empty()) out += ", ";
      out += s.name + "=" + s.addr + ":" + std::to_string(s.port) + " (" + s.state() + ")";
    }
    return out;
  }

  Status verify(const std::string& server, const std::pair<std::string, uint16_t>& addr,
                const std::string& state) const {
    auto servers = serversState();
    if (!servers.ok()) return servers.error();
    for (const auto& s : *servers) {
      if (s.name != server) continue;
      if (s.addr != addr.first || s.port != addr.second || s.state() != state) {
        return makeError(
            "haproxy: " + cfg_.backend + "/" + server + " is " + s.addr + ":" + std::to_string(s.port) +
                " (" + s.state() + ") after the change, not " + addr.first + ":" +
                std::to_string(addr.second) + " (" + state + ")",
            "another process may be changing this backend; check `show servers state " + cfg_.backend + "`");
      }
      return okStatus();
    }
    return makeError("haproxy: server " + cfg_.backend + "/" + server + " disappeared",
                     "was HAProxy reloaded during the switch-over? repeat the step");
  }

  HaproxyConfig cfg_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, StatRow> baselines_;  // migration id -> backend counters at prepare
};

}  // namespace

Result<std::unique_ptr<Driver>> makeHaproxyDriver(HaproxyConfig config) {
  if (config.socket.empty())
    return makeError("haproxy service '" + config.service + "': stats_socket is not set",
                     "point it at HAProxy's `stats socket ... level admin`");
  if (config.backend.empty())
    return makeError("haproxy service '" + config.service + "': haproxy_backend is not set",
                     "the name of the backend in haproxy.cfg");
  return std::unique_ptr<Driver>(std::make_unique<HaproxyDriver>(std::move(config)));
}

}  // namespace ferry::switchover
