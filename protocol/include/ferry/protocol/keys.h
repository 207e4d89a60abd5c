// CurveZMQ key pairs and the paired peers' public keys, kept as small text files:
//   <dir>/node.key          this node's public and secret key (mode 0600)
//   <dir>/node.pub          this node's public key (give it to the peer)
//   <dir>/peers/<name>.pub  one file per paired peer
// Keys are Z85 text (40 characters for 32 bytes). Secret keys are never logged.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/base/error.h"

namespace ferry::protocol {

inline constexpr const char* kDefaultKeyDir = "/etc/ferry";

struct KeyPair {
  std::string publicKey;  // Z85
  std::string secretKey;  // Z85; never print it
};

struct PeerKey {
  std::string name;
  std::string publicKey;  // Z85
};

Result<KeyPair> generateKeyPair();

// A Z85 CurveZMQ key: 40 characters of the Z85 alphabet.
Status validateZ85Key(std::string_view key);

// Short, printable identity of a public key: 16 hex digits of XXH3-64 over its 32
// raw bytes. Used in logs instead of keys.
std::string fingerprint(std::string_view publicKeyZ85);
std::string fingerprintRaw(const unsigned char* key32);

// Writes node.key (0600) and node.pub; refuses to overwrite unless `overwrite`.
Status writeKeyPair(const std::filesystem::path& dir, const KeyPair& keys, bool overwrite = false);
// Reads node.key; refuses a secret file readable by group or others.
Result<KeyPair> loadKeyPair(const std::filesystem::path& dir);

// Stores a peer's public key as peers/<name>.pub (name: [A-Za-z0-9._-], ≤ 64).
Status addPeerKey(const std::filesystem::path& dir, const PeerKey& peer);
Result<std::vector<PeerKey>> loadPeerKeys(const std::filesystem::path& dir);

}  // namespace ferry::protocol
