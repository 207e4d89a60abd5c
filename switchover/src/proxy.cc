// The hand-off proxy's loop. One thread owns every socket and all state below; other
// threads post closures to it (a mutex-guarded queue and an eventfd) and wait on a
// future with a deadline. Sessions are found by id (never by fd), and a session that
// ends is only marked dead inside a handler and erased after the event batch, so no
// handler ever touches a freed session.
#include "ferry/switchover/proxy.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "ferry/base/log.h"
#include "http1.h"
#include "net.h"

namespace ferry::switchover {

namespace {

using Clock = std::chrono::steady_clock;

constexpr Millis kTick{20};            // deadlines are checked this often
constexpr Millis kClosingGrace{5000};  // a client that does not read its last answer
constexpr Millis kLingerGrace{2000};   // after it: waiting for the client's close
constexpr int kMaxAcceptsPerEvent = 64;
constexpr size_t kReadChunk = size_t{16} * 1024;
constexpr int kMaxLogLinesPerSecond = 10;  // per service; the rest are counted

enum Kind : uint64_t { kListener = 0, kClient = 1, kBackend = 2, kWake = 3 };

uint64_t tag(uint64_t id, Kind kind) {
  return (id << 2) | kind;
}

uint64_t msBetween(Clock::time_point a, Clock::time_point b) {
  return b <= a ? 0 : static_cast<uint64_t>(std::chrono::duration_cast<Millis>(b - a).count());
}

enum class Phase {
  kIdle,     // waiting for (the rest of) a request head; keep-alive between requests
  kHeld,     // a request (tcp: a connection) waits for a release
  kForward,  // a request is at the backend (head and body streaming, answer coming back)
  kTunnel,   // bytes both ways unchanged: tcp mode, or HTTP after 101 Switching Protocols
  kClosing,  // the last bytes go to the client, then the connection closes
};

enum class BackendState { kNone, kConnecting, kConnected };

struct Session {
  uint64_t id = 0;
  size_t svc = 0;
  Phase phase = Phase::kIdle;
  bool dead = false;

  int cfd = -1;
  std::string clientIp;
  std::string cin;   // from the client, not yet forwarded
  std::string cout;  // to the client
  size_t coutOff = 0;
  bool clientEof = false;
  bool lingering = false;  // the last answer is out and our side shut: reading until the client closes
  uint32_t cevents = 0;

  int bfd = -1;
  BackendState bstate = BackendState::kNone;
  uint64_t bgen = 0;  // the service's backend generation this connection belongs to
  std::string bout;   // to the backend
  size_t boutOff = 0;
  uint64_t sentBytes = 0;  // written to the backend on this connection for this exchange
  bool backendReusable = false;
  bool backendEof = false;
  bool backendShut = false;  // we passed the client's half-close on (tunnel)
  bool everConnected = false;
  uint32_t bevents = 0;

  // The current HTTP exchange.
  http1::RequestHead req;
  std::string head;     // as forwarded
  std::string pending;  // what a new backend connection must send first
  std::string replay;   // head + body forwarded so far, kept while retryable
  bool retryable = false;
  bool bodyDone = true;
  uint64_t bodyLeft = 0;
  http1::ChunkedScanner reqChunks;
  int attempts = 0;
  bool wasHeld = false;
  std::string rhead;
  bool rheadDone = false;
  http1::ResponseHead resp;
  uint64_t respLeft = 0;
  http1::ChunkedScanner respChunks;
  uint64_t respBytes = 0;      // from the backend, this exchange
  bool answerStarted = false;  // some answer byte went towards the client

  Clock::time_point lastActivity{}, phaseSince{}, headStartedAt{}, heldAt{}, holdDeadline{},
      connectDeadline{}, firstByteDeadline{};
  bool firstByteArmed = false;
};

struct DrainWaiter {
  Clock::time_point deadline;
  uint64_t atStart = 0;
  bool already = false;
  std::shared_ptr<std::promise<Result<HoldOutcome>>> done;
};

struct Service {
  ProxyServiceConfig cfg;
  int lfd = -1;
  Endpoint bound;
  Endpoint backend;
  net::Address addr;
  uint64_t gen = 1;
  bool holding = false;
  Millis holdTimeout{10000};
  Clock::time_point leaseUntil{};
  Endpoint beforeHold;
  net::Address beforeHoldAddr;
  std::deque<uint64_t> held;
  std::vector<DrainWaiter> waiters;
  ProxyCounters c;
  uint64_t open = 0;
  // Log rate limit.
  Clock::time_point logSecond{};
  int logLines = 0;
  uint64_t logSuppressed = 0;
};

class ProxyImpl final : public HandoffProxy {
 public:
  ProxyImpl() : log_(log::get("switch")) {}
  ~ProxyImpl() override { stop(); }

  Status init(std::vector<ProxyServiceConfig> configs) {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return makeError("epoll_create1: " + net::errnoText(errno));
    wake_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_ < 0) return makeError("eventfd: " + net::errnoText(errno));
    addInterest(wake_, tag(0, kWake), EPOLLIN);
    for (auto& cfg : configs) {
      for (const auto& s : services_) {
        if (s.cfg.name == cfg.name) return makeError("service '" + cfg.name + "' is configured twice");
      }
      if (cfg.max_attempts < 1) cfg.max_attempts = 1;
      if (cfg.buffer_bytes < 4096) cfg.buffer_bytes = 4096;
      Service svc;
      svc.cfg = cfg;
      auto addr = net::resolve(cfg.backend);
      if (!addr.ok()) {
        return makeError(
            "service '" + cfg.name + "': backend " + cfg.backend.str() + ": " + addr.error().what,
            addr.error().hint);
      }
      svc.addr = *addr;
      svc.backend = cfg.backend;
      auto fd = net::listenTcp(cfg.front, 1024);
      if (!fd.ok()) return makeError("service '" + cfg.name + "': " + fd.error().what, fd.error().hint);
      svc.lfd = *fd;
      auto bound = net::localEndpoint(svc.lfd);
      if (!bound.ok()) {
        ::close(svc.lfd);
        return bound.error();
      }
      svc.bound = *bound;
      svc.c.backend = svc.backend;
      services_.push_back(std::move(svc));
      addInterest(services_.back().lfd, tag(services_.size() - 1, kListener), EPOLLIN);
      log_->info("proxy: service '{}' ({}) listens on {}, backend {}", cfg.name,
                 cfg.mode == ProxyMode::kHttp ? "http" : "tcp", bound->str(), cfg.backend.str());
    }
    thread_ = std::thread([this] { run(); });
    return okStatus();
  }

