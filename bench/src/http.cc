#include "ferry/bench/http.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <set>
#include <unordered_map>

namespace ferry::bench {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool startsWithNoCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && lower(s.substr(0, prefix.size())) == prefix;
}

}  // namespace

// ---- URLs and durations ------------------------------------------------------------

std::string Url::origin() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return "http://" + h + (port == 80 ? "" : ":" + std::to_string(port));
}

Url Url::withTarget(std::string t) const {
  Url u = *this;
  u.target = std::move(t);
  return u;
}

Result<Url> parseUrl(std::string_view text) {
  const std::string shown(text);
  auto bad = [&](const std::string& why) {
    return makeError("bad URL '" + shown + "': " + why,
                     "write it as http://HOST[:PORT]/PATH, e.g. http://lb/health.php");
  };
  if (!startsWithNoCase(text, "http://")) return bad("only http:// is supported");
  std::string_view rest = text.substr(7);
  std::size_t end = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, end);
  std::string_view target = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
  Url url;
  std::string_view port_text;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unclosed [ in the host");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after the host");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    std::size_t colon = authority.find(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (url.host.empty()) return bad("no host");
  if (url.host.find('@') != std::string::npos) return bad("user information is not supported");
  if (has_port) {
    unsigned port = 0;
    auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || ptr != port_text.data() + port_text.size() || port == 0 || port > 65535) {
      return bad("port must be a number from 1 to 65535");
    }
    url.port = static_cast<std::uint16_t>(port);
  }
  if (target.empty()) {
    url.target = "/";
  } else if (target.front() == '?') {
    url.target = "/" + std::string(target);
  } else {
    url.target = std::string(target);
  }
  if (url.target.find_first_of(" \r\n") != std::string::npos) return bad("spaces or line breaks in the path");
  return url;
}

Result<std::chrono::microseconds> parseDuration(std::string_view text) {
  const std::string shown(text);
  auto bad = [&] {
    return makeError("bad duration '" + shown + "'",
                     "use a number with a unit: 500us, 10ms, 1s, 2.5s, 3m, 1h");
  };
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) != 0 || text[i] == '.')) ++i;
  if (i == 0) return bad();
  std::string number(text.substr(0, i));
  std::string_view unit = text.substr(i);
  double value = 0;
  try {
    std::size_t used = 0;
    value = std::stod(number, &used);
    if (used != number.size()) return bad();
  } catch (const std::exception&) {
    return bad();
  }
  double us = 0;
  if (unit == "us") {
    us = value;
  } else if (unit.empty() || unit == "ms") {
    us = value * 1e3;
  } else if (unit == "s") {
    us = value * 1e6;
  } else if (unit == "m") {
    us = value * 60e6;
  } else if (unit == "h") {
    us = value * 3600e6;
  } else {
    return bad();
  }
  if (us > 1e15) return bad();
  return std::chrono::microseconds(std::llround(us));
}

// ---- HTTP messages -----------------------------------------------------------------

std::string serializeRequest(const HttpRequest& request, const std::string& host_header) {
  std::string out = request.method + " " + request.target + " HTTP/1.1\r\nHost: " + host_header +
                    "\r\nUser-Agent: ferry-bench\r\nAccept: */*\r\nConnection: close\r\n";
  for (const auto& [k, v] : request.headers) out += k + ": " + v + "\r\n";
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    out += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
  }
  out += "\r\n";
  out += request.body;
  return out;
}

Result<Endpoint> resolve(const Url& url) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(url.port);
  int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return makeError("cannot resolve '" + url.host + "': " + ::gai_strerror(rc),
                     "use a name from /etc/hosts (lb, a, b) or an address");
  }
  Endpoint ep;
  std::memcpy(&ep.addr, found->ai_addr, found->ai_addrlen);
  ep.addr_len = found->ai_addrlen;
  ::freeaddrinfo(found);
  const bool v6 = url.host.find(':') != std::string::npos;
  ep.host_header =
      (v6 ? "[" + url.host + "]" : url.host) + (url.port == 80 ? "" : ":" + std::to_string(url.port));
  return ep;
}

void raiseFileLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

// ---- the client --------------------------------------------------------------------

