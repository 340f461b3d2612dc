/*
 * GridFTP backend (ftp://, gsiftp://) on libglobus-ftp-client.
 *
 * One backend state per source URL.  It owns a fixed pool of client handles;
 * each handle caches its control connection (handleattr cache_all), so a
 * read costs one data transfer, not a login.  A handle runs one operation at
 * a time; every operation has its own monitor (struct gftp_op) that the
 * Globus callbacks fill in and signal.  Callbacks never block: they copy
 * data, update counters under the monitor's mutex and re-register buffers.
 * The calling thread waits with a deadline (stall watchdog) and aborts the
 * operation when it passes, so a silent server cannot hang a FUSE thread.
 * The same watchdog enforces each request's overall deadline, retries
 * included (xfer_deadline_ms): a RETR of N bytes must end by then, an MLSD
 * must keep the pace as it arrives; past it the operation is aborted and
 * the request fails with -EHOSTDOWN without a retry, so xfer.c moves on.
 *
 * gsiftp:// authenticates with the user's X.509 proxy; the library finds it
 * as the Globus tools do (X509_USER_PROXY, X509_CERT_DIR, defaults).
 *
 * Paths: URLs are built with xfer_url_join (percent-encoded segments); the
 * client library decodes them before sending commands.  The Globus GridFTP
 * server drops every byte outside printable ASCII from control commands
 * (its telnet XIO driver), so a path with such bytes could silently name a
 * different file there.  For those paths the server's echo of the path in
 * an MLST reply is checked before the path is trusted (gftp_check_echo).
 */
#define _GNU_SOURCE /* strcasestr */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* Globus headers declare "f()" functions; pkg-config gives them with -I, so
 * they are not treated as system headers. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <globus_ftp_client.h>
#pragma GCC diagnostic pop

#include "common/log.h"
#include "transfer/gridftp_i.h"
#include "transfer/xfer_i.h"

/* Handles per source: enough for the FUSE read-ahead plus a few metadata
 * calls at once; each is one control connection on the server. */
#define GFTP_POOL 8
/* Read bounce buffer size; the library fills whichever buffer is free with
 * whatever MODE E block arrives, so data is copied into place by offset. */
#define GFTP_BUFSIZE (256 * 1024)
/* Streams when opts->gridftp_streams is 0.  Measured against the loopback
 * server (2 cores, 1 GiB in 4 MiB reads, 4 at once, median of 10):
 * 1 stream 0.17 s, 2 streams 0.19 s, 4 streams 0.23 s; 8 MiB reads:
 * 0.24 / 0.17 / 0.45 s.  1 and 2 are equal within noise on loopback, 4
 * costs CPU; 2 is kept because parallel streams are what GridFTP offers
 * on long fat paths, where loopback cannot measure them. */
#define GFTP_DEFAULT_STREAMS 2
#define GFTP_MAX_STREAMS 16
#define GFTP_LIST_CHUNK (64 * 1024)
/* An MLST reply is one line; anything longer is not a sane answer. */
#define GFTP_MLST_MAX (64 * 1024)
/* After an abort the library must hand back the operation; if it does not
 * within this time the handle is given up (leaked, never freed under it). */
#define GFTP_ABORT_GRACE_S 10

/* Private "try again" result inside this file; never returned outside. */
#define GFTP_TRANSIENT 1

struct gftp_slot {
	globus_ftp_client_handle_t *handle; /* NULL: not usable (init failed) */
	char *bufs;                         /* read bounce buffers, lazily */
	bool busy;                          /* protected by gftp.lock */
};

struct gftp {
	char *root;                         /* source URL, no trailing '/' */
	char *root_path;                    /* its decoded path part ("" = /) */
	const struct xfer_opts *opts;
	long connect_ms, stall_s;
	int retries, streams;
	size_t max_listing;
	globus_ftp_client_handleattr_t hattr;
	pthread_mutex_t lock;
	pthread_cond_t slot_free;           /* signalled when a slot is freed */
	struct gftp_slot slots[GFTP_POOL];  /* busy flags protected by lock */
};

enum gftp_kind { GFTP_MLST, GFTP_LIST, GFTP_READ };

/* One operation's monitor.  Heap-allocated so it can be abandoned (leaked)
 * together with its handle if the library never completes an abort. */
struct gftp_op {
	struct xfer_gftp_mon m;    /* first: callbacks get the op */
	enum gftp_kind kind;
	/* All below protected by m.mu. */
	int outstanding;           /* buffers registered, not yet returned */
	bool eof;
	int fail;                  /* -EIO / -EFBIG found by a data callback */
	bool reg_failed;           /* re-registering a buffer was refused */
	struct timespec start;     /* when the request (first try) began */
	struct timespec deadline;  /* of the whole request */
	bool paced;                /* MLSD: keep the pace as bytes arrive */
	bool late;                 /* aborted by deadline or pace */
	/* GFTP_LIST: the reply, grown up to lmax bytes. */
	char *lbuf;
	size_t llen, lcap, lmax;
	globus_byte_t *lchunk;     /* the one buffer registered for MLSD */
	/* GFTP_READ: destination range. */
	char *dst;
	uint64_t off;
	size_t len, got;
	/* GFTP_MLST: filled by the library, freed with globus_free. */
	globus_byte_t *mbuf;
	globus_size_t mlen;
};

/* Module activation is shared by all backend states. */
static pthread_once_t gftp_model_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t gftp_mod_lock = PTHREAD_MUTEX_INITIALIZER;
static int gftp_users;              /* protected by gftp_mod_lock */

static void gftp_set_model(void)
{
	/* Callbacks must run on Globus' own threads while FUSE threads wait;
	 * the default "none" model only runs them inside globus_cond_wait.
	 * Must happen before the first activation of any Globus module. */
	if (globus_thread_set_model("pthread") != 0)
		dms_log(LOG_WARNING, "gridftp: cannot select the pthread model "
		        "(a Globus module was activated before dmsfs)");
}

