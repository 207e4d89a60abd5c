/* ferry's write tracker (sync/README.md, "Write tracking"): for every watched file, the
 * byte ranges that writes changed, each recorded AFTER the bytes are in place (or, for
 * fallocate, under the inode lock the reader takes before it reads), into a ring buffer the
 * mirror drains before it reads. Attaches to tracepoints only (tp_btf): on the target
 * kernels fentry/fexit/LSM programs are refused (lockdown=integrity) and kprobes are not
 * built in. No program sits on the generic sys_enter/sys_exit tracepoints: attaching one
 * (or any per-syscall tracepoint, which the kernel implements on top of them) sends every
 * syscall of every task through the slow syscall path; each hook here fires only for the
 * operation it watches. Two iterators (task_file, task_vma) answer the loader's questions.
 *
 * Files are named by the real inode (ft_key); the loader fills `watched` with the files of
 * its own data directory, so two nodes on one machine, each with its own copy of this
 * program, see only their own files. */
#include "ferry_vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "write_tracker_abi.h"

char LICENSE[] SEC("license") = "GPL"; /* tracepoint helpers need a GPL-compatible program */

#define NR_READ 0                /* x86-64 reads that can end in direct I/O */
#define NR_PREAD64 17
#define NR_READV 19
#define NR_PREADV 295
#define NR_PREADV2 327
#define IOCB_WRITE_FLAG (1 << 18) /* include/linux/fs.h since 5.9; verified at run time */
#define NR_MMAP 9                /* x86-64 (and x32 with X32_SYSCALL_BIT) */
#define X32_SYSCALL_BIT 0x40000000
#define NR_IA32_OLD_MMAP 90      /* ia32: one pointer to the six arguments */
#define NR_IA32_MMAP2 192        /* ia32: arguments in bx, cx, dx, si, di, bp */
#define TS_COMPAT 0x0002         /* x86 thread_info.status: an ia32 syscall is running */
#define PF_IO_WORKER 0x00000010  /* task->flags (include/linux/sched.h) */
#define PF_USER_WORKER 0x00004000
#define PF_KTHREAD 0x00200000
#define EXT4_MAGIC 0xEF53
#define OVERLAYFS_MAGIC 0x794c7630
#define MAP_TYPE_MASK 0x0f
#define MAP_SHARED_TYPE 0x01
#define MAP_SHARED_VALIDATE_TYPE 0x03
#define PROT_WRITE_FLAG 0x2
#define FMODE_WRITE_FLAG 0x2
#define VM_SHARED 0x08
#define VM_MAYWRITE 0x20
#define RWSEM_OWNER_FLAGS 0x7ul
#define BPF_RB_NO_WAKEUP_FLAG 1

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, struct ft_key);
  __type(value, struct ft_state);
} watched SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 4 * 1024 * 1024);
} events SEC(".maps");

/* Read and written by the loader through the mmapped .bss. */
ft_u64 lost_total = 0;
ft_u64 events_total = 0;
ft_u64 mapped_total = 0;  /* also counts `unordered` */
ft_u64 flag_mismatch = 0; /* async direct I/O whose IOCB_WRITE disagreed with its direction */
ft_u32 probe_tgid = 0;    /* the identity iterator answers for this process's... */
ft_u32 probe_fd = 0;      /* ...descriptor */

/* For inode pointers that are not BTF pointers (container_of, iterator fields). */
static __always_inline struct ft_key keyOfInode(struct inode *inode) {
  struct ft_key k = {};
  k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
  k.ino = BPF_CORE_READ(inode, i_ino);
  return k;
}

/* For tracepoint arguments (BTF pointers): plain loads, no helper calls. These programs
 * run for every ext4 buffered write and every direct I/O on the machine; most of them
 * stop at the `watched` lookup. */
static __always_inline struct ft_key keyOfArg(struct inode *inode) {
  struct ft_key k = {};
  k.dev = inode->i_sb->s_dev;
  k.ino = inode->i_ino;
  return k;
}

/* The inode the filesystem sees: the upper inode for an overlayfs inode (0 when the file
 * lives only in a lower layer: writing it copies it up first, a new inode). */
static __always_inline struct inode *realInode(struct inode *inode) {
  if (BPF_CORE_READ(inode, i_sb, s_magic) != OVERLAYFS_MAGIC) return inode;
  struct ovl_inode *oi = (struct ovl_inode *)((char *)inode - bpf_core_field_offset(struct ovl_inode, vfs_inode));
  return BPF_CORE_READ(oi, __upperdentry, d_inode);
}

