#include "wire_codec.h"

#include <string>
#include <type_traits>

namespace ferry::node {
namespace {

std::string text(capnp::Text::Reader t) {
  return {t.cStr(), t.size()};
}

wire::FileKind toWireKind(sync::FileKind kind) {
  switch (kind) {
    case sync::FileKind::kRegular:
      return wire::FileKind::FILE;
    case sync::FileKind::kDirectory:
      return wire::FileKind::DIRECTORY;
    case sync::FileKind::kSymlink:
      return wire::FileKind::SYMLINK;
  }
  return wire::FileKind::UNSPECIFIED;
}

Result<sync::FileKind> fromWireKind(wire::FileKind kind) {
  switch (kind) {
    case wire::FileKind::FILE:
      return sync::FileKind::kRegular;
    case wire::FileKind::DIRECTORY:
      return sync::FileKind::kDirectory;
    case wire::FileKind::SYMLINK:
      return sync::FileKind::kSymlink;
    default:
      break;
  }
  return makeError("file kind " + std::to_string(static_cast<unsigned>(kind)) + " is not an entry kind");
}

void encodeMeta(const sync::FileMeta& m, wire::FileMeta::Builder f) {
  f.setPath(m.path);
  f.setKind(toWireKind(m.kind));
  f.setMode(m.mode);
  f.setUid(m.uid);
  f.setGid(m.gid);
  f.setSize(m.size);
  f.setMtimeNs(m.mtime_ns);
  if (!m.target.empty()) f.setLinkTarget(m.target);
}

Result<sync::FileMeta> decodeMeta(wire::FileMeta::Reader f) {
  auto kind = fromWireKind(f.getKind());
  if (!kind) return kind.error();
  sync::FileMeta m;
  m.path = text(f.getPath());
  m.kind = *kind;
  m.mode = f.getMode();
  m.uid = f.getUid();
  m.gid = f.getGid();
  m.size = f.getSize();
  m.mtime_ns = f.getMtimeNs();
  m.target = text(f.getLinkTarget());
  return m;
}

template <typename FileUnion>
Result<std::string> filePath(FileUnion file) {
  if (file.isPath()) return text(file.getPath());
  return makeError("a path id where the engine expects a path (this node does not use path ids)");
}

void encodeBlock(const sync::Block& m, wire::BlockData::Builder b) {
  b.getFile().setPath(m.path);
  b.setOffset(m.offset);
  b.setLength(m.length);
  b.setXxh3(m.xxh3);
  switch (m.compression) {
    case sync::Compression::kNone:
      b.setCompression(wire::Compression::NONE);
      break;
    case sync::Compression::kLz4:
      b.setCompression(wire::Compression::LZ4);
      break;
    case sync::Compression::kZeros:
      b.setCompression(wire::Compression::ZEROS);
      break;
  }
  b.setData(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(m.bytes.data()), m.bytes.size()));
}

Result<sync::Block> decodeBlock(wire::BlockData::Reader b) {
  auto path = filePath(b.getFile());
  if (!path) return path.error();
  sync::Block block;
  block.path = std::move(*path);
  block.offset = b.getOffset();
  block.length = b.getLength();
  block.xxh3 = b.getXxh3();
  switch (b.getCompression()) {
    case wire::Compression::NONE:
      block.compression = sync::Compression::kNone;
      break;
    case wire::Compression::LZ4:
      block.compression = sync::Compression::kLz4;
      break;
    case wire::Compression::ZEROS:
      block.compression = sync::Compression::kZeros;
      break;
    default:
      return makeError("block compression " + std::to_string(static_cast<unsigned>(b.getCompression())) +
                       " is unknown");
  }
  auto data = b.getData();
  block.bytes.assign(data.begin(), data.end());
  return block;
}

}  // namespace

bool isSyncBody(wire::Message::Body::Which which) {
  using W = wire::Message::Body::Which;
  switch (which) {
    case W::FILE_META:
    case W::BLOCK_DATA:
    case W::BLOCK_BUNDLE:
    case W::TRUNCATE:
    case W::BATCH_BEGIN:
    case W::BATCH_END:
      return true;
    default:
      return false;
  }
}