static int gftp_module_get(void)
{
	int rc = 0;

	pthread_once(&gftp_model_once, gftp_set_model);
	pthread_mutex_lock(&gftp_mod_lock);
	if (gftp_users == 0 &&
	    globus_module_activate(GLOBUS_FTP_CLIENT_MODULE) != GLOBUS_SUCCESS) {
		dms_log(LOG_ERR, "gridftp: cannot activate the Globus FTP client");
		rc = -EIO;
		goto out;
	}
	gftp_users++;
out:
	pthread_mutex_unlock(&gftp_mod_lock);
	return rc;
}

static void gftp_module_put(void)
{
	pthread_mutex_lock(&gftp_mod_lock);
	if (--gftp_users == 0)
		globus_module_deactivate(GLOBUS_FTP_CLIENT_MODULE);
	pthread_mutex_unlock(&gftp_mod_lock);
}

/* ---- MLSx line parsing ------------------------------------------------ */

static int mlsx_u64(const char *s, size_t n, int base, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;
	int rc = -EINVAL;

	if (n == 0 || n > 22)
		goto out;
	for (i = 0; i < n; i++) {
		unsigned d = (unsigned)(unsigned char)s[i] - '0';

		if (d >= (unsigned)base || v > (UINT64_MAX - d) / (uint64_t)base)
			goto out;
		v = v * (uint64_t)base + d;
	}
	*out = v;
	rc = 0;
out:
	return rc;
}

/* Modify=YYYYMMDDHHMMSS[.fff], always UTC (RFC 3659 section 2.3). */
static int mlsx_time(const char *s, size_t n, int64_t *out)
{
	int f[6], w[6] = {4, 2, 2, 2, 2, 2};
	struct tm tm;
	size_t pos = 0, i;
	uint64_t v;
	int rc = -EINVAL;

	if (n < 14 || (n > 14 && s[14] != '.'))
		goto out;
	for (i = 0; i < 6; i++) {
		if (mlsx_u64(s + pos, (size_t)w[i], 10, &v) != 0)
			goto out;
		f[i] = (int)v;
		pos += (size_t)w[i];
	}
	if (f[1] < 1 || f[1] > 12 || f[2] < 1 || f[2] > 31 || f[3] > 23 ||
	    f[4] > 59 || f[5] > 60)
		goto out;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = f[0] - 1900;
	tm.tm_mon = f[1] - 1;
	tm.tm_mday = f[2];
	tm.tm_hour = f[3];
	tm.tm_min = f[4];
	tm.tm_sec = f[5];
	*out = (int64_t)timegm(&tm);
	rc = 0;
out:
	return rc;
}

static bool mlsx_fact_is(const char *f, size_t n, const char *name)
{
	return strlen(name) == n && strncasecmp(f, name, n) == 0;
}

/*
 * Parses one MLSD/MLST entry "fact=value;...;fact=value; name" (len bytes,
 * no line terminator).  Facts end at the first ';' followed by a space; the
 * name is everything after that single space (it may contain spaces and
 * '/', the caller decides whether a '/' is allowed).  Returns 0 with name
 * and attr filled, 1 for an entry to skip (Type=pdir or a type that is
 * neither file nor dir), 2 for Type=cdir (the listed directory itself,
 * filled as a directory), -EINVAL for a malformed line (no Type or two,
 * bad value, empty name, NUL byte), -ENAMETOOLONG if the name does not fit
 * namecap.
 * attr->etag is left "": GridFTP's Unique fact is protocol-specific and
 * identity must not depend on which mirror answered.
 */
int xfer_mlsx_parse(const char *line, size_t len, char *name, size_t namecap,
                    struct xfer_attr *attr)
{
	size_t pos = 0, nlen;
	bool have_type = false, have_mode = false, skip = false, cdir = false;
	uint32_t type = 0, perm = 0;
	uint64_t v;
	int rc = -EINVAL;

	memset(attr, 0, sizeof(*attr));
	if (memchr(line, '\0', len) != NULL)
		goto out;
	while (pos < len && line[pos] != ' ') {
		const char *f = line + pos, *semi, *eq;
		size_t flen, klen, vlen;

		semi = memchr(f, ';', len - pos);
		if (semi == NULL)
			goto out;
		flen = (size_t)(semi - f);
		eq = memchr(f, '=', flen);
		if (eq == NULL)
			goto out;
		klen = (size_t)(eq - f);
		vlen = flen - klen - 1;
		if (mlsx_fact_is(f, klen, "Type")) {
			/* Two types ("cdir" then "file") contradict. */
			if (have_type)
				goto out;
			have_type = true;
			if (vlen == 4 && strncasecmp(eq + 1, "file", 4) == 0) {
				type = S_IFREG;
			} else if (vlen == 3 &&
			         strncasecmp(eq + 1, "dir", 3) == 0) {
				type = S_IFDIR;
			} else if (vlen == 4 &&
			         strncasecmp(eq + 1, "cdir", 4) == 0) {
				cdir = true;
				type = S_IFDIR;
			} else {
				skip = true; /* pdir, OS.unix=... */
			}
		} else if (mlsx_fact_is(f, klen, "Size")) {
			if (mlsx_u64(eq + 1, vlen, 10, &attr->size) != 0)
				goto out;
		} else if (mlsx_fact_is(f, klen, "Modify")) {
			if (mlsx_time(eq + 1, vlen, &attr->mtime) != 0)
				goto out;
		} else if (mlsx_fact_is(f, klen, "UNIX.mode")) {
			if (mlsx_u64(eq + 1, vlen, 8, &v) != 0 || v > 07777)
				goto out;
			perm = (uint32_t)v;
			have_mode = true;
		}
		pos += flen + 1;
	}
	if (pos >= len || !have_type)
		goto out; /* no "; name" part, or no way to tell file from dir */
	pos++; /* the one space between facts and name */
	nlen = len - pos;
	if (nlen == 0)
		goto out;
	if (nlen >= namecap) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	memcpy(name, line + pos, nlen);
	name[nlen] = '\0';
	if (skip) {
		rc = 1;
		goto out;
	}
	if (type == S_IFDIR)
		attr->size = 0;
	attr->mode = type | (have_mode ? perm : 0);
	rc = cdir ? 2 : 0;
out:
	return rc;
}

