#include "fake_podman_api.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

namespace ferry::checkpoint::testing {

namespace {

std::string reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 404:
      return "Not Found";
    case 413:
      return "Request Entity Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Status";
  }
}

bool sendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

std::string hex(std::size_t n) {
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, n, 16);
  (void)ec;
  return std::string(buf, p);
}

}  // namespace

bool FakeRequest::hasParam(const std::string& name_value) const {
  std::size_t pos = 0;
  while (pos <= query.size()) {
    auto amp = query.find('&', pos);
    if (query.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos) == name_value)
      return true;
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return false;
}

std::string podmanError(int status, const std::string& cause, const std::string& message) {
  // Shaped like Go's json.Encoder output of errorhandling.ErrorModel.
  std::string escaped;
  for (char c : message) {
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    if (c == '"' || c == '\\') escaped.push_back('\\');
    escaped.push_back(c);
  }
  return "{\"cause\":\"" + cause + "\",\"message\":\"" + escaped +
         "\",\"response\":" + std::to_string(status) + "}\n";
}

FakePodmanApi::FakePodmanApi(FakeHandler handler) : handler_(std::move(handler)) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ferry-api-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("fake podman api: mkdtemp failed");
  dir_ = tmpl;
  socket_ = dir_ / "podman.sock";
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_.c_str(), sizeof(addr.sun_path) - 1);
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0 || ::pipe2(stop_pipe_, O_CLOEXEC) != 0)
    throw std::runtime_error("fake podman api: cannot listen on " + socket_.string());
  thread_ = std::thread([this] { loop(); });
}

FakePodmanApi::~FakePodmanApi() {
  char c = 'x';
  (void)!::write(stop_pipe_[1], &c, 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::vector<FakeRequest> FakePodmanApi::requests() {
  std::lock_guard lock(mu_);
  return requests_;
}

bool FakePodmanApi::waitReadable(int fd, int timeout_ms) {
  std::array<pollfd, 2> p{{{fd, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}}};
  int rc = ::poll(p.data(), p.size(), timeout_ms);
  return rc > 0 && (p[1].revents & POLLIN) == 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
}

void FakePodmanApi::loop() {
  while (true) {
    std::array<pollfd, 2> p{{{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}}};
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if ((p[1].revents & POLLIN) != 0) return;
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    serve(fd);
    ::close(fd);
  }
}

bool FakePodmanApi::readRequest(int fd, FakeRequest& req) {
  std::string in;
  std::array<char, 65536> buf{};
  http::RequestHeadOutcome head;
  while (true) {
    head = http::parseRequestHead(in);
    if (head.state == http::ParseState::kBad) return false;
    if (head.state == http::ParseState::kComplete) break;
    if (!waitReadable(fd, 10000)) return false;
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) return false;
    in.append(buf.data(), static_cast<std::size_t>(n));
  }
  req.method = head.head.method;
  req.target = head.head.target;
  req.headers = head.head.headers;
  auto q = req.target.find('?');
  req.path = http::percentDecode(req.target.substr(0, q)).value_or("<bad escape>");
  req.query = q == std::string::npos ? "" : req.target.substr(q + 1);
  std::string rest = in.substr(head.bytes);
  if (!read_bodies_.load()) return true;
  auto te = head.head.header("transfer-encoding");
  if (te && te->find("chunked") != std::string::npos) {
    req.chunked = true;
    http::ChunkedDecoder d;
    while (true) {
      std::size_t used = 0;
      auto s = d.feed(rest, req.body, used);
      if (s == http::ParseState::kBad) return false;
      if (s == http::ParseState::kComplete) return true;
      if (!waitReadable(fd, 10000)) return false;
      ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n <= 0) return false;
      rest.assign(buf.data(), static_cast<std::size_t>(n));
    }
  }
  std::size_t length = 0;
  if (auto cl = head.head.header("content-length")) length = std::strtoull(cl->c_str(), nullptr, 10);
  req.body = rest;
  while (req.body.size() < length) {
    if (!waitReadable(fd, 10000)) return false;
    ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) return false;
    req.body.append(buf.data(), static_cast<std::size_t>(n));
  }
  return true;
}

void FakePodmanApi::serve(int fd) {
  FakeRequest req;
  if (!readRequest(fd, req)) return;
  {
    std::lock_guard lock(mu_);
    requests_.push_back(req);
  }
  FakeResponse r = handler_(req);
  if (r.never_answer) {
    // Until the client gives up (or the server stops).
    std::array<char, 4096> buf{};
    while (waitReadable(fd, 60000)) {
      if (::recv(fd, buf.data(), buf.size(), 0) <= 0) break;
    }
    return;
  }
  if (r.hang_up) return;
  if (!r.raw.empty()) {
    (void)sendAll(fd, r.raw);
    return;
  }
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) +
                     "\r\nApi-Version: 1.41\r\nLibpod-Api-Version: 5.4.2\r\nServer: Libpod/5.4.2 (linux)\r\n";
  const bool no_body = r.status == 204 || r.status == 304;
  if (!no_body) head += "Content-Type: " + r.content_type + "\r\n";
  if (r.chunked) {
    head += "Transfer-Encoding: chunked\r\n";
  } else if (!r.close_delimited && !no_body) {
    head += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  }
  head += "Connection: close\r\n\r\n";
  if (!sendAll(fd, head) || no_body) return;
  std::size_t sent = 0;
  const std::size_t piece = r.chunk_size == 0 ? r.body.size() : r.chunk_size;
  while (sent < r.body.size()) {
    std::string_view part = std::string_view(r.body).substr(sent, piece);
    bool ok = r.chunked ? sendAll(fd, hex(part.size()) + "\r\n") && sendAll(fd, part) && sendAll(fd, "\r\n")
                        : sendAll(fd, part);
    if (!ok) return;
    sent += part.size();
    if (r.on_sent) r.on_sent(sent);
  }
  if (r.chunked) (void)sendAll(fd, "0\r\n\r\n");
}

}  // namespace ferry::checkpoint::testing
