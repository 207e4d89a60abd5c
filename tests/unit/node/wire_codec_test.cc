// The mirroring engine's messages through the wire schema and back: single bodies and
// protocol 2's block bundles, as the standby's node decodes them.
#include "wire_codec.h"

#include <capnp/serialize.h>
#include <gtest/gtest.h>

#include "ferry/protocol/framing.h"

namespace ferry::node {
namespace {

sync::Block block(std::uint64_t offset, sync::Compression compression, std::vector<std::uint8_t> bytes) {
  sync::Block b;
  b.path = "mysql/ibdata1";
  b.offset = offset;
  b.length = compression == sync::Compression::kZeros ? 16384 : static_cast<std::uint32_t>(bytes.size());
  b.xxh3 = 0xfeed0000 + offset;
  b.compression = compression;
  b.bytes = std::move(bytes);
  return b;
}

// Encodes with `fill`, then frames, decodes, validates and reads like a received message.
Result<std::vector<sync::Message>> roundTrip(const std::function<void(wire::Message::Builder)>& fill) {
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<wire::Message>());
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  auto frame = protocol::decodeFrame(
      std::span<const std::byte>(reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()));
  if (!frame) return frame.error();
  FERRY_TRY(protocol::validateFrame(**frame));
  std::vector<sync::Message> out;
  FERRY_TRY(protocol::readGuarded("decoding", [&] { return decodeSyncMessages((*frame)->message(), out); }));
  return out;
}

TEST(WireCodec, ABundleDecodesToItsBlocksInOrder) {
  const std::vector<sync::Block> blocks = {block(0, sync::Compression::kNone, {1, 2, 3, 4}),
                                           block(16384, sync::Compression::kZeros, {}),
                                           block(32768, sync::Compression::kNone, {9, 8, 7})};
  auto out = roundTrip([&](wire::Message::Builder m) { encodeBlockBundle(blocks, m); });
  ASSERT_TRUE(out.ok()) << out.error().message();
  ASSERT_EQ(out->size(), blocks.size());
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    const auto* b = std::get_if<sync::Block>(&(*out)[i]);
    ASSERT_NE(b, nullptr) << i;
    EXPECT_EQ(b->path, blocks[i].path);
    EXPECT_EQ(b->offset, blocks[i].offset);
    EXPECT_EQ(b->length, blocks[i].length);
    EXPECT_EQ(b->xxh3, blocks[i].xxh3);
    EXPECT_EQ(b->compression, blocks[i].compression);
    EXPECT_EQ(b->bytes, blocks[i].bytes);
  }
}

TEST(WireCodec, ASingleBodyDecodesToOneMessage) {
  sync::Message end = sync::BatchEnd{3, 41, 7, true};
  auto out = roundTrip([&](wire::Message::Builder m) { encodeSync(end, m); });
  ASSERT_TRUE(out.ok()) << out.error().message();
  ASSERT_EQ(out->size(), 1U);
  const auto* e = std::get_if<sync::BatchEnd>(&out->front());
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->seq, 41U);
  EXPECT_TRUE(e->final);
}

TEST(WireCodec, ABundleWithAPathIdIsRefusedNamingTheEntry) {
  const std::vector<sync::Block> blocks = {block(0, sync::Compression::kNone, {1}),
                                           block(16384, sync::Compression::kNone, {2})};
  auto out = roundTrip([&](wire::Message::Builder m) {
    encodeBlockBundle(blocks, m);
    m.getBody().getBlockBundle().getBlocks()[1].getFile().setPathId(5);
  });
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message().find("blockBundle entry 1"), std::string::npos) << out.error().message();
}

}  // namespace
}  // namespace ferry::node
