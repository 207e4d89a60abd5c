# Continuous mirroring of a data directory as content-hashed block deltas.
# Paths are relative to the data directory, normalised, without "..": a receiver
# refuses any other path (ferry::protocol::validateWirePath).
@0xfdf73377fd7b12b6;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::protocol::wire");

enum FileKind {
  unspecified @0;
  file @1;
  directory @2;
  symlink @3;
  delete @4;    # remove `path` (recursively for a directory)
  rename @5;    # rename `path` to `renameTo`
}

# Creates or updates one entry's metadata, or deletes/renames it.
struct FileMeta {
  path @0 :Text;
  pathId @1 :UInt64;      # sender-chosen id that later BlockData/Truncate may use (0: none)
  kind @2 :FileKind;
  mode @3 :UInt32;        # permission bits (07777)
  uid @4 :UInt32;
  gid @5 :UInt32;
  size @6 :UInt64;        # the file's size after this batch
  mtimeNs @7 :Int64;      # nanoseconds since the Unix epoch
  linkTarget @8 :Text;    # symlink content (data, never followed by the receiver)
  renameTo @9 :Text;      # for kind = rename: the new path (validated like `path`)
}

enum Compression {
  unspecified @0;
  none @1;
  lz4 @2;
  zeros @3;    # `length` zero bytes: the receiver punches a hole (sparse stays sparse)
}

# One block of a file. The hash covers the uncompressed bytes; the receiver checks
# it before writing.
struct BlockData {
  file :union {
    path @0 :Text;
    pathId @1 :UInt64;
  }
  offset @2 :UInt64;
  length @3 :UInt32;        # uncompressed length
  xxh3 @4 :UInt64;          # XXH3-64 of the uncompressed bytes
  compression @5 :Compression;
  data @6 :Data;
}

# Consecutive blocks of a delta in one frame (protocol version 2): the same as sending
# each as its own blockData, in list order, at a fraction of the per-frame cost (an
# initial copy of 625 MB is 40000 blocks). Sent only to a peer that speaks version 2.
struct BlockBundle {
  blocks @0 :List(BlockData);   # at most kMaxBundleBlocks (protocol/framing.h)
}

struct Truncate {
  file :union {
    path @0 :Text;
    pathId @1 :UInt64;
  }
  size @2 :UInt64;
}

# Everything between BatchBegin and BatchEnd with the same (epoch, seq) is applied
# atomically by the replica: a torn batch is never believed consistent.
struct BatchBegin {
  epoch @0 :UInt64;
  seq @1 :UInt64;
  entries @2 :UInt32;       # FileMeta + BlockData + Truncate messages that follow
  bytes @3 :UInt64;         # payload bytes that follow
  paths @4 :List(Text);     # every path the batch may modify: the replica's intent list
}

struct BatchEnd {
  epoch @0 :UInt64;
  seq @1 :UInt64;
  entries @2 :UInt32;
  bytes @3 :UInt64;
  sourceLagMs @4 :UInt64;   # age of the oldest change in this batch on the sender
  final @5 :Bool;           # computed after the freeze: the replica is now a point-in-time copy
}

# ---- the replication handshake and acknowledgements --------------------------
# The link delivers messages exactly once per stream epoch; these let the mirror
# (which outlives links and restarts) know what the replica holds.

# Standby -> active when the link (re)connects: what the replica holds.
struct ResumeState {
  epoch @0 :UInt64;             # the mirror epoch of the last applied batch
  seq @1 :UInt64;               # last batch applied and durable
  consistent @2 :Bool;          # false: a batch was interrupted
  intent @3 :List(Text);        # paths the interrupted batch may have touched
}

# Active -> standby: send the block hashes of these paths (or of everything).
struct HashRequest {
  blockSize @0 :UInt32;
  all @1 :Bool;
  paths @2 :List(Text);
}

# Standby -> active: the replica's view of some paths; `last` ends the answer.
struct FileHashes {
  entries @0 :List(FileHashEntry);
  last @1 :Bool;
}

struct FileHashEntry {
  path @0 :Text;
  exists @1 :Bool;
  meta @2 :FileMeta;
  hashes @3 :List(UInt64);      # XXH3-64 per block of a regular file
}

# Standby -> active: batch (epoch, seq) is applied and durable.
struct BatchApplied {
  epoch @0 :UInt64;
  seq @1 :UInt64;
}

# Either way: ask for the peer's manifest of its data directory (`ferry verify`).
struct ManifestRequest {
  requestId @0 :UInt64;
}

# The answer, in chunks; `last` ends it.
struct ManifestChunk {
  requestId @0 :UInt64;
  entries @1 :List(ManifestEntry);
  last @2 :Bool;
  error @3 :Text;               # non-empty: the peer could not build its manifest
}

struct ManifestEntry {
  path @0 :Text;
  kind @1 :FileKind;
  mode @2 :UInt32;
  uid @3 :UInt32;
  gid @4 :UInt32;
  size @5 :UInt64;
  mtimeNs @6 :Int64;
  linkTarget @7 :Text;
  contentHi @8 :UInt64;         # XXH3-128 of a regular file's bytes
  contentLo @9 :UInt64;
}
