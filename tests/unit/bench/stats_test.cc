#include "ferry/bench/stats.h"

#include <cerrno>

#include <gtest/gtest.h>

namespace ferry::bench {
namespace {

constexpr auto kOk = FailureKind::kOk;
constexpr auto kRefused = FailureKind::kConnectRefused;

ProbeRecord rec(std::int64_t send_ms, std::int64_t latency_ms, FailureKind kind = kOk) {
  ProbeRecord r;
  r.send_us = send_ms * 1000;
  r.latency_us = latency_ms * 1000;
  r.kind = kind;
  r.status = kind == kOk ? 200 : 0;
  return r;
}

struct DowntimeCase {
  std::string name;
  std::vector<ProbeRecord> records;
  std::int64_t window_end_ms;
  std::int64_t from_ms;
  std::int64_t to_ms;
  bool recovered;  // summary's recovered
};

class DowntimeTest : public ::testing::TestWithParam<DowntimeCase> {};

TEST_P(DowntimeTest, LongestSpanWithoutSuccess) {
  const auto& c = GetParam();
  auto span = longestDowntime(c.records, c.window_end_ms * 1000);
  EXPECT_EQ(span.from_us, c.from_ms * 1000) << c.name;
  EXPECT_EQ(span.to_us, c.to_ms * 1000) << c.name;
  EXPECT_EQ(summarize(c.records, c.window_end_ms * 1000).recovered, c.recovered) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, DowntimeTest,
    ::testing::Values(
        // Healthy: the span is interval + latency (the meter's resolution).
        DowntimeCase{"healthy", {rec(0, 1), rec(10, 1), rec(20, 1), rec(30, 1)}, 35, 0, 11, true},
        // Refused from 20 to 50: last success sent at 10, first success after sent at 60, done at 61.
        DowntimeCase{"refused gap",
                     {rec(0, 1), rec(10, 1), rec(20, 0, kRefused), rec(30, 0, kRefused), rec(40, 0, kRefused),
                      rec(50, 0, kRefused), rec(60, 1), rec(70, 1)},
                     75,
                     10,
                     61,
                     true},
        // Frozen service: requests sent during the freeze all succeed late, answered at 500.
        DowntimeCase{"late answers count",
                     {rec(0, 1), rec(10, 490), rec(20, 480), rec(30, 470), rec(500, 1)},
                     505,
                     0,
                     500,
                     true},
        // A single slow success between fast ones is not downtime.
        DowntimeCase{"slow outlier", {rec(0, 800), rec(10, 1), rec(20, 1), rec(30, 1)}, 35, 0, 11, true},
        DowntimeCase{
            "slow success inside", {rec(0, 1), rec(10, 800), rec(20, 1), rec(30, 1)}, 35, 0, 21, true},
        // Down at the start: from the first send to the first success's completion.
        DowntimeCase{"down at start",
                     {rec(0, 0, kRefused), rec(10, 0, kRefused), rec(20, 2), rec(30, 1)},
                     35,
                     0,
                     22,
                     true},
        // Still down at the end: from the last success's send to the end of the window.
        DowntimeCase{"down at end",
                     {rec(0, 1), rec(10, 1), rec(20, 0, kRefused), rec(30, 0, kRefused)},
                     40,
                     10,
                     40,
                     false},
        DowntimeCase{"never up", {rec(0, 0, kRefused), rec(10, 0, kRefused)}, 20, 0, 20, false},
        DowntimeCase{"no requests", {}, 0, 0, 0, true},
        // Out-of-order completion: records need not be sorted by send time.
        DowntimeCase{
            "unsorted input", {rec(60, 1), rec(10, 1), rec(30, 0, kRefused), rec(0, 1)}, 65, 10, 61, true}),
    [](const auto& tp) {
      std::string n = tp.param.name;
      for (auto& ch : n) ch = (std::isalnum(static_cast<unsigned char>(ch)) != 0) ? ch : '_';
      return n;
    });

struct PercentileCase {
  std::vector<std::int64_t> values;
  double p;
  std::int64_t expected;
};

class PercentileTest : public ::testing::TestWithParam<PercentileCase> {};

TEST_P(PercentileTest, NearestRank) {
  EXPECT_EQ(percentile(GetParam().values, GetParam().p), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(Table, PercentileTest,
                         ::testing::Values(PercentileCase{{}, 50, 0}, PercentileCase{{7}, 50, 7},
                                           PercentileCase{{7}, 99, 7}, PercentileCase{{3, 1, 2}, 50, 2},
                                           PercentileCase{{1, 2, 3, 4}, 50, 2},
                                           PercentileCase{{1, 2, 3, 4}, 75, 3},
                                           PercentileCase{{1, 2, 3, 4}, 100, 4},
                                           // 100 values 1..100: p99 is the 99th.
                                           PercentileCase{[] {
                                                            std::vector<std::int64_t> v;
                                                            for (int i = 100; i >= 1; --i) v.push_back(i);
                                                            return v;
                                                          }(),
                                                          99, 99}));

struct ClassifyCase {
  int value;
  FailureKind kind;
};

class StatusClassTest : public ::testing::TestWithParam<ClassifyCase> {};
TEST_P(StatusClassTest, Maps) {
  EXPECT_EQ(classifyStatus(GetParam().value), GetParam().kind);
}
INSTANTIATE_TEST_SUITE_P(
    Table, StatusClassTest,
    ::testing::Values(ClassifyCase{200, kOk}, ClassifyCase{204, kOk}, ClassifyCase{302, kOk},
                      ClassifyCase{404, FailureKind::kHttpOther}, ClassifyCase{401, FailureKind::kHttpOther},
                      ClassifyCase{500, FailureKind::kHttp5xx}, ClassifyCase{502, FailureKind::kHttp5xx},
                      ClassifyCase{503, FailureKind::kHttp5xx}, ClassifyCase{101, FailureKind::kHttpOther}));

class ConnectErrnoTest : public ::testing::TestWithParam<ClassifyCase> {};
TEST_P(ConnectErrnoTest, Maps) {
  EXPECT_EQ(classifyConnectErrno(GetParam().value), GetParam().kind);
}
INSTANTIATE_TEST_SUITE_P(Table, ConnectErrnoTest,
                         ::testing::Values(ClassifyCase{ECONNREFUSED, kRefused},
                                           ClassifyCase{ETIMEDOUT, FailureKind::kConnectTimeout},
                                           ClassifyCase{EHOSTUNREACH, FailureKind::kUnreachable},
                                           ClassifyCase{ENETUNREACH, FailureKind::kUnreachable},
                                           ClassifyCase{ECONNRESET, FailureKind::kReset},
                                           ClassifyCase{EMFILE, FailureKind::kLocalError},
                                           ClassifyCase{EACCES, FailureKind::kConnectError}));

class IoErrnoTest : public ::testing::TestWithParam<ClassifyCase> {};
TEST_P(IoErrnoTest, Maps) {
  EXPECT_EQ(classifyIoErrno(GetParam().value), GetParam().kind);
}
INSTANTIATE_TEST_SUITE_P(Table, IoErrnoTest,
                         ::testing::Values(ClassifyCase{ECONNRESET, FailureKind::kReset},
                                           ClassifyCase{EPIPE, FailureKind::kReset},
                                           ClassifyCase{ETIMEDOUT, FailureKind::kTimeout},
                                           ClassifyCase{EHOSTUNREACH, FailureKind::kUnreachable}));

TEST(Summarize, CountsByKindSessionAndLatency) {
  std::vector<ProbeRecord> r{rec(0, 1),
                             rec(10, 3),
                             rec(20, 0, kRefused),
                             rec(30, 300, FailureKind::kTimeout),
                             rec(40, 2, FailureKind::kHttp5xx),
                             rec(50, 2)};
  r[0].session = SessionCheck::kValid;
  r[5].session = SessionCheck::kLost;
  auto s = summarize(r, 55000);
  EXPECT_EQ(s.sent, 6);
  EXPECT_EQ(s.ok, 3);
  EXPECT_EQ(s.failed, 3);
  EXPECT_EQ(s.failed_by_kind.at("connect_refused"), 1);
  EXPECT_EQ(s.failed_by_kind.at("timeout"), 1);
  EXPECT_EQ(s.failed_by_kind.at("http_5xx"), 1);
  EXPECT_EQ(s.failed_by_kind.count("reset"), 0U);
  EXPECT_EQ(s.p50_us, 2000);
  EXPECT_EQ(s.max_us, 3000);  // failures do not count towards latency
  EXPECT_EQ(s.session_checks, 2);
  EXPECT_EQ(s.session_lost, 1);
  EXPECT_EQ(s.downtime.from_us, 10000);
  EXPECT_EQ(s.downtime.to_us, 52000);
}

TEST(Timeline, CsvHasHeaderAndOneLinePerRequestInSendOrder) {
  std::vector<ProbeRecord> r{rec(10, 2, kRefused), rec(0, 1)};
  r[0].latency_us = 250;
  std::string csv = timelineCsv(r, 1'000'000);
  EXPECT_EQ(csv,
            "send_ms,send_unix_ms,latency_ms,status,kind,session\n"
            "0.000,1000.000,1.000,200,ok,\n"
            "10.000,1010.000,0.250,0,connect_refused,\n");
}

}  // namespace
}  // namespace ferry::bench
