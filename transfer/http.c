/*
 * HTTP(S)/WebDAV backend: GET with Range for data, PROPFIND for metadata.
 *
 * Connections: one CURL easy handle per request in flight, taken from a
 * free list (grown on demand, at most HTTP_IDLE_MAX kept idle).  A handle
 * keeps its connections alive between requests, so a thread pool hitting
 * one origin reuses TCP/TLS connections; a CURLSH shares the DNS cache and
 * TLS sessions between handles.  libcurl connections cannot be used by two
 * threads at once, which is why they are not shared.
 *
 * Redirects are NOT followed: a 3xx is logged with its Location and is an
 * -EIO (a wrong answer, so xfer.c tries the next source).  Following them
 * would silently move reads to another server whose hrefs, ETags and
 * sizes we never checked; configure the final URL as the source instead.
 *
 * Proxies (xfer_opts.proxy), CernVM-FS style: "a|b;c|d;DIRECT".  '|'
 * separates proxies used round-robin within a group, ';' separates groups
 * tried in order, DIRECT means no proxy.  A proxy that fails (curl errors 5,
 * 7, 28, 97 through it, a 5xx CONNECT reply, or a 5xx that carries
 * X-Squid-Error, i.e. made by the proxy itself) is cooled down for 30 s and
 * the request goes through the next one before the attempt counts as a
 * failure of the source.  Environment proxy variables are ignored.
 *
 * Deadlines: besides the stall limit (LOW_SPEED), each request has an
 * overall deadline from its start, retries and proxies included
 * (xfer_deadline_ms): a GET of N bytes must end by then (CURLOPT_TIMEOUT_MS
 * of the time left on each try); a PROPFIND, whose size is unknown, must
 * keep the pace (a progress callback) and end within the deadline of a
 * max_listing reply.  Past it the request is not retried: -EHOSTDOWN, so
 * xfer.c asks the next source.
 *
 * HTTPS: peer and host verification stay on.  DMSFS_CA_FILE, if set when
 * the source is opened, names a CA bundle to use instead of the system's.
 */
#include "transfer/http_i.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"

#define HTTP_PROXY_COOL_MS   30000
#define HTTP_ERRBODY_MAX     65536      /* error page bytes read, then abort */
#define HTTP_UPLOAD_BUF      (256 * 1024)
#define HTTP_HEADER_MAX      256        /* Content-Range, ETag we look at */
#define HTTP_BACKOFF_MS      100        /* first retry delay; x4 each time */
#define HTTP_BACKOFF_MAX_MS  2000
#define HTTP_UA              "dmsfs/0.1"

