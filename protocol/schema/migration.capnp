# Live migration (issue 5). The epoch is a fencing token: a node accepts a
# migration message only if its epoch is the newest it has seen.
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
