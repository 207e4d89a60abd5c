#include "ferry/protocol/framing.h"

#include <gtest/gtest.h>
#include <kj/debug.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "samples.h"

namespace ferry::protocol {
namespace {

using testing::encodeSample;
using testing::encodeSampleBody;
using testing::Sample;
using testing::samples;
using testing::toBytes;

std::span<const std::byte> asSpan(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::span<const std::byte> asSpan(kj::ArrayPtr<const capnp::word> words) {
  auto bytes = words.asBytes();
  return {reinterpret_cast<const std::byte*>(bytes.begin()), bytes.size()};
}

// ---- round trip --------------------------------------------------------------

class RoundTrip : public ::testing::TestWithParam<Sample> {};

TEST_P(RoundTrip, EncodesDecodesValidatesAndReencodesIdentically) {
  const Sample& sample = GetParam();
  auto words = encodeSample(sample);
  auto decoded = decodeFrame(asSpan(words));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  auto message = (*decoded)->message();
  EXPECT_EQ(bodyName(message.getBody().which()), sample.name);
  Status valid = validateMessage(message);
  EXPECT_TRUE(valid.ok()) << valid.error().message();

  capnp::MallocMessageBuilder again;
  again.setRoot(message);
  auto rewords = capnp::messageToFlatArray(again);
  EXPECT_EQ(toBytes(rewords), toBytes(words)) << "re-encoding " << sample.name << " changed its bytes";

  // A zmq frame of the same bytes decodes too (copied only if misaligned).
  auto bytes = words.asBytes();
  zmq::message_t frame(bytes.begin(), bytes.size());
  auto fromFrame = decodeFrame(std::move(frame));
  ASSERT_TRUE(fromFrame.ok());
  EXPECT_EQ(bodyName((*fromFrame)->message().getBody().which()), sample.name);
}

// The golden files hold the bytes an earlier build produced. They must still
// decode, validate and read exactly like today's sample: the schema may only grow
// (new fields with higher ordinals), which changes today's bytes but never the
// meaning of old ones. FERRY_UPDATE_GOLDEN=1 rewrites them (only for a new type).
TEST_P(RoundTrip, MatchesItsGoldenFile) {
  const Sample& sample = GetParam();
  const std::string encoded = toBytes(encodeSample(sample));
  const auto path = std::filesystem::path(FERRY_PROTOCOL_GOLDEN_DIR) / (sample.name + ".bin");
  if (std::getenv("FERRY_UPDATE_GOLDEN") != nullptr) {
    std::ofstream(path, std::ios::binary) << encoded;
  }
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << "missing golden file " << path << " (FERRY_UPDATE_GOLDEN=1 writes it)";
  std::string golden((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto old = decodeFrame(asSpan(golden));
  ASSERT_TRUE(old.ok()) << old.error().message();
  EXPECT_TRUE(validateFrame(**old).ok());
  auto now = decodeFrame(asSpan(encoded));
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(std::string(kj::str((*old)->message()).cStr()), std::string(kj::str((*now)->message()).cStr()))
      << sample.name
      << ": old bytes no longer read like the sample. Wire compatibility: only add fields with "
      << "higher ordinals; never renumber, retype or remove.";
}

// Writes the fuzz seed corpus when FERRY_WRITE_CORPUS=<tests/fuzz/corpus>.
TEST_P(RoundTrip, SeedsTheFuzzCorpus) {
  const char* dir = std::getenv("FERRY_WRITE_CORPUS");
  if (dir == nullptr) GTEST_SKIP() << "set FERRY_WRITE_CORPUS=tests/fuzz/corpus to (re)write the seeds";
  const Sample& sample = GetParam();
  namespace fs = std::filesystem;
  fs::create_directories(fs::path(dir) / "envelope");
  std::ofstream(fs::path(dir) / "envelope" / (sample.name + ".bin"), std::ios::binary)
      << toBytes(encodeSample(sample));
  auto body = encodeSampleBody(sample);
  if (body.size() == 0) return;  // a Void body: only the envelope target covers it
  fs::create_directories(fs::path(dir) / sample.name);
  std::ofstream(fs::path(dir) / sample.name / "sample.bin", std::ios::binary) << toBytes(body);
}

INSTANTIATE_TEST_SUITE_P(EveryMessageType, RoundTrip, ::testing::ValuesIn(samples()),
                         [](const ::testing::TestParamInfo<Sample>& param) { return param.param.name; });

TEST(Samples, CoverEveryBodyType) {
  std::set<std::string> names;
  for (const auto& s : samples()) names.insert(s.name);
  for (uint16_t w = 1; w <= static_cast<uint16_t>(wire::Message::Body::Which::BLOCK_BUNDLE); ++w) {
    const std::string name = bodyName(static_cast<wire::Message::Body::Which>(w));
    EXPECT_TRUE(names.count(name)) << "no sample for " << name;
  }
}

TEST(Fields, SurviveTheTrip) {
  capnp::MallocMessageBuilder b;
  auto m = b.initRoot<wire::Message>();
  m.setEpoch(9);
  m.setSeq(77);
  auto f = m.getBody().initFileMeta();
  f.setPath("a/b");
  f.setKind(wire::FileKind::RENAME);
  f.setRenameTo("a/c");
  f.setMode(0640);
  f.setUid(27);
  f.setGid(28);
  f.setSize(5);
  f.setMtimeNs(-1);
  auto decoded = decodeFrame(asSpan(capnp::messageToFlatArray(b)));
  ASSERT_TRUE(decoded.ok());
  auto r = (*decoded)->message();
  EXPECT_EQ(r.getEpoch(), 9u);
  EXPECT_EQ(r.getSeq(), 77u);
  auto rf = r.getBody().getFileMeta();
  EXPECT_EQ(std::string(rf.getPath().cStr()), "a/b");
  EXPECT_EQ(rf.getKind(), wire::FileKind::RENAME);
  EXPECT_EQ(std::string(rf.getRenameTo().cStr()), "a/c");
  EXPECT_EQ(rf.getMode(), 0640u);
  EXPECT_EQ(rf.getUid(), 27u);
  EXPECT_EQ(rf.getGid(), 28u);
  EXPECT_EQ(rf.getMtimeNs(), -1);
}

// ---- malformed input ---------------------------------------------------------

std::string validHello() {
  return toBytes(encodeSample(samples()[0]));
}

std::string wordsToString(const std::vector<uint64_t>& words) {
  std::string s(words.size() * 8, '\0');
  std::memcpy(s.data(), words.data(), s.size());
  return s;
}

// One segment holding `segment`; the table says `claimed` words.
std::string oneSegment(const std::vector<uint64_t>& segment, uint32_t claimed) {
  std::vector<uint64_t> words;
  words.push_back(uint64_t{claimed} << 32);  // segment count - 1 = 0, then size
  words.insert(words.end(), segment.begin(), segment.end());
  return wordsToString(words);
}

constexpr uint64_t structPtr(uint16_t dataWords, uint16_t ptrs, int32_t offset = 0) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2)) | (uint64_t{dataWords} << 32) |
         (uint64_t{ptrs} << 48);
}

constexpr uint64_t listPtr(uint8_t elementSize, uint32_t count, int32_t offset = 0) {
  return 1 | (static_cast<uint64_t>(static_cast<uint32_t>(offset) << 2)) | (uint64_t{elementSize} << 32) |
         (uint64_t{count} << 35);
}

struct BadFrame {
  std::string name;
  std::string bytes;
  std::string reason;  // substring of the error
};

class Malformed : public ::testing::TestWithParam<BadFrame> {};

TEST_P(Malformed, IsRefusedWithAnError) {
  const BadFrame& c = GetParam();
  DecodeLimits limits;
  auto decoded = decodeFrame(asSpan(c.bytes), limits);
  if (decoded.ok()) {
    // Structurally readable: then validation must refuse it.
    Status valid = validateMessage((*decoded)->message());
    ASSERT_FALSE(valid.ok()) << c.name << " was accepted";
    EXPECT_NE(valid.error().what.find(c.reason), std::string::npos) << valid.error().what;
    return;
  }
  EXPECT_NE(decoded.error().what.find(c.reason), std::string::npos) << decoded.error().what;
}

std::vector<BadFrame> badFrames() {
  std::vector<BadFrame> v;
  const std::string hello = validHello();
  v.push_back({"Empty", "", "empty"});
  v.push_back({"SevenBytes", std::string(7, '\0'), "multiple of 8"});
  v.push_back({"NotMultipleOf8", hello + "abc", "multiple of 8"});
  v.push_back({"Truncated", hello.substr(0, hello.size() - 8), "malformed"});
  v.push_back({"TrailingBytes", hello + std::string(8, '\0'), "trailing"});
  v.push_back({"SegmentTableOnly", std::string(8, '\0'), "malformed"});
  v.push_back({"HugeSegmentCount", wordsToString({0xffffffffULL, 0}), "refused"});
  v.push_back({"SegmentLongerThanFrame", oneSegment({structPtr(0, 1), 0}, 1000), "malformed"});
  // Root pointer far outside the segment.
  v.push_back({"WildRootPointer", oneSegment({structPtr(3, 1, 100000)}, 1), "malformed"});
  // A byte list claiming 2^29-1 elements in a 3-word segment.
  v.push_back(
      {"HugeListPointer", oneSegment({structPtr(0, 1), listPtr(2, (1u << 29) - 1), 0}, 3), "malformed"});
  // A void list of 2^29-1 elements: zero bytes, but an amplification attack on readers.
  v.push_back({"HugeVoidList", oneSegment({structPtr(0, 1), listPtr(0, (1u << 29) - 1), 0}, 3), "refused"});
  // 64 structs each pointing at the next: beyond the nesting limit.
  {
    std::vector<uint64_t> chain(64, structPtr(0, 1));
    chain.push_back(0);
    v.push_back({"DeepNesting", oneSegment(chain, static_cast<uint32_t>(chain.size())), "malformed"});
  }
  // Parses, but the body is `unspecified`: refused by validation.
  v.push_back({"EmptyEnvelope", oneSegment({structPtr(0, 0, -1)}, 1), "not one this node knows"});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Inputs, Malformed, ::testing::ValuesIn(badFrames()),
                         [](const ::testing::TestParamInfo<BadFrame>& param) { return param.param.name; });

TEST(Malformed, OverTheSizeLimit) {
  DecodeLimits limits;
  limits.maxFrameBytes = 64;
  const std::string hello = validHello();
  ASSERT_GT(hello.size(), 64u);
  auto decoded = decodeFrame(asSpan(hello), limits);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.error().what.find("exceeds the limit"), std::string::npos);
}

TEST(Malformed, RandomBytesNeverCrash) {
  std::mt19937_64 rng(20261125);
  int accepted = 0;
  for (int i = 0; i < 5000; ++i) {
    std::string bytes(8 * (1 + rng() % 32), '\0');
    for (auto& ch : bytes) ch = static_cast<char>(rng());
    if (i % 2 == 0)
      bytes.replace(0, 8,
                    std::string("\0\0\0\0", 4) + std::string(1, static_cast<char>(bytes.size() / 8 - 1)) +
                        std::string(3, '\0'));
    auto decoded = decodeFrame(asSpan(bytes));
    if (decoded.ok() && validateFrame(**decoded).ok()) ++accepted;
  }
  // Random bytes occasionally form a trivially valid message; they must never crash.
  EXPECT_LT(accepted, 500);
}

TEST(Malformed, BitFlipsOfEverySampleNeverCrash) {
  for (const auto& sample : samples()) {
    std::string bytes = toBytes(encodeSample(sample));
    for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
      std::string flipped = bytes;
      flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
      auto decoded = decodeFrame(asSpan(flipped));
      if (decoded.ok()) (void)validateFrame(**decoded);
    }
  }
  SUCCEED();
}

