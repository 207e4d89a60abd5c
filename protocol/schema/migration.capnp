# Live migration. The epoch is a fencing token: a node accepts a migration message
# only if its epoch is the newest it has seen.
#
# The exchange (source S runs `ferry migrate`, target T is its standby):
#   S -> T Prepare                 T checks names, ports, images, room, replica
#   T -> S PrepareReply            ok, or the problems (nothing is frozen yet)
#   S -> T CheckpointChunk(image)* images T lacks, one at a time, before the freeze
#   S freezes every container (one cut), dumps each; final mirroring batch
#   S -> T CheckpointChunk*        archives as they are produced; the final batch
#   S -> T Commit                  T applies nothing new: it checks the final batch
#                                  and the archives, restores, health-checks
#   T -> S Restored | RolledBack   (T cleans up before it says RolledBack)
#   S switches traffic, journals its decision, then
#   S -> T Decision(commit)        T journals committed, becomes active
#   T -> S Committed
#   or S -> T Decision(rollback)/Abort  ->  T -> S RolledBack, S restores locally.
# Either side may ask OutcomeQuery after a restart or a partition; the answer is
# Outcome with what its journal says. Nobody guesses: a side that cannot learn the
# outcome reports the migration "in doubt" (`ferry migrations resolve`).
@0xf6c32cdb23cda59b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::protocol::wire");

using Sync = import "sync.capnp";

enum MigrationMode {
  unspecified @0;
  stopAndCopy @1;
  preCopy @2;
  postCopy @3;
  auto @4;
}

struct ContainerRef {
  name @0 :Text;
  id @1 :Text;
  imageId @2 :Text;
  imageName @3 :Text;             # e.g. localhost/ferry-web:tag (for messages and image moves)
  hostPorts @4 :List(UInt16);     # TCP ports it publishes on the host: must be free on the target
  archiveBytes @5 :UInt64;        # its checkpoint archive, when known
}

enum ChunkKind {
  unspecified @0;
  checkpoint @1;   # a container's checkpoint archive (Podman export format)
  image @2;        # an image archive (podman image save), sent before the freeze
}

struct Problem {
  what @0 :Text;   # what is wrong, and where
  hint @1 :Text;   # what to do about it
}

# T -> S: the answer to Prepare.
struct PrepareReply {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  ok @2 :Bool;
  problems @3 :List(Problem);     # why not (empty when ok)
  missingImages @4 :List(Text);   # image IDs T lacks: S sends them before the freeze
  freeBytes @5 :UInt64;           # room in T's staging directory
  replicaConsistent @6 :Bool;     # T's replica is not in the middle of a batch
  highestEpoch @7 :UInt64;        # the newest epoch T has seen (a refused stale epoch says what to beat)
}

enum MigrationState {
  unspecified @0;
  unknown @1;       # no record of it
  preparing @2;
  staging @3;       # receiving images/checkpoints
  restoring @4;
  restored @5;      # T: running and healthy, waiting for S's decision
  committed @6;
  rolledBack @7;
  inDoubt @8;
  decidedCommit @9;    # S: decision journaled, not yet confirmed by T
  decidedRollback @10;
}

# T -> S: every container restored and the service answered its health check.
struct Restored {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  containers @2 :List(ContainerRef);
  restoreMs @3 :UInt64;          # Commit received -> last restore done
  healthMs @4 :UInt64;           # last restore done -> health check passed
  replyDelayMs @5 :UInt64;       # last restore done -> this message sent (S subtracts it for the downtime)
  statsJson @6 :Text;            # Podman/CRIU restore statistics per container (JSON)
}

# S -> T: the decision, journaled by S before it is sent.
struct Decision {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  commit @2 :Bool;               # true: T keeps the service and becomes active
  reason @3 :Text;               # why not, for a rollback
}

# Either way: what does your journal say about this migration?
struct OutcomeQuery {
  migrationId @0 :Text;
}

struct Outcome {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  state @2 :MigrationState;
  reason @3 :Text;
}

struct Prepare {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  mode @2 :MigrationMode;
  containers @3 :List(ContainerRef);
  sourceNodeId @4 :Text;
  expectedCheckpointBytes @5 :UInt64;
  expectedDeltaBytes @6 :UInt64;
  deadlineMs @7 :UInt64;     # the target gives up (and says so) after this long
  # Both hosts see the data directory on one shared storage (shared_storage = on): no
  # mirroring, no final delta. The source has written `.ferry-shared-<migrationId>` in
  # the data directory holding sharedToken; the target must read the same token there.
  sharedStorage @8 :Bool;
  sharedToken @9 :Text;      # hexadecimal
}

# A piece of one checkpoint file, sent as CRIU/Podman produce it.
struct CheckpointChunk {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  container @2 :Text;
  fileName @3 :Text;         # relative name inside the checkpoint (validated like a path)
  offset @4 :UInt64;
  data @5 :Data;
  xxh3 @6 :UInt64;           # of this chunk's uncompressed bytes
  compression @7 :Sync.Compression;
  last @8 :Bool;             # the file is complete after this chunk
  fileBytes @9 :UInt64;      # total size of the file, when `last`
  fileXxh3 @10 :UInt64;      # XXH3-64 of the whole file, when `last`
  kind @11 :ChunkKind;
  imageId @12 :Text;         # kind = image: the image this archive holds
}

struct Commit {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  containers @2 :List(ContainerRef);
  checkpointBytes @3 :UInt64;
  checkpointXxh3 @4 :UInt64;
  deltaBatchEpoch @5 :UInt64;  # the last delta batch the target must have applied first
  deltaBatchSeq @6 :UInt64;
  deltaBytes @7 :UInt64;
}

struct Committed {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  containers @2 :List(ContainerRef);
  restoreMs @3 :UInt64;
  healthyAtMs @4 :UInt64;      # wall clock when the health check first passed
}

struct Abort {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  phase @2 :Text;
  reason @3 :Text;
}

struct RolledBack {
  migrationId @0 :Text;
  epoch @1 :UInt64;
  reason @2 :Text;
  containers @3 :List(ContainerRef);
}
