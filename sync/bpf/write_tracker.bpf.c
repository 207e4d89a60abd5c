/* ferry's write tracker (sync/README.md, "Write tracking"): for every watched file, the
 * byte ranges that writes changed, each recorded AFTER the bytes are in place, into a ring
 * buffer the mirror drains before it reads. Attaches to tracepoints only (tp_btf): on the
 * target kernels fentry/fexit/LSM programs are refused (lockdown=integrity) and kprobes
 * are not built in.
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

#define NR_MMAP 9
#define NR_FALLOCATE 285
#define NR_FADVISE64 221
#define EXT4_MAGIC 0xEF53
#define OVERLAYFS_MAGIC 0x794c7630
#define MAP_TYPE_MASK 0x0f
#define MAP_SHARED_TYPE 0x01
#define MAP_SHARED_VALIDATE_TYPE 0x03
#define PROT_WRITE_FLAG 0x2
#define FMODE_WRITE_FLAG 0x2
#define FALLOC_COLLAPSE 0x08
#define FALLOC_INSERT 0x20

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

/* Direct reads in flight, by kiocb address (an evicted entry only costs a re-read). */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, ft_u64);
  __type(value, ft_u32);
} dio_reads SEC(".maps");

/* Read and written by the loader through the mmapped .bss. */
ft_u64 lost_total = 0;
ft_u64 events_total = 0;
ft_u64 mapped_total = 0;
ft_u32 probe_tgid = 0;
struct ft_probe probe = {};

