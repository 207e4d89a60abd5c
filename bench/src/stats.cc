#include "ferry/bench/stats.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>

namespace ferry::bench {

std::string_view kindName(FailureKind kind) {
  switch (kind) {
    case FailureKind::kOk:
      return "ok";
    case FailureKind::kConnectRefused:
      return "connect_refused";
    case FailureKind::kConnectTimeout:
      return "connect_timeout";
    case FailureKind::kUnreachable:
      return "unreachable";
    case FailureKind::kConnectError:
      return "connect_error";
    case FailureKind::kTimeout:
      return "timeout";
    case FailureKind::kReset:
      return "reset";
    case FailureKind::kClosed:
      return "closed";
    case FailureKind::kBadResponse:
      return "bad_response";
    case FailureKind::kHttp5xx:
      return "http_5xx";
    case FailureKind::kHttpOther:
      return "http_other";
    case FailureKind::kLocalError:
      return "local_error";
  }
  return "unknown";
}

FailureKind classifyStatus(int status) {
  if (status >= 200 && status < 400) return FailureKind::kOk;
  if (status >= 500 && status < 600) return FailureKind::kHttp5xx;
  return FailureKind::kHttpOther;
}

FailureKind classifyConnectErrno(int err) {
  switch (err) {
    case ECONNREFUSED:
      return FailureKind::kConnectRefused;
    case ETIMEDOUT:
      return FailureKind::kConnectTimeout;
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EHOSTDOWN:
    case ENETDOWN:
      return FailureKind::kUnreachable;
    case ECONNRESET:
      return FailureKind::kReset;
    case EMFILE:
    case ENFILE:
    case ENOBUFS:
    case ENOMEM:
    case EADDRNOTAVAIL:
      return FailureKind::kLocalError;
    default:
      return FailureKind::kConnectError;
  }
}

FailureKind classifyIoErrno(int err) {
  switch (err) {
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
      return FailureKind::kReset;
    case ETIMEDOUT:
      return FailureKind::kTimeout;
    case EHOSTUNREACH:
    case ENETUNREACH:
      return FailureKind::kUnreachable;
    default:
      return FailureKind::kReset;
  }
}

DowntimeSpan longestDowntime(const std::vector<ProbeRecord>& records, std::int64_t window_end_us) {
  std::vector<const ProbeRecord*> ok;
  std::int64_t window_start = window_end_us;
  for (const auto& r : records) {
    window_start = std::min(window_start, r.send_us);
    if (r.kind == FailureKind::kOk) ok.push_back(&r);
  }
  if (records.empty()) window_start = 0;
  if (ok.empty()) return DowntimeSpan{window_start, window_end_us, false};
  std::stable_sort(ok.begin(), ok.end(),
                   [](const ProbeRecord* a, const ProbeRecord* b) { return a->send_us < b->send_us; });
  // after[i]: the earliest completion among the successes sent at or after ok[i] — the
  // end of a gap that starts before ok[i] (a slow success must not hide a fast one).
  std::vector<std::int64_t> after(ok.size() + 1, INT64_MAX);
  for (std::size_t i = ok.size(); i-- > 0;)
    after[i] = std::min(after[i + 1], ok[i]->send_us + ok[i]->latency_us);
  // Leading edge: from the first send to the first completed success.
  DowntimeSpan best{window_start, after[0], true};
  for (std::size_t i = 0; i + 1 < ok.size(); ++i) {
    DowntimeSpan span{ok[i]->send_us, after[i + 1], true};
    if (span.length_us() > best.length_us()) best = span;
  }
  // Trailing edge: from the last success's send to the end of the window; it is an
  // outage that never ended when a request sent after that last success failed.
  const std::int64_t last_ok_send = ok.back()->send_us;
  const bool failed_after = std::any_of(records.begin(), records.end(), [&](const ProbeRecord& r) {
    return r.kind != FailureKind::kOk && r.send_us > last_ok_send;
  });
  DowntimeSpan tail{last_ok_send, std::max(window_end_us, last_ok_send), !failed_after};
  if (tail.length_us() > best.length_us()) best = tail;
  return best;
}

std::int64_t percentile(std::vector<std::int64_t> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double n = static_cast<double>(values.size());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * n));
  rank = std::clamp<std::size_t>(rank, 1, values.size());
  return values[rank - 1];
}

ProbeSummary summarize(const std::vector<ProbeRecord>& records, std::int64_t window_end_us) {
  ProbeSummary s;
  std::vector<std::int64_t> latencies;
  latencies.reserve(records.size());
  for (const auto& r : records) {
    ++s.sent;
    if (r.kind == FailureKind::kOk) {
      ++s.ok;
      latencies.push_back(r.latency_us);
    } else {
      ++s.failed;
      ++s.failed_by_kind[std::string(kindName(r.kind))];
    }
    if (r.session != SessionCheck::kNone) {
      ++s.session_checks;
      if (r.session == SessionCheck::kLost) ++s.session_lost;
    }
  }
  s.downtime = longestDowntime(records, window_end_us);
  std::int64_t last_ok = -1;
  std::int64_t last_failed = -1;
  for (const auto& r : records) {
    if (r.kind == FailureKind::kOk) {
      last_ok = std::max(last_ok, r.send_us);
    } else {
      last_failed = std::max(last_failed, r.send_us);
    }
  }
  s.recovered = last_failed < 0 || (last_ok >= 0 && last_ok > last_failed);
  s.p50_us = percentile(latencies, 50);
  s.p99_us = percentile(latencies, 99);
  s.max_us = latencies.empty() ? 0 : *std::max_element(latencies.begin(), latencies.end());
  return s;
}

namespace {

std::string_view sessionName(SessionCheck s) {
  switch (s) {
    case SessionCheck::kNone:
      return "";
    case SessionCheck::kValid:
      return "valid";
    case SessionCheck::kLost:
      return "lost";
  }
  return "";
}

}  // namespace

std::string timelineCsv(const std::vector<ProbeRecord>& records, std::int64_t start_unix_us) {
  std::vector<const ProbeRecord*> sorted;
  sorted.reserve(records.size());
  for (const auto& r : records) sorted.push_back(&r);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const ProbeRecord* a, const ProbeRecord* b) { return a->send_us < b->send_us; });
  std::string out = "send_ms,send_unix_ms,latency_ms,status,kind,session\n";
  out.reserve(out.size() + sorted.size() * 64);
  char line[160];
  for (const auto* r : sorted) {
    int n = std::snprintf(
        line, sizeof line, "%.3f,%.3f,%.3f,%d,%s,%s\n", static_cast<double>(r->send_us) / 1e3,
        static_cast<double>(start_unix_us + r->send_us) / 1e3, static_cast<double>(r->latency_us) / 1e3,
        r->status, kindName(r->kind).data(), sessionName(r->session).data());
    if (n > 0) out.append(line, std::min(static_cast<std::size_t>(n), sizeof line - 1));
  }
  return out;
}

}  // namespace ferry::bench
