# Switch-over control (issue 6): a node asks the switch agent on the load-balancer
# host (`ferry proxy run`) to move one service's traffic from the source to the
# target. Request and reply over CurveZMQ (the node's DEALER to the agent's ROUTER,
# whose ZAP handler admits only paired node keys), one SwitchMessage per frame.
#
# Not part of the node-to-node envelope (message.capnp): another peer, another
# listener, its own version. Every request is idempotent, so a node that restarted
# or timed out may send it again.
# Evolution rule: add fields only with higher ordinals; never renumber or retype.
# Every enum starts with `unspecified`; readers refuse enumerants they do not know.
@0xde7b6083005a129a;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::protocol::wire");

# Version of the switch-over control protocol spoken by this build.
const switchProtocolVersion :UInt32 = 1;

enum SwitchStep {
  unspecified @0;
  prepare @1;    # before the freeze: hold new requests, let in-flight ones finish (bounded)
  commit @2;     # the target is restored and healthy: traffic to it, held requests released to it
  rollback @3;   # anything failed: traffic back to the source, held requests released there
}

enum SwitchDriver {
  unspecified @0;
  proxy @1;      # ferry's own hand-off proxy, in the agent
  haproxy @2;    # HAProxy's runtime API on the agent host's stats socket
  nginx @3;      # the upstream file, then a graceful reload
}

# A backend as the load balancer reaches it.
struct SwitchEndpoint {
  host @0 :Text;    # a name or an address
  port @1 :UInt16;
}

struct SwitchPlan {
  migrationId @0 :Text;
  service @1 :Text;          # the name the agent's configuration gives the service
  source @2 :SwitchEndpoint;
  target @3 :SwitchEndpoint;
  drainTimeoutMs @4 :UInt32; # in-flight requests to the source may finish this long
  holdTimeoutMs @5 :UInt32;  # a held request waits at most this long, then a 503 with the reason
}

# Node -> agent.
struct SwitchRequest {
  step @0 :SwitchStep;
  driver @1 :SwitchDriver;   # what the node expects; the agent refuses a mismatch
  plan @2 :SwitchPlan;
  nodeId @3 :Text;           # for logs only; the identity is the CURVE key
}

struct SwitchTiming {
  name @0 :Text;             # e.g. "drain", "health", "release"
  ms @1 :UInt64;
}

# What a step did, in the terms every driver shares (a driver that cannot count
# something leaves it 0 and says so in `note`).
struct SwitchReport {
  driver @0 :Text;
  step @1 :Text;
  service @2 :Text;
  migrationId @3 :Text;
  held @4 :UInt64;           # requests/connections held since prepare
  released @5 :UInt64;       # of those, handed to a backend
  maxHoldMs @6 :UInt64;      # the longest any of them waited
  retried @7 :UInt64;        # re-sent after the backend connection broke before any response byte
  refused @8 :UInt64;        # answered 503 by the load balancer (hold queue full, hold timeout)
  failed @9 :UInt64;         # other failures the load balancer could not save (502, cut connections)
  drained @10 :UInt64;       # in flight at prepare and finished within the drain timeout
  inFlightLeft @11 :UInt64;  # still in flight when the drain timeout passed
  steps @12 :List(SwitchTiming);
  note @13 :Text;            # what the driver did, in one line
}

# Agent -> node: the answer to the request with the same requestId.
struct SwitchReply {
  ok @0 :Bool;
  errorWhat @1 :Text;        # when not ok: what failed and where
  errorHint @2 :Text;        # and what to do about it
  report @3 :SwitchReport;
}

struct SwitchMessage {
  protocolVersion @0 :UInt32;     # what the sender speaks
  minProtocolVersion @1 :UInt32;  # the oldest version the sender accepts
  requestId @2 :UInt64;           # chosen by the node; the reply repeats it
  body :union {
    unspecified @3 :Void;
    request @4 :SwitchRequest;
    reply @5 :SwitchReply;
  }
}
