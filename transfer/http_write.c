/*
 * WebDAV write primitives (xfer_write_ops): PUT, MKCOL, DELETE, MOVE.
 *
 * Writes go DIRECT, never through xfer_opts.proxy: a forward proxy (Squid)
 * caches nothing of a PUT or MOVE, may buffer a whole upload or time it out
 * on its own terms, and a failure through it would leave us unsure whether
 * the origin saw the request.  Reads keep using the proxies.
 *
 * The state is separate from http.c's read state (own easy handles, kept
 * alive between requests, at most HW_IDLE_MAX idle): writes use other curl
 * options (upload, custom methods) and never share a handle with a read.
 *
 * Status mapping: 2xx success; 404, 410 and 409 (a missing parent) -ENOENT;
 * 401, 403, 407, 423 -EACCES; 413, 507 -ENOSPC; 405 on MKCOL and 412 on MOVE
 * with "Overwrite: F" -EEXIST; 408, 429 and 5xx are retried with back-off,
 * then -EHOSTDOWN; anything else -EIO.  Each failure is logged with method,
 * URL, status and errno.  An upload is restarted from its first byte on a
 * retry (the source is pread-like), and the low-speed limit (1 KiB/s for
 * stall_timeout_s) applies to it as to downloads.
 */
#define _GNU_SOURCE /* asprintf */
#include "transfer/xfer_i.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"

#define HW_IDLE_MAX        8
#define HW_ERRBODY_MAX     65536     /* reply body bytes read, then abort */
#define HW_UPLOAD_BUF      (256 * 1024)
#define HW_BACKOFF_MS      100
#define HW_BACKOFF_MAX_MS  2000
#define HW_UA              "dmsfs/0.1"

struct hw {
	char *root;                 /* source URL, no trailing '/' */
	char *ca_file;              /* DMSFS_CA_FILE at open, or NULL */
	long connect_ms, stall_s;
	int retries;
	bool verbose;
	void *rstate;               /* http.c's state of the same source */
	pthread_mutex_t lock;
	CURL *idle[HW_IDLE_MAX];    /* protected by lock */
	size_t nidle;               /* protected by lock */
};

struct hw_req {
	struct hw *h;
	CURL *c;
	const char *method;
	const char *url;
	struct curl_slist *headers;
	long status_eexist;         /* status meaning -EEXIST here, or 0 */
	/* upload */
	bool upload;
	const char *path;           /* for the parent check */
	xfer_source_fn src;
	void *arg;
	uint64_t len, pos;
	/* per try */
	long status;
	int err;                    /* set by a callback */
	size_t discard;
	char errbuf[CURL_ERROR_SIZE];
	/* over all tries: a request may have reached the server */
	bool sent;
};

static CURL *pool_get(struct hw *h)
{
	CURL *c = NULL;

	pthread_mutex_lock(&h->lock);
	if (h->nidle)
		c = h->idle[--h->nidle];
	pthread_mutex_unlock(&h->lock);
	return c ? c : curl_easy_init();
}

static void pool_put(struct hw *h, CURL *c)
{
	pthread_mutex_lock(&h->lock);
	if (h->nidle < HW_IDLE_MAX) {
		h->idle[h->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->lock);
	if (c)
		curl_easy_cleanup(c);
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct hw_req *r = arg;
	size_t cap = size * nitems;
	uint64_t left = r->len - r->pos;
	ssize_t got;

	if (left == 0)
		return 0;
	if (cap > left)
		cap = (size_t)left;
	got = r->src(r->arg, buf, cap, r->pos);
	if (got < 0 || got == 0 || (size_t)got > cap) {
		r->err = got < 0 ? (int)got : -EIO;
		dms_log(LOG_ERR, "transfer: PUT %s: reading the upload at %"
		        PRIu64 " of %" PRIu64 ": %s", r->url, r->pos, r->len,
		        got < 0 ? strerror((int)-got) : "source ended early");
		return CURL_READFUNC_ABORT;
	}
	r->pos += (uint64_t)got;
	return (size_t)got;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct hw_req *r = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->len)
		return CURL_SEEKFUNC_FAIL;
	r->pos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct hw_req *r = arg;
	size_t n = size * nmemb;

	(void)data;
	/* Replies to writes are short status pages; a long one is not worth
	 * the bytes (aborting still leaves the status to judge). */
	r->discard += n;
	return r->discard <= HW_ERRBODY_MAX ? n : 0;
}

