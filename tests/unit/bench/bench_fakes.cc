#include "bench_fakes.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>

#include <gtest/gtest.h>

namespace ferry::bench::testing {

RunRow benchRow(const std::string& method, int rows, int run, const std::string& direction) {
  RunRow r;
  r.set("seq", std::to_string(run));
  r.set("status", std::string(kStatusStarted));
  r.set("attempt", "1");
  r.set("profile", "cloud");
  r.set("shared_storage", "false");
  r.set("method", method);
  r.set("rows", std::to_string(rows));
  r.set("state_mb", "0");
  r.set("video_mb", "20");
  r.set("run", std::to_string(run));
  r.set("direction", direction);
  return r;
}

nlohmann::json fakeLine(const FakeRun& r) {
  const double t0 = 0;
  nlohmann::json phases = nlohmann::json::array();
  phases.push_back({{"name", "checkpoint"},
                    {"start_ms", t0},
                    {"end_ms", r.downtime_ms * 0.4},
                    {"ms", r.downtime_ms * 0.4},
                    {"bytes", 2000000}});
  phases.push_back({{"name", "copy"},
                    {"start_ms", r.downtime_ms * 0.4},
                    {"end_ms", r.downtime_ms * 0.6},
                    {"ms", r.downtime_ms * 0.2},
                    {"bytes", 3000000}});
  phases.push_back({{"name", "restore"},
                    {"start_ms", r.downtime_ms * 0.6},
                    {"end_ms", r.downtime_ms},
                    {"ms", r.downtime_ms * 0.4},
                    {"bytes", 0}});
  return {{"method", r.method},
          {"from", r.from},
          {"to", r.to},
          {"rows", r.rows},
          {"state_mb", r.state_mb},
          {"video_mb", r.video_mb},
          {"result", "committed"},
          {"error", ""},
          {"mode", "stop-and-copy"},
          {"switch_driver", r.method == "podman"  ? "nginx-reload"
                            : r.method == "ferry" ? "proxy"
                                                  : "nginx-upstream"},
          {"bytes_moved", 5000000},
          {"checkpoint_bytes", 2000000},
          {"checkpoint_wire_bytes", 1900000},
          {"last_delta_bytes", 100000},
          {"data_sync_bytes", 3000000},
          {"downtime_study_ms", r.downtime_ms},
          {"migration_study_ms", r.migration_ms},
          {"sender_total_ms", r.migration_ms * 0.6},
          {"receiver_total_ms", r.migration_ms * 0.4},
          {"downtime_ferry_ms", r.downtime_ms},
          {"migration_ferry_ms", r.migration_ms * 0.8},
          {"down_unix_ms", r.down_unix_ms},
          {"up_unix_ms", r.down_unix_ms + r.downtime_ms},
          {"client_downtime_ms", r.client_downtime_ms},
          {"failed_requests", r.failed_requests},
          {"max_request_ms", 1500.0},
          {"probe_sent", 4000},
          {"probe_recovered", true},
          {"probe_max_send_lag_ms", 3.5},
          {"writes_acknowledged", 500},
          {"lost_writes", r.lost_writes},
          {"writes_unknown", 1},
          {"writes_duplicated", 0},
          {"session_kept", r.session_kept},
          {"browser_session_kept", nullptr},
          {"phases", phases},
          {"timeline", r.run_dir + "/timeline.csv"},
          {"run_dir", r.run_dir}};
}

std::string fakeTimeline(double down_unix_ms, double frozen_ms) {
  std::string out = "send_ms,send_unix_ms,latency_ms,status,kind,session\n";
  const double start = down_unix_ms - 1000;
  char line[160];
  for (double t = 0; t < 1000 + frozen_ms + 1000; t += 10) {
    const double send = start + t;
    const bool frozen = send >= down_unix_ms && send < down_unix_ms + frozen_ms;
    std::snprintf(line, sizeof line, "%.3f,%.3f,%.3f,%d,%s,\n", t, send, frozen ? 500.0 : 1.5,
                  frozen ? 0 : 200, frozen ? "connect_timeout" : "ok");
    out += line;
  }
  return out;
}

Status FakeLab::up(const BenchOptions& /*options*/) {
  calls.push_back({"up", {}});
  return okStatus();
}

Status FakeLab::prepare(const BenchOptions& /*options*/, const RunSpec& run) {
  calls.push_back({"prepare", run});
  now_ms += 5000;
  if (fail_prepare) return makeError("deploy failed on " + run.from, "look at bench.log");
  return okStatus();
}

Result<std::string> FakeLab::migrate(const BenchOptions& options, const RunSpec& run,
                                     const std::filesystem::path& run_dir) {
  calls.push_back({"migrate", run});
  const std::string what = migrations_ < script.size() ? script[migrations_] : "";
  ++migrations_;
  now_ms += 20000;
  if (what.rfind("error:", 0) == 0) return makeError(what.substr(6));
  if (what.rfind("line:", 0) == 0) return what.substr(5);
  if (what == "stop") {
    if (stop_flag != nullptr) *stop_flag = true;
    return std::string(R"({"result":"failed","error":"stopped by a signal"})");
  }
  FakeRun r;
  r.method = run.method;
  r.from = run.from;
  r.to = run.to;
  r.rows = run.rows;
  r.state_mb = run.state_mb;
  r.video_mb = options.video_mb;
  r.run_dir = run_dir.string();
  // ferry is ten times faster than the others in these fakes; more rows, a bit slower.
  double scale = (run.method == "ferry"    ? 0.1
                  : run.method == "podman" ? 0.5
                                           : 1.0) *
                 (1 + run.rows / 10000.0);
  r.downtime_ms = 10000 * scale + run.run * 100;
  r.client_downtime_ms = r.downtime_ms + 500;
  r.migration_ms = 3 * r.downtime_ms;
  r.down_unix_ms = static_cast<double>(now_ms);
  std::ofstream(run_dir / "timeline.csv") << fakeTimeline(r.down_unix_ms, r.downtime_ms);
  return fakeLine(r).dump();
}

std::filesystem::path freshDir(const std::string& name) {
  auto dir = std::filesystem::path(::testing::TempDir()) /
             ("ferry-bench-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace ferry::bench::testing
