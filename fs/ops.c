/* The FUSE low-level operations and the mount's life cycle.
 *
 * Kernel caching: entries and attributes are given a timeout of meta_ttl, so
 * the kernel asks again once dmsfs would revalidate.  Pages are kept across
 * opens (keep_cache) unless the file's size, mtime or ETag changed since the
 * kernel last saw it. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "fs/metrics.h"
#include "fs/ops_i.h"
#include "fs/pin.h"

static void handle_link(struct fs *fs, struct fs_open *o,
                        void (*free_fn)(struct fs_open *o))
{
	o->free = free_fn;
	pthread_mutex_lock(&fs->handles_lock);
	o->prev = NULL;
	o->next = fs->handles;
	if (o->next)
		o->next->prev = o;
	fs->handles = o;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void handle_unlink(struct fs *fs, struct fs_open *o)
{
	pthread_mutex_lock(&fs->handles_lock);
	if (o->prev)
		o->prev->next = o->next;
	else
		fs->handles = o->next;
	if (o->next)
		o->next->prev = o->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void file_handle_free(struct fs_open *o)
{
	struct fs_handle *h = (struct fs_handle *)o;

	if (h->reader)
		fs_ov_reader_del(h->ov, h->reader);
	if (h->file)
		fs_file_put(h->file);
	if (h->ovf)
		fs_ov_file_put(h->ov, h->ovf);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static void dir_handle_free(struct fs_open *o)
{
	struct fs_dirh *h = (struct fs_dirh *)o;

	fs_dir_put(h->dir);
	free(h);
}

void fs_handle_link(struct fs *fs, struct fs_open *o,
                    void (*free_fn)(struct fs_open *o))
{
	handle_link(fs, o, free_fn);
}

void fs_handle_unlink(struct fs *fs, struct fs_open *o)
{
	handle_unlink(fs, o);
}

void fs_file_handle_free(struct fs_open *o)
{
	file_handle_free(o);
}

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int64_t wall_now(void)
{
	return (int64_t)time(NULL);
}

/* Owner and permission bits: a per-user export's files are its user's;
 * writable exports show the mode bits dmsfs keeps (or 0644/0755). */
static void owner_mode(struct fs *fs, const char *path,
                       const struct xfer_attr *a, struct stat *st)
{
	struct fs_route r;
	bool dir = (a->mode & S_IFMT) == S_IFDIR;

	if (!path || fs_exports_route(fs->exports, path, &r) != 0 ||
	    r.kind != FS_ROUTE_SOURCE)
		return;
	if (r.user) {
		char buf[4096];
		struct passwd pw, *res = NULL;

		if (getpwnam_r(r.user, &pw, buf, sizeof(buf), &res) == 0 && res) {
			st->st_uid = pw.pw_uid;
			st->st_gid = pw.pw_gid;
		}
	}
	if (r.writable) {
		uint32_t kept;

		/* What chmod set wins: the origin may not keep it. */
		if (fs->modes && cache_modes_get(fs->modes, path, &kept) == 0)
			st->st_mode = (st->st_mode & S_IFMT) | kept;
		else
			st->st_mode = (st->st_mode & S_IFMT) | ((a->mode & 07777)
			              ? (a->mode & 07777) : dir ? 0755 : 0644);
	}
}

static void fill_stat(struct fs *fs, uint64_t ino, const char *path,
                      const struct xfer_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if ((a->mode & S_IFMT) == S_IFDIR) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)a->size;
		st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	}
	st->st_blksize = (blksize_t)fs->cfg->block_size;
	st->st_mtime = st->st_ctime = st->st_atime = (time_t)a->mtime;
	owner_mode(fs, path, a, st);
}

static void virtual_attr(const struct fs *fs, struct xfer_attr *a)
{
	memset(a, 0, sizeof(*a));
	a->mode = S_IFDIR;
	a->mtime = fs->started;
}

static int child_attr(struct fs *fs, const char *dir, const char *name,
                      const char *path, struct xfer_attr *attr,
                      int64_t *validated);

/* The origin's attributes of path (a mount path). */
/* nginx's WebDAV listings leave out every name starting with '.' (its
 * dav_ext module skips them) though it serves them: a dot name missing from
 * its folder's listing is asked for by itself, so .zattrs, .bashrc and the
 * like open by name.  They still do not show in listings.  Upload
 * temporaries are never looked for. */
static int unlisted_attr(struct fs *fs, const char *path,
                         struct xfer_attr *attr)
{
	const char *name = fs_path_base(path);
	struct fs_route r;
	int rc;

	if (name[0] != '.' || xfer_is_upload_temp(name))
		return -ENOENT;
	rc = fs_exports_route(fs->exports, path, &r);
	if (rc == 0 && (r.kind != FS_ROUTE_SOURCE || !strcmp(r.inner, "/")))
		rc = -ENOENT;
	if (rc == 0)
		rc = xfer_stat(r.xfer, r.inner, attr);
	/* As for listings: no answer in time is EIO (README). */
	return rc == -EHOSTDOWN || rc == -ETIMEDOUT ? -EIO : rc;
}

static int origin_attr(struct fs *fs, const char *path, struct xfer_attr *attr)
{
	struct fs_dir *d = NULL;
	const struct fs_dirent *e;
	char *parent = fs_path_parent(path);
	int rc;

	if (!parent)
		return -ENOMEM;
	if (strcmp(path, parent) == 0 || fs_exports_route(fs->exports, parent,
	    &(struct fs_route){ 0 }) != 0) {
		rc = -ENOENT;
		goto out;
	}
	rc = fs_meta_dir(fs->meta, parent, &d);
	if (rc)
		goto out;
	e = fs_dir_find(d, fs_path_base(path));
	if (e)
		*attr = e->attr;
	else
		rc = unlisted_attr(fs, path, attr);
out:
	fs_dir_put(d);
	free(parent);
	return rc;
}

/* The attributes of path in a writable export: the overlay's, else the
 * origin's at the path the overlay maps it to. */
