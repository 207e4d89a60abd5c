// The few nfnetlink_queue messages the delay line sends and receives, encoded
// and decoded by hand from the kernel's uapi headers (no libnetfilter_queue):
// bind a queue, ask for metadata only with GSO packets left whole, give batch
// verdicts, and read packet ids, acks and errors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ferry/base/error.h"

namespace ferry::delayline::nfq {

using Bytes = std::vector<std::byte>;

// NFQNL_MSG_CONFIG / NFQNL_CFG_CMD_BIND (or UNBIND), acknowledged.
Bytes encodeBind(std::uint16_t queue, std::uint32_t seq);
Bytes encodeUnbind(std::uint16_t queue, std::uint32_t seq);

// NFQNL_MSG_CONFIG: copy mode META (no payload reaches userspace), the queue's
// maximum length, and NFQA_CFG_F_GSO (the kernel hands over GSO/GRO packets
// whole instead of segmenting them first), acknowledged.
Bytes encodeParams(std::uint16_t queue, std::uint32_t maxLen, std::uint32_t seq);

// NFQNL_MSG_VERDICT_BATCH: NF_ACCEPT for every packet of the queue with an id up
// to and including `lastId`. Not acknowledged (it is on the fast path).
Bytes encodeVerdictBatch(std::uint16_t queue, std::uint32_t lastId, std::uint32_t seq);

struct Event {
  enum class Kind { kPacket, kAck, kError, kOther };
  Kind kind = Kind::kOther;
  std::uint32_t packetId = 0;  // kPacket
  std::uint32_t seq = 0;       // kAck / kError: the request's sequence number
  int error = 0;               // kError: positive errno
};

// Decodes one datagram read from the socket (it may hold several netlink
// messages) and appends what it says to `out`. A truncated or malformed
// datagram is an error; events decoded before the damage are kept.
Status decode(std::span<const std::byte> datagram, std::vector<Event>& out);

}  // namespace ferry::delayline::nfq
