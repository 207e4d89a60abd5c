// Component loggers on top of spdlog. Each line carries the component name; code
// that talks to a peer adds the peer's name to its messages.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace ferry::log {

// Sets the level for all ferry loggers ("trace".."off"); unknown names keep "info".
void setLevel(const std::string& level);

// Loggers for the fixed set of components: "node", "link", "sync", "checkpoint",
// "lab", "bench", "cli". Created on first use; all write to stderr.
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace ferry::log