static const char propfind_body[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	"<D:propfind xmlns:D=\"DAV:\"><D:prop>"
	"<D:resourcetype/><D:getcontentlength/><D:getlastmodified/>"
	"<D:getetag/>"
	"</D:prop></D:propfind>\n";

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- share, pool -------------------------------------------------------- */

static void share_lock(CURL *c, curl_lock_data d, curl_lock_access a,
                       void *u)
{
	struct xfer_http *h = u;

	if ((unsigned)d < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&h->share_lock[d]);
}

static void share_unlock(CURL *c, curl_lock_data d, void *u)
{
	struct xfer_http *h = u;

	if ((unsigned)d < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&h->share_lock[d]);
}

static CURL *pool_get(struct xfer_http *h)
{
	CURL *c = NULL;

	pthread_mutex_lock(&h->pool_lock);
	if (h->nidle)
		c = h->idle[--h->nidle];
	pthread_mutex_unlock(&h->pool_lock);
	if (!c)
		c = curl_easy_init();
	return c;
}

static void pool_put(struct xfer_http *h, CURL *c)
{
	pthread_mutex_lock(&h->pool_lock);
	if (h->nidle < HTTP_IDLE_MAX) {
		h->idle[h->nidle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&h->pool_lock);
	if (c)
		curl_easy_cleanup(c);
}

/* ---- proxies ------------------------------------------------------------ */

static int proxies_parse(struct xfer_http *h, const char *spec)
{
	const char *p = spec, *end;
	size_t n;
	int rc = 0;

	h->nproxy = 0;
	h->ngroup = 0;
	if (!spec || !*spec) {
		h->proxy[0].url = NULL;   /* DIRECT */
		h->nproxy = h->ngroup = 1;
		goto out;
	}
	while (*p) {
		end = p + strcspn(p, "|;");
		while (p < end && *p == ' ')
			p++;
		n = (size_t)(end - p);
		while (n && p[n - 1] == ' ')
			n--;
		if (n) {
			struct xfer_http_proxy *px;

			if (h->nproxy == HTTP_MAX_PROXIES) {
				dms_log(LOG_ERR, "transfer: more than %d proxies",
				        HTTP_MAX_PROXIES);
				rc = -EINVAL;
				goto out;
			}
			px = &h->proxy[h->nproxy];
			px->group = h->ngroup;
			px->down_until_ms = 0;
			px->url = NULL;
			if (!(n == 6 && strncasecmp(p, "DIRECT", 6) == 0)) {
				px->url = strndup(p, n);
				if (!px->url) {
					rc = -ENOMEM;
					goto out;
				}
			}
			h->nproxy++;
		}
		if (*end == ';' && h->nproxy && h->proxy[h->nproxy - 1].group ==
		    h->ngroup)
			h->ngroup++;
		p = *end ? end + 1 : end;
	}
	if (h->nproxy == 0) {
		dms_log(LOG_ERR, "transfer: empty proxy list \"%s\"", spec);
		rc = -EINVAL;
		goto out;
	}
	h->ngroup = h->proxy[h->nproxy - 1].group + 1;
out:
	return rc;
}

/* Order of proxies for one attempt: usable ones group by group, each
 * group rotated by a shared counter (load balancing); then the cooled-down
 * ones, soonest back first, tried anyway rather than failing at once. */
static size_t proxy_order(struct xfer_http *h, size_t *order)
{
	size_t n = 0, g, i, j, cnt, first, start;
	int64_t now = now_ms();
	unsigned rr;

	pthread_mutex_lock(&h->proxy_lock);
	rr = h->rr++;
	for (g = 0; g < h->ngroup; g++) {
		first = n;
		for (i = 0; i < h->nproxy; i++)
			if (h->proxy[i].group == g &&
			    h->proxy[i].down_until_ms <= now)
				order[n++] = i;
		cnt = n - first;
		if (cnt > 1) {
			size_t tmp[HTTP_MAX_PROXIES];

			start = rr % cnt;
			for (j = 0; j < cnt; j++)
				tmp[j] = order[first + (start + j) % cnt];
			memcpy(order + first, tmp, cnt * sizeof(tmp[0]));
		}
	}
	first = n;
	for (i = 0; i < h->nproxy; i++)
		if (h->proxy[i].down_until_ms > now)
			order[n++] = i;
	for (i = first + 1; i < n; i++) {
		size_t k = order[i];

		for (j = i; j > first && h->proxy[order[j - 1]].down_until_ms >
		     h->proxy[k].down_until_ms; j--)
			order[j] = order[j - 1];
		order[j] = k;
	}
	pthread_mutex_unlock(&h->proxy_lock);
	return n;
}

static void proxy_mark(struct xfer_http *h, const struct xfer_http_proxy *px,
                       bool ok, const char *why)
{
	struct xfer_http_proxy *p = (struct xfer_http_proxy *)px;
	int64_t was;

	pthread_mutex_lock(&h->proxy_lock);
	was = p->down_until_ms;
	p->down_until_ms = ok ? 0 : now_ms() + HTTP_PROXY_COOL_MS;
	pthread_mutex_unlock(&h->proxy_lock);
	if (!ok)
		dms_log(was ? LOG_INFO : LOG_WARNING, "transfer: proxy %s "
		        "taken out for %d s (%s)", p->url,
		        HTTP_PROXY_COOL_MS / 1000, why);
	else if (was)
		dms_log(LOG_NOTICE, "transfer: proxy %s is back", p->url);
}

/* ---- reply checks ------------------------------------------------------- */

/* Copies header name of the last response into out ("" if absent). */
static void get_header(CURL *c, const char *name, char *out, size_t cap)
{
	struct curl_header *hd;
	size_t n;

	out[0] = '\0';
	if (curl_easy_header(c, name, 0, CURLH_HEADER, -1, &hd) != CURLHE_OK)
		return;
	n = strnlen(hd->value, cap);
	if (n >= cap)
		return;   /* longer than anything valid: treat as absent */
	memcpy(out, hd->value, n + 1);
}

/* Digits at s into *v; returns the end, or NULL if none or overflow. */
static const char *u64_parse(const char *s, uint64_t *v)
{
	const char *p = s;
	uint64_t x = 0;

	while (p && *p >= '0' && *p <= '9') {
		if (x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			p = NULL;
		else
			x = x * 10 + (uint64_t)(*p++ - '0');
	}
	if (p == s)
		p = NULL;
	if (p)
		*v = x;
	return p;
}

static const char *etag_core(const char *e)
{
	return strncmp(e, "W/", 2) == 0 ? e + 2 : e;
}

/* ETag of the reply against the one the caller knows: -ESTALE if both
 * exist and differ. */
static int check_etag(struct xfer_http_req *r)
{
	char etag[HTTP_HEADER_MAX];
	int rc = 0;

	if (!r->expect->etag[0])
		goto out;
	get_header(r->c, "ETag", etag, sizeof(etag));
	if (etag[0] && strcmp(etag_core(etag), etag_core(r->expect->etag))) {
		dms_log(LOG_WARNING, "transfer: GET %s: ETag %s, expected %s: "
		        "file changed at the source", r->url, etag,
		        r->expect->etag);
		rc = -ESTALE;
	}
out:
	return rc;
}

/* Every validator of the reply against the version the caller's blocks are
 * stored under (size, mtime, ETag from the listing): -ESTALE if the reply
 * is of another version.  Last-Modified, like the listing's mtime, has
 * one-second resolution, so it is compared in whole seconds; a replacement
 * within the same second and of the same size is not seen here (README).
 * A Last-Modified that does not parse is no validator, as in listings. */
static int check_validators(struct xfer_http_req *r)
{
	char lm[HTTP_HEADER_MAX];
	int64_t t;
	int rc = check_etag(r);

	if (rc < 0 || r->expect->mtime == 0)
		goto out;
	get_header(r->c, "Last-Modified", lm, sizeof(lm));
	if (!lm[0] || xfer_parse_http_date(lm, &t) < 0)
		goto out;
	if (t != r->expect->mtime) {
		dms_log(LOG_WARNING, "transfer: GET %s%s%s: Last-Modified %s "
		        "(%lld), expected %lld: file changed at the source",
		        r->url, r->via && r->via->url ? " via " : "",
		        r->via && r->via->url ? r->via->url : "", lm,
		        (long long)t, (long long)r->expect->mtime);
		rc = -ESTALE;
	}
out:
	return rc;
}

int xfer_content_range_parse(const char *s, uint64_t *first, uint64_t *last,
                             uint64_t *total, bool *have_total)
{
	int rc = -EINVAL;

	*have_total = false;
	if (strncasecmp(s, "bytes ", 6) != 0)
		goto out;
	s += 6;
	while (*s == ' ')
		s++;
	if (!(s = u64_parse(s, first)) || *s++ != '-' ||
	    !(s = u64_parse(s, last)) || *s++ != '/' || *first > *last)
		goto out;
	if (strcmp(s, "*") != 0) {
		if (!(s = u64_parse(s, total)) || *s || *last >= *total)
			goto out;
		*have_total = true;
	}
	rc = 0;
out:
	return rc;
}

/* Decides, before the first body byte is taken, whether the body of a GET
 * is the data asked for.  1: not a data reply (judged by its status after
 * the transfer); 0: take it; -errno: abort the transfer with that. */
static int get_check(struct xfer_http_req *r)
{
	char hv[HTTP_HEADER_MAX];
	uint64_t a, b, total;
	bool have_total;
	const char *s;
	int rc = 1;

	if (r->status == 206) {
		get_header(r->c, "Content-Range", hv, sizeof(hv));
		if (xfer_content_range_parse(hv, &a, &b, &total, &have_total))
			goto bad_range;
		if (a != r->offset || b != r->offset + r->len - 1) {
			dms_log(LOG_ERR, "transfer: GET %s: asked bytes %s, got "
			        "Content-Range \"%s\": %s", r->url, r->range, hv,
			        strerror(EIO));
			rc = -EIO;
			goto out;
		}
		/* "*" (length unknown) cannot be checked; the validators
		 * still are. */
		if (have_total && total != r->expect->size) {
			dms_log(LOG_WARNING, "transfer: GET %s: size is now %"
			        PRIu64 ", expected %" PRIu64 ": file changed at "
			        "the source", r->url, total, r->expect->size);
			rc = -ESTALE;
			goto out;
		}
		rc = check_validators(r);
		goto out;
	}
	if (r->status == 200) {
		/* A server without Range support sends the whole file.  That
		 * is the right answer only when the whole (small) file was
		 * asked for; anything else is aborted here, before a large
		 * body is downloaded, and never taken as the block. */
		if (r->offset != 0 || r->len != r->expect->size) {
			dms_log(LOG_ERR, "transfer: GET %s: server ignored Range "
			        "(HTTP 200 to bytes %s): %s", r->url, r->range,
			        strerror(EIO));
			rc = -EIO;
			goto out;
		}
		get_header(r->c, "Content-Length", hv, sizeof(hv));
		if (hv[0] && (!(s = u64_parse(hv, &total)) || *s ||
		              total != r->expect->size)) {
			dms_log(LOG_WARNING, "transfer: GET %s: Content-Length "
			        "%s, expected %" PRIu64 ": file changed at the "
			        "source", r->url, hv, r->expect->size);
			rc = -ESTALE;
			goto out;
		}
		rc = check_validators(r);
		goto out;
	}
	goto out;
bad_range:
	dms_log(LOG_ERR, "transfer: GET %s: bad or missing Content-Range "
	        "\"%s\" for bytes %s: %s", r->url, hv, r->range, strerror(EIO));
	rc = -EIO;
out:
	return rc;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer_http_req *r = arg;
	size_t n = size * nmemb, taken = 0;   /* < n aborts the transfer */
	int rc;

	if (!r->checked) {
		r->checked = true;
		curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE, &r->status);
		if (r->kind == XFER_HTTP_GET) {
			rc = get_check(r);
			if (rc < 0) {
				r->err = rc;
				goto out;
			}
			r->is_data = rc == 0;
		} else {
			/* A write's reply is a short status page at most. */
			r->is_data = r->kind == XFER_HTTP_PROPFIND &&
			             r->status == 207;
		}
	}
	if (!r->is_data) {
		/* Reading a short error page keeps the connection; a long
		 * one is not worth the bytes. */
		r->discard += n;
		if (r->discard <= HTTP_ERRBODY_MAX)
			taken = n;
		goto out;
	}
	if (r->kind == XFER_HTTP_PROPFIND) {
		rc = xfer_propfind_feed(r->pf, data, n);
		if (rc < 0)
			r->err = rc;
		else
			taken = n;
		r->got += taken;   /* for the pace check and logs only */
		goto out;
	}
	if (n > r->len - r->got) {
		dms_log(LOG_ERR, "transfer: GET %s: body longer than the %zu "
		        "bytes asked (bytes %s): %s", r->url, r->len, r->range,
		        strerror(EIO));
		r->err = -EIO;
		goto out;
	}
	memcpy(r->buf + r->got, data, n);
	r->got += n;
	taken = n;
out:
	return taken;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer_http_req *r = arg;
	size_t cap = size * nitems;
	uint64_t left = r->ulen - r->upos;
	ssize_t got;

	if (left == 0)
		return 0;
	if (cap > left)
		cap = (size_t)left;
	got = r->src(r->arg, buf, cap, r->upos);
	if (got < 0 || got == 0 || (size_t)got > cap) {
		r->err = got < 0 ? (int)got : -EIO;
		/* ECANCELED: the caller called it off and says why. */
		if (got != -ECANCELED)
			dms_log(LOG_ERR, "transfer: PUT %s: reading the upload "
			        "at %" PRIu64 " of %" PRIu64 ": %s", r->url,
			        r->upos, r->ulen, got < 0 ? strerror((int)-got)
			        : "source ended early");
		return CURL_READFUNC_ABORT;
	}
	r->upos += (uint64_t)got;
	return (size_t)got;
}

static int on_seek(void *arg, curl_off_t off, int origin)
{
	struct xfer_http_req *r = arg;

	if (origin != SEEK_SET || off < 0 || (uint64_t)off > r->ulen)
		return CURL_SEEKFUNC_FAIL;
	r->upos = (uint64_t)off;
	return CURL_SEEKFUNC_OK;
}

/* ---- one try, one attempt ----------------------------------------------- */

/* Whether r has passed its deadline, or (paced) fell behind min_rate with
 * received bytes so far.  Marks it late. */
static bool req_late(struct xfer_http_req *r, uint64_t received)
{
	int64_t now = now_ms();

	if (now >= r->deadline_ms ||
	    (r->paced && now - r->start_ms >
	                 xfer_opts_deadline_ms(r->h->opts, received)))
		r->late = true;
	return r->late;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer_http_req *r = arg;

	/* Non-zero aborts the transfer (CURLE_ABORTED_BY_CALLBACK). */
	return req_late(r, dlnow > 0 ? (uint64_t)dlnow : 0);
}

static void log_late(struct xfer_http_req *r, uint64_t received)
{
	const struct xfer_opts *o = r->h->opts;

	dms_log(LOG_ERR, "transfer: %s %s%s%s: %s after %.1f s (deadline "
	        "%.1f s: connect_timeout + %s at min_rate %zu B/s), %llu "
	        "bytes received -> %s", r->what, r->url,
	        r->kind == XFER_HTTP_GET ? " bytes " : "",
	        r->kind == XFER_HTTP_GET ? r->range : "",
	        r->paced ? "slower than min_rate" : "deadline passed",
	        (double)(now_ms() - r->start_ms) / 1000.0,
	        (double)(r->deadline_ms - r->start_ms) / 1000.0,
	        r->paced ? "max_listing" : r->kind == XFER_HTTP_GET
	        ? "the bytes asked" : r->upload ? "the bytes sent"
	        : "stall_timeout",
	        o->min_rate ? o->min_rate : (size_t)64 << 10,
	        (unsigned long long)received, strerror(EHOSTDOWN));
}

#define SET(opt, val) \
	do { if (curl_easy_setopt(c, opt, val) != CURLE_OK) bad = true; } \
	while (0)

static int req_setup(struct xfer_http_req *r)
{
	struct xfer_http *h = r->h;
	CURL *c = r->c;
	bool bad = false;
	int rc = 0;

	curl_easy_reset(c);
	r->errbuf[0] = '\0';
	SET(CURLOPT_URL, r->url);
	SET(CURLOPT_ERRORBUFFER, r->errbuf);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_SHARE, h->share);
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	SET(CURLOPT_USERAGENT, HTTP_UA);
	SET(CURLOPT_CONNECTTIMEOUT_MS, h->connect_ms);
	SET(CURLOPT_LOW_SPEED_LIMIT, 1024L);
	SET(CURLOPT_LOW_SPEED_TIME, h->stall_s);
	/* Never 0 (no limit): a try started just before the deadline. */
	SET(CURLOPT_TIMEOUT_MS, r->deadline_ms - now_ms() > 1
	                        ? (long)(r->deadline_ms - now_ms()) : 1L);
	if (r->paced) {
		SET(CURLOPT_XFERINFOFUNCTION, on_progress);
		SET(CURLOPT_XFERINFODATA, r);
		SET(CURLOPT_NOPROGRESS, 0L);
	}
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, r);
	/* "" disables proxies, including any from the environment. */
	SET(CURLOPT_PROXY, r->via && r->via->url ? r->via->url : "");
	/* Empty NOPROXY: loopback origins go through the proxy too. */
	SET(CURLOPT_NOPROXY, "");
	if (h->ca_file)
		SET(CURLOPT_CAINFO, h->ca_file);
	if (r->kind == XFER_HTTP_GET) {
		SET(CURLOPT_RANGE, r->range);
	} else if (r->kind == XFER_HTTP_WRITE) {
		SET(CURLOPT_HTTPHEADER, r->headers);
		if (r->upload) {
			SET(CURLOPT_UPLOAD, 1L);
			SET(CURLOPT_READFUNCTION, on_read);
			SET(CURLOPT_READDATA, r);
			SET(CURLOPT_SEEKFUNCTION, on_seek);
			SET(CURLOPT_SEEKDATA, r);
			SET(CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->ulen);
			SET(CURLOPT_UPLOAD_BUFFERSIZE, (long)HTTP_UPLOAD_BUF);
		} else {
			SET(CURLOPT_CUSTOMREQUEST, r->what);
		}
	} else {
		SET(CURLOPT_CUSTOMREQUEST, "PROPFIND");
		SET(CURLOPT_HTTPHEADER, r->headers);
		SET(CURLOPT_POSTFIELDS, propfind_body);
		SET(CURLOPT_POSTFIELDSIZE, (long)(sizeof(propfind_body) - 1));
		/* Listings compress well; the size cap applies to the
		 * decoded bytes, so a compression bomb is still capped. */
		SET(CURLOPT_ACCEPT_ENCODING, "");
	}
	if (bad) {
		dms_log(LOG_ERR, "transfer: %s %s: curl_easy_setopt failed",
		        r->what, r->url);
		rc = -ENOMEM;
	}
	return rc;
}

