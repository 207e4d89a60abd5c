// What `ferry bench` records and reports: the columns of runs.csv (one row per run),
// reading it back (a half-written last line is found and cut off), the statistics of
// summary.md, the plots' inputs, and the study's published runs (bench/reference/).
// Everything here is pure or plain file I/O, so it is tested without the lab.
// The meaning of every column: bench/README.md, "ferry bench".
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "ferry/base/error.h"

namespace ferry::bench {

enum class ColumnType { kText, kInteger, kNumber, kBool, kBoolOrEmpty, kJson };

struct Column {
  std::string_view name;
  ColumnType type;
  bool from_method;  // filled from the method runner's JSON line (else by the bench)
};

// runs.csv's columns, in file order.
std::span<const Column> runColumns();

// One line of runs.csv: column → cell text ("" = not measured / not applicable).
class RunRow {
 public:
  [[nodiscard]] const std::string& get(std::string_view column) const;
  void set(std::string_view column, std::string value);
  [[nodiscard]] std::optional<double> number(std::string_view column) const;
  [[nodiscard]] bool isTrue(std::string_view column) const { return get(column) == "true"; }

 private:
  std::map<std::string, std::string, std::less<>> cells_;
};

// Run status values (column `status`).
inline constexpr std::string_view kStatusStarted = "started";  // written before the run
inline constexpr std::string_view kStatusOk = "ok";            // committed, measured
inline constexpr std::string_view kStatusFailed = "failed";    // the method failed: a result, not retried
inline constexpr std::string_view kStatusInterrupted = "interrupted";  // the bench stopped mid-run: re-run

// One attempt of one run: profile, storage, method, rows, state, run and attempt.
std::string attemptKey(const RunRow& row);

// Fills `row`'s method columns from the one JSON line a method runner printed and sets
// `status` (ok when the line says "result":"committed", else failed with its error).
// An error says which key is missing or of the wrong type, or which value does not match
// what the bench deployed (method, rows, state_mb, video_mb, direction).
Status applyMethodLine(RunRow& row, std::string_view line);

// Formats a number the way runs.csv holds it: integers without a fraction, else 3 decimals.
std::string formatNumber(double value);

// ---- runs.csv ---------------------------------------------------------------------------
std::string csvHeader();
std::string csvLine(const RunRow& row);  // ends with '\n'; RFC 4180 quoting

struct RunsFile {
  std::vector<RunRow> rows;
  std::size_t complete_bytes = 0;  // length of the file up to its last complete line
  std::string torn_tail;           // a half-written last line (empty when none)
};

// Parses runs.csv. Fails when the header is not this version's (the directory belongs to
// another version of ferry bench: use a new --out).
Result<RunsFile> parseRunsCsv(std::string_view text);
// Reads DIR/runs.csv (an absent file is empty); a torn tail is cut off the file.
Result<RunsFile> loadRunsCsv(const std::filesystem::path& file);
// Appends one row (the header first when the file is new) and fsyncs.
Status appendRunCsv(const std::filesystem::path& file, const RunRow& row);

// ---- statistics --------------------------------------------------------------------------
struct Stat {
  std::size_t n = 0;
  double mean = 0, p50 = 0, p95 = 0, min = 0, max = 0;
};
// Mean, nearest-rank p50/p95 (the value at rank ceil(p/100 · n) of the sorted values),
// min and max; n = 0 for an empty list.
Stat describe(std::vector<double> values);

// A cell: method × profile (+ shared storage) × rows × state.
struct CellKey {
  std::string method;
  std::string profile;
  bool shared_storage = false;
  int rows = 0;
  int state_mb = 0;
  bool operator==(const CellKey&) const = default;
  bool operator<(const CellKey& o) const {
    return std::tie(method, profile, shared_storage, rows, state_mb) <
           std::tie(o.method, o.profile, o.shared_storage, o.rows, o.state_mb);
  }
};

struct CellSummary {
  CellKey key;
  std::size_t ok = 0, failed = 0, interrupted = 0;
  std::map<std::string, Stat, std::less<>> metrics;  // by column name, over the ok runs
  std::size_t session_kept = 0;                      // ok runs whose curl session survived
  std::size_t browser_checked = 0, browser_kept = 0;
  std::map<std::string, double, std::less<>> phase_ms;  // mean exclusive ms per phase, in order seen
  std::vector<std::string> phase_order;
};

// The nominal link rate of a lab profile in Mbit/s (deploy/lab/links.sh: lan 3650,
// cloud 1750, wan 45, edge 5); 0 for a name it does not know.
double profileLinkMbit(std::string_view profile);

// The metrics summary.md tabulates (columns of runs.csv).
std::span<const std::string_view> summaryMetrics();

// Per cell, ordered by profile, state, rows, then method in `method_order`.
std::vector<CellSummary> summarizeRuns(const std::vector<RunRow>& rows,
                                       const std::vector<std::string>& method_order);

// A run's phases (the JSON array of `phases`) as exclusive time: every moment of the run
// counts once, for the phase that started first among those running (overlapping phases,
// e.g. ferry's checkpoint and transfer, are not counted twice). In start order.
std::vector<std::pair<std::string, double>> exclusivePhases(std::string_view phases_json);

// ---- the study's published runs -----------------------------------------------------------
struct PublishedRun {
  std::string environment;  // local-nfs, local, cloud
  int rows = 0;
  int run = 0;
  double downtime_ms = 0;
  double migration_ms = 0;
  double checkpoint_mb = 0;
};
Result<std::vector<PublishedRun>> parsePublishedCsv(std::string_view text);
// The study's environment a lab profile stands for: lan → local, lan + shared storage →
// local-nfs, cloud → cloud; "" when the study has none like it.
std::string publishedEnvironment(std::string_view profile, bool shared_storage);

// ---- the report ----------------------------------------------------------------------------
struct ReportInput {
  std::vector<RunRow> rows;
  std::vector<std::string> method_order;  // thesis first: the ratios are to it
  std::vector<PublishedRun> published;    // may be empty
  std::string plan_text;                  // one paragraph describing the plan ("" = from the rows)
};

struct ReportFile {
  std::string name;  // relative to the output directory
  std::string content;
};

// summary.md and the plots' data and gnuplot scripts (plots/NAME.dat, plots/NAME.gp;
// each script writes plots/NAME.svg). Timelines are read through `read_timeline`
// (path relative to the output directory → its content, or nullopt when absent).
std::vector<ReportFile> buildReport(
    const ReportInput& input,
    const std::function<std::optional<std::string>(const std::string&)>& read_timeline);

// The timeline plot's points: the probe's timeline CSV with time in seconds from `down`
// (ms since the epoch); "ok" block, then (after two blank lines) "failed" block. Answers
// are thinned to at most `max_ok` points (every failure and every answer slower than
// 4× the median stays).
std::string timelinePlotData(std::string_view timeline_csv, double down_unix_ms, std::size_t max_ok = 4000);

// Writes the report into `dir` and, when `run_gnuplot`, renders the plots (gnuplot,
// bounded); a plot that fails is named in the returned error, the rest still exist.
Status writeReport(const std::filesystem::path& dir, const ReportInput& input, bool run_gnuplot);

}  // namespace ferry::bench
