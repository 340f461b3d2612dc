/* The daemon side of the control socket (protocol: fs/ctl_proto.h).  One
 * thread accepts; each connection is served by a thread of its own (at
 * most CTL_CONNS at once; more are told "error busy"), so a long pin does
 * not hold up status or sync.  At stop, running pins are cancelled, the
 * connections shut down and their threads joined.  Every mount has one;
 * without writable exports (jnl NULL) nothing is ever pending. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/ctlsock.h"
#include "common/log.h"
#include "common/trustfile.h"
#include "fs/ctl.h"
#include "fs/ctl_proto.h"
#include "fs/metrics.h"
#include "fs/pin.h"

#define SEND_TIMEOUT_S 2
#define CTL_CONNS 8
/* Any local user may connect: one must not be able to hold every slot
 * (a pin or a slow request keeps one), so a uid other than root gets at
 * most CTL_CONNS_PER_UID, and the last CTL_ROOT_RESERVE are root's alone:
 * an admin's status or sync always gets through. */
#define CTL_CONNS_PER_UID 2
#define CTL_ROOT_RESERVE 2

struct fs_ctl;

struct ctl_conn {
	struct fs_ctl *c;
	pthread_t thread;
	bool used;              /* thread started, not joined; accept thread */
	atomic_bool done;       /* thread finished */
	int fd;                 /* -1 once closed; guarded by fs_ctl.conns_lock */
	uid_t uid;
};

struct fs_ctl {
	int fd;                 /* listening socket */
	int dirfd;              /* the trusted socket folder */
	int lockfd;             /* flock held while we own the socket name */
	bool bound;             /* the socket name is ours to remove */
	char sockname[DMS_CTL_NAME_LEN + 8], lockname[DMS_CTL_NAME_LEN + 8];
	int stop_pipe[2];
	pthread_t thread;
	struct cache_jnl *jnl;  /* NULL: no writable exports */
	struct fs_wb *wb;
	_Atomic(struct fs_pins *) pins;
	pthread_mutex_t conns_lock;
	struct ctl_conn conns[CTL_CONNS];
	fs_ctl_info_fn info;        /* the "info" answer; may be NULL */
	void *info_arg;
	_Atomic(fs_ctl_reload_fn) reload;   /* "reload"; may be NULL */
	void *_Atomic reload_arg;
};

struct walk {
	FILE *out;              /* status lines */
	uid_t uid;
	const char *path;       /* sync: prefix; NULL: status */
	uint64_t n, bytes, uploads;
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
		if (op->kind == CACHE_JNL_WRITE) {
			w->bytes += op->size;
			w->uploads++;
		}
		return 0;
	}
	n = snprintf(line, sizeof(line), "%llu %lld %u %s %s%s%s\t%s\n",
	             (unsigned long long)seq,
	             (long long)(time(NULL) - op->added), op->retries,
	             kind_name(op->kind), op->path, op->path2 ? " -> " : "",
	             op->path2 ? op->path2 : "",
	             op->last_error && op->last_error[0] ? op->last_error : "-");
	if (n < 0)
		return 0;
	/* Two paths of 4095 bytes do not fit: cut, but keep one line each. */
	if ((size_t)n >= sizeof(line)) {
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (fwrite(line, 1, (size_t)n, w->out) == 0)
		return 1;
	return 0;
}

static void visit_conflict(void *arg, const struct fs_wb_conflict *cf)
{
	struct walk *w = arg;

	if (w->uid != 0 && cf->uid != w->uid)
		return;
	fprintf(w->out, "conflict %lld %s\t%s\n",
	        (long long)(time(NULL) - cf->when), cf->path, cf->ours);
}

/* Writes all of buf, giving up when the caller stops reading for
 * SEND_TIMEOUT_S (SO_SNDTIMEO): one thread serves every caller. */
static void send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t r = write(fd, buf, len);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		buf += r;
		len -= (size_t)r;
	}
}

