#include "ferry/node/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "ferry/base/log.h"

namespace ferry::node {
namespace {

constexpr std::size_t kMaxRequestBytes = 1 << 20;

using Clock = std::chrono::steady_clock;

Result<sockaddr_un> socketAddress(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.native().size() >= sizeof(addr.sun_path)) {
    return makeError("control socket path too long: " + path.string());
  }
  std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);
  return addr;
}

// Reads until '\n' or the deadline; returns the line without the newline. Bytes
// after the newline stay in `data` for the next call.
Result<std::string> readLine(int fd, Clock::time_point deadline, std::string& data) {
  std::array<char, 4096> buf{};
  while (true) {
    auto nl = data.find('\n');
    if (nl != std::string::npos) {
      auto line = data.substr(0, nl);
      data.erase(0, nl + 1);
      return line;
    }
    if (data.size() > kMaxRequestBytes) return makeError("control message larger than 1 MiB");
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return makeError("timed out waiting on the control socket");
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t r = ::read(fd, buf.data(), buf.size());
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) {
      if (!data.empty()) return std::exchange(data, std::string());
      return makeError("the other side closed the control socket");
    }
    data.append(buf.data(), static_cast<std::size_t>(r));
  }
}

Status writeAll(int fd, const std::string& s, Clock::time_point deadline) {
  std::size_t off = 0;
  while (off < s.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return makeError("timed out writing to the control socket");
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    ssize_t w = ::send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
    if (w < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (w < 0) return makeError(std::string("control socket write failed: ") + std::strerror(errno));
    off += static_cast<std::size_t>(w);
  }
  return okStatus();
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(const std::filesystem::path& path,
                                                            ControlHandler handler) {
  auto addr = socketAddress(path);
  if (!addr) return addr.error();
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return makeError("cannot create " + path.parent_path().string() + ": " + ec.message());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError(std::string("socket(AF_UNIX) failed: ") + std::strerror(errno));
  // A socket file left by a crashed daemon: remove it only if nobody answers on it.
  if (std::filesystem::exists(path, ec)) {
    int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool alive = ::connect(probe, reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) == 0;
    ::close(probe);
    if (alive) {
      ::close(fd);
      return makeError("another node daemon is already serving " + path.string(),
                       "stop it first, or set control_socket to another path");
    }
    std::filesystem::remove(path, ec);
  }
  mode_t old = ::umask(0077);
  int rc = ::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un));
  ::umask(old);
  if (rc != 0 || ::listen(fd, 16) != 0) {
    auto msg = std::string(std::strerror(errno));
    ::close(fd);
    return makeError("cannot listen on " + path.string() + ": " + msg);
  }
  ::chmod(path.c_str(), 0600);
  std::array<int, 2> wake{};
  if (::pipe2(wake.data(), O_CLOEXEC) != 0) {
    ::close(fd);
    return makeError(std::string("pipe2 failed: ") + std::strerror(errno));
  }
  auto server = std::unique_ptr<ControlServer>(new ControlServer(path, fd, wake[0], std::move(handler)));
  server->wake_write_fd_ = wake[1];
  server->thread_ = std::thread([s = server.get()] { s->run(); });
  return server;
}

ControlServer::ControlServer(std::filesystem::path path, int listen_fd, int wake_fd, ControlHandler handler)
    : path_(std::move(path)), listen_fd_(listen_fd), wake_read_fd_(wake_fd), handler_(std::move(handler)) {}

ControlServer::~ControlServer() {
  char c = 'x';
  [[maybe_unused]] auto w = ::write(wake_write_fd_, &c, 1);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  ::close(wake_read_fd_);
  ::close(wake_write_fd_);
  std::error_code ec;
  std::filesystem::remove(path_, ec);
}

void ControlServer::run() {
  auto logger = log::get("node");
  while (true) {
    std::array<pollfd, 2> p{pollfd{listen_fd_, POLLIN, 0}, pollfd{wake_read_fd_, POLLIN, 0}};
    int n = ::poll(p.data(), p.size(), 1000);
    if (n < 0 && errno != EINTR) break;
    if (p[1].revents != 0) break;
    if ((p[0].revents & POLLIN) == 0) continue;
    int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (::getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != 0 && cred.uid != ::geteuid())) {
      logger->warn("control: refused a connection from uid {} (only root may control the node)", cred.uid);
      ::close(conn);
      continue;
    }
    {
      std::lock_guard lock(mu_);
      if (connections_ >= kMaxConnections) {
        logger->warn("control: {} requests in progress; refusing another", connections_);
        (void)writeAll(conn,
                       R"({"ok":false,"error":"the node is busy: too many control requests at once"})"
                       "\n",
                       Clock::now() + std::chrono::seconds(1));
        ::close(conn);
        continue;
      }
      ++connections_;
    }
    std::thread([this, conn] {
      serve(conn);
      std::lock_guard lock(mu_);
      --connections_;
      cv_.notify_all();
    }).detach();
  }
  // Wait for the serving threads: they use handler_ and this object.
  std::unique_lock lock(mu_);
  stopping_ = true;
  cv_.wait(lock, [&] { return connections_ == 0; });
}

void ControlServer::serve(int conn) {
  auto logger = log::get("node");
  std::string pending;
  auto line = readLine(conn, Clock::now() + std::chrono::seconds(5), pending);
  nlohmann::json reply;
  if (!line) {
    reply = {{"ok", false}, {"error", line.error().message()}};
  } else {
    ControlEmit emit = [conn](const nlohmann::json& event) {
      return writeAll(conn, event.dump() + "\n", Clock::now() + std::chrono::seconds(5)).ok();
    };
    try {
      auto request = nlohmann::json::parse(*line);
      reply = handler_(request, emit);
    } catch (const std::exception& e) {
      reply = {{"ok", false}, {"error", std::string("bad control request: ") + e.what()}};
    }
  }
  reply.erase("event");
  auto status = writeAll(conn, reply.dump() + "\n", Clock::now() + std::chrono::seconds(5));
  if (!status) logger->debug("control: {}", status.error().message());
  ::close(conn);
}

Result<nlohmann::json> controlRequest(const std::filesystem::path& path, const nlohmann::json& request,
                                      std::chrono::milliseconds timeout,
                                      const std::function<void(const nlohmann::json&)>& on_event) {
  auto addr = socketAddress(path);
  if (!addr) return addr.error();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return makeError(std::string("socket(AF_UNIX) failed: ") + std::strerror(errno));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) != 0) {
    auto msg = std::string(std::strerror(errno));
    ::close(fd);
    return makeError("cannot reach the node daemon at " + path.string() + ": " + msg,
                     "start it with 'ferry node run' (or systemctl start ferry-node)");
  }
  auto deadline = Clock::now() + timeout;
  auto sent = writeAll(fd, request.dump() + "\n", deadline);
  if (!sent) {
    ::close(fd);
    return sent.error();
  }
  std::string pending;
  while (true) {
    auto line = readLine(fd, deadline, pending);
    if (!line) {
      ::close(fd);
      return line.error();
    }
    nlohmann::json j = nlohmann::json::parse(*line, nullptr, false);
    if (j.is_discarded()) {
      ::close(fd);
      return makeError("the node daemon answered something that is not JSON: " + line->substr(0, 80));
    }
    if (j.is_object() && j.contains("event")) {
      if (on_event) on_event(j);
      continue;
    }
    ::close(fd);
    return j;
  }
}

}  // namespace ferry::node
