// One migration at a time per node: the coordinator owns the migration thread, routes
// the migration messages the engine receives to it (a Prepare with nothing running
// starts the target side), answers questions about finished migrations from the
// journal, and settles unfinished ones after a restart. The node daemon and the unit
// tests (two coordinators wired back to back) use it the same way.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "ferry/base/error.h"
#include "ferry/protocol/peer_link.h"
#include "migration.h"

namespace ferry::node {

class MigrationCoordinator {
 public:
  // `deps` is called on each new migration thread (settings may change between them).
  explicit MigrationCoordinator(std::function<MigrationDeps()> deps);
  ~MigrationCoordinator();  // closes the running migration's inbox and joins its thread
  MigrationCoordinator(const MigrationCoordinator&) = delete;
  MigrationCoordinator& operator=(const MigrationCoordinator&) = delete;

  // A received migration message (engine thread). Blocks while the migration's inbox is
  // full (at most `push_timeout`).
  Status route(protocol::Received message, Millis push_timeout = Millis(30000));

  // `ferry migrate`: starts the source side; follow the returned progress.
  Result<std::shared_ptr<MigrationProgress>> startSource(const MigrateRequest& request);
  // Settles a journaled migration: without `outcome` by asking the peer (recovery),
  // with it ("committed" | "rolled-back") on the operator's word.
  Result<std::shared_ptr<MigrationProgress>> startSettle(const MigrationRecord& record,
                                                         const std::string& outcome);
  // Node start: settles the oldest unfinished migration in the journal, if any.
  void recoverAtStart();

  // The migration in progress: (id, side), if any.
  std::optional<std::pair<std::string, std::string>> running();
  // Joins a finished migration thread (engine thread, now and then).
  void reap();

 private:
  struct Running;
  Result<std::shared_ptr<Running>> start(
      const std::string& id, const std::string& side,
      std::function<nlohmann::json(MigrationInbox&, MigrationProgress&)> body);
  Status answerFromJournal(wire::Message::Body::Reader body, const std::string& id);

  std::function<MigrationDeps()> deps_;
  std::mutex mu_;
  std::shared_ptr<Running> current_;
};

bool isMigrationBody(wire::Message::Body::Which which);
std::string migrationIdOf(wire::Message::Body::Reader body);

}  // namespace ferry::node
