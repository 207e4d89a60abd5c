// A netlink socket bound to one NFQUEUE queue in the current network namespace.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/delayline/nfqueue_messages.h"

namespace ferry::delayline {

class QueueSocket {
 public:
  // Binds `queue` (metadata only, GSO packets whole, at most `maxLen` held).
  // Fails with a hint when another process holds the queue or the kernel lacks
  // nfnetlink_queue.
  static Result<std::unique_ptr<QueueSocket>> open(std::uint16_t queue, std::uint32_t maxLen);
  ~QueueSocket();
  QueueSocket(const QueueSocket&) = delete;
  QueueSocket& operator=(const QueueSocket&) = delete;

  [[nodiscard]] int fd() const { return fd_; }

  // Reads every datagram waiting (non-blocking) and appends its events.
  // `overruns` counts ENOBUFS: notifications the kernel could not deliver (the
  // packets stay queued and go out with the next batch verdict).
  Status receive(std::vector<nfq::Event>& out, std::uint64_t& overruns);

  // Accepts every held packet with an id up to `lastId`.
  Status acceptUpTo(std::uint32_t lastId);

 private:
  QueueSocket(int fd, std::uint16_t queue) : fd_(fd), queue_(queue) {}
  Status request(const nfq::Bytes& msg, std::uint32_t seq, const char* what);
  Status send(const nfq::Bytes& msg);

  int fd_;
  std::uint16_t queue_;
  std::uint32_t seq_ = 1;
  std::vector<nfq::Event> early_;  // packets that arrived while setting up
  std::vector<std::byte> buf_ = std::vector<std::byte>(std::size_t{256} * 1024);
};

}  // namespace ferry::delayline
