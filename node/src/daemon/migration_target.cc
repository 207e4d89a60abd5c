// The target side of `ferry migrate`: preflight answer, staging, restore, health, and
// waiting for the source's decision (see migration.h for the rules).
#include <algorithm>
#include <future>
#include <map>
#include <mutex>
#include <set>
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

struct Ref {
  std::string name;
  std::string id;
  std::string image_id;
  std::string image_name;
  std::vector<std::uint16_t> host_ports;
  std::uint64_t archive_bytes = 0;
};

std::vector<Ref> readRefs(capnp::List<wire::ContainerRef>::Reader list) {
  std::vector<Ref> out;
  for (auto c : list) {
    Ref r{c.getName().cStr(), c.getId().cStr(), c.getImageId().cStr(), c.getImageName().cStr(), {},
          c.getArchiveBytes()};
    for (auto p : c.getHostPorts()) r.host_ports.push_back(p);
    out.push_back(std::move(r));
  }
  return out;
}

class Target {
 public:
  Target(MigrationDeps deps, MigrationInbox& inbox)
      : d_(std::move(deps)), env_(*d_.env), rt_(*d_.runtime), inbox_(inbox), log_(log::get("node")) {}

  json run() {
    auto first = inbox_.pop(Millis(1000));
    if (!first || first->message().getBody().which() != W::PREPARE) return {{"result", "none"}};
    auto p = first->message().getBody().getPrepare();
    rec_.id = p.getMigrationId().cStr();
    rec_.side = "target";
    rec_.peer = env_.peerName();
    rec_.epoch = p.getEpoch();
    rec_.mode = "stop-and-copy";
    refs_ = readRefs(p.getContainers());
    for (const auto& r : refs_) rec_.containers.push_back(r.name);
    expected_bytes_ = p.getExpectedCheckpointBytes();
    source_shared_ = p.getSharedStorage();
    shared_token_ = p.getSharedToken().cStr();
    log_->info("migration {} from {}: {} container(s), epoch {}", rec_.id, env_.peerName(), refs_.size(),
               rec_.epoch);

    if (rec_.epoch <= env_.epoch()) {
      replyPrepare({{"migration epoch " + std::to_string(rec_.epoch) + " is not newer than " +
                         std::to_string(env_.epoch()) + ", the newest this node has seen",
                     "the source's view is stale: a newer migration happened"}});
      return {{"result", "refused"}};
    }
    auto problems = preflight();
    if (!problems.empty()) {
      (void)journal(MigrationPhase::kRefused, problems.front().first);
      replyPrepare(problems);
      return {{"result", "refused"}, {"reason", problems.front().first}};
    }
    if (auto s = journal(MigrationPhase::kStaging); !s) {
      replyPrepare(
          {{"cannot journal the migration: " + s.error().message(), "check the state directory's disk"}});
      return {{"result", "refused"}};
    }
    replyPrepare({});
    return stage();
  }

  json recover(const MigrationRecord& record) {
    rec_ = record;
    for (const auto& n : record.containers) refs_.push_back(Ref{n, {}, {}, {}, {}, 0});
    log_->warn("migration {}: recovering from phase {}", record.id, phaseName(record.phase));
    switch (record.phase) {
      case MigrationPhase::kPreparing:
      case MigrationPhase::kStaging:
        cleanupStaging();
        return rolledBack("the target node restarted while staging", false);
      case MigrationPhase::kRestoring:
        return rolledBack("the target node restarted while restoring", true);
      case MigrationPhase::kRestored:
      case MigrationPhase::kInDoubt:
        return awaitDecision();
      default:
        return toJson(record);
    }
  }

  json resolve(const MigrationRecord& record, const std::string& outcome) {
    rec_ = record;
    for (const auto& n : record.containers) refs_.push_back(Ref{n, {}, {}, {}, {}, 0});
    if (outcome == "committed") return commit();
    return rolledBack("resolved by the operator: rolled back", true);
  }

 private:
  using Problems = std::vector<std::pair<std::string, std::string>>;  // what, hint

