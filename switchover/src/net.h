// Small socket helpers shared by the hand-off proxy, the health check and the tests'
// view of them. Internal to ferry_switchover.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <string>

#include "ferry/base/error.h"
#include "ferry/switchover/driver.h"

namespace ferry::switchover::net {

struct Address {
  sockaddr_storage addr{};
  socklen_t len = 0;

  [[nodiscard]] std::string str() const;  // "10.0.0.1:80", "[::1]:80"
  [[nodiscard]] const sockaddr* sa() const { return reinterpret_cast<const sockaddr*>(&addr); }
  bool operator==(const Address& other) const;
};

// Resolves a host name or address (getaddrinfo; /etc/hosts first in practice).
// IPv4 is preferred when a name has both.
Result<Address> resolve(const Endpoint& endpoint);

// A non-blocking, close-on-exec listening TCP socket on "host:port" (port 0: any).
Result<int> listenTcp(const Endpoint& where, int backlog);
// The address a socket is bound to.
Result<Endpoint> localEndpoint(int fd);
// The peer's IP address as text (for X-Forwarded-For); empty when unknown.
std::string peerIp(int fd);

// Starts a non-blocking connect. Returns the fd (connecting or connected) or the errno
// of a failure that happened at once (e.g. ECONNREFUSED on loopback, EMFILE).
struct ConnectStart {
  int fd = -1;
  int error = 0;
};
ConnectStart connectNonBlocking(const Address& to);

void setNoDelay(int fd);
// Closes with RST instead of FIN (SO_LINGER 0): for connections cut on purpose.
void closeWithReset(int fd);

// "connection refused", "timed out", ... for an errno in an error message.
std::string errnoText(int err);

}  // namespace ferry::switchover::net
