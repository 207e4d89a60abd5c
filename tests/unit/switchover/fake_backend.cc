#include "fake_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

namespace ferry::switchover::testing {

namespace {

using Clock = std::chrono::steady_clock;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string header(const std::string& head, const std::string& name) {
  const std::string l = lower(head);
  const size_t at = l.find("\r\n" + name + ":");
  if (at == std::string::npos) return {};
  const size_t start = at + name.size() + 3;
  const size_t end = head.find("\r\n", start);
  std::string v = head.substr(start, end - start);
  while (!v.empty() && v.front() == ' ') v.erase(0, 1);
  return v;
}

}  // namespace

FakeBackend::FakeBackend(std::string name) : name_(std::move(name)) {
  openListener();
  if (listenFd_ < 0) throw std::runtime_error("fake backend: cannot listen on 127.0.0.1");
  thread_ = std::thread([this] { loop(); });
}

FakeBackend::~FakeBackend() {
  stop_.store(true);
  thread_.join();
  for (auto& c : conns_) ::close(c.fd);
  if (listenFd_ >= 0) ::close(listenFd_);
}

void FakeBackend::openListener() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port_);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 512) != 0) {
    ::close(fd);
    return;
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  listenFd_ = fd;
}

void FakeBackend::setStalled(bool stalled) {
  stalled_.store(stalled);
}

void FakeBackend::closeNext(int n) {
  closeNext_.store(n);
}

void FakeBackend::setListening(bool listening) {
  wantListening_.store(listening ? 1 : 0);
  for (int i = 0; i < 5000 && listening_.load() != wantListening_.load(); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

int FakeBackend::requests(const std::string& path) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(path);
  return it == counts_.end() ? 0 : it->second;
}

int FakeBackend::totalRequests() const {
  std::lock_guard lock(mu_);
  return total_;
}

std::string FakeBackend::lastForwardedFor() const {
  std::lock_guard lock(mu_);
  return lastXff_;
}

// A complete request at the start of c.in becomes c.method/path/body; false if incomplete.
bool FakeBackend::parse(Conn& c) {
  const size_t end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  const std::string head = c.in.substr(0, end + 2);
  const std::string cl = header(head, "content-length");
  const size_t length = cl.empty() ? 0 : std::stoul(cl);
  if (c.in.size() < end + 4 + length) return false;
  const std::string line = head.substr(0, head.find("\r\n"));
  c.method = line.substr(0, line.find(' '));
  c.path = line.substr(line.find(' ') + 1);
  c.path = c.path.substr(0, c.path.find(' '));
  c.body = c.in.substr(end + 4, length);
  c.closeAfter = lower(header(head, "connection")) == "close";
  c.in.erase(0, end + 4 + length);
  {
    std::lock_guard lock(mu_);
    ++counts_[c.path];
    ++total_;
    lastXff_ = header(head, "x-forwarded-for");
  }
  c.waiting = true;
  c.answerAt = Clock::now();
  if (c.path.rfind("/slow/", 0) == 0) c.answerAt += std::chrono::milliseconds(std::stoi(c.path.substr(6)));
  return true;
}

void FakeBackend::answer(Conn& c) {
  c.waiting = false;
  auto respond = [&](int status, const std::string& body) {
    c.out += "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Not Found") +
             "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nX-Backend: " + name_ +
             (c.closeAfter ? "\r\nConnection: close" : "") + "\r\n\r\n" + body;
  };
  if (c.method == "GET" && (c.path == "/hello" || c.path.rfind("/slow/", 0) == 0)) {
    respond(200, name_);
  } else if (c.method == "GET" && c.path == "/health") {
    respond(200, "ok");
  } else if (c.method == "GET" && c.path.rfind("/big/", 0) == 0) {
    respond(200, std::string(std::stoul(c.path.substr(5)), 'x'));
  } else if (c.method == "GET" && c.path.rfind("/chunked/", 0) == 0) {
    const int n = std::stoi(c.path.substr(9));
    c.out += "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: " + name_ + "\r\n\r\n";
    const std::string piece = name_ + "\n";
    char size[16];
    std::snprintf(size, sizeof size, "%zx", piece.size());
    for (int i = 0; i < n; ++i) c.out += std::string(size) + "\r\n" + piece + "\r\n";
    c.out += "0\r\n\r\n";
  } else if (c.method == "POST" && c.path == "/echo") {
    respond(200, name_ + ":" + c.body);
  } else {
    respond(404, "no such page");
  }
}

void FakeBackend::loop() {
  std::array<char, 16384> buf{};
  while (!stop_.load()) {
    const int want = wantListening_.load();
    if (want != listening_.load()) {
      if (want == 0 && listenFd_ >= 0) {
        ::close(listenFd_);
        listenFd_ = -1;
      } else if (want == 1) {
        openListener();
      }
      listening_.store(want);
    }
    // Answers that are due.
    const auto now = Clock::now();
    for (auto& c : conns_) {
      if (c.fd >= 0 && c.waiting && !stalled_.load() && now >= c.answerAt) {
        answer(c);
        while (!c.waiting && parse(c)) {
          if (now >= c.answerAt && !stalled_.load()) answer(c);
        }
      }
    }
    std::erase_if(conns_, [](const Conn& c) { return c.fd < 0; });
    std::vector<pollfd> fds;
    if (listenFd_ >= 0) fds.push_back({listenFd_, POLLIN, 0});
    const size_t first = fds.size();
    for (const auto& c : conns_) {
      short ev = POLLIN;
      if (c.outOff < c.out.size()) ev |= POLLOUT;
      fds.push_back({c.fd, ev, 0});
    }
    if (::poll(fds.data(), fds.size(), 2) < 0) continue;
    for (size_t i = first; i < fds.size(); ++i) {
      Conn& c = conns_[i - first];
      if ((fds[i].revents & POLLOUT) != 0) {
        const ssize_t n = ::send(c.fd, c.out.data() + c.outOff, c.out.size() - c.outOff, MSG_NOSIGNAL);
        if (n > 0) c.outOff += static_cast<size_t>(n);
        if (c.outOff == c.out.size()) {
          c.out.clear();
          c.outOff = 0;
          if (c.closeAfter) {
            ::close(c.fd);
            c.fd = -1;
            continue;
          }
        }
      }
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        const ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
        if (n <= 0) {
          ::close(c.fd);
          c.fd = -1;
          continue;
        }
        c.in.append(buf.data(), static_cast<size_t>(n));
        while (!c.waiting && c.fd >= 0 && parse(c)) {
          if (closeNext_.load() > 0) {
            closeNext_.fetch_sub(1);
            ::close(c.fd);
            c.fd = -1;
            break;
          }
          if (!stalled_.load() && Clock::now() >= c.answerAt) answer(c);
        }
      }
    }
    if (listenFd_ >= 0 && (fds[0].revents & POLLIN) != 0) {
      for (;;) {
        const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        Conn c;
        c.fd = fd;
        conns_.push_back(std::move(c));
      }
    }
  }
}

}  // namespace ferry::switchover::testing
