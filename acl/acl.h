#ifndef DMS_ACL_H
#define DMS_ACL_H
/*
 * acl/: the access rules engine.  Admins write rules in a subset of XRootD's
 * authorization database (acc.authdb) format; dmsfs enforces them itself for
 * every local user of one mount.  It never calls into fs/, cache/ or
 * transfer/ and does no I/O except reading the rules file and NSS lookups.
 *
 * Rules file
 *   TYPE ID PATH PRIVS [PATH PRIVS]...
 *   TYPE  'u' (user) or 'g' (group).  For 'u', ID is '*' (everyone, even a
 *         uid without a passwd entry), '=' (the caller; "@=" in this line's
 *         paths stands for the caller's user name) or a user name.  For 'g',
 *         ID is a group name.
 *   PATH  absolute, normalized ('/'-separated, no "." or ".." segment, no
 *         "//"); one trailing '/' is allowed and means the same as none.
 *         "@=" is allowed only in "u =" lines.
 *   PRIVS letters, then optionally '-' and letters that are denied:
 *         a all, l lookup, r read, w write, i insert, d delete, n rename.
 *         "rl", "-rl", "a-d".
 *   The first pair may also be written PRIVS PATH, as in
 *   "u * -rl /archive/private /archive rl" (a token is a path when it
 *   starts with '/', so this is unambiguous); later pairs are PATH PRIVS.
 *   '#' starts a comment anywhere (so paths cannot contain '#').  A line
 *   whose last non-blank character (after comment removal) is '\' goes on
 *   on the next line.  Errors are reported at the first line of a
 *   continued line.
 *
 * Matching: rule path P matches path T when P is "/", T equals P, or T
 * starts with P followed by '/'.  Segment boundaries only: "/archive"
 * matches "/archive" and "/archive/x" but not "/archives".
 *
 * Evaluation for one caller and one path T:
 *   - a line applies if it is "u *", "u =" (caller has a safe name, below),
 *     "u NAME" with NAME the caller's user name, or "g NAME" with NAME the
 *     name of the caller's gid or of one of its supplementary gids;
 *   - in each applying line, the FIRST listed path that matches T decides
 *     that line's grants and denials (later paths are ignored);
 *   - explicit rights = union of grants & ~union of denials; nothing
 *     granted means no access.
 *   - implicit traversal: a directory D gets ACL_LOOKUP|ACL_READ (it can
 *     be walked and listed) when an applying rule path strictly below D
 *     gives the caller rights that D itself does not have -- even if a
 *     rule denies l or r on D.  So "/", "/home" and "/shared" need no
 *     rules, while a directory that only inherits rights from above (an
 *     insert-only drop box "/drop i") does not become listable.  Listings
 *     should show only children for which acl_may_see() is true, which is
 *     exactly "the caller has some right at or below the child".
 *   - user names that are empty, "." or "..", or contain '/' never match
 *     "u =" lines (so "@=" cannot escape its directory).  Target paths are
 *     raw bytes: "@=" in a target path is just two characters.
 *   - target paths must be normalized absolute paths without a trailing
 *     '/' (except "/" itself); any other path gets no rights.
 *
 * Identity: names come from NSS (getpwuid_r, getgrgid_r), cached per
 * caller (uid, gid, groups) for 30 s in a bounded cache.  If NSS fails (as
 * opposed to "no such user/group") the caller gets no rights for a short
 * while (a failed lookup could otherwise skip a denial).  For the same
 * reason fs/ must not pass an empty group list when fuse_req_getgroups()
 * fails: treat that as an error instead.
 *
 * Thread safety: after acl_open*, every function may be called from any
 * number of threads at once, except acl_close (no other call may be
 * running).  Checks never wait for a reload: a reload builds the new rule
 * set, then swaps it in under a short lock; checks already running finish
 * on the old set.  Reloads are serialized among themselves.
 *
 * Suggested use in fs/: lookup/getattr need ACL_LOOKUP; opendir/readdir
 * need ACL_READ on the directory and list only children with
 * acl_may_see(); open for reading needs ACL_READ; later, write ACL_WRITE,
 * create/mkdir ACL_INSERT on the new path, unlink/rmdir ACL_DELETE, rename
 * ACL_RENAME on the source and ACL_INSERT on the target.  On EACCES call
 * acl_denied().  Remember that the kernel's entry and attribute caches are
 * shared between users: a cached lookup never reaches the daemon.
 *
 * Errors are 0 or -errno.  Parse errors are logged (dms_log) as
 * "acl: FILE:LINE: reason"; a rules file that fails to parse never replaces
 * working rules.
 *
 * Trust: the rules file is read only through dms_read_trusted
 * (common/trustfile.h), at open, at every reload and by acl_lint: a file
 * that is not a regular file, that anyone but root (and the process's own
 * euid) could write, or that lies below such a directory or symlink, is
 * refused (-EPERM, -EINVAL, ...) without being opened, and one line says
 * which path is wrong and why.  A FIFO there never blocks.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define ACL_LOOKUP 0x01u  /* l: stat, see the name */
