#include "ferry/delayline/nfqueue_messages.h"

#include <arpa/inet.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <sys/socket.h>

#include <gtest/gtest.h>

#include <cstring>

namespace ferry::delayline::nfq {
namespace {

constexpr std::size_t kAttrHeader = sizeof(nlattr);  // NLA_HDRLEN (nlattr is 4 bytes, aligned)

template <typename T>
T load(const Bytes& b, std::size_t at) {
  T v{};
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

template <typename T>
void put(Bytes& b, const T& v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  b.insert(b.end(), p, p + sizeof v);
  b.resize((b.size() + 3U) & ~std::size_t{3});
}

void setLength(Bytes& b, std::size_t start) {
  auto len = static_cast<std::uint32_t>(b.size() - start);
  std::memcpy(b.data() + start, &len, sizeof len);
}

// A kernel-style NFQNL_MSG_PACKET with the packet header preceded by another attribute.
Bytes packetMessage(std::uint32_t id) {
  Bytes b;
  nlmsghdr h{};
  h.nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
  put(b, h);
  put(b, nfgenmsg{AF_INET, NFNETLINK_V0, htons(3)});
  nlattr mark{static_cast<std::uint16_t>(kAttrHeader + 4), NFQA_MARK};
  put(b, mark);
  put(b, htonl(42));
  nlattr hdr{static_cast<std::uint16_t>(kAttrHeader + sizeof(nfqnl_msg_packet_hdr)), NFQA_PACKET_HDR};
  put(b, hdr);
  nfqnl_msg_packet_hdr ph{};
  ph.packet_id = htonl(id);
  ph.hw_protocol = htons(0x0800);
  ph.hook = NF_INET_PRE_ROUTING;
  put(b, ph);
  setLength(b, 0);
  return b;
}

Bytes errorMessage(int code, std::uint32_t requestSeq) {
  Bytes b;
  nlmsghdr h{};
  h.nlmsg_type = NLMSG_ERROR;
  put(b, h);
  put(b, code);
  nlmsghdr echoed{};
  echoed.nlmsg_len = sizeof(nlmsghdr);
  echoed.nlmsg_seq = requestSeq;
  put(b, echoed);
  setLength(b, 0);
  return b;
}

TEST(NfqueueEncode, BindIsAnAcknowledgedConfigCommandForTheQueue) {
  const Bytes b = encodeBind(7, 99);
  ASSERT_GE(b.size(), sizeof(nlmsghdr) + sizeof(nfgenmsg) + kAttrHeader + sizeof(nfqnl_msg_config_cmd));
  const auto h = load<nlmsghdr>(b, 0);
  EXPECT_EQ(h.nlmsg_len, b.size());
  EXPECT_EQ(h.nlmsg_type, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG);
  EXPECT_EQ(h.nlmsg_flags, NLM_F_REQUEST | NLM_F_ACK);
  EXPECT_EQ(h.nlmsg_seq, 99U);
  EXPECT_EQ(ntohs(load<nfgenmsg>(b, sizeof(nlmsghdr)).res_id), 7);
  const auto a = load<nlattr>(b, sizeof(nlmsghdr) + sizeof(nfgenmsg));
  EXPECT_EQ(a.nla_type, NFQA_CFG_CMD);
  EXPECT_EQ(load<nfqnl_msg_config_cmd>(b, sizeof(nlmsghdr) + sizeof(nfgenmsg) + kAttrHeader).command,
            NFQNL_CFG_CMD_BIND);
}

TEST(NfqueueEncode, ParamsAskForMetadataOnlyAndWholeGsoPackets) {
  const Bytes b = encodeParams(0, 65536, 1);
  std::size_t at = sizeof(nlmsghdr) + sizeof(nfgenmsg);
  bool sawParams = false, sawFlags = false, sawMask = false, sawMaxLen = false;
  while (at + kAttrHeader <= b.size()) {
    const auto a = load<nlattr>(b, at);
    ASSERT_GE(a.nla_len, kAttrHeader);
    const std::size_t payload = at + kAttrHeader;
    switch (a.nla_type) {
      case NFQA_CFG_PARAMS:
        EXPECT_EQ(load<nfqnl_msg_config_params>(b, payload).copy_mode, NFQNL_COPY_META);
        sawParams = true;
        break;
      case NFQA_CFG_FLAGS:
        EXPECT_EQ(ntohl(load<std::uint32_t>(b, payload)), static_cast<std::uint32_t>(NFQA_CFG_F_GSO));
        sawFlags = true;
        break;
      case NFQA_CFG_MASK:
        EXPECT_EQ(ntohl(load<std::uint32_t>(b, payload)), static_cast<std::uint32_t>(NFQA_CFG_F_GSO));
        sawMask = true;
        break;
      case NFQA_CFG_QUEUE_MAXLEN:
        EXPECT_EQ(ntohl(load<std::uint32_t>(b, payload)), 65536U);
        sawMaxLen = true;
        break;
      default:
        ADD_FAILURE() << "unexpected attribute " << a.nla_type;
    }
    at += (a.nla_len + 3U) & ~3U;
  }
  EXPECT_TRUE(sawParams && sawFlags && sawMask && sawMaxLen);
}

TEST(NfqueueEncode, VerdictBatchAcceptsUpToTheIdWithoutAck) {
  const Bytes b = encodeVerdictBatch(2, 0x01020304, 5);
  const auto h = load<nlmsghdr>(b, 0);
  EXPECT_EQ(h.nlmsg_type, (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT_BATCH);
  EXPECT_EQ(h.nlmsg_flags & NLM_F_ACK, 0);
  const auto v = load<nfqnl_msg_verdict_hdr>(b, sizeof(nlmsghdr) + sizeof(nfgenmsg) + kAttrHeader);
  EXPECT_EQ(ntohl(v.verdict), static_cast<std::uint32_t>(NF_ACCEPT));
  EXPECT_EQ(ntohl(v.id), 0x01020304U);
}

TEST(NfqueueDecode, ReadsPacketIdsAcksAndErrorsFromOneDatagram) {
  Bytes d = packetMessage(17);
  const Bytes second = packetMessage(18);
  const Bytes ack = errorMessage(0, 4);
  const Bytes busy = errorMessage(-EBUSY, 5);
  for (const Bytes* m : {&second, &ack, &busy}) d.insert(d.end(), m->begin(), m->end());
  std::vector<Event> events;
  ASSERT_TRUE(decode(d, events).ok());
  ASSERT_EQ(events.size(), 4U);
  EXPECT_EQ(events[0].kind, Event::Kind::kPacket);
  EXPECT_EQ(events[0].packetId, 17U);
  EXPECT_EQ(events[1].packetId, 18U);
  EXPECT_EQ(events[2].kind, Event::Kind::kAck);
  EXPECT_EQ(events[2].seq, 4U);
  EXPECT_EQ(events[3].kind, Event::Kind::kError);
  EXPECT_EQ(events[3].error, EBUSY);
  EXPECT_EQ(events[3].seq, 5U);
}

struct Damage {
  const char* name;
  std::size_t keep;        // bytes of a packet message left (truncation)
  std::uint32_t nlmsgLen;  // overrides the header's length when non-zero
};
class NfqueueDecodeDamaged : public testing::TestWithParam<Damage> {};

TEST_P(NfqueueDecodeDamaged, IsAnErrorNotACrash) {
  Bytes d = packetMessage(1);
  const Damage& c = GetParam();
  if (c.nlmsgLen != 0) std::memcpy(d.data(), &c.nlmsgLen, sizeof c.nlmsgLen);
  d.resize(std::min(d.size(), c.keep));
  std::vector<Event> events;
  EXPECT_FALSE(decode(d, events).ok());
  EXPECT_TRUE(events.empty());
}

INSTANTIATE_TEST_SUITE_P(Cases, NfqueueDecodeDamaged,
                         testing::Values(Damage{"short_header", 10, 0}, Damage{"length_past_end", 1000, 4096},
                                         Damage{"length_below_header", 1000, 8},
                                         Damage{"attribute_cut", 28, 28}),
                         [](const testing::TestParamInfo<Damage>& i) { return std::string(i.param.name); });

}  // namespace
}  // namespace ferry::delayline::nfq
