#include "ferry/checkpoint/tar_end.h"

#include <algorithm>

#include "tar_header.h"

namespace ferry::checkpoint {
namespace {

using tar::kBlock;
constexpr std::uint64_t kMaxPaxRecord = std::uint64_t{1} << 20;

std::uint64_t roundUp(std::uint64_t n) {
  return (n + kBlock - 1) / kBlock * kBlock;
}

bool allZero(const std::string& block) {
  return block.find_first_not_of('\0') == std::string::npos;
}

// Members whose size field does not announce data (Go's archive/tar: isHeaderOnlyType).
bool headerOnly(char type) {
  return type >= '1' && type <= '6';
}

}  // namespace

std::optional<std::uint64_t> TarEndTracker::end() const {
  if (state_ != State::kEnded) return std::nullopt;
  return end_;
}

void TarEndTracker::fail(std::string why) {
  state_ = State::kFailed;
  failure_ = std::move(why);
}

void TarEndTracker::feed(std::string_view data) {
  fed_ += data.size();
  while (!data.empty()) {
    switch (state_) {
      case State::kEnded:
      case State::kFailed:
        return;
      case State::kHeader:
      case State::kSecondZero: {
        const std::size_t take = std::min(kBlock - block_.size(), data.size());
        block_.append(data.substr(0, take));
        data.remove_prefix(take);
        end_ += take;
        if (block_.size() < kBlock) break;
        if (state_ == State::kSecondZero) {
          if (!allZero(block_)) {
            fail("a zero block at offset " + std::to_string(end_ - 2 * kBlock) + " is followed by a header");
            return;
          }
          state_ = State::kEnded;
          return;
        }
        onHeader();
        block_.clear();
        break;
      }
      case State::kData: {
        const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(left_, data.size()));
        if (record_left_ > 0) {
          const auto keep = static_cast<std::size_t>(std::min<std::uint64_t>(record_left_, take));
          record_.append(data.substr(0, keep));
          record_left_ -= keep;
        }
        data.remove_prefix(take);
        left_ -= take;
        end_ += take;
        if (left_ == 0) {
          if (type_ == 'x') onRecordDone();
          if (state_ == State::kData) state_ = State::kHeader;
        }
        break;
      }
    }
  }
}

void TarEndTracker::onHeader() {
  if (allZero(block_)) {
    state_ = State::kSecondZero;
    return;
  }
  // The checksum: the header's bytes with the checksum field read as spaces (some old
  // writers summed signed chars; both are accepted).
  const std::uint64_t offset = end_ - kBlock;
  if (!tar::checksumMatches(block_)) {
    fail("the block at offset " + std::to_string(offset) + " is not a tar header (checksum)");
    return;
  }
  auto size = tar::numericField(block_, 124, 12);
  if (!size) {
    fail("the header at offset " + std::to_string(offset) + " has an unreadable size");
    return;
  }
  type_ = block_[156] == '\0' ? '0' : block_[156];
  std::uint64_t length = *size;
  record_.clear();
  record_left_ = 0;
  if (type_ == 'x') {
    if (length > kMaxPaxRecord) {
      fail("the PAX header at offset " + std::to_string(offset) + " is " + std::to_string(length) +
           " bytes long");
      return;
    }
    record_left_ = length;
  } else if (type_ != 'g' && type_ != 'L' && type_ != 'K') {
    if (next_size_) length = *next_size_;
    next_size_.reset();
    if (headerOnly(type_)) length = 0;
    ++members_;
  }
  if (length > UINT64_MAX - kBlock) {
    fail("the header at offset " + std::to_string(offset) + " announces an impossible size");
    return;
  }
  left_ = roundUp(length);
  state_ = left_ > 0 ? State::kData : State::kHeader;
  if (left_ == 0 && type_ == 'x') onRecordDone();
}

// A PAX extended header: "LEN key=value\n" records; "size" applies to the next member.
void TarEndTracker::onRecordDone() {
  bool bad_size = false;
  auto malformed = tar::forEachPaxRecord(record_, [&](std::string_view key, std::string_view value) {
    if (key != "size" || bad_size) return;
    auto v = tar::paxNumber(value);
    if (v) {
      next_size_ = v;
    } else {
      bad_size = true;
    }
  });
  // A bad size before any malformed record is what a reader meets first.
  if (bad_size) {
    fail("a PAX size record is not a number");
    return;
  }
  if (malformed) {
    fail("a PAX record at byte " + std::to_string(*malformed) + " of its header is malformed");
    return;
  }
  record_.clear();
}

}  // namespace ferry::checkpoint
