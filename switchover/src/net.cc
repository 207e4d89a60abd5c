#include "net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace ferry::switchover::net {

std::string Address::str() const {
  char host[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

bool Address::operator==(const Address& other) const {
  return len == other.len && std::memcmp(&addr, &other.addr, len) == 0;
}

Result<Address> resolve(const Endpoint& endpoint) {
  if (endpoint.host.empty() || endpoint.port == 0)
    return makeError("cannot resolve '" + endpoint.str() + "': host and port are required");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string port = std::to_string(endpoint.port);
  const int rc = ::getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &list);
  if (rc != 0 || list == nullptr) {
    return makeError("cannot resolve '" + endpoint.host + "': " + ::gai_strerror(rc),
                     "use an address, or a name this host resolves (/etc/hosts, DNS)");
  }
  const addrinfo* pick = list;
  for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  Address out;
  std::memcpy(&out.addr, pick->ai_addr, pick->ai_addrlen);
  out.len = pick->ai_addrlen;
  ::freeaddrinfo(list);
  return out;
}

Result<int> listenTcp(const Endpoint& where, int backlog) {
  Endpoint e = where;
  if (e.host.empty()) e.host = "0.0.0.0";
  // resolve() refuses port 0; a listener may ask for any port.
  Endpoint lookup = e;
  if (lookup.port == 0) lookup.port = 1;
  auto addr = resolve(lookup);
  if (!addr.ok()) return addr.error();
  if (addr->addr.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&addr->addr)->sin_port = htons(e.port);
  } else {
    reinterpret_cast<sockaddr_in6*>(&addr->addr)->sin6_port = htons(e.port);
  }
  const int fd = ::socket(addr->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError("socket(): " + errnoText(errno));
  int one = 1;
  (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, addr->sa(), addr->len) != 0) {
    const int err = errno;
    ::close(fd);
    return makeError("cannot listen on " + e.str() + ": " + errnoText(err),
                     err == EADDRINUSE ? "another program holds the port; stop it or choose another `front`"
                                       : "check the address (and run as root for ports below 1024)");
  }
  if (::listen(fd, backlog) != 0) {
    const int err = errno;
    ::close(fd);
    return makeError("cannot listen on " + e.str() + ": " + errnoText(err));
  }
  return fd;
}

Result<Endpoint> localEndpoint(int fd) {
  Address a;
  a.len = sizeof a.addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a.addr), &a.len) != 0)
    return makeError("getsockname(): " + errnoText(errno));
  char host[INET6_ADDRSTRLEN] = {};
  if (a.addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.addr);
    ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    return Endpoint{host, ntohs(in->sin_port)};
  }
  const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.addr);
  ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
  return Endpoint{host, ntohs(in6->sin6_port)};
}

std::string peerIp(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return {};
  char host[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&ss)->sin_addr, host, sizeof host);
  } else if (ss.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_addr, host, sizeof host);
  }
  return host;
}

ConnectStart connectNonBlocking(const Address& to) {
  ConnectStart out;
  const int fd = ::socket(to.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.error = errno;
    return out;
  }
  setNoDelay(fd);
  if (::connect(fd, to.sa(), to.len) != 0 && errno != EINPROGRESS) {
    out.error = errno;
    ::close(fd);
    return out;
  }
  out.fd = fd;
  return out;
}

void setNoDelay(int fd) {
  int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void closeWithReset(int fd) {
  linger l{};
  l.l_onoff = 1;
  l.l_linger = 0;
  (void)::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

std::string errnoText(int err) {
  switch (err) {
    case ECONNREFUSED:
      return "connection refused";
    case ETIMEDOUT:
      return "timed out";
    case ECONNRESET:
      return "connection reset";
    case EHOSTUNREACH:
      return "host unreachable";
    case ENETUNREACH:
      return "network unreachable";
    case EPIPE:
      return "connection closed";
    default:
      break;
  }
  return std::strerror(err);
}

}  // namespace ferry::switchover::net
