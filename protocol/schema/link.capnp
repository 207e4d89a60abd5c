# Link-level messages: handshake, liveness, flow control, status and errors.
# Evolution rule: add fields only with higher ordinals; never renumber or retype.
# Every enum starts with an explicit `unspecified` so a missing field is visible,
# and readers treat enumerants they do not know as errors (a `default:` branch).
@0xd65f2d406e8284b3;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::protocol::wire");

# Version of the ferry wire protocol spoken by this build. It travels in Hello.
#   1: the first.
#   2: adds Message.blockBundle (many blocks per frame); a version-1 peer is still
#      accepted and is sent single blockData messages.
const protocolVersion :UInt32 = 2;

enum Role {
  unspecified @0;
  active @1;    # owns the service, sends deltas
  standby @2;   # holds the warm replica
}

# First message on every (re)connection, in both directions.
struct Hello {
  protocolVersion @0 :UInt32;     # what the sender speaks
  minProtocolVersion @1 :UInt32;  # the oldest version the sender still accepts
  nodeId @2 :Text;                # the sender's node name (for logs; identity is the CURVE key)
  role @3 :Role;
  epoch @4 :UInt64;               # the sender's outbound stream epoch
  firstSeq @5 :UInt64;            # the oldest seq of that stream the sender can still (re)send
  resumeEpoch @6 :UInt64;         # the receiver side: epoch of the peer's stream it holds (0: none)
  resumeSeq @7 :UInt64;           # highest contiguous seq of that stream it holds
  maxMessageBytes @8 :UInt32;     # the largest frame the sender accepts
}

# Application-level liveness (libzmq answers ZMTP pings from its I/O thread, so a
# wedged loop would still look alive without these).
struct Heartbeat {
  sentAtMs @0 :UInt64;  # sender's monotonic clock, for round-trip estimates
  echoMs @1 :UInt64;    # the last sentAtMs received from the peer (0: none)
}

# Flow control grant: the receiver lets the sender have at most windowBytes /
# windowMessages in flight beyond `throughSeq` (what the receiver's application has
# consumed). State, not increments: a lost or repeated Credit is harmless.
struct Credit {
  epoch @0 :UInt64;
  throughSeq @1 :UInt64;
  windowBytes @2 :UInt64;
  windowMessages @3 :UInt32;
}

# Highest contiguous seq of the sender's stream that the receiver has consumed:
# the sender may drop everything up to it from its resend buffer.
struct Ack {
  epoch @0 :UInt64;
  seq @1 :UInt64;
}

enum ReplicaState {
  unspecified @0;
  initialSync @1;
  mirroring @2;
  inSync @3;
}

struct Status {
  role @0 :Role;
  replicaState @1 :ReplicaState;
  lagBytes @2 :UInt64;
  lagMs @3 :UInt64;
  text @4 :Text;
}

enum ErrorCode {
  unspecified @0;
  malformed @1;        # did not parse or failed validation
  pathRefused @2;      # names a path outside the data directory
  versionMismatch @3;
  fenced @4;           # stale epoch: a newer migration owns the service
  unsupported @5;      # a message or enumerant this node does not know
  internal @6;
  refused @7;          # valid, but this node will not do it now (busy, no room ...)
}

struct Error {
  code @0 :ErrorCode;
  what @1 :Text;        # what failed and where
  hint @2 :Text;        # what to do about it
  refusedEpoch @3 :UInt64;  # the (epoch, seq) of the message refused, if any
  refusedSeq @4 :UInt64;
}
