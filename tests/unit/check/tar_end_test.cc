// TarEndTracker: where an archive that is still being written ends, fed whole, a byte
// at a time and in two pieces split at every offset.
#include "ferry/checkpoint/tar_end.h"

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "tar_builder.h"

namespace ferry::checkpoint {
namespace {

using testing::base256;
using testing::octal;
using testing::paxMember;
using testing::tarEnd;
using testing::tarMember;

std::string bytes(std::size_t n, char c) {
  return std::string(n, c);
}

struct EndCase {
  const char* name;
  std::string archive;
  std::optional<std::uint64_t> end;  // expected end(); nullopt: not (yet) ended
  bool failed = false;
  std::uint64_t members = 0;
};

std::vector<EndCase> endCases() {
  const std::string one = tarMember("checkpoint/pages-1.img", bytes(700, 'p'));
  const std::string zeros = tarMember("checkpoint/pages-2.img", bytes(2048, '\0'));
  const std::string pax = paxMember({{"path", "checkpoint/a-very-long-name"}, {"size", "1300"}}) +
                          tarMember("checkpoint/short", bytes(1300, 'x'), '0', octal(0, 12));
  const std::string links = tarMember("etc/link", "", '2', octal(777, 12)) +
                            tarMember("var/dir", "", '5', octal(4096, 12)) +
                            tarMember("dev/fifo", "", '6', octal(1, 12));
  const std::string big = tarMember("rootfs-diff.tar", bytes(1000, 'r'), '0', base256(1000));
  const std::string gnu = tarMember("././@LongLink", "checkpoint/" + bytes(150, 'n') + '\0', 'L') +
                          tarMember("checkpoint/nnn", bytes(10, 'd'));
  const std::string global =
      tarMember("pax_global_header", "17 comment=ferry\n", 'g') + tarMember("config.dump", "{}");
  std::string bad_checksum = tarMember("spec.dump", "{}");
  bad_checksum[0] = 'X';  // after the checksum was computed
  const std::string bad_pax = tarMember("PaxHeaders/x", "9 size=12\n", 'x');  // length 9 != 10
  return {
      {"empty archive", tarEnd(), 1024, false, 0},
      {"one member", one + tarEnd(), one.size() + 1024, false, 1},
      {"zero blocks inside a member are data", zeros + one + tarEnd(), zeros.size() + one.size() + 1024,
       false, 2},
      {"PAX size overrides the header's", pax + tarEnd(), pax.size() + 1024, false, 1},
      {"header-only members carry no data", links + one + tarEnd(), links.size() + one.size() + 1024, false,
       4},
      {"base-256 size", big + tarEnd(), big.size() + 1024, false, 1},
      {"GNU long name", gnu + tarEnd(), gnu.size() + 1024, false, 1},
      {"PAX global header", global + tarEnd(), global.size() + 1024, false, 1},
      {"bytes after the end are not read", one + tarEnd() + "junk", one.size() + 1024, false, 1},
      {"cut inside a member", one.substr(0, 600), std::nullopt, false, 1},
      {"cut after the members", one, std::nullopt, false, 1},
      {"one zero block so far", one + bytes(512, '\0'), std::nullopt, false, 1},
      {"one zero block then a header", one + bytes(512, '\0') + one, std::nullopt, true, 1},
      {"a header with a wrong checksum", bad_checksum + tarEnd(), std::nullopt, true, 0},
      {"not a tar", bytes(4096, 'z'), std::nullopt, true, 0},
      {"a malformed PAX record", bad_pax + one + tarEnd(), std::nullopt, true, 0},
  };
}

void expectCase(const EndCase& c, const TarEndTracker& t, const std::string& how) {
  EXPECT_EQ(t.end(), c.end) << c.name << " (" << how << ")";
  EXPECT_EQ(t.failed(), c.failed) << c.name << " (" << how << "): " << t.failure();
  if (!c.failed) {
    EXPECT_EQ(t.members(), c.members) << c.name << " (" << how << ")";
  }
  EXPECT_EQ(t.fed(), c.archive.size()) << c.name << " (" << how << ")";
}

TEST(TarEnd, FedWhole) {
  for (const auto& c : endCases()) {
    TarEndTracker t;
    t.feed(c.archive);
    expectCase(c, t, "whole");
  }
}

TEST(TarEnd, FedByteByByte) {
  for (const auto& c : endCases()) {
    TarEndTracker t;
    for (char b : c.archive) t.feed(std::string_view(&b, 1));
    expectCase(c, t, "byte by byte");
  }
}

TEST(TarEnd, SplitAtEveryOffset) {
  for (const auto& c : endCases()) {
    for (std::size_t at = 0; at <= c.archive.size(); ++at) {
      TarEndTracker t;
      t.feed(std::string_view(c.archive).substr(0, at));
      t.feed(std::string_view(c.archive).substr(at));
      expectCase(c, t, "split at " + std::to_string(at));
      if (::testing::Test::HasFailure()) return;
    }
  }
}

TEST(TarEnd, EndIsNotClaimedBeforeTheSecondZeroBlockArrives) {
  const std::string one = tarMember("inventory.img", bytes(100, 'i'));
  TarEndTracker t;
  t.feed(one);
  t.feed(bytes(512, '\0'));
  t.feed(bytes(511, '\0'));
  EXPECT_FALSE(t.end().has_value());
  t.feed(std::string(1, '\0'));
  ASSERT_TRUE(t.end().has_value());
  EXPECT_EQ(*t.end(), one.size() + 1024);
}

TEST(TarEnd, FailureSaysWhere) {
  std::string archive = tarMember("a", "1") + tarMember("b", "2");
  archive[1024 + 148] = '1';  // the second header's checksum
  TarEndTracker t;
  t.feed(archive);
  ASSERT_TRUE(t.failed());
  EXPECT_NE(t.failure().find("offset 1024"), std::string::npos) << t.failure();
}

}  // namespace
}  // namespace ferry::checkpoint
