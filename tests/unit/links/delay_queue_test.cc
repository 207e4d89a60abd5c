#include "ferry/delayline/delay_queue.h"

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace ferry::delayline {
namespace {

using namespace std::chrono_literals;

Clock::time_point at(std::chrono::microseconds us) {
  return Clock::time_point(us);
}

TEST(DelayQueue, EmptyHasNothingDue) {
  DelayQueue q(1ms);
  EXPECT_FALSE(q.nextDue().has_value());
  EXPECT_FALSE(q.releaseDue(at(1'000'000us)).has_value());
  EXPECT_FALSE(q.releaseAll(at(0us)).has_value());
}

struct Arrival {
  std::uint32_t id;
  std::chrono::microseconds when;
};
struct ReleaseCase {
  const char* name;
  std::chrono::microseconds delay;
  std::vector<Arrival> arrivals;
  std::chrono::microseconds now;
  std::optional<std::uint32_t> lastId;  // nothing: no release expected
  std::size_t count;
  std::chrono::microseconds late;
  std::size_t left;
};

class DelayQueueRelease : public testing::TestWithParam<ReleaseCase> {};

TEST_P(DelayQueueRelease, ReleasesExactlyTheDuePrefix) {
  const auto& c = GetParam();
  DelayQueue q(c.delay);
  for (const auto& a : c.arrivals) q.arrived(a.id, at(a.when));
  auto r = q.releaseDue(at(c.now));
  ASSERT_EQ(r.has_value(), c.lastId.has_value());
  if (r) {
    EXPECT_EQ(r->lastId, *c.lastId);
    EXPECT_EQ(r->count, c.count);
    EXPECT_EQ(r->late, c.late);
  }
  EXPECT_EQ(q.size(), c.left);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, DelayQueueRelease,
    testing::Values(
        ReleaseCase{"not_yet", 1000us, {{7, 0us}}, 999us, std::nullopt, 0, 0us, 1},
        ReleaseCase{"exactly_due", 1000us, {{7, 0us}}, 1000us, 7U, 1, 0us, 0},
        ReleaseCase{"late_is_measured_from_oldest", 1000us, {{7, 0us}, {8, 10us}}, 1050us, 8U, 2, 50us, 0},
        ReleaseCase{"prefix_only", 1000us, {{1, 0us}, {2, 100us}, {3, 500us}}, 1200us, 2U, 2, 200us, 1},
        ReleaseCase{"ids_wrap_around", 25000us, {{0xffffffffU, 0us}, {0U, 1us}}, 25001us, 0U, 2, 1us, 0},
        ReleaseCase{"zero_delay", 0us, {{5, 3us}}, 3us, 5U, 1, 0us, 0}),
    [](const testing::TestParamInfo<ReleaseCase>& i) { return std::string(i.param.name); });

TEST(DelayQueue, NextDueIsOldestArrivalPlusDelay) {
  DelayQueue q(25ms);
  q.arrived(1, at(100us));
  q.arrived(2, at(200us));
  ASSERT_TRUE(q.nextDue().has_value());
  EXPECT_EQ(*q.nextDue(), at(25'100us));
  ASSERT_TRUE(q.releaseDue(at(25'150us)).has_value());
  EXPECT_EQ(*q.nextDue(), at(25'200us));
}

TEST(DelayQueue, ReleaseAllEmptiesTheQueueEvenBeforeDue) {
  DelayQueue q(50ms);
  q.arrived(10, at(0us));
  q.arrived(11, at(1us));
  auto r = q.releaseAll(at(2us));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->lastId, 11U);
  EXPECT_EQ(r->count, 2U);
  EXPECT_EQ(r->late, 0us);
  EXPECT_EQ(q.size(), 0U);
}

}  // namespace
}  // namespace ferry::delayline