#undef SET

static int try_reset(struct xfer_http_req *r)
{
	int rc = 0;

	r->status = 0;
	r->err = 0;
	r->checked = false;
	r->is_data = false;
	r->discard = 0;
	r->got = 0;
	r->upos = 0;
	if (r->kind == XFER_HTTP_PROPFIND) {
		xfer_propfind_free(r->pf);
		r->pf = NULL;
		rc = xfer_propfind_new(&r->pf, r->url, r->depth,
		                       r->h->max_listing);
	}
	return rc;
}

/* Whether a try failed because of its proxy rather than the origin. */
static bool proxy_at_fault(struct xfer_http_req *r, CURLcode cc, char *why,
                           size_t cap)
{
	long cstatus = 0;
	char squid[HTTP_HEADER_MAX];
	bool fault = false;

	if (!r->via || !r->via->url)
		goto out;   /* DIRECT: any failure is the origin's */
	/* A request out of time is slow end to end; blaming the proxy would
	 * take it out and try the next one with no time left. */
	if (req_late(r, r->got))
		goto out;
	if (cc == CURLE_COULDNT_RESOLVE_PROXY || cc == CURLE_COULDNT_CONNECT ||
	    cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_PROXY) {
		snprintf(why, cap, "curl error %d: %s%s%s", (int)cc,
		         curl_easy_strerror(cc), r->errbuf[0] ? ": " : "",
		         r->errbuf);
		fault = true;
		goto out;
	}
	curl_easy_getinfo(r->c, CURLINFO_HTTP_CONNECTCODE, &cstatus);
	if (cstatus >= 500) {
		snprintf(why, cap, "CONNECT answered %ld", cstatus);
		fault = true;
		goto out;
	}
	/* An origin's own 5xx passes through a proxy unchanged; only one
	 * the proxy made itself (squid marks those) is the proxy's fault. */
	if (r->status >= 500 && !r->err) {
		get_header(r->c, "X-Squid-Error", squid, sizeof(squid));
		if (squid[0]) {
			snprintf(why, cap, "HTTP %ld, X-Squid-Error: %s",
			         r->status, squid);
			fault = true;
		}
	}
out:
	return fault;
}

