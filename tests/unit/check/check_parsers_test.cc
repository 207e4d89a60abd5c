#include "ferry/checkpoint/check_parsers.h"

#include <gtest/gtest.h>

#include "recorded.h"

namespace ferry::checkpoint {
namespace {

using namespace testing;  // NOLINT(google-build-using-namespace)

struct VersionCase {
  std::string text;
  bool ok;
  int major, minor, patch;
  std::string shown;
};

class CheckVersionTest : public ::testing::TestWithParam<VersionCase> {};

TEST_P(CheckVersionTest, Parses) {
  const auto& c = GetParam();
  auto v = parseVersion(c.text);
  ASSERT_EQ(v.ok(), c.ok) << c.text;
  if (!c.ok) return;
  EXPECT_EQ(v->major, c.major);
  EXPECT_EQ(v->minor, c.minor);
  EXPECT_EQ(v->patch, c.patch);
  EXPECT_EQ(v->text, c.shown);
}

INSTANTIATE_TEST_SUITE_P(
    Table, CheckVersionTest,
    ::testing::Values(VersionCase{"4.2.1", true, 4, 2, 1, "4.2.1"}, VersionCase{"4.2", true, 4, 2, 0, "4.2"},
                      VersionCase{"6.18.44-fc-v769", true, 6, 18, 44, "6.18.44-fc-v769"},
                      VersionCase{"1.1.15+ds1", true, 1, 1, 15, "1.1.15+ds1"},
                      VersionCase{"v2.1.12", true, 2, 1, 12, "2.1.12"},
                      VersionCase{"  5.4.2\n", true, 5, 4, 2, "5.4.2"}, VersionCase{"4", false, 0, 0, 0, ""},
                      VersionCase{"", false, 0, 0, 0, ""}, VersionCase{"unknown", false, 0, 0, 0, ""}));

TEST(CheckVersionCompare, AtLeast) {
  auto v = parseVersion("4.2.1").value();
  EXPECT_TRUE(v.atLeast(4, 2));
  EXPECT_TRUE(v.atLeast(4, 2, 1));
  EXPECT_FALSE(v.atLeast(4, 2, 2));
  EXPECT_FALSE(v.atLeast(5, 0));
  EXPECT_TRUE(v.atLeast(3, 99));
  EXPECT_FALSE(parseVersion("4.1.1").value().atLeast(4, 2));
}

struct ToolCase {
  std::string tool;
  std::string out;
  bool ok;
  std::string version;
};

class CheckToolVersionTest : public ::testing::TestWithParam<ToolCase> {};

TEST_P(CheckToolVersionTest, Parses) {
  const auto& c = GetParam();
  auto v = c.tool == "criu" ? parseCriuVersion(c.out) : parseToolVersion(c.tool, c.out);
  ASSERT_EQ(v.ok(), c.ok) << c.out;
  if (c.ok) {
    EXPECT_EQ(v->text, c.version);
  } else {
    EXPECT_FALSE(v.error().what.empty());
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, CheckToolVersionTest,
    ::testing::Values(ToolCase{"criu", kCriuVersion421, true, "4.2.1"},
                      ToolCase{"criu", kCriuVersionGit, true, "4.2"},
                      ToolCase{"criu", "criu: command not understood\n", false, ""},
                      ToolCase{"criu", "", false, ""}, ToolCase{"podman", kPodmanVersion, true, "5.4.2"},
                      ToolCase{"runc", kRuncVersion, true, "1.1.15+ds1"},
                      ToolCase{"conmon", kConmonVersion, true, "2.1.12"},
                      ToolCase{"crun", "crun version 1.21\ncommit: abc\n+SYSTEMD +SELINUX\n", true, "1.21"},
                      ToolCase{"podman", "Error: something odd\n", false, ""},
                      ToolCase{"podman", "podman version banana\n", false, ""}));

TEST(CheckCriuVersionError, QuotesOddOutputAndSaysWhatToInstall) {
  auto v = parseCriuVersion("hello world\n");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().what.find("'hello world'"), std::string::npos);
  EXPECT_NE(v.error().hint.find("4.2"), std::string::npos);
}

struct CheckCase {
  std::string name;
  int exit_code;
  std::string out, err;
  bool passed;
  std::string summary;
  std::vector<std::string> lines;
};

class CriuCheckTest : public ::testing::TestWithParam<CheckCase> {};

TEST_P(CriuCheckTest, Parses) {
  const auto& c = GetParam();
  auto p = parseCriuCheck(c.exit_code, c.out, c.err);
  EXPECT_EQ(p.passed, c.passed);
  EXPECT_EQ(p.summary.rfind(c.summary, 0), 0U) << p.summary;
  EXPECT_EQ(p.lines, c.lines);
}

INSTANTIATE_TEST_SUITE_P(
    Table, CriuCheckTest,
    ::testing::Values(CheckCase{"good", 0, kCheckGood, "", true, "Looks good.", {}},
                      CheckCase{"all_without_soft_dirty",
                                0,
                                kCheckAllOut,
                                kCheckAllErr,
                                false,
                                "Looks good but some kernel features are missing",
                                {"Dirty tracking is OFF. Memory snapshot will not work."}},
                      CheckCase{"criu317_vdso",
                                1,
                                "",
                                kCriu317VdsoErr,
                                false,
                                "no verdict from criu check (exit 1)",
                                {"vdso: Unexpected rt vDSO area bounds",
                                 "kerndat_vdso_fill_symtable failed when initializing kerndat."}},
                      CheckCase{"bad",
                                1,
                                "",
                                "Warn  (criu/cr-check.c:1632): Does not look good.\n",
                                false,
                                "Does not look good.",
                                {}},
                      CheckCase{"good_but_nonzero_exit", 1, kCheckGood, "", false, "Looks good.", {}},
                      CheckCase{
                          "empty", 0, "", "", false, "no verdict from criu check (exit 0): (no output)", {}}),
    [](const ::testing::TestParamInfo<CheckCase>& i) { return i.param.name; });

struct FeatureCase {
  std::string name;
  int exit_code;
  std::string out, err;
  bool supported;
  std::string detail;
};

class CriuFeatureTest : public ::testing::TestWithParam<FeatureCase> {};

TEST_P(CriuFeatureTest, Parses) {
  const auto& c = GetParam();
  auto f = parseCriuFeature(c.name, c.exit_code, c.out, c.err);
  EXPECT_EQ(f.name, c.name);
  EXPECT_EQ(f.supported, c.supported);
  EXPECT_EQ(f.detail, c.detail);
}

INSTANTIATE_TEST_SUITE_P(
    Table, CriuFeatureTest,
    ::testing::Values(FeatureCase{"uffd", 0, "uffd is supported\n", "", true, ""},
                      FeatureCase{"uffd-noncoop", 0, "uffd-noncoop is supported\n", "", true, ""},
                      FeatureCase{"network_lock_nftables", 0, "network_lock_nftables is supported\n", "",
                                  true, ""},
                      FeatureCase{"mem_dirty_track", 1, "", kCheckAllErr, false,
                                  "Dirty tracking is OFF. Memory snapshot will not work."},
                      FeatureCase{"uffd", 1, "", "Error (criu/cr-check.c:1225): UFFD is not supported\n",
                                  false, "UFFD is not supported"},
                      FeatureCase{"network_lock_nftables", 1, "",
                                  "Error (criu/crtools.c:166): Unknown feature network_lock_nftables\n",
                                  false, "this CRIU does not know the feature 'network_lock_nftables'"},
                      // "is supported" of another feature does not count.
                      FeatureCase{"uffd", 0, "uffd-noncoop is supported\n", "", false,
                                  "criu check --feature uffd exited 0"},
                      FeatureCase{"uffd", 1, "", "", false, "criu check --feature uffd exited 1"}));

struct CgroupCase {
  std::string mounts;
  CgroupMode mode;
};

class CheckCgroupTest : public ::testing::TestWithParam<CgroupCase> {};

TEST_P(CheckCgroupTest, Detects) {
  EXPECT_EQ(parseCgroupMode(GetParam().mounts), GetParam().mode);
}

INSTANTIATE_TEST_SUITE_P(Table, CheckCgroupTest,
                         ::testing::Values(CgroupCase{kMountsHybrid, CgroupMode::kHybrid},
                                           CgroupCase{kMountsV2, CgroupMode::kV2},
                                           CgroupCase{kMountsV1, CgroupMode::kV1},
                                           CgroupCase{"proc /proc proc rw 0 0\n", CgroupMode::kUnknown},
                                           CgroupCase{"", CgroupMode::kUnknown}));

TEST(CheckCpuInfo, ModelFlagsAndCount) {
  auto c = parseCpuInfo(kCpuinfo);
  EXPECT_EQ(c.vendor, "GenuineIntel");
  EXPECT_EQ(c.model, "Intel(R) Xeon(R) Processor");
  EXPECT_EQ(c.count, 2);
  EXPECT_EQ(c.flags, (std::vector<std::string>{"avx", "avx2", "de", "fpu", "msr", "pse", "sse", "sse2", "tsc",
                                               "vme"}));
}

struct CapCase {
  std::string status;
  bool ok;
  bool sys_resource;
};

class CheckCapTest : public ::testing::TestWithParam<CapCase> {};

TEST_P(CheckCapTest, Parses) {
  const auto& c = GetParam();
  auto cap = parseCapEff(c.status);
  ASSERT_EQ(cap.ok(), c.ok);
  if (c.ok) {
    EXPECT_EQ(((*cap >> kCapSysResource) & 1U) != 0, c.sys_resource);
  }
}

INSTANTIATE_TEST_SUITE_P(Table, CheckCapTest,
                         ::testing::Values(CapCase{kStatusNoSysResource, true, false},
                                           CapCase{kStatusFullCaps, true, true},
                                           CapCase{"Name:\tx\n", false, false},
                                           CapCase{"CapEff:\tzz\n", false, false},
                                           CapCase{"CapEff:\t\n", false, false}));

TEST(CheckCanaryState, Tokens) {
  EXPECT_TRUE(parseCanaryState("socket=ok\nlock=ok\nuser=ok\n").all());
  auto s = parseCanaryState("socket=ok\nuser=ok\n");
  EXPECT_TRUE(s.socket);
  EXPECT_FALSE(s.lock);
  EXPECT_TRUE(s.user);
  EXPECT_FALSE(parseCanaryState("").all());
}

struct DiagCase {
  std::string text;
  std::string contains;
};

class CheckDiagnoseTest : public ::testing::TestWithParam<DiagCase> {};

TEST_P(CheckDiagnoseTest, NamesWhatBroke) {
  auto words = diagnoseCriuFailure(GetParam().text);
  if (GetParam().contains.empty()) {
    EXPECT_TRUE(words.empty()) << words;
  } else {
    EXPECT_NE(words.find(GetParam().contains), std::string::npos) << words;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, CheckDiagnoseTest,
    ::testing::Values(
        DiagCase{"Error (criu/sockets.c:548): sockets: Can't get 1:16 opt: Operation not supported",
                 "TCP socket"},
        DiagCase{"Error (criu/cr-dump.c:1030): Can't get rlimit 0: Operation not permitted",
                 "non-root process"},
        DiagCase{"Error (criu/sk-inet.c:188): inet: In-flight connection (l) for 7070", "skip-in-flight"},
        DiagCase{"Error (criu/file-lock.c:350): Some file locks are hold without option --file-locks",
                 "file lock"},
        DiagCase{"Error: something unrelated", ""}));

TEST(CheckLdd, LibrariesAndLoader) {
  auto l = parseLddOutput(
      "\tlinux-vdso.so.1 (0x00007f260ea8f000)\n"
      "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f260e886000)\n"
      "\t/lib64/ld-linux-x86-64.so.2 (0x00007f260ea91000)\n");
  EXPECT_EQ(l.libraries, std::vector<std::string>{"/lib/x86_64-linux-gnu/libc.so.6"});
  EXPECT_EQ(l.loader, "/lib64/ld-linux-x86-64.so.2");
  EXPECT_TRUE(parseLddOutput("\tnot a dynamic executable\n").loader.empty());
}

TEST(CheckBase64, RoundTrips) {
  for (std::string s : {std::string(), std::string("a"), std::string("ab"), std::string("abc"),
                        std::string("\0\xff\x10 binary", 10)}) {
    auto enc = base64Encode(s);
    EXPECT_EQ(enc.size() % 4, 0U);
    auto dec = base64Decode(enc + "\n");
    ASSERT_TRUE(dec.ok());
    EXPECT_EQ(*dec, s);
  }
  EXPECT_EQ(base64Encode("Man"), "TWFu");
  EXPECT_EQ(base64Encode("Ma"), "TWE=");
  EXPECT_FALSE(base64Decode("TW*u").ok());
}

}  // namespace
}  // namespace ferry::checkpoint
