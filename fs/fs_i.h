#ifndef DMS_FS_I_H
#define DMS_FS_I_H
/* Private to fs/: shared between ops.c, meta.c, blocks.c and inode.c. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "fs/fs.h"
#include "cache/cache.h"
#include "transfer/xfer.h"
#include "acl/acl.h"

/* ---- block arithmetic (block_size is a power of two) ---- */

static inline uint64_t fs_block_index(uint64_t off, uint64_t block_size)
{
	return off / block_size;
}

/* Length of block idx of a file of size bytes: block_size except for the
 * last block; 0 past the end. */
static inline size_t fs_block_len(uint64_t idx, uint64_t size,
                                  uint64_t block_size)
{
	uint64_t start = idx * block_size;

	if (start >= size)
		return 0;
	return (size_t)(size - start < block_size ? size - start : block_size);
}

static inline uint64_t fs_block_count(uint64_t size, uint64_t block_size)
{
	return (size + block_size - 1) / block_size;
}

/* ---- one version of a file, as its blocks are identified ----
 * Immutable after creation; shared by open handles and read-ahead jobs. */
struct fs_file {
	atomic_int refs;
	/* Monotonic ms until which no read-ahead is done for this file: its
	 * fetches fell behind a reader (blocks.c). */
	atomic_llong ra_paused_until;
	/* Where the latest read of this file ended (blocks.c): read-ahead
	 * queued for blocks before it came too late and is skipped. */
	atomic_ullong read_end;
	struct xfer_attr attr;
	struct cache_fid fid;      /* from the mount path: one per export */
	struct xfer *xfer;         /* the export's sources; outlive the file */
	const char *inner;         /* path inside the sources' tree */
	char path[];               /* path inside the mount, then inner */
};

/* "tree\npath": what names f in the cache's pins (blocks.c lays it out
 * after inner). */
static inline const char *fs_file_identity(const struct fs_file *f)
{
	return f->inner + __builtin_strlen(f->inner) + 1;
}

struct fs_route;
struct fs_file *fs_file_new(const char *path, const struct fs_route *r,
                            const struct xfer_attr *attr, uint64_t block_size);
struct fs_file *fs_file_get(struct fs_file *f);
void fs_file_put(struct fs_file *f);

/* ---- blocks.c: the read pipeline ----
 * Memory (recent blocks) -> LMDB cache -> transfer, with one fetch per
 * block however many readers want it, and read-ahead threads.
 * Thread safety: all calls may run concurrently. */
struct fs_blocks;

int fs_blocks_init(struct fs_blocks **out, struct cache *cache,
                   uint64_t block_size, uint64_t mem_bytes, unsigned fetchers);
void fs_blocks_destroy(struct fs_blocks *bl);
/* The bytes [off, off + len) of f (off + len <= f->attr.size), in place in
 * the blocks that hold them: pin->iov[0..n) describe them, valid until
 * fs_blocks_unpin.  Replying straight from the blocks saves a copy. */
#define FS_PIN_INLINE 32    /* blocks covered without allocating */
struct fs_pin {
	unsigned n;
	struct iovec *iov;
	void **held;
	struct iovec iov_inline[FS_PIN_INLINE];
	void *held_inline[FS_PIN_INLINE];
};
int fs_blocks_pin(struct fs_blocks *bl, struct fs_file *f, uint64_t off,
                  size_t len, struct fs_pin *pin);
void fs_blocks_unpin(struct fs_blocks *bl, struct fs_pin *pin);
/* Makes blocks [first, first + count) of f present (memory, then the cache,
 * then one request per run of misses) and waits for them: the first fetch
 * error, or 0. */
int fs_blocks_load(struct fs_blocks *bl, struct fs_file *f, uint64_t first,
                   uint64_t count);
/* Drops the blocks of fid kept in memory that no reader holds now (a block
 * being loaded or read stays until its reader is done).  Can't fail. */
void fs_blocks_forget(struct fs_blocks *bl, const struct cache_fid *fid);
/* Queues loading of blocks [first, first + count) in the background. */
void fs_blocks_prefetch(struct fs_blocks *bl, struct fs_file *f,
                        uint64_t first, uint64_t count);

/* ---- prefetch.c: files of a folder fetched ahead of a reader walking it ----
 * A reader that opens the files of one folder one after another, in the
 * listing's order (by name) or in inode order (what cp -r does), gets the
 * next ones fetched (whole, up to 1 MiB each) by the read-ahead threads
 * while it copies the current one: at most files ahead and bytes ahead of
 * it, and never more than files that it did not go on to open per folder
 * walk (a random reader costs at most that).  Only files the reader may
 * read (fs_access_may) are fetched, and only into the cache, where every
 * open checks the rules again.  Calls may run concurrently. */
