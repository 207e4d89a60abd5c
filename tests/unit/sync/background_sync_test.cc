// The replica's background sync (sync/src/background_sync.h): every request runs, a
// failure is reported once by the next drain and names the file, a drain gives up on a
// disk that does not finish, and a request for a file already waiting is merged.
#include "background_sync.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <mutex>

#include <gtest/gtest.h>

#include "sync_test_util.h"

namespace ferry::sync::detail {
namespace {

using namespace std::chrono_literals;
using testutil::TempTrees;

// A sync that blocks until released, counting the calls that entered.
class Gate {
 public:
  int sync(int /*fd*/) {
    std::unique_lock lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    return 0;
  }
  void waitEntered(int n) {
    std::unique_lock lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, 10s, [&] { return entered_ >= n; })) << "the worker never started a sync";
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

int openFile(const TempTrees& t, const std::string& name) {
  std::filesystem::create_directories(t.dst());
  int fd = ::open((t.dst() / name).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(::write(fd, "data", 4), 4);
  return fd;
}

TEST(BackgroundSync, RunsEveryRequestAndTheCallerMayCloseItsDescriptorAtOnce) {
  TempTrees t;
  BackgroundSync bg;
  for (const char* name : {"a", "b", "c"}) {
    int fd = openFile(t, name);
    bg.request(fd, name);
    ::close(fd);  // the worker synced a duplicate
  }
  Status s = bg.drain();
  EXPECT_TRUE(s.ok()) << s.error().message();
  EXPECT_EQ(bg.completed(), 3u);
}

TEST(BackgroundSync, AFileThatCannotBeSyncedIsReportedByTheNextDrainOnly) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  BackgroundSync bg;  // the real fdatasync: a pipe cannot be synced (EINVAL)
  bg.request(pipe_fds[0], "ib_logfile0");
  Status s = bg.drain();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().what.find("cannot make ib_logfile0 durable"), std::string::npos) << s.error().what;
  EXPECT_NE(s.error().what.find(std::strerror(EINVAL)), std::string::npos) << s.error().what;
  EXPECT_FALSE(s.error().hint.empty());
  EXPECT_TRUE(bg.drain().ok()) << "a failure is reported once";
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

struct FailureCase {
  const char* name;
  int error;
};

class BackgroundSyncFailure : public ::testing::TestWithParam<FailureCase> {};

TEST_P(BackgroundSyncFailure, TheFirstFailureIsKeptAndSaysWhichFileAndWhy) {
  TempTrees t;
  int err = GetParam().error;
  std::atomic<int> calls{0};
  BackgroundSync bg(2min, [&](int /*fd*/) {
    if (calls++ > 0) return 0;  // only the first sync fails
    errno = err;
    return -1;
  });
  int fd = openFile(t, "f");
  bg.request(fd, "data/first");
  ASSERT_FALSE(bg.drain().ok());
  bg.request(fd, "data/second");
  EXPECT_TRUE(bg.drain().ok());
  ::close(fd);

  BackgroundSync again(2min, [&](int /*fd*/) {
    errno = err;
    return -1;
  });
  fd = openFile(t, "g");
  again.request(fd, "data/first");
  again.request(fd, "data/second");
  Status s = again.drain();
  ::close(fd);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().what.find("data/first"), std::string::npos) << s.error().what;
  EXPECT_NE(s.error().what.find(std::strerror(err)), std::string::npos) << s.error().what;
}

INSTANTIATE_TEST_SUITE_P(Errors, BackgroundSyncFailure,
                         ::testing::Values(FailureCase{"DiskError", EIO}, FailureCase{"DiskFull", ENOSPC},
                                           FailureCase{"QuotaExceeded", EDQUOT}),
                         [](const ::testing::TestParamInfo<FailureCase>& p) { return p.param.name; });

// A BackgroundSync whose syncs wait at a gate, and one open file to sync. The gate opens
// before the worker is joined, so a failed assertion cannot hang the test.
struct Gated {
  explicit Gated(std::chrono::milliseconds drain_timeout)
      : bg(drain_timeout, [this](int f) { return gate.sync(f); }), fd(openFile(trees, "f")) {}
  ~Gated() {
    gate.open();
    ::close(fd);
  }
  Gated(const Gated&) = delete;
  Gated& operator=(const Gated&) = delete;
  TempTrees trees;
  Gate gate;
  BackgroundSync bg;
  int fd;
};

TEST(BackgroundSync, ADrainGivesUpOnADiskThatDoesNotFinish) {
  Gated g(50ms);
  g.bg.request(g.fd, "ibdata1");
  Status s = g.bg.drain();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().what.find("has not finished writing ibdata1"), std::string::npos) << s.error().what;
  g.gate.open();
  EXPECT_TRUE(g.bg.drain().ok());
  EXPECT_EQ(g.bg.completed(), 1u);
}

TEST(BackgroundSync, ARequestForAFileAlreadyWaitingIsMerged) {
  Gated g(10s);
  g.bg.request(g.fd, "a");
  g.gate.waitEntered(1);  // "a" is under way; the next ones wait
  for (int i = 0; i < 3; ++i) g.bg.request(g.fd, "b");
  g.bg.request(g.fd, "a");  // waiting is what merges, not "was seen before"
  g.gate.open();
  EXPECT_TRUE(g.bg.drain().ok());
  EXPECT_EQ(g.bg.completed(), 3u);  // a, b (once), a
}

std::size_t openDescriptors() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

TEST(BackgroundSync, DestroyingItWithSyncsQueuedNeitherHangsNorLeaks) {
  TempTrees t;
  Gate gate;
  int fd = openFile(t, "f");
  std::size_t before = openDescriptors();
  {
    BackgroundSync bg(10s, [&](int f) { return gate.sync(f); });
    bg.request(fd, "a");
    gate.waitEntered(1);
    bg.request(fd, "b");  // queued: closed unsynced by the destructor
    gate.open();
  }
  EXPECT_EQ(openDescriptors(), before) << "the duplicates of the synced and the queued request are closed";
  ::close(fd);
}

}  // namespace
}  // namespace ferry::sync::detail
