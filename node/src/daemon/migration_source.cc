// The source side of `ferry migrate` (see migration.h for the rules, and
// protocol/schema/migration.capnp for the exchange).
#include <atomic>
#include <ctime>
#include <future>
#include <map>
#include <thread>

#include "archive_stream.h"
#include "ferry/base/log.h"
#include "migration.h"

namespace ferry::node {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;
using W = wire::Message::Body::Which;

std::string newMigrationId(const std::string& node) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return std::string("m-") + buf + "-" + node;
}

// Phase timings relative to the command's start, for the report and the live view.
class Phases {
 public:
  Phases(Clock::time_point t0, MigrationProgress& progress) : t0_(t0), progress_(progress) {}
  void begin(const std::string& name, json extra = json::object()) {
    open_[name] = Clock::now();
    extra["event"] = "phase";
    extra["phase"] = name;
    extra["state"] = "start";
    extra["t_ms"] = msBetween(t0_, Clock::now());
    progress_.emit(std::move(extra));
  }
  void end(const std::string& name, std::uint64_t bytes = 0, json extra = json::object()) {
    auto it = open_.find(name);
    auto start = it == open_.end() ? Clock::now() : it->second;
    auto now = Clock::now();
    json p = {{"name", name},
              {"start_ms", msBetween(t0_, start)},
              {"end_ms", msBetween(t0_, now)},
              {"ms", msBetween(start, now)},
              {"bytes", bytes}};
    list_.push_back(p);
    if (it != open_.end()) open_.erase(it);
    extra.update(p);
    extra["event"] = "phase";
    extra["phase"] = name;
    extra["state"] = "done";
    progress_.emit(std::move(extra));
  }
  [[nodiscard]] const json& list() const { return list_; }

 private:
  Clock::time_point t0_;
  MigrationProgress& progress_;
  std::map<std::string, Clock::time_point> open_;
  json list_ = json::array();
};

// A journal that cannot be written stops the migration before the next step.
#define FERRY_TRY_REPORT(expr)                           \
  do {                                                   \
    auto ferry_s_ = (expr);                              \
    if (!ferry_s_.ok()) return refuse(ferry_s_.error()); \
  } while (false)

class Source {
 public:
  Source(const MigrateRequest& request, MigrationDeps deps, MigrationInbox& inbox,
         MigrationProgress& progress)
      : req_(request),
        d_(std::move(deps)),
        env_(*d_.env),
        rt_(*d_.runtime),
        inbox_(inbox),
        progress_(progress),
        t0_(Clock::now()),
        phases_(t0_, progress),
        log_(log::get("node")) {}

  // A podman checkpoint still running (a path that returned without awaitDumps()) is
  // waited for: it is bounded by the checkpoint timeout.
  ~Source() {
    for (auto& t : dump_threads_)
      if (t.joinable()) t.join();
  }
  Source(const Source&) = delete;
  Source& operator=(const Source&) = delete;

  json run() {
    rec_.id = req_.id.empty() ? newMigrationId(env_.nodeName()) : req_.id;
    rec_.side = "source";
    rec_.peer = env_.peerName();
    rec_.containers = req_.containers;
    report_ = {{"id", rec_.id},
               {"containers", req_.containers},
               {"from", env_.nodeName()},
               {"to", req_.to},
               {"mode", req_.mode.empty() ? "auto" : req_.mode}};
    progress_.emit({{"event", "start"}, {"id", rec_.id}, {"containers", req_.containers}, {"to", req_.to}});

    // ---- checks that need nobody else ----
    auto mode = chooseMode(req_.mode);
    if (!mode) return refuse(mode.error());
    rec_.mode = *mode;
    report_["mode"] = *mode;
    if (req_.containers.empty())
      return refuse(makeError("no container named", "ferry migrate CONTAINER... --to HOST"));
    if (req_.to != env_.peerName()) {
      return refuse(makeError("--to " + req_.to + ": this node's peer is '" + env_.peerName() + "'",
                              "migrate to the paired peer (see 'ferry status')"));
    }
    if (!env_.isActive()) {
      return refuse(makeError("this node is the standby: the service runs on " + env_.peerName(),
                              "run 'ferry migrate' on the active node"));
    }
    if (!env_.peerConnected()) {
      return refuse(makeError("the peer " + env_.peerName() + " is not connected",
                              "check 'ferry status' on both nodes (link state, auth refusals)"));
    }
    rec_.epoch = env_.epoch() + 1;
    if (auto s = setUpSwitch(req_.switch_driver.empty() ? d_.settings.switch_driver : req_.switch_driver); !s)
      return refuse(s.error());
    FERRY_TRY_REPORT(journal(MigrationPhase::kPreparing));

    // ---- preflight ----
    phases_.begin("preflight");
    if (auto s = inspectContainers(); !s) return refuse(s.error());
    if (d_.settings.shared_storage) {
      auto token = writeSharedMarker(d_.settings.data_dir, rec_.id);
      if (!token) return refuse(token.error());
      shared_token_ = *token;
      marker_.emplace(d_.settings.data_dir, rec_.id);
    }
    auto reply = prepare();
    if (!reply) return refuse(reply.error());
    phases_.end("preflight");
    report_["shared_storage"] = d_.settings.shared_storage;

    if (!missing_images_.empty()) {
      phases_.begin("images");
      std::uint64_t bytes = 0;
      for (const auto& image : missing_images_) {
        auto sent = sendImage(image);
        if (!sent) return refuse(sent.error());
        bytes += *sent;
      }
      auto again = prepare();
      if (!again) return refuse(again.error());
      if (!missing_images_.empty())
        return refuse(
            makeError("the target still lacks image " + missing_images_.front() + " after it was sent",
                      "check 'podman images' on " + env_.peerName()));
      phases_.end("images", bytes);
      report_["image_bytes"] = bytes;
    }
    // The target has looked for the last time (a second Prepare follows sent images).
    marker_.reset();

    phases_.begin("presync");
    if (d_.settings.shared_storage) {
      // Nothing to mirror: the target reads the same storage.
    } else if (auto s = env_.flushMirror(d_.settings.presync_timeout); !s) {
      return refuse(makeError("the standby did not catch up before the freeze: " + s.error().message(),
                              "check 'ferry status' (replica lag) and retry"));
    }
    phases_.end("presync");

    // ---- traffic: held (or kept away from here) before anything stops ----
    if (switch_) {
      switch_state_ = "preparing";
      FERRY_TRY_REPORT(journal(MigrationPhase::kPreparing));
      phases_.begin("drain");
      auto r = switch_->prepare(plan_);
      if (!r) {
        auto e = makeError("the " + switch_->name() + " switch-over could not take the traffic off " +
                               env_.nodeName() + ": " + r.error().what,
                           r.error().hint.empty() ? "check the switch agent ('ferry proxy switch') and retry"
                                                  : r.error().hint);
        return refuse(e);
      }
      noteSwitch("prepare", *r);
      phases_.end("drain", 0,
                  {{"held", r->held}, {"drained", r->drained}, {"in_flight_left", r->in_flight_left}});
    }

    // ---- the freeze: from here on any failure rolls back ----
    FERRY_TRY_REPORT(journal(MigrationPhase::kFrozen));
    phases_.begin("freeze");
    t_freeze_ = Clock::now();
    for (auto& c : infos_) {
      if (auto s = rt_.freeze(c); !s) {
        return rollbackLocal("freezing " + c.name + ": " + s.error().message());
      }
      frozen_.push_back(c.name);
    }
    phases_.end("freeze");
    if (fail("source.after_freeze")) return rollbackLocal("failpoint source.after_freeze");

    // ---- dump, stream, final delta ----
    auto sessions = env_.peerSessions();
    if (auto s = dumpAndStream(); !s) return rollbackLocal(s.error().message());
    // Before Commit nothing can run there: if the target did not take everything (it
    // died, or restarted and lost part of the stream), give up now.
    if (auto s = env_.flushLink(d_.settings.prepare_timeout); !s || env_.peerSessions() != sessions) {
      return rollbackLocal("the link to " + env_.peerName() + " broke during the transfer" +
                           (s ? std::string() : ": " + s.error().message()));
    }
    if (fail("source.before_commit")) return rollbackLocal("failpoint source.before_commit");

    // ---- commit ----
    FERRY_TRY_REPORT(journal(MigrationPhase::kCommitting));
    return commitAndFinish();
  }

