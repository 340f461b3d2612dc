#ifndef DMS_FS_OVERLAY_H
#define DMS_FS_OVERLAY_H
/* The pending namespace of writable exports (issue 8), FUSE-free.
 *
 * Every change made in the mount is applied here at once (so the mount shows
 * it) and appended to the write journal (so the writeback thread replays it on
 * the origin, in order).  Paths are mount paths ("/home/alice/x").  An entry
 * says, for one path, what the origin listing does not show yet:
 *   a file: its content is a staged journal file (fs_ov_file), or the
 *           origin's file at another path (a rename not uploaded yet), with
 *           mode bits dmsfs keeps;
 *   a directory: made here, or the origin's directory at another path;
 *   gone: deleted or renamed away here.
 * A path without an entry is the origin's path of its nearest ancestor with
 * an entry, or itself.
 *
 * Open files hold an fs_ov_file: unlinking or renaming the path does not
 * affect the handle.  A staged file named by a journal operation is never
 * written again ("sealed"); the next write copies it to a new one.
 *
 * Thread safety: every function may be called concurrently (one mutex, not
 * held across staged-file I/O of writes).  Errors are 0 or -errno. */
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/cache.h"
#include "transfer/xfer.h"
#include "fs/fs_i.h"

struct fs_ov;
struct fs_ov_file;

/* What the overlay says about a path. */
struct fs_ov_info {
	bool is_dir;
	bool pending;            /* the overlay has an entry for path */
	struct fs_ov_file *file; /* FILE with staged content: a ref (put it) */
	struct xfer_attr attr;   /* with file, or a new directory: size, mtime */
	bool have_attr;          /* attr valid; else take it from origin */
	uint32_t mode;           /* permission bits kept by dmsfs; 0: none */
	char origin[4096];       /* "" : no origin object; else its path */
};

int fs_ov_init(struct fs_ov **out, struct cache_jnl *j);
void fs_ov_destroy(struct fs_ov *ov);

/* -ENOENT: gone here, or no origin can have it (inside a new directory).
 * Else 0 and info. */
int fs_ov_stat(struct fs_ov *ov, const char *path, struct fs_ov_info *info);

/* Merges the overlay into a listing of path: origin (may be NULL) is the
 * listing of the origin directory backing it.  *out holds a ref. */
int fs_ov_merge(struct fs_ov *ov, const char *path, const struct fs_dir *origin,
                int64_t validated, struct fs_dir **out);

/* Fills f's staged file from the origin: called by fs_ov_open_write when the
 * file is the origin's.  Returns 0 or -errno. */
typedef int (*fs_ov_fill_fn)(void *arg, struct cache_jnl *j, uint64_t file_id);

/* Opens path for writing: existing staged content, or a copy of the origin
 * file (fill; base = its origin version), or (create) a new empty file.
 * excl with an existing path: -EEXIST.  trunc: size 0.  Returns a ref. */
int fs_ov_open_write(struct fs_ov *ov, const char *path, bool create,
                     bool excl, bool trunc, uint32_t mode, uid_t uid, gid_t gid,
                     const struct xfer_attr *base, fs_ov_fill_fn fill,
                     void *arg, struct fs_ov_file **out);
/* A reference for reading a pending file. */
struct fs_ov_file *fs_ov_file_get(struct fs_ov_file *f);
void fs_ov_file_put(struct fs_ov *ov, struct fs_ov_file *f);
int fs_ov_pwrite(struct fs_ov *ov, struct fs_ov_file *f, const void *buf,
                 size_t len, uint64_t off);
ssize_t fs_ov_pread(struct fs_ov *ov, struct fs_ov_file *f, void *buf,
                    size_t len, uint64_t off);
int fs_ov_truncate(struct fs_ov *ov, struct fs_ov_file *f, uint64_t size);
/* The file's current path (malloc'd), or NULL once unlinked. */
char *fs_ov_file_path(struct fs_ov *ov, struct fs_ov_file *f);
/* Mode/mtime of an unlinked file (nothing to journal). */
void fs_ov_file_set(struct fs_ov *ov, struct fs_ov_file *f, uint32_t mode,
                    int64_t mtime);
