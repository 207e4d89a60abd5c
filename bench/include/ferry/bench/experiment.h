// `ferry bench`: the study's experiment, method beside method, on the lab.
//
// For every cell (method × rows × state) the service is deployed fresh on `a`, then the
// cell's runs alternate a→b, b→a like the study; each run is one method runner
// (bench/methods/METHOD.sh) whose JSON line becomes one row of DIR/runs.csv. Before a
// run starts, a "started" row is appended; a run that dies half-way thus leaves that
// row, and the next invocation marks it "interrupted" and runs it again as the next
// attempt (visible in runs.csv and summary.md, never silently replacing it). Rows
// already finished (ok or failed) are skipped. At the end: DIR/summary.md and plots.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/bench/results.h"

namespace ferry::bench {

inline constexpr std::array<std::string_view, 3> kMethods{"thesis", "podman", "ferry"};

struct BenchOptions {
  std::string profile = "lan";  // lan | cloud | wan | edge
  bool shared_storage = false;
  std::vector<int> rows;
  std::vector<int> state_mb{0};
  int runs = 1;
  std::vector<std::string> methods;
  std::filesystem::path out_dir;
  int video_mb = 625;  // the study's video data
  bool browser = false;
  // How ferry's runs move the traffic: its switch-over driver (`ferry migrate --switch`),
  // or "none" for the study's nginx with both hosts in one upstream. The study's method
  // and plain Podman always use their own nginx steps.
  std::string switch_driver = "proxy";
  std::filesystem::path published_csv;  // the study's runs (bench/reference/thesis-results.csv)
  std::string command_line;             // for summary.md
};

// "100,10000" → {100, 10000}; the error names `flag`.
Result<std::vector<int>> parseIntList(std::string_view text, std::string_view flag);
Result<std::vector<std::string>> parseMethods(std::string_view text);
// Bad input (exit 2): unknown profile or method, rows the service cannot seed, ...
Status validateOptions(const BenchOptions& options);

struct RunSpec {
  int seq = 0;  // 1-based position in the plan
  std::string method;
  int rows = 0;
  int state_mb = 0;
  int run = 0;  // 1..runs within the cell
  std::string from, to;
};
// The plan's order: state, rows, method, run (a method's runs back to back; every
// method of a row count within minutes of the others).
std::vector<RunSpec> planRuns(const BenchOptions& options);

// What the runs.csv already holds means for the plan.
struct ResumeState {
  std::vector<RunSpec> todo;        // in plan order
  std::vector<int> attempt;         // the attempt number each todo run gets (1 = first)
  std::vector<RunRow> interrupted;  // "started" rows with no end: to be marked interrupted
  std::size_t finished = 0;         // runs already ok or failed
};
// Fails when runs.csv holds runs of another profile, shared-storage setting or video size
// (a directory is one experiment); runs of cells outside the plan are kept, not redone.
Result<ResumeState> resumeState(const BenchOptions& options, const std::vector<RunSpec>& plan,
                                const std::vector<RunRow>& existing);

// What the bench does on the lab, behind an interface so the loop is tested with fakes.
class LabActions {
 public:
  virtual ~LabActions() = default;
  // The lab up in the options' profile (and shared storage).
  virtual Status up(const BenchOptions& options) = 0;
  // A fresh service on run.from for run.method's runs: deployed with the cell's rows and
  // state; for ferry the nodes reset with run.from active and in sync; else stopped.
  virtual Status prepare(const BenchOptions& options, const RunSpec& run) = 0;
  // Runs the method's runner; returns its JSON line, or an error when none came.
  virtual Result<std::string> migrate(const BenchOptions& options, const RunSpec& run,
                                      const std::filesystem::path& run_dir) = 0;
  [[nodiscard]] virtual std::int64_t nowUnixMs() const = 0;
  [[nodiscard]] virtual double loadAverage() const = 0;
};

struct LabPaths {
  std::filesystem::path ferry;       // this binary (the hosts get the same one)
  std::filesystem::path repo;        // has bench/methods/, deploy/
  std::chrono::seconds run_timeout;  // 0: derived from the profile and sizes
};
// `stop` (may be null) cancels the step or runner in progress (SIGTERM, then SIGKILL).
std::unique_ptr<LabActions> makeLabActions(LabPaths paths, const std::atomic<bool>* stop);

struct BenchOutcome {
  std::size_t ok = 0, failed = 0, marked_interrupted = 0, skipped = 0;
  bool stopped = false;  // `stop` was raised: the run in progress is marked interrupted
};

// The whole experiment; progress lines go to `progress`. `stop` ends it after marking
// the run in progress interrupted. summary.md and the plots are written at the end (and
// after a stop), from everything in runs.csv.
Result<BenchOutcome> runBench(const BenchOptions& options, LabActions& lab, std::ostream& progress,
                              const std::atomic<bool>& stop);

// summary.md and plots from DIR/runs.csv alone (no lab). `published_csv` may not exist.
Status reportFromDirectory(const std::filesystem::path& dir, const std::filesystem::path& published_csv,
                           bool run_gnuplot);

}  // namespace ferry::bench
