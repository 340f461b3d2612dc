/* Exports: which part of the mount comes from which sources.
 *
 * An export appears at a path inside the mount ("/" for the URL form, or
 * "/archive", "/shared/RB1810001" from a config file).  Directories above
 * export paths are virtual: dmsfs makes them up from the export paths.  A
 * per-user export ("/home" with source ".../${user}/") is a virtual
 * directory of user names, each backed by its own sources, opened on first
 * use. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/fs_i.h"

#define USER_PLACEHOLDER "${user}"

struct user_xfer {
	char *name;
	char *source;              /* with the name in place of ${user} */
	struct xfer *xfer;
	struct user_xfer *next;
};

struct fs_export {
	char *name;
	char *path;
	size_t path_len;
	char *source;
	bool per_user;
	bool writable;
	struct xfer *xfer;         /* !per_user */
	struct user_xfer *users;   /* per_user; guarded by fs_exports.lock */
};

struct fs_exports {
	struct fs_export *v;
	size_t n;
	struct xfer_opts xopts;    /* proxy copied by xfer_open; opts kept */
	pthread_mutex_t lock;
};

/* Whether prefix is path or a '/'-bounded ancestor of it. */
static bool path_under(const char *path, const char *prefix, size_t plen)
{
	if (plen == 1)
		return true;
	return strncmp(path, prefix, plen) == 0 &&
	       (path[plen] == '\0' || path[plen] == '/');
}

bool fs_path_normalized(const char *p)
{
	const char *seg = p;

	if (p[0] != '/')
		return false;
	if (p[1] == '\0')
		return true;
	while (*seg == '/') {
		const char *end = strchr(seg + 1, '/');
		size_t len = end ? (size_t)(end - seg - 1) : strlen(seg + 1);

		if (len == 0 || (len == 1 && seg[1] == '.') ||
		    (len == 2 && seg[1] == '.' && seg[2] == '.'))
			return false;
		if (!end)
			return true;
		seg = end;
	}
	return false;
}

/* The length of an export path without trailing '/' ("/home/" is
 * "/home"). */
static size_t export_path_len(const char *path)
{
	size_t len = strlen(path);

	while (len > 1 && path[len - 1] == '/')
		len--;
	return len;
}

int fs_exports_check(const struct fs_export_conf *conf, size_t n,
                     size_t *bad, char *reason, size_t cap)
{
	char path[4096];
	size_t i, j, len, olen;

	for (i = 0; i < n; i++) {
		*bad = i;
		if (!conf[i].source || !conf[i].source[0]) {
			snprintf(reason, cap, "[export %s] %s", conf[i].name,
			         conf[i].source ? "empty URL: no source given"
			                        : "no source given");
			return -EINVAL;
		}
		if (!conf[i].path) {
			snprintf(reason, cap, "[export %s] needs a path",
			         conf[i].name);
			return -EINVAL;
		}
		len = export_path_len(conf[i].path);
		if (len >= sizeof(path))
			goto bad_path;
		memcpy(path, conf[i].path, len);
		path[len] = '\0';
		if (!fs_path_normalized(path))
			goto bad_path;
		if (conf[i].per_user && !strstr(conf[i].source, USER_PLACEHOLDER)) {
			snprintf(reason, cap, "[export %s] per_user needs %s in its "
			         "source", conf[i].name, USER_PLACEHOLDER);
			return -EINVAL;
		}
		for (j = 0; j < i; j++) {
			olen = export_path_len(conf[j].path);
			if (path_under(path, conf[j].path, olen) ||
			    path_under(conf[j].path, path, len)) {
				snprintf(reason, cap, "[export %s] path %s overlaps "
				         "[export %s] path %s", conf[i].name,
				         conf[i].path, conf[j].name, conf[j].path);
				return -EINVAL;
			}
		}
	}
	return 0;
bad_path:
	snprintf(reason, cap, "[export %s] path '%s' must be absolute and "
	         "normalized", conf[i].name, conf[i].path);
	return -EINVAL;
}

