// Compares two directory trees by content and metadata (`ferry verify`).
//
// A manifest lists every entry of a tree (never following symlinks) with its kind,
// mode, owner, size, mtime, symlink target and, for regular files, the XXH3-128 of the
// content. The node builds one on each host and compares them; compareTrees() does both
// locally (tests, benchmarks).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/sync/messages.h"

namespace ferry::sync {

struct ManifestEntry {
  FileKind kind = FileKind::kRegular;
  std::uint32_t mode = 0, uid = 0, gid = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  std::string target;
  std::uint64_t content_hi = 0, content_lo = 0;  // XXH3-128 of a regular file's bytes
};

using TreeManifest = std::map<std::string, ManifestEntry>;  // relative path -> entry

Result<TreeManifest> manifestOf(const std::filesystem::path& root);

struct CompareOptions {
  bool owner = true;  // uid/gid
  bool mode = true;
  bool mtime = true;  // regular files and symlinks (directory mtimes are not compared)
};

struct Difference {
  std::string path;
  std::string what;    // "missing on replica", "extra on replica", "kind", "content",
                       // "size", "mode", "owner", "mtime", "target"
  std::string detail;  // e.g. "0644 vs 0600"
};

struct TreeDiff {
  bool identical = true;
  std::uint64_t entries = 0;  // entries compared (union of both trees)
  std::vector<Difference> differences;
};

// `source` is the reference; differences are described from the replica's side.
TreeDiff compareManifests(const TreeManifest& source, const TreeManifest& replica,
                          const CompareOptions& options = {});
Result<TreeDiff> compareTrees(const std::filesystem::path& source, const std::filesystem::path& replica,
                              const CompareOptions& options = {});

}  // namespace ferry::sync
