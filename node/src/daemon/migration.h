// Live migration between the two nodes (`ferry migrate`): the source's procedure and the
// target's, each a straight-line function on its own thread that reads like the
// protocol in protocol/schema/migration.capnp. They reach the rest of the node through
// MigrationEnv (the engine owns the mirror/replica and the link), the container runtime
// through checkpoint::ContainerRuntime, and durable state through the Journal — all
// small interfaces, so the unit tests run both sides in one process with fakes.
//
// The rules that keep the service from being lost or run twice:
// - Before the source sends Commit, any failure ends with the source thawing or
//   restoring its own containers (from the checkpoint it kept): rolled back.
// - After Commit, the source restores locally only once the target has said
//   RolledBack (its containers are gone). The target restores only after Commit and,
//   once it said Restored, removes its containers only on the source's rollback
//   decision. A side that cannot learn the other's state reports "in doubt" and waits
//   for `ferry migrations resolve`.
// - Every step is journaled before it is taken; a restarted node finishes or rolls back
//   what it knew (recover()).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ferry/base/error.h"
#include "ferry/checkpoint/runtime.h"
#include "ferry/protocol/peer_link.h"
#include "ferry/protocol/schema/message.capnp.h"
#include "ferry/switchover/driver.h"
#include "journal.h"