/* One attempt: through the proxies in turn until one is not at fault. */
static CURLcode attempt(struct xfer_http_req *r, int *rc)
{
	struct xfer_http *h = r->h;
	size_t order[HTTP_MAX_PROXIES], n, k;
	CURLcode cc = CURLE_COULDNT_CONNECT;
	char why[CURL_ERROR_SIZE + 128];

	/* Writes go DIRECT (http_write.c says why). */
	n = r->kind == XFER_HTTP_WRITE ? 1 : proxy_order(h, order);
	for (k = 0; k < n; k++) {
		r->via = r->kind == XFER_HTTP_WRITE ? NULL
		                                    : &h->proxy[order[k]];
		*rc = try_reset(r);
		if (*rc == 0)
			*rc = req_setup(r);
		if (*rc < 0)
			break;
		if (h->verbose)
			dms_log(LOG_DEBUG, "transfer: %s %s%s%s%s%s", r->what,
			        r->url, r->kind == XFER_HTTP_GET ? " bytes " : "",
			        r->kind == XFER_HTTP_GET ? r->range : "",
			        r->via && r->via->url ? " via " : "",
			        r->via && r->via->url ? r->via->url : "");
		cc = curl_easy_perform(r->c);
		if (cc != CURLE_COULDNT_CONNECT &&
		    cc != CURLE_COULDNT_RESOLVE_HOST)
			r->sent = true;
		if (!r->status)
			curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE,
			                  &r->status);
		if (!proxy_at_fault(r, cc, why, sizeof(why))) {
			if (r->via && r->via->url)
				proxy_mark(h, r->via, true, NULL);
			break;
		}
		proxy_mark(h, r->via, false, why);
	}
	return cc;
}

