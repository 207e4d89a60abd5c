#include "ferry/checkpoint/unix_http.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "fake_podman_api.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using testing::FakePodmanApi;
using testing::FakeRequest;
using testing::FakeResponse;
using testing::pattern;
using testing::slurp;
using testing::spit;
using namespace std::chrono_literals;

struct AnswerCase {
  std::string name;
  FakeResponse response;
  HttpFailure failure;
  int status;
  std::string body;
};

class UnixHttpAnswers : public ::testing::TestWithParam<AnswerCase> {};

FakeResponse raw(std::string bytes) {
  FakeResponse r;
  r.raw = std::move(bytes);
  return r;
}

FakeResponse chunked(std::string body, std::size_t piece) {
  FakeResponse r;
  r.body = std::move(body);
  r.chunked = true;
  r.chunk_size = piece;
  return r;
}

FakeResponse closeDelimited(std::string body) {
  FakeResponse r;
  r.body = std::move(body);
  r.close_delimited = true;
  return r;
}

FakeResponse hangUp() {
  FakeResponse r;
  r.hang_up = true;
  return r;
}

TEST_P(UnixHttpAnswers, ReadsEveryFraming) {
  const auto& c = GetParam();
  FakePodmanApi api([&](const FakeRequest&) { return c.response; });
  UnixHttpRequest req;
  req.target = "/v5.0.0/libpod/_ping";
  req.timeout = 5s;
  auto r = unixHttpRequest(api.socket(), req);
  EXPECT_EQ(r.failure, c.failure) << c.name << ": " << r.detail;
  EXPECT_EQ(r.status, c.status) << c.name;
  if (c.failure == HttpFailure::kNone) {
    EXPECT_EQ(r.body, c.body) << c.name;
    EXPECT_EQ(r.phase, HttpPhase::kDone);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, UnixHttpAnswers,
    ::testing::Values(
        AnswerCase{"length", raw("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), HttpFailure::kNone,
                   200, "hello"},
        AnswerCase{"chunked", chunked("hello chunked world", 3), HttpFailure::kNone, 200,
                   "hello chunked world"},
        AnswerCase{"close_delimited", closeDelimited("until the close"), HttpFailure::kNone, 200,
                   "until the close"},
        AnswerCase{"no_content", raw("HTTP/1.1 204 No Content\r\nApi-Version: 1.41\r\n\r\n"),
                   HttpFailure::kNone, 204, ""},
        AnswerCase{"continue_first",
                   raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
                   HttpFailure::kNone, 200, "x"},
        AnswerCase{"length_cut", raw("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly this"),
                   HttpFailure::kClosed, 200, ""},
        AnswerCase{"chunks_cut", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
                   HttpFailure::kClosed, 200, ""},
        AnswerCase{"bad_chunk", raw("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n"),
                   HttpFailure::kBadResponse, 200, ""},
        AnswerCase{"head_cut", raw("HTTP/1.1 200 OK\r\nContent-"), HttpFailure::kClosed, 0, ""},
        AnswerCase{"hang_up", hangUp(), HttpFailure::kClosed, 0, ""},
        AnswerCase{"not_http", raw("SSH-2.0-OpenSSH_9.2\r\n\r\n"), HttpFailure::kBadResponse, 0, ""},
        AnswerCase{"bad_length", raw("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"),
                   HttpFailure::kBadResponse, 200, ""}),
    [](const auto& tp) { return tp.param.name; });

TEST(UnixHttp, SendsAWellFormedRequest) {
  FakePodmanApi api([](const FakeRequest&) { return FakeResponse{}; });
  UnixHttpRequest req;
  req.method = "POST";
  req.target = "/v5.0.0/libpod/containers/web/checkpoint?keep=true";
  req.body = "{}";
  auto r = unixHttpRequest(api.socket(), req);
  ASSERT_TRUE(r.ok()) << r.detail;
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/v5.0.0/libpod/containers/web/checkpoint");
  EXPECT_EQ(seen[0].query, "keep=true");
  EXPECT_EQ(seen[0].header("host").value_or(""), "d");
  EXPECT_EQ(seen[0].header("connection").value_or(""), "close");
  EXPECT_EQ(seen[0].header("content-length").value_or(""), "2");
  EXPECT_EQ(seen[0].body, "{}");
}

TEST(UnixHttp, KeepsLargeAnswersOutOfMemoryUnlessAllowed) {
  FakePodmanApi api([](const FakeRequest&) {
    FakeResponse r;
    r.body = std::string(3000, 'x');
    return r;
  });
  UnixHttpRequest req;
  req.max_body_in_memory = 1000;
  auto r = unixHttpRequest(api.socket(), req);
  EXPECT_EQ(r.failure, HttpFailure::kBadResponse);
  EXPECT_NE(r.detail.find("larger than 1000 bytes"), std::string::npos) << r.detail;
}

TEST(UnixHttp, StreamsASuccessfulBodyIntoAFileAndAnErrorIntoMemory) {
  const std::string big = pattern(std::size_t{3} << 20, 1);
  FakePodmanApi api([&](const FakeRequest& q) {
    if (q.path == "/error") {
      FakeResponse e;
      e.status = 500;
      e.body = "{\"cause\":\"x\",\"message\":\"y\",\"response\":500}";
      return e;
    }
    return chunked(big, 65521);
  });
  UnixHttpRequest req;
  req.target = "/ok";
  req.response_file = api.dir() / "out.bin";
  std::size_t seen = 0;
  req.on_response_data = [&](std::string_view d) { seen += d.size(); };
  auto r = unixHttpRequest(api.socket(), req);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_TRUE(r.body.empty());
  EXPECT_EQ(r.body_bytes, big.size());
  EXPECT_EQ(seen, big.size());
  EXPECT_EQ(slurp(req.response_file), big);
  struct stat st {};
  ASSERT_EQ(::stat(req.response_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777U, 0600U);

  req.target = "/error";
  req.response_file = api.dir() / "error.bin";
  r = unixHttpRequest(api.socket(), req);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("\"message\":\"y\""), std::string::npos);
  EXPECT_FALSE(fs::exists(req.response_file));
}

TEST(UnixHttp, UploadsARegularFileWithContentLength) {
  FakePodmanApi api([](const FakeRequest&) { return FakeResponse{}; });
  const std::string data = pattern(std::size_t{5} << 20, 2);
  spit(api.dir() / "in.tar", data);
  UnixHttpRequest req;
  req.method = "POST";
  req.body_file = api.dir() / "in.tar";
  auto r = unixHttpRequest(api.socket(), req);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.sent_body_bytes, data.size());
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_FALSE(seen[0].chunked);
  EXPECT_EQ(seen[0].header("content-length").value_or(""), std::to_string(data.size()));
  EXPECT_TRUE(seen[0].body == data);
}

TEST(UnixHttp, UploadsAFifoChunked) {
  FakePodmanApi api([](const FakeRequest&) { return FakeResponse{}; });
  const std::string data = pattern(std::size_t{1} << 20, 3);
  const fs::path fifo = api.dir() / "in.fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    std::ofstream out(fifo, std::ios::binary);  // blocks until the client opens it
    for (std::size_t off = 0; off < data.size(); off += 100000) {
      out << data.substr(off, 100000) << std::flush;
      std::this_thread::sleep_for(1ms);
    }
  });
  // Let the writer open its end first: a FIFO without a writer reads as empty.
  std::this_thread::sleep_for(50ms);
  UnixHttpRequest req;
  req.method = "POST";
  req.body_file = fifo;
  auto r = unixHttpRequest(api.socket(), req);
  writer.join();
  ASSERT_TRUE(r.ok()) << r.detail;
  auto seen = api.requests();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].chunked);
  EXPECT_FALSE(seen[0].header("content-length").has_value());
  EXPECT_TRUE(seen[0].body == data);
}

