#ifndef DMS_FS_CTL_PROTO_H
#define DMS_FS_CTL_PROTO_H
/* The control socket of every dmsfs mount, shared by the daemon
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
 *                      "conflict AGE_S PATH\tOURS\n", then ".\n".  A mount
 *                      without writable exports answers ".\n" (and "sync"
 *                      "0 0 0 -").
 *   "info\n"        -> the mount's figures (issue 9), for anyone: lines of
 *                      tab-separated fields (a tab or newline inside a
 *                      field is sent as '?'), then "pending\tyes|no\n"
 *                      (writable exports or not) and ".\n":
 *     "mount\tMOUNTPOINT"
 *     "export\tNAME\tPATH\trw|ro\tshared|per-user\tSOURCES"
 *     "source\tURL\tup|down\tRETRY_IN_MS\tBYTES\tREQUESTS\tIN_FLIGHT\t
 *      FAILURES\tLAST_ERROR_AGE_S\tLAST_ERROR" after its export (shared
 *      exports only); AGE -1 and ERROR "-" when it never failed; down
 *      with RETRY 0: its back-off is over, the next call tries it
 *     "cache\tUSED\tCAP\tPINNED\tBLOCKS\tFROM_CACHE\tFETCHED\tEVICTED":
 *      bytes, bytes, bytes or "-" (no pins), then block counts
 *     "memory\tFETCH_BUFFERS\tMEM_CACHE\tRUNS_QUEUED\tMALLOC_IN_USE\t
 *      MALLOC_HELD" (bytes; runs: read-ahead waiting)
 *   Readers ignore kinds and trailing fields they do not know, so lines
 *   and fields may be added.  A daemon before "info" answers "error
 *   unknown request\n": dmsctl then shows the pending operations only. */
#include "common/ctlsock.h"

#define DMS_CTL_LINE_MAX 8192

#endif
