// `ferry probe`: the downtime meter. Sends one request every `interval` by the clock
// (requests overlap when answers are slow), each on a fresh connection with its own
// deadlines (see http.h), records every request and summarizes them (see stats.h for
// the exact definitions of downtime and percentiles).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"
#include "ferry/bench/http.h"
#include "ferry/bench/stats.h"

namespace ferry::bench {

struct SessionOptions {
  std::string user;
  std::string password;
  Url base;       // POST <base>/login.php once, then GET <base>/whoami.php with the cookie
  int every = 1;  // every Nth request is a session check instead of a request to the URL
};

struct ProbeOptions {
  Url url;
  std::chrono::microseconds interval{std::chrono::milliseconds(10)};
  std::chrono::microseconds duration{std::chrono::seconds(30)};
  Timeouts timeouts;
  std::optional<SessionOptions> session;
};

struct ProbeRun {
  std::vector<ProbeRecord> records;  // in send order
  std::int64_t start_unix_us = 0;    // wall-clock time of the probe's start (time 0)
  std::int64_t window_end_us = 0;    // when sending stopped, µs after the start
  std::int64_t skipped_slots = 0;    // send slots skipped: the probe fell > max(interval, 20 ms) behind
  std::int64_t max_send_lag_us = 0;  // worst lateness of a send against its slot: when this
                                     // nears the downtime, the probe itself was stalled (CPU)
  bool stopped_by_signal = false;
};

// The Cookie header to send back for the Set-Cookie headers of an answer (later ones of
// the same name win; deleted cookies are dropped).
std::string cookieHeader(const Headers& headers);

// Login for session mode: POSTs the form and returns the Cookie header value to send.
Result<std::string> login(HttpClient& client, const SessionOptions& session, const Timeouts& timeouts);

// "valid" when a whoami.php answer says logged_in for `user`, else "lost".
SessionCheck judgeWhoami(const HttpResponse& response, const std::string& user);

// Runs until `duration` passed or `stop` becomes true, then waits (bounded by the
// request timeout) for the requests still in flight. Fails only when it cannot start
// (name not resolvable, login refused).
Result<ProbeRun> runProbe(const ProbeOptions& options, const std::atomic<bool>& stop);

// The report: `sent`, `ok`, `failed`, `failed_by_kind`, `client_downtime_ms`,
// `downtime_from_ms`, `downtime_to_ms`, `recovered`, `p50_ms`, `p99_ms`, `max_ms`, ...
// and in session mode `session_checks`, `session_lost`, `session_kept`.
nlohmann::json probeReportJson(const ProbeOptions& options, const ProbeRun& run);
std::string probeReportText(const ProbeOptions& options, const ProbeRun& run);

}  // namespace ferry::bench
