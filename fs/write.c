/* The FUSE operations that change a writable export: thin glue over the
 * pending namespace (overlay.c) and the uploader (writeback.c).  Every
 * change is checked (export writable: else EROFS; rules w i d n), applied
 * to the overlay and journalled, and the uploader is woken. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <linux/fs.h>

#include "common/log.h"
#include "fs/ops_i.h"

#define COPY_CHUNK (1u << 20)

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static bool name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= 255 && !strchr(name, '/') && strcmp(name, ".") &&
	       strcmp(name, "..");
}

/* The path of name in parent, checked: writable export, caller's want. */
static int child_path(struct fs *fs, fuse_req_t req, fuse_ino_t parent,
                      const char *name, unsigned want, struct fs_caller *c,
                      char **out)
{
	struct fs_route r;
	char *dir = NULL, *path = NULL;
	int rc;

	*out = NULL;
	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	/* A name of the form of dmsfs's upload temporaries would be hidden
	 * from listings once uploaded. */
	if (!name_ok(name) || xfer_is_upload_temp(name))
		return -EINVAL;
	rc = fs_checked_path(fs, req, parent, 0, c, &dir);
	if (rc)
		return rc;
	path = fs_path_join(dir, name);
	free(dir);
	if (!path)
		return -ENOMEM;
	if (strlen(path) > 4095) {
		free(path);
		return -ENAMETOOLONG;
	}
	rc = fs_writable_route(fs, path, &r);
	if (rc == 0 && !strcmp(r.inner, "/"))
		rc = -EPERM;
	if (rc == 0)
		rc = fs_access_check(fs->access, c, path, want);
	if (rc) {
		free(path);
		return rc;
	}
	*out = path;
	return 0;
}

struct fill_arg {
	struct fs *fs;
	struct fs_file *f;
};

/* Copies the origin's file into a staged file, through the block cache. */
static int fill_from_origin(void *arg, struct cache_jnl *j, uint64_t id)
{
	struct fill_arg *a = arg;
	uint64_t off = 0, size = a->f->attr.size;
	int rc = 0;

	while (off < size) {
		size_t len = size - off < COPY_CHUNK ? (size_t)(size - off)
		                                     : COPY_CHUNK;
		struct fs_pin pin;
		unsigned i;
		uint64_t o = off;

		rc = fs_blocks_pin(a->fs->blocks, a->f, off, len, &pin);
		if (rc)
			break;
		for (i = 0; i < pin.n && rc == 0; i++) {
			rc = cache_jnl_pwrite(j, id, pin.iov[i].iov_base,
			                      pin.iov[i].iov_len, o);
			o += pin.iov[i].iov_len;
		}
		fs_blocks_unpin(a->fs->blocks, &pin);
		if (rc)
			break;
		off += len;
	}
	if (rc)
		dms_log(LOG_ERR, "cannot copy %s for writing: %s", a->f->path,
		        strerror(-rc));
	return rc;
}

int fs_write_open(struct fs *fs, fuse_req_t req, const char *path,
                  const struct fs_caller *c, struct fuse_file_info *fi,
                  bool create, mode_t mode, struct fs_handle **out)
{
	struct fs_ov_info in;
	struct fs_handle *h = calloc(1, sizeof(*h));
	struct xfer_attr base;
	struct fill_arg fa = { fs, NULL };
	bool have_base = false;
	int rc;

	(void)req;
	if (!h)
		return -ENOMEM;
	rc = fs_ov_stat(fs->ov, path, &in);
	if (rc == 0 && in.file) {
		fs_ov_file_put(fs->ov, in.file);
	} else if (rc == 0 && in.is_dir) {
		rc = -EISDIR;
		goto out;
	} else if (rc == 0 && in.origin[0]) {
		struct fs_route r;

		rc = fs_path_attr(fs, path, &base);
		if (rc == 0 && (base.mode & S_IFMT) == S_IFDIR)
			rc = -EISDIR;
		if (rc == 0)
			rc = fs_exports_route(fs->exports, in.origin, &r);
		if (rc == 0) {
			fa.f = fs_file_new(in.origin, &r, &base,
			                   fs->cfg->block_size);
			if (!fa.f)
				rc = -ENOMEM;
		}
		if (rc == 0)
			have_base = true;
		else if (rc != -ENOENT)
			goto out;
	}
	rc = fs_ov_open_write(fs->ov, path, create, create &&
	                      (fi->flags & O_EXCL), (fi->flags & O_TRUNC) != 0,
	                      mode & 07777, c->ac.uid, c->ac.gid,
	                      have_base ? &base : NULL, fill_from_origin, &fa,
	                      &h->ovf);
	if (rc)
		goto out;
	pthread_mutex_init(&h->lock, NULL);
	h->ov = fs->ov;
	h->writing = true;
	h->append = (fi->flags & O_APPEND) != 0;
	*out = h;
	h = NULL;
out:
	if (fa.f)
		fs_file_put(fa.f);
	free(h);
	return rc;
}

