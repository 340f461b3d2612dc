/*
 * WebDAV write primitives (xfer_write_ops): PUT, MKCOL, DELETE, MOVE.
 *
 * Writes go DIRECT, never through xfer_opts.proxy: a forward proxy (Squid)
 * caches nothing of a PUT or MOVE, may buffer a whole upload or time it out
 * on its own terms, and a failure through it would leave us unsure whether
 * the origin saw the request.  Reads keep using the proxies.
 *
 * The requests run on http.c's engine and state (http_i.h): the same pool
 * of easy handles (reset before every request), retries and back-off.
 * Each write has an overall deadline, tries included, like a read: an
 * upload of N bytes that of a GET of N bytes (connect_timeout plus N at
 * min_rate), a request without a body connect_timeout plus stall_timeout.
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
#include "transfer/http_i.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Sends r (what and the write fields set, the rest zeroed) to path (a
 * collection if dir) with up to two more headers (NULL: none). */
static int send_req(struct xfer_http *h, struct xfer_http_req *r,
                    const char *path, bool dir, const char *h1,
                    const char *h2)
{
	const char *extra[2] = { h1, h2 };
	struct curl_slist *hl;
	char *url = xfer_url_join(h->root, path, dir);
	size_t i;
	int rc;

	r->h = h;
	r->kind = XFER_HTTP_WRITE;
	r->url = url;
	if (!url) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	for (i = 0; i < 2; i++) {
		if (!extra[i])
			continue;
		hl = curl_slist_append(r->headers, extra[i]);
		if (!hl) {
			rc = -ENOMEM;
			goto out;
		}
		r->headers = hl;
	}
	rc = xfer_http_run(r);
out:
	curl_slist_free_all(r->headers);
	r->headers = NULL;
	r->url = NULL;
	free(url);
	return rc;
}

/* One request without a body: method on path (a collection if dir). */
static int simple(struct xfer_http *h, const char *method, const char *path,
                  bool dir, const char *header, long status_eexist)
{
	struct xfer_http_req r;

	memset(&r, 0, sizeof(r));
	r.what = method;
	r.status_eexist = status_eexist;
	return send_req(h, &r, path, dir, header, NULL);
}

static int hw_upload(void *state, const char *path, xfer_source_fn src,
                     void *arg, uint64_t len, int64_t mtime)
{
	struct xfer_http_req r;
	char date[64];
	struct tm tm;
	time_t t = (time_t)mtime;
	bool dated;

	memset(&r, 0, sizeof(r));
	r.what = "PUT";
	r.upload = true;
	r.src = src;
	r.arg = arg;
	r.ulen = len;
	r.path = path;
	/* nginx stores a PUT's Date as the file's mtime (checked). */
	dated = mtime > 0 && gmtime_r(&t, &tm) &&
	        strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S GMT",
	                 &tm) > 0;
	return send_req(state, &r, path, false, dated ? date : NULL, NULL);
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
	struct xfer_http *h = state;
	char *dest = xfer_url_join(h->root, to, isdir), *hdr = NULL;
	struct xfer_http_req r;
	int rc;

	if (!dest) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	if (asprintf(&hdr, "Destination: %s", dest) < 0) {
		hdr = NULL;
		rc = -ENOMEM;
		goto out;
	}
	memset(&r, 0, sizeof(r));
	r.what = "MOVE";
	r.status_eexist = 412;   /* Overwrite: F onto an existing name */
	rc = send_req(h, &r, from, isdir, hdr,
	              overwrite ? "Overwrite: T" : "Overwrite: F");
out:
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

/* A write uses the read state of its source (http_i.h). */
static void hw_close(void *state)
{
	(void)state;
}

static int hw_open(void **state, void *rstate, const char *url,
                   const struct xfer_opts *opts)
{
	(void)url;
	(void)opts;
	*state = rstate;
	return 0;
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
