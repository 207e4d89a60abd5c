#include "fake_http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <stdexcept>

namespace ferry::bench::testing {

namespace {

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string percentDecode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> parseForm(const std::string& s) {
  std::map<std::string, std::string> out;
  std::size_t pos = 0;
  while (pos <= s.size()) {
    std::size_t amp = s.find('&', pos);
    std::string part = s.substr(pos, amp == std::string::npos ? std::string::npos : amp - pos);
    std::size_t eq = part.find('=');
    if (eq != std::string::npos) out[percentDecode(part.substr(0, eq))] = percentDecode(part.substr(eq + 1));
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  return out;
}

std::string response(int status, const std::string& reason, const std::string& body,
                     const std::string& extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n" + extra_headers +
         "\r\n" + body;
}

std::int64_t nowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

FakeHttpServer::FakeHttpServer() {
  if (!openListener()) throw std::runtime_error("fake server: cannot listen on 127.0.0.1");
  thread_ = std::thread([this] { loop(); });
}

FakeHttpServer::~FakeHttpServer() {
  stop_.store(true);
  thread_.join();
  for (auto& c : clients_) ::close(c.fd);
  closeListener();
}

bool FakeHttpServer::openListener() {
  for (int attempt = 0; attempt < 100; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && ::listen(fd, 512) == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
      port_ = ntohs(addr.sin_port);
      listen_fd_ = fd;
      return true;
    }
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

void FakeHttpServer::closeListener() {
  if (listen_fd_ >= 0) ::close(listen_fd_);
  listen_fd_ = -1;
}

std::chrono::steady_clock::time_point FakeHttpServer::setMode(Mode mode) {
  wanted_.store(static_cast<int>(mode));
  for (int i = 0; i < 5000 && current_.load() != static_cast<int>(mode); ++i) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return std::chrono::steady_clock::time_point(std::chrono::nanoseconds(switched_ns_.load()));
}

std::vector<std::pair<std::int64_t, std::int64_t>> FakeHttpServer::rows(const std::string& writer) {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const auto& [w, row] : table_) {
    if (w == writer) out.push_back(row);
  }
  return out;
}

bool FakeHttpServer::deleteRow(const std::string& writer, std::int64_t seq) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(table_.begin(), table_.end(),
                         [&](const auto& e) { return e.first == writer && e.second.second == seq; });
  if (it == table_.end()) return false;
  table_.erase(it);
  return true;
}

void FakeHttpServer::insertRow(const std::string& writer, std::int64_t seq) {
  std::lock_guard lock(mu_);
  table_.push_back({writer, {next_id_++, seq}});
}

std::string FakeHttpServer::route(const std::string& method, const std::string& target,
                                  const std::string& cookie, const std::string& body, Mode mode,
                                  bool& answer) {
  answer = true;
  if (mode == Mode::k503) return response(503, "Service Unavailable", "down");
  std::string path = target.substr(0, target.find('?'));
  std::string query = target.find('?') == std::string::npos ? "" : target.substr(target.find('?') + 1);
  if (method == "GET" && path == "/health.php") return response(200, "OK", "ok");
  if (method == "POST" && path == "/login.php") {
    auto form = parseForm(body);
    if (form["user"] == "user1" && form["password"] == "pass1") {
      return response(302, "Found", "",
                      "Location: /videos.php\r\nSet-Cookie: PHPSESSID=stale; path=/\r\n"
                      "Set-Cookie: PHPSESSID=fake123; path=/; HttpOnly\r\n");
    }
    return response(401, "Unauthorized", "wrong password");
  }
  if (method == "GET" && path == "/whoami.php") {
    // Like PHP: the first PHPSESSID in the Cookie header counts.
    std::size_t at = cookie.find("PHPSESSID=");
    std::string id = at == std::string::npos ? "" : cookie.substr(at + 10, cookie.find(';', at) - at - 10);
    bool in = id == "fake123" && session_valid_.load();
    return response(200, "OK",
                    in ? R"({"logged_in":true,"user":"user1"})" : R"({"logged_in":false,"user":null})");
  }
  if (method == "POST" && path == "/api/write.php") {
    auto form = parseForm(body);
    std::int64_t seq = std::stoll(form["seq"]);
    std::int64_t id = 0;
    {
      std::lock_guard lock(mu_);
      id = next_id_++;
      table_.push_back({form["writer"], {id, seq}});
    }
    writes_committed_.fetch_add(1);
    if (mode == Mode::kCommitNoAnswer) answer = false;
    return response(200, "OK",
                    R"({"ok":true,"writer":")" + form["writer"] + R"(","seq":)" + std::to_string(seq) +
                        R"(,"id":)" + std::to_string(id) + "}");
  }
  if (method == "GET" && path == "/api/writes.php") {
    auto form = parseForm(query);
    std::string rows_json;
    for (const auto& [id, seq] : rows(form["writer"])) {
      rows_json += std::string(rows_json.empty() ? "" : ",") + R"({"id":)" + std::to_string(id) +
                   R"(,"seq":)" + std::to_string(seq) + "}";
    }
    return response(200, "OK", R"({"writer":")" + form["writer"] + R"(","rows":[)" + rows_json + "]}");
  }
  return response(404, "Not Found", "no such page");
}

void FakeHttpServer::handleRequest(Client& c, Mode mode) {
  if (mode == Mode::kStall) {
    c.held = true;
    return;
  }
  std::size_t head_end = c.in.find("\r\n\r\n");
  std::string head = c.in.substr(0, head_end);
  std::string body = c.in.substr(head_end + 4);
  std::string line = head.substr(0, head.find("\r\n"));
  std::string method = line.substr(0, line.find(' '));
  std::string target = line.substr(line.find(' ') + 1);
  target = target.substr(0, target.find(' '));
  std::string cookie;
  std::size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string::npos) {
    pos += 2;
    std::string h = head.substr(pos, head.find("\r\n", pos) - pos);
    if (lower(h.substr(0, 7)) == "cookie:") cookie = h.substr(7);
  }
  bool answer = true;
  std::string out = route(method, target, cookie, body, mode, answer);
  if (answer) (void)::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL);
  ::shutdown(c.fd, SHUT_WR);
  ::close(c.fd);
  c.fd = -1;
}

