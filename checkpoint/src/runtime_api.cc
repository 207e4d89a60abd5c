// ContainerRuntime over Podman's REST API (`podman system service`): the same
// semantics as the CLI runtime (runtime.cc), without paying the podman binary's
// start-up and libpod initialisation on every call. What Podman's handlers do was read
// in containers/podman v5.4.2: pkg/api/server/register_containers.go,
// register_images.go, pkg/api/handlers/libpod/containers.go (Checkpoint, Restore),
// libpod/images.go (GetImage, ExportImage, ImagesLoad), compat/containers.go
// (RemoveContainer), handlers/utils/errors.go (the error body). See the notes at each
// method.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "ferry/base/http.h"
#include "ferry/base/log.h"
#include "ferry/checkpoint/check_parsers.h"
#include "ferry/checkpoint/criu_stats.h"
#include "ferry/checkpoint/runtime.h"
#include "ferry/checkpoint/unix_http.h"

#include "cgroup_runtime.h"

namespace ferry::checkpoint {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using detail::lastLine;

// The libpod endpoints at API version 5.0.0: with an older version GetContainer
// answers the Podman 4 inspect format (V4PodmanCompatMarshal).
const std::string kApi = "/v5.0.0/libpod";
constexpr std::size_t kMaxStatsDump = std::size_t{64} * 1024;
constexpr std::size_t kMaxCriuLogTail = std::size_t{256} * 1024;
constexpr auto kImageTimeout = std::chrono::minutes(10);
constexpr auto kMaxConnectTimeout = std::chrono::seconds(5);

std::string enc(const std::string& s) {
  return http::percentEncode(s);
}

std::string flag(bool b) {
  return b ? "true" : "false";
}

long long micros(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::microseconds>(d).count();
}

// Podman's error body (pkg/errorhandling ErrorModel): {"cause", "message", "response"}.
struct ApiError {
  std::string cause;
  std::string message;
  bool is_json = false;
};

ApiError apiErrorBody(const std::string& body) {
  ApiError e;
  json j = json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object()) {
    e.is_json = true;
    if (auto c = j.find("cause"); c != j.end() && c->is_string()) e.cause = c->get<std::string>();
    if (auto m = j.find("message"); m != j.end() && m->is_string()) e.message = m->get<std::string>();
  }
  if (e.message.empty()) e.message = lastLine(body);
  // One line for a terminal, like the CLI's last line of stderr.
  std::replace(e.message.begin(), e.message.end(), '\n', ' ');
  return e;
}

// The lines of a CRIU log that say what failed ("Error (criu/...): ..."), last ones.
std::string criuLogErrors(const fs::path& log) {
  int fd = ::open(log.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return {};
  struct stat st {};
  std::string text;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    const auto size = static_cast<std::uint64_t>(st.st_size);
    const std::uint64_t start = size > kMaxCriuLogTail ? size - kMaxCriuLogTail : 0;
    text.resize(static_cast<std::size_t>(size - start));
    ssize_t n = ::pread(fd, text.data(), text.size(), static_cast<off_t>(start));
    text.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  }
  ::close(fd);
  std::vector<std::string> errors;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.find("Error") != std::string::npos) errors.push_back(std::move(line));
  }
  if (errors.size() > 8) errors.erase(errors.begin(), errors.end() - 8);
  std::string out;
  for (const auto& l : errors) out += l + "\n";
  return out;
}