static __always_inline struct file *fileOfFd(unsigned long fd) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
  if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds)) return 0;
  struct file **fds = BPF_CORE_READ(fdt, fd);
  struct file *f = 0;
  if (bpf_probe_read_kernel(&f, sizeof(f), fds + fd) != 0) return 0;
  return f;
}

/* `inode`: a tracepoint argument or a field walked from one. */
static __always_inline void emit(struct inode *inode, ft_u32 kind, ft_u64 offset, ft_u64 length) {
  if (!inode) return;
  struct ft_key key = keyOfArg(inode);
  struct ft_state *st = bpf_map_lookup_elem(&watched, &key);
  if (!st) return;
  struct ft_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);
  if (!ev) {
    __sync_fetch_and_add(&st->lost, 1);
    __sync_fetch_and_add(&lost_total, 1);
    return;
  }
  ev->key = key;
  ev->offset = offset;
  ev->length = length;
  ev->kind = kind;
  ev->pad = 0;
  /* No wakeup: the mirror polls (ring_buffer__consume each round) and never sleeps on the
   * ring; a wakeup is an irq_work, a self-IPI (a VM exit on a guest) per record. */
  bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP_FLAG);
  __sync_fetch_and_add(&events_total, 1);
}

/* A watched file can no longer be tracked: `mapped` (shared writable mapping) or
 * `unordered` (a change whose ordering the reader cannot rely on). */
static __always_inline void untrackable(struct inode *inode, bool mapped) {
  if (!inode) return;
  struct ft_key key = keyOfInode(inode);
  struct ft_state *st = bpf_map_lookup_elem(&watched, &key);
  if (!st) return;
  if (mapped)
    __sync_fetch_and_add(&st->mapped, 1);
  else
    __sync_fetch_and_add(&st->unordered, 1);
  __sync_fetch_and_add(&mapped_total, 1);
}

/* Buffered writes on ext4, whatever the caller (write/pwrite/writev, libaio and io_uring
 * on a buffered fd, splice/sendfile, copy_file_range's copy, overlayfs forwarding): the
 * tracepoint fires after the bytes were copied into the page cache folio. `len` (not
 * `copied`): a short copy is re-read whole. */
SEC("tp_btf/ext4_da_write_end")
int BPF_PROG(on_da_write_end, struct inode *inode, loff_t pos, unsigned int len, unsigned int copied) {
  emit(inode, FT_BUFFERED, (ft_u64)pos, len);
  return 0;
}
SEC("tp_btf/ext4_write_end")
int BPF_PROG(on_write_end, struct inode *inode, loff_t pos, unsigned int len, unsigned int copied) {
  emit(inode, FT_BUFFERED, (ft_u64)pos, len);
  return 0;
}
SEC("tp_btf/ext4_journalled_write_end")
int BPF_PROG(on_journalled_write_end, struct inode *inode, loff_t pos, unsigned int len, unsigned int copied) {
  emit(inode, FT_BUFFERED, (ft_u64)pos, len);
  return 0;
}

/* Direct I/O (O_DIRECT pwrite, libaio, io_uring) through iomap (ext4, xfs, btrfs...):
 * iomap_dio_complete fires at the end of iomap_dio_complete(), after ->end_io, the page
 * cache invalidation of the range and ki_pos += ret. It does not say whether the I/O read or
 * wrote, and direct reads (InnoDB reads pages this way) must not be recorded. No map keyed by
 * kiocb (a hash update and delete per I/O, with bucket locks): an asynchronous kiocb (aio,
 * io_uring: ki_complete set) carries IOCB_WRITE when it writes; a synchronous one completes
 * in its task, inside the syscall that started it, whose number the saved registers hold.
 * Anything not known to be a read counts as a write (at worst a needless re-read). */
static __always_inline bool watchedFile(struct file *file) {
  if (!file || !file->f_inode) return false;
  struct ft_key key = keyOfArg(file->f_inode);
  return bpf_map_lookup_elem(&watched, &key) != 0;
}

/* The IOCB_WRITE premise, checked on every asynchronous direct I/O against the iterator's
 * real direction: a disagreement (another kernel's flag value, a kernel user that does not
 * set it) makes the file untrackable. Synchronous I/O returns at once. */
SEC("tp_btf/iomap_dio_rw_begin")
int BPF_PROG(on_dio_begin, struct kiocb *iocb, struct iov_iter *iter) {
  if (!iocb->ki_complete) return 0;
  bool flagged = (iocb->ki_flags & IOCB_WRITE_FLAG) != 0;
  if (flagged == (bool)iter->data_source) return 0;
  struct file *file = iocb->ki_filp;
  if (!watchedFile(file)) return 0;
  __sync_fetch_and_add(&flag_mismatch, 1);
  untrackable(file->f_inode, false);
  return 0;
}

