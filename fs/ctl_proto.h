#ifndef DMS_FS_CTL_PROTO_H
#define DMS_FS_CTL_PROTO_H
/* The control socket of a mount with writable exports, shared by the daemon
 * (fs/ctl.c) and dmsctl.  A unix socket file in a folder only the daemon's
 * user can write (where: common/ctlsock.h).  The daemon takes the caller's
 * uid from SO_PEERCRED: root sees every pending operation, anyone else only
 * their own.  dmsctl takes the daemon's from SO_PEERCRED too and trusts an
 * answer only from root or the uid that mounted the mount.
 *
 * One request line per connection, then the answer and EOF:
 *   "sync PATH\n"   -> "N BYTES UPLOADS ERROR\n": operations pending at or
 *                      under PATH (a path inside the mount), bytes and
 *                      number of their file uploads, the last error of
 *                      the first ("-" if none);
 *                      also makes pending uploads go without waiting for
 *                      writeback_delay for a few seconds.
 *   "status\n"      -> one line per pending operation,
 *                      "SEQ AGE_S RETRIES KIND PATH[ -> PATH2]\tERROR\n",
 *                      then one per recent conflict (theirs kept at PATH,
 *                      ours uploaded as OURS in the same folder),
 *                      "conflict AGE_S PATH\tOURS\n", then ".\n". */
#include "common/ctlsock.h"

#define DMS_CTL_LINE_MAX 8192

#endif
