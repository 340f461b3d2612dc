/*
 * transfer/ writes: the semantics of the public write calls, once for every
 * protocol, on top of a backend's read ops (stat, list) and its write
 * primitives (xfer_write_ops).  xfer.c chooses the source (xfer_run_write);
 * this file runs one call against one source.
 *
 * Every check that guards a change (expect, emptiness, the type and
 * existence of a rename's target) is a stat or list just before the change:
 * a change by another client in between is not seen (documented in xfer.h).
 * Where the protocol can check atomically it is asked to as well (WebDAV
 * MOVE with "Overwrite: F").
 */
#include "transfer/xfer_i.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/log.h"

#define WRITE_TMP_TAG ".dmsfs-"
#define WRITE_TMP_RAND 8          /* hex digits */

/* One source's read and write sides, as xfer_write_one got them. */
struct wsrc {
	const struct xfer_backend_ops *ops;
	void *r, *w;
	const char *url;
	int *changed;
};

static const char *etag_core(const char *e)
{
	return strncmp(e, "W/", 2) == 0 ? e + 2 : e;
}

/* Whether now is still the version *expect describes.  mtime and ETag are
 * compared only when both sides know them (sources differ in what they
 * report; size is always known). */
static bool attr_matches(const struct xfer_attr *expect,
                         const struct xfer_attr *now)
{
	if (S_ISDIR(now->mode) != S_ISDIR(expect->mode) && expect->mode)
		return false;
	if (now->size != expect->size)
		return false;
	if (expect->mtime && now->mtime && now->mtime != expect->mtime)
		return false;
	if (expect->etag[0] && now->etag[0] &&
	    strcmp(etag_core(expect->etag), etag_core(now->etag)) != 0)
		return false;
	return true;
}

/* Judges now, the attributes of the existing path, against *expect:
 * 0 or -ESTALE (logged). */
static int judge_expect(struct wsrc *s, const char *path,
                        const struct xfer_attr *expect,
                        const struct xfer_attr *now, const char *what)
{
	int rc = 0;

	if (expect->size == XFER_EXPECT_ABSENT) {
		dms_log(LOG_WARNING, "transfer: %s %s%s: exists at the source, "
		        "expected absent: conflict", what, s->url, path);
		rc = -ESTALE;
	} else if (!attr_matches(expect, now)) {
		dms_log(LOG_WARNING, "transfer: %s %s%s: size %llu mtime %lld "
		        "etag %s at the source, expected %llu %lld %s: "
		        "conflict", what, s->url, path,
		        (unsigned long long)now->size, (long long)now->mtime,
		        now->etag[0] ? now->etag : "-",
		        (unsigned long long)expect->size,
		        (long long)expect->mtime,
		        expect->etag[0] ? expect->etag : "-");
		rc = -ESTALE;
	}
	return rc;
}

/* Stats path and checks it against *expect (see xfer_put).  0, -ESTALE,
 * or the stat's error. */
static int check_expect(struct wsrc *s, const char *path,
                        const struct xfer_attr *expect, const char *what)
{
	struct xfer_attr now;
	int rc;

	rc = s->ops->stat(s->r, path, &now);
	if (rc == 0) {
		rc = judge_expect(s, path, expect, &now, what);
	} else if (rc == -ENOENT) {
		rc = 0;
		if (expect->size != XFER_EXPECT_ABSENT) {
			dms_log(LOG_WARNING, "transfer: %s %s%s: gone at the "
			        "source: conflict", what, s->url, path);
			rc = -ESTALE;
		}
	}
	return rc;
}

/* Notes that a changing primitive's request may have been delivered. */
static int changing(struct wsrc *s, int rc)
{
	if (rc != -ENOTCONN)
		*s->changed = 1;
	return rc;
}