#define SET(opt, val) \
	do { if (curl_easy_setopt(c, opt, val) != CURLE_OK) bad = true; } \
	while (0)

static int req_setup(struct hw_req *r)
{
	struct hw *h = r->h;
	CURL *c = r->c;
	bool bad = false;
	int rc = 0;

	curl_easy_reset(c);
	r->errbuf[0] = '\0';
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_ERRORBUFFER, r->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_USERAGENT, HW_UA);
	SET(CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1024L);
	SET(CURLOPT_LOW_SPEED_TIME, h->stall_s);
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, r);
	SET(CURLOPT_PROXY, "");        /* DIRECT, see the top comment */
	SET(CURLOPT_HTTPHEADER, r->headers);
	if (h->ca_file)
		SET(CURLOPT_CAINFO, h->ca_file);
	if (r->upload) {
		SET(CURLOPT_UPLOAD, 1L);
		SET(CURLOPT_READFUNCTION, on_read);
		SET(CURLOPT_READDATA, r);
		SET(CURLOPT_SEEKFUNCTION, on_seek);
		SET(CURLOPT_SEEKDATA, r);
		SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->len);
		SET(CURLOPT_UPLOAD_BUFFERSIZE, (long)HW_UPLOAD_BUF);
	} else {
		SET(CURLOPT_CUSTOMREQUEST, r->method);
	}
	if (bad) {
		dms_log(LOG_ERR, "transfer: %s %s: curl_easy_setopt failed",
		        r->method, r->url);
		rc = -ENOMEM;
	}
	return rc;
}

#undef SET

static void log_fail(int prio, const struct hw_req *r, CURLcode cc, int rc,
                     const char *note)
{
	char curl[CURL_ERROR_SIZE + 128] = "";

	if (cc != CURLE_OK)
		snprintf(curl, sizeof(curl), ", curl error %d: %s%s%s%s",
		         (int)cc, curl_easy_strerror(cc),
		         r->errbuf[0] ? " (" : "", r->errbuf,
		         r->errbuf[0] ? ")" : "");
	dms_log(prio, "transfer: %s %s: HTTP %ld%s -> %s%s", r->method, r->url,
	        r->status, curl, strerror(-rc), note);
}

static bool not_sent(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST;
}

static bool transient_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* The verdict on one finished try; *transient: worth another one. */
static int judge(struct hw_req *r, CURLcode cc, bool *transient)
{
	int rc = 0;

	*transient = false;
	if (r->err) {
		rc = r->err;   /* logged by the callback */
		goto out;
	}
	if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && r->status)) {
		if (cc == CURLE_OUT_OF_MEMORY) {
			rc = -ENOMEM;
		} else if (transient_curl(cc)) {
			*transient = true;
			rc = -EHOSTDOWN;
		} else {
			rc = -EIO;
		}
		if (!*transient)
			log_fail(LOG_ERR, r, cc, rc, "");
		goto out;
	}
	if (r->status >= 200 && r->status <= 299)
		goto out;
	if (r->status_eexist && r->status == r->status_eexist) {
		rc = -EEXIST;
		log_fail(LOG_INFO, r, cc, rc, "");
		goto out;
	}
	switch (r->status) {
	case 404:
	case 409:   /* a missing parent */
	case 410:
		rc = -ENOENT;
		log_fail(LOG_INFO, r, cc, rc, "");
		break;
	case 401:
	case 403:
	case 407:
	case 423:
		rc = -EACCES;
		log_fail(LOG_WARNING, r, cc, rc, "");
		break;
	case 413:
	case 507:
		rc = -ENOSPC;
		log_fail(LOG_WARNING, r, cc, rc, " (origin full or over quota)");
		break;
	case 408:
	case 429:
		*transient = true;
		rc = -EHOSTDOWN;
		break;
	default:
		if (r->status >= 500 && r->status <= 599) {
			*transient = true;
			rc = -EHOSTDOWN;
		} else {
			rc = -EIO;
			log_fail(LOG_ERR, r, cc, rc, " (unexpected status)");
		}
		break;
	}
