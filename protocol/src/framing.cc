#include "ferry/protocol/framing.h"

#include <cstring>

namespace ferry::protocol {

DecodedFrame::~DecodedFrame() = default;

namespace detail {

struct FrameDecoder {
  // `frame` non-null: decode its data, keeping it when aligned. Otherwise copy `bytes`.
  static Result<std::unique_ptr<DecodedFrame>> decode(zmq::message_t* frame, std::span<const std::byte> bytes,
                                                      const DecodeLimits& limits) {
    const size_t size = frame != nullptr ? frame->size() : bytes.size();
    const void* data = frame != nullptr ? frame->data() : bytes.data();
    if (size == 0)
      return makeError("frame refused: empty", "the peer must send one Cap'n Proto message per frame");
    if (size % sizeof(capnp::word) != 0) {
      return makeError("frame refused: " + std::to_string(size) + " bytes is not a multiple of 8",
                       "not a Cap'n Proto message; the peer is not speaking ferry's protocol");
    }
    if (size > limits.maxFrameBytes) {
      return makeError("frame refused: " + std::to_string(size) + " bytes exceeds the limit of " +
                           std::to_string(limits.maxFrameBytes),
                       "raise maxMessageBytes on both nodes if such messages are intended");
    }
    std::unique_ptr<DecodedFrame> out(new DecodedFrame());
    out->sizeBytes_ = size;
    const size_t words = size / sizeof(capnp::word);
    const bool aligned = reinterpret_cast<std::uintptr_t>(data) % alignof(capnp::word) == 0;
    kj::ArrayPtr<const capnp::word> view;
    if (frame != nullptr && aligned) {
      out->frame_ = std::move(*frame);
      view = kj::arrayPtr(static_cast<const capnp::word*>(out->frame_.data()), words);
    } else {
      out->copy_ = kj::heapArray<capnp::word>(words);
      std::memcpy(out->copy_.begin(), data, size);
      out->copied_ = true;
      view = out->copy_.asPtr();
    }
    capnp::ReaderOptions options;
    options.traversalLimitInWords =
        limits.traversalLimitWords != 0 ? limits.traversalLimitWords : uint64_t{4} * words + 1024;
    options.nestingLimit = limits.nestingLimit;
    Status checked = readGuarded("frame of " + std::to_string(size) + " bytes", [&]() -> Status {
      out->reader_ = std::make_unique<capnp::FlatArrayMessageReader>(view, options);
      // The segment table must describe exactly this frame: no trailing bytes.
      if (out->reader_->getEnd() != view.end()) {
        return makeError("frame refused: " + std::to_string(size) +
                             " bytes but the message ends before them (trailing bytes)",
                         "one message per frame; trailing bytes are not allowed");
      }
      auto root = out->reader_->getRoot<capnp::AnyPointer>();
      if (!root.isNull() && root.getPointerType() != capnp::PointerType::STRUCT) {
        return makeError("frame refused: the root is not a struct", "not a ferry message");
      }
      // Bounds-check the whole pointer tree once (nesting limit applies).
      (void)root.targetSize();
      return okStatus();
    });
    if (!checked.ok()) return checked.error();
    return out;
  }
};

}  // namespace detail

Result<std::unique_ptr<DecodedFrame>> decodeFrame(zmq::message_t&& frame, const DecodeLimits& limits) {
  return detail::FrameDecoder::decode(&frame, {}, limits);
}

Result<std::unique_ptr<DecodedFrame>> decodeFrame(std::span<const std::byte> bytes,
                                                  const DecodeLimits& limits) {
  return detail::FrameDecoder::decode(nullptr, bytes, limits);
}

kj::Array<capnp::word> encodeMessage(capnp::MessageBuilder& message) {
  return capnp::messageToFlatArray(message);
}

zmq::message_t encodeFrame(capnp::MessageBuilder& message) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(message);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return zmq::message_t(bytes.begin(), bytes.size());
}

std::string bodyName(wire::Message::Body::Which which) {
  using W = wire::Message::Body::Which;
  switch (which) {
    case W::UNSPECIFIED:
      return "unspecified";
    case W::HELLO:
      return "hello";
    case W::HEARTBEAT:
      return "heartbeat";
    case W::CREDIT:
      return "credit";
    case W::ACK:
      return "ack";
    case W::STATUS:
      return "status";
    case W::ERROR:
      return "error";
    case W::FILE_META:
      return "fileMeta";
    case W::BLOCK_DATA:
      return "blockData";
    case W::BLOCK_BUNDLE:
      return "blockBundle";
    case W::TRUNCATE:
      return "truncate";
    case W::BATCH_BEGIN:
      return "batchBegin";
    case W::BATCH_END:
      return "batchEnd";
    case W::PREPARE:
      return "prepare";
    case W::CHECKPOINT_CHUNK:
      return "checkpointChunk";
    case W::COMMIT:
      return "commit";
    case W::COMMITTED:
      return "committed";
    case W::ABORT:
      return "abort";
    case W::ROLLED_BACK:
      return "rolledBack";
    case W::RESUME_STATE:
      return "resumeState";
    case W::HASH_REQUEST:
      return "hashRequest";
    case W::FILE_HASHES:
      return "fileHashes";
    case W::BATCH_APPLIED:
      return "batchApplied";
    case W::MANIFEST_REQUEST:
      return "manifestRequest";
    case W::MANIFEST_CHUNK:
      return "manifestChunk";
    case W::RESUME_QUERY:
      return "resumeQuery";
    case W::PREPARE_REPLY:
      return "prepareReply";
    case W::RESTORED:
      return "restored";
    case W::DECISION:
      return "decision";
    case W::OUTCOME_QUERY:
      return "outcomeQuery";
    case W::OUTCOME:
      return "outcome";
    default:
      break;
  }
  return "unknown(" + std::to_string(static_cast<unsigned>(which)) + ")";
}

bool isLinkControl(wire::Message::Body::Which which) {
  using W = wire::Message::Body::Which;
  switch (which) {
    case W::HELLO:
    case W::HEARTBEAT:
    case W::CREDIT:
    case W::ACK:
      return true;
    default:
      return false;
  }
}

}  // namespace ferry::protocol
