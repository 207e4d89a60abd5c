// The hand-off proxy on 127.0.0.1 between real sockets: fake backends A (the source)
// and B (the target), clients that block with deadlines. No timed assertions: a held
// request is proven held because it completes only after the release was asked for,
// and the source never saw it.
#include "ferry/switchover/proxy.h"

#include <gtest/gtest.h>

#include <thread>

#include "fake_backend.h"
#include "test_client.h"

namespace ferry::switchover {
namespace {

using namespace std::chrono_literals;
using testing::FakeBackend;
using testing::HttpResult;

struct Rig {
  FakeBackend a{"A"};
  FakeBackend b{"B"};
  std::unique_ptr<HandoffProxy> proxy;
  Endpoint front;

  explicit Rig(ProxyMode mode = ProxyMode::kHttp, size_t maxHeld = 1024) {
    ProxyServiceConfig c;
    c.name = "ref";
    c.front = {"127.0.0.1", 0};
    c.mode = mode;
    c.backend = a.endpoint();
    c.max_held = maxHeld;
    c.connect_timeout = 2s;
    auto p = HandoffProxy::start({c});
    EXPECT_TRUE(p.ok()) << p.error().message();
    proxy = std::move(p.value());
    front = *proxy->front("ref");
  }
  ~Rig() { proxy->stop(); }

  ProxyCounters counters() const {
    auto c = proxy->counters("ref");
    EXPECT_TRUE(c.ok());
    return c.ok() ? *c : ProxyCounters{};
  }