  // Recovery entry points (a restarted node): continue from the journaled phase.
  json recover(const MigrationRecord& record) {
    rec_ = record;
    report_ = record.report.is_object() ? record.report : json::object();
    report_["id"] = record.id;
    report_["containers"] = record.containers;
    report_["recovered"] = true;
    for (const auto& name : record.containers) {
      auto info = rt_.inspect(name);
      if (info) infos_.push_back(*info);
    }
    restoreSwitch(record);
    log_->warn("migration {}: recovering from phase {}", record.id, phaseName(record.phase));
    switch (record.phase) {
      case MigrationPhase::kPreparing:
        // Nothing was frozen yet.
        sendAbort("recovery", "the source node restarted during preflight");
        rollbackSwitch();
        (void)journal(MigrationPhase::kRefused, "the source node restarted during preflight");
        return finish("refused", "the source node restarted during preflight");
      case MigrationPhase::kFrozen:
        sendAbort("recovery", "the source node restarted before Commit");
        for (const auto& c : infos_) frozen_.push_back(c.name);
        return rollbackLocal("the source node restarted before Commit (phase " + phaseName(record.phase) +
                             ")");
      case MigrationPhase::kCommitting:
      case MigrationPhase::kInDoubt:
        return learnOutcome();
      case MigrationPhase::kDecidedCommit:
        return decideCommit();
      case MigrationPhase::kDecidedRollback:
        return decideRollback(record.reason);
      default:
        break;
    }
    return finish("committed", "");
  }

  json resolve(const MigrationRecord& record, const std::string& outcome) {
    rec_ = record;
    report_ = record.report.is_object() ? record.report : json::object();
    restoreSwitch(record);
    for (const auto& name : record.containers) {
      auto info = rt_.inspect(name);
      if (info) infos_.push_back(*info);
    }
    if (outcome == "committed") {
      if (auto s = journal(MigrationPhase::kDecidedCommit); !s)
        return finish("in_doubt", s.error().message());
      return finishCommit();
    }
    return restoreHere("resolved by the operator: rolled back");
  }

 private:
  // A restarted node: the switch-over the journal says was started, to finish or undo.
  void restoreSwitch(const MigrationRecord& record) {
    if (!record.report.is_object() || !record.report.contains("switch")) return;
    const auto& sw = record.report["switch"];
    std::string state = sw.value("state", "");
    if (state.empty()) return;
    if (auto s = setUpSwitch(sw.value("driver", "none")); !s) {
      log_->error("migration {}: cannot rebuild the switch-over driver: {}", record.id, s.error().message());
      switch_problem_ = "; the switch-over driver could not be rebuilt (" + s.error().message() +
                        "): check where traffic goes";
      return;
    }
    switch_state_ = state;
  }

  Status journal(MigrationPhase phase, const std::string& reason = {}) {
    rec_.phase = phase;
    if (!reason.empty()) rec_.reason = reason;
    if (switch_) report_["switch"]["state"] = switch_state_;
    report_["phases"] = phases_.list();
    rec_.report = report_;
    return putTimed(*d_.journal, rec_, report_);
  }

