/*
 * transfer/ core: the list of sources (mirrors) behind one struct xfer, the
 * choice of which source to ask, and the helpers shared by the backends
 * (URL building, percent-encoding, collected listings).
 *
 * Source choice, per call: sources that are up, in the configured order;
 * then, if none of them answered, the sources that are down, least recently
 * failed first.  Each source is asked at most once per call, so a call is
 * bounded by (number of sources) x (one backend call).  A source whose
 * backend returns -EHOSTDOWN or -EIO is taken out for a back-off period
 * (5 s, doubling to 60 s; reset by a success).  Down sources are still tried
 * when nothing better is left, because failing instantly while a mirror may
 * already be back would turn a short outage into a 60 s one.
 */
#include "transfer/xfer_i.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/log.h"

#define XFER_MAX_SOURCES   16
#define XFER_MAX_URL       4096   /* one source URL */
#define XFER_MAX_PATH      4096   /* a path inside the tree, raw bytes */
#define XFER_BACKOFF_MIN_MS  5000
#define XFER_BACKOFF_MAX_MS 60000
#define XFER_DEFAULT_CONNECT_MS 5000
#define XFER_DEFAULT_MIN_RATE   (64u << 10)

struct xfer_source {
	const struct xfer_backend_ops *ops;
	void *state;               /* the backend's, set once at open */
	void *wstate;              /* its write state, NULL if it cannot write */
	char *url;                 /* root, no trailing '/' */
	/* The fields below are protected by xfer->lock. */
	bool down;
	int64_t down_until_ms;     /* monotonic; meaningful while down */
	int64_t failed_at_ms;      /* monotonic time of the last failure */
	int64_t backoff_ms;        /* next back-off period */
	int last_err;              /* -errno of the last failure, 0 if none */
	int64_t last_err_wall;     /* wall-clock seconds of it */
	char last_op[32];          /* "read", "list"... of the last failure */
	char last_why[XFER_NOTE_MAX]; /* the backend's words for it, or "" */
	/* Counters for xfer_source_info (dmsctl status): lock-free, read
	 * without ordering against each other. */
	atomic_ullong bytes;       /* file bytes read from this source */
	atomic_ullong requests;    /* calls sent to it, failed ones too */
	atomic_ullong failures;    /* calls that took it out */
	atomic_uint inflight;      /* calls on it now */
	atomic_ullong failovers;   /* calls moved on from it to the next */
	atomic_ullong errors[XFER_ERR_KINDS];
	atomic_ullong lat[XFER_LAT_BUCKETS + 1];
	atomic_ullong lat_sum_us;
};

struct xfer {
	struct xfer_opts opts;     /* read-only after open; proxy points into
	                              proxy_copy */
	char *proxy_copy;
	pthread_mutex_t lock;      /* protects the down/backoff fields of src */
	size_t nsrc;
	struct xfer_source src[XFER_MAX_SOURCES];
};

/* The probe's per-thread state (see xfer_i.h): set by xfer_probe for the
 * length of one call on its own thread, so no lock is needed. */
static __thread struct xfer_probe_state {
	bool on;
	char note[XFER_NOTE_MAX];   /* the current source's failure */
	int kind;                   /* its enum xfer_err_kind, -1: none */
} probe_tls;

/* From 1 ms (a cached answer on the LAN) to 10 s (a stalled origin). */
const double xfer_lat_bounds[XFER_LAT_BUCKETS] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

const char *xfer_err_kind_name(unsigned kind)
{
	static const char *names[XFER_ERR_KINDS] = {
		"timeout", "refused", "resolve", "tls", "http_4xx", "http_5xx",
		"short_body", "not_found", "denied", "changed", "bad_answer",
		"unreachable", "other",
	};

	return kind < XFER_ERR_KINDS ? names[kind] : "other";
}

static pthread_once_t xfer_global_once = PTHREAD_ONCE_INIT;
static CURLcode xfer_global_rc;

