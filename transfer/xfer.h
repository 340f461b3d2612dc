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
 *   -ESTALE     the file at the source no longer matches *expect (size,
 *               ETag or mtime differ; see xfer_read): the caller should
 *               revalidate its metadata
 *   -EFBIG      a listing larger than max_listing_bytes
 *   -EHOSTDOWN  no source could give an answer (connect failure, timeout,
 *               stall, deadline passed, 5xx after retries): the caller may
 *               serve stale data
 *   -EIO        a source answered wrongly (Range ignored, wrong
 *               Content-Range, short or long body, malformed XML, name with
 *               '/' or NUL) and no other source answered correctly
 *   -ENOMEM     allocation failure
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

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
 * are never passed).  name is a single decoded path segment of at most
 * NAME_MAX (255) bytes, valid only during the call: longer names, which no
 * POSIX tool could open, are skipped and counted in one log line per
 * listing, as are WebDAV entries whose href names another server (scheme,
 * host or port) than the one asked.  Return 0 to go on, non-zero to stop: xfer_list then
 * returns that value. */
typedef int (*xfer_entry_fn)(void *arg, const char *name,
                             const struct xfer_attr *attr);

/* Parses sources (see above) and prepares connection pools.  Does no network
 * I/O.  *out is owned by the caller and freed with xfer_close.  Fails with
 * -EINVAL (and a logged reason) on a malformed or unsupported URL. */
int xfer_open(struct xfer **out, const char *sources,
              const struct xfer_opts *opts)
	__attribute__((warn_unused_result));

/* Checks a proxy spec as xfer_opts.proxy takes it: each entry DIRECT or
 * scheme://host[:port] (http, https, socks4, socks4a, socks5, socks5h).
 * 0 if usable (or empty); else -EINVAL and why (cap bytes) says which
 * entry is wrong.  xfer_open does the same check and logs why; callers
 * that validate options early can call it first. */
int xfer_check_proxy(const char *spec, char *why, size_t cap);

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

/* xfer_stat for the first contact with the sources (the mount-time check).
 * Each source is asked once, without retries, and each request ends within
 * its connect timeout plus 10 s (XFER_PROBE_GRACE_MS), so a host that
 * accepts connections and never answers costs about connect_timeout + 10 s
 * per source rather than every retry's stall timeout.  Same error codes as
 * xfer_stat.  On failure, why (cap bytes, may be NULL; "" on success) gets
 * one line for a person saying what each source answered, joined by "; ",
 * e.g. "cannot resolve HOST", "connection refused by HOST:PORT", "no answer
 * from HOST:PORT after N s", "the server at HOST:PORT does not speak WebDAV:
 * PROPFIND got 405 ...", "TLS handshake with HOST:PORT failed: ... is it
 * plain http?".  The words are for that message only: the errno mapping of
 * reads and listings is unchanged.  The probe's state is per thread, so
 * probes may run on several threads at once. */
int xfer_probe(struct xfer *x, const char *path, struct xfer_attr *attr,
               char *why, size_t cap)
	__attribute__((warn_unused_result));

/* Lists a directory.  The whole reply is fetched and parsed before the
 * first call to fn, so fn never sees a partial or retried listing. */
int xfer_list(struct xfer *x, const char *path, xfer_entry_fn fn, void *arg)
	__attribute__((warn_unused_result));

/* Reads exactly len bytes at offset of the file whose attributes the caller
 * knows as *expect (offset + len <= expect->size) into buf.  Either all len
 * bytes are the source's bytes for that range of the version *expect
 * describes, or an error is returned and the content of buf is unspecified.
 * Every validator the source gives is checked against *expect: HTTP
 * Content-Range total, ETag (if expect->etag is set), Last-Modified (whole
 * seconds, if expect->mtime is set); GridFTP MLST size and Modify after the
 * transfer.  A mismatch is -ESTALE. */
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

/* Why a call to a source failed, as far as dmsfs can tell (metrics).  The
 * backend's kind when it knows one (connection refused, timeout, HTTP status
 * class, short body), else the errno's. */