TEST(Framing, MisalignedBufferIsCopied) {
  const std::string hello = validHello();
  std::vector<char> storage(hello.size() + 16);
  char* base = storage.data();
  char* odd = base + (8 - reinterpret_cast<std::uintptr_t>(base) % 8) % 8 + 1;  // 8-aligned + 1
  std::memcpy(odd, hello.data(), hello.size());
  auto decoded =
      decodeFrame(std::span<const std::byte>(reinterpret_cast<const std::byte*>(odd), hello.size()));
  ASSERT_TRUE(decoded.ok()) << decoded.error().message();
  EXPECT_TRUE((*decoded)->copied());
  EXPECT_EQ((*decoded)->message().getBody().which(), wire::Message::Body::Which::HELLO);

  // A zmq frame whose data is not 8-byte aligned (libzmq gives no guarantee).
  zmq::message_t frame(odd, hello.size(), nullptr, nullptr);
  auto fromFrame = decodeFrame(std::move(frame));
  ASSERT_TRUE(fromFrame.ok()) << fromFrame.error().message();
  EXPECT_TRUE((*fromFrame)->copied());
  EXPECT_EQ(std::string((*fromFrame)->message().getBody().getHello().getNodeId().cStr()), "a");
}

TEST(Framing, AlignedZmqFrameIsNotCopied) {
  const std::string hello = validHello();
  zmq::message_t frame(hello.data(), hello.size());
  ASSERT_EQ(reinterpret_cast<std::uintptr_t>(frame.data()) % 8, 0u);
  auto decoded = decodeFrame(std::move(frame));
  ASSERT_TRUE(decoded.ok());
  EXPECT_FALSE((*decoded)->copied());
}

