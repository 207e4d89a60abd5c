// Parsers for what criu, podman, runc, conmon and /proc print. Pure functions, so the
// unit tests drive them with recorded outputs. Odd output gives an Error that quotes it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ferry/base/error.h"
#include "ferry/checkpoint/host_check.h"

namespace ferry::checkpoint {

// "4.2.1", "6.18.44-fc-v769", "1.1.15+ds1" → 4.2.1 / 6.18.44 / 1.1.15.
Result<Version> parseVersion(std::string_view text);

// `criu --version` ("Version: 4.2.1\nGitID: ...").
Result<Version> parseCriuVersion(std::string_view out);
// "<tool> version X" on some line: podman, runc, crun, conmon.
Result<Version> parseToolVersion(const std::string& tool, std::string_view out);

// `criu check` / `criu check --all`: exit code, stdout and stderr.
struct CriuCheckParse {
  bool passed = false;
  std::string summary;
  std::vector<std::string> lines;  // warnings and errors, without CRIU's "Warn  (file:line): " prefix
};
CriuCheckParse parseCriuCheck(int exit_code, std::string_view out, std::string_view err);

// `criu check --feature NAME`.
FeatureProbe parseCriuFeature(const std::string& name, int exit_code, std::string_view out,
                              std::string_view err);

// Strips CRIU's log prefix: "Warn  (criu/cr-check.c:824): Dirty ..." → "Dirty ...".
std::string stripCriuPrefix(std::string_view line);

CgroupMode parseCgroupMode(std::string_view proc_mounts);
CpuInfo parseCpuInfo(std::string_view proc_cpuinfo);
// CapEff from /proc/self/status.
Result<std::uint64_t> parseCapEff(std::string_view proc_status);
inline constexpr int kCapSysResource = 24;

// What the deep check's verification script prints: "socket=ok lock=ok user=ok".
struct CanaryState {
  bool socket = false;
  bool lock = false;
  bool user = false;
  [[nodiscard]] bool all() const { return socket && lock && user; }
};
CanaryState parseCanaryState(std::string_view out);

// Turns the error text of a failed podman checkpoint/restore (and CRIU's log) into
// words that name what broke; empty when nothing known matches.
std::string diagnoseCriuFailure(std::string_view text);

// `ldd PROGRAM`: the shared libraries ("x => /path") and the program loader ("/lib64/ld-...").
struct LddOutput {
  std::vector<std::string> libraries;
  std::string loader;
};
LddOutput parseLddOutput(std::string_view out);

std::string base64Encode(std::string_view data);
Result<std::string> base64Decode(std::string_view text);

}  // namespace ferry::checkpoint
