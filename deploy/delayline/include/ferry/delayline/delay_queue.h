// The scheduling core of the lab's delay line: packets held by NFQUEUE are
// released, in arrival order, once they have been held for a fixed delay.
//
// The kernel numbers the packets of one queue consecutively, and every packet
// waits the same time, so the packets due at any moment are a prefix of the
// arrival order. One batch verdict for the newest due id releases the whole
// prefix; this class tells the loop which id that is and when to wake up next.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>

namespace ferry::delayline {

using Clock = std::chrono::steady_clock;  // CLOCK_MONOTONIC

class DelayQueue {
 public:
  explicit DelayQueue(std::chrono::nanoseconds delay) : delay_(delay) {}

  // Records that packet `id` arrived at `now`; it is due at now + delay.
  void arrived(std::uint32_t id, Clock::time_point now);

  struct Release {
    std::uint32_t lastId;           // batch verdict for every held id up to this one
    std::size_t count;              // how many packets the release covers
    std::chrono::nanoseconds late;  // how long after its due time the oldest one goes
  };
  // Pops every packet due at `now`; nothing when none is due.
  std::optional<Release> releaseDue(Clock::time_point now);

  // Pops everything (used when the delay line stops: nothing stays held).
  std::optional<Release> releaseAll(Clock::time_point now);

  // When the oldest held packet is due; nothing when the queue is empty.
  [[nodiscard]] std::optional<Clock::time_point> nextDue() const;

  [[nodiscard]] std::size_t size() const { return held_.size(); }
  [[nodiscard]] std::chrono::nanoseconds delay() const { return delay_; }

 private:
  struct Held {
    std::uint32_t id;
    Clock::time_point due;
  };
  std::optional<Release> popWhile(Clock::time_point now, bool all);

  std::chrono::nanoseconds delay_;
  std::deque<Held> held_;
};

}  // namespace ferry::delayline
