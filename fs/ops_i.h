#ifndef DMS_FS_OPS_I_H
#define DMS_FS_OPS_I_H
/* Private to the FUSE front end: ops.c (reads, life cycle) and write.c
 * (writes).  The write path's core is FUSE-free: overlay.c, writeback.c. */
#include "fs/fs_i.h"
#include "fs/overlay.h"
#include "fs/writeback.h"
#include "fs/ctl.h"

struct fs {
	const struct fs_config *cfg;
	struct cache *cache;
	struct fs_exports *exports;
	struct fs_access *access;   /* NULL: no access rules */
	struct fs_meta *meta;
	struct fs_blocks *blocks;
	struct fs_prefetch *pf;     /* NULL: no folder prefetch */
	struct fs_inodes *inodes;
	struct fuse_session *se;
	int64_t started;            /* mtime of made-up directories */
	/* Open files, freed at unmount if the kernel's RELEASE did not come
	 * before the session ended (it is sent asynchronously). */
	pthread_mutex_t handles_lock;
	struct fs_open *handles;    /* guarded by handles_lock */
	struct cache_jnl *jnl;      /* NULL: nothing writable */
	struct cache_modes *modes;  /* chmod'ed modes; NULL with jnl */
	struct fs_ov *ov;
	struct fs_wb *wb;
	struct fs_ctl *ctl;         /* NULL: no control socket */
	struct fs_pins *pins;       /* dmsctl pin (fs/pin.c) */
	struct fs_metrics *metrics; /* metrics_file writer; NULL: none */
	/* The mount's backing device ("MAJ:MIN"; "" if unknown) and whether
	 * its read-ahead window was set (once, at the first open). */
	char bdi[32];
	atomic_bool bdi_tuned;
};

/* What every open file and directory starts with, so that those still
 * open when the session ends can be found and freed. */
struct fs_open {
	struct fs_open *prev, *next;    /* fs.handles; guarded by handles_lock */
	void (*free)(struct fs_open *o);
};

/* One open file.  Read-ahead state is per handle: a sequential reader gets a
 * window that doubles up to cfg->readahead; a random reader gets none, so it
 * pays only for the blocks it touches. */
struct fs_handle {
	struct fs_open open;            /* first */
	struct fs_file *file;
	pthread_mutex_t lock;
	uint64_t next_off;   /* where a sequential reader reads next; guarded by lock */
	uint64_t ra_next;    /* first block not yet queued for read-ahead; guarded by lock */
	uint64_t window;     /* read-ahead window in blocks; guarded by lock */
	struct fs_ov *ov;
	struct fs_ov_file *ovf; /* pending content (file is then NULL) */
	bool writing;        /* opened for writing */
	bool append;         /* O_APPEND */
	uint64_t ino;        /* the kernel's inode of the open file */
	struct fs_ov_reader *reader; /* reads the origin's file->path */
	bool wrote;
};

/* One open directory: the listing as it was at opendir, so that offsets
 * stay valid while the directory is read. */
struct fs_dirh {
	struct fs_open open;            /* first */
	struct fs_dir *dir;
	char path[];
};


void fs_handle_link(struct fs *fs, struct fs_open *o,
                    void (*free_fn)(struct fs_open *o));
void fs_handle_unlink(struct fs *fs, struct fs_open *o);
void fs_file_handle_free(struct fs_open *o);
/* The path of ino after checking the caller's rights (0: may see it). */
int fs_checked_path(struct fs *fs, fuse_req_t req, uint64_t ino,
                    unsigned want, struct fs_caller *c, char **path);
/* Attributes of path (overlay, then origin), as child_attr. */
int fs_path_attr(struct fs *fs, const char *path, struct xfer_attr *attr);
/* How long the kernel may keep path's entry and attributes (seconds). */
double fs_kernel_ttl(struct fs *fs, const char *path);
void fs_fill_entry(struct fs *fs, uint64_t ino, const char *path,
                   const struct xfer_attr *a, struct fuse_entry_param *e);
/* The route of path if it is in a writable export: 0, -EROFS otherwise. */
int fs_writable_route(struct fs *fs, const char *path, struct fs_route *r);
/* Opens a writable handle (open/create). */
int fs_write_open(struct fs *fs, fuse_req_t req, const char *path,
                  const struct fs_caller *c, struct fuse_file_info *fi,
                  bool create, mode_t mode, struct fs_handle **out);

int fs_inodes_lookup_path(struct fs *fs, const char *path,
                          const struct xfer_attr *a, uint64_t *ino);
void fs_inodes_forget_one(struct fs *fs, uint64_t ino);
void fs_write_read(struct fs *fs, fuse_req_t req, struct fs_handle *h,
                   size_t size, off_t off);
void fs_write_release(struct fs *fs, struct fs_handle *h);

/* status.c: the control socket's "info" lines (fs_ctl_info_fn); arg is
 * the struct fs. */
void fs_status_info(void *arg, FILE *out);

/* evict.c: drops the blocks of f (at path in the mount) from memory and the
 * cache, and the kernel's pages at its next open; *freed: cache bytes
 * freed.  -EBUSY if f is
 * pinned (nothing dropped); else 0 or -errno. */
int fs_evict_file(struct fs *fs, const char *path, struct fs_file *f,
                  uint64_t *freed);

/* reload.c: the control socket's "reload" answer (fs_ctl_reload_fn); arg
 * is the struct fs. */
void fs_reload(void *arg, FILE *out);

/* xattr.c: the read-only user.dmsfs.* attributes. */
void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                    size_t size);
void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size);
void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                    const char *value, size_t size, int flags);
void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name);

extern const struct fuse_lowlevel_ops fs_ops;
void fs_write_ops(struct fuse_lowlevel_ops *ops);

#endif
