// ferry-delayline: holds the packets NFQUEUE gives it for a fixed time, then
// lets them go — the lab's stand-in for netem's delay, which this kernel lacks.
//
// links.sh starts one per lab host inside the host's network namespace
// (nsenter -n); an nftables rule on the host's ingress queues the packets from
// its peers. The rate limit is not done here but by htb on the sender's egress.
//
// Only metadata crosses into userspace (NFQNL_COPY_META) and GSO/GRO packets stay
// whole (NFQA_CFG_F_GSO), so at Gbit/s the loop handles thousands, not hundreds
// of thousands, of packets a second; one batch verdict releases every packet due.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <csignal>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "ferry/base/files.h"
#include "ferry/base/log.h"
#include "ferry/delayline/delay_queue.h"
#include "ferry/delayline/queue_socket.h"

namespace {

using namespace std::chrono_literals;
using ferry::delayline::Clock;
using ferry::delayline::DelayQueue;
using ferry::delayline::QueueSocket;
namespace nfq = ferry::delayline::nfq;

constexpr int kExitUsage = 2;

struct Options {
  std::uint16_t queue = 0;
  std::int64_t delayUs = 0;
  std::uint32_t maxLen = 65536;
  int rtPriority = 0;
  int hostPid = 0;
  std::string netnsFile;
  std::string pidFile;
};

struct Stats {
  std::uint64_t packets = 0;
  std::uint64_t releases = 0;
  std::uint64_t overruns = 0;
  std::uint64_t kernelErrors = 0;
  std::size_t maxHeld = 0;
  std::chrono::nanoseconds maxLate{0};
  std::chrono::nanoseconds sumLate{0};
  std::uint64_t lateOver100us = 0;
};

void logStats(const Stats& s, const DelayQueue& q) {
  const auto meanLateUs =
      s.releases ? static_cast<double>(s.sumLate.count()) / 1e3 / static_cast<double>(s.releases) : 0.0;
  ferry::log::get("link")->info(
      "delay {} us: {} packets in {} releases, held now {}, max held {}, release late by mean {:.1f} us / "
      "max {:.1f} us ({} releases > 100 us late), {} notification overruns, {} kernel errors",
      std::chrono::duration_cast<std::chrono::microseconds>(q.delay()).count(), s.packets, s.releases,
      q.size(), s.maxHeld, meanLateUs, static_cast<double>(s.maxLate.count()) / 1e3, s.lateOver100us,
      s.overruns, s.kernelErrors);
}

// Whether `path` (an `ip netns` bind mount) still names the namespace we run in.
bool netnsStillNamed(const std::string& path) {
  struct stat self {};
  struct stat named {};
  if (::stat("/proc/self/ns/net", &self) != 0 || ::stat(path.c_str(), &named) != 0) return false;
  return self.st_ino == named.st_ino && self.st_dev == named.st_dev;
}

ferry::Status release(QueueSocket& sock, const std::optional<DelayQueue::Release>& r, Stats& stats) {
  if (!r) return ferry::okStatus();
  FERRY_TRY(sock.acceptUpTo(r->lastId));
  ++stats.releases;
  stats.maxLate = std::max(stats.maxLate, r->late);
  stats.sumLate += r->late;
  if (r->late > 100us) ++stats.lateOver100us;
  return ferry::okStatus();
}

int run(const Options& o) {
  auto log = ferry::log::get("link");
  // Wake-ups must be on time: the default 50 us timer slack would be added to every release.
  (void)::prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  // A long-lived process must not keep its starter's descriptors: lab.sh holds its
  // flock on fd 9 while it runs links.sh, and an inherited copy would keep the lab
  // locked for as long as the delay line lives.
  (void)::close_range(3, ~0U, 0);
  if (o.rtPriority > 0) {
    sched_param sp{};
    sp.sched_priority = o.rtPriority;
    if (::sched_setscheduler(0, SCHED_FIFO, &sp) != 0) {
      log->warn("SCHED_FIFO priority {} refused ({}); running with normal priority", o.rtPriority,
                std::strerror(errno));
    }
  }

  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) sigaddset(&mask, s);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    log->error("delayline: sigprocmask: {}", std::strerror(errno));
    return 1;
  }
  const int sigFd = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  int hostFd = -1;
  if (o.hostPid > 0) {
    hostFd = static_cast<int>(::syscall(SYS_pidfd_open, o.hostPid, 0));
    if (hostFd < 0) {
      log->error("delayline: host holder pid {} not found ({}) — start me for a running lab host", o.hostPid,
                 std::strerror(errno));
      return 1;
    }
  }

  auto opened = QueueSocket::open(o.queue, o.maxLen);
  if (!opened) {
    log->error("{}", opened.error().message());
    return 1;
  }
  auto& sock = **opened;
  DelayQueue queue{std::chrono::microseconds(o.delayUs)};
  if (!o.pidFile.empty()) {
    auto st = ferry::writeFileAtomic(o.pidFile, std::to_string(::getpid()) + "\n");
    if (!st) {
      log->error("{}", st.error().message());
      return 1;
    }
  }
  log->info("delayline: queue {} bound, holding packets {} us (pid {})", o.queue, o.delayUs, ::getpid());

  if (!o.netnsFile.empty() && !netnsStillNamed(o.netnsFile)) {
    log->error("delayline: {} is not the network namespace I run in — start me with nsenter --net={}",
               o.netnsFile, o.netnsFile);
    return 1;
  }
  auto nextNetnsCheck = Clock::now() + 1s;

  Stats stats;
  std::vector<nfq::Event> events;
  events.reserve(4096);
  int exitCode = 0;
  bool running = true;
  while (running) {
    auto now = Clock::now();
    if (auto st = release(sock, queue.releaseDue(now), stats); !st) {
      log->error("{}", st.error().message());
      exitCode = 1;
      break;
    }
    if (!o.netnsFile.empty() && now >= nextNetnsCheck) {
      nextNetnsCheck = now + 1s;
      if (!netnsStillNamed(o.netnsFile)) {
        log->info("delayline: {} is gone (lab down?); stopping", o.netnsFile);
        break;
      }
    }
    // Wake up for the next release, and at least once a second for the checks above.
    timespec timeout{};
    timespec* timeoutPtr = nullptr;
    if (auto due = o.netnsFile.empty() ? queue.nextDue()
                                       : std::min(queue.nextDue().value_or(nextNetnsCheck), nextNetnsCheck)) {
      const auto wait = std::max<Clock::duration>(*due - now, Clock::duration::zero());
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      timeout.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      timeout.tv_nsec = static_cast<long>(ns % 1'000'000'000);
      timeoutPtr = &timeout;
    }
    pollfd fds[3] = {{sock.fd(), POLLIN, 0}, {sigFd, POLLIN, 0}, {hostFd, POLLIN, 0}};
    const int n = ::ppoll(fds, hostFd >= 0 ? 3 : 2, timeoutPtr, nullptr);
    if (n < 0 && errno != EINTR) {
      log->error("delayline: ppoll: {}", std::strerror(errno));
      exitCode = 1;
      break;
    }
    if (n <= 0) continue;
    if (fds[0].revents != 0) {
      events.clear();
      auto st = sock.receive(events, stats.overruns);
      now = Clock::now();
      for (const auto& e : events) {
        if (e.kind == nfq::Event::Kind::kPacket) {
          queue.arrived(e.packetId, now);
          ++stats.packets;
        } else if (e.kind == nfq::Event::Kind::kError) {
          ++stats.kernelErrors;
          if (stats.kernelErrors <= 10)
            log->warn("delayline: kernel refused a verdict: {}", std::strerror(e.error));
        }
      }
      stats.maxHeld = std::max(stats.maxHeld, queue.size());
      if (!st) {
        log->error("{}", st.error().message());
        exitCode = 1;
        break;
      }
    }
    if (hostFd >= 0 && fds[2].revents != 0) {
      log->info("delayline: host holder {} exited; stopping", o.hostPid);
      running = false;
    }
    if (fds[1].revents != 0) {
      signalfd_siginfo si{};
      while (::read(sigFd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        if (si.ssi_signo == SIGUSR1) {
          logStats(stats, queue);
        } else {
          running = false;
        }
      }
    }
  }
  // Nothing stays held: the kernel would drop what is queued when the socket closes.
  (void)release(sock, queue.releaseAll(Clock::now()), stats);
  logStats(stats, queue);
  if (!o.pidFile.empty()) (void)::unlink(o.pidFile.c_str());
  return exitCode;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry-delayline: delays the packets of one NFQUEUE queue by a fixed time (lab links)"};
  Options o;
  app.add_option("--queue", o.queue, "NFQUEUE queue number")->default_val(0);
  app.add_option("--delay-us", o.delayUs, "one-way delay added to every packet, microseconds")
      ->required()
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{10'000'000}));
  app.add_option("--max-queue", o.maxLen, "packets the kernel may hold for us before it drops")
      ->default_val(65536)
      ->check(CLI::Range(1U, 1U << 20));
  app.add_option("--rt-priority", o.rtPriority, "run SCHED_FIFO at this priority (0 = normal scheduling)")
      ->default_val(0)
      ->check(CLI::Range(0, 99));
  app.add_option("--host-pid", o.hostPid, "stop when this process (the lab host's holder) exits");
  app.add_option("--netns-file", o.netnsFile,
                 "stop when this named network namespace (/run/netns/NAME) is deleted or replaced");
  app.add_option("--pid-file", o.pidFile, "written once the queue is bound (readiness and tracking)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "ferry-delayline: %s — see ferry-delayline --help\n", e.what());
    return kExitUsage;
  }
  return run(o);
}
