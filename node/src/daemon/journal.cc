#include "journal.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <array>
#include <chrono>
#include <utility>

namespace ferry::node {
namespace {

constexpr std::array<std::pair<MigrationPhase, const char*>, 12> kPhaseNames{{
    {MigrationPhase::kPreparing, "preparing"},
    {MigrationPhase::kFrozen, "frozen"},
    {MigrationPhase::kCommitting, "committing"},
    {MigrationPhase::kStaging, "staging"},
    {MigrationPhase::kRestoring, "restoring"},
    {MigrationPhase::kRestored, "restored"},
    {MigrationPhase::kDecidedCommit, "decided-commit"},
    {MigrationPhase::kDecidedRollback, "decided-rollback"},
    {MigrationPhase::kInDoubt, "in-doubt"},
    {MigrationPhase::kCommitted, "committed"},
    {MigrationPhase::kRolledBack, "rolled-back"},
    {MigrationPhase::kRefused, "refused"},
}};

std::int64_t nowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  [[nodiscard]] bool ok() const { return stmt_ != nullptr; }
  void bind(int i, const std::string& v) { sqlite3_bind_text(stmt_, i, v.c_str(), -1, SQLITE_TRANSIENT); }
  void bind(int i, std::int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  int step() { return sqlite3_step(stmt_); }
  std::string text(int col) {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(p));
  }
  std::int64_t int64(int col) { return sqlite3_column_int64(stmt_, col); }
  [[nodiscard]] std::string error() const { return sqlite3_errmsg(db_); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr const char* kSelect =
    "SELECT id, side, peer, epoch, phase, containers, mode, started_ms, updated_ms, reason, report FROM "
    "migrations ";

Result<MigrationRecord> readRow(Statement& s) {
  MigrationRecord r;
  r.id = s.text(0);
  r.side = s.text(1);
  r.peer = s.text(2);
  r.epoch = static_cast<std::uint64_t>(s.int64(3));
  auto phase = phaseFromName(s.text(4));
  if (!phase) return phase.error();
  r.phase = *phase;
  auto containers = nlohmann::json::parse(s.text(5), nullptr, false);
  if (containers.is_array()) {
    for (const auto& c : containers)
      if (c.is_string()) r.containers.push_back(c.get<std::string>());
  }
  r.mode = s.text(6);
  r.started_ms = s.int64(7);
  r.updated_ms = s.int64(8);
  r.reason = s.text(9);
  auto report = nlohmann::json::parse(s.text(10), nullptr, false);
  r.report = report.is_discarded() ? nlohmann::json::object() : report;
  return r;
}

}  // namespace

std::string phaseName(MigrationPhase phase) {
  for (const auto& [p, name] : kPhaseNames)
    if (p == phase) return name;
  return "unknown";
}

Result<MigrationPhase> phaseFromName(const std::string& name) {
  for (const auto& [p, n] : kPhaseNames)
    if (name == n) return p;
  return makeError("journal holds an unknown migration phase '" + name + "'",
                   "was it written by a newer ferry? upgrade this node");
}

bool isTerminal(MigrationPhase phase) {
  return phase == MigrationPhase::kCommitted || phase == MigrationPhase::kRolledBack ||
         phase == MigrationPhase::kRefused;
}

nlohmann::json toJson(const MigrationRecord& r) {
  return {{"id", r.id},
          {"side", r.side},
          {"peer", r.peer},
          {"epoch", r.epoch},
          {"state", phaseName(r.phase)},
          {"containers", r.containers},
          {"mode", r.mode},
          {"started_ms", r.started_ms},
          {"updated_ms", r.updated_ms},
          {"reason", r.reason},
          {"report", r.report}};
}

Journal::Journal(sqlite3* db) : db_(db) {}

Journal::~Journal() {
  sqlite3_close(db_);
}

Result<std::unique_ptr<Journal>> Journal::open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return makeError("cannot open the journal " + path.string() + ": " + msg,
                     "check that the state directory exists and is writable by the node");
  }
  ::chmod(path.c_str(), 0600);
  sqlite3_busy_timeout(db, 5000);
  auto journal = std::unique_ptr<Journal>(new Journal(db));
  // WAL keeps readers off the writer's back; FULL makes every commit durable.
  for (const char* sql :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
        "CREATE TABLE IF NOT EXISTS migrations ("
        " id TEXT PRIMARY KEY, side TEXT NOT NULL, peer TEXT NOT NULL, epoch INTEGER NOT NULL,"
        " phase TEXT NOT NULL, containers TEXT NOT NULL, mode TEXT NOT NULL,"
        " started_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, reason TEXT NOT NULL,"
        " report TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)"}) {
    auto s = journal->exec(sql);
    if (!s) return makeError("journal " + path.string() + ": " + s.error().what);
  }
  return journal;
}

