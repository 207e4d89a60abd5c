// Outputs recorded from (or shaped exactly like) the tools on a lab host: Debian 13,
// kernel 6.18, Podman 5.4.2, runc 1.1.15, conmon 2.1.12, CRIU 4.2.1 from sid.
#pragma once

namespace ferry::checkpoint::testing {

inline constexpr const char* kCriuVersion421 = "Version: 4.2.1\n";
inline constexpr const char* kCriuVersion411 = "Version: 4.1.1\n";
inline constexpr const char* kCriuVersionGit = "Version: 4.2\nGitID: v4.2-17-g1234abcd\n";
inline constexpr const char* kPodmanVersion = "podman version 5.4.2\n";
inline constexpr const char* kRuncVersion =
    "runc version 1.1.15+ds1\ncommit: 1.1.15+ds1-2\nspec: 1.2.0\ngo: go1.24.4\nlibseccomp: 2.6.0\n";
inline constexpr const char* kConmonVersion = "conmon version 2.1.12\ncommit: unknown\n";

inline constexpr const char* kCheckGood = "Looks good.\n";
inline constexpr const char* kCheckAllErr =
    "Warn  (criu/cr-check.c:824): Dirty tracking is OFF. Memory snapshot will not work.\n";
inline constexpr const char* kCheckAllOut =
    "Looks good but some kernel features are missing\n"
    "which, depending on your process tree, may cause\n"
    "dump or restore failure.\n";
inline constexpr const char* kCriu317VdsoErr =
    "Error (criu/vdso.c:418): vdso: Unexpected rt vDSO area bounds\n"
    "Error (criu/kerndat.c:1856): kerndat_vdso_fill_symtable failed when initializing kerndat.\n";

inline constexpr const char* kMountsHybrid =
    "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
    "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
    "cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n"
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
inline constexpr const char* kMountsV2 =
    "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 "
    "0\n";
inline constexpr const char* kMountsV1 =
    "tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n";

inline constexpr const char* kCpuinfo =
    "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: fpu vme de pse tsc msr sse sse2 avx avx2\n\n"
    "processor\t: 1\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    "flags\t\t: fpu vme de pse tsc msr sse sse2 avx avx2\n";

inline constexpr const char* kStatusNoSysResource =
    "Name:\tferry\nUmask:\t0022\nState:\tR (running)\nCapInh:\t0000000000000000\n"
    "CapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
inline constexpr const char* kStatusFullCaps = "Name:\tferry\nCapEff:\t000001ffffffffff\n";

}  // namespace ferry::checkpoint::testing
