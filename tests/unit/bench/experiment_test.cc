// `ferry bench`'s plan, resume logic and run loop, against a fake lab.
#include "ferry/bench/experiment.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "bench_fakes.h"
#include "ferry/base/files.h"

namespace ferry::bench {
namespace {

using testing::FakeLab;

// ---- flags ------------------------------------------------------------------------------

struct ListCase {
  std::string text;
  std::vector<int> want;
  std::string error_has;  // empty: parses
};

class IntListTest : public ::testing::TestWithParam<ListCase> {};

TEST_P(IntListTest, ParsesOrSaysWhy) {
  const auto& c = GetParam();
  auto r = parseIntList(c.text, "rows");
  if (c.error_has.empty()) {
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(*r, c.want);
  } else {
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.error().message().find(c.error_has), std::string::npos) << r.error().message();
  }
}

INSTANTIATE_TEST_SUITE_P(Table, IntListTest,
                         ::testing::Values(ListCase{"100", {100}, ""},
                                           ListCase{"100,10000", {100, 10000}, ""},
                                           ListCase{" 100 , 500", {100, 500}, ""},
                                           ListCase{"100,,500", {}, "'' is not a whole number"},
                                           ListCase{"1e3", {}, "'1e3' is not a whole number"},
                                           ListCase{"", {}, "--rows: '' is not"},
                                           ListCase{"100,100", {}, "100 is listed twice"},
                                           ListCase{"-5", {-5}, ""}));

TEST(Methods, ParseKnownOnesAndRefuseOthers) {
  auto ok = parseMethods("thesis,podman,ferry");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(*ok, (std::vector<std::string>{"thesis", "podman", "ferry"}));
  auto bad = parseMethods("thesis,docker");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message().find("unknown method 'docker'"), std::string::npos);
  EXPECT_FALSE(parseMethods("ferry,ferry").ok());
}

BenchOptions goodOptions(const std::filesystem::path& out = "/tmp/out") {
  BenchOptions o;
  o.profile = "cloud";
  o.rows = {100, 10000};
  o.runs = 2;
  o.methods = {"thesis", "podman", "ferry"};
  o.out_dir = out;
  o.video_mb = 20;
  return o;
}

struct OptionsCase {
  std::string name;
  std::function<void(BenchOptions&)> edit;
  std::string error_has;
};

class ValidateTest : public ::testing::TestWithParam<OptionsCase> {};

TEST_P(ValidateTest, BadInputSaysWhatToDo) {
  BenchOptions o = goodOptions();
  GetParam().edit(o);
  auto st = validateOptions(o);
  if (GetParam().error_has.empty()) {
    EXPECT_TRUE(st.ok()) << st.error().message();
  } else {
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().message().find(GetParam().error_has), std::string::npos) << st.error().message();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ValidateTest,
    ::testing::Values(
        OptionsCase{"good", [](BenchOptions&) {}, ""},
        OptionsCase{"profile", [](BenchOptions& o) { o.profile = "moon"; }, "lan, cloud, wan or edge"},
        OptionsCase{"rows", [](BenchOptions& o) { o.rows = {7}; }, "100, 500, 1000, 5000 or 10000"},
        OptionsCase{"state", [](BenchOptions& o) { o.state_mb = {-1}; }, "between 0 and 16384"},
        OptionsCase{"runs", [](BenchOptions& o) { o.runs = 0; }, "--runs"},
        OptionsCase{"video", [](BenchOptions& o) { o.video_mb = 0; }, "--video-mb"},
        OptionsCase{"out", [](BenchOptions& o) { o.out_dir.clear(); }, "--out"},
        OptionsCase{"switch", [](BenchOptions& o) { o.switch_driver = "dns"; },
                    "none, proxy, haproxy or nginx"},
        OptionsCase{"no switch", [](BenchOptions& o) { o.switch_driver = "none"; }, ""},
        OptionsCase{"ferry on shared storage", [](BenchOptions& o) { o.shared_storage = true; }, ""},
        OptionsCase{"shared storage without ferry",
                    [](BenchOptions& o) {
                      o.shared_storage = true;
                      o.profile = "lan";
                      o.methods = {"thesis", "podman"};
                    },
                    ""}),
    testing::CaseName());

// ---- the plan ----------------------------------------------------------------------------------

