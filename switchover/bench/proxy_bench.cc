// What ferry's hand-off proxy costs and how fast it lets go, on loopback:
//   1. latency of a small GET, direct to a backend and through the proxy, on a kept-alive
//      connection and on a fresh connection per request (as `ferry probe` does);
//   2. requests per second with several kept-alive clients, direct and through the proxy;
//   3. hold/release: N requests held, then released to another backend — how long from
//      the release call to each answer, and how long release() itself takes.
// Not a test. Run it on a quiet machine; it prints the machine's load with the numbers.
//   ferry_proxy_bench [--requests 20000] [--clients 8] [--seconds 5] [--held 200] [--runs 5]
//                     [--compare-haproxy-lua switchover/bench/haproxy-lua]
// With --compare-haproxy-lua the same series runs through HAProxy (one thread) with the
// Lua hold action of that directory: the evidence behind switchover/README.md's choice.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <functional>

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
    if (::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(lfd_, 1024) != 0) {
      std::perror("responder");
      std::exit(1);
    }
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
  const std::string req =
      std::string("GET /x HTTP/1.1\r\nHost: b\r\n") + (close ? "Connection: close\r\n" : "") + "\r\n";
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
  auto at = [&](double q) {
    return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
  };
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
  threads.reserve(static_cast<size_t>(clients));
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

// A front to measure: ferry's proxy, or HAProxy with the Lua hold action.
struct Front {
  std::string name;
  Endpoint endpoint;
  std::function<bool()> hold;
  std::function<uint64_t()> heldNow;
  std::function<bool(const Endpoint&)> release;
};

// One command on HAProxy's stats socket.
std::string haproxyCommand(const std::string& socket, const std::string& cmd) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string line = cmd + "\n";
    (void)!::write(fd, line.data(), line.size());
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

uint16_t freePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  (void)::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

