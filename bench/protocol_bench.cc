// protocol_bench: what CURVE and the PeerLink cost on this machine.
//
// Sends COUNT BlockData messages of SIZE bytes (default 64 KiB) over loopback
// three ways, RUNS times each, and prints messages/s, MiB/s and CPU seconds per
// GiB (user+sys of the whole process: sender, receiver and libzmq I/O threads):
//   link       PeerLink (CURVE + ZAP, credit, acks, resend buffer) — what ferry uses
//   raw-curve  a bare DEALER→ROUTER pair with CURVE, no flow control
//   raw-plain  the same without CURVE (NULL mechanism): the baseline
// Usage: protocol_bench [--count N] [--size BYTES] [--runs R] [--mode all|link|raw-curve|raw-plain]
// A benchmark, not a test: run it in a release build on an otherwise idle machine.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <zmq.hpp>

#include "ferry/base/log.h"
#include "ferry/protocol/peer_link.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace proto = ferry::protocol;

struct Run {
  double seconds = 0;
  double cpuSeconds = 0;
};

double cpuNow() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto tv = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return tv(ru.ru_utime) + tv(ru.ru_stime);
}

void fillBlock(capnp::MallocMessageBuilder& b, uint64_t index, size_t size) {
  auto block = b.initRoot<proto::wire::Message>().getBody().initBlockData();
  block.getFile().setPathId(1);
  block.setOffset(index * size);
  block.setLength(static_cast<uint32_t>(size));
  block.setCompression(proto::wire::Compression::NONE);
  auto data = block.initData(static_cast<unsigned>(size));
  for (size_t i = 0; i < size; i += 64) data[i] = static_cast<kj::byte>(index + i);
}

Run runLink(uint64_t count, size_t size) {
  auto server = proto::generateKeyPair();
  auto client = proto::generateKeyPair();
  proto::PeerLinkConfig sc;
  sc.mode = proto::PeerLinkConfig::Mode::kListen;
  sc.endpoint = "tcp://127.0.0.1:*";
  sc.keys = *server;
  sc.allowedPeers = {{"client", client->publicKey}};
  sc.nodeId = "b";
  auto listener = proto::PeerLink::start(sc);
  if (!listener.ok()) {
    std::fprintf(stderr, "listen: %s\n", listener.error().message().c_str());
    std::exit(1);
  }
  proto::PeerLinkConfig cc;
  cc.mode = proto::PeerLinkConfig::Mode::kConnect;
  cc.endpoint = (*listener)->endpoint();
  cc.keys = *client;
  cc.serverPublicKey = server->publicKey;
  cc.nodeId = "a";
  auto connector = proto::PeerLink::start(cc);
  if (!connector.ok() || !(*connector)->waitConnected(5s).ok()) {
    std::fprintf(stderr, "connect failed\n");
    std::exit(1);
  }
  const double cpu0 = cpuNow();
  const auto t0 = Clock::now();
  std::thread receiver([&] {
    for (uint64_t i = 0; i < count; ++i) {
      auto r = (*listener)->receive(30s);
      if (!r.ok()) {
        std::fprintf(stderr, "receive: %s\n", r.error().message().c_str());
        std::exit(1);
      }
    }
  });
  for (uint64_t i = 0; i < count; ++i) {
    capnp::MallocMessageBuilder b;
    fillBlock(b, i, size);
    auto s = (*connector)->send(b, 30s);
    if (!s.ok()) {
      std::fprintf(stderr, "send: %s\n", s.error().message().c_str());
      std::exit(1);
    }
  }
  receiver.join();
  Run run{std::chrono::duration<double>(Clock::now() - t0).count(), cpuNow() - cpu0};
  (void)(*connector)->flush(10s);
  const auto stats = (*listener)->stats();
  std::fprintf(stderr, "link: %llu of %llu received frames copied for alignment\n",
               static_cast<unsigned long long>(stats.framesCopied),
               static_cast<unsigned long long>(stats.messagesReceived));
  return run;
}

