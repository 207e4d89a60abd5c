#include "ferry/sync/mirror.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "block_io.h"
#include "ferry/base/log.h"

namespace ferry::sync {

using namespace detail;

namespace {

constexpr std::uint64_t kUnknownHash = 0;
constexpr std::uint64_t kParallelHashMin = 8ull
                                           << 20;  // chunks smaller than this hash on one thread  // never
                                                   // matches a real block (or, once in 2^64, costs a resend)

struct Local {
  FileKind kind = FileKind::kRegular;
  std::uint32_t mode = 0, uid = 0, gid = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::uint64_t ino = 0;
  std::uint64_t dev = 0;
  std::uint64_t nlink = 1;
  std::string target;
};

// What the replica holds for one path (as far as this mirror knows), plus the local
// inode it was taken from (0: unknown, e.g. learnt from the replica's manifest).
struct Entry {
  FileKind kind = FileKind::kRegular;
  std::uint32_t mode = 0, uid = 0, gid = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string target;
  std::vector<std::uint64_t> hashes;
  std::uint64_t ino = 0;
  std::uint64_t dev = 0;
  bool tracked = false;  // the write tracker records this file's writes (by dev/ino)
};

std::optional<Local> fromStat(const struct stat& st) {
  if (!isSupported(st.st_mode)) return std::nullopt;
  Local l;
  l.kind = kindOf(st.st_mode);
  l.mode = static_cast<std::uint32_t>(st.st_mode & 07777);
  l.uid = st.st_uid;
  l.gid = st.st_gid;
  l.size = l.kind == FileKind::kRegular ? static_cast<std::uint64_t>(st.st_size) : 0;
  l.mtime_ns = mtimeNs(st);
  l.ino = st.st_ino;
  l.dev = st.st_dev;
  l.nlink = st.st_nlink;
  return l;
}

std::string readLinkAt(int dirfd, const char* name) {
  std::string buf(4096, '\0');
  ssize_t n = ::readlinkat(dirfd, name, buf.data(), buf.size());
  if (n < 0) return {};
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

std::vector<std::uint64_t> zeroHashes(std::uint64_t size, std::uint32_t bs) {
  std::vector<std::uint64_t> h(blockCount(size, bs));
  for (std::uint64_t i = 0; i < h.size(); ++i) h[i] = zeroHash(blockLength(size, bs, i));
  return h;
}

// Hashes the replica holds after ftruncate from `old_size` to `new_size`.
std::vector<std::uint64_t> resized(const std::vector<std::uint64_t>& old, std::uint64_t old_size,
                                   std::uint64_t new_size, std::uint32_t bs) {
  std::vector<std::uint64_t> h(blockCount(new_size, bs));
  for (std::uint64_t i = 0; i < h.size(); ++i) {
    std::uint64_t bo = i * bs;
    std::uint32_t len = blockLength(new_size, bs, i);
    if (bo + len <= old_size && i < old.size() && blockLength(old_size, bs, i) == len)
      h[i] = old[i];
    else if (bo >= old_size)
      h[i] = zeroHash(len);
    else
      h[i] = kUnknownHash;
  }
  return h;
}

// Recursive inotify watches. Maps watch descriptors to paths relative to the root.
class Watcher {
 public:
  ~Watcher() {
    if (fd_ >= 0) ::close(fd_);
  }
  Status init() {
    fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd_ < 0) return makeError(std::string("cannot start inotify: ") + std::strerror(errno));
    return okStatus();
  }
  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] bool degraded() const { return degraded_; }

  void add(const std::string& root, const std::string& rel) {
    if (fd_ < 0) return;
    std::string abs = rel.empty() ? root : root + "/" + rel;
    constexpr std::uint32_t kMask = IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM |
                                    IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW |
                                    IN_EXCL_UNLINK;
    int wd = ::inotify_add_watch(fd_, abs.c_str(), kMask);
    if (wd < 0) {
      if (!degraded_)
        log::get("sync")->warn("cannot watch {}: {} — falling back to size/mtime walks every round", abs,
                               std::strerror(errno));
      degraded_ = true;
      return;
    }
    paths_[wd] = rel;
  }

  void renamed(const std::string& from, const std::string& to) {
    for (auto& [wd, p] : paths_)
      if (isUnder(p, from)) p = to + p.substr(from.size());
  }

  // Reads every queued event. Content events go to `modified` as well as `dirty`.
  void drain(std::set<std::string>& dirty, std::set<std::string>& modified, std::set<std::string>& walk_dirs,
             bool& overflow) {
    if (fd_ < 0) return;
    alignas(struct inotify_event) char buf[64 * 1024];
    for (int guard = 0; guard < 100000; ++guard) {
      ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<struct inotify_event*>(p);
        p += sizeof(struct inotify_event) + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
          overflow = true;
          continue;
        }
        auto it = paths_.find(ev->wd);
        if (it == paths_.end()) continue;
        if (ev->mask & IN_IGNORED) {
          paths_.erase(it);
          continue;
        }
        std::string path = ev->len > 0 ? joinPath(it->second, ev->name) : it->second;
        if (path.empty()) continue;  // the root itself
        dirty.insert(path);
        if (ev->mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE)) modified.insert(path);
        if ((ev->mask & IN_ISDIR) && (ev->mask & (IN_CREATE | IN_MOVED_TO))) walk_dirs.insert(path);
      }
    }
  }

 private:
  int fd_ = -1;
  bool degraded_ = false;
  std::unordered_map<int, std::string> paths_;
};

}  // namespace

