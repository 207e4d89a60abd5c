#include "ferry/checkpoint/check_parsers.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <sstream>

namespace ferry::checkpoint {
namespace {

std::vector<std::string_view> splitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    auto nl = text.find('\n');
    auto line = text.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    lines.push_back(line);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return lines;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())) != 0) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.remove_suffix(1);
  return s;
}

// First line of a text, shortened, for error messages that quote odd output.
std::string quote(std::string_view text) {
  auto lines = splitLines(text);
  std::string first;
  for (auto l : lines) {
    if (!trim(l).empty()) {
      first = std::string(trim(l));
      break;
    }
  }
  if (first.empty()) return "(no output)";
  if (first.size() > 120) first = first.substr(0, 117) + "...";
  return "'" + first + "'";
}

bool startsWith(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

bool isCriuLogLine(std::string_view line) {
  return startsWith(line, "Warn ") || startsWith(line, "Error ") || startsWith(line, "Warn(") ||
         startsWith(line, "Error(");
}

}  // namespace

bool Version::atLeast(int ma, int mi, int pa) const {
  if (major != ma) return major > ma;
  if (minor != mi) return minor > mi;
  return patch >= pa;
}

Result<Version> parseVersion(std::string_view text) {
  auto t = trim(text);
  if (!t.empty() && (t.front() == 'v' || t.front() == 'V')) t.remove_prefix(1);
  std::array<int, 3> parts{0, 0, 0};
  std::size_t i = 0;
  int n = 0;
  for (; n < 3; ++n) {
    if (i >= t.size() || std::isdigit(static_cast<unsigned char>(t[i])) == 0) break;
    long v = 0;
    while (i < t.size() && std::isdigit(static_cast<unsigned char>(t[i])) != 0) {
      v = v * 10 + (t[i] - '0');
      if (v > 1000000) return makeError("version number too large in " + quote(text));
      ++i;
    }
    parts[static_cast<std::size_t>(n)] = static_cast<int>(v);
    if (i < t.size() && t[i] == '.') {
      ++i;
    } else {
      ++n;
      break;
    }
  }
  if (n < 2) return makeError("not a version: " + quote(text), "expected MAJOR.MINOR[.PATCH]");
  Version v;
  v.major = parts[0];
  v.minor = parts[1];
  v.patch = parts[2];
  // The printed text up to the first space.
  auto sp = t.find_first_of(" \t");
  v.text = std::string(t.substr(0, sp));
  return v;
}

Result<Version> parseCriuVersion(std::string_view out) {
  for (auto line : splitLines(out)) {
    auto l = trim(line);
    if (startsWith(l, "Version:")) return parseVersion(l.substr(8));
  }
  return makeError("criu --version printed no 'Version:' line: " + quote(out),
                   "is this really CRIU? install criu ≥ 4.2 (Debian unstable)");
}

Result<Version> parseToolVersion(const std::string& tool, std::string_view out) {
  const std::string key = tool + " version ";
  for (auto line : splitLines(out)) {
    auto l = trim(line);
    auto pos = l.find(key);
    if (pos == std::string_view::npos) continue;
    return parseVersion(l.substr(pos + key.size()));
  }
  return makeError(tool + " --version printed no '" + key + "X' line: " + quote(out));
}

std::string stripCriuPrefix(std::string_view line) {
  auto l = trim(line);
  if (isCriuLogLine(l)) {
    auto close = l.find("): ");
    if (close != std::string_view::npos) return std::string(trim(l.substr(close + 3)));
    auto colon = l.find(": ");
    if (colon != std::string_view::npos) return std::string(trim(l.substr(colon + 2)));
  }
  return std::string(l);
}

CriuCheckParse parseCriuCheck(int exit_code, std::string_view out, std::string_view err) {
  CriuCheckParse p;
  std::string all = std::string(out) + "\n" + std::string(err);
  bool good = false, maybe = false, bad = false;
  for (auto line : splitLines(all)) {
    auto l = trim(line);
    if (l.empty()) continue;
    if (l == "Looks good.") {
      good = true;
    } else if (startsWith(l, "Looks good but")) {
      maybe = true;
    } else if (l.find("Does not look good.") != std::string_view::npos) {
      bad = true;
    } else if (l == "which, depending on your process tree, may cause" || l == "dump or restore failure.") {
      continue;  // the rest of CRIU's "maybe" sentence
    } else if (isCriuLogLine(l)) {
      p.lines.push_back(stripCriuPrefix(l));
    }
  }
  if (bad) {
    p.summary = "Does not look good.";
  } else if (maybe) {
    p.summary = "Looks good but some kernel features are missing";
  } else if (good) {
    p.summary = "Looks good.";
  } else {
    p.summary = "no verdict from criu check (exit " + std::to_string(exit_code) + "): " + quote(all);
  }
  p.passed = good && !bad && !maybe && exit_code == 0;
  return p;
}