  bool fail(const std::string& point) { return d_.failpoints != nullptr && d_.failpoints->hit(point); }

  Status inspectContainers() {
    auto infos =
        forEachConcurrently(req_.containers, [&](const std::string& name) { return rt_.inspect(name); });
    for (std::size_t i = 0; i < infos.size(); ++i) {
      const auto& name = req_.containers[i];
      auto& info = infos[i];
      if (!info) return info.error();
      if (!info->running) {
        return makeError("container " + name + " is not running (status " + info->status + ")",
                         "start it, or migrate only running containers");
      }
      for (const auto& m : info->mounts) {
        if (m.type == "volume") {
          return makeError("container " + name + " uses the named volume at " + m.destination +
                               ": ferry mirrors only the data directory " + d_.settings.data_dir.string(),
                           "keep the service's data in a bind mount under the data directory");
        }
        if (m.type != "bind") continue;
        auto rel = fs::path(m.source).lexically_relative(d_.settings.data_dir);
        if (rel.empty() || *rel.begin() == "..") {
          return makeError("container " + name + " bind-mounts " + m.source +
                               ", which is outside the mirrored data directory " +
                               d_.settings.data_dir.string() + ": the target would not have it",
                           "move that data under the data directory (or mirror its parent)");
        }
      }
      if (auto mem = rt_.memoryBytes(*info); mem) expected_bytes_ += *mem;
      infos_.push_back(*info);
    }
    report_["expected_checkpoint_bytes"] = expected_bytes_;
    return okStatus();
  }

  // Sends Prepare and waits for the target's answer; fills missing_images_.
  Result<bool> prepare() {
    auto sent = env_.send(
        [&](wire::Message::Builder m) {
          auto p = m.getBody().initPrepare();
          p.setMigrationId(rec_.id);
          p.setEpoch(rec_.epoch);
          p.setMode(wire::MigrationMode::STOP_AND_COPY);
          auto list = p.initContainers(static_cast<unsigned>(infos_.size()));
          for (unsigned i = 0; i < infos_.size(); ++i) fillRef(infos_[i], list[i]);
          p.setSourceNodeId(env_.nodeName());
          p.setExpectedCheckpointBytes(expected_bytes_);
          p.setDeadlineMs(static_cast<std::uint64_t>(d_.settings.commit_timeout.count()));
          if (d_.settings.shared_storage) {
            p.setSharedStorage(true);
            p.setSharedToken(shared_token_);
          }
        },
        d_.settings.prepare_timeout);
    if (!sent)
      return makeError("sending the migration request to " + env_.peerName() + ": " + sent.error().message());
    auto deadline = Clock::now() + d_.settings.prepare_timeout;
    while (true) {
      auto m = waitFor(deadline);
      if (!m) {
        return makeError(env_.peerName() + " did not answer the migration request within " +
                             std::to_string(d_.settings.prepare_timeout.count()) + " ms",
                         "check 'ferry status' on both nodes");
      }
      auto body = m->message().getBody();
      if (body.which() != W::PREPARE_REPLY) continue;
      auto r = body.getPrepareReply();
      if (std::string(r.getMigrationId().cStr()) != rec_.id) continue;
      missing_images_.clear();
      for (auto i : r.getMissingImages()) missing_images_.emplace_back(i.cStr());
      if (!r.getOk()) {
        std::string what;
        std::string hint;
        for (auto p : r.getProblems()) {
          what += (what.empty() ? "" : "; ") + std::string(p.getWhat().cStr());
          if (hint.empty()) hint = p.getHint().cStr();
        }
        if (r.getHighestEpoch() >= rec_.epoch) {
          // A newer migration happened there: we are stale (fenced).
          return makeError(
              env_.peerName() + " has seen epoch " + std::to_string(r.getHighestEpoch()) +
                  ", newer than this migration's " + std::to_string(rec_.epoch) + ": " + what,
              "this node's view is stale; check 'ferry status' and 'ferry migrations list' on both");
        }
        return makeError(env_.peerName() + " refused the migration: " + what, hint);
      }
      report_["target_free_bytes"] = r.getFreeBytes();
      target_prepared_ = true;
      return true;
    }
  }

  void fillRef(const checkpoint::ContainerInfo& c, wire::ContainerRef::Builder b) {
    b.setName(c.name);
    b.setId(c.id);
    b.setImageId(c.image_id);
    if (!c.image_name.empty()) b.setImageName(c.image_name);
    std::vector<std::uint16_t> ports;
    for (const auto& p : c.ports)
      if (p.protocol == "tcp" && p.host_port != 0) ports.push_back(p.host_port);
    auto list = b.initHostPorts(static_cast<unsigned>(ports.size()));
    for (unsigned i = 0; i < ports.size(); ++i) list.set(i, ports[i]);
    if (auto it = archive_bytes_.find(c.name); it != archive_bytes_.end()) b.setArchiveBytes(it->second);
  }

  // The next message for this migration (others are answered or dropped), or nullopt.
  std::optional<protocol::Received> waitFor(Clock::time_point deadline) {
    while (true) {
      auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
      if (left.count() <= 0) return std::nullopt;
      auto m = inbox_.pop(left);
      if (!m) return std::nullopt;
      auto body = m->message().getBody();
      if (body.which() == W::OUTCOME_QUERY) {
        answerOutcome(body.getOutcomeQuery().getMigrationId().cStr());
        continue;
      }
      return m;
    }
  }

