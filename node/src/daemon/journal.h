// The node's journal: every migration this node took part in, and the node's own
// durable facts (its role, its epoch). SQLite with synchronous=FULL: a state is on
// disk before the step that depends on it is taken, so a node that restarts can
// finish or roll back every migration it knew (node/README.md, "Recovery").
// Thread-safe (one mutex); every call is short.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"

struct sqlite3;

namespace ferry::node {

// Where a migration stands on this node. The names are what `ferry migrations` shows.
enum class MigrationPhase {
  kPreparing,        // both: preflight, images; nothing frozen
  kFrozen,           // source: containers frozen / being dumped; Commit not sent
  kCommitting,       // source: Commit sent, waiting for the target's answer
  kStaging,          // target: receiving images and checkpoints
  kRestoring,        // target: restoring
  kRestored,         // target: running and healthy, waiting for the source's decision
  kDecidedCommit,    // source: decision journaled, not yet confirmed by the target
  kDecidedRollback,  // source: decision journaled, target not yet clean
  kInDoubt,          // the outcome could not be learned; `ferry migrations resolve`
  kCommitted,        // terminal
  kRolledBack,       // terminal: the service runs on the source as before
  kRefused,          // terminal: stopped by a preflight check, nothing was frozen
};
std::string phaseName(MigrationPhase phase);
Result<MigrationPhase> phaseFromName(const std::string& name);
bool isTerminal(MigrationPhase phase);

struct MigrationRecord {
  std::string id;
  std::string side;  // "source" | "target"
  std::string peer;
  std::uint64_t epoch = 0;
  MigrationPhase phase = MigrationPhase::kPreparing;
  std::vector<std::string> containers;
  std::string mode;
  std::int64_t started_ms = 0;  // unix ms
  std::int64_t updated_ms = 0;
  std::string reason;                                // why it rolled back / was refused / is in doubt
  nlohmann::json report = nlohmann::json::object();  // the migration's summary (phases, stats)
};

class Journal {
 public:
  // Opens (creating) the database file; 0600.
  static Result<std::unique_ptr<Journal>> open(const std::filesystem::path& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // Inserts or replaces the record (sets updated_ms), durably.
  Status put(MigrationRecord record);
  Result<std::optional<MigrationRecord>> get(const std::string& id);
  // Newest first.
  Result<std::vector<MigrationRecord>> list(std::size_t limit = 50);
  // Every record whose phase is not terminal, oldest first.
  Result<std::vector<MigrationRecord>> unfinished();

  Result<std::optional<std::string>> value(const std::string& key);
  Status setValue(const std::string& key, const std::string& value);

 private:
  explicit Journal(sqlite3* db);
  Status exec(const std::string& sql);
  std::mutex mu_;
  sqlite3* db_;
};

nlohmann::json toJson(const MigrationRecord& record);

}  // namespace ferry::node
