/* The daemon side of the control socket (protocol: fs/ctl_proto.h).  One
 * thread answers one short request at a time; it reads the journal only. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/ctl.h"
#include "fs/ctl_proto.h"

struct fs_ctl {
	int fd;
	int stop_pipe[2];
	pthread_t thread;
	struct cache_jnl *jnl;
	struct fs_wb *wb;
};

struct walk {
	int fd;
	uid_t uid;
	const char *path;       /* sync: prefix; NULL: status */
	uint64_t n, bytes;
	char err[256];
};

static bool under(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/')
		return true;
	return strncmp(p, prefix, n) == 0 && (p[n] == '/' || !p[n]);
}

static const char *kind_name(enum cache_jnl_kind k)
{
	static const char *names[] = {
		"?", "upload", "mkdir", "rmdir", "delete", "rename", "setattr",
	};

	return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

static int visit(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct walk *w = arg;
	char line[DMS_CTL_LINE_MAX];
	int n;

	if (w->uid != 0 && op->uid != w->uid)
		return 0;
	if (w->path) {
		if (!under(op->path, w->path) &&
		    !(op->path2 && under(op->path2, w->path)))
			return 0;
		if (w->n == 0 && op->last_error && op->last_error[0])
			snprintf(w->err, sizeof(w->err), "%s", op->last_error);
		w->n++;
		if (op->kind == CACHE_JNL_WRITE)
			w->bytes += op->size;
		return 0;
	}
	n = snprintf(line, sizeof(line), "%llu %lld %u %s %s%s%s\t%s\n",
	             (unsigned long long)seq,
	             (long long)(time(NULL) - op->added), op->retries,
	             kind_name(op->kind), op->path, op->path2 ? " -> " : "",
	             op->path2 ? op->path2 : "",
	             op->last_error && op->last_error[0] ? op->last_error : "-");
	if (n > 0 && write(w->fd, line, (size_t)n < sizeof(line) ? (size_t)n
	                   : sizeof(line) - 1) < 0)
		return 1;
	return 0;
}

static void serve(struct fs_ctl *c, int fd)
{
	char req[DMS_CTL_LINE_MAX], out[512];
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct walk w;
	ssize_t got = 0, r;
	int n;

	memset(&w, 0, sizeof(w));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0)
		return;
	while ((size_t)got < sizeof(req) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		if (poll(&p, 1, 2000) != 1)
			return;
		r = read(fd, req + got, sizeof(req) - 1 - (size_t)got);
		if (r <= 0)
			return;
		got += r;
		if (memchr(req, '\n', (size_t)got))
			break;
	}
	req[got] = '\0';
	req[strcspn(req, "\n")] = '\0';
	w.fd = fd;
	w.uid = cr.uid;
	if (!strncmp(req, "sync ", 5) && req[5] == '/') {
		w.path = req + 5;
		fs_wb_hurry(c->wb);
		cache_jnl_foreach(c->jnl, visit, &w);
		n = snprintf(out, sizeof(out), "%llu %llu %s\n",
		             (unsigned long long)w.n,
		             (unsigned long long)w.bytes, w.err[0] ? w.err : "-");
	} else if (!strcmp(req, "status")) {
		cache_jnl_foreach(c->jnl, visit, &w);
		n = snprintf(out, sizeof(out), ".\n");
	} else {
		n = snprintf(out, sizeof(out), "error unknown request\n");
	}
	if (write(fd, out, (size_t)n) < 0)
		return;
}

static void *run(void *arg)
{
	struct fs_ctl *c = arg;

	for (;;) {
		struct pollfd p[2] = {
			{ .fd = c->fd, .events = POLLIN },
			{ .fd = c->stop_pipe[0], .events = POLLIN },
		};
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept4(c->fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		serve(c, fd);
		close(fd);
	}
	return NULL;
}

int fs_ctl_start(struct fs_ctl **out, const char *mountpoint,
                 struct cache_jnl *jnl, struct fs_wb *wb)
{
	struct fs_ctl *c = calloc(1, sizeof(*c));
	struct sockaddr_un a;
	socklen_t len;
	int rc;

	if (!c)
		return -ENOMEM;
	c->fd = -1;
	c->stop_pipe[0] = c->stop_pipe[1] = -1;
	c->jnl = jnl;
	c->wb = wb;
	if (dms_ctl_addr(mountpoint, &a, &len) != 0) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, len) != 0 ||
	    listen(c->fd, 16) != 0 || pipe2(c->stop_pipe, O_CLOEXEC) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = pthread_create(&c->thread, NULL, run, c);
	if (rc) {
		rc = -rc;
		goto fail;
	}
	*out = c;
	return 0;
fail:
	dms_log(LOG_WARNING, "control socket for %s not available (dmsctl sync "
	        "and status will not work): %s", mountpoint, strerror(-rc));
	if (c->fd >= 0)
		close(c->fd);
	if (c->stop_pipe[0] >= 0) {
		close(c->stop_pipe[0]);
		close(c->stop_pipe[1]);
	}
	free(c);
	return rc;
}

void fs_ctl_stop(struct fs_ctl *c)
{
	if (!c)
		return;
	if (write(c->stop_pipe[1], "x", 1) == 1)
		pthread_join(c->thread, NULL);
	close(c->fd);
	close(c->stop_pipe[0]);
	close(c->stop_pipe[1]);
	free(c);
}