out:
	return rc;
}

/* nginx answers a PUT into a missing folder (create_full_put_path off)
 * with a bare 500, which would be retried as a server fault; one PROPFIND
 * of the parent tells the two apart.  0 if the parent is a folder. */
static int parent_check(struct hw_req *r)
{
	struct xfer_attr a;
	char *parent = strdup(r->path), *slash;
	int rc;

	if (!parent) {
		rc = -ENOMEM;
		goto out;
	}
	slash = strrchr(parent, '/');
	slash[slash == parent ? 1 : 0] = '\0';
	rc = xfer_http_ops.stat(r->h->rstate, parent, &a);
	if (rc == 0 && !S_ISDIR(a.mode))
		rc = -ENOTDIR;
	if (rc == -ENOENT || rc == -ENOTDIR)
		log_fail(LOG_INFO, r, CURLE_OK, rc, " (parent folder)");
out:
	free(parent);
	return rc;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Runs r with retries.  0, -errno, or -ENOTCONN if no try ever got a
 * request out. */
static int run(struct hw_req *r)
{
	struct hw *h = r->h;
	long delay = HW_BACKOFF_MS;
	bool transient;
	CURLcode cc;
	int rc, i;

	r->c = pool_get(h);
	if (!r->c) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0;; i++) {
		r->status = 0;
		r->err = 0;
		r->discard = 0;
		r->pos = 0;
		rc = req_setup(r);
		if (rc < 0)
			break;
		if (h->verbose)
			dms_log(LOG_DEBUG, "transfer: %s %s", r->method, r->url);
		cc = curl_easy_perform(r->c);
		curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE, &r->status);
		if (!not_sent(cc))
			r->sent = true;
		rc = judge(r, cc, &transient);
		if (!transient)
			break;
		if (r->upload && i == 0 && r->status == 500) {
			int prc = parent_check(r);

			if (prc == -ENOENT || prc == -ENOTDIR) {
				rc = prc;
				break;
			}
		}
		if (i >= h->retries) {
			rc = r->sent ? -EHOSTDOWN : -ENOTCONN;
			log_fail(LOG_ERR, r, cc, -EHOSTDOWN,
			         i ? " (after retries)" : "");
			break;
		}
		log_fail(LOG_WARNING, r, cc, -EHOSTDOWN, ", retrying");
		sleep_ms(delay);
		delay = delay * 4 > HW_BACKOFF_MAX_MS ? HW_BACKOFF_MAX_MS
		                                      : delay * 4;
	}
	pool_put(h, r->c);
	r->c = NULL;
out:
	return rc;
}

/* One request without a body: method on path (a collection if dir). */
static int simple(struct hw *h, const char *method, const char *path,
                  bool dir, const char *header, long status_eexist)
{
	struct hw_req r;
	char *url = xfer_url_join(h->root, path, dir);
	int rc;

	memset(&r, 0, sizeof(r));
	r.h = h;
	r.method = method;
	r.url = url;
	r.status_eexist = status_eexist;
	if (!url) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (header) {
		r.headers = curl_slist_append(NULL, header);
		if (!r.headers) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = run(&r);
out:
	curl_slist_free_all(r.headers);
	free(url);
	return rc;
}

static int hw_upload(void *state, const char *path, xfer_source_fn src,
                     void *arg, uint64_t len, int64_t mtime)
{
	struct hw *h = state;
	struct hw_req r;
	char date[64];
	struct tm tm;
	time_t t = (time_t)mtime;
	int rc;

	memset(&r, 0, sizeof(r));
	r.h = h;
	r.method = "PUT";
	r.upload = true;
	r.src = src;
	r.arg = arg;
	r.len = len;
	r.path = path;
	r.url = xfer_url_join(h->root, path, 0);
	if (!r.url) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	/* nginx stores a PUT's Date as the file's mtime (checked). */
	if (mtime > 0 && gmtime_r(&t, &tm) &&
	    strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S GMT",
	             &tm) > 0) {
		r.headers = curl_slist_append(NULL, date);
		if (!r.headers) {
			rc = -ENOMEM;
			goto out;
		}
	}
	rc = run(&r);
out:
	curl_slist_free_all(r.headers);
	free((char *)r.url);
	return rc;
}

