// Fake method runner output and a fake lab for the `ferry bench` tests.
#pragma once

#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "ferry/bench/experiment.h"

namespace ferry::bench::testing {

// What a runner's JSON line holds, with the figures a test wants to vary.
struct FakeRun {
  std::string method = "thesis";
  std::string from = "a", to = "b";
  int rows = 100, state_mb = 0, video_mb = 20;
  double downtime_ms = 10000;         // both definitions
  double migration_ms = 30000;        // the study's; ferry's is 0.8 of it
  double client_downtime_ms = 11000;  // the probe
  int failed_requests = 900;
  int lost_writes = 0;
  bool session_kept = true;
  std::string run_dir = "/tmp/run";
  double down_unix_ms = 1'700'000'000'000.0;
};

// The bench's own columns of a run: profile cloud, no shared storage, state 0 MB, video
// 20 MB, attempt 1, status started.
RunRow benchRow(const std::string& method, int rows, int run, const std::string& direction);

// A complete committed line, like bench/methods/lib.sh's emit().
nlohmann::json fakeLine(const FakeRun& r);

// A probe timeline CSV around a freeze at `down_unix_ms`: answers every 10 ms, failures
// while frozen (from down to down + frozen_ms).
std::string fakeTimeline(double down_unix_ms, double frozen_ms);

// A LabActions that records what it was asked and answers from a script of outcomes.
class FakeLab : public LabActions {
 public:
  struct Call {
    std::string what;  // "up", "prepare", "migrate"
    RunSpec run;
  };
  std::vector<Call> calls;
  // Per migrate call (in order): empty = a committed line; "error:..." = no line;
  // "line:..." = this exact line; "stop" = raise `stop_flag` and return a failed line.
  std::vector<std::string> script;
  std::atomic<bool>* stop_flag = nullptr;
  std::int64_t now_ms = 1'700'000'000'000;
  bool fail_prepare = false;

  Status up(const BenchOptions& options) override;
  Status prepare(const BenchOptions& options, const RunSpec& run) override;
  Result<std::string> migrate(const BenchOptions& options, const RunSpec& run,
                              const std::filesystem::path& run_dir) override;
  [[nodiscard]] std::int64_t nowUnixMs() const override { return now_ms; }
  [[nodiscard]] double loadAverage() const override { return 1.25; }

 private:
  std::size_t migrations_ = 0;
};

// gtest's name of a table case: its `name`, anything but letters and digits made '_'.
struct CaseName {
  template <typename Param>
  std::string operator()(const ::testing::TestParamInfo<Param>& p) const {
    std::string n = p.param.name;
    for (auto& ch : n)
      if (std::isalnum(static_cast<unsigned char>(ch)) == 0) ch = '_';
    return n;
  }
};

// A fresh empty directory under the test temp dir.
std::filesystem::path freshDir(const std::string& name);

}  // namespace ferry::bench::testing