  Result<Endpoint> front(const std::string& service) const override {
    for (const auto& s : services_) {
      if (s.cfg.name == service) return s.bound;  // set before the thread started; never changes
    }
    return unknownService(service);
  }

  Result<HoldOutcome> hold(const std::string& service, Millis holdTimeout, Millis drain,
                           Millis lease) override {
    auto done = std::make_shared<std::promise<Result<HoldOutcome>>>();
    auto future = done->get_future();
    const Status posted = post([this, service, holdTimeout, drain, lease, done] {
      Service* svc = find(service);
      if (svc == nullptr) {
        done->set_value(unknownService(service));
        return;
      }
      startHold(*svc, holdTimeout, drain, lease, done);
    });
    if (!posted.ok()) return posted.error();
    return waitFor(future, drain + Millis(5000), "hold of service '" + service + "'");
  }

  Result<ReleaseOutcome> release(const std::string& service, const Endpoint& to) override {
    auto addr = net::resolve(to);
    if (!addr.ok()) return addr.error();
    auto done = std::make_shared<std::promise<Result<ReleaseOutcome>>>();
    auto future = done->get_future();
    const Status posted = post([this, service, to, a = *addr, done] {
      Service* svc = find(service);
      if (svc == nullptr) {
        done->set_value(unknownService(service));
        return;
      }
      done->set_value(releaseTo(*svc, to, a, "released"));
    });
    if (!posted.ok()) return posted.error();
    return waitFor(future, Millis(5000), "release of service '" + service + "'");
  }

  Result<ProxyCounters> counters(const std::string& service) const override {
    auto done = std::make_shared<std::promise<Result<ProxyCounters>>>();
    auto future = done->get_future();
    const Status posted = post([this, service, done] {
      const Service* svc = findConst(service);
      if (svc == nullptr) {
        done->set_value(unknownService(service));
        return;
      }
      ProxyCounters c = svc->c;
      c.backend = svc->backend;
      c.holding = svc->holding;
      c.open_connections = svc->open;
      c.held_now = svc->held.size();
      c.in_flight = inFlight(*svc);
      done->set_value(c);
    });
    if (!posted.ok()) return posted.error();
    return waitFor(future, Millis(5000), "counters of service '" + service + "'");
  }