static int overlay_attr(struct fs *fs, const char *path, struct xfer_attr *attr)
{
	struct fs_ov_info in;
	struct fs_route r;
	int rc = fs_ov_stat(fs->ov, path, &in);

	if (rc)
		return rc;
	if (in.file) {
		fs_ov_file_attr(fs->ov, in.file, attr);
		fs_ov_file_put(fs->ov, in.file);
		return 0;
	}
	if (in.have_attr) {
		*attr = in.attr;
	} else if (fs_exports_route(fs->exports, in.origin, &r) == 0 &&
	           r.kind == FS_ROUTE_SOURCE && !strcmp(r.inner, "/")) {
		/* The export's root (a user's home): always there. */
		memset(attr, 0, sizeof(*attr));
		attr->mode = S_IFDIR;
		attr->mtime = fs->started;
	} else {
		rc = origin_attr(fs, in.origin, attr);
		if (rc)
			return rc;
	}
	if (in.mode)
		attr->mode = (attr->mode & S_IFMT) | (in.mode & 07777);
	return 0;
}

int fs_path_attr(struct fs *fs, const char *path, struct xfer_attr *attr)
{
	struct fs_route r;
	char *parent = fs_path_parent(path);
	int64_t validated;
	int rc;

	if (!parent)
		return -ENOMEM;
	if (!strcmp(path, "/")) {
		virtual_attr(fs, attr);
		rc = 0;
	} else if (fs_exports_route(fs->exports, path, &r) == 0 &&
	           r.kind == FS_ROUTE_SOURCE && r.writable && fs->ov) {
		rc = overlay_attr(fs, path, attr);
	} else {
		rc = child_attr(fs, parent, fs_path_base(path), path, attr,
		                &validated);
	}
	free(parent);
	return rc;
}

/* The attributes of name in directory dir (whose full path is path), from
 * the sources' listing or from the exports.  *validated: when they were
 * known to be right. */
static int child_attr(struct fs *fs, const char *dir, const char *name,
                      const char *path, struct xfer_attr *attr,
                      int64_t *validated)
{
	struct fs_dir *d = NULL;
	const struct fs_dirent *e;
	struct fs_route r;
	int rc = fs_exports_route(fs->exports, dir, &r);

	*validated = wall_now();
	if (rc)
		goto out;
	switch (r.kind) {
	case FS_ROUTE_SOURCE:
		if (r.writable && fs->ov) {
			rc = overlay_attr(fs, path, attr);
			goto out;
		}
		rc = fs_meta_dir(fs->meta, dir, &d);
		if (rc)
			goto out;
		e = fs_dir_find(d, name);
		if (!e) {
			rc = unlisted_attr(fs, path, attr);
			goto out;
		}
		*attr = e->attr;
		*validated = d->validated;
		break;
	case FS_ROUTE_VIRTUAL:
	case FS_ROUTE_USERS:
		/* Made-up directories: any export path or valid user name. */
		rc = fs_exports_route(fs->exports, path, &r);
		if (rc == 0)
			virtual_attr(fs, attr);
		break;
	}
out:
	fs_dir_put(d);
	return rc;
}

static bool writable(struct fs *fs, const char *path)
{
	struct fs_route r;

	return fs->ov && fs_exports_route(fs->exports, path, &r) == 0 &&
	       r.kind == FS_ROUTE_SOURCE && r.writable;
}

int fs_writable_route(struct fs *fs, const char *path, struct fs_route *r)
{
	int rc = fs_exports_route(fs->exports, path, r);

	if (rc == 0 && (r->kind != FS_ROUTE_SOURCE || !r->writable || !fs->ov))
		rc = -EROFS;
	return rc;
}

/* Brings the attributes of ino up to date when older than meta_ttl, from its
 * parent's listing.  Copies path (if asked; caller frees) and attr out. */
static int node_attr(struct fs *fs, uint64_t ino, char **path_out,
                     struct xfer_attr *attr)
{
	char *path = NULL, *parent = NULL;
	int64_t validated, now = wall_now();
	int rc;

	rc = fs_inodes_get(fs->inodes, ino, &path, attr, &validated);
	if (rc)
		goto out;
	if (ino == FUSE_ROOT_ID ||
	    (now - validated < (int64_t)fs->cfg->meta_ttl && !writable(fs, path)))
		goto out;
	parent = fs_path_parent(path);
	if (!parent) {
		rc = -ENOMEM;
		goto out;
	}
	rc = child_attr(fs, parent, fs_path_base(path), path, attr, &validated);
	if (rc == 0)
		fs_inodes_update(fs->inodes, ino, attr, validated);
out:
	free(parent);
	if (rc == 0 && path_out) {
		*path_out = path;
		path = NULL;
	}
	free(path);
	return rc;
}

/* How long the kernel may keep path's entry and attributes.  Its caches
 * are shared by all users, so where access rules make rights depend on who
 * asks, not at all: every lookup and stat then comes here to be checked.
 * Writable exports get meta_ttl too: what this mount changes goes through
 * the kernel, which updates or drops its copy itself (create, write,
 * setattr, rename, unlink), and what the uploader changes behind it (an
 * upload settled, a conflict) is invalidated by wb_changed; an origin-side
 * change is seen within meta_ttl as on read-only exports.  Pending bytes
 * never reach the kernel's page cache (direct_io), so no user sees
 * another's from there. */
static double kernel_ttl(struct fs *fs, const char *path)
{
	if (!path)
		return 0;
	return fs_access_uniform(fs->access, path) ? fs->cfg->meta_ttl : 0;
}

double fs_kernel_ttl(struct fs *fs, const char *path)
{
	return kernel_ttl(fs, path);
}

static void fill_entry(struct fs *fs, uint64_t ino, const char *path,
                       const struct xfer_attr *a, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = 1;
	e->entry_timeout = kernel_ttl(fs, path);
	/* Not the attributes of an entry reply in a writable export: the
	 * randomised differential test (DMSFS_SEED=12) saw a size kept from
	 * one that a later truncate of another name changed; a GETATTR's
	 * are kept (see kernel_ttl). */
	e->attr_timeout = path && writable(fs, path) ? 0 : e->entry_timeout;
	fill_stat(fs, ino, path, a, &e->attr);
}