/* ---- operations ------------------------------------------------------- */

static long ts_ms_between(const struct timespec *a, const struct timespec *b)
{
	return (long)(b->tv_sec - a->tv_sec) * 1000 +
	       (b->tv_nsec - a->tv_nsec) / 1000000;
}

static struct gftp_op *gftp_op_new(enum gftp_kind kind,
                                   globus_ftp_client_handle_t *h)
{
	struct gftp_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		goto out;
	xfer_gftp_mon_init(&op->m, h);
	op->kind = kind;
out:
	return op;
}

static void gftp_op_free(struct gftp_op *op)
{
	if (op != NULL) {
		xfer_gftp_mon_destroy(&op->m);
		if (op->mbuf != NULL)
			globus_free(op->mbuf);
		free(op->lbuf);
		free(op->lchunk);
		free(op);
	}
}

/*
 * Data callback for lists and reads.  Checks that the block lies inside the
 * expected range before touching memory, places it by its absolute offset
 * (MODE E delivers blocks out of order), and hands the buffer back to the
 * library unless the transfer is over or has failed.
 */
static void gftp_data_cb(void *arg, globus_ftp_client_handle_t *h,
                         globus_object_t *err, globus_byte_t *buf,
                         globus_size_t length, globus_off_t offset,
                         globus_bool_t eof)
{
	struct gftp_op *op = arg;
	bool again = false;
	uint64_t o = (uint64_t)offset;

	pthread_mutex_lock(&op->m.mu);
	xfer_gftp_mon_error_locked(&op->m, err);
	xfer_gftp_ts_now(&op->m.progress);
	if (err != NULL || op->fail != 0 || length == 0)
		goto done;
	if (offset < 0) {
		dms_log(LOG_ERR, "gridftp: negative offset from the library");
		op->fail = -EIO;
		goto done;
	}
	if (op->kind == GFTP_READ) {
		if (o < op->off || o - op->off > op->len ||
		    length > op->len - (o - op->off) ||
		    length > op->len - op->got) {
			dms_log(LOG_ERR, "gridftp: server sent bytes %llu+%zu "
			        "outside the requested %llu+%zu",
			        (unsigned long long)o, (size_t)length,
			        (unsigned long long)op->off, op->len);
			op->fail = -EIO;
			goto done;
		}
		op->got += length;
		/* Distinct offsets never overlap in a correct reply; the
		 * byte count catches a server that repeats blocks. */
		pthread_mutex_unlock(&op->m.mu);
		memcpy(op->dst + (o - op->off), buf, length);
		pthread_mutex_lock(&op->m.mu);
	} else {
		/* Stream mode listing: bytes arrive in order. */
		if (o != op->llen) {
			op->fail = -EIO;
			goto done;
		}
		if (length > op->lmax - op->llen) {
			op->fail = -EFBIG;
			goto done;
		}
		if (op->llen + length > op->lcap) {
			size_t nc = op->lcap ? op->lcap * 2 : GFTP_LIST_CHUNK;
			char *nb;

			while (nc < op->llen + length)
				nc *= 2;
			nb = realloc(op->lbuf, nc);
			if (nb == NULL) {
				op->fail = -ENOMEM;
				goto done;
			}
			op->lbuf = nb;
			op->lcap = nc;
		}
		memcpy(op->lbuf + op->llen, buf, length);
		op->llen += length;
	}
done:
	if (eof)
		op->eof = true;
	again = !op->eof && op->fail == 0 && op->m.err == NULL;
	if (!again)
		op->outstanding--;
	pthread_cond_broadcast(&op->m.cv);
	pthread_mutex_unlock(&op->m.mu);
	/* Outside the lock: the library may call back on another thread. */
	if (again && globus_ftp_client_register_read(
	                 h, buf, op->kind == GFTP_READ ? GFTP_BUFSIZE
	                                              : GFTP_LIST_CHUNK,
	                 gftp_data_cb, op) != GLOBUS_SUCCESS) {
		/* Not necessarily a fault: the transfer may have ended on
		 * another buffer meanwhile (its eof callback still on the
		 * way).  The byte count judges the result; gftp_wait aborts
		 * if the library is left without buffers and without eof. */
		pthread_mutex_lock(&op->m.mu);
		op->outstanding--;
		op->reg_failed = true;
		pthread_cond_broadcast(&op->m.cv);
		pthread_mutex_unlock(&op->m.mu);
	}
}

/* Registers one buffer.  A refusal is noted; gftp_wait aborts the
 * operation if it is left without any buffer. */
static void gftp_register(struct gftp_op *op, globus_byte_t *buf, size_t n)
{
	globus_result_t res;

	pthread_mutex_lock(&op->m.mu);
	op->outstanding++;
	pthread_mutex_unlock(&op->m.mu);
	res = globus_ftp_client_register_read(op->m.handle, buf, n, gftp_data_cb,
	                                      op);
	if (res != GLOBUS_SUCCESS) {
		globus_object_t *err = globus_error_get(res);
		char *text = globus_error_print_friendly(err);

		/* Refused when the transfer already failed (a cached control
		 * connection the server closed): the complete callback
		 * brings that error, which decides the result. */
		dms_log(LOG_DEBUG, "gridftp: register_read: %s", text);
		globus_free(text);
		globus_object_free(err);
		pthread_mutex_lock(&op->m.mu);
		op->outstanding--;
		op->reg_failed = true;
		pthread_mutex_unlock(&op->m.mu);
	}
}

/*
 * Waits for an operation to finish: complete callback run and every buffer
 * returned.  A stall (no callback for stall_s) or a failure found by a
 * callback aborts it; the library then still calls back, and only after
 * that may the op and its buffers be freed.  Returns 0, or -EDEADLK if the
 * library did not finish within the abort grace period (the caller must
 * abandon op, handle and buffers).
 */