static __always_inline struct ft_key keyOfInode(struct inode *inode) {
  struct ft_key k = {};
  k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
  k.ino = BPF_CORE_READ(inode, i_ino);
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

static __always_inline void emit(struct inode *inode, ft_u32 kind, ft_u64 offset, ft_u64 length) {
  if (!inode) return;
  struct ft_key key = keyOfInode(inode);
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
  bpf_ringbuf_submit(ev, 0);
  __sync_fetch_and_add(&events_total, 1);
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
 * fires at the end of iomap_dio_complete(), after ->end_io, the page cache invalidation of
 * the range and ki_pos += ret. Direct reads are skipped: iomap_dio_rw_begin tells the
 * direction (an iocb it did not see counts as a write). */
SEC("tp_btf/iomap_dio_rw_begin")
int BPF_PROG(on_dio_begin, struct kiocb *iocb, struct iov_iter *iter) {
  if (BPF_CORE_READ(iter, data_source)) return 0;
  ft_u64 id = (ft_u64)iocb;
  ft_u32 one = 1;
  bpf_map_update_elem(&dio_reads, &id, &one, BPF_ANY);
  return 0;
}

SEC("tp_btf/iomap_dio_complete")
int BPF_PROG(on_dio_complete, struct kiocb *iocb, int error, long ret) {
  ft_u64 id = (ft_u64)iocb;
  ft_u32 *reading = bpf_map_lookup_elem(&dio_reads, &id);
  if (reading) {
    bpf_map_delete_elem(&dio_reads, &id);
    return 0;
  }
  struct file *file = BPF_CORE_READ(iocb, ki_filp);
  if (!file) return 0;
  struct inode *inode = BPF_CORE_READ(file, f_inode);
  loff_t pos = BPF_CORE_READ(iocb, ki_pos);
  if (ret > 0 && pos >= ret)
    emit(inode, FT_DIRECT, (ft_u64)(pos - ret), (ft_u64)ret);
  else if (ret != 0 || error != 0)
    emit(inode, FT_DIRECT, 0, FT_TO_EOF); /* failed part-way: unknown extent */
  return 0;
}

/* truncate(2), ftruncate(2), open(O_TRUNC) shrinking an ext4 file: from the new size on,
 * the bytes are gone (and read as zeros if the file grows again). Growing a file does not
 * call ext4_truncate; the mirror reads new tail blocks because the size grew. */
SEC("tp_btf/ext4_truncate_exit")
int BPF_PROG(on_truncate_exit, struct inode *inode) {
  emit(inode, FT_TRUNCATE, (ft_u64)BPF_CORE_READ(inode, i_size), FT_TO_EOF);
  return 0;
}

/* fallocate(2) returned (any mode, any result): PUNCH_HOLE/ZERO_RANGE change their range,
 * COLLAPSE/INSERT_RANGE move everything after the offset. x86-64 numbering. */
SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret) {
  if (BPF_CORE_READ(regs, orig_ax) != NR_FALLOCATE) return 0;
  struct file *file = fileOfFd(BPF_CORE_READ(regs, di));
  if (!file) return 0;
  struct inode *inode = realInode(BPF_CORE_READ(file, f_inode));
  unsigned long mode = BPF_CORE_READ(regs, si);
  long offset = (long)BPF_CORE_READ(regs, dx);
  long len = (long)BPF_CORE_READ(regs, r10);
  if (offset < 0) offset = 0;
  bool shift = (mode & (FALLOC_COLLAPSE | FALLOC_INSERT)) != 0;
  emit(inode, FT_FALLOCATE, (ft_u64)offset, shift || len <= 0 ? FT_TO_EOF : (ft_u64)len);
  return 0;
}

static __always_inline void onMmap(struct pt_regs *regs) {
  unsigned long prot = BPF_CORE_READ(regs, dx);
  unsigned long flags = BPF_CORE_READ(regs, r10);
  unsigned long type = flags & MAP_TYPE_MASK;
  if (type != MAP_SHARED_TYPE && type != MAP_SHARED_VALIDATE_TYPE) return;
  struct file *file = fileOfFd(BPF_CORE_READ(regs, r8));
  if (!file) return;
  if (!(prot & PROT_WRITE_FLAG) && !(BPF_CORE_READ(file, f_mode) & FMODE_WRITE_FLAG)) return;
  struct inode *inode = realInode(BPF_CORE_READ(file, f_inode));
  if (!inode) return;
  struct ft_key key = keyOfInode(inode);
  struct ft_state *st = bpf_map_lookup_elem(&watched, &key);
  if (!st) return;
  __sync_fetch_and_add(&st->mapped, 1);
  __sync_fetch_and_add(&mapped_total, 1);
}

static __always_inline void onProbe(struct pt_regs *regs) {
  if ((long)BPF_CORE_READ(regs, si) != FT_PROBE_OFFSET || (long)BPF_CORE_READ(regs, dx) != FT_PROBE_LEN) return;
  if ((ft_u32)(bpf_get_current_pid_tgid() >> 32) != probe_tgid) return;
  struct file *file = fileOfFd(BPF_CORE_READ(regs, di));
  if (!file) return;
  struct inode *outer = BPF_CORE_READ(file, f_inode);
  if (!outer) return;
  struct inode *real = realInode(outer);
  probe.outer = keyOfInode(outer);
  probe.overlay_lower_only = real ? 0 : 1;
  if (real) {
    probe.real = keyOfInode(real);
    probe.real_magic = BPF_CORE_READ(real, i_sb, s_magic);
    if (probe.real_magic == EXT4_MAGIC) {
      struct ext4_sb_info *sbi = BPF_CORE_READ(real, i_sb, s_fs_info);
      probe.ext4_incompat = BPF_CORE_READ(sbi, s_es, s_feature_incompat);
    }
  }
  __sync_fetch_and_add(&probe.request, 1); /* the loader waits for request to move */
}

/* mmap(MAP_SHARED) of a watched file that is or can become writable (PROT_WRITE now, or
 * the fd is open for writing so mprotect can add it): writes through it pass no hook, so
 * the file is never trusted again. And the loader's identity probe. */
SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long id) {
  if (id == NR_MMAP)
    onMmap(regs);
  else if (id == NR_FADVISE64)
    onProbe(regs);
  return 0;
}
