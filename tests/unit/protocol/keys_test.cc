#include "ferry/protocol/keys.h"

#include <sys/stat.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ferry::protocol {
namespace {

namespace fs = std::filesystem;

class KeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ferry-keys-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(KeysTest, GeneratedPairIsZ85AndRoundTripsThroughFiles) {
  auto keys = generateKeyPair();
  ASSERT_TRUE(keys.ok()) << keys.error().message();
  EXPECT_TRUE(validateZ85Key(keys->publicKey).ok());
  EXPECT_TRUE(validateZ85Key(keys->secretKey).ok());
  EXPECT_NE(keys->publicKey, keys->secretKey);
  ASSERT_TRUE(writeKeyPair(dir_, *keys).ok());

  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "node.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = loadKeyPair(dir_);
  ASSERT_TRUE(loaded.ok()) << loaded.error().message();
  EXPECT_EQ(loaded->publicKey, keys->publicKey);
  EXPECT_EQ(loaded->secretKey, keys->secretKey);

  // The public file holds the public key and nothing secret.
  std::ifstream pub(dir_ / "node.pub");
  std::string text((std::istreambuf_iterator<char>(pub)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find(keys->publicKey), std::string::npos);
  EXPECT_EQ(text.find(keys->secretKey), std::string::npos);
}

TEST_F(KeysTest, RefusesToOverwriteAnExistingPair) {
  auto a = generateKeyPair();
  auto b = generateKeyPair();
  ASSERT_TRUE(writeKeyPair(dir_, *a).ok());
  Status again = writeKeyPair(dir_, *b);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().hint.find("--force"), std::string::npos);
  ASSERT_TRUE(writeKeyPair(dir_, *b, /*overwrite=*/true).ok());
  EXPECT_EQ(loadKeyPair(dir_)->publicKey, b->publicKey);
}

TEST_F(KeysTest, RefusesASecretFileOthersCanRead) {
  auto keys = generateKeyPair();
  ASSERT_TRUE(writeKeyPair(dir_, *keys).ok());
  fs::permissions(dir_ / "node.key", fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  auto loaded = loadKeyPair(dir_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().hint.find("chmod 600"), std::string::npos);
}

TEST_F(KeysTest, MissingPairSaysToRunKeygen) {
  auto loaded = loadKeyPair(dir_);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.error().hint.find("ferry keygen"), std::string::npos);
}

TEST_F(KeysTest, PeersArePairedByName) {
  auto a = generateKeyPair();
  auto b = generateKeyPair();
  ASSERT_TRUE(addPeerKey(dir_, {"b", a->publicKey}).ok());
  ASSERT_TRUE(addPeerKey(dir_, {"a-2.lab", b->publicKey}).ok());
  auto peers = loadPeerKeys(dir_);
  ASSERT_TRUE(peers.ok());
  ASSERT_EQ(peers->size(), 2u);
  EXPECT_EQ((*peers)[0].name, "a-2.lab");
  EXPECT_EQ((*peers)[1].publicKey, a->publicKey);

  EXPECT_FALSE(addPeerKey(dir_, {"../evil", a->publicKey}).ok());
  EXPECT_FALSE(addPeerKey(dir_, {"", a->publicKey}).ok());
  EXPECT_FALSE(addPeerKey(dir_, {"ok", "short"}).ok());
}

TEST(Keys, Z85Validation) {
  EXPECT_FALSE(validateZ85Key("").ok());
  EXPECT_FALSE(validateZ85Key(std::string(39, 'a')).ok());
  EXPECT_FALSE(validateZ85Key(std::string(40, '"')).ok());  // '"' is not in the Z85 alphabet
  EXPECT_TRUE(validateZ85Key(std::string(40, 'a')).ok());
}

TEST(Keys, FingerprintIsShortStableAndDistinct) {
  auto a = generateKeyPair();
  auto b = generateKeyPair();
  const std::string fa = fingerprint(a->publicKey);
  EXPECT_EQ(fa.size(), 16u);
  EXPECT_EQ(fa, fingerprint(a->publicKey));
  EXPECT_NE(fa, fingerprint(b->publicKey));
  EXPECT_EQ(fa.find(a->publicKey.substr(0, 8)), std::string::npos);
  EXPECT_EQ(fingerprint("nonsense"), "invalid-key");
}

}  // namespace
}  // namespace ferry::protocol
