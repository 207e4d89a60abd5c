// The node daemon: always on, one per host. It owns the peer link, and either the
// mirror of the data directory (role "active": it sends block deltas) or the replica
// (role "standby": it applies them). The local CLI reaches it on the control socket.
//
// Threads: the engine thread owns the mirror/replica and drives the link; the
// control thread answers the CLI from snapshots the engine publishes, and waits
// (with deadlines) for the engine when a request needs it (flush, verify).
#pragma once

#include <memory>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"
#include "ferry/node/config.h"
#include "ferry/node/control.h"

namespace ferry::node {

class Node {
 public:
  // Loads keys, opens the data directory, starts the link, the engine and the
  // control socket. Fails with a clear error when keys are missing or unpaired,
  // or the data directory cannot be used.
  static Result<std::unique_ptr<Node>> start(NodeConfig config);
  ~Node();  // stops the engine, the link and the control socket
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Answers one control request ({"cmd": "status" | "flush" | "verify" | "migrate" |
  // "migrations" | "migration" | "resolve", ...}); long ones stream events first.
  nlohmann::json handle(const nlohmann::json& request, const ControlEmit& emit);

 private:
  struct Impl;
  explicit Node(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::node
