#include "ferry/delayline/delay_queue.h"

namespace ferry::delayline {

void DelayQueue::arrived(std::uint32_t id, Clock::time_point now) {
  held_.push_back(Held{id, now + delay_});
}

std::optional<DelayQueue::Release> DelayQueue::releaseDue(Clock::time_point now) {
  return popWhile(now, false);
}

std::optional<DelayQueue::Release> DelayQueue::releaseAll(Clock::time_point now) {
  return popWhile(now, true);
}

std::optional<DelayQueue::Release> DelayQueue::popWhile(Clock::time_point now, bool all) {
  if (held_.empty() || (!all && held_.front().due > now)) return std::nullopt;
  Release r{held_.front().id, 0, std::chrono::nanoseconds(0)};
  if (held_.front().due < now) r.late = now - held_.front().due;
  while (!held_.empty() && (all || held_.front().due <= now)) {
    r.lastId = held_.front().id;
    ++r.count;
    held_.pop_front();
  }
  return r;
}

std::optional<Clock::time_point> DelayQueue::nextDue() const {
  if (held_.empty()) return std::nullopt;
  return held_.front().due;
}

}  // namespace ferry::delayline