void fs_fill_entry(struct fs *fs, uint64_t ino, const char *path,
                   const struct xfer_attr *a, struct fuse_entry_param *e)
{
	fill_entry(fs, ino, path, a, e);
}

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct fs *fs = userdata;

	/* With access rules, attributes of caller-dependent paths expire at
	 * once, and automatic invalidation would then ask for them before
	 * every read(); a changed file's pages are dropped at open instead
	 * (keep_cache), which is all the URL form needs too after meta_ttl. */
	if (fs->access)
		conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
	else if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	struct fuse_entry_param e;
	struct xfer_attr attr;
	struct fs_caller c;
	char *dir = NULL, *path = NULL;
	int64_t validated;
	uint64_t ino;
	int rc;

	if (strlen(name) > 255) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	rc = fs_access_caller(fs->access, req, &c);
	if (rc)
		goto out;
	rc = fs_inodes_get(fs->inodes, parent, &dir, NULL, NULL);
	if (rc)
		goto out;
	path = fs_path_join(dir, name);
	if (!path) {
		rc = -ENOMEM;
		goto out;
	}
	/* Rights before existence: the answer must not tell whether a name
	 * the caller may not see exists. */
	rc = fs_access_check(fs->access, &c, path, 0);
	if (rc)
		goto out;
	rc = child_attr(fs, dir, name, path, &attr, &validated);
	if (rc == -ENOENT) {
		/* A negative entry: the kernel remembers the miss. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = kernel_ttl(fs, path);
		fuse_reply_entry(req, &e);
		rc = 0;
		goto out;
	}
	if (rc)
		goto out;
	rc = fs_inodes_lookup(fs->inodes, path, &attr, validated, &ino);
	if (rc)
		goto out;
	fill_entry(fs, ino, path, &attr, &e);
	if (fuse_reply_entry(req, &e) != 0)
		fs_inodes_forget(fs->inodes, ino, 1);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	free(dir);
	free(path);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_inodes_forget(req_fs(req)->inodes, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count,
                               struct fuse_forget_data *forgets)
{
	struct fs *fs = req_fs(req);
	size_t i;

	for (i = 0; i < count; i++)
		fs_inodes_forget(fs->inodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

/* The path of ino, after checking that the caller has want on it (0: may
 * see it).  Caller frees *path. */
static int checked_path(struct fs *fs, fuse_req_t req, uint64_t ino,
                        unsigned want, struct fs_caller *c, char **path)
{
	int rc = fs_access_caller(fs->access, req, c);

	if (rc)
		return rc;
	rc = fs_inodes_get(fs->inodes, ino, path, NULL, NULL);
	if (rc)
		return rc;
	rc = fs_access_check(fs->access, c, *path, want);
	if (rc) {
		free(*path);
		*path = NULL;
	}
	return rc;
}

int fs_checked_path(struct fs *fs, fuse_req_t req, uint64_t ino,
                    unsigned want, struct fs_caller *c, char **path)
{
	return checked_path(fs, req, ino, want, c, path);
}

int fs_inodes_lookup_path(struct fs *fs, const char *path,
                          const struct xfer_attr *a, uint64_t *ino)
{
	return fs_inodes_lookup(fs->inodes, path, a, wall_now(), ino);
}

void fs_inodes_forget_one(struct fs *fs, uint64_t ino)
{
	fs_inodes_forget(fs->inodes, ino, 1);
}

/* The attributes of an open pending file by inode: its name may be gone
 * (unlinked, renamed over) while a handle still has it. */
static bool pending_by_ino(struct fs *fs, uint64_t ino, struct xfer_attr *a)
{
	struct fs_open *o;
	bool found = false;

	pthread_mutex_lock(&fs->handles_lock);
	for (o = fs->handles; o && !found; o = o->next) {
		struct fs_handle *h = (struct fs_handle *)o;

		if ((o->free == file_handle_free ||
		     o->free == fs_file_handle_free) && h->ovf && h->ino == ino) {
			fs_ov_file_attr(fs->ov, h->ovf, a);
			found = true;
		}
	}
	pthread_mutex_unlock(&fs->handles_lock);
	return found;
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct xfer_attr a;
	struct fs_caller c;
	struct stat st;
	char *path = NULL;
	int rc = checked_path(fs, req, ino, 0, &c, &path);

	if (fi && fi->fh && (((struct fs_open *)(uintptr_t)fi->fh)->free ==
	    file_handle_free || ((struct fs_open *)(uintptr_t)fi->fh)->free ==
	    fs_file_handle_free) && ((struct fs_handle *)(uintptr_t)fi->fh)->ovf) {
		/* fstat of a pending file: the handle's file, which an
		 * unlink or rename left without its name. */
		struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

		if (rc == -ENOENT)
			rc = 0;
		if (rc == 0) {
			fs_ov_file_attr(fs->ov, h->ovf, &a);
			fill_stat(fs, ino, path, &a, &st);
			fuse_reply_attr(req, &st, kernel_ttl(fs, path));
		} else {
			fuse_reply_err(req, -rc);
		}
		free(path);
		return;
	}
	if (rc == 0 && fs->ov && !strncmp(path, "//gone/", 7))
		rc = pending_by_ino(fs, ino, &a) ? 0 : -ENOENT;
	else if (rc == 0)
		rc = node_attr(fs, ino, NULL, &a);
	if (rc == 0) {
		fill_stat(fs, ino, path, &a, &st);
		fuse_reply_attr(req, &st, kernel_ttl(fs, path));
	} else {
		fuse_reply_err(req, -rc);
	}
	free(path);
}

static void fs_op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	struct fs *fs = req_fs(req);
	struct xfer_attr a;
	struct fs_caller c;
	unsigned want = 0;
	char *path = NULL;
	int rc;

	rc = node_attr(fs, ino, NULL, &a);
	if (rc)
		goto out;
	if (mask & W_OK) {
		char *p = NULL;
		struct fs_route r;

		rc = fs_inodes_get(fs->inodes, ino, &p, NULL, NULL);
		if (rc == 0)
			rc = fs_writable_route(fs, p, &r);
		free(p);
		if (rc)
			goto out;
		want |= (a.mode & S_IFMT) == S_IFDIR ? ACL_INSERT : ACL_WRITE;
	}
	if ((mask & X_OK) && (a.mode & S_IFMT) != S_IFDIR && !(a.mode & 0111)) {
		rc = -EACCES;
		goto out;
	}
	if (mask & R_OK)
		want |= ACL_READ;
	if ((mask & X_OK) && (a.mode & S_IFMT) == S_IFDIR)
		want |= ACL_LOOKUP;
	else if (mask & X_OK)
		want |= ACL_READ;
	rc = checked_path(fs, req, ino, want, &c, &path);
out:
	free(path);
	fuse_reply_err(req, -rc);
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_dirh *h = NULL;
	struct fs_dir *d = NULL;
	struct fs_route r;
	struct fs_caller c;
	char *path = NULL;
	int rc;

	rc = checked_path(fs, req, ino, ACL_READ, &c, &path);
	if (rc)
		goto out;
	rc = fs_exports_route(fs->exports, path, &r);
	if (rc)
		goto out;
	if (r.kind == FS_ROUTE_SOURCE && r.writable && fs->ov) {
		struct fs_ov_info in;
		struct fs_dir *o = NULL;
		int64_t v = wall_now();

		rc = fs_ov_stat(fs->ov, path, &in);
		if (in.file)
			fs_ov_file_put(fs->ov, in.file);
		if (rc == 0 && in.origin[0]) {
			rc = fs_meta_dir(fs->meta, in.origin, &o);
			if (rc == -ENOENT && in.pending)
				rc = 0;
		}
		if (rc == 0)
			rc = fs_ov_merge(fs->ov, path, o, o ? o->validated : v, &d);
		fs_dir_put(o);
	} else if (r.kind == FS_ROUTE_SOURCE) {
		rc = fs_meta_dir(fs->meta, path, &d);
	} else if (r.kind == FS_ROUTE_VIRTUAL) {
		rc = fs_dir_virtual(fs->exports, path, NULL, fs->started, &d);
	} else {
		/* Users' areas are listed to their owner; others' resolve by
		 * name where the rules allow (README). */
		char buf[4096];
		struct passwd pw, *res = NULL;
		bool known = getpwuid_r(c.ac.uid, &pw, buf, sizeof(buf), &res) == 0
		             && res;

		rc = fs_dir_virtual(fs->exports, path, known ? pw.pw_name : "",
		                    fs->started, &d);
	}
	if (rc)
		goto out;
	h = malloc(sizeof(*h) + strlen(path) + 1);
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	h->dir = d;
	memcpy(h->path, path, strlen(path) + 1);
	d = NULL;
	fi->fh = (uintptr_t)h;
	handle_link(fs, &h->open, dir_handle_free);
	if (fuse_reply_open(req, fi) != 0) {
		handle_unlink(fs, &h->open);
		dir_handle_free(&h->open);
	}
out:
	if (rc)
		fuse_reply_err(req, -rc);
	fs_dir_put(d);
	free(path);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = req_fs(req);
	struct fs_dirh *h = (struct fs_dirh *)(uintptr_t)fi->fh;
	struct fs_dir *d = h->dir;
	char *buf = malloc(size), *path = NULL;
	struct fs_caller c;
	size_t used = 0;
	uint64_t i;
	int rc = 0;

	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fs_access_caller(fs->access, req, &c);
	if (rc)
		goto out;
	for (i = (uint64_t)off; i < d->count + 2; i++) {
		const char *name = i == 0 ? "." : i == 1 ? ".." : d->ents[i - 2].name;
		const struct xfer_attr *a = i < 2 ? NULL : &d->ents[i - 2].attr;
		struct fuse_entry_param e;
		uint64_t child;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (a) {
			free(path);
			path = fs_path_join(h->path, name);
			if (!path) {
				rc = -ENOMEM;
				goto out;
			}
			/* Names the caller may not see are not listed. */
			if (!fs_access_visible(fs->access, &c, path))
				continue;
			e.attr.st_mode = (a->mode & S_IFMT) == S_IFDIR ? S_IFDIR : S_IFREG;
			/* readdir callers skip d_ino 0.  Inode numbers come from
			 * the path (inode.c), so this is usually the real one. */
			e.attr.st_ino = XXH3_64bits(path, strlen(path));
		} else {
			/* No attributes (ino 0 in the entry) but a visible inode
			 * number: readdir callers skip entries whose d_ino is 0. */
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
		}
		need = plus ? fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0)
		            : fuse_add_direntry(req, NULL, 0, name, NULL, 0);
		if (used + need > size)
			break;
		if (plus && a) {
			rc = fs_inodes_lookup(fs->inodes, path, a, d->validated, &child);
			if (rc)
				goto out;
			fill_entry(fs, child, path, a, &e);
		}
		if (plus)
			fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
			                       (off_t)(i + 1));
		else
			fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
			                  (off_t)(i + 1));
		used += need;
	}
