// Validation of the switch-over control messages: everything the agent (or the node,
// for a reply) must refuse before acting on a received SwitchMessage.
#include "ferry/protocol/switch_messages.h"

#include <algorithm>
#include <string_view>

#include "text_checks.h"

namespace ferry::protocol {

namespace {

using B = wire::SwitchMessage::Body::Which;

constexpr uint32_t kMaxTimeoutMs = 10 * 60 * 1000;  // a switch-over step bounded by minutes, not hours

bool isControl(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}

using detail::checkText;

// One line of printable text (ids, names that end up in logs).
Status checkLine(capnp::Text::Reader text, const char* field, size_t maxBytes, bool required) {
  FERRY_TRY(checkText(text, field, maxBytes, required));
  std::string_view view(text.cStr(), text.size());
  if (std::any_of(view.begin(), view.end(), isControl))
    return makeError(std::string(field) + " contains a control character");
  return okStatus();
}

Status checkServiceName(capnp::Text::Reader text, const char* field) {
  FERRY_TRY(checkText(text, field, 64, true));
  std::string_view view(text.cStr(), text.size());
  const bool ok = std::all_of(view.begin(), view.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
  if (!ok) return makeError(std::string(field) + " may hold only [A-Za-z0-9._-]");
  return okStatus();
}

Status checkEndpoint(wire::SwitchEndpoint::Reader e, const char* field) {
  auto host = e.getHost();
  FERRY_TRY(checkText(host, field, 253, true));
  std::string_view view(host.cStr(), host.size());
  const bool ok = std::all_of(view.begin(), view.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || c == ':';
  });
  if (!ok) return makeError(std::string(field) + " host may hold only [A-Za-z0-9._:-]");
  if (e.getPort() == 0) return makeError(std::string(field) + " port is 0");
  return okStatus();
}

Status checkTimeout(uint32_t ms, const char* field) {
  if (ms == 0) return makeError(std::string(field) + " is 0");
  if (ms > kMaxTimeoutMs)
    return makeError(std::string(field) + " " + std::to_string(ms) + " ms is over 10 minutes");
  return okStatus();
}

Status checkRequest(wire::SwitchRequest::Reader r) {
  switch (r.getStep()) {
    case wire::SwitchStep::PREPARE:
    case wire::SwitchStep::COMMIT:
    case wire::SwitchStep::ROLLBACK:
      break;
    case wire::SwitchStep::UNSPECIFIED:
    default:
      return makeError("request.step " + switchStepName(r.getStep()) + " is not one this agent knows",
                       "the node may run a newer ferry; upgrade the agent");
  }
  switch (r.getDriver()) {
    case wire::SwitchDriver::PROXY:
    case wire::SwitchDriver::HAPROXY:
    case wire::SwitchDriver::NGINX:
      break;
    case wire::SwitchDriver::UNSPECIFIED:
    default:
      return makeError("request.driver " + switchDriverName(r.getDriver()) + " is not one this agent knows",
                       "the node may run a newer ferry; upgrade the agent");
  }
  FERRY_TRY(checkLine(r.getNodeId(), "request.nodeId", 255, false));
  if (!r.hasPlan()) return makeError("request.plan is missing");
  auto p = r.getPlan();
  FERRY_TRY(checkLine(p.getMigrationId(), "plan.migrationId", 128, true));
  FERRY_TRY(checkServiceName(p.getService(), "plan.service"));
  if (!p.hasSource()) return makeError("plan.source is missing");
  if (!p.hasTarget()) return makeError("plan.target is missing");
  FERRY_TRY(checkEndpoint(p.getSource(), "plan.source"));
  FERRY_TRY(checkEndpoint(p.getTarget(), "plan.target"));
  FERRY_TRY(checkTimeout(p.getDrainTimeoutMs(), "plan.drainTimeoutMs"));
  return checkTimeout(p.getHoldTimeoutMs(), "plan.holdTimeoutMs");
}

Status checkReply(wire::SwitchReply::Reader r) {
  FERRY_TRY(checkText(r.getErrorWhat(), "reply.errorWhat", 4096, false));
  FERRY_TRY(checkText(r.getErrorHint(), "reply.errorHint", 4096, false));
  if (!r.getOk() && r.getErrorWhat().size() == 0) return makeError("reply is not ok but says nothing");
  auto rep = r.getReport();
  FERRY_TRY(checkLine(rep.getDriver(), "report.driver", 64, false));
  FERRY_TRY(checkLine(rep.getStep(), "report.step", 64, false));
  FERRY_TRY(checkLine(rep.getService(), "report.service", 64, false));
  FERRY_TRY(checkLine(rep.getMigrationId(), "report.migrationId", 128, false));
  FERRY_TRY(checkText(rep.getNote(), "report.note", 4096, false));
  if (rep.getSteps().size() > 64) return makeError("report.steps has more than 64 entries");
  for (auto s : rep.getSteps()) FERRY_TRY(checkLine(s.getName(), "report.steps.name", 64, true));
  return okStatus();
}

Status checkMessage(wire::SwitchMessage::Reader m) {
  if (m.getProtocolVersion() == 0) return makeError("protocolVersion is 0");
  if (m.getRequestId() == 0) return makeError("requestId is 0");
  auto body = m.getBody();
  switch (body.which()) {
    case B::REQUEST:
      return checkRequest(body.getRequest());
    case B::REPLY:
      return checkReply(body.getReply());
    case B::UNSPECIFIED:
    default:
      break;
  }
  return makeError("switch message body " + std::to_string(static_cast<unsigned>(body.which())) +
                       " is not one this build knows",
                   "the peer may run a newer ferry; run the same version on the nodes and the agent");
}

}  // namespace

std::string switchStepName(wire::SwitchStep step) {
  switch (step) {
    case wire::SwitchStep::PREPARE:
      return "prepare";
    case wire::SwitchStep::COMMIT:
      return "commit";
    case wire::SwitchStep::ROLLBACK:
      return "rollback";
    case wire::SwitchStep::UNSPECIFIED:
    default:
      break;
  }
  return "unknown(" + std::to_string(static_cast<unsigned>(step)) + ")";
}

std::string switchDriverName(wire::SwitchDriver driver) {
  switch (driver) {
    case wire::SwitchDriver::PROXY:
      return "proxy";
    case wire::SwitchDriver::HAPROXY:
      return "haproxy";
    case wire::SwitchDriver::NGINX:
      return "nginx";
    case wire::SwitchDriver::UNSPECIFIED:
    default:
      break;
  }
  return "unknown(" + std::to_string(static_cast<unsigned>(driver)) + ")";
}

Status validateSwitchMessage(wire::SwitchMessage::Reader message) {
  return readGuarded("validating a switch-over message", [&]() -> Status {
    Status s = checkMessage(message);
    if (!s.ok()) return makeError("switch-over message refused: " + s.error().what, s.error().hint);
    return okStatus();
  });
}

Status validateSwitchFrame(const DecodedFrame& frame) {
  return readGuarded("validating a switch-over message",
                     [&]() -> Status { return validateSwitchMessage(frame.root<wire::SwitchMessage>()); });
}

}  // namespace ferry::protocol