FeatureProbe parseCriuFeature(const std::string& name, int exit_code, std::string_view out,
                              std::string_view err) {
  FeatureProbe f;
  f.name = name;
  const std::string yes = name + " is supported";
  std::string all = std::string(out) + "\n" + std::string(err);
  bool said_yes = false;
  std::string last_msg;
  for (auto line : splitLines(all)) {
    auto l = trim(line);
    if (l == yes) said_yes = true;
    auto msg = stripCriuPrefix(l);
    if (isCriuLogLine(l)) last_msg = msg;
    if (startsWith(msg, "Unknown feature")) last_msg = "this CRIU does not know the feature '" + name + "'";
  }
  f.supported = said_yes && exit_code == 0;
  if (!f.supported) {
    f.detail = !last_msg.empty() ? last_msg
                                 : "criu check --feature " + name + " exited " + std::to_string(exit_code);
  }
  return f;
}

CgroupMode parseCgroupMode(std::string_view proc_mounts) {
  bool v2_root = false, v2_elsewhere = false, v1 = false;
  for (auto line : splitLines(proc_mounts)) {
    std::istringstream in{std::string(line)};
    std::string dev, dir, type;
    if (!(in >> dev >> dir >> type)) continue;
    if (type == "cgroup2") {
      if (dir == "/sys/fs/cgroup") {
        v2_root = true;
      } else if (dir.rfind("/sys/fs/cgroup/", 0) == 0) {
        v2_elsewhere = true;
      }
    } else if (type == "cgroup" && dir.rfind("/sys/fs/cgroup/", 0) == 0) {
      v1 = true;
    }
  }
  if (v2_root && !v1) return CgroupMode::kV2;
  if (v1 && (v2_elsewhere || v2_root)) return CgroupMode::kHybrid;
  if (v1) return CgroupMode::kV1;
  return CgroupMode::kUnknown;
}

CpuInfo parseCpuInfo(std::string_view proc_cpuinfo) {
  CpuInfo c;
  bool have_flags = false;
  for (auto line : splitLines(proc_cpuinfo)) {
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    auto key = trim(line.substr(0, colon));
    auto val = trim(line.substr(colon + 1));
    if (key == "processor") {
      ++c.count;
    } else if (key == "vendor_id" && c.vendor.empty()) {
      c.vendor = std::string(val);
    } else if ((key == "model name" || key == "Model") && c.model.empty()) {
      c.model = std::string(val);
    } else if ((key == "flags" || key == "Features") && !have_flags) {
      have_flags = true;
      std::istringstream in{std::string(val)};
      std::string flag;
      while (in >> flag) c.flags.push_back(flag);
    }
  }
  std::sort(c.flags.begin(), c.flags.end());
  c.flags.erase(std::unique(c.flags.begin(), c.flags.end()), c.flags.end());
  return c;
}

Result<std::uint64_t> parseCapEff(std::string_view proc_status) {
  for (auto line : splitLines(proc_status)) {
    if (!startsWith(line, "CapEff:")) continue;
    auto hex = trim(line.substr(7));
    if (hex.empty() || hex.size() > 16)
      return makeError("odd CapEff line in /proc/self/status: " + quote(line));
    std::uint64_t v = 0;
    for (char ch : hex) {
      int d = 0;
      if (ch >= '0' && ch <= '9') {
        d = ch - '0';
      } else if (ch >= 'a' && ch <= 'f') {
        d = ch - 'a' + 10;
      } else if (ch >= 'A' && ch <= 'F') {
        d = ch - 'A' + 10;
      } else {
        return makeError("odd CapEff line in /proc/self/status: " + quote(line));
      }
      v = (v << 4U) | static_cast<std::uint64_t>(d);
    }
    return v;
  }
  return makeError("no CapEff line in /proc/self/status");
}

