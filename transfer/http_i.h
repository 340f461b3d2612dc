#ifndef DMS_HTTP_I_H
#define DMS_HTTP_I_H
/*
 * Private to http.c and http_write.c: the one request engine of the HTTP
 * backend (connection pool, proxies, deadlines, retries, status mapping)
 * that reads and writes share.  The write ops use the read state of the
 * same source (struct xfer_http) as theirs.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "transfer/xfer_i.h"

#define HTTP_IDLE_MAX        32
#define HTTP_MAX_PROXIES     32

struct xfer_http_proxy {
	char *url;                 /* NULL: DIRECT */
	size_t group;
	int64_t down_until_ms;     /* 0 when up; protected by proxy_lock */
};

struct xfer_http {
	char *root;                /* source URL, no trailing '/' */
	const struct xfer_opts *opts; /* outlive the state; for deadlines */
	char *ca_file;             /* DMSFS_CA_FILE at open, or NULL */
	long connect_ms, stall_s;
	int retries;
	size_t max_listing;
	bool verbose;

	CURLSH *share;
	pthread_mutex_t share_lock[CURL_LOCK_DATA_LAST];

	pthread_mutex_t pool_lock;
	CURL *idle[HTTP_IDLE_MAX]; /* protected by pool_lock */
	size_t nidle;              /* protected by pool_lock */

	pthread_mutex_t proxy_lock;
	/* down_until_ms protected by proxy_lock */
	struct xfer_http_proxy proxy[HTTP_MAX_PROXIES];
	size_t nproxy, ngroup;     /* read-only after open */
	unsigned rr;               /* round-robin counter; proxy_lock */
};

/* XFER_HTTP_WRITE: a request of http_write.c (method in what), always
 * DIRECT, never paced. */
enum xfer_http_kind { XFER_HTTP_GET, XFER_HTTP_PROPFIND, XFER_HTTP_WRITE };

/* One request: what was asked, and what the current try saw. */
struct xfer_http_req {
	struct xfer_http *h;
	CURL *c;
	enum xfer_http_kind kind;
	const char *url;
	const char *what;          /* method: "GET", "PROPFIND", "PUT"... */
	const struct xfer_http_proxy *via; /* this try's proxy, or NULL */
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *headers;
	int64_t start_ms;          /* monotonic, when the first try began */
	int64_t deadline_ms;       /* monotonic: no try goes past it */
	bool paced;                /* must also keep the pace (PROPFIND) */
	bool late;                 /* stopped by its deadline or pace */

	/* per try */
	long status;
	int err;                   /* verdict from a callback, 0 if none */
	bool checked;              /* status/headers looked at */
	bool is_data;              /* body is the answer (206/200, 207) */
	size_t discard;            /* bytes of an error page skipped */

	/* GET */
	const struct xfer_attr *expect;
	uint64_t offset;
	size_t len, got;
	char *buf;
	char range[48];

	/* PROPFIND */
	int depth;
	struct xfer_propfind *pf;
	struct xfer_propfind_result res; /* valid when run() returned 0 */

	/* XFER_HTTP_WRITE */
	long status_eexist;        /* status meaning -EEXIST here, or 0 */
	bool upload;               /* a PUT of ulen bytes from src */
	const char *path;          /* upload: for the parent check */
	xfer_source_fn src;
	void *arg;
	uint64_t ulen, upos;
	bool sent;                 /* some try may have reached the server */
};


/* Runs r (filled in by the caller, the rest zeroed) with retries on
 * transient failures and within its deadline.  0 or -errno; a write that
 * never got a request out on any try is -ENOTCONN (see xfer_write_ops). */
int xfer_http_run(struct xfer_http_req *r);

#endif