static void serve(struct fs_ctl *c, int fd)
{
	char req[DMS_CTL_LINE_MAX];
	struct timeval tmo = { .tv_sec = SEND_TIMEOUT_S };
	struct timespec start;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	struct walk w;
	char *ans = NULL;
	size_t len = 0, nl;
	ssize_t got = 0, r;

	memset(&w, 0, sizeof(w));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo)) != 0)
		goto out;
	/* One deadline for the whole request line: a byte now and then
	 * must not keep a connection's slot. */
	clock_gettime(CLOCK_MONOTONIC, &start);
	while ((size_t)got < sizeof(req) - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		struct timespec now;
		long left_ms;

		clock_gettime(CLOCK_MONOTONIC, &now);
		left_ms = SEND_TIMEOUT_S * 1000L -
		          (now.tv_sec - start.tv_sec) * 1000L -
		          (now.tv_nsec - start.tv_nsec) / 1000000L;
		if (left_ms <= 0 || poll(&p, 1, (int)left_ms) != 1)
			goto out;
		r = read(fd, req + got, sizeof(req) - 1 - (size_t)got);
		if (r <= 0)
			goto out;
		got += r;
		if (memchr(req, '\n', (size_t)got))
			break;
	}
	req[got] = '\0';
	nl = strcspn(req, "\n");
	req[nl] = '\0';
	if (fs_pins_wants(req) && atomic_load(&c->pins)) {
		size_t more = nl < (size_t)got ? (size_t)got - nl - 1 : 0;

		fs_pins_serve(atomic_load(&c->pins), fd, cr.uid, cr.gid, req,
		              req + nl + 1, more);
		goto out;
	}
	/* The answer is built first, then sent: the journal is not held
	 * while a slow caller reads. */
	w.out = open_memstream(&ans, &len);
	if (!w.out)
		goto out;
	w.uid = cr.uid;
	if (!strncmp(req, "sync ", 5) && req[5] == '/') {
		w.path = req + 5;
		if (c->jnl) {
			fs_wb_hurry(c->wb);
			cache_jnl_foreach(c->jnl, visit, &w);
		}
		fprintf(w.out, "%llu %llu %llu %s\n", (unsigned long long)w.n,
		        (unsigned long long)w.bytes,
		        (unsigned long long)w.uploads, w.err[0] ? w.err : "-");
	} else if (!strcmp(req, "status")) {
		if (!c->jnl) {
			fputs(".\n", w.out);
		} else if (cache_jnl_foreach(c->jnl, visit, &w) == 0) {
			fs_wb_conflicts(c->wb, visit_conflict, &w);
			fputs(".\n", w.out);
		}
	} else if (!strcmp(req, "metrics") && c->info) {
		/* Counters only, for anyone, as "info" (whose arg is the
		 * mount's struct fs). */
		fs_metrics_answer(c->info_arg, w.out);
		fputs(".\n", w.out);
	} else if (!strcmp(req, "info") && c->info) {
		/* Figures of sources and cache: anyone may see them. */
		c->info(c->info_arg, w.out);
		fprintf(w.out, "pending\t%s\n", c->jnl ? "yes" : "no");
		fputs(".\n", w.out);
	} else if (!strcmp(req, "reload") && atomic_load(&c->reload)) {
		/* Rules decide who reads what: not for any local user. */
		if (cr.uid != 0 && cr.uid != geteuid()) {
			fputs("error only root or the mount's owner may reload "
			      "it\n", w.out);
		} else {
			atomic_load(&c->reload)(atomic_load(&c->reload_arg),
			                        w.out);
			fputs(".\n", w.out);
		}
	} else {
		fputs("error unknown request\n", w.out);
	}
	if (fclose(w.out) == 0)
		send_all(fd, ans, len);
out:
	free(ans);
}

static void release(struct fs_ctl *c);

static void *conn_main(void *arg)
{
	struct ctl_conn *k = arg;

	serve(k->c, k->fd);
	pthread_mutex_lock(&k->c->conns_lock);
	close(k->fd);
	k->fd = -1;
	pthread_mutex_unlock(&k->c->conns_lock);
	atomic_store(&k->done, true);
	return NULL;
}

/* Joins the threads of finished connections; the accept thread only. */
static void reap(struct fs_ctl *c, bool all)
{
	for (unsigned i = 0; i < CTL_CONNS; i++) {
		struct ctl_conn *k = &c->conns[i];

		if (k->used && (all || atomic_load(&k->done))) {
			pthread_join(k->thread, NULL);
			k->used = false;
		}
	}
}