struct fs_prefetch;
struct fs_caller;
struct fs_meta;
struct fs_exports;
struct fs_access;
struct fs_prefetch_conf {
	struct fs_meta *meta;
	struct fs_access *access;       /* NULL: no rules */
	struct fs_exports *exports;
	struct fs_blocks *blocks;
	uint64_t block_size;
	unsigned files;                 /* 0: off (init gives NULL) */
	uint64_t bytes;
};
int fs_prefetch_init(struct fs_prefetch **out, const struct fs_prefetch_conf *conf);
void fs_prefetch_destroy(struct fs_prefetch *p);
/* The caller c opened path (a file of a read-only export) for reading.
 * Never blocks on the network; p NULL: nothing. */
void fs_prefetch_opened(struct fs_prefetch *p, const struct fs_caller *c,
                        const char *path);

/* Figures for dmsctl status.  Can't fail. */
struct fs_blocks_stats {
	uint64_t from_cache;    /* blocks loaded from the LMDB cache */
	uint64_t fetched;       /* blocks brought from the sources */
	uint64_t from_cache_bytes, fetched_bytes; /* their bytes */
	uint64_t mem_used;      /* bytes of fetch buffers in memory (blocks
	                           kept, on their way, being replied) */
	uint64_t mem_max;       /* mem_cache */
	unsigned queued;        /* read-ahead runs waiting for a fetcher */
};
void fs_blocks_stats(struct fs_blocks *bl, struct fs_blocks_stats *st);

/* ---- meta.c: listings and attributes, cached in memory and LMDB ----
 * A listing snapshot is immutable and refcounted; entries sorted by name. */
struct fs_dirent {
	const char *name;
	struct xfer_attr attr;
};

struct fs_dir {
	atomic_int refs;
	int64_t validated;      /* wall-clock seconds of the last good fetch */
	size_t count;
	struct fs_dirent *ents;
	char *names;            /* storage of all names */
};

struct fs_meta;
struct fs_exports;

int fs_meta_init(struct fs_meta **out, struct cache *cache,
                 struct fs_exports *exports, unsigned ttl, size_t max_entries);
void fs_meta_destroy(struct fs_meta *m);
/* The listing of dir path, fresh (validated within ttl) or, when the sources
 * cannot answer, the last one known (stale-if-error).  *out holds a ref. */
int fs_meta_dir(struct fs_meta *m, const char *path, struct fs_dir **out);
/* Forgets the in-memory validation of path so the next call refetches. */
void fs_meta_expire(struct fs_meta *m, const char *path);
/* fs_meta_expire of path and of every listing held under it (a folder
 * made, removed or moved: listings of an earlier one there are stale). */
void fs_meta_expire_under(struct fs_meta *m, const char *path);
void fs_dir_put(struct fs_dir *d);
const struct fs_dirent *fs_dir_find(const struct fs_dir *d, const char *name);
/* Checks that the export at path can be served: its sources answer for
 * its root (xfer_probe: first-contact deadline, no retries), or the cache
 * holds its root listing.  On failure why (cap > 0 bytes) says what the
 * sources answered, for the one line a failed mount prints. */
int fs_meta_probe(struct fs_meta *m, const char *path,
                  const struct fs_route *r, char *why, size_t cap);

/* A made-up listing: the children of a VIRTUAL directory, or (user not
 * NULL) the one entry user ("" for none), all directories of the given
 * mtime. */
int fs_dir_virtual(struct fs_exports *ex, const char *path, const char *user,
                   int64_t mtime, struct fs_dir **out);

/* Serialization of listings (exposed for unit tests). */
int fs_dir_encode(const struct fs_dir *d, void **out, size_t *len);
int fs_dir_decode(const void *buf, size_t len, struct fs_dir **out);

/* ---- config.c: options from -o and from the config file ---- */
struct fs_raw_opts {
	char *config, *acl, *cache_dir, *cache_size, *block_size, *mem_cache;
	char *meta_ttl, *readahead, *threads, *fetchers, *proxy;
	char *gridftp_streams, *connect_timeout, *stall_timeout, *max_listing;
	char *min_rate, *prefetch_files, *kernel_readahead;
	char *writeback_delay, *writeback_size, *unmount_flush;
	char *metrics_file, *metrics_interval;
	char *log;
	int rw;
};
extern const struct fuse_opt fs_opt_table[];
/* Reads the INI file into raw (fields -o already set are kept) and the
 * exports into cfg.  Prints "dmsfs: config FILE:LINE: reason" on error. */
