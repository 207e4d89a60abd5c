// `ferry bench` in the real lab (issue 7): a tiny version of the study's experiment —
// profile lan, 100 rows, one run of each method (thesis, podman, ferry), 20 MB of video —
// and a check of its files and of every column of runs.csv, read as an outsider would.
// Needs root; `ferry bench` brings the lab up itself (profile lan). Takes several minutes
// (three deploys, an SSH set-up, three migrations). Afterwards the ferry nodes are reset
// (stopped, a the next active), so later tests find them as `lab up` leaves them.
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "lab_support.h"

namespace {

namespace fs = std::filesystem;
using namespace ferry::labtest;

const std::string kNodes = kSource + "/deploy/lab/nodes.sh";

// runs.csv, parsed independently of ferry's own reader: RFC 4180 quoting, no line breaks
// inside fields.
std::vector<std::map<std::string, std::string>> readCsv(const fs::path& file,
                                                        std::vector<std::string>& header) {
  std::ifstream in(file);
  std::vector<std::map<std::string, std::string>> rows;
  std::string line;
  auto split = [](const std::string& l) {
    std::vector<std::string> f(1);
    bool q = false;
    for (std::size_t i = 0; i < l.size(); ++i) {
      if (q && l[i] == '"' && i + 1 < l.size() && l[i + 1] == '"') {
        f.back() += '"';
        ++i;
      } else if (l[i] == '"') {
        q = !q;
      } else if (!q && l[i] == ',') {
        f.emplace_back();
      } else {
        f.back() += l[i];
      }
    }
    return f;
  };
  if (!std::getline(in, line)) return rows;
  header = split(line);
  while (std::getline(in, line)) {
    auto f = split(line);
    EXPECT_EQ(f.size(), header.size()) << line;
    std::map<std::string, std::string> row;
    for (std::size_t i = 0; i < f.size() && i < header.size(); ++i) row[header[i]] = f[i];
    rows.push_back(std::move(row));
  }
  return rows;
}

double num(const std::map<std::string, std::string>& row, const std::string& column) {
  auto it = row.find(column);
  if (it == row.end() || it->second.empty()) return -1;
  return std::stod(it->second);
}

TEST(BenchCli, BadInputIsAUsageErrorBeforeTheLabIsTouched) {
  auto dir = fs::temp_directory_path() / ("ferry-bench-usage-" + std::to_string(::getpid()));
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c : {Case{{"--profile", "lan", "--rows", "7"}, "the study's table sizes"},
                        Case{{"--profile", "moon", "--rows", "100"}, "lan, cloud, wan or edge"},
                        Case{{"--rows", "100", "--methods", "thesis,docker"}, "unknown method 'docker'"},
                        Case{{"--rows", "100", "--switch", "dns"}, "none, proxy, haproxy or nginx"},
                        Case{{"--rows", "100,abc"}, "'abc' is not a whole number"}}) {
    std::vector<std::string> argv = {kFerry, "bench", "--out", dir.string()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = run(argv, 30s);
    EXPECT_EQ(r.exit_code, 2) << ferry::joinArgv(argv) << "\n" << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir / "runs.csv"));
}

class BenchLabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!isRoot()) GTEST_SKIP() << "the lab needs root";
    dir_ = fs::path("/var/tmp") / ("ferry-bench-it-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override {
    // Later tests expect the nodes stopped and a the next active (nodes.sh reset does both).
    if (isRoot()) run({"bash", kNodes, "reset"}, 180s);
    // The experiment's files stay for a failed test only: they are what explains it.
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

TEST_F(BenchLabTest, TinyExperimentHasEveryFileAndColumn) {
  auto r = run({kFerry, "bench", "--profile", "lan", "--rows", "100", "--runs", "1", "--methods",
                "thesis,podman,ferry", "--video-mb", "20", "--out", dir_.string()},
               90min);
  ASSERT_TRUE(r.success()) << "exit " << r.exit_code << (r.timed_out ? " (timed out)" : "") << "\n"
                           << r.err.substr(r.err.size() > 6000 ? r.err.size() - 6000 : 0);
  // Progress was shown: run i of N, the cell, an ETA.
  EXPECT_NE(r.err.find("[1/3] lan · thesis · rows 100 · state 0 MB · run 1/1 · a→b"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("[3/3] lan · ferry"), std::string::npos);
  EXPECT_NE(r.err.find("ETA ~"), std::string::npos);

  std::vector<std::string> header;
  auto rows = readCsv(dir_ / "runs.csv", header);
  // Every column the issue asks for.
  for (const std::string want :
       {"method", "mode", "switch_driver", "rows", "direction", "bytes_moved", "checkpoint_bytes",
        "checkpoint_wire_bytes", "last_delta_bytes", "downtime_study_ms", "migration_study_ms",
        "downtime_ferry_ms", "migration_ferry_ms", "client_downtime_ms", "failed_requests", "max_request_ms",
        "lost_writes", "session_kept", "phases"})
    EXPECT_NE(std::find(header.begin(), header.end(), want), header.end()) << want;
  ASSERT_EQ(rows.size(), 6U) << "a started and a final row per run";
  std::map<std::string, std::map<std::string, std::string>> final_rows;
  for (const auto& row : rows)
    if (row.at("status") != "started") final_rows[row.at("method")] = row;
  ASSERT_EQ(final_rows.size(), 3U);
  for (const std::string method : {"thesis", "podman", "ferry"}) {
    SCOPED_TRACE(method);
    const auto& row = final_rows[method];
    ASSERT_EQ(row.at("status"), "ok") << row.at("error");
    EXPECT_EQ(row.at("result"), "committed");
    EXPECT_EQ(row.at("profile"), "lan");
    EXPECT_EQ(row.at("direction"), "a->b");
    EXPECT_EQ(row.at("rows"), "100");
    EXPECT_EQ(row.at("video_mb"), "20");
    EXPECT_EQ(row.at("mode"), "stop-and-copy");
    EXPECT_FALSE(row.at("switch_driver").empty());
    for (const std::string positive :
         {"bytes_moved", "checkpoint_bytes", "downtime_study_ms", "migration_study_ms", "downtime_ferry_ms",
          "migration_ferry_ms", "sender_total_ms", "client_downtime_ms", "probe_sent", "writes_acknowledged",
          "down_unix_ms", "up_unix_ms", "wall_ms"})
      EXPECT_GT(num(row, positive), 0) << positive;
    for (const std::string counted : {"checkpoint_wire_bytes", "last_delta_bytes", "data_sync_bytes",
                                      "failed_requests", "writes_unknown", "writes_duplicated"})
      EXPECT_GE(num(row, counted), 0) << counted;
    EXPECT_EQ(num(row, "lost_writes"), 0);
    EXPECT_EQ(row.at("session_kept"), "true");
    EXPECT_EQ(row.at("probe_recovered"), "true");
    EXPECT_EQ(row.at("browser_session_kept"), "") << "not asked for";
    EXPECT_LE(num(row, "downtime_ferry_ms"), num(row, "migration_ferry_ms"));
    EXPECT_LE(num(row, "down_unix_ms"), num(row, "up_unix_ms"));
    auto phases = nlohmann::json::parse(row.at("phases"), nullptr, false);
    ASSERT_TRUE(phases.is_array()) << row.at("phases");
    EXPECT_GE(phases.size(), 3U);
    std::ifstream timeline(dir_ / row.at("timeline"));
    std::size_t lines = 0;
    for (std::string l; std::getline(timeline, l);) ++lines;
    EXPECT_GT(lines, 100U) << "the probe's timeline at 10 ms: " << row.at("timeline");
  }
  // The study's method copies the data directory (20 MB of video) before the dump.
  EXPECT_GT(num(final_rows["thesis"], "data_sync_bytes"), 15e6);
  // ferry moves the checkpoint and the last delta, not the data.
  EXPECT_LT(num(final_rows["ferry"], "bytes_moved"), num(final_rows["thesis"], "bytes_moved"));

  std::ifstream md(dir_ / "summary.md");
  std::stringstream summary;
  summary << md.rdbuf();
  for (std::string_view want : {"## Downtime, the study's definition (s)", "## Client-observed downtime (s)",
                                "*published (study, local), not measured here*", "thesis ÷ method"})
    EXPECT_NE(summary.str().find(want), std::string::npos) << want;
  for (const std::string plot :
       {"downtime_study-vs-rows-lan-state0", "client_downtime-vs-rows-lan-state0",
        "migration_study-vs-rows-lan-state0", "phases-thesis-lan", "phases-podman-lan", "phases-ferry-lan",
        "timeline-thesis-lan", "timeline-podman-lan", "timeline-ferry-lan"}) {
    EXPECT_TRUE(fs::exists(dir_ / "plots" / (plot + ".svg"))) << plot;
    EXPECT_TRUE(fs::exists(dir_ / "plots" / (plot + ".dat"))) << plot;
  }

  // Resume with nothing left to do: no lab work, the report is rewritten.
  auto again = run({kFerry, "bench", "--profile", "lan", "--rows", "100", "--runs", "1", "--methods",
                    "thesis,podman,ferry", "--video-mb", "20", "--out", dir_.string()},
                   10min);
  EXPECT_TRUE(again.success()) << again.err;
  EXPECT_NE(again.err.find("3 already done"), std::string::npos) << again.err;
  auto report = run({kFerry, "bench", "--out", dir_.string(), "--report-only"}, 5min);
  EXPECT_TRUE(report.success()) << report.err;
}

// The study's third environment: the data directory on storage both hosts mount. ferry's
// nodes run with shared_storage = on, mirror nothing, and move only the checkpoint.
TEST_F(BenchLabTest, FerryOnSharedStorageMovesOnlyTheCheckpoint) {
  auto r = run({kFerry, "bench", "--profile", "lan", "--shared-storage", "--rows", "100", "--runs", "1",
                "--methods", "ferry", "--video-mb", "20", "--out", dir_.string()},
               60min);
  ASSERT_TRUE(r.success()) << "exit " << r.exit_code << (r.timed_out ? " (timed out)" : "") << "\n"
                           << r.err.substr(r.err.size() > 6000 ? r.err.size() - 6000 : 0);
  std::vector<std::string> header;
  auto rows = readCsv(dir_ / "runs.csv", header);
  ASSERT_EQ(rows.size(), 2U) << "a started and a final row";
  const auto& row = rows.back();
  ASSERT_EQ(row.at("status"), "ok") << row.at("error");
  EXPECT_EQ(row.at("shared_storage"), "true");
  EXPECT_EQ(row.at("result"), "committed");
  EXPECT_EQ(num(row, "last_delta_bytes"), 0) << "nothing is mirrored on shared storage";
  EXPECT_EQ(num(row, "bytes_moved"), num(row, "checkpoint_wire_bytes"));
  EXPECT_EQ(num(row, "lost_writes"), 0);
  EXPECT_EQ(row.at("session_kept"), "true");
  // The service runs on b from the shared data, and the nodes say what they are.
  auto status = run({kFerry, "lab", "exec", "b", "--", "ferry", "status", "--output", "json"}, 30s);
  auto s = nlohmann::json::parse(status.out, nullptr, false);
  ASSERT_FALSE(s.is_discarded()) << status.out << status.err;
  EXPECT_EQ(s["role"], "active");
  EXPECT_EQ(s["replica"]["state"], "shared");
  // Back to a lab without shared storage for the tests after this one.
  auto up = run({kFerry, "lab", "up"}, 30min);
  EXPECT_TRUE(up.success()) << up.err;
}

}  // namespace
