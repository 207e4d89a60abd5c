#include "coordinator.h"

#include <atomic>
#include <ctime>

#include "ferry/base/log.h"
#include "ferry/protocol/framing.h"

namespace ferry::node {

namespace {
using W = wire::Message::Body::Which;
using json = nlohmann::json;
}  // namespace

struct MigrationCoordinator::Running {
  std::string id;
  std::string side;
  std::shared_ptr<MigrationInbox> inbox = std::make_shared<MigrationInbox>();
  std::shared_ptr<MigrationProgress> progress = std::make_shared<MigrationProgress>();
  std::thread thread;
  std::atomic<bool> done{false};
};

bool isMigrationBody(W which) {
  switch (which) {
    case W::PREPARE:
    case W::PREPARE_REPLY:
    case W::CHECKPOINT_CHUNK:
    case W::COMMIT:
    case W::COMMITTED:
    case W::ABORT:
    case W::ROLLED_BACK:
    case W::RESTORED:
    case W::DECISION:
    case W::OUTCOME_QUERY:
    case W::OUTCOME:
      return true;
    default:
      return false;
  }
}

std::string migrationIdOf(wire::Message::Body::Reader b) {
  switch (b.which()) {
    case W::PREPARE:
      return b.getPrepare().getMigrationId().cStr();
    case W::PREPARE_REPLY:
      return b.getPrepareReply().getMigrationId().cStr();
    case W::CHECKPOINT_CHUNK:
      return b.getCheckpointChunk().getMigrationId().cStr();
    case W::COMMIT:
      return b.getCommit().getMigrationId().cStr();
    case W::COMMITTED:
      return b.getCommitted().getMigrationId().cStr();
    case W::ABORT:
      return b.getAbort().getMigrationId().cStr();
    case W::ROLLED_BACK:
      return b.getRolledBack().getMigrationId().cStr();
    case W::RESTORED:
      return b.getRestored().getMigrationId().cStr();
    case W::DECISION:
      return b.getDecision().getMigrationId().cStr();
    case W::OUTCOME_QUERY:
      return b.getOutcomeQuery().getMigrationId().cStr();
    case W::OUTCOME:
      return b.getOutcome().getMigrationId().cStr();
    default:
      return {};
  }
}

MigrationCoordinator::MigrationCoordinator(std::function<MigrationDeps()> deps) : deps_(std::move(deps)) {}

MigrationCoordinator::~MigrationCoordinator() {
  std::shared_ptr<Running> run;
  {
    std::lock_guard lock(mu_);
    run = current_;
  }
  if (run) {
    run->inbox->close();
    if (run->thread.joinable()) run->thread.join();
  }
}

Result<std::shared_ptr<MigrationCoordinator::Running>> MigrationCoordinator::start(
    const std::string& id, const std::string& side,
    std::function<json(MigrationInbox&, MigrationProgress&)> body) {
  if (current_ && !current_->done.load())
    return makeError("migration " + current_->id + " (" + current_->side + " side) is still in progress",
                     "wait for it: 'ferry migrations list'");
  if (current_ && current_->thread.joinable()) current_->thread.join();
  auto run = std::make_shared<Running>();
  run->id = id;
  run->side = side;
  run->thread = std::thread([run, body = std::move(body)] {
    auto logger = log::get("node");
    json result;
    try {
      result = body(*run->inbox, *run->progress);
    } catch (const std::exception& e) {
      logger->error("migration {}: {}", run->id, e.what());
      result = {{"result", "in_doubt"}, {"reason", std::string("internal error: ") + e.what()}};
    }
    if (!run->progress->finished()) {
      json final_event = result;
      final_event["event"] = "result";
      final_event["final"] = true;
      run->progress->emit(final_event);
    }
    logger->info("migration {} ({} side): {}", run->id, run->side, result.value("result", std::string("?")));
    run->inbox->close();
    run->done = true;
  });
  current_ = run;
  return run;
}

Status MigrationCoordinator::route(protocol::Received message, Millis push_timeout) {
  auto body = message.message().getBody();
  auto which = body.which();
  auto id = migrationIdOf(body);
  std::shared_ptr<Running> run;
  {
    std::lock_guard lock(mu_);
    if (current_ && !current_->done.load() && current_->id == id) run = current_;
  }
  if (run) {
    if (!run->inbox->push(std::move(message), push_timeout))
      return makeError("migration " + id + " is not taking its messages: " + protocol::bodyName(which) +
                       " dropped");
    return okStatus();
  }
  if (which == W::PREPARE) {
    std::lock_guard lock(mu_);
    if (current_ && !current_->done.load()) {
      // One migration at a time: refuse the other one, saying why.
      auto deps = deps_();
      auto epoch = body.getPrepare().getEpoch();
      auto busy = current_->id;
      return deps.env->send(
          [&](wire::Message::Builder m) {
            auto r = m.getBody().initPrepareReply();
            r.setMigrationId(id);
            r.setEpoch(epoch == 0 ? 1 : epoch);
            r.setOk(false);
            auto p = r.initProblems(1);
            p[0].setWhat("migration " + busy + " is still in progress on " + deps.env->nodeName());
            p[0].setHint("wait for it ('ferry migrations list')");
            r.setHighestEpoch(deps.env->epoch());
          },
          Millis(5000));
    }
    auto started = start(id, "target", [this](MigrationInbox& inbox, MigrationProgress&) {
      return runTargetMigration(deps_(), inbox);
    });
    if (!started) return started.error();
    (void)(*started)->inbox->push(std::move(message), push_timeout);
    return okStatus();
  }
  return answerFromJournal(body, id);
}

// Nobody works on this migration: answer from the journal, so a peer that restarted
// (or lost an answer) learns how it ended.
Status MigrationCoordinator::answerFromJournal(wire::Message::Body::Reader body, const std::string& id) {
  auto deps = deps_();
  auto state = outcomeFor(*deps.journal, id);
  auto epoch = std::max<std::uint64_t>(1, deps.env->epoch());
  switch (body.which()) {
    case W::OUTCOME_QUERY:
      return deps.env->send(
          [&](wire::Message::Builder m) {
            auto o = m.getBody().initOutcome();
            o.setMigrationId(id);
            o.setEpoch(epoch);
            o.setState(state);
          },
          Millis(5000));
    case W::DECISION:
    case W::ABORT:
      if (state == wire::MigrationState::COMMITTED) {
        return deps.env->send(
            [&](wire::Message::Builder m) {
              auto c = m.getBody().initCommitted();
              c.setMigrationId(id);
              c.setEpoch(epoch);
            },
            Millis(5000));
      }
      if (state == wire::MigrationState::ROLLED_BACK || state == wire::MigrationState::UNKNOWN) {
        return deps.env->send(
            [&](wire::Message::Builder m) {
              auto r = m.getBody().initRolledBack();
              r.setMigrationId(id);
              r.setEpoch(epoch);
              r.setReason(state == wire::MigrationState::UNKNOWN ? "no record of this migration here"
                                                                 : "rolled back");
            },
            Millis(5000));
      }
      return okStatus();
    default:
      log::get("node")->debug("migration {}: {} arrived after it ended; dropped", id,
                              protocol::bodyName(body.which()));
      return okStatus();
  }
}

Result<std::shared_ptr<MigrationProgress>> MigrationCoordinator::startSource(const MigrateRequest& request) {
  MigrateRequest req = request;
  if (req.id.empty()) {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
    req.id = std::string("m-") + buf + "-" + deps_().env->nodeName();
  }
  std::lock_guard lock(mu_);
  auto r = start(req.id, "source", [this, req](MigrationInbox& inbox, MigrationProgress& progress) {
    return runSourceMigration(req, deps_(), inbox, progress);
  });
  if (!r) return r.error();
  return (*r)->progress;
}

Result<std::shared_ptr<MigrationProgress>> MigrationCoordinator::startSettle(const MigrationRecord& record,
                                                                             const std::string& outcome) {
  std::lock_guard lock(mu_);
  if (current_ && !current_->done.load() && current_->id == record.id)
    return makeError(
        "migration " + record.id + " is still being worked on (" + current_->side +
            " side); it asks its peer on its own",
        "bring the peer back, or stop this node and pass --outcome if the peer is gone for good");
  auto r = start(record.id, record.side,
                 [this, record, outcome](MigrationInbox& inbox, MigrationProgress& progress) -> json {
                   if (record.side == "source") {
                     return outcome.empty()
                                ? recoverSourceMigration(record, deps_(), inbox, progress)
                                : resolveSourceMigration(record, outcome, deps_(), inbox, progress);
                   }
                   return outcome.empty() ? recoverTargetMigration(record, deps_(), inbox)
                                          : resolveTargetMigration(record, outcome, deps_(), inbox);
                 });
  if (!r) return r.error();
  return (*r)->progress;
}

void MigrationCoordinator::recoverAtStart() {
  auto logger = log::get("node");
  auto list = deps_().journal->unfinished();
  if (!list) {
    logger->error("journal: {}", list.error().message());
    return;
  }
  if (list->empty()) return;
  const auto& record = list->front();  // one at a time; the next start settles the rest
  logger->warn("journal: migration {} ({} side) was {} when this node stopped; settling it", record.id,
               record.side, phaseName(record.phase));
  auto r = startSettle(record, "");
  if (!r) logger->error("cannot settle {}: {}", record.id, r.error().message());
}

std::optional<std::pair<std::string, std::string>> MigrationCoordinator::running() {
  std::lock_guard lock(mu_);
  if (current_ && !current_->done.load()) return std::make_pair(current_->id, current_->side);
  return std::nullopt;
}

void MigrationCoordinator::reap() {
  std::lock_guard lock(mu_);
  if (current_ && current_->done.load() && current_->thread.joinable()) current_->thread.join();
}

}  // namespace ferry::node