TEST(Plan, StateThenRowsThenMethodThenRunsWithAlternatingDirections) {
  BenchOptions o = goodOptions();
  o.state_mb = {0, 256};
  o.runs = 3;
  auto plan = planRuns(o);
  ASSERT_EQ(plan.size(), 2U * 2U * 3U * 3U);
  std::vector<std::string> head;
  for (std::size_t i = 0; i < 7; ++i) {
    const auto& s = plan[i];
    head.push_back(std::to_string(s.seq) + " " + s.method + " " + std::to_string(s.rows) + " " +
                   std::to_string(s.state_mb) + " " + std::to_string(s.run) + " " + s.from + s.to);
  }
  EXPECT_EQ(head,
            (std::vector<std::string>{"1 thesis 100 0 1 ab", "2 thesis 100 0 2 ba", "3 thesis 100 0 3 ab",
                                      "4 podman 100 0 1 ab", "5 podman 100 0 2 ba", "6 podman 100 0 3 ab",
                                      "7 ferry 100 0 1 ab"}));
  EXPECT_EQ(plan[9].rows, 10000);
  EXPECT_EQ(plan[18].state_mb, 256);
  EXPECT_EQ(plan.back().seq, 36);
}

// ---- resuming ---------------------------------------------------------------------------------

RunRow existing(const std::string& method, int rows, int run, int attempt, std::string_view status,
                const std::string& profile = "cloud", int video = 20) {
  RunRow r = testing::benchRow(method, rows, run, run % 2 == 1 ? "a->b" : "b->a");
  r.set("profile", profile);
  r.set("video_mb", std::to_string(video));
  r.set("attempt", std::to_string(attempt));
  r.set("status", std::string(status));
  return r;
}

struct ResumeWant {
  std::size_t finished, todo, to_mark;
  int first_todo_attempt;
};

struct ResumeCase {
  std::string name;
  std::vector<RunRow> rows;
  ResumeWant want;
  std::string error_has;
};

class ResumeTest : public ::testing::TestWithParam<ResumeCase> {};

