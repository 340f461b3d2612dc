/*
 * GridFTP write primitives (xfer_write_ops) on libglobus-ftp-client: put
 * (STOR, stream mode), mkdir (MKD), rmdir (RMD), delete (DELE), move
 * (RNFR/RNTO) and utime (SITE UTIME).
 *
 * The state is separate from gridftp.c's read state: its own small pool of
 * client handles (created on first use, control connections cached), so a
 * long upload never holds a handle that reads need.  The Globus FTP client
 * module is activated once more for it (activation is counted by Globus);
 * the read state, opened first, has already chosen the pthread model.
 *
 * An upload streams from the caller's source through GW_NBUF buffers of
 * GW_BUFSIZE bytes registered in order (stream mode keeps them in order),
 * then one zero-length write with eof (registering eof while data writes
 * are queued broke the handle: platform notes).  The calling thread fills
 * buffers as the library hands them back; it never waits longer than the
 * stall timeout for progress, then aborts.
 *
 * Reply mapping: 552, 452 and texts saying "no space" or "quota" -ENOSPC;
 * "exists" -EEXIST; "not empty" -ENOTEMPTY; "not a directory" -ENOTDIR;
 * "is a directory" -EISDIR; 550 and "no such file" -ENOENT; 530 and
 * "permission denied" -EACCES; a failed connect -ENOTCONN; other 4xx and
 * lost connections are retried with back-off, then -EHOSTDOWN; other 5xx
 * -EIO.  The server's own text is logged with the URL.
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <globus_ftp_client.h>
#pragma GCC diagnostic pop

#include "common/log.h"
#include "transfer/gridftp_i.h"
#include "transfer/xfer_i.h"

#define GW_POOL 4
#define GW_NBUF 4
#define GW_BUFSIZE (256 * 1024)
#define GW_ABORT_GRACE_S 10
#define GW_TRANSIENT 1   /* private "try again"; never returned outside */

enum gw_kind { GW_PUT, GW_MKDIR, GW_RMDIR, GW_DELETE, GW_MOVE, GW_UTIME };

struct gw {
	char *root;                     /* source URL, no trailing '/' */
	long connect_ms, stall_s;
	int retries;
	bool verbose;
	void *rstate;                   /* gridftp.c's state, same source */
	globus_ftp_client_handleattr_t hattr;
	pthread_mutex_t lock;
	pthread_cond_t freed;
	globus_ftp_client_handle_t *handle[GW_POOL]; /* lock; NULL: not yet */
	bool busy[GW_POOL];             /* lock */
	bool utime_warned;              /* lock */
};

/* One operation's monitor; heap-allocated so that it (and its buffers)
 * can be abandoned with a handle whose abort never completed. */
struct gw_op {
	struct xfer_gftp_mon m;         /* first: callbacks get the op */
	/* below: m.mu */
	bool busy[GW_NBUF];             /* buffer registered, not returned */
	int inflight;
	globus_byte_t *bufs;            /* GW_NBUF * GW_BUFSIZE, put only */
};

static struct gw_op *op_new(globus_ftp_client_handle_t *h)
{
	struct gw_op *op = calloc(1, sizeof(*op));

	if (!op)
		goto out;
	xfer_gftp_mon_init(&op->m, h);
out:
	return op;
}

static void op_free(struct gw_op *op)
{
	if (!op)
		return;
	xfer_gftp_mon_destroy(&op->m);
	free(op->bufs);
	free(op);
}

static void write_cb(void *arg, globus_ftp_client_handle_t *h,
                     globus_object_t *err, globus_byte_t *buf,
                     globus_size_t length, globus_off_t offset,
                     globus_bool_t eof)
{
	struct gw_op *op = arg;
	size_t i;

	(void)h;
	(void)length;
	(void)offset;
	(void)eof;
	pthread_mutex_lock(&op->m.mu);
	xfer_gftp_mon_error_locked(&op->m, err);
	i = (size_t)(buf - op->bufs) / GW_BUFSIZE;
	if (i < GW_NBUF && op->busy[i]) {
		op->busy[i] = false;
		op->inflight--;
	}
	xfer_gftp_ts_now(&op->m.progress);
	pthread_cond_broadcast(&op->m.cv);
	pthread_mutex_unlock(&op->m.mu);
}

