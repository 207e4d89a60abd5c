// runs.csv, the runners' JSON line, statistics, phases, the study's published runs.
#include "ferry/bench/results.h"

#include <fstream>

#include <gtest/gtest.h>

#include "bench_fakes.h"
#include "ferry/base/files.h"

namespace ferry::bench {
namespace {

using testing::fakeLine;
using testing::FakeRun;
using json = nlohmann::json;

RunRow benchRow(const std::string& method = "thesis") {
  return testing::benchRow(method, 100, 1, "a->b");
}

// ---- the runner's JSON line --------------------------------------------------------------

struct LineCase {
  std::string name;
  std::function<void(json&)> edit;  // applied to a complete committed line
  bool ok;                          // applyMethodLine succeeds
  std::string status;               // then the row's status
  std::string error_has;            // in the error (returned or in the row)
};

class MethodLineTest : public ::testing::TestWithParam<LineCase> {};

TEST_P(MethodLineTest, FillsTheRowOrSaysWhatIsWrong) {
  const auto& c = GetParam();
  json line = fakeLine(FakeRun{});
  c.edit(line);
  RunRow row = benchRow();
  auto st = applyMethodLine(row, line.dump());
  ASSERT_EQ(st.ok(), c.ok) << c.name << ": " << (st.ok() ? "" : st.error().message());
  if (!c.ok) {
    EXPECT_NE(st.error().message().find(c.error_has), std::string::npos)
        << c.name << ": " << st.error().message();
    return;
  }
  EXPECT_EQ(row.get("status"), c.status) << c.name;
  if (!c.error_has.empty()) {
    EXPECT_NE(row.get("error").find(c.error_has), std::string::npos) << row.get("error");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, MethodLineTest,
    ::testing::Values(
        LineCase{"complete", [](json&) {}, true, "ok", ""},
        LineCase{"missing key", [](json& j) { j.erase("lost_writes"); }, false, "", "\"lost_writes\""},
        LineCase{"string for a number", [](json& j) { j["downtime_study_ms"] = "12"; }, false, "",
                 "\"downtime_study_ms\" is \"12\", not a number"},
        LineCase{"fraction for an integer", [](json& j) { j["failed_requests"] = 2.5; }, false, "",
                 "not an integer"},
        LineCase{"null where a bool is needed", [](json& j) { j["session_kept"] = nullptr; }, false, "",
                 "true or false"},
        LineCase{"phases not an array", [](json& j) { j["phases"] = "x"; }, false, "", "JSON array"},
        LineCase{"other rows than deployed", [](json& j) { j["rows"] = 500; }, false, "", "rows 500"},
        LineCase{"other direction", [](json& j) { j["from"] = "b", j["to"] = "a"; }, false, "", "b->a"},
        LineCase{"other method", [](json& j) { j["method"] = "ferry"; }, false, "", "method \"ferry\""},
        LineCase{"no result", [](json& j) { j.erase("result"); }, false, "", "no \"result\""},
        LineCase{"failed run keeps its error",
                 [](json& j) {
                   j = {{"method", "thesis"},
                        {"from", "a"},
                        {"to", "b"},
                        {"result", "failed"},
                        {"error", "checkpoint of db on a failed: CRIU said no"}};
                 },
                 true, "failed", "CRIU said no"},
        LineCase{"ferry rolled back",
                 [](json& j) {
                   j["result"] = "rolled_back";
                   j["error"] = "restore failed on b";
                 },
                 true, "failed", "restore failed on b"},
        LineCase{"failed without a reason",
                 [](json& j) {
                   j = {{"result", "in_doubt"}};
                 },
                 true, "failed", "result: in_doubt"}),
    testing::CaseName());

TEST(MethodLine, NotJsonIsRefused) {
  RunRow row = benchRow();
  auto st = applyMethodLine(row, "thesis: checkpoint failed");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("not one JSON object"), std::string::npos);
}

TEST(MethodLine, CellsAreFormattedForTheCsv) {
  FakeRun fr;
  fr.downtime_ms = 1234.5678;
  RunRow row = benchRow();
  ASSERT_TRUE(applyMethodLine(row, fakeLine(fr).dump()).ok());
  EXPECT_EQ(row.get("downtime_study_ms"), "1234.568");
  EXPECT_EQ(row.get("bytes_moved"), "5000000");
  EXPECT_EQ(row.get("session_kept"), "true");
  EXPECT_EQ(row.get("browser_session_kept"), "");  // null: not checked
  EXPECT_EQ(row.get("probe_recovered"), "true");
  EXPECT_EQ(json::parse(row.get("phases")).size(), 3U);
  EXPECT_EQ(row.number("downtime_study_ms").value_or(0), 1234.568);
}

TEST(FormatNumber, IntegersWithoutFractionOthersWithThreeDecimals) {
  EXPECT_EQ(formatNumber(0), "0");
  EXPECT_EQ(formatNumber(1700000000123.0), "1700000000123");
  EXPECT_EQ(formatNumber(2.5), "2.500");
  EXPECT_EQ(formatNumber(-0.0004), "-0.000");
}

// ---- runs.csv -----------------------------------------------------------------------------

TEST(RunsCsv, EveryColumnRoundTripsIncludingQuotesCommasAndLineBreaks) {
  RunRow row = benchRow();
  ASSERT_TRUE(applyMethodLine(row, fakeLine(FakeRun{}).dump()).ok());
  row.set("error", "a, \"quoted\"\nsecond line");
  auto parsed = parseRunsCsv(csvHeader() + csvLine(row));
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  ASSERT_EQ(parsed->rows.size(), 1U);
  for (const auto& c : runColumns()) EXPECT_EQ(parsed->rows[0].get(c.name), row.get(c.name)) << c.name;
  EXPECT_EQ(parsed->rows[0].get("error"), "a, \"quoted\" second line");
  EXPECT_TRUE(parsed->torn_tail.empty());
}

TEST(RunsCsv, ColumnsAreUniqueAndTheMethodOnesAreTheContract) {
  std::set<std::string_view> names;
  for (const auto& c : runColumns()) EXPECT_TRUE(names.insert(c.name).second) << c.name;
  // The issue's columns (bench/README.md): all present.
  for (std::string_view want :
       {"method", "mode", "switch_driver", "rows", "direction", "bytes_moved", "checkpoint_bytes",
        "last_delta_bytes", "downtime_study_ms", "migration_study_ms", "downtime_ferry_ms",
        "migration_ferry_ms", "client_downtime_ms", "failed_requests", "lost_writes", "session_kept",
        "phases"})
    EXPECT_TRUE(names.contains(want)) << want;
}

struct TornCase {
  std::string name;
  std::function<std::string(const std::string& header, const std::string& line)> text;
  bool ok;
  std::size_t rows;
  bool torn;
  std::string error_has;
};

class RunsCsvTornTest : public ::testing::TestWithParam<TornCase> {};

TEST_P(RunsCsvTornTest, HalfWrittenTailIsFoundAndDamageIsRefused) {
  const auto& c = GetParam();
  RunRow row = benchRow();
  ASSERT_TRUE(applyMethodLine(row, fakeLine(FakeRun{}).dump()).ok());
  std::string text = c.text(csvHeader(), csvLine(row));
  auto parsed = parseRunsCsv(text);
  ASSERT_EQ(parsed.ok(), c.ok) << c.name;
  if (!c.ok) {
    EXPECT_NE(parsed.error().message().find(c.error_has), std::string::npos) << parsed.error().message();
    return;
  }
  EXPECT_EQ(parsed->rows.size(), c.rows) << c.name;
  EXPECT_EQ(!parsed->torn_tail.empty(), c.torn) << c.name;
  EXPECT_EQ(parsed->complete_bytes + parsed->torn_tail.size(), text.size()) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, RunsCsvTornTest,
    ::testing::Values(
        TornCase{"empty", [](auto&, auto&) { return std::string(); }, true, 0, false, ""},
        TornCase{"header only", [](auto& h, auto&) { return h; }, true, 0, false, ""},
        TornCase{"two rows", [](auto& h, auto& l) { return h + l + l; }, true, 2, false, ""},
        TornCase{"third row cut mid-way",
                 [](auto& h, auto& l) { return h + l + l + l.substr(0, l.size() / 2); }, true, 2, true, ""},
        TornCase{"header cut mid-way", [](auto& h, auto&) { return h.substr(0, 20); }, true, 0, true, ""},
        TornCase{"last row short but ended", [](auto& h, auto& l) { return h + l + "1,ok,1\n"; }, true, 1,
                 true, ""},
        TornCase{"other header", [](auto&, auto& l) { return "seq,status\n" + l; }, false, 0, false,
                 "other columns"},
        TornCase{"damaged row in the middle", [](auto& h, auto& l) { return h + "1,ok\n" + l; }, false, 0,
                 false, "line 2 has 2 fields"}),
    testing::CaseName());

TEST(RunsCsv, LoadCutsTheTornTailAndAppendContinuesCleanly) {
  auto dir = testing::freshDir("csv");
  auto file = dir / "runs.csv";
  RunRow row = benchRow();
  ASSERT_TRUE(appendRunCsv(file, row).ok());  // header + row
  ASSERT_TRUE(appendRunCsv(file, row).ok());  // row only
  {
    std::ofstream out(file, std::ios::app);
    out << "3,started,1,17000";  // a crash mid-write
  }
  auto loaded = loadRunsCsv(file);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ(loaded->rows.size(), 2U);
  EXPECT_EQ(loaded->torn_tail, "3,started,1,17000");
  ASSERT_TRUE(appendRunCsv(file, row).ok());
  auto again = loadRunsCsv(file);
  ASSERT_TRUE(again.ok()) << again.error().message();
  EXPECT_EQ(again->rows.size(), 3U);
  EXPECT_TRUE(again->torn_tail.empty());
  auto text = readFile(file);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(text->find(csvHeader()), 0U);
  EXPECT_EQ(text->find(csvHeader(), 1), std::string::npos);  // the header once
}

TEST(RunsCsv, AbsentFileIsEmpty) {
  auto loaded = loadRunsCsv(testing::freshDir("absent") / "runs.csv");
  ASSERT_TRUE(loaded.ok());
  EXPECT_TRUE(loaded->rows.empty());
}

// ---- statistics ---------------------------------------------------------------------------

struct StatCase {
  std::vector<double> values;
  std::size_t n;
  double mean, p50, p95, min, max;
};

class DescribeTest : public ::testing::TestWithParam<StatCase> {};

TEST_P(DescribeTest, MeanAndNearestRankPercentiles) {
  const auto& c = GetParam();
  Stat s = describe(c.values);
  EXPECT_EQ(s.n, c.n);
  EXPECT_DOUBLE_EQ(s.mean, c.mean);
  EXPECT_DOUBLE_EQ(s.p50, c.p50);
  EXPECT_DOUBLE_EQ(s.p95, c.p95);
  EXPECT_DOUBLE_EQ(s.min, c.min);
  EXPECT_DOUBLE_EQ(s.max, c.max);
}

INSTANTIATE_TEST_SUITE_P(
    Table, DescribeTest,
    ::testing::Values(
        StatCase{{}, 0, 0, 0, 0, 0, 0}, StatCase{{5}, 1, 5, 5, 5, 5, 5},
        StatCase{{3, 1, 2}, 3, 2, 2, 3, 1, 3},
        // 1..20: p50 = rank 10, p95 = rank 19.
        StatCase{
            {20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, 20, 10.5, 10, 19, 1, 20},
        // Two runs (the issue's --runs 2): p50 is the lower, p95 the higher.
        StatCase{{4000, 2000}, 2, 3000, 2000, 4000, 2000, 4000}));

// ---- phases -------------------------------------------------------------------------------

struct PhaseCase {
  std::string name;
  std::string phases;
  std::vector<std::pair<std::string, double>> want;
};

class ExclusivePhasesTest : public ::testing::TestWithParam<PhaseCase> {};

TEST_P(ExclusivePhasesTest, OverlapsCountOnce) {
  const auto& c = GetParam();
  EXPECT_EQ(exclusivePhases(c.phases), c.want) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ExclusivePhasesTest,
    ::testing::Values(
        PhaseCase{"one after another",
                  R"([{"name":"a","start_ms":0,"end_ms":100},{"name":"b","start_ms":100,"end_ms":250}])",
                  {{"a", 100}, {"b", 150}}},
        // ferry: transfer starts with checkpoint and outlasts it.
        PhaseCase{
            "parallel, the later one longer",
            R"([{"name":"checkpoint","start_ms":100,"end_ms":500},{"name":"transfer","start_ms":100,"end_ms":700}])",
            {{"checkpoint", 400}, {"transfer", 200}}},
        // thesis: the source's cleanup runs while the target restores.
        PhaseCase{
            "cleanup inside restore",
            R"([{"name":"restore","start_ms":0,"end_ms":1000},{"name":"cleanup","start_ms":200,"end_ms":600}])",
            {{"restore", 1000}, {"cleanup", 0}}},
        PhaseCase{"gap between phases is nobody's",
                  R"([{"name":"a","start_ms":0,"end_ms":10},{"name":"b","start_ms":50,"end_ms":60}])",
                  {{"a", 10}, {"b", 10}}},
        PhaseCase{"listed out of order",
                  R"([{"name":"late","start_ms":10,"end_ms":20},{"name":"early","start_ms":0,"end_ms":10}])",
                  {{"early", 10}, {"late", 10}}},
        PhaseCase{"zero length stays", R"([{"name":"switch","start_ms":5,"end_ms":5}])", {{"switch", 0}}},
        PhaseCase{"not JSON", "nope", {}}, PhaseCase{"empty", "", {}}));

// ---- per cell ---------------------------------------------------------------------------------

TEST(SummarizeRuns, CountsStatusesAndDescribesTheOkRuns) {
  std::vector<RunRow> rows;
  auto add = [&](const std::string& method, int run, const std::string& status, double downtime,
                 int attempt = 1, bool session = true) {
    FakeRun fr;
    fr.method = method;
    fr.downtime_ms = downtime;
    fr.session_kept = session;
    RunRow r = benchRow(method);
    r.set("run", std::to_string(run));
    r.set("seq", std::to_string(run));
    r.set("attempt", std::to_string(attempt));
    if (status != kStatusStarted) {
      EXPECT_TRUE(applyMethodLine(r, fakeLine(fr).dump()).ok());
      r.set("status", status);
    }
    rows.push_back(r);
  };
  add("ferry", 1, "started", 0);
  add("ferry", 1, "ok", 1000);
  add("ferry", 2, "started", 0);
  add("ferry", 2, "ok", 3000, 1, false);
  add("ferry", 3, "started", 0);  // died: counts as interrupted
  add("thesis", 1, "started", 0);
  add("thesis", 1, "interrupted", 0);  // marked, then run again:
  add("thesis", 1, "started", 0, 2);
  add("thesis", 1, "ok", 20000, 2);
  add("thesis", 2, "started", 0);
  add("thesis", 2, "failed", 0);
  auto cells = summarizeRuns(rows, {"thesis", "podman", "ferry"});
  ASSERT_EQ(cells.size(), 2U);
  EXPECT_EQ(cells[0].key.method, "thesis");  // thesis first: the method order, not the alphabet
  EXPECT_EQ(cells[0].ok, 1U);
  EXPECT_EQ(cells[0].failed, 1U);
  EXPECT_EQ(cells[0].interrupted, 1U);
  EXPECT_DOUBLE_EQ(cells[0].metrics.at("downtime_study_ms").mean, 20000);
  const auto& f = cells[1];
  EXPECT_EQ(f.key.method, "ferry");
  EXPECT_EQ(f.ok, 2U);
  EXPECT_EQ(f.interrupted, 1U);
  EXPECT_EQ(f.session_kept, 1U);
  EXPECT_EQ(f.browser_checked, 0U);
  const Stat& d = f.metrics.at("downtime_study_ms");
  EXPECT_EQ(d.n, 2U);
  EXPECT_DOUBLE_EQ(d.mean, 2000);
  EXPECT_DOUBLE_EQ(d.p50, 1000);
  EXPECT_DOUBLE_EQ(d.p95, 3000);
  EXPECT_EQ(f.phase_order, (std::vector<std::string>{"checkpoint", "copy", "restore"}));
  EXPECT_DOUBLE_EQ(f.phase_ms.at("checkpoint"), (400 + 1200) / 2.0);
  for (auto m : summaryMetrics()) EXPECT_TRUE(f.metrics.contains(m)) << m;
}

// ---- the study's published runs ------------------------------------------------------------

std::string referenceCsv() {
  auto text = readFile(FERRY_BENCH_REFERENCE_CSV);
  EXPECT_TRUE(text.ok()) << FERRY_BENCH_REFERENCE_CSV;
  return text.ok() ? *text : std::string();
}

struct PublishedCase {
  std::string environment;
  int rows;
  double downtime_s;  // the study's table (thesis.md), means of 10 runs
  double migration_s;
};

class PublishedTest : public ::testing::TestWithParam<PublishedCase> {};

TEST_P(PublishedTest, MeansMatchTheStudysTable) {
  const auto& c = GetParam();
  auto runs = parsePublishedCsv(referenceCsv());
  ASSERT_TRUE(runs.ok()) << runs.error().message();
  std::vector<double> down, mig;
  for (const auto& r : *runs) {
    if (r.environment != c.environment || r.rows != c.rows) continue;
    down.push_back(r.downtime_ms);
    mig.push_back(r.migration_ms);
  }
  ASSERT_EQ(down.size(), 10U) << c.environment << " " << c.rows;
  EXPECT_NEAR(describe(down).mean / 1000, c.downtime_s, 0.006) << c.environment << " " << c.rows;
  EXPECT_NEAR(describe(mig).mean / 1000, c.migration_s, 0.006) << c.environment << " " << c.rows;
}

INSTANTIATE_TEST_SUITE_P(
    Table, PublishedTest,
    ::testing::Values(
        PublishedCase{"local-nfs", 100, 19.44, 24.06}, PublishedCase{"local-nfs", 500, 19.69, 24.11},
        PublishedCase{"local-nfs", 1000, 20.00, 24.50}, PublishedCase{"local-nfs", 5000, 20.51, 25.04},
        PublishedCase{"local-nfs", 10000, 21.37, 26.07}, PublishedCase{"local", 100, 26.51, 77.44},
        PublishedCase{"local", 500, 26.80, 77.52}, PublishedCase{"local", 1000, 26.93, 77.81},
        PublishedCase{"local", 5000, 27.57, 77.86}, PublishedCase{"local", 10000, 27.77, 78.74},
        PublishedCase{"cloud", 100, 34.03, 71.05}, PublishedCase{"cloud", 500, 34.27, 71.50},
        PublishedCase{"cloud", 1000, 34.73, 71.60}, PublishedCase{"cloud", 5000, 34.86, 71.68},
        PublishedCase{"cloud", 10000, 35.21, 72.31}));

TEST(Published, AllRunsAndTheHeadline) {
  auto runs = parsePublishedCsv(referenceCsv());
  ASSERT_TRUE(runs.ok()) << runs.error().message();
  EXPECT_EQ(runs->size(), 150U);
  std::vector<double> down, mig;
  for (const auto& r : *runs) {
    if (r.environment != "cloud") continue;
    down.push_back(r.downtime_ms);
    mig.push_back(r.migration_ms);
  }
  // thesis.md: "cloud mean downtime 34.618 s, mean migration time 71.627 s".
  EXPECT_NEAR(describe(down).mean / 1000, 34.618, 0.001);
  EXPECT_NEAR(describe(mig).mean / 1000, 71.627, 0.001);
}

struct BadPublishedCase {
  std::string name;
  std::string text;
  std::string error_has;
};

class BadPublishedTest : public ::testing::TestWithParam<BadPublishedCase> {};

TEST_P(BadPublishedTest, SaysWhatIsWrong) {
  auto r = parsePublishedCsv(GetParam().text);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find(GetParam().error_has), std::string::npos) << r.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    Table, BadPublishedTest,
    ::testing::Values(
        BadPublishedCase{"no_runs", "environment,rows,run,downtime_s,migration_time_s\n", "no runs"},
        BadPublishedCase{"missing_column", "environment,rows,run\ncloud,100,1\n", "lacks one of"},
        BadPublishedCase{"not_a_number",
                         "environment,rows,run,downtime_s,migration_time_s\ncloud,100,1,fast,2\n",
                         "line 2 has a field that is not a number"},
        BadPublishedCase{"short_line", "environment,rows,run,downtime_s,migration_time_s\ncloud,100\n",
                         "line 2 has 2 fields"}),
    testing::CaseName());

TEST(Published, EnvironmentForEachProfile) {
  EXPECT_EQ(publishedEnvironment("lan", false), "local");
  EXPECT_EQ(publishedEnvironment("lan", true), "local-nfs");
  EXPECT_EQ(publishedEnvironment("cloud", false), "cloud");
  EXPECT_EQ(publishedEnvironment("cloud", true), "");
  EXPECT_EQ(publishedEnvironment("wan", false), "");
  EXPECT_EQ(publishedEnvironment("edge", false), "");
}

}  // namespace
}  // namespace ferry::bench