void FakeHttpServer::loop() {
  std::array<char, 8192> buf{};
  while (!stop_.load()) {
    const auto want = static_cast<Mode>(wanted_.load());
    const auto cur = static_cast<Mode>(current_.load());
    if (want != cur) {
      if (cur == Mode::kRefuse) openListener();
      if (cur == Mode::kNoAccept && listen_fd_ >= 0) ::listen(listen_fd_, 512);
      if (want == Mode::kRefuse) closeListener();
      if (want == Mode::kNoAccept && listen_fd_ >= 0) ::listen(listen_fd_, 0);
      if (want != Mode::kStall) {
        for (auto& c : clients_) {
          if (c.held) {
            c.held = false;
            handleRequest(c, want == Mode::kRefuse || want == Mode::kNoAccept ? Mode::kAnswer : want);
          }
        }
      }
      switched_ns_.store(nowNs());
      current_.store(static_cast<int>(want));
      continue;  // the rest of the loop must see the new mode
    }
    std::erase_if(clients_, [](const Client& c) { return c.fd < 0; });
    std::vector<pollfd> fds;
    const bool accepting = listen_fd_ >= 0 && cur != Mode::kNoAccept;
    if (accepting) fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& c : clients_) fds.push_back({c.fd, POLLIN, 0});
    int n = ::poll(fds.data(), fds.size(), 1);
    if (n <= 0) continue;
    std::size_t first_client = accepting ? 1 : 0;
    for (std::size_t i = first_client; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      Client& c = clients_[i - first_client];
      ssize_t got = ::recv(c.fd, buf.data(), buf.size(), 0);
      if (got <= 0) {
        ::close(c.fd);
        c.fd = -1;
        continue;
      }
      if (c.held) continue;
      c.in.append(buf.data(), static_cast<std::size_t>(got));
      std::size_t head_end = c.in.find("\r\n\r\n");
      if (head_end == std::string::npos) continue;
      std::size_t length = 0;
      std::string head = lower(c.in.substr(0, head_end));
      std::size_t cl = head.find("content-length:");
      if (cl != std::string::npos) length = std::stoul(head.substr(cl + 15));
      if (c.in.size() < head_end + 4 + length) continue;
      handleRequest(c, cur);
    }
    if (accepting && (fds[0].revents & POLLIN) != 0) {
      while (true) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        if (cur == Mode::kClose) {
          ::close(fd);
          continue;
        }
        clients_.push_back(Client{fd, {}, false});
      }
    }
  }
}

}  // namespace ferry::bench::testing