Status Journal::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err != nullptr ? err : "unknown error";
    sqlite3_free(err);
    return makeError("sqlite: " + msg + " (in: " + sql.substr(0, 60) + ")");
  }
  return okStatus();
}

Status Journal::put(MigrationRecord r) {
  std::lock_guard lock(mu_);
  r.updated_ms = nowUnixMs();
  if (r.started_ms == 0) r.started_ms = r.updated_ms;
  Statement s(db_,
              "INSERT OR REPLACE INTO migrations (id, side, peer, epoch, phase, containers, mode, started_ms,"
              " updated_ms, reason, report) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  if (!s.ok()) return makeError("journal: " + s.error());
  s.bind(1, r.id);
  s.bind(2, r.side);
  s.bind(3, r.peer);
  s.bind(4, static_cast<std::int64_t>(r.epoch));
  s.bind(5, phaseName(r.phase));
  s.bind(6, nlohmann::json(r.containers).dump());
  s.bind(7, r.mode);
  s.bind(8, r.started_ms);
  s.bind(9, r.updated_ms);
  s.bind(10, r.reason);
  s.bind(11, r.report.dump());
  if (s.step() != SQLITE_DONE)
    return makeError("journal: cannot record migration " + r.id + ": " + s.error(),
                     "is the state directory's disk full?");
  return okStatus();
}

Result<std::optional<MigrationRecord>> Journal::get(const std::string& id) {
  std::lock_guard lock(mu_);
  Statement s(db_, (std::string(kSelect) + "WHERE id = ?1").c_str());
  if (!s.ok()) return makeError("journal: " + s.error());
  s.bind(1, id);
  int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<MigrationRecord>{};
  if (rc != SQLITE_ROW) return makeError("journal: " + s.error());
  auto r = readRow(s);
  if (!r) return r.error();
  return std::optional<MigrationRecord>{std::move(*r)};
}

Result<std::vector<MigrationRecord>> Journal::list(std::size_t limit) {
  std::lock_guard lock(mu_);
  Statement s(db_, (std::string(kSelect) + "ORDER BY started_ms DESC, id DESC LIMIT ?1").c_str());
  if (!s.ok()) return makeError("journal: " + s.error());
  s.bind(1, static_cast<std::int64_t>(limit));
  std::vector<MigrationRecord> out;
  int rc = 0;
  while ((rc = s.step()) == SQLITE_ROW) {
    auto r = readRow(s);
    if (!r) return r.error();
    out.push_back(std::move(*r));
  }
  if (rc != SQLITE_DONE) return makeError("journal: " + s.error());
  return out;
}

Result<std::vector<MigrationRecord>> Journal::unfinished() {
  std::lock_guard lock(mu_);
  Statement s(db_, (std::string(kSelect) +
                    "WHERE phase NOT IN ('committed', 'rolled-back', 'refused') ORDER BY started_ms ASC")
                       .c_str());
  if (!s.ok()) return makeError("journal: " + s.error());
  std::vector<MigrationRecord> out;
  int rc = 0;
  while ((rc = s.step()) == SQLITE_ROW) {
    auto r = readRow(s);
    if (!r) return r.error();
    out.push_back(std::move(*r));
  }
  if (rc != SQLITE_DONE) return makeError("journal: " + s.error());
  return out;
}

Result<std::optional<std::string>> Journal::value(const std::string& key) {
  std::lock_guard lock(mu_);
  Statement s(db_, "SELECT value FROM node_state WHERE key = ?1");
  if (!s.ok()) return makeError("journal: " + s.error());
  s.bind(1, key);
  int rc = s.step();
  if (rc == SQLITE_DONE) return std::optional<std::string>{};
  if (rc != SQLITE_ROW) return makeError("journal: " + s.error());
  return std::optional<std::string>{s.text(0)};
}

Status Journal::setValue(const std::string& key, const std::string& value) {
  std::lock_guard lock(mu_);
  Statement s(db_, "INSERT OR REPLACE INTO node_state (key, value) VALUES (?1, ?2)");
  if (!s.ok()) return makeError("journal: " + s.error());
  s.bind(1, key);
  s.bind(2, value);
  if (s.step() != SQLITE_DONE) return makeError("journal: cannot record " + key + ": " + s.error());
  return okStatus();
}

}  // namespace ferry::node
