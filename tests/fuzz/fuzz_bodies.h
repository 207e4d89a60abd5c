// One fuzz entry point per message type, compiled once in fuzz_bodies.cc; each
// fuzz_<body> executable is a two-line fuzz_body.cc that calls one of them.
#pragma once

#include <cstddef>
#include <cstdint>

// Every struct body of wire::Message (Void bodies are covered by fuzz_envelope).
// One body a line, by hand: clang-format is not idempotent on this list.
// clang-format off
#define FERRY_FUZZ_BODIES(X) \
  X(Hello) \
  X(Heartbeat) \
  X(Credit) \
  X(Ack) \
  X(Status) \
  X(Error) \
  X(FileMeta) \
  X(BlockData) \
  X(BlockBundle) \
  X(Truncate) \
  X(BatchBegin) \
  X(BatchEnd) \
  X(Prepare) \
  X(CheckpointChunk) \
  X(Commit) \
  X(Committed) \
  X(Abort) \
  X(RolledBack) \
  X(ResumeState) \
  X(HashRequest) \
  X(FileHashes) \
  X(BatchApplied) \
  X(ManifestRequest) \
  X(ManifestChunk) \
  X(PrepareReply) \
  X(Restored) \
  X(Decision) \
  X(OutcomeQuery) \
  X(Outcome)
// clang-format on

namespace ferry::protocol::fuzz {

#define FERRY_FUZZ_DECLARE(T) int fuzz##T(const uint8_t* data, size_t size);
FERRY_FUZZ_BODIES(FERRY_FUZZ_DECLARE)
#undef FERRY_FUZZ_DECLARE

}  // namespace ferry::protocol::fuzz
