// The node daemon's configuration: a small `key = value` file with documented
// defaults (deploy/node/ferry-node.conf is the annotated example).
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "ferry/base/error.h"

namespace ferry::node {

struct NodeConfig {
  std::string name;                                    // this node's name (default: hostname)
  std::string listen = "tcp://0.0.0.0:7700";           // CURVE-only peer endpoint we bind
  std::string peer;                                    // peer endpoint we connect to, e.g. tcp://b:7700
  std::filesystem::path key_dir = "/etc/ferry";        // node.key (0600), node.pub, peers/*.pub
  std::filesystem::path data_dir = "/srv/ferry/ref";   // the service's data directory to mirror
  std::filesystem::path state_dir = "/var/lib/ferry";  // replica state, journal
  std::filesystem::path control_socket = "/run/ferry/node.sock";  // local CLI, root only
  std::string role = "standby";                                   // initial role: active | standby
  std::chrono::milliseconds heartbeat{1000};                      // application heartbeat interval
  std::chrono::milliseconds peer_timeout{4000};                   // peer declared dead after this silence
  std::chrono::milliseconds scan_interval{30000};                 // background size/mtime safety walk
  std::string log_level = "info";
  bool track_writes = true;     // eBPF write tracking: rounds re-read only written blocks (sync/README.md)
  bool shared_storage = false;  // data_dir is one shared storage on both hosts: nothing to mirror

  // ---- migration (`ferry migrate`) ----
  std::filesystem::path staging_dir;  // checkpoint archives in flight (0700); default state_dir/staging
  std::string podman = "podman";      // the podman program
  std::string podman_args;            // global podman flags, e.g. "--runtime runc --cgroup-manager cgroupfs"
  // Podman's REST API for inspect/exists/images/restore/remove: "auto" (the socket below
  // when it answers at start, else the CLI), "off", or a socket path (must answer).
  std::string podman_api = "auto";
  std::string health_url;  // the service answers here when it is up (empty: containers running)
  std::chrono::milliseconds health_timeout{30000};       // restored service must answer within this
  std::chrono::milliseconds prepare_timeout{30000};      // the peer's answer to a migration request
  std::chrono::milliseconds presync_timeout{60000};      // the standby catches up before the freeze
  std::chrono::milliseconds checkpoint_timeout{120000};  // one container's dump
  std::chrono::milliseconds restore_timeout{120000};     // one container's restore
  std::chrono::milliseconds commit_timeout{
      180000};                         // source waits this long for the target's answer, then "in doubt"
  std::string switch_driver = "none";  // traffic switch-over: none | proxy | haproxy | nginx | exec
  std::string switch_agent = "tcp://lb:7400";  // proxy/haproxy/nginx: the switch agent on the load balancer
  std::filesystem::path switch_key_dir =
      "/etc/ferry/switch";  // the agent's public key, paired as switch_agent_name
  std::string switch_agent_name = "lb";
  std::string switch_service = "ref";  // the service's name on the agent ([service NAME] in its lb.conf)
  std::uint16_t switch_port = 80;      // the service's port on each host; endpoints are "<node name>:<port>"
  std::chrono::milliseconds switch_drain_timeout{
      2000};  // in-flight requests at the source may finish this long
  std::chrono::milliseconds switch_hold_timeout{10000};  // held requests wait at most this long (then 503)
  std::string switch_exec;                               // exec: the command (words split on spaces)
  std::chrono::milliseconds switch_exec_timeout{30000};
};

// Parses the text of a config file. Unknown keys and malformed values are errors
// naming the line, so a typo never silently falls back to a default.
Result<NodeConfig> parseConfig(const std::string& text, const std::string& origin = "config");

// Reads and parses a file; a missing file gives the defaults only when
// `missing_ok` is true.
Result<NodeConfig> loadConfig(const std::filesystem::path& path, bool missing_ok = false);

}  // namespace ferry::node
