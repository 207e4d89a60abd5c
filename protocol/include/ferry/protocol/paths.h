// Paths received from a peer: the one check that keeps a message from writing
// outside the data directory. The sync library calls it on every path too.
#pragma once

#include <cstddef>
#include <string_view>

#include "ferry/base/error.h"

namespace ferry::protocol {

inline constexpr size_t kMaxWirePathBytes = 4096;  // PATH_MAX
inline constexpr size_t kMaxWireNameBytes = 255;   // NAME_MAX

// A wire path is relative to the data directory and normalised: not empty, no
// leading '/', no empty, "." or ".." component (so no "//" and no trailing '/'),
// no NUL byte, every component ≤ 255 bytes, the whole ≤ maxBytes. Anything else is
// refused. (Symlinks inside the data directory are the applier's concern: it must
// open with O_NOFOLLOW / RESOLVE_BENEATH, never follow a received link.)
Status validateWirePath(std::string_view path, size_t maxBytes = kMaxWirePathBytes);

}  // namespace ferry::protocol