struct DirectoryMirror::Impl {
  std::string root;
  MirrorOptions opt;
  Watcher watcher;
  std::map<std::string, Entry> entries;
  std::set<std::string> dirty, modified, walk_dirs;
  bool full_walk = true;              // the first round walks everything
  std::uint64_t round_remaining = 0;  // file bytes the round under way has still to read
  std::uint64_t next_seq = 1;
  std::uint64_t acked_seq = 0;
  std::map<std::uint64_t, std::vector<std::string>> unacked;  // seq -> paths of the batch
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> pending_since;  // oldest change not yet in a batch
  Clock::time_point round_since;
  std::map<std::uint64_t, std::pair<Clock::time_point, std::uint64_t>>
      unacked_info;  // seq -> (oldest change, bytes)

  void drainEvents() {
    bool overflow = false;
    watcher.drain(dirty, modified, walk_dirs, overflow);
    if (overflow) {
      log::get("sync")->warn("inotify queue overflowed in {}: walking the whole tree (size/mtime)", root);
      full_walk = true;
    }
    if (!pending_since && (!dirty.empty() || !walk_dirs.empty() || full_walk)) pending_since = Clock::now();
  }
  bool needs_resume = false;
  bool knows_replica = false;  // false: assumes an empty replica unless resume() says otherwise

  // ---- write tracking -----------------------------------------------------------------
  std::shared_ptr<WriteTracker> tracker;
  std::map<std::string, std::vector<DirtyRange>> pending_ranges;  // drained, not yet read
  std::set<std::string> pending_whole;                            // re-read whole (lost)
  bool refusal_logged = false;

  // Moves what the tracker recorded to the paths it belongs to. Called right after the
  // inotify drain and before anything is stat'ed or read in the round.
  void drainTracker() {
    if (!tracker) return;
    TrackedChanges c = tracker->drain();
    if (c.ranges.empty() && c.whole.empty() && c.untracked.empty() && !c.all_lost) return;
    std::map<FileId, std::string> paths;
    for (auto& [p, e] : entries)
      if (e.tracked) paths[FileId{e.dev, e.ino}] = p;
    for (auto& [id, rs] : c.ranges) {
      auto it = paths.find(id);
      if (it == paths.end()) continue;
      auto& v = pending_ranges[it->second];
      v.insert(v.end(), rs.begin(), rs.end());
    }
    for (auto& id : c.whole)
      if (auto it = paths.find(id); it != paths.end()) pending_whole.insert(it->second);
    for (auto& id : c.untracked) {
      auto it = paths.find(id);
      if (it == paths.end()) continue;
      log::get("sync")->info(
          "{}: no longer trackable (mapped shared and writable, or a change the tracker cannot order); "
          "re-read whole from now on",
          it->second);
      entries[it->second].tracked = false;
      pending_whole.insert(it->second);
    }
    if (c.all_lost) {
      log::get("sync")->warn("write tracker missed records: re-reading every tracked file once");
      for (auto& [id, p] : paths) pending_whole.insert(p);
    }
    if (!pending_since) pending_since = Clock::now();
  }
  void untrack(Entry& e) {
    if (e.tracked && tracker) tracker->unwatch(FileId{e.dev, e.ino});
    e.tracked = false;
  }

  // ---- local view -------------------------------------------------------------------
  std::optional<Local> statPath(const std::string& rel) {
    struct stat st {};
    std::string abs = root + "/" + rel;
    if (::lstat(abs.c_str(), &st) != 0) return std::nullopt;
    auto l = fromStat(st);
    if (l && l->kind == FileKind::kSymlink) l->target = readLinkAt(AT_FDCWD, abs.c_str());
    return l;
  }

