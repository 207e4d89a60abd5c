/* The few kernel types write_tracker.bpf.c reads, written by hand instead of a generated
 * vmlinux.h: only the fields used, marked preserve_access_index so that libbpf (CO-RE)
 * relocates every access to the running kernel's layout (from /sys/kernel/btf/vmlinux)
 * when the program is loaded. The build therefore needs no kernel BTF and no bpftool
 * `btf dump`: the object is the same whichever machine compiled it. */
#ifndef FERRY_VMLINUX_H
#define FERRY_VMLINUX_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed char __s8;
typedef short __s16;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u64 u64;
typedef __u32 u32;
typedef long long loff_t;
typedef unsigned int fmode_t;
typedef unsigned int dev_t;
typedef unsigned short umode_t;
typedef _Bool bool;
#define true 1
#define false 0

enum bpf_map_type {
  BPF_MAP_TYPE_HASH = 1,
  BPF_MAP_TYPE_LRU_HASH = 9,
  BPF_MAP_TYPE_RINGBUF = 27,
};

enum {
  BPF_ANY = 0,
  BPF_NOEXIST = 1,
};

struct super_block {
  dev_t s_dev;
  unsigned long s_magic;
  void *s_fs_info;
} __attribute__((preserve_access_index));

typedef struct {
  __s64 counter;
} atomic_long_t;

/* i_rwsem: `owner` is the task holding it for writing (low 3 bits are flags). Absent on
 * PREEMPT_RT kernels (checked with bpf_core_field_exists). */
struct rw_semaphore {
  atomic_long_t count;
  atomic_long_t owner;
} __attribute__((preserve_access_index));

struct inode {
  umode_t i_mode;
  struct super_block *i_sb;
  unsigned long i_ino;
  loff_t i_size;
  struct rw_semaphore i_rwsem;
} __attribute__((preserve_access_index));

struct dentry {
  struct inode *d_inode;
} __attribute__((preserve_access_index));

struct path {
  struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
  fmode_t f_mode;
  struct inode *f_inode;
  unsigned int f_flags;
} __attribute__((preserve_access_index));

struct kiocb {
  struct file *ki_filp;
  loff_t ki_pos;
  void (*ki_complete)(struct kiocb *iocb, long ret);
  int ki_flags;
} __attribute__((preserve_access_index));

struct ext4_super_block {
  __u32 s_feature_incompat;
} __attribute__((preserve_access_index));

struct ext4_sb_info {
  struct ext4_super_block *s_es;
} __attribute__((preserve_access_index));

struct iov_iter {
  bool data_source; /* true: the iterator is the source of a write */
} __attribute__((preserve_access_index));

/* overlayfs: the overlay inode embeds the VFS inode; the upper (real) file's dentry. */
struct ovl_inode {
  struct inode vfs_inode;
  struct dentry *__upperdentry;
} __attribute__((preserve_access_index));

struct fdtable {
  unsigned int max_fds;
  struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
  struct fdtable *fdt;
} __attribute__((preserve_access_index));

/* x86: `status & TS_COMPAT` while a 32-bit (ia32) syscall runs. */
struct thread_info {
  __u32 status;
} __attribute__((preserve_access_index));

struct task_struct {
  struct thread_info thread_info;
  unsigned int flags;
  int tgid;
  struct files_struct *files;
} __attribute__((preserve_access_index));

/* The user registers of a task: x86-64 syscall arguments di, si, dx, r10, r8, r9; ia32
 * ones bx, cx, dx, si, di, bp. orig_ax: the syscall number. */
struct pt_regs {
  unsigned long bp;
  unsigned long bx;
  unsigned long r10;
  unsigned long r8;
  unsigned long cx;
  unsigned long dx;
  unsigned long si;
  unsigned long di;
  unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct mm_struct;

struct vm_area_struct {
  unsigned long vm_flags;
  struct file *vm_file;
} __attribute__((preserve_access_index));

/* Contexts of the BPF iterators (the kernel wraps each pointer in an 8-byte union). */
struct seq_file;

struct bpf_iter_meta {
  union {
    struct seq_file *seq;
  };
  __u64 session_id;
  __u64 seq_num;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
  union {
    struct bpf_iter_meta *meta;
  };
  union {
    struct task_struct *task;
  };
  __u32 fd;
  union {
    struct file *file;
  };
} __attribute__((preserve_access_index));

struct bpf_iter__task_vma {
  union {
    struct bpf_iter_meta *meta;
  };
  union {
    struct task_struct *task;
  };
  union {
    struct vm_area_struct *vma;
  };
} __attribute__((preserve_access_index));

#endif
