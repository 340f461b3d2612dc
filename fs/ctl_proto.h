#ifndef DMS_FS_CTL_PROTO_H
#define DMS_FS_CTL_PROTO_H
/* The control socket of a mount with writable exports, shared by the daemon
 * (fs/ctl.c) and dmsctl.  An abstract unix socket (no file to protect or
 * clean up) named DMS_CTL_PREFIX + the mountpoint's absolute path.  The
 * daemon takes the caller's uid from SO_PEERCRED: root sees every pending
 * operation, anyone else only their own.
 *
 * One request line per connection, then the answer and EOF:
 *   "sync PATH\n"   -> "N BYTES ERROR\n": operations pending at or under
 *                      PATH (a path inside the mount), bytes of their
 *                      uploads, the last error of the first ("-" if none);
 *                      also makes pending uploads go without waiting for
 *                      writeback_delay for a few seconds.
 *   "status\n"      -> one line per pending operation,
 *                      "SEQ AGE_S RETRIES KIND PATH[ -> PATH2]\tERROR\n",
 *                      then ".\n". */
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#define DMS_CTL_PREFIX "dmsfs-ctl:"
#define DMS_CTL_LINE_MAX 8192

/* Fills the abstract address of mountpoint mnt; -1 if it is too long. */
static inline int dms_ctl_addr(const char *mnt, struct sockaddr_un *a,
                               socklen_t *len)
{
	size_t p = strlen(DMS_CTL_PREFIX), m = strlen(mnt);

	if (1 + p + m > sizeof(a->sun_path))
		return -1;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	memcpy(a->sun_path + 1, DMS_CTL_PREFIX, p);
	memcpy(a->sun_path + 1 + p, mnt, m);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + p + m);
	return 0;
}

#endif