TEST(UnixHttp, ReadsAnAnswerGivenBeforeTheBodyWasTaken) {
  FakePodmanApi api([](const FakeRequest&) {
    FakeResponse r;
    r.status = 413;
    r.body = "{\"cause\":\"too big\",\"message\":\"too big\",\"response\":413}";
    return r;
  });
  api.setReadBodies(false);
  spit(api.dir() / "big.tar", pattern(std::size_t{16} << 20, 4));
  UnixHttpRequest req;
  req.method = "POST";
  req.body_file = api.dir() / "big.tar";
  req.timeout = 10s;
  auto r = unixHttpRequest(api.socket(), req);
  ASSERT_TRUE(r.ok()) << r.detail;
  EXPECT_EQ(r.status, 413);
  EXPECT_LT(r.sent_body_bytes, std::uint64_t{16} << 20);
}

TEST(UnixHttp, GivesUpOnAServerThatNeverAnswers) {
  FakePodmanApi api([](const FakeRequest&) {
    FakeResponse r;
    r.never_answer = true;
    return r;
  });
  UnixHttpRequest req;
  req.timeout = 300ms;
  auto started = std::chrono::steady_clock::now();
  auto r = unixHttpRequest(api.socket(), req);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(r.failure, HttpFailure::kTimeout);
  EXPECT_EQ(r.phase, HttpPhase::kWaiting);
  EXPECT_NE(r.detail.find("300 ms"), std::string::npos) << r.detail;
  EXPECT_GE(took, 290ms);
  EXPECT_LT(took, 3s);
}

TEST(UnixHttp, SaysWhyItCannotConnect) {
  char tmpl[] = "/tmp/ferry-http-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const fs::path dir = tmpl;
  // No socket at all.
  auto r = unixHttpRequest(dir / "none.sock", UnixHttpRequest{});
  EXPECT_EQ(r.failure, HttpFailure::kNoSocket);
  EXPECT_EQ(r.phase, HttpPhase::kConnecting);
  // A socket file nobody listens on (bound, never listening: what a dead service leaves).
  const fs::path dead = dir / "dead.sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, dead.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  r = unixHttpRequest(dead, UnixHttpRequest{});
  EXPECT_EQ(r.failure, HttpFailure::kRefused) << r.detail;
  ::close(fd);
  // A path a sockaddr_un cannot hold.
  r = unixHttpRequest(dir / std::string(200, 'x'), UnixHttpRequest{});
  EXPECT_EQ(r.failure, HttpFailure::kLocal);
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace ferry::checkpoint