static bool transient_curl(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_GOT_NOTHING:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_PROXY:
	case CURLE_BAD_CONTENT_ENCODING:
		return true;
	default:
		return false;
	}
}

static void log_fail(int prio, struct xfer_http_req *r, CURLcode cc, int rc,
                     const char *note)
{
	char curl[CURL_ERROR_SIZE + 128] = "";

	if (cc != CURLE_OK)
		snprintf(curl, sizeof(curl), ", curl error %d: %s%s%s%s",
		         (int)cc, curl_easy_strerror(cc),
		         r->errbuf[0] ? " (" : "", r->errbuf,
		         r->errbuf[0] ? ")" : "");
	dms_log(prio, "transfer: %s %s%s%s%s%s: HTTP %ld%s -> %s%s", r->what,
	        r->url, r->kind == XFER_HTTP_GET ? " bytes " : "",
	        r->kind == XFER_HTTP_GET ? r->range : "",
	        r->via && r->via->url ? " via " : "",
	        r->via && r->via->url ? r->via->url : "", r->status, curl,
	        strerror(-rc), note);
}

/* The statuses a write answer means otherwise than a read's: true when
 * *rc holds the verdict (logged). */
static bool write_status(struct xfer_http_req *r, CURLcode cc, int *rc)
{
	bool done = true;

	*rc = 0;
	if (r->status >= 200 && r->status <= 299)
		goto out;
	if (r->status_eexist && r->status == r->status_eexist) {
		*rc = -EEXIST;
		log_fail(LOG_INFO, r, cc, *rc, "");
		goto out;
	}
	switch (r->status) {
	case 409:   /* a missing parent */
		*rc = -ENOENT;
		log_fail(LOG_INFO, r, cc, *rc, "");
		break;
	case 423:
		*rc = -EACCES;
		log_fail(LOG_WARNING, r, cc, *rc, "");
		break;
	case 413:
	case 507:
		*rc = -ENOSPC;
		log_fail(LOG_WARNING, r, cc, *rc, " (origin full or over "
		         "quota)");
		break;
	case 416:
		*rc = -EIO;
		log_fail(LOG_ERR, r, cc, *rc, " (unexpected status)");
		break;
	default:
		done = false;
		break;
	}
out:
	return done;
}