static void xfer_global_init(void)
{
	/* Not thread safe itself, hence pthread_once; the daemon never calls
	 * curl_global_cleanup (libcurl and OpenSSL state live until exit). */
	xfer_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Maps a URL's scheme to its backend; NULL if unsupported. */
static const struct xfer_backend_ops *scheme_ops(const char *url)
{
	static const struct {
		const char *prefix;
		const struct xfer_backend_ops *ops;
	} map[] = {
		{ "http://", &xfer_http_ops },
		{ "https://", &xfer_http_ops },
		{ "ftp://", &xfer_gridftp_ops },
		{ "gsiftp://", &xfer_gridftp_ops },
	};
	size_t i;

	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		size_t n = strlen(map[i].prefix);

		/* Host part must not be empty: "http:///x" is malformed. */
		if (strncasecmp(url, map[i].prefix, n) == 0 &&
		    url[n] != '\0' && url[n] != '/')
			return map[i].ops;
	}
	return NULL;
}

static void sources_close(struct xfer *x)
{
	size_t i;

	for (i = 0; i < x->nsrc; i++) {
		if (x->src[i].wstate)
			x->src[i].ops->write->close(x->src[i].wstate);
		if (x->src[i].state && x->src[i].ops->close)
			x->src[i].ops->close(x->src[i].state);
		free(x->src[i].url);
	}
	x->nsrc = 0;
}

/* Adds the source [s, s+n) to x after trimming blanks and trailing '/'. */
static int source_add(struct xfer *x, const char *s, size_t n)
{
	struct xfer_source *src;
	int rc = 0;

	while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\n')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' ||
	                 s[n - 1] == '\n' || s[n - 1] == '/'))
		n--;
	if (n == 0)
		goto out;   /* "a;;b" or a trailing ';' */
	if (n >= XFER_MAX_URL || memchr(s, '\0', n)) {
		dms_log(LOG_ERR, "transfer: source URL too long (%zu bytes)", n);
		rc = -EINVAL;
		goto out;
	}
	if (x->nsrc == XFER_MAX_SOURCES) {
		dms_log(LOG_ERR, "transfer: more than %d sources",
		        XFER_MAX_SOURCES);
		rc = -EINVAL;
		goto out;
	}
	src = &x->src[x->nsrc];
	memset(src, 0, sizeof(*src));
	src->url = strndup(s, n);
	if (!src->url) {
		rc = -ENOMEM;
		goto out;
	}
	src->ops = scheme_ops(src->url);
	if (!src->ops) {
		dms_log(LOG_ERR, "transfer: unsupported or malformed source URL "
		        "\"%s\" (want http://, https://, ftp:// or gsiftp://"
		        " followed by a host)", src->url);
		free(src->url);
		rc = -EINVAL;
		goto out;
	}
	if (!src->ops->open || !src->ops->stat || !src->ops->list ||
	    !src->ops->read) {
		dms_log(LOG_ERR, "transfer: %s backend not available for \"%s\"",
		        src->ops->name, src->url);
		free(src->url);
		rc = -EPROTONOSUPPORT;
		goto out;
	}
	rc = src->ops->open(&src->state, src->url, &x->opts);
	if (rc < 0) {
		dms_log(LOG_ERR, "transfer: cannot open source \"%s\": %s",
		        src->url, strerror(-rc));
		free(src->url);
		goto out;
	}
	if (src->ops->write) {
		rc = src->ops->write->open(&src->wstate, src->state, src->url,
		                           &x->opts);
		if (rc < 0) {
			dms_log(LOG_ERR, "transfer: cannot open source \"%s\" "
			        "for writing: %s", src->url, strerror(-rc));
			src->ops->close(src->state);
			free(src->url);
			goto out;
		}
	}
	src->backoff_ms = XFER_BACKOFF_MIN_MS;
	x->nsrc++;
out:
	return rc;
}

