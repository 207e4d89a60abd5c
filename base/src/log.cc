#include "ferry/base/log.h"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace ferry::log {
namespace {

std::mutex g_mutex;  // guards creation of loggers
spdlog::level::level_enum g_level = spdlog::level::info;

}  // namespace

void setLevel(const std::string& level) {
  std::lock_guard lock(g_mutex);
  auto parsed = spdlog::level::from_str(level);
  g_level = (parsed == spdlog::level::off && level != "off") ? spdlog::level::info : parsed;
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->set_level(g_level); });
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  std::lock_guard lock(g_mutex);
  auto logger = spdlog::get(component);
  if (logger) return logger;
  logger = spdlog::stderr_color_mt(component);
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v");
  logger->set_level(g_level);
  return logger;
}

}  // namespace ferry::log
