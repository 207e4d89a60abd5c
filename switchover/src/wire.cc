#include "wire.h"

#include <capnp/message.h>

#include "ferry/protocol/switch_messages.h"

namespace ferry::switchover::wirecodec {

namespace proto = ferry::protocol;
namespace wire = ferry::protocol::wire;

namespace {

std::string text(capnp::Text::Reader t) {
  return std::string(t.cStr(), t.size());
}

Result<wire::SwitchDriver> driverEnum(const std::string& name) {
  if (name == "proxy") return wire::SwitchDriver::PROXY;
  if (name == "haproxy") return wire::SwitchDriver::HAPROXY;
  if (name == "nginx") return wire::SwitchDriver::NGINX;
  return makeError("driver '" + name + "' has no agent on the load balancer", "proxy, haproxy or nginx");
}

wire::SwitchStep stepEnum(Step step) {
  switch (step) {
    case Step::kPrepare:
      return wire::SwitchStep::PREPARE;
    case Step::kCommit:
      return wire::SwitchStep::COMMIT;
    case Step::kRollback:
      return wire::SwitchStep::ROLLBACK;
  }
  return wire::SwitchStep::UNSPECIFIED;
}

void setEndpoint(wire::SwitchEndpoint::Builder b, const Endpoint& e) {
  b.setHost(e.host);
  b.setPort(e.port);
}

Endpoint readEndpoint(wire::SwitchEndpoint::Reader r) {
  return Endpoint{text(r.getHost()), r.getPort()};
}

Status checkVersion(wire::SwitchMessage::Reader m) {
  if (m.getProtocolVersion() < proto::kMinSwitchProtocolVersion ||
      m.getMinProtocolVersion() > proto::kSwitchProtocolVersion) {
    return makeError("switch-over protocol mismatch: the peer speaks " +
                         std::to_string(m.getProtocolVersion()) + " (accepts ≥ " +
                         std::to_string(m.getMinProtocolVersion()) + "), this build " +
                         std::to_string(proto::kSwitchProtocolVersion) + " (accepts ≥ " +
                         std::to_string(proto::kMinSwitchProtocolVersion) + ")",
                     "run the same ferry version on the nodes and the load balancer");
  }
  return okStatus();
}

void header(wire::SwitchMessage::Builder m, uint64_t requestId) {
  m.setProtocolVersion(proto::kSwitchProtocolVersion);
  m.setMinProtocolVersion(proto::kMinSwitchProtocolVersion);
  m.setRequestId(requestId);
}

}  // namespace

std::string stepName(Step step) {
  switch (step) {
    case Step::kPrepare:
      return "prepare";
    case Step::kCommit:
      return "commit";
    case Step::kRollback:
      return "rollback";
  }
  return "unknown";
}

Result<zmq::message_t> encodeRequest(const Request& request) {
  auto driver = driverEnum(request.driver);
  if (!driver.ok()) return driver.error();
  capnp::MallocMessageBuilder b;
  auto m = b.initRoot<wire::SwitchMessage>();
  header(m, request.requestId);
  auto r = m.getBody().initRequest();
  r.setStep(stepEnum(request.step));
  r.setDriver(*driver);
  r.setNodeId(request.nodeId);
  auto p = r.initPlan();
  p.setMigrationId(request.plan.migration_id);
  p.setService(request.plan.service);
  setEndpoint(p.initSource(), request.plan.source);
  setEndpoint(p.initTarget(), request.plan.target);
  p.setDrainTimeoutMs(static_cast<uint32_t>(request.plan.drain_timeout.count()));
  p.setHoldTimeoutMs(static_cast<uint32_t>(request.plan.hold_timeout.count()));
  return proto::encodeFrame(b);
}

zmq::message_t encodeReply(uint64_t requestId, const Result<SwitchReport>& result) {
  capnp::MallocMessageBuilder b;
  auto m = b.initRoot<wire::SwitchMessage>();
  header(m, requestId);
  auto r = m.getBody().initReply();
  r.setOk(result.ok());
  if (!result.ok()) {
    r.setErrorWhat(result.error().what.substr(0, 4096));
    r.setErrorHint(result.error().hint.substr(0, 4096));
    if (result.error().what.empty()) r.setErrorWhat("failed");
    return proto::encodeFrame(b);
  }
  const SwitchReport& rep = *result;
  auto w = r.initReport();
  w.setDriver(rep.driver.substr(0, 64));
  w.setStep(rep.step.substr(0, 64));
  w.setService(rep.service.substr(0, 64));
  w.setMigrationId(rep.migration_id.substr(0, 128));
  w.setHeld(rep.held);
  w.setReleased(rep.released);
  w.setMaxHoldMs(rep.max_hold_ms);
  w.setRetried(rep.retried);
  w.setRefused(rep.refused);
  w.setFailed(rep.failed);
  w.setDrained(rep.drained);
  w.setInFlightLeft(rep.in_flight_left);
  const auto count = static_cast<unsigned>(std::min<size_t>(rep.steps.size(), 64));
  auto steps = w.initSteps(count);
  for (unsigned i = 0; i < count; ++i) {
    steps[i].setName(rep.steps[i].name.substr(0, 64));
    steps[i].setMs(static_cast<uint64_t>(std::max<int64_t>(0, rep.steps[i].took.count())));
  }
  w.setNote(rep.note.substr(0, 4096));
  return proto::encodeFrame(b);
}

Result<std::unique_ptr<proto::DecodedFrame>> decode(zmq::message_t&& frame) {
  proto::DecodeLimits limits;
  limits.maxFrameBytes = proto::kMaxSwitchFrameBytes;
  auto decoded = proto::decodeFrame(std::move(frame), limits);
  if (!decoded.ok()) return decoded.error();
  FERRY_TRY(proto::validateSwitchFrame(**decoded));
  return decoded;
}

uint64_t requestIdOf(const proto::DecodedFrame& frame) {
  uint64_t id = 0;
  (void)proto::readGuarded("reading a request id", [&]() -> Status {
    id = frame.root<wire::SwitchMessage>().getRequestId();
    return okStatus();
  });
  return id;
}

Result<Request> readRequest(const proto::DecodedFrame& frame) {
  Request out;
  Status read = proto::readGuarded("reading a switch-over request", [&]() -> Status {
    auto m = frame.root<wire::SwitchMessage>();
    FERRY_TRY(checkVersion(m));
    if (!m.getBody().isRequest()) return makeError("expected a switch-over request");
    auto r = m.getBody().getRequest();
    out.requestId = m.getRequestId();
    switch (r.getStep()) {
      case wire::SwitchStep::PREPARE:
        out.step = Step::kPrepare;
        break;
      case wire::SwitchStep::COMMIT:
        out.step = Step::kCommit;
        break;
      case wire::SwitchStep::ROLLBACK:
        out.step = Step::kRollback;
        break;
      case wire::SwitchStep::UNSPECIFIED:
      default:
        return makeError("unknown switch-over step");
    }
    out.driver = proto::switchDriverName(r.getDriver());
    out.nodeId = text(r.getNodeId());
    auto p = r.getPlan();
    out.plan.migration_id = text(p.getMigrationId());
    out.plan.service = text(p.getService());
    out.plan.source = readEndpoint(p.getSource());
    out.plan.target = readEndpoint(p.getTarget());
    out.plan.drain_timeout = Millis(p.getDrainTimeoutMs());
    out.plan.hold_timeout = Millis(p.getHoldTimeoutMs());
    return okStatus();
  });
  if (!read.ok()) return read.error();
  return out;
}

Result<Reply> readReply(const proto::DecodedFrame& frame) {
  Reply out;
  Status read = proto::readGuarded("reading a switch-over reply", [&]() -> Status {
    auto m = frame.root<wire::SwitchMessage>();
    FERRY_TRY(checkVersion(m));
    if (!m.getBody().isReply()) return makeError("expected a switch-over reply");
    auto r = m.getBody().getReply();
    out.requestId = m.getRequestId();
    if (!r.getOk()) {
      out.result = makeError(text(r.getErrorWhat()), text(r.getErrorHint()));
      return okStatus();
    }
    auto w = r.getReport();
    SwitchReport rep;
    rep.driver = text(w.getDriver());
    rep.step = text(w.getStep());
    rep.service = text(w.getService());
    rep.migration_id = text(w.getMigrationId());
    rep.held = w.getHeld();
    rep.released = w.getReleased();
    rep.max_hold_ms = w.getMaxHoldMs();
    rep.retried = w.getRetried();
    rep.refused = w.getRefused();
    rep.failed = w.getFailed();
    rep.drained = w.getDrained();
    rep.in_flight_left = w.getInFlightLeft();
    for (auto s : w.getSteps())
      rep.steps.push_back(
          {text(s.getName()), Millis(static_cast<int64_t>(std::min<uint64_t>(s.getMs(), INT32_MAX)))});
    rep.note = text(w.getNote());
    out.result = std::move(rep);
    return okStatus();
  });
  if (!read.ok()) return read.error();
  return out;
}

}  // namespace ferry::switchover::wirecodec
