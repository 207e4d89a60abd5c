#include "ferry/bench/probe.h"

#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "ferry/base/log.h"

namespace ferry::bench {

namespace {

using std::chrono::duration_cast;
using std::chrono::microseconds;

std::int64_t usBetween(Clock::time_point from, Clock::time_point to) {
  return duration_cast<microseconds>(to - from).count();
}

// How far behind schedule the probe still catches up instead of skipping slots.
constexpr auto kMaxCatchUp = std::chrono::milliseconds(20);

double ms(std::int64_t us) {
  return std::round(static_cast<double>(us)) / 1e3;
}

}  // namespace

std::string cookieHeader(const Headers& headers) {
  // name → value; a later Set-Cookie for the same name replaces an earlier one (PHP
  // sends two when login regenerates the session id), Max-Age=0 / "deleted" removes it.
  std::vector<std::pair<std::string, std::string>> jar;
  for (const auto& [name, value] : headers) {
    if (name != "set-cookie") continue;
    std::string pair = value.substr(0, value.find(';'));
    auto eq = pair.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    std::string n = pair.substr(0, eq);
    std::string v = pair.substr(eq + 1);
    std::erase_if(jar, [&](const auto& c) { return c.first == n; });
    std::string attrs = value.substr(pair.size());
    for (auto& ch : attrs) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (v == "deleted" || attrs.find("max-age=0") != std::string::npos) continue;
    jar.emplace_back(n, v);
  }
  std::string out;
  for (const auto& [n, v] : jar) out += (out.empty() ? "" : "; ") + n + "=" + v;
  return out;
}

Result<std::string> login(HttpClient& client, const SessionOptions& session, const Timeouts& timeouts) {
  Url url = session.base.withTarget("/login.php");
  auto ep = resolve(url);
  if (!ep) return ep.error();
  HttpRequest req;
  req.method = "POST";
  req.target = url.target;
  req.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  req.body = formEncode({{"user", session.user}, {"password", session.password}});
  Attempt a = fetchOnce(client, *ep, req, timeouts);
  const std::string where = "login as " + session.user + " at " + url.origin() + url.target;
  if (a.response.status == 0) {
    return makeError(where + " got no answer (" + std::string(kindName(a.kind)) + ")",
                     "check that the service is up: ferry probe --url " + url.origin() + "/health.php");
  }
  if (a.response.status != 302 && a.response.status != 303 && a.response.status != 200) {
    return makeError(where + " was refused with HTTP " + std::to_string(a.response.status),
                     "use a seeded user: userI with password passI");
  }
  std::string cookie = cookieHeader(a.response.headers);
  if (cookie.empty()) {
    return makeError(
        where + " answered HTTP " + std::to_string(a.response.status) + " without a session cookie",
        "check the password (userI / passI) and that PHP sessions work");
  }
  return cookie;
}

SessionCheck judgeWhoami(const HttpResponse& response, const std::string& user) {
  auto j = nlohmann::json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return SessionCheck::kLost;
  auto li = j.find("logged_in");
  auto u = j.find("user");
  if (li == j.end() || !li->is_boolean() || !li->get<bool>()) return SessionCheck::kLost;
  if (u == j.end() || !u->is_string() || u->get<std::string>() != user) return SessionCheck::kLost;
  return SessionCheck::kValid;
}

Result<ProbeRun> runProbe(const ProbeOptions& options, const std::atomic<bool>& stop) {
  auto log = log::get("bench");
  raiseFileLimit();
  auto client_r = HttpClient::create();
  if (!client_r) return client_r.error();
  HttpClient& client = **client_r;
  auto ep = resolve(options.url);
  if (!ep) return ep.error();

  HttpRequest probe_req;
  probe_req.target = options.url.target;
  HttpRequest session_req;
  Endpoint session_ep;
  std::string user;
  int every = 0;
  if (options.session) {
    auto cookie = login(client, *options.session, options.timeouts);
    if (!cookie) return cookie.error();
    Url who = options.session->base.withTarget("/whoami.php");
    auto sep = resolve(who);
    if (!sep) return sep.error();
    session_ep = *sep;
    session_req.target = who.target;
    session_req.headers.emplace_back("Cookie", *cookie);
    user = options.session->user;
    every = std::max(1, options.session->every);
    log->debug("logged in as {}", user);
  }

  ProbeRun run;
  const auto expected = static_cast<std::size_t>(std::min<std::int64_t>(
      options.duration.count() / std::max<std::int64_t>(1, options.interval.count()) + 16, 10'000'000));
  run.records.reserve(expected);
  std::vector<bool> is_session;
  is_session.reserve(expected);
  std::vector<bool> finished;
  finished.reserve(expected);

  const auto t0 = Clock::now();
  run.start_unix_us =
      duration_cast<microseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto end = t0 + options.duration;
  auto next_due = t0;
  std::uint64_t n = 0;

  auto absorb = [&](const std::vector<Attempt>& attempts) {
    for (const auto& a : attempts) {
      if (a.tag >= run.records.size()) continue;
      auto& r = run.records[a.tag];
      r.send_us = usBetween(t0, a.started);
      r.latency_us = usBetween(a.started, a.finished);
      r.status = a.response.status;
      r.kind = a.kind;
      // A session check counts only when the service answered normally: a 503 or a
      // timeout says nothing about the session.
      if (is_session[a.tag] && a.kind == FailureKind::kOk) r.session = judgeWhoami(a.response, user);
      finished[a.tag] = true;
    }
  };

  while (true) {
    if (stop.load()) {
      run.stopped_by_signal = true;
      break;
    }
    auto now = Clock::now();
    if (now >= end) break;
    if (now >= next_due) {
      run.max_send_lag_us = std::max(run.max_send_lag_us, usBetween(next_due, now));
      // A little late (a wake-up delayed by a busy CPU): catch up, sending the missed
      // slots back to back — records carry their real send times. Far behind (the
      // probe was descheduled): skip those slots rather than send a burst.
      const auto max_catch_up = std::max<Clock::duration>(options.interval, kMaxCatchUp);
      if (now - next_due > max_catch_up) {
        auto behind = (now - next_due) / options.interval;
        run.skipped_slots += behind;
        next_due += behind * options.interval;
      }
      const bool session_check = every > 0 && n % static_cast<std::uint64_t>(every) == 0;
      ProbeRecord r;
      r.send_us = usBetween(t0, now);
      run.records.push_back(r);
      is_session.push_back(session_check);
      finished.push_back(false);
      if (session_check) {
        client.start(session_ep, session_req, n, options.timeouts);
      } else {
        client.start(*ep, probe_req, n, options.timeouts);
      }
      ++n;
      next_due += options.interval;
      continue;
    }
    absorb(client.poll(std::min(next_due, end)));
  }
  run.window_end_us = usBetween(t0, Clock::now());
  // Let the requests in flight finish; each has its own deadline, so this is bounded.
  const auto drain_until = Clock::now() + options.timeouts.total + std::chrono::milliseconds(500);
  while (client.inFlight() > 0 && Clock::now() < drain_until) absorb(client.poll(drain_until));
  for (std::size_t i = 0; i < run.records.size(); ++i) {
    if (!finished[i]) {  // cannot happen unless the deadline machinery failed
      run.records[i].kind = FailureKind::kTimeout;
      run.records[i].latency_us = options.timeouts.total.count();
    }
  }
  client.abortAll();
  return run;
}

nlohmann::json probeReportJson(const ProbeOptions& options, const ProbeRun& run) {
  ProbeSummary s = summarize(run.records, run.window_end_us);
  nlohmann::json j;
  j["url"] = options.url.origin() + options.url.target;
  j["interval_ms"] = ms(options.interval.count());
  j["timeout_ms"] = ms(options.timeouts.total.count());
  j["connect_timeout_ms"] = ms(std::min(options.timeouts.connect, options.timeouts.total).count());
  j["duration_ms"] = ms(run.window_end_us);
  j["start_unix_ms"] = ms(run.start_unix_us);
  j["stopped_by"] = run.stopped_by_signal ? "signal" : "duration";
  j["sent"] = s.sent;
  j["ok"] = s.ok;
  j["failed"] = s.failed;
  j["failed_by_kind"] = nlohmann::json::object();
  for (const auto& [k, v] : s.failed_by_kind) j["failed_by_kind"][k] = v;
  j["client_downtime_ms"] = ms(s.downtime.length_us());
  j["downtime_from_ms"] = ms(s.downtime.from_us);
  j["downtime_to_ms"] = ms(s.downtime.to_us);
  j["recovered"] = s.recovered;
  j["p50_ms"] = ms(s.p50_us);
  j["p99_ms"] = ms(s.p99_us);
  j["max_ms"] = ms(s.max_us);
  j["skipped_slots"] = run.skipped_slots;
  j["max_send_lag_ms"] = ms(run.max_send_lag_us);
  if (options.session) {
    j["session_user"] = options.session->user;
    j["session_checks"] = s.session_checks;
    j["session_lost"] = s.session_lost;
    j["session_kept"] = s.session_checks > 0 && s.session_lost == 0;
  }
  return j;
}

std::string probeReportText(const ProbeOptions& options, const ProbeRun& run) {
  ProbeSummary s = summarize(run.records, run.window_end_us);
  std::ostringstream o;
  char buf[256];
  o << "probe " << options.url.origin() << options.url.target << ": " << s.sent << " sent, " << s.ok
    << " ok, " << s.failed << " failed";
  if (!s.failed_by_kind.empty()) {
    o << " (";
    bool first = true;
    for (const auto& [k, v] : s.failed_by_kind) {
      o << (first ? "" : ", ") << k << " " << v;
      first = false;
    }
    o << ")";
  }
  o << (run.stopped_by_signal ? ", stopped by signal" : "") << "\n";
  std::snprintf(buf, sizeof buf, "client-observed downtime %.1f ms (%.1f → %.1f ms after start)%s\n",
                ms(s.downtime.length_us()), ms(s.downtime.from_us), ms(s.downtime.to_us),
                s.recovered ? "" : ", NOT recovered at the end");
  o << buf;
  std::snprintf(buf, sizeof buf, "latency of ok answers: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
                ms(s.p50_us), ms(s.p99_us), ms(s.max_us));
  o << buf;
  if (options.session) {
    o << "session of " << options.session->user << ": " << s.session_checks << " checks answered, "
      << s.session_lost << " not valid — "
      << (s.session_checks > 0 && s.session_lost == 0 ? "kept" : "NOT kept") << "\n";
  }
  if (run.skipped_slots > 0) {
    std::snprintf(buf, sizeof buf,
                  "note: the probe itself fell behind (CPU?): %lld send slots skipped, worst lag %.1f ms\n",
                  static_cast<long long>(run.skipped_slots), ms(run.max_send_lag_us));
    o << buf;
  }
  return o.str();
}

}  // namespace ferry::bench