#define ACL_READ   0x02u  /* r: file contents, directory listings */
#define ACL_WRITE  0x04u  /* w: modify file contents */
#define ACL_INSERT 0x08u  /* i: create files and directories */
#define ACL_DELETE 0x10u  /* d: unlink, rmdir */
#define ACL_RENAME 0x20u  /* n: rename */
#define ACL_ALL    0x3fu  /* a */

/* Room for acl_rights_str(): "lrwidn" or "none", plus NUL. */
#define ACL_RIGHTS_STRLEN 8

/* Limits on what the parser accepts (anything larger is an error). */
#define ACL_MAX_FILE_BYTES (16u << 20)
#define ACL_MAX_LINE_BYTES 65536u   /* one logical (continued) line */
#define ACL_MAX_PATH_BYTES 4096u
#define ACL_MAX_PAIRS      256u     /* PATH PRIVS pairs on one line */

struct acl;

/* Who is asking, from the FUSE request.  groups may be NULL if ngroups is
 * 0; it is read during the call only. */
struct acl_caller {
	uid_t uid;
	gid_t gid;
	const gid_t *groups;
	int ngroups;
};

/* Parses rules_file (copied) and returns a handle owned by the caller, to
 * free with acl_close.  -EINVAL if the file does not parse (every error
 * logged as FILE:LINE: reason), -errno if it cannot be read or is not
 * trusted (see Trust above; logged as "acl: FILE: not loaded: why"),
 * -ENOMEM.  Every failure is logged. */
int acl_open(struct acl **out, const char *rules_file)
	__attribute__((warn_unused_result));

/* One diagnostic from the parser: is_error false means a warning (e.g. a
 * path that can never decide because an earlier path on the line covers
 * it).  Strings are valid during the call only. */
typedef void acl_diag_fn(void *arg, const char *file, unsigned line,
                         bool is_error, const char *msg);

/* Same from memory (tests, fuzzing); name is used in messages, which go to
 * fn (NULL: dms_log).  A handle opened this way has no file: acl_reload
 * returns -ENOENT and acl_maybe_reload 0. */
int acl_open_buf(struct acl **out, const char *name, const char *buf,
                 size_t len, acl_diag_fn *fn, void *arg)
	__attribute__((warn_unused_result));

/* Frees a (NULL is fine).  No other call on a may be running. */
void acl_close(struct acl *a);

/* Re-reads the rules file.  On success the new rules apply to every check
 * that starts afterwards (returns 0).  On failure the previous rules stay,
 * the reasons are logged and -EINVAL/-errno is returned. */
int acl_reload(struct acl *a)
	__attribute__((warn_unused_result));

/* Cheap (one stat): reloads only if the file's device, inode, size, mtime
 * or ctime changed since the last attempt.  Returns 1 if new rules were
 * installed (fs/ should then drop kernel caches), 0 if nothing changed,
 * -errno if the file cannot be read or parsed.  A file that does not parse
 * is reported once and retried only when it changes again; one that cannot
 * be read or is not trusted is retried at every call (a parent directory
 * may be fixed without touching the file) and reported again only when the
 * reason changes (0 is returned meanwhile). */
int acl_maybe_reload(struct acl *a);

