#include "ferry/node/config.h"

#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdlib>
#include <functional>
#include <map>
#include <sstream>

#include "ferry/base/files.h"

namespace ferry::node {
namespace {

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// "1500ms", "2s", "1m" or a bare number of milliseconds.
bool parseDuration(const std::string& v, std::chrono::milliseconds& out) {
  std::int64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || n < 0) return false;
  std::string unit(ptr, v.data() + v.size());
  if (unit.empty() || unit == "ms")
    out = std::chrono::milliseconds(n);
  else if (unit == "s")
    out = std::chrono::seconds(n);
  else if (unit == "m")
    out = std::chrono::minutes(n);
  else
    return false;
  return true;
}

std::string defaultName() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) return "node";
  return {buf.data()};
}

}  // namespace

Result<NodeConfig> parseConfig(const std::string& text, const std::string& origin) {
  NodeConfig c;
  c.name = defaultName();
  using Setter = std::function<bool(const std::string&)>;
  auto duration = [](std::chrono::milliseconds& field) {
    return [&field](const std::string& v) { return parseDuration(v, field); };
  };
  const std::map<std::string, Setter> setters = {
      {"name",
       [&](const std::string& v) {
         c.name = v;
         return !v.empty();
       }},
      {"listen",
       [&](const std::string& v) {
         c.listen = v;
         return v.rfind("tcp://", 0) == 0;
       }},
      {"peer",
       [&](const std::string& v) {
         c.peer = v;
         return v.empty() || v.rfind("tcp://", 0) == 0;
       }},
      {"key_dir",
       [&](const std::string& v) {
         c.key_dir = v;
         return !v.empty();
       }},
      {"data_dir",
       [&](const std::string& v) {
         c.data_dir = v;
         return std::filesystem::path(v).is_absolute();
       }},
      {"state_dir",
       [&](const std::string& v) {
         c.state_dir = v;
         return std::filesystem::path(v).is_absolute();
       }},
      {"control_socket",
       [&](const std::string& v) {
         c.control_socket = v;
         return !v.empty();
       }},
      {"role",
       [&](const std::string& v) {
         c.role = v;
         return v == "active" || v == "standby";
       }},
      {"heartbeat", duration(c.heartbeat)},
      {"peer_timeout", duration(c.peer_timeout)},
      {"scan_interval", duration(c.scan_interval)},
      {"log_level",
       [&](const std::string& v) {
         c.log_level = v;
         return !v.empty();
       }},
      {"shared_storage",
       [&](const std::string& v) {
         c.shared_storage = v == "on";
         return v == "on" || v == "off";
       }},
      {"track_writes",
       [&](const std::string& v) {
         c.track_writes = v == "on";
         return v == "on" || v == "off";
       }},
      {"staging_dir",
       [&](const std::string& v) {
         c.staging_dir = v;
         return std::filesystem::path(v).is_absolute();
       }},
      {"podman",
       [&](const std::string& v) {
         c.podman = v;
         return !v.empty();
       }},
      {"podman_args",
       [&](const std::string& v) {
         c.podman_args = v;
         return true;
       }},
      {"podman_api",
       [&](const std::string& v) {
         c.podman_api = v;
         return v == "auto" || v == "off" || std::filesystem::path(v).is_absolute();
       }},
      {"health_url",
       [&](const std::string& v) {
         c.health_url = v;
         return v.empty() || v.rfind("http://", 0) == 0;
       }},
      {"health_timeout", duration(c.health_timeout)},
      {"prepare_timeout", duration(c.prepare_timeout)},
      {"presync_timeout", duration(c.presync_timeout)},
      {"checkpoint_timeout", duration(c.checkpoint_timeout)},
      {"restore_timeout", duration(c.restore_timeout)},
      {"commit_timeout", duration(c.commit_timeout)},
      {"switch",
       [&](const std::string& v) {
         c.switch_driver = v;
         return v == "none" || v == "proxy" || v == "haproxy" || v == "nginx" || v == "exec";
       }},
      {"switch_agent",
       [&](const std::string& v) {
         c.switch_agent = v;
         return v.rfind("tcp://", 0) == 0;
       }},
      {"switch_key_dir",
       [&](const std::string& v) {
         c.switch_key_dir = v;
         return std::filesystem::path(v).is_absolute();
       }},
      {"switch_agent_name",
       [&](const std::string& v) {
         c.switch_agent_name = v;
         return !v.empty();
       }},
      {"switch_service",
       [&](const std::string& v) {
         c.switch_service = v;
         return !v.empty();
       }},
      {"switch_port",
       [&](const std::string& v) {
         char* end = nullptr;
         const unsigned long port = std::strtoul(v.c_str(), &end, 10);
         c.switch_port = static_cast<std::uint16_t>(port);
         return !v.empty() && *end == '\0' && port > 0 && port < 65536;
       }},
      {"switch_drain_timeout", duration(c.switch_drain_timeout)},
      {"switch_hold_timeout", duration(c.switch_hold_timeout)},
      {"switch_exec",
       [&](const std::string& v) {
         c.switch_exec = v;
         return true;
       }},
      {"switch_exec_timeout", duration(c.switch_exec_timeout)},
  };
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    line = trim(line);
    if (line.empty()) continue;
    auto eq = line.find('=');
    std::string where = origin + ":" + std::to_string(lineno);
    if (eq == std::string::npos) {
      return makeError(where + ": expected 'key = value', got '" + line + "'");
    }
    std::string key = trim(line.substr(0, eq));
    std::string value = trim(line.substr(eq + 1));
    auto it = setters.find(key);
    if (it == setters.end()) {
      return makeError(where + ": unknown setting '" + key + "'",
                       "see deploy/node/ferry-node.conf for the settings and their defaults");
    }
    if (!it->second(value)) {
      return makeError(where + ": bad value '" + value + "' for '" + key + "'",
                       "see deploy/node/ferry-node.conf for the accepted values");
    }
  }
  if (c.peer_timeout <= c.heartbeat) {
    return makeError(origin + ": peer_timeout must be longer than heartbeat");
  }
  if (c.staging_dir.empty()) c.staging_dir = c.state_dir / "staging";
  return c;
}

Result<NodeConfig> loadConfig(const std::filesystem::path& path, bool missing_ok) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (missing_ok) return parseConfig("", path.string());
    return makeError("config file " + path.string() + " does not exist",
                     "create it (see deploy/node/ferry-node.conf) or pass --config");
  }
  auto text = readFile(path);
  if (!text) return text.error();
  return parseConfig(*text, path.string());
}

}  // namespace ferry::node
