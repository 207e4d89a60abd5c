// What ferry's hand-off proxy costs and how fast it lets go, on loopback:
//   1. latency of a small GET, direct to a backend and through the proxy, on a kept-alive
//      connection and on a fresh connection per request (as `ferry probe` does);
//   2. requests per second with several kept-alive clients, direct and through the proxy;
//   3. hold/release: N requests held, then released to another backend — how long from
//      the release call to each answer, and how long release() itself takes.
// Not a test. Run it on a quiet machine; it prints the machine's load with the numbers.
//   ferry_proxy_bench [--requests 20000] [--clients 8] [--seconds 5] [--held 200] [--runs 5]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "ferry/base/log.h"
#include "ferry/switchover/proxy.h"

namespace {

using Clock = std::chrono::steady_clock;
using ferry::switchover::Endpoint;
using ferry::switchover::HandoffProxy;
using ferry::switchover::ProxyServiceConfig;

double usSince(Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(Clock::now() - t).count();
}

// A single-threaded epoll HTTP responder: "200 ok" to every request, kept alive.
class Responder {
 public:
  Responder() {
    lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(lfd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(lfd_, 1024);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~Responder() {
    stop_ = true;
    thread_.join();
    ::close(lfd_);
  }
  [[nodiscard]] Endpoint endpoint() const { return {"127.0.0.1", port_}; }

 private:
  void run() {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = lfd_;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, lfd_, &ev);
    std::vector<std::string> in(65536);
    static const std::string kAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    std::array<epoll_event, 128> events{};
    char buf[16384];
    while (!stop_) {
      const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 20);
      for (int i = 0; i < n; ++i) {
        const int fd = events[static_cast<size_t>(i)].data.fd;
        if (fd == lfd_) {
          for (int c; (c = ::accept4(lfd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0;) {
            int one = 1;
            ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            epoll_event cev{};
            cev.events = EPOLLIN;
            cev.data.fd = c;
            ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
            in[static_cast<size_t>(c)].clear();
          }
          continue;
        }
        const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
        if (got <= 0) {
          ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
          ::close(fd);
          continue;
        }
        std::string& b = in[static_cast<size_t>(fd)];
        b.append(buf, static_cast<size_t>(got));
        for (size_t end; (end = b.find("\r\n\r\n")) != std::string::npos;) {
          b.erase(0, end + 4);
          (void)!::send(fd, kAnswer.data(), kAnswer.size(), MSG_NOSIGNAL);
        }
      }
    }
    ::close(ep);
  }

  int lfd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int connectTo(const Endpoint& e) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(e.port);
  ::inet_pton(AF_INET, e.host.c_str(), &a.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One GET on `fd`; true when the whole "200 ok" came back.
bool get(int fd, bool close) {
  const std::string req = std::string("GET /x HTTP/1.1\r\nHost: b\r\n") + (close ? "Connection: close\r\n" : "") + "\r\n";
  if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) return false;
  std::string got;
  char buf[4096];
  while (got.size() < 40 || got.find("\r\n\r\nok") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return true;
}

struct Stats {
  double p50 = 0, p99 = 0, max = 0;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  if (v.empty()) return {};
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]; };
  return {at(0.50), at(0.99), v.back()};
}

std::vector<double> keptAlive(const Endpoint& e, int n) {
  std::vector<double> us;
  const int fd = connectTo(e);
  for (int i = 0; i < n; ++i) {
    const auto t = Clock::now();
    if (!get(fd, false)) break;
    us.push_back(usSince(t));
  }
  ::close(fd);
  return us;
}

std::vector<double> fresh(const Endpoint& e, int n) {
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    const auto t = Clock::now();
    const int fd = connectTo(e);
    if (fd < 0 || !get(fd, true)) break;
    us.push_back(usSince(t));
    ::close(fd);
  }
  return us;
}

double throughput(const Endpoint& e, int clients, double seconds) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> done{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      const int fd = connectTo(e);
      while (!stop && get(fd, false)) done.fetch_add(1);
      ::close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  return static_cast<double>(done.load()) / seconds;
}

std::string load() {
  std::ifstream in("/proc/loadavg");
  std::string l;
  std::getline(in, l);
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 20000, clients = 8, held = 200, runs = 5;
  double seconds = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--requests") requests = std::atoi(argv[i + 1]);
    if (a == "--clients") clients = std::atoi(argv[i + 1]);
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
    if (a == "--held") held = std::atoi(argv[i + 1]);
    if (a == "--runs") runs = std::atoi(argv[i + 1]);
  }
  ferry::log::setLevel("warn");
  Responder a, b;
  ProxyServiceConfig c;
  c.name = "bench";
  c.front = {"127.0.0.1", 0};
  c.backend = a.endpoint();
  c.max_held = static_cast<size_t>(held) + 16;
  auto proxy = HandoffProxy::start({c});
  if (!proxy.ok()) {
    std::fprintf(stderr, "proxy: %s\n", proxy.error().message().c_str());
    return 1;
  }
  const Endpoint front = *(*proxy)->front("bench");
  std::printf("load before: %s (nproc %u)\n", load().c_str(), std::thread::hardware_concurrency());

