/* Read-only extended attributes that tell where a file's bytes are:
 *   user.dmsfs.source  the URL its blocks come from now: the source the
 *                      next fetch asks first (up sources in configured
 *                      order; with all down, the one that failed longest
 *                      ago), "local" for content pending upload (and
 *                      a folder made here, not yet at the origin);
 *   user.dmsfs.cached  percent of its bytes stored in the cache ("0",
 *                      "42.5", "100"; floored to a tenth, so "100" means
 *                      complete; "100" for an empty file and for pending
 *                      content, which is all on this machine);
 *   user.dmsfs.pinned  "yes" if a pin record keeps it (dmsctl pin), else
 *                      "no".
 * Folders of the sources have user.dmsfs.source only; made-up folders (the
 * root, export parents, users' areas) have none.
 *
 * Reading one (or the list) is reading about the file: the caller must
 * see it (else EACCES, as getattr) and have the read right (EACCES); the
 * kernel checks the mode bits for user.* names itself (default_permissions;
 * not for the list, whose names are the same on every file).  Any other
 * name is ENODATA.  Nothing can be set or removed: ENOTSUP, as writable
 * exports have always answered. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs/ops_i.h"

#define XATTR_SOURCE "user.dmsfs.source"
#define XATTR_CACHED "user.dmsfs.cached"
#define XATTR_PINNED "user.dmsfs.pinned"
#define XATTR_VALUE_MAX 16384

enum what { W_SOURCE = 1, W_CACHED = 2, W_PINNED = 4 };

/* What a path has: W_* bits; 0 for a made-up folder. */
struct target {
	unsigned has;
	bool pending;              /* content staged locally */
	struct fs_route r;
	struct xfer_attr a;
	const char *origin;        /* the origin object's path in the mount;
	                              r.inner points into it */
	char path_buf[4096], origin_buf[4096];
};

/* The URL of inner at the source of x a fetch would ask first. */
static int source_url(struct xfer *x, const char *inner, bool dir,
                      char *out, size_t cap)
{
	struct xfer_source_info si, best;
	bool have = false;
	size_t len;
	int rc = 0;

	for (size_t i = 0; xfer_source_info(x, i, &si) == 0; i++) {
		bool ready = !si.down || si.retry_in_ms == 0;

		if (ready) {
			best = si;
			have = true;
			break;
		}
		if (!have || si.last_err_wall < best.last_err_wall) {
			best = si;
			have = true;
		}
	}
	if (!have)
		return -ENODATA;
	len = strlen(best.url);
	while (len > 0 && best.url[len - 1] == '/')
		len--;
	if (len >= cap)
		return -ERANGE;
	memcpy(out, best.url, len);
	out[len] = '\0';
	for (const char *s = inner; *s && rc == 0;) {
		char seg[256];
		size_t n;
		int w;

		s += strspn(s, "/");
		n = strcspn(s, "/");
		if (n == 0)
			break;
		if (n >= sizeof(seg))
			return -ENAMETOOLONG;
		memcpy(seg, s, n);
		seg[n] = '\0';
		s += n;
		if (len + 1 >= cap)
			return -ERANGE;
		out[len++] = '/';
		w = xfer_encode_segment(seg, out + len, cap - len);
		if (w < 0)
			return w;
		len += (size_t)w;
	}
	/* A folder's URL ends with '/', as WebDAV names collections. */
	if (dir) {
		if (len + 1 >= cap)
			return -ERANGE;
		out[len++] = '/';
		out[len] = '\0';
	}
	return rc;
}

static int target_of(struct fs *fs, const char *path, struct target *t)
{
	size_t n = strlen(path);
	int rc;

	memset(t, 0, sizeof(*t));
	if (n >= sizeof(t->path_buf))
		return -ENAMETOOLONG;
	memcpy(t->path_buf, path, n + 1);
	t->origin = path = t->path_buf;
	rc = fs_exports_route(fs->exports, path, &t->r);
	if (rc || t->r.kind != FS_ROUTE_SOURCE || !t->r.xfer)
		return rc;
	if (t->r.writable && fs->ov) {
		struct fs_ov_info in;

		rc = fs_ov_stat(fs->ov, path, &in);
		if (rc)
			return rc;
		if (in.file) {
			fs_ov_file_put(fs->ov, in.file);
			t->pending = true;
			t->has = W_SOURCE | W_CACHED | W_PINNED;
			return 0;
		}
		if (in.pending && in.is_dir && !in.origin[0]) {
			/* A folder made here, not at the origin yet. */
			t->pending = true;
			t->has = W_SOURCE;
			return 0;
		}
		if (in.origin[0] && strcmp(in.origin, path)) {
			snprintf(t->origin_buf, sizeof(t->origin_buf), "%s",
			         in.origin);
			t->origin = t->origin_buf;
			rc = fs_exports_route(fs->exports, t->origin, &t->r);
			if (rc)
				return rc;
		}
	}
	rc = fs_path_attr(fs, t->origin, &t->a);
	if (rc)
		return rc;
	t->has = (t->a.mode & S_IFMT) == S_IFDIR ? W_SOURCE
	         : W_SOURCE | W_CACHED | W_PINNED;
	return 0;
}

