#include "journal.h"

#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

namespace ferry::node {
namespace {

namespace fs = std::filesystem;

fs::path tempDb(const std::string& tag) {
  auto dir = fs::temp_directory_path() / ("ferry-journal-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir / "journal.db";
}

MigrationRecord record(const std::string& id, MigrationPhase phase) {
  MigrationRecord r;
  r.id = id;
  r.side = "source";
  r.peer = "b";
  r.epoch = 7;
  r.phase = phase;
  r.containers = {"web", "db"};
  r.mode = "stop-and-copy";
  r.report = {{"downtime_ms", 1234.5}};
  return r;
}

TEST(Journal, KeepsRecordsAcrossReopen) {
  auto path = tempDb("reopen");
  {
    auto j = Journal::open(path);
    ASSERT_TRUE(j.ok()) << j.error().message();
    ASSERT_TRUE((*j)->put(record("m1", MigrationPhase::kCommitting)).ok());
    ASSERT_TRUE((*j)->setValue("role", "standby").ok());
  }
  auto j = Journal::open(path);
  ASSERT_TRUE(j.ok());
  auto r = (*j)->get("m1");
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ((*r)->phase, MigrationPhase::kCommitting);
  EXPECT_EQ((*r)->containers, (std::vector<std::string>{"web", "db"}));
  EXPECT_EQ((*r)->epoch, 7u);
  EXPECT_DOUBLE_EQ((*r)->report.value("downtime_ms", 0.0), 1234.5);
  EXPECT_GT((*r)->updated_ms, 0);
  auto role = (*j)->value("role");
  ASSERT_TRUE(role.ok());
  EXPECT_EQ(role->value_or(""), "standby");
  EXPECT_FALSE((*j)->value("nothing")->has_value());
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
}

TEST(Journal, UnfinishedListsOnlyOpenPhases) {
  auto j = Journal::open(tempDb("unfinished"));
  ASSERT_TRUE(j.ok());
  const std::vector<std::pair<std::string, MigrationPhase>> rows = {
      {"done", MigrationPhase::kCommitted}, {"back", MigrationPhase::kRolledBack},
      {"no", MigrationPhase::kRefused},     {"doubt", MigrationPhase::kInDoubt},
      {"frozen", MigrationPhase::kFrozen},  {"restored", MigrationPhase::kRestored}};
  for (const auto& [id, phase] : rows) ASSERT_TRUE((*j)->put(record(id, phase)).ok());
  auto open = (*j)->unfinished();
  ASSERT_TRUE(open.ok());
  std::vector<std::string> ids;
  for (const auto& r : *open) ids.push_back(r.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"doubt", "frozen", "restored"}));
  auto all = (*j)->list(3);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3u);
}

TEST(Journal, PhaseNamesRoundTrip) {
  for (auto phase :
       {MigrationPhase::kPreparing, MigrationPhase::kFrozen, MigrationPhase::kCommitting,
        MigrationPhase::kStaging, MigrationPhase::kRestoring, MigrationPhase::kRestored,
        MigrationPhase::kDecidedCommit, MigrationPhase::kDecidedRollback, MigrationPhase::kInDoubt,
        MigrationPhase::kCommitted, MigrationPhase::kRolledBack, MigrationPhase::kRefused}) {
    auto back = phaseFromName(phaseName(phase));
    ASSERT_TRUE(back.ok()) << phaseName(phase);
    EXPECT_EQ(*back, phase);
  }
  EXPECT_FALSE(phaseFromName("teleported").ok());
}

}  // namespace
}  // namespace ferry::node
