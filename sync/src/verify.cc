#include "ferry/sync/verify.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "block_io.h"

namespace ferry::sync {

using namespace detail;

namespace {

Status hashContent(int dirfd, const char* name, ManifestEntry& e, const std::string& path) {
  int fd = ::openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return makeError("cannot open " + path + " to verify it: " + std::strerror(errno));
  XXH3_state_t* st = XXH3_createState();
  XXH3_128bits_reset(st);
  constexpr std::size_t kBuf = 1 << 20;
  std::unique_ptr<char[]> buf(new char[kBuf]);
  Status result = okStatus();
  for (;;) {
    ssize_t n = ::read(fd, buf.get(), kBuf);
    if (n < 0) {
      if (errno == EINTR) continue;
      result = makeError("cannot read " + path + " to verify it: " + std::strerror(errno));
      break;
    }
    if (n == 0) break;
    XXH3_128bits_update(st, buf.get(), static_cast<std::size_t>(n));
  }
  XXH128_hash_t h = XXH3_128bits_digest(st);
  XXH3_freeState(st);
  ::close(fd);
  e.content_hi = h.high64;
  e.content_lo = h.low64;
  return result;
}

Status walk(int dirfd, const std::string& rel, TreeManifest& out, int depth) {
  if (depth > 512) return makeError("tree too deep at " + rel);
  int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  DIR* d = ::fdopendir(dup);
  if (!d) {
    ::close(dup);
    return makeError("cannot list " + rel + ": " + std::strerror(errno));
  }
  std::vector<std::string> subdirs;
  Status result = okStatus();
  while (struct dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n == "." || n == "..") continue;
    struct stat st {};
    if (::fstatat(dup, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !isSupported(st.st_mode)) continue;
    std::string p = joinPath(rel, n);
    ManifestEntry e;
    e.kind = kindOf(st.st_mode);
    e.mode = static_cast<std::uint32_t>(st.st_mode & 07777);
    e.uid = st.st_uid;
    e.gid = st.st_gid;
    e.mtime_ns = mtimeNs(st);
    if (e.kind == FileKind::kRegular) {
      e.size = static_cast<std::uint64_t>(st.st_size);
      Status s = hashContent(dup, de->d_name, e, p);
      if (!s.ok()) result = s;
    } else if (e.kind == FileKind::kSymlink) {
      std::string t(4096, '\0');
      ssize_t k = ::readlinkat(dup, de->d_name, t.data(), t.size());
      if (k >= 0) e.target = t.substr(0, static_cast<std::size_t>(k));
    } else {
      subdirs.push_back(n);
    }
    out[p] = std::move(e);
  }
  for (auto& s : subdirs) {
    int sub = ::openat(dup, s.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (sub < 0) continue;
    Status st = walk(sub, joinPath(rel, s), out, depth + 1);
    ::close(sub);
    if (!st.ok()) result = st;
  }
  ::closedir(d);
  return result;
}

std::string octal(std::uint32_t m) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", m);
  return buf;
}

const char* kindName(FileKind k) {
  switch (k) {
    case FileKind::kRegular:
      return "file";
    case FileKind::kDirectory:
      return "directory";
    case FileKind::kSymlink:
      return "symlink";
    default:
      return "unknown";
  }
}

}  // namespace

Result<TreeManifest> manifestOf(const std::filesystem::path& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return makeError("cannot open " + root.string() + " to verify it: " + std::strerror(errno));
  TreeManifest m;
  Status s = walk(fd, "", m, 0);
  ::close(fd);
  if (!s.ok()) return s.error();
  return m;
}

TreeDiff compareManifests(const TreeManifest& source, const TreeManifest& replica,
                          const CompareOptions& options) {
  TreeDiff d;
  auto add = [&](const std::string& p, const char* what, std::string detail) {
    d.differences.push_back({p, what, std::move(detail)});
  };
  auto a = source.begin();
  auto b = replica.begin();
  while (a != source.end() || b != replica.end()) {
    ++d.entries;
    if (b == replica.end() || (a != source.end() && a->first < b->first)) {
      add(a->first, "missing on replica", kindName(a->second.kind));
      ++a;
      continue;
    }
    if (a == source.end() || b->first < a->first) {
      add(b->first, "extra on replica", kindName(b->second.kind));
      ++b;
      continue;
    }
    const auto& p = a->first;
    const ManifestEntry& x = a->second;
    const ManifestEntry& y = b->second;
    if (x.kind != y.kind) {
      add(p, "kind", std::string(kindName(x.kind)) + " vs " + kindName(y.kind));
    } else {
      if (x.kind == FileKind::kRegular) {
        if (x.size != y.size)
          add(p, "size", std::to_string(x.size) + " vs " + std::to_string(y.size));
        else if (x.content_hi != y.content_hi || x.content_lo != y.content_lo)
          add(p, "content", "XXH3-128 differs");
      }
      if (x.kind == FileKind::kSymlink && x.target != y.target)
        add(p, "target", x.target + " vs " + y.target);
      if (options.mode && x.kind != FileKind::kSymlink && x.mode != y.mode)
        add(p, "mode", octal(x.mode) + " vs " + octal(y.mode));
      if (options.owner && (x.uid != y.uid || x.gid != y.gid))
        add(p, "owner",
            std::to_string(x.uid) + ":" + std::to_string(x.gid) + " vs " + std::to_string(y.uid) + ":" +
                std::to_string(y.gid));
      if (options.mtime && x.kind != FileKind::kDirectory && x.mtime_ns != y.mtime_ns)
        add(p, "mtime", std::to_string(x.mtime_ns) + " vs " + std::to_string(y.mtime_ns));
    }
    ++a;
    ++b;
  }
  d.identical = d.differences.empty();
  return d;
}

Result<TreeDiff> compareTrees(const std::filesystem::path& source, const std::filesystem::path& replica,
                              const CompareOptions& options) {
  auto a = manifestOf(source);
  if (!a.ok()) return a.error();
  auto b = manifestOf(replica);
  if (!b.ok()) return b.error();
  return compareManifests(*a, *b, options);
}

}  // namespace ferry::sync
