// What the probe measured, as pure functions over a list of requests, so the figures can
// be checked without a network.
//
// Definitions (all times relative to the probe's start, on a monotonic clock):
//
// * A request is OK when a complete HTTP answer with status 2xx or 3xx arrived before its
//   deadline; everything else is a failure of one FailureKind.
// * Latency is completion time − send time. The send time is taken just before connect():
//   every request uses a fresh TCP connection, so latency includes the handshake.
//   p50/p99/max are over OK requests only (a failure's "latency" is its timeout), by the
//   nearest-rank method: pX = the value at rank ceil(X/100 · n) of the sorted latencies.
// * Client-observed downtime is the longest span with no confirmed successful answer:
//   for each OK request j, the span runs from send(j) to the earliest completion of any
//   OK request sent after j, i.e. from the send time of the last success before a gap to
//   the completion of the first success after it (one slow success does not hide a
//   faster later one). The window's edges count too: from the first send to the first
//   completion of a success, and from the send of the last success to the moment
//   sending stopped. With no success at all the downtime is the
//   whole window. This is an upper bound of the true outage that overshoots by at most
//   one interval plus one latency; in a healthy run it is therefore about interval +
//   latency, the meter's resolution, never 0. Requests that were answered late (service
//   frozen, answers queued) count as the outage they were: the span ends at their
//   completion.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ferry::bench {

enum class FailureKind {
  kOk,
  kConnectRefused,  // RST to the SYN: nothing listens (container stopped, port closed)
  kConnectTimeout,  // the TCP handshake did not finish before the connect deadline
  kUnreachable,     // EHOSTUNREACH / ENETUNREACH (no route, ARP failed)
  kConnectError,    // another connect() error
  kTimeout,         // connected, but no complete answer before the request deadline
  kReset,           // the connection was reset after it was established
  kClosed,          // the peer closed the connection before sending any answer
  kBadResponse,     // an answer arrived but was cut short or is not HTTP
  kHttp5xx,         // answered with a 5xx status
  kHttpOther,       // answered with a 1xx or 4xx status
  kLocalError,      // the probe itself could not start the request (EMFILE, ...)
};

// Stable lower-case names used in JSON and CSV ("connect_refused", "http_5xx", ...).
std::string_view kindName(FailureKind kind);

// Maps an HTTP status of a complete answer to kOk, kHttp5xx or kHttpOther.
FailureKind classifyStatus(int status);

// Maps a connect() errno (from the non-blocking connect's SO_ERROR) to a kind.
FailureKind classifyConnectErrno(int err);

// Maps a send()/recv() errno after the connection was established to a kind.
FailureKind classifyIoErrno(int err);

enum class SessionCheck { kNone, kValid, kLost };

struct ProbeRecord {
  std::int64_t send_us = 0;     // send time, µs since the probe's start
  std::int64_t latency_us = 0;  // completion − send, µs (for failures: when it was given up)
  int status = 0;               // HTTP status, 0 when no answer
  FailureKind kind = FailureKind::kOk;
  SessionCheck session = SessionCheck::kNone;  // only for session checks that got an answer
};

struct DowntimeSpan {
  std::int64_t from_us = 0;  // send time of the last success before the gap (or window start)
  std::int64_t to_us = 0;    // completion of the first success after it (or window end)
  bool recovered = true;     // false: the span is the window's tail and requests in it failed
  [[nodiscard]] std::int64_t length_us() const { return to_us - from_us; }
};

// The longest span as defined above. `window_end_us` is when the probe stopped sending.
DowntimeSpan longestDowntime(const std::vector<ProbeRecord>& records, std::int64_t window_end_us);

// Nearest-rank percentile (0 < p ≤ 100) of values; 0 for an empty list. Sorts a copy.
std::int64_t percentile(std::vector<std::int64_t> values, double p);

struct ProbeSummary {
  std::int64_t sent = 0;
  std::int64_t ok = 0;
  std::int64_t failed = 0;
  std::map<std::string, std::int64_t> failed_by_kind;  // kind name → count (only kinds seen)
  DowntimeSpan downtime;
  bool recovered = true;  // false: no success after the last failure (still down at the end)
  std::int64_t p50_us = 0;
  std::int64_t p99_us = 0;
  std::int64_t max_us = 0;
  std::int64_t session_checks = 0;  // session checks that got an HTTP answer
  std::int64_t session_lost = 0;    // ... of which said the session was not valid
};

ProbeSummary summarize(const std::vector<ProbeRecord>& records, std::int64_t window_end_us);

// The timeline as CSV: a header, then one line per request in send order:
// send_ms,send_unix_ms,latency_ms,status,kind,session
std::string timelineCsv(const std::vector<ProbeRecord>& records, std::int64_t start_unix_us);

}  // namespace ferry::bench