int xfer_open(struct xfer **out, const char *sources,
              const struct xfer_opts *opts)
{
	struct xfer *x = NULL;
	const char *p, *end;
	int rc = 0;

	*out = NULL;
	pthread_once(&xfer_global_once, xfer_global_init);
	if (xfer_global_rc != CURLE_OK) {
		dms_log(LOG_ERR, "transfer: curl_global_init: %s",
		        curl_easy_strerror(xfer_global_rc));
		rc = -EIO;
		goto fail;
	}
	if (!sources) {
		dms_log(LOG_ERR, "transfer: no sources given");
		rc = -EINVAL;
		goto fail;
	}
	x = calloc(1, sizeof(*x));
	if (!x) {
		rc = -ENOMEM;
		goto fail;
	}
	if (opts)
		x->opts = *opts;
	x->opts.proxy = NULL;
	if (opts && opts->proxy && opts->proxy[0]) {
		char why[XFER_NOTE_MAX];

		rc = xfer_check_proxy(opts->proxy, why, sizeof(why));
		if (rc < 0) {
			dms_log(LOG_ERR, "transfer: %s", why);
			goto fail_free;
		}
		x->proxy_copy = strdup(opts->proxy);
		if (!x->proxy_copy) {
			rc = -ENOMEM;
			goto fail_free;
		}
		x->opts.proxy = x->proxy_copy;
	}
	rc = pthread_mutex_init(&x->lock, NULL);
	if (rc) {
		rc = -rc;
		goto fail_free;
	}
	for (p = sources; *p; p = *end ? end + 1 : end) {
		end = strchr(p, ';');
		if (!end)
			end = p + strlen(p);
		rc = source_add(x, p, (size_t)(end - p));
		if (rc < 0)
			goto fail_sources;
	}
	if (x->nsrc == 0) {
		dms_log(LOG_ERR, "transfer: no sources in \"%s\"", sources);
		rc = -EINVAL;
		goto fail_sources;
	}
	*out = x;
	return 0;

fail_sources:
	sources_close(x);
	pthread_mutex_destroy(&x->lock);
fail_free:
	free(x->proxy_copy);
	free(x);
fail:
	return rc;
}

void xfer_close(struct xfer *x)
{
	if (!x)
		return;
	sources_close(x);
	pthread_mutex_destroy(&x->lock);
	free(x->proxy_copy);
	free(x);
}

void xfer_opts_limits(const struct xfer_opts *opts, struct xfer_limits *l)
{
	l->connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
	                                             : XFER_DEFAULT_CONNECT_MS;
	l->stall_s = opts->stall_timeout_s > 0 ? opts->stall_timeout_s : 15;
	l->retries = opts->retries < 0 ? 0 : opts->retries == 0 ? 2
	                                   : opts->retries;
	l->max_listing = opts->max_listing_bytes ? opts->max_listing_bytes
	                                         : (size_t)128 << 20;
}

long xfer_opts_deadline_ms(const struct xfer_opts *opts, uint64_t bytes)
{
	long connect = opts && opts->connect_timeout_ms > 0
	               ? opts->connect_timeout_ms : XFER_DEFAULT_CONNECT_MS;
	uint64_t rate = opts && opts->min_rate ? opts->min_rate
	                                       : XFER_DEFAULT_MIN_RATE;
	uint64_t ms = bytes / rate * 1000 + bytes % rate * 1000 / rate;

	/* Far beyond any real transfer; keeps the sum in a long. */
	if (ms > (uint64_t)1 << 30)
		ms = (uint64_t)1 << 30;
	return connect + (long)ms;
}

long xfer_deadline_ms(const struct xfer *x, uint64_t bytes)
{
	return xfer_opts_deadline_ms(&x->opts, bytes);
}

/* Fills order[] with the indexes of the sources to try, best first. */
static size_t source_order(struct xfer *x, size_t *order)
{
	size_t n = 0, ndown, i, j;
	int64_t now = now_ms();

	pthread_mutex_lock(&x->lock);
	for (i = 0; i < x->nsrc; i++)
		if (!x->src[i].down || x->src[i].down_until_ms <= now)
			order[n++] = i;
	ndown = n;
	for (i = 0; i < x->nsrc; i++)
		if (x->src[i].down && x->src[i].down_until_ms > now)
			order[n++] = i;
	/* Insertion sort of the down tail by failure time: at most 16. */
	for (i = ndown + 1; i < n; i++) {
		size_t k = order[i];

		for (j = i; j > ndown &&
		     x->src[order[j - 1]].failed_at_ms > x->src[k].failed_at_ms;
		     j--)
			order[j] = order[j - 1];
		order[j] = k;
	}
	pthread_mutex_unlock(&x->lock);
	return n;
}