/* Waits (op->m.mu held) until cond() holds, the operation completed, or the
 * stall deadline passes.  Returns 0 or -ETIMEDOUT. */
static int wait_locked(struct gw *g, struct gw_op *op,
                       bool (*cond)(struct gw_op *))
{
	struct timespec now, deadline;
	int rc = 0;

	while (!cond(op)) {
		deadline = op->m.progress;
		xfer_gftp_ts_add_ms(&deadline, g->stall_s * 1000);
		xfer_gftp_ts_now(&now);
		if (xfer_gftp_ts_passed(&now, &deadline)) {
			rc = -ETIMEDOUT;
			break;
		}
		pthread_cond_timedwait(&op->m.cv, &op->m.mu, &deadline);
	}
	return rc;
}

static bool is_done(struct gw_op *op)
{
	return op->m.done && op->inflight == 0;
}

static bool buf_free(struct gw_op *op)
{
	return op->inflight < GW_NBUF || op->m.err != NULL || op->m.done;
}

static bool all_back(struct gw_op *op)
{
	return op->inflight == 0 || op->m.err != NULL || op->m.done;
}

/* Aborts op and waits for the library to finish with it.  -EDEADLK if it
 * did not within the grace period: then op and its handle must be
 * abandoned. */
static int abort_op(struct gw_op *op)
{
	struct timespec deadline;
	int rc = 0;

	globus_ftp_client_abort(op->m.handle);
	xfer_gftp_ts_now(&deadline);
	xfer_gftp_ts_add_ms(&deadline, GW_ABORT_GRACE_S * 1000L);
	pthread_mutex_lock(&op->m.mu);
	while (!(op->m.done && op->inflight == 0)) {
		if (pthread_cond_timedwait(&op->m.cv, &op->m.mu, &deadline) ==
		    ETIMEDOUT) {
			rc = -EDEADLK;
			break;
		}
	}
	pthread_mutex_unlock(&op->m.mu);
	return rc;
}

/* The Globus server names the system error of a failed command
 * ("GridFTP-Errno: 17"); the ones with a meaning here are taken as they
 * are.  0 if none. */
static int server_errno(const char *text)
{
	const char *p = strcasestr(text, "GridFTP-Errno:");
	long e;

	if (!p)
		return 0;
	e = strtol(p + 14, NULL, 10);
	switch (e) {
	case ENOENT: case EEXIST: case ENOTEMPTY: case ENOTDIR: case EISDIR:
	case EACCES: case ENOSPC:
		return (int)-e;
	case EPERM:
		return -EACCES;
	case EDQUOT:
		return -ENOSPC;
	default:
		return 0;
	}
}

/* A Globus error as -errno or GW_TRANSIENT (see the top comment); *unsent
 * is set when the connection could not even be made. */
static int map_error(globus_object_t *err, const char *url, const char *what,
                     bool *unsent)
{
	int code = globus_error_ftp_error_get_code(err);
	char *raw = globus_error_print_friendly(err);
	char text[1024];
	int rc, prio = LOG_WARNING;

	xfer_gftp_flatten(raw, text, sizeof(text));
	rc = server_errno(text);
	if (rc < 0)
		;
	else if (code == 552 || code == 452 ||
	         xfer_gftp_has(text, "no space") || xfer_gftp_has(text, "quota"))
		rc = -ENOSPC;
	else if (code == 530 || xfer_gftp_has(text, "permission denied") ||
	         xfer_gftp_has(text, "authenticat") ||
	         xfer_gftp_has(text, "credential"))
		rc = -EACCES;
	else if (xfer_gftp_has(text, "not exist"))
		rc = -ENOENT;
	else if (xfer_gftp_has(text, "exists"))
		rc = -EEXIST;
	else if (xfer_gftp_has(text, "not empty"))
		rc = -ENOTEMPTY;
	else if (xfer_gftp_has(text, "not a directory"))
		rc = -ENOTDIR;
	else if (xfer_gftp_has(text, "is a directory"))
		rc = -EISDIR;
	else if (code == 550 || xfer_gftp_has(text, "no such file") ||
	         xfer_gftp_has(text, "not found"))
		rc = -ENOENT;
	else if (code == 0 || code / 100 == 4)
		rc = GW_TRANSIENT;
	else
		rc = -EIO;
	if (rc == GW_TRANSIENT && (xfer_gftp_has(text, "unable to connect") ||
	                           xfer_gftp_has(text, "connection refused")))
		*unsent = true;
	if (rc == -ENOENT || rc == -EEXIST)
		prio = LOG_INFO;
	dms_log(prio, "gridftp: %s %s: %d: %s -> %s", what, url, code, text,
	        rc == GW_TRANSIENT ? "retry" : strerror(-rc));
	if (raw)
		globus_free(raw);
	return rc;
}

