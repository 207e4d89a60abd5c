// Internal: makes a replica file's written data durable on a thread of its own while the
// rest of its batch is still arriving.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <unistd.h>

#include "ferry/base/error.h"

namespace ferry::sync::detail {

// Why: the batch end's fsync used to wait for everything the batch wrote. On a virtual
// disk that is slow however early writeback was started, because the host makes the
// data durable only when the guest flushes (an `fdatasync` of 100 MiB of scattered
// pages took 86–98 ms after the last write, measured in the lab; with a background
// `fdatasync` every 2 MiB the batch end's own fsync took under 1 ms).
//
// One worker thread, started on the first request. Requests queue an `fdatasync` of a
// duplicate of the caller's descriptor, so the caller may close its own at any time.
// A duplicate shares the open file description, and with it the kernel's record of a
// failed writeback: a failure the worker sees is not reported again to the caller's
// `fsync`. So the worker keeps the first failure, and `drain()` returns it: the batch end
// must call `drain()` before it believes its own fsyncs.
class BackgroundSync {
 public:
  // `sync` is ::fdatasync; tests pass a fake (returns -1 with errno set on failure).
  using SyncFn = std::function<int(int fd)>;
  explicit BackgroundSync(std::chrono::milliseconds drain_timeout = std::chrono::minutes(2),
                          SyncFn sync = ::fdatasync);
  ~BackgroundSync();  // waits for the sync under way; queued ones are dropped unsynced
  BackgroundSync(const BackgroundSync&) = delete;
  BackgroundSync& operator=(const BackgroundSync&) = delete;

  // Queues an fdatasync of the open file `fd` (`path` names it in an error). A request
  // for a path already waiting is merged into that one. If the descriptor cannot be
  // duplicated the request is dropped: the batch end's fsync still covers the data.
  void request(int fd, const std::string& path);

  // Waits until every queued sync has run, then returns the first failure since the last
  // drain (and forgets it). Gives up after the drain timeout with an error that says the
  // disk has not finished.
  Status drain();

  // Syncs run so far (for tests and statistics).
  std::uint64_t completed() const;

 private:
  struct Job {
    std::string path;
    int fd = -1;
  };
  void run();

  std::chrono::milliseconds drain_timeout_;
  SyncFn sync_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;  // the worker waits here for jobs
  std::condition_variable idle_cv_;  // drain() waits here for the queue to empty
  std::deque<Job> queue_;
  std::optional<std::string> syncing_;  // the path the worker is syncing now, if any
  bool stop_ = false;
  std::optional<Error> failure_;
  std::uint64_t completed_ = 0;
  std::thread worker_;  // last: started after the members it uses exist
};

}  // namespace ferry::sync::detail