static void source_failed(struct xfer *x, size_t i, int err,
                          const char *op)
{
	struct xfer_source *s = &x->src[i];
	int64_t now = now_ms();
	bool was_down;
	int64_t period;

	pthread_mutex_lock(&x->lock);
	was_down = s->down;
	period = s->backoff_ms;
	/* Only a probe after the back-off expired doubles it; a source tried
	 * "anyway" while still down just restarts its current period. */
	if (was_down && s->down_until_ms <= now) {
		period = s->backoff_ms * 2;
		if (period > XFER_BACKOFF_MAX_MS)
			period = XFER_BACKOFF_MAX_MS;
		s->backoff_ms = period;
	}
	s->down = true;
	s->down_until_ms = now + period;
	s->failed_at_ms = now;
	s->last_err = err;
	s->last_err_wall = (int64_t)time(NULL);
	snprintf(s->last_op, sizeof(s->last_op), "%s", op);
	/* The backend's note of this thread's call to s (run_call clears it
	 * before each source). */
	snprintf(s->last_why, sizeof(s->last_why), "%s", probe_tls.note);
	pthread_mutex_unlock(&x->lock);
	atomic_fetch_add_explicit(&s->failures, 1, memory_order_relaxed);
	if (!was_down)
		dms_log(LOG_WARNING, "transfer: source %s taken out for %lld s "
		        "(%s)", s->url, (long long)(period / 1000),
		        strerror(-err));
	else
		dms_log(LOG_INFO, "transfer: source %s still failing, next try "
		        "in %lld s (%s)", s->url, (long long)(period / 1000),
		        strerror(-err));
}

static void source_ok(struct xfer *x, size_t i)
{
	struct xfer_source *s = &x->src[i];
	bool was_down;

	pthread_mutex_lock(&x->lock);
	was_down = s->down;
	s->down = false;
	s->backoff_ms = XFER_BACKOFF_MIN_MS;
	pthread_mutex_unlock(&x->lock);
	if (was_down)
		dms_log(LOG_NOTICE, "transfer: source %s is back", s->url);
}

enum xfer_op { XFER_STAT, XFER_LIST, XFER_READ };

struct xfer_call {
	enum xfer_op op;
	const char *path;
	struct xfer_attr *attr;              /* stat */
	xfer_entry_fn fn;                    /* list */
	void *arg;
	const struct xfer_attr *expect;      /* read */
	uint64_t offset;
	size_t len;
	void *buf;
	size_t done;                         /* read: see xfer_read_some */
	/* list: set once the user's callback ran, so a failure after that is
	 * never retried on another source (no duplicate entries). */
	bool emitted;
	bool stopped;
	int stop_rc;
};

static int call_entry(void *arg, const char *name, const struct xfer_attr *a)
{
	struct xfer_call *c = arg;
	int rc;

	c->emitted = true;
	rc = c->fn(c->arg, name, a);
	if (rc) {
		c->stopped = true;
		c->stop_rc = rc;
	}
	return rc;
}

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Counts a call of us microseconds that returned rc in s's metrics. */
static void count_call(struct xfer_source *s, int rc, int64_t us)
{
	unsigned b = 0, kind;

	while (b < XFER_LAT_BUCKETS && (double)us > xfer_lat_bounds[b] * 1e6)
		b++;
	atomic_fetch_add_explicit(&s->lat[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->lat_sum_us, (unsigned long long)us,
	                          memory_order_relaxed);
	if (rc >= 0)
		return;
	/* "No such file" and "it changed" are answers, whatever the
	 * protocol said them with: kept apart from the failures. */
	if (rc == -ENOENT)
		kind = XFER_ERR_NOT_FOUND;
	else if (rc == -ESTALE)
		kind = XFER_ERR_CHANGED;
	else if (probe_tls.kind >= 0)
		kind = (unsigned)probe_tls.kind;
	else if (rc == -EACCES)
		kind = XFER_ERR_DENIED;
	else if (rc == -EIO)
		kind = XFER_ERR_BAD_ANSWER;
	else if (rc == -EHOSTDOWN)
		kind = XFER_ERR_UNREACHABLE;
	else
		kind = XFER_ERR_OTHER;
	if (kind >= XFER_ERR_KINDS)
		kind = XFER_ERR_OTHER;
	atomic_fetch_add_explicit(&s->errors[kind], 1, memory_order_relaxed);
}

static int call_one(struct xfer_source *s, struct xfer_call *c)
{
	int64_t t0 = now_us();
	int rc = -EINVAL;

	probe_tls.kind = -1;
	atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->inflight, 1, memory_order_relaxed);
	switch (c->op) {
	case XFER_STAT:
		rc = s->ops->stat(s->state, c->path, c->attr);
		break;
	case XFER_LIST:
		rc = s->ops->list(s->state, c->path, call_entry, c);
		break;
	case XFER_READ:
		/* Only the last source's prefix counts: a later one may have
		 * written over an earlier one's. */
		c->done = 0;
		rc = s->ops->read(s->state, c->path, c->expect, c->offset,
		                  c->len, c->buf, &c->done);
		atomic_fetch_add_explicit(&s->bytes, rc == 0 ? c->len : c->done,
		                          memory_order_relaxed);
		break;
	}
	atomic_fetch_sub_explicit(&s->inflight, 1, memory_order_relaxed);
	/* A listing the caller's callback stopped is not the source's. */
	count_call(s, c->op == XFER_LIST && c->stopped ? 0 : rc,
	           now_us() - t0);
	return rc;
}