static globus_ftp_client_handle_t *handle_get(struct gw *g, size_t *slot)
{
	globus_ftp_client_handle_t *h = NULL;
	struct timespec deadline;
	size_t i;

	clock_gettime(CLOCK_REALTIME, &deadline);
	xfer_gftp_ts_add_ms(&deadline, g->connect_ms + g->stall_s * 1000);
	pthread_mutex_lock(&g->lock);
	for (;;) {
		for (i = 0; i < GW_POOL; i++)
			if (!g->busy[i])
				break;
		if (i < GW_POOL)
			break;
		if (pthread_cond_timedwait(&g->freed, &g->lock, &deadline) ==
		    ETIMEDOUT)
			goto out;
	}
	if (!g->handle[i]) {
		h = malloc(sizeof(*h));
		if (h && globus_ftp_client_handle_init(h, &g->hattr) !=
		         GLOBUS_SUCCESS) {
			free(h);
			h = NULL;
		}
		g->handle[i] = h;
	}
	h = g->handle[i];
	if (h) {
		g->busy[i] = true;
		*slot = i;
	}
out:
	pthread_mutex_unlock(&g->lock);
	return h;
}

/* abandon: the library may still use the handle: leak it, not reuse it. */
static void handle_put(struct gw *g, size_t slot, bool abandon)
{
	pthread_mutex_lock(&g->lock);
	if (abandon)
		g->handle[slot] = NULL;
	g->busy[slot] = false;
	pthread_cond_signal(&g->freed);
	pthread_mutex_unlock(&g->lock);
}

struct gw_call {
	enum gw_kind kind;
	const char *url, *url2;         /* url2: move destination */
	const char *what;
	xfer_source_fn src;             /* put */
	void *arg;
	uint64_t len;
	struct tm tm;                   /* utime */
	int src_err;                    /* put: the source failed */
	bool unsent;                    /* every failure so far was a connect */
};