// Where CRIU logged a failed dump or restore, from Podman's message: a checkpoint
// failure quotes the runc command line ("`/usr/bin/runc checkpoint ... --work-path DIR
// ...` failed: exit status 1"; runc's own stderr went to the service's journal, not to
// us: libpod/oci_conmon_common.go CheckpointContainer, utils/utils.go
// ExecCmdWithStdStreams), a restore failure runc's message ("... log file: PATH").
std::optional<fs::path> criuLogFrom(const std::string& message, const char* default_name) {
  auto word = [&](std::size_t at) {
    auto end = message.find_first_of(" \t\n`'\"", at);
    return message.substr(at, end == std::string::npos ? std::string::npos : end - at);
  };
  if (auto p = message.find("log file: "); p != std::string::npos) {
    std::string path = word(p + 10);
    if (!path.empty() && path.front() == '/') return fs::path(path);
  }
  if (auto p = message.find("--work-path "); p != std::string::npos) {
    std::string dir = word(p + 12);
    if (!dir.empty() && dir.front() == '/') return fs::path(dir) / default_name;
  }
  return std::nullopt;
}

// A file this call created and then failed to fill is no archive: removed. A FIFO, or a
// file that was there before, is left alone.
class CreatedFileGuard {
 public:
  explicit CreatedFileGuard(fs::path path) : path_(std::move(path)) {
    std::error_code ec;
    existed_ = path_.empty() || fs::exists(fs::symlink_status(path_, ec));
  }
  ~CreatedFileGuard() {
    if (keep_ || existed_) return;
    std::error_code ec;
    if (fs::is_regular_file(fs::symlink_status(path_, ec))) fs::remove(path_, ec);
  }
  CreatedFileGuard(const CreatedFileGuard&) = delete;
  CreatedFileGuard& operator=(const CreatedFileGuard&) = delete;
  void keep() { keep_ = true; }

 private:
  fs::path path_;
  bool existed_ = true;
  bool keep_ = false;
};

class PodmanApiRuntime final : public detail::CgroupContainerRuntime {
 public:
  PodmanApiRuntime(fs::path socket, RuntimeOptions options)
      : CgroupContainerRuntime(options.cgroup_root, options.freeze_timeout),
        socket_(std::move(socket)),
        options_(std::move(options)) {}

  // GET /libpod/containers/{name}/json: the object `podman inspect` prints, not in a
  // list; 404 (utils.ContainerNotFound) when there is no such container.
  Result<ContainerInfo> inspect(const std::string& name) override {
    const std::string what = "podman container inspect " + name;
    auto r = call(what, get(kApi + "/containers/" + enc(name) + "/json"), options_.command_timeout);
    if (!r) return r.error();
    if (r->status == 200) return parseInspect(r->body);
    if (missingContainer(*r))
      return makeError("no container named '" + name + "' on this host",
                       "check the name with 'podman ps -a' on the source host");
    return statusError(what, *r);
  }

  // GET /libpod/containers/{name}/exists: 204 or 404.
  Result<bool> exists(const std::string& name) override {
    const std::string what = "podman container exists " + name;
    auto r = call(what, get(kApi + "/containers/" + enc(name) + "/exists"), options_.command_timeout);
    if (!r) return r.error();
    if (r->status == 204 || r->status == 200) return true;
    if (missingContainer(*r)) return false;
    return statusError(what, *r);
  }

  // GET /libpod/images/{name}/json: 200 with "Id"; every lookup failure is a 404 whose
  // message says why ("image not known" when absent).
  Result<std::optional<std::string>> imageId(const std::string& ref) override {
    const std::string what = "podman image inspect " + ref;
    auto r = call(what, get(kApi + "/images/" + enc(ref) + "/json"), options_.command_timeout);
    if (!r) return r.error();
    if (r->status == 200) {
      json j = json::parse(r->body, nullptr, false);
      std::string id;
      if (j.is_object()) {
        if (auto it = j.find("Id"); it != j.end() && it->is_string()) id = it->get<std::string>();
      }
      if (id.empty()) return makeError(what + " printed no ID");
      return std::optional<std::string>{id};
    }
    auto e = apiErrorBody(r->body);
    if (r->status == 404 && (e.message.find("image not known") != std::string::npos ||
                             e.message.find("no such image") != std::string::npos))
      return std::optional<std::string>{};
    return statusError(what, *r);
  }

