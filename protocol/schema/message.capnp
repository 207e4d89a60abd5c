# The envelope: exactly one of these per ZeroMQ frame.
@0xb6765c38fd97ee0b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("ferry::protocol::wire");

using Link = import "link.capnp";
using Sync = import "sync.capnp";
using Migration = import "migration.capnp";

struct Message {
  # The sender's outbound stream position; (0, 0) for link control messages
  # (hello, heartbeat, credit, ack), which are never resent.
  epoch @0 :UInt64;
  seq @1 :UInt64;

  body :union {
    unspecified @2 :Void;
    hello @3 :Link.Hello;
    heartbeat @4 :Link.Heartbeat;
    credit @5 :Link.Credit;
    ack @6 :Link.Ack;
    status @7 :Link.Status;
    error @8 :Link.Error;

    fileMeta @9 :Sync.FileMeta;
    blockData @10 :Sync.BlockData;
    truncate @11 :Sync.Truncate;
    batchBegin @12 :Sync.BatchBegin;
    batchEnd @13 :Sync.BatchEnd;

    prepare @14 :Migration.Prepare;
    checkpointChunk @15 :Migration.CheckpointChunk;
    commit @16 :Migration.Commit;
    committed @17 :Migration.Committed;
    abort @18 :Migration.Abort;
    rolledBack @19 :Migration.RolledBack;

    resumeState @20 :Sync.ResumeState;
    hashRequest @21 :Sync.HashRequest;
    fileHashes @22 :Sync.FileHashes;
    batchApplied @23 :Sync.BatchApplied;
    manifestRequest @24 :Sync.ManifestRequest;
    manifestChunk @25 :Sync.ManifestChunk;
    resumeQuery @26 :Void;   # active -> standby: send your ResumeState again

    prepareReply @27 :Migration.PrepareReply;
    restored @28 :Migration.Restored;
    decision @29 :Migration.Decision;
    outcomeQuery @30 :Migration.OutcomeQuery;
    outcome @31 :Migration.Outcome;

    blockBundle @32 :Sync.BlockBundle;   # protocol version 2
  }
}