  void stop() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopRequested_) return;
      stopRequested_ = true;
      stopping_.store(true);
      ring();
    }
    if (thread_.joinable()) thread_.join();
    // Posted work the loop never ran: run it now so every waiter gets an answer.
    std::deque<std::function<void()>> rest;
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      rest.swap(queue_);
    }
    for (auto& fn : rest) fn();
    for (auto& svc : services_) {
      for (auto& w : svc.waiters) w.done->set_value(makeError("the proxy stopped during the drain"));
      svc.waiters.clear();
    }
    for (auto& [id, s] : sessions_) {
      if (s->cfd >= 0) ::close(s->cfd);
      if (s->bfd >= 0) ::close(s->bfd);
    }
    sessions_.clear();
    for (auto& svc : services_) {
      if (svc.lfd >= 0) ::close(svc.lfd);
      svc.lfd = -1;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (wake_ >= 0) ::close(wake_);
    if (ep_ >= 0) ::close(ep_);
    wake_ = ep_ = -1;
  }

 private:
  static Error unknownService(const std::string& name) {
    return makeError("the proxy has no service '" + name + "'",
                     "add a [service " + name + "] section with driver = proxy to the agent's config");
  }

  template <typename T>
  static Result<T> waitFor(std::future<Result<T>>& future, Millis timeout, const std::string& what) {
    if (future.wait_for(timeout) != std::future_status::ready) {
      return makeError(
          what + ": the proxy loop did not answer within " + std::to_string(timeout.count()) + " ms",
          "this is a bug; report it with the agent's log");
    }
    return future.get();
  }

  // ---- cross-thread ----------------------------------------------------------
  Status post(std::function<void()> fn) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_ || stopRequested_) return makeError("the proxy is stopped");
    queue_.push_back(std::move(fn));
    ring();
    return okStatus();
  }

  // mu_ held (or the loop already gone): stop() closes wake_ under mu_.
  void ring() const {
    if (wake_ < 0) return;
    const uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }

  void runPosted() {
    uint64_t count = 0;
    (void)!::read(wake_, &count, sizeof count);
    std::deque<std::function<void()>> work;
    {
      std::lock_guard<std::mutex> lock(mu_);
      work.swap(queue_);
    }
    for (auto& fn : work) fn();
  }

  Service* find(const std::string& name) {
    for (auto& s : services_) {
      if (s.cfg.name == name) return &s;
    }
    return nullptr;
  }
  const Service* findConst(const std::string& name) const {
    for (const auto& s : services_) {
      if (s.cfg.name == name) return &s;
    }
    return nullptr;
  }

  // ---- epoll -----------------------------------------------------------------
  void addInterest(int fd, uint64_t data, uint32_t events) const {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = data;
    (void)::epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
  }

  // Level-triggered; an fd that wants nothing leaves the set, because EPOLLHUP and
  // EPOLLERR cannot be masked and would wake the loop until the fd is closed.
  void setInterest(int fd, uint64_t data, uint32_t& current, uint32_t wanted) const {
    if (fd < 0 || current == wanted) return;
    epoll_event ev{};
    ev.events = wanted;
    ev.data.u64 = data;
    const int op = wanted == 0 ? EPOLL_CTL_DEL : current == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    (void)::epoll_ctl(ep_, op, fd, &ev);
    current = wanted;
  }

  void updateInterest(Session& s) {
    if (s.dead) return;
    const Service& svc = services_[s.svc];
    const size_t cap = svc.cfg.buffer_bytes;
    const size_t coutPending = s.cout.size() - s.coutOff;
    uint32_t c = 0;
    if (!s.clientEof && (s.phase != Phase::kClosing || s.lingering) && s.cin.size() < cap) c |= EPOLLIN;
    if (coutPending > 0) c |= EPOLLOUT;
    setInterest(s.cfd, tag(s.id, kClient), s.cevents, c);
    if (s.bfd >= 0) {
      uint32_t b = 0;
      if (s.bstate == BackendState::kConnecting) {
        b = EPOLLOUT;
      } else {
        if (!s.backendEof && coutPending < cap) b |= EPOLLIN;
        if (s.bout.size() > s.boutOff) b |= EPOLLOUT;
      }
      setInterest(s.bfd, tag(s.id, kBackend), s.bevents, b);
    }
  }

  // ---- the loop --------------------------------------------------------------
  void run() {
    std::array<epoll_event, 256> events{};
    Clock::time_point lastTick = Clock::now();
    while (!stopping_.load()) {
      const int n =
          ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), static_cast<int>(kTick.count()));
      now_ = Clock::now();
      for (int i = 0; i < n; ++i) {
        const uint64_t data = events[static_cast<size_t>(i)].data.u64;
        const uint32_t ev = events[static_cast<size_t>(i)].events;
        const auto kind = static_cast<Kind>(data & 3);
        const uint64_t id = data >> 2;
        switch (kind) {
          case kWake:
            runPosted();
            break;
          case kListener:
            acceptAll(services_[id]);
            break;
          case kClient:
          case kBackend: {
            auto it = sessions_.find(id);
            if (it == sessions_.end() || it->second->dead) break;
            Session& s = *it->second;
            if (kind == kClient) {
              onClient(s, ev);
            } else {
              onBackend(s, ev);
            }
            updateInterest(s);
            break;
          }
        }
      }
      if (now_ - lastTick >= kTick) {
        lastTick = now_;
        timers();
      }
      checkWaiters();
      sweep();
    }
  }

  void sweep() {
    for (uint64_t id : dead_) sessions_.erase(id);
    dead_.clear();
  }

  // Logs at most kMaxLogLinesPerSecond lines per service and second; counts the rest.
  template <typename... Args>
  void note(Service& svc, spdlog::level::level_enum level, fmt::format_string<Args...> format,
            Args&&... args) {
    if (now_ - svc.logSecond >= std::chrono::seconds(1)) {
      if (svc.logSuppressed > 0)
        log_->info("proxy '{}': {} more such lines in the last second", svc.cfg.name, svc.logSuppressed);
      svc.logSecond = now_;
      svc.logLines = 0;
      svc.logSuppressed = 0;
    }
    if (++svc.logLines > kMaxLogLinesPerSecond) {
      ++svc.logSuppressed;
      return;
    }
    log_->log(level, format, std::forward<Args>(args)...);
  }

  void acceptAll(Service& svc) {
    for (int i = 0; i < kMaxAcceptsPerEvent; ++i) {
      const int fd = ::accept4(svc.lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      ++svc.c.connections;
      if (svc.open >= svc.cfg.max_connections) {
        ++svc.c.refused;
        ++svc.c.total_refused;
        note(svc, spdlog::level::warn,
             "proxy '{}': connection limit of {} reached; a new connection was refused", svc.cfg.name,
             svc.cfg.max_connections);
        if (svc.cfg.mode == ProxyMode::kHttp) {
          const std::string answer =
              errorAnswer(503, "too-many-connections",
                          "ferry proxy: service '" + svc.cfg.name + "' has " + std::to_string(svc.open) +
                              " open connections, its limit (max_connections); try again",
                          false);
          (void)!::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL);
          ::close(fd);
        } else {
          net::closeWithReset(fd);
        }
        continue;
      }
      auto owned = std::make_unique<Session>();
      Session& s = *owned;
      s.id = nextId_++;
      s.svc = static_cast<size_t>(&svc - services_.data());
      s.cfd = fd;
      net::setNoDelay(fd);
      s.clientIp = net::peerIp(fd);
      s.lastActivity = s.phaseSince = now_;
      sessions_.emplace(s.id, std::move(owned));
      ++svc.open;
      addInterest(fd, tag(s.id, kClient), EPOLLIN);
      s.cevents = EPOLLIN;
      if (svc.cfg.mode == ProxyMode::kTcp) {
        ++svc.c.requests;
        s.attempts = 0;
        s.wasHeld = false;
        route(s);
      }
      updateInterest(s);
    }
  }

  // ---- client side -------------------------------------------------------------
  void onClient(Session& s, uint32_t ev) {
    if ((ev & EPOLLERR) != 0) {
      endClient(s, "the client's connection failed");
      return;
    }
    if ((ev & EPOLLOUT) != 0) {
      flushClient(s);
      if (s.dead) return;
    }
    if ((ev & (EPOLLIN | EPOLLHUP)) != 0) readClient(s);
    if (s.dead) return;
    if (s.phase == Phase::kClosing && s.lingering) {
      s.cin.clear();
      if (s.clientEof || (ev & EPOLLHUP) != 0) closeSession(s);
      return;
    }
    if ((ev & EPOLLHUP) != 0) {
      // Closed both ways (or reset): nothing can reach the client any more.
      if (s.phase == Phase::kTunnel) pumpTunnel(s);
      if (!s.dead) endClient(s, "the client closed the connection");
      return;
    }
    progress(s);
  }

  void readClient(Session& s) {
    Service& svc = services_[s.svc];
    std::array<char, kReadChunk> buf{};
    while (!s.clientEof && s.cin.size() < svc.cfg.buffer_bytes) {
      const size_t want = std::min(buf.size(), svc.cfg.buffer_bytes - s.cin.size());
      const ssize_t n = ::recv(s.cfd, buf.data(), want, 0);
      if (n > 0) {
        if (s.phase == Phase::kIdle && s.cin.empty()) s.headStartedAt = now_;
        s.cin.append(buf.data(), static_cast<size_t>(n));
        s.lastActivity = now_;
        continue;
      }
      if (n == 0) {
        s.clientEof = true;
        break;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      endClient(s, "the client's connection failed: " + net::errnoText(errno));
      return;
    }
  }

  void flushClient(Session& s) {
    while (s.coutOff < s.cout.size()) {
      const ssize_t n = ::send(s.cfd, s.cout.data() + s.coutOff, s.cout.size() - s.coutOff, MSG_NOSIGNAL);
      if (n > 0) {
        s.coutOff += static_cast<size_t>(n);
        s.lastActivity = now_;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      endClient(s, "the client's connection failed: " + net::errnoText(errno));
      return;
    }
    s.cout.clear();
    s.coutOff = 0;
    if (s.phase == Phase::kClosing) {
      // Lingering close: closing with unread request bytes would send a reset that can
      // destroy the answer before the client reads it, so shut our side and read (and
      // drop) until the client closes, for at most kLingerGrace.
      if (s.clientEof) {
        closeSession(s);
      } else if (!s.lingering) {
        ::shutdown(s.cfd, SHUT_WR);
        s.lingering = true;
        s.phaseSince = now_;
      }
      return;
    }
    // A tunnel ends when the backend has closed and everything it sent is delivered.
    if (s.phase == Phase::kTunnel && s.backendEof) closeSession(s);
  }

  // The client is gone (or broke the protocol beyond an answer): close everything.
  void endClient(Session& s, const std::string& why) {
    Service& svc = services_[s.svc];
    if (s.phase == Phase::kForward || s.phase == Phase::kHeld) {
      note(svc, spdlog::level::debug, "proxy '{}': {} while its request waited ({})", svc.cfg.name, why,
           s.phase == Phase::kHeld ? "held" : "at the backend");
    }
    closeSession(s);
  }

  void closeSession(Session& s) {
    if (s.dead) return;
    Service& svc = services_[s.svc];
    if (s.phase == Phase::kHeld) {
      auto it = std::find(svc.held.begin(), svc.held.end(), s.id);
      if (it != svc.held.end()) svc.held.erase(it);
    }
    closeBackend(s);
    if (s.cfd >= 0) {
      if (s.cevents != 0) (void)::epoll_ctl(ep_, EPOLL_CTL_DEL, s.cfd, nullptr);
      ::close(s.cfd);
      s.cfd = -1;
    }
    --svc.open;
    s.dead = true;
    dead_.push_back(s.id);
  }

  void closeBackend(Session& s) {
    if (s.bfd >= 0) {
      if (s.bevents != 0) (void)::epoll_ctl(ep_, EPOLL_CTL_DEL, s.bfd, nullptr);
      ::close(s.bfd);
    }
    s.bfd = -1;
    s.bevents = 0;
    s.bstate = BackendState::kNone;
    s.bout.clear();
    s.boutOff = 0;
    s.sentBytes = 0;
    s.backendReusable = false;
    s.backendEof = false;
    s.backendShut = false;
    s.everConnected = false;
  }

  static std::string reasonPhrase(int status) {
    switch (status) {
      case 400:
        return "Bad Request";
      case 408:
        return "Request Timeout";
      case 431:
        return "Request Header Fields Too Large";
      case 502:
        return "Bad Gateway";
      case 503:
        return "Service Unavailable";
      case 504:
        return "Gateway Timeout";
      default:
        return "Error";
    }
  }

  static std::string errorAnswer(int status, const std::string& code, const std::string& message, bool head) {
    const std::string body = message + "\n";
    std::string out =
        "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) +
        "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\nCache-Control: no-store\r\nX-Ferry-Reason: " + code + "\r\n";
    if (status == 503) out += "Retry-After: 1\r\n";
    out += "\r\n";
    if (!head) out += body;
    return out;
  }

  // Answers the current request with an error from ferry and closes after it; when part
  // of an answer already went out, the client can only be cut off.
  void answerError(Session& s, int status, const std::string& code, const std::string& message) {
    Service& svc = services_[s.svc];
    if (svc.cfg.mode == ProxyMode::kTcp || s.answerStarted || s.phase == Phase::kTunnel) {
      closeBackend(s);
      if (s.cfd >= 0) {
        if (s.cevents != 0) (void)::epoll_ctl(ep_, EPOLL_CTL_DEL, s.cfd, nullptr);
        net::closeWithReset(s.cfd);
        s.cfd = -1;
      }
      closeSession(s);
      return;
    }
    if (s.phase == Phase::kHeld) {
      auto it = std::find(svc.held.begin(), svc.held.end(), s.id);
      if (it != svc.held.end()) svc.held.erase(it);
    }
    closeBackend(s);
    s.cout += errorAnswer(status, code, message, s.req.method == "HEAD");
    s.answerStarted = true;
    s.phase = Phase::kClosing;
    s.phaseSince = now_;
    flushClient(s);
  }

  // Drives a session's HTTP state machine as far as the bytes at hand allow.
  void progress(Session& s) {
    Service& svc = services_[s.svc];
    for (int guard = 0; guard < 64 && !s.dead; ++guard) {
      switch (s.phase) {
        case Phase::kIdle: {
          if (svc.cfg.mode == ProxyMode::kTcp) return;
          if (s.cin.empty()) {
            if (s.clientEof) closeSession(s);
            return;
          }
          std::string error;
          http1::RequestHead head;
          const http1::Parse p = http1::parseRequestHead(s.cin, head, error);
          if (p == http1::Parse::kIncomplete) {
            if (s.cin.size() >= svc.cfg.buffer_bytes) {
              answerError(s, 431, "head-too-large",
                          "ferry proxy: the request head is larger than " +
                              std::to_string(svc.cfg.buffer_bytes) + " bytes");
            } else if (s.clientEof) {
              closeSession(s);
            }
            return;
          }
          if (p == http1::Parse::kBad) {
            answerError(s, 400, "bad-request", "ferry proxy: bad request: " + error);
            return;
          }
          startRequest(s, std::move(head));
          break;  // on to kHeld or kForward
        }
        case Phase::kHeld:
          return;
        case Phase::kForward:
          pumpRequestBody(s);
          if (!s.dead && s.bstate == BackendState::kConnected) flushBackend(s);
          return;
        case Phase::kTunnel:
          pumpTunnel(s);
          return;
        case Phase::kClosing:
          return;
      }
    }
  }

  void startRequest(Session& s, http1::RequestHead head) {
    Service& svc = services_[s.svc];
    s.req = std::move(head);
    const std::string_view raw(s.cin.data(), s.req.headBytes);
    s.head = s.clientIp.empty() ? std::string(raw) : http1::withHeader(raw, "X-Forwarded-For", s.clientIp);
    s.cin.erase(0, s.req.headBytes);
    s.bodyDone = s.req.body == http1::BodyKind::kNone;
    s.bodyLeft = s.req.length;
    s.reqChunks = {};
    s.retryable = http1::isIdempotent(s.req.method) && !s.req.upgrade && s.head.size() <= svc.cfg.retry_bytes;
    s.replay = s.retryable ? s.head : std::string();
    s.pending = s.head;
    s.attempts = 0;
    s.wasHeld = false;
    s.answerStarted = false;
    s.firstByteArmed = false;
    ++svc.c.requests;
    route(s);
  }

  // A ready request (tcp: a new connection) goes to the backend, or waits if the
  // service is holding.
  void route(Session& s) {
    Service& svc = services_[s.svc];
    if (svc.holding) {
      holdSession(s);
    } else {
      dispatch(s);
    }
  }

  void holdSession(Session& s) {
    Service& svc = services_[s.svc];
    if (svc.held.size() >= svc.cfg.max_held) {
      ++svc.c.refused;
      ++svc.c.total_refused;
      note(svc, spdlog::level::warn, "proxy '{}': hold queue full ({} held); a request got a 503",
           svc.cfg.name, svc.held.size());
      answerError(s, 503, "hold-queue-full",
                  "ferry proxy: service '" + svc.cfg.name + "' is being switched over and already holds " +
                      std::to_string(svc.held.size()) + " requests (max_held); try again in a moment");
      return;
    }
    if (!s.wasHeld) {
      s.wasHeld = true;
      s.heldAt = now_;
      ++svc.c.held;
    }
    s.holdDeadline = s.heldAt + svc.holdTimeout;
    s.phase = Phase::kHeld;
    s.phaseSince = now_;
    svc.held.push_back(s.id);
  }

  void dispatch(Session& s) {
    Service& svc = services_[s.svc];
    ++s.attempts;
    // A request that cannot be sent again never rides a kept-alive connection: the
    // backend may close an idle one just as the request arrives.
    const bool fresh = svc.cfg.mode == ProxyMode::kHttp && !s.retryable;
    if (s.bstate != BackendState::kNone && (s.bgen != svc.gen || !s.backendReusable || fresh))
      closeBackend(s);
    const bool reuse = s.bstate == BackendState::kConnected;
    if (!reuse) {
      const net::ConnectStart cs = net::connectNonBlocking(svc.addr);
      s.bgen = svc.gen;
      if (cs.fd < 0) {
        s.phase = svc.cfg.mode == ProxyMode::kTcp ? Phase::kTunnel : Phase::kForward;
        s.bout = std::move(s.pending);
        s.boutOff = 0;
        backendFailed(s, "refused the connection (" + net::errnoText(cs.error) + ")", 502);
        return;
      }
      s.bfd = cs.fd;
      s.bstate = BackendState::kConnecting;
      s.connectDeadline = now_ + svc.cfg.connect_timeout;
      addInterest(s.bfd, tag(s.id, kBackend), EPOLLOUT);
      s.bevents = EPOLLOUT;
    }
    s.backendReusable = false;
    s.sentBytes = 0;
    s.phaseSince = now_;
    s.lastActivity = now_;
    if (svc.cfg.mode == ProxyMode::kTcp) {
      s.phase = Phase::kTunnel;
      return;
    }
    s.phase = Phase::kForward;
    s.bout = std::move(s.pending);
    s.pending.clear();
    s.boutOff = 0;
    s.rhead.clear();
    s.rheadDone = false;
    s.respBytes = 0;
    s.respLeft = 0;
    s.respChunks = {};
    s.firstByteArmed = false;
    pumpRequestBody(s);
    if (!s.dead && reuse) flushBackend(s);
  }

  void pumpRequestBody(Session& s) {
    Service& svc = services_[s.svc];
    const size_t cap = svc.cfg.buffer_bytes;
    while (!s.bodyDone && !s.cin.empty() && s.bout.size() - s.boutOff < cap) {
      const size_t room = cap - (s.bout.size() - s.boutOff);
      const std::string_view view(s.cin.data(), std::min(s.cin.size(), room));
      size_t n = 0;
      if (s.req.body == http1::BodyKind::kLength) {
        n = static_cast<size_t>(std::min<uint64_t>(view.size(), s.bodyLeft));
        s.bodyLeft -= n;
        if (s.bodyLeft == 0) s.bodyDone = true;
      } else {
        bool bad = false;
        n = s.reqChunks.feed(view, bad);
        if (bad) {
          ++svc.c.failed;
          ++svc.c.total_failed;
          answerError(s, 400, "bad-request", "ferry proxy: bad request: malformed chunked body");
          return;
        }
        if (s.reqChunks.done()) s.bodyDone = true;
      }
      if (s.bout.size() == s.boutOff) {
        s.bout.clear();
        s.boutOff = 0;
      }
      s.bout.append(view.data(), n);
      if (s.retryable) {
        s.replay.append(view.data(), n);
        if (s.replay.size() > svc.cfg.retry_bytes) {
          s.retryable = false;
          std::string().swap(s.replay);
        }
      }
      s.cin.erase(0, n);
    }
    if (s.bodyDone && !s.firstByteArmed) {
      s.firstByteArmed = true;
      s.firstByteDeadline = now_ + svc.cfg.response_timeout;
    }
  }

  void pumpTunnel(Session& s) {
    if (s.bstate != BackendState::kConnected) return;
    const size_t cap = services_[s.svc].cfg.buffer_bytes;
    if (!s.cin.empty() && s.bout.size() - s.boutOff < cap) {
      if (s.bout.size() == s.boutOff) {
        s.bout.clear();
        s.boutOff = 0;
      }
      const size_t n = std::min(s.cin.size(), cap - (s.bout.size() - s.boutOff));
      s.bout.append(s.cin, 0, n);
      s.cin.erase(0, n);
    }
    flushBackend(s);
    if (s.dead) return;
    // The client half-closed: pass it on once its bytes are out, and keep relaying the
    // backend's answer until the backend closes.
    if (s.clientEof && s.cin.empty() && s.bout.size() == s.boutOff && !s.backendShut && s.bfd >= 0) {
      ::shutdown(s.bfd, SHUT_WR);
      s.backendShut = true;
    }
  }

  // ---- backend side --------------------------------------------------------------
  void onBackend(Session& s, uint32_t ev) {
    if (s.bstate == BackendState::kConnecting) {
      if ((ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(s.bfd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        backendFailed(s, "refused the connection (" + net::errnoText(err) + ")", 502);
        return;
      }
      s.bstate = BackendState::kConnected;
      s.everConnected = true;
      s.lastActivity = now_;
      if (s.phase == Phase::kTunnel) {
        pumpTunnel(s);
      } else {
        flushBackend(s);
      }
      return;
    }
    if ((ev & EPOLLOUT) != 0) {
      flushBackend(s);
      if (s.dead || s.bfd < 0) return;
    }
    if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) readBackend(s);
  }

  void flushBackend(Session& s) {
    while (s.bfd >= 0 && s.bstate == BackendState::kConnected && s.boutOff < s.bout.size()) {
      const ssize_t n = ::send(s.bfd, s.bout.data() + s.boutOff, s.bout.size() - s.boutOff, MSG_NOSIGNAL);
      if (n > 0) {
        s.boutOff += static_cast<size_t>(n);
        s.sentBytes += static_cast<uint64_t>(n);
        s.lastActivity = now_;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      backendFailed(s, "closed the connection while the request was sent (" + net::errnoText(errno) + ")",
                    502);
      return;
    }
    if (s.boutOff == s.bout.size()) {
      s.bout.clear();
      s.boutOff = 0;
      // Room in bout: more of the request body (or tunnel bytes) may follow.
      if (s.phase == Phase::kForward && !s.bodyDone && !s.cin.empty()) {
        pumpRequestBody(s);
        if (!s.dead && s.boutOff < s.bout.size()) flushBackend(s);
      } else if (s.phase == Phase::kTunnel && !s.cin.empty()) {
        pumpTunnel(s);
      }
    }
  }

  void readBackend(Session& s) {
    Service& svc = services_[s.svc];
    std::array<char, kReadChunk> buf{};
    while (s.bfd >= 0 && !s.dead) {
      const size_t pending = s.cout.size() - s.coutOff;
      if (pending >= svc.cfg.buffer_bytes) break;
      const size_t want = std::min(buf.size(), svc.cfg.buffer_bytes - pending);
      const ssize_t n = ::recv(s.bfd, buf.data(), want, 0);
      if (n > 0) {
        s.lastActivity = now_;
        onBackendBytes(s, std::string_view(buf.data(), static_cast<size_t>(n)));
        continue;
      }
      if (n == 0) {
        onBackendEof(s);
        break;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (errno == EINTR) continue;
      onBackendReset(s, net::errnoText(errno));
      break;
    }
    if (!s.dead && s.coutOff < s.cout.size()) flushClient(s);
  }

  void appendToClient(Session& s, std::string_view bytes) {
    if (bytes.empty()) return;
    if (s.coutOff == s.cout.size()) {
      s.cout.clear();
      s.coutOff = 0;
    }
    s.cout.append(bytes);
    s.answerStarted = true;
  }

  void onBackendBytes(Session& s, std::string_view data) {
    Service& svc = services_[s.svc];
    if (s.phase == Phase::kTunnel) {
      s.respBytes += data.size();
      appendToClient(s, data);
      return;
    }
    if (s.phase != Phase::kForward) {
      // An idle kept-alive backend connection said something (e.g. a 408): drop it.
      closeBackend(s);
      return;
    }
    s.respBytes += data.size();
    std::string rest;  // bytes after a head, when a head completes inside `data`
    while (!data.empty() && !s.dead) {
      if (!s.rheadDone) {
        s.rhead.append(data);
        data = {};
        http1::ResponseHead head;
        std::string error;
        const http1::Parse p = http1::parseResponseHead(s.rhead, s.req.method, head, error);
        if (p == http1::Parse::kIncomplete) {
          if (s.rhead.size() > svc.cfg.buffer_bytes) {
            ++svc.c.failed;
            ++svc.c.total_failed;
            answerError(s, 502, "bad-response",
                        "ferry proxy: the backend " + svc.backend.str() + " sent a response head over " +
                            std::to_string(svc.cfg.buffer_bytes) + " bytes");
          }
          return;
        }
        if (p == http1::Parse::kBad) {
          ++svc.c.failed;
          ++svc.c.total_failed;
          answerError(s, 502, "bad-response",
                      "ferry proxy: the backend " + backendName(s) + " sent a malformed response: " + error);
          return;
        }
        appendToClient(s, std::string_view(s.rhead).substr(0, head.headBytes));
        rest = s.rhead.substr(head.headBytes);
        s.rhead.clear();
        data = rest;
        if (head.status == 101) {
          if (!s.req.upgrade) {
            ++svc.c.failed;
            ++svc.c.total_failed;
            answerError(s, 502, "bad-response", "ferry proxy: the backend switched protocols unasked");
            return;
          }
          ++svc.c.completed;
          s.phase = Phase::kTunnel;
          s.phaseSince = now_;
          appendToClient(s, data);
          if (!s.cin.empty()) pumpTunnel(s);
          return;
        }
        if (head.status < 200) continue;  // interim (100 Continue): another head follows
        s.rheadDone = true;
        s.resp = head;
        s.respLeft = head.length;
        s.respChunks = {};
        if (head.body == http1::BodyKind::kNone) {
          finishExchange(s, !data.empty());
          return;
        }
        continue;
      }
      switch (s.resp.body) {
        case http1::BodyKind::kLength: {
          const size_t n = static_cast<size_t>(std::min<uint64_t>(data.size(), s.respLeft));
          appendToClient(s, data.substr(0, n));
          s.respLeft -= n;
          data.remove_prefix(n);
          if (s.respLeft == 0) {
            finishExchange(s, !data.empty());
            return;
          }
          break;
        }
        case http1::BodyKind::kChunked: {
          bool bad = false;
          const size_t n = s.respChunks.feed(data, bad);
          appendToClient(s, data.substr(0, n));
          data.remove_prefix(n);
          if (bad) {
            ++svc.c.failed;
            ++svc.c.total_failed;
            answerError(s, 502, "bad-response", "ferry proxy: malformed chunked body from the backend");
            return;
          }
          if (s.respChunks.done()) {
            finishExchange(s, !data.empty());
            return;
          }
          break;
        }
        case http1::BodyKind::kUntilClose:
        case http1::BodyKind::kNone:
          appendToClient(s, data);
          data = {};
          break;
      }
    }
  }

  // The answer is complete. `extraBytes`: the backend sent more than one answer.
  void finishExchange(Session& s, bool extraBytes) {
    Service& svc = services_[s.svc];
    ++svc.c.completed;
    const bool backendKeeps = s.resp.keepAlive && !extraBytes && s.bodyDone &&
                              s.resp.body != http1::BodyKind::kUntilClose && !svc.holding;
    const bool clientKeeps = s.req.keepAlive && s.resp.keepAlive && s.bodyDone && !s.clientEof &&
                             s.resp.body != http1::BodyKind::kUntilClose;
    if (backendKeeps) {
      s.backendReusable = true;
    } else {
      closeBackend(s);
    }
    s.replay.clear();
    s.pending.clear();
    s.rhead.clear();
    s.rheadDone = false;
    s.phaseSince = now_;
    if (!clientKeeps) {
      s.phase = Phase::kClosing;
      flushClient(s);
      return;
    }
    s.phase = Phase::kIdle;
    s.answerStarted = false;
    if (!s.cin.empty()) {
      s.headStartedAt = now_;
      progress(s);  // a pipelined request is already here
    }
  }

  void onBackendEof(Session& s) {
    if (s.phase == Phase::kTunnel) {
      s.backendEof = true;
      if (s.coutOff == s.cout.size()) closeSession(s);
      return;
    }
    if (s.phase != Phase::kForward) {
      closeBackend(s);  // an idle kept-alive connection the backend closed
      return;
    }
    if (s.rheadDone && s.resp.body == http1::BodyKind::kUntilClose) {
      finishExchange(s, false);
      return;
    }
    if (s.respBytes == 0) {
      backendFailed(s, "closed the connection before answering", 502);
      return;
    }
    Service& svc = services_[s.svc];
    ++svc.c.failed;
    ++svc.c.total_failed;
    note(svc, spdlog::level::warn,
         "proxy '{}': the backend {} closed the connection in the middle of an answer", svc.cfg.name,
         backendName(s));
    answerError(
        s, 502, "backend-closed",
        "ferry proxy: the backend " + backendName(s) + " closed the connection in the middle of its answer");
  }

  void onBackendReset(Session& s, const std::string& why) {
    if (s.phase == Phase::kForward && s.respBytes == 0) {
      backendFailed(s, "reset the connection before answering (" + why + ")", 502);
      return;
    }
    if (s.phase == Phase::kForward || s.phase == Phase::kTunnel) {
      Service& svc = services_[s.svc];
      ++svc.c.failed;
      ++svc.c.total_failed;
      note(svc, spdlog::level::warn, "proxy '{}': the backend {} reset the connection ({})", svc.cfg.name,
           backendName(s), why);
      answerError(s, 502, "backend-reset",
                  "ferry proxy: the backend " + backendName(s) + " reset the connection (" + why + ")");
      return;
    }
    closeBackend(s);
  }

  std::string backendName(const Session& s) const {
    const Service& svc = services_[s.svc];
    return s.bgen == svc.gen ? svc.backend.str() : "before the switch";
  }

  // The backend connection failed before any answer byte. Send the request again when
  // that is safe (nothing was written, or an idempotent request kept whole), else
  // answer with `status` and the reason.
  void backendFailed(Session& s, const std::string& why, int status) {
    Service& svc = services_[s.svc];
    const std::string who = backendName(s);
    const bool nothingSent = s.sentBytes == 0;
    const bool wasConnected = s.everConnected;
    std::string unsent = s.bout.substr(s.boutOff);
    closeBackend(s);
    const bool tcp = svc.cfg.mode == ProxyMode::kTcp;
    const bool safe =
        tcp ? !wasConnected && s.respBytes == 0 : s.respBytes == 0 && (nothingSent || s.retryable);
    if (safe && s.attempts < svc.cfg.max_attempts) {
      ++svc.c.retried;
      ++svc.c.total_retried;
      if (!tcp) s.pending = nothingSent ? std::move(unsent) : s.replay;
      note(svc, spdlog::level::info, "proxy '{}': the backend {} {}; sending the {} again (attempt {} of {})",
           svc.cfg.name, who, why, tcp ? "connection" : s.req.method + " " + s.req.target, s.attempts + 1,
           svc.cfg.max_attempts);
      route(s);
      return;
    }
    ++svc.c.failed;
    ++svc.c.total_failed;
    std::string reason;
    if (s.respBytes != 0) {
      reason = "";
    } else if (s.attempts >= svc.cfg.max_attempts) {
      reason = "; gave up after " + std::to_string(s.attempts) + " attempts (max_attempts)";
    } else if (!http1::isIdempotent(s.req.method)) {
      reason = "; " + s.req.method + " is not idempotent, so it was not sent again";
    } else {
      reason = "; the request was larger than retry_bytes, so it was not kept for a retry";
    }
    note(svc, spdlog::level::warn, "proxy '{}': the backend {} {}{}", svc.cfg.name, who, why, reason);
    answerError(s, status, status == 504 ? "backend-timeout" : "backend-failed",
                "ferry proxy: the backend " + who + " of service '" + svc.cfg.name + "' " + why + reason);
  }

  // ---- timers ------------------------------------------------------------------
  void timers() {
    for (auto& [id, owned] : sessions_) {
      Session& s = *owned;
      if (s.dead) continue;
      Service& svc = services_[s.svc];
      switch (s.phase) {
        case Phase::kIdle:
          if (s.cin.empty()) {
            if (now_ - s.lastActivity > svc.cfg.idle_timeout) closeSession(s);
          } else if (now_ - s.headStartedAt > svc.cfg.request_timeout) {
            answerError(s, 408, "request-timeout",
                        "ferry proxy: the request head did not arrive within " +
                            std::to_string(svc.cfg.request_timeout.count()) + " ms");
          }
          break;
        case Phase::kHeld:
          if (now_ >= s.holdDeadline) {
            ++svc.c.refused;
            ++svc.c.total_refused;
            note(svc, spdlog::level::warn, "proxy '{}': a request was held {} ms without a release: 503",
                 svc.cfg.name, msBetween(s.heldAt, now_));
            answerError(s, 503, "hold-timeout",
                        "ferry proxy: service '" + svc.cfg.name +
                            "' is being switched over; this request waited " +
                            std::to_string(msBetween(s.heldAt, now_)) +
                            " ms (hold timeout) and the new backend was not ready yet; try again");
          }
          break;
        case Phase::kForward:
        case Phase::kTunnel:
          if (s.bstate == BackendState::kConnecting && now_ >= s.connectDeadline) {
            backendFailed(s,
                          "did not accept the connection within " +
                              std::to_string(svc.cfg.connect_timeout.count()) + " ms",
                          504);
          } else if (s.phase == Phase::kForward && s.firstByteArmed && s.respBytes == 0 &&
                     now_ >= s.firstByteDeadline) {
            backendFailed(
                s, "sent no answer within " + std::to_string(svc.cfg.response_timeout.count()) + " ms", 504);
          } else if (now_ - s.lastActivity > svc.cfg.idle_timeout) {
            if (s.phase == Phase::kForward) {
              ++svc.c.failed;
              ++svc.c.total_failed;
            }
            note(svc, spdlog::level::info, "proxy '{}': a connection was idle for {} ms: closed",
                 svc.cfg.name, svc.cfg.idle_timeout.count());
            answerError(s, 504, "idle-timeout", "ferry proxy: no progress within idle_timeout");
          }
          break;
        case Phase::kClosing:
          if (now_ - s.phaseSince > (s.lingering ? kLingerGrace : kClosingGrace)) closeSession(s);
          break;
      }
      if (!s.dead) updateInterest(s);
    }
    for (auto& svc : services_) {
      if (svc.holding && now_ >= svc.leaseUntil) {
        log_->error(
            "proxy '{}': no commit or rollback within the hold lease; traffic goes back to {} (the backend "
            "before "
            "the hold)",
            svc.cfg.name, svc.beforeHold.str());
        (void)releaseTo(svc, svc.beforeHold, svc.beforeHoldAddr, "lease expired");
      }
    }
  }

  // ---- hold and release -----------------------------------------------------------
  uint64_t inFlight(const Service& svc) const {
    uint64_t n = 0;
    const size_t idx = static_cast<size_t>(&svc - services_.data());
    for (const auto& [id, s] : sessions_) {
      if (!s->dead && s->svc == idx && (s->phase == Phase::kForward || s->phase == Phase::kTunnel)) ++n;
    }
    return n;
  }

  void startHold(Service& svc, Millis holdTimeout, Millis drain, Millis lease,
                 const std::shared_ptr<std::promise<Result<HoldOutcome>>>& done) {
    const bool already = svc.holding;
    if (!already) {
      svc.holding = true;
      svc.beforeHold = svc.backend;
      svc.beforeHoldAddr = svc.addr;
      svc.c.held = svc.c.released = svc.c.max_hold_ms = svc.c.retried = svc.c.refused = svc.c.failed = 0;
      // Kept-alive backend connections are not reused across a switch.
      for (auto& [id, s] : sessions_) {
        if (!s->dead && s->svc == static_cast<size_t>(&svc - services_.data()) && s->phase == Phase::kIdle &&
            s->bfd >= 0) {
          closeBackend(*s);
        }
      }
      log_->info("proxy '{}': holding new requests (backend {}, hold timeout {} ms)", svc.cfg.name,
                 svc.backend.str(), holdTimeout.count());
    }
    svc.holdTimeout = holdTimeout;
    svc.leaseUntil = now_ + lease;
    for (uint64_t id : svc.held) {
      auto it = sessions_.find(id);
      if (it != sessions_.end()) it->second->holdDeadline = it->second->heldAt + holdTimeout;
    }
    DrainWaiter w;
    w.deadline = now_ + drain;
    w.atStart = inFlight(svc);
    w.already = already;
    w.done = done;
    svc.waiters.push_back(std::move(w));
  }

  void checkWaiters() {
    for (auto& svc : services_) {
      if (svc.waiters.empty()) continue;
      const uint64_t left = inFlight(svc);
      for (auto it = svc.waiters.begin(); it != svc.waiters.end();) {
        if (left == 0 || now_ >= it->deadline || !svc.holding) {
          HoldOutcome out;
          out.in_flight_at_start = it->atStart;
          out.in_flight_left = left;
          out.drained = it->atStart > left ? it->atStart - left : 0;
          out.already_holding = it->already;
          it->done->set_value(out);
          it = svc.waiters.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  ReleaseOutcome releaseTo(Service& svc, const Endpoint& to, const net::Address& addr, const char* why) {
    ReleaseOutcome out;
    const size_t idx = static_cast<size_t>(&svc - services_.data());
    const bool moved = !(addr == svc.addr);
    const uint64_t oldGen = svc.gen;
    const Endpoint old = svc.backend;
    svc.backend = to;
    svc.c.backend = to;
    svc.addr = addr;
    if (moved) ++svc.gen;
    svc.holding = false;
    if (moved) {
      // What is still at the old backend cannot be answered from there any more.
      for (auto& [id, owned] : sessions_) {
        Session& s = *owned;
        if (s.dead || s.svc != idx || s.bfd < 0 || s.bgen != oldGen) continue;
        if (s.phase == Phase::kIdle) {
          closeBackend(s);
          continue;
        }
        if (s.phase == Phase::kForward && s.respBytes == 0) {
          const uint64_t before = svc.c.retried;
          backendFailed(s, "was left behind by the switch to " + to.str() + " before it answered", 502);
          if (svc.c.retried > before) ++out.retried;
          ++out.cut;
        } else if (s.phase == Phase::kForward || s.phase == Phase::kTunnel) {
          ++svc.c.failed;
          ++svc.c.total_failed;
          ++out.cut;
          answerError(
              s, 502, "switched",
              "ferry proxy: the backend " + old.str() + " was answering when traffic moved to " + to.str());
        }
        if (!s.dead) updateInterest(s);
      }
    }
    std::deque<uint64_t> held;
    held.swap(svc.held);
    for (uint64_t id : held) {
      auto it = sessions_.find(id);
      if (it == sessions_.end() || it->second->dead || it->second->phase != Phase::kHeld) continue;
      Session& s = *it->second;
      const uint64_t waited = msBetween(s.heldAt, now_);
      out.max_hold_ms = std::max(out.max_hold_ms, waited);
      svc.c.max_hold_ms = std::max(svc.c.max_hold_ms, waited);
      ++out.released;
      ++svc.c.released;
      dispatch(s);
      if (!s.dead) {
        progress(s);
        updateInterest(s);
      }
    }
    log_->info(
        "proxy '{}': {} — traffic to {}{}; {} held request(s) released (longest wait {} ms), {} cut, {} "
        "re-sent",
        svc.cfg.name, why, to.str(), moved ? " (was " + old.str() + ")" : "", out.released, out.max_hold_ms,
        out.cut, out.retried);
    return out;
  }

  std::shared_ptr<spdlog::logger> log_;
  int ep_ = -1;
  int wake_ = -1;
  std::thread thread_;
  std::atomic<bool> stopping_{false};

  mutable std::mutex mu_;  // guards queue_, closed_, stopRequested_
  mutable std::deque<std::function<void()>> queue_;
  bool closed_ = false;
  bool stopRequested_ = false;

  // Loop thread only (after init).
  std::vector<Service> services_;
  std::unordered_map<uint64_t, std::unique_ptr<Session>> sessions_;
  std::vector<uint64_t> dead_;  // closed in this batch; erased after it
  uint64_t nextId_ = 1;
  Clock::time_point now_ = Clock::now();
};

}  // namespace

Result<std::unique_ptr<HandoffProxy>> HandoffProxy::start(std::vector<ProxyServiceConfig> services) {
  if (services.empty()) return makeError("the hand-off proxy has no service to serve");
  auto proxy = std::make_unique<ProxyImpl>();
  Status s = proxy->init(std::move(services));
  if (!s.ok()) {
    proxy->stop();
    return s.error();
  }
  return std::unique_ptr<HandoffProxy>(std::move(proxy));
}

}  // namespace ferry::switchover
