// The proxy's HTTP/1.1 framing, table by table.
#include "http1.h"

#include <gtest/gtest.h>

namespace ferry::switchover::http1 {
namespace {

struct RequestCase {
  std::string name;
  std::string raw;
  Parse parse;
  BodyKind body;
  uint64_t length;
  bool keepAlive;
  bool upgrade;
};

class Requests : public ::testing::TestWithParam<RequestCase> {};

TEST_P(Requests, Parse) {
  const auto& tc = GetParam();
  RequestHead head;
  std::string error;
  ASSERT_EQ(parseRequestHead(tc.raw, head, error), tc.parse) << error;
  if (tc.parse != Parse::kDone) {
    if (tc.parse == Parse::kBad) {
      EXPECT_FALSE(error.empty());
    }
    return;
  }
  EXPECT_EQ(head.body, tc.body);
  EXPECT_EQ(head.length, tc.length);
  EXPECT_EQ(head.keepAlive, tc.keepAlive);
  EXPECT_EQ(head.upgrade, tc.upgrade);
  EXPECT_EQ(head.headBytes, tc.raw.find("\r\n\r\n") + 4);
}

INSTANTIATE_TEST_SUITE_P(
    Http1, Requests,
    ::testing::Values(
        RequestCase{"Get11", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", Parse::kDone, BodyKind::kNone, 0, true,
                    false},
        RequestCase{"Get10", "GET / HTTP/1.0\r\n\r\n", Parse::kDone, BodyKind::kNone, 0, false, false},
        RequestCase{"Get10KeepAlive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", Parse::kDone,
                    BodyKind::kNone, 0, true, false},
        RequestCase{"Close", "GET / HTTP/1.1\r\nConnection: foo, close\r\n\r\n", Parse::kDone,
                    BodyKind::kNone, 0, false, false},
        RequestCase{"PostLength", "POST /w HTTP/1.1\r\nContent-Length: 12\r\n\r\n", Parse::kDone,
                    BodyKind::kLength, 12, true, false},
        RequestCase{"PostZeroLength", "POST /w HTTP/1.1\r\nContent-Length: 0\r\n\r\n", Parse::kDone,
                    BodyKind::kNone, 0, true, false},
        RequestCase{"SameLengthTwice", "POST /w HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                    Parse::kDone, BodyKind::kLength, 3, true, false},
        RequestCase{"Chunked", "POST /w HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Parse::kDone,
                    BodyKind::kChunked, 0, true, false},
        RequestCase{"Upgrade", "GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                    Parse::kDone, BodyKind::kNone, 0, true, true},
        RequestCase{"Incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", Parse::kIncomplete, BodyKind::kNone, 0,
                    true, false},
        RequestCase{"LengthAndChunked",
                    "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", Parse::kBad,
                    BodyKind::kNone, 0, true, false},
        RequestCase{"TwoLengths", "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
                    Parse::kBad, BodyKind::kNone, 0, true, false},
        RequestCase{"LengthNotANumber", "POST / HTTP/1.1\r\nContent-Length: 3x\r\n\r\n", Parse::kBad,
                    BodyKind::kNone, 0, true, false},
        RequestCase{"ChunkedNotLast", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                    Parse::kBad, BodyKind::kNone, 0, true, false},
        RequestCase{"SpaceBeforeColon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", Parse::kBad, BodyKind::kNone, 0,
                    true, false},
        RequestCase{"Folded", "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", Parse::kBad, BodyKind::kNone, 0, true,
                    false},
        RequestCase{"Http2", "GET / HTTP/2.0\r\n\r\n", Parse::kBad, BodyKind::kNone, 0, true, false},
        RequestCase{"ThreeSpaces", "GET / x HTTP/1.1\r\n\r\n", Parse::kBad, BodyKind::kNone, 0, true, false}),
    [](const ::testing::TestParamInfo<RequestCase>& p) { return p.param.name; });

struct ResponseCase {
  std::string name;
  std::string method;
  std::string raw;
  Parse parse;
  int status;
  BodyKind body;
  uint64_t length;
  bool keepAlive;
};

class Responses : public ::testing::TestWithParam<ResponseCase> {};

TEST_P(Responses, Parse) {
  const auto& tc = GetParam();
  ResponseHead head;
  std::string error;
  ASSERT_EQ(parseResponseHead(tc.raw, tc.method, head, error), tc.parse) << error;
  if (tc.parse != Parse::kDone) return;
  EXPECT_EQ(head.status, tc.status);
  EXPECT_EQ(head.body, tc.body);
  EXPECT_EQ(head.length, tc.length);
  EXPECT_EQ(head.keepAlive, tc.keepAlive);
}

INSTANTIATE_TEST_SUITE_P(
    Http1, Responses,
    ::testing::Values(
        ResponseCase{"Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Parse::kDone, 200,
                     BodyKind::kLength, 5, true},
        ResponseCase{"HeadHasNoBody", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Parse::kDone,
                     200, BodyKind::kNone, 0, true},
        ResponseCase{"NoContent", "GET", "HTTP/1.1 204 No Content\r\n\r\n", Parse::kDone, 204,
                     BodyKind::kNone, 0, true},
        ResponseCase{"NotModified", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                     Parse::kDone, 304, BodyKind::kNone, 0, true},
        ResponseCase{"Continue", "POST", "HTTP/1.1 100 Continue\r\n\r\n", Parse::kDone, 100, BodyKind::kNone,
                     0, true},
        ResponseCase{"Chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Parse::kDone,
                     200, BodyKind::kChunked, 0, true},
        ResponseCase{"UntilClose", "GET", "HTTP/1.1 200 OK\r\n\r\n", Parse::kDone, 200, BodyKind::kUntilClose,
                     0, false},
        ResponseCase{"Http10", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Parse::kDone, 200,
                     BodyKind::kLength, 1, false},
        ResponseCase{"NoReasonPhrase", "GET", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Parse::kDone, 200,
                     BodyKind::kNone, 0, true},
        ResponseCase{"BadStatus", "GET", "HTTP/1.1 2x0 OK\r\n\r\n", Parse::kBad, 0, BodyKind::kNone, 0, true},
        ResponseCase{"NotHttp", "GET", "SSH-2.0-OpenSSH\r\n\r\n", Parse::kBad, 0, BodyKind::kNone, 0, true}),
    [](const ::testing::TestParamInfo<ResponseCase>& p) { return p.param.name; });

struct ChunkCase {
  std::string name;
  std::string raw;
  size_t consumed;  // bytes that belong to the body
  bool done;
  bool bad;
};

class Chunks : public ::testing::TestWithParam<ChunkCase> {};

TEST_P(Chunks, ScanWholeAndByteByByte) {
  const auto& tc = GetParam();
  {
    ChunkedScanner s;
    bool bad = false;
    const size_t n = s.feed(tc.raw, bad);
    EXPECT_EQ(bad, tc.bad);
    if (!tc.bad) {
      EXPECT_EQ(n, tc.consumed);
      EXPECT_EQ(s.done(), tc.done);
    }
  }
  ChunkedScanner s;
  size_t total = 0;
  bool bad = false;
  for (char c : tc.raw) {
    if (s.done() || bad) break;
    total += s.feed(std::string_view(&c, 1), bad);
  }
  EXPECT_EQ(bad, tc.bad);
  if (!tc.bad) {
    EXPECT_EQ(total, tc.consumed);
    EXPECT_EQ(s.done(), tc.done);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Http1, Chunks,
    ::testing::Values(ChunkCase{"Simple", "5\r\nhello\r\n0\r\n\r\n", 15, true, false},
                      ChunkCase{"TrailingBytesAreNotTheBody", "1\r\na\r\n0\r\n\r\nGET /next", 11, true,
                                false},
                      ChunkCase{"Extension", "3;x=y\r\nabc\r\n0\r\n\r\n", 17, true, false},
                      ChunkCase{"Trailers", "1\r\na\r\n0\r\nX-T: 1\r\n\r\n", 19, true, false},
                      ChunkCase{"HexUpper", "A\r\n0123456789\r\n0\r\n\r\n", 20, true, false},
                      ChunkCase{"Unfinished", "5\r\nhel", 6, false, false},
                      ChunkCase{"NoSize", "\r\n", 0, false, true},
                      ChunkCase{"NoCrlfAfterData", "1\r\nab\r\n", 0, false, true},
                      ChunkCase{"HugeSize", "fffffffffffffffff\r\n", 0, false, true}),
    [](const ::testing::TestParamInfo<ChunkCase>& p) { return p.param.name; });

TEST(Http1, IdempotentMethods) {
  for (const char* m : {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
    EXPECT_TRUE(isIdempotent(m)) << m;
  for (const char* m : {"POST", "PATCH", "CONNECT", "get"}) EXPECT_FALSE(isIdempotent(m)) << m;
}

TEST(Http1, WithHeaderAddsALineBeforeTheEnd) {
  EXPECT_EQ(withHeader("GET / HTTP/1.1\r\nHost: a\r\n\r\n", "X-Forwarded-For", "10.0.0.1"),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n");
}

}  // namespace
}  // namespace ferry::switchover::http1