out:
	if (rc && used == 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
	free(path);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
                          off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
                              off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
                             struct fuse_file_info *fi)
{
	struct fs_dirh *h = (struct fs_dirh *)(uintptr_t)fi->fh;

	handle_unlink(req_fs(req), &h->open);
	dir_handle_free(&h->open);
	fuse_reply_err(req, 0);
}

/* Sets the mount's kernel read-ahead window, once.  Not at mount: the
 * kernel's INIT sets the window to the smaller of its own and the one the
 * daemon answers (which libfuse caps at the kernel's), so a value set
 * before INIT is answered would be undone.  Before the first open's reply
 * is soon enough: a file's read-ahead state is taken from the device after
 * its open.  Not permitted (not root, /sys read-only): the kernel's
 * default stays, and reads work as before, in smaller requests. */
static void tune_bdi(struct fs *fs)
{
	unsigned kib = fs->cfg->kernel_readahead >> 10;
	int rc;

	if (!kib || !fs->bdi[0] || atomic_exchange(&fs->bdi_tuned, true))
		return;
	rc = fs_bdi_set_readahead(fs->bdi, kib);
	if (rc)
		dms_log(LOG_INFO, "kernel read-ahead of %s left as it is "
		        "(kernel_readahead=%uK: /sys/class/bdi/%s/read_ahead_kb:"
		        " %s)", fs->cfg->mountpoint, kib, fs->bdi, strerror(-rc));
	else
		dms_log(LOG_DEBUG, "kernel read-ahead of %s: %u KiB",
		        fs->cfg->mountpoint, kib);
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = NULL;
	struct xfer_attr a;
	struct fs_route r;
	struct fs_caller c;
	char *path = NULL;
	int rc;

	bool wr = (fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC);

	tune_bdi(fs);
	rc = checked_path(fs, req, ino, 0, &c, &path);
	if (rc)
		goto out;
	if (wr) {
		struct fs_route wr_r;

		rc = fs_writable_route(fs, path, &wr_r);
		if (rc == 0)
			rc = fs_access_check(fs->access, &c, path, ACL_WRITE |
			                     ((fi->flags & O_ACCMODE) != O_WRONLY
			                      ? ACL_READ : 0));
		if (rc == 0)
			rc = fs_write_open(fs, req, path, &c, fi, false, 0, &h);
		if (rc)
			goto out;
		h->ino = ino;
		fi->fh = (uintptr_t)h;
		fi->keep_cache = 0;
		fi->direct_io = 1;
		fs_handle_link(fs, &h->open, fs_file_handle_free);
		if (fuse_reply_open(req, fi) != 0) {
			fs_handle_unlink(fs, &h->open);
			fs_file_handle_free(&h->open);
		}
		h = NULL;
		goto out;
	}
	rc = fs_access_check(fs->access, &c, path, ACL_READ);
	if (rc)
		goto out;
	rc = node_attr(fs, ino, NULL, &a);
	if (rc)
		goto out;
	if ((a.mode & S_IFMT) == S_IFDIR) {
		rc = -EISDIR;
		goto out;
	}
	rc = fs_exports_route(fs->exports, path, &r);
	if (rc == 0 && r.kind != FS_ROUTE_SOURCE)
		rc = -EISDIR;
	if (rc)
		goto out;
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	h->ov = fs->ov;
	if (r.writable && fs->ov) {
		/* Pending content, or the origin's file where the overlay
		 * says it is now.  Never kept in the kernel's pages: another
		 * user must not see this user's pending bytes from them. */
		struct fs_ov_info in;
		struct fs_route orr;

		rc = fs_ov_stat(fs->ov, path, &in);
		if (rc)
			goto out;
		fi->keep_cache = 0;
		fi->direct_io = 1;
		if (in.file) {
			h->ovf = in.file;
		} else {
			rc = fs_exports_route(fs->exports, in.origin, &orr);
			if (rc == 0)
				rc = origin_attr(fs, in.origin, &a);
			if (rc)
				goto out;
			h->file = fs_file_new(in.origin, &orr, &a,
			                      fs->cfg->block_size);
			if (!h->file) {
				rc = -ENOMEM;
				goto out;
			}
			h->reader = fs_ov_reader_add(fs->ov, in.origin);
			if (!h->reader) {
				rc = -ENOMEM;
				goto out;
			}
		}
	} else {
		h->file = fs_file_new(path, &r, &a, fs->cfg->block_size);
		if (!h->file) {
			rc = -ENOMEM;
			goto out;
		}
		fs_prefetch_opened(fs->pf, &c, path);
		fi->keep_cache = !fs_inodes_take_changed(fs->inodes, ino);
	}
	pthread_mutex_init(&h->lock, NULL);
	h->ino = ino;
	fi->fh = (uintptr_t)h;
	handle_link(fs, &h->open, file_handle_free);
	if (fuse_reply_open(req, fi) != 0) {
		handle_unlink(fs, &h->open);
		pthread_mutex_destroy(&h->lock);
		goto out;
	}
	h = NULL;
out:
	if (rc)
		fuse_reply_err(req, -rc);
	if (h) {
		if (h->reader)
			fs_ov_reader_del(fs->ov, h->reader);
		if (h->file)
			fs_file_put(h->file);
		if (h->ovf)
			fs_ov_file_put(fs->ov, h->ovf);
		free(h);
	}
	free(path);
}

