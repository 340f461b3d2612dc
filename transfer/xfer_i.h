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
#include "transfer/xfer.h"

struct xfer_backend;

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
};

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
 * malformed (no Type, bad Size/Modify/UNIX.mode, empty name, NUL byte),
 * -ENAMETOOLONG if the name does not fit namecap. */
int xfer_mlsx_parse(const char *line, size_t len, char *name, size_t namecap,
                    struct xfer_attr *attr);

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

/* Parses an RFC 1123 date ("Sun, 06 Nov 1994 08:49:37 GMT") into seconds
 * since the epoch, UTC.  Returns 0 on success, -EINVAL if malformed. */
int xfer_parse_http_date(const char *s, int64_t *out);

#endif