/* The verdict on a finished try.  *transient: worth another attempt. */
static int judge(struct xfer_http_req *r, CURLcode cc, bool *transient,
                 bool *short_body)
{
	char loc[HTTP_HEADER_MAX];
	int rc = 0;

	*transient = false;
	*short_body = false;
	if (cc != CURLE_OK && cc != CURLE_OUT_OF_MEMORY &&
	    req_late(r, r->got)) {
		rc = -EHOSTDOWN;   /* the caller logs it, once */
		goto out;
	}
	if (r->err) {
		rc = r->err;   /* decided and logged by a callback */
		goto out;
	}
	/* An error page aborted for its size still has a status to judge. */
	if (cc != CURLE_OK && !(cc == CURLE_WRITE_ERROR && r->checked &&
	                        !r->is_data)) {
		if (cc == CURLE_OUT_OF_MEMORY) {
			rc = -ENOMEM;
		} else if (transient_curl(cc)) {
			*transient = true;
			/* A read's body cut short is a wrong answer; a
			 * write's reply is only its status. */
			*short_body = cc == CURLE_PARTIAL_FILE &&
			              r->kind != XFER_HTTP_WRITE;
			if (*short_body)
				xfer_note_kind(XFER_ERR_SHORT_BODY);
			rc = *short_body ? -EIO : -EHOSTDOWN;
		} else {
			rc = -EIO;
		}
		if (!*transient)
			log_fail(LOG_ERR, r, cc, rc, "");
		goto out;
	}
	if (r->kind == XFER_HTTP_GET && (r->status == 206 || r->status == 200)) {
		if (!r->checked) {   /* empty body: nothing checked yet */
			r->checked = true;
			rc = get_check(r);
			if (rc < 0)
				goto out;
		}
		if (r->got != r->len) {
			*transient = true;
			*short_body = true;
			rc = -EIO;
			xfer_note_kind(XFER_ERR_SHORT_BODY);
			dms_log(LOG_WARNING, "transfer: GET %s bytes %s: short "
			        "body, %zu of %zu bytes", r->url, r->range,
			        r->got, r->len);
		}
		goto out;
	}
	if (r->kind == XFER_HTTP_PROPFIND && r->status == 207) {
		rc = xfer_propfind_finish(r->pf, &r->res);
		goto out;
	}
	if (r->kind == XFER_HTTP_WRITE && write_status(r, cc, &rc))
		goto out;
	switch (r->status) {
	case 404:
	case 410:
		rc = -ENOENT;
		log_fail(LOG_INFO, r, cc, rc, "");
		break;
	case 401:
	case 403:
	case 407:
		rc = -EACCES;
		log_fail(LOG_WARNING, r, cc, rc, "");
		break;
	case 416:
		rc = -ESTALE;
		log_fail(LOG_WARNING, r, cc, rc, " (file shrank?)");
		break;
	case 408:
	case 429:
		*transient = true;
		rc = -EHOSTDOWN;
		break;
	case 301: case 302: case 303: case 307: case 308:
		get_header(r->c, "Location", loc, sizeof(loc));
		rc = -EIO;
		dms_log(LOG_ERR, "transfer: %s %s: HTTP %ld redirect to \"%s\" "
		        "not followed (configure the final URL as the source)"
		        " -> %s", r->what, r->url, r->status, loc,
		        strerror(-rc));
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

static const char *status_text(long status)
{
	static const struct {
		long status;
		const char *text;
	} texts[] = {
		{ 200, " OK" }, { 400, " Bad Request" }, { 401, " Unauthorized" },
		{ 403, " Forbidden" }, { 404, " Not Found" },
		{ 405, " Method Not Allowed" },
		{ 407, " Proxy Authentication Required" }, { 410, " Gone" },
		{ 500, " Internal Server Error" }, { 501, " Not Implemented" },
		{ 502, " Bad Gateway" }, { 503, " Service Unavailable" },
		{ 504, " Gateway Timeout" },
	};
	const char *t = "";
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (texts[i].status == status)
			t = texts[i].text;
	return t;
}

/* Says for a person why the request failed (xfer_note, probe only): what
 * the server answered, or what kept it from answering, and what to do.
 * Failures decided while parsing a reply were noted where they were
 * found. */
static void http_note(struct xfer_http_req *r, CURLcode cc)
{
	char hp[300], via[300] = "", loc[HTTP_HEADER_MAX];
	curl_off_t total = 0, conn = 0;
	long oserr = 0, secs;
	const char *e = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);

	if (r->err || (cc == CURLE_OK && r->status == 207))
		goto out;
	xfer_url_hostport(r->url, hp, sizeof(hp));
	if (r->via && r->via->url)
		snprintf(via, sizeof(via), " (through proxy %s)", r->via->url);
	curl_easy_getinfo(r->c, CURLINFO_OS_ERRNO, &oserr);
	curl_easy_getinfo(r->c, CURLINFO_TOTAL_TIME_T, &total);
	curl_easy_getinfo(r->c, CURLINFO_CONNECT_TIME_T, &conn);
	secs = (long)((total + 500000) / 1000000);
	if (cc == CURLE_WRITE_ERROR && r->checked && !r->is_data)
		cc = CURLE_OK;   /* an error page cut short: judge the status */
	if (cc == CURLE_ABORTED_BY_CALLBACK && r->late)
		cc = CURLE_OPERATION_TIMEDOUT;   /* a listing's pace check */
	switch (cc) {
	case CURLE_OK:
		break;
	case CURLE_COULDNT_RESOLVE_PROXY:
		xfer_note("cannot resolve proxy %s: %s", r->via && r->via->url
		          ? r->via->url : "?", e);
		xfer_note_kind(XFER_ERR_RESOLVE);
		goto out;
	case CURLE_COULDNT_RESOLVE_HOST:
		xfer_note("cannot resolve %.*s (check the host name in the URL)",
		          (int)strcspn(hp, ":"), hp);
		xfer_note_kind(XFER_ERR_RESOLVE);
		goto out;
	case CURLE_COULDNT_CONNECT:
		xfer_note_kind(oserr == ECONNREFUSED ? XFER_ERR_REFUSED
		               : XFER_ERR_UNREACHABLE);
		if (oserr == ECONNREFUSED)
			xfer_note("connection refused by %s%s (nothing listens "
			          "there?)", via[0] ? r->via->url : hp,
			          via[0] ? " (the proxy)" : "");
		else
			xfer_note("cannot connect to %s%s: %s", hp, via, e);
		goto out;
	case CURLE_OPERATION_TIMEDOUT:
		xfer_note_kind(XFER_ERR_TIMEOUT);
		if (conn == 0)
			xfer_note("no connection to %s%s within %ld s", hp, via,
			          secs);
		else
			xfer_note("no answer from %s%s after %ld s", hp, via,
			          secs);
		goto out;
	case CURLE_SSL_CONNECT_ERROR:
		xfer_note_kind(XFER_ERR_TLS);
		xfer_note("TLS handshake with %s failed: %s%s", hp, e,
		          strstr(e, "wrong version number")
		          ? " - is it plain http? (try http://)" : "");
		goto out;
	case CURLE_PEER_FAILED_VERIFICATION:
		xfer_note_kind(XFER_ERR_TLS);
		xfer_note("the TLS certificate of %s is not trusted: %s (a CA "
		          "bundle can be named in DMSFS_CA_FILE)", hp, e);
		goto out;
	case CURLE_GOT_NOTHING:
		xfer_note("%s%s closed the connection without an answer "
		          "(not an HTTP server? https to an http port?)", hp,
		          via);
		goto out;
	default:
		xfer_note("%s %s%s failed: %s", r->what, r->url, via, e);
		goto out;
	}
	if (r->status >= 400 && r->status <= 599)
		xfer_note_kind(r->status >= 500 ? XFER_ERR_HTTP_5XX
		               : XFER_ERR_HTTP_4XX);
	switch (r->status) {
	case 200:
	case 405:
	case 501:
		xfer_note("the server at %s does not speak WebDAV: %s got "
		          "%ld%s (serve the tree with WebDAV, e.g. nginx "
		          "dav_ext_methods PROPFIND, or give its WebDAV URL)",
		          hp, r->what, r->status, status_text(r->status));
		break;
	case 404:
	case 410:
		xfer_note("%s %s got %ld%s: no such path at the origin",
		          r->what, r->url, r->status, status_text(r->status));
		break;
	case 401:
	case 403:
	case 407:
		xfer_note("%s %s got %ld%s: access refused%s", r->what, r->url,
		          r->status, status_text(r->status),
		          r->status == 407 ? " by the proxy" : "");
		break;
	case 301: case 302: case 303: case 307: case 308:
		get_header(r->c, "Location", loc, sizeof(loc));
		xfer_note("%s %s got %ld, a redirect to \"%s\" (not followed: "
		          "give the final URL as the source)", r->what, r->url,
		          r->status, loc);
		break;
	default:
		xfer_note("the server at %s%s answered %s with %ld%s", hp, via,
		          r->what, r->status, status_text(r->status));
		break;
	}
out:
	return;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int http_stat(void *state, const char *path, struct xfer_attr *attr);

/* nginx answers a PUT into a missing folder (create_full_put_path off)
 * with a bare 500, which would be retried as a server fault; one PROPFIND
 * of the parent tells the two apart.  0 if the parent is a folder. */
static int parent_check(struct xfer_http_req *r)
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
	rc = http_stat(r->h, parent, &a);
	if (rc == 0 && !S_ISDIR(a.mode))
		rc = -ENOTDIR;
	if (rc == -ENOENT || rc == -ENOTDIR)
		log_fail(LOG_INFO, r, CURLE_OK, rc, " (parent folder)");
out:
	free(parent);
	return rc;
}

/* The overall time for r, all tries included. */
static long req_budget_ms(const struct xfer_http_req *r)
{
	const struct xfer_http *h = r->h;
	long ms;

	if (r->kind == XFER_HTTP_GET)
		ms = xfer_opts_deadline_ms(h->opts, r->len);
	else if (r->kind == XFER_HTTP_PROPFIND)
		ms = xfer_opts_deadline_ms(h->opts, h->max_listing);
	else if (r->upload)
		ms = xfer_opts_deadline_ms(h->opts, r->ulen);
	else   /* no body: the server's answer may take a stall timeout */
		ms = xfer_opts_deadline_ms(h->opts, 0) + h->stall_s * 1000;
	return ms;
}

int xfer_http_run(struct xfer_http_req *r)
{
	struct xfer_http *h = r->h;
	bool transient, short_body;
	long delay = HTTP_BACKOFF_MS;
	/* A probe asks once: it must say what is wrong, quickly. */
	int retries = xfer_probing() ? 0 : h->retries;
	CURLcode cc = CURLE_OK;
	int rc, i;

	r->start_ms = now_ms();
	r->deadline_ms = r->start_ms + req_budget_ms(r);
	/* First contact: a host that accepts and never answers is reported
	 * within this bound, not after every retry's stall timeout. */
	if (xfer_probing() &&
	    r->deadline_ms > r->start_ms + h->connect_ms + XFER_PROBE_GRACE_MS)
		r->deadline_ms = r->start_ms + h->connect_ms +
		                 XFER_PROBE_GRACE_MS;
	/* A probe has its own overall bound, and must be able to say "no
	 * answer after N s" rather than "too slow". */
	r->paced = r->kind == XFER_HTTP_PROPFIND && !xfer_probing();
	r->c = pool_get(h);
	if (!r->c) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0;; i++) {
		cc = attempt(r, &rc);
		if (rc < 0)
			break;   /* setup failed: nothing was sent */
		rc = judge(r, cc, &transient, &short_body);
		if (r->late) {
			log_late(r, r->got);
			rc = -EHOSTDOWN;
			break;
		}
		if (!transient)
			break;
		if (r->upload && i == 0 && r->status == 500) {
			int prc = parent_check(r);

			if (prc == -ENOENT || prc == -ENOTDIR) {
				rc = prc;
				break;
			}
		}
		if (now_ms() + delay >= r->deadline_ms) {
			/* No time left for another try. */
			r->late = true;
			log_fail(LOG_ERR, r, cc, -EHOSTDOWN, " (no time left "
			         "before the deadline to retry)");
			rc = -EHOSTDOWN;
			break;
		}
		if (i >= retries) {
			/* A short body is a wrong answer; the rest means
			 * nobody answered. */
			rc = short_body ? -EIO : -EHOSTDOWN;
			log_fail(LOG_ERR, r, cc, rc, i ? " (after retries)" : "");
			break;
		}
		log_fail(LOG_WARNING, r, cc, short_body ? -EIO : -EHOSTDOWN,
		         ", retrying");
		sleep_ms(delay);
		delay = delay * 4 > HTTP_BACKOFF_MAX_MS ? HTTP_BACKOFF_MAX_MS
		                                        : delay * 4;
	}
	if (rc < 0)
		http_note(r, cc);   /* the probe's words, and the last error */
	/* Nothing was changed: the write may move to the next source. */
	if (rc == -EHOSTDOWN && r->kind == XFER_HTTP_WRITE && !r->sent)
		rc = -ENOTCONN;
	pool_put(h, r->c);
	r->c = NULL;
out:
	return rc;
}