int xfer_source_info(struct xfer *x, size_t i, struct xfer_source_info *out)
{
	struct xfer_source *s;
	int64_t now = now_ms();

	if (i >= x->nsrc)
		return -ENOENT;
	s = &x->src[i];
	memset(out, 0, sizeof(*out));
	snprintf(out->url, sizeof(out->url), "%s", s->url);
	pthread_mutex_lock(&x->lock);
	out->down = s->down;
	out->retry_in_ms = s->down && s->down_until_ms > now
	                   ? s->down_until_ms - now : 0;
	out->last_err = s->last_err;
	out->last_err_wall = s->last_err_wall;
	snprintf(out->last_op, sizeof(out->last_op), "%s", s->last_op);
	snprintf(out->last_why, sizeof(out->last_why), "%s", s->last_why);
	pthread_mutex_unlock(&x->lock);
	out->bytes = atomic_load_explicit(&s->bytes, memory_order_relaxed);
	out->requests = atomic_load_explicit(&s->requests,
	                                     memory_order_relaxed);
	out->failures = atomic_load_explicit(&s->failures,
	                                     memory_order_relaxed);
	out->inflight = atomic_load_explicit(&s->inflight,
	                                     memory_order_relaxed);
	out->protocol = s->ops->name;
	out->failovers = atomic_load_explicit(&s->failovers,
	                                      memory_order_relaxed);
	for (size_t k = 0; k < XFER_ERR_KINDS; k++)
		out->errors[k] = atomic_load_explicit(&s->errors[k],
		                                      memory_order_relaxed);
	for (size_t k = 0; k <= XFER_LAT_BUCKETS; k++)
		out->lat[k] = atomic_load_explicit(&s->lat[k],
		                                   memory_order_relaxed);
	out->lat_sum_us = atomic_load_explicit(&s->lat_sum_us,
	                                       memory_order_relaxed);
	return 0;
}

/* Probe only: adds the failure of source s to why (sources joined by
 * "; "), in the backend's words or, without them, the errno's. */
static void probe_collect(const struct xfer_source *s, int rc, char *why,
                          size_t cap)
{
	size_t n = strlen(why);

	if (n + 3 >= cap)
		return;
	if (n) {
		memcpy(why + n, "; ", 3);
		n += 2;
	}
	if (probe_tls.note[0])
		snprintf(why + n, cap - n, "%s", probe_tls.note);
	else
		snprintf(why + n, cap - n, "%s: %s", s->url, strerror(-rc));
}

/* A path a caller may pass: absolute and within XFER_MAX_PATH. */
static bool path_ok(const char *path)
{
	return path && path[0] == '/' &&
	       strnlen(path, XFER_MAX_PATH + 1) <= XFER_MAX_PATH;
}

/* 0 if path (and to, if two) may be passed, else -EINVAL (logged). */
static int paths_check(const char *path, bool two, const char *to)
{
	int rc = 0;

	if (!path_ok(path) || (two && !path_ok(to))) {
		dms_log(LOG_ERR, "transfer: invalid path \"%.64s\"",
		        path ? path : "(null)");
		rc = -EINVAL;
	}
	return rc;
}

