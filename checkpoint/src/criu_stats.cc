#include "ferry/checkpoint/criu_stats.h"

#include <algorithm>

#include "tar_header.h"

namespace ferry::checkpoint {
namespace {

constexpr std::uint32_t kImgServiceMagic = 0x55105940;  // "Zlatoust"
constexpr std::uint32_t kStatsMagic = 0x57093306;       // "Ostashkov"
using tar::kBlock;
constexpr std::size_t kMaxRecord = std::size_t{1} << 20;  // PAX headers and long names

std::uint32_t le32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i)
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  return v;
}

bool readVarint(std::string_view s, std::size_t& pos, std::uint64_t& out) {
  out = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (pos >= s.size()) return false;
    const auto byte = static_cast<unsigned char>(s[pos++]);
    out |= static_cast<std::uint64_t>(byte & 0x7fU) << shift;
    if ((byte & 0x80U) == 0) return true;
  }
  return false;
}

// Skips one field's value of wire type `wt`; false when malformed.
bool skipField(std::string_view s, std::size_t& pos, std::uint64_t wt) {
  std::uint64_t v = 0;
  switch (wt) {
    case 0:
      return readVarint(s, pos, v);
    case 1:
      if (s.size() - pos < 8) return false;
      pos += 8;
      return true;
    case 2:
      if (!readVarint(s, pos, v) || v > s.size() - pos) return false;
      pos += static_cast<std::size_t>(v);
      return true;
    case 5:
      if (s.size() - pos < 4) return false;
      pos += 4;
      return true;
    default:
      return false;
  }
}

bool parseDumpEntry(std::string_view s, CriuDumpStats& st) {
  std::size_t pos = 0;
  while (pos < s.size()) {
    std::uint64_t key = 0;
    if (!readVarint(s, pos, key)) return false;
    const std::uint64_t field = key >> 3U;
    const std::uint64_t wt = key & 7U;
    if (wt != 0 || field < 1 || field > 7) {
      if (!skipField(s, pos, wt)) return false;
      continue;
    }
    std::uint64_t v = 0;
    if (!readVarint(s, pos, v)) return false;
    switch (field) {
      case 1:
        st.freezing_time = v;
        break;
      case 2:
        st.frozen_time = v;
        break;
      case 3:
        st.memdump_time = v;
        break;
      case 4:
        st.memwrite_time = v;
        break;
      case 5:
        st.pages_scanned = v;
        break;
      case 6:
        st.pages_skipped_parent = v;
        break;
      case 7:
        st.pages_written = v;
        break;
      default:
        break;
    }
  }
  return true;
}

std::string normalizeName(std::string name) {
  while (true) {
    if (name.starts_with("./")) {
      name.erase(0, 2);
    } else if (name.starts_with("/")) {
      name.erase(0, 1);
    } else {
      return name;
    }
  }
}

std::string field(const std::string& block, std::size_t at, std::size_t len) {
  std::string_view f(block.data() + at, len);
  return std::string(f.substr(0, f.find('\0')));
}

// A PAX header's "path" and "size" for the next member (a malformed record ends it).
void parsePax(std::string_view data, std::string& path, std::optional<std::uint64_t>& size) {
  (void)tar::forEachPaxRecord(data, [&](std::string_view key, std::string_view value) {
    if (key == "path") path = std::string(value);
    if (key == "size") {
      if (auto v = tar::paxNumber(value)) size = v;
    }
  });
}

}  // namespace

