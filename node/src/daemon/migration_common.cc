// The pieces both sides of a migration share: inbox, progress, modes, outcomes.
#include "migration.h"

#include <sys/random.h>

#include <array>
#include <cstdio>

#include "ferry/base/files.h"

namespace ferry::node {

bool MigrationInbox::push(protocol::Received message, Millis timeout) {
  std::unique_lock lock(mu_);
  std::size_t size = message.frame ? message.frame->sizeBytes() : 0;
  if (!cv_.wait_for(lock, timeout, [&] { return closed_ || bytes_ == 0 || bytes_ + size <= max_bytes_; }))
    return false;
  if (closed_) return false;
  bytes_ += size;
  queue_.push_back(std::move(message));
  cv_.notify_all();
  return true;
}

std::optional<protocol::Received> MigrationInbox::pop(Millis timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return closed_ || !queue_.empty(); })) return std::nullopt;
  if (queue_.empty()) return std::nullopt;
  auto m = std::move(queue_.front());
  queue_.pop_front();
  bytes_ -= m.frame ? m.frame->sizeBytes() : 0;
  cv_.notify_all();
  return m;
}

void MigrationInbox::close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

bool MigrationInbox::closed() {
  std::lock_guard lock(mu_);
  return closed_;
}

void MigrationProgress::emit(nlohmann::json event) {
  std::lock_guard lock(mu_);
  if (event.value("final", false)) finished_ = true;
  events_.push_back(std::move(event));
  cv_.notify_all();
}

std::vector<nlohmann::json> MigrationProgress::since(std::size_t from, Millis timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return events_.size() > from; });
  if (from >= events_.size()) return {};
  return {events_.begin() + static_cast<std::ptrdiff_t>(from), events_.end()};
}

bool MigrationProgress::finished() {
  std::lock_guard lock(mu_);
  return finished_;
}

Result<std::string> chooseMode(const std::string& requested) {
  if (requested.empty() || requested == "auto" || requested == "stop-and-copy")
    return std::string("stop-and-copy");
  if (requested == "pre-copy") {
    return makeError(
        "--mode pre-copy is not available: iterative memory pre-copy needs the kernel's soft-dirty "
        "page tracking (CONFIG_MEM_SOFT_DIRTY; `criu check --feature mem_dirty_track`), and ferry "
        "does not implement it yet",
        "use --mode stop-and-copy (or auto); the data directory is pre-copied continuously anyway");
  }
  if (requested == "post-copy") {
    return makeError("--mode post-copy (lazy pages over userfaultfd) is not implemented yet",
                     "use --mode stop-and-copy (or auto)");
  }
  return makeError("unknown --mode '" + requested + "'", "use stop-and-copy, pre-copy, post-copy or auto");
}

wire::MigrationState outcomeFor(Journal& journal, const std::string& id) {
  auto r = journal.get(id);
  if (!r || !r->has_value()) return wire::MigrationState::UNKNOWN;
  switch ((*r)->phase) {
    case MigrationPhase::kPreparing:
      return wire::MigrationState::PREPARING;
    case MigrationPhase::kFrozen:
    case MigrationPhase::kStaging:
      return wire::MigrationState::STAGING;
    case MigrationPhase::kCommitting:
    case MigrationPhase::kRestoring:
      return wire::MigrationState::RESTORING;
    case MigrationPhase::kRestored:
      return wire::MigrationState::RESTORED;
    case MigrationPhase::kDecidedCommit:
      return wire::MigrationState::DECIDED_COMMIT;
    case MigrationPhase::kDecidedRollback:
      return wire::MigrationState::DECIDED_ROLLBACK;
    case MigrationPhase::kInDoubt:
      return wire::MigrationState::IN_DOUBT;
    case MigrationPhase::kCommitted:
      return wire::MigrationState::COMMITTED;
    case MigrationPhase::kRolledBack:
    case MigrationPhase::kRefused:
      return wire::MigrationState::ROLLED_BACK;
  }
  return wire::MigrationState::UNKNOWN;
}

std::string sharedMarkerName(const std::string& migration_id) {
  return ".ferry-shared-" + migration_id;
}

Result<std::string> writeSharedMarker(const std::filesystem::path& data_dir,
                                      const std::string& migration_id) {
  std::array<unsigned char, 16> raw{};
  if (::getrandom(raw.data(), raw.size(), 0) != static_cast<ssize_t>(raw.size()))
    return makeError("cannot read random bytes for the shared-storage marker");
  std::string token;
  for (unsigned char b : raw) {
    char hex[3];
    std::snprintf(hex, sizeof hex, "%02x", b);
    token += hex;
  }
  auto path = data_dir / sharedMarkerName(migration_id);
  if (auto s = writeFileAtomic(path, token + "\n", 0600); !s) {
    return makeError("cannot write the shared-storage marker " + path.string() + ": " + s.error().message(),
                     "check that the data directory is writable on this node");
  }
  return token;
}

Status checkSharedMarker(const std::filesystem::path& data_dir, const std::string& migration_id,
                         const std::string& token) {
  auto path = data_dir / sharedMarkerName(migration_id);
  auto text = readFile(path);
  auto hint = "mount the same shared storage at " + data_dir.string() +
              " on both hosts, or set shared_storage = off on both so the nodes mirror it";
  if (!text) return makeError("the data directory is not shared: " + path.string() + " is not here", hint);
  std::string seen = *text;
  while (!seen.empty() && (seen.back() == '\n' || seen.back() == '\r')) seen.pop_back();
  if (token.empty() || seen != token)
    return makeError("the data directory is not shared: " + path.string() + " holds another token", hint);
  return okStatus();
}

void removeSharedMarker(const std::filesystem::path& data_dir, const std::string& migration_id) {
  std::error_code ec;
  std::filesystem::remove(data_dir / sharedMarkerName(migration_id), ec);
}

}  // namespace ferry::node