  void answerOutcome(const std::string& id) {
    auto state = outcomeFor(*d_.journal, id);
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto o = m.getBody().initOutcome();
          o.setMigrationId(id);
          o.setEpoch(rec_.epoch == 0 ? 1 : rec_.epoch);
          o.setState(state);
        },
        Millis(5000));
  }

  Result<std::uint64_t> sendImage(const std::string& image_id) {
    std::string ref = image_id;
    for (const auto& c : infos_) {
      if (c.image_id == image_id && !c.image_name.empty()) ref = c.image_name;
    }
    if (auto s = preparePrivateDir(d_.settings.staging_dir); !s) return s.error();
    auto file = d_.settings.staging_dir / (rec_.id + "-image-" + image_id.substr(0, 12) + ".tar");
    std::error_code ec;
    fs::remove(file, ec);
    progress_.emit({{"event", "note"}, {"text", "saving image " + ref + " (the target lacks it)"}});
    if (auto s = rt_.saveImage(ref, file); !s) return s.error();
    ChunkTarget t{
        rec_.id, rec_.epoch, "image", "image-" + image_id.substr(0, 12) + ".tar", wire::ChunkKind::IMAGE,
        image_id};
    auto stats = streamFile(
        env_, file, t, [] { return true; }, d_.settings, Clock::now() + std::chrono::minutes(30),
        &sent_bytes_);
    fs::remove(file, ec);
    if (!stats) return stats.error();
    wire_bytes_ += stats->wire_bytes;
    return stats->raw_bytes;
  }

  // Every container dumped (in parallel, one podman per container) and streamed as it
  // is written; the final mirroring round runs meanwhile. Returns when every archive is
  // on its way and the final round is done: an archive whose tar has closed is complete
  // (Podman exports after CRIU's dump succeeded), so Podman's own cleanup afterwards
  // (storage, network, state) is waited for later, by awaitDumps(), off the downtime.
  Status dumpAndStream() {
    if (auto s = preparePrivateDir(d_.settings.staging_dir); !s) return s;
    phases_.begin("checkpoint");
    phases_.begin("transfer", {{"expected_bytes", expected_bytes_}});
    for (const auto& c : infos_) {
      auto j = std::make_unique<DumpJob>();
      j->info = c;
      j->archive = d_.settings.staging_dir / (rec_.id + "-" + c.name + ".tar");
      std::error_code ec;
      fs::remove(j->archive, ec);
      archives_.push_back(j->archive);
      dump_jobs_.push_back(std::move(j));
    }
    auto deadline = Clock::now() + d_.settings.checkpoint_timeout;
    std::vector<std::thread> streams;
    for (auto& jp : dump_jobs_) {
      DumpJob* j = jp.get();
      dump_threads_.emplace_back([this, j] {
        checkpoint::CheckpointOptions o;
        o.archive = j->archive;
        o.timeout = d_.settings.checkpoint_timeout;
        j->stats = fail("source.checkpoint")
                       ? Result<checkpoint::CheckpointStats>(makeError("failpoint source.checkpoint"))
                       : rt_.checkpoint(j->info.name, o);
        j->dumped = Clock::now();
        j->done = true;
      });
      streams.emplace_back([this, j, deadline] {
        ChunkTarget t{rec_.id, rec_.epoch, j->info.name, j->info.name + ".tar", wire::ChunkKind::CHECKPOINT,
                      ""};
        j->streamed = streamFile(
            env_, j->archive, t, [j] { return j->done.load(); }, d_.settings, deadline, &sent_bytes_,
            StreamEnd::kTarEnd);
        j->streamed_at = Clock::now();
        if (j->streamed) {
          log_->info(
              "migration {}: {}'s archive sent ({} bytes, {} on the wire) {:.0f} ms after the freeze{}",
              rec_.id, j->info.name, j->streamed->raw_bytes, j->streamed->wire_bytes,
              msBetween(t_freeze_, j->streamed_at),
              j->streamed->ended_at_tar_end ? ", at its tar's end" : ", at podman's exit");
        }
        if (!j->streamed && !j->done.load()) {
          // The stream failed first (link cut): let the dump finish, the rollback needs it settled.
          while (!j->done.load() && Clock::now() < deadline) std::this_thread::sleep_for(Millis(5));
        }
      });
    }
    // Progress while they run.
    std::atomic<bool> stop_progress{false};
    std::thread ticker([&] {
      while (!stop_progress.load()) {
        std::this_thread::sleep_for(Millis(200));
        progress_.emit({{"event", "progress"},
                        {"phase", "transfer"},
                        {"bytes", sent_bytes_.load()},
                        {"expected_bytes", expected_bytes_},
                        {"t_ms", msBetween(t0_, Clock::now())}});
      }
    });
    // The final round of the data directory: everything is frozen now. On shared
    // storage it is a syncfs: the target reads what the frozen processes wrote.
    Result<FinalDelta> final_delta = makeError("no final round ran");
    if (d_.settings.shared_storage) {
      auto sync_started = Clock::now();
      if (auto s = env_.syncSharedData(d_.settings.checkpoint_timeout); !s) {
        final_delta = s.error();
      } else {
        final_delta = FinalDelta{0, 0, 0, msBetween(sync_started, Clock::now())};
      }
    } else {
      final_delta = env_.finalDelta(d_.settings.checkpoint_timeout);
    }
    for (auto& t : streams) t.join();
    stop_progress = true;
    ticker.join();

    std::string failure;
    std::uint64_t raw = 0;
    std::uint64_t wire_bytes = 0;
    Clock::time_point last_ready = t_freeze_;
    for (auto& j : dump_jobs_) {
      // A stream that failed waited for its dump; a complete archive means CRIU's dump
      // succeeded whether or not Podman has exited since; any other stream ended with it.
      // A failed dump is the cause when its stream failed too (nothing was written).
      if (j->done.load() && !j->stats) {
        failure += (failure.empty() ? "" : "; ") + j->stats.error().message();
        continue;
      }
      if (!j->streamed) {
        failure += (failure.empty() ? "" : "; ") + j->streamed.error().message();
        continue;
      }
      last_ready = std::max(last_ready, j->streamed->ended_at_tar_end ? j->streamed->complete_at : j->dumped);
      archive_bytes_[j->info.name] = j->streamed->raw_bytes;
      raw += j->streamed->raw_bytes;
      wire_bytes += j->streamed->wire_bytes;
      wire_bytes_ += j->streamed->wire_bytes;
    }
    report_["checkpoint_bytes"] = raw;
    report_["checkpoint_wire_bytes"] = wire_bytes;
    phases_.end("checkpoint", raw, {{"ms_after_freeze", msBetween(t_freeze_, last_ready)}});
    if (!final_delta) {
      failure += (failure.empty() ? "" : "; ") + ("final mirroring round: " + final_delta.error().message());
    } else {
      final_ = *final_delta;
      report_["last_delta_bytes"] = final_.bytes;
      report_["last_delta_ms"] = final_.ms;
    }
    phases_.end("transfer", wire_bytes + final_.bytes);
    if (!failure.empty()) return makeError(failure);
    return okStatus();
  }

  // Waits for every podman checkpoint still running (its cleanup after the archive) and
  // puts their statistics in the report. Idempotent; every path that touches the
  // containers again, or finishes, calls it first.
  void awaitDumps() {
    if (dump_threads_.empty()) return;
    for (auto& t : dump_threads_) t.join();
    dump_threads_.clear();
    json cps = json::object();  // written here only: dumpAndStream() leaves it to this
    for (auto& j : dump_jobs_) {
      const bool complete = j->streamed && j->streamed->ended_at_tar_end;
      if (!j->stats) {
        if (complete) {
          // Too late to matter for the migration (its archive was whole): say so.
          log_->warn("migration {}: podman failed after {}'s archive was complete: {}", rec_.id, j->info.name,
                     j->stats.error().message());
          cps[j->info.name]["error_after_archive"] = j->stats.error().message();
        }
        continue;
      }
      json c = checkpoint::toJson(*j->stats);
      if (j->streamed) {
        c["archive_bytes"] = j->streamed->raw_bytes;
        c["wire_bytes"] = j->streamed->wire_bytes;
        c["archive_complete_before_exit"] = complete;
        if (complete)
          c["exit_after_archive_ms"] = std::max(0.0, msBetween(j->streamed->complete_at, j->dumped));
      }
      cps[j->info.name] = c;
    }
    report_["checkpoint"] = cps;
  }

  // After the dump: Commit, the target's answer, the switch, the decision.
  json commitAndFinish() {
    phases_.begin("restore");
    auto sent = env_.send(
        [&](wire::Message::Builder m) {
          auto c = m.getBody().initCommit();
          c.setMigrationId(rec_.id);
          c.setEpoch(rec_.epoch);
          auto list = c.initContainers(static_cast<unsigned>(infos_.size()));
          for (unsigned i = 0; i < infos_.size(); ++i) fillRef(infos_[i], list[i]);
          std::uint64_t total = 0;
          for (const auto& [n, b] : archive_bytes_) total += b;
          c.setCheckpointBytes(total);
          c.setDeltaBatchEpoch(final_.epoch);
          c.setDeltaBatchSeq(final_.seq);
          c.setDeltaBytes(final_.bytes);
        },
        Millis(10000));
    if (!sent) {
      // It may or may not have left: the target could have it. Ask, do not guess.
      log_->warn("migration {}: sending Commit failed: {}", rec_.id, sent.error().message());
    }
    t_commit_sent_ = Clock::now();
    if (sent) log_->info("migration {}: Commit sent (last delta batch {})", rec_.id, final_.seq);
    return awaitTarget(Clock::now() + d_.settings.commit_timeout);
  }

  // Waits for Restored / RolledBack (or an Outcome that says which).
  json awaitTarget(Clock::time_point deadline) {
    auto next_query = Clock::now() + Millis(2000);
    while (Clock::now() < deadline) {
      auto m = waitFor(std::min(deadline, next_query));
      if (!m) {
        if (Clock::now() >= next_query) {
          next_query = Clock::now() + Millis(2000);
          if (env_.peerConnected()) sendOutcomeQuery();
        }
        continue;
      }
      auto body = m->message().getBody();
      switch (body.which()) {
        case W::RESTORED: {
          auto r = body.getRestored();
          if (std::string(r.getMigrationId().cStr()) != rec_.id) break;
          onRestored(r);
          return afterRestored();
        }
        case W::ROLLED_BACK: {
          auto r = body.getRolledBack();
          if (std::string(r.getMigrationId().cStr()) != rec_.id) break;
          return restoreHere(std::string("the target rolled back: ") + r.getReason().cStr());
        }
        case W::OUTCOME: {
          auto o = body.getOutcome();
          if (std::string(o.getMigrationId().cStr()) != rec_.id) break;
          switch (o.getState()) {
            case wire::MigrationState::ROLLED_BACK:
            case wire::MigrationState::UNKNOWN:
            case wire::MigrationState::PREPARING:
              // Nothing runs there: the Commit never took effect (or never arrived).
              return restoreHere(std::string("the target has no running copy (") +
                                 (o.getState() == wire::MigrationState::UNKNOWN ? "it never saw the migration"
                                                                                : "it rolled back") +
                                 (o.getReason().size() > 0 ? std::string(": ") + o.getReason().cStr() : "") +
                                 ")");
            case wire::MigrationState::RESTORED:
            case wire::MigrationState::COMMITTED:
              if (!restored_seen_) {
                report_["restored_via"] = "outcome";
                restored_seen_ = true;
              }
              return afterRestored();
            case wire::MigrationState::STAGING:
              // It has not seen Commit: resend it (Commit is idempotent there).
              if (!commit_resent_) {
                commit_resent_ = true;
                return commitAndFinish();
              }
              break;
            default:
              break;  // still restoring: keep waiting
          }
          break;
        }
        default:
          break;
      }
    }
    return inDoubt("no answer from " + env_.peerName() + " within " +
                   std::to_string(d_.settings.commit_timeout.count()) + " ms after Commit");
  }

  void sendOutcomeQuery() {
    (void)env_.send([&](wire::Message::Builder m) { m.getBody().initOutcomeQuery().setMigrationId(rec_.id); },
                    Millis(2000));
  }

  void onRestored(wire::Restored::Reader r) {
    restored_seen_ = true;
    auto now = Clock::now();
    phases_.end("restore", 0,
                {{"target_restore_ms", r.getRestoreMs()}, {"target_health_ms", r.getHealthMs()}});
    auto stats = json::parse(std::string(r.getStatsJson().cStr()), nullptr, false);
    if (!stats.is_discarded()) report_["restore"] = stats;
    report_["target_restore_ms"] = r.getRestoreMs();
    report_["target_health_ms"] = r.getHealthMs();
    if (t_freeze_ != Clock::time_point{}) {
      // First freeze here to last restore done there, on this clock: the reply's age
      // (restore done -> reply sent) is subtracted; the one-way network delay is not.
      double downtime = msBetween(t_freeze_, now) - static_cast<double>(r.getReplyDelayMs());
      report_["downtime_ms"] = std::max(0.0, downtime);
      report_["service_back_ms"] = msBetween(t_freeze_, now) - static_cast<double>(r.getReplyDelayMs()) +
                                   static_cast<double>(r.getHealthMs());
    }
  }

  json afterRestored() {
    // Traffic goes to the target before the decision: no commit until it gets there.
    if (switch_) {
      phases_.begin("switch");
      auto r = switch_->commit(plan_);
      if (!r) {
        phases_.end("switch");
        return decideRollback("the " + switch_->name() + " switch-over could not move the traffic to " +
                              env_.peerName() + ": " + r.error().message());
      }
      noteSwitch("commit", *r);
      switch_state_ = "committed";
      phases_.end("switch", 0,
                  {{"held", r->held},
                   {"released", r->released},
                   {"max_hold_ms", r->max_hold_ms},
                   {"retried", r->retried},
                   {"refused", r->refused},
                   {"failed", r->failed}});
    }
    if (fail("source.before_decision")) return decideRollback("failpoint source.before_decision");
    return decideCommit();
  }

  // The driver and plan for `kind` ("none": nothing to do). Nothing is switched yet.
  Status setUpSwitch(const std::string& kind) {
    if (kind.empty() || kind == "none") return okStatus();
    if (!d_.switch_factory) {
      return makeError("switch driver " + kind + " requested, but this node cannot make one",
                       "use --switch none");
    }
    auto driver = d_.switch_factory(kind);
    if (!driver) {
      return makeError("switch driver " + kind + ": " + driver.error().what,
                       driver.error().hint.empty() ? "see the switch_* settings in the node's configuration"
                                                   : driver.error().hint);
    }
    plan_.migration_id = rec_.id;
    plan_.service = d_.settings.switch_service;
    plan_.source = {env_.nodeName(), d_.settings.switch_port};
    plan_.target = {rec_.peer.empty() ? req_.to : rec_.peer, d_.settings.switch_port};
    plan_.drain_timeout = d_.settings.switch_drain_timeout;
    plan_.hold_timeout = d_.settings.switch_hold_timeout;
    if (auto s = switchover::validatePlan(plan_); !s) return s;
    switch_ = std::move(*driver);
    report_["switch"] = {{"driver", kind},
                         {"service", plan_.service},
                         {"source", plan_.source.str()},
                         {"target", plan_.target.str()}};
    return okStatus();
  }

  void noteSwitch(const std::string& step, const switchover::SwitchReport& r) {
    report_["switch"][step] = r.toJson();
    log_->info("migration {}: switch-over {}: {}", rec_.id, step, r.summary());
    progress_.emit({{"event", "note"}, {"text", "switch-over " + step + ": " + r.summary()}});
  }

  // Traffic back to this host (after the service runs here again). Idempotent; a
  // failure is reported, not hidden: the service runs here but traffic may not reach it.
  void rollbackSwitch() {
    if (!switch_ || switch_state_.empty()) return;
    auto r = switch_->rollback(plan_);
    if (!r) {
      log_->error("migration {}: switch-over rollback failed: {}", rec_.id, r.error().message());
      report_["switch"]["rollback_error"] = r.error().message();
      switch_problem_ = "; traffic could not be put back on " + env_.nodeName() + " (" + r.error().message() +
                        "): run 'ferry proxy switch rollback' by hand";
      return;
    }
    noteSwitch("rollback", *r);
    switch_state_ = "rolled-back";
  }

  json decideCommit() {
    if (auto s = journal(MigrationPhase::kDecidedCommit); !s) {
      // Not durable: do not commit on a decision we could forget.
      return decideRollback("cannot journal the commit decision: " + s.error().message());
    }
    // The commit point: the migration time the study reports ends here (its cleanup and
    // the role swap follow, outside it).
    report_["migration_ms"] = msBetween(t0_, Clock::now());
    phases_.begin("commit");
    auto deadline = Clock::now() + Millis(30000);
    bool confirmed = false;
    while (Clock::now() < deadline && !confirmed) {
      (void)sendDecision(true, "");
      auto m = waitFor(std::min(deadline, Clock::now() + Millis(3000)));
      if (!m) continue;
      auto body = m->message().getBody();
      if (body.which() == W::COMMITTED && std::string(body.getCommitted().getMigrationId().cStr()) == rec_.id)
        confirmed = true;
      if (body.which() == W::OUTCOME && std::string(body.getOutcome().getMigrationId().cStr()) == rec_.id &&
          body.getOutcome().getState() == wire::MigrationState::COMMITTED)
        confirmed = true;
    }
    phases_.end("commit");
    if (!confirmed) {
      // The decision stands (the service runs there; ours are stopped). The target
      // learns it when it asks; we finish our side.
      log_->warn("migration {}: the target did not confirm the commit yet; it will learn it from the journal",
                 rec_.id);
      report_["commit_confirmed"] = false;
    }
    return finishCommit();
  }

  json finishCommit() {
    phases_.begin("cleanup");
    awaitDumps();
    auto role = env_.becomeStandby(rec_.epoch);
    if (!role) log_->error("migration {}: becoming the standby failed: {}", rec_.id, role.error().message());
    for (const auto& c : infos_) {
      if (auto s = rt_.remove(c.name, std::chrono::seconds(0)); !s)
        log_->warn("migration {}: removing the old {} here: {}", rec_.id, c.name, s.error().message());
    }
    removeArchives();
    phases_.end("cleanup");
    auto s = journal(MigrationPhase::kCommitted);
    if (!s) log_->error("migration {}: journaling committed: {}", rec_.id, s.error().message());
    return finish("committed", "");
  }

  json decideRollback(const std::string& reason) {
    if (auto s = journal(MigrationPhase::kDecidedRollback, reason); !s)
      log_->error("migration {}: journaling the rollback decision: {}", rec_.id, s.error().message());
    auto deadline = Clock::now() + d_.settings.commit_timeout;
    while (Clock::now() < deadline) {
      (void)sendDecision(false, reason);
      auto m = waitFor(std::min(deadline, Clock::now() + Millis(3000)));
      if (!m) continue;
      auto body = m->message().getBody();
      bool clean =
          (body.which() == W::ROLLED_BACK &&
           std::string(body.getRolledBack().getMigrationId().cStr()) == rec_.id) ||
          (body.which() == W::OUTCOME && std::string(body.getOutcome().getMigrationId().cStr()) == rec_.id &&
           (body.getOutcome().getState() == wire::MigrationState::ROLLED_BACK ||
            body.getOutcome().getState() == wire::MigrationState::UNKNOWN));
      if (clean) return restoreHere(reason);
    }
    return inDoubt("decided to roll back (" + reason + ") but " + env_.peerName() +
                   " did not confirm its copy is gone");
  }

  Status sendDecision(bool commit, const std::string& reason) {
    return env_.send(
        [&](wire::Message::Builder m) {
          auto d = m.getBody().initDecision();
          d.setMigrationId(rec_.id);
          d.setEpoch(rec_.epoch);
          d.setCommit(commit);
          d.setReason(reason);
        },
        Millis(5000));
  }

  void sendAbort(const std::string& phase, const std::string& reason) {
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto a = m.getBody().initAbort();
          a.setMigrationId(rec_.id);
          a.setEpoch(rec_.epoch == 0 ? 1 : rec_.epoch);
          a.setPhase(phase);
          a.setReason(reason);
        },
        Millis(3000));
  }

  // Before Commit: the target has nothing running; bring ours back.
  json rollbackLocal(const std::string& reason) {
    log_->warn("migration {}: rolling back: {}", rec_.id, reason);
    sendAbort("before-commit", reason);
    return restoreHere(reason);
  }

  // The service runs nowhere else: restore what was dumped, thaw what was only frozen.
  json restoreHere(const std::string& reason) {
    phases_.begin("rollback");
    awaitDumps();
    std::string problems;
    std::vector<std::thread> threads;
    std::mutex mu;
    for (const auto& c : infos_) {
      threads.emplace_back([&, c] {
        auto info = rt_.inspect(c.name);
        Status s;
        if (!info) {
          s = info.error();
        } else if (info->running) {
          auto fr = rt_.frozen(*info);
          if (fr && *fr) s = rt_.thaw(*info);
        } else {
          checkpoint::RestoreOptions o;
          o.timeout = d_.settings.restore_timeout;
          auto r = rt_.restore(c.name, o);
          if (!r) s = r.error();
        }
        if (!s) {
          std::lock_guard lock(mu);
          problems += (problems.empty() ? "" : "; ") + c.name + ": " + s.error().message();
        }
      });
    }
    for (auto& t : threads) t.join();
    if (problems.empty()) rollbackSwitch();
    env_.resumeMirroring();
    removeArchives();
    phases_.end("rollback");
    if (!problems.empty()) {
      // The service is not back. Nothing runs elsewhere either: say it loudly.
      auto s = journal(MigrationPhase::kInDoubt, reason + "; restoring here failed: " + problems);
      (void)s;
      return finish("in_doubt", reason + "; and restoring on " + env_.nodeName() + " failed: " + problems +
                                    " — the service is NOT running; see 'ferry migrations show " + rec_.id +
                                    "'");
    }
    if (t_freeze_ != Clock::time_point{}) report_["downtime_ms"] = msBetween(t_freeze_, Clock::now());
    auto s = journal(MigrationPhase::kRolledBack, reason + switch_problem_);
    (void)s;
    return finish("rolled_back", reason + switch_problem_);
  }

  json learnOutcome() {
    // After a restart in "committing": only the target knows. Ask until it answers.
    if (env_.peerConnected()) sendOutcomeQuery();
    return awaitTarget(Clock::now() + d_.settings.commit_timeout);
  }

  json inDoubt(const std::string& reason) {
    auto s = journal(MigrationPhase::kInDoubt, reason);
    (void)s;
    return finish("in_doubt", reason + " — the service may be running on " + env_.peerName() +
                                  "; nothing was restarted here. Run 'ferry migrations resolve " + rec_.id +
                                  "' when the peer is back (or with --outcome if it is gone)");
  }

  json refuse(const Error& e) {
    rollbackSwitch();
    if (target_prepared_) sendAbort("preflight", e.message());
    auto s = rec_.epoch != 0 ? journal(MigrationPhase::kRefused, e.message() + switch_problem_) : okStatus();
    (void)s;
    return finish("refused", e.message() + switch_problem_);
  }

  void removeArchives() {
    std::error_code ec;
    for (const auto& a : archives_) fs::remove(a, ec);
  }

  json finish(const std::string& result, const std::string& reason) {
    awaitDumps();
    marker_.reset();  // before anyone hears the result
    report_["result"] = result;
    if (!reason.empty()) report_["reason"] = reason;
    report_["total_ms"] = msBetween(t0_, Clock::now());
    if (!report_.contains("migration_ms")) report_["migration_ms"] = report_["total_ms"];
    // On the wire: what the link carried for this migration (LZ4 where it helped).
    report_["bytes_transferred"] = wire_bytes_ + final_.bytes;
    if (!report_.contains("last_delta_bytes")) report_["last_delta_bytes"] = final_.bytes;
    report_["phases"] = phases_.list();
    rec_.report = report_;
    if (!rec_.id.empty() && rec_.epoch != 0) (void)d_.journal->put(rec_);
    json final_event = report_;
    final_event["event"] = "result";
    final_event["final"] = true;
    progress_.emit(final_event);
    return report_;
  }

  MigrateRequest req_;
  MigrationDeps d_;
  MigrationEnv& env_;
  checkpoint::ContainerRuntime& rt_;
  MigrationInbox& inbox_;
  MigrationProgress& progress_;
  Clock::time_point t0_;
  Phases phases_;
  std::shared_ptr<spdlog::logger> log_;

  MigrationRecord rec_;
  json report_;
  std::vector<checkpoint::ContainerInfo> infos_;
  std::vector<std::string> missing_images_;
  std::vector<std::string> frozen_;
  // One podman checkpoint per container: its thread may outlive dumpAndStream().
  struct DumpJob {
    checkpoint::ContainerInfo info;
    fs::path archive;
    std::atomic<bool> done{false};
    Result<checkpoint::CheckpointStats> stats = makeError("not run");
    Result<StreamStats> streamed = makeError("not run");
    Clock::time_point dumped;       // podman exited
    Clock::time_point streamed_at;  // the archive was sent (and checked)
  };
  std::vector<std::unique_ptr<DumpJob>> dump_jobs_;
  std::vector<std::thread> dump_threads_;
  std::vector<fs::path> archives_;
  std::map<std::string, std::uint64_t> archive_bytes_;
  std::atomic<std::uint64_t> sent_bytes_{0};  // archive bytes streamed so far (progress)
  std::uint64_t wire_bytes_ = 0;              // what they took on the wire (the report)
  std::uint64_t expected_bytes_ = 0;
  FinalDelta final_;
  Clock::time_point t_freeze_{};
  Clock::time_point t_commit_sent_{};
  bool restored_seen_ = false;
  bool commit_resent_ = false;
  bool target_prepared_ = false;  // the target accepted Prepare: an abort must reach it
  std::string shared_token_;      // shared storage: the marker the target must see
  // The marker file in the shared data directory: removed after the last Prepare, or by
  // finish() on every other path.
  struct SharedMarker {
    SharedMarker(std::filesystem::path dir, std::string id) : dir_(std::move(dir)), id_(std::move(id)) {}
    SharedMarker(const SharedMarker&) = delete;
    SharedMarker& operator=(const SharedMarker&) = delete;
    ~SharedMarker() { removeSharedMarker(dir_, id_); }
    std::filesystem::path dir_;
    std::string id_;
  };
  std::optional<SharedMarker> marker_;
  // Traffic switch-over: the driver, its plan, and how far it got ("", "preparing",
  // "committed", "rolled-back"); journaled in the report for a restarted node.
  std::unique_ptr<switchover::Driver> switch_;
  switchover::SwitchPlan plan_;
  std::string switch_state_;
  std::string switch_problem_;
#undef FERRY_TRY_REPORT
};

}  // namespace

json runSourceMigration(const MigrateRequest& request, MigrationDeps deps, MigrationInbox& inbox,
                        MigrationProgress& progress) {
  Source s(request, std::move(deps), inbox, progress);
  return s.run();
}

json recoverSourceMigration(const MigrationRecord& record, MigrationDeps deps, MigrationInbox& inbox,
                            MigrationProgress& progress) {
  MigrateRequest req;
  req.id = record.id;
  req.containers = record.containers;
  req.to = record.peer;
  req.mode = record.mode;
  Source s(req, std::move(deps), inbox, progress);
  return s.recover(record);
}

json resolveSourceMigration(const MigrationRecord& record, const std::string& outcome, MigrationDeps deps,
                            MigrationInbox& inbox, MigrationProgress& progress) {
  MigrateRequest req;
  req.id = record.id;
  req.containers = record.containers;
  req.to = record.peer;
  Source s(req, std::move(deps), inbox, progress);
  return s.resolve(record, outcome);
}

}  // namespace ferry::node
