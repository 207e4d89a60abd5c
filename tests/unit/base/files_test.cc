#include "ferry/base/files.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

namespace ferry {
namespace {

TEST(Files, WriteAtomicThenReadBack) {
  auto dir = std::filesystem::temp_directory_path() / ("ferry-files-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto path = dir / "secret";
  ASSERT_TRUE(writeFileAtomic(path, "one", 0600).ok());
  ASSERT_TRUE(writeFileAtomic(path, "two", 0600).ok());
  auto content = readFile(path);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "two");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // No temporary files are left behind.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 1);
  std::filesystem::remove_all(dir);
}

TEST(Files, ReadMissingNamesThePath) {
  auto r = readFile("/nonexistent/ferry");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().what.find("/nonexistent/ferry"), std::string::npos);
}

}  // namespace
}  // namespace ferry