void encodeSync(const sync::Message& message, wire::Message::Builder out) {
  auto body = out.getBody();
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, sync::BatchBegin>) {
          auto b = body.initBatchBegin();
          b.setEpoch(m.epoch);
          b.setSeq(m.seq);
          auto paths = b.initPaths(static_cast<unsigned>(m.paths.size()));
          for (unsigned i = 0; i < m.paths.size(); ++i) paths.set(i, m.paths[i]);
        } else if constexpr (std::is_same_v<T, sync::FileMeta>) {
          encodeMeta(m, body.initFileMeta());
        } else if constexpr (std::is_same_v<T, sync::Truncate>) {
          auto t = body.initTruncate();
          t.getFile().setPath(m.path);
          t.setSize(m.size);
        } else if constexpr (std::is_same_v<T, sync::Block>) {
          encodeBlock(m, body.initBlockData());
        } else if constexpr (std::is_same_v<T, sync::Rename>) {
          auto f = body.initFileMeta();
          f.setPath(m.path);
          f.setKind(wire::FileKind::RENAME);
          f.setRenameTo(m.target);
        } else if constexpr (std::is_same_v<T, sync::Delete>) {
          auto f = body.initFileMeta();
          f.setPath(m.path);
          f.setKind(wire::FileKind::DELETE);
        } else if constexpr (std::is_same_v<T, sync::BatchEnd>) {
          auto e = body.initBatchEnd();
          e.setEpoch(m.epoch);
          e.setSeq(m.seq);
          e.setEntries(static_cast<uint32_t>(m.ops));
          e.setFinal(m.final);
        }
      },
      message);
}

Result<sync::Message> decodeSync(wire::Message::Reader in) {
  using W = wire::Message::Body::Which;
  auto body = in.getBody();
  switch (body.which()) {
    case W::BATCH_BEGIN: {
      auto b = body.getBatchBegin();
      sync::BatchBegin m{b.getEpoch(), b.getSeq(), {}};
      for (auto p : b.getPaths()) m.paths.push_back(text(p));
      return sync::Message{std::move(m)};
    }
    case W::BATCH_END: {
      auto e = body.getBatchEnd();
      return sync::Message{sync::BatchEnd{e.getEpoch(), e.getSeq(), e.getEntries(), e.getFinal()}};
    }
    case W::FILE_META: {
      auto f = body.getFileMeta();
      if (f.getKind() == wire::FileKind::DELETE) return sync::Message{sync::Delete{text(f.getPath())}};
      if (f.getKind() == wire::FileKind::RENAME) {
        return sync::Message{sync::Rename{text(f.getPath()), text(f.getRenameTo())}};
      }
      auto meta = decodeMeta(f);
      if (!meta) return meta.error();
      return sync::Message{std::move(*meta)};
    }
    case W::TRUNCATE: {
      auto t = body.getTruncate();
      auto path = filePath(t.getFile());
      if (!path) return path.error();
      return sync::Message{sync::Truncate{std::move(*path), t.getSize()}};
    }
    case W::BLOCK_DATA: {
      auto block = decodeBlock(body.getBlockData());
      if (!block) return block.error();
      return sync::Message{std::move(*block)};
    }
    default:
      break;
  }
  return makeError("not a mirroring message");
}

void encodeBlockBundle(const std::vector<sync::Block>& blocks, wire::Message::Builder out) {
  auto list = out.getBody().initBlockBundle().initBlocks(static_cast<unsigned>(blocks.size()));
  for (unsigned i = 0; i < blocks.size(); ++i) encodeBlock(blocks[i], list[i]);
}

Status decodeSyncMessages(wire::Message::Reader in, std::vector<sync::Message>& out) {
  if (in.getBody().which() != wire::Message::Body::Which::BLOCK_BUNDLE) {
    auto one = decodeSync(in);
    if (!one) return one.error();
    out.push_back(std::move(*one));
    return okStatus();
  }
  auto blocks = in.getBody().getBlockBundle().getBlocks();
  out.reserve(out.size() + blocks.size());
  for (unsigned i = 0; i < blocks.size(); ++i) {
    auto block = decodeBlock(blocks[i]);
    if (!block) return makeError("blockBundle entry " + std::to_string(i) + ": " + block.error().message());
    out.emplace_back(std::move(*block));
  }
  return okStatus();
}

