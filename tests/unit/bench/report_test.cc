// summary.md and the plots' inputs, from fake runs.
#include <fstream>

#include <gtest/gtest.h>

#include "bench_fakes.h"
#include "ferry/base/files.h"
#include "ferry/base/process.h"
#include "ferry/bench/results.h"

namespace ferry::bench {
namespace {

using testing::fakeLine;
using testing::FakeRun;

// Runs of three methods on cloud, rows 100 and 10000, two runs each; thesis is 10×
// slower than ferry. One podman run failed.
std::vector<RunRow> fakeRows() {
  std::vector<RunRow> rows;
  int seq = 0;
  for (int n : {100, 10000}) {
    for (const std::string method : {"thesis", "podman", "ferry"}) {
      for (int run = 1; run <= 2; ++run) {
        FakeRun fr;
        fr.method = method;
        fr.rows = n;
        fr.from = run == 1 ? "a" : "b";
        fr.to = run == 1 ? "b" : "a";
        fr.downtime_ms = (method == "thesis" ? 20000 : method == "podman" ? 8000 : 2000) + run * 1000.0;
        fr.client_downtime_ms = fr.downtime_ms + 700;
        fr.migration_ms = fr.downtime_ms * 3;
        fr.run_dir = "runs/" + method + std::to_string(n) + "-" + std::to_string(run);
        fr.down_unix_ms = 1'700'000'000'000.0 + seq * 100000.0;
        RunRow r = testing::benchRow(method, n, run, fr.from + "->" + fr.to);
        r.set("seq", std::to_string(++seq));
        r.set("load_1m", run == 1 ? "2.5" : "4");
        rows.push_back(r);
        if (method == "podman" && n == 10000 && run == 2) {
          r.set("status", std::string(kStatusFailed));
          r.set("error", "restore of web on a failed");
        } else {
          EXPECT_TRUE(applyMethodLine(r, fakeLine(fr).dump()).ok());
          r.set("timeline", fr.run_dir + "/timeline.csv");
        }
        rows.push_back(r);
      }
    }
  }
  return rows;
}

std::vector<PublishedRun> fakePublished() {
  std::vector<PublishedRun> out;
  for (int n : {100, 10000}) {
    for (int run = 1; run <= 3; ++run) {
      out.push_back({"cloud", n, run, 34000.0 + run * 10, 71000.0 + run * 10, 201});
      out.push_back({"local", n, run, 26000.0, 77000.0, 201});
    }
  }
  return out;
}

const ReportFile* find(const std::vector<ReportFile>& files, const std::string& name) {
  for (const auto& f : files)
    if (f.name == name) return &f;
  return nullptr;
}

std::vector<ReportFile> build(std::vector<std::string>* asked = nullptr) {
  ReportInput in;
  in.rows = fakeRows();
  in.method_order = {"thesis", "podman", "ferry"};
  in.published = fakePublished();
  in.plan_text = "Plan: test.";
  return buildReport(in, [asked](const std::string& path) -> std::optional<std::string> {
    if (asked) asked->push_back(path);
    return testing::fakeTimeline(1'700'000'000'000.0, 2000);
  });
}

TEST(Report, SummaryHasEveryTableTheRatiosAndThePublishedRows) {
  auto files = build();
  const auto* md = find(files, "summary.md");
  ASSERT_NE(md, nullptr);
  const std::string& s = md->content;
  for (std::string_view want :
       {"## Downtime, the study's definition (s)", "## Downtime, ferry's definition (s)",
        "## Migration time, the study's definition (s)", "## Migration time, ferry's definition (s)",
        "## Client-observed downtime (s)", "## Failed requests (probe)", "## Lost writes",
        "## Runs, sessions and bytes", "## Runs that failed or were interrupted", "## Plots", "Plan: test."})
    EXPECT_NE(s.find(want), std::string::npos) << want;
  // ferry rows 100: downtimes 3000 and 4000 ms → mean 3.50, p50 3.00, p95 4.00; thesis mean
  // 21.5+1 = 21.50+... (21000, 22000) → 21.50; ratio 21.5 / 3.5 = 6.14.
  EXPECT_NE(s.find("| cloud | ferry | 100 | 0 | 2 | 3.50 | 3.00 | 4.00 | 6.14 |"), std::string::npos) << s;
  EXPECT_NE(s.find("| cloud | thesis | 100 | 0 | 2 | 21.50 | 21.00 | 22.00 | 1.00 |"), std::string::npos)
      << s;
  // The study's figure, labelled, once per row count, for the study's definitions only.
  EXPECT_NE(s.find("| cloud | *published (study, cloud), not measured here* | 100 | — | 3 | 34.02 |"),
            std::string::npos)
      << s;
  auto section = [&](std::string_view title) {
    auto a = s.find(title);
    auto b = s.find("\n## ", a + 1);
    return s.substr(a, b - a);
  };
  EXPECT_EQ(section("## Downtime, ferry's definition").find("published"), std::string::npos);
  EXPECT_NE(section("## Migration time, the study's definition").find("*published (study, cloud)"),
            std::string::npos);
  // The failed podman run: listed with its error, not in the figures (n = 1 there).
  EXPECT_NE(s.find("restore of web on a failed"), std::string::npos);
  EXPECT_NE(s.find("| cloud | podman | 10000 | 0 | 1 |"), std::string::npos) << s;
  // Sessions and the load average.
  EXPECT_NE(s.find("| 2/2 (1.00) | not checked |"), std::string::npos) << s;
  EXPECT_NE(s.find("load average at the runs' starts: 2.5–4.0"), std::string::npos) << s;
}

TEST(Report, DowntimeVsRowsDataHasAMethodBlockEachAndThePublishedSeries) {
  auto files = build();
  const auto* dat = find(files, "plots/downtime_study-vs-rows-cloud-state0.dat");
  const auto* gp = find(files, "plots/downtime_study-vs-rows-cloud-state0.gp");
  ASSERT_NE(dat, nullptr);
  ASSERT_NE(gp, nullptr);
  // thesis: rows, mean s, min s, max s.
  EXPECT_NE(dat->content.find("# thesis (measured)\n100 21.5 21 22\n10000 21.5 21 22\n"), std::string::npos)
      << dat->content;
  EXPECT_NE(dat->content.find("# published (study, cloud), not measured here\n100 34.02 34.01 34.03\n"),
            std::string::npos)
      << dat->content;
  EXPECT_NE(gp->content.find("set logscale xy"), std::string::npos);
  EXPECT_NE(gp->content.find("index 3 using 1:2:3:4 with yerrorlines lw 2 dt 2"), std::string::npos)
      << gp->content;
  EXPECT_NE(gp->content.find("set output 'downtime_study-vs-rows-cloud-state0.svg'"), std::string::npos);
  EXPECT_NE(gp->content.find("\"published (study, cloud), not measured here\""), std::string::npos);
  // Client-observed downtime: no published series (the study never measured it).
  const auto* client = find(files, "plots/client_downtime-vs-rows-cloud-state0.dat");
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->content.find("published"), std::string::npos);
  EXPECT_NE(find(files, "plots/migration_study-vs-rows-cloud-state0.gp"), nullptr);
}

// Two methods on cloud at 10000 rows and three state sizes, one run each; the time grows
// with the state.
std::vector<RunRow> fakeStateRows() {
  std::vector<RunRow> rows;
  int seq = 0;
  for (int state : {0, 256, 1024}) {
    for (const std::string method : {"thesis", "ferry"}) {
      FakeRun fr;
      fr.method = method;
      fr.rows = 10000;
      fr.state_mb = state;
      fr.downtime_ms = (method == "thesis" ? 10000 : 4000) + state * 20.0;
      fr.migration_ms = fr.downtime_ms * 2;
      RunRow r = testing::benchRow(method, 10000, 1, "a->b");
      r.set("seq", std::to_string(++seq));
      r.set("state_mb", std::to_string(state));
      EXPECT_TRUE(applyMethodLine(r, fakeLine(fr).dump()).ok());
      rows.push_back(r);
    }
  }
  return rows;
}

TEST(Report, TimeVsStateHasAMethodBlockEachAndTheLinksLine) {
  ReportInput in;
  in.rows = fakeStateRows();
  in.method_order = {"thesis", "ferry"};
  auto files = buildReport(in, [](const std::string&) { return std::nullopt; });
  const auto* dat = find(files, "plots/downtime_study-vs-state-cloud-rows10000.dat");
  const auto* gp = find(files, "plots/downtime_study-vs-state-cloud-rows10000.gp");
  ASSERT_NE(dat, nullptr);
  ASSERT_NE(gp, nullptr);
  // state MB, mean s, min s, max s.
  EXPECT_NE(dat->content.find("# ferry (measured)\n0 4 4 4\n256 9.12 9.12 9.12\n1024 24.48 24.48 24.48\n"),
            std::string::npos)
      << dat->content;
  // 1024 MiB over cloud's 1750 Mbit/s: 1024 × 2^20 × 8 / 1.75e9 = 4.909 s.
  EXPECT_NE(dat->content.find("# the link alone: state ÷ 1750 Mbit/s\n0 0.000\n256 1.227\n1024 4.909\n"),
            std::string::npos)
      << dat->content;
  EXPECT_NE(gp->content.find("index 2 using 1:2 with lines"), std::string::npos) << gp->content;
  EXPECT_NE(find(files, "plots/migration_study-vs-state-cloud-rows10000.gp"), nullptr);
  const auto* md = find(files, "summary.md");
  ASSERT_NE(md, nullptr);
  EXPECT_NE(md->content.find("downtime_study-vs-state-cloud-rows10000.svg"), std::string::npos);
}

TEST(Report, OneStateSizeDrawsNoTimeVsStatePlot) {
  for (const auto& f : build()) EXPECT_EQ(f.name.find("-vs-state-"), std::string::npos) << f.name;
}

TEST(Report, PhaseBreakdownPerMethodAndTheMedianRunsTimeline) {
  std::vector<std::string> asked;
  auto files = build(&asked);
  const auto* phases = find(files, "plots/phases-ferry-cloud.dat");
  ASSERT_NE(phases, nullptr);
  EXPECT_EQ(phases->content.substr(0, phases->content.find('\n')),
            "\"cell\" \"checkpoint\" \"copy\" \"restore\"");
  // ferry, rows 100: downtimes 3000 and 4000 → checkpoint 0.4 × 3500 ms = 1.4 s.
  EXPECT_NE(phases->content.find("\"100 rows\" 1.400 0.700 1.400"), std::string::npos) << phases->content;
  const auto* gp = find(files, "plots/phases-ferry-cloud.gp");
  ASSERT_NE(gp, nullptr);
  EXPECT_NE(gp->content.find("set style histogram rowstacked"), std::string::npos);
  EXPECT_NE(gp->content.find("plot for [i=2:4]"), std::string::npos);

  // Timelines: one per method, from the run with the median client downtime (the lower
  // of the middle two: ferry's four ok runs have 3.7, 4.7, 3.7, 4.7 s → rows 10000, run 1).
  const auto* tl = find(files, "plots/timeline-ferry-cloud.gp");
  ASSERT_NE(tl, nullptr);
  EXPECT_NE(tl->content.find("set object 1 rect from 0, graph 0 to 3.000"), std::string::npos) << tl->content;
  EXPECT_NE(tl->content.find("'' index 1 using 1:2"), std::string::npos) << "failures drawn";
  EXPECT_NE(tl->content.find("median run"), std::string::npos);
  EXPECT_NE(std::find(asked.begin(), asked.end(), "runs/ferry10000-1/timeline.csv"), asked.end());
  EXPECT_NE(find(files, "plots/timeline-thesis-cloud.dat"), nullptr);
  const auto* md = find(files, "summary.md");
  EXPECT_NE(md->content.find("![ferry: probe latency across one migration"), std::string::npos);
  EXPECT_NE(md->content.find("(plots/timeline-ferry-cloud.svg)"), std::string::npos);
}

TEST(Report, WithoutTimelinesThereIsNoTimelinePlot) {
  ReportInput in;
  in.rows = fakeRows();
  in.method_order = {"thesis", "podman", "ferry"};
  auto files = buildReport(in, [](const std::string&) { return std::nullopt; });
  EXPECT_EQ(find(files, "plots/timeline-ferry-cloud.gp"), nullptr);
  EXPECT_NE(find(files, "plots/phases-ferry-cloud.gp"), nullptr);
  // No published runs given: no published rows, and the plan is described from the rows.
  const auto* md = find(files, "summary.md");
  EXPECT_EQ(md->content.find("*published"), std::string::npos);
  EXPECT_NE(md->content.find("From runs.csv: profile cloud; methods thesis, podman, ferry; rows 100, 10000"),
            std::string::npos)
      << md->content.substr(0, 400);
}

struct TimelineCase {
  std::string name;
  std::string csv;
  double down;
  std::size_t max_ok;
  std::string want;
};

class TimelineDataTest : public ::testing::TestWithParam<TimelineCase> {};

TEST_P(TimelineDataTest, SplitsAnsweredAndFailedRelativeToTheFreeze) {
  const auto& c = GetParam();
  EXPECT_EQ(timelinePlotData(c.csv, c.down, c.max_ok), c.want) << c.name;
}

const std::string kHead = "send_ms,send_unix_ms,latency_ms,status,kind,session\n";

INSTANTIATE_TEST_SUITE_P(
    Table, TimelineDataTest,
    ::testing::Values(
        TimelineCase{"split", kHead + "0,1000,2,200,ok,\n10,1010,500,0,connect_timeout,\n20,1020,3,200,ok,\n",
                     1010, 10,
                     "# ok: seconds from DOWN, latency ms (2 answered)\n-0.010 2.000\n0.010 3.000\n\n\n"
                     "# failed: seconds from DOWN, ms until given up (1)\n0.000 500.000\n"},
        TimelineCase{"thinned, the slow answer kept",
                     kHead + "0,0,1,200,ok,\n1,1,1,200,ok,\n2,2,1,200,ok,\n3,3,90,200,ok,\n4,4,1,200,ok,\n",
                     0, 2,
                     "# ok: seconds from DOWN, latency ms (5 answered; 1 in 2 normal answers shown)\n"
                     "0.000 1.000\n0.002 1.000\n0.003 90.000\n\n\n"
                     "# failed: seconds from DOWN, ms until given up (0)\n"},
        TimelineCase{"zero latency clamped for the log scale", kHead + "0,0,0,0,local_error,\n", 0, 10,
                     "# ok: seconds from DOWN, latency ms (0 answered)\n\n\n"
                     "# failed: seconds from DOWN, ms until given up (1)\n0.000 0.050\n"},
        TimelineCase{"garbage lines skipped", kHead + "x\n,,,\n", 0, 10,
                     "# ok: seconds from DOWN, latency ms (0 answered)\n\n\n"
                     "# failed: seconds from DOWN, ms until given up (0)\n"}),
    testing::CaseName());

TEST(Report, GnuplotRendersEveryPlot) {
  if (findInPath("gnuplot").empty()) GTEST_SKIP() << "gnuplot is not installed (deploy/packages/bench.txt)";
  auto dir = testing::freshDir("render");
  ReportInput in;
  in.rows = fakeRows();
  in.method_order = {"thesis", "podman", "ferry"};
  in.published = fakePublished();
  for (const auto& r : in.rows) {
    if (r.get("timeline").empty()) continue;
    std::filesystem::create_directories((dir / r.get("timeline")).parent_path());
    std::ofstream(dir / r.get("timeline")) << testing::fakeTimeline(*r.number("down_unix_ms"), 2000);
  }
  auto st = writeReport(dir, in, /*run_gnuplot=*/true);
  ASSERT_TRUE(st.ok()) << st.error().message();
  std::size_t svgs = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "plots")) {
    if (e.path().extension() != ".svg") continue;
    ++svgs;
    auto text = readFile(e.path());
    ASSERT_TRUE(text.ok());
    EXPECT_NE(text->find("<svg"), std::string::npos) << e.path();
  }
  // 3 vs-rows plots + 3 phase plots + 3 timelines.
  EXPECT_EQ(svgs, 9U);
  EXPECT_TRUE(std::filesystem::exists(dir / "summary.md"));
}

}  // namespace
}  // namespace ferry::bench