  void walkTree(const std::string& rel, std::map<std::string, Local>& out, int depth = 0) {
    if (depth > 512) return;
    std::string abs = rel.empty() ? root : root + "/" + rel;
    if (opt.watch) watcher.add(root, rel);
    int dfd = ::open(abs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0) return;
    DIR* d = ::fdopendir(dfd);
    if (!d) {
      ::close(dfd);
      return;
    }
    std::vector<std::string> subdirs;
    while (struct dirent* de = ::readdir(d)) {
      std::string name = de->d_name;
      if (name == "." || name == "..") continue;
      struct stat st {};
      if (::fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      auto l = fromStat(st);
      if (!l) continue;
      std::string p = joinPath(rel, name);
      if (l->kind == FileKind::kSymlink) l->target = readLinkAt(dfd, de->d_name);
      if (l->kind == FileKind::kDirectory) subdirs.push_back(p);
      out[p] = std::move(*l);
    }
    ::closedir(d);
    for (auto& s : subdirs) walkTree(s, out, depth + 1);
  }

  // ---- model helpers ----------------------------------------------------------------
  bool parentPresent(const std::string& p) {
    std::string parent = parentOf(p);
    if (parent.empty()) return true;
    auto it = entries.find(parent);
    return it != entries.end() && it->second.kind == FileKind::kDirectory;
  }
  void eraseSubtree(const std::string& p) {
    if (auto self = entries.find(p); self != entries.end()) {
      untrack(self->second);
      entries.erase(self);
    }
    auto it = entries.lower_bound(p + "/");
    while (it != entries.end() && isUnder(it->first, p)) {
      untrack(it->second);
      it = entries.erase(it);
    }
  }
  void moveSubtree(const std::string& from, const std::string& to) {
    std::vector<std::pair<std::string, Entry>> moved;
    auto self = entries.find(from);
    if (self != entries.end()) {
      moved.emplace_back(to, std::move(self->second));
      entries.erase(self);
    }
    auto it = entries.lower_bound(from + "/");
    while (it != entries.end() && isUnder(it->first, from)) {
      moved.emplace_back(to + it->first.substr(from.size()), std::move(it->second));
      it = entries.erase(it);
    }
    eraseSubtree(to);
    for (auto& [p, e] : moved) entries[p] = std::move(e);
    watcher.renamed(from, to);
  }
  static FileMeta metaOf(const std::string& p, const Local& l) {
    FileMeta m;
    m.path = p;
    m.kind = l.kind;
    m.mode = l.mode;
    m.uid = l.uid;
    m.gid = l.gid;
    m.size = l.size;
    m.mtime_ns = l.mtime_ns;
    m.target = l.target;
    return m;
  }
  static void setEntryMeta(Entry& e, const Local& l) {
    e.kind = l.kind;
    e.mode = l.mode;
    e.uid = l.uid;
    e.gid = l.gid;
    e.size = l.size;
    e.mtime_ns = l.mtime_ns;
    e.target = l.target;
    e.ino = l.ino;
    e.dev = l.dev;
  }

  // ---- one round ----------------------------------------------------------------------
  struct Task {
    std::string path;
    Local local;
    bool partial = false;                                         // read only `blocks`
    std::vector<std::pair<std::uint64_t, std::uint64_t>> blocks;  // [first, last) block indexes
    bool tracked = false;                                         // watch() succeeded before the read
  };
  struct Chunk {
    std::size_t task;
    std::uint64_t first, last;
    bool first_chunk;
  };

  // A content task: whole file, or (tracked, nothing lost) only the blocks that overlap the
  // recorded ranges plus, when the size changed, the blocks from the old end on. Starts
  // tracking files that are not tracked yet, before they are read.
  Task planTask(const std::string& p, const Local& l, Entry* e) {
    Task t;
    t.path = p;
    t.local = l;
    auto ranges = pending_ranges.find(p);
    bool whole = pending_whole.erase(p) > 0;
    std::vector<DirtyRange> rs;
    if (ranges != pending_ranges.end()) {
      rs = std::move(ranges->second);
      pending_ranges.erase(ranges);
    }
    if (e && e->tracked && !whole && e->ino == l.ino && e->dev == l.dev) {
      std::uint64_t bs = opt.block_size;
      std::uint64_t n = blockCount(l.size, opt.block_size);
      std::vector<std::pair<std::uint64_t, std::uint64_t>> b;
      for (auto& r : rs) {
        if (r.offset >= l.size) continue;
        std::uint64_t end = r.length == kToEof || r.length > l.size - r.offset ? l.size : r.offset + r.length;
        b.emplace_back(r.offset / bs, std::min(n, (end + bs - 1) / bs));
      }
      if (e->size != l.size) b.emplace_back(std::min(e->size, l.size) / bs, n);
      std::sort(b.begin(), b.end());
      for (auto& [lo, hi] : b) {
        if (lo >= hi) continue;
        if (!t.blocks.empty() && lo <= t.blocks.back().second)
          t.blocks.back().second = std::max(t.blocks.back().second, hi);
        else
          t.blocks.emplace_back(lo, hi);
      }
      t.partial = true;
      t.tracked = true;
      return t;
    }
    if (tracker && l.nlink == 1 && !(e && e->tracked)) {
      Status w = tracker->watch(root + "/" + p, FileId{l.dev, l.ino});
      if (w.ok()) {
        t.tracked = true;
      } else if (!refusal_logged) {
        refusal_logged = true;
        log::get("sync")->info("not tracking writes to {} ({}): re-read whole when it changes", p,
                               w.error().message());
      }
    } else if (e && e->tracked) {
      t.tracked = true;  // tracked, but records were lost: one whole read
    }
    return t;
  }

  Result<DeltaStats> round(DeltaSink& sink, bool final) {
    auto t0 = std::chrono::steady_clock::now();
    DeltaStats stats;
    if (needs_resume)
      return makeError("cannot compute a delta: the last round was interrupted",
                       "resume the link (resumeRequest/resume) first");
    drainEvents();
    drainTracker();  // after inotify: a write's record precedes its IN_MODIFY
    round_since = pending_since.value_or(Clock::now());
    pending_since.reset();
    bool walk = full_walk || watcher.degraded() || !opt.watch || (final && opt.walk_on_final);
    std::set<std::string> dirty_now, modified_now, walk_now;
    dirty_now.swap(dirty);
    modified_now.swap(modified);
    walk_now.swap(walk_dirs);
    full_walk = false;

    // 1. Scope: the paths to look at, with their local state.
    std::map<std::string, Local> local;
    std::set<std::string> scope;
    if (walk) {
      stats.walked = true;
      walkTree("", local);
      for (auto& kv : local) scope.insert(kv.first);
      for (auto& kv : entries) scope.insert(kv.first);
      for (auto& p : dirty_now) scope.insert(p);
    } else {
      std::vector<std::string> work(dirty_now.begin(), dirty_now.end());
      for (auto& d : walk_now) work.push_back(d);
      while (!work.empty()) {
        std::string p = std::move(work.back());
        work.pop_back();
        if (!scope.insert(p).second) continue;
        if (!local.contains(p)) {
          if (auto l = statPath(p)) local[p] = std::move(*l);
        }
        auto li = local.find(p);
        auto ei = entries.find(p);
        bool same = li != local.end() && ei != entries.end() && li->second.kind == ei->second.kind &&
                    (ei->second.ino == 0 || ei->second.ino == li->second.ino);
        if (ei != entries.end() && ei->second.kind == FileKind::kDirectory && !same) {
          for (auto it = entries.lower_bound(p + "/"); it != entries.end() && isUnder(it->first, p); ++it)
            work.push_back(it->first);
        }
        if (li != local.end() && li->second.kind == FileKind::kDirectory && (!same || walk_now.contains(p))) {
          std::map<std::string, Local> sub;
          walkTree(p, sub);
          for (auto& kv : sub) {
            work.push_back(kv.first);
            local[kv.first] = std::move(kv.second);
          }
        }
      }
    }
    stats.entries_checked = scope.size();

    auto differs = [&](const std::string& p) {
      auto li = local.find(p);
      auto ei = entries.find(p);
      if (li == local.end() || ei == entries.end()) return true;
      return li->second.kind != ei->second.kind || (ei->second.ino != 0 && ei->second.ino != li->second.ino);
    };

    // 2. Renames: an entry that vanished whose inode appeared at another path.
    std::unordered_map<std::uint64_t, std::string> gone_by_ino;
    for (auto& p : scope) {
      auto ei = entries.find(p);
      if (ei != entries.end() && ei->second.ino != 0 && differs(p)) gone_by_ino[ei->second.ino] = p;
    }
    struct RenameOp {
      std::string from, to;
      bool done = false;
    };
    std::vector<RenameOp> renames;
    for (auto& p : scope) {
      auto li = local.find(p);
      if (li == local.end() || !differs(p)) continue;
      auto g = gone_by_ino.find(li->second.ino);
      if (g == gone_by_ino.end() || g->second == p) continue;
      const std::string& from = g->second;
      if (entries[from].kind != li->second.kind) continue;
      bool moves_along = false;  // a child of a renamed directory, moved with it
      for (auto& r : renames)
        if (isUnder(from, r.from) && p == r.to + from.substr(r.from.size())) moves_along = true;
      if (!moves_along) renames.push_back({from, p});
      gone_by_ino.erase(g);
    }
    std::stable_sort(renames.begin(), renames.end(), [](const RenameOp& a, const RenameOp& b) {
      return std::count(a.from.begin(), a.from.end(), '/') > std::count(b.from.begin(), b.from.end(), '/');
    });

    // 3. Structural messages: new directories and renames in an order the replica can
    //    follow, then kind changes, symlinks, directory metadata, deletions.
    std::vector<Message> structural;
    std::set<std::string> touched;
    auto pendingSourceUnder = [&](const std::string& p) {
      for (auto& r : renames)
        if (!r.done && isUnder(r.from, p)) return true;
      return false;
    };
    std::vector<std::string> new_dirs;
    for (auto& p : scope) {
      auto li = local.find(p);
      if (li == local.end() || li->second.kind != FileKind::kDirectory) continue;
      bool is_target =
          std::any_of(renames.begin(), renames.end(), [&](const RenameOp& r) { return r.to == p; });
      auto ei = entries.find(p);
      if (!is_target && (ei == entries.end() || ei->second.kind != FileKind::kDirectory))
        new_dirs.push_back(p);
    }
    std::set<std::string> dirs_done;
    auto emitDelete = [&](const std::string& p) {
      structural.emplace_back(Delete{p});
      touched.insert(p);
      eraseSubtree(p);
      ++stats.deletes;
    };
    auto createDir = [&](const std::string& p) {
      auto ei = entries.find(p);
      if (ei != entries.end() && ei->second.kind != FileKind::kDirectory) emitDelete(p);
      const Local& l = local[p];
      structural.emplace_back(metaOf(p, l));
      touched.insert(p);
      Entry e;
      setEntryMeta(e, l);
      entries[p] = std::move(e);
      dirs_done.insert(p);
    };
    for (int pass = 0; pass < 10000; ++pass) {
      bool progress = false;
      for (auto& d : new_dirs) {
        if (dirs_done.contains(d) || !parentPresent(d) || pendingSourceUnder(d)) continue;
        createDir(d);
        progress = true;
      }
      for (auto& r : renames) {
        if (r.done || !entries.contains(r.from) || !parentPresent(r.to) || pendingSourceUnder(r.to)) continue;
        bool blocked = false;
        for (auto& o : renames)
          if (!o.done && &o != &r && isUnder(o.from, r.to)) blocked = true;
        if (blocked) continue;
        structural.emplace_back(Rename{r.from, r.to});
        touched.insert(r.from);
        touched.insert(r.to);
        moveSubtree(r.from, r.to);
        r.done = true;
        ++stats.renames;
        progress = true;
      }
      if (!progress) break;
    }
    for (auto& r : renames)
      if (!r.done)
        log::get("sync")->debug("rename {} -> {} not expressible in order; re-sending", r.from, r.to);
    for (auto& d : new_dirs)  // parents first (sorted); only left over by a dropped rename
      if (!dirs_done.contains(d)) createDir(d);

    std::vector<Task> tasks;
    std::vector<std::string> deletes;
    for (auto& p : scope) {
      auto li = local.find(p);
      auto ei = entries.find(p);
      if (li == local.end()) {
        if (ei != entries.end()) deletes.push_back(p);
        continue;
      }
      const Local& l = li->second;
      if (ei != entries.end() && ei->second.kind != l.kind) {
        emitDelete(p);
        ei = entries.end();
      }
      switch (l.kind) {
        case FileKind::kDirectory:
          if (ei != entries.end() && !dirs_done.contains(p) &&
              (ei->second.mode != l.mode || ei->second.uid != l.uid || ei->second.gid != l.gid)) {
            structural.emplace_back(metaOf(p, l));
            touched.insert(p);
            setEntryMeta(ei->second, l);
          } else if (ei != entries.end()) {
            ei->second.ino = l.ino;
          }
          break;
        case FileKind::kSymlink:
          if (ei == entries.end() || ei->second.target != l.target || ei->second.uid != l.uid ||
              ei->second.gid != l.gid || ei->second.mtime_ns != l.mtime_ns) {
            structural.emplace_back(metaOf(p, l));
            touched.insert(p);
            Entry e;
            setEntryMeta(e, l);
            entries[p] = std::move(e);
          } else {
            ei->second.ino = l.ino;
          }
          break;
        case FileKind::kRegular: {
          if (ei != entries.end() && ei->second.tracked &&
              (ei->second.ino != l.ino || ei->second.dev != l.dev))
            untrack(ei->second);  // replaced by another file
          bool tracked = ei != entries.end() && ei->second.tracked;
          bool content = ei == entries.end() || modified_now.contains(p) || ei->second.size != l.size ||
                         ei->second.mtime_ns != l.mtime_ns ||
                         (ei->second.ino != 0 && ei->second.ino != l.ino) || ei->second.ino == 0;
          bool meta_only_mtime = false;
          if (tracked) {
            // The tracker is authoritative for content: re-read the recorded ranges, and the
            // tail when the size changed; an mtime change alone is metadata.
            content = pending_whole.contains(p) || pending_ranges.contains(p) || ei->second.size != l.size;
            meta_only_mtime = !content && ei->second.mtime_ns != l.mtime_ns;
          }
          if (content) {
            tasks.push_back(planTask(p, l, ei == entries.end() ? nullptr : &ei->second));
          } else if (meta_only_mtime || ei->second.mode != l.mode || ei->second.uid != l.uid ||
                     ei->second.gid != l.gid) {
            structural.emplace_back(metaOf(p, l));
            touched.insert(p);
            setEntryMeta(ei->second, l);
          }
          break;
        }
        default:
          break;
      }
    }
    // Files watched by this round's planTask() are read below: shared writable mappings that
    // existed before they were watched must be found first.
    if (tracker) tracker->settleWatches();
    std::string last_deleted;
    for (auto& p : deletes) {
      if (!last_deleted.empty() && isUnder(p, last_deleted)) continue;
      if (!entries.contains(p)) continue;
      emitDelete(p);
      last_deleted = p;
    }

    // 4. Content: split the files into batches of at most max_batch_bytes scanned.
    std::vector<std::vector<Chunk>> batches(1);
    std::uint64_t in_batch = 0;
    std::uint64_t per_batch_blocks = std::max<std::uint64_t>(1, opt.max_batch_bytes / opt.block_size);
    for (std::size_t t = 0; t < tasks.size(); ++t) {
      std::uint64_t n = blockCount(tasks[t].local.size, opt.block_size);
      if (tasks[t].partial) {  // one chunk; it costs the blocks it reads
        std::uint64_t cost = 0;
        for (auto& [a, b] : tasks[t].blocks) cost += b - a;
        if (in_batch > 0 && in_batch + cost > per_batch_blocks) {
          batches.emplace_back();
          in_batch = 0;
        }
        batches.back().push_back({t, 0, n, true});
        in_batch += std::max<std::uint64_t>(cost, 1);
        continue;
      }
      std::uint64_t b = 0;
      bool first = true;
      do {
        std::uint64_t room = per_batch_blocks - std::min(per_batch_blocks, in_batch);
        if (room == 0) {
          batches.emplace_back();
          in_batch = 0;
          room = per_batch_blocks;
        }
        std::uint64_t take = std::min(room, n - b);
        batches.back().push_back({t, b, b + take, first});
        in_batch += std::max<std::uint64_t>(take, 1);
        b += take;
        first = false;
      } while (b < n);
    }
    bool anything = !structural.empty() || !tasks.empty();
    if (!anything && !final) {
      stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return stats;
    }

    // 5. Send. If the link fails, everything this round looked at is looked at again
    //    after resume (paths of batches already begun are re-checked through resume()).
    Status sent = sendBatches(sink, final, structural, touched, tasks, batches, stats);
    round_remaining = 0;
    sink.roundRemaining(0);
    if (!sent.ok()) {
      dirty.insert(dirty_now.begin(), dirty_now.end());
      modified.insert(modified_now.begin(), modified_now.end());
      walk_dirs.insert(walk_now.begin(), walk_now.end());
      for (auto& task : tasks) {
        dirty.insert(task.path);
        modified.insert(task.path);
        pending_whole.insert(task.path);  // the ranges were taken out of pending_ranges
      }
      if (walk) full_walk = true;
      pending_since = round_since;
      return sent.error();
    }
    stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return stats;
  }

  // The file bytes a chunk reads: its blocks (only the recorded ranges of a partial
  // task), the last one cut at the end of the file.
  std::uint64_t chunkBytes(const Task& t, const Chunk& c) const {
    auto bytesOf = [&](std::uint64_t lo, std::uint64_t hi) -> std::uint64_t {
      const std::uint64_t a = lo * opt.block_size;
      const std::uint64_t b = std::min(hi * opt.block_size, t.local.size);
      return b > a ? b - a : 0;
    };
    if (!t.partial) return bytesOf(c.first, c.last);
    std::uint64_t n = 0;
    for (const auto& [lo, hi] : t.blocks) n += bytesOf(std::max(lo, c.first), std::min(hi, c.last));
    return n;
  }

  Status sendBatches(DeltaSink& sink, bool final, std::vector<Message>& structural,
                     const std::set<std::string>& touched, std::vector<Task>& tasks,
                     const std::vector<std::vector<Chunk>>& batches, DeltaStats& stats) {
    round_remaining = 0;
    for (const auto& batch : batches)
      for (const auto& c : batch) round_remaining += chunkBytes(tasks[c.task], c);
    sink.roundRemaining(round_remaining);
    for (std::size_t k = 0; k < batches.size(); ++k) {
      std::uint64_t seq = next_seq++;
      BatchBegin begin{opt.epoch, seq, {}};
      std::set<std::string> paths;
      if (k == 0) paths = touched;
      for (auto& c : batches[k]) paths.insert(tasks[c.task].path);
      begin.paths.assign(paths.begin(), paths.end());
      unacked[seq] = begin.paths;
      std::uint64_t bytes_before = stats.bytes_sent;
      std::uint64_t ops = 0;
      FERRY_TRY(send(sink, std::move(begin), stats));
      if (k == 0)
        for (auto& m : structural) {
          FERRY_TRY(send(sink, std::move(m), stats));
          ++ops;
        }
      for (auto& c : batches[k]) {
        // sendChunk counts down the blocks it sends; the chunk's end settles the rest
        // (blocks the replica had, a file that went away).
        const std::uint64_t after = round_remaining - std::min(round_remaining, chunkBytes(tasks[c.task], c));
        FERRY_TRY(sendChunk(sink, tasks[c.task], c, stats, ops));
        round_remaining = after;
        sink.roundRemaining(round_remaining);
      }
      bool last = k + 1 == batches.size();
      unacked_info[seq] = {round_since, stats.bytes_sent - bytes_before};
      BatchEnd end;
      end.epoch = opt.epoch;
      end.seq = seq;
      end.ops = ops;
      end.bytes = stats.bytes_sent - bytes_before;
      end.source_lag_ms = static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - round_since).count());
      end.final = final && last;
      FERRY_TRY(send(sink, end, stats));
      ++stats.batches;
    }
    return okStatus();
  }

  Status send(DeltaSink& sink, Message m, DeltaStats& stats) {
    stats.bytes_sent += wireSize(m);
    ++stats.messages;
    Status s = sink.send(std::move(m));
    if (!s.ok()) {
      needs_resume = true;
      return s;
    }
    return okStatus();
  }

  // Hashes blocks [first, last) with opt.hash_threads threads and lists the blocks whose
  // hash differs from `remote`.
  Status parallelDiff(int fd, std::uint64_t size, std::uint64_t first, std::uint64_t last,
                      const std::vector<std::uint64_t>& remote, std::vector<std::uint64_t>& changed,
                      std::uint64_t& bytes_read, bool& changed_under_us) {
    std::uint32_t n = opt.hash_threads;
    std::vector<std::uint64_t> local(last - first, kUnknownHash);
    std::vector<Status> results(n);
    std::vector<std::uint64_t> read(n, 0);
    std::vector<char> moved(n, 0);
    std::uint64_t per = (last - first + n - 1) / n;
    auto work = [&](std::uint32_t t) {
      std::uint64_t lo = first + t * per, hi = std::min(last, lo + per);
      if (lo >= hi) return;
      bool cu = false;
      results[t] = hashBlocks(
          fd, size, opt.block_size, lo, hi,
          [&](const BlockView& v) {
            local[v.index - first] = v.hash;
            return okStatus();
          },
          &read[t], &cu);
      moved[t] = cu ? 1 : 0;
    };
    std::vector<std::thread> threads;
    for (std::uint32_t t = 1; t < n; ++t) threads.emplace_back(work, t);
    work(0);
    for (auto& th : threads) th.join();
    for (std::uint32_t t = 0; t < n; ++t) {
      if (!results[t].ok()) return results[t];
      bytes_read += read[t];
      if (moved[t]) changed_under_us = true;
    }
    for (std::uint64_t i = first; i < last; ++i)
      if (local[i - first] != remote[i] || remote[i] == kUnknownHash) changed.push_back(i);
    return okStatus();
  }

  Status sendChunk(DeltaSink& sink, Task& task, const Chunk& c, DeltaStats& stats, std::uint64_t& ops) {
    const std::string& p = task.path;
    std::string abs = root + "/" + p;
    int fd = ::open(abs.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      // Gone or replaced since the scan: the next round sees it.
      dirty.insert(p);
      modified.insert(p);
      return okStatus();
    }
    struct FdCloser {
      int fd;
      ~FdCloser() { ::close(fd); }
    } closer{fd};
    Local& l = task.local;
    if (c.first_chunk) {
      struct stat st {};
      if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        dirty.insert(p);
        return okStatus();
      }
      auto fresh = fromStat(st);
      // Keep the chunk plan's size; a size change shows up as a new event.
      if (fresh && fresh->size == l.size) l = *fresh;
      if (fresh && fresh->size != l.size) {
        dirty.insert(p);
        modified.insert(p);
      }
    }
    auto ei = entries.find(p);
    bool fresh_file = ei == entries.end() || ei->second.kind != FileKind::kRegular;
    FERRY_TRY(send(sink, metaOf(p, l), stats));
    ++ops;
    if (fresh_file) {
      FERRY_TRY(send(sink, Truncate{p, 0}, stats));
      ++ops;
      if (l.size > 0) {
        FERRY_TRY(send(sink, Truncate{p, l.size}, stats));
        ++ops;
      }
      Entry e;
      setEntryMeta(e, l);
      e.ino = 0;  // set once the last chunk is sent
      e.mtime_ns = 0;
      e.hashes = zeroHashes(l.size, opt.block_size);
      ei = entries.insert_or_assign(p, std::move(e)).first;
    } else if (ei->second.size != l.size) {
      FERRY_TRY(send(sink, Truncate{p, l.size}, stats));
      ++ops;
      ei->second.hashes = resized(ei->second.hashes, ei->second.size, l.size, opt.block_size);
      ei->second.size = l.size;
    }
    Entry& e = ei->second;
    e.mode = l.mode;
    e.uid = l.uid;
    e.gid = l.gid;
    if (e.hashes.size() != blockCount(l.size, opt.block_size))
      e.hashes.resize(blockCount(l.size, opt.block_size));
    bool changed_under_us = false;
    ++stats.files_hashed;
    // Incompressible data (video, encrypted or compressed pages) is skipped cheaply:
    // after 4 blocks in a row that LZ4 could not shrink, only every 16th block is tried.
    std::uint32_t lz4_misses = 0;
    std::uint64_t lz4_skipped = 0;
    auto sendBlock = [&](const BlockView& v) -> Status {
      if (e.hashes[v.index] == v.hash && v.hash != kUnknownHash) return okStatus();
      Block b;
      b.path = p;
      b.offset = v.index * opt.block_size;
      b.xxh3 = v.hash;
      b.length = v.length;
      if (v.zero) {
        b.compression = Compression::kZeros;
        ++stats.zero_blocks;
      } else {
        bool try_lz4 = opt.compress && (lz4_misses < 4 || ++lz4_skipped % 16 == 0);
        encodeBlock(v.data, v.length, try_lz4, opt.max_compress_ratio, b);
        if (try_lz4) lz4_misses = b.compression == Compression::kLz4 ? 0 : lz4_misses + 1;
        ++stats.blocks_sent;
        stats.bytes_raw += v.length;
      }
      FERRY_TRY(send(sink, std::move(b), stats));
      ++ops;
      e.hashes[v.index] = v.hash;
      round_remaining -= std::min<std::uint64_t>(round_remaining, v.length);
      sink.roundRemaining(round_remaining);
      return okStatus();
    };
    e.tracked = task.tracked;
    e.dev = l.dev;
    Status s = okStatus();
    std::uint64_t span = (c.last - c.first) * opt.block_size;
    if (task.partial && !fresh_file) {
      ++stats.files_ranged;
      BlockRanges ranges;
      for (auto& [lo, hi] : task.blocks) {
        std::uint64_t a = std::max(lo, c.first), b = std::min(hi, c.last);
        if (a < b) ranges.emplace_back(a, b);
      }
      // Scattered pages, many of them not in the page cache: read_depth readers.
      s = hashBlockRanges(fd, l.size, opt.block_size, ranges, std::max(opt.hash_threads, opt.read_depth),
                          sendBlock, &stats.bytes_read, &changed_under_us);
    } else if (!fresh_file && opt.hash_threads > 1 && span >= kParallelHashMin) {
      // A file the replica already has: hash it with several threads (hashes only),
      // then re-read just the blocks that differ and send them.
      std::vector<std::uint64_t> changed;
      s = parallelDiff(fd, l.size, c.first, c.last, e.hashes, changed, stats.bytes_read, changed_under_us);
      for (std::size_t k = 0; s.ok() && k < changed.size();) {
        std::size_t j = k + 1;
        while (j < changed.size() && changed[j] == changed[j - 1] + 1 && j - k < 64) ++j;
        s = hashBlocks(fd, l.size, opt.block_size, changed[k], changed[j - 1] + 1, sendBlock,
                       &stats.bytes_read, &changed_under_us);
        k = j;
      }
    } else {
      s = hashBlocks(fd, l.size, opt.block_size, c.first, c.last, sendBlock, &stats.bytes_read,
                     &changed_under_us);
    }
    if (!s.ok()) {
      if (needs_resume) return s;
      log::get("sync")->warn("{}: {} — will retry next round", abs, s.error().message());
      dirty.insert(p);
      modified.insert(p);
      pending_whole.insert(p);
      return okStatus();
    }
    if (changed_under_us) {
      dirty.insert(p);
      modified.insert(p);
    }
    bool last_chunk = c.last >= blockCount(l.size, opt.block_size);
    if (last_chunk) {
      e.mtime_ns = l.mtime_ns;
      e.ino = l.ino;
    }
    return okStatus();
  }
};