/* Feeds the upload: data in GW_BUFSIZE pieces, then the eof write. */
static int put_feed(struct gw *g, struct gw_op *op, struct gw_call *c)
{
	uint64_t off = 0;
	size_t i, n;
	ssize_t got;
	globus_result_t res;
	int rc = 0;

	while (off < c->len) {
		pthread_mutex_lock(&op->m.mu);
		rc = wait_locked(g, op, buf_free);
		for (i = 0; i < GW_NBUF && op->busy[i]; i++)
			;
		if (rc == 0 && (op->m.err || op->m.done))
			rc = -EIO;   /* failed: the complete callback says why */
		pthread_mutex_unlock(&op->m.mu);
		if (rc < 0)
			goto out;
		n = 0;
		while (n < GW_BUFSIZE && off + n < c->len) {
			size_t want = GW_BUFSIZE - n;

			if (want > c->len - off - n)
				want = (size_t)(c->len - off - n);
			got = c->src(c->arg, op->bufs + i * GW_BUFSIZE + n, want,
			             off + n);
			if (got <= 0 || (size_t)got > want) {
				c->src_err = got < 0 ? (int)got : -EIO;
				if (got != -ECANCELED)  /* the caller says why */
					dms_log(LOG_ERR, "gridftp: STOR %s: "
					        "reading the upload at %llu: %s",
					        c->url,
					        (unsigned long long)(off + n),
					        got < 0 ? strerror((int)-got)
					                : "source ended early");
				rc = c->src_err;
				goto out;
			}
			n += (size_t)got;
		}
		pthread_mutex_lock(&op->m.mu);
		op->busy[i] = true;
		op->inflight++;
		pthread_mutex_unlock(&op->m.mu);
		res = globus_ftp_client_register_write(
			op->m.handle, op->bufs + i * GW_BUFSIZE, n,
			(globus_off_t)off, GLOBUS_FALSE, write_cb, op);
		if (res != GLOBUS_SUCCESS) {
			globus_object_free(globus_error_get(res));
			pthread_mutex_lock(&op->m.mu);
			op->busy[i] = false;
			op->inflight--;
			pthread_mutex_unlock(&op->m.mu);
			rc = -EIO;
			goto out;
		}
		off += n;
	}
	/* Every data write back before the eof write (see the top). */
	pthread_mutex_lock(&op->m.mu);
	rc = wait_locked(g, op, all_back);
	if (rc == 0 && op->m.err)
		rc = -EIO;
	if (rc == 0) {
		op->busy[0] = true;
		op->inflight++;
	}
	pthread_mutex_unlock(&op->m.mu);
	if (rc < 0)
		goto out;
	res = globus_ftp_client_register_write(op->m.handle, op->bufs, 0,
	                                       (globus_off_t)c->len,
	                                       GLOBUS_TRUE, write_cb, op);
	if (res != GLOBUS_SUCCESS) {
		globus_object_free(globus_error_get(res));
		pthread_mutex_lock(&op->m.mu);
		op->busy[0] = false;
		op->inflight--;
		pthread_mutex_unlock(&op->m.mu);
		rc = -EIO;
	}
out:
	return rc;
}

/* One attempt: 0, -errno or GW_TRANSIENT. */
static int attempt(struct gw *g, struct gw_call *c)
{
	globus_ftp_client_handle_t *h;
	globus_ftp_client_operationattr_t oattr;
	struct gw_op *op = NULL;
	globus_result_t res;
	bool have_attr = false, abandon = false;
	size_t slot = 0;
	int rc = 0;

	h = handle_get(g, &slot);
	if (!h) {
		dms_log(LOG_WARNING, "gridftp: %s %s: no connection free",
		        c->what, c->url);
		rc = GW_TRANSIENT;
		c->unsent = false;
		goto out;
	}
	op = op_new(h);
	if (!op || globus_ftp_client_operationattr_init(&oattr) !=
	           GLOBUS_SUCCESS) {
		rc = -ENOMEM;
		goto out_handle;
	}
	have_attr = true;
	/* The first reply may need a new control connection. */
	xfer_gftp_ts_add_ms(&op->m.progress, g->connect_ms);
	switch (c->kind) {
	case GW_PUT:
		op->bufs = malloc((size_t)GW_NBUF * GW_BUFSIZE);
		if (!op->bufs) {
			rc = -ENOMEM;
			goto out_handle;
		}
		res = globus_ftp_client_put(h, c->url, &oattr, NULL,
		                            xfer_gftp_complete_cb, op);
		break;
	case GW_MKDIR:
		res = globus_ftp_client_mkdir(h, c->url, &oattr,
		                              xfer_gftp_complete_cb, op);
		break;
	case GW_RMDIR:
		res = globus_ftp_client_rmdir(h, c->url, &oattr,
		                              xfer_gftp_complete_cb, op);
		break;
	case GW_DELETE:
		res = globus_ftp_client_delete(h, c->url, &oattr,
		                               xfer_gftp_complete_cb, op);
		break;
	case GW_MOVE:
		res = globus_ftp_client_move(h, c->url, c->url2, &oattr,
		                             xfer_gftp_complete_cb, op);
		break;
	default:
		res = globus_ftp_client_utime(h, c->url, &c->tm, &oattr,
		                              xfer_gftp_complete_cb, op);
		break;
	}
	if (res != GLOBUS_SUCCESS) {
		globus_object_t *err = globus_error_get(res);

		rc = map_error(err, c->url, c->what, &c->unsent);
		globus_object_free(err);
		if (rc == GW_TRANSIENT)
			rc = -EIO;   /* refused before any I/O */
		goto out_handle;
	}
	if (c->kind == GW_PUT)
		rc = put_feed(g, op, c);
	if (rc == 0) {
		pthread_mutex_lock(&op->m.mu);
		rc = wait_locked(g, op, is_done);
		pthread_mutex_unlock(&op->m.mu);
	}
	if (rc < 0) {
		if (rc == -ETIMEDOUT)
			dms_log(LOG_WARNING, "gridftp: %s %s: no progress for "
			        "%ld s, aborting", c->what, c->url, g->stall_s);
		if (abort_op(op) < 0) {
			dms_log(LOG_ERR, "gridftp: %s %s: abort did not "
			        "complete; abandoning the connection", c->what,
			        c->url);
			abandon = true;
			op = NULL;   /* leaked with the handle */
			rc = GW_TRANSIENT;
			goto out_handle;
		}
		if (c->src_err) {
			rc = c->src_err;
			goto out_handle;
		}
	}
	if (op->m.err) {
		bool unsent = false;

		rc = map_error(op->m.err, c->url, c->what, &unsent);
		if (!unsent)
			c->unsent = false;
	} else if (rc == -ETIMEDOUT || rc == -EIO) {
		rc = GW_TRANSIENT;
		c->unsent = false;
	} else {
		c->unsent = false;
	}
out_handle:
	if (have_attr)
		globus_ftp_client_operationattr_destroy(&oattr);
	if (rc == GW_TRANSIENT && !abandon)
		globus_ftp_client_handle_flush_url_state(h, c->url);
	handle_put(g, slot, abandon);
	op_free(op);
out:
	return rc;
}