int fs_config_load(const char *file, struct fs_raw_opts *raw,
                   struct fs_config *cfg);
/* Checks raw values and fills cfg, printing an error naming the option. */
int fs_config_apply(struct fs_config *cfg, const struct fs_raw_opts *raw);
void fs_config_free(struct fs_config *cfg);
void fs_raw_opts_free(struct fs_raw_opts *raw);

/* ---- exports.c: which sources serve which part of the mount ---- */
struct fs_export_conf {
	const char *name;
	const char *path;      /* where it appears in the mount */
	const char *source;    /* sources (xfer.h syntax); ${user} if per_user */
	bool per_user;
	bool writable;         /* writable = yes */
};

enum fs_route_kind {
	FS_ROUTE_SOURCE,       /* served by xfer, at inner */
	FS_ROUTE_VIRTUAL,      /* a directory above export paths */
	FS_ROUTE_USERS,        /* the directory of a per-user export's users */
};

struct fs_route {
	enum fs_route_kind kind;
	struct xfer *xfer;     /* SOURCE: owned by the exports */
	const char *tree;      /* SOURCE: names the tree (its sources string);
	                          part of every cache key, so two trees never
	                          share a cache entry; owned by the exports */
	const char *inner;     /* SOURCE: points into the routed path, or "/" */
	bool writable;         /* SOURCE: the export is writable */
	const char *user;      /* SOURCE of a per-user export: whose; else NULL */
};

/* Checks exports before use: both keys given, normalized paths that do
 * not overlap, ${user} in per-user sources.  On -EINVAL, *bad is the index
 * of the offending export and reason says why. */
int fs_exports_check(const struct fs_export_conf *conf, size_t n,
                     size_t *bad, char *reason, size_t cap);
/* Opens the sources of every export (no network I/O); -EINVAL with a
 * logged reason for overlapping or malformed exports. */
int fs_exports_open(struct fs_exports **out, const struct fs_export_conf *conf,
                    size_t n, const struct xfer_opts *xopts);
void fs_exports_close(struct fs_exports *ex);
/* Where path (normalized) is served from; -ENOENT if nowhere. */
int fs_exports_route(struct fs_exports *ex, const char *path,
                     struct fs_route *r);
/* Calls fn for each child name of a VIRTUAL directory. */
int fs_exports_children(struct fs_exports *ex, const char *path,
                        int (*fn)(void *arg, const char *name), void *arg);
/* The i-th export's name, mount path and route of its root (r->xfer is
 * NULL for a per-user export). */
int fs_exports_probe_list(struct fs_exports *ex, size_t i, const char **name,
                          const char **path, struct fs_route *r);
bool fs_path_normalized(const char *path);

/* ---- access.c: callers and access rules ---- */
#define FS_MAX_GROUPS 256

struct fs_caller {
	struct acl_caller ac;
	gid_t groups[FS_MAX_GROUPS];
};

struct fs_access;

/* Loads the rules and starts reloading them on SIGHUP and file change;
 * on_reload(arg) runs (on the reloader thread) after new rules are in. */
int fs_access_open(struct fs_access **out, const char *rules_file,
                   void (*on_reload)(void *arg), void *arg);
void fs_access_close(struct fs_access *a);
/* Who sent req.  -EACCES if the groups cannot be read (a is NULL: 0). */
int fs_access_caller(struct fs_access *a, fuse_req_t req, struct fs_caller *c);
/* 0 if the caller has every right in want on path, or (want 0) may see
 * path; else counts and logs the denial and returns -EACCES.  a NULL: 0. */
int fs_access_check(struct fs_access *a, const struct fs_caller *c,
                    const char *path, unsigned want);
/* Whether a listing may show path to the caller (no logging). */
bool fs_access_visible(struct fs_access *a, const struct fs_caller *c,
                       const char *path);
/* Whether the caller may see path and has every right in want there, as
 * fs_access_check but silent: for work done on a caller's behalf that it
 * did not ask for (prefetch), where a "no" is not a denial to count. */
bool fs_access_may(struct fs_access *a, const struct fs_caller *c,
                   const char *path, unsigned want);
/* Re-reads rules_file now (dmsctl reload): it is checked first as at
 * start (trust, then parse), every diagnostic going to fn (and the log);
 * then the new rules are installed and on_reload runs.  0, or -errno with
 * the previous rules still in force. */
int fs_access_reload(struct fs_access *a, const char *rules_file,
                     acl_diag_fn *fn, void *arg);
