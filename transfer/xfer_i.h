#ifndef DMS_XFER_I_H
#define DMS_XFER_I_H
/*
 * Private to transfer/: the interface each protocol backend implements.
 * xfer.c owns the list of sources (mirrors), tries them in order, and takes
 * a failing source out for a back-off period; a backend handles exactly one
 * source URL and never looks at other sources.
 *
 * A backend's calls have the same contracts and error codes as the public
 * xfer_* calls (xfer.h), with one addition: a backend returns -EHOSTDOWN
 * only for failures that another source might not have (connect error,
 * timeout, stall, 5xx / FTP 421 after its own retries), which is what makes
 * xfer.c move to the next source.  -EIO (a wrong answer) also moves on.
 * -ENOENT, -EACCES, -ENOTDIR, -ESTALE, -EFBIG are answers and are returned
 * to the caller at once.
 *
 * Thread safety: every op may run concurrently on one backend state.
 */
#include <stdbool.h>

#include "transfer/xfer.h"

struct xfer_backend;
struct xfer_write_ops;

struct xfer_backend_ops {
	const char *name;  /* "http", "gridftp": for logs */
	/* url is the source root (no trailing '/'); opts outlive the state. */
	int (*open)(void **state, const char *url, const struct xfer_opts *opts);
	void (*close)(void *state);
	int (*stat)(void *state, const char *path, struct xfer_attr *attr);
	int (*list)(void *state, const char *path, xfer_entry_fn fn, void *arg);
	/* On failure *done: bytes at the start of buf that are the source's
	 * nevertheless (0 if unknown); see xfer_read_some. */
	int (*read)(void *state, const char *path,
	            const struct xfer_attr *expect, uint64_t offset, size_t len,
	            void *buf, size_t *done);
	/* Write primitives; NULL if the protocol cannot write. */
	const struct xfer_write_ops *write;
};

/*
 * Write primitives of one backend (http_write.c, gridftp_write.c).  The
 * semantics of the public write calls (temporary name and rename for put,
 * expect checks, rmdir emptiness, rename type rules, choice of source) live
 * once in write.c on top of these and of the backend's read ops; a backend
 * only moves bytes and maps its protocol's answers.
 *
 * Besides the public errors, a primitive returns -ENOTCONN when its request
 * certainly never reached the source (connect refused, name not resolved, on
 * every attempt): nothing was changed, so the call may move to the next
 * source.  Any failure after a request may have been delivered is -EHOSTDOWN
 * (transient) or an answer.  Primitives do not check types or expectations;
 * they are called by write.c only after its checks.
 */
struct xfer_write_ops {
	/* rstate is the same source's read state (for logs and shared
	 * connections); wstate is freed with close.  No network I/O. */
	int (*open)(void **wstate, void *rstate, const char *url,
	            const struct xfer_opts *opts);
	void (*close)(void *wstate);
	/* Creates or replaces path with len bytes from src; mtime > 0 sets its
	 * modification time (-ENOTSUP from set_mtime is logged, not returned). */
	int (*upload)(void *wstate, const char *path, xfer_source_fn src,
	              void *arg, uint64_t len, int64_t mtime);
	int (*mkdir)(void *wstate, const char *path);
	int (*rmdir)(void *wstate, const char *path);   /* empty dir */
	int (*unlink)(void *wstate, const char *path);  /* a file */
	/* isdir: from is a directory.  overwrite=0: the server refuses an
	 * existing to (-EEXIST) where the protocol can say so. */
	int (*move)(void *wstate, const char *from, const char *to, int isdir,
	            int overwrite);
	int (*set_mtime)(void *wstate, const char *path, int64_t mtime);
};

extern const struct xfer_write_ops xfer_http_write_ops;
extern const struct xfer_write_ops xfer_gridftp_write_ops;

