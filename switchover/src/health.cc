#include "health.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>

#include "http1.h"
#include "net.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Status checkOnce(const Endpoint& target, const HealthCheck& check) {
  const auto deadline = Clock::now() + check.attempt_timeout;
  auto addr = net::resolve(target);
  if (!addr.ok()) return addr.error();
  const net::ConnectStart cs = net::connectNonBlocking(*addr);
  if (cs.fd < 0) return makeError(target.str() + ": " + net::errnoText(cs.error));
  Fd fd(cs.fd);
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, remainingMs(deadline)) <= 0) {
    return makeError(target.str() + ": no TCP connection within " +
                     std::to_string(check.attempt_timeout.count()) + " ms");
  }
  int err = 0;
  socklen_t len = sizeof err;
  (void)::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) return makeError(target.str() + ": " + net::errnoText(err));
  if (check.path.empty()) return okStatus();

  const std::string request = "GET " + check.path + " HTTP/1.1\r\nHost: " + target.host +
                              "\r\nUser-Agent: ferry-switchover\r\nConnection: close\r\n\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    const ssize_t n = ::send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd w{fd.get(), POLLOUT, 0};
      if (::poll(&w, 1, remainingMs(deadline)) <= 0)
        return makeError(target.str() + ": could not send the check");
      continue;
    }
    return makeError(target.str() + ": " + net::errnoText(errno) + " while sending GET " + check.path);
  }
  std::string answer;
  char buf[4096];
  for (;;) {
    http1::ResponseHead head;
    std::string error;
    const http1::Parse parsed = http1::parseResponseHead(answer, "GET", head, error);
    if (parsed == http1::Parse::kBad) return makeError(target.str() + ": GET " + check.path + ": " + error);
    if (parsed == http1::Parse::kDone && head.status >= 200) {
      if (head.status < 400) return okStatus();
      return makeError(target.str() + ": GET " + check.path + " answered " + std::to_string(head.status));
    }
    if (parsed == http1::Parse::kDone) answer.erase(0, head.headBytes);  // 1xx: another head follows
    if (answer.size() > size_t{64} * 1024) return makeError(target.str() + ": answer head over 64 KiB");
    pollfd r{fd.get(), POLLIN, 0};
    if (::poll(&r, 1, remainingMs(deadline)) <= 0) {
      return makeError(target.str() + ": GET " + check.path + " got no answer within " +
                       std::to_string(check.attempt_timeout.count()) + " ms");
    }
    const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      answer.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    return makeError(target.str() + ": GET " + check.path + ": " +
                     (n == 0 ? std::string("closed before answering") : net::errnoText(errno)));
  }
}

Status waitHealthy(const Endpoint& target, const HealthCheck& check, Millis deadline) {
  const auto until = Clock::now() + deadline;
  int attempts = 0;
  Status last = okStatus();
  for (;;) {
    ++attempts;
    HealthCheck bounded = check;
    bounded.attempt_timeout =
        std::min(check.attempt_timeout, std::max(Millis(1), Millis(remainingMs(until))));
    last = checkOnce(target, bounded);
    if (last.ok()) return last;
    if (Clock::now() + check.interval >= until) break;
    std::this_thread::sleep_for(check.interval);
  }
  return makeError("the target " + target.str() + " is not healthy after " + std::to_string(attempts) +
                       " attempts in " + std::to_string(deadline.count()) +
                       " ms (last: " + last.error().what + ")",
                   "check that the service was restored on the target and answers " +
                       (check.path.empty() ? std::string("on its port") : "GET " + check.path));
}

}  // namespace ferry::switchover