/* Grows or resets the read-ahead window and queues the blocks after this
 * read.  Kernel read-ahead sends requests slightly out of order, so "near the
 * last end" counts as sequential.  Blocks are queued once half the window
 * has been used, so that they go out as a few large runs rather than one
 * block per read. */
static void read_ahead(struct fs *fs, struct fs_handle *h, uint64_t off,
                       size_t len)
{
	uint64_t bs = fs->cfg->block_size, max = fs->cfg->readahead / bs;
	uint64_t last = fs_block_index(off + len - 1, bs), first, end;
	uint64_t slack = 2 * bs, count = 0;

	pthread_mutex_lock(&h->lock);
	if (off + slack >= h->next_off && off <= h->next_off + slack) {
		h->window = h->window ? h->window * 2 : 4;
		if (h->window > max)
			h->window = max;
	} else {
		h->window = 0;
		h->ra_next = 0;
	}
	if (off + len > h->next_off)
		h->next_off = off + len;
	end = last + 1 + h->window;
	first = h->ra_next > last + 1 ? h->ra_next : last + 1;
	if (h->window && end > first && (end - first) * 2 >= h->window) {
		count = end - first;
		h->ra_next = end;
	}
	pthread_mutex_unlock(&h->lock);
	if (count)
		fs_blocks_prefetch(fs->blocks, h->file, first, count);
}

