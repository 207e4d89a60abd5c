// `ferry keygen` and `ferry pair`: this node's CURVE key pair and the peers it
// trusts (library: protocol/keys.h). Secret keys are never printed.
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "ferry/protocol/keys.h"

namespace ferry::cli {
namespace {

namespace proto = ferry::protocol;

struct KeygenFlags {
  std::string dir = proto::kDefaultKeyDir;
  bool force = false;
  std::string output = "text";
};

struct PairFlags {
  std::string dir = proto::kDefaultKeyDir;
  std::string peerKey;
  std::string name = "peer";
  bool list = false;
  std::string output = "text";
};

int runKeygen(const KeygenFlags& f) {
  auto keys = proto::generateKeyPair();
  if (!keys.ok()) return fail(keys.error().message());
  Status written = proto::writeKeyPair(f.dir, *keys, f.force);
  if (!written.ok()) return fail(written.error().message());
  const std::string fp = proto::fingerprint(keys->publicKey);
  if (f.output == "json") {
    std::cout << nlohmann::json{{"public_key", keys->publicKey},
                                {"fingerprint", fp},
                                {"key_file", f.dir + "/node.key"},
                                {"public_file", f.dir + "/node.pub"}}
                     .dump(2)
              << "\n";
    return kExitOk;
  }
  std::cout << "public key:  " << keys->publicKey << "\n"
            << "fingerprint: " << fp << "\n"
            << "written:     " << f.dir << "/node.key (secret, mode 0600), " << f.dir << "/node.pub\n"
            << "next:        on the peer, run: ferry pair --peer-key '" << keys->publicKey
            << "' --name <this host's name>\n";
  return kExitOk;
}

int runPair(const PairFlags& f) {
  if (f.list) {
    auto peers = proto::loadPeerKeys(f.dir);
    if (!peers.ok()) return fail(peers.error().message());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& p : *peers) {
      if (f.output == "json") {
        out.push_back({{"name", p.name},
                       {"public_key", p.publicKey},
                       {"fingerprint", proto::fingerprint(p.publicKey)}});
      } else {
        std::cout << p.name << "  " << proto::fingerprint(p.publicKey) << "  " << p.publicKey << "\n";
      }
    }
    if (f.output == "json") std::cout << out.dump(2) << "\n";
    if (f.output != "json" && peers->empty()) std::cout << "no paired peers in " << f.dir << "/peers\n";
    return kExitOk;
  }
  if (f.peerKey.empty())
    return fail("ferry pair needs --peer-key KEY — the Z85 key 'ferry keygen' printed on the peer",
                kExitUsage);
  Status valid = proto::validateZ85Key(f.peerKey);
  if (!valid.ok()) return fail("--peer-key: " + valid.error().message(), kExitUsage);
  Status added = proto::addPeerKey(f.dir, {f.name, f.peerKey});
  if (!added.ok()) {
    const bool usage = added.error().what.find("peer name") != std::string::npos;
    return fail(added.error().message(), usage ? kExitUsage : kExitFailure);
  }
  auto own = proto::loadKeyPair(f.dir);
  const std::string fp = proto::fingerprint(f.peerKey);
  if (f.output == "json") {
    nlohmann::json out{{"name", f.name}, {"fingerprint", fp}, {"file", f.dir + "/peers/" + f.name + ".pub"}};
    if (own.ok()) out["own_public_key"] = own->publicKey;
    std::cout << out.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << "paired with '" << f.name << "' [" << fp << "] (" << f.dir << "/peers/" << f.name << ".pub)\n";
  if (own.ok()) {
    std::cout << "this node's public key (pair it on the peer too): " << own->publicKey << "\n";
  } else {
    std::cout << "this node has no key pair yet: run 'ferry keygen --dir " << f.dir << "'\n";
  }
  return kExitOk;
}

}  // namespace

void addKeysCommands(CLI::App& app, Cli& cli) {
  auto kf = std::make_shared<KeygenFlags>();
  auto* keygen = app.add_subcommand("keygen", "create this node's CURVE key pair (node.key 0600, node.pub)");
  keygen->add_option("--dir", kf->dir, "key directory")->capture_default_str();
  keygen->add_flag("--force", kf->force, "replace an existing key pair (peers must pair again)");
  keygen->add_option("--output", kf->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  keygen->callback([&cli, kf] { cli.action = [kf] { return runKeygen(*kf); }; });

  auto pf = std::make_shared<PairFlags>();
  auto* pair = app.add_subcommand("pair", "trust a peer's public key (the listener admits only paired keys)");
  pair->add_option("--peer-key", pf->peerKey, "the peer's public key, as printed by 'ferry keygen' there");
  pair->add_option("--name", pf->name, "a name for the peer ([A-Za-z0-9._-])")->capture_default_str();
  pair->add_option("--dir", pf->dir, "key directory")->capture_default_str();
  pair->add_flag("--list", pf->list, "list the paired peers");
  pair->add_option("--output", pf->output, "text or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  pair->callback([&cli, pf] { cli.action = [pf] { return runPair(*pf); }; });
}

}  // namespace ferry::cli