  Status journal(MigrationPhase phase, const std::string& reason = {}) {
    rec_.phase = phase;
    if (!reason.empty()) rec_.reason = reason;
    rec_.report = report_;
    return putTimed(*d_.journal, rec_, report_);
  }

  bool fail(const std::string& point) { return d_.failpoints != nullptr && d_.failpoints->hit(point); }

  Problems preflight() {
    Problems problems;
    missing_images_.clear();
    if (env_.isActive()) {
      problems.emplace_back("this node (" + env_.nodeName() + ") is active, not a standby",
                            "migrate from the active node to its standby");
    }
    if (source_shared_ != d_.settings.shared_storage) {
      problems.emplace_back(std::string("shared_storage is ") + (source_shared_ ? "on" : "off") + " on " +
                                env_.peerName() + " but " + (d_.settings.shared_storage ? "on" : "off") +
                                " on " + env_.nodeName(),
                            "set shared_storage the same on both nodes and restart them");
    } else if (d_.settings.shared_storage) {
      if (auto s = checkSharedMarker(d_.settings.data_dir, rec_.id, shared_token_); !s)
        problems.emplace_back(s.error().what + " (on " + env_.nodeName() + ")", s.error().hint);
    } else if (!env_.replicaView().consistent) {
      problems.emplace_back("the replica on " + env_.nodeName() + " is in the middle of a batch",
                            "wait until 'ferry status' says in-sync, then retry");
    }
    // One round of concurrent runtime calls: does each name exist, is each image here.
    std::vector<std::string> images;
    for (const auto& r : refs_)
      if (!r.image_id.empty() && std::find(images.begin(), images.end(), r.image_id) == images.end())
        images.push_back(r.image_id);
    auto images_here = std::async(std::launch::async, [&] {
      return forEachConcurrently(images, [&](const std::string& id) { return rt_.imageId(id); });
    });
    auto exists = forEachConcurrently(refs_, [&](const Ref& r) { return rt_.exists(r.name); });
    auto present = images_here.get();
    for (std::size_t i = 0; i < refs_.size(); ++i) {
      const auto& r = refs_[i];
      if (!exists[i]) {
        problems.emplace_back("cannot ask podman about " + r.name + " on " + env_.nodeName() + ": " +
                                  exists[i].error().message(),
                              exists[i].error().hint);
      } else if (*exists[i]) {
        problems.emplace_back("a container named " + r.name + " already exists on " + env_.nodeName(),
                              "remove or rename it there ('podman rm " + r.name + "') and retry");
      }
      for (auto port : r.host_ports) {
        if (!env_.hostPortFree(port)) {
          problems.emplace_back("host port " + std::to_string(port) + " (published by " + r.name +
                                    ") is in use on " + env_.nodeName(),
                                "stop what listens on it there, or publish another port");
        }
      }
    }
    for (std::size_t i = 0; i < images.size(); ++i) {
      if (!present[i]) {
        problems.emplace_back(
            "cannot ask podman about image " + images[i].substr(0, 12) + ": " + present[i].error().message(),
            present[i].error().hint);
      } else if (!present[i]->has_value()) {
        missing_images_.push_back(images[i]);
      }
    }
    auto free = env_.stagingFreeBytes();
    if (!free) {
      problems.emplace_back(free.error().what, free.error().hint);
    } else {
      free_bytes_ = *free;
      // The archives (about the containers' memory) plus a margin.
      std::uint64_t need = expected_bytes_ + expected_bytes_ / 5 + (64u << 20);
      if (*free < need) {
        problems.emplace_back("not enough room on " + env_.nodeName() +
                                  " for the checkpoint: " + std::to_string(*free >> 20) + " MiB free in " +
                                  d_.settings.staging_dir.string() + ", about " + std::to_string(need >> 20) +
                                  " MiB needed",
                              "free space there or point staging_dir at a larger disk");
      }
    }
    return problems;
  }

