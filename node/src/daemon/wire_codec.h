// Translation between the mirroring engine's plain structs (sync/) and the Cap'n
// Proto wire schema (protocol/). Decoders read received, already validated messages;
// call them inside protocol::readGuarded() — readers validate lazily.
#pragma once

#include <vector>

#include "ferry/base/error.h"
#include "ferry/protocol/schema/message.capnp.h"
#include "ferry/sync/messages.h"
#include "ferry/sync/verify.h"

namespace ferry::node {

namespace wire = ferry::protocol::wire;

void encodeSync(const sync::Message& message, wire::Message::Builder out);
// Fails on a body that is not a sync message or a value the engine cannot represent.
Result<sync::Message> decodeSync(wire::Message::Reader in);
bool isSyncBody(wire::Message::Body::Which which);
// Protocol version 2: consecutive blocks in one frame (wire::BlockBundle).
void encodeBlockBundle(const std::vector<sync::Block>& blocks, wire::Message::Builder out);
// Appends the engine messages a received sync body holds: one, or a bundle's blocks in
// order. Fails on the first the engine cannot represent: the caller applies none of them.
Status decodeSyncMessages(wire::Message::Reader in, std::vector<sync::Message>& out);

void encodeResumeState(const sync::ResumeState& state, wire::Message::Builder out);
sync::ResumeState decodeResumeState(wire::ResumeState::Reader in);

void encodeHashRequest(const sync::HashRequest& request, wire::Message::Builder out);
sync::HashRequest decodeHashRequest(wire::HashRequest::Reader in);

// Encodes entries [begin, end) of `hashes` as one FileHashes message.
void encodeFileHashes(const std::vector<sync::FileHashes>& hashes, std::size_t begin, std::size_t end,
                      bool last, wire::Message::Builder out);
void decodeFileHashes(wire::FileHashes::Reader in, std::vector<sync::FileHashes>& out);

void encodeManifestEntry(const std::string& path, const sync::ManifestEntry& entry,
                         wire::ManifestEntry::Builder out);
void decodeManifestEntry(wire::ManifestEntry::Reader in, sync::TreeManifest& out);

}  // namespace ferry::node
