#include "ferry/protocol/keys.h"

#include <sys/stat.h>
#include <xxhash.h>
#include <zmq.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "ferry/base/files.h"

namespace ferry::protocol {

namespace fs = std::filesystem;

namespace {

constexpr const char* kKeyFile = "node.key";
constexpr const char* kPubFile = "node.pub";
constexpr const char* kPeersDir = "peers";

bool z85Decode(std::string_view z85, std::array<unsigned char, 32>& out) {
  if (z85.size() != 40) return false;
  std::string copy(z85);
  return zmq_z85_decode(out.data(), copy.c_str()) != nullptr;
}

// Finds `name = "value"` in a small key file.
std::string field(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find_first_not_of(" \t");
    if (pos == std::string::npos || line[pos] == '#') continue;
    if (line.compare(pos, name.size(), name) != 0) continue;
    auto q1 = line.find('"', pos + name.size());
    auto q2 = q1 == std::string::npos ? q1 : line.find('"', q1 + 1);
    if (q2 == std::string::npos) continue;
    return line.substr(q1 + 1, q2 - q1 - 1);
  }
  return {};
}

Status ensureDir(const fs::path& dir, fs::perms perms) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      return makeError("cannot create " + dir.string() + ": " + ec.message(), "run as root or pass --dir");
    fs::permissions(dir, perms, ec);
  }
  return okStatus();
}

Status validName(const std::string& name) {
  bool ok = !name.empty() && name.size() <= 64 && name[0] != '.' &&
            std::all_of(name.begin(), name.end(), [](char c) {
              return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                     c == '_' || c == '-';
            });
  if (!ok) return makeError("peer name '" + name + "' is not valid", "use 1–64 characters of [A-Za-z0-9._-]");
  return okStatus();
}

}  // namespace

Result<KeyPair> generateKeyPair() {
  std::array<char, 41> pub{};
  std::array<char, 41> sec{};
  if (zmq_curve_keypair(pub.data(), sec.data()) != 0) {
    return makeError(std::string("cannot generate a CURVE key pair: ") + zmq_strerror(zmq_errno()),
                     "libzmq must be built with CURVE (libsodium)");
  }
  KeyPair keys{std::string(pub.data(), 40), std::string(sec.data(), 40)};
  sec.fill(0);
  return keys;
}

Status validateZ85Key(std::string_view key) {
  std::array<unsigned char, 32> raw{};
  if (key.size() != 40) {
    return makeError("key has " + std::to_string(key.size()) + " characters, not 40",
                     "copy the whole Z85 key printed by 'ferry keygen' on the peer");
  }
  if (!z85Decode(key, raw))
    return makeError("key is not valid Z85 text", "copy the key exactly as printed by 'ferry keygen'");
  return okStatus();
}

std::string fingerprintRaw(const unsigned char* key32) {
  XXH64_hash_t h = XXH3_64bits(key32, 32);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

std::string fingerprint(std::string_view publicKeyZ85) {
  std::array<unsigned char, 32> raw{};
  if (!z85Decode(publicKeyZ85, raw)) return "invalid-key";
  return fingerprintRaw(raw.data());
}

Status writeKeyPair(const fs::path& dir, const KeyPair& keys, bool overwrite) {
  FERRY_TRY(validateZ85Key(keys.publicKey));
  FERRY_TRY(validateZ85Key(keys.secretKey));
  FERRY_TRY(ensureDir(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec));
  std::error_code ec;
  if (!overwrite && fs::exists(dir / kKeyFile, ec)) {
    return makeError("a key pair already exists in " + dir.string(),
                     "keep it (peers are paired with it) or pass --force to replace it and pair again");
  }
  FERRY_TRY(writeFileAtomic(dir / kKeyFile,
                            "# ferry CurveZMQ key pair. Secret: keep this file mode 0600.\npublic-key = \"" +
                                keys.publicKey + "\"\nsecret-key = \"" + keys.secretKey + "\"\n",
                            0600));
  return writeFileAtomic(
      dir / kPubFile,
      "# ferry node public key (give it to the peer: ferry pair --peer-key ...)\npublic-key = \"" +
          keys.publicKey + "\"\n",
      0644);
}

Result<KeyPair> loadKeyPair(const fs::path& dir) {
  const fs::path file = dir / kKeyFile;
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    return makeError("cannot read the key pair " + file.string() + ": " + std::strerror(errno),
                     "run 'ferry keygen --dir " + dir.string() + "' first");
  }
  if ((st.st_mode & 077) != 0) {
    return makeError("secret key file " + file.string() + " is readable by group or others",
                     "chmod 600 " + file.string());
  }
  auto text = readFile(file);
  if (!text.ok()) return text.error();
  KeyPair keys{field(*text, "public-key"), field(*text, "secret-key")};
  Status pubOk = validateZ85Key(keys.publicKey);
  Status secOk = validateZ85Key(keys.secretKey);
  if (!pubOk.ok() || !secOk.ok()) {
    return makeError("key file " + file.string() + " is damaged",
                     "regenerate with 'ferry keygen --force' and pair again");
  }
  std::array<char, 41> derived{};
  if (zmq_curve_public(derived.data(), keys.secretKey.c_str()) != 0 || keys.publicKey != derived.data()) {
    return makeError("key file " + file.string() + ": the public key does not match the secret key",
                     "regenerate with 'ferry keygen --force' and pair again");
  }
  return keys;
}

Status addPeerKey(const fs::path& dir, const PeerKey& peer) {
  FERRY_TRY(validName(peer.name));
  FERRY_TRY(validateZ85Key(peer.publicKey));
  FERRY_TRY(ensureDir(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec));
  FERRY_TRY(ensureDir(dir / kPeersDir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                           fs::perms::others_read | fs::perms::others_exec));
  return writeFileAtomic(dir / kPeersDir / (peer.name + ".pub"),
                         "# ferry peer public key\npublic-key = \"" + peer.publicKey + "\"\n", 0644);
}

Result<std::vector<PeerKey>> loadPeerKeys(const fs::path& dir) {
  std::vector<PeerKey> peers;
  std::error_code ec;
  const fs::path peersDir = dir / kPeersDir;
  if (!fs::exists(peersDir, ec)) return peers;
  for (const auto& entry : fs::directory_iterator(peersDir, ec)) {
    if (entry.path().extension() != ".pub") continue;
    auto text = readFile(entry.path());
    if (!text.ok()) return text.error();
    PeerKey peer{entry.path().stem().string(), field(*text, "public-key")};
    Status valid = validateZ85Key(peer.publicKey);
    if (!valid.ok()) {
      return makeError("peer key file " + entry.path().string() + ": " + valid.error().what,
                       "remove it or pair again with 'ferry pair --peer-key KEY --name " + peer.name + "'");
    }
    peers.push_back(std::move(peer));
  }
  if (ec) return makeError("cannot list " + peersDir.string() + ": " + ec.message());
  std::sort(peers.begin(), peers.end(), [](const PeerKey& a, const PeerKey& b) { return a.name < b.name; });
  return peers;
}

}  // namespace ferry::protocol