bool xfer_is_upload_temp(const char *name)
{
	size_t n = strlen(name), tag = strlen(WRITE_TMP_TAG), i;

	if (name[0] != '.' || n < 1 + tag + WRITE_TMP_RAND ||
	    strncmp(name + n - WRITE_TMP_RAND - tag, WRITE_TMP_TAG, tag))
		return false;
	for (i = n - WRITE_TMP_RAND; i < n; i++)
		if (!((name[i] >= '0' && name[i] <= '9') ||
		      (name[i] >= 'a' && name[i] <= 'f')))
			return false;
	return true;
}

/* "/dir/.NAME.dmsfs-XXXXXXXX" for "/dir/NAME", NAME cut (at a UTF-8
 * character boundary) so that the whole segment fits NAME_MAX. */
static int temp_path(const char *path, char **out)
{
	const char *base = strrchr(path, '/') + 1;
	size_t dlen = (size_t)(base - path), blen = strlen(base);
	size_t room = NAME_MAX - 1 - strlen(WRITE_TMP_TAG) - WRITE_TMP_RAND;
	unsigned char rnd[WRITE_TMP_RAND / 2];
	char *t;
	size_t i, o;
	int rc = 0;

	*out = NULL;
	if (blen > room) {
		blen = room;
		while (blen > 0 && ((unsigned char)base[blen] & 0xC0) == 0x80)
			blen--;
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		rc = -errno;
		goto out;
	}
	t = malloc(dlen + 1 + blen + strlen(WRITE_TMP_TAG) + WRITE_TMP_RAND + 1);
	if (!t) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(t, path, dlen);
	o = dlen;
	t[o++] = '.';
	memcpy(t + o, base, blen);
	o += blen;
	memcpy(t + o, WRITE_TMP_TAG, strlen(WRITE_TMP_TAG));
	o += strlen(WRITE_TMP_TAG);
	for (i = 0; i < sizeof(rnd); i++)
		o += (size_t)sprintf(t + o, "%02x", rnd[i]);
	*out = t;
out:
	return rc;
}

/* Best effort: a temporary left behind is only a dot-file, but say so. */
static void drop_temp(struct wsrc *s, const char *tmp)
{
	int rc = s->ops->write->unlink(s->w, tmp);

	if (rc < 0 && rc != -ENOENT)
		dms_log(LOG_WARNING, "transfer: %s%s: cannot remove the "
		        "temporary upload (%s); it stays at the source", s->url,
		        tmp, strerror(-rc));
}

/* Whether what the source now holds at path is what we sent: a server
 * may answer a PUT or MOVE with success and store nothing, a part, or
 * move nothing.  Size always; mtime when both are known (want: the
 * temporary's attributes, NULL before the move).  0 or -EIO (logged). */
static int check_stored(struct wsrc *s, const char *path, uint64_t len,
                        const struct xfer_attr *want, struct xfer_attr *got)
{
	int rc = s->ops->stat(s->r, path, got);

	if (rc == 0 && (got->size != len || S_ISDIR(got->mode) ||
	                (want && want->mtime && got->mtime &&
	                 want->mtime != got->mtime)))
		rc = -EIO;
	else if (rc == -ENOENT)
		rc = -EIO;
	if (rc == -EIO)
		dms_log(LOG_ERR, "transfer: PUT %s%s: the source answered "
		        "success but holds %s (%llu bytes, mtime %lld; sent "
		        "%llu): upload not stored, -> %s", s->url, path,
		        got->size || got->mtime ? "another file" : "nothing",
		        (unsigned long long)got->size, (long long)got->mtime,
		        (unsigned long long)len, strerror(EIO));
	return rc;
}

