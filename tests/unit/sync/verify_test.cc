#include "ferry/sync/verify.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "sync_test_util.h"

namespace ferry::sync {
namespace {

using namespace testutil;
namespace fs = std::filesystem;

struct VerifyCase {
  const char* name;
  void (*mutate)(const fs::path& replica);
  const char* path;
  const char* what;
};

const VerifyCase kCases[] = {
    {"Content", [](const fs::path& d) { writeAt(d / "a", 1, "X"); }, "a", "content"},
    {"Size", [](const fs::path& d) { fs::resize_file(d / "a", 3); }, "a", "size"},
    {"Mode", [](const fs::path& d) { ::chmod((d / "a").c_str(), 0600); }, "a", "mode"},
    {"Owner", [](const fs::path& d) { (void)!::chown((d / "dir").c_str(), 1000, 1000); }, "dir", "owner"},
    {"Missing", [](const fs::path& d) { fs::remove(d / "dir" / "b"); }, "dir/b", "missing on replica"},
    {"Extra", [](const fs::path& d) { writeFile(d / "zz", "x"); }, "zz", "extra on replica"},
    {"Target",
     [](const fs::path& d) {
       fs::remove(d / "l");
       fs::create_symlink("elsewhere", d / "l");
     },
     "l", "target"},
    {"Kind",
     [](const fs::path& d) {
       fs::remove(d / "l");
       writeFile(d / "l", "x");
     },
     "l", "kind"},
};

class Verify : public ::testing::TestWithParam<VerifyCase> {};

TEST_P(Verify, ListsTheDifference) {
  if (std::string(GetParam().what) == "owner" && ::geteuid() != 0) GTEST_SKIP() << "needs root (chown)";
  TempTrees t;
  for (const auto& root : {t.src(), t.dst()}) {
    fs::create_directories(root / "dir");
    writeFile(root / "a", "abcdef");
    writeFile(root / "dir" / "b", "b");
    fs::create_symlink("a", root / "l");
    ::chmod((root / "a").c_str(), 0644);
  }
  CompareOptions no_mtime;
  no_mtime.mtime = false;
  auto same = compareTrees(t.src(), t.dst(), no_mtime);
  ASSERT_TRUE(same.ok());
  EXPECT_TRUE(same->identical);

  GetParam().mutate(t.dst());
  auto d = compareTrees(t.src(), t.dst(), no_mtime);
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->identical);
  ASSERT_EQ(d->differences.size(), 1u) << d->differences[0].path << " " << d->differences[0].what;
  EXPECT_EQ(d->differences[0].path, GetParam().path);
  EXPECT_EQ(d->differences[0].what, GetParam().what);
}

INSTANTIATE_TEST_SUITE_P(Sync, Verify, ::testing::ValuesIn(kCases),
                         [](const auto& tp) { return std::string(tp.param.name); });

}  // namespace
}  // namespace ferry::sync
