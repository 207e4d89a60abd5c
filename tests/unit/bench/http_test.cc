#include "ferry/bench/http.h"

#include <gtest/gtest.h>

namespace ferry::bench {
namespace {

using namespace std::chrono_literals;

struct UrlCase {
  std::string text;
  bool ok;
  std::string host;
  std::uint16_t port;
  std::string target;
};

class UrlTest : public ::testing::TestWithParam<UrlCase> {};

TEST_P(UrlTest, Parses) {
  const auto& c = GetParam();
  auto u = parseUrl(c.text);
  ASSERT_EQ(u.ok(), c.ok) << c.text;
  if (!c.ok) {
    EXPECT_NE(u.error().message().find(c.text), std::string::npos);
    return;
  }
  EXPECT_EQ(u->host, c.host);
  EXPECT_EQ(u->port, c.port);
  EXPECT_EQ(u->target, c.target);
}

INSTANTIATE_TEST_SUITE_P(
    Table, UrlTest,
    ::testing::Values(UrlCase{"http://lb/health.php", true, "lb", 80, "/health.php"},
                      UrlCase{"http://lb", true, "lb", 80, "/"},
                      UrlCase{"HTTP://10.231.0.10:8080/a?b=c", true, "10.231.0.10", 8080, "/a?b=c"},
                      UrlCase{"http://lb?x=1", true, "lb", 80, "/?x=1"},
                      UrlCase{"http://[::1]:81/x", true, "::1", 81, "/x"},
                      UrlCase{"https://lb/", false, "", 0, ""}, UrlCase{"lb/health.php", false, "", 0, ""},
                      UrlCase{"http://:80/", false, "", 0, ""}, UrlCase{"http://lb:0/", false, "", 0, ""},
                      UrlCase{"http://lb:99999/", false, "", 0, ""},
                      UrlCase{"http://lb:8x/", false, "", 0, ""}, UrlCase{"http://lb:/", false, "", 0, ""},
                      UrlCase{"http://u@lb/", false, "", 0, ""}, UrlCase{"http://lb/a b", false, "", 0, ""}));

struct DurationCase {
  std::string text;
  bool ok;
  std::chrono::microseconds value;
};

class DurationTest : public ::testing::TestWithParam<DurationCase> {};

TEST_P(DurationTest, Parses) {
  auto d = parseDuration(GetParam().text);
  ASSERT_EQ(d.ok(), GetParam().ok) << GetParam().text;
  if (GetParam().ok) {
    EXPECT_EQ(*d, GetParam().value);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, DurationTest,
                         ::testing::Values(DurationCase{"10ms", true, 10ms}, DurationCase{"1s", true, 1s},
                                           DurationCase{"2.5s", true, 2500ms},
                                           DurationCase{"500us", true, 500us}, DurationCase{"3m", true, 180s},
                                           DurationCase{"1h", true, 3600s}, DurationCase{"15", true, 15ms},
                                           DurationCase{"0", true, 0us}, DurationCase{"", false, 0us},
                                           DurationCase{"ms", false, 0us}, DurationCase{"-1s", false, 0us},
                                           DurationCase{"1x", false, 0us},
                                           DurationCase{"1.2.3s", false, 0us}));

struct ParseCase {
  std::string name;
  std::string raw;
  bool peer_closed;
  ParseState state;
  int status;
  std::string body;
};

class ParseTest : public ::testing::TestWithParam<ParseCase> {};

TEST_P(ParseTest, Parses) {
  const auto& c = GetParam();
  auto out = parseResponse(c.raw, c.peer_closed);
  ASSERT_EQ(out.state, c.state) << c.name;
  if (c.state == ParseState::kComplete) {
    EXPECT_EQ(out.response.status, c.status) << c.name;
    EXPECT_EQ(out.response.body, c.body) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseTest,
    ::testing::Values(
        ParseCase{"length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false, ParseState::kComplete,
                  200, "ok"},
        ParseCase{"length short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", false,
                  ParseState::kIncomplete, 0, ""},
        ParseCase{"length short closed", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", true,
                  ParseState::kBad, 0, ""},
        ParseCase{"head only", "HTTP/1.1 200 OK\r\nContent-Le", false, ParseState::kIncomplete, 0, ""},
        ParseCase{"head cut by close", "HTTP/1.1 200 OK\r\nContent-Le", true, ParseState::kBad, 0, ""},
        ParseCase{"header case", "HTTP/1.0 503 Service Unavailable\r\ncOnTeNt-LeNgTh:  4 \r\n\r\ndown", false,
                  ParseState::kComplete, 503, "down"},
        ParseCase{"chunked",
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                  "chunked\r\n\r\n2\r\nok\r\nA;x=y\r\n0123456789\r\n0\r\n\r\n",
                  false, ParseState::kComplete, 200, "ok0123456789"},
        ParseCase{"chunked trailer",
                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nT: 1\r\n\r\n", false,
                  ParseState::kComplete, 200, "x"},
        ParseCase{"chunked short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", false,
                  ParseState::kIncomplete, 0, ""},
        ParseCase{"chunked bad size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n",
                  false, ParseState::kBad, 0, ""},
        ParseCase{"until close open", "HTTP/1.1 200 OK\r\nX: y\r\n\r\nhello", false, ParseState::kIncomplete,
                  0, ""},
        ParseCase{"until close", "HTTP/1.1 200 OK\r\nX: y\r\n\r\nhello", true, ParseState::kComplete, 200,
                  "hello"},
        ParseCase{"no content", "HTTP/1.1 204 No Content\r\n\r\n", false, ParseState::kComplete, 204, ""},
        ParseCase{"redirect", "HTTP/1.1 302 Found\r\nLocation: /videos.php\r\nContent-Length: 0\r\n\r\n",
                  false, ParseState::kComplete, 302, ""},
        ParseCase{"continue first",
                  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", false,
                  ParseState::kComplete, 201, "x"},
        ParseCase{"not http", "SSH-2.0-OpenSSH\r\n\r\n", false, ParseState::kBad, 0, ""},
        ParseCase{"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", false, ParseState::kBad, 0, ""},
        ParseCase{"bad header", "HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false, ParseState::kBad, 0, ""},
        ParseCase{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, ParseState::kBad, 0,
                  ""}),
    [](const auto& tp) {
      std::string n = tp.param.name;
      for (auto& ch : n) ch = (std::isalnum(static_cast<unsigned char>(ch)) != 0) ? ch : '_';
      return n;
    });

TEST(Http, HeadersAreLowerCasedAndFirstWins) {
  auto out = parseResponse("HTTP/1.1 302 Found\r\nSet-Cookie: a=1; path=/\r\nSet-Cookie: b=2\r\n\r\n", true);
  ASSERT_EQ(out.state, ParseState::kComplete);
  EXPECT_EQ(out.response.header("set-cookie").value(), "a=1; path=/");
  EXPECT_EQ(out.response.headers.size(), 2U);
  EXPECT_FALSE(out.response.header("location").has_value());
}

TEST(Http, FormEncodeEscapes) {
  EXPECT_EQ(formEncode({{"user", "user1"}, {"password", "p&s=s w"}}), "user=user1&password=p%26s%3Ds%20w");
  EXPECT_EQ(formEncode({}), "");
}

TEST(Http, RequestHasHostCloseAndLength) {
  HttpRequest r;
  r.method = "POST";
  r.target = "/api/write.php";
  r.headers.emplace_back("Cookie", "PHPSESSID=x");
  r.body = "writer=w&seq=1";
  EXPECT_EQ(serializeRequest(r, "lb"),
            "POST /api/write.php HTTP/1.1\r\nHost: lb\r\nUser-Agent: ferry-bench\r\nAccept: */*\r\n"
            "Connection: close\r\nCookie: PHPSESSID=x\r\nContent-Length: 14\r\n\r\nwriter=w&seq=1");
  HttpRequest g;
  EXPECT_EQ(serializeRequest(g, "lb:8080").find("Content-Length"), std::string::npos);
}

TEST(Http, ResolveFailsWithAHint) {
  auto ep = resolve(Url{"no-such-host.invalid", 80, "/"});
  ASSERT_FALSE(ep.ok());
  EXPECT_NE(ep.error().message().find("no-such-host.invalid"), std::string::npos);
}

}  // namespace
}  // namespace ferry::bench