void fs_write_read(struct fs *fs, fuse_req_t req, struct fs_handle *h,
                   size_t size, off_t off)
{
	char *buf = malloc(size ? size : 1);
	ssize_t n;

	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = fs_ov_pread(fs->ov, h->ovf, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

void fs_write_release(struct fs *fs, struct fs_handle *h)
{
	int rc = fs_ov_close_write(fs->ov, h->ovf, false);

	if (rc)
		dms_log(LOG_ERR, "cannot record the write of a file: %s",
		        strerror(-rc));
	h->writing = false;
	fs_wb_kick(fs->wb);
}

static void reply_entry(fuse_req_t req, struct fs *fs, const char *path,
                        struct fuse_file_info *fi, struct fs_handle *h)
{
	struct fuse_entry_param e;
	struct xfer_attr a;
	uint64_t ino;
	int rc = fs_path_attr(fs, path, &a);

	if (rc == 0)
		rc = fs_inodes_lookup_path(fs, path, &a, &ino);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fs_fill_entry(fs, ino, path, &a, &e);
	if (h)
		h->ino = ino;
	if (fi) {
		if (fuse_reply_create(req, &e, fi) != 0)
			fs_inodes_forget_one(fs, ino);
	} else if (fuse_reply_entry(req, &e) != 0) {
		fs_inodes_forget_one(fs, ino);
	}
}

/* The mode table (cache/modes.c) follows the namespace: a new name made
 * with the default mode needs no entry (and loses any stale one), another
 * mode is kept, as chmod's is, where the origin cannot keep it. */
static void keep_new_mode(struct fs *fs, const char *path, mode_t mode,
                          bool dir)
{
	if (!fs->modes)
		return;
	if ((mode & 07777) == (dir ? 0755u : 0644u))
		cache_modes_remove(fs->modes, path);
	else if (cache_modes_set(fs->modes, path, mode & 07777) != 0)
		dms_log(LOG_ERR, "the mode of %s is pending only", path);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                      mode_t mode, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = NULL;
	struct fs_caller c;
	char *path = NULL;
	int rc = child_path(fs, req, parent, name, ACL_INSERT, &c, &path);

	struct xfer_attr a;
	bool fresh = rc == 0 && fs_path_attr(fs, path, &a) != 0;

	if (rc == 0)
		rc = fs_write_open(fs, req, path, &c, fi, true, mode, &h);
	if (rc) {
		fuse_reply_err(req, -rc);
		goto out;
	}
	if (fresh)
		keep_new_mode(fs, path, mode, false);
	fi->fh = (uintptr_t)h;
	fi->keep_cache = 0;
	fi->direct_io = 1;
	fs_handle_link(fs, &h->open, fs_file_handle_free);
	reply_entry(req, fs, path, fi, h);
out:
	free(path);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
                     size_t size, off_t off, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct xfer_attr a;
	int rc;

	(void)ino;
	if (!h->writing || !h->ovf) {
		fuse_reply_err(req, EBADF);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->append) {
		fs_ov_file_attr(fs->ov, h->ovf, &a);
		off = (off_t)a.size;
	}
	rc = fs_ov_pwrite(fs->ov, h->ovf, buf, size, (uint64_t)off);
	pthread_mutex_unlock(&h->lock);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

/* The origin keeps no owners: chown is EPERM, except to the owner and
 * group already shown (tar and cp -p as root set them on every file). */
static int same_owner(struct fs *fs, fuse_ino_t ino, const char *path,
                      const struct stat *want, int to_set)
{
	struct fuse_entry_param e;
	struct xfer_attr a;
	int rc = fs_path_attr(fs, path, &a);

	if (rc)
		return rc;
	fs_fill_entry(fs, ino, path, &a, &e);
	if (((to_set & FUSE_SET_ATTR_UID) && want->st_uid != e.attr.st_uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && want->st_gid != e.attr.st_gid))
		return -EPERM;
	return 0;
}

/* Whether path's content is pending here: an mtime then goes with its next
 * WRITE (fs_ov_setattr) without copying the file (tar -x sets one on
 * every file it makes). */
static bool pending_file(struct fs *fs, const char *path)
{
	struct fs_ov_info in;

	if (fs_ov_stat(fs->ov, path, &in) != 0 || !in.file)
		return false;
	fs_ov_file_put(fs->ov, in.file);
	return true;
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *st,
                       int to_set, struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = fi ? (struct fs_handle *)(uintptr_t)fi->fh : NULL;
	struct fs_handle *own = NULL;
	struct fs_caller c;
	struct fs_route r;
	struct stat out;
	struct xfer_attr a;
	char *path = NULL;
	uint32_t mode = UINT32_MAX;
	int64_t mtime = INT64_MIN;
	int rc = 0;

	if (to_set & FUSE_SET_ATTR_MODE)
		mode = st->st_mode & 07777;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		mtime = (int64_t)time(NULL);
	else if (to_set & FUSE_SET_ATTR_MTIME)
		mtime = (int64_t)st->st_mtime;
	if (h && h->ovf) {
		/* Through an open handle: the file itself, even once its
		 * name is gone (unlinked or renamed over). */
		path = fs_ov_file_path(fs->ov, h->ovf);
		if (!path) {
			if (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))
				rc = -EPERM;
			if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE))
				rc = fs_ov_truncate(fs->ov, h->ovf,
				                    (uint64_t)st->st_size);
			if (rc == 0)
				fs_ov_file_set(fs->ov, h->ovf, mode, mtime);
			if (rc == 0) {
				struct fuse_entry_param e;

				fs_ov_file_attr(fs->ov, h->ovf, &a);
				fs_fill_entry(fs, ino, NULL, &a, &e);
				out = e.attr;
			}
			goto out;
		}
		rc = fs_access_caller(fs->access, req, &c);
	} else {
		rc = fs_checked_path(fs, req, ino, ACL_WRITE, &c, &path);
	}
	if (rc == 0)
		rc = fs_writable_route(fs, path, &r);
	if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		rc = same_owner(fs, ino, path, st, to_set);
	if (rc)
		goto out;
	/* An mtime goes to the origin with the content (WebDAV can set it
	 * only on a PUT): an origin file is copied for it like for a write. */
	if (to_set & (FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_MTIME |
	              FUSE_SET_ATTR_MTIME_NOW)) {
		struct xfer_attr cur;

		rc = fs_path_attr(fs, path, &cur);
		if (rc)
			goto out;
		if ((cur.mode & S_IFMT) == S_IFDIR &&
		    (to_set & FUSE_SET_ATTR_SIZE)) {
			rc = -EISDIR;
			goto out;
		}
		if ((cur.mode & S_IFMT) != S_IFDIR && !(h && h->ovf) &&
		    ((to_set & FUSE_SET_ATTR_SIZE) || !pending_file(fs, path))) {
			struct fuse_file_info tfi = { .flags = O_WRONLY };

			rc = fs_write_open(fs, req, path, &c, &tfi, false, 0, &own);
			if (rc)
				goto out;
		}
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		struct fs_ov_file *f = h && h->ovf ? h->ovf : own ? own->ovf : NULL;

		if (!f) {
			struct fuse_file_info tfi = { .flags = O_WRONLY };

			rc = fs_write_open(fs, req, path, &c, &tfi, false, 0, &own);
			if (rc)
				goto out;
			f = own->ovf;
		}
		rc = fs_ov_truncate(fs->ov, f, (uint64_t)st->st_size);
		if (rc)
			goto out;
	}
	if (mode != UINT32_MAX || mtime != INT64_MIN) {
		rc = fs_ov_setattr(fs->ov, path, h && h->ovf ? h->ovf
		                   : own ? own->ovf : NULL, mode, mtime,
		                   c.ac.uid, c.ac.gid);
		if (rc == 0 && mode != UINT32_MAX && fs->modes)
			rc = cache_modes_set(fs->modes, path, mode);
		if (rc)
			goto out;
	}
	rc = fs_path_attr(fs, path, &a);
	if (rc)
		goto out;
	{
		struct fuse_entry_param e;

		fs_fill_entry(fs, ino, path, &a, &e);
		out = e.attr;
	}
out:
	if (own) {
		fs_write_release(fs, own);
		fs_file_handle_free(&own->open);
	}
	if (rc)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &out, fs_kernel_ttl(fs, path));
	free(path);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode)
{
	struct fs *fs = req_fs(req);
	struct fs_caller c;
	struct xfer_attr a;
	char *path = NULL;
	int rc = child_path(fs, req, parent, name, ACL_INSERT, &c, &path);

	if (rc == 0 && fs_path_attr(fs, path, &a) == 0)
		rc = -EEXIST;
	if (rc == 0)
		rc = fs_ov_mkdir(fs->ov, path, mode, c.ac.uid, c.ac.gid);
	if (rc == 0)
		keep_new_mode(fs, path, mode, true);
	if (rc)
		fuse_reply_err(req, -rc);
	else
		reply_entry(req, fs, path, NULL, NULL);
	fs_wb_kick(fs->wb);
	free(path);
}

