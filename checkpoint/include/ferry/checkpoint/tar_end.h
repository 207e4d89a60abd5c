// Where a tar archive that is still being written ends.
//
// Why: `podman container checkpoint --export` writes the archive, then cleans the
// container up (unmounts its storage, tears its network down, saves its state) before
// it exits. The archive is complete, and CRIU's dump has succeeded, as soon as the tar's
// closing blocks are written; a migration that waits for the process to exit instead
// keeps the service down through Podman's cleanup. The tracker follows the archive as it
// grows and says when its end has been written.
//
// It reads what Go's archive/tar (Podman's writer) produces: ustar headers, PAX
// extended headers ('x', whose "size" record overrides the next member's size), PAX
// global headers ('g'), GNU long names ('L', 'K'), octal or GNU base-256 sizes, and
// header-only members (links, devices, directories, FIFOs: no data whatever their size
// field says). The end is the first all-zero header block followed by a second
// all-zero block. Anything it cannot follow (a header whose checksum is wrong, a PAX
// record it cannot parse) makes it give up for good: the caller then waits for the
// writer to exit, as without it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ferry::checkpoint {

class TarEndTracker {
 public:
  // The next bytes of the archive, in order. Bytes after the end are counted, not read.
  void feed(std::string_view data);

  // The archive's length (up to and including its two closing blocks) once they have
  // been fed; nullopt before that, or after giving up.
  [[nodiscard]] std::optional<std::uint64_t> end() const;
  // The tracker could not follow the archive (why: failure()); end() stays nullopt.
  [[nodiscard]] bool failed() const { return state_ == State::kFailed; }
  [[nodiscard]] const std::string& failure() const { return failure_; }
  // Bytes fed so far; more than *end() means something was written after the end.
  [[nodiscard]] std::uint64_t fed() const { return fed_; }
  // Members seen (PAX and long-name records not counted).
  [[nodiscard]] std::uint64_t members() const { return members_; }

 private:
  enum class State { kHeader, kData, kSecondZero, kEnded, kFailed };
  void onHeader();
  void onRecordDone();
  void fail(std::string why);

  State state_ = State::kHeader;
  std::string block_;              // a header block being collected
  std::uint64_t left_ = 0;         // data and padding bytes left in the current member
  std::uint64_t record_left_ = 0;  // of those, bytes of a PAX record still to collect
  char type_ = '0';
  std::string record_;                      // a PAX record's content
  std::optional<std::uint64_t> next_size_;  // from a PAX header, for the next member
  std::uint64_t fed_ = 0;
  std::uint64_t end_ = 0;
  std::uint64_t members_ = 0;
  std::string failure_;
};

}  // namespace ferry::checkpoint
