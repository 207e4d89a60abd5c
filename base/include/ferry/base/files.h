// Small file helpers used across libraries.
#pragma once

#include <filesystem>
#include <string>

#include "ferry/base/error.h"

namespace ferry {

Result<std::string> readFile(const std::filesystem::path& path);

// Writes to a temporary file in the same directory, fsyncs it, renames it over
// `path` and fsyncs the directory: readers see the old or the new content, never
// a torn one. `mode` is applied before the rename (0600 for secrets).
Status writeFileAtomic(const std::filesystem::path& path, const std::string& content, unsigned mode = 0644);

}  // namespace ferry