static int gftp_wait(struct gftp *g, struct gftp_op *op, const char *url)
{
	struct timespec now, deadline, limit, start, pace;
	bool aborted = false, starved, probing = xfer_probing(), over;
	int rc = 0;

	/* First contact: one overall bound, not a stall timer that each
	 * keep-alive byte restarts. */
	xfer_gftp_ts_now(&start);
	limit = start;
	xfer_gftp_ts_add_ms(&limit, g->connect_ms + XFER_PROBE_GRACE_MS);
	pthread_mutex_lock(&op->m.mu);
	while (!op->m.done || op->outstanding > 0) {
		xfer_gftp_ts_now(&now);
		if (!aborted) {
			deadline = op->m.progress;
			xfer_gftp_ts_add_ms(&deadline, g->stall_s * 1000);
			if (xfer_gftp_ts_passed(&deadline, &op->deadline))
				deadline = op->deadline;
			if (op->paced) {
				pace = op->start;
				xfer_gftp_ts_add_ms(&pace, xfer_opts_deadline_ms(
					g->opts, op->llen));
				if (xfer_gftp_ts_passed(&deadline, &pace))
					deadline = pace;
			}
			starved = op->reg_failed && op->outstanding == 0 &&
			          !op->eof && !op->m.done;
			over = probing && xfer_gftp_ts_passed(&now, &limit);
			if (probing && !xfer_gftp_ts_passed(&limit, &deadline))
				deadline = limit;
			if (op->fail == 0 && !starved && !op->m.done && !over &&
			    xfer_gftp_ts_passed(&now, &deadline) &&
			    (xfer_gftp_ts_passed(&now, &op->deadline) ||
			     (op->paced && xfer_gftp_ts_passed(&now, &pace)))) {
				op->late = true;
				op->fail = -ETIMEDOUT;
				dms_log(LOG_ERR, "gridftp: %s: %s after %.1f s "
				        "(deadline %.1f s: connect_timeout + "
				        "%s at min_rate), %zu bytes received, "
				        "aborting", url, op->paced ?
				        "slower than min_rate" : "deadline passed",
				        ts_ms_between(&op->start, &now) / 1000.0,
				        ts_ms_between(&op->start, &op->deadline) /
				        1000.0, op->paced ? "max_listing"
				                          : "the bytes asked",
				        op->paced ? op->llen : op->got);
			}
			if (op->fail != 0 || starved || over ||
			    xfer_gftp_ts_passed(&now, &deadline)) {
				if (op->fail == 0) {
					char hp[300];

					op->fail = -ETIMEDOUT;
					dms_log(LOG_WARNING, "gridftp: %s: %s, "
					        "aborting", url, starved ?
					        "no buffer left to read into" :
					        "no progress");
					xfer_url_hostport(url, hp, sizeof(hp));
					if (!starved)
						xfer_note("no answer from %s "
						          "after %ld s", hp,
						          (long)(now.tv_sec -
						                 start.tv_sec));
				}
				aborted = true;
				deadline = now;
				xfer_gftp_ts_add_ms(&deadline,
				                    GFTP_ABORT_GRACE_S * 1000L);
				pthread_mutex_unlock(&op->m.mu);
				globus_ftp_client_abort(op->m.handle);
				pthread_mutex_lock(&op->m.mu);
				continue;
			}
		} else if (xfer_gftp_ts_passed(&now, &deadline)) {
			rc = -EDEADLK;
			break;
		}
		pthread_cond_timedwait(&op->m.cv, &op->m.mu, &deadline);
	}
	pthread_mutex_unlock(&op->m.mu);
	return rc;
}

/* Says for a person (xfer_note, probe only) what the server answered or
 * what kept it from answering. */
static void gftp_note_error(const char *url, const char *what, int code,
                            const char *text, int rc)
{
	char hp[300];
	int n = (int)strlen(text);

	while (n > 0 && text[n - 1] == ' ')
		n--;
	xfer_url_hostport(url, hp, sizeof(hp));
	if (rc == -EACCES)
		xfer_note("access refused by the FTP server at %s (login or "
		          "credentials; gsiftp:// needs a valid X.509 proxy): "
		          "%.*s", hp, n, text);
	else if (code != 0)
		xfer_note("the FTP server at %s answered %s %s with %d: %.*s%s",
		          hp, what, url, code, n, text,
		          xfer_gftp_has(text, "not allowed")
		          ? " (outside what the server lets this login see?)"
		          : "");
	else if (xfer_gftp_has(text, "connection refused")) {
		xfer_note_kind(XFER_ERR_REFUSED);
		xfer_note("connection refused by %s (nothing listens there?)",
		          hp);
	} else if (xfer_gftp_has(text, "name or service not known") ||
	         xfer_gftp_has(text, "resolve") ||
	         xfer_gftp_has(text, "temporary failure in name resolution"))
		xfer_note("cannot resolve %.*s: %s", (int)strcspn(hp, ":"), hp,
		          text);
	else
		xfer_note("cannot talk to the FTP server at %s: %s", hp, text);
}

/*
 * Maps a Globus error to -errno or GFTP_TRANSIENT and logs it with the
 * server's text and the URL.  The Globus server answers RETR/MLSD of a
 * missing path with "500 ... No such file or directory" rather than 550,
 * so for 5xx the text is consulted too (globus-url-copy does the same).
 */
static int gftp_map_error(globus_object_t *err, const char *url,
                          const char *what)
{
	int code = globus_error_ftp_error_get_code(err);
	char *raw = globus_error_print_friendly(err);
	char text[1024];
	int rc, prio = LOG_WARNING;

	xfer_gftp_flatten(raw, text, sizeof(text));
	if (xfer_gftp_has(text, "permission denied") || code == 530 ||
	    xfer_gftp_has(text, "authenticat") ||
	    xfer_gftp_has(text, "credential"))
		rc = -EACCES;
	else if (code == 550 || xfer_gftp_has(text, "no such file") ||
	         xfer_gftp_has(text, "file not found"))
		rc = -ENOENT;
	else if (xfer_gftp_has(text, "not a directory"))
		rc = -ENOTDIR;
	else if (code == 0 || code / 100 == 4)
		rc = GFTP_TRANSIENT; /* connection failure, 421/426/451... */
	else
		rc = -EIO;
	if (rc == -ENOENT || rc == -ENOTDIR)
		prio = LOG_DEBUG; /* an answer, not a fault */
	dms_log(prio, "gridftp: %s %s: %d: %s", what, url, code, text);
	gftp_note_error(url, what, code, text, rc);
	if (raw != NULL)
		globus_free(raw);
	return rc;
}

