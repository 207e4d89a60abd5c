#include "ferry/bench/writer.h"

#include <gtest/gtest.h>

namespace ferry::bench {
namespace {

using Seqs = std::vector<std::int64_t>;

struct VerifyCase {
  std::string name;
  Seqs acked;
  Seqs unknown;
  std::vector<ServerRow> rows;  // any order; verification sorts by id
  Seqs missing;
  Seqs duplicated;
  std::int64_t out_of_order;
  Seqs unexpected;
  std::int64_t unknown_committed;
};

class VerifyTest : public ::testing::TestWithParam<VerifyCase> {};

TEST_P(VerifyTest, ComparesAcknowledgedWithRows) {
  const auto& c = GetParam();
  auto r = verifyWrites(c.acked, c.unknown, c.rows);
  EXPECT_EQ(r.missing, c.missing) << c.name;
  EXPECT_EQ(r.duplicated, c.duplicated) << c.name;
  EXPECT_EQ(r.out_of_order, c.out_of_order) << c.name;
  EXPECT_EQ(r.unexpected, c.unexpected) << c.name;
  EXPECT_EQ(r.unknown_committed, c.unknown_committed) << c.name;
  EXPECT_EQ(r.pass(), c.missing.empty()) << c.name;
  EXPECT_EQ(r.acknowledged, static_cast<std::int64_t>(c.acked.size())) << c.name;
  EXPECT_EQ(r.rows, static_cast<std::int64_t>(c.rows.size())) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, VerifyTest,
    ::testing::Values(
        VerifyCase{"all there", {1, 2, 3}, {}, {{10, 1}, {11, 2}, {12, 3}}, {}, {}, 0, {}, 0},
        VerifyCase{"nothing written", {}, {}, {}, {}, {}, 0, {}, 0},
        VerifyCase{"one deleted", {1, 2, 3}, {}, {{10, 1}, {12, 3}}, {2}, {}, 0, {}, 0},
        VerifyCase{"all lost", {1, 2}, {}, {}, {1, 2}, {}, 0, {}, 0},
        VerifyCase{"unknown absent is fine", {1, 3}, {2}, {{10, 1}, {12, 3}}, {}, {}, 0, {}, 0},
        VerifyCase{"unknown committed is fine", {1, 3}, {2}, {{10, 1}, {11, 2}, {12, 3}}, {}, {}, 0, {}, 1},
        VerifyCase{"duplicate", {1, 2}, {}, {{10, 1}, {11, 2}, {12, 2}}, {}, {2}, 0, {}, 0},
        VerifyCase{"out of order", {1, 2, 3}, {}, {{10, 1}, {11, 3}, {12, 2}}, {}, {}, 1, {}, 0},
        VerifyCase{"rows given unsorted", {1, 2, 3}, {}, {{12, 3}, {10, 1}, {11, 2}}, {}, {}, 0, {}, 0},
        VerifyCase{
            "replayed old row", {1, 2, 3}, {}, {{10, 1}, {11, 2}, {12, 3}, {13, 1}}, {}, {1}, 0, {}, 0},
        VerifyCase{"unexpected row", {1}, {}, {{10, 1}, {11, 7}}, {}, {}, 0, {7}, 0},
        VerifyCase{"missing and duplicated", {1, 2, 3}, {}, {{10, 1}, {11, 1}}, {2, 3}, {1}, 0, {}, 0}),
    [](const auto& tp) {
      std::string n = tp.param.name;
      for (auto& ch : n) ch = (std::isalnum(static_cast<unsigned char>(ch)) != 0) ? ch : '_';
      return n;
    });

struct ClassifyCase {
  std::string name;
  FailureKind kind;
  bool sent;
  int status;
  std::string body;
  WriteOutcome expected;
};

class ClassifyWriteTest : public ::testing::TestWithParam<ClassifyCase> {};

TEST_P(ClassifyWriteTest, DecidesAckRetryOrUnknown) {
  const auto& c = GetParam();
  Attempt a;
  a.kind = c.kind;
  a.sent = c.sent;
  a.response.status = c.status;
  a.response.body = c.body;
  EXPECT_EQ(classifyWrite(a, "w1", 7), c.expected) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ClassifyWriteTest,
    ::testing::Values(
        ClassifyCase{"ack", FailureKind::kOk, true, 200, R"({"ok":true,"writer":"w1","seq":7,"id":3})",
                     WriteOutcome::kAcknowledged},
        ClassifyCase{"ack seq as string", FailureKind::kOk, true, 200,
                     R"({"ok":true,"writer":"w1","seq":"7"})", WriteOutcome::kAcknowledged},
        ClassifyCase{"ack for another seq", FailureKind::kOk, true, 200,
                     R"({"ok":true,"writer":"w1","seq":6})", WriteOutcome::kUnknown},
        ClassifyCase{"ack for another writer", FailureKind::kOk, true, 200,
                     R"({"ok":true,"writer":"w2","seq":7})", WriteOutcome::kUnknown},
        ClassifyCase{"ok false", FailureKind::kOk, true, 200, R"({"ok":false})", WriteOutcome::kUnknown},
        ClassifyCase{"not json", FailureKind::kOk, true, 200, "<html>", WriteOutcome::kUnknown},
        ClassifyCase{"redirect", FailureKind::kOk, true, 302, "", WriteOutcome::kUnknown},
        ClassifyCase{"503", FailureKind::kHttp5xx, true, 503, "", WriteOutcome::kUnknown},
        ClassifyCase{"timeout after sending", FailureKind::kTimeout, true, 0, "", WriteOutcome::kUnknown},
        ClassifyCase{"reset after sending", FailureKind::kReset, true, 0, "", WriteOutcome::kUnknown},
        ClassifyCase{"closed after sending", FailureKind::kClosed, true, 0, "", WriteOutcome::kUnknown},
        ClassifyCase{"refused", FailureKind::kConnectRefused, false, 0, "", WriteOutcome::kNotSent},
        ClassifyCase{"connect timeout", FailureKind::kConnectTimeout, false, 0, "", WriteOutcome::kNotSent},
        ClassifyCase{"unreachable", FailureKind::kUnreachable, false, 0, "", WriteOutcome::kNotSent},
        ClassifyCase{"no socket", FailureKind::kLocalError, false, 0, "", WriteOutcome::kNotSent}),
    [](const auto& tp) {
      std::string n = tp.param.name;
      for (auto& ch : n) ch = (std::isalnum(static_cast<unsigned char>(ch)) != 0) ? ch : '_';
      return n;
    });

TEST(ParseRows, AcceptsNumbersAndNumericStrings) {
  auto rows = parseRows(R"({"writer":"w1","rows":[{"id":1,"seq":1},{"id":"2","seq":"2"}]})", "w1");
  ASSERT_TRUE(rows.ok()) << rows.error().message();
  ASSERT_EQ(rows->size(), 2U);
  EXPECT_EQ((*rows)[1].id, 2);
  EXPECT_EQ((*rows)[1].seq, 2);
}

TEST(ParseRows, RefusesBadShapes) {
  for (const char* bad : {"", "[]", R"({"rows":1})", R"({"writer":"w2","rows":[]})", R"({"rows":[{"id":1}]})",
                          R"({"rows":[{"id":1,"seq":"x"}]})", R"({"rows":[{"id":1.5,"seq":1}]})"}) {
    auto rows = parseRows(bad, "w1");
    EXPECT_FALSE(rows.ok()) << bad;
  }
}

TEST(WriterState, RoundTrips) {
  WriterRun run;
  run.writer = "w9";
  run.acknowledged = {1, 2, 4};
  run.unknown = {3};
  auto path = std::filesystem::path(::testing::TempDir()) / "ferry-writer-state-test.json";
  ASSERT_TRUE(saveWriterState(path, run, Url{"lb", 80, "/"}).ok());
  auto back = loadWriterState(path);
  ASSERT_TRUE(back.ok()) << back.error().message();
  EXPECT_EQ(back->writer, "w9");
  EXPECT_EQ(back->acknowledged, run.acknowledged);
  EXPECT_EQ(back->unknown, run.unknown);
  std::filesystem::remove(path);
  EXPECT_FALSE(loadWriterState(path).ok());
}

}  // namespace
}  // namespace ferry::bench