int fs_exports_open(struct fs_exports **out, const struct fs_export_conf *conf,
                    size_t n, const struct xfer_opts *xopts)
{
	struct fs_exports *ex = NULL;
	char reason[512];
	size_t i, bad;
	int rc;

	rc = fs_exports_check(conf, n, &bad, reason, sizeof(reason));
	if (rc) {
		dms_log(LOG_ERR, "%s", reason);
		goto fail;
	}
	rc = -ENOMEM;
	ex = calloc(1, sizeof(*ex));
	if (!ex)
		goto fail;
	pthread_mutex_init(&ex->lock, NULL);
	ex->xopts = *xopts;
	ex->v = calloc(n, sizeof(*ex->v));
	if (!ex->v)
		goto fail;
	for (i = 0; i < n; i++) {
		struct fs_export *e = &ex->v[ex->n];

		e->path_len = export_path_len(conf[i].path);
		e->name = strdup(conf[i].name);
		e->path = strndup(conf[i].path, e->path_len);
		e->source = strdup(conf[i].source);
		e->per_user = conf[i].per_user;
		e->writable = conf[i].writable;
		ex->n++;
		if (!e->name || !e->path || !e->source) {
			rc = -ENOMEM;
			goto fail;
		}
		if (!e->per_user) {
			unsigned since = dms_log_nerrors();

			rc = xfer_open(&e->xfer, e->source, xopts);
			if (rc) {
				dms_log_failed(since, "cannot use %s: %s", e->source,
				               strerror(-rc));
				goto fail;
			}
		}
	}
	*out = ex;
	return 0;
fail:
	fs_exports_close(ex);
	return rc;
}

void fs_exports_close(struct fs_exports *ex)
{
	size_t i;

	if (!ex)
		return;
	for (i = 0; i < ex->n; i++) {
		struct fs_export *e = &ex->v[i];
		struct user_xfer *u, *next;

		for (u = e->users; u; u = next) {
			next = u->next;
			xfer_close(u->xfer);
			free(u->source);
			free(u->name);
			free(u);
		}
		if (e->xfer)
			xfer_close(e->xfer);
		free(e->name);
		free(e->path);
		free(e->source);
	}
	free(ex->v);
	pthread_mutex_destroy(&ex->lock);
	free(ex);
}

/* A user name that may stand in a path and a URL: a local account's, and
 * never one that could climb out of its directory. */
