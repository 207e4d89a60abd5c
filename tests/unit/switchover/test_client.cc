#include "test_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "ferry/bench/http.h"

namespace ferry::switchover::testing {

namespace {

int connectTo(const Endpoint& e, Clock::time_point deadline, std::string& error) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(e.port);
  ::inet_pton(AF_INET, e.host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    error = std::string("connect: ") + std::strerror(errno);
    ::close(fd);
    return -1;
  }
  pollfd p{fd, POLLOUT, 0};
  const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
  int err = 0;
  socklen_t len = sizeof err;
  if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0))) <= 0 ||
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    error = std::string("connect: ") + (err != 0 ? std::strerror(err) : "timed out");
    ::close(fd);
    return -1;
  }
  return fd;
}

bool sendAll(int fd, const std::string& bytes, Clock::time_point deadline, std::string& error) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
      if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
        error = "send timed out";
        return false;
      }
      continue;
    }
    error = std::string("send: ") + std::strerror(errno);
    return false;
  }
  return true;
}

// Reads one answer; `carry` holds bytes read beyond it (none expected in these tests).
HttpResult readAnswer(int fd, Clock::time_point deadline, std::string& carry) {
  HttpResult out;
  std::string buf = std::move(carry);
  carry.clear();
  char chunk[65536];
  bool closed = false;
  for (;;) {
    auto parsed = bench::parseResponse(buf, closed);
    if (parsed.state == bench::ParseState::kComplete) {
      out.status = parsed.response.status;
      out.body = parsed.response.body;
      out.reason = parsed.response.header("x-ferry-reason").value_or("");
      out.backend = parsed.response.header("x-backend").value_or("");
      out.finished = Clock::now();
      return out;
    }
    if (parsed.state == bench::ParseState::kBad || closed) {
      out.error = closed ? (buf.empty() ? "closed without an answer" : "closed in the middle of an answer")
                         : "malformed answer";
      out.finished = Clock::now();
      return out;
    }
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now()).count();
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) <= 0) {
      out.error = "no answer in time";
      out.finished = Clock::now();
      return out;
    }
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n > 0) {
      buf.append(chunk, static_cast<size_t>(n));
    } else if (n == 0) {
      closed = true;
    } else if (errno != EAGAIN && errno != EINTR) {
      out.error = std::string("recv: ") + std::strerror(errno);
      out.finished = Clock::now();
      return out;
    }
  }
}

std::string requestBytes(const std::string& method, const std::string& path, const std::string& body,
                         bool close) {
  std::string r = method + " " + path + " HTTP/1.1\r\nHost: test\r\n";
  if (close) r += "Connection: close\r\n";
  if (!body.empty() || method == "POST") r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "\r\n" + body;
}

}  // namespace

HttpResult raw(const Endpoint& via, const std::string& bytes, Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  HttpResult out;
  const int fd = connectTo(via, deadline, out.error);
  if (fd < 0) {
    out.finished = Clock::now();
    return out;
  }
  if (!sendAll(fd, bytes, deadline, out.error)) {
    ::close(fd);
    out.finished = Clock::now();
    return out;
  }
  std::string carry;
  out = readAnswer(fd, deadline, carry);
  ::close(fd);
  return out;
}

HttpResult fetch(const Endpoint& via, const std::string& method, const std::string& path,
                 const std::string& body, Millis timeout) {
  return raw(via, requestBytes(method, path, body, true), timeout);
}

KeepAlive::KeepAlive(const Endpoint& via) {
  std::string error;
  fd_ = connectTo(via, Clock::now() + Millis(5000), error);
}

KeepAlive::~KeepAlive() {
  if (fd_ >= 0) ::close(fd_);
}

HttpResult KeepAlive::request(const std::string& method, const std::string& path, const std::string& body,
                              Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  HttpResult out;
  if (fd_ < 0) {
    out.error = "not connected";
    return out;
  }
  if (!sendAll(fd_, requestBytes(method, path, body, false), deadline, out.error)) return out;
  return readAnswer(fd_, deadline, pending_);
}

std::future<HttpResult> async(std::function<HttpResult()> fn) {
  return std::async(std::launch::async, std::move(fn));
}

bool running(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z' &&
         stat[close + 2] != 'X';
}

uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace ferry::switchover::testing
