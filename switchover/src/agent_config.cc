// The switch agent's config file.
#include <algorithm>
#include <charconv>
#include <functional>
#include <map>
#include <sstream>

#include "ferry/base/files.h"
#include "ferry/switchover/agent.h"

namespace ferry::switchover {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// "1500ms", "2s", "1m" or a bare number of milliseconds.
bool parseDuration(const std::string& v, Millis& out) {
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || n < 0) return false;
  const std::string unit(ptr, v.data() + v.size());
  if (unit.empty() || unit == "ms") {
    out = Millis(n);
  } else if (unit == "s") {
    out = std::chrono::seconds(n);
  } else if (unit == "m") {
    out = std::chrono::minutes(n);
  } else {
    return false;
  }
  return out > Millis(0);
}

bool parseCount(const std::string& v, size_t& out) {
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc() && ptr == v.data() + v.size() && out > 0;
}

bool validName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

using Setter = std::function<bool(const std::string&)>;

std::map<std::string, Setter> globalSetters(AgentConfig& c) {
  return {
      {"listen",
       [&](const std::string& v) {
         c.listen = v;
         return v.rfind("tcp://", 0) == 0;
       }},
      {"key_dir",
       [&](const std::string& v) {
         c.key_dir = v;
         return !v.empty();
       }},
      {"state_dir",
       [&](const std::string& v) {
         c.state_dir = v;
         return std::filesystem::path(v).is_absolute();
       }},
      {"hold_lease", [&](const std::string& v) { return parseDuration(v, c.hold_lease); }},
      {"max_queued", [&](const std::string& v) { return parseCount(v, c.max_queued); }},
      {"log_level",
       [&](const std::string& v) {
         c.log_level = v;
         return !v.empty();
       }},
  };
}

std::map<std::string, Setter> serviceSetters(AgentServiceConfig& s) {
  auto endpoint = [](Endpoint& field) {
    return [&field](const std::string& v) {
      auto e = parseEndpoint(v);
      if (!e.ok()) return false;
      field = *e;
      return true;
    };
  };
  auto duration = [](Millis& field) {
    return [&field](const std::string& v) { return parseDuration(v, field); };
  };
  auto count = [](size_t& field) { return [&field](const std::string& v) { return parseCount(v, field); }; };
  auto text = [](std::string& field) {
    return [&field](const std::string& v) {
      field = v;
      return !v.empty();
    };
  };
  return {
      {"driver",
       [&](const std::string& v) {
         s.driver = v;
         return v == "proxy" || v == "haproxy" || v == "nginx";
       }},
      {"health_path",
       [&](const std::string& v) {
         s.health_path = v == "none" ? "" : v;
         return v == "none" || (!v.empty() && v.front() == '/' && v.find(' ') == std::string::npos);
       }},
      // proxy
      {"front", endpoint(s.proxy.front)},
      {"backend", endpoint(s.proxy.backend)},
      {"mode",
       [&](const std::string& v) {
         s.proxy.mode = v == "tcp" ? ProxyMode::kTcp : ProxyMode::kHttp;
         return v == "http" || v == "tcp";
       }},
      {"max_held", count(s.proxy.max_held)},
      {"max_connections", count(s.proxy.max_connections)},
      {"buffer_bytes", count(s.proxy.buffer_bytes)},
      {"retry_bytes", count(s.proxy.retry_bytes)},
      {"max_attempts",
       [&](const std::string& v) {
         size_t n = 0;
         if (!parseCount(v, n) || n > 10) return false;
         s.proxy.max_attempts = static_cast<int>(n);
         return true;
       }},
      {"connect_timeout", duration(s.proxy.connect_timeout)},
      {"request_timeout", duration(s.proxy.request_timeout)},
      {"response_timeout", duration(s.proxy.response_timeout)},
      {"idle_timeout", duration(s.proxy.idle_timeout)},
      // haproxy
      {"stats_socket", text(s.haproxy.socket)},
      {"haproxy_backend", text(s.haproxy.backend)},
      {"servers",
       [&](const std::string& v) {
         std::istringstream in(v);
         std::string name;
         s.haproxy.servers.clear();
         while (in >> name) s.haproxy.servers.push_back(name);
         return !s.haproxy.servers.empty();
       }},
      {"command_timeout", duration(s.haproxy.command_timeout)},
      // nginx
      {"nginx", text(s.nginx.nginx)},
      {"nginx_conf", text(s.nginx.conf)},
      {"pid_file", text(s.nginx.pid_file)},
      {"upstream_file", text(s.nginx.upstream_file)},
      {"upstream_name", text(s.nginx.upstream_name)},
      {"server_params",
       [&](const std::string& v) {
         s.nginx.server_params = v == "none" ? "" : v;
         return v.find_first_of(";{}") == std::string::npos;
       }},
      {"reload_timeout", duration(s.nginx.reload_timeout)},
  };
}

