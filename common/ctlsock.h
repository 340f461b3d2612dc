#ifndef DMS_CTLSOCK_H
#define DMS_CTLSOCK_H
/*
 * common/: where the control socket of a mount lives, one rule for the
 * daemon (fs/ctl.c) and dmsctl.  The protocol is in fs/ctl_proto.h.
 *
 * A socket file in a folder only its owner can write, never an abstract
 * name (any local user could bind that first and answer in the daemon's
 * place):
 *   $DMSFS_RUNTIME_DIR        when set (tests, unusual setups; both sides
 *                             must see the same value);
 *   /run/dmsfs                for a daemon run by root (created 0755);
 *   /run/user/UID/dmsfs       for a daemon run by UID when its login
 *                             runtime folder exists (created 0700);
 *   /tmp/dmsfs-UID            else (created 0700).
 * In it, per mount: H.sock (the socket) and H.lock (held with flock by the
 * daemon that owns H.sock for its whole life), H = 32 hex digits of the
 * XXH3-128 hash of the mountpoint's absolute path, so that any mountpoint,
 * however long, gives a name that fits sun_path.
 *
 * Thread safe (no shared state).  Errors are 0 or -errno.
 */
#include <stddef.h>
#include <sys/types.h>

#define DMS_CTL_DIR_ENV  "DMSFS_RUNTIME_DIR"
#define DMS_CTL_NAME_LEN 32   /* hex digits of the per-mount name */

/* The folder for the control sockets of daemons run by uid, into out.
 * -ENAMETOOLONG if it does not fit cap; -EINVAL for a relative
 * $DMSFS_RUNTIME_DIR. */
int dms_ctl_dir(uid_t uid, char *out, size_t cap)
	__attribute__((warn_unused_result));

/* The per-mount name (DMS_CTL_NAME_LEN hex digits + NUL) of mountpoint mnt
 * with suffix ext (".sock" or ".lock") into out.  -ENAMETOOLONG if it
 * does not fit cap. */
int dms_ctl_name(const char *mnt, const char *ext, char *out, size_t cap)
	__attribute__((warn_unused_result));

/* The full path dir/name of mnt's socket; -ENAMETOOLONG if it does not fit
 * cap or a sockaddr_un's sun_path. */
int dms_ctl_sock_path(const char *dir, const char *mnt, char *out,
                      size_t cap)
	__attribute__((warn_unused_result));

/* The uid that mounted the topmost dmsfs mount at mnt (absolute, resolved),
 * from /proc/self/mountinfo (the FUSE user_id= option).  -ENOENT when the
 * topmost mount there is not dmsfs. */
int dms_ctl_mount_owner(const char *mnt, uid_t *owner)
	__attribute__((warn_unused_result));

/* Whether a daemon listens on the control socket of the dmsfs mount at
 * mnt (absolute, resolved): 0 if one accepts a connection (closed again at
 * once), -ECONNREFUSED if the socket file is there and nobody listens (the
 * daemon was killed: the mount is stale), -ENOENT if there is no socket
 * or no dmsfs mount, else -errno. */
int dms_ctl_probe(const char *mnt)
	__attribute__((warn_unused_result));

/* Undoes /proc/self/mountinfo's \ooo escapes of space, tab, newline and
 * backslash, in place. */
void dms_mountinfo_unescape(char *s);

#endif