/* Turns a finished operation into 0 / -errno / GFTP_TRANSIENT. */
static int gftp_result(struct gftp_op *op, const char *url, const char *what)
{
	int rc = 0;

	if (op->late)
		rc = -EHOSTDOWN; /* logged by gftp_wait; no time to retry */
	else if (op->fail == -ETIMEDOUT)
		rc = GFTP_TRANSIENT;
	else if (op->fail != 0) {
		rc = op->fail;
		dms_log(LOG_ERR, "gridftp: %s %s: %s", what, url,
		        rc == -EFBIG ? "listing larger than the cap"
		                     : "malformed reply");
		xfer_note("the FTP server answered %s %s with %s", what, url,
		          rc == -EFBIG ? "a listing larger than max_listing"
		                       : "a malformed reply");
	} else if (op->m.err != NULL)
		rc = gftp_map_error(op->m.err, url, what);
	return rc;
}

static struct gftp_slot *gftp_slot_get(struct gftp *g, long wait_ms)
{
	struct gftp_slot *s = NULL;
	struct timespec deadline;
	size_t i;

	/* Every operation is bounded, so a slot frees up within about one
	 * stall period; waiting longer means the source is unusable.  Nor
	 * may the wait outlast the request's own deadline. */
	if (wait_ms > g->connect_ms + g->stall_s * 1000)
		wait_ms = g->connect_ms + g->stall_s * 1000;
	clock_gettime(CLOCK_REALTIME, &deadline);
	xfer_gftp_ts_add_ms(&deadline, wait_ms > 0 ? wait_ms : 0);
	pthread_mutex_lock(&g->lock);
	for (;;) {
		for (i = 0; i < GFTP_POOL; i++) {
			if (!g->slots[i].busy && g->slots[i].handle != NULL) {
				s = &g->slots[i];
				s->busy = true;
				goto out;
			}
		}
		if (pthread_cond_timedwait(&g->slot_free, &g->lock,
		                           &deadline) == ETIMEDOUT)
			goto out;
	}
out:
	pthread_mutex_unlock(&g->lock);
	return s;
}

static void gftp_slot_put(struct gftp *g, struct gftp_slot *s)
{
	pthread_mutex_lock(&g->lock);
	s->busy = false;
	pthread_cond_signal(&g->slot_free);
	pthread_mutex_unlock(&g->lock);
}

static globus_ftp_client_handle_t *gftp_handle_new(struct gftp *g)
{
	globus_ftp_client_handle_t *h = malloc(sizeof(*h));

	if (h != NULL &&
	    globus_ftp_client_handle_init(h, &g->hattr) != GLOBUS_SUCCESS) {
		free(h);
		h = NULL;
	}
	return h;
}

/*
 * After an abort the library did not complete: the handle, the op and the
 * slot's buffers may still be written by it, so they are leaked on purpose
 * and the slot gets a fresh handle.
 */
static void gftp_slot_abandon(struct gftp *g, struct gftp_slot *s,
                              const char *url)
{
	dms_log(LOG_ERR, "gridftp: %s: abort did not complete in %ds; "
	        "abandoning the connection", url, GFTP_ABORT_GRACE_S);
	s->bufs = NULL;
	s->handle = gftp_handle_new(g);
}

/*
 * Runs one attempt of an operation on slot s.  Returns 0, -errno or
 * GFTP_TRANSIENT; on 0 the caller owns *opp and frees it.
 */
static int gftp_attempt(struct gftp *g, struct gftp_slot *s,
                        enum gftp_kind kind, const char *url,
                        uint64_t off, size_t len, void *dst,
                        const struct timespec *start,
                        const struct timespec *deadline,
                        struct gftp_op **opp)
{
	globus_ftp_client_operationattr_t oattr;
	globus_ftp_control_parallelism_t par;
	struct gftp_op *op;
	globus_result_t res;
	const char *what = kind == GFTP_MLST ? "MLST" :
	                   kind == GFTP_LIST ? "MLSD" : "RETR";
	int rc = 0, i, nbuf = 0;
	bool have_attr = false;

