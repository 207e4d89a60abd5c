#include "ferry/checkpoint/criu_stats.h"

#include <gtest/gtest.h>

#include "tar_builder.h"

namespace ferry::checkpoint {
namespace {

using testing::criuStatsImage;
using testing::paxMember;
using testing::tarEnd;
using testing::tarMember;

CriuDumpStats sample() {
  CriuDumpStats s;
  s.freezing_time = 1234;
  s.frozen_time = 456789;
  s.memdump_time = 20000;
  s.memwrite_time = 300000;
  s.pages_scanned = 70000;
  s.pages_skipped_parent = 3;
  s.pages_written = 65000;
  return s;
}

TEST(CriuStats, ParsesTheDumpEntry) {
  for (bool restore_first : {false, true}) {
    auto st = parseCriuDumpStats(criuStatsImage(sample(), restore_first));
    ASSERT_TRUE(st.ok()) << st.error().message();
    EXPECT_EQ(st->freezing_time, 1234U);
    EXPECT_EQ(st->frozen_time, 456789U);
    EXPECT_EQ(st->memdump_time, 20000U);
    EXPECT_EQ(st->memwrite_time, 300000U);
    EXPECT_EQ(st->pages_scanned, 70000U);
    EXPECT_EQ(st->pages_skipped_parent, 3U);
    EXPECT_EQ(st->pages_written, 65000U);
  }
}

struct BadImageCase {
  std::string name;
  std::string image;
  std::string words;
};

class CriuStatsBad : public ::testing::TestWithParam<BadImageCase> {};

TEST_P(CriuStatsBad, RefusedWithAReason) {
  auto st = parseCriuDumpStats(GetParam().image);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message().find(GetParam().words), std::string::npos) << st.error().message();
}

std::string withByte(std::string s, std::size_t at, char c) {
  s[at] = c;
  return s;
}

INSTANTIATE_TEST_SUITE_P(
    Table, CriuStatsBad,
    ::testing::Values(
        BadImageCase{"short", "abc", "too short"},
        BadImageCase{"magic", withByte(criuStatsImage(sample()), 0, 'x'), "magic"},
        BadImageCase{"size", withByte(criuStatsImage(sample()), 8, '\x7f'), "claims"},
        BadImageCase{"truncated_varint",
                     std::string("\x40\x59\x10\x55\x06\x33\x09\x57\x02\x00\x00\x00\x0a\xff", 14),
                     "no readable dump"},
        BadImageCase{"no_dump", std::string("\x40\x59\x10\x55\x06\x33\x09\x57\x00\x00\x00\x00", 12),
                     "no readable dump"}),
    [](const auto& tp) { return tp.param.name; });

std::string exportLike(const std::string& stats, const std::string& pages) {
  // What Podman's exportCheckpoint writes, in its order: metadata, stats-dump, the
  // CRIU image directory.
  return tarMember("config.dump", "{\"id\":\"abc\"}") + tarMember("spec.dump", std::string(3000, 's')) +
         tarMember("network.status", "[]") + tarMember("stats-dump", stats) +
         tarMember("checkpoint/", "", '5') + tarMember("checkpoint/pages-1.img", pages) + tarEnd();
}

TEST(TarMemberTap, FindsTheMemberWhateverThePieces) {
  const std::string stats = criuStatsImage(sample());
  std::string pages(100000, '\0');
  for (std::size_t i = 0; i < pages.size(); ++i) pages[i] = static_cast<char>(i * 7 % 251);
  const std::string tar = exportLike(stats, pages);
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{511}, std::size_t{512},
                            std::size_t{513}, std::size_t{65521}, tar.size()}) {
    TarMemberTap tap("stats-dump", 65536);
    for (std::size_t off = 0; off < tar.size(); off += piece)
      tap.feed(std::string_view(tar).substr(off, piece));
    ASSERT_TRUE(tap.content().has_value()) << "piece " << piece;
    EXPECT_EQ(*tap.content(), stats) << "piece " << piece;
  }
}

struct TapCase {
  std::string name;
  std::string tar;
  bool found;
  std::string content;
};

class TarMemberTapTable : public ::testing::TestWithParam<TapCase> {};

TEST_P(TarMemberTapTable, Captures) {
  TarMemberTap tap("stats-dump", 100);
  tap.feed(GetParam().tar);
  ASSERT_EQ(tap.content().has_value(), GetParam().found) << GetParam().name;
  if (GetParam().found) {
    EXPECT_EQ(*tap.content(), GetParam().content);
  }
}

std::string corrupt(std::string tar) {
  tar[10] = 'Z';  // breaks the first header's checksum
  return tar;
}

INSTANTIATE_TEST_SUITE_P(
    Table, TarMemberTapTable,
    ::testing::Values(
        TapCase{"dot_slash", tarMember("./stats-dump", "abc") + tarEnd(), true, "abc"},
        TapCase{"absent", tarMember("dump.log", "abc") + tarEnd(), false, ""},
        TapCase{"too_big", tarMember("stats-dump", std::string(101, 'x')) + tarEnd(), false, ""},
        TapCase{"directory_named_so",
                tarMember("stats-dump", "", '5') + tarMember("stats-dump", "x") + tarEnd(), true, "x"},
        TapCase{
            "pax_path",
            paxMember({{"path", "stats-dump"}, {"mtime", "1.5"}}) + tarMember("renamed", "pax") + tarEnd(),
            true, "pax"},
        TapCase{"pax_renames_away", paxMember({{"path", "other"}}) + tarMember("stats-dump", "no") + tarEnd(),
                false, ""},
        TapCase{"gnu_long_name",
                tarMember("././@LongLink", std::string("stats-dump\0", 11), 'L') +
                    tarMember("truncated", "long") + tarEnd(),
                true, "long"},
        TapCase{"ustar_prefix", tarMember("stats-dump", "p", '0', {}, ".") + tarEnd(), true, "p"},
        TapCase{"prefix_joined", tarMember("stats-dump", "q", '0', {}, "sub") + tarEnd(), false, ""},
        TapCase{"empty_member", tarMember("stats-dump", "") + tarEnd(), true, ""},
        TapCase{"bad_checksum", corrupt(tarMember("stats-dump", "abc")), false, ""},
        TapCase{"not_a_tar", std::string(2000, 'x'), false, ""},
        TapCase{"after_the_end", tarEnd() + tarMember("stats-dump", "late"), false, ""}),
    [](const auto& tp) { return tp.param.name; });

}  // namespace
}  // namespace ferry::checkpoint
