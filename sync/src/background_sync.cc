#include "background_sync.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace ferry::sync::detail {

BackgroundSync::BackgroundSync(std::chrono::milliseconds drain_timeout, SyncFn sync)
    : drain_timeout_(drain_timeout), sync_(std::move(sync)) {}

BackgroundSync::~BackgroundSync() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  for (auto& j : queue_) ::close(j.fd);
}

void BackgroundSync::request(int fd, const std::string& path) {
  std::lock_guard lock(mu_);
  if (stop_) return;
  if (std::any_of(queue_.begin(), queue_.end(), [&](const Job& j) { return j.path == path; })) return;
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return;  // out of descriptors: the batch end's fsync covers the data
  queue_.push_back(Job{path, dup});
  if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
  work_cv_.notify_one();
}

void BackgroundSync::run() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    syncing_ = job.path;
    lock.unlock();
    errno = 0;
    int rc = sync_(job.fd);
    int err = errno;
    ::close(job.fd);
    lock.lock();
    syncing_.reset();
    ++completed_;
    if (rc != 0 && !failure_)
      failure_ =
          makeError("cannot make " + job.path + " durable on the replica: " + std::strerror(err),
                    "check the standby's disk (full, or failing); the batch is applied again on resume");
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

Status BackgroundSync::drain() {
  std::unique_lock lock(mu_);
  if (!idle_cv_.wait_for(lock, drain_timeout_, [&] { return queue_.empty() && !syncing_; }))
    return makeError("the replica's disk has not finished writing " +
                         (syncing_ ? *syncing_ : queue_.front().path) + " in " +
                         std::to_string(drain_timeout_.count() / 1000) + " s",
                     "check the standby's disk: writes to it are not completing");
  if (!failure_) return okStatus();
  Error e = std::move(*failure_);
  failure_.reset();
  return e;
}

std::uint64_t BackgroundSync::completed() const {
  std::lock_guard lock(mu_);
  return completed_;
}

}  // namespace ferry::sync::detail