DirectoryMirror::DirectoryMirror(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DirectoryMirror::~DirectoryMirror() = default;

Result<std::unique_ptr<DirectoryMirror>> DirectoryMirror::open(const std::filesystem::path& root,
                                                               const MirrorOptions& options) {
  struct stat st {};
  if (::stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return makeError("cannot mirror " + root.string() + ": not a directory",
                     "check the data directory setting");
  if (options.block_size < 4096 || options.block_size > 16u * 1024 * 1024 || (options.block_size & 4095) != 0)
    return makeError("block size " + std::to_string(options.block_size) +
                     " is not a multiple of 4 KiB in 4 KiB–16 MiB");
  auto impl = std::make_unique<Impl>();
  impl->root = std::filesystem::absolute(root).lexically_normal().string();
  while (impl->root.size() > 1 && impl->root.back() == '/') impl->root.pop_back();
  impl->opt = options;
  if (options.watch) FERRY_TRY(impl->watcher.init());
  // Tracking needs inotify too: it keeps naming new, renamed and deleted entries.
  if (options.watch && options.write_tracker) {
    impl->tracker = options.write_tracker;
  } else if (options.watch && options.track_writes) {
    auto t = openBpfWriteTracker();
    if (t.ok()) {
      impl->tracker = std::shared_ptr<WriteTracker>(std::move(t).value());
      log::get("sync")->info("{}: write tracking on ({}): rounds re-read only written blocks", impl->root,
                             impl->tracker->name());
    } else {
      log::get("sync")->warn("{}; re-reading whole changed files", t.error().message());
    }
  }
  return std::unique_ptr<DirectoryMirror>(new DirectoryMirror(std::move(impl)));
}

Result<DeltaStats> DirectoryMirror::computeDelta(DeltaSink& sink) {
  return impl_->round(sink, false);
}

Result<DeltaStats> DirectoryMirror::finalDelta(DeltaSink& sink) {
  return impl_->round(sink, true);
}

void DirectoryMirror::requestWalk() {
  impl_->full_walk = true;
}

void DirectoryMirror::acknowledge(std::uint64_t epoch, std::uint64_t seq) {
  if (epoch != impl_->opt.epoch) return;
  impl_->acked_seq = std::max(impl_->acked_seq, seq);
  impl_->unacked.erase(impl_->unacked.begin(), impl_->unacked.upper_bound(seq));
  impl_->unacked_info.erase(impl_->unacked_info.begin(), impl_->unacked_info.upper_bound(seq));
}

HashRequest DirectoryMirror::resumeRequest(const ResumeState& replica) const {
  HashRequest req;
  req.block_size = impl_->opt.block_size;
  if (!impl_->knows_replica && impl_->next_seq == 1) {
    req.all = true;
    return req;
  }
  // A replica behind what it already acknowledged (wiped, or restored from an older
  // copy) or from an older epoch cannot be trusted on any path: ask for everything.
  if (replica.epoch < impl_->opt.epoch ||
      (replica.epoch == impl_->opt.epoch && replica.seq < impl_->acked_seq)) {
    req.all = true;
    return req;
  }
  std::set<std::string> paths(replica.intent.begin(), replica.intent.end());
  for (auto& [seq, ps] : impl_->unacked)
    if (replica.epoch != impl_->opt.epoch || seq > replica.seq) paths.insert(ps.begin(), ps.end());
  req.paths.assign(paths.begin(), paths.end());
  return req;
}

namespace {

// What the mirror knows of an entry from the replica's answer (inode left to the caller).
Entry entryFromReplica(const FileHashes& f) {
  Entry e;
  e.kind = f.meta.kind;
  e.mode = f.meta.mode;
  e.uid = f.meta.uid;
  e.gid = f.meta.gid;
  e.size = f.meta.size;
  e.mtime_ns = f.meta.mtime_ns;
  e.target = f.meta.target;
  e.hashes = f.hashes;
  return e;
}

}  // namespace

Status DirectoryMirror::resume(const ResumeState& replica, const std::vector<FileHashes>& answer) {
  auto& m = *impl_;
  if (replica.epoch > m.opt.epoch)
    return makeError("replica is at epoch " + std::to_string(replica.epoch) + ", this source at " +
                         std::to_string(m.opt.epoch) + ": fenced",
                     "a newer migration owns the replica; do not mirror into it from here");
  HashRequest asked = resumeRequest(replica);
  if (asked.all) {
    m.entries.clear();
    for (auto& f : answer) {
      if (!f.exists || !isSafeRelativePath(f.path)) continue;
      Entry e = entryFromReplica(f);
      e.ino = 0;  // every regular file is re-hashed locally and compared
      m.entries[f.path] = std::move(e);
    }
    m.full_walk = true;
  } else {
    std::map<std::string, const FileHashes*> by_path;
    for (auto& f : answer) by_path[f.path] = &f;
    for (auto& p : asked.paths) {
      auto it = by_path.find(p);
      std::uint64_t old_ino = 0;
      auto ei = m.entries.find(p);
      if (ei != m.entries.end()) old_ino = ei->second.ino;
      if (it == by_path.end() || !it->second->exists) {
        m.eraseSubtree(p);
      } else {
        const FileHashes& f = *it->second;
        Entry e = entryFromReplica(f);
        e.ino = (ei != m.entries.end() && ei->second.kind == e.kind) ? old_ino : 0;
        if (e.kind != FileKind::kDirectory) m.eraseSubtree(p);
        m.entries[p] = std::move(e);
      }
      m.dirty.insert(p);
      m.modified.insert(p);
      std::string parent = parentOf(p);
      if (!parent.empty()) m.dirty.insert(parent);
    }
  }
  if (replica.epoch == m.opt.epoch) m.next_seq = std::max(m.next_seq, replica.seq + 1);
  m.acked_seq = replica.epoch == m.opt.epoch ? replica.seq : 0;
  m.unacked.clear();
  m.unacked_info.clear();
  if (!m.pending_since) m.pending_since = Impl::Clock::now();
  m.needs_resume = false;
  m.knows_replica = true;
  return okStatus();
}

int DirectoryMirror::notifyFd() const {
  return impl_->watcher.fd();
}

std::uint64_t DirectoryMirror::pendingChanges() {
  impl_->drainEvents();
  return impl_->dirty.size() + impl_->walk_dirs.size() + (impl_->full_walk ? 1 : 0);
}

MirrorLag DirectoryMirror::lag() {
  auto& m = *impl_;
  m.drainEvents();
  MirrorLag l;
  l.pending_paths = m.dirty.size() + m.walk_dirs.size();
  for (auto& p : m.modified) {
    auto it = m.entries.find(p);
    if (it != m.entries.end() && it->second.kind == FileKind::kRegular)
      l.pending_bytes_max += it->second.size;
  }
  std::optional<Impl::Clock::time_point> oldest = m.pending_since;
  for (auto& [seq, info] : m.unacked_info) {
    l.unacked_bytes += info.second;
    if (!oldest || info.first < *oldest) oldest = info.first;
  }
  if (oldest)
    l.oldest_change_ms = std::chrono::duration<double, std::milli>(Impl::Clock::now() - *oldest).count();
  return l;
}

std::uint64_t DirectoryMirror::lastSentSeq() const {
  return impl_->next_seq - 1;
}
std::uint64_t DirectoryMirror::lastAckedSeq() const {
  return impl_->acked_seq;
}
std::uint64_t DirectoryMirror::entries() const {
  return impl_->entries.size();
}
bool DirectoryMirror::needsResume() const {
  return impl_->needs_resume;
}
std::string DirectoryMirror::writeTracking() const {
  return impl_->tracker ? impl_->tracker->name() : std::string();
}

}  // namespace ferry::sync