static int hw_mkdir(void *state, const char *path)
{
	/* nginx: 405 for an existing name, 409 for a missing parent. */
	return simple(state, "MKCOL", path, true, NULL, 405);
}

static int hw_rmdir(void *state, const char *path)
{
	/* write.c checked that it is empty; a collection DELETE needs
	 * Depth: infinity (RFC 4918 9.6.1). */
	return simple(state, "DELETE", path, true, "Depth: infinity", 0);
}

static int hw_unlink(void *state, const char *path)
{
	return simple(state, "DELETE", path, false, NULL, 0);
}

static int hw_move(void *state, const char *from, const char *to, int isdir,
                   int overwrite)
{
	struct hw *h = state;
	struct curl_slist *hl = NULL;
	char *dest = xfer_url_join(h->root, to, isdir), *hdr = NULL;
	struct hw_req r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.h = h;
	r.method = "MOVE";
	r.status_eexist = 412;   /* Overwrite: F onto an existing name */
	r.url = xfer_url_join(h->root, from, isdir);
	if (!dest || !r.url) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (asprintf(&hdr, "Destination: %s", dest) < 0) {
		hdr = NULL;
		rc = -ENOMEM;
		goto out;
	}
	hl = curl_slist_append(NULL, hdr);
	if (hl)
		r.headers = hl;
	if (hl)
		hl = curl_slist_append(hl, overwrite ? "Overwrite: T"
		                                     : "Overwrite: F");
	if (!hl) {
		rc = -ENOMEM;
		goto out;
	}
	rc = run(&r);
out:
	curl_slist_free_all(r.headers);
	free((char *)r.url);
	free(hdr);
	free(dest);
	return rc;
}

static int hw_set_mtime(void *state, const char *path, int64_t mtime)
{
	(void)state;
	(void)path;
	(void)mtime;
	/* DAV:getlastmodified is protected (RFC 4918 15.7) and nginx has no
	 * PROPPATCH at all: only a PUT's Date header sets it. */
	return -ENOTSUP;
}

static void hw_close(void *state)
{
	struct hw *h = state;
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->nidle; i++)
		curl_easy_cleanup(h->idle[i]);
	pthread_mutex_destroy(&h->lock);
	free(h->ca_file);
	free(h->root);
	free(h);
}

static int hw_open(void **state, void *rstate, const char *url,
                   const struct xfer_opts *opts)
{
	static const struct xfer_opts none;
	struct hw *h;
	const char *ca;
	int rc = 0;

	*state = NULL;
	if (!opts)
		opts = &none;
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&h->lock, NULL);
	h->connect_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
	                                             : 5000;
	h->stall_s = opts->stall_timeout_s > 0 ? opts->stall_timeout_s : 15;
	h->retries = opts->retries < 0 ? 0 : opts->retries == 0 ? 2
	                                   : opts->retries;
	h->verbose = opts->verbose != 0;
	h->rstate = rstate;
	h->root = strdup(url);
	ca = getenv("DMSFS_CA_FILE");
	if (ca && *ca)
		h->ca_file = strdup(ca);
	if (!h->root || (ca && *ca && !h->ca_file)) {
		rc = -ENOMEM;
		hw_close(h);
		goto out;
	}
	*state = h;
out:
	return rc;
}

const struct xfer_write_ops xfer_http_write_ops = {
	.open = hw_open,
	.close = hw_close,
	.upload = hw_upload,
	.mkdir = hw_mkdir,
	.rmdir = hw_rmdir,
	.unlink = hw_unlink,
	.move = hw_move,
	.set_mtime = hw_set_mtime,
};