static int do_put(struct wsrc *s, const struct xfer_wcall *c)
{
	const struct xfer_write_ops *w = s->ops->write;
	struct xfer_attr sent, stored;
	char *tmp = NULL;
	bool create = c->expect && c->expect->size == XFER_EXPECT_ABSENT;
	int rc;

	if (strcmp(c->path, "/") == 0) {
		rc = -EISDIR;
		goto out;
	}
	/* First check before the bytes go out: a conflict costs no upload. */
	if (c->expect) {
		rc = check_expect(s, c->path, c->expect, "PUT");
		if (rc < 0)
			goto out;
	}
	rc = temp_path(c->path, &tmp);
	if (rc < 0)
		goto out;
	rc = changing(s, w->upload(s->w, tmp, c->src, c->arg, c->len,
	                            c->mtime));
	if (rc < 0) {
		if (rc != -ENOTCONN && rc != -ENOENT)
			drop_temp(s, tmp);
		goto out;
	}
	/* The temporary must hold what was sent before it replaces anything
	 * (an origin may answer a PUT it did not store).  A create needs no
	 * second version check: its move refuses an existing name (WebDAV
	 * "Overwrite: F" atomically, GridFTP by its own check). */
	memset(&sent, 0, sizeof(sent));
	rc = check_stored(s, tmp, c->len, NULL, &sent);
	if (rc == 0 && c->expect && !create)
		rc = check_expect(s, c->path, c->expect, "PUT");
	if (rc < 0) {
		drop_temp(s, tmp);
		goto out;
	}
	rc = w->move(s->w, tmp, c->path, 0, !create);
	if (rc == -EEXIST && create) {
		dms_log(LOG_WARNING, "transfer: PUT %s%s: created at the source "
		        "meanwhile: conflict", s->url, c->path);
		rc = -ESTALE;
	}
	if (rc < 0) {
		drop_temp(s, tmp);
		goto out;
	}
	memset(&stored, 0, sizeof(stored));
	rc = check_stored(s, c->path, c->len, &sent, &stored);
	if (rc < 0) {
		drop_temp(s, tmp);   /* a MOVE that moved nothing */
		goto out;
	}
	if (c->result)
		*c->result = stored;
out:
	free(tmp);
	return rc;
}

static int stop_at_first(void *arg, const char *name,
                         const struct xfer_attr *a)
{
	(void)arg;
	(void)name;
	(void)a;
	return 1;
}

/* 0 if path is an empty directory, -ENOTEMPTY, -ENOTDIR, or an error. */
static int check_empty_dir(struct wsrc *s, const char *path)
{
	int rc = s->ops->list(s->r, path, stop_at_first, NULL);

	if (rc == 1)
		rc = -ENOTEMPTY;
	return rc;
}

static int do_rmdir(struct wsrc *s, const struct xfer_wcall *c)
{
	int rc;

	if (strcmp(c->path, "/") == 0) {
		rc = -EBUSY;
		goto out;
	}
	rc = check_empty_dir(s, c->path);
	if (rc == 0)
		rc = changing(s, s->ops->write->rmdir(s->w, c->path));
out:
	return rc;
}

static int do_unlink(struct wsrc *s, const struct xfer_wcall *c)
{
	struct xfer_attr a;
	int rc;

	/* The type decides the request (a WebDAV DELETE of a collection
	 * would remove a whole tree), so it is always looked at. */
	rc = s->ops->stat(s->r, c->path, &a);
	if (rc < 0)
		goto out;
	if (S_ISDIR(a.mode)) {
		rc = -EISDIR;
		goto out;
	}
	if (c->expect) {
		rc = judge_expect(s, c->path, c->expect, &a, "DELETE");
		if (rc < 0)
			goto out;
	}
	rc = changing(s, s->ops->write->unlink(s->w, c->path));
out:
	return rc;
}