static int run_call(struct xfer *x, struct xfer_call *c, char *why,
                    size_t cap)
{
	size_t order[XFER_MAX_SOURCES], n, k;
	bool saw_eio = false;
	int rc = paths_check(c->path, false, NULL);

	if (rc < 0)
		goto out;
	n = source_order(x, order);
	for (k = 0; k < n; k++) {
		size_t i = order[k];

		probe_tls.note[0] = '\0';
		rc = call_one(&x->src[i], c);
		if (why && rc < 0)
			probe_collect(&x->src[i], rc, why, cap);
		if (c->op == XFER_LIST && c->stopped) {
			rc = c->stop_rc;
			goto out;
		}
		if (rc != -EHOSTDOWN && rc != -EIO) {
			/* Success or an answer (-ENOENT...): the source works. */
			source_ok(x, i);
			goto out;
		}
		if (rc == -EIO)
			saw_eio = true;
		source_failed(x, i, rc, c->op == XFER_READ ? "read"
		              : c->op == XFER_LIST ? "list" : "stat");
		if (c->op == XFER_LIST && c->emitted) {
			dms_log(LOG_ERR, "transfer: %s backend failed after "
			        "emitting entries; not retrying elsewhere",
			        x->src[i].ops->name);
			goto out;
		}
		if (k + 1 < n) {
			atomic_fetch_add_explicit(&x->src[i].failovers, 1,
			                          memory_order_relaxed);
			dms_log(LOG_INFO, "transfer: %s: trying next source %s",
			        c->path, x->src[order[k + 1]].url);
		}
	}
	/* -EIO (a wrong answer) is the more informative verdict. */
	rc = saw_eio ? -EIO : -EHOSTDOWN;
out:
	return rc;
}

int xfer_stat(struct xfer *x, const char *path, struct xfer_attr *attr)
{
	struct xfer_call c = { .op = XFER_STAT, .path = path, .attr = attr };

	return run_call(x, &c, NULL, 0);
}

int xfer_probe(struct xfer *x, const char *path, struct xfer_attr *attr,
               char *why, size_t cap)
{
	struct xfer_call c = { .op = XFER_STAT, .path = path, .attr = attr };
	char buf[2 * XFER_NOTE_MAX];
	int rc;

	buf[0] = '\0';
	probe_tls.on = true;
	rc = run_call(x, &c, buf, sizeof(buf));
	probe_tls.on = false;
	probe_tls.note[0] = '\0';
	if (why && cap) {
		if (rc < 0 && !buf[0])
			snprintf(buf, sizeof(buf), "%s", strerror(-rc));
		snprintf(why, cap, "%s", rc < 0 ? buf : "");
	}
	return rc;
}

int xfer_probing(void)
{
	return probe_tls.on;
}

void xfer_note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(probe_tls.note, sizeof(probe_tls.note), fmt, ap);
	va_end(ap);
}

void xfer_note_kind(unsigned kind)
{
	probe_tls.kind = (int)kind;
}

void xfer_url_hostport(const char *url, char *out, size_t cap)
{
	static const struct {
		const char *scheme, *port;
	} defaults[] = {
		{ "http://", "80" }, { "https://", "443" }, { "ftp://", "21" },
		{ "gsiftp://", "2811" },
	};
	const char *auth, *end, *at, *p, *port = NULL;
	size_t n, i;

	if (cap == 0)
		goto out;
	out[0] = '\0';
	auth = strstr(url, "://");
	if (!auth)
		goto out;
	auth += 3;
	end = auth + strcspn(auth, "/?#");
	for (at = auth, p = auth; p < end; p++)
		if (*p == '@')
			at = p + 1;   /* userinfo is nobody's business in a log */
	n = (size_t)(end - at);
	p = memchr(at, ']', n);   /* IPv6 literal: a port follows ']' */
	if (!memchr(p ? p : at, ':', (size_t)(end - (p ? p : at))))
		for (i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
			if (strncasecmp(url, defaults[i].scheme,
			                strlen(defaults[i].scheme)) == 0)
				port = defaults[i].port;
	snprintf(out, cap, "%.*s%s%s", (int)n, at, port ? ":" : "",
	         port ? port : "");
out:
	return;
}

/* One proxy of a spec: DIRECT, or scheme://host[:port][/] with a scheme
 * libcurl takes for a proxy. */
static bool proxy_one_ok(const char *p, size_t n)
{
	static const char *const schemes[] = {
		"http://", "https://", "socks4://", "socks4a://", "socks5://",
		"socks5h://",
	};
	const char *host = NULL, *end = p + n;
	bool ok = false;
	size_t i, k;

	if (n == 6 && strncasecmp(p, "DIRECT", 6) == 0) {
		ok = true;
		goto out;
	}
	for (i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		k = strlen(schemes[i]);
		if (n > k && strncasecmp(p, schemes[i], k) == 0)
			host = p + k;
	}
	if (!host)
		goto out;
	if (end > host && end[-1] == '/')
		end--;
	if (host == end || *host == ':')
		goto out;
	/* Nothing that could make libcurl read a different URL. */
	for (; host < end; host++)
		if (*host <= ' ' || *host == '/' || *host == '?' ||
		    *host == '#' || (unsigned char)*host >= 0x7f)
			goto out;
	ok = true;
out:
	return ok;
}

int xfer_check_proxy(const char *spec, char *why, size_t cap)
{
	const char *p = spec, *end;
	size_t n, count = 0;
	int rc = 0;

	if (!spec || !*spec)
		goto out;   /* DIRECT */
	while (*p) {
		end = p + strcspn(p, "|;");
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		n = (size_t)(end - p);
		while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n) {
			if (!proxy_one_ok(p, n)) {
				snprintf(why, cap, "invalid proxy \"%.*s\" in "
				         "proxy=%s (want http://HOST:PORT, "
				         "https://, socks5://... or DIRECT, "
				         "joined by '|' and ';')",
				         (int)(n > 64 ? 64 : n), p, spec);
				rc = -EINVAL;
				goto out;
			}
			count++;
		}
		p = *end ? end + 1 : end;
	}
	if (count == 0) {
		snprintf(why, cap, "empty proxy list proxy=%s", spec);
		rc = -EINVAL;
	}
out:
	if (rc == 0 && cap)
		why[0] = '\0';
	return rc;
}