namespace ferry::node {

namespace wire = ferry::protocol::wire;
using Millis = std::chrono::milliseconds;

// Milliseconds from `a` to `b`, fractional (phase timings in reports).
inline double msBetween(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Writes `rec` durably and notes how long that took in report["journal_ms"][phase] (an
// fsync behind a busy disk shows there). The note reaches the journal with the next write.
inline Status putTimed(Journal& journal, const MigrationRecord& rec, nlohmann::json& report) {
  auto started = std::chrono::steady_clock::now();
  auto s = journal.put(rec);
  report["journal_ms"][phaseName(rec.phase)] = msBetween(started, std::chrono::steady_clock::now());
  return s;
}

struct MigrationSettings {
  std::filesystem::path data_dir;
  std::filesystem::path staging_dir;
  std::string health_url;  // empty: healthy when every container runs
  Millis health_timeout{30000};
  Millis prepare_timeout{30000};
  Millis presync_timeout{60000};
  Millis checkpoint_timeout{120000};
  Millis restore_timeout{120000};
  Millis commit_timeout{180000};
  Millis idle_timeout{60000};  // target: silence from the source while staging before it gives up
  std::size_t chunk_bytes = 1u << 20;
  bool compress = true;  // LZ4 chunks when it helps
  // Both hosts mount the data directory from one shared storage: nothing is mirrored,
  // the final "delta" is a syncfs of the data directory after the freeze, and the
  // target checks that it sees the source's marker file (sharedMarkerName) before it
  // agrees.
  bool shared_storage = false;
  // Traffic switch-over (switchover/driver.h); "none": traffic is not this node's job.
  std::string switch_driver = "none";
  std::string switch_service = "ref";
  std::uint16_t switch_port = 80;
  Millis switch_drain_timeout{2000};
  Millis switch_hold_timeout{10000};
};

// The final mirroring batch, sent after the freeze.
struct FinalDelta {
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  std::uint64_t bytes = 0;  // wire bytes of the batch
  double ms = 0;
};

// What the target's replica holds (published by the engine).
struct ReplicaView {
  bool consistent = false;
  bool final_applied = false;
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
};

// What a migration needs from the node it runs in (Node::Impl; a fake in the tests).
class MigrationEnv {
 public:
  virtual ~MigrationEnv() = default;
  [[nodiscard]] virtual std::string nodeName() const = 0;
  [[nodiscard]] virtual std::string peerName() const = 0;
  [[nodiscard]] virtual bool peerConnected() const = 0;
  // How many times the link has (re)connected: a change means messages may have been
  // lost with a restarted peer.
  [[nodiscard]] virtual std::uint64_t peerSessions() const = 0;
  [[nodiscard]] virtual bool isActive() const = 0;
  // Sends one message on the peer link (fill sets the body).
  virtual Status send(const std::function<void(wire::Message::Builder)>& fill, Millis timeout) = 0;
  // Waits until the peer has taken everything sent so far; fails early when the link
  // drops or reconnects (a restarted peer lost what it had not taken).
  virtual Status flushLink(Millis timeout) = 0;
  // Source: waits until the standby has acknowledged everything written so far.
  virtual Status flushMirror(Millis timeout) = 0;
  // Source: stops the mirroring rounds, runs the final round (after the freeze) and
  // returns its batch. resumeMirroring() undoes the stop (rollback).
  virtual Result<FinalDelta> finalDelta(Millis timeout) = 0;
  virtual void resumeMirroring() = 0;
  // Source with shared storage: makes everything written to the data directory durable
  // on the storage (syncfs) — the frozen processes cannot add to it.
  virtual Status syncSharedData(Millis timeout) = 0;
  // Target: what the replica holds; fenceReplica(true) refuses further batches (the
  // service now writes here); invalidateReplica() makes the next resume re-hash
  // everything (the restored service ran here and then was rolled back).
  virtual ReplicaView replicaView() = 0;
  virtual void fenceReplica(bool fenced) = 0;
  virtual void invalidateReplica() = 0;
  // The role swap after a commit; the epoch is the migration's (a fencing token).
  virtual Status becomeActive(std::uint64_t epoch) = 0;
  virtual Status becomeStandby(std::uint64_t epoch) = 0;
  [[nodiscard]] virtual std::uint64_t epoch() const = 0;  // the newest this node has seen
  // Bytes free for staging files.
  virtual Result<std::uint64_t> stagingFreeBytes() = 0;
  // Is this TCP port free on the host (nothing listening)?
  virtual bool hostPortFree(std::uint16_t port) = 0;
  // 2xx from url within timeout (retried until then).
  virtual Status waitHealthy(const std::string& url, Millis timeout) = 0;
};

// Messages for one migration, routed by the engine thread. Bounded in bytes: the
// engine waits (and so stops consuming the link, which pushes back on the peer)
// while a migration thread is behind.
class MigrationInbox {
 public:
  explicit MigrationInbox(std::size_t max_bytes = 64u << 20) : max_bytes_(max_bytes) {}
  // Blocks while full, at most `timeout`; false when it timed out or the inbox closed.
  bool push(protocol::Received message, Millis timeout);
  // The next message, or nullopt after `timeout` or when closed.
  std::optional<protocol::Received> pop(Millis timeout);
  void close();
  [[nodiscard]] bool closed();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<protocol::Received> queue_;
  std::size_t bytes_ = 0;
  std::size_t max_bytes_;
  bool closed_ = false;
};

// Progress of one migration: events for whoever watches (the CLI on the control
// socket), kept in order; the last one has "final": true.
class MigrationProgress {
 public:
  void emit(nlohmann::json event);
  // Events from index `from`, waiting at most `timeout` for at least one.
  std::vector<nlohmann::json> since(std::size_t from, Millis timeout);
  [[nodiscard]] bool finished();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nlohmann::json> events_;
  bool finished_ = false;
};

struct MigrateRequest {
  std::string id;  // empty: generated
  std::vector<std::string> containers;
  std::string to;             // the target node's name (must be this node's peer)
  std::string mode;           // stop-and-copy | pre-copy | post-copy | auto
  std::string switch_driver;  // empty: the node's configuration (`switch`)
};

// Failpoints for the tests: a named step fails ("source.after_freeze", "target.restore",
// "target.health" ...). Empty in production.
class Failpoints {
 public:
  virtual ~Failpoints() = default;
  virtual bool hit(const std::string& name) = 0;
};

struct MigrationDeps {
  MigrationEnv* env = nullptr;
  checkpoint::ContainerRuntime* runtime = nullptr;
  Journal* journal = nullptr;
  MigrationSettings settings;
  Failpoints* failpoints = nullptr;  // optional
  // Makes the traffic switch-over driver of a kind (proxy, haproxy, nginx, exec) from
  // the node's configuration and keys; unset: only "none" is possible.
  std::function<Result<std::unique_ptr<switchover::Driver>>(const std::string& kind)> switch_factory;
};

// The source side: everything from preflight to the role swap. Returns the report
// (also journaled); `result` is committed, rolled_back, refused or in_doubt.
nlohmann::json runSourceMigration(const MigrateRequest& request, MigrationDeps deps, MigrationInbox& inbox,
                                  MigrationProgress& progress);

// The target side, started by a Prepare the engine received (first message of inbox).
// Returns its view of the result (also journaled).
nlohmann::json runTargetMigration(MigrationDeps deps, MigrationInbox& inbox);

// After a restart: finish or roll back what the journal says was under way. Runs on
// the migration thread before anything else; messages for the record arrive in inbox.
nlohmann::json recoverSourceMigration(const MigrationRecord& record, MigrationDeps deps,
                                      MigrationInbox& inbox, MigrationProgress& progress);
nlohmann::json recoverTargetMigration(const MigrationRecord& record, MigrationDeps deps,
                                      MigrationInbox& inbox);

// `ferry migrations resolve ID --outcome committed|rolled-back`: the operator's word for
// a migration in doubt whose peer cannot be asked. Applies it on this node.
nlohmann::json resolveSourceMigration(const MigrationRecord& record, const std::string& outcome,
                                      MigrationDeps deps, MigrationInbox& inbox, MigrationProgress& progress);
nlohmann::json resolveTargetMigration(const MigrationRecord& record, const std::string& outcome,
                                      MigrationDeps deps, MigrationInbox& inbox);

// The file the source writes in a shared data directory for the target to find.
std::string sharedMarkerName(const std::string& migration_id);
// Writes it (0600) with a fresh random token and returns the token.
Result<std::string> writeSharedMarker(const std::filesystem::path& data_dir, const std::string& migration_id);
// Does the target see the source's marker with this token? Says why not.
Status checkSharedMarker(const std::filesystem::path& data_dir, const std::string& migration_id,
                         const std::string& token);
void removeSharedMarker(const std::filesystem::path& data_dir, const std::string& migration_id);

// Answer to an OutcomeQuery about `id` from the journal.
wire::MigrationState outcomeFor(Journal& journal, const std::string& id);

// Runs fn(items[i]) for every item at once (one thread each; items are few: the
// containers of one service) and returns the results in order. The runtime's calls
// are independent processes or requests, so a preflight costs one call, not N.
template <typename Item, typename Fn>
auto forEachConcurrently(const std::vector<Item>& items, Fn fn) -> std::vector<decltype(fn(items.front()))> {
  using R = decltype(fn(items.front()));
  std::vector<std::optional<R>> slots(items.size());
  std::vector<std::thread> threads;
  threads.reserve(items.size());
  for (std::size_t i = 0; i < items.size(); ++i)
    threads.emplace_back([&, i] { slots[i].emplace(fn(items[i])); });
  for (auto& t : threads) t.join();
  std::vector<R> out;
  out.reserve(items.size());
  for (auto& s : slots) out.push_back(std::move(*s));
  return out;
}

// The modes this build can run on these hosts: stop-and-copy always; the others need
// kernel features (soft-dirty for pre-copy, userfaultfd for post-copy) and are not built
// yet. Returns the mode to run, or why not.
Result<std::string> chooseMode(const std::string& requested);

}  // namespace ferry::node