	*opp = NULL;
	op = gftp_op_new(kind, s->handle);
	if (op == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	op->start = *start;
	op->deadline = *deadline;
	op->paced = kind == GFTP_LIST;
	xfer_gftp_ts_now(&op->m.progress);
	/* The first reply may need a new control connection (and a GSI
	 * handshake); that gets the connect timeout on top. */
	xfer_gftp_ts_add_ms(&op->m.progress, g->connect_ms);
	if (globus_ftp_client_operationattr_init(&oattr) != GLOBUS_SUCCESS) {
		rc = -ENOMEM;
		goto out;
	}
	have_attr = true;
	switch (kind) {
	case GFTP_MLST:
		res = globus_ftp_client_mlst(s->handle, url, &oattr, &op->mbuf,
		                             &op->mlen, xfer_gftp_complete_cb,
		                             op);
		break;
	case GFTP_LIST:
		op->lmax = g->max_listing;
		op->lchunk = malloc(GFTP_LIST_CHUNK);
		if (op->lchunk == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		res = globus_ftp_client_machine_list(s->handle, url, &oattr,
		                                     xfer_gftp_complete_cb, op);
		break;
	default:
		op->dst = dst;
		op->off = off;
		op->len = len;
		if (s->bufs == NULL) {
			s->bufs = malloc((size_t)(g->streams + 2) * GFTP_BUFSIZE);
			if (s->bufs == NULL) {
				rc = -ENOMEM;
				goto out;
			}
		}
		memset(&par, 0, sizeof(par));
		par.fixed.mode = GLOBUS_FTP_CONTROL_PARALLELISM_FIXED;
		par.fixed.size = (globus_size_t)g->streams;
		globus_ftp_client_operationattr_set_mode(
			&oattr, GLOBUS_FTP_CONTROL_MODE_EXTENDED_BLOCK);
		globus_ftp_client_operationattr_set_parallelism(&oattr, &par);
		/* End is exclusive. */
		res = globus_ftp_client_partial_get(
			s->handle, url, &oattr, NULL, (globus_off_t)off,
			(globus_off_t)(off + len), xfer_gftp_complete_cb, op);
		nbuf = g->streams + 2;
		break;
	}
	if (res != GLOBUS_SUCCESS) {
		globus_object_t *err = globus_error_get(res);

		/* Refused before any I/O (bad URL, busy handle): no callback
		 * will come. */
		rc = gftp_map_error(err, url, what);
		if (rc == GFTP_TRANSIENT)
			rc = -EIO;
		globus_object_free(err);
		goto out;
	}
	if (kind == GFTP_LIST)
		gftp_register(op, op->lchunk, GFTP_LIST_CHUNK);
	for (i = 0; i < nbuf; i++)
		gftp_register(op, (globus_byte_t *)s->bufs +
		                  (size_t)i * GFTP_BUFSIZE, GFTP_BUFSIZE);
	if (gftp_wait(g, op, url) != 0) {
		gftp_slot_abandon(g, s, url);
		op = NULL; /* leaked with the old handle */
		rc = GFTP_TRANSIENT;
		goto out;
	}
	rc = gftp_result(op, url, what);
	if (rc == 0 && kind == GFTP_READ && op->got != len)
		rc = -ENODATA; /* short: the caller decides ESTALE vs EIO */
out:
	if (have_attr)
		globus_ftp_client_operationattr_destroy(&oattr);
	if ((rc == GFTP_TRANSIENT || rc == -EHOSTDOWN) && s->handle != NULL)
		/* Do not reuse a control connection that just failed. */
		globus_ftp_client_handle_flush_url_state(s->handle, url);
	if (rc == 0)
		*opp = op;
	else
		gftp_op_free(op);
	return rc;
}

/* Runs an operation with retries and back-off on transient failures.
 * Returns 0 (caller frees *opp), -errno, or -EHOSTDOWN when retries ran
 * out. */
static int gftp_run(struct gftp *g, enum gftp_kind kind, const char *url,
                    uint64_t off, size_t len, void *dst, struct gftp_op **opp)
{
	struct gftp_slot *s;
	struct timespec pause, start, deadline, now;
	long ms = 200;
	int attempt, rc = GFTP_TRANSIENT;
	/* A probe asks once: it must say what is wrong, quickly. */
	int retries = xfer_probing() ? 0 : g->retries;

	xfer_gftp_ts_now(&start);
	deadline = start;
	/* MLST has no data callbacks: the stall watchdog bounds it. */
	xfer_gftp_ts_add_ms(&deadline, xfer_opts_deadline_ms(g->opts,
		kind == GFTP_READ ? len : g->max_listing));
	for (attempt = 0;; attempt++) {
		xfer_gftp_ts_now(&now);
		s = gftp_slot_get(g, ts_ms_between(&now, &deadline));
		if (s == NULL) {
			dms_log(LOG_WARNING, "gridftp: %s: every connection "
			        "stayed busy", url);
			rc = -EHOSTDOWN;
			goto out;
		}
		rc = gftp_attempt(g, s, kind, url, off, len, dst, &start,
		                  &deadline, opp);
		gftp_slot_put(g, s);
		if (rc != GFTP_TRANSIENT || attempt >= retries)
			break;
		xfer_gftp_ts_now(&now);
		if (ts_ms_between(&now, &deadline) <= ms) {
			dms_log(LOG_ERR, "gridftp: %s: no time left before the "
			        "deadline to retry", url);
			rc = -EHOSTDOWN;
			goto out;
		}
		pause.tv_sec = ms / 1000;
		pause.tv_nsec = (ms % 1000) * 1000000L;
		nanosleep(&pause, NULL);
		ms = ms * 2 > 3000 ? 3000 : ms * 2;
	}
	if (rc == GFTP_TRANSIENT) {
		dms_log(LOG_ERR, "gridftp: %s: giving up after %d attempts",
		        url, attempt + 1);
		rc = -EHOSTDOWN;
	}
out:
	return rc;
}

/* True if the Globus server would pass every byte of path unchanged. */
static bool gftp_path_plain(const char *path)
{
	const unsigned char *p = (const unsigned char *)path;

	while (*p >= 0x20 && *p <= 0x7e)
		p++;
	return *p == '\0';
}

/* MLST of path; with check_echo the server's echo of the path must end
 * with path, else it looked at a different file (see the top comment). */
static int gftp_mlst(struct gftp *g, const char *path, bool check_echo,
                     struct xfer_attr *attr)
{
	struct gftp_op *op = NULL;
	char *url = NULL, *name = NULL;
	const char *line;
	size_t n, plen;
	int rc;

	url = xfer_url_join(g->root, path, 0);
	if (url == NULL) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	rc = gftp_run(g, GFTP_MLST, url, 0, 0, NULL, &op);
	if (rc != 0)
		goto out;
	line = (const char *)op->mbuf;
	n = op->mbuf != NULL ? op->mlen : 0;
	if (n > GFTP_MLST_MAX) {
		rc = -EIO;
		goto bad;
	}
	/* The reply line is " facts; /path\r\n" (RFC 3659 7.2). */
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (n > 0 && line[0] == ' ') {
		line++;
		n--;
	}
	if (g->opts->verbose)
		dms_log(LOG_DEBUG, "gridftp: MLST %s: %.*s", url,
		        (int)(n > 1000 ? 1000 : n), line);
	name = malloc(n + 1);
	if (name == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	rc = xfer_mlsx_parse(line, n, name, n + 1, attr);
	if (rc == 2)
		rc = 0; /* some servers call the directory itself cdir here */
	if (rc != 0) {
		rc = -EIO;
		goto bad;
	}
	if (check_echo) {
		plen = strlen(path);
		n = strlen(name);
		while (n > 1 && name[n - 1] == '/')
			n--;
		if (n < plen || memcmp(name + n - plen, path, plen) != 0) {
			dms_log(LOG_WARNING, "gridftp: %s: the server answered "
			        "for \"%s\" (it does not pass non-ASCII bytes in "
			        "paths)", url, name);
			rc = -ENOENT;
		}
	}
	goto out;
bad:
	dms_log(LOG_ERR, "gridftp: MLST %s: malformed reply \"%.*s\"", url,
	        (int)(n > 200 ? 200 : n), line);
	xfer_note("the FTP server answered MLST %s with a malformed reply "
	          "\"%.*s\"", url, (int)(n > 100 ? 100 : n), line);
out:
	free(name);
	gftp_op_free(op);
	free(url);
	return rc;
}

static int gftp_stat(void *state, const char *path, struct xfer_attr *attr)
{
	struct gftp *g = state;

	return gftp_mlst(g, path, !gftp_path_plain(path), attr);
}

/* Parses a whole MLSD reply into l.  Entries that cannot be a file name
 * ('/' or NUL inside, too long) are skipped with a warning; any other
 * malformed line makes the reply wrong (-EIO). */
int xfer_mlsd_parse(const char *buf, size_t len, const char *url,
                    struct xfer_listing *l, bool *saw_cdir)
{
	char name[NAME_MAX + 1];
	struct xfer_attr attr;
	size_t pos = 0, n, toolong = 0;
	const char *line, *nl;
	int rc = 0, prc;

	while (pos < len) {
		line = buf + pos;
		nl = memchr(line, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - line) : len - pos;
		pos += n + (nl != NULL);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (n == 0)
			continue;
		if (memchr(line, '\0', n) != NULL) {
			dms_log(LOG_WARNING, "gridftp: MLSD %s: skipping a name "
			        "with a NUL byte", url);
			continue;
		}
		prc = xfer_mlsx_parse(line, n, name, sizeof(name), &attr);
		if (prc == 2)
			*saw_cdir = true;
		if (prc == 1 || prc == 2)
			continue;
		if (prc == -ENAMETOOLONG) {
			toolong++;   /* no POSIX tool could open it */
			continue;
		}
		if (prc != 0) {
			dms_log(LOG_ERR, "gridftp: MLSD %s: malformed line "
			        "\"%.*s\"", url, (int)(n > 200 ? 200 : n), line);
			rc = -EIO;
			goto out;
		}
		if (strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
		    strcmp(name, "..") == 0) {
			dms_log(LOG_WARNING, "gridftp: MLSD %s: skipping entry "
			        "\"%s\"", url, name);
			continue;
		}
		rc = xfer_listing_add(l, name, &attr);
		if (rc != 0)
			goto out;
	}
out:
	if (toolong)
		dms_log(LOG_WARNING, "gridftp: MLSD %s: %zu names longer than "
		        "NAME_MAX (%d bytes) skipped", url, toolong, NAME_MAX);
	return rc;
}

static int gftp_list(void *state, const char *path, xfer_entry_fn fn,
                     void *arg)
{
	struct gftp *g = state;
	struct xfer_listing l = {0};
	struct xfer_attr attr;
	struct gftp_op *op = NULL;
	char *url = NULL;
	bool saw_cdir = false;
	int rc;

	if (!gftp_path_plain(path)) {
		rc = gftp_mlst(g, path, true, &attr);
		if (rc != 0)
			goto out;
		if (!S_ISDIR(attr.mode)) {
			rc = -ENOTDIR;
			goto out;
		}
	}
	url = xfer_url_join(g->root, path, 1);
	if (url == NULL) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	rc = gftp_run(g, GFTP_LIST, url, 0, 0, NULL, &op);
	if (rc == -ENOENT || rc == -EIO) {
		/* MLSD of a file fails like a missing path; tell them apart. */
		int src = gftp_mlst(g, path, false, &attr);

		if (src == 0 && !S_ISDIR(attr.mode))
			rc = -ENOTDIR;
		goto out;
	}
	if (rc != 0)
		goto out;
	rc = xfer_mlsd_parse(op->lbuf, op->llen, url, &l, &saw_cdir);
	if (rc != 0)
		goto out;
	if (!saw_cdir) {
		/* MLSD of a file lists the file itself; a directory's reply
		 * carries a cdir entry.  Without one, ask what path is. */
		rc = gftp_mlst(g, path, false, &attr);
		if (rc == 0 && !S_ISDIR(attr.mode))
			rc = -ENOTDIR;
		if (rc != 0)
			goto out;
	}
	rc = xfer_listing_emit(&l, fn, arg);
out:
	xfer_listing_free(&l);
	gftp_op_free(op);
	free(url);
	return rc;
}

/*
 * A partial get carries no validator, so the file is asked for its size and
 * Modify fact after the data has arrived: -ESTALE if either differs from
 * the version the caller's blocks are stored under.  After, not before:
 * the server reads the file that was there when the transfer started (a
 * file replaced by rename keeps serving the old one), and a change
 * before or during the transfer also shows in a later MLST, so a match
 * afterwards means the bytes are of the expected version (unless it was
 * replaced within the same second by one of the same size; see README).
 * Cost: one MLST round trip on a pooled control connection per run of
 * blocks (up to 2 MiB), no new connection.  If the MLST fails the bytes are
 * not taken.
 */
static int gftp_check_version(struct gftp *g, const char *path,
                              const char *url, const struct xfer_attr *expect)
{
	struct xfer_attr now;
	int rc = gftp_mlst(g, path, !gftp_path_plain(path), &now);

	if (rc == -ENOENT) {
		dms_log(LOG_WARNING, "gridftp: RETR %s: the file is gone after "
		        "the transfer: file changed at the source", url);
		rc = -ESTALE;
		goto out;
	}
	if (rc != 0) {
		dms_log(LOG_ERR, "gridftp: RETR %s: cannot check the file's "
		        "version after the transfer (%s); data not taken", url,
		        strerror(-rc));
		goto out;
	}
	if (now.size != expect->size ||
	    (expect->mtime != 0 && now.mtime != expect->mtime)) {
		dms_log(LOG_WARNING, "gridftp: RETR %s: MLST size %llu modify "
		        "%lld, expected size %llu modify %lld: file changed at "
		        "the source", url, (unsigned long long)now.size,
		        (long long)now.mtime, (unsigned long long)expect->size,
		        (long long)expect->mtime);
		rc = -ESTALE;
	}
out:
	return rc;
}

static int gftp_read(void *state, const char *path,
                     const struct xfer_attr *expect, uint64_t offset,
                     size_t len, void *buf, size_t *done)
{
	struct gftp *g = state;
	struct xfer_attr now;
	struct gftp_op *op = NULL;
	char *url = NULL;
	int rc = 0;

	/* MODE E places blocks out of order: no prefix is known. */
	*done = 0;
	if (len == 0)
		goto out;
	if (offset + len < offset ||
	    (expect != NULL && offset + len > expect->size)) {
		rc = -EINVAL;
		goto out;
	}
	if (!gftp_path_plain(path)) {
		rc = gftp_mlst(g, path, true, &now);
		if (rc != 0)
			goto out;
	}
	url = xfer_url_join(g->root, path, 0);
	if (url == NULL) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	rc = gftp_run(g, GFTP_READ, url, offset, len, buf, &op);
	if (rc == -ENODATA) {
		/* Fewer bytes than asked for: the file shrank (stale) or the
		 * server misbehaved. */
		rc = gftp_mlst(g, path, false, &now);
		if (rc == 0)
			rc = expect != NULL && now.size != expect->size ? -ESTALE
			                                                : -EIO;
		else if (rc == -ENOENT)
			rc = -ESTALE;
		dms_log(LOG_WARNING, "gridftp: RETR %s: short reply (%s)", url,
		        rc == -ESTALE ? "file changed" : "server error");
	} else if (rc == 0 && expect != NULL) {
		rc = gftp_check_version(g, path, url, expect);
	}
out:
	gftp_op_free(op);
	free(url);
	return rc;
}

static void gftp_close(void *state)
{
	struct gftp *g = state;
	size_t i;

	if (g == NULL)
		goto out;
	for (i = 0; i < GFTP_POOL; i++) {
		if (g->slots[i].handle != NULL) {
			globus_ftp_client_handle_destroy(g->slots[i].handle);
			free(g->slots[i].handle);
		}
		free(g->slots[i].bufs);
	}
	globus_ftp_client_handleattr_destroy(&g->hattr);
	pthread_cond_destroy(&g->slot_free);
	pthread_mutex_destroy(&g->lock);
	free(g->root);
	free(g);
	gftp_module_put();
out:
	return;
}

static int gftp_open(void **state, const char *url,
                     const struct xfer_opts *opts)
{
	struct xfer_limits lim;
	struct gftp *g = NULL;
	globus_url_t parsed;
	bool have_mod = false, have_url = false;
	size_t i;
	int rc = 0;

	*state = NULL;
	if (strncmp(url, "ftp://", 6) != 0 && strncmp(url, "gsiftp://", 9) != 0) {
		dms_log(LOG_ERR, "gridftp: %s: not an ftp:// or gsiftp:// URL",
		        url);
		rc = -EINVAL;
		goto fail;
	}
	if (opts->gridftp_streams < 0 ||
	    opts->gridftp_streams > GFTP_MAX_STREAMS) {
		dms_log(LOG_ERR, "gridftp: gridftp_streams must be 0..%d, not %d",
		        GFTP_MAX_STREAMS, opts->gridftp_streams);
		rc = -EINVAL;
		goto fail;
	}
	rc = gftp_module_get();
	if (rc != 0)
		goto fail;
	have_mod = true;
	if (globus_url_parse(url, &parsed) != GLOBUS_SUCCESS) {
		dms_log(LOG_ERR, "gridftp: %s: malformed URL", url);
		rc = -EINVAL;
		goto fail;
	}
	have_url = true;
	g = calloc(1, sizeof(*g));
	if (g == NULL || (g->root = strdup(url)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	i = strlen(g->root);
	while (i > 0 && g->root[i - 1] == '/')
		g->root[--i] = '\0';
	g->opts = opts;
	xfer_opts_limits(opts, &lim);
	g->connect_ms = lim.connect_ms;
	g->stall_s = lim.stall_s;
	g->retries = lim.retries;
	g->max_listing = lim.max_listing;
	g->streams = opts->gridftp_streams ? opts->gridftp_streams
	                                   : GFTP_DEFAULT_STREAMS;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->slot_free, NULL);
	globus_ftp_client_handleattr_init(&g->hattr);
	/* Keep control connections open between operations: a block read
	 * must not cost a login (and a GSI handshake). */
	globus_ftp_client_handleattr_set_cache_all(&g->hattr, GLOBUS_TRUE);
	for (i = 0; i < GFTP_POOL; i++) {
		g->slots[i].handle = gftp_handle_new(g);
		if (g->slots[i].handle == NULL) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	*state = g;
fail:
	if (have_url)
		globus_url_destroy(&parsed);
	if (rc != 0 && g != NULL && g->opts != NULL) {
		gftp_close(g); /* also drops the module reference */
	} else if (rc != 0) {
		if (g != NULL)
			free(g->root);
		free(g);
		if (have_mod)
			gftp_module_put();
	}
	return rc;
}

const struct xfer_backend_ops xfer_gridftp_ops = {
	.name = "gridftp",
	.open = gftp_open,
	.close = gftp_close,
	.stat = gftp_stat,
	.list = gftp_list,
	.read = gftp_read,
	.write = &xfer_gridftp_write_ops,
};