  for (const bool alive : {true, false}) {
    const int n = alive ? requests : requests / 4;
    for (int r = 0; r < runs; ++r) {
      const Stats d = stats(alive ? keptAlive(a.endpoint(), n) : fresh(a.endpoint(), n));
      const Stats p = stats(alive ? keptAlive(front, n) : fresh(front, n));
      std::printf("%-10s run %d: direct p50 %6.1f us p99 %6.1f us | proxy p50 %6.1f us p99 %6.1f us | +%5.1f us p50\n",
                  alive ? "keepalive" : "fresh", r + 1, d.p50, d.p99, p.p50, p.p99, p.p50 - d.p50);
    }
  }
  for (int r = 0; r < runs; ++r) {
    const double d = throughput(a.endpoint(), clients, seconds);
    const double p = throughput(front, clients, seconds);
    std::printf("throughput run %d (%d clients): direct %8.0f req/s | proxy %8.0f req/s\n", r + 1, clients, d, p);
  }

  // Hold/release: `held` fresh-connection GETs held, then released to b.
  for (int r = 0; r < runs; ++r) {
    const Endpoint to = r % 2 == 0 ? b.endpoint() : a.endpoint();
    auto h = (*proxy)->hold("bench", std::chrono::seconds(30), std::chrono::milliseconds(100), std::chrono::seconds(60));
    if (!h.ok()) return 1;
    std::vector<std::future<Clock::time_point>> answers;
    for (int i = 0; i < held; ++i) {
      answers.push_back(std::async(std::launch::async, [&] {
        const int fd = connectTo(front);
        const bool ok = fd >= 0 && get(fd, true);
        if (fd >= 0) ::close(fd);
        return ok ? Clock::now() : Clock::time_point{};
      }));
    }
    for (int i = 0; i < 5000; ++i) {
      auto cnt = (*proxy)->counters("bench");
      if (cnt.ok() && cnt->held_now == static_cast<uint64_t>(held)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const auto t0 = Clock::now();
    auto rel = (*proxy)->release("bench", to);
    const double callUs = usSince(t0);
    std::vector<double> us;
    int failed = 0;
    for (auto& f : answers) {
      const auto t = f.get();
      if (t == Clock::time_point{}) {
        ++failed;
        continue;
      }
      us.push_back(std::chrono::duration<double, std::micro>(t - t0).count());
    }
    const Stats s = stats(us);
    std::printf("release run %d: %d held, release() %.0f us, answers after release p50 %.0f us max %.0f us, failed %d\n",
                r + 1, held, callUs, s.p50, s.max, failed);
    if (!rel.ok()) return 1;
  }
  std::printf("load after: %s\n", load().c_str());
  (*proxy)->stop();
  return 0;
}