enum xfer_err_kind {
	XFER_ERR_TIMEOUT,       /* no connection or no answer in time */
	XFER_ERR_REFUSED,       /* connection refused */
	XFER_ERR_RESOLVE,       /* host or proxy name not resolved */
	XFER_ERR_TLS,           /* TLS handshake or certificate */
	XFER_ERR_HTTP_4XX,      /* an HTTP 4xx answer but 404/410 (403 too) */
	XFER_ERR_HTTP_5XX,      /* an HTTP 5xx answer */
	XFER_ERR_SHORT_BODY,    /* a body cut short */
	XFER_ERR_NOT_FOUND,     /* -ENOENT, however said (404, FTP 550) */
	XFER_ERR_DENIED,        /* -EACCES otherwise (FTP 530) */
	XFER_ERR_CHANGED,       /* -ESTALE: the file changed at the source */
	XFER_ERR_BAD_ANSWER,    /* -EIO otherwise (wrong Content-Range...) */
	XFER_ERR_UNREACHABLE,   /* -EHOSTDOWN otherwise */
	XFER_ERR_OTHER,
	XFER_ERR_KINDS
};

/* "timeout", "refused", "http_4xx"... for a kind; "other" out of range. */
const char *xfer_err_kind_name(unsigned kind);

/* Upper bounds (seconds) of the latency buckets of xfer_source_info. */
#define XFER_LAT_BUCKETS 13
extern const double xfer_lat_bounds[XFER_LAT_BUCKETS];

/* What one source has done, for dmsctl status (xfer_source_info). */
struct xfer_source_info {
	char url[512];            /* the source root, cut if longer */
	bool down;                /* taken out after a failure */
	int64_t retry_in_ms;      /* down: time left of its back-off, 0 if
	                             it may be asked again already */
	int last_err;             /* -errno of its last failure, 0 if none */
	int64_t last_err_wall;    /* when (seconds since the epoch) */
	char last_op[32];         /* what failed then: "read", "list"... */
	char last_why[512];       /* the backend's words ("connection refused
	                             by h:p"), "" if it gave none */
	uint64_t bytes;           /* file bytes read from it */
	uint64_t requests;        /* calls sent to it (stat, list, read) */
	uint64_t failures;        /* calls that took it out */
	unsigned inflight;        /* calls on it right now */
	/* For dmsctl stats (metrics): */
	const char *protocol;     /* "http", "gridftp"; static */
	uint64_t failovers;       /* calls that moved on from it to the next
	                             source */
	uint64_t errors[XFER_ERR_KINDS]; /* failed calls by kind */
	/* Durations of its calls: lat[i] counts calls that took at most
	 * xfer_lat_bounds[i] s and more than the bound before (not
	 * cumulative); lat[XFER_LAT_BUCKETS] those over the last bound. */
	uint64_t lat[XFER_LAT_BUCKETS + 1];
	uint64_t lat_sum_us;      /* sum of all durations, microseconds */
};

/* The state and counters of the i-th source of x (configured order):
 * 0, or -ENOENT past the last source.  Counters are read one by one
 * without a common lock (each is exact, their sum need not be).  Safe to
 * call while other calls run on x. */
int xfer_source_info(struct xfer *x, size_t i, struct xfer_source_info *out);

/* ---- writes (issue 8) ----------------------------------------------------
 *
 * Write operations go to ONE source: the first in the order reads use (up
 * sources in configured order, then down ones).  Mirrors of a writable export
 * are not kept in sync by dmsfs, so a write is never repeated on another
 * source once it may have changed something: only a failure to reach a source
 * before any request that changes the tree was delivered moves on to the next
 * source.  Writes never go through xfer_opts.proxy (HTTP writes are DIRECT: a
 * caching proxy has no business with PUT/MOVE, and its timeouts would turn a
 * slow upload into a doubtful one).
 *
 * Errors as above, plus:
 *   -EEXIST     mkdir of an existing name; rename with replace=0 onto an
 *               existing name
 *   -ENOTEMPTY  rmdir of a non-empty directory; rename of a directory over a
 *               non-empty one
 *   -EISDIR     unlink of a directory; rename of a file over a directory
 *   -ENOTDIR    rmdir of a file; rename of a directory over a file
 *   -ESTALE     put/rename/unlink with expect: the origin's file is no longer
 *               that version (a conflict: nothing was changed)
 *   -ENOSPC     origin full or over quota (HTTP 507, 413; FTP 552, 452)
 *   -ENOTSUP    xfer_set_mtime where the protocol cannot set it
 *   -EHOSTDOWN  no source reachable, or the source failed part-way through
 *               (timeout, stall, 5xx after retries): the caller keeps the
 *               operation pending and retries it; every operation here is
 *               safe to repeat (put replaces whole, the others are checked
 *               against the state they expect).
 *
 * The checks that precede a change (expect, rmdir emptiness, rename onto an
 * existing name) are separate round trips: another client changing the
 * origin between the check and the change is not seen (neither WebDAV on
 * nginx nor GridFTP offers an atomic compare-and-swap).  The window is one
 * round trip; see README "Writable exports".
 */

