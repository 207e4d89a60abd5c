#include "ferry/protocol/paths.h"

#include <gtest/gtest.h>

#include <string>

namespace ferry::protocol {
namespace {

struct PathCase {
  std::string path;
  bool accepted;
  std::string reason;  // substring of the refusal
};

class WirePathTest : public ::testing::TestWithParam<PathCase> {};

TEST_P(WirePathTest, AcceptsOnlyNormalisedRelativePathsInside) {
  const PathCase& c = GetParam();
  Status s = validateWirePath(c.path);
  EXPECT_EQ(s.ok(), c.accepted) << "path: " << c.path;
  if (!s.ok()) {
    EXPECT_NE(s.error().what.find(c.reason), std::string::npos) << s.error().what;
    EXPECT_FALSE(s.error().hint.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, WirePathTest,
    ::testing::Values(
        PathCase{"ibdata1", true, ""}, PathCase{"mysql/ibdata1", true, ""}, PathCase{"a/b/c/d.e", true, ""},
        PathCase{".hidden", true, ""}, PathCase{"..hidden", true, ""}, PathCase{"a..b/c", true, ""},
        PathCase{"dir with space/x", true, ""}, PathCase{"ünïcødé", true, ""}, PathCase{"", false, "empty"},
        PathCase{"/etc/passwd", false, "absolute"}, PathCase{"/", false, "absolute"},
        PathCase{"..", false, "'..'"}, PathCase{"../etc/passwd", false, "'..'"},
        PathCase{"a/../../b", false, "'..'"}, PathCase{"a/..", false, "'..'"}, PathCase{".", false, "'.'"},
        PathCase{"./a", false, "'.'"}, PathCase{"a/./b", false, "'.'"},
        PathCase{"a//b", false, "empty component"}, PathCase{"a/", false, "empty component"},
        PathCase{std::string("a\0b", 3), false, "NUL"}, PathCase{std::string(256, 'x'), false, "255"},
        PathCase{std::string(255, 'x'), true, ""},
        PathCase{[] {
                   std::string p;
                   while (p.size() < 4100) p += "abcdefgh/";
                   return p + "x";
                 }(),
                 false, "longer than"}));

TEST(WirePath, CustomLimit) {
  EXPECT_TRUE(validateWirePath("abc", 3).ok());
  EXPECT_FALSE(validateWirePath("abcd", 3).ok());
}

TEST(WirePath, RefusalQuotesControlCharacters) {
  Status s = validateWirePath(std::string("/\x01x"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().what.find("\\x01"), std::string::npos) << s.error().what;
}

}  // namespace
}  // namespace ferry::protocol
