/*
 * ferry-lab-prlimit-shim: LAB ONLY. An LD_PRELOAD library for CRIU inside the ferry
 * lab hosts, installed only when the machine lacks CAP_SYS_RESOURCE (this sandbox
 * drops it; real hosts have it).
 *
 * CRIU reads every dumped task's resource limits with syscall(__NR_prlimit64, pid, res,
 * NULL, &old) (older versions: prlimit()).
 * For a task of another uid the kernel wants CAP_SYS_RESOURCE even for that read and
 * the dump fails with "Can't get rlimit 0: Operation not permitted". The same values
 * are world-readable in /proc/PID/limits, so when the kernel refuses a read-only call
 * (new_limit == NULL) with EPERM, this answers it from that file. Every other call
 * (any write, any other error) goes to the real function unchanged.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

typedef int (*prlimit_fn)(pid_t, int, const struct rlimit*, struct rlimit*);

static int parseLimit(const char* text, rlim_t* out) {
  if (strncmp(text, "unlimited", 9) == 0) {
    *out = RLIM_INFINITY;
    return 0;
  }
  char* end = NULL;
  errno = 0;
  unsigned long long v = strtoull(text, &end, 10);
  if (errno != 0 || end == text) return -1;
  *out = (rlim_t)v;
  return 0;
}

/* /proc/PID/limits: a header line, then one line per resource in RLIMIT_* order;
 * the name column is 26 characters wide, then the soft and hard limits. */
static int limitsFromProc(pid_t pid, int resource, struct rlimit* old) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/limits", pid == 0 ? (int)getpid() : (int)pid);
  FILE* f = fopen(path, "re");
  if (f == NULL) return -1;
  char line[256];
  int row = -1, rc = -1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (row++ != resource) continue;
    if (strlen(line) < 27) break;
    char* p = line + 26;
    while (*p == ' ') p++;
    rlim_t soft, hard;
    if (parseLimit(p, &soft) != 0) break;
    while (*p != ' ' && *p != '\0') p++;
    while (*p == ' ') p++;
    if (parseLimit(p, &hard) != 0) break;
    old->rlim_cur = soft;
    old->rlim_max = hard;
    rc = 0;
    break;
  }
  fclose(f);
  return rc;
}

/* Read-only call refused with EPERM: answer from /proc/PID/limits if possible. */
static int fallback(int rc, pid_t pid, int resource, const void* new_limit, struct rlimit* old) {
  if (rc == 0 || errno != EPERM || new_limit != NULL || old == NULL) return rc;
  int saved = errno;
  if (limitsFromProc(pid, resource, old) == 0) return 0;
  errno = saved;
  return rc;
}

typedef long (*syscall_fn)(long, ...);

long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  syscall_fn real = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
  if (real == NULL) {
    errno = ENOSYS;
    return -1;
  }
  long rc = real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
  if (number != SYS_prlimit64) return rc;
  return fallback((int)rc, (pid_t)a[0], (int)a[1], (const void*)a[2], (struct rlimit*)a[3]);
}

static int shim(const char* symbol, pid_t pid, int resource, const struct rlimit* new_limit,
                struct rlimit* old) {
  prlimit_fn real = (prlimit_fn)dlsym(RTLD_NEXT, symbol);
  if (real == NULL) {
    errno = ENOSYS;
    return -1;
  }
  return fallback(real(pid, resource, new_limit, old), pid, resource, new_limit, old);
}

int prlimit(pid_t pid, __rlimit_resource_t resource, const struct rlimit* new_limit, struct rlimit* old) {
  return shim("prlimit", pid, (int)resource, new_limit, old);
}

int prlimit64(pid_t pid, __rlimit_resource_t resource, const struct rlimit64* new_limit, struct rlimit64* old) {
  return shim("prlimit64", pid, (int)resource, (const struct rlimit*)new_limit, (struct rlimit*)old);
}