static __always_inline bool directRead(struct kiocb *iocb) {
  if (iocb->ki_complete) return (iocb->ki_flags & IOCB_WRITE_FLAG) == 0;
  struct task_struct *task = bpf_get_current_task_btf();
  /* Kernel threads and user workers (io_uring, vhost) have no syscall (their saved
   * registers are zero, which reads as `read`), ia32 tasks other numbers: count as a write. */
  if ((task->flags & (PF_KTHREAD | PF_IO_WORKER | PF_USER_WORKER)) || (task->thread_info.status & TS_COMPAT))
    return false;
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  if (!regs) return false;
  long nr = (long)regs->orig_ax;
  return nr == NR_READ || nr == NR_PREAD64 || nr == NR_READV || nr == NR_PREADV || nr == NR_PREADV2;
}

SEC("tp_btf/iomap_dio_complete")
int BPF_PROG(on_dio_complete, struct kiocb *iocb, int error, long ret) {
  struct file *file = iocb->ki_filp;
  if (!watchedFile(file) || directRead(iocb)) return 0;
  loff_t pos = iocb->ki_pos;
  if (ret > 0 && pos >= ret)
    emit(file->f_inode, FT_DIRECT, (ft_u64)(pos - ret), (ft_u64)ret);
  else if (ret != 0 || error != 0)
    emit(file->f_inode, FT_DIRECT, 0, FT_TO_EOF); /* failed part-way: unknown extent */
  return 0;
}

/* truncate(2), ftruncate(2), open(O_TRUNC) shrinking an ext4 file: from the new size on,
 * the bytes are gone (and read as zeros if the file grows again). Growing a file does not
 * call ext4_truncate; the mirror reads new tail blocks because the size grew. */
SEC("tp_btf/ext4_truncate_exit")
int BPF_PROG(on_truncate_exit, struct inode *inode) {
  emit(inode, FT_TRUNCATE, (ft_u64)inode->i_size, FT_TO_EOF);
  return 0;
}

/* fallocate on ext4. These tracepoints fire when the operation starts, not when it ends
 * (ext4_fallocate_exit covers only the allocate mode). Since Linux 6.14 ext4_fallocate()
 * holds i_rwsem for writing around every mode, and the mirror takes it shared (lseek
 * SEEK_DATA) after draining and before reading: whatever it reads then is the finished
 * result. The program checks that premise on every call (this task owns i_rwsem): if not
 * (an older kernel, PREEMPT_RT), the file goes back to whole re-reads for good; inotify's
 * IN_MODIFY, sent after fallocate returns, then gets it read. */
static __always_inline void onFallocate(struct inode *inode, loff_t offset, loff_t len, bool to_eof) {
  if (!inode) return;
  struct ft_key key = keyOfArg(inode);
  if (!bpf_map_lookup_elem(&watched, &key)) return;
  bool held = false;
  if (bpf_core_field_exists(inode->i_rwsem.owner)) {
    unsigned long owner = (unsigned long)BPF_CORE_READ(inode, i_rwsem.owner.counter);
    held = (owner & ~RWSEM_OWNER_FLAGS) == (unsigned long)bpf_get_current_task();
  }
  if (!held) {
    untrackable(inode, false);
    return;
  }
  if (offset < 0) offset = 0;
  emit(inode, FT_FALLOCATE, (ft_u64)offset, to_eof || len <= 0 ? FT_TO_EOF : (ft_u64)len);
}

SEC("tp_btf/ext4_punch_hole")
int BPF_PROG(on_punch_hole, struct inode *inode, loff_t offset, loff_t len, int mode) {
  onFallocate(inode, offset, len, false);
  return 0;
}
SEC("tp_btf/ext4_zero_range") /* also FALLOC_FL_WRITE_ZEROES */
int BPF_PROG(on_zero_range, struct inode *inode, loff_t offset, loff_t len, int mode) {
  onFallocate(inode, offset, len, false);
  return 0;
}
SEC("tp_btf/ext4_collapse_range") /* everything after offset moves */
int BPF_PROG(on_collapse_range, struct inode *inode, loff_t offset, loff_t len) {
  onFallocate(inode, offset, len, true);
  return 0;
}
SEC("tp_btf/ext4_insert_range")
int BPF_PROG(on_insert_range, struct inode *inode, loff_t offset, loff_t len) {
  onFallocate(inode, offset, len, true);
  return 0;
}
SEC("tp_btf/ext4_fallocate_enter") /* allocate mode: no bytes change, maybe the size */
int BPF_PROG(on_fallocate_enter, struct inode *inode, loff_t offset, loff_t len, int mode) {
  onFallocate(inode, offset, len, false);
  return 0;
}

