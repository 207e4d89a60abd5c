// Endpoint, plan and report: parsing, checks, JSON.
#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "ferry/switchover/driver.h"

namespace ferry::switchover {

namespace {

bool validServiceName(const std::string& name) {
  return !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

bool validHost(const std::string& host) {
  return !host.empty() && host.size() <= 253 && std::all_of(host.begin(), host.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == ':';
  });
}

}  // namespace

std::string Endpoint::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Result<Endpoint> parseEndpoint(const std::string& text) {
  Endpoint e;
  std::string portText;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return makeError("endpoint '" + text + "' is not [ADDRESS]:PORT", "e.g. [::1]:80");
    e.host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos || colon == 0)
      return makeError("endpoint '" + text + "' has no port", "write HOST:PORT, e.g. a:80 or 10.231.0.11:80");
    e.host = text.substr(0, colon);
    portText = text.substr(colon + 1);
    if (e.host.find(':') != std::string::npos)
      return makeError("endpoint '" + text + "': an IPv6 address needs brackets", "e.g. [fd00::1]:80");
  }
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (portText.empty() || ec != std::errc() || ptr != portText.data() + portText.size() || port > 65535)
    return makeError("endpoint '" + text + "': port '" + portText + "' is not a number 0..65535");
  e.port = static_cast<uint16_t>(port);
  if (!validHost(e.host)) return makeError("endpoint '" + text + "': host may hold only [A-Za-z0-9._:-]");
  return e;
}

Status validatePlan(const SwitchPlan& plan) {
  if (plan.migration_id.empty() || plan.migration_id.size() > 128 ||
      std::any_of(plan.migration_id.begin(), plan.migration_id.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; })) {
    return makeError("switch-over plan: migration id '" + plan.migration_id +
                     "' must be 1..128 printable bytes");
  }
  if (!validServiceName(plan.service)) {
    return makeError("switch-over plan: service name '" + plan.service + "' is not valid",
                     "1..64 characters of [A-Za-z0-9._-], as named in the agent's config");
  }
  for (const auto* e : {&plan.source, &plan.target}) {
    const char* which = e == &plan.source ? "source" : "target";
    if (!validHost(e->host) || e->port == 0) {
      return makeError(std::string("switch-over plan: ") + which + " '" + e->str() + "' is not HOST:PORT",
                       "the backend as the load balancer reaches it, e.g. a:80");
    }
  }
  if (plan.source == plan.target)
    return makeError("switch-over plan: source and target are both " + plan.source.str());
  constexpr Millis kMax{10 * 60 * 1000};
  for (const auto& [name, value] :
       {std::pair{"drain_timeout", plan.drain_timeout}, std::pair{"hold_timeout", plan.hold_timeout}}) {
    if (value <= Millis(0) || value > kMax) {
      return makeError(std::string("switch-over plan: ") + name + " of " + std::to_string(value.count()) +
                       " ms is outside 1 ms .. 10 min");
    }
  }
  return okStatus();
}

nlohmann::json SwitchReport::toJson() const {
  nlohmann::json j{{"driver", driver},
                   {"step", step},
                   {"service", service},
                   {"migration_id", migration_id},
                   {"held", held},
                   {"released", released},
                   {"max_hold_ms", max_hold_ms},
                   {"retried", retried},
                   {"refused", refused},
                   {"failed", failed},
                   {"drained", drained},
                   {"in_flight_left", in_flight_left},
                   {"note", note}};
  nlohmann::json timings = nlohmann::json::object();
  for (const auto& s : steps) timings[s.name + "_ms"] = s.took.count();
  j["timings"] = timings;
  return j;
}

std::string SwitchReport::summary() const {
  std::string out = driver + " " + step + " of '" + service + "' (" + migration_id + "):";
  if (step == "prepare") {
    out += " drained " + std::to_string(drained) + ", still in flight " + std::to_string(in_flight_left);
  } else {
    out += " held " + std::to_string(held) + ", released " + std::to_string(released) + " (longest " +
           std::to_string(max_hold_ms) + " ms), retried " + std::to_string(retried) + ", refused " +
           std::to_string(refused) + ", failed " + std::to_string(failed);
  }
  for (const auto& s : steps) out += ", " + s.name + " " + std::to_string(s.took.count()) + " ms";
  if (!note.empty()) out += " — " + note;
  return out;
}

}  // namespace ferry::switchover
