#include "ferry/sync/messages.h"

#include <type_traits>

namespace ferry::sync {

const char* messageName(const Message& m) {
  switch (m.index()) {
    case 0:
      return "BatchBegin";
    case 1:
      return "FileMeta";
    case 2:
      return "Truncate";
    case 3:
      return "Block";
    case 4:
      return "Rename";
    case 5:
      return "Delete";
    case 6:
      return "BatchEnd";
    default:
      return "unknown";
  }
}

std::uint64_t wireSize(const Message& m) {
  constexpr std::uint64_t kHeader = 16;  // framing and tags, roughly
  return std::visit(
      [](const auto& v) -> std::uint64_t {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, BatchBegin>) {
          std::uint64_t n = kHeader + 16;
          for (auto& p : v.paths) n += p.size() + 8;
          return n;
        } else if constexpr (std::is_same_v<T, FileMeta>) {
          return kHeader + 48 + v.path.size() + v.target.size();
        } else if constexpr (std::is_same_v<T, Truncate>) {
          return kHeader + 8 + v.path.size();
        } else if constexpr (std::is_same_v<T, Block>) {
          return kHeader + 24 + v.path.size() + v.bytes.size();
        } else if constexpr (std::is_same_v<T, Rename>) {
          return kHeader + v.path.size() + v.target.size();
        } else if constexpr (std::is_same_v<T, Delete>) {
          return kHeader + v.path.size();
        } else {
          return kHeader + 24;
        }
      },
      m);
}

}  // namespace ferry::sync