void measure(const Front& f, const Responder& a, const Responder& b, int requests, int clients,
             double seconds, int held, int runs) {
  std::printf("== %s (front %s)\n", f.name.c_str(), f.endpoint.str().c_str());
  for (const bool alive : {true, false}) {
    const int n = alive ? requests : requests / 4;
    for (int r = 0; r < runs; ++r) {
      const Stats d = stats(alive ? keptAlive(a.endpoint(), n) : fresh(a.endpoint(), n));
      const Stats p = stats(alive ? keptAlive(f.endpoint, n) : fresh(f.endpoint, n));
      std::printf(
          "%-10s run %d: direct p50 %6.1f us p99 %7.1f us | via %s p50 %6.1f us p99 %7.1f us | +%5.1f us "
          "p50\n",
          alive ? "keepalive" : "fresh", r + 1, d.p50, d.p99, f.name.c_str(), p.p50, p.p99, p.p50 - d.p50);
    }
  }
  for (int r = 0; r < runs; ++r) {
    const double d = throughput(a.endpoint(), clients, seconds);
    const double p = throughput(f.endpoint, clients, seconds);
    std::printf("throughput run %d (%d clients): direct %8.0f req/s | via %s %8.0f req/s\n", r + 1, clients,
                d, f.name.c_str(), p);
  }
  // Hold/release: `held` fresh-connection GETs held, then released to the other backend.
  for (int r = 0; r < runs; ++r) {
    const Endpoint to = r % 2 == 0 ? b.endpoint() : a.endpoint();
    if (!f.hold()) return;
    std::vector<std::future<Clock::time_point>> answers;
    answers.reserve(static_cast<size_t>(held));
    for (int i = 0; i < held; ++i) {
      answers.push_back(std::async(std::launch::async, [&] {
        const int fd = connectTo(f.endpoint);
        const bool ok = fd >= 0 && get(fd, true);
        if (fd >= 0) ::close(fd);
        return ok ? Clock::now() : Clock::time_point{};
      }));
    }
    for (int i = 0; i < 5000 && f.heldNow() != static_cast<uint64_t>(held); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto t0 = Clock::now();
    const bool released = f.release(to);
    const double callUs = usSince(t0);
    std::vector<double> us;
    int failed = 0;
    for (auto& fut : answers) {
      const auto t = fut.get();
      if (t == Clock::time_point{}) {
        ++failed;
        continue;
      }
      us.push_back(std::chrono::duration<double, std::micro>(t - t0).count());
    }
    const Stats s = stats(us);
    std::printf(
        "release run %d: %d held, release %.0f us, answers after it p50 %.0f us max %.0f us, failed %d\n",
        r + 1, held, callUs, s.p50, s.max, failed);
    if (!released) return;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int requests = 20000, clients = 8, held = 200, runs = 5;
  double seconds = 5;
  std::string luaDir;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* next = i + 1 < argc ? argv[i + 1] : "0";
    if (arg == "--requests") requests = static_cast<int>(std::strtol(next, nullptr, 10));
    if (arg == "--clients") clients = static_cast<int>(std::strtol(next, nullptr, 10));
    if (arg == "--seconds") seconds = std::strtod(next, nullptr);
    if (arg == "--held") held = static_cast<int>(std::strtol(next, nullptr, 10));
    if (arg == "--runs") runs = static_cast<int>(std::strtol(next, nullptr, 10));
    if (arg == "--compare-haproxy-lua") luaDir = next;  // the directory of hold.lua and haproxy.cfg.tmpl
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
  std::printf("load before: %s (nproc %u)\n", load().c_str(), std::thread::hardware_concurrency());
  HandoffProxy& p = **proxy;
  Front ferryFront{"ferry", *p.front("bench"),
                   [&] {
                     return p
                         .hold("bench", std::chrono::seconds(30), std::chrono::milliseconds(100),
                               std::chrono::seconds(60))
                         .ok();
                   },
                   [&] {
                     auto cnt = p.counters("bench");
                     return cnt.ok() ? cnt->held_now : 0;
                   },
                   [&](const Endpoint& to) { return p.release("bench", to).ok(); }};
  measure(ferryFront, a, b, requests, clients, seconds, held, runs);
  p.stop();

  if (!luaDir.empty()) {
    // HAProxy (one thread, like ferry's proxy) with the Lua hold action.
    char tmpl[] = "/tmp/ferry-lua-bench-XXXXXX";
    const std::string dir = ::mkdtemp(tmpl);
    const uint16_t port = freePort();
    std::ifstream in(luaDir + "/haproxy.cfg.tmpl");
    std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto subst = [&](const std::string& key, const std::string& value) {
      for (size_t at; (at = cfg.find(key)) != std::string::npos;) cfg.replace(at, key.size(), value);
    };
    subst("@DIR@", dir);
    subst("@LUA@", luaDir + "/hold.lua");
    subst("@FRONT@", std::to_string(port));
    subst("@BACKEND@", std::to_string(a.endpoint().port));
    std::ofstream(dir + "/haproxy.cfg") << cfg;
    if (std::system(("haproxy -f " + dir + "/haproxy.cfg").c_str()) != 0) {
      std::fprintf(stderr, "haproxy did not start (is it installed?)\n");
      return 1;
    }
    const std::string sock = dir + "/admin.sock";
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    Front lua{"haproxy+lua",
              {"127.0.0.1", port},
              [&] { return haproxyCommand(sock, "ferry hold") == "\n"; },
              [&] { return std::strtoull(haproxyCommand(sock, "ferry waiting").c_str(), nullptr, 10); },
              [&](const Endpoint& to) {
                (void)haproxyCommand(sock, "set server be/s1 addr 127.0.0.1 port " + std::to_string(to.port));
                return haproxyCommand(sock, "ferry release") == "\n";
              }};
    measure(lua, a, b, requests, clients, seconds, held, runs);
    std::ifstream pidIn(dir + "/haproxy.pid");
    int pid = 0;
    pidIn >> pid;
    if (pid > 1) ::kill(pid, SIGTERM);
  }
  std::printf("load after: %s\n", load().c_str());
  return 0;
}