  void replyPrepare(const Problems& problems) {
    auto s = env_.send(
        [&](wire::Message::Builder m) {
          auto r = m.getBody().initPrepareReply();
          r.setMigrationId(rec_.id);
          r.setEpoch(rec_.epoch);
          r.setOk(problems.empty());
          auto list = r.initProblems(static_cast<unsigned>(std::min<std::size_t>(problems.size(), 64)));
          for (unsigned i = 0; i < list.size(); ++i) {
            list[i].setWhat(problems[i].first);
            list[i].setHint(problems[i].second);
          }
          auto missing =
              r.initMissingImages(static_cast<unsigned>(std::min<std::size_t>(missing_images_.size(), 64)));
          for (unsigned i = 0; i < missing.size(); ++i) missing.set(i, missing_images_[i]);
          r.setFreeBytes(free_bytes_);
          r.setReplicaConsistent(env_.replicaView().consistent);
          r.setHighestEpoch(env_.epoch());
        },
        Millis(10000));
    if (!s) log_->warn("migration {}: answering Prepare: {}", rec_.id, s.error().message());
  }

  void answerOutcome(const std::string& id) {
    auto state = outcomeFor(*d_.journal, id);
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto o = m.getBody().initOutcome();
          o.setMigrationId(id);
          o.setEpoch(rec_.epoch == 0 ? 1 : rec_.epoch);
          o.setState(state);
          o.setReason(rec_.reason);
        },
        Millis(5000));
  }

  // Receives images and checkpoints until Commit (or Abort, or silence).
  json stage() {
    if (auto s = preparePrivateDir(d_.settings.staging_dir); !s)
      return rolledBack(s.error().message(), false);
    std::string image_failure;
    while (true) {
      auto m = inbox_.pop(d_.settings.idle_timeout);
      if (!m) {
        cleanupStaging();
        return rolledBack("the source went silent for " + std::to_string(d_.settings.idle_timeout.count()) +
                              " ms before Commit",
                          false);
      }
      auto body = m->message().getBody();
      switch (body.which()) {
        case W::PREPARE: {
          // Again after the images: check once more.
          auto problems = preflight();
          if (!image_failure.empty())
            problems.emplace_back(image_failure, "check 'podman images' on this host");
          replyPrepare(problems);
          if (!problems.empty()) {
            cleanupStaging();
            (void)journal(MigrationPhase::kRefused, problems.front().first);
            return {{"result", "refused"}};
          }
          break;
        }
        case W::CHECKPOINT_CHUNK: {
          auto c = body.getCheckpointChunk();
          if (std::string(c.getMigrationId().cStr()) != rec_.id) break;
          auto s = acceptChunk(c, image_failure);
          if (!s) {
            log_->error("migration {}: {}", rec_.id, s.error().message());
            cleanupStaging();
            sendAbort("staging", s.error().message());
            return rolledBack(s.error().message(), false);
          }
          break;
        }
        case W::ABORT: {
          auto a = body.getAbort();
          if (std::string(a.getMigrationId().cStr()) != rec_.id) break;
          cleanupStaging();
          return rolledBack(std::string("the source aborted: ") + a.getReason().cStr(), false);
        }
        case W::COMMIT: {
          auto c = body.getCommit();
          if (std::string(c.getMigrationId().cStr()) != rec_.id) break;
          return restore(c);
        }
        case W::OUTCOME_QUERY:
          answerOutcome(body.getOutcomeQuery().getMigrationId().cStr());
          break;
        default:
          break;
      }
    }
  }

  Status acceptChunk(wire::CheckpointChunk::Reader c, std::string& image_failure) {
    std::string name = c.getFileName().cStr();
    if (name.find('/') != std::string::npos)
      return makeError("checkpoint file name '" + name + "' has a '/'");
    auto& file = files_[name];
    if (!file) {
      auto f = StagingFile::create(d_.settings.staging_dir / (rec_.id + "-" + name));
      if (!f) return f.error();
      file = std::move(*f);
    }
    FERRY_TRY(file->append(c));
    if (file->complete()) log_->info("migration {}: {} staged ({} bytes)", rec_.id, name, file->bytes());
    if (file->complete() && c.getKind() == wire::ChunkKind::IMAGE) {
      std::string image_id = c.getImageId().cStr();
      auto loaded = rt_.loadImage(file->path());
      if (!loaded) {
        image_failure = "loading image " + image_id.substr(0, 12) + " failed: " + loaded.error().message();
      } else {
        auto id = rt_.imageId(image_id);
        if (!id || !id->has_value())
          image_failure =
              "image " + image_id.substr(0, 12) + " was loaded but has another ID here (" + *loaded + ")";
      }
      std::error_code ec;
      fs::remove(file->path(), ec);
    }
    return okStatus();
  }

  json restore(wire::Commit::Reader commit) {
    auto started = Clock::now();
    log_->info("migration {}: Commit: restoring {} container(s)", rec_.id, commit.getContainers().size());
    if (auto s = journal(MigrationPhase::kRestoring); !s) {
      cleanupStaging();
      return rolledBack("cannot journal the restore: " + s.error().message(), false);
    }
    // From here the service may write here: no more mirroring batches may land.
    env_.fenceReplica(true);
    auto view = env_.replicaView();
    if (!d_.settings.shared_storage && (!view.final_applied || view.seq != commit.getDeltaBatchSeq() ||
                                        view.epoch != commit.getDeltaBatchEpoch())) {
      return rolledBack(
          "the replica does not hold the final batch (" + std::to_string(commit.getDeltaBatchEpoch()) + "/" +
              std::to_string(commit.getDeltaBatchSeq()) + "); it holds " + std::to_string(view.epoch) + "/" +
              std::to_string(view.seq) + (view.final_applied ? "" : ", not final"),
          false);
    }
    auto refs = readRefs(commit.getContainers());
    for (const auto& r : refs) {
      auto it = files_.find(r.name + ".tar");
      if (it == files_.end() || !it->second->complete())
        return rolledBack("the checkpoint of " + r.name + " did not arrive complete", false);
    }
    // Restore every container at once: they were dumped as one cut.
    std::mutex mu;
    std::string failure;
    json stats = json::object();
    Clock::time_point last_done = started;
    std::vector<std::thread> threads;
    threads.reserve(refs.size());
    for (const auto& r : refs) {
      threads.emplace_back([&, r] {
        checkpoint::RestoreOptions o;
        o.archive = files_[r.name + ".tar"]->path();
        o.timeout = d_.settings.restore_timeout;
        auto res = fail("target.restore")
                       ? Result<checkpoint::RestoreStats>(makeError("failpoint target.restore"))
                       : rt_.restore(r.name, o);
        std::lock_guard lock(mu);
        last_done = std::max(last_done, Clock::now());
        if (!res) {
          failure += (failure.empty() ? "" : "; ") + ("restore of " + r.name + ": " + res.error().message());
        } else {
          stats[r.name] = checkpoint::toJson(*res);
        }
      });
    }
    for (auto& t : threads) t.join();
    report_["restore"] = stats;
    if (!failure.empty()) return rolledBack(failure, true);
    auto restored_at = last_done;
    // Healthy?
    Status health;
    if (fail("target.health")) {
      health = makeError("failpoint target.health");
    } else if (!d_.settings.health_url.empty()) {
      health = env_.waitHealthy(d_.settings.health_url, d_.settings.health_timeout);
    } else {
      for (const auto& r : refs) {
        auto info = rt_.inspect(r.name);
        if (!info)
          health = info.error();
        else if (!info->running)
          health = makeError(r.name + " is " + info->status + " after the restore");
        if (!health) break;
      }
    }
    if (!health) return rolledBack("the restored service is not healthy: " + health.error().message(), true);
    auto healthy_at = Clock::now();
    log_->info("migration {}: restored in {:.0f} ms, healthy {:.0f} ms later", rec_.id,
               msBetween(started, restored_at), msBetween(restored_at, healthy_at));
    report_["restore_ms"] = msBetween(started, restored_at);
    report_["health_ms"] = msBetween(restored_at, healthy_at);
    if (auto s = journal(MigrationPhase::kRestored); !s)
      return rolledBack("cannot journal the restored state: " + s.error().message(), true);
    cleanupStaging();
    auto sent = env_.send(
        [&](wire::Message::Builder m) {
          auto r = m.getBody().initRestored();
          r.setMigrationId(rec_.id);
          r.setEpoch(rec_.epoch);
          auto list = r.initContainers(static_cast<unsigned>(refs.size()));
          for (unsigned i = 0; i < refs.size(); ++i) {
            list[i].setName(refs[i].name);
            list[i].setId(refs[i].id);
            list[i].setImageId(refs[i].image_id);
          }
          r.setRestoreMs(static_cast<std::uint64_t>(msBetween(started, restored_at)));
          r.setHealthMs(static_cast<std::uint64_t>(msBetween(restored_at, healthy_at)));
          r.setReplyDelayMs(static_cast<std::uint64_t>(msBetween(restored_at, Clock::now())));
          r.setStatsJson(stats.dump());
        },
        Millis(10000));
    if (!sent)
      log_->warn("migration {}: sending Restored: {} (the source will ask)", rec_.id, sent.error().message());
    return awaitDecision();
  }

  // Running and healthy here; the source decides. Never guess: wait, asking now and then.
  json awaitDecision() {
    auto in_doubt_at = Clock::now() + d_.settings.commit_timeout;
    auto next_query = Clock::now() + Millis(3000);
    while (true) {
      auto m = inbox_.pop(Millis(1000));
      if (!m) {
        if (rec_.phase != MigrationPhase::kInDoubt && Clock::now() > in_doubt_at) {
          log_->error(
              "migration {}: no decision from {} for {} ms: in doubt (the service keeps running here)",
              rec_.id, env_.peerName(), d_.settings.commit_timeout.count());
          (void)journal(MigrationPhase::kInDoubt, "no decision from the source");
        }
        if (Clock::now() > next_query && env_.peerConnected()) {
          next_query = Clock::now() + Millis(3000);
          (void)env_.send(
              [&](wire::Message::Builder out) { out.getBody().initOutcomeQuery().setMigrationId(rec_.id); },
              Millis(2000));
        }
        if (inbox_.closed()) return toJson(rec_);
        continue;
      }
      auto body = m->message().getBody();
      switch (body.which()) {
        case W::DECISION: {
          auto d = body.getDecision();
          if (std::string(d.getMigrationId().cStr()) != rec_.id) break;
          if (d.getCommit()) return commit();
          return rolledBack(std::string("the source decided to roll back: ") + d.getReason().cStr(), true);
        }
        case W::ABORT: {
          auto a = body.getAbort();
          if (std::string(a.getMigrationId().cStr()) != rec_.id) break;
          return rolledBack(std::string("the source aborted: ") + a.getReason().cStr(), true);
        }
        case W::OUTCOME: {
          auto o = body.getOutcome();
          if (std::string(o.getMigrationId().cStr()) != rec_.id) break;
          if (o.getState() == wire::MigrationState::DECIDED_COMMIT ||
              o.getState() == wire::MigrationState::COMMITTED)
            return commit();
          if (o.getState() == wire::MigrationState::DECIDED_ROLLBACK ||
              o.getState() == wire::MigrationState::ROLLED_BACK)
            return rolledBack("the source rolled back", true);
          if (o.getState() == wire::MigrationState::RESTORING ||
              o.getState() == wire::MigrationState::IN_DOUBT) {
            // The source is waiting for our answer (it restarted, or lost Restored).
            resendRestored();
          }
          break;
        }
        case W::OUTCOME_QUERY:
          answerOutcome(body.getOutcomeQuery().getMigrationId().cStr());
          break;
        case W::COMMIT:
          // A Commit again (the source did not hear Restored): say it once more.
          resendRestored();
          break;
        default:
          break;
      }
    }
  }

  void resendRestored() {
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto r = m.getBody().initRestored();
          r.setMigrationId(rec_.id);
          r.setEpoch(rec_.epoch);
          r.setStatsJson(report_.value("restore", json::object()).dump());
        },
        Millis(5000));
  }

  json commit() {
    // Role first: a crash after it re-enters here (the record still says restored) and
    // repeats both steps, which are idempotent.
    if (auto s = env_.becomeActive(rec_.epoch); !s)
      log_->error("migration {}: becoming active: {}", rec_.id, s.error().message());
    env_.fenceReplica(false);
    (void)journal(MigrationPhase::kCommitted);
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto c = m.getBody().initCommitted();
          c.setMigrationId(rec_.id);
          c.setEpoch(rec_.epoch);
        },
        Millis(5000));
    log_->info("migration {}: committed; this node is active now", rec_.id);
    cleanupStaging();
    return {{"result", "committed"}, {"id", rec_.id}};
  }

  // Removes whatever this migration restored (when `restored`), forgets staging, tells
  // the source it may restore its own.
  json rolledBack(const std::string& reason, bool restored) {
    log_->warn("migration {}: rolling back on the target: {}", rec_.id, reason);
    std::string problems;
    if (restored) {
      for (const auto& r : refs_) {
        if (auto s = rt_.remove(r.name, std::chrono::seconds(0)); !s)
          problems += (problems.empty() ? "" : "; ") + s.error().message();
      }
      // The restored service may have written into the data directory: the next resume
      // must compare everything, not trust the replica's state.
      env_.invalidateReplica();
    }
    env_.fenceReplica(false);
    cleanupStaging();
    if (!problems.empty()) {
      // Our copy may still run: do not let the source restore.
      (void)journal(MigrationPhase::kInDoubt,
                    reason + "; removing the restored containers failed: " + problems);
      return {{"result", "in_doubt"}, {"reason", problems}};
    }
    (void)journal(MigrationPhase::kRolledBack, reason);
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto r = m.getBody().initRolledBack();
          r.setMigrationId(rec_.id);
          r.setEpoch(rec_.epoch == 0 ? 1 : rec_.epoch);
          r.setReason(reason);
        },
        Millis(5000));
    return {{"result", "rolled_back"}, {"reason", reason}};
  }

  void sendAbort(const std::string& phase, const std::string& reason) {
    (void)env_.send(
        [&](wire::Message::Builder m) {
          auto a = m.getBody().initAbort();
          a.setMigrationId(rec_.id);
          a.setEpoch(rec_.epoch);
          a.setPhase(phase);
          a.setReason(reason);
        },
        Millis(3000));
  }

  void cleanupStaging() {
    std::error_code ec;
    for (auto& [name, f] : files_) fs::remove(f->path(), ec);
    files_.clear();
    // Leftovers of this migration from before a restart.
    for (const auto& e : fs::directory_iterator(d_.settings.staging_dir, ec)) {
      if (e.path().filename().string().rfind(rec_.id + "-", 0) == 0) fs::remove(e.path(), ec);
    }
  }

  MigrationDeps d_;
  MigrationEnv& env_;
  checkpoint::ContainerRuntime& rt_;
  MigrationInbox& inbox_;
  std::shared_ptr<spdlog::logger> log_;
  MigrationRecord rec_;
  json report_ = json::object();
  std::vector<Ref> refs_;
  std::vector<std::string> missing_images_;
  std::uint64_t expected_bytes_ = 0;
  bool source_shared_ = false;  // Prepare: the source has shared_storage on
  std::string shared_token_;    // ... and this token in its marker file
  std::uint64_t free_bytes_ = 0;
  std::map<std::string, std::unique_ptr<StagingFile>> files_;
};

}  // namespace

json runTargetMigration(MigrationDeps deps, MigrationInbox& inbox) {
  Target t(std::move(deps), inbox);
  return t.run();
}

json recoverTargetMigration(const MigrationRecord& record, MigrationDeps deps, MigrationInbox& inbox) {
  Target t(std::move(deps), inbox);
  return t.recover(record);
}

json resolveTargetMigration(const MigrationRecord& record, const std::string& outcome, MigrationDeps deps,
                            MigrationInbox& inbox) {
  Target t(std::move(deps), inbox);
  return t.resolve(record, outcome);
}

}  // namespace ferry::node