/* Serves fd on a thread of its own; "error busy" when all are taken, or
 * all those this peer's uid may take. */
static void dispatch(struct fs_ctl *c, int fd)
{
	struct ctl_conn *k = NULL;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	unsigned used = 0, mine = 0;

	reap(c, false);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0)
		goto busy;
	for (unsigned i = 0; i < CTL_CONNS; i++) {
		if (!c->conns[i].used) {
			if (!k)
				k = &c->conns[i];
			continue;
		}
		used++;
		mine += c->conns[i].uid == cr.uid;
	}
	if (cr.uid != 0 && (mine >= CTL_CONNS_PER_UID ||
	                    used >= CTL_CONNS - CTL_ROOT_RESERVE))
		k = NULL;
	if (k) {
		k->c = c;
		k->fd = fd;
		k->uid = cr.uid;
		atomic_store(&k->done, false);
		if (pthread_create(&k->thread, NULL, conn_main, k) == 0) {
			k->used = true;
			return;
		}
	}
busy:
	send_all(fd, "error busy\n", 11);
	close(fd);
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
		dispatch(c, fd);
	}
	return NULL;
}

/* Takes mnt's lock file in the trusted folder c->dirfd: held, it says a
 * live daemon owns the socket; free, any socket there is a dead one's.
 * The name is checked to still be the locked file, else a daemon that was
 * removing it at the same moment would leave us holding a lock no one else
 * sees. */
static int take_lock(struct fs_ctl *c, const char *dir)
{
	struct stat a, b;
	int tries, rc = -EAGAIN;

	for (tries = 0; tries < 5; tries++) {
		c->lockfd = openat(c->dirfd, c->lockname, O_RDWR | O_CREAT |
		                   O_NOFOLLOW | O_CLOEXEC, 0600);
		if (c->lockfd < 0) {
			rc = -errno;
			dms_log(LOG_WARNING, "cannot open %s/%s: %s", dir,
			        c->lockname, strerror(-rc));
			break;
		}
		if (flock(c->lockfd, LOCK_EX | LOCK_NB) != 0) {
			rc = errno == EWOULDBLOCK ? -EADDRINUSE : -errno;
			break;
		}
		if (fstat(c->lockfd, &a) == 0 &&
		    fstatat(c->dirfd, c->lockname, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino &&
		    S_ISREG(a.st_mode) && a.st_uid == geteuid())
			return 0;
		close(c->lockfd);
		c->lockfd = -1;
	}
	if (c->lockfd >= 0)
		close(c->lockfd);
	c->lockfd = -1;
	return rc;
}

/* The folder of the sockets, made if missing and checked like a rules
 * file's path (common/trustfile.h), and owned by us. */
static int open_dir(struct fs_ctl *c, const char *dir)
{
	char why[DMS_TRUST_WHYLEN];
	uid_t me = geteuid();
	struct stat st;
	int rc;

	if (mkdir(dir, me == 0 ? 0755 : 0700) == 0 &&
	    chmod(dir, me == 0 ? 0755 : 0700) != 0) {
		rc = -errno;
		snprintf(why, sizeof(why), "chmod: %s", strerror(-rc));
		goto fail;
	}
	rc = dms_open_trusted_dir(dir, &c->dirfd, &st, why, sizeof(why));
	if (rc)
		goto fail;
	if (st.st_uid != me) {
		rc = -EPERM;
		snprintf(why, sizeof(why), "%s is owned by uid %u, not by uid %u",
		         dir, (unsigned)st.st_uid, (unsigned)me);
		goto fail;
	}
	return 0;
fail:
	dms_log(LOG_WARNING, "refusing the control socket folder %s, another "
	        "user could take over the socket: %s", dir, why);
	return rc;
}

int fs_ctl_start(struct fs_ctl **out, const char *mountpoint,
                 struct cache_jnl *jnl, struct fs_wb *wb,
                 fs_ctl_info_fn info, void *info_arg)
{
	struct fs_ctl *c = calloc(1, sizeof(*c));
	char dir[PATH_MAX];
	struct sockaddr_un a;
	int rc;

	if (!c)
		return -ENOMEM;
	c->fd = c->dirfd = c->lockfd = -1;
	c->stop_pipe[0] = c->stop_pipe[1] = -1;
	c->jnl = jnl;
	c->wb = wb;
	pthread_mutex_init(&c->conns_lock, NULL);
	c->info = info;
	c->info_arg = info_arg;
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	rc = dms_ctl_dir(geteuid(), dir, sizeof(dir));
	if (!rc)
		rc = dms_ctl_sock_path(dir, mountpoint, a.sun_path,
		                       sizeof(a.sun_path));
	if (!rc)
		rc = dms_ctl_name(mountpoint, ".sock", c->sockname,
		                  sizeof(c->sockname));
	if (!rc)
		rc = dms_ctl_name(mountpoint, ".lock", c->lockname,
		                  sizeof(c->lockname));
	if (rc)
		goto fail;
	rc = open_dir(c, dir);
	if (rc)
		goto fail;
	rc = take_lock(c, dir);
	if (rc == -EADDRINUSE) {
		dms_log(LOG_WARNING, "another dmsfs daemon is alive and serves "
		        "the control socket %s for %s; not taking it over",
		        a.sun_path, mountpoint);
		goto fail;
	}
	if (rc)
		goto fail;
	/* The lock is ours: a socket left there is a dead daemon's. */
	if (unlinkat(c->dirfd, c->sockname, 0) == 0)
		dms_log(LOG_INFO, "removed the stale control socket %s (its "
		        "daemon is gone)", a.sun_path);
	else if (errno != ENOENT) {
		rc = -errno;
		goto fail;
	}
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		rc = -errno;
		goto fail;
	}
	c->bound = true;
	/* Anyone may ask (each sees only their own operations): the folder
	 * keeps others from replacing it, not from connecting. */
	if (fchmodat(c->dirfd, c->sockname, 0666, 0) != 0 ||
	    listen(c->fd, 16) != 0 || pipe2(c->stop_pipe, O_CLOEXEC) != 0) {
		rc = -errno;
		goto fail;
	}
	rc = pthread_create(&c->thread, NULL, run, c);
	if (rc) {
		rc = -rc;
		goto fail;
	}
	dms_log(LOG_DEBUG, "control socket %s for %s", a.sun_path, mountpoint);
	*out = c;
	return 0;
fail:
	dms_log(LOG_WARNING, "control socket for %s not available (dmsctl sync "
	        "and status will not work): %s", mountpoint, strerror(-rc));
	release(c);
	return rc;
}

