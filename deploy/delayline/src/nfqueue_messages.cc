#include "ferry/delayline/nfqueue_messages.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

namespace ferry::delayline::nfq {
namespace {

constexpr std::size_t align4(std::size_t n) {
  return (n + 3U) & ~std::size_t{3};
}
constexpr std::size_t kAttrHeader = align4(sizeof(nlattr));  // NLA_HDRLEN without its int arithmetic

// Builds one netlink message: header, nfgenmsg, then attributes.
class Message {
 public:
  Message(std::uint8_t nfqType, std::uint16_t queue, std::uint32_t seq, bool ack) {
    nlmsghdr h{};
    h.nlmsg_type = static_cast<std::uint16_t>((NFNL_SUBSYS_QUEUE << 8) | nfqType);
    h.nlmsg_flags = static_cast<std::uint16_t>(NLM_F_REQUEST | (ack ? NLM_F_ACK : 0));
    h.nlmsg_seq = seq;
    append(&h, sizeof h);
    nfgenmsg g{};
    g.nfgen_family = AF_UNSPEC;
    g.version = NFNETLINK_V0;
    g.res_id = htons(queue);
    append(&g, sizeof g);
  }

  template <typename T>
  void attr(std::uint16_t type, const T& payload, std::size_t size = sizeof(T)) {
    nlattr a{};
    a.nla_len = static_cast<std::uint16_t>(kAttrHeader + size);
    a.nla_type = type;
    append(&a, sizeof a);
    append(&payload, size);
  }

  Bytes finish() && {
    auto len = static_cast<std::uint32_t>(bytes_.size());
    std::memcpy(bytes_.data() + offsetof(nlmsghdr, nlmsg_len), &len, sizeof len);
    return std::move(bytes_);
  }

 private:
  void append(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::byte*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
    bytes_.resize(align4(bytes_.size()));
  }
  Bytes bytes_;
};

Bytes configCmd(std::uint8_t cmd, std::uint16_t queue, std::uint32_t seq) {
  Message m(NFQNL_MSG_CONFIG, queue, seq, true);
  nfqnl_msg_config_cmd c{};
  c.command = cmd;
  c.pf = htons(AF_UNSPEC);
  m.attr(NFQA_CFG_CMD, c);
  return std::move(m).finish();
}

template <typename T>
T load(std::span<const std::byte> b, std::size_t at) {
  T v{};
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

}  // namespace

Bytes encodeBind(std::uint16_t queue, std::uint32_t seq) {
  return configCmd(NFQNL_CFG_CMD_BIND, queue, seq);
}
Bytes encodeUnbind(std::uint16_t queue, std::uint32_t seq) {
  return configCmd(NFQNL_CFG_CMD_UNBIND, queue, seq);
}

Bytes encodeParams(std::uint16_t queue, std::uint32_t maxLen, std::uint32_t seq) {
  Message m(NFQNL_MSG_CONFIG, queue, seq, true);
  nfqnl_msg_config_params p{};
  p.copy_range = htonl(0);
  p.copy_mode = NFQNL_COPY_META;
  m.attr(NFQA_CFG_PARAMS, p);
  m.attr(NFQA_CFG_QUEUE_MAXLEN, htonl(maxLen));
  m.attr(NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
  m.attr(NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
  return std::move(m).finish();
}

Bytes encodeVerdictBatch(std::uint16_t queue, std::uint32_t lastId, std::uint32_t seq) {
  Message m(NFQNL_MSG_VERDICT_BATCH, queue, seq, false);
  nfqnl_msg_verdict_hdr v{};
  v.verdict = htonl(NF_ACCEPT);
  v.id = htonl(lastId);
  m.attr(NFQA_VERDICT_HDR, v);
  return std::move(m).finish();
}

Status decode(std::span<const std::byte> d, std::vector<Event>& out) {
  std::size_t at = 0;
  while (at < d.size()) {
    if (d.size() - at < sizeof(nlmsghdr)) {
      return makeError("nfqueue: truncated netlink header at byte " + std::to_string(at));
    }
    const auto h = load<nlmsghdr>(d, at);
    if (h.nlmsg_len < sizeof(nlmsghdr) || h.nlmsg_len > d.size() - at) {
      return makeError("nfqueue: bad netlink message length " + std::to_string(h.nlmsg_len));
    }
    const auto msg = d.subspan(at, h.nlmsg_len);
    Event e;
    if (h.nlmsg_type == NLMSG_ERROR) {
      if (msg.size() < sizeof(nlmsghdr) + sizeof(int)) return makeError("nfqueue: truncated error message");
      const int code = load<int>(msg, sizeof(nlmsghdr));
      e.kind = code == 0 ? Event::Kind::kAck : Event::Kind::kError;
      e.error = -code;
      e.seq = h.nlmsg_seq;
      // The kernel echoes the request's header; its seq is the one that matters.
      if (msg.size() >= sizeof(nlmsghdr) + sizeof(int) + sizeof(nlmsghdr)) {
        e.seq = load<nlmsghdr>(msg, sizeof(nlmsghdr) + sizeof(int)).nlmsg_seq;
      }
      out.push_back(e);
    } else if (h.nlmsg_type == ((NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET)) {
      std::size_t a = align4(sizeof(nlmsghdr) + sizeof(nfgenmsg));
      bool found = false;
      while (a + kAttrHeader <= msg.size()) {
        const auto attr = load<nlattr>(msg, a);
        if (attr.nla_len < kAttrHeader || attr.nla_len > msg.size() - a) {
          return makeError("nfqueue: bad attribute length " + std::to_string(attr.nla_len));
        }
        if ((attr.nla_type & NLA_TYPE_MASK) == NFQA_PACKET_HDR &&
            attr.nla_len >= kAttrHeader + sizeof(nfqnl_msg_packet_hdr)) {
          e.kind = Event::Kind::kPacket;
          e.packetId = ntohl(load<nfqnl_msg_packet_hdr>(msg, a + kAttrHeader).packet_id);
          found = true;
          break;
        }
        a += align4(attr.nla_len);
      }
      if (!found) return makeError("nfqueue: packet message without NFQA_PACKET_HDR");
      out.push_back(e);
    } else if (h.nlmsg_type != NLMSG_NOOP && h.nlmsg_type != NLMSG_DONE) {
      out.push_back(e);
    }
    at += align4(h.nlmsg_len);
  }
  return okStatus();
}

}  // namespace ferry::delayline::nfq