  // Waits (bounded) until `pred(counters)` holds; false if it never did.
  template <typename P>
  bool waitFor(P pred, std::chrono::milliseconds limit = 10s) const {
    const auto until = testing::Clock::now() + limit;
    while (testing::Clock::now() < until) {
      if (pred(counters())) return true;
      std::this_thread::sleep_for(5ms);
    }
    return pred(counters());
  }
};

// ---- hold, release, queue full, hold timeout -----------------------------------------

enum class Then { kCommitToB, kRollbackToA, kNothing };

struct HoldCase {
  std::string name;
  ProxyMode mode;
  std::string method, path, body;
  int requests;
  size_t maxHeld;
  std::chrono::milliseconds holdTimeout;
  Then then;
  int servedByB, servedByA, answered503, closed;
  std::string reason503;
};

class Hold : public ::testing::TestWithParam<HoldCase> {};

TEST_P(Hold, RequestsWaitForTheReleaseAndGoWhereItSays) {
  const HoldCase& tc = GetParam();
  Rig rig(tc.mode, tc.maxHeld);
  auto held = rig.proxy->hold("ref", tc.holdTimeout, 100ms, 60s);
  ASSERT_TRUE(held.ok()) << held.error().message();
  EXPECT_EQ(held->in_flight_at_start, 0u);

  std::vector<std::future<HttpResult>> results;
  for (int i = 0; i < tc.requests; ++i) {
    const std::string body = tc.body.empty() ? "" : tc.body + std::to_string(i);
    results.push_back(
        testing::async([&, body] { return testing::fetch(rig.front, tc.method, tc.path, body, 20s); }));
  }
  const uint64_t expectHeld = std::min<uint64_t>(static_cast<uint64_t>(tc.requests), tc.maxHeld);
  if (tc.then != Then::kNothing) {
    ASSERT_TRUE(rig.waitFor([&](const ProxyCounters& c) {
      return c.held_now == expectHeld && c.refused == static_cast<uint64_t>(tc.requests) - expectHeld;
    })) << "held "
        << rig.counters().held_now;
  }
  const auto releasedAt = testing::Clock::now();
  if (tc.then == Then::kCommitToB) {
    ASSERT_TRUE(rig.proxy->release("ref", rig.b.endpoint()).ok());
  }
  if (tc.then == Then::kRollbackToA) {
    ASSERT_TRUE(rig.proxy->release("ref", rig.a.endpoint()).ok());
  }

  int byA = 0, byB = 0, n503 = 0, closed = 0;
  for (auto& f : results) {
    HttpResult r = f.get();
    if (r.status == 200) {
      EXPECT_GE(r.finished, releasedAt) << "a held request was answered before the release";
      (r.backend == "B" ? byB : byA)++;
      if (tc.method == "POST") {
        EXPECT_EQ(r.body.rfind(r.backend + ":" + tc.body, 0), 0u) << r.body;
      }
    } else if (r.status == 503) {
      ++n503;
      EXPECT_EQ(r.reason, tc.reason503);
      EXPECT_NE(r.body.find("switched over"), std::string::npos) << r.body;
    } else {
      EXPECT_EQ(r.status, 0) << r.body;
      ++closed;
    }
  }
  EXPECT_EQ(byB, tc.servedByB);
  EXPECT_EQ(byA, tc.servedByA);
  EXPECT_EQ(n503, tc.answered503);
  EXPECT_EQ(closed, tc.closed);
  if (tc.then == Then::kCommitToB) {
    EXPECT_EQ(rig.a.totalRequests(), 0) << "the source saw a held request";
  }
  const ProxyCounters c = rig.counters();
  EXPECT_EQ(c.held, expectHeld);
  EXPECT_EQ(c.refused, static_cast<uint64_t>(tc.answered503 + tc.closed));
  if (tc.then != Then::kNothing) {
    EXPECT_EQ(c.released, expectHeld);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Proxy, Hold,
    ::testing::Values(HoldCase{"GetsGoToTheTarget", ProxyMode::kHttp, "GET", "/hello", "", 5, 100, 10s,
                               Then::kCommitToB, 5, 0, 0, 0, ""},
                      HoldCase{"PostsGoToTheTargetWithTheirBodies", ProxyMode::kHttp, "POST", "/echo",
                               "w=", 3, 100, 10s, Then::kCommitToB, 3, 0, 0, 0, ""},
                      HoldCase{"RollbackSendsThemToTheSource", ProxyMode::kHttp, "GET", "/hello", "", 3, 100,
                               10s, Then::kRollbackToA, 0, 3, 0, 0, ""},
                      HoldCase{"QueueFullAnswers503AtOnce", ProxyMode::kHttp, "GET", "/hello", "", 5, 2, 10s,
                               Then::kCommitToB, 2, 0, 3, 0, "hold-queue-full"},
                      HoldCase{"HoldTimeoutAnswers503WithTheReason", ProxyMode::kHttp, "GET", "/hello", "", 2,
                               100, 300ms, Then::kNothing, 0, 0, 2, 0, "hold-timeout"},
                      HoldCase{"TcpConnectionsGoToTheTarget", ProxyMode::kTcp, "GET", "/hello", "", 3, 100,
                               10s, Then::kCommitToB, 3, 0, 0, 0, ""},
                      HoldCase{"TcpHoldTimeoutClosesTheConnection", ProxyMode::kTcp, "GET", "/hello", "", 2,
                               100, 300ms, Then::kNothing, 0, 0, 0, 2, ""}),
    [](const ::testing::TestParamInfo<HoldCase>& p) { return p.param.name; });

// ---- retries -----------------------------------------------------------------------

struct RetryCase {
  std::string name;
  std::string method, path, body;
  int closeNext;  // the backend closes this many connections after reading the request
  int status;
  std::string bodyHas;
  uint64_t retried;
  int backendSaw;
};

class Retry : public ::testing::TestWithParam<RetryCase> {};

TEST_P(Retry, OnlyWhatIsSafeIsSentAgain) {
  const RetryCase& tc = GetParam();
  Rig rig;
  rig.a.closeNext(tc.closeNext);
  HttpResult r = testing::fetch(rig.front, tc.method, tc.path, tc.body);
  EXPECT_EQ(r.status, tc.status) << r.body << r.error;
  EXPECT_NE(r.body.find(tc.bodyHas), std::string::npos) << r.body;
  EXPECT_EQ(rig.counters().total_retried, tc.retried);
  EXPECT_EQ(rig.a.requests(tc.path), tc.backendSaw);
}

INSTANTIATE_TEST_SUITE_P(Proxy, Retry,
                         ::testing::Values(RetryCase{"GetClosedBeforeAnyAnswerByteIsRetried", "GET", "/hello",
                                                     "", 1, 200, "A", 1, 2},
                                           RetryCase{"PostClosedBeforeAnyAnswerByteIsNot", "POST", "/echo",
                                                     "w=1", 1, 502, "POST is not idempotent", 0, 1},
                                           RetryCase{"GetGivesUpAfterMaxAttempts", "GET", "/hello", "", 5,
                                                     502, "gave up after 3 attempts", 2, 3}),
                         [](const ::testing::TestParamInfo<RetryCase>& p) { return p.param.name; });

TEST(Proxy, APostThatNeverReachedTheBackendIsRetried) {
  Rig rig;
  rig.a.setListening(false);  // connection refused: nothing was sent, so even a POST is safe
  HttpResult r = testing::fetch(rig.front, "POST", "/echo", "w=1");
  EXPECT_EQ(r.status, 502);
  EXPECT_EQ(r.reason, "backend-failed");
  EXPECT_NE(r.body.find("refused the connection"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("gave up after 3 attempts"), std::string::npos) << r.body;
  EXPECT_EQ(rig.counters().total_retried, 2u);
}

// ---- what is still at the source when traffic moves ------------------------------------

struct InFlightCase {
  std::string name;
  std::string method, path, body;
  int status;
  std::string backend;  // who answers in the end
  std::string bodyHas;
};

class InFlight : public ::testing::TestWithParam<InFlightCase> {};

TEST_P(InFlight, AtTheCommitIdempotentRequestsMoveAndOthersFailClearly) {
  const InFlightCase& tc = GetParam();
  Rig rig;
  rig.a.setStalled(true);  // the source froze with the request
  auto pending = testing::async([&] { return testing::fetch(rig.front, tc.method, tc.path, tc.body, 20s); });
  ASSERT_TRUE(rig.waitFor([&](const ProxyCounters&) { return rig.a.requests(tc.path) == 1; }));
  auto held = rig.proxy->hold("ref", 10s, 200ms, 60s);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->in_flight_at_start, 1u);
  EXPECT_EQ(held->in_flight_left, 1u);  // the drain time passed
  auto released = rig.proxy->release("ref", rig.b.endpoint());
  ASSERT_TRUE(released.ok());
  EXPECT_EQ(released->cut, 1u);
  HttpResult r = pending.get();
  rig.a.setStalled(false);
  EXPECT_EQ(r.status, tc.status) << r.body << r.error;
  EXPECT_EQ(r.backend, tc.backend);
  EXPECT_NE(r.body.find(tc.bodyHas), std::string::npos) << r.body;
}

INSTANTIATE_TEST_SUITE_P(
    Proxy, InFlight,
    ::testing::Values(InFlightCase{"GetIsSentToTheTarget", "GET", "/hello", "", 200, "B", "B"},
                      InFlightCase{"PostGetsA502SayingWhy", "POST", "/echo", "w=1", 502, "", "left behind"}),
    [](const ::testing::TestParamInfo<InFlightCase>& p) { return p.param.name; });

TEST(Proxy, HoldWaitsForRequestsInFlightToFinish) {
  Rig rig;
  auto slow = testing::async([&] { return testing::fetch(rig.front, "GET", "/slow/300"); });
  ASSERT_TRUE(rig.waitFor([&](const ProxyCounters& c) { return c.in_flight == 1; }));
  auto held = rig.proxy->hold("ref", 10s, 10s, 60s);
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->in_flight_at_start, 1u);
  EXPECT_EQ(held->drained, 1u);
  EXPECT_EQ(held->in_flight_left, 0u);
  HttpResult r = slow.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.backend, "A");
  // Idempotent: a repeated hold keeps holding and says so.
  auto again = rig.proxy->hold("ref", 10s, 100ms, 60s);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->already_holding);
  ASSERT_TRUE(rig.proxy->release("ref", rig.b.endpoint()).ok());
}