Result<CriuDumpStats> parseCriuDumpStats(std::string_view image) {
  if (image.size() < 12)
    return makeError("CRIU stats-dump is " + std::to_string(image.size()) + " bytes, too short");
  if (le32(image, 0) != kImgServiceMagic || le32(image, 4) != kStatsMagic)
    return makeError("CRIU stats-dump has the wrong magic numbers (not a CRIU statistics image)");
  const std::uint32_t size = le32(image, 8);
  if (size > image.size() - 12)
    return makeError("CRIU stats-dump claims " + std::to_string(size) + " bytes but holds " +
                     std::to_string(image.size() - 12));
  std::string_view payload = image.substr(12, size);
  std::size_t pos = 0;
  while (pos < payload.size()) {
    std::uint64_t key = 0;
    if (!readVarint(payload, pos, key)) break;
    if (key == ((1U << 3U) | 2U)) {
      std::uint64_t len = 0;
      if (!readVarint(payload, pos, len) || len > payload.size() - pos) break;
      CriuDumpStats st;
      if (!parseDumpEntry(payload.substr(pos, static_cast<std::size_t>(len)), st)) break;
      return st;
    }
    if (!skipField(payload, pos, key & 7U)) break;
  }
  return makeError("CRIU stats-dump holds no readable dump statistics");
}

void TarMemberTap::feed(std::string_view data) {
  while (!data.empty() && state_ != State::kStopped) {
    switch (state_) {
      case State::kHeader: {
        std::size_t take = std::min(kBlock - block_.size(), data.size());
        block_.append(data.substr(0, take));
        data.remove_prefix(take);
        if (block_.size() == kBlock) {
          onHeader();
          block_.clear();
        }
        break;
      }
      case State::kData: {
        auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size()));
        if (capture_) data_.append(data.substr(0, take));
        data.remove_prefix(take);
        left_ -= take;
        if (left_ == 0) {
          if (type_ == 'x') {
            parsePax(data_, next_name_, next_size_);
          } else if (type_ == 'L') {
            next_name_ = data_.substr(0, data_.find('\0'));
          } else if (capture_) {
            content_ = std::move(data_);
            state_ = State::kStopped;  // found: the rest of the stream is not looked at
            return;
          }
          data_.clear();
          capture_ = false;
          state_ = padding_ > 0 ? State::kPadding : State::kHeader;
        }
        break;
      }
      case State::kPadding: {
        auto take = static_cast<std::size_t>(std::min<std::uint64_t>(padding_, data.size()));
        data.remove_prefix(take);
        padding_ -= take;
        if (padding_ == 0) state_ = State::kHeader;
        break;
      }
      case State::kStopped:
        return;
    }
  }
}

void TarMemberTap::onHeader() {
  if (block_.find_first_not_of('\0') == std::string::npos) {  // end of the archive
    state_ = State::kStopped;
    return;
  }
  auto size = tar::numericField(block_, 124, 12);
  if (!tar::checksumMatches(block_) || !size) {
    state_ = State::kStopped;  // not a tar (or a damaged one): give up quietly
    return;
  }
  type_ = block_[156] == '\0' ? '0' : block_[156];
  std::string name = field(block_, 0, 100);
  if (block_.compare(257, 5, "ustar") == 0) {
    std::string prefix = field(block_, 345, 155);
    if (!prefix.empty()) name = prefix + "/" + name;
  }
  std::uint64_t length = *size;
  if (type_ != 'x' && type_ != 'g' && type_ != 'L' && type_ != 'K') {
    if (!next_name_.empty()) name = next_name_;
    if (next_size_) length = *next_size_;
    next_name_.clear();
    next_size_.reset();
  }
  left_ = length;
  padding_ = (kBlock - length % kBlock) % kBlock;
  data_.clear();
  if (type_ == 'x' || type_ == 'L') {
    capture_ = length <= kMaxRecord;
    if (!capture_) {
      state_ = State::kStopped;
      return;
    }
  } else {
    capture_ = !content_ && (type_ == '0' || type_ == '7') && length <= max_ && normalizeName(name) == name_;
  }
  if (length == 0) {
    if (capture_ && type_ != 'x' && type_ != 'L') {
      content_ = std::string();
      state_ = State::kStopped;
      return;
    }
    capture_ = false;
    state_ = State::kHeader;
    return;
  }
  state_ = State::kData;
}

}  // namespace ferry::checkpoint
