#include "ferry/sync/replica.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "background_sync.h"
#include "block_io.h"
#include "ferry/base/files.h"
#include "ferry/base/log.h"

namespace ferry::sync {

using namespace detail;

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd = o.fd;
      o.fd = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

std::string errnoText() {
  return std::strerror(errno);
}

std::string baseOf(const std::string& p) {
  auto pos = p.rfind('/');
  return pos == std::string::npos ? p : p.substr(pos + 1);
}

// Opens directories beneath the replica root without following any symlink.
class SafeRoot {
 public:
  Status open(const std::string& root) {
    root_ = root;
    fd_ = Fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd_.fd < 0) return makeError("cannot open the replica directory " + root + ": " + errnoText());
    return okStatus();
  }
  [[nodiscard]] const std::string& root() const { return root_; }

  // `rel` is "" (the root) or a safe relative path.
  Result<Fd> openDir(const std::string& rel) {
    if (rel.empty()) return Fd(::fcntl(fd_.fd, F_DUPFD_CLOEXEC, 0));
    if (use_openat2_) {
      struct open_how how {};
      how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
      how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
      long r = ::syscall(SYS_openat2, fd_.fd, rel.c_str(), &how, sizeof how);
      if (r >= 0) return Fd(static_cast<int>(r));
      if (errno != ENOSYS) return refuse(rel);
      use_openat2_ = false;
    }
    Fd cur(::fcntl(fd_.fd, F_DUPFD_CLOEXEC, 0));
    std::size_t start = 0;
    while (start < rel.size()) {
      std::size_t end = rel.find('/', start);
      if (end == std::string::npos) end = rel.size();
      std::string comp = rel.substr(start, end - start);
      Fd next(::openat(cur.fd, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (next.fd < 0) return refuse(rel);
      cur = std::move(next);
      start = end + 1;
    }
    return cur;
  }

  Result<Fd> openParent(const std::string& rel, std::string* base) {
    if (!isSafeRelativePath(rel))
      return makeError("refused path '" + rel + "': not a relative path inside the replica",
                       "the peer sent a path with '..', an absolute path or an empty component");
    *base = baseOf(rel);
    return openDir(parentOf(rel));
  }

 private:
  Error refuse(const std::string& rel) {
    int e = errno;
    if (e == ELOOP || e == EXDEV || e == ENOTDIR)
      return makeError(
          "refused path '" + rel + "' in " + root_ + ": it crosses a symlink or leaves the replica",
          "the replica never follows symlinks in a path; remove the symlink on the standby");
    return makeError("cannot open directory '" + rel + "' in " + root_ + ": " + std::strerror(e));
  }

  std::string root_;
  Fd fd_;
  bool use_openat2_ = true;
};

Status removeTree(int parent, const std::string& name, int depth = 0) {
  if (depth > 512) return makeError("directory tree too deep to remove at " + name);
  int dfd = ::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return makeError("cannot open " + name + " to remove it: " + errnoText());
  DIR* d = ::fdopendir(dfd);
  if (!d) {
    ::close(dfd);
    return makeError("cannot list " + name + ": " + errnoText());
  }
  std::vector<std::pair<std::string, bool>> children;
  while (struct dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n == "." || n == "..") continue;
    struct stat st {};
    if (::fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    children.emplace_back(n, S_ISDIR(st.st_mode));
  }
  Status result = okStatus();
  for (auto& [n, is_dir] : children) {
    if (is_dir) {
      Status s = removeTree(dfd, n, depth + 1);
      if (!s.ok()) result = s;
    } else if (::unlinkat(dfd, n.c_str(), 0) != 0 && errno != ENOENT) {
      result = makeError("cannot remove " + name + "/" + n + ": " + errnoText());
    }
  }
  ::closedir(d);
  if (::unlinkat(parent, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return makeError("cannot remove directory " + name + ": " + errnoText());
  return result;
}

Status removeAny(int parent, const std::string& name) {
  struct stat st {};
  if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return okStatus();
  if (S_ISDIR(st.st_mode)) return removeTree(parent, name);
  if (::unlinkat(parent, name.c_str(), 0) != 0 && errno != ENOENT)
    return makeError("cannot remove " + name + ": " + errnoText());
  return okStatus();
}

// A file's written bytes are made durable in the background every this many bytes (see
// background_sync.h): small enough that the batch end's fsync finds little left, large
// enough that the syncs stay few (2 MiB: 4 ms each on the lab's disk, 100 MiB in 50).
constexpr std::uint64_t kBackgroundSyncBytes = 2ull << 20;

struct State {
  std::uint64_t epoch = 0;
  std::uint64_t seq = 0;
  bool consistent = true;
  bool final = false;
  std::set<std::string> intent;
};

std::string encodeState(const State& s) {
  std::ostringstream out;
  out << "ferry-replica-state 1\n";
  out << "epoch " << s.epoch << "\nseq " << s.seq << "\nstate " << (s.consistent ? "consistent" : "applying")
      << "\nfinal " << (s.final ? 1 : 0) << "\n";
  for (auto& p : s.intent) out << "intent " << escapePath(p) << "\n";
  return out.str();
}

Result<State> decodeState(const std::string& text, const std::string& file) {
  State s;
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != "ferry-replica-state 1")
    return makeError("replica state file " + file + " is not a ferry replica state",
                     "move it away; the replica will then be re-verified against the source");
  bool have_state = false;
  while (std::getline(in, line)) {
    auto sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string key = line.substr(0, sp), val = line.substr(sp + 1);
    if (key == "epoch") s.epoch = std::stoull(val);
    if (key == "seq") s.seq = std::stoull(val);
    if (key == "state") {
      s.consistent = val == "consistent";
      have_state = true;
    }
    if (key == "final") s.final = val == "1";
    if (key == "intent") s.intent.insert(unescapePath(val));
  }
  if (!have_state) s.consistent = false;  // a state file without a state line is torn
  return s;
}

}  // namespace

struct ReplicaWriter::Impl {
  std::string state_file;
  ReplicaOptions opt;
  SafeRoot sr;
  State state;
  bool dead = false;
  bool in_batch = false;
  BatchBegin current;
  std::uint64_t ops = 0;
  std::set<std::string> batch_paths;
  std::map<std::string, Fd> fds;
  std::map<std::string, std::uint64_t> unflushed;  // bytes written since the last background sync
  BackgroundSync background;
  std::set<std::string> dirs_to_sync;
  std::map<std::string, FileMeta> pending_meta;  // mtimes applied at batch end
  std::vector<std::uint8_t> buf;
  ReplicaStats stats;

  bool crash(std::string_view point) { return opt.faults != nullptr && opt.faults->shouldFail(point); }

  Error crashed(std::string_view point) {
    dead = true;
    fds.clear();  // closed without fsync, as a dying process would
    in_batch = false;
    return makeError("replica stopped at injected crash point " + std::string(point));
  }

  Status writeState() { return writeFileAtomic(state_file, encodeState(state), 0600); }

  void dropFdsUnder(const std::string& p, bool sync) {
    for (auto it = fds.begin(); it != fds.end();) {
      if (isUnder(it->first, p)) {
        if (sync && opt.durable) ::fsync(it->second.fd);
        it = fds.erase(it);
      } else {
        ++it;
      }
    }
  }

  Result<int> fileFd(const std::string& p, bool create) {
    auto it = fds.find(p);
    if (it != fds.end()) return it->second.fd;
    std::string base;
    auto parent = sr.openParent(p, &base);
    if (!parent.ok()) return parent.error();
    int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (create ? O_CREAT : 0);
    Fd fd(::openat(parent->fd, base.c_str(), flags, 0600));
    if (fd.fd < 0) {
      if (errno == ELOOP) return makeError("refused to write " + p + ": it is a symlink on the replica");
      return makeError("cannot open " + p + " on the replica: " + errnoText());
    }
    struct stat st {};
    if (::fstat(fd.fd, &st) != 0 || !S_ISREG(st.st_mode))
      return makeError("refused to write " + p + ": not a regular file on the replica");
    dirs_to_sync.insert(parentOf(p));
    int raw = fd.fd;
    fds.emplace(p, std::move(fd));
    return raw;
  }

  Status setOwnerMode(int fd, const FileMeta& m) {
    if (opt.preserve_owner && ::fchown(fd, m.uid, m.gid) != 0)
      return makeError("cannot chown " + m.path + " to " + std::to_string(m.uid) + ":" +
                           std::to_string(m.gid) + ": " + errnoText(),
                       "run the standby node as root, or turn off owner preservation");
    if (::fchmod(fd, static_cast<mode_t>(m.mode & 07777)) != 0)
      return makeError("cannot chmod " + m.path + ": " + errnoText());
    return okStatus();
  }

  Status onMeta(const FileMeta& m) {
    std::string base;
    auto parent = sr.openParent(m.path, &base);
    if (!parent.ok()) return parent.error();
    int pfd = parent->fd;
    struct stat cur {};
    bool exists = ::fstatat(pfd, base.c_str(), &cur, AT_SYMLINK_NOFOLLOW) == 0;
    switch (m.kind) {
      case FileKind::kDirectory: {
        if (exists && !S_ISDIR(cur.st_mode)) {
          dropFdsUnder(m.path, false);
          FERRY_TRY(removeAny(pfd, base));
          exists = false;
        }
        if (!exists) {
          if (::mkdirat(pfd, base.c_str(), 0700) != 0)
            return makeError("cannot create directory " + m.path + " on the replica: " + errnoText());
          dirs_to_sync.insert(parentOf(m.path));
        }
        Fd d(::openat(pfd, base.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (d.fd < 0) return makeError("cannot open directory " + m.path + " on the replica: " + errnoText());
        FERRY_TRY(setOwnerMode(d.fd, m));
        pending_meta[m.path] = m;
        return okStatus();
      }
      case FileKind::kSymlink: {
        if (exists) {
          bool same = false;
          if (S_ISLNK(cur.st_mode)) {
            std::string t(4096, '\0');
            ssize_t n = ::readlinkat(pfd, base.c_str(), t.data(), t.size());
            same = n >= 0 && t.substr(0, static_cast<std::size_t>(n)) == m.target;
          }
          if (!same) {
            dropFdsUnder(m.path, false);
            FERRY_TRY(removeAny(pfd, base));
            exists = false;
          }
        }
        if (!exists) {
          if (m.target.empty() || m.target.size() > 4095 || m.target.find('\0') != std::string::npos)
            return makeError("refused symlink " + m.path + ": bad target");
          if (::symlinkat(m.target.c_str(), pfd, base.c_str()) != 0)
            return makeError("cannot create symlink " + m.path + " on the replica: " + errnoText());
          dirs_to_sync.insert(parentOf(m.path));
        }
        if (opt.preserve_owner && ::fchownat(pfd, base.c_str(), m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0)
          return makeError("cannot chown symlink " + m.path + ": " + errnoText());
        pending_meta[m.path] = m;
        return okStatus();
      }
      case FileKind::kRegular: {
        if (exists && !S_ISREG(cur.st_mode)) {
          dropFdsUnder(m.path, false);
          FERRY_TRY(removeAny(pfd, base));
        }
        auto fd = fileFd(m.path, true);
        if (!fd.ok()) return fd.error();
        FERRY_TRY(setOwnerMode(*fd, m));
        pending_meta[m.path] = m;
        return okStatus();
      }
      default:
        return makeError("refused " + m.path + ": unknown file kind " +
                         std::to_string(static_cast<int>(m.kind)));
    }
  }

  Status onTruncate(const Truncate& t) {
    auto fd = fileFd(t.path, false);
    if (!fd.ok()) return fd.error();
    if (::ftruncate(*fd, static_cast<off_t>(t.size)) != 0)
      return makeError("cannot truncate " + t.path + " on the replica: " + errnoText());
    return okStatus();
  }

  Status onBlock(const Block& b) {
    Status s = decodeBlock(b, buf);
    if (!s.ok()) return s;
    auto fd = fileFd(b.path, false);
    if (!fd.ok()) return fd.error();
    if (b.compression == Compression::kZeros) {
      if (::fallocate(*fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(b.offset),
                      static_cast<off_t>(b.length)) == 0) {
        ++stats.holes_punched;
        return okStatus();
      }
      // No hole punching here: write the zeros.
    }
    std::size_t done = 0;
    while (done < buf.size()) {
      ssize_t w = ::pwrite(*fd, buf.data() + done, buf.size() - done, static_cast<off_t>(b.offset + done));
      if (w < 0) {
        if (errno == EINTR) continue;
        return makeError("cannot write " + b.path + " on the replica: " + errnoText());
      }
      done += static_cast<std::size_t>(w);
    }
    ++stats.blocks_written;
    stats.bytes_written += buf.size();
    // Made durable along the way, so the fsync at BatchEnd has little left to do.
    auto& pending = unflushed[b.path];
    pending += buf.size();
    if (opt.durable && pending >= kBackgroundSyncBytes) {
      background.request(*fd, b.path);
      pending = 0;
    }
    return okStatus();
  }

  Status onRename(const Rename& r) {
    std::string from_base, to_base;
    auto from_dir = sr.openParent(r.path, &from_base);
    if (!from_dir.ok()) return from_dir.error();
    auto to_dir = sr.openParent(r.target, &to_base);
    if (!to_dir.ok()) return to_dir.error();
    struct stat src {
    }, dst{};
    if (::fstatat(from_dir->fd, from_base.c_str(), &src, AT_SYMLINK_NOFOLLOW) != 0)
      return makeError("cannot rename " + r.path + " on the replica: it does not exist",
                       "the replica lags the source: resume the link");
    dropFdsUnder(r.path, true);
    dropFdsUnder(r.target, false);
    if (::fstatat(to_dir->fd, to_base.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
        (S_ISDIR(dst.st_mode) || S_ISDIR(src.st_mode)))
      FERRY_TRY(removeAny(to_dir->fd, to_base));
    if (::renameat(from_dir->fd, from_base.c_str(), to_dir->fd, to_base.c_str()) != 0)
      return makeError("cannot rename " + r.path + " to " + r.target + " on the replica: " + errnoText());
    dirs_to_sync.insert(parentOf(r.path));
    dirs_to_sync.insert(parentOf(r.target));
    std::map<std::string, FileMeta> moved;
    for (auto it = pending_meta.begin(); it != pending_meta.end();) {
      if (isUnder(it->first, r.path)) {
        FileMeta m = it->second;
        m.path = r.target + it->first.substr(r.path.size());
        moved[m.path] = m;
        it = pending_meta.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [p, m] : moved) pending_meta[p] = m;
    return okStatus();
  }

  Status onDelete(const Delete& d) {
    std::string base;
    auto parent = sr.openParent(d.path, &base);
    if (!parent.ok()) return parent.error();
    dropFdsUnder(d.path, false);
    for (auto it = pending_meta.begin(); it != pending_meta.end();)
      it = isUnder(it->first, d.path) ? pending_meta.erase(it) : std::next(it);
    FERRY_TRY(removeAny(parent->fd, base));
    dirs_to_sync.insert(parentOf(d.path));
    return okStatus();
  }

  Status applyTimes() {
    // Deepest first, so a directory's time is set after its children changed.
    // NOLINTNEXTLINE(modernize-loop-convert): clang 14 cannot parse libstdc++ 12's reverse_view
    for (auto it = pending_meta.rbegin(); it != pending_meta.rend(); ++it) {
      const FileMeta& m = it->second;
      struct timespec ts[2];
      ts[0].tv_sec = m.mtime_ns / 1000000000LL;
      ts[0].tv_nsec = m.mtime_ns % 1000000000LL;
      ts[1] = ts[0];
      auto f = fds.find(m.path);
      if (f != fds.end()) {
        if (::futimens(f->second.fd, ts) != 0)
          return makeError("cannot set the mtime of " + m.path + ": " + errnoText());
        continue;
      }
      std::string base;
      auto parent = sr.openParent(m.path, &base);
      if (!parent.ok()) return parent.error();
      if (::utimensat(parent->fd, base.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT)
        return makeError("cannot set the mtime of " + m.path + ": " + errnoText());
    }
    return okStatus();
  }

  Status syncAll() {
    if (!opt.durable) return okStatus();
    // First: a failed background sync is reported there, not to the fsyncs below.
    FERRY_TRY(background.drain());
    for (auto& [p, fd] : fds)
      if (::fsync(fd.fd) != 0) return makeError("cannot fsync " + p + " on the replica: " + errnoText());
    for (auto& d : dirs_to_sync) {
      auto dfd = sr.openDir(d);
      if (!dfd.ok()) continue;  // removed later in the batch
      if (::fsync(dfd->fd) != 0)
        return makeError("cannot fsync directory '" + d + "' on the replica: " + errnoText());
    }
    return okStatus();
  }

  void resetBatch() {
    in_batch = false;
    fds.clear();
    unflushed.clear();
    dirs_to_sync.clear();
    pending_meta.clear();
    batch_paths.clear();
    ops = 0;
  }

  Status fail(Status s) {
    ++stats.refused;
    resetBatch();
    state.consistent = false;
    return s;
  }

  Status onBegin(const BatchBegin& b) {
    if (in_batch) resetBatch();  // the previous batch stays in the intent list
    if (b.epoch < state.epoch)
      return fail(makeError("batch from epoch " + std::to_string(b.epoch) +
                                " refused: the replica is at epoch " + std::to_string(state.epoch),
                            "a newer source owns this replica (fenced)"));
    if (b.epoch == state.epoch && b.seq <= state.seq)
      return fail(makeError("batch " + std::to_string(b.seq) + " refused: already applied up to " +
                            std::to_string(state.seq)));
    for (auto& p : b.paths)
      if (!isSafeRelativePath(p))
        return fail(makeError(
            "batch " + std::to_string(b.seq) + " refused: path '" + p + "' is not inside the replica",
            "the peer sent '..', an absolute path or an empty component"));
    State next = state;
    if (state.consistent) next.intent.clear();
    next.intent.insert(b.paths.begin(), b.paths.end());
    next.consistent = false;
    next.final = false;
    state = next;
    Status w = writeState();
    if (!w.ok()) return fail(w);
    if (crash("replica.begin")) return crashed("replica.begin");
    in_batch = true;
    current = b;
    batch_paths = std::set<std::string>(b.paths.begin(), b.paths.end());
    ops = 0;
    return okStatus();
  }

  Status onEnd(const BatchEnd& e) {
    if (e.epoch != current.epoch || e.seq != current.seq)
      return fail(makeError("batch end " + std::to_string(e.seq) + " does not match batch " +
                            std::to_string(current.seq)));
    if (e.ops != ops)
      return fail(makeError("batch " + std::to_string(e.seq) + " ended after " + std::to_string(ops) +
                                " messages, the source sent " + std::to_string(e.ops),
                            "messages were lost on the link: resume"));
    Status s = applyTimes();
    if (!s.ok()) return fail(s);
    if (crash("replica.fsync")) return crashed("replica.fsync");
    s = syncAll();
    if (!s.ok()) return fail(s);
    if (crash("replica.commit")) return crashed("replica.commit");
    State next;
    next.epoch = e.epoch;
    next.seq = e.seq;
    next.consistent = true;
    next.final = e.final;
    state = next;
    s = writeState();
    if (!s.ok()) return fail(s);
    ++stats.batches;
    resetBatch();
    return okStatus();
  }

  Status checkPath(const std::string& p) {
    if (!isSafeRelativePath(p))
      return makeError("refused path '" + p + "': not inside the replica",
                       "the peer sent '..', an absolute path or an empty component");
    if (!batch_paths.contains(p))
      return makeError("refused path '" + p + "': not announced in batch " + std::to_string(current.seq));
    return okStatus();
  }

  Status apply(const Message& msg) {
    if (dead) return makeError("replica stopped (injected crash): reopen it");
    if (const auto* b = std::get_if<BatchBegin>(&msg)) return onBegin(*b);
    if (!in_batch) {
      ++stats.refused;
      return makeError(std::string(messageName(msg)) + " refused: no batch is open");
    }
    if (const auto* e = std::get_if<BatchEnd>(&msg)) return onEnd(*e);
    if (crash("replica.op")) return crashed("replica.op");
    ++ops;
    Status s = std::visit(
        [&](const auto& m) -> Status {
          using T = std::decay_t<decltype(m)>;
          if constexpr (std::is_same_v<T, FileMeta>) {
            FERRY_TRY(checkPath(m.path));
            return onMeta(m);
          } else if constexpr (std::is_same_v<T, Truncate>) {
            FERRY_TRY(checkPath(m.path));
            return onTruncate(m);
          } else if constexpr (std::is_same_v<T, Block>) {
            FERRY_TRY(checkPath(m.path));
            return onBlock(m);
          } else if constexpr (std::is_same_v<T, Rename>) {
            FERRY_TRY(checkPath(m.path));
            FERRY_TRY(checkPath(m.target));
            return onRename(m);
          } else if constexpr (std::is_same_v<T, Delete>) {
            FERRY_TRY(checkPath(m.path));
            return onDelete(m);
          } else {
            return makeError("unexpected message in a batch");
          }
        },
        msg);
    if (!s.ok()) return fail(s);
    return okStatus();
  }

  // ---- resume ----------------------------------------------------------------------
  void walk(const std::string& rel, std::vector<std::string>& out, int depth = 0) {
    if (depth > 512) return;
    auto dfd = sr.openDir(rel);
    if (!dfd.ok()) return;
    int raw = ::fcntl(dfd->fd, F_DUPFD_CLOEXEC, 0);
    DIR* d = ::fdopendir(raw);
    if (!d) {
      ::close(raw);
      return;
    }
    std::vector<std::string> subdirs;
    while (struct dirent* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n == "." || n == "..") continue;
      struct stat st {};
      if (::fstatat(raw, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !isSupported(st.st_mode)) continue;
      std::string p = joinPath(rel, n);
      out.push_back(p);
      if (S_ISDIR(st.st_mode)) subdirs.push_back(p);
    }
    ::closedir(d);
    for (auto& s : subdirs) walk(s, out, depth + 1);
  }

  Result<std::vector<FileHashes>> hashFiles(const HashRequest& req) {
    if (req.block_size < 4096 || req.block_size > 16u * 1024 * 1024 || (req.block_size & 4095) != 0)
      return makeError("hash request refused: block size " + std::to_string(req.block_size) +
                       " is out of range");
    std::vector<std::string> paths;
    if (req.all)
      walk("", paths);
    else
      paths = req.paths;
    std::vector<FileHashes> out;
    out.reserve(paths.size());
    for (auto& p : paths) {
      FileHashes f;
      f.path = p;
      std::string base;
      auto parent = sr.openParent(p, &base);
      struct stat st {};
      if (!parent.ok() || ::fstatat(parent->fd, base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !isSupported(st.st_mode)) {
        out.push_back(std::move(f));
        continue;
      }
      f.exists = true;
      f.meta.path = p;
      f.meta.kind = kindOf(st.st_mode);
      f.meta.mode = static_cast<std::uint32_t>(st.st_mode & 07777);
      f.meta.uid = st.st_uid;
      f.meta.gid = st.st_gid;
      f.meta.mtime_ns = mtimeNs(st);
      if (f.meta.kind == FileKind::kSymlink) {
        std::string t(4096, '\0');
        ssize_t n = ::readlinkat(parent->fd, base.c_str(), t.data(), t.size());
        if (n >= 0) f.meta.target = t.substr(0, static_cast<std::size_t>(n));
      } else if (f.meta.kind == FileKind::kRegular) {
        f.meta.size = static_cast<std::uint64_t>(st.st_size);
        Fd fd(::openat(parent->fd, base.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
        if (fd.fd < 0) {
          f.exists = false;
          out.push_back(std::move(f));
          continue;
        }
        f.hashes.reserve(blockCount(f.meta.size, req.block_size));
        Status s = hashBlocks(
            fd.fd, f.meta.size, req.block_size, 0, blockCount(f.meta.size, req.block_size),
            [&](const BlockView& v) {
              f.hashes.push_back(v.hash);
              return okStatus();
            },
            nullptr, nullptr);
        if (!s.ok()) return makeError("cannot hash " + p + " on the replica: " + s.error().message());
      }
      out.push_back(std::move(f));
    }
    return out;
  }
};

ReplicaWriter::ReplicaWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ReplicaWriter::~ReplicaWriter() = default;

Result<std::unique_ptr<ReplicaWriter>> ReplicaWriter::open(const std::filesystem::path& root,
                                                           const std::filesystem::path& state_file,
                                                           ReplicaOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->opt = options;
  impl->state_file = state_file.string();
  auto abs_root = std::filesystem::absolute(root).lexically_normal();
  auto abs_state = std::filesystem::absolute(state_file).lexically_normal();
  auto rel = abs_state.lexically_relative(abs_root);
  if (!rel.empty() && rel.begin()->string() != "..")
    return makeError("replica state file " + state_file.string() + " is inside the replica " + root.string(),
                     "keep the state file outside the mirrored directory");
  FERRY_TRY(impl->sr.open(abs_root.string()));
  std::error_code ec;
  if (std::filesystem::exists(state_file, ec)) {
    auto text = readFile(state_file);
    if (!text.ok()) return text.error();
    auto st = decodeState(*text, state_file.string());
    if (!st.ok()) return st.error();
    impl->state = *st;
    if (!impl->state.consistent)
      log::get("sync")->warn(
          "replica {} was interrupted in a batch after seq {}: inconsistent until the source resumes "
          "({} paths to re-check)",
          root.string(), impl->state.seq, impl->state.intent.size());
  }
  return std::unique_ptr<ReplicaWriter>(new ReplicaWriter(std::move(impl)));
}

Status ReplicaWriter::apply(const Message& message) {
  return impl_->apply(message);
}

ResumeState ReplicaWriter::resumeState() const {
  ResumeState r;
  r.epoch = impl_->state.epoch;
  r.seq = impl_->state.seq;
  r.consistent = impl_->state.consistent && !impl_->in_batch;
  r.intent.assign(impl_->state.intent.begin(), impl_->state.intent.end());
  return r;
}

Result<std::vector<FileHashes>> ReplicaWriter::hashFiles(const HashRequest& request) {
  return impl_->hashFiles(request);
}

bool ReplicaWriter::consistent() const {
  return impl_->state.consistent && !impl_->in_batch;
}
bool ReplicaWriter::finalApplied() const {
  return impl_->state.consistent && impl_->state.final;
}
ReplicaStats ReplicaWriter::stats() const {
  ReplicaStats s = impl_->stats;
  s.background_syncs = impl_->background.completed();
  return s;
}

}  // namespace ferry::sync