/* One public write call (write.c builds it, xfer.c routes it). */
enum xfer_wop {
	XFER_W_PUT, XFER_W_MKDIR, XFER_W_RMDIR, XFER_W_UNLINK, XFER_W_RENAME,
	XFER_W_MTIME
};

struct xfer_wcall {
	enum xfer_wop op;
	const char *path;
	const char *to;                  /* rename */
	int replace;                     /* rename */
	xfer_source_fn src;              /* put */
	void *arg;
	uint64_t len;
	int64_t mtime;                   /* put, set_mtime */
	const struct xfer_attr *expect;  /* put, unlink, rename */
	struct xfer_attr *result;        /* put */
};

/* xfer.c: runs c on the first source that can be reached (see xfer.h). */
int xfer_run_write(struct xfer *x, const struct xfer_wcall *c);

/* write.c: c against one source.  *changed is set once a request that may
 * have changed the source was delivered. */
int xfer_write_one(const struct xfer_backend_ops *ops, void *rstate,
                   void *wstate, const char *url,
                   const struct xfer_wcall *c, int *changed);

/* The mount-time probe (xfer_probe) and its words for a person.  A probe
 * runs on one thread from start to end, so its state is kept per thread:
 * while xfer_probing() is true on a thread, backends ask each source once
 * (no retries) and bound every request to their connect timeout plus
 * XFER_PROBE_GRACE_MS, and they describe each failure with xfer_note()
 * ("connection refused by h:p", "PROPFIND got 405 ...").  Outside a probe
 * backends note failures too (only on the failure path, so a good
 * request pays nothing): the note becomes the source's last error in
 * xfer_source_info. */
#define XFER_PROBE_GRACE_MS 10000
#define XFER_NOTE_MAX 512
int xfer_probing(void);
/* Replaces this thread's note for the source being asked. */
void xfer_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Says what kind of failure (enum xfer_err_kind) the call to the source
 * being asked had, for its error counters; without it the errno decides. */
void xfer_note_kind(unsigned kind);
/* "host:port" (default port by scheme) of url into out; "" if none. */
void xfer_url_hostport(const char *url, char *out, size_t cap);

/* The limits every backend takes from its options, defaults applied
 * (xfer.h): connect timeout, stall timeout, retries, listing cap. */
struct xfer_limits {
	long connect_ms, stall_s;
	int retries;
	size_t max_listing;
};
void xfer_opts_limits(const struct xfer_opts *opts, struct xfer_limits *l);

/* xfer_deadline_ms for a backend, which sees only the options (defaults
 * applied here as in the backends). */
long xfer_opts_deadline_ms(const struct xfer_opts *opts, uint64_t bytes);

/* Backends, each in its own file (http.c, gridftp.c). */
extern const struct xfer_backend_ops xfer_http_ops;
extern const struct xfer_backend_ops xfer_gridftp_ops;

/* Builds "<root><encoded path>" into a malloc'd string (caller frees), each
 * path segment percent-encoded; a trailing '/' is added when dir is set.
 * NULL on allocation failure or an over-long path. */
char *xfer_url_join(const char *root, const char *path, int dir);

/* A collected listing: backends parse the whole reply into this before
 * calling the user's callback (so retries never show partial listings). */
struct xfer_listing {
	size_t count, cap;
	struct xfer_listing_entry {
		char *name;
		struct xfer_attr attr;
	} *entries;
};
int xfer_listing_add(struct xfer_listing *l, const char *name,
                     const struct xfer_attr *attr);
int xfer_listing_emit(const struct xfer_listing *l, xfer_entry_fn fn,
                      void *arg);
void xfer_listing_free(struct xfer_listing *l);

/* GridFTP (gridftp.c): parses one MLSD/MLST entry "facts; name" of len
 * bytes (no line terminator).  Returns 0 with name (NUL-terminated, may
 * contain '/': the caller decides) and attr filled (etag always ""), 1 for
 * an entry to skip (Type=pdir or neither file nor dir), 2 for Type=cdir
 * (the listed directory itself; name and attr filled), -EINVAL if
 * malformed (no Type or two, bad Size/Modify/UNIX.mode, empty name, NUL
 * byte), -ENAMETOOLONG if the name does not fit namecap. */