/* mmap(MAP_SHARED) of a watched file that is or can become writable (PROT_WRITE now, or the
 * fd is open for writing so mprotect can add it): writes through it pass no hook, so the
 * file is never trusted again. mmap takes mmap_lock for writing before it creates the
 * mapping, so the file is marked before any store through it; the arguments are the
 * syscall's, from the task's saved registers. mmap_lock is also taken (mostly for reading)
 * by page-fault fallbacks, munmap, mprotect, brk...: one register read and a return. */
static __always_inline void onMmap(unsigned long prot, unsigned long flags, unsigned long fd) {
  unsigned long type = flags & MAP_TYPE_MASK;
  if (type != MAP_SHARED_TYPE && type != MAP_SHARED_VALIDATE_TYPE) return;
  struct file *file = fileOfFd(fd);
  if (!file) return;
  if (!(prot & PROT_WRITE_FLAG) && !(BPF_CORE_READ(file, f_mode) & FMODE_WRITE_FLAG)) return;
  untrackable(realInode(BPF_CORE_READ(file, f_inode)), true);
}

SEC("tp_btf/mmap_lock_acquire_returned")
int BPF_PROG(on_mmap_lock, struct mm_struct *mm, bool write, bool success) {
  if (!write || !success) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
  if (!regs) return 0;
  long nr = (long)regs->orig_ax;
  if (nr != NR_MMAP && nr != (X32_SYSCALL_BIT | NR_MMAP) && nr != NR_IA32_MMAP2 && nr != NR_IA32_OLD_MMAP)
    return 0;
  bool compat = (task->thread_info.status & TS_COMPAT) != 0;
  if (!compat && (nr == NR_MMAP || nr == (X32_SYSCALL_BIT | NR_MMAP))) {
    onMmap(BPF_CORE_READ(regs, dx), BPF_CORE_READ(regs, r10), BPF_CORE_READ(regs, r8));
  } else if (compat && nr == NR_IA32_MMAP2) {
    onMmap(BPF_CORE_READ(regs, dx) & 0xffffffff, BPF_CORE_READ(regs, si) & 0xffffffff,
           BPF_CORE_READ(regs, di) & 0xffffffff);
  } else if (compat && nr == NR_IA32_OLD_MMAP) {
    ft_u32 args[6] = {}; /* addr, len, prot, flags, fd, offset */
    if (bpf_probe_read_user(args, sizeof args, (void *)(BPF_CORE_READ(regs, bx) & 0xffffffff)) == 0)
      onMmap(args[2], args[3], args[4]);
  }
  return 0;
}

/* The loader's identity probe: for descriptor probe_fd of process probe_tgid (the link is
 * restricted to that process), what the file is. */
SEC("iter/task_file")
int identify(struct bpf_iter__task_file *ctx) {
  struct seq_file *seq = ctx->meta->seq;
  struct task_struct *task = ctx->task;
  struct file *file = ctx->file;
  if (!task || !file || ctx->fd != probe_fd || (ft_u32)BPF_CORE_READ(task, tgid) != probe_tgid) return 0;
  struct inode *outer = BPF_CORE_READ(file, f_inode);
  if (!outer) return 0;
  struct ft_probe p = {};
  struct inode *real = realInode(outer);
  p.outer = keyOfInode(outer);
  p.overlay_lower_only = real ? 0 : 1;
  if (real) {
    p.real = keyOfInode(real);
    p.real_magic = BPF_CORE_READ(real, i_sb, s_magic);
    if (p.real_magic == EXT4_MAGIC) {
      struct ext4_sb_info *sbi = BPF_CORE_READ(real, i_sb, s_fs_info);
      p.ext4_incompat = BPF_CORE_READ(sbi, s_es, s_feature_incompat);
    }
  }
  bpf_seq_write(seq, &p, sizeof p);
  return 0;
}

/* Shared writable mappings that existed before a file was watched (the mmap hook sees only
 * new ones): the loader runs this over every process after adding watches, before the
 * mirror reads the files. */
SEC("iter/task_vma")
int scan_mappings(struct bpf_iter__task_vma *ctx) {
  struct vm_area_struct *vma = ctx->vma;
  if (!vma) return 0;
  unsigned long flags = BPF_CORE_READ(vma, vm_flags);
  if ((flags & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE)) return 0;
  struct file *file = BPF_CORE_READ(vma, vm_file);
  if (!file) return 0;
  untrackable(realInode(BPF_CORE_READ(file, f_inode)), true);
  return 0;
}