/* Whether a is inside (or is) the directory d. */
static bool path_within(const char *a, const char *d)
{
	size_t n = strlen(d);

	return strncmp(a, d, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

static int do_rename(struct wsrc *s, const struct xfer_wcall *c)
{
	struct xfer_attr from, to;
	int rc, trc, overwrite = 0;

	if (strcmp(c->path, "/") == 0 || strcmp(c->to, "/") == 0) {
		rc = -EBUSY;
		goto out;
	}
	rc = s->ops->stat(s->r, c->path, &from);
	if (rc < 0)
		goto out;
	if (c->expect) {
		rc = judge_expect(s, c->path, c->expect, &from, "MOVE");
		if (rc < 0)
			goto out;
	}
	if (strcmp(c->path, c->to) == 0)
		goto out;   /* POSIX: renaming onto itself does nothing */
	if (S_ISDIR(from.mode) && path_within(c->to, c->path)) {
		rc = -EINVAL;
		goto out;
	}
	trc = s->ops->stat(s->r, c->to, &to);
	if (trc == 0) {
		if (!c->replace) {
			rc = -EEXIST;
			goto out;
		}
		if (S_ISDIR(to.mode) && !S_ISDIR(from.mode)) {
			rc = -EISDIR;
			goto out;
		}
		if (!S_ISDIR(to.mode) && S_ISDIR(from.mode)) {
			rc = -ENOTDIR;
			goto out;
		}
		if (S_ISDIR(to.mode)) {
			rc = check_empty_dir(s, c->to);
			if (rc < 0)
				goto out;
		}
		overwrite = 1;
	} else if (trc != -ENOENT) {
		rc = trc;
		goto out;
	}
	rc = changing(s, s->ops->write->move(s->w, c->path, c->to,
	                                     S_ISDIR(from.mode), overwrite));
out:
	return rc;
}

int xfer_write_one(const struct xfer_backend_ops *ops, void *rstate,
                   void *wstate, const char *url,
                   const struct xfer_wcall *c, int *changed)
{
	struct wsrc s = { ops, rstate, wstate, url, changed };
	int rc = -EINVAL;

	switch (c->op) {
	case XFER_W_PUT:
		rc = do_put(&s, c);
		break;
	case XFER_W_MKDIR:
		rc = strcmp(c->path, "/") == 0 ? -EEXIST :
		     changing(&s, ops->write->mkdir(wstate, c->path));
		break;
	case XFER_W_RMDIR:
		rc = do_rmdir(&s, c);
		break;
	case XFER_W_UNLINK:
		rc = do_unlink(&s, c);
		break;
	case XFER_W_RENAME:
		rc = do_rename(&s, c);
		break;
	case XFER_W_MTIME:
		rc = changing(&s, ops->write->set_mtime(wstate, c->path,
		                                        c->mtime));
		break;
	}
	return rc;
}

/* ---- public calls -------------------------------------------------------- */

int xfer_put(struct xfer *x, const char *path, xfer_source_fn src, void *arg,
             uint64_t len, int64_t mtime, const struct xfer_attr *expect,
             struct xfer_attr *result)
{
	struct xfer_wcall c = { .op = XFER_W_PUT, .path = path, .src = src,
	                        .arg = arg, .len = len, .mtime = mtime,
	                        .expect = expect, .result = result };

	return xfer_run_write(x, &c);
}

int xfer_mkdir(struct xfer *x, const char *path)
{
	struct xfer_wcall c = { .op = XFER_W_MKDIR, .path = path };

	return xfer_run_write(x, &c);
}

int xfer_rmdir(struct xfer *x, const char *path)
{
	struct xfer_wcall c = { .op = XFER_W_RMDIR, .path = path };

	return xfer_run_write(x, &c);
}

int xfer_unlink(struct xfer *x, const char *path,
                const struct xfer_attr *expect)
{
	struct xfer_wcall c = { .op = XFER_W_UNLINK, .path = path,
	                        .expect = expect };

	return xfer_run_write(x, &c);
}

int xfer_rename(struct xfer *x, const char *from, const char *to, int replace,
                const struct xfer_attr *expect)
{
	struct xfer_wcall c = { .op = XFER_W_RENAME, .path = from, .to = to,
	                        .replace = replace, .expect = expect };

	return xfer_run_write(x, &c);
}

int xfer_set_mtime(struct xfer *x, const char *path, int64_t mtime)
{
	struct xfer_wcall c = { .op = XFER_W_MTIME, .path = path,
	                        .mtime = mtime };

	return xfer_run_write(x, &c);
}
