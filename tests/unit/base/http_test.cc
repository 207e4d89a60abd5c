#include "ferry/base/http.h"

#include <gtest/gtest.h>

#include <string>

namespace ferry::http {
namespace {

// ---- the chunked decoder, fed in every possible split -------------------------------

struct ChunkCase {
  std::string name;
  std::string wire;  // body bytes as sent
  ParseState state;  // after all of `wire`
  std::string body;  // decoded (when complete)
  std::size_t used;  // bytes of `wire` taken (when complete)
};

class ChunkedDecoderTest : public ::testing::TestWithParam<ChunkCase> {};

TEST_P(ChunkedDecoderTest, SameResultWhateverTheSplit) {
  const auto& c = GetParam();
  // Whole, then split in two at every offset, then byte by byte.
  for (std::size_t split = 0; split <= c.wire.size() + 1; ++split) {
    ChunkedDecoder d;
    std::string body;
    std::size_t total_used = 0;
    ParseState s = ParseState::kIncomplete;
    auto feedPart = [&](std::string_view part) {
      std::size_t used = 0;
      s = d.feed(part, body, used);
      total_used += used;
    };
    if (split == c.wire.size() + 1) {
      for (char ch : c.wire) {
        if (s != ParseState::kIncomplete) break;
        feedPart(std::string_view(&ch, 1));
      }
    } else {
      feedPart(std::string_view(c.wire).substr(0, split));
      if (s == ParseState::kIncomplete) feedPart(std::string_view(c.wire).substr(split));
    }
    ASSERT_EQ(s, c.state) << c.name << " split " << split;
    if (c.state == ParseState::kComplete) {
      EXPECT_EQ(body, c.body) << c.name << " split " << split;
      EXPECT_EQ(total_used, c.used) << c.name << " split " << split;
      EXPECT_TRUE(d.done());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ChunkedDecoderTest,
    ::testing::Values(
        ChunkCase{"two_chunks", "2\r\nok\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n", ParseState::kComplete,
                  "ok0123456789", 33},
        ChunkCase{"trailers", "1\r\nx\r\n0\r\nT: 1\r\nU: 2\r\n\r\n", ParseState::kComplete, "x", 23},
        ChunkCase{"next_message_left", "1\r\nx\r\n0\r\n\r\nHTTP/1.1", ParseState::kComplete, "x", 11},
        ChunkCase{"upper_hex_and_spaces", "1F \r\n0123456789012345678901234567890\r\n0\r\n\r\n",
                  ParseState::kComplete, "0123456789012345678901234567890", 43},
        ChunkCase{"empty_body", "0\r\n\r\n", ParseState::kComplete, "", 5},
        ChunkCase{"short", "5\r\nab", ParseState::kIncomplete, "", 0},
        ChunkCase{"no_final_chunk", "2\r\nok\r\n", ParseState::kIncomplete, "", 0},
        ChunkCase{"bad_size", "zz\r\nab\r\n", ParseState::kBad, "", 0},
        ChunkCase{"empty_size", "\r\nab\r\n", ParseState::kBad, "", 0},
        ChunkCase{"no_crlf_after_data", "2\r\nokX\r\n0\r\n\r\n", ParseState::kBad, "", 0},
        ChunkCase{"size_overflow", "10000000000000000\r\n", ParseState::kBad, "", 0}),
    [](const auto& tp) { return tp.param.name; });

TEST(ChunkedDecoderLimits, EndlessSizeLineIsBad) {
  ChunkedDecoder d;
  std::string body;
  std::size_t used = 0;
  EXPECT_EQ(d.feed(std::string(2000, '1'), body, used), ParseState::kBad);
}

TEST(ChunkedDecoderLimits, LargeBodyPassesThroughPieceByPiece) {
  // 8 MiB in 64 KiB chunks, fed 10 000 bytes at a time: the decoder holds no more than a line.
  std::string wire;
  std::string expected;
  for (int i = 0; i < 128; ++i) {
    std::string chunk(65536, static_cast<char>('a' + i % 26));
    wire += "10000\r\n" + chunk + "\r\n";
    expected += chunk;
  }
  wire += "0\r\n\r\n";
  ChunkedDecoder d;
  std::string body;
  ParseState s = ParseState::kIncomplete;
  for (std::size_t off = 0; off < wire.size(); off += 10000) {
    std::string piece;
    std::size_t used = 0;
    s = d.feed(std::string_view(wire).substr(off, 10000), piece, used);
    EXPECT_LE(piece.size(), 10000U);
    body += piece;
  }
  EXPECT_EQ(s, ParseState::kComplete);
  EXPECT_EQ(body, expected);
}

// ---- heads and framing -------------------------------------------------------------

struct FramingCase {
  std::string name;
  std::string raw;
  ParseState state;
  int status;
  Framing::Kind kind;
  std::uint64_t length;
  bool valid_length;
};

class ResponseHeadTest : public ::testing::TestWithParam<FramingCase> {};

TEST_P(ResponseHeadTest, ParsesAndFrames) {
  const auto& c = GetParam();
  auto h = parseResponseHead(c.raw);
  ASSERT_EQ(h.state, c.state) << c.name;
  if (c.state != ParseState::kComplete) return;
  EXPECT_EQ(h.head.status, c.status);
  EXPECT_EQ(c.raw.substr(h.bytes), "BODY");
  auto f = responseFraming(h.head);
  ASSERT_EQ(f.has_value(), c.valid_length) << c.name;
  if (!f) return;
  EXPECT_EQ(f->kind, c.kind) << c.name;
  EXPECT_EQ(f->length, c.length) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ResponseHeadTest,
    ::testing::Values(
        FramingCase{"length", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nBODY", ParseState::kComplete, 200,
                    Framing::kLength, 4, true},
        FramingCase{"chunked_wins",
                    "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: Chunked\r\n\r\nBODY",
                    ParseState::kComplete, 200, Framing::kChunked, 0, true},
        FramingCase{"gzip_only_runs_to_close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nBODY",
                    ParseState::kComplete, 200, Framing::kClose, 0, true},
        FramingCase{"close", "HTTP/1.0 200 OK\r\nServer: x\r\n\r\nBODY", ParseState::kComplete, 200,
                    Framing::kClose, 0, true},
        FramingCase{"no_content", "HTTP/1.1 204 No Content\r\n\r\nBODY", ParseState::kComplete, 204,
                    Framing::kNone, 0, true},
        FramingCase{"continue_skipped",
                    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nBODY",
                    ParseState::kComplete, 404, Framing::kLength, 4, true},
        FramingCase{"bad_length", "HTTP/1.1 200 OK\r\nContent-Length: 4x\r\n\r\nBODY", ParseState::kComplete,
                    200, Framing::kLength, 0, false},
        FramingCase{"incomplete", "HTTP/1.1 200 OK\r\nContent-Le", ParseState::kIncomplete, 0, Framing::kNone,
                    0, true},
        FramingCase{"not_http", "SSH-2.0-OpenSSH\r\n\r\nBODY", ParseState::kBad, 0, Framing::kNone, 0, true},
        FramingCase{"space_in_name", "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\nBODY", ParseState::kBad, 0,
                    Framing::kNone, 0, true}),
    [](const auto& tp) { return tp.param.name; });

TEST(ResponseHeadLimits, HugeHeadIsBad) {
  std::string raw = "HTTP/1.1 200 OK\r\nX: " + std::string(70000, 'a');
  EXPECT_EQ(parseResponseHead(raw).state, ParseState::kBad);
}

TEST(ResponseHeadLimits, HeadRequestHasNoBody) {
  auto h = parseResponseHead("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
  ASSERT_EQ(h.state, ParseState::kComplete);
  EXPECT_EQ(responseFraming(h.head, true)->kind, Framing::kNone);
}

TEST(RequestHead, ParsesMethodTargetAndHeaders) {
  auto r = parseRequestHead(
      "POST /v5.0.0/libpod/containers/web/restore?import=true HTTP/1.1\r\nHost: d\r\nContent-Length: "
      "3\r\n\r\nabc");
  ASSERT_EQ(r.state, ParseState::kComplete);
  EXPECT_EQ(r.head.method, "POST");
  EXPECT_EQ(r.head.target, "/v5.0.0/libpod/containers/web/restore?import=true");
  EXPECT_EQ(r.head.header("content-length").value(), "3");
  EXPECT_EQ(r.bytes, 95U);
  EXPECT_EQ(parseRequestHead("GET / HTTP/1.1\r\n").state, ParseState::kIncomplete);
  EXPECT_EQ(parseRequestHead("GET /\r\n\r\n").state, ParseState::kBad);
  EXPECT_EQ(parseRequestHead("GET / SPDY/3\r\n\r\n").state, ParseState::kBad);
}

TEST(PercentEncoding, RoundTripsAndEscapesEverythingReserved) {
  EXPECT_EQ(percentEncode("localhost/ferry-web:1.0"), "localhost%2Fferry-web%3A1.0");
  EXPECT_EQ(percentEncode("a b&c=d~_"), "a%20b%26c%3Dd~_");
  EXPECT_EQ(percentDecode("localhost%2Fferry-web%3a1.0").value(), "localhost/ferry-web:1.0");
  EXPECT_FALSE(percentDecode("%2").has_value());
  EXPECT_FALSE(percentDecode("%zz").has_value());
  EXPECT_EQ(formEncode({{"user", "user1"}, {"password", "p&s=s w"}}), "user=user1&password=p%26s%3Ds%20w");
}

}  // namespace
}  // namespace ferry::http