TEST_P(ResumeTest, SkipsFinishedMarksHalfDoneRetriesInterrupted) {
  const auto& c = GetParam();
  BenchOptions o = goodOptions();
  o.methods = {"ferry"};
  o.rows = {100};
  o.runs = 3;  // runs 1..3 of ferry, rows 100
  auto st = resumeState(o, planRuns(o), c.rows);
  if (!c.error_has.empty()) {
    ASSERT_FALSE(st.ok()) << c.name;
    EXPECT_NE(st.error().message().find(c.error_has), std::string::npos) << st.error().message();
    return;
  }
  ASSERT_TRUE(st.ok()) << st.error().message();
  EXPECT_EQ(st->finished, c.want.finished) << c.name;
  EXPECT_EQ(st->todo.size(), c.want.todo) << c.name;
  EXPECT_EQ(st->interrupted.size(), c.want.to_mark) << c.name;
  ASSERT_EQ(st->attempt.size(), st->todo.size());
  if (!st->todo.empty()) {
    EXPECT_EQ(st->attempt.front(), c.want.first_todo_attempt) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ResumeTest,
    ::testing::Values(
        ResumeCase{"fresh", {}, {0, 3, 0, 1}, ""},
        ResumeCase{"ok and failed are done",
                   {existing("ferry", 100, 1, 1, "started"), existing("ferry", 100, 1, 1, "ok"),
                    existing("ferry", 100, 2, 1, "started"), existing("ferry", 100, 2, 1, "failed")},
                   {2, 1, 0, 1},
                   ""},
        ResumeCase{"died half-way: marked, then attempt 2",
                   {existing("ferry", 100, 1, 1, "started"), existing("ferry", 100, 1, 1, "ok"),
                    existing("ferry", 100, 2, 1, "started")},
                   {1, 2, 1, 2},
                   ""},
        ResumeCase{"already marked interrupted: attempt 2, not marked again",
                   {existing("ferry", 100, 1, 1, "started"), existing("ferry", 100, 1, 1, "interrupted")},
                   {0, 3, 0, 2},
                   ""},
        ResumeCase{"second attempt died too: attempt 3",
                   {existing("ferry", 100, 1, 1, "started"), existing("ferry", 100, 1, 1, "interrupted"),
                    existing("ferry", 100, 1, 2, "started")},
                   {0, 3, 1, 3},
                   ""},
        ResumeCase{"rows of another cell are kept, not redone",
                   {existing("thesis", 5000, 1, 1, "started"), existing("thesis", 5000, 1, 1, "ok")},
                   {0, 3, 0, 1},
                   ""},
        ResumeCase{"other profile",
                   {existing("ferry", 100, 1, 1, "ok", "lan")},
                   {0, 0, 0, 0},
                   "use another --out for this one"},
        ResumeCase{"ferry runs with another switch-over driver",
                   {[] {
                     auto r = existing("ferry", 100, 1, 1, "ok");
                     r.set("switch_driver", "nginx");
                     return r;
                   }()},
                   {0, 0, 0, 0},
                   "--switch nginx, not proxy"},
        ResumeCase{"other video",
                   {existing("ferry", 100, 1, 1, "ok", "cloud", 625)},
                   {0, 0, 0, 0},
                   "--video-mb 625, not 20"}),
    testing::CaseName());

// ---- the loop ------------------------------------------------------------------------------------

struct Loop {
  std::filesystem::path dir;
  BenchOptions o;
  FakeLab lab;
  std::atomic<bool> stop{false};
  std::ostringstream progress;

  explicit Loop(const std::string& name) : dir(testing::freshDir(name)) {
    o = goodOptions(dir / "out");
    o.rows = {100};
    o.methods = {"thesis", "ferry"};
    o.published_csv = FERRY_BENCH_REFERENCE_CSV;
    lab.stop_flag = &stop;
  }
  Result<BenchOutcome> run() { return runBench(o, lab, progress, stop); }
  std::vector<RunRow> rows() {
    auto f = loadRunsCsv(o.out_dir / "runs.csv");
    EXPECT_TRUE(f.ok());
    return f.ok() ? f->rows : std::vector<RunRow>{};
  }
  std::vector<std::string> calls() {
    std::vector<std::string> out;
    for (const auto& c : lab.calls)
      out.push_back(c.what == "up" ? "up" : c.what + " " + c.run.method + " " + c.run.from + c.run.to);
    return out;
  }
};

TEST(RunBench, EveryRunBecomesStartedThenFinalAndPreparesOnlyWhenNeeded) {
  Loop l("loop");
  auto out = l.run();
  ASSERT_TRUE(out.ok()) << out.error().message();
  EXPECT_EQ(out->ok, 4U);
  EXPECT_EQ(out->failed, 0U);
  // A deploy per method (on a); run 2 (b→a) finds the service where run 1 left it.
  EXPECT_EQ(l.calls(),
            (std::vector<std::string>{"up", "prepare thesis ab", "migrate thesis ab", "migrate thesis ba",
                                      "prepare ferry ab", "migrate ferry ab", "migrate ferry ba"}));
  auto rows = l.rows();
  ASSERT_EQ(rows.size(), 8U);
  EXPECT_EQ(rows[0].get("status"), "started");
  EXPECT_EQ(rows[1].get("status"), "ok");
  EXPECT_EQ(rows[1].get("direction"), "a->b");
  EXPECT_EQ(rows[3].get("direction"), "b->a");
  EXPECT_EQ(rows[1].get("load_1m"), "1.250");
  EXPECT_EQ(rows[1].get("wall_ms"), "20000");
  // Paths inside --out are stored relative to it.
  EXPECT_EQ(rows[1].get("run_dir"), "runs/0001-thesis-rows100-state0-run1-a1");
  EXPECT_EQ(rows[1].get("timeline"), "runs/0001-thesis-rows100-state0-run1-a1/timeline.csv");
  for (const auto& r : rows) {
    if (r.get("status") != "ok") continue;
    for (const auto& c : runColumns()) {
      if (c.name == "error" || c.name == "browser_session_kept") continue;  // empty when all is well
      EXPECT_FALSE(r.get(c.name).empty()) << c.name;
    }
  }
  EXPECT_TRUE(std::filesystem::exists(l.o.out_dir / "summary.md"));
  EXPECT_TRUE(std::filesystem::exists(l.o.out_dir / "plots/downtime_study-vs-rows-cloud-state0.gp"));
  const std::string p = l.progress.str();
  EXPECT_NE(p.find("[1/4] cloud · thesis · rows 100 · state 0 MB · run 1/2 · a→b"), std::string::npos) << p;
  EXPECT_NE(p.find("ETA ~"), std::string::npos) << p;
  EXPECT_NE(p.find("ok: downtime"), std::string::npos) << p;
}

TEST(RunBench, AFailedRunIsRecordedAndTheNextOneRedeploys) {
  Loop l("failed");
  l.lab.script = {"error:the thesis runner printed no JSON line (exit 1: boom)",
                  "line:{\"result\":\"committed\"}"};
  auto out = l.run();
  ASSERT_TRUE(out.ok()) << out.error().message();
  EXPECT_EQ(out->failed, 2U);
  EXPECT_EQ(out->ok, 2U);
  EXPECT_EQ(l.calls(), (std::vector<std::string>{"up", "prepare thesis ab", "migrate thesis ab",
                                                 "prepare thesis ba", "migrate thesis ba", "prepare ferry ab",
                                                 "migrate ferry ab", "migrate ferry ba"}));
  auto rows = l.rows();
  EXPECT_EQ(rows[1].get("status"), "failed");
  EXPECT_EQ(rows[1].get("error"), "the thesis runner printed no JSON line (exit 1: boom)");
  EXPECT_EQ(rows[3].get("status"), "failed");
  EXPECT_NE(rows[3].get("error").find("broke its contract"), std::string::npos) << rows[3].get("error");
  EXPECT_NE(l.progress.str().find("FAILED: "), std::string::npos);
  // Failed runs are results: the next invocation does not retry them.
  FakeLab again;
  std::ostringstream ignore;
  auto second = runBench(l.o, again, ignore, l.stop);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->skipped, 4U);
  EXPECT_TRUE(again.calls.empty()) << "nothing to do: the lab is not touched";
}