TEST(Proxy, AKeptAliveConnectionFollowsTheSwitch) {
  Rig rig;
  testing::KeepAlive client(rig.front);
  ASSERT_TRUE(client.connected());
  HttpResult first = client.request("GET", "/hello");
  EXPECT_EQ(first.backend, "A");
  ASSERT_TRUE(rig.proxy->hold("ref", 10s, 100ms, 60s).ok());
  auto second = testing::async([&] { return client.request("GET", "/hello", "", 20s); });
  ASSERT_TRUE(rig.waitFor([](const ProxyCounters& c) { return c.held_now == 1; }));
  const auto releasedAt = testing::Clock::now();
  ASSERT_TRUE(rig.proxy->release("ref", rig.b.endpoint()).ok());
  HttpResult r = second.get();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.backend, "B");
  EXPECT_GE(r.finished, releasedAt);
  HttpResult third = client.request("GET", "/hello");
  EXPECT_EQ(third.backend, "B");
}

TEST(Proxy, WithoutCommitOrRollbackTheLeaseSendsTrafficBackToTheSource) {
  Rig rig;
  ASSERT_TRUE(rig.proxy->hold("ref", 10s, 100ms, 300ms).ok());
  HttpResult r = testing::fetch(rig.front, "GET", "/hello", "", 20s);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.backend, "A");
  EXPECT_FALSE(rig.counters().holding);
}