static void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct fs_file *f = h->file;
	struct fs_pin pin;
	struct fs_caller c;
	size_t len = 0;
	int rc;

	if (h->reader && !h->ovf) {
		/* Written through another handle since this one opened the
		 * origin's file: read what the mount now has. */
		struct fs_ov_file *now = fs_ov_reader_now(fs->ov, h->reader);

		if (now) {
			pthread_mutex_lock(&h->lock);
			if (!h->ovf) {
				h->ovf = now;
				now = NULL;
			}
			pthread_mutex_unlock(&h->lock);
			if (now)
				fs_ov_file_put(fs->ov, now);
		}
	}
	if (h->ovf) {
		fs_write_read(fs, req, h, size, off);
		return;
	}
	/* Rules may have changed since open; checking costs well under a
	 * microsecond once the caller's groups are known. */
	rc = fs_access_caller(fs->access, req, &c);
	if (rc == 0)
		rc = fs_access_check(fs->access, &c, f->path, ACL_READ);
	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (off < 0 || (uint64_t)off >= f->attr.size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = f->attr.size - (uint64_t)off < size ? (size_t)(f->attr.size - (uint64_t)off)
	                                          : size;
	read_ahead(fs, h, (uint64_t)off, len);
	rc = fs_blocks_pin(fs->blocks, f, (uint64_t)off, len, &pin);
	if (rc == 0) {
		fuse_reply_iov(req, pin.iov, (int)pin.n);
		fs_blocks_unpin(fs->blocks, &pin);
		return;
	}
	if (rc == -ESTALE || rc == -ENOENT) {
		char *parent = fs_path_parent(f->path);

		if (rc == -ESTALE)
			dms_log(LOG_WARNING, "%s changed at the source while "
			        "open; reopen it to read the new version",
			        f->path);
		else
			dms_log(LOG_WARNING, "%s is listed but the source says "
			        "it does not exist; revalidating its directory",
			        f->path);
		if (parent)
			fs_meta_expire(fs->meta, parent);
		free(parent);
		fs_inodes_expire(fs->inodes, ino);
		/* The kernel's size and mtime are the old ones too.  Attributes
		 * only (offset -1): dropping pages here could wait on the very
		 * page this read is filling. */
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
		if (rc == -ESTALE)
			rc = -EIO;
	} else if (rc == -EHOSTDOWN) {
		rc = -EIO;
	}
	dms_log(LOG_ERR, "read of %s at %lld (%zu bytes) failed: %s",
	        f->path, (long long)off, len, strerror(-rc));
	fuse_reply_err(req, -rc);
}

static void fs_op_release(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	if (h->writing)
		fs_write_release(req_fs(req), h);

	handle_unlink(req_fs(req), &h->open);
	file_handle_free(&h->open);
	fuse_reply_err(req, 0);
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = (unsigned long)fs->cfg->block_size;
	sv.f_namemax = 255;
	if (fs->jnl) {
		/* Room for writes: what the journal's cap leaves. */
		struct cache_jnl_stats js;

		cache_jnl_stats(fs->jnl, &js);
		sv.f_blocks = js.max_bytes / sv.f_frsize;
		sv.f_bfree = sv.f_bavail = js.bytes < js.max_bytes
			? (js.max_bytes - js.bytes) / sv.f_frsize : 0;
		sv.f_files = 1u << 20;
		sv.f_ffree = sv.f_favail = 1u << 20;
	} else {
		/* Read-only: df shows the cache, its cap (size) and the
		 * bytes cached (used); what is left is room for more blocks. */
		struct cache_stats cs;

		cache_get_stats(fs->cache, &cs);
		sv.f_blocks = cs.cap / sv.f_frsize;
		sv.f_bfree = sv.f_bavail = cs.bytes < cs.cap
			? (cs.cap - cs.bytes) / sv.f_frsize : 0;
	}
	fuse_reply_statfs(req, &sv);
}

const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.access = fs_op_access,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.open = fs_op_open,
	.read = fs_op_read,
	.release = fs_op_release,
	.statfs = fs_op_statfs,
	.getxattr = fs_op_getxattr,
	.listxattr = fs_op_listxattr,
	.setxattr = fs_op_setxattr,
	.removexattr = fs_op_removexattr,
};

/* Writes cache_dir/stats whole or not at all: a temporary file, synced,
 * then renamed over the old one, so a full disk leaves the previous file
 * (or none), never an empty or cut one.  The rename replaces whatever name
 * is there (a link is replaced, not followed).  Root-only like the rest of
 * cache_dir. */
static void write_stats(const struct fs *fs)
{
	struct cache_stats st;
	char path[4096], tmp[4096], text[256];
	const char *step = "open";
	size_t len, done = 0;
	int fd = -1, n, err = 0;

	cache_get_stats(fs->cache, &st);
	dms_log(LOG_INFO, "cache: %llu bytes in %llu blocks, %llu hits, %llu "
	        "misses, %llu corrupt, %llu evicted, %llu dropped",
	        (unsigned long long)st.bytes, (unsigned long long)st.blocks,
	        (unsigned long long)st.hits, (unsigned long long)st.misses,
	        (unsigned long long)st.corrupt, (unsigned long long)st.evicted,
	        (unsigned long long)st.dropped);
	if (snprintf(path, sizeof(path), "%s/stats", fs->cfg->cache_dir) >=
	    (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s/stats.tmp", fs->cfg->cache_dir) >=
	    (int)sizeof(tmp))
		return;
	n = snprintf(text, sizeof(text), "bytes=%llu blocks=%llu hits=%llu "
	             "misses=%llu corrupt=%llu evicted=%llu dropped=%llu\n",
	             (unsigned long long)st.bytes, (unsigned long long)st.blocks,
	             (unsigned long long)st.hits, (unsigned long long)st.misses,
	             (unsigned long long)st.corrupt,
	             (unsigned long long)st.evicted,
	             (unsigned long long)st.dropped);
	len = (size_t)n;
	/* A leftover of an earlier failed write; O_EXCL below refuses
	 * anything still there (a link or a folder). */
	if (unlink(tmp) != 0 && errno != ENOENT && errno != EISDIR) {
		err = errno;
		step = "unlink";
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	          0600);
	if (fd < 0) {
		err = errno;
		goto out;
	}
	step = "write";
	while (done < len) {
		ssize_t w = write(fd, text + done, len - done);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			err = w < 0 ? errno : EIO;
			goto out;
		}
		done += (size_t)w;
	}
	step = "fsync";
	if (fsync(fd) != 0) {
		err = errno;
		goto out;
	}
	step = "close";
	n = close(fd);
	fd = -1;
	if (n != 0) {
		err = errno;
		goto out;
	}
	step = "rename";
	if (rename(tmp, path) != 0)
		err = errno;
out:
	if (fd >= 0)
		close(fd);
	if (err != 0) {
		if (strcmp(step, "open") != 0)
			unlink(tmp);
		dms_log(LOG_WARNING, "cache: stats not written (%s %s: %s); "
		        "%s is left as it was", step, step[0] == 'r' ? path : tmp,
		        strerror(err), path);
	}
}

/* keep_stderr: runtime messages still go there (no syslog, no file). */
static void detach_stdio(bool keep_stderr)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	if (!keep_stderr)
		dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Where runtime messages go once mounted: -o log=FILE; else, detached,
 * syslog; without a syslog daemon, the stderr dmsfs was started with,
 * said on it before dmsfs returns (the reasons of later failures must not
 * be lost without a word).  Held messages follow them there. */