/* The caller's rights on path (ACL_* bits; 0 = none).  Never fails: any
 * error (bad path, NSS failure, no memory) gives 0.  Typical cost is well
 * under a microsecond once the caller is cached. */
unsigned acl_rights(struct acl *a, const struct acl_caller *c,
                    const char *path);

/* True if the caller has any right at path or below it: whether path (a
 * child in a listing, or an intermediate directory) may be shown. */
bool acl_may_see(struct acl *a, const struct acl_caller *c, const char *path);

/* True if every caller, whoever it is, has the same rights on path and
 * sees the same entries below it: no rule that depends on the caller
 * ('u NAME', 'u =', 'g NAME') has a path at, above or below path.  fs/ lets
 * the kernel cache entries and attributes (shared by all users) only there.
 * Cheap (a few binary searches); false for a bad path. */
bool acl_uniform(struct acl *a, const char *path);

/* How a right came about, for acl_explain. */
enum acl_how { ACL_GRANTED, ACL_DENIED, ACL_IMPLICIT };

struct acl_why {
	unsigned right;    /* one ACL_* bit */
	enum acl_how how;
	const char *file;  /* rules file (or buffer name); NULL for implicit */
	unsigned line;     /* first line of the rule; 0 for implicit */
	const char *text;  /* the rule, comments removed; NULL for implicit */
};

/* Valid during the call only. */
typedef void acl_why_fn(void *arg, const struct acl_why *why);

/* Explains a check (slow; for dmsctl): calls fn for every rule that grants
 * or denies each right on path, in rule order, and once per right that
 * only implicit traversal gives.  *rights gets what acl_rights returns.
 * -EINVAL if path is not a normalized absolute path, -EIO if NSS failed,
 * -ENOMEM. */
int acl_explain(struct acl *a, const struct acl_caller *c, const char *path,
                acl_why_fn *fn, void *arg, unsigned *rights);

/* A caller by names (no uid, no lookup): a user who has no local account,
 * in exactly these groups. */
struct acl_named {
	const char *user;
	const char *const *groups;
	int ngroups;
};
/* acl_explain for who; -EINVAL (bad path), -ENOMEM. */
int acl_explain_named(struct acl *a, const struct acl_named *who,
                      const char *path, acl_why_fn *fn, void *arg,
                      unsigned *rights);

/* Checks a rules file without installing it.  fn (NULL: dms_log) gets every
 * diagnostic; *nrules (may be NULL) the number of rule lines.  Returns 0 if
 * the file would load (warnings allowed), -EINVAL on errors, -errno if it
 * cannot be read or is not trusted (one diagnostic with line 0 says why),
 * judged for this process's euid as the daemon would for its own. */
int acl_lint(const char *rules_file, acl_diag_fn *fn, void *arg,
             unsigned *nrules);
int acl_lint_buf(const char *name, const char *buf, size_t len,
                 acl_diag_fn *fn, void *arg, unsigned *nrules);

/* fs/ calls this when it answers EACCES: counts the denial and logs it
 * (user, wanted rights, path with unprintable bytes escaped), at most
 * ACL_DENIAL_LOG_PER_SEC lines a second; the number suppressed is logged
 * when logging resumes.  Never blocks on NSS. */
#define ACL_DENIAL_LOG_PER_SEC 10
void acl_denied(struct acl *a, const struct acl_caller *c, const char *path,
                unsigned wanted);

struct acl_stats {
	unsigned rules;            /* rule lines in the current set */
	unsigned generation;       /* bumped by each installed reload */
	uint64_t reloads;          /* successful reloads */
	uint64_t reload_failures;  /* reloads that kept the old rules */
	uint64_t denials;          /* acl_denied calls */
	uint64_t denials_logged;
	uint64_t callers_compiled; /* per-caller rule compilations (misses) */
	uint64_t nss_errors;       /* failed name lookups (caller denied) */
};

/* Fills *st.  Cannot fail. */
void acl_get_stats(struct acl *a, struct acl_stats *st);

/* Writes the letters of rights in "lrwidn" order, or "none". */
void acl_rights_str(unsigned rights, char out[ACL_RIGHTS_STRLEN]);

#endif