TEST(Framing, ReadGuardedTurnsKjExceptionsIntoErrors) {
  Status s = readGuarded("reading x", []() -> Status { KJ_FAIL_REQUIRE("bad pointer"); });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().what.find("reading x: malformed message"), std::string::npos) << s.error().what;
}

// ---- semantic validation -------------------------------------------------------

struct Invalid {
  std::string name;
  std::function<void(wire::Message::Builder)> fill;
  std::string reason;
};

class Validation : public ::testing::TestWithParam<Invalid> {};

TEST_P(Validation, Refuses) {
  capnp::MallocMessageBuilder b;
  auto m = b.initRoot<wire::Message>();
  m.setSeq(1);
  GetParam().fill(m);
  auto decoded = decodeFrame(asSpan(capnp::messageToFlatArray(b)));
  ASSERT_TRUE(decoded.ok());
  Status s = validateMessage((*decoded)->message());
  ASSERT_FALSE(s.ok()) << GetParam().name;
  EXPECT_NE(s.error().what.find(GetParam().reason), std::string::npos) << s.error().what;
  EXPECT_NE(s.error().what.find("message refused"), std::string::npos);
}

void fileMeta(wire::Message::Builder m, const char* path, wire::FileKind kind = wire::FileKind::FILE) {
  auto f = m.getBody().initFileMeta();
  f.setPath(path);
  f.setKind(kind);
}