int xfer_mlsx_parse(const char *line, size_t len, char *name, size_t namecap,
                    struct xfer_attr *attr);

/* GridFTP (gridftp.c): parses a whole MLSD reply of len bytes into l
 * (exposed for tests).  Entries that cannot be a file name ('/' or NUL
 * inside, ".", "..", longer than NAME_MAX) are skipped with a warning;
 * *saw_cdir is set when the reply names the listed directory itself; any
 * other malformed line is -EIO; -ENOMEM.  url is for log lines. */
int xfer_mlsd_parse(const char *buf, size_t len, const char *url,
                    struct xfer_listing *l, bool *saw_cdir);

/* PROPFIND reply parser (propfind.c), private to transfer/ and exposed here
 * so unit tests can feed it bytes without a server.  It is a streaming SAX
 * parser: the body is fed in chunks of any size as it arrives and is never
 * buffered whole.  Hostile input is refused: DTDs and entity declarations,
 * more than 64 nested elements, a captured text node over 16 KiB, and a body
 * over max_bytes (-EFBIG).  Malformed XML, or a root that is not DAV:
 * multistatus, is -EIO.  One parser per reply; not thread safe itself. */
struct xfer_propfind;

struct xfer_propfind_result {
	struct xfer_listing children; /* entries directly below the target,
	                                 names decoded and checked; owned by
	                                 the caller (xfer_listing_free) */
	struct xfer_attr self;        /* the target itself, if have_self */
	int have_self;
};

/* req_url is the URL (or absolute path) the PROPFIND went to, percent-
 * encoded; it tells the target's own <response> from its children's.
 * depth is 0 (stat) or 1 (list).  Fails only with -ENOMEM / -EINVAL. */
int xfer_propfind_new(struct xfer_propfind **out, const char *req_url,
                      int depth, size_t max_bytes)
	__attribute__((warn_unused_result));
/* Parses one more chunk.  0, or the parser's verdict (-EIO, -EFBIG,
 * -ENOMEM); once it failed every later call returns the same error. */
int xfer_propfind_feed(struct xfer_propfind *p, const char *data, size_t len)
	__attribute__((warn_unused_result));
/* Ends the document and hands the result over (*res is overwritten; on
 * error it is left empty).  Depth 0: -EIO without a response for the
 * target.  Depth 1: -ENOTDIR when the target is not a collection. */
int xfer_propfind_finish(struct xfer_propfind *p,
                         struct xfer_propfind_result *res)
	__attribute__((warn_unused_result));
void xfer_propfind_free(struct xfer_propfind *p);

/* The href checks of the parser, exposed for unit tests: whether href
 * (as found in a <response>) names a resource on the server that req_url
 * (the request's URL, or a bare path: then any authority is accepted)
 * points at: same scheme, host and port.  Absolute-path and relative hrefs
 * always do.  1: same server, 0: another one. */
int xfer_href_same_origin(const char *req_url, const char *href);

/* Parses an RFC 1123 date ("Sun, 06 Nov 1994 08:49:37 GMT") into seconds
 * since the epoch, UTC.  Returns 0 on success, -EINVAL if malformed. */
int xfer_parse_http_date(const char *s, int64_t *out);

/* HTTP (http.c): parses a Content-Range value "bytes FIRST-LAST/TOTAL",
 * TOTAL may be "*" for unknown (RFC 9110 14.4).  0 with *first <= *last
 * and, when *have_total, *last < *total; -EINVAL for anything else,
 * including a range that contradicts itself.  Exposed for tests. */
int xfer_content_range_parse(const char *s, uint64_t *first, uint64_t *last,
                             uint64_t *total, bool *have_total);

#endif