  // POST /libpod/containers/{name}/checkpoint?export=true: Podman checkpoints into a
  // temporary file of its own (os.CreateTemp in the service's TMPDIR), then sends it as
  // the body (application/octet, chunked) once CRIU and the tar are done: an
  // uncompressed tar, because the handler has no compression parameter and passes
  // archive.Uncompressed. The report with --print-stats numbers is dropped when
  // exporting, so printStats is only asked without export; the CRIU numbers come from
  // the stats-dump inside the tar instead.
  Result<CheckpointStats> checkpoint(const std::string& name, const CheckpointOptions& o) override {
    const std::string what = "checkpoint of " + name;
    const bool exporting = !o.archive.empty();
    if (exporting && o.compress != "none" && !o.compress.empty())
      log::get("checkpoint")
          ->debug("Podman's API exports checkpoints uncompressed; compress={} is not applied", o.compress);
    std::string target = kApi + "/containers/" + enc(name) + "/checkpoint?keep=" + flag(o.keep) +
                         "&tcpEstablished=" + flag(o.tcp_established) + "&fileLocks=" + flag(o.file_locks) +
                         "&printStats=" + flag(!exporting);
    if (exporting) target += "&export=true";
    UnixHttpRequest req = post(target);
    TarMemberTap tap("stats-dump", kMaxStatsDump);
    if (exporting) {
      req.response_file = o.archive;
      req.on_response_data = [&tap](std::string_view d) { tap.feed(d); };
    }
    CreatedFileGuard archive(o.archive);
    auto started = Clock::now();
    auto r = call(what, std::move(req), o.timeout);
    if (!r) return r.error();
    if (r->status != 200) return criuError(what, *r, "dump.log");
    archive.keep();
    const long long podman_us = micros(Clock::now() - started);
    json report;
    if (exporting) {
      json criu = json::object();
      if (tap.content()) {
        if (auto st = parseCriuDumpStats(*tap.content())) {
          criu = {{"freezing_time", st->freezing_time}, {"frozen_time", st->frozen_time},
                  {"memdump_time", st->memdump_time},   {"memwrite_time", st->memwrite_time},
                  {"pages_scanned", st->pages_scanned}, {"pages_written", st->pages_written}};
        } else {
          log::get("checkpoint")->debug("checkpoint of {}: {}", name, st.error().message());
        }
      }
      // Podman's runtime_checkpoint_duration is not in an export: left out (0).
      report = {{"criu_statistics", criu}, {"archive_bytes", r->body_bytes}};
    } else {
      report = json::parse(r->body, nullptr, false);
      if (report.is_discarded() || !report.is_object())
        return makeError(what + ": the Podman API answered 200 without a checkpoint report");
    }
    json printed = {{"podman_checkpoint_duration", podman_us},
                    {"container_statistics", json::array({report})}};
    return parseCheckpointStats(printed.dump());
  }

  // POST /libpod/containers/{name}/restore: with import=true the body is the archive
  // (Podman copies it to a temporary file, compat.SaveFromBody, then imports it; the
  // name in the path is not used); without, `name` is restored from the checkpoint it
  // kept. The answer is the RestoreReport, with statistics when printStats=true.
  Result<RestoreStats> restore(const std::string& name, const RestoreOptions& o) override {
    const std::string what = "restore of " + name;
    std::string target = kApi + "/containers/" + enc(name) +
                         "/restore?tcpEstablished=" + flag(o.tcp_established) +
                         "&fileLocks=" + flag(o.file_locks) + "&printStats=true";
    UnixHttpRequest req = post(target);
    if (!o.archive.empty()) {
      req.target += "&import=true";
      req.body_file = o.archive;
      req.headers.emplace_back("Content-Type", "application/x-tar");
    }
    auto started = Clock::now();
    auto r = call(what, std::move(req), o.timeout);
    if (!r) return r.error();
    if (r->status != 200) return criuError(what, *r, "restore.log");
    json report = json::parse(r->body, nullptr, false);
    if (report.is_discarded() || !report.is_object())
      return makeError(what + ": the Podman API answered 200 without a restore report");
    json printed = {{"podman_restore_duration", micros(Clock::now() - started)},
                    {"container_statistics", json::array({report})}};
    return parseRestoreStats(printed.dump());
  }