/* ---- backend ops -------------------------------------------------------- */

static void http_close(void *state)
{
	struct xfer_http *h = state;
	size_t i;

	if (!h)
		return;
	for (i = 0; i < h->nidle; i++)
		curl_easy_cleanup(h->idle[i]);
	/* After the handles: a share still in use cannot be cleaned up. */
	if (h->share)
		curl_share_cleanup(h->share);
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&h->share_lock[i]);
	pthread_mutex_destroy(&h->pool_lock);
	pthread_mutex_destroy(&h->proxy_lock);
	for (i = 0; i < h->nproxy; i++)
		free(h->proxy[i].url);
	free(h->ca_file);
	free(h->root);
	free(h);
}

static int http_open(void **state, const char *url,
                     const struct xfer_opts *opts)
{
	static const struct xfer_opts none;
	struct xfer_limits lim;
	struct xfer_http *h;
	const char *ca;
	size_t i;
	int rc = 0;

	*state = NULL;
	if (!opts)
		opts = &none;
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	/* Mutexes first, so http_close can always destroy them. */
	for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&h->share_lock[i], NULL);
	pthread_mutex_init(&h->pool_lock, NULL);
	pthread_mutex_init(&h->proxy_lock, NULL);
	xfer_opts_limits(opts, &lim);
	h->connect_ms = lim.connect_ms;
	h->stall_s = lim.stall_s;
	h->retries = lim.retries;
	h->max_listing = lim.max_listing;
	h->verbose = opts->verbose != 0;
	h->opts = opts;
	h->root = strdup(url);
	if (!h->root) {
		rc = -ENOMEM;
		goto fail;
	}
	ca = getenv("DMSFS_CA_FILE");
	if (ca && *ca) {
		h->ca_file = strdup(ca);
		if (!h->ca_file) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	rc = proxies_parse(h, opts->proxy);
	if (rc < 0)
		goto fail;
	h->share = curl_share_init();
	if (!h->share ||
	    curl_share_setopt(h->share, CURLSHOPT_LOCKFUNC, share_lock) ||
	    curl_share_setopt(h->share, CURLSHOPT_UNLOCKFUNC, share_unlock) ||
	    curl_share_setopt(h->share, CURLSHOPT_USERDATA, h) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS) ||
	    curl_share_setopt(h->share, CURLSHOPT_SHARE,
	                      CURL_LOCK_DATA_SSL_SESSION)) {
		dms_log(LOG_ERR, "transfer: %s: cannot set up a curl share",
		        url);
		rc = -ENOMEM;
		goto fail;
	}
	*state = h;
	goto out;
