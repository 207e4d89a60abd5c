/* Shared between the eBPF program (write_tracker.bpf.c) and its loader
 * (sync/src/write_tracker_bpf.cc): map keys and values and ring-buffer records. */
#ifndef FERRY_SYNC_WRITE_TRACKER_ABI_H
#define FERRY_SYNC_WRITE_TRACKER_ABI_H

#ifdef __bpf__
typedef unsigned long long ft_u64;
typedef unsigned int ft_u32;
#else
#include <cstdint>
typedef std::uint64_t ft_u64;
typedef std::uint32_t ft_u32;
#endif

/* A file as the filesystem that stores it names it: the superblock's dev_t in the
 * kernel's encoding (major << 20 | minor) and the inode number. For a file on overlayfs
 * this is the upper (real) file, where the ext4 and iomap tracepoints fire. */
struct ft_key {
  ft_u64 dev;
  ft_u64 ino;
};

/* Per watched file; the program only adds. */
struct ft_state {
  ft_u64 lost;      /* ranges that did not fit in the ring buffer: re-read the whole file */
  ft_u64 mapped;    /* mmap(MAP_SHARED) that can write: writes are invisible from then on */
  ft_u64 unordered; /* an fallocate seen without i_rwsem held: its ordering is unknown */
};

#define FT_TO_EOF (~0ull)

/* One range whose new bytes are already in place: in the page cache (buffered write), or
 * on disk with the page cache invalidated (direct I/O); or (FT_FALLOCATE) a change emitted
 * while its task holds the inode's i_rwsem for writing, which the reader waits for by taking
 * i_rwsem itself (lseek SEEK_DATA) before it reads. */
struct ft_event {
  struct ft_key key;
  ft_u64 offset;
  ft_u64 length; /* FT_TO_EOF: to the end of the file */
  ft_u32 kind;   /* enum ft_kind */
  ft_u32 pad;
};

enum ft_kind {
  FT_BUFFERED = 1, /* ext4 write_end: the bytes were copied into the page cache */
  FT_DIRECT = 2,   /* iomap direct I/O completed (libaio, io_uring, O_DIRECT pwrite) */
  FT_TRUNCATE = 3, /* ext4 truncate finished: [new size, EOF) */
  FT_FALLOCATE = 4 /* ext4 fallocate (punch, zero, collapse/insert: to EOF, allocate), under
                      i_rwsem: complete once the reader holds i_rwsem */
};

/* The identity of one open file, written by the iter/task_file program for the fd the loader
 * names (probe_fd of its own process). */
struct ft_probe {
  struct ft_key outer; /* file_inode(file) of the fd (the overlay inode on overlayfs) */
  struct ft_key real;  /* the inode the filesystem tracepoints name */
  ft_u64 real_magic;   /* statfs magic of the real file's filesystem */
  ft_u64 ext4_incompat;
  ft_u64 overlay_lower_only; /* overlayfs file not copied up yet: no real upper inode */
};

#endif