  // DELETE /libpod/containers/{name}?force=true&ignore=true&timeout=N (compat.
  // RemoveContainer; for libpod requests it reads timeout and answers 200 with the
  // reports).
  Status remove(const std::string& name, std::chrono::seconds stop_timeout) override {
    const std::string what = "podman container rm " + name;
    UnixHttpRequest req;
    req.method = "DELETE";
    req.target = kApi + "/containers/" + enc(name) +
                 "?force=true&ignore=true&timeout=" + std::to_string(stop_timeout.count());
    auto r = call(what, std::move(req), options_.command_timeout + stop_timeout);
    if (!r) return r.error();
    if (r->status == 200 || r->status == 204 || missingContainer(*r)) return okStatus();
    return statusError(what, *r);
  }

  // GET /libpod/images/{name}/get?format=oci-archive: Podman saves to a temporary file,
  // then sends it.
  Status saveImage(const std::string& image_id, const fs::path& archive) override {
    const std::string what = "podman image save " + image_id;
    UnixHttpRequest req = get(kApi + "/images/" + enc(image_id) + "/get?format=oci-archive");
    req.response_file = archive;
    CreatedFileGuard file(archive);
    auto r = call(what, std::move(req), kImageTimeout);
    if (!r) return r.error();
    if (r->status != 200) return statusError(what, *r);
    file.keep();
    return okStatus();
  }

  // POST /libpod/images/load with the archive as the body: {"Names": [...]}.
  Result<std::string> loadImage(const fs::path& archive) override {
    const std::string what = "podman image load " + archive.string();
    UnixHttpRequest req = post(kApi + "/images/load");
    req.body_file = archive;
    req.headers.emplace_back("Content-Type", "application/x-tar");
    auto r = call(what, std::move(req), kImageTimeout);
    if (!r) return r.error();
    if (r->status != 200) return statusError(what, *r);
    json j = json::parse(r->body, nullptr, false);
    std::string names;
    if (j.is_object()) {
      if (auto it = j.find("Names"); it != j.end() && it->is_array()) {
        for (const auto& n : *it) {
          if (n.is_string()) names += (names.empty() ? "" : ", ") + n.get<std::string>();
        }
      }
    }
    // Like the CLI's last line: the caller checks the ID it expects with imageId().
    return "Loaded image: " + names;
  }

 private:
  static UnixHttpRequest get(std::string target) {
    UnixHttpRequest r;
    r.method = "GET";
    r.target = std::move(target);
    return r;
  }
  static UnixHttpRequest post(std::string target) {
    UnixHttpRequest r;
    r.method = "POST";
    r.target = std::move(target);
    return r;
  }

  std::string serviceHint() const {
    return "start Podman's API service: 'systemctl start podman.socket' (systemd), or 'podman system service "
           "--time=0 unix://" +
           socket_.string() + "'; or unset podman_api in the node config to use the podman command";
  }