int xfer_list(struct xfer *x, const char *path, xfer_entry_fn fn, void *arg)
{
	struct xfer_call c = { .op = XFER_LIST, .path = path, .fn = fn,
	                       .arg = arg };

	return run_call(x, &c, NULL, 0);
}

int xfer_read(struct xfer *x, const char *path, const struct xfer_attr *expect,
              uint64_t offset, size_t len, void *buf)
{
	size_t done;

	return xfer_read_some(x, path, expect, offset, len, buf, &done);
}

int xfer_read_some(struct xfer *x, const char *path,
                   const struct xfer_attr *expect, uint64_t offset,
                   size_t len, void *buf, size_t *done)
{
	struct xfer_call c = { .op = XFER_READ, .path = path, .expect = expect,
	                       .offset = offset, .len = len, .buf = buf };
	int rc;

	if (!expect || offset > expect->size || len > expect->size - offset) {
		dms_log(LOG_ERR, "transfer: read %s: range %llu+%zu outside the "
		        "expected size %llu", path ? path : "(null)",
		        (unsigned long long)offset, len,
		        (unsigned long long)(expect ? expect->size : 0));
		rc = -EINVAL;
		goto out;
	}
	rc = len ? run_call(x, &c, NULL, 0) : 0;
out:
	*done = rc == 0 ? len : c.done;
	return rc;
}

/* One write on the first source that can be reached.  Unlike reads, a
 * write moves on only while nothing was changed: a source that failed
 * after a change keeps the call (the caller retries it there), so the
 * tree is never half on one mirror and half on another. */
int xfer_run_write(struct xfer *x, const struct xfer_wcall *c)
{
	size_t order[XFER_MAX_SOURCES], n, k;
	int rc = paths_check(c->path, c->op == XFER_W_RENAME, c->to), changed;

	if (rc < 0)
		goto out;
	rc = -EHOSTDOWN;   /* no source */
	n = source_order(x, order);
	for (k = 0; k < n; k++) {
		size_t i = order[k];

		if (!x->src[i].wstate) {
			dms_log(LOG_ERR, "transfer: %s: the %s backend cannot "
			        "write", x->src[i].url, x->src[i].ops->name);
			rc = -EROFS;
			goto out;
		}
		changed = 0;
		probe_tls.note[0] = '\0';
		rc = xfer_write_one(x->src[i].ops, x->src[i].state,
		                    x->src[i].wstate, x->src[i].url, c,
		                    &changed);
		if (rc == -ENOTCONN)
			rc = -EHOSTDOWN;
		if (rc != -EHOSTDOWN && rc != -EIO) {
			source_ok(x, i);
			goto out;
		}
		source_failed(x, i, rc, "write");
		if (changed)
			goto out;
		if (k + 1 < n)
			dms_log(LOG_INFO, "transfer: %s: writing to the next "
			        "source %s", c->path, x->src[order[k + 1]].url);
	}
out:
	return rc;
}