static int run(struct gw *g, struct gw_call *c)
{
	struct timespec pause;
	long ms = 200;
	int i, rc;

	c->unsent = true;
	for (i = 0;; i++) {
		rc = attempt(g, c);
		if (rc != GW_TRANSIENT || i >= g->retries)
			break;
		pause.tv_sec = ms / 1000;
		pause.tv_nsec = (ms % 1000) * 1000000L;
		nanosleep(&pause, NULL);
		ms = ms * 2 > 3000 ? 3000 : ms * 2;
	}
	if (rc == GW_TRANSIENT) {
		dms_log(LOG_ERR, "gridftp: %s %s: giving up after %d attempts",
		        c->what, c->url, i + 1);
		rc = c->unsent ? -ENOTCONN : -EHOSTDOWN;
	}
	return rc;
}

static int simple(struct gw *g, enum gw_kind kind, const char *what,
                  const char *path, bool dir)
{
	struct gw_call c = { .kind = kind, .what = what };
	char *url = xfer_url_join(g->root, path, dir);
	int rc = -ENAMETOOLONG;

	if (url) {
		c.url = url;
		rc = run(g, &c);
	}
	free(url);
	return rc;
}

static int gw_set_mtime(void *state, const char *path, int64_t mtime)
{
	struct gw *g = state;
	struct gw_call c = { .kind = GW_UTIME, .what = "SITE UTIME" };
	time_t t = (time_t)mtime;
	char *url = xfer_url_join(g->root, path, 0);
	int rc = -ENAMETOOLONG;

	if (!url)
		goto out;
	if (!gmtime_r(&t, &c.tm)) {
		rc = -EINVAL;
		goto out;
	}
	c.url = url;
	rc = run(g, &c);
	/* A server without SITE UTIME answers 500/502: "cannot", not EIO. */
	if (rc == -EIO)
		rc = -ENOTSUP;
out:
	free(url);
	return rc;
}

static int gw_upload(void *state, const char *path, xfer_source_fn src,
                     void *arg, uint64_t len, int64_t mtime)
{
	struct gw *g = state;
	struct gw_call c = { .kind = GW_PUT, .what = "STOR", .src = src,
	                     .arg = arg, .len = len };
	char *url = xfer_url_join(g->root, path, 0);
	bool warn;
	int rc = -ENAMETOOLONG;

	if (!url)
		goto out;
	c.url = url;
	rc = run(g, &c);
	if (rc < 0 || mtime <= 0)
		goto out;
	rc = gw_set_mtime(g, path, mtime);
	if (rc == -ENOTSUP) {
		pthread_mutex_lock(&g->lock);
		warn = !g->utime_warned;
		g->utime_warned = true;
		pthread_mutex_unlock(&g->lock);
		if (warn)
			dms_log(LOG_WARNING, "gridftp: %s: the server cannot set "
			        "modification times (SITE UTIME); uploads keep "
			        "the time of the upload", g->root);
		rc = 0;
	} else if (rc == -ENOTCONN) {
		rc = -EHOSTDOWN;   /* the upload itself went through */
	}
out:
	free(url);
	return rc;
}