  // One exchange; an Error when no complete answer came back.
  Result<UnixHttpResult> call(const std::string& what, UnixHttpRequest req,
                              std::chrono::milliseconds timeout) {
    req.timeout = timeout;
    req.connect_timeout = std::min<std::chrono::milliseconds>(timeout, kMaxConnectTimeout);
    log::get("checkpoint")->debug("podman api {} {}", req.method, req.target);
    const std::string endpoint = req.method + " " + req.target.substr(0, req.target.find('?'));
    UnixHttpResult r = unixHttpRequest(socket_, req);
    log::get("checkpoint")
        ->debug("podman api {} -> {} in {} ms{}", endpoint, r.status, r.elapsed.count(),
                r.ok() ? "" : " (" + r.detail + ")");
    const std::string at = "the Podman API service at " + socket_.string();
    switch (r.failure) {
      case HttpFailure::kNone:
        return r;
      case HttpFailure::kNoSocket:
        return makeError(what + " failed: " + at + " is not running (no socket)", serviceHint());
      case HttpFailure::kRefused:
        if (r.detail.find("permission") != std::string::npos)
          return makeError(what + " failed: " + r.detail,
                           "run ferry as root, or as a user who may use the socket (podman.socket's group)");
        return makeError(what + " failed: " + at + " is not running (" + r.detail + ")", serviceHint());
      case HttpFailure::kConnect:
        return makeError(what + " failed: cannot reach " + at + ": " + r.detail, serviceHint());
      case HttpFailure::kTimeout:
        if (r.phase == HttpPhase::kConnecting)
          return makeError(
              what + " failed: " + at + " does not accept connections (" + r.detail + ")",
              "it may be starting or hung: check 'systemctl status podman.socket podman.service'; "
              "restart it with 'systemctl restart podman.socket' (or restart 'podman system "
              "service')");
        return makeError(what + " timed out after " + std::to_string(r.elapsed.count()) + " ms: " + at +
                             " did not answer " + endpoint + " in time (" + r.detail + ")",
                         "if the service is hung, 'journalctl -u podman.service' says why; restart it with "
                         "'systemctl restart podman.service' (or restart 'podman system service')");
      case HttpFailure::kClosed:
        return makeError(what + " failed: " + at + " broke off " + endpoint + ": " + r.detail,
                         "did the service crash or restart? 'journalctl -u podman.service'");
      case HttpFailure::kBadResponse:
        return makeError(what + " failed: " + at + " answered " + endpoint + " with nonsense: " + r.detail,
                         "is " + socket_.string() + " really Podman's API socket?");
      case HttpFailure::kLocal:
        return makeError(what + " failed: " + r.detail);
    }
    return makeError(what + " failed: " + r.detail);
  }

  // Podman's 404 for a missing container (utils.ContainerNotFound: define.ErrNoSuchCtr,
  // cause "no such container") — not the router's plain-text 404 for an unknown path.
  static bool missingContainer(const UnixHttpResult& r) {
    if (r.status != 404) return false;
    auto e = apiErrorBody(r.body);
    return e.is_json &&
           (e.cause == "no such container" || e.message.find("no such container") != std::string::npos);
  }

  Error statusError(const std::string& what, const UnixHttpResult& r) const {
    auto e = apiErrorBody(r.body);
    Error err = makeError(what + " failed (HTTP " + std::to_string(r.status) + "): " + e.message);
    if (r.status == 404 && !e.is_json)
      err.hint = "the Podman API service at " + socket_.string() +
                 " does not know this endpoint: it needs Podman 4 or later ('podman version')";
    return err;
  }

  Error criuError(const std::string& what, const UnixHttpResult& r, const char* log_name) const {
    Error e = statusError(what, r);
    auto message = apiErrorBody(r.body).message;
    std::string log_errors;
    auto log = criuLogFrom(message, log_name);
    if (log) log_errors = criuLogErrors(*log);
    if (!log_errors.empty()) e.what += "; CRIU: " + lastLine(log_errors);
    auto diagnosis = diagnoseCriuFailure(message + "\n" + log_errors);
    if (!diagnosis.empty()) {
      e.hint = diagnosis;
    } else if (log) {
      e.hint = "CRIU's log: " + log->string();
    }
    return e;
  }

  fs::path socket_;
  RuntimeOptions options_;
};

}  // namespace

std::unique_ptr<ContainerRuntime> makePodmanApiRuntime(const fs::path& socket, RuntimeOptions options) {
  return std::make_unique<PodmanApiRuntime>(socket, std::move(options));
}

}  // namespace ferry::checkpoint