/* ---- URL helpers --------------------------------------------------------- */

static bool unreserved(unsigned char ch)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
	       (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
	       ch == '_' || ch == '~';
}

/* Encodes [seg, seg+n) into out (cap bytes incl. NUL). */
static int encode_n(const char *seg, size_t n, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;
	int rc;

	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)seg[i];

		if (unreserved(ch)) {
			if (o + 1 >= cap)
				goto too_long;
			out[o++] = (char)ch;
		} else {
			if (o + 3 >= cap)
				goto too_long;
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	if (o >= cap || o > INT32_MAX)
		goto too_long;   /* cap 0: not even the NUL fits */
	out[o] = '\0';
	rc = (int)o;
	return rc;
too_long:
	if (cap)
		out[0] = '\0';
	return -ENAMETOOLONG;
}

int xfer_encode_segment(const char *seg, char *out, size_t cap)
{
	return encode_n(seg, strlen(seg), out, cap);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int xfer_decode_segment(const char *seg, size_t seglen, char *out, size_t cap)
{
	size_t i, o = 0;
	int rc;

	for (i = 0; i < seglen; i++) {
		unsigned char ch = (unsigned char)seg[i];

		if (ch == '%') {
			int hi, lo;

			if (seglen - i < 3) {
				rc = -EINVAL;
				goto fail;
			}
			hi = hexval(seg[i + 1]);
			lo = hexval(seg[i + 2]);
			if (hi < 0 || lo < 0) {
				rc = -EINVAL;
				goto fail;
			}
			ch = (unsigned char)(hi << 4 | lo);
			i += 2;
		}
		if (ch == '/' || ch == '\0') {
			rc = -EINVAL;
			goto fail;
		}
		if (o + 1 >= cap) {
			rc = -ENAMETOOLONG;
			goto fail;
		}
		out[o++] = (char)ch;
	}
	if (o >= cap || o > INT32_MAX) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	out[o] = '\0';
	return (int)o;
fail:
	if (cap)
		out[0] = '\0';
	return rc;
}

char *xfer_url_join(const char *root, const char *path, int dir)
{
	size_t rootlen, pathlen, cap, o, base;
	const char *p, *end;
	char *url = NULL;
	int n;

	if (!root || !path)
		goto fail;
	rootlen = strlen(root);
	pathlen = strlen(path);
	if (rootlen > XFER_MAX_URL || pathlen > XFER_MAX_PATH)
		goto fail;
	/* Worst case: every byte becomes %XX, plus '/' separators. */
	cap = rootlen + 3 * pathlen + 3;
	url = malloc(cap);
	if (!url)
		goto fail;
	memcpy(url, root, rootlen);
	o = rootlen;
	while (o > 0 && url[o - 1] == '/')
		o--;
	base = o;
	for (p = path; *p; p = end) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		end = strchr(p, '/');
		if (!end)
			end = p + strlen(p);
		url[o++] = '/';
		n = encode_n(p, (size_t)(end - p), url + o, cap - o);
		if (n < 0)
			goto fail;
		o += (size_t)n;
	}
	/* The root of the tree is always a collection: "root/". */
	if (dir || o == base)
		url[o++] = '/';
	url[o] = '\0';
	return url;
fail:
	free(url);
	return NULL;
}

/* ---- collected listings -------------------------------------------------- */

int xfer_listing_add(struct xfer_listing *l, const char *name,
                     const struct xfer_attr *attr)
{
	struct xfer_listing_entry *e;
	int rc = 0;

	if (l->count == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;

		e = reallocarray(l->entries, ncap, sizeof(*e));
		if (!e) {
			rc = -ENOMEM;
			goto out;
		}
		l->entries = e;
		l->cap = ncap;
	}
	e = &l->entries[l->count];
	e->name = strdup(name);
	if (!e->name) {
		rc = -ENOMEM;
		goto out;
	}
	e->attr = *attr;
	l->count++;
out:
	return rc;
}

int xfer_listing_emit(const struct xfer_listing *l, xfer_entry_fn fn,
                      void *arg)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < l->count && rc == 0; i++)
		rc = fn(arg, l->entries[i].name, &l->entries[i].attr);
	return rc;
}

void xfer_listing_free(struct xfer_listing *l)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		free(l->entries[i].name);
	free(l->entries);
	l->entries = NULL;
	l->count = l->cap = 0;
}