/* Reads up to cap bytes of the upload at offset into buf (pread-like; the
 * same offset may be asked again when an upload is retried).  Returns the
 * bytes read (>0), 0 at EOF, or -errno (the upload then fails with it). */
typedef ssize_t (*xfer_source_fn)(void *arg, void *buf, size_t cap,
                                  uint64_t offset);

#define XFER_EXPECT_ABSENT UINT64_MAX

/* Uploads len bytes from src as the new content of path, atomically: to a
 * temporary name in the same folder (".NAME.dmsfs-XXXXXXXX", NAME shortened
 * to fit NAME_MAX), then renamed over path, so a reader at the origin never
 * sees a partial file.  Streams with bounded memory (a few hundred KiB per
 * call, whatever len is).  The parent folder must exist (-ENOENT).
 * expect: NULL = no check; expect->size == XFER_EXPECT_ABSENT = path must
 * not exist; otherwise the origin's file must still match *expect (size,
 * mtime in whole seconds if both are known, ETag if both have one) before the
 * upload and again right before the final rename, else -ESTALE and the
 * temporary is removed.  mtime > 0 sets the new file's modification time
 * (WebDAV: Date header on the PUT, which nginx honours; GridFTP: SITE UTIME
 * after the upload, logged once per source if the server refuses).  On
 * success *result (if not NULL) holds the new file's attributes as the origin
 * reports them.  A failed upload removes its temporary where it still can. */
/* Whether name has the form of xfer_put's temporaries (an upload in
 * flight, or one a killed daemon left behind). */
bool xfer_is_upload_temp(const char *name);

int xfer_put(struct xfer *x, const char *path, xfer_source_fn src, void *arg,
             uint64_t len, int64_t mtime, const struct xfer_attr *expect,
             struct xfer_attr *result)
	__attribute__((warn_unused_result));

/* Creates one directory; its parent must exist (-ENOENT). */
int xfer_mkdir(struct xfer *x, const char *path)
	__attribute__((warn_unused_result));

/* Removes an empty directory (-ENOTEMPTY otherwise). */
int xfer_rmdir(struct xfer *x, const char *path)
	__attribute__((warn_unused_result));

/* Removes a file; expect (may be NULL) as for xfer_put. */
int xfer_unlink(struct xfer *x, const char *path,
                const struct xfer_attr *expect)
	__attribute__((warn_unused_result));

/* Renames a file or directory.  replace=0: -EEXIST if to exists.  replace=1
 * replaces a file, or an empty directory by a directory (POSIX rules:
 * -EISDIR, -ENOTDIR, -ENOTEMPTY otherwise).  expect (may be NULL) is checked
 * against from. */
int xfer_rename(struct xfer *x, const char *from, const char *to, int replace,
                const struct xfer_attr *expect)
	__attribute__((warn_unused_result));

/* Sets the modification time of an existing file or directory where the
 * protocol allows (GridFTP SITE UTIME); -ENOTSUP where it cannot (WebDAV:
 * nginx has no PROPPATCH; the caller re-uploads with xfer_put's mtime). */
int xfer_set_mtime(struct xfer *x, const char *path, int64_t mtime)
	__attribute__((warn_unused_result));

#endif