fail:
	http_close(h);
out:
	return rc;
}

/* PROPFIND of path at depth; on success r->res holds the result (the
 * caller frees r->res.children). */
static int propfind(struct xfer_http *h, const char *path, int depth,
                    struct xfer_http_req *r)
{
	struct curl_slist *hl;
	char *url;
	int rc;

	memset(r, 0, sizeof(*r));
	r->h = h;
	r->kind = XFER_HTTP_PROPFIND;
	r->what = "PROPFIND";
	r->depth = depth;
	/* A collection is asked for as ".../", as WebDAV clients do. */
	url = xfer_url_join(h->root, path, depth > 0);
	if (!url) {
		dms_log(LOG_ERR, "transfer: %s: path too long or no memory",
		        h->root);
		rc = -ENAMETOOLONG;
		goto out;
	}
	r->url = url;
	hl = curl_slist_append(NULL, depth ? "Depth: 1" : "Depth: 0");
	r->headers = hl;
	if (hl)
		hl = curl_slist_append(hl, "Content-Type: application/xml; "
		                       "charset=utf-8");
	if (hl)
		hl = curl_slist_append(hl, "Expect:");
	if (!hl) {
		rc = -ENOMEM;
		goto out_url;
	}
	rc = xfer_http_run(r);
out_url:
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	xfer_propfind_free(r->pf);
	r->pf = NULL;
	free(url);
	r->url = NULL;
out:
	return rc;
}

static int http_stat(void *state, const char *path, struct xfer_attr *attr)
{
	struct xfer_http_req r;
	int rc;

	rc = propfind(state, path, 0, &r);
	if (rc == 0)
		*attr = r.res.self;
	xfer_listing_free(&r.res.children);
	return rc;
}

static int http_list(void *state, const char *path, xfer_entry_fn fn,
                     void *arg)
{
	struct xfer_http_req r;
	int rc;

	rc = propfind(state, path, 1, &r);
	if (rc == 0)
		rc = xfer_listing_emit(&r.res.children, fn, arg);
	xfer_listing_free(&r.res.children);
	return rc;
}

static int http_read(void *state, const char *path,
                     const struct xfer_attr *expect, uint64_t offset,
                     size_t len, void *buf, size_t *done)
{
	struct xfer_http *h = state;
	struct xfer_http_req r;
	char *url = NULL;
	int rc = 0;

	*done = 0;
	if (len == 0)
		goto out;
	memset(&r, 0, sizeof(r));
	r.h = h;
	r.kind = XFER_HTTP_GET;
	r.what = "GET";
	r.expect = expect;
	r.offset = offset;
	r.len = len;
	r.buf = buf;
	snprintf(r.range, sizeof(r.range), "%" PRIu64 "-%" PRIu64, offset,
	         offset + len - 1);
	url = xfer_url_join(h->root, path, 0);
	if (!url) {
		dms_log(LOG_ERR, "transfer: %s: path too long or no memory",
		        h->root);
		rc = -ENAMETOOLONG;
		goto out;
	}
	r.url = url;
	rc = xfer_http_run(&r);
	/* The body is taken in order after its headers were checked: what
	 * the last try got before its deadline is the source's. */
	*done = rc == -EHOSTDOWN && r.late ? r.got : 0;
	free(url);
out:
	return rc;
}

const struct xfer_backend_ops xfer_http_ops = {
	.name = "http",
	.open = http_open,
	.close = http_close,
	.stat = http_stat,
	.list = http_list,
	.read = http_read,
	.write = &xfer_http_write_ops,
};