TEST(RunBench, ResumesAfterACrashMarksTheHalfRunAndCutsTheTornLine) {
  Loop first("resume");
  first.o.methods = {"ferry"};
  first.o.runs = 3;
  // Crash simulation: run 1 finished; run 2 started and the process died (only the
  // "started" row), and the final row was being written.
  {
    FakeLab lab;
    std::atomic<bool> stop{false};
    BenchOptions one = first.o;
    one.runs = 1;
    std::ostringstream ignore;
    ASSERT_TRUE(runBench(one, lab, ignore, stop).ok());
  }
  RunRow half;
  auto rows = first.rows();
  ASSERT_EQ(rows.size(), 2U);
  half = rows[0];
  half.set("seq", "2");
  half.set("run", "2");
  half.set("direction", "b->a");
  ASSERT_TRUE(appendRunCsv(first.o.out_dir / "runs.csv", half).ok());
  {
    std::ofstream out(first.o.out_dir / "runs.csv", std::ios::app);
    out << "2,ok,1,1700000000000,20000,1.25,cloud,false,ferry,100,0,20,2,b->a,,stop-and-co";
  }
  auto out = first.run();
  ASSERT_TRUE(out.ok()) << out.error().message();
  EXPECT_EQ(out->skipped, 1U);
  EXPECT_EQ(out->marked_interrupted, 1U);
  EXPECT_EQ(out->ok, 2U);
  // Run 2 again (attempt 2) from b, after a deploy there (where the service is is unknown).
  EXPECT_EQ(first.calls(),
            (std::vector<std::string>{"up", "prepare ferry ba", "migrate ferry ba", "migrate ferry ab"}));
  auto after = first.rows();
  ASSERT_EQ(after.size(), 2U + 1U + 1U + 4U);
  EXPECT_EQ(after[2].get("status"), "started");
  EXPECT_EQ(after[3].get("status"), "interrupted");
  EXPECT_EQ(after[3].get("attempt"), "1");
  EXPECT_NE(after[3].get("error").find("found unfinished"), std::string::npos);
  EXPECT_EQ(after[5].get("status"), "ok");
  EXPECT_EQ(after[5].get("attempt"), "2");
  EXPECT_EQ(after[5].get("run_dir"), "runs/0002-ferry-rows100-state0-run2-a2");
  EXPECT_NE(first.progress.str().find("cut a half-written last line"), std::string::npos);
  auto summary = readFile(first.o.out_dir / "summary.md");
  ASSERT_TRUE(summary.ok());
  EXPECT_NE(summary->find("| 2 | 1 | ferry | 100 | 0 | 2 | b->a | interrupted |"), std::string::npos)
      << *summary;
}

TEST(RunBench, StopMarksTheRunInProgressInterruptedAndEnds) {
  Loop l("stop");
  l.lab.script = {"", "stop"};
  auto out = l.run();
  ASSERT_TRUE(out.ok()) << out.error().message();
  EXPECT_TRUE(out->stopped);
  EXPECT_EQ(out->ok, 1U);
  auto rows = l.rows();
  ASSERT_EQ(rows.size(), 4U);
  EXPECT_EQ(rows[3].get("status"), "interrupted");
  EXPECT_NE(rows[3].get("error").find("stopped by the user"), std::string::npos);
  EXPECT_EQ(l.lab.calls.size(), 4U);  // up, prepare, migrate ×2: nothing after the stop
}

TEST(RunBench, APrepareFailureStopsWithTheStepAndTheWayToResume) {
  Loop l("prepare");
  l.lab.fail_prepare = true;
  auto out = l.run();
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message().find("preparing run 1 (thesis, rows 100) failed: deploy failed on a"),
            std::string::npos)
      << out.error().message();
  EXPECT_TRUE(l.rows().empty()) << "nothing was started";
}

TEST(RunBench, SecondBenchOnTheSameDirectoryIsRefused) {
  Loop l("lock");
  std::filesystem::create_directories(l.o.out_dir);
  // Hold the lock the way a running bench does.
  int fd = ::open((l.o.out_dir / ".lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  auto out = l.run();
  ::close(fd);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message().find("another ferry bench is writing"), std::string::npos);
}

TEST(ReportFromDirectory, NeedsRunsCsv) {
  auto st = reportFromDirectory(testing::freshDir("empty"), FERRY_BENCH_REFERENCE_CSV, false);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find("no runs.csv"), std::string::npos);
}

}  // namespace
}  // namespace ferry::bench