void fs_ov_file_attr(struct fs_ov *ov, struct fs_ov_file *f,
                     struct xfer_attr *a);
/* A writer is done (release): appends the WRITE if anything changed.
 * sync: make it durable (fsync). */
int fs_ov_close_write(struct fs_ov *ov, struct fs_ov_file *f, bool sync);
/* fsync of a handle still open for writing: appends the WRITE and syncs. */
int fs_ov_fsync(struct fs_ov *ov, struct fs_ov_file *f);

int fs_ov_mkdir(struct fs_ov *ov, const char *path, uint32_t mode,
                uid_t uid, gid_t gid);
/* origin_count: entries the origin listing of path shows. */
int fs_ov_rmdir(struct fs_ov *ov, const char *path, const struct fs_dir *origin,
                uid_t uid, gid_t gid);
int fs_ov_unlink(struct fs_ov *ov, const char *path, const struct fs_ov_info *in,
                 const struct xfer_attr *origin_attr, uid_t uid, gid_t gid);
/* from exists (info fi), to may (info ti, exists: to_exists). */
int fs_ov_rename(struct fs_ov *ov, const char *from, const char *to,
                 bool from_dir, bool to_exists, uid_t uid, gid_t gid);
/* chmod (mode != UINT32_MAX) and/or mtime (mtime != INT64_MIN). */
int fs_ov_setattr(struct fs_ov *ov, const char *path, struct fs_ov_file *f,
                  uint32_t mode, int64_t mtime, uid_t uid, gid_t gid);

/* A handle reading the origin's file at origin opens (add; NULL: no
 * memory) or closes (del).  reader_now: once the mount opened that file
 * for writing, its pending version (a ref) which the handle must read from
 * then on; else NULL. */
struct fs_ov_reader;
struct fs_ov_reader *fs_ov_reader_add(struct fs_ov *ov, const char *origin);
void fs_ov_reader_del(struct fs_ov *ov, struct fs_ov_reader *r);
struct fs_ov_file *fs_ov_reader_now(struct fs_ov *ov, struct fs_ov_reader *r);
/* Whether a handle reads an origin file at or under path: deleting or
 * moving it at the origin waits until it is closed. */
bool fs_ov_read_under(struct fs_ov *ov, const char *path);

/* ---- for the writeback thread ---- */
/* Whether path shows the staged file file_id now (not renamed, deleted or
 * rewritten since).  One lookup. */
bool fs_ov_holds(struct fs_ov *ov, const char *path, uint64_t file_id);
/* Whether a WRITE of path may go now: no handle is writing it. */
bool fs_ov_quiet(struct fs_ov *ov, const char *path);
/* The writeback thread starts replaying op at the origin (NULL: it gave up
 * on the last one; fs_ov_applied ends it too).  While a RENAME is in
 * flight, lookups whose origin path it moves wait for it (bounded), since
 * the origin may have moved before the entries say so. */
void fs_ov_applying(struct fs_ov *ov, const struct cache_jnl_op *op);
/* The operation seq on path/path2 reached the origin: renames settle their
 * origin paths, deletions are forgotten, directories become the origin's. */
/* shown(arg, path): whether the origin's listing shows path now (an entry
 * the origin does not list, e.g. a dot-folder nginx hides, stays). */
void fs_ov_applied(struct fs_ov *ov, uint64_t seq,
                   const struct cache_jnl_op *op,
                   bool (*shown)(void *arg, const char *path), void *arg);
/* A WRITE reached the origin as attr: once nothing newer is pending for the
 * path, its entry may go (the origin listing shows attr). */
void fs_ov_uploaded(struct fs_ov *ov, const char *path, uint64_t file_id,
                    const struct xfer_attr *attr);
/* Drops the entry of path if it is an uploaded file the origin listing now
 * shows as listed (size and mtime match). */
void fs_ov_settle(struct fs_ov *ov, const char *path,
                  const struct xfer_attr *listed);
size_t fs_ov_count(struct fs_ov *ov);

#endif
