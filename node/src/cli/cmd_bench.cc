// `ferry probe` (the downtime meter), `ferry writer` (the consistency writer) and
// `ferry bench` (the study's experiment, method beside method: bench/include/ferry/bench/experiment.h).
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <memory>

#include "cli.h"
#include "ferry/base/files.h"
#include "ferry/bench/experiment.h"
#include "ferry/bench/probe.h"
#include "ferry/bench/writer.h"

namespace ferry::cli {

namespace {

// Set by SIGINT/SIGTERM; the loops look at it at least once per interval.
std::atomic<bool> g_stop{false};

void onStopSignal(int /*sig*/) {
  g_stop.store(true);
}

void installStopHandlers() {
  struct sigaction sa {};
  sa.sa_handler = onStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: let epoll/sleep return early
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct DurationFlags {
  std::string interval;
  std::string timeout = "1s";
  std::string connect_timeout = "500ms";
  std::string duration = "30s";
};

// Parses a duration flag that must be positive; on error prints and returns false.
bool parsePositive(const std::string& flag, const std::string& text, std::chrono::microseconds& out,
                   int& rc) {
  auto d = bench::parseDuration(text);
  if (!d) {
    rc = fail("--" + flag + ": " + d.error().message(), kExitUsage);
    return false;
  }
  if (d->count() <= 0) {
    rc = fail("--" + flag + " must be more than 0 — e.g. --" + flag + " 10ms", kExitUsage);
    return false;
  }
  out = *d;
  return true;
}

bool parseTimeouts(const DurationFlags& f, bench::Timeouts& t, int& rc) {
  if (!parsePositive("timeout", f.timeout, t.total, rc)) return false;
  if (!parsePositive("connect-timeout", f.connect_timeout, t.connect, rc)) return false;
  if (t.connect > t.total) t.connect = t.total;
  return true;
}

bool checkOutput(const std::string& output, int& rc) {
  if (output == "text" || output == "json") return true;
  rc = fail("--output must be 'text' or 'json', not '" + output + "'", kExitUsage);
  return false;
}

struct ProbeFlags {
  std::string url;
  DurationFlags d{"10ms"};
  std::string timeline;
  std::string login;
  std::string session_url;
  int session_every = 1;
  std::string output = "text";
};

int runProbeCommand(const ProbeFlags& f) {
  int rc = kExitOk;
  if (!checkOutput(f.output, rc)) return rc;
  bench::ProbeOptions o;
  auto url = bench::parseUrl(f.url);
  if (!url) return fail("--url: " + url.error().message(), kExitUsage);
  o.url = *url;
  if (!parsePositive("interval", f.d.interval, o.interval, rc)) return rc;
  if (!parsePositive("duration", f.d.duration, o.duration, rc)) return rc;
  if (!parseTimeouts(f.d, o.timeouts, rc)) return rc;
  if (!f.login.empty()) {
    auto colon = f.login.find(':');
    if (colon == std::string::npos || colon == 0) {
      return fail("--login must be USER:PASS, e.g. --login user1:pass1", kExitUsage);
    }
    bench::SessionOptions s;
    s.user = f.login.substr(0, colon);
    s.password = f.login.substr(colon + 1);
    s.base = o.url.withTarget("/");
    if (!f.session_url.empty()) {
      auto su = bench::parseUrl(f.session_url);
      if (!su) return fail("--session-url: " + su.error().message(), kExitUsage);
      s.base = *su;
    }
    if (f.session_every < 1) return fail("--session-every must be 1 or more", kExitUsage);
    s.every = f.session_every;
    o.session = s;
  } else if (!f.session_url.empty()) {
    return fail("--session-url needs --login USER:PASS", kExitUsage);
  }

  installStopHandlers();
  auto run = bench::runProbe(o, g_stop);
  if (!run) return fail(run.error().message());
  if (!f.timeline.empty()) {
    auto st = writeFileAtomic(f.timeline, bench::timelineCsv(run->records, run->start_unix_us));
    if (!st.ok()) std::cerr << "ferry: the timeline was not written: " << st.error().message() << "\n";
  }
  if (f.output == "json") {
    std::cout << bench::probeReportJson(o, *run).dump(2) << "\n";
  } else {
    std::cout << bench::probeReportText(o, *run);
  }
  return kExitOk;
}

struct WriterFlags {
  std::string url;
  std::string writer;
  DurationFlags d{"20ms"};
  std::string state;
  bool verify_only = false;
  std::string output = "text";
};

int runWriterCommand(const WriterFlags& f) {
  int rc = kExitOk;
  if (!checkOutput(f.output, rc)) return rc;
  bench::WriterOptions o;
  auto url = bench::parseUrl(f.url);
  if (!url) return fail("--url: " + url.error().message(), kExitUsage);
  o.url = *url;
  if (!parsePositive("interval", f.d.interval, o.interval, rc)) return rc;
  if (!parsePositive("duration", f.d.duration, o.duration, rc)) return rc;
  if (!parseTimeouts(f.d, o.timeouts, rc)) return rc;
  o.writer = f.writer;
  if (o.writer.empty()) {
    if (f.verify_only)
      return fail("--verify needs --writer ID (the one the writing run printed)", kExitUsage);
    o.writer = "w" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
  }
  if (o.writer.size() > 64) return fail("--writer must be at most 64 characters", kExitUsage);
  const std::string state = f.state.empty() ? "/tmp/ferry-writer-" + o.writer + ".json" : f.state;

  std::unique_ptr<bench::WriterRun> run;
  if (f.verify_only) {
    auto loaded = bench::loadWriterState(state);
    if (!loaded) return fail(loaded.error().message());
    if (loaded->writer != o.writer) {
      return fail("the state file " + state + " is of writer " + loaded->writer + ", not " + o.writer,
                  kExitUsage);
    }
    run = std::make_unique<bench::WriterRun>(std::move(*loaded));
  } else {
    installStopHandlers();
    auto r = bench::runWriter(o, g_stop);
    if (!r) return fail(r.error().message());
    run = std::make_unique<bench::WriterRun>(std::move(*r));
    auto st = bench::saveWriterState(state, *run, o.url);
    if (!st.ok()) std::cerr << "ferry: the writer state was not saved: " << st.error().message() << "\n";
  }
  auto rows = bench::fetchRows(o.url, o.writer, o.timeouts);
  if (!rows) return fail(rows.error().message());
  bench::VerifyReport report = bench::verifyWrites(run->acknowledged, run->unknown, std::move(*rows));
  const bench::WriterRun* shown = f.verify_only ? nullptr : run.get();
  if (f.output == "json") {
    auto j = bench::writerReportJson(shown, report);
    j["writer"] = o.writer;
    j["state_file"] = state;
    std::cout << j.dump(2) << "\n";
  } else {
    std::cout << bench::writerReportText(shown, report);
    if (f.verify_only) std::cout << "writer " << o.writer << " (state " << state << ")\n";
  }
  return report.pass() ? kExitOk : kExitFailure;
}

void addDurationFlags(CLI::App* cmd, DurationFlags& d, const std::string& interval_help) {
  cmd->add_option("--interval", d.interval, interval_help)->capture_default_str();
  cmd->add_option("--timeout", d.timeout, "deadline of each request, from connect() to the whole answer")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", d.connect_timeout,
                  "deadline of each TCP handshake (at most --timeout)")
      ->capture_default_str();
  cmd->add_option("--duration", d.duration, "how long to run (SIGINT/SIGTERM stops it early)")
      ->capture_default_str();
}

struct ExperimentFlags {
  bench::BenchOptions o;
  std::string rows;
  std::string state_mb = "0";
  std::string methods = "thesis,podman,ferry";
  int run_timeout_s = 0;
  bool report_only = false;
  std::string command_line;
};

int runExperimentCommand(ExperimentFlags f) {
  if (f.o.out_dir.empty()) return fail("--out DIR is required", kExitUsage);
  auto root = findSourceDir("bench/methods/lib.sh");
  if (!root) return fail(root.error().message());
  f.o.published_csv = *root / "bench/reference/thesis-results.csv";
  if (f.report_only) {
    auto st = bench::reportFromDirectory(f.o.out_dir, f.o.published_csv, /*run_gnuplot=*/true);
    if (!st.ok()) return fail(st.error().message());
    std::cout << (f.o.out_dir / "summary.md").string() << "\n";
    return kExitOk;
  }
  auto rows = bench::parseIntList(f.rows, "rows");
  if (!rows) return fail(rows.error().message(), kExitUsage);
  auto states = bench::parseIntList(f.state_mb, "state-mb");
  if (!states) return fail(states.error().message(), kExitUsage);
  auto methods = bench::parseMethods(f.methods);
  if (!methods) return fail(methods.error().message(), kExitUsage);
  f.o.rows = *rows;
  f.o.state_mb = *states;
  f.o.methods = *methods;
  f.o.command_line = f.command_line;
  if (auto st = bench::validateOptions(f.o); !st.ok()) return fail(st.error().message(), kExitUsage);
  if (f.run_timeout_s < 0) return fail("--run-timeout must be 0 (derived) or more seconds", kExitUsage);
  if (::geteuid() != 0)
    return fail("ferry bench drives the lab: run it as root (or --report-only)", kExitUsage);

  std::error_code ec;
  bench::LabPaths paths;
  paths.ferry = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return fail("cannot find this executable (/proc/self/exe): " + ec.message());
  paths.repo = *root;
  paths.run_timeout = std::chrono::seconds(f.run_timeout_s);
  installStopHandlers();
  auto lab = bench::makeLabActions(paths, &g_stop);
  auto outcome = bench::runBench(f.o, *lab, std::cerr, g_stop);
  if (!outcome) return fail(outcome.error().message());
  std::cerr << "ferry bench: " << outcome->ok << " ok, " << outcome->failed << " failed in this invocation ("
            << outcome->skipped << " done before)" << (outcome->stopped ? "; stopped — rerun to resume" : "")
            << "\n";
  return outcome->failed == 0 && !outcome->stopped ? kExitOk : kExitFailure;
}

}  // namespace

void addBenchCommands(CLI::App& app, Cli& cli) {
  auto pf = std::make_shared<ProbeFlags>();
  auto* probe = app.add_subcommand(
      "probe",
      "measure client-observed downtime: one request per interval, each on a fresh connection with its own "
      "short deadlines");
  probe->add_option("--url", pf->url, "what to ask, e.g. http://lb/health.php")->required();
  addDurationFlags(probe, pf->d, "time between request starts (requests may overlap)");
  probe->add_option("--timeline", pf->timeline,
                    "write every request to this CSV (send_ms,send_unix_ms,latency_ms,status,kind,session)");
  probe->add_option("--login", pf->login, "USER:PASS: log in once and check the session (whoami.php)");
  probe->add_option("--session-url", pf->session_url,
                    "origin of login.php and whoami.php (default: that of --url)");
  probe
      ->add_option("--session-every", pf->session_every, "with --login: every Nth request is a session check")
      ->capture_default_str();
  probe->add_option("--output", pf->output, "text or json")->capture_default_str();
  probe->callback([pf, &cli] { cli.action = [pf] { return runProbeCommand(*pf); }; });

  auto wf = std::make_shared<WriterFlags>();
  auto* writer = app.add_subcommand("writer",
                                    "write numbered rows through the service, then check that every "
                                    "acknowledged write is there exactly once "
                                    "(exit 1 when any is missing)");
  writer->add_option("--url", wf->url, "the service's origin, e.g. http://lb")->required();
  writer->add_option("--writer", wf->writer, "writer ID (default: w<unix-ms>; printed in the report)");
  addDurationFlags(writer, wf->d, "time between writes (one write at a time)");
  writer->add_option("--state", wf->state,
                     "where the acknowledged writes are kept (default /tmp/ferry-writer-ID.json)");
  writer->add_flag("--verify", wf->verify_only,
                   "do not write: check the rows of an earlier run of --writer ID");
  writer->add_option("--output", wf->output, "text or json")->capture_default_str();
  writer->callback([wf, &cli] { cli.action = [wf] { return runWriterCommand(*wf); }; });

  auto ef = std::make_shared<ExperimentFlags>();
  auto* bench_cmd = app.add_subcommand(
      "bench",
      "the study's experiment on the lab, its method beside plain Podman and ferry: for every method × rows "
      "× "
      "state, runs alternating a→b, b→a under the probe and the writer; DIR/runs.csv, DIR/summary.md, plots");
  bench_cmd->add_option("--profile", ef->o.profile, "lab link profile: lan, cloud, wan or edge")
      ->capture_default_str();
  bench_cmd->add_flag(
      "--shared-storage", ef->o.shared_storage,
      "data directory on storage shared by a and b (the study's local-nfs; ferry's nodes run with "
      "shared_storage = on)");
  bench_cmd->add_option("--rows", ef->rows, "users in the table, comma-separated: 100,500,1000,5000,10000");
  bench_cmd->add_option("--state-mb", ef->state_mb, "MB of database state held in memory, comma-separated")
      ->capture_default_str();
  bench_cmd->add_option("--runs", ef->o.runs, "runs per cell (directions alternate)")->capture_default_str();
  bench_cmd->add_option("--methods", ef->methods, "thesis, podman, ferry (comma-separated)")
      ->capture_default_str();
  bench_cmd
      ->add_option("--out", ef->o.out_dir,
                   "directory for runs.csv, summary.md, plots/ (resumes if it has runs)")
      ->required();
  bench_cmd->add_option("--video-mb", ef->o.video_mb, "MB of video in the service (the study: 625)")
      ->capture_default_str();
  bench_cmd
      ->add_option(
          "--switch", ef->o.switch_driver,
          "how ferry's runs move the traffic: proxy, haproxy, nginx (ferry migrate --switch), or none "
          "(the study's nginx with both hosts upstream)")
      ->capture_default_str();
  bench_cmd->add_flag("--browser", ef->o.browser,
                      "also check the Chromium session before and after each move");
  bench_cmd->add_option("--run-timeout", ef->run_timeout_s,
                        "seconds one run may take (default: from the profile's link rate and the sizes)");
  bench_cmd->add_flag("--report-only", ef->report_only,
                      "only rewrite summary.md and the plots from DIR/runs.csv");
  bench_cmd->callback([ef, &cli] {
    std::string line = "ferry bench";
    for (const auto& [flag, value] :
         std::vector<std::pair<std::string, std::string>>{{"--profile", ef->o.profile},
                                                          {"--rows", ef->rows},
                                                          {"--state-mb", ef->state_mb},
                                                          {"--runs", std::to_string(ef->o.runs)},
                                                          {"--methods", ef->methods},
                                                          {"--video-mb", std::to_string(ef->o.video_mb)},
                                                          {"--switch", ef->o.switch_driver}})
      line += " " + flag + " " + value;
    if (ef->o.shared_storage) line += " --shared-storage";
    if (ef->o.browser) line += " --browser";
    ef->command_line = line;
    cli.action = [ef] {
      if (!ef->report_only && ef->rows.empty())
        return fail("--rows is required, e.g. --rows 100,10000", kExitUsage);
      return runExperimentCommand(*ef);
    };
  });
}

}  // namespace ferry::cli
