#ifndef DMS_XFER_H
#define DMS_XFER_H
/*
 * transfer/: moves bytes and metadata between dmsfs and its remote sources.
 * It knows nothing of caching, FUSE or access rules; it never calls up.
 *
 * A struct xfer is one tree reachable through one or more sources (mirrors)
 * given in order of preference, separated by ';' in the sources string:
 *   "https://a.example/archive;ftp://b.example:2811/archive"
 * Each source URL names the root of the same tree.  Schemes: http, https
 * (WebDAV: PROPFIND for metadata, GET with Range for data), ftp, gsiftp
 * (GridFTP, issue 3).
 *
 * Paths passed in are paths inside the tree: they start with '/', are NOT
 * percent-encoded (raw bytes, UTF-8 in practice), use single '/' separators
 * and contain no "." or ".." segments.  The backends encode them per segment.
 *
 * Thread safety: every function may be called from many threads at once on
 * one struct xfer.  Every call returns within a bounded time: each request
 * to one source, retries included, has an overall deadline (see
 * xfer_deadline_ms), so a call takes at most (number of sources) x that.
 *
 * Errors (0 or -errno, always logged with URL, status and reason):
 *   -ENOENT     the source says the path does not exist (404, FTP 550)
 *   -EACCES     the source refuses (401, 403, FTP 530)
 *   -ENOTDIR    xfer_list on something that is not a directory
 *   -ESTALE     the file at the source no longer matches *expect (size or
 *               ETag changed): the caller should revalidate its metadata
 *   -EFBIG      a listing larger than max_listing_bytes
 *   -EHOSTDOWN  no source could give an answer (connect failure, timeout,
 *               stall, deadline passed, 5xx after retries): the caller may
 *               serve stale data
 *   -EIO        a source answered wrongly (Range ignored, wrong
 *               Content-Range, short or long body, malformed XML, name with
 *               '/' or NUL) and no other source answered correctly
 *   -ENOMEM     allocation failure
 */
#include <stddef.h>
#include <stdint.h>

#define XFER_ETAG_MAX 96

struct xfer;

struct xfer_attr {
	uint64_t size;            /* bytes; 0 for directories */
	int64_t mtime;            /* seconds since the epoch (UTC); 0 if unknown */
	uint32_t mode;            /* S_IFDIR or S_IFREG, plus permission bits
	                             when the source reports them (else 0) */
	char etag[XFER_ETAG_MAX]; /* validator as sent by the source; "" if none */
};

struct xfer_opts {
	long connect_timeout_ms;  /* per connection attempt; 0: 5000 */
	long stall_timeout_s;     /* abort a transfer slower than 1 KiB/s for
	                             this long; 0: 15 */
	size_t min_rate;          /* bytes/s a request must average: see
	                             xfer_deadline_ms; 0: 64 KiB/s */
	int retries;              /* extra attempts per source on transient
	                             failures, with back-off; <0: 0, 0: 2 */
	size_t max_listing_bytes; /* cap on one listing reply; 0: 128 MiB */
	const char *proxy;        /* HTTP proxy groups, CernVM-FS style
	                             ("http://p1:3128|http://p2:3128;DIRECT");
	                             NULL or "" means DIRECT.  Copied. */
	int gridftp_streams;      /* parallel data streams (MODE E); 0: default */
	int verbose;              /* log every request at LOG_DEBUG */
};

/* Called once per directory entry ("." and ".." and the directory itself
 * are never passed).  name is a single decoded path segment, valid only
 * during the call.  Return 0 to go on, non-zero to stop: xfer_list then
 * returns that value. */
typedef int (*xfer_entry_fn)(void *arg, const char *name,
                             const struct xfer_attr *attr);

/* Parses sources (see above) and prepares connection pools.  Does no network
 * I/O.  *out is owned by the caller and freed with xfer_close.  Fails with
 * -EINVAL (and a logged reason) on a malformed or unsupported URL. */
int xfer_open(struct xfer **out, const char *sources,
              const struct xfer_opts *opts)
	__attribute__((warn_unused_result));

/* Closes connections and frees x.  No call on x may be running. */
void xfer_close(struct xfer *x);

/* The overall deadline, in ms, of one request for bytes bytes to one
 * source, retries included: connect_timeout (to connect and get a first
 * reply) + bytes / min_rate.  A read past it fails over to the next source
 * (-EHOSTDOWN from that source).  Listings and stats, whose size is not
 * known up front, must keep that pace as their bytes arrive (fail once
 * connect_timeout + received / min_rate has passed) and end within
 * xfer_deadline_ms(x, max_listing_bytes).  Can't fail. */
long xfer_deadline_ms(const struct xfer *x, uint64_t bytes);

/* Attributes of one path. */
int xfer_stat(struct xfer *x, const char *path, struct xfer_attr *attr)
	__attribute__((warn_unused_result));

/* Lists a directory.  The whole reply is fetched and parsed before the
 * first call to fn, so fn never sees a partial or retried listing. */
int xfer_list(struct xfer *x, const char *path, xfer_entry_fn fn, void *arg)
	__attribute__((warn_unused_result));

/* Reads exactly len bytes at offset of the file whose attributes the caller
 * knows as *expect (offset + len <= expect->size) into buf.  Either all len
 * bytes are the source's bytes for that range, or an error is returned and
 * the content of buf is unspecified. */
int xfer_read(struct xfer *x, const char *path, const struct xfer_attr *expect,
              uint64_t offset, size_t len, void *buf)
	__attribute__((warn_unused_result));

/* xfer_read, and on failure *done (never NULL) tells how many bytes at
 * the start of buf are nevertheless the source's bytes for that range
 * (a request cut off by its deadline); 0 when none are known to be. */
int xfer_read_some(struct xfer *x, const char *path,
                   const struct xfer_attr *expect, uint64_t offset,
                   size_t len, void *buf, size_t *done)
	__attribute__((warn_unused_result));

/* Percent-encodes one path segment per RFC 3986 (unreserved characters
 * kept).  Returns the length written (without NUL), or -ENAMETOOLONG if it
 * does not fit in cap bytes. */
int xfer_encode_segment(const char *seg, char *out, size_t cap);

/* Decodes a percent-encoded href path segment into out.  Fails with -EINVAL
 * on a bad escape or if the result contains '/' or NUL, -ENAMETOOLONG if it
 * does not fit in cap bytes; else returns the decoded length. */
int xfer_decode_segment(const char *seg, size_t seglen, char *out, size_t cap);

#endif