void encodeResumeState(const sync::ResumeState& state, wire::Message::Builder out) {
  auto r = out.getBody().initResumeState();
  r.setEpoch(state.epoch);
  r.setSeq(state.seq);
  r.setConsistent(state.consistent);
  auto intent = r.initIntent(static_cast<unsigned>(state.intent.size()));
  for (unsigned i = 0; i < state.intent.size(); ++i) intent.set(i, state.intent[i]);
}

sync::ResumeState decodeResumeState(wire::ResumeState::Reader in) {
  sync::ResumeState s;
  s.epoch = in.getEpoch();
  s.seq = in.getSeq();
  s.consistent = in.getConsistent();
  for (auto p : in.getIntent()) s.intent.push_back(text(p));
  return s;
}

void encodeHashRequest(const sync::HashRequest& request, wire::Message::Builder out) {
  auto h = out.getBody().initHashRequest();
  h.setBlockSize(request.block_size);
  h.setAll(request.all);
  auto paths = h.initPaths(static_cast<unsigned>(request.paths.size()));
  for (unsigned i = 0; i < request.paths.size(); ++i) paths.set(i, request.paths[i]);
}

sync::HashRequest decodeHashRequest(wire::HashRequest::Reader in) {
  sync::HashRequest r;
  r.block_size = in.getBlockSize();
  r.all = in.getAll();
  for (auto p : in.getPaths()) r.paths.push_back(text(p));
  return r;
}

void encodeFileHashes(const std::vector<sync::FileHashes>& hashes, std::size_t begin, std::size_t end,
                      bool last, wire::Message::Builder out) {
  auto f = out.getBody().initFileHashes();
  auto entries = f.initEntries(static_cast<unsigned>(end - begin));
  for (std::size_t i = begin; i < end; ++i) {
    const auto& h = hashes[i];
    auto e = entries[static_cast<unsigned>(i - begin)];
    e.setPath(h.path);
    e.setExists(h.exists);
    if (h.exists) encodeMeta(h.meta, e.initMeta());
    auto list = e.initHashes(static_cast<unsigned>(h.hashes.size()));
    for (unsigned j = 0; j < h.hashes.size(); ++j) list.set(j, h.hashes[j]);
  }
  f.setLast(last);
}

void decodeFileHashes(wire::FileHashes::Reader in, std::vector<sync::FileHashes>& out) {
  for (auto e : in.getEntries()) {
    sync::FileHashes h;
    h.path = text(e.getPath());
    h.exists = e.getExists();
    if (h.exists) {
      auto meta = decodeMeta(e.getMeta());
      if (meta) {
        h.meta = std::move(*meta);
      } else {
        h.exists = false;  // an entry we cannot represent: the mirror re-sends it
      }
    }
    for (auto v : e.getHashes()) h.hashes.push_back(v);
    out.push_back(std::move(h));
  }
}

void encodeManifestEntry(const std::string& path, const sync::ManifestEntry& entry,
                         wire::ManifestEntry::Builder out) {
  out.setPath(path);
  out.setKind(toWireKind(entry.kind));
  out.setMode(entry.mode);
  out.setUid(entry.uid);
  out.setGid(entry.gid);
  out.setSize(entry.size);
  out.setMtimeNs(entry.mtime_ns);
  out.setLinkTarget(entry.target);
  out.setContentHi(entry.content_hi);
  out.setContentLo(entry.content_lo);
}

void decodeManifestEntry(wire::ManifestEntry::Reader in, sync::TreeManifest& out) {
  sync::ManifestEntry e;
  auto kind = fromWireKind(in.getKind());
  e.kind = kind ? *kind : sync::FileKind::kRegular;
  e.mode = in.getMode();
  e.uid = in.getUid();
  e.gid = in.getGid();
  e.size = in.getSize();
  e.mtime_ns = in.getMtimeNs();
  e.target = text(in.getLinkTarget());
  e.content_hi = in.getContentHi();
  e.content_lo = in.getContentLo();
  out[text(in.getPath())] = std::move(e);
}

}  // namespace ferry::node
