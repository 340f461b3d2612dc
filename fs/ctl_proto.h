#ifndef DMS_FS_CTL_PROTO_H
#define DMS_FS_CTL_PROTO_H
/* The control socket of every dmsfs mount, shared by the daemon
 * (fs/ctl.c, fs/pin.c, fs/status.c, fs/metrics.c) and dmsctl.  A unix
 * socket file in a folder only the daemon's user can write (where:
 * common/ctlsock.h).  The daemon takes the caller's
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
 *   "info\n"        -> the mount's figures, for anyone: lines of
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
 *   unknown request\n": dmsctl then shows the pending operations only.
 *   "metrics\n"     -> the mount's counters (fs/metrics.c), for anyone,
 *                      rendered by common/prom.h: lines of tab-separated
 *                      fields, then ".\n":
 *     "family\tNAME\tTYPE\tHELP" (TYPE counter, gauge or histogram) opens
 *      a family; the samples after it belong to it:
 *     "sample\tNAME\tVALUE[\tKEY=VALUE]..." (NAME is the family's, or for
 *      a histogram NAME_bucket with a "le" label, NAME_sum, NAME_count);
 *      a tab or newline in a label value is sent as '?'; the "mount"
 *      label is the reader's to add.  Readers skip lines they do not
 *      know.  A daemon before "metrics" answers "error unknown request\n".
 *
 * Pins (fs/pin.c).  PATHs are paths inside the mount, one per line (a
 * name with a newline cannot be sent); in answers a control character in a
 * path is sent as '?'.  The caller's groups are those the user database
 * gives its uid.
 *   "pin N\n" + N lines "PATH\n"
 *                   -> "walk FILES BYTES\n" once the paths are walked, then
 *                      either "refused NEEDED PINNED CAP\n" (bytes the pin
 *                      needs, bytes pinned already, cache_size; nothing is
 *                      fetched) and EOF, or
 *                      "progress FILES_DONE FILES BYTES_DONE BYTES FETCHED\n"
 *                      about every 0.5 s while fetching (FETCHED: bytes
 *                      that came from the origin), then one
 *                      "fail ERRNAME PATH\tREASON\n" per failed path (ERRNAME
 *                      as ENOENT, EACCES, EIO; PATH "/" for the pin as a
 *                      whole, e.g. ECANCELED), then
 *                      "done FILES_DONE FILES BYTES_DONE FETCHED NFAILS\n".
 *                      The client sends nothing after its request: closing
 *                      its end stops the pin.
 *   "unpin N\n" + N lines "PATH\n"
 *                   -> "fail ..." lines (ENOENT: nothing of the caller's
 *                      pinned there), then "done FILES BYTES NFAILS\n".
 *   "pins\n"        -> "pin UID SIZE CACHED PATH\n" per pin (the caller's;
 *                      root: all), then "total N SIZE CACHED PINNED CAP\n"
 *                      (PINNED: sizes of every pin on the mount) and ".\n".
 *   "evict N\n" + N lines "PATH\n" (fs/evict.c)
 *                   -> the walk of a pin (the caller's rights), then per
 *                      file its blocks dropped from memory and the cache
 *                      (pending writes are never touched): "fail ..."
 *                      lines (EBUSY: pinned, unpin it first), then
 *                      "done FILES BYTES NFAILS\n" (files evicted, cache
 *                      bytes freed).
 *   "reload\n"      -> (root or the mount's owner only, else "error ...")
 *                      re-reads the rules file and checks the config file
 *                      (fs/reload.c): lines "ok TEXT\n" (done),
 *                      "note TEXT\n" (needs a remount, not applied),
 *                      "fail TEXT\n" (refused: the previous state stays),
 *                      then ".\n".
 *   Any request may be answered "error TEXT\n" (malformed, busy, stopping). */
#include "common/ctlsock.h"

#define DMS_CTL_LINE_MAX 8192

#endif