namespace {

constexpr auto kDrainGrace = std::chrono::milliseconds(200);

enum class ConnState { kConnecting, kSending, kReceiving, kDraining };

struct Conn {
  int fd = -1;
  std::uint64_t tag = 0;
  ConnState state = ConnState::kConnecting;
  std::string out;
  std::size_t out_off = 0;
  std::string in;
  bool sent = false;
  Clock::time_point started;
  Clock::time_point connect_deadline;
  Clock::time_point total_deadline;
  Clock::time_point current_deadline;
};

void closeAbortive(int fd) {
  linger l{1, 0};
  (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

}  // namespace

struct HttpClient::Impl {
  int epfd = -1;
  std::uint64_t next_id = 1;
  std::unordered_map<std::uint64_t, Conn> conns;
  std::set<std::pair<Clock::time_point, std::uint64_t>> deadlines;
  std::vector<Attempt> done;
  std::size_t reporting = 0;  // connections not yet reported (not draining)

  ~Impl() {
    for (auto& [id, c] : conns) closeAbortive(c.fd);
    if (epfd >= 0) ::close(epfd);
  }

  void setDeadline(std::uint64_t id, Conn& c, Clock::time_point t) {
    deadlines.erase({c.current_deadline, id});
    c.current_deadline = t;
    deadlines.insert({t, id});
  }

  void watch(std::uint64_t id, Conn& c, std::uint32_t events, bool add) {
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = id;
    (void)::epoll_ctl(epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
  }

  void remove(std::uint64_t id, bool abortive) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    deadlines.erase({it->second.current_deadline, id});
    if (abortive) {
      closeAbortive(it->second.fd);
    } else {
      ::close(it->second.fd);
    }
    conns.erase(it);
  }

  void finish(std::uint64_t id, FailureKind kind, int err, HttpResponse response = {}) {
    Conn& c = conns.at(id);
    Attempt a;
    a.tag = c.tag;
    a.kind = kind;
    a.sys_errno = err;
    a.sent = c.sent;
    a.started = c.started;
    a.finished = Clock::now();
    a.response = std::move(response);
    done.push_back(std::move(a));
    --reporting;
    remove(id, kind != FailureKind::kOk && kind != FailureKind::kHttp5xx && kind != FailureKind::kHttpOther);
  }

  void startDraining(std::uint64_t id, Conn& c) {
    // The answer is complete; wait briefly for the server's FIN so it, not us, holds
    // TIME_WAIT (fresh connections at 1000/s would exhaust our ports otherwise).
    c.state = ConnState::kDraining;
    c.in.clear();
    c.in.shrink_to_fit();
    setDeadline(id, c, Clock::now() + kDrainGrace);
  }

  void onWritable(std::uint64_t id, Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
      if (n > 0) {
        c.sent = true;
        c.out_off += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        watch(id, c, EPOLLOUT | EPOLLIN | EPOLLRDHUP, false);
        return;
      }
      finish(id, classifyIoErrno(errno), errno);
      return;
    }
    c.state = ConnState::kReceiving;
    c.out.clear();
    watch(id, c, EPOLLIN | EPOLLRDHUP, false);
  }

  void onReadable(std::uint64_t id, Conn& c) {
    std::array<char, 16384> buf{};
    bool eof = false;
    while (true) {
      ssize_t n = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (n > 0) {
        if (c.state != ConnState::kDraining) c.in.append(buf.data(), static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0) {
        eof = true;
        break;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      if (c.state == ConnState::kDraining) {
        remove(id, true);
      } else {
        finish(id, classifyIoErrno(errno), errno);
      }
      return;
    }
    if (c.state == ConnState::kDraining) {
      if (eof) remove(id, false);
      return;
    }
    if (eof && c.in.empty()) {
      finish(id, FailureKind::kClosed, 0);
      return;
    }
    ParseOutcome p = parseResponse(c.in, eof);
    if (p.state == ParseState::kIncomplete) return;
    if (p.state == ParseState::kBad) {
      finish(id, FailureKind::kBadResponse, 0);
      return;
    }
    Attempt a;
    a.tag = c.tag;
    a.kind = classifyStatus(p.response.status);
    a.sent = true;
    a.started = c.started;
    a.finished = Clock::now();
    a.response = std::move(p.response);
    done.push_back(std::move(a));
    --reporting;
    if (eof) {
      remove(id, false);
    } else {
      startDraining(id, c);
    }
  }

  void onEvent(std::uint64_t id, std::uint32_t events) {
    auto it = conns.find(id);
    if (it == conns.end()) return;
    Conn& c = it->second;
    if (c.state == ConnState::kConnecting) {
      int err = 0;
      socklen_t len = sizeof err;
      if (::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        finish(id, classifyConnectErrno(err), err);
        return;
      }
      if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
      c.state = ConnState::kSending;
      setDeadline(id, c, c.total_deadline);
      onWritable(id, c);
      return;
    }
    if (c.state == ConnState::kSending) {
      if ((events & EPOLLERR) != 0) {
        int err = 0;
        socklen_t len = sizeof err;
        (void)::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        finish(id, classifyIoErrno(err != 0 ? err : ECONNRESET), err);
        return;
      }
      if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) != 0) {
        // The server answered (or closed) before taking the whole request.
        onReadable(id, c);
        if (!conns.contains(id)) return;
      }
      if ((events & EPOLLOUT) != 0) onWritable(id, c);
      return;
    }
    onReadable(id, c);
  }

  void expire(Clock::time_point now) {
    while (!deadlines.empty() && deadlines.begin()->first <= now) {
      std::uint64_t id = deadlines.begin()->second;
      Conn& c = conns.at(id);
      switch (c.state) {
        case ConnState::kConnecting:
          finish(id, FailureKind::kConnectTimeout, ETIMEDOUT);
          break;
        case ConnState::kSending:
        case ConnState::kReceiving:
          finish(id, FailureKind::kTimeout, ETIMEDOUT);
          break;
        case ConnState::kDraining:
          remove(id, true);
          break;
      }
    }
  }
};

HttpClient::HttpClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpClient::~HttpClient() = default;

Result<std::unique_ptr<HttpClient>> HttpClient::create() {
  auto impl = std::make_unique<Impl>();
  impl->epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (impl->epfd < 0) return makeError(std::string("epoll_create1 failed: ") + std::strerror(errno));
  return std::unique_ptr<HttpClient>(new HttpClient(std::move(impl)));
}

void HttpClient::start(const Endpoint& endpoint, const HttpRequest& request, std::uint64_t tag,
                       const Timeouts& timeouts) {
  Impl& m = *impl_;
  const std::uint64_t id = m.next_id++;
  Conn c;
  c.tag = tag;
  c.out = serializeRequest(request, endpoint.host_header);
  c.started = Clock::now();
  c.connect_deadline = c.started + std::min(timeouts.connect, timeouts.total);
  c.total_deadline = c.started + timeouts.total;
  auto failNow = [&](FailureKind kind, int err) {
    Attempt a;
    a.tag = tag;
    a.kind = kind;
    a.sys_errno = err;
    a.started = c.started;
    a.finished = Clock::now();
    m.done.push_back(std::move(a));
  };
  c.fd = ::socket(endpoint.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    failNow(FailureKind::kLocalError, errno);
    return;
  }
  int one = 1;
  (void)::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = ::connect(c.fd, reinterpret_cast<const sockaddr*>(&endpoint.addr), endpoint.addr_len);
  if (rc != 0 && errno != EINPROGRESS) {
    int err = errno;
    ::close(c.fd);
    failNow(classifyConnectErrno(err), err);
    return;
  }
  auto [it, inserted] = m.conns.emplace(id, std::move(c));
  (void)inserted;
  Conn& conn = it->second;
  ++m.reporting;
  m.setDeadline(id, conn, conn.connect_deadline);
  if (rc == 0) {
    conn.state = ConnState::kSending;
    m.setDeadline(id, conn, conn.total_deadline);
    m.watch(id, conn, EPOLLIN | EPOLLRDHUP, true);
    m.onWritable(id, conn);
  } else {
    m.watch(id, conn, EPOLLOUT, true);
  }
}

std::vector<Attempt> HttpClient::poll(Clock::time_point until) {
  Impl& m = *impl_;
  std::array<epoll_event, 256> events{};
  while (true) {
    auto now = Clock::now();
    m.expire(now);
    if (!m.done.empty() || now >= until) break;
    auto wake = until;
    if (!m.deadlines.empty()) wake = std::min(wake, m.deadlines.begin()->first);
    auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(wake - now);
    if (wait.count() < 0) wait = std::chrono::nanoseconds(0);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(wait.count() / 1000000000);
    ts.tv_nsec = static_cast<long>(wait.count() % 1000000000);
    int n = ::epoll_pwait2(m.epfd, events.data(), static_cast<int>(events.size()), &ts, nullptr);
    if (n < 0) {
      if (errno == EINTR) break;  // a signal: let the caller look at its stop flag
      break;
    }
    for (int i = 0; i < n; ++i) {
      const auto& ev = events[static_cast<std::size_t>(i)];
      m.onEvent(ev.data.u64, ev.events);
    }
  }
  std::vector<Attempt> out;
  out.swap(m.done);
  return out;
}

std::size_t HttpClient::inFlight() const {
  return impl_->reporting + impl_->done.size();
}

void HttpClient::abortAll() {
  Impl& m = *impl_;
  for (auto& [id, c] : m.conns) closeAbortive(c.fd);
  m.conns.clear();
  m.deadlines.clear();
  m.done.clear();
  m.reporting = 0;
}

Attempt fetchOnce(HttpClient& client, const Endpoint& endpoint, const HttpRequest& request,
                  const Timeouts& timeouts) {
  constexpr std::uint64_t kTag = 0xfe77f37c400eULL;
  client.start(endpoint, request, kTag, timeouts);
  // Bounded: the client gives the attempt up at its deadline; the margin covers scheduling.
  const auto give_up = Clock::now() + timeouts.total + std::chrono::seconds(5);
  while (Clock::now() < give_up) {
    for (auto& a : client.poll(give_up)) {
      if (a.tag == kTag) return a;
    }
  }
  Attempt a;
  a.tag = kTag;
  a.kind = FailureKind::kTimeout;
  a.sys_errno = ETIMEDOUT;
  a.started = a.finished = Clock::now();
  return a;
}

}  // namespace ferry::bench