static void log_destination(const struct fs_config *cfg)
{
	bool keep_stderr = false;

	if (cfg->log_file) {
		dms_log_to_file();
	} else if (!cfg->foreground && dms_log_syslog_available()) {
		dms_log_to_syslog("dmsfs");
	} else if (!cfg->foreground) {
		struct stat st;

		/* Whoever reads a pipe or socket waits for its end (mount(8)
		 * run by a program that captures its output): a daemon that
		 * kept it would hang them. */
		keep_stderr = fstat(STDERR_FILENO, &st) == 0 &&
		              !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode);
		dms_log_release(false);
		if (keep_stderr)
			dms_log(LOG_WARNING, "no syslog daemon listens on "
			        "/dev/log: the messages of this mount keep "
			        "going to this stderr (give -o log=FILE to keep "
			        "them in a file)");
		else
			dms_log(LOG_WARNING, "no syslog daemon listens on "
			        "/dev/log and stderr is a pipe: the messages "
			        "of this mount are lost from here on (give "
			        "-o log=FILE to keep them)");
	}
	dms_log_release(false);
	if (!cfg->foreground)
		detach_stdio(keep_stderr);
}

/* libfuse's messages (bad options, mount errors) go where ours go.  It
 * writes some lines in pieces: keep them until the newline. */
static void fuse_log_to_dms(enum fuse_log_level level, const char *fmt,
                            va_list ap)
{
	static __thread char line[1024];
	size_t n = strlen(line);

	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	n = strlen(line);
	if (n && line[n - 1] != '\n' && n < sizeof(line) - 1)
		return;
	while (n && line[n - 1] == '\n')
		line[--n] = '\0';
	dms_log((int)level, "%s", line);
	line[0] = '\0';
}

/* New rules: attributes the kernel keeps were given under the old ones, so
 * it must ask again (and dmsfs check again) before the next stat. */
static void forget_attrs(void *arg)
{
	struct fs *fs = arg;
	uint64_t *inos = NULL;
	size_t n = 0, i;

	if (!fs->se || !fs->inodes || fs_inodes_list(fs->inodes, &inos, &n) != 0)
		return;
	for (i = 0; i < n; i++)
		fuse_lowlevel_notify_inval_inode(fs->se, inos[i], -1, 0);
	free(inos);
}

/* The uploader changed what path shows behind the kernel (see kernel_ttl):
 * its cached attributes go.  Attributes only: writable exports keep no
 * pages in the kernel. */
static void wb_changed(void *arg, const char *path)
{
	struct fs *fs = arg;
	uint64_t ino;

	if (fs->se && fs->inodes && fs_inodes_find(fs->inodes, path, &ino) == 0)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
}

/* The URL form is one export at "/". */
static int open_exports(struct fs *fs, const struct fs_config *cfg,
                        const struct xfer_opts *xopts)
{
	struct fs_export_conf url = {
		.name = "url", .path = "/", .source = cfg->sources,
		.writable = cfg->writable,
	};

	if (cfg->sources)
		return fs_exports_open(&fs->exports, &url, 1, xopts);
	return fs_exports_open(&fs->exports, cfg->exports, cfg->nexports, xopts);
}

/* Every export that has fixed sources must answer now or have a cached
 * tree: a mount that cannot serve anything is refused. */
static int probe_exports(struct fs *fs)
{
	const char *name, *path;
	struct fs_route r;
	char why[2048];
	size_t i;
	int rc = 0, failed;

	for (i = 0; fs_exports_probe_list(fs->exports, i, &name, &path, &r) == 0;
	     i++) {
		if (!r.xfer)
			continue;
		failed = fs_meta_probe(fs->meta, path, &r, why, sizeof(why));
		if (failed) {
			/* What the origin answered (the transfer layer's
			 * words), then what that means for the mount. */
			bool down = failed == -EHOSTDOWN || failed == -EIO;

			dms_log(LOG_ERR, "cannot mount %s (export %s at %s): "
			        "%s%s", r.tree, name, path, why,
			        why[0] ? (down ? "; nothing cached to serve "
			                         "instead" : "")
			        : down ? "origin unreachable and nothing cached"
			        : failed == -EACCES
			        ? "access refused (credentials or login)"
			        : strerror(-failed));
			rc = failed;
			break;
		}
	}
	return rc;
}