static int gw_mkdir(void *state, const char *path)
{
	return simple(state, GW_MKDIR, "MKD", path, false);
}

static int gw_rmdir(void *state, const char *path)
{
	return simple(state, GW_RMDIR, "RMD", path, false);
}

static int gw_unlink(void *state, const char *path)
{
	return simple(state, GW_DELETE, "DELE", path, false);
}

static int gw_move(void *state, const char *from, const char *to, int isdir,
                   int overwrite)
{
	struct gw *g = state;
	struct gw_call c = { .kind = GW_MOVE, .what = "RNFR/RNTO" };
	struct xfer_attr a;
	char *url = xfer_url_join(g->root, from, 0);
	char *url2 = xfer_url_join(g->root, to, 0);
	int rc = -ENAMETOOLONG;

	(void)isdir;
	if (!url || !url2)
		goto out;
	/* RNTO replaces silently; the check and the rename are two commands
	 * (the window is documented in xfer.h). */
	if (!overwrite) {
		rc = xfer_gridftp_ops.stat(g->rstate, to, &a);
		if (rc == 0)
			rc = -EEXIST;
		if (rc != -ENOENT)
			goto out;
	}
	c.url = url;
	c.url2 = url2;
	rc = run(g, &c);
out:
	free(url);
	free(url2);
	return rc;
}

static void gw_close(void *state)
{
	struct gw *g = state;
	size_t i;

	if (!g)
		return;
	for (i = 0; i < GW_POOL; i++) {
		if (g->handle[i]) {
			globus_ftp_client_handle_destroy(g->handle[i]);
			free(g->handle[i]);
		}
	}
	globus_ftp_client_handleattr_destroy(&g->hattr);
	pthread_cond_destroy(&g->freed);
	pthread_mutex_destroy(&g->lock);
	free(g->root);
	free(g);
	globus_module_deactivate(GLOBUS_FTP_CLIENT_MODULE);
}

static int gw_open(void **state, void *rstate, const char *url,
                   const struct xfer_opts *opts)
{
	struct xfer_limits lim;
	struct gw *g;
	size_t n;
	int rc = 0;

	*state = NULL;
	if (globus_module_activate(GLOBUS_FTP_CLIENT_MODULE) != GLOBUS_SUCCESS) {
		dms_log(LOG_ERR, "gridftp: cannot activate the Globus FTP client");
		rc = -EIO;
		goto out;
	}
	g = calloc(1, sizeof(*g));
	if (!g || !(g->root = strdup(url))) {
		free(g);
		globus_module_deactivate(GLOBUS_FTP_CLIENT_MODULE);
		rc = -ENOMEM;
		goto out;
	}
	n = strlen(g->root);
	while (n > 0 && g->root[n - 1] == '/')
		g->root[--n] = '\0';
	g->rstate = rstate;
	xfer_opts_limits(opts, &lim);
	g->connect_ms = lim.connect_ms;
	g->stall_s = lim.stall_s;
	g->retries = lim.retries;
	g->verbose = opts->verbose != 0;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->freed, NULL);
	globus_ftp_client_handleattr_init(&g->hattr);
	globus_ftp_client_handleattr_set_cache_all(&g->hattr, GLOBUS_TRUE);
	*state = g;
out:
	return rc;
}

const struct xfer_write_ops xfer_gridftp_write_ops = {
	.open = gw_open,
	.close = gw_close,
	.upload = gw_upload,
	.mkdir = gw_mkdir,
	.rmdir = gw_rmdir,
	.unlink = gw_unlink,
	.move = gw_move,
	.set_mtime = gw_set_mtime,
};