/* Whether every caller has the same rights at path (a NULL: true). */
bool fs_access_uniform(struct fs_access *a, const char *path);
/* The rules engine's counters (denials, reloads); zeros when a is NULL.
 * Can't fail. */
void fs_access_stats(struct fs_access *a, struct acl_stats *st);

/* ---- mount.c: the mountpoint and the mount itself ---- */
/* Refuses, with one stderr line naming mnt, a mountpoint that is missing,
 * not a directory, a stale FUSE mount (daemon gone) or already a dmsfs
 * mount.  Returns 0 or -errno. */
int fs_mountpoint_check(const char *mnt);
/* fuse_session_mount; capture: take what the mount helper writes to
 * stderr into the log.  Logs why on failure; 0 or -EIO. */
int fs_session_mount(struct fuse_session *se, const char *mnt, bool capture);
/* The name of the kernel's backing device info of the FUSE mount at mnt
 * (absolute, resolved), "MAJOR:MINOR", from /proc/self/mountinfo: nothing
 * on the mount itself is touched, so it works before the session runs.
 * 0, -ENOENT (no FUSE mount there) or -errno. */
int fs_bdi_name(const char *mnt, char *out, size_t n);
/* Sets that device's read-ahead window (read_ahead_kb in sysfs), which
 * bounds the size of the kernel's page-cache reads sent to the daemon.
 * 0 or -errno (e.g. -EACCES/-EROFS when not root or /sys is read-only). */
int fs_bdi_set_readahead(const char *bdi, unsigned kib);

/* ---- inode.c: kernel inode numbers <-> paths ---- */
struct fs_node {
	uint64_t ino;
	uint64_t nlookup;          /* guarded by fs_inodes.lock */
	struct xfer_attr attr;     /* guarded by fs_inodes.lock */
	int64_t validated;         /* guarded by fs_inodes.lock */
	bool changed;              /* attr changed since the kernel cached
	                              its pages; guarded by fs_inodes.lock */
	struct fs_node *ino_next;  /* hash chains, guarded by fs_inodes.lock */
	struct fs_node *path_next;
	char path[];
};

struct fs_inodes;

int fs_inodes_init(struct fs_inodes **out, const struct xfer_attr *root);
void fs_inodes_destroy(struct fs_inodes *t);
/* Finds or creates the node for path, adds one kernel lookup and stores
 * attr (marking it changed if size, mtime or etag differ).  Copies the
 * node's ino and attr out; never returns the node itself. */
int fs_inodes_lookup(struct fs_inodes *t, const char *path,
                     const struct xfer_attr *attr, int64_t now,
                     uint64_t *ino);
void fs_inodes_forget(struct fs_inodes *t, uint64_t ino, uint64_t nlookup);
/* Copies path (malloc'd, caller frees), attr and validation time of ino. */
int fs_inodes_get(struct fs_inodes *t, uint64_t ino, char **path,
                  struct xfer_attr *attr, int64_t *validated);
/* Stores freshly validated attributes of ino. */
void fs_inodes_update(struct fs_inodes *t, uint64_t ino,
                      const struct xfer_attr *attr, int64_t now);
/* Makes the next use of ino revalidate its attributes. */
void fs_inodes_expire(struct fs_inodes *t, uint64_t ino);
/* After a rename in the mount: see inode.c. */
void fs_inodes_rename(struct fs_inodes *t, const char *from, const char *to);
/* After an unlink or rmdir in the mount: see inode.c. */
void fs_inodes_gone(struct fs_inodes *t, const char *path);
/* A malloc'd array (caller frees) of the inode numbers known now. */
int fs_inodes_list(struct fs_inodes *t, uint64_t **inos, size_t *n);
/* The inode the kernel knows path by, without adding a lookup; -ENOENT. */
int fs_inodes_find(struct fs_inodes *t, const char *path, uint64_t *ino);
/* Sets the "changed" mark of path's node, if the kernel knows it: its
 * next open drops the kernel's pages of it (dmsctl evict). */
void fs_inodes_set_changed(struct fs_inodes *t, const char *path);
/* Reads and clears the "changed" mark (true: drop the kernel page cache). */
bool fs_inodes_take_changed(struct fs_inodes *t, uint64_t ino);

/* Joins a directory path and a name into a malloc'd path. */
char *fs_path_join(const char *dir, const char *name);
/* The parent of path ("/" for "/x"), malloc'd. */
char *fs_path_parent(const char *path);
const char *fs_path_base(const char *path);

bool fs_attr_same_version(const struct xfer_attr *a, const struct xfer_attr *b);

#endif
