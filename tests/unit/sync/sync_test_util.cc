#include "sync_test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <random>
#include <stdexcept>

#include "ferry/sync/verify.h"

namespace ferry::sync::testutil {

namespace {
std::atomic<int> g_counter{0};
}

TempTrees::TempTrees() {
  base_ = std::filesystem::path("/tmp") /
          ("ferry-sync-" + std::to_string(::getpid()) + "-" + std::to_string(g_counter.fetch_add(1)));
  std::filesystem::remove_all(base_);
  std::filesystem::create_directories(src());
  std::filesystem::create_directories(dst());
}

TempTrees::~TempTrees() {
  std::error_code ec;
  std::filesystem::remove_all(base_, ec);
}

std::string randomBytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng();
    for (std::size_t k = 0; k < 8 && i + k < n; ++k) s[i + k] = static_cast<char>((v >> (8 * k)) & 0xff);
  }
  return s;
}

void writeFile(const std::filesystem::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + p.string());
}

void writeAt(const std::filesystem::path& p, std::uint64_t offset, const std::string& content) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + p.string());
  ssize_t w = ::pwrite(fd, content.data(), content.size(), static_cast<off_t>(offset));
  ::close(fd);
  if (w != static_cast<ssize_t>(content.size())) throw std::runtime_error("short write " + p.string());
}

std::string readAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

Pair::Pair(const TempTrees& t, MirrorOptions mo, FaultInjector* faults) : trees(t), link_faults(faults) {
  auto m = DirectoryMirror::open(t.src(), mo);
  if (!m.ok()) throw std::runtime_error(m.error().message());
  mirror = std::move(*m);
  reopenReplica();
}

void Pair::reopenReplica(FaultInjector* faults) {
  ReplicaOptions ro;
  ro.faults = faults;
  link.reset();
  replica.reset();
  auto r = ReplicaWriter::open(trees.dst(), trees.stateFile(), ro);
  if (!r.ok()) throw std::runtime_error(r.error().message());
  replica = std::move(*r);
  link = std::make_unique<LoopbackLink>(*mirror, *replica, link_faults);
}

void Pair::restartMirror(MirrorOptions mo) {
  link.reset();
  mirror.reset();
  auto m = DirectoryMirror::open(trees.src(), mo);
  if (!m.ok()) throw std::runtime_error(m.error().message());
  mirror = std::move(*m);
  link = std::make_unique<LoopbackLink>(*mirror, *replica, link_faults);
}

std::string differences(const std::filesystem::path& a, const std::filesystem::path& b) {
  auto d = compareTrees(a, b);
  if (!d.ok()) return "compare failed: " + d.error().message();
  std::string out;
  for (auto& x : d->differences) out += x.path + ": " + x.what + " (" + x.detail + ")\n";
  return out;
}

}  // namespace ferry::sync::testutil
