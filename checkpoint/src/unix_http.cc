#include "ferry/checkpoint/unix_http.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstring>
#include <thread>
#include <vector>

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kFileChunk = std::size_t{256} * 1024;
constexpr std::size_t kRecvChunk = std::size_t{64} * 1024;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

std::string errnoText(int e) {
  return std::strerror(e);
}

int msUntil(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

std::string hex(std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  do {
    out.insert(out.begin(), kDigits[n & 15U]);
    n >>= 4U;
  } while (n != 0);
  return out;
}

// write() to a FIFO whose reader left raises SIGPIPE: block it around the write and
// take back a SIGPIPE the write caused, so the process is never killed by it.
ssize_t writeNoSigpipe(int fd, const char* data, std::size_t size) {
  sigset_t pipe_set;
  sigset_t old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  (void)sigpending(&pending);
  const bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  (void)pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  ssize_t n = ::write(fd, data, size);
  int saved = errno;
  if (n < 0 && saved == EPIPE && !was_pending) {
    timespec zero{};
    (void)sigtimedwait(&pipe_set, nullptr, &zero);
  }
  (void)pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  errno = saved;
  return n;
}

class Exchange {
 public:
  Exchange(const fs::path& socket, const UnixHttpRequest& request)
      : socket_(socket),
        req_(request),
        started_(Clock::now()),
        deadline_(started_ + request.timeout),
        connect_deadline_(std::min(deadline_, started_ + request.connect_timeout)) {}

  UnixHttpResult run() {
    if (connect() && send()) (void)receive();
    res_.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started_);
    return std::move(res_);
  }

 private:
  bool fail(HttpFailure failure, std::string detail) {
    res_.failure = failure;
    res_.detail = std::move(detail);
    return false;
  }

  bool timedOut(Clock::time_point deadline) {
    const auto limit = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - started_);
    return fail(HttpFailure::kTimeout, "deadline of " + std::to_string(limit.count()) + " ms passed while " +
                                           std::string(phaseName(res_.phase)));
  }

  bool connect() {
    res_.phase = HttpPhase::kConnecting;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = socket_.string();
    if (path.empty() || path.size() >= sizeof(addr.sun_path))
      return fail(HttpFailure::kLocal, "socket path '" + path + "' is empty or longer than " +
                                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    sock_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (sock_.get() < 0) return fail(HttpFailure::kLocal, "socket(AF_UNIX): " + errnoText(errno));
    while (true) {
      if (::connect(sock_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return true;
      int e = errno;
      if (e == EINTR) continue;
      if (e == ENOENT || e == ENOTDIR) return fail(HttpFailure::kNoSocket, "no socket at " + path);
      if (e == ECONNREFUSED)
        return fail(HttpFailure::kRefused, "connection refused: nobody listens on " + path);
      if (e == EACCES || e == EPERM)
        return fail(HttpFailure::kRefused, "permission denied connecting to " + path);
      if (e == EAGAIN) {
        // The listener's backlog is full: try again until the connect deadline.
        if (Clock::now() >= connect_deadline_) return timedOut(connect_deadline_);
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      if (e == EINPROGRESS) {
        pollfd p{sock_.get(), POLLOUT, 0};
        int rc = ::poll(&p, 1, msUntil(connect_deadline_));
        if (rc == 0) return timedOut(connect_deadline_);
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(sock_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err == 0) return true;
        if (err == ECONNREFUSED)
          return fail(HttpFailure::kRefused, "connection refused: nobody listens on " + path);
        return fail(HttpFailure::kConnect, "connect to " + path + ": " + errnoText(err));
      }
      return fail(HttpFailure::kConnect, "connect to " + path + ": " + errnoText(e));
    }
  }

  // The request head; opens the body file and picks its framing.
  bool head(std::string& out) {
    out = req_.method + " " + req_.target +
          " HTTP/1.1\r\nHost: d\r\nUser-Agent: ferry\r\nConnection: close\r\n";
    for (const auto& [k, v] : req_.headers) out += k + ": " + v + "\r\n";
    if (!req_.body_file.empty()) {
      body_fd_.reset(::open(req_.body_file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
      if (body_fd_.get() < 0)
        return fail(HttpFailure::kLocal, "cannot open " + req_.body_file.string() + ": " + errnoText(errno));
      struct stat st {};
      if (::fstat(body_fd_.get(), &st) != 0)
        return fail(HttpFailure::kLocal, "cannot stat " + req_.body_file.string() + ": " + errnoText(errno));
      if (S_ISREG(st.st_mode)) {
        body_left_ = static_cast<std::uint64_t>(st.st_size);
        out += "Content-Length: " + std::to_string(body_left_) + "\r\n";
      } else {
        chunked_ = true;
        out += "Transfer-Encoding: chunked\r\n";
      }
      body_from_file_ = true;
    } else if (!req_.body.empty() || req_.method == "POST" || req_.method == "PUT") {
      out += "Content-Length: " + std::to_string(req_.body.size()) + "\r\n";
    }
    out += "\r\n";
    if (!body_from_file_) out += req_.body;
    return true;
  }

  // Refills `out` from the body file. Sets `wait_file` when a FIFO has nothing yet;
  // `body_done_` once the last piece (or the final chunk) is in `out`.
  bool refill(std::string& out, bool& wait_file) {
    wait_file = false;
    std::size_t want =
        chunked_ ? kFileChunk : static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, kFileChunk));
    if (!chunked_ && want == 0) {
      body_done_ = true;
      return true;
    }
    buf_.resize(kFileChunk);
    ssize_t n = ::read(body_fd_.get(), buf_.data(), want);
    if (n < 0) {
      if (errno == EINTR) return true;
      if (errno == EAGAIN) {
        wait_file = true;
        return true;
      }
      return fail(HttpFailure::kLocal, "cannot read " + req_.body_file.string() + ": " + errnoText(errno));
    }
    const auto got = static_cast<std::size_t>(n);
    if (chunked_) {
      if (got == 0) {
        out = "0\r\n\r\n";
        body_done_ = true;
      } else {
        out = hex(got) + "\r\n";
        out.append(buf_.data(), got);
        out += "\r\n";
      }
      return true;
    }
    if (got == 0)
      return fail(HttpFailure::kLocal, req_.body_file.string() + " shrank while it was sent (" +
                                           std::to_string(body_left_) + " bytes missing)");
    out.assign(buf_.data(), got);
    body_left_ -= got;
    return true;
  }

  bool send() {
    std::string out;
    if (!head(out)) return false;
    res_.phase = HttpPhase::kSending;
    body_done_ = !body_from_file_;
    std::size_t off = 0;
    std::size_t head_left = out.size() - (body_from_file_ ? 0 : req_.body.size());
    while (true) {
      bool wait_file = false;
      if (off == out.size()) {
        if (body_done_) break;
        out.clear();
        off = 0;
        if (!refill(out, wait_file)) return false;
        if (out.empty() && !wait_file) continue;  // EINTR, or the last piece was empty
      }
      std::array<pollfd, 2> p{};
      p[0] = {sock_.get(), static_cast<short>(POLLIN | (off < out.size() ? POLLOUT : 0)), 0};
      nfds_t n = 1;
      if (wait_file) {
        p[1] = {body_fd_.get(), POLLIN, 0};
        n = 2;
      }
      int rc = ::poll(p.data(), n, msUntil(deadline_));
      if (rc < 0) {
        if (errno == EINTR) continue;
        return fail(HttpFailure::kLocal, "poll: " + errnoText(errno));
      }
      if (rc == 0) return timedOut(deadline_);
      if ((p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0 && (p[0].revents & POLLOUT) == 0) {
        // The server answered (or closed) before taking the whole request: read what it said.
        answered_early_ = true;
        return true;
      }
      if ((p[0].revents & POLLOUT) != 0 && off < out.size()) {
        ssize_t sent = ::send(sock_.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
          if (errno == EINTR || errno == EAGAIN) continue;
          if (errno == EPIPE || errno == ECONNRESET) {
            answered_early_ = true;
            return true;
          }
          return fail(HttpFailure::kClosed, "sending the request: " + errnoText(errno));
        }
        const auto s = static_cast<std::size_t>(sent);
        // Count body bytes only (the head goes first in `out`).
        std::size_t head_part = std::min(s, head_left);
        head_left -= head_part;
        res_.sent_body_bytes += s - head_part;
        off += s;
      }
    }
    return true;
  }

  bool openResponseFile() {
    while (true) {
      out_fd_.reset(
          ::open(req_.response_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NONBLOCK, 0600));
      if (out_fd_.get() >= 0) break;
      if (errno == EINTR) continue;
      if (errno == ENXIO) {  // a FIFO without a reader yet
        if (Clock::now() >= deadline_)
          return fail(HttpFailure::kTimeout,
                      "nobody opened the FIFO " + req_.response_file.string() + " to read");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      return fail(HttpFailure::kLocal,
                  "cannot create " + req_.response_file.string() + ": " + errnoText(errno));
    }
    struct stat st {};
    out_is_fifo_ = ::fstat(out_fd_.get(), &st) == 0 && S_ISFIFO(st.st_mode);
    return true;
  }

  bool writeResponse(std::string_view data) {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = out_is_fifo_ ? writeNoSigpipe(out_fd_.get(), data.data() + off, data.size() - off)
                               : ::write(out_fd_.get(), data.data() + off, data.size() - off);
      if (n >= 0) {
        off += static_cast<std::size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{out_fd_.get(), POLLOUT, 0};
        if (::poll(&p, 1, msUntil(deadline_)) == 0)
          return fail(HttpFailure::kTimeout,
                      "the reader of " + req_.response_file.string() + " stopped draining it");
        continue;
      }
      return fail(HttpFailure::kLocal,
                  "cannot write " + req_.response_file.string() + ": " + errnoText(errno));
    }
    return true;
  }

  bool sink(std::string_view data) {
    if (data.empty()) return true;
    res_.body_bytes += data.size();
    if (to_file_) {
      if (!writeResponse(data)) return false;
      if (req_.on_response_data) req_.on_response_data(data);
      return true;
    }
    if (res_.body.size() + data.size() > req_.max_body_in_memory)
      return fail(HttpFailure::kBadResponse,
                  "the answer is larger than " + std::to_string(req_.max_body_in_memory) + " bytes");
    res_.body.append(data);
    return true;
  }

  // Takes body bytes; sets complete_ at the end of the body.
  bool body(std::string_view data) {
    switch (framing_.kind) {
      case http::Framing::kNone:
        complete_ = true;
        return true;
      case http::Framing::kLength: {
        auto take = static_cast<std::size_t>(std::min<std::uint64_t>(length_left_, data.size()));
        length_left_ -= take;
        if (length_left_ == 0) complete_ = true;
        return sink(data.substr(0, take));
      }
      case http::Framing::kChunked: {
        decoded_.clear();
        std::size_t used = 0;
        auto s = decoder_.feed(data, decoded_, used);
        if (s == http::ParseState::kBad)
          return fail(HttpFailure::kBadResponse,
                      "malformed chunked encoding after " + std::to_string(res_.body_bytes) + " body bytes");
        if (s == http::ParseState::kComplete) complete_ = true;
        return sink(decoded_);
      }
      case http::Framing::kClose:
        return sink(data);
    }
    return true;
  }

  bool onHead() {
    auto h = http::parseResponseHead(head_buf_);
    if (h.state == http::ParseState::kIncomplete) return true;
    if (h.state == http::ParseState::kBad) {
      return fail(
          HttpFailure::kBadResponse,
          "not an HTTP answer: '" + head_buf_.substr(0, std::min<std::size_t>(head_buf_.size(), 80)) + "'");
    }
    res_.status = h.head.status;
    res_.headers = std::move(h.head.headers);
    head_done_ = true;
    auto framing =
        http::responseFraming(http::ResponseHead{res_.status, res_.headers}, req_.method == "HEAD");
    if (!framing) return fail(HttpFailure::kBadResponse, "malformed Content-Length");
    framing_ = *framing;
    length_left_ = framing_.length;
    to_file_ = !req_.response_file.empty() && res_.status >= 200 && res_.status < 300;
    if (to_file_ && !openResponseFile()) return false;
    if (framing_.kind == http::Framing::kNone ||
        (framing_.kind == http::Framing::kLength && framing_.length == 0)) {
      complete_ = true;
      return true;
    }
    std::string rest = head_buf_.substr(h.bytes);
    head_buf_.clear();
    return body(rest);
  }

  bool receive() {
    res_.phase = HttpPhase::kWaiting;
    buf_.resize(kRecvChunk);
    while (!complete_) {
      pollfd p{sock_.get(), POLLIN, 0};
      int rc = ::poll(&p, 1, msUntil(deadline_));
      if (rc < 0) {
        if (errno == EINTR) continue;
        return fail(HttpFailure::kLocal, "poll: " + errnoText(errno));
      }
      if (rc == 0) return timedOut(deadline_);
      ssize_t n = ::recv(sock_.get(), buf_.data(), buf_.size(), 0);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        if (errno != ECONNRESET)
          return fail(HttpFailure::kClosed, "receiving the answer: " + errnoText(errno));
        n = 0;  // a reset ends the answer like a close
      }
      if (n == 0) return onClose();
      std::string_view data(buf_.data(), static_cast<std::size_t>(n));
      res_.phase = HttpPhase::kReceiving;
      if (!head_done_) {
        head_buf_.append(data);
        if (!onHead()) return false;
      } else if (!body(data)) {
        return false;
      }
    }
    res_.phase = HttpPhase::kDone;
    return true;
  }

  bool onClose() {
    if (!head_done_) {
      std::string what = head_buf_.empty()
                             ? "the server closed the connection without an answer"
                             : "the server closed the connection in the middle of the answer head";
      if (answered_early_)
        what +=
            " (it stopped reading the request after " + std::to_string(res_.sent_body_bytes) + " body bytes)";
      return fail(HttpFailure::kClosed, what);
    }
    if (framing_.kind == http::Framing::kClose) {
      res_.phase = HttpPhase::kDone;
      complete_ = true;
      return true;
    }
    return fail(HttpFailure::kClosed, "the server closed the connection after " +
                                          std::to_string(res_.body_bytes) +
                                          " body bytes, before the end of the answer");
  }

  const fs::path& socket_;
  const UnixHttpRequest& req_;
  Clock::time_point started_;
  Clock::time_point deadline_;
  Clock::time_point connect_deadline_;
  UnixHttpResult res_;
  Fd sock_;
  Fd body_fd_;
  Fd out_fd_;
  bool out_is_fifo_ = false;
  bool body_from_file_ = false;
  bool chunked_ = false;
  bool body_done_ = false;
  std::uint64_t body_left_ = 0;
  bool answered_early_ = false;
  std::vector<char> buf_;
  std::string head_buf_;
  bool head_done_ = false;
  bool to_file_ = false;
  bool complete_ = false;
  http::Framing framing_;
  std::uint64_t length_left_ = 0;
  http::ChunkedDecoder decoder_;
  std::string decoded_;
};

}  // namespace

UnixHttpResult unixHttpRequest(const fs::path& socket, const UnixHttpRequest& request) {
  return Exchange(socket, request).run();
}

std::string_view phaseName(HttpPhase phase) {
  switch (phase) {
    case HttpPhase::kConnecting:
      return "connecting";
    case HttpPhase::kSending:
      return "sending the request";
    case HttpPhase::kWaiting:
      return "waiting for the answer";
    case HttpPhase::kReceiving:
      return "receiving the answer";
    case HttpPhase::kDone:
      return "done";
  }
  return "?";
}

}  // namespace ferry::checkpoint
