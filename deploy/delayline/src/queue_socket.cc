#include "ferry/delayline/queue_socket.h"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace ferry::delayline {
namespace {

constexpr int kReceiveBuffer = 16 * 1024 * 1024;  // metadata messages are ~100 bytes each

std::string errnoText(int e) {
  return std::string(std::strerror(e));
}

}  // namespace

Result<std::unique_ptr<QueueSocket>> QueueSocket::open(std::uint16_t queue, std::uint32_t maxLen) {
  const int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) {
    const int e = errno;
    return makeError("delayline: netlink socket: " + errnoText(e),
                     "run as root in the host's network namespace; the kernel needs nfnetlink_queue");
  }
  std::unique_ptr<QueueSocket> s(new QueueSocket(fd, queue));
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    const int e = errno;
    return makeError("delayline: bind netlink socket: " + errnoText(e));
  }
  // FORCE needs CAP_NET_ADMIN, which a delay line has anyway; fall back silently.
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &kReceiveBuffer, sizeof kReceiveBuffer) != 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &kReceiveBuffer, sizeof kReceiveBuffer);
  }
  timeval tv{};
  tv.tv_sec = 2;  // set-up requests wait at most this long for the kernel's ack
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  std::uint32_t seq = s->seq_++;
  FERRY_TRY(s->request(nfq::encodeBind(queue, seq), seq, "bind queue"));
  seq = s->seq_++;
  FERRY_TRY(s->request(nfq::encodeParams(queue, maxLen, seq), seq, "set copy mode/GSO/queue length"));
  return s;
}

QueueSocket::~QueueSocket() {
  // Closing the socket makes the kernel drop whatever is still held; the caller
  // releases everything first (DelayQueue::releaseAll).
  ::close(fd_);
}

Status QueueSocket::send(const nfq::Bytes& msg) {
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const ssize_t n =
        ::sendto(fd_, msg.data(), msg.size(), 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel);
    if (n == static_cast<ssize_t>(msg.size())) return okStatus();
    if (n < 0 && errno == EINTR) continue;
    const int e = n < 0 ? errno : EMSGSIZE;
    return makeError("delayline: send to nfnetlink_queue: " + errnoText(e));
  }
  return makeError("delayline: send to nfnetlink_queue interrupted 100 times");
}

Status QueueSocket::request(const nfq::Bytes& msg, std::uint32_t seq, const char* what) {
  FERRY_TRY(send(msg));
  for (int reads = 0; reads < 1000; ++reads) {
    const ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), 0);
    if (n < 0) {
      const int e = errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        return makeError(std::string("delayline: ") + what + ": no answer from the kernel within 2 s");
      }
      return makeError(std::string("delayline: ") + what + ": " + errnoText(e));
    }
    std::vector<nfq::Event> events;
    FERRY_TRY(nfq::decode(std::span(buf_.data(), static_cast<std::size_t>(n)), events));
    for (const auto& e : events) {
      if (e.kind == nfq::Event::Kind::kPacket) early_.push_back(e);
      if (e.seq != seq) continue;
      if (e.kind == nfq::Event::Kind::kAck) return okStatus();
      if (e.kind == nfq::Event::Kind::kError) {
        std::string hint = e.error == EBUSY ? "another process is bound to queue " + std::to_string(queue_) +
                                                  " in this network namespace; stop it (links.sh clear)"
                                            : "";
        return makeError(std::string("delayline: ") + what + " for queue " + std::to_string(queue_) + ": " +
                             errnoText(e.error),
                         hint);
      }
    }
  }
  return makeError(std::string("delayline: ") + what + ": no ack among 1000 messages");
}

Status QueueSocket::receive(std::vector<nfq::Event>& out, std::uint64_t& overruns) {
  if (!early_.empty()) {
    out.insert(out.end(), early_.begin(), early_.end());
    early_.clear();
  }
  // Bounded: at most 4096 datagrams per call, then the caller releases due packets.
  for (int reads = 0; reads < 4096; ++reads) {
    const ssize_t n = ::recv(fd_, buf_.data(), buf_.size(), MSG_DONTWAIT);
    if (n < 0) {
      const int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) return okStatus();
      if (e == EINTR) continue;
      if (e == ENOBUFS) {
        ++overruns;
        continue;
      }
      return makeError("delayline: receive from nfnetlink_queue: " + errnoText(e));
    }
    FERRY_TRY(nfq::decode(std::span(buf_.data(), static_cast<std::size_t>(n)), out));
  }
  return okStatus();
}

Status QueueSocket::acceptUpTo(std::uint32_t lastId) {
  return send(nfq::encodeVerdictBatch(queue_, lastId, 0));
}

}  // namespace ferry::delayline