int fs_run(struct fs_config *cfg, int ready_fd)
{
	struct fs fs = {
		.cfg = cfg, .started = wall_now(),
		.handles_lock = PTHREAD_MUTEX_INITIALIZER,
	};
	struct cache_opts copts = {
		.dir = cfg->cache_dir, .max_bytes = cfg->cache_size,
		.make_parents = cfg->cache_dir_default,
	};
	struct xfer_opts xopts = {
		.connect_timeout_ms = (long)cfg->connect_timeout * 1000,
		.stall_timeout_s = (long)cfg->stall_timeout,
		.min_rate = (size_t)cfg->min_rate,
		.max_listing_bytes = (size_t)cfg->max_listing,
		.proxy = cfg->proxy,
		.gridftp_streams = (int)cfg->gridftp_streams,
		.verbose = cfg->debug,
	};
	struct fuse_session *se = NULL;
	struct fuse_lowlevel_ops ops;
	struct fuse_loop_config *loop = NULL;
	struct xfer_attr root;
	char ok = 0;
	int rc = 0, status = 1;
	bool mounted = false;
	unsigned errors = dms_log_nerrors(), since;

	fuse_set_log_func(fuse_log_to_dms);
	/* Until the mount works, a daemon's stderr gets one line: why not. */
	if (!cfg->foreground)
		dms_log_hold();
	/* Options first: a typo must not cost a cache directory. */
	ops = fs_ops;
	if (cfg->writable)
		fs_write_ops(&ops);
	se = fuse_session_new(&cfg->args, &ops, sizeof(ops), &fs);
	if (!se)
		goto out;
	fs.se = se;
	rc = open_exports(&fs, cfg, &xopts);
	if (rc)
		goto out;   /* the reason is logged */
	if (cfg->acl_file) {
		since = dms_log_nerrors();
		rc = fs_access_open(&fs.access, cfg->acl_file, forget_attrs, &fs);
		if (rc) {
			dms_log_failed(since, "cannot use access rules %s: %s",
			               cfg->acl_file, strerror(-rc));
			goto out;
		}
	}
	since = dms_log_nerrors();
	rc = cache_open(&fs.cache, &copts);
	if (rc) {
		dms_log_failed(since, "cannot use cache_dir %s: %s", cfg->cache_dir,
		               strerror(-rc));
		goto out;
	}
	rc = fs_meta_init(&fs.meta, fs.cache, fs.exports, cfg->meta_ttl, 1000000);
	if (rc)
		goto out;
	if (cfg->writable) {
		char jdir[4096], mfile[4096];
		struct cache_jnl_opts jo = {
			.dir = jdir, .max_bytes = cfg->writeback_size,
		};

		snprintf(jdir, sizeof(jdir), "%s/journal", cfg->cache_dir);
		since = dms_log_nerrors();
		rc = cache_jnl_open(&fs.jnl, &jo);
		if (rc) {
			dms_log_failed(since, "cannot use the write journal %s: %s",
			               jdir, strerror(-rc));
			goto out;
		}
		snprintf(mfile, sizeof(mfile), "%s/modes", cfg->cache_dir);
		rc = cache_modes_open(&fs.modes, mfile);
		if (rc) {
			dms_log_failed(since, "cannot use the mode table %s: %s",
			               mfile, strerror(-rc));
			goto out;
		}
		rc = fs_ov_init(&fs.ov, fs.jnl);
		if (rc)
			goto out;
	}
	rc = probe_exports(&fs);
	if (rc)
		goto out;
	virtual_attr(&fs, &root);
	rc = fs_inodes_init(&fs.inodes, &root);
	if (rc)
		goto out;
	rc = fs_blocks_init(&fs.blocks, fs.cache, cfg->block_size, cfg->mem_size,
	                    cfg->fetchers);
	if (rc)
		goto out;
	{
		/* Needs the read-ahead threads: they do the fetching. */
		struct fs_prefetch_conf pc = {
			.meta = fs.meta, .access = fs.access,
			.exports = fs.exports, .blocks = fs.blocks,
			.block_size = cfg->block_size,
			.files = cfg->fetchers ? cfg->prefetch_files : 0,
			.bytes = cfg->readahead ? cfg->readahead : 32u << 20,
		};

		rc = fs_prefetch_init(&fs.pf, &pc);
		if (rc)
			goto out;
	}
	if (fs.jnl) {
		struct fs_wb_conf wc = {
			.jnl = fs.jnl, .ov = fs.ov, .exports = fs.exports,
			.meta = fs.meta, .delay = cfg->writeback_delay,
			.changed = wb_changed, .changed_arg = &fs,
		};

		rc = fs_wb_start(&fs.wb, &wc);
		if (rc)
			goto out;
	}
	/* dmsctl sync/status/pin, for every mount; the mount works without
	 * it. */
	rc = fs_pins_init(&fs.pins, &fs);
	if (rc)
		goto out;
	if (fs_ctl_start(&fs.ctl, cfg->mountpoint, fs.jnl, fs.wb,
	                 fs_status_info, &fs) == 0) {
		fs_ctl_set_pins(fs.ctl, fs.pins);
		fs_ctl_set_reload(fs.ctl, fs_reload, &fs);
	}
	/* SIGHUP asks for a reload (fs/access.c takes it when there are
	 * rules; dmsctl reload does the rest), never for libfuse's unmount. */
	if (!fs.access)
		signal(SIGHUP, SIG_IGN);
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	rc = fs_session_mount(se, cfg->mountpoint, !cfg->foreground);
	if (rc)
		goto out_signals;
	mounted = true;
	if (cfg->kernel_readahead &&
	    fs_bdi_name(cfg->mountpoint, fs.bdi, sizeof(fs.bdi)) != 0) {
		dms_log(LOG_INFO, "%s not found in /proc/self/mountinfo: kernel "
		        "read-ahead left as it is", cfg->mountpoint);
		fs.bdi[0] = '\0';
	}
	log_destination(cfg);
	if (ready_fd >= 0) {
		if (write(ready_fd, &ok, 1) != 1)
			goto out_unmount;
		close(ready_fd);
		ready_fd = -1;
	}
	dms_log(LOG_INFO, "mounted %s on %s", cfg->sources ? cfg->sources
	        : "the exports of the config file", cfg->mountpoint);
	fs_metrics_start(&fs.metrics, &fs);
	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(loop, cfg->max_threads);
	fuse_loop_cfg_set_clone_fd(loop, 0);
	/* A positive result is the signal that ended the loop: a clean stop. */
	status = fuse_session_loop_mt(se, loop) >= 0 ? 0 : 1;
	fuse_loop_cfg_destroy(loop);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	while (fs.handles) {
		struct fs_open *o = fs.handles;

		fs.handles = o->next;
		o->free(o);
	}
	/* Uploads what it can within unmount_flush; the rest waits in the
	 * journal for the next mount. */
	fs_metrics_stop(fs.metrics);
	fs_ctl_stop(fs.ctl);
	fs_pins_destroy(fs.pins);
	fs_wb_stop(fs.wb, cfg->unmount_flush);
	fs_ov_destroy(fs.ov);
	cache_jnl_close(fs.jnl);
	cache_modes_close(fs.modes);
	fs_prefetch_destroy(fs.pf);
	fs_blocks_destroy(fs.blocks);
	fs_inodes_destroy(fs.inodes);
	fs_meta_destroy(fs.meta);
	fs_access_close(fs.access);
	fs_exports_close(fs.exports);
	if (fs.cache) {
		cache_flush(fs.cache);
		if (status == 0)
			write_stats(&fs);
		cache_close(fs.cache);
	}
	if (ready_fd >= 0)
		close(ready_fd);
	/* Every failure says something, even one no step explained. */
	if (!mounted && dms_log_nerrors() == errors)
		dms_log(LOG_ERR, "cannot mount on %s: %s", cfg->mountpoint,
		        rc ? strerror(-rc) : "start-up failed");
	dms_log_release(true);
	dms_log_flush();
	return status;
}