INSTANTIATE_TEST_SUITE_P(
    Messages, Validation,
    ::testing::Values(
        Invalid{"DotDotPath", [](auto m) { fileMeta(m, "../etc/passwd"); }, "'..'"},
        Invalid{"AbsolutePath", [](auto m) { fileMeta(m, "/etc/shadow"); }, "absolute"},
        Invalid{"EmptyPath", [](auto m) { fileMeta(m, ""); }, "empty"},
        Invalid{"RenameOutside",
                [](auto m) {
                  fileMeta(m, "a", wire::FileKind::RENAME);
                  m.getBody().getFileMeta().setRenameTo("../../b");
                },
                "renameTo"},
        Invalid{"SymlinkWithoutTarget", [](auto m) { fileMeta(m, "a", wire::FileKind::SYMLINK); },
                "linkTarget"},
        Invalid{"UnknownKind", [](auto m) { fileMeta(m, "a", static_cast<wire::FileKind>(42)); },
                "kind unknown"},
        Invalid{"UnspecifiedKind", [](auto m) { fileMeta(m, "a", wire::FileKind::UNSPECIFIED); },
                "kind unknown"},
        Invalid{"ModeBits",
                [](auto m) {
                  fileMeta(m, "a");
                  m.getBody().getFileMeta().setMode(0170000);
                },
                "mode"},
        Invalid{"BlockPathEscapes",
                [](auto m) {
                  auto b = m.getBody().initBlockData();
                  b.getFile().setPath("a/../../b");
                  b.setCompression(wire::Compression::NONE);
                },
                "'..'"},
        Invalid{"BlockLengthMismatch",
                [](auto m) {
                  auto b = m.getBody().initBlockData();
                  b.getFile().setPathId(3);
                  b.setCompression(wire::Compression::NONE);
                  b.setLength(100);
                  b.initData(10);
                },
                "10 data bytes for length 100"},
        Invalid{"Lz4Bomb",
                [](auto m) {
                  auto b = m.getBody().initBlockData();
                  b.getFile().setPathId(3);
                  b.setCompression(wire::Compression::LZ4);
                  b.setLength(1u << 30);
                  b.initData(8);
                },
                "impossible"},
        Invalid{"UnknownCompression",
                [](auto m) {
                  auto b = m.getBody().initBlockData();
                  b.getFile().setPathId(3);
                  b.setCompression(static_cast<wire::Compression>(9));
                },
                "unknown compression"},
        Invalid{"BundleEmpty", [](auto m) { m.getBody().initBlockBundle().initBlocks(0); }, "empty"},
        Invalid{"BundleTooLong",
                [](auto m) { m.getBody().initBlockBundle().initBlocks(kMaxBundleBlocks + 1); },
                "at most 256"},
        Invalid{"BundleBlockEscapes",
                [](auto m) {
                  auto blocks = m.getBody().initBlockBundle().initBlocks(2);
                  blocks[0].getFile().setPath("ibdata1");
                  blocks[0].setCompression(wire::Compression::NONE);
                  blocks[1].getFile().setPath("../etc/shadow");
                  blocks[1].setCompression(wire::Compression::NONE);
                },
                "blockBundle.blocks.file"},
        Invalid{"BundleLz4Bomb",
                [](auto m) {
                  auto b = m.getBody().initBlockBundle().initBlocks(1)[0];
                  b.getFile().setPath("ibdata1");
                  b.setCompression(wire::Compression::LZ4);
                  b.setLength(1u << 30);
                  b.initData(8);
                },
                "impossible"},
        Invalid{"PathIdZero",
                [](auto m) {
                  auto b = m.getBody().initTruncate();
                  b.getFile().setPathId(0);
                },
                "pathId 0"},
        Invalid{"ChunkFileEscapes",
                [](auto m) {
                  auto c = m.getBody().initCheckpointChunk();
                  c.setMigrationId("m");
                  c.setEpoch(1);
                  c.setContainer("db");
                  c.setFileName("../../root/.ssh/authorized_keys");
                  c.setCompression(wire::Compression::NONE);
                },
                "'..'"},
        Invalid{"CommitWithoutEpoch",
                [](auto m) {
                  auto c = m.getBody().initCommit();
                  c.setMigrationId("m");
                },
                "fencing"},
        Invalid{"PrepareUnknownMode",
                [](auto m) {
                  auto p = m.getBody().initPrepare();
                  p.setMigrationId("m");
                  p.setEpoch(1);
                  p.setMode(static_cast<wire::MigrationMode>(77));
                },
                "mode unknown"},
        Invalid{"PrepareSharedTokenNotHex",
                [](auto m) {
                  auto p = m.getBody().initPrepare();
                  p.setMigrationId("m");
                  p.setEpoch(1);
                  p.setMode(wire::MigrationMode::STOP_AND_COPY);
                  p.setSharedStorage(true);
                  p.setSharedToken("../../etc/passwd");
                },
                "sharedToken is not a hexadecimal ID"},
        Invalid{"Unspecified", [](auto m) { m.getBody().setUnspecified(); }, "not one this node knows"}),
    [](const ::testing::TestParamInfo<Invalid>& param) { return param.param.name; });

}  // namespace
}  // namespace ferry::protocol