CanaryState parseCanaryState(std::string_view out) {
  CanaryState s;
  std::istringstream in{std::string(out)};
  std::string tok;
  while (in >> tok) {
    if (tok == "socket=ok") s.socket = true;
    if (tok == "lock=ok") s.lock = true;
    if (tok == "user=ok") s.user = true;
  }
  return s;
}

std::string diagnoseCriuFailure(std::string_view text) {
  struct Known {
    std::string_view needle;
    std::string_view words;
  };
  static constexpr std::array<Known, 10> kKnown{{
      {"Can't get 1:16 opt",
       "the TCP socket: this CRIU cannot read socket options on kernels ≥ 6.16 (fixed in CRIU 4.2) — install "
       "criu ≥ 4.2 (Debian unstable)"},
      {"Can't get rlimit",
       "the non-root process: CRIU may not read its rlimits without CAP_SYS_RESOURCE — give the capability "
       "(lab: use ferry-lab-prlimit-shim)"},
      {"In-flight connection",
       "the listening TCP socket: a connection in its backlog — add skip-in-flight to /etc/criu/runc.conf"},
      {"--file-locks", "the file lock: CRIU needs --file-locks on checkpoint and restore"},
      {"file-locks", "the file lock: CRIU needs --file-locks on checkpoint and restore"},
      {"io_uring", "an io_uring instance: CRIU cannot dump io_uring"},
      {"Unexpected rt vDSO area bounds",
       "CRIU itself: this CRIU does not know the kernel's vDSO layout — install criu ≥ 4.2 (Debian "
       "unstable)"},
      {"No parent found for mountpoint",
       "CRIU's mount tree: the root is not a mount-namespace root (chroot?) — run in a pivot_root'ed "
       "namespace"},
      {"image not known", "the image: the restoring host does not have the same image ID"},
      {"Dirty tracking is OFF", "memory tracking: the kernel lacks soft-dirty (pre-dump impossible)"},
  }};
  for (const auto& k : kKnown) {
    if (text.find(k.needle) != std::string_view::npos) return std::string(k.words);
  }
  return {};
}

LddOutput parseLddOutput(std::string_view out) {
  LddOutput l;
  for (auto line : splitLines(out)) {
    auto t = trim(line);
    auto arrow = t.find("=> ");
    if (arrow != std::string_view::npos) {
      auto rest = t.substr(arrow + 3);
      auto path = rest.substr(0, rest.find(' '));
      if (startsWith(path, "/")) l.libraries.emplace_back(path);
    } else if (startsWith(t, "/")) {
      l.loader = std::string(t.substr(0, t.find(' ')));
    }
  }
  return l;
}

std::string base64Encode(std::string_view data) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    auto n = (static_cast<unsigned>(static_cast<unsigned char>(data[i])) << 16U) |
             (static_cast<unsigned>(static_cast<unsigned char>(data[i + 1])) << 8U) |
             static_cast<unsigned>(static_cast<unsigned char>(data[i + 2]));
    out += kAlphabet[(n >> 18U) & 63U];
    out += kAlphabet[(n >> 12U) & 63U];
    out += kAlphabet[(n >> 6U) & 63U];
    out += kAlphabet[n & 63U];
  }
  if (i < data.size()) {
    auto n = static_cast<unsigned>(static_cast<unsigned char>(data[i])) << 16U;
    if (i + 1 < data.size()) n |= static_cast<unsigned>(static_cast<unsigned char>(data[i + 1])) << 8U;
    out += kAlphabet[(n >> 18U) & 63U];
    out += kAlphabet[(n >> 12U) & 63U];
    out += i + 1 < data.size() ? kAlphabet[(n >> 6U) & 63U] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned acc = 0;
  int bits = 0;
  bool ended = false;
  for (char c : text) {
    if (c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    if (c == '=') {
      ended = true;
      continue;
    }
    int v = value(c);
    if (v < 0 || ended)
      return makeError("not base64 data (bad character)", "pass the output of --cpuinfo-dump");
    acc = (acc << 6U) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> static_cast<unsigned>(bits)) & 0xFFU);
    }
  }
  return out;
}

}  // namespace ferry::checkpoint
