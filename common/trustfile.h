#ifndef DMS_TRUSTFILE_H
#define DMS_TRUSTFILE_H
/*
 * common/: opening a file whose contents decide who may read what (the
 * access rules, the config file), only if no one but root and the running
 * user could have written it.  One rule, used by the daemon at mount and on
 * every reload, and by dmsctl.
 *
 * Trusted uids: 0 and geteuid() (a user's own mount may use the user's own
 * files; a root daemon trusts root only).  The path is resolved here, one
 * component at a time from "/" on O_PATH|O_NOFOLLOW descriptors (a relative
 * path from the physical working directory), and every object it passes
 * through is checked with fstat on its descriptor, never by name:
 *   - every directory: owned by a trusted uid, and not writable by group or
 *     others unless it has the sticky bit (as /tmp): there others can add
 *     names but not rename or remove ours, and the next component must be
 *     owned by a trusted uid anyway;
 *   - every symlink met on the way (the named file or an intermediate one):
 *     owned by a trusted uid; the directory holding it was checked like any
 *     other, and its target is resolved and checked in turn;
 *   - the file: a regular file, owned by a trusted uid, not writable by
 *     group or others (group or ACL write shows as the group bits), at most
 *     the cap in size.
 * The file is opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK|O_CLOEXEC|O_NOCTTY in
 * its checked directory only after its type was checked on an O_PATH
 * descriptor, so a FIFO, a device or a socket there is refused without
 * being opened and nothing can block.
 *
 * Errors: -EPERM the file or a directory on its way is not trusted;
 * -EINVAL not a regular file (-EISDIR a directory); -EFBIG over the cap;
 * -ELOOP more than 40 symlinks; -EAGAIN the file changed while being opened
 * or read; else the -errno of the system call that failed (-ENOENT, ...).
 * On any failure why (if whylen > 0) gets one line saying what is wrong
 * with which path, without a trailing period, e.g. "directory /srv/x is
 * writable by group or others (mode 0777) and not sticky".
 *
 * Thread safe (no shared state; uses no working-directory changes).
 */
#include <stddef.h>
#include <sys/stat.h>

/* Largest file dms_read_trusted reads (what fits a rules or config file). */
#define DMS_TRUST_MAX_BYTES (16u << 20)

/* Room for a why message, including a path of up to PATH_MAX. */
#define DMS_TRUST_WHYLEN 4400

/* Opens path for reading after the checks above.  On success *fd_out is
 * the caller's descriptor (close it) and *st (may be NULL) its fstat. */
int dms_open_trusted(const char *path, int *fd_out, struct stat *st,
                     char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* As dms_open_trusted for a folder (where the caller keeps files others
 * must not touch, e.g. the control socket): the folders on the way are
 * checked the same way, and the folder itself must be owned by a trusted
 * uid and writable by no one else (sticky or not).  *fd_out is an
 * O_RDONLY|O_DIRECTORY descriptor of it (close it) for the *at calls.
 * Errors as above; -ENOTDIR if it is not a folder. */
int dms_open_trusted_dir(const char *path, int *fd_out, struct stat *st,
                         char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* dms_open_trusted, then reads the whole file (at most cap bytes, else
 * -EFBIG) into *buf, NUL-terminated (owned by the caller: free), its length
 * in *len and its fstat in *st (may be NULL).  *buf is NULL on failure. */
int dms_read_trusted(const char *path, size_t cap, char **buf, size_t *len,
                     struct stat *st, char *why, size_t whylen)
	__attribute__((warn_unused_result));

#endif