// ---- message framing -------------------------------------------------------------------

struct FramingCase {
  std::string name;
  std::string path;
  size_t bodyBytes;
};

class Framing : public ::testing::TestWithParam<FramingCase> {};

TEST_P(Framing, AnswersPassThroughWhole) {
  Rig rig;
  testing::KeepAlive client(rig.front);
  for (int i = 0; i < 2; ++i) {  // twice: the connection must be reusable afterwards
    HttpResult r = client.request("GET", GetParam().path, "", 30s);
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_EQ(r.body.size(), GetParam().bodyBytes);
  }
  EXPECT_EQ(rig.a.lastForwardedFor(), "127.0.0.1");
}

INSTANTIATE_TEST_SUITE_P(Proxy, Framing,
                         ::testing::Values(FramingCase{"Small", "/hello", 1},
                                           FramingCase{"Large", "/big/3000000", 3000000},
                                           FramingCase{"Chunked", "/chunked/50", 100}),
                         [](const ::testing::TestParamInfo<FramingCase>& p) { return p.param.name; });

struct BadCase {
  std::string name;
  std::string bytes;
  int status;
  std::string reason;
};

class BadRequest : public ::testing::TestWithParam<BadCase> {};

TEST_P(BadRequest, IsAnsweredByTheProxyAndNeverForwarded) {
  Rig rig;
  HttpResult r = testing::raw(rig.front, GetParam().bytes);
  EXPECT_EQ(r.status, GetParam().status) << r.body << r.error;
  EXPECT_EQ(r.reason, GetParam().reason);
  EXPECT_EQ(rig.a.totalRequests(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Proxy, BadRequest,
    ::testing::Values(
        BadCase{"LengthAndChunked",
                "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400, "bad-request"},
        BadCase{"NotHttp", "HELLO THERE\r\n\r\n", 400, "bad-request"},
        BadCase{"FoldedHeader", "GET / HTTP/1.1\r\nX-A: 1\r\n continued\r\n\r\n", 400, "bad-request"},
        BadCase{"HeadTooLarge", "GET / HTTP/1.1\r\nX-Big: " + std::string(70000, 'a') + "\r\n\r\n", 431,
                "head-too-large"}),
    [](const ::testing::TestParamInfo<BadCase>& p) { return p.param.name; });

TEST(Proxy, RefusesToStartOnADuplicateServiceOrAnUnresolvableBackend) {
  ProxyServiceConfig c;
  c.name = "ref";
  c.front = {"127.0.0.1", 0};
  c.backend = {"127.0.0.1", 9};
  auto dup = HandoffProxy::start({c, c});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().what.find("configured twice"), std::string::npos);
  c.backend = {"no-such-host.invalid", 80};
  auto bad = HandoffProxy::start({c});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().what.find("cannot resolve"), std::string::npos) << bad.error().what;
}

}  // namespace
}  // namespace ferry::switchover
