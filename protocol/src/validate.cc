// Semantic validation of a received envelope: everything the receiver must refuse
// before any handler acts on it.
#include <string>

#include "ferry/protocol/framing.h"
#include "ferry/protocol/paths.h"
#include "text_checks.h"

namespace ferry::protocol {

namespace {

using W = wire::Message::Body::Which;

using detail::checkText;

Status checkPath(capnp::Text::Reader text, const char* field) {
  Status s = validateWirePath(std::string_view(text.cStr(), text.size()));
  if (!s.ok()) return makeError(std::string(field) + ": " + s.error().what, s.error().hint);
  return okStatus();
}

Status checkCompression(wire::Compression compression, uint32_t length, size_t dataBytes, const char* field) {
  switch (compression) {
    case wire::Compression::NONE:
      if (dataBytes != length) {
        return makeError(std::string(field) + ": " + std::to_string(dataBytes) + " data bytes for length " +
                         std::to_string(length));
      }
      return okStatus();
    case wire::Compression::LZ4:
      if (length == 0 || dataBytes == 0) return makeError(std::string(field) + ": empty lz4 block");
      // LZ4 expands at most 255:1; anything claiming more is a decompression bomb.
      if (uint64_t{length} > uint64_t{dataBytes} * 255 + 16) {
        return makeError(std::string(field) + ": lz4 length " + std::to_string(length) + " impossible for " +
                         std::to_string(dataBytes) + " bytes");
      }
      return okStatus();
    case wire::Compression::ZEROS:
      if (dataBytes != 0) return makeError(std::string(field) + ": a zeros block carries data");
      return okStatus();
    case wire::Compression::UNSPECIFIED:
    default:
      break;
  }
  return makeError(std::string(field) + ": unknown compression " +
                   std::to_string(static_cast<unsigned>(compression)));
}

template <typename FileUnion>
Status checkFileRef(FileUnion file, const char* field) {
  if (file.isPath()) return checkPath(file.getPath(), field);
  if (file.isPathId()) {
    if (file.getPathId() == 0) return makeError(std::string(field) + ": pathId 0");
    return okStatus();
  }
  return makeError(std::string(field) + ": unknown file reference");
}

// One block, alone (blockData) or in a bundle: its file reference and its data's length.
// `file_field` and `field` name it in errors ("blockData.file", "blockData").
Status checkBlock(wire::BlockData::Reader b, const char* file_field, const char* field) {
  FERRY_TRY(checkFileRef(b.getFile(), file_field));
  return checkCompression(b.getCompression(), b.getLength(), b.getData().size(), field);
}

Status checkPaths(capnp::List<capnp::Text>::Reader list, const char* field) {
  for (auto p : list) FERRY_TRY(checkPath(p, field));
  return okStatus();
}

// A container or image name as Podman allows it: letters, digits, and _ . - (names)
// plus / : @ (image references); never a path component that climbs.
Status checkName(capnp::Text::Reader text, const char* field, bool image) {
  FERRY_TRY(checkText(text, field, 255, true));
  std::string_view v(text.cStr(), text.size());
  for (char ch : v) {
    bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '.' || ch == '-' || (image && (ch == '/' || ch == ':' || ch == '@'));
    if (!ok)
      return makeError(std::string(field) + " '" + std::string(v) +
                       "' has a character Podman does not allow");
  }
  if (v.front() == '.' || v.front() == '-' || v.find("..") != std::string_view::npos)
    return makeError(std::string(field) + " '" + std::string(v) + "' is not a valid name");
  return okStatus();
}

Status checkHexId(capnp::Text::Reader text, const char* field) {
  FERRY_TRY(checkText(text, field, 128, false));
  std::string_view v(text.cStr(), text.size());
  if (v.rfind("sha256:", 0) == 0) v.remove_prefix(7);
  for (char ch : v) {
    if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
      return makeError(std::string(field) + " is not a hexadecimal ID");
  }
  return okStatus();
}

Status checkContainers(capnp::List<wire::ContainerRef>::Reader list, const char* field) {
  if (list.size() > 64) return makeError(std::string(field) + ": more than 64 containers");
  for (auto c : list) {
    FERRY_TRY(checkName(c.getName(), "container name", false));
    FERRY_TRY(checkHexId(c.getId(), "container id"));
    FERRY_TRY(checkHexId(c.getImageId(), "image id"));
    if (c.getImageName().size() > 0) FERRY_TRY(checkName(c.getImageName(), "image name", true));
    if (c.getHostPorts().size() > 1024) return makeError(std::string(field) + ": more than 1024 host ports");
  }
  return okStatus();
}

Status checkMigrationState(wire::MigrationState state, const char* field) {
  switch (state) {
    case wire::MigrationState::UNKNOWN:
    case wire::MigrationState::PREPARING:
    case wire::MigrationState::STAGING:
    case wire::MigrationState::RESTORING:
    case wire::MigrationState::RESTORED:
    case wire::MigrationState::COMMITTED:
    case wire::MigrationState::ROLLED_BACK:
    case wire::MigrationState::IN_DOUBT:
    case wire::MigrationState::DECIDED_COMMIT:
    case wire::MigrationState::DECIDED_ROLLBACK:
      return okStatus();
    case wire::MigrationState::UNSPECIFIED:
    default:
      break;
  }
  return makeError(std::string(field) + " unknown (" + std::to_string(static_cast<unsigned>(state)) + ")");
}

Status checkMigrationId(capnp::Text::Reader id, uint64_t epoch) {
  FERRY_TRY(checkText(id, "migrationId", 128, true));
  if (epoch == 0) return makeError("migration epoch 0 (the fencing token must be positive)");
  return okStatus();
}

Status validateBody(wire::Message::Reader message) {
  auto body = message.getBody();
  switch (body.which()) {
    case W::HELLO: {
      auto h = body.getHello();
      FERRY_TRY(checkText(h.getNodeId(), "hello.nodeId", 255, false));
      if (h.getProtocolVersion() == 0) return makeError("hello.protocolVersion is 0");
      return okStatus();
    }
    case W::HEARTBEAT:
    case W::CREDIT:
    case W::ACK:
    case W::BATCH_END:
    case W::BATCH_APPLIED:
    case W::MANIFEST_REQUEST:
    case W::RESUME_QUERY:
      return okStatus();
    case W::BATCH_BEGIN:
      return checkPaths(body.getBatchBegin().getPaths(), "batchBegin.paths");
    case W::RESUME_STATE:
      return checkPaths(body.getResumeState().getIntent(), "resumeState.intent");
    case W::HASH_REQUEST: {
      auto h = body.getHashRequest();
      if (h.getBlockSize() < 4096 || h.getBlockSize() > (16u << 20)) {
        return makeError("hashRequest.blockSize " + std::to_string(h.getBlockSize()) +
                         " outside 4 KiB..16 MiB");
      }
      return checkPaths(h.getPaths(), "hashRequest.paths");
    }
    case W::FILE_HASHES: {
      for (auto e : body.getFileHashes().getEntries()) {
        FERRY_TRY(checkPath(e.getPath(), "fileHashes.path"));
        if (e.getMeta().getMode() > 07777) return makeError("fileHashes.meta.mode has bits beyond 07777");
      }
      return okStatus();
    }
    case W::MANIFEST_CHUNK: {
      auto m = body.getManifestChunk();
      FERRY_TRY(checkText(m.getError(), "manifestChunk.error", 4096, false));
      for (auto e : m.getEntries()) {
        FERRY_TRY(checkPath(e.getPath(), "manifestChunk.path"));
        FERRY_TRY(checkText(e.getLinkTarget(), "manifestChunk.linkTarget", kMaxWirePathBytes, false));
      }
      return okStatus();
    }
    case W::STATUS:
      return checkText(body.getStatus().getText(), "status.text", 4096, false);
    case W::ERROR: {
      auto e = body.getError();
      FERRY_TRY(checkText(e.getWhat(), "error.what", 4096, false));
      return checkText(e.getHint(), "error.hint", 4096, false);
    }
    case W::FILE_META: {
      auto f = body.getFileMeta();
      FERRY_TRY(checkPath(f.getPath(), "fileMeta.path"));
      if (f.getMode() > 07777) return makeError("fileMeta.mode has bits beyond 07777");
      switch (f.getKind()) {
        case wire::FileKind::FILE:
        case wire::FileKind::DIRECTORY:
        case wire::FileKind::DELETE:
          return okStatus();
        case wire::FileKind::SYMLINK:
          return checkText(f.getLinkTarget(), "fileMeta.linkTarget", kMaxWirePathBytes, true);
        case wire::FileKind::RENAME:
          return checkPath(f.getRenameTo(), "fileMeta.renameTo");
        case wire::FileKind::UNSPECIFIED:
        default:
          break;
      }
      return makeError("fileMeta.kind unknown (" + std::to_string(static_cast<unsigned>(f.getKind())) + ")");
    }
    case W::BLOCK_DATA: {
      return checkBlock(body.getBlockData(), "blockData.file", "blockData");
    }
    case W::BLOCK_BUNDLE: {
      auto blocks = body.getBlockBundle().getBlocks();
      if (blocks.size() == 0) return makeError("blockBundle.blocks is empty");
      if (blocks.size() > kMaxBundleBlocks) {
        return makeError("blockBundle.blocks has " + std::to_string(blocks.size()) + " entries (at most " +
                         std::to_string(kMaxBundleBlocks) + ")");
      }
      for (auto b : blocks) FERRY_TRY(checkBlock(b, "blockBundle.blocks.file", "blockBundle.blocks"));
      return okStatus();
    }
    case W::TRUNCATE:
      return checkFileRef(body.getTruncate().getFile(), "truncate.file");
    case W::PREPARE: {
      auto p = body.getPrepare();
      FERRY_TRY(checkMigrationId(p.getMigrationId(), p.getEpoch()));
      switch (p.getMode()) {
        case wire::MigrationMode::STOP_AND_COPY:
        case wire::MigrationMode::PRE_COPY:
        case wire::MigrationMode::POST_COPY:
        case wire::MigrationMode::AUTO:
          break;
        case wire::MigrationMode::UNSPECIFIED:
        default:
          return makeError("prepare.mode unknown (" + std::to_string(static_cast<unsigned>(p.getMode())) +
                           ")");
      }
      FERRY_TRY(checkText(p.getSourceNodeId(), "prepare.sourceNodeId", 255, false));
      if (p.getSharedStorage()) FERRY_TRY(checkHexId(p.getSharedToken(), "prepare.sharedToken"));
      return checkContainers(p.getContainers(), "prepare.containers");
    }
    case W::CHECKPOINT_CHUNK: {
      auto c = body.getCheckpointChunk();
      FERRY_TRY(checkMigrationId(c.getMigrationId(), c.getEpoch()));
      FERRY_TRY(checkText(c.getContainer(), "checkpointChunk.container", 255, true));
      FERRY_TRY(checkPath(c.getFileName(), "checkpointChunk.fileName"));
      switch (c.getKind()) {
        case wire::ChunkKind::UNSPECIFIED:  // senders before `kind` existed sent only checkpoints
        case wire::ChunkKind::CHECKPOINT:
          FERRY_TRY(checkName(c.getContainer(), "checkpointChunk.container", false));
          break;
        case wire::ChunkKind::IMAGE:
          FERRY_TRY(checkHexId(c.getImageId(), "checkpointChunk.imageId"));
          if (c.getImageId().size() == 0)
            return makeError("checkpointChunk.imageId is empty for an image chunk");
          break;
        default:
          return makeError("checkpointChunk.kind unknown (" +
                           std::to_string(static_cast<unsigned>(c.getKind())) + ")");
      }
      if (c.getCompression() == wire::Compression::NONE) {
        return okStatus();
      }
      if (c.getCompression() == wire::Compression::LZ4) {
        if (c.getData().size() == 0) return makeError("checkpointChunk: empty lz4 data");
        return okStatus();
      }
      return makeError("checkpointChunk.compression unknown (" +
                       std::to_string(static_cast<unsigned>(c.getCompression())) + ")");
    }
    case W::PREPARE_REPLY: {
      auto r = body.getPrepareReply();
      FERRY_TRY(checkMigrationId(r.getMigrationId(), r.getEpoch()));
      if (r.getProblems().size() > 64) return makeError("prepareReply.problems: more than 64");
      for (auto p : r.getProblems()) {
        FERRY_TRY(checkText(p.getWhat(), "prepareReply.problem.what", 4096, true));
        FERRY_TRY(checkText(p.getHint(), "prepareReply.problem.hint", 4096, false));
      }
      if (r.getMissingImages().size() > 64) return makeError("prepareReply.missingImages: more than 64");
      for (auto i : r.getMissingImages()) FERRY_TRY(checkHexId(i, "prepareReply.missingImages"));
      return okStatus();
    }
    case W::RESTORED: {
      auto r = body.getRestored();
      FERRY_TRY(checkMigrationId(r.getMigrationId(), r.getEpoch()));
      FERRY_TRY(checkText(r.getStatsJson(), "restored.statsJson", 1 << 20, false));
      return checkContainers(r.getContainers(), "restored.containers");
    }
    case W::DECISION: {
      auto d = body.getDecision();
      FERRY_TRY(checkMigrationId(d.getMigrationId(), d.getEpoch()));
      return checkText(d.getReason(), "decision.reason", 4096, false);
    }
    case W::OUTCOME_QUERY:
      return checkText(body.getOutcomeQuery().getMigrationId(), "outcomeQuery.migrationId", 128, true);
    case W::OUTCOME: {
      auto o = body.getOutcome();
      FERRY_TRY(checkText(o.getMigrationId(), "outcome.migrationId", 128, true));
      FERRY_TRY(checkMigrationState(o.getState(), "outcome.state"));
      return checkText(o.getReason(), "outcome.reason", 4096, false);
    }
    case W::COMMIT: {
      auto c = body.getCommit();
      FERRY_TRY(checkMigrationId(c.getMigrationId(), c.getEpoch()));
      return checkContainers(c.getContainers(), "commit.containers");
    }
    case W::COMMITTED: {
      auto c = body.getCommitted();
      FERRY_TRY(checkMigrationId(c.getMigrationId(), c.getEpoch()));
      return checkContainers(c.getContainers(), "committed.containers");
    }
    case W::ABORT: {
      auto a = body.getAbort();
      FERRY_TRY(checkMigrationId(a.getMigrationId(), a.getEpoch()));
      FERRY_TRY(checkText(a.getPhase(), "abort.phase", 255, false));
      return checkText(a.getReason(), "abort.reason", 4096, false);
    }
    case W::ROLLED_BACK: {
      auto r = body.getRolledBack();
      FERRY_TRY(checkMigrationId(r.getMigrationId(), r.getEpoch()));
      FERRY_TRY(checkText(r.getReason(), "rolledBack.reason", 4096, false));
      return checkContainers(r.getContainers(), "rolledBack.containers");
    }
    case W::UNSPECIFIED:
    default:
      break;
  }
  return makeError("message body " + bodyName(body.which()) + " is not one this node knows",
                   "the peer may run a newer ferry; upgrade this node");
}

}  // namespace

Status validateMessage(wire::Message::Reader message) {
  return readGuarded("validating a received message", [&]() -> Status {
    Status s = validateBody(message);
    if (!s.ok()) return makeError("message refused: " + s.error().what, s.error().hint);
    return okStatus();
  });
}

}  // namespace ferry::protocol

namespace ferry::protocol {

Status validateFrame(const DecodedFrame& frame) {
  return readGuarded("validating a received message",
                     [&]() -> Status { return validateMessage(frame.message()); });
}

}  // namespace ferry::protocol