static bool valid_user(const char *name, size_t len)
{
	char buf[16384], nm[256];
	struct passwd pw, *res = NULL;

	if (len == 0 || len >= sizeof(nm) || memchr(name, '/', len) ||
	    (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	memcpy(nm, name, len);
	nm[len] = '\0';
	return getpwnam_r(nm, &pw, buf, sizeof(buf), &res) == 0 && res;
}

/* The sources of one user's area, opened on first use and kept. */
static int user_xfer(struct fs_exports *ex, struct fs_export *e,
                     const char *name, size_t len, struct fs_route *r)
{
	struct user_xfer *u;
	char enc[1024], *src = NULL;
	const char *at;
	size_t srclen;
	int rc = 0, n;

	pthread_mutex_lock(&ex->lock);
	for (u = e->users; u; u = u->next) {
		if (strlen(u->name) == len && memcmp(u->name, name, len) == 0)
			goto found;
	}
	u = calloc(1, sizeof(*u));
	if (!u || !(u->name = strndup(name, len))) {
		rc = -ENOMEM;
		goto fail;
	}
	n = xfer_encode_segment(u->name, enc, sizeof(enc));
	if (n < 0) {
		rc = n;
		goto fail;
	}
	/* Every ${user} in the source string, in every mirror, is replaced. */
	srclen = strlen(e->source) + 1;
	for (at = strstr(e->source, USER_PLACEHOLDER); at;
	     at = strstr(at + 1, USER_PLACEHOLDER))
		srclen += (size_t)n;
	src = malloc(srclen);
	if (!src) {
		rc = -ENOMEM;
		goto fail;
	}
	src[0] = '\0';
	{
		const char *from = e->source;
		size_t used = 0;

		while ((at = strstr(from, USER_PLACEHOLDER))) {
			memcpy(src + used, from, (size_t)(at - from));
			used += (size_t)(at - from);
			memcpy(src + used, enc, (size_t)n);
			used += (size_t)n;
			from = at + strlen(USER_PLACEHOLDER);
		}
		memcpy(src + used, from, strlen(from) + 1);
	}
	rc = xfer_open(&u->xfer, src, &ex->xopts);
	if (rc)
		goto fail;
	u->source = src;
	src = NULL;
	u->next = e->users;
	e->users = u;
found:
	r->xfer = u->xfer;
	r->tree = u->source;
	r->user = u->name;
	goto out;
fail:
	if (u)
		free(u->name);
	free(u);
out:
	pthread_mutex_unlock(&ex->lock);
	free(src);
	return rc;
}

int fs_exports_route(struct fs_exports *ex, const char *path,
                     struct fs_route *r)
{
	size_t i;

	memset(r, 0, sizeof(*r));
	for (i = 0; i < ex->n; i++) {
		struct fs_export *e = &ex->v[i];
		const char *rest, *slash;

		if (!path_under(path, e->path, e->path_len))
			continue;
		rest = e->path_len == 1 ? path : path + e->path_len;
		if (!e->per_user) {
			r->kind = FS_ROUTE_SOURCE;
			r->xfer = e->xfer;
			r->tree = e->source;
			r->inner = rest[0] ? rest : "/";
			r->writable = e->writable;
			return 0;
		}
		if (rest[0] == '\0' || (rest[0] == '/' && rest[1] == '\0')) {
			r->kind = FS_ROUTE_USERS;
			return 0;
		}
		slash = strchr(rest + 1, '/');
		if (!valid_user(rest + 1, slash ? (size_t)(slash - rest - 1)
		                                : strlen(rest + 1)))
			return -ENOENT;
		r->kind = FS_ROUTE_SOURCE;
		r->inner = slash ? slash : "/";
		r->writable = e->writable;
		return user_xfer(ex, e, rest + 1, slash ? (size_t)(slash - rest - 1)
		                                        : strlen(rest + 1), r);
	}
	/* Not inside an export: a directory above one, or nothing. */
	for (i = 0; i < ex->n; i++) {
		if (path_under(ex->v[i].path, path, strlen(path))) {
			r->kind = FS_ROUTE_VIRTUAL;
			return 0;
		}
	}
	return -ENOENT;
}

int fs_exports_children(struct fs_exports *ex, const char *path,
                        int (*fn)(void *arg, const char *name), void *arg)
{
	size_t plen = strlen(path), i, j;
	char name[256];
	int rc = 0;

	for (i = 0; i < ex->n && rc == 0; i++) {
		const char *p = ex->v[i].path, *start, *end;
		bool seen = false;

		if (strcmp(p, path) == 0 || !path_under(p, path, plen))
			continue;
		start = plen == 1 ? p + 1 : p + plen + 1;
		end = strchr(start, '/');
		if (!end)
			end = start + strlen(start);
		if ((size_t)(end - start) >= sizeof(name))
			continue;
		memcpy(name, start, (size_t)(end - start));
		name[end - start] = '\0';
		/* Two exports under one virtual child list it once. */
		for (j = 0; j < i && !seen; j++) {
			const char *q = ex->v[j].path;

			seen = path_under(q, path, plen) && strcmp(q, path) != 0 &&
			       strncmp(q + (plen == 1 ? 1 : plen + 1), name,
			               strlen(name)) == 0 &&
			       (q[(plen == 1 ? 1 : plen + 1) + strlen(name)] == '/' ||
			        q[(plen == 1 ? 1 : plen + 1) + strlen(name)] == '\0');
		}
		if (!seen)
			rc = fn(arg, name);
	}
	return rc;
}

/* Sources of the exports that can be probed at mount time (per-user ones
 * cannot: they depend on who asks). */
int fs_exports_probe_list(struct fs_exports *ex, size_t i, const char **name,
                          const char **path, struct fs_route *r)
{
	if (i >= ex->n)
		return -ENOENT;
	*name = ex->v[i].name;
	*path = ex->v[i].path;
	memset(r, 0, sizeof(*r));
	r->kind = FS_ROUTE_SOURCE;
	r->xfer = ex->v[i].xfer;
	r->tree = ex->v[i].source;
	r->inner = "/";
	r->writable = ex->v[i].writable;
	return 0;
}