// Keys that belong to one driver only.
const std::map<std::string, std::string>& driverOfKey() {
  static const std::map<std::string, std::string> m = {
      {"front", "proxy"},
      {"backend", "proxy"},
      {"mode", "proxy"},
      {"max_held", "proxy"},
      {"max_connections", "proxy"},
      {"buffer_bytes", "proxy"},
      {"retry_bytes", "proxy"},
      {"max_attempts", "proxy"},
      {"connect_timeout", "proxy"},
      {"request_timeout", "proxy"},
      {"response_timeout", "proxy"},
      {"idle_timeout", "proxy"},
      {"stats_socket", "haproxy"},
      {"haproxy_backend", "haproxy"},
      {"servers", "haproxy"},
      {"command_timeout", "haproxy"},
      {"nginx", "nginx"},
      {"nginx_conf", "nginx"},
      {"pid_file", "nginx"},
      {"upstream_file", "nginx"},
      {"upstream_name", "nginx"},
      {"server_params", "nginx"},
      {"reload_timeout", "nginx"},
  };
  return m;
}

Status finishService(AgentServiceConfig& s, const std::string& where, const std::vector<std::string>& keys) {
  if (s.driver.empty())
    return makeError(where + ": service '" + s.name + "' has no `driver`", "proxy, haproxy or nginx");
  for (const auto& k : keys) {
    auto it = driverOfKey().find(k);
    if (it != driverOfKey().end() && it->second != s.driver) {
      return makeError(where + ": '" + k + "' is a setting of the " + it->second + " driver, but service '" +
                       s.name + "' uses " + s.driver);
    }
  }
  s.proxy.name = s.name;
  s.haproxy.service = s.name;
  s.haproxy.health_path = s.health_path;
  s.nginx.service = s.name;
  s.nginx.health_path = s.health_path;
  if (s.driver == "proxy" && s.proxy.backend.port == 0)
    return makeError(where + ": proxy service '" + s.name +
                     "' needs `backend = HOST:PORT` (where traffic goes at start)");
  if (s.driver == "haproxy" && (s.haproxy.socket.empty() || s.haproxy.backend.empty()))
    return makeError(where + ": haproxy service '" + s.name + "' needs `stats_socket` and `haproxy_backend`");
  if (s.driver == "nginx" && (s.nginx.conf.empty() || s.nginx.pid_file.empty() ||
                              s.nginx.upstream_file.empty() || s.nginx.upstream_name.empty())) {
    return makeError(where + ": nginx service '" + s.name +
                     "' needs `nginx_conf`, `pid_file`, `upstream_file` and `upstream_name`");
  }
  return okStatus();
}

}  // namespace

Result<AgentConfig> parseAgentConfig(const std::string& text, const std::string& origin) {
  AgentConfig c;
  auto global = globalSetters(c);
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  AgentServiceConfig* current = nullptr;
  std::map<std::string, Setter> setters;
  std::vector<std::string> keys;
  std::string sectionAt;
  // Sections are appended to c.services; pointers into it stay valid because it is
  // reserved up front for every section header in the text.
  c.services.reserve(static_cast<size_t>(std::count(text.begin(), text.end(), '[')));
  while (std::getline(in, line)) {
    ++lineno;
    const auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    const std::string where = origin + ":" + std::to_string(lineno);
    if (line.front() == '[') {
      if (current != nullptr) FERRY_TRY(finishService(*current, sectionAt, keys));
      if (line.back() != ']' || line.rfind("[service ", 0) != 0)
        return makeError(where + ": expected '[service NAME]', got '" + line + "'");
      const std::string name = trim(line.substr(9, line.size() - 10));
      if (!validName(name))
        return makeError(where + ": service name '" + name + "' is not valid",
                         "1..64 characters of [A-Za-z0-9._-]");
      for (const auto& s : c.services) {
        if (s.name == name) return makeError(where + ": service '" + name + "' is configured twice");
      }
      c.services.emplace_back();
      current = &c.services.back();
      current->name = name;
      setters = serviceSetters(*current);
      keys.clear();
      sectionAt = where;
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) return makeError(where + ": expected 'key = value', got '" + line + "'");
    const std::string key = trim(line.substr(0, eq));
    const std::string value = trim(line.substr(eq + 1));
    auto& table = current == nullptr ? global : setters;
    auto it = table.find(key);
    if (it == table.end()) {
      return makeError(where + ": unknown setting '" + key + "'" +
                           (current == nullptr ? "" : " in service '" + current->name + "'"),
                       "see deploy/switchover/agent.conf for the settings");
    }
    if (!it->second(value)) {
      return makeError(where + ": bad value '" + value + "' for '" + key + "'",
                       "see deploy/switchover/agent.conf for the accepted values");
    }
    if (current != nullptr) keys.push_back(key);
  }
  if (current != nullptr) FERRY_TRY(finishService(*current, sectionAt, keys));
  if (c.services.empty()) {
    return makeError(origin + ": no [service NAME] section",
                     "the agent serves at least one service; see deploy/switchover/agent.conf");
  }
  return c;
}

Result<AgentConfig> loadAgentConfig(const std::filesystem::path& path) {
  auto text = readFile(path);
  if (!text.ok()) {
    return makeError("cannot read the agent config " + path.string() + ": " + text.error().what,
                     "write one (see deploy/switchover/agent.conf) or pass --config");
  }
  return parseAgentConfig(*text, path.string());
}

}  // namespace ferry::switchover