Run runRaw(uint64_t count, size_t size, bool curve) {
  zmq::context_t ctx(1);
  zmq::socket_t router(ctx, zmq::socket_type::router);
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  router.set(zmq::sockopt::linger, 0);
  dealer.set(zmq::sockopt::linger, 0);
  if (curve) {
    char spub[41], ssec[41], cpub[41], csec[41];
    zmq_curve_keypair(spub, ssec);
    zmq_curve_keypair(cpub, csec);
    router.set(zmq::sockopt::curve_server, 1);
    router.set(zmq::sockopt::curve_secretkey, std::string(ssec));
    dealer.set(zmq::sockopt::curve_serverkey, std::string(spub));
    dealer.set(zmq::sockopt::curve_publickey, std::string(cpub));
    dealer.set(zmq::sockopt::curve_secretkey, std::string(csec));
  }
  router.bind("tcp://127.0.0.1:*");
  dealer.connect(router.get(zmq::sockopt::last_endpoint));
  // Encode once: the raw runs measure the transport, not capnp.
  capnp::MallocMessageBuilder b;
  fillBlock(b, 0, size);
  auto words = capnp::messageToFlatArray(b);
  auto bytes = words.asBytes();
  const double cpu0 = cpuNow();
  const auto t0 = Clock::now();
  std::thread receiver([&] {
    zmq::message_t rid;
    zmq::message_t payload;
    for (uint64_t i = 0; i < count; ++i) {
      (void)router.recv(rid);
      (void)router.recv(payload);
    }
  });
  for (uint64_t i = 0; i < count; ++i) {
    zmq::message_t m(bytes.begin(), bytes.size());
    (void)dealer.send(m, zmq::send_flags::none);
  }
  receiver.join();
  return {std::chrono::duration<double>(Clock::now() - t0).count(), cpuNow() - cpu0};
}

void report(const char* mode, uint64_t count, size_t size, std::vector<Run> runs) {
  std::sort(runs.begin(), runs.end(), [](const Run& a, const Run& b) { return a.seconds < b.seconds; });
  const double mib = static_cast<double>(count * size) / (1024.0 * 1024.0);
  const Run& med = runs[runs.size() / 2];
  std::printf(
      "%-10s  %6zu B x %6llu  median %8.0f msg/s  %7.1f MiB/s  (min %7.1f, max %7.1f MiB/s)  CPU %.2f s/GiB  "
      "runs %zu\n",
      mode, size, static_cast<unsigned long long>(count), static_cast<double>(count) / med.seconds,
      mib / med.seconds, mib / runs.back().seconds, mib / runs.front().seconds,
      med.cpuSeconds / (mib / 1024.0), runs.size());
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t count = 4000;
  size_t size = size_t{64} * 1024;
  int runs = 5;
  std::string mode = "all";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--count")
      count = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--size")
      size = std::strtoull(argv[i + 1], nullptr, 10);
    else if (flag == "--runs")
      runs = static_cast<int>(std::strtol(argv[i + 1], nullptr, 10));
    else if (flag == "--mode")
      mode = argv[i + 1];
    else {
      std::fprintf(stderr,
                   "protocol_bench: unknown flag %s — see the comment at the top of protocol_bench.cc\n",
                   argv[i]);
      return 2;
    }
  }
  ferry::log::setLevel("warn");
  std::printf("protocol_bench: %llu messages of %zu bytes over tcp://127.0.0.1, %d runs, %u cores\n",
              static_cast<unsigned long long>(count), size, runs, std::thread::hardware_concurrency());
  auto many = [&](auto fn) {
    std::vector<Run> v;
    v.reserve(static_cast<std::size_t>(runs));
    for (int r = 0; r < runs; ++r) v.push_back(fn());
    return v;
  };
  if (mode == "all" || mode == "raw-plain")
    report("raw-plain", count, size, many([&] { return runRaw(count, size, false); }));
  if (mode == "all" || mode == "raw-curve")
    report("raw-curve", count, size, many([&] { return runRaw(count, size, true); }));
  if (mode == "all" || mode == "link")
    report("link", count, size, many([&] { return runLink(count, size); }));
  return 0;
}
