/* Opening files that decide access only if no one untrusted could have
 * written them; the rule is in trustfile.h.  The path is walked by hand on
 * O_PATH descriptors rather than given to realpath() and then opened: a
 * name checked and then opened again could be swapped in between, and
 * realpath() alone says nothing about the symlinks and directories passed
 * through on the way. */
#define _GNU_SOURCE   /* O_PATH */
#include "trustfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* As the kernel's own limit on symlinks in one lookup. */
#define MAX_LINKS 40

struct walk {
	uid_t euid;
	int dir;                 /* O_PATH descriptor of the directory reached */
	char at[PATH_MAX];       /* its physical path, for messages */
	char rest[2 * PATH_MAX]; /* what is left to resolve */
	size_t pos;              /* next unread byte of rest */
	unsigned links;
	bool want_dir;           /* dms_open_trusted_dir: the end is a folder */
	char *why;
	size_t whylen;
};

static void say(struct walk *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(struct walk *w, const char *fmt, ...)
{
	va_list ap;

	if (!w->whylen)
		return;
	va_start(ap, fmt);
	vsnprintf(w->why, w->whylen, fmt, ap);
	va_end(ap);
}

static const char *type_name(mode_t m)
{
	switch (m & S_IFMT) {
	case S_IFDIR:  return "a directory";
	case S_IFIFO:  return "a FIFO";
	case S_IFCHR:  return "a character device";
	case S_IFBLK:  return "a block device";
	case S_IFSOCK: return "a socket";
	case S_IFLNK:  return "a symlink";
	default:       return "of an unknown type";
	}
}

/* The path of name in the directory reached, for messages. */
static void child_path(const struct walk *w, const char *name, char *out,
                       size_t len)
{
	snprintf(out, len, "%s%s%s", w->at, strcmp(w->at, "/") ? "/" : "",
	         name);
}

static int check_owner(struct walk *w, const struct stat *st,
                       const char *kind, const char *path)
{
	if (st->st_uid == 0 || st->st_uid == w->euid)
		return 0;
	if (w->euid == 0)
		say(w, "%s%s is owned by uid %u, not by root", kind, path,
		    (unsigned)st->st_uid);
	else
		say(w, "%s%s is owned by uid %u, not by root or uid %u", kind,
		    path, (unsigned)st->st_uid, (unsigned)w->euid);
	return -EPERM;
}

/* A directory others can write is safe only with the sticky bit: they
 * may add names there but not rename or remove ours, and what we open
 * next must be owned by a trusted uid (checked for every component). */
static int check_dir(struct walk *w, const struct stat *st, const char *path)
{
	int rc = check_owner(w, st, "directory ", path);

	if (rc)
		return rc;
	if ((st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX)) {
		say(w, "directory %s is writable by group or others (mode %04o) "
		    "and not sticky", path, (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

static int check_file(struct walk *w, const struct stat *st, const char *path)
{
	int rc;

	if (!S_ISREG(st->st_mode)) {
		say(w, "%s is not a regular file but %s", path,
		    type_name(st->st_mode));
		return S_ISDIR(st->st_mode) ? -EISDIR : -EINVAL;
	}
	rc = check_owner(w, st, "", path);
	if (rc)
		return rc;
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		say(w, "%s is writable by group or others (mode %04o)", path,
		    (unsigned)(st->st_mode & 07777));
		return -EPERM;
	}
	return 0;
}

/* Starts (again) at "/", as an absolute path or symlink target does. */
static int go_root(struct walk *w)
{
	struct stat st;
	int fd, rc = 0;

	fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		say(w, "cannot open /: %s", strerror(-rc));
		goto out;
	}
	snprintf(w->at, sizeof(w->at), "/");
	rc = check_dir(w, &st, "/");
	if (rc)
		goto out;
	if (w->dir >= 0)
		close(w->dir);
	w->dir = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Copies the next component of rest to name; *last: nothing follows. */
static int next_name(struct walk *w, char *name, bool *last)
{
	const char *p = w->rest + w->pos, *end;
	size_t n;

	while (*p == '/')
		p++;
	end = strchrnul(p, '/');
	n = (size_t)(end - p);
	if (n > NAME_MAX) {
		say(w, "a name in %s is longer than %d bytes", w->rest, NAME_MAX);
		return -ENAMETOOLONG;
	}
	memcpy(name, p, n);
	name[n] = '\0';
	while (*end == '/')
		end++;
	w->pos = (size_t)(end - w->rest);
	*last = *end == '\0';
	return 0;
}

/* Puts a symlink's target in front of what is left to resolve. */
static int splice_link(struct walk *w, int fd, const char *path)
{
	char target[PATH_MAX + 1];
	char joined[sizeof(w->rest)];
	ssize_t n;
	int len, rc = 0;

	if (++w->links > MAX_LINKS) {
		say(w, "too many symlinks (more than %d) at %s", MAX_LINKS, path);
		rc = -ELOOP;
		goto out;
	}
	n = readlinkat(fd, "", target, sizeof(target));
	if (n < 0) {
		rc = -errno;
		say(w, "cannot read symlink %s: %s", path, strerror(-rc));
		goto out;
	}
	if (n == 0 || (size_t)n >= sizeof(target)) {
		rc = n ? -ENAMETOOLONG : -ENOENT;
		say(w, "symlink %s: %s", path, strerror(-rc));
		goto out;
	}
	target[n] = '\0';
	len = snprintf(joined, sizeof(joined), "%s/%s", target,
	               w->rest + w->pos);
	if (len < 0 || (size_t)len >= sizeof(joined)) {
		rc = -ENAMETOOLONG;
		say(w, "symlink %s: the resolved path is too long", path);
		goto out;
	}
	memcpy(w->rest, joined, (size_t)len + 1);
	w->pos = 0;
	if (target[0] == '/')
		rc = go_root(w);
out:
	return rc;
}

/* Steps into the parent: only directories already checked on the way down
 * from "/" are reached so, no new check is needed. */
static int go_up(struct walk *w)
{
	char *slash;
	int fd;

	fd = openat(w->dir, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;

		say(w, "cannot open %s/..: %s", w->at, strerror(-rc));
		return rc;
	}
	close(w->dir);
	w->dir = fd;
	slash = strrchr(w->at, '/');
	if (slash == w->at)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	return 0;
}

/* The named file itself: type first on the O_PATH descriptor (a FIFO or
 * device is never opened), then opened for reading and everything checked
 * again on that descriptor, which must be the same file. */
static int open_final(struct walk *w, const char *name, const struct stat *pst,
                      const char *path, int *fd_out, struct stat *st)
{
	int fd = -1, rc;

	rc = check_file(w, pst, path);
	if (rc)
		goto out;
	fd = openat(w->dir, name,
	            O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, st) < 0) {
		rc = -errno;
		say(w, "cannot open %s: %s", path, strerror(-rc));
		goto out;
	}
	if (st->st_dev != pst->st_dev || st->st_ino != pst->st_ino) {
		rc = -EAGAIN;
		say(w, "%s was replaced while being opened", path);
		goto out;
	}
	rc = check_file(w, st, path);
	if (rc)
		goto out;
	*fd_out = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* The named folder itself (dms_open_trusted_dir): opened for reading
 * without following a symlink and checked on that descriptor.  Stricter
 * than a folder on the way: writable by no one but its owner, sticky or
 * not, because what the caller puts there must not be replaced. */
static int open_final_dir(struct walk *w, int at, const char *name,
                          const char *path, int *fd_out, struct stat *st)
{
	int fd, rc;

	fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, st) < 0) {
		rc = -errno;
		say(w, "cannot open %s: %s", path, strerror(-rc));
		goto out;
	}
	rc = check_dir(w, st, path);
	if (rc)
		goto out;
	if (st->st_mode & (S_IWGRP | S_IWOTH)) {
		say(w, "directory %s is writable by group or others (mode %04o)",
		    path, (unsigned)(st->st_mode & 07777));
		rc = -EPERM;
		goto out;
	}
	*fd_out = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Resolves and checks one component; *done once the file is open. */
static int step(struct walk *w, int *fd_out, struct stat *st_out, bool *done)
{
	char name[NAME_MAX + 1];
	char path[PATH_MAX + NAME_MAX + 2];
	struct stat st;
	bool last;
	int fd = -1, rc;

	rc = next_name(w, name, &last);
	if (rc)
		goto out;
	if (!name[0] || !strcmp(name, ".") || !strcmp(name, "..")) {
		if (!strcmp(name, ".."))
			rc = go_up(w);
		if (!rc && last && w->want_dir) {
			rc = open_final_dir(w, w->dir, ".", w->at, fd_out,
			                    st_out);
			*done = rc == 0;
		} else if (!rc && last) {
			say(w, "%s is not a regular file but a directory", w->at);
			rc = -EISDIR;
		}
		goto out;
	}
	child_path(w, name, path, sizeof(path));
	fd = openat(w->dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		say(w, "cannot open %s: %s", path, strerror(-rc));
		goto out;
	}
	if (S_ISLNK(st.st_mode)) {
		rc = check_owner(w, &st, "symlink ", path);
		if (!rc)
			rc = splice_link(w, fd, path);
		goto out;
	}
	if (last && w->want_dir) {
		rc = -ENOTDIR;
		if (!S_ISDIR(st.st_mode))
			say(w, "%s is not a directory", path);
		else
			rc = open_final_dir(w, w->dir, name, path, fd_out,
			                    st_out);
		*done = rc == 0;
		goto out;
	}
	if (last) {
		rc = open_final(w, name, &st, path, fd_out, st_out);
		*done = rc == 0;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = -ENOTDIR;
		say(w, "%s is not a directory", path);
		goto out;
	}
	rc = check_dir(w, &st, path);
	if (rc)
		goto out;
	if (strlen(path) >= sizeof(w->at)) {
		rc = -ENAMETOOLONG;
		say(w, "%s: %s", path, strerror(-rc));
		goto out;
	}
	close(w->dir);
	w->dir = fd;
	fd = -1;
	memcpy(w->at, path, strlen(path) + 1);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int open_walk(const char *path, bool want_dir, int *fd_out,
                     struct stat *st, char *why, size_t whylen)
{
	struct walk *w;
	struct stat dummy;
	bool done = false;
	int rc = 0, len;

	*fd_out = -1;
	if (whylen)
		why[0] = '\0';
	w = calloc(1, sizeof(*w));
	if (!w) {
		rc = -ENOMEM;
		if (whylen)
			snprintf(why, whylen, "%s", strerror(ENOMEM));
		goto out;
	}
	w->euid = geteuid();
	w->want_dir = want_dir;
	w->dir = -1;
	w->why = why;
	w->whylen = whylen;
	if (!path[0]) {
		rc = -ENOENT;
		say(w, "empty path");
		goto out;
	}
	if (path[0] == '/') {
		len = snprintf(w->rest, sizeof(w->rest), "%s", path);
	} else {
		char cwd[PATH_MAX];

		if (!getcwd(cwd, sizeof(cwd))) {
			rc = -errno;
			say(w, "cannot resolve %s: %s", path, strerror(-rc));
			goto out;
		}
		len = snprintf(w->rest, sizeof(w->rest), "%s/%s", cwd, path);
	}
	if (len < 0 || (size_t)len >= sizeof(w->rest)) {
		rc = -ENAMETOOLONG;
		say(w, "path too long");
		goto out;
	}
	rc = go_root(w);
	while (!rc && !done)
		rc = step(w, fd_out, st ? st : &dummy, &done);
out:
	if (w && w->dir >= 0)
		close(w->dir);
	free(w);
	return rc;
}

int dms_open_trusted(const char *path, int *fd_out, struct stat *st,
                     char *why, size_t whylen)
{
	return open_walk(path, false, fd_out, st, why, whylen);
}

int dms_open_trusted_dir(const char *path, int *fd_out, struct stat *st,
                         char *why, size_t whylen)
{
	return open_walk(path, true, fd_out, st, why, whylen);
}

int dms_read_trusted(const char *path, size_t cap, char **buf, size_t *len,
                     struct stat *st, char *why, size_t whylen)
{
	struct stat sb;
	char *b = NULL;
	size_t got = 0, want;
	int fd = -1, rc;

	*buf = NULL;
	*len = 0;
	if (!st)
		st = &sb;
	rc = dms_open_trusted(path, &fd, st, why, whylen);
	if (rc)
		goto out;
	if ((uint64_t)st->st_size > cap) {
		rc = -EFBIG;
		snprintf(why, whylen, "%s is larger than %zu bytes (%lld)", path,
		         cap, (long long)st->st_size);
		goto out;
	}
	/* One byte more than fstat said: a file that grew since is caught. */
	want = (size_t)st->st_size + 1;
	b = malloc(want + 1);
	if (!b) {
		rc = -ENOMEM;
		snprintf(why, whylen, "%s", strerror(ENOMEM));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, b + got, want - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			snprintf(why, whylen, "cannot read %s: %s", path,
			         strerror(-rc));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got == want) {
			rc = -EAGAIN;
			snprintf(why, whylen, "%s changed while being read", path);
			goto out;
		}
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	b = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(b);
	return rc;
}