/* "42", "42.5": floored to a tenth, so only a complete file says 100 and
 * only an empty cache says 0. */
static void percent(uint64_t part, uint64_t whole, char *out, size_t cap)
{
	uint64_t tenths;

	if (whole == 0 || part >= whole) {
		snprintf(out, cap, "100");
		return;
	}
	tenths = (uint64_t)((unsigned __int128)part * 1000 / whole);
	if (tenths == 0 && part > 0)
		tenths = 1;
	if (tenths % 10)
		snprintf(out, cap, "%llu.%llu", (unsigned long long)(tenths / 10),
		         (unsigned long long)(tenths % 10));
	else
		snprintf(out, cap, "%llu", (unsigned long long)(tenths / 10));
}

static int value_of(struct fs *fs, const struct target *t, unsigned w,
                    char *out, size_t cap)
{
	struct fs_file *f = NULL;
	uint64_t stored = 0;
	int rc = 0;

	if (t->pending) {
		snprintf(out, cap, "%s", w == W_SOURCE ? "local"
		                        : w == W_CACHED ? "100" : "no");
		goto out;
	}
	if (w == W_SOURCE) {
		rc = source_url(t->r.xfer, t->r.inner,
		                (t->a.mode & S_IFMT) == S_IFDIR, out, cap);
		goto out;
	}
	f = fs_file_new(t->origin, &t->r, &t->a, fs->cfg->block_size);
	if (!f) {
		rc = -ENOMEM;
		goto out;
	}
	if (w == W_PINNED) {
		rc = cache_pin_get(fs->cache, fs_file_identity(f), NULL);
		snprintf(out, cap, "%s", rc == 0 ? "yes" : "no");
		rc = rc == -ENOENT ? 0 : rc;
		goto out;
	}
	rc = cache_fid_stored(fs->cache, &f->fid, &stored);
	if (rc == 0)
		percent(stored, t->a.size, out, cap);
out:
	fs_file_put(f);
	return rc;
}

static unsigned name_bit(const char *name)
{
	return !strcmp(name, XATTR_SOURCE) ? W_SOURCE
	       : !strcmp(name, XATTR_CACHED) ? W_CACHED
	       : !strcmp(name, XATTR_PINNED) ? W_PINNED : 0;
}

/* The target of ino once the caller may see it (EACCES as getattr) and
 * read it (EACCES). */
static int checked_target(struct fs *fs, fuse_req_t req, fuse_ino_t ino,
                          struct target *t)
{
	struct fs_caller c;
	char *path = NULL;
	int rc = fs_checked_path(fs, req, ino, 0, &c, &path);

	if (rc == 0)
		rc = fs_access_check(fs->access, &c, path, ACL_READ);
	if (rc == 0)
		rc = target_of(fs, path, t);
	free(path);
	return rc;
}

/* Replies value (len bytes) under the size-probe protocol of getxattr and
 * listxattr: size 0 asks for the length; a smaller buffer is ERANGE. */
static void reply_sized(fuse_req_t req, size_t size, const char *value,
                        size_t len)
{
	if (size == 0)
		fuse_reply_xattr(req, len);
	else if (size < len)
		fuse_reply_err(req, ERANGE);
	else
		fuse_reply_buf(req, value, len);
}

void fs_op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                    size_t size)
{
	struct fs *fs = fuse_req_userdata(req);
	struct target *t = calloc(1, sizeof(*t));
	char *val = malloc(XATTR_VALUE_MAX);
	unsigned w = name_bit(name);
	int rc;

	/* Other names (security.*, system.*, which ls and cp ask for on
	 * every file) are answered at once: the same for every file, they
	 * tell no one anything. */
	if (!w) {
		rc = -ENODATA;
		goto out;
	}
	if (!t || !val) {
		rc = -ENOMEM;
		goto out;
	}
	rc = checked_target(fs, req, ino, t);
	if (rc == 0 && !(t->has & w))
		rc = -ENODATA;
	if (rc == 0)
		rc = value_of(fs, t, w, val, XATTR_VALUE_MAX);
	if (rc == 0)
		reply_sized(req, size, val, strlen(val));
out:
	if (rc)
		fuse_reply_err(req, -rc);
	free(val);
	free(t);
}

void fs_op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	static const char *names[] = { XATTR_SOURCE, XATTR_CACHED, XATTR_PINNED };
	struct fs *fs = fuse_req_userdata(req);
	struct target *t = calloc(1, sizeof(*t));
	char list[64];
	size_t len = 0;
	int rc = t ? checked_target(fs, req, ino, t) : -ENOMEM;

	for (unsigned i = 0; rc == 0 && i < 3; i++) {
		size_t n = strlen(names[i]) + 1;

		if (!(t->has & (1u << i)))
			continue;
		memcpy(list + len, names[i], n);
		len += n;
	}
	if (rc == 0)
		reply_sized(req, size, list, len);
	else
		fuse_reply_err(req, -rc);
	free(t);
}

void fs_op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                    const char *value, size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, ENOTSUP);
}

void fs_op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino;
	(void)name;
	fuse_reply_err(req, ENOTSUP);
}
