// `ferry writer`: the consistency writer. Writes numbered rows (writer W, seq 1, 2, ...)
// one at a time through POST /api/write.php, and afterwards compares what the service
// acknowledged with what GET /api/writes.php?writer=W returns.
//
// What a write's outcome means:
// * acknowledged: HTTP 200 with JSON {"ok":true,"writer":W,"seq":N}. The service promised
//   the row is committed; it must be there at the end, exactly once.
// * not sent: the connection was never established (refused, connect timeout,
//   unreachable, local error), so no request byte reached the service. The same seq is
//   retried at the next tick — safe, since nothing can have been committed.
// * unknown: the request may have reached the service but no acknowledgement came back
//   (timeout, reset, close, 5xx, any other answer). It may or may not be committed, so it
//   is NOT retried (a retry could commit it twice) and the writer moves on to seq+1.
//   At verification an unknown seq may be present once or absent; both are fine.
//
// Verification (verifyWrites) over the server's rows sorted by id:
// * missing: acknowledged seqs with no row — lost writes. Zero missing is the only pass.
// * duplicated: seqs with more than one row (count of extra rows).
// * out_of_order: first occurrences whose seq is lower than a seq of an earlier row
//   (the writer writes strictly one after the other, so ids must grow with seq).
// * unexpected: seqs in rows that were neither acknowledged nor unknown.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"
#include "ferry/bench/http.h"

namespace ferry::bench {

enum class WriteOutcome { kAcknowledged, kNotSent, kUnknown };

// Decides what an attempt to write (writer, seq) means (see above).
WriteOutcome classifyWrite(const Attempt& attempt, const std::string& writer, std::int64_t seq);

struct WriterOptions {
  Url url;  // the service's origin; paths /api/write.php and /api/writes.php are used
  std::string writer;
  std::chrono::microseconds interval{std::chrono::milliseconds(20)};
  std::chrono::microseconds duration{std::chrono::seconds(30)};
  Timeouts timeouts;
};

struct WriterRun {
  std::string writer;
  std::vector<std::int64_t> acknowledged;
  std::vector<std::int64_t> unknown;
  std::int64_t attempts = 0;
  std::int64_t retried = 0;  // attempts that were not sent and were retried
  std::map<std::string, std::int64_t> failed_by_kind;
  bool stopped_by_signal = false;
};

// Writes until `duration` or `stop`. Fails only when it cannot start (bad name).
Result<WriterRun> runWriter(const WriterOptions& options, const std::atomic<bool>& stop);

struct ServerRow {
  std::int64_t id = 0;
  std::int64_t seq = 0;
};

// Parses {"writer":"W","rows":[{"id":1,"seq":1},...]} (numbers may come as strings).
Result<std::vector<ServerRow>> parseRows(std::string_view json, const std::string& writer);

// GET /api/writes.php?writer=W.
Result<std::vector<ServerRow>> fetchRows(const Url& url, const std::string& writer, const Timeouts& timeouts);

struct VerifyReport {
  std::int64_t acknowledged = 0;
  std::int64_t unknown = 0;
  std::int64_t unknown_committed = 0;  // unknown writes that did reach the table
  std::int64_t rows = 0;
  std::vector<std::int64_t> missing;
  std::vector<std::int64_t> duplicated;  // one entry per extra row
  std::int64_t out_of_order = 0;
  std::vector<std::int64_t> unexpected;
  [[nodiscard]] bool pass() const { return missing.empty(); }
};

VerifyReport verifyWrites(const std::vector<std::int64_t>& acknowledged,
                          const std::vector<std::int64_t>& unknown, std::vector<ServerRow> rows);

// The writer's state file, so `ferry writer --verify --writer W` can check later.
Status saveWriterState(const std::filesystem::path& path, const WriterRun& run, const Url& url);
Result<WriterRun> loadWriterState(const std::filesystem::path& path);

nlohmann::json writerReportJson(const WriterRun* run, const VerifyReport& report);
std::string writerReportText(const WriterRun* run, const VerifyReport& report);

}  // namespace ferry::bench