/* The origin listing behind directory path, or NULL. */
static int origin_listing(struct fs *fs, const char *path, struct fs_dir **d)
{
	struct fs_ov_info in;
	int rc = fs_ov_stat(fs->ov, path, &in);

	*d = NULL;
	if (in.file)
		fs_ov_file_put(fs->ov, in.file);
	if (rc || !in.origin[0])
		return rc;
	rc = fs_meta_dir(fs->meta, in.origin, d);
	return rc == -ENOENT && in.pending ? 0 : rc;
}

static void op_unlink_rmdir(fuse_req_t req, fuse_ino_t parent,
                            const char *name, bool dir)
{
	struct fs *fs = req_fs(req);
	struct fs_ov_info in;
	struct fs_caller c;
	struct fs_dir *d = NULL;
	struct xfer_attr a;
	char *path = NULL;
	int rc = child_path(fs, req, parent, name, ACL_DELETE, &c, &path);

	if (rc == 0)
		rc = fs_path_attr(fs, path, &a);
	if (rc == 0 && dir && (a.mode & S_IFMT) != S_IFDIR)
		rc = -ENOTDIR;
	if (rc == 0 && !dir && (a.mode & S_IFMT) == S_IFDIR)
		rc = -EISDIR;
	if (rc == 0 && dir)
		rc = origin_listing(fs, path, &d);
	if (rc == 0 && dir)
		rc = fs_ov_rmdir(fs->ov, path, d, c.ac.uid, c.ac.gid);
	else if (rc == 0) {
		memset(&in, 0, sizeof(in));
		rc = fs_ov_unlink(fs->ov, path, &in, &a, c.ac.uid, c.ac.gid);
	}
	if (rc == 0 && fs->modes)
		cache_modes_remove(fs->modes, path);
	if (rc == 0)
		fs_inodes_gone(fs->inodes, path);
	fs_dir_put(d);
	fuse_reply_err(req, -rc);
	fs_wb_kick(fs->wb);
	free(path);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	op_unlink_rmdir(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	op_unlink_rmdir(req, parent, name, true);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                      fuse_ino_t newparent, const char *newname,
                      unsigned int flags)
{
	struct fs *fs = req_fs(req);
	struct fs_caller c;
	struct fs_route r1, r2;
	struct fs_dir *d = NULL;
	struct xfer_attr a, b;
	char *from = NULL, *to = NULL;
	bool to_exists = false;
	int rc;

	if (flags & ~(unsigned)RENAME_NOREPLACE) {
		rc = -EINVAL;
		goto out;
	}
	rc = child_path(fs, req, parent, name, ACL_RENAME, &c, &from);
	if (rc == 0)
		rc = child_path(fs, req, newparent, newname, ACL_INSERT, &c, &to);
	if (rc)
		goto out;
	if (fs_exports_route(fs->exports, from, &r1) != 0 ||
	    fs_exports_route(fs->exports, to, &r2) != 0 || r1.xfer != r2.xfer) {
		rc = -EXDEV;
		goto out;
	}
	rc = fs_path_attr(fs, from, &a);
	if (rc)
		goto out;
	if (!strcmp(from, to))
		goto out;
	{
		size_t lf = strlen(from);

		if (!strncmp(to, from, lf) && to[lf] == '/') {
			rc = -EINVAL;
			goto out;
		}
	}
	if (fs_path_attr(fs, to, &b) == 0) {
		to_exists = true;
		if (flags & RENAME_NOREPLACE)
			rc = -EEXIST;
		else if ((a.mode & S_IFMT) == S_IFDIR &&
		         (b.mode & S_IFMT) != S_IFDIR)
			rc = -ENOTDIR;
		else if ((a.mode & S_IFMT) != S_IFDIR &&
		         (b.mode & S_IFMT) == S_IFDIR)
			rc = -EISDIR;
		else if ((b.mode & S_IFMT) == S_IFDIR) {
			struct fs_dir *m = NULL;

			rc = origin_listing(fs, to, &d);
			if (rc == 0)
				rc = fs_ov_merge(fs->ov, to, d, 0, &m);
			if (rc == 0 && m->count)
				rc = -ENOTEMPTY;
			fs_dir_put(m);
		}
		if (rc == 0)
			rc = fs_access_check(fs->access, &c, to, ACL_DELETE);
		if (rc)
			goto out;
	}
	rc = fs_ov_rename(fs->ov, from, to, (a.mode & S_IFMT) == S_IFDIR,
	                  to_exists, c.ac.uid, c.ac.gid);
	if (rc == 0 && fs->modes)
		cache_modes_rename(fs->modes, from, to);
	if (rc == 0)
		fs_inodes_rename(fs->inodes, from, to);
out:
	fs_dir_put(d);
	fuse_reply_err(req, -rc);
	fs_wb_kick(fs->wb);
	free(from);
	free(to);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
                     struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	int rc = 0;

	(void)ino;
	(void)datasync;
	if (h->ovf)
		rc = fs_ov_fsync(fs->ov, h->ovf);
	else if (fs->jnl)
		rc = cache_jnl_sync(fs->jnl);
	if (rc == 0 && fs->modes)
		rc = cache_modes_sync(fs->modes);
	fuse_reply_err(req, -rc);
	fs_wb_kick(fs->wb);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
                        struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	int rc = fs->jnl ? cache_jnl_sync(fs->jnl) : 0;

	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, -rc);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                       const char *name)
{
	(void)link;
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                    const char *newname)
{
	(void)ino;
	(void)newparent;
	(void)newname;
	fuse_reply_err(req, EPERM);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
                     mode_t mode, dev_t rdev)
{
	(void)parent;
	(void)name;
	(void)mode;
	(void)rdev;
	fuse_reply_err(req, EPERM);
}

void fs_write_ops(struct fuse_lowlevel_ops *ops)
{
	ops->create = op_create;
	ops->write = op_write;
	ops->setattr = op_setattr;
	ops->mkdir = op_mkdir;
	ops->unlink = op_unlink;
	ops->rmdir = op_rmdir;
	ops->rename = op_rename;
	ops->fsync = op_fsync;
	ops->fsyncdir = op_fsyncdir;
	ops->flush = op_flush;
	ops->symlink = op_symlink;
	ops->link = op_link;
	ops->mknod = op_mknod;
}