/* Removes what is ours in the socket folder, the lock last (while it is
 * held no other daemon takes the name). */
static void release(struct fs_ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	if (c->bound)
		unlinkat(c->dirfd, c->sockname, 0);
	if (c->lockfd >= 0) {
		unlinkat(c->dirfd, c->lockname, 0);
		close(c->lockfd);
	}
	if (c->dirfd >= 0)
		close(c->dirfd);
	if (c->stop_pipe[0] >= 0) {
		close(c->stop_pipe[0]);
		close(c->stop_pipe[1]);
	}
	pthread_mutex_destroy(&c->conns_lock);
	free(c);
}

void fs_ctl_set_pins(struct fs_ctl *c, struct fs_pins *p)
{
	if (c)
		atomic_store(&c->pins, p);
}

void fs_ctl_set_reload(struct fs_ctl *c, fs_ctl_reload_fn fn, void *arg)
{
	if (c) {
		atomic_store(&c->reload_arg, arg);
		atomic_store(&c->reload, fn);
	}
}

void fs_ctl_stop(struct fs_ctl *c)
{
	if (!c)
		return;
	if (write(c->stop_pipe[1], "x", 1) == 1)
		pthread_join(c->thread, NULL);
	/* No new connections now; running pins stop, and a client that
	 * does not read holds nothing up. */
	fs_pins_cancel(atomic_load(&c->pins));
	pthread_mutex_lock(&c->conns_lock);
	for (unsigned i = 0; i < CTL_CONNS; i++)
		if (c->conns[i].used && c->conns[i].fd >= 0)
			shutdown(c->conns[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->conns_lock);
	reap(c, true);
	release(c);
}
