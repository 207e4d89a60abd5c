// `ferry keygen` and `ferry pair` end to end: files, modes, and the exact text a
// user sees on bad input. Needs no lab (runs in a temporary directory).
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "ferry/base/process.h"

namespace {

namespace fs = std::filesystem;

ferry::ProcessResult ferryRun(const std::vector<std::string>& args) {
  std::vector<std::string> argv{FERRY_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  ferry::ProcessOptions po;
  po.timeout = std::chrono::seconds(30);
  auto r = ferry::runProcess(argv, po);
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : ferry::ProcessResult{};
}

class KeysCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ferry-keys-cli-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(KeysCli, KeygenThenPairBothWays) {
  auto a = ferryRun({"keygen", "--dir", (dir_ / "a").string(), "--output", "json"});
  ASSERT_EQ(a.exit_code, 0) << a.err;
  auto aj = nlohmann::json::parse(a.out);
  const std::string aKey = aj.at("public_key");
  EXPECT_EQ(aKey.size(), 40u);
  EXPECT_EQ(aj.at("fingerprint").get<std::string>().size(), 16u);
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "a" / "node.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto b = ferryRun({"keygen", "--dir", (dir_ / "b").string()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.out.find("next:        on the peer, run: ferry pair --peer-key '"), std::string::npos) << b.out;

  auto pair = ferryRun({"pair", "--dir", (dir_ / "b").string(), "--peer-key", aKey, "--name", "a"});
  ASSERT_EQ(pair.exit_code, 0) << pair.err;
  EXPECT_NE(pair.out.find("paired with 'a' [" + aj.at("fingerprint").get<std::string>() + "]"),
            std::string::npos)
      << pair.out;
  auto list = ferryRun({"pair", "--dir", (dir_ / "b").string(), "--list", "--output", "json"});
  ASSERT_EQ(list.exit_code, 0);
  auto lj = nlohmann::json::parse(list.out);
  ASSERT_EQ(lj.size(), 1u);
  EXPECT_EQ(lj[0].at("name"), "a");
  EXPECT_EQ(lj[0].at("public_key"), aKey);

  // Nothing secret is ever printed.
  std::ifstream key(dir_ / "a" / "node.key");
  std::string text((std::istreambuf_iterator<char>(key)), std::istreambuf_iterator<char>());
  const auto pos = text.find("secret-key = \"");
  ASSERT_NE(pos, std::string::npos);
  const std::string secret = text.substr(pos + 14, 40);
  for (const auto* out : {&a.out, &a.err, &pair.out, &list.out})
    EXPECT_EQ(out->find(secret), std::string::npos);
}

TEST_F(KeysCli, BadInputSaysWhatToDo) {
  auto shortKey = ferryRun({"pair", "--dir", dir_.string(), "--peer-key", "short"});
  EXPECT_EQ(shortKey.exit_code, 2);
  EXPECT_EQ(
      shortKey.err,
      "ferry: --peer-key: key has 5 characters, not 40 — copy the whole Z85 key printed by 'ferry keygen' on "
      "the peer\n");
  auto noKey = ferryRun({"pair", "--dir", dir_.string()});
  EXPECT_EQ(noKey.exit_code, 2);
  EXPECT_EQ(noKey.err,
            "ferry: ferry pair needs --peer-key KEY — the Z85 key 'ferry keygen' printed on the peer\n");
  auto gen = ferryRun({"keygen", "--dir", dir_.string()});
  ASSERT_EQ(gen.exit_code, 0);
  auto again = ferryRun({"keygen", "--dir", dir_.string()});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.err.find("a key pair already exists in " + dir_.string() + " — keep it"), std::string::npos)
      << again.err;
  auto badName =
      ferryRun({"pair", "--dir", dir_.string(), "--peer-key", std::string(40, 'a'), "--name", "../x"});
  EXPECT_EQ(badName.exit_code, 2);
  EXPECT_EQ(badName.err, "ferry: peer name '../x' is not valid — use 1–64 characters of [A-Za-z0-9._-]\n");
}

}  // namespace
