#ifndef DMS_CACHE_H
#define DMS_CACHE_H
/*
 * cache/: the persistent block and metadata store, one LMDB environment in
 * one directory.  It never calls up into fs/ and never touches the network.
 *
 * Blocks are keyed by (file identity, block index).  A file identity
 * (struct cache_fid) is a digest of what makes a file's bytes what they are:
 * its path, size, mtime, ETag and the block size, never the protocol that
 * fetched it.  A file changed at the source gets a new identity, so old
 * blocks are never served for it; they age out through LRU eviction.
 *
 * Every block and metadata value is stored with an XXH3 checksum that is
 * verified on every read; a value that fails (or whose length is not what
 * the caller expects) is dropped and reported as a miss (-ENOENT), and the
 * drop is logged and counted.
 *
 * The cap (max_bytes) bounds the block bytes held; it may be exceeded by at
 * most one writer batch.  Least recently used blocks go first.  Block puts are
 * queued to a single writer thread that commits them in batches; a put that
 * cannot be stored (queue full, disk full, map full) is dropped and logged:
 * the cache is best-effort, callers never depend on a put.
 *
 * Thread safety: every function may be called from many threads at once,
 * except cache_open/cache_close.  Open the cache after fork() (LMDB rule).
 *
 * Errors are 0 or -errno; LMDB's own message is logged at the boundary.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cache;

struct cache_fid {
	unsigned char id[16];
};

struct cache_opts {
	const char *dir;     /* absolute; created (0700) if missing.  An existing
	                        one must be a directory (not a link to one)
	                        owned by this uid with mode 0700 or tighter: its
	                        mode is never changed. */
	uint64_t max_bytes;  /* hard cap on stored block bytes (> 0) */
	bool make_parents;   /* also create missing parents (0700), for a
	                        default path such as ~/.cache/dmsfs */
};

struct cache_stats {
	uint64_t bytes;      /* block bytes stored now */
	uint64_t blocks;     /* blocks stored now */
	uint64_t hits, misses;
	uint64_t corrupt;    /* values dropped for a bad checksum or length */
	uint64_t evicted;    /* blocks evicted to keep the cap */
	uint64_t dropped;    /* puts that could not be stored */
	uint64_t cap;        /* max_bytes */
	uint64_t pinned;     /* block bytes of pinned files stored now */
	uint64_t pinned_size;/* sum of the pinned files' sizes */
	uint64_t pins;       /* pin records */
};

/* Fills *fid from a file's identity.  etag may be NULL or "".  Cannot fail. */
void cache_fid_make(struct cache_fid *fid, const char *path, uint64_t size,
                    int64_t mtime, const char *etag, uint32_t block_size);

/* Opens (creating if needed) the cache in opts->dir.  Does not scan the
 * stored data, so a warm cache opens in constant time.  A data file that
 * LMDB cannot open or could not map safely (corrupt, foreign, shorter than
 * its meta pages say) is moved aside to data.mdb.bad and a fresh cache is
 * created, with a warning naming the reason.  A symbolic link, FIFO, folder
 * or other non-regular file at a name the cache opens (data.mdb, lock.mdb,
 * its markers) is moved aside to NAME.bad, never followed or opened.  Fails
 * with -EBUSY (logged with the holder's pid) when another process has the
 * cache open: one daemon per cache, held through cache_close.  Fails
 * with -errno when the directory cannot be created or used (-ELOOP: it is a
 * symbolic link; -EACCES: not ours, or open to group or others), or when
 * something cannot be moved aside.  *out is owned by the caller. */
int cache_open(struct cache **out, const struct cache_opts *opts)
	__attribute__((warn_unused_result));

/* Commits what is queued, stops the writer and closes the environment. */
void cache_close(struct cache *c);

/* Copies len bytes at off inside block (fid, index) into buf, after checking
 * the whole stored block against its checksum and against block_len (the
 * length the block must have).  Returns 0 on a hit, -ENOENT on a miss
 * (including a block just dropped as corrupt), other -errno on failure.
 * A hit marks the block recently used. */
int cache_block_get(struct cache *c, const struct cache_fid *fid,
                    uint64_t index, size_t block_len, size_t off, size_t len,
                    void *buf)
	__attribute__((warn_unused_result));

/* Queues a copy of a block for storing.  Best-effort; cannot fail.  When
 * the writer's queue is full it waits (up to a couple of seconds) for room,
 * so call it without holding locks that readers need. */
void cache_block_put(struct cache *c, const struct cache_fid *fid,
                     uint64_t index, const void *data, size_t len);

/* Metadata records: opaque values under string keys of any length (the
 * cache hashes long keys).  cache_meta_get returns a malloc'd copy in *val
 * (caller frees) and its length; -ENOENT if absent or dropped as corrupt.
 * cache_meta_put stores synchronously (it returns after the commit) and
 * replaces any previous value; an error means the value is not stored. */
int cache_meta_get(struct cache *c, const char *key, void **val, size_t *len)
	__attribute__((warn_unused_result));
int cache_meta_put(struct cache *c, const char *key, const void *val,
                   size_t len)
	__attribute__((warn_unused_result));

/* Waits until every block queued before the call is committed or dropped. */
void cache_flush(struct cache *c);

/* A snapshot of the counters.  Cannot fail. */
void cache_get_stats(struct cache *c, struct cache_stats *st);

/* ==== Pins ===============================================================
 *
 * A pin keeps a file's blocks in the cache: they are never evicted.  One
 * record per pinned file, under a key the caller chooses (a string naming
 * the file, e.g. its tree and path), holding the owner's uid, the file's
 * size and the identity (fid) of the version pinned.  Records live in the
 * LMDB environment: they survive a restart.  The blocks of a pinned fid are
 * kept whenever they are stored, before or after the pin was set.  Pinned
 * bytes count against max_bytes like any other; the caller refuses pins
 * that would not fit (pinned_size + new sizes > cap): with only pinned
 * blocks left, puts of unpinned blocks past the cap are dropped.
 * All calls are synchronous (a write transaction each for set/del). */

/* What one pin record says.  In a cache_pin_foreach callback, key is the
 * cache's and valid only during the callback; cache_pin_get leaves it NULL. */
struct cache_pin_info {
	const char *key;
	uint32_t uid;        /* who pinned it */
	uint64_t size;       /* the file's size */
	uint64_t cached;     /* bytes of its blocks stored now */
	struct cache_fid fid;
};

/* Pins key to the version fid of size bytes for uid.  An existing pin keeps
 * its owner; if it named another version (the file changed at the origin),
 * that version's blocks are deleted.  Blocks of fid already stored leave the
 * LRU at once.  0, -EINVAL (key longer than 8 KiB), -ENOMEM, -EIO. */
int cache_pin_set(struct cache *c, const char *key, uint32_t uid,
                  const struct cache_fid *fid, uint64_t size)
	__attribute__((warn_unused_result));
/* If key is pinned to another version than fid (it changed at the origin
 * and is being fetched again), re-points the pin to fid as cache_pin_set;
 * else does nothing.  Costs one read when nothing changes.  0 or -errno. */
int cache_pin_follow(struct cache *c, const char *key,
                     const struct cache_fid *fid, uint64_t size);
/* The pin of key into *out (may be NULL): 0 or -ENOENT. */
int cache_pin_get(struct cache *c, const char *key,
                  struct cache_pin_info *out)
	__attribute__((warn_unused_result));
/* Removes the pin of key; its blocks go back to the LRU as the newest.
 * 0 or -ENOENT. */
int cache_pin_del(struct cache *c, const char *key);
/* Calls fn for every pin (a snapshot: fn may call cache_pin_*); a non-zero
 * return stops the walk and is returned. */
int cache_pin_foreach(struct cache *c,
                      int (*fn)(void *arg, const struct cache_pin_info *p),
                      void *arg);
/* Block bytes of pinned files stored now (for status).  Cannot fail. */
uint64_t cache_pinned_bytes(struct cache *c);
/* Whether block (fid, index) of block_len bytes is stored (no checksum
 * check: a bad one is found and dropped when read).  Cannot fail. */
bool cache_block_has(struct cache *c, const struct cache_fid *fid,
                     uint64_t index, size_t block_len);

/* Bytes of fid's blocks stored now (committed ones: a block queued by
 * cache_block_put counts once the writer stored it).  0 or -errno. */
int cache_fid_stored(struct cache *c, const struct cache_fid *fid,
                     uint64_t *bytes)
	__attribute__((warn_unused_result));
/* Deletes every stored block of fid, pinned or not (the caller decides
 * whether a pinned file may lose its blocks; its pin record stays), after
 * waiting for blocks queued before the call.  *bytes gets the data bytes
 * freed.  One write transaction.  0 or -errno (nothing deleted). */
int cache_fid_drop(struct cache *c, const struct cache_fid *fid,
                   uint64_t *bytes)
	__attribute__((warn_unused_result));

/* ==== Write journal (cache/journal.c) =====================================
 *
 * The durable local store of pending writes, kept apart from the evictable
 * block cache: nothing in it is ever evicted; it leaves only through
 * cache_jnl_done (the upload reached the origin) or cache_jnl_file_release.
 *
 * Layout under opts->dir (created 0700, files 0600, root-only like the cache):
 *   data/<16 hex digits>  one sparse staged file per pending file version
 *   ops                   the operation log: checksummed records, appended
 *   ops.bad               records that failed their check or were set aside
 *   lost/<id>.<time>      staged files of operations set aside
 *   open.boot             "open <boot id>" while open, "clean" after close
 * No path in it is ever followed: files are opened with O_NOFOLLOW and
 * checked with fstat; a symlink, FIFO or other non-regular file where the
 * journal expects its own refuses the open (-ELOOP / -EINVAL, logged) or, in
 * data/, is removed without being followed.
 *
 * Durability: data written with cache_jnl_pwrite is in the kernel's page
 * cache when the call returns (it survives kill -9 of the daemon); operation
 * records are written to the log before cache_jnl_append returns (same).
 * cache_jnl_sync makes every appended operation durable against a power cut,
 * with the data of the staged files they name: it fdatasyncs those files
 * (written since the last sync), fsyncs data/ when names were added, appends
 * a sync barrier and fdatasyncs the log, in that order, so a durable record
 * never refers to data that is not.  Staged files no operation names yet
 * (still being written) are not flushed by it; cache_jnl_sync_file adds one.
 * So for fsync(2) of a file: append its WRITE operation, then
 * cache_jnl_sync_file.  A staged file named by a synced operation should not
 * be written again (write a new version): after a power cut its bytes could
 * mix old and new data under a record that promised the old.
 * After a system crash (open.boot names another boot), operations after the
 * last barrier were never promised and may refer to data that did not reach
 * the disk: they are set aside (logged, their staged files moved to lost/),
 * never replayed.  A record whose checksum fails is set aside (ops.bad) and
 * logged; a torn record at the end of the log (a write cut short) is dropped.
 *
 * Sequence numbers increase strictly over the life of the journal, across
 * reopens; operations replay in that order.
 *
 * Capacity: max_bytes bounds the sum of the staged files' sizes (logical
 * size: a sparse hole counts, because it will be uploaded).  A write or
 * truncate that would pass it fails with -ENOSPC and changes nothing; what
 * is stored stays intact.  Operation records are not counted (they are
 * small; the log is compacted when most of it is done records).
 *
 * Thread safety: every function may be called from many threads at once,
 * except cache_jnl_open/cache_jnl_close.  Calls on one staged file may run
 * concurrently; overlapping writes and truncates then land as the kernel
 * orders them (the caller serialises per file if it cares).  Internal locks:
 * a sync lock (syncs and compaction run one at a time, taken first) and the
 * state lock; neither is held across a callback, and the state lock is not
 * held across staged file I/O or fdatasync, so writes go on during a sync.
 *
 * Errors are 0 or -errno; the cause is logged.
 */
struct cache_jnl;

struct cache_jnl_opts {
	const char *dir;     /* e.g. <cache_dir>/journal; created 0700 */
	uint64_t max_bytes;  /* writeback_size: cap on staged bytes (> 0) */
};

enum cache_jnl_kind {
	CACHE_JNL_WRITE = 1, /* create/replace path with the staged file */
	CACHE_JNL_MKDIR,
	CACHE_JNL_RMDIR,
	CACHE_JNL_UNLINK,
	CACHE_JNL_RENAME,    /* path -> path2, flags: RENAME_NOREPLACE ... */
	CACHE_JNL_SETATTR,   /* flags: CACHE_JNL_SET_* */
};

#define CACHE_JNL_SET_MODE   1u
#define CACHE_JNL_SET_MTIME  2u

#define CACHE_JNL_PATH_MAX   4096  /* bytes of path / path2, without NUL */
#define CACHE_JNL_TEXT_MAX   512   /* bytes of an ETag or error text */

/* One operation.  For cache_jnl_append the strings are the caller's and are
 * copied.  In a cache_jnl_foreach callback the whole struct and its strings
 * belong to the journal and are valid only during the callback. */
struct cache_jnl_op {
	enum cache_jnl_kind kind;
	uint32_t flags;
	const char *path;        /* required */
	const char *path2;       /* RENAME: the new name; else NULL */
	uint64_t file_id;        /* WRITE: the staged file; else 0 */
	uint64_t size;           /* WRITE: bytes of the staged file to upload */
	uint32_t mode;           /* WRITE, MKDIR, SETATTR (CACHE_JNL_SET_MODE) */
	uint32_t uid, gid;       /* the owner: whose pending data this is */
	int64_t mtime_sec;       /* WRITE, SETATTR (CACHE_JNL_SET_MTIME) */
	uint32_t mtime_nsec;
	/* The version at the origin this mount read the file at (conflict
	 * check before replacing it); base_present false: it was absent. */
	bool base_present;
	uint64_t base_size;
	int64_t base_mtime;
	const char *base_etag;   /* may be NULL or "" */
	/* Kept by the journal; ignored by cache_jnl_append. */
	int64_t added;           /* wall clock seconds when appended */
	uint32_t retries;        /* from cache_jnl_update */
	int64_t last_try;
	const char *last_error;  /* "" when none */
};

/* Opens (creating if needed) the journal in opts->dir and replays the log:
 * records are verified, pending operations loaded in sequence order, staged
 * files referenced by no operation (created but not recorded before a
 * crash) deleted, operations whose staged file is missing or shorter than
 * recorded set aside; everything set aside is logged.  It reads the log and
 * lists data/, never the staged files' contents.  *out is owned by the
 * caller.  One process at a time (an flock on the directory; open it after
 * fork()).  Fails with -errno (-EBUSY if another process has it open,
 * -ELOOP/-EINVAL for a foreign file type at a journal path, -EACCES for a
 * directory owned by someone else). */
int cache_jnl_open(struct cache_jnl **out, const struct cache_jnl_opts *o)
	__attribute__((warn_unused_result));

/* Syncs (as cache_jnl_sync), marks the journal closed cleanly and frees it.
 * Pending operations stay for the next open.  NULL is ignored. */
void cache_jnl_close(struct cache_jnl *j);

/* ---- staged files ---- */

/* Creates an empty staged file and returns its id (never 0).  The caller
 * holds it: it is not deleted, even when no operation refers to it, until
 * cache_jnl_file_release.  Not durable until an operation refers to it and
 * is synced (an unreferenced file is deleted at the next open). */
int cache_jnl_file_new(struct cache_jnl *j, uint64_t *file_id)
	__attribute__((warn_unused_result));

/* Drops the caller's hold; the file is deleted once no pending operation
 * refers to it.  -ENOENT if the id is unknown or not held. */
int cache_jnl_file_release(struct cache_jnl *j, uint64_t file_id);

/* Writes len bytes at off.  All or nothing against the cap: -ENOSPC if the
 * file would grow past what max_bytes leaves; then nothing is written.  A
 * full disk also gives -ENOSPC (or -EDQUOT), possibly after part of the range
 * was written.  -ENOENT for an unknown id. */
int cache_jnl_pwrite(struct cache_jnl *j, uint64_t file_id, const void *buf,
                     size_t len, uint64_t off)
	__attribute__((warn_unused_result));

/* Reads up to len bytes at off: the count read (short only at the end of
 * the file), or -errno (-EIO for a file whose sync failed).  Holes read as
 * zeros. */
ssize_t cache_jnl_pread(struct cache_jnl *j, uint64_t file_id, void *buf,
                        size_t len, uint64_t off)
	__attribute__((warn_unused_result));

/* Sets the size (grow: a hole; shrink: bytes dropped).  -ENOSPC past the
 * cap, nothing changed. */
int cache_jnl_truncate(struct cache_jnl *j, uint64_t file_id, uint64_t size)
	__attribute__((warn_unused_result));

/* The current size of a staged file.  -ENOENT for an unknown id. */
int cache_jnl_file_size(struct cache_jnl *j, uint64_t file_id,
                        uint64_t *size)
	__attribute__((warn_unused_result));

/* A new read-only descriptor of the staged file (O_CLOEXEC), owned by the
 * caller, who closes it: for streaming uploads and splice replies.  Returns
 * the fd or -errno. */
int cache_jnl_file_open(struct cache_jnl *j, uint64_t file_id)
	__attribute__((warn_unused_result));

/* cache_jnl_sync, and this file's data too even if no operation names it
 * yet.  -ENOENT for an unknown id. */
int cache_jnl_sync_file(struct cache_jnl *j, uint64_t file_id)
	__attribute__((warn_unused_result));

/* ---- ordered operations ---- */

/* Appends an operation and returns its sequence number (seq may be NULL).
 * The record is in the log when this returns (survives kill -9); with sync
 * it is also durable (as cache_jnl_sync).  -EINVAL for a malformed op
 * (missing or too long path, WRITE without a known staged file),
 * -ENOSPC/-EIO if the log cannot be written: nothing appended.  With sync,
 * an error from the sync itself leaves the operation appended (and *seq
 * set) but not durable. */
int cache_jnl_append(struct cache_jnl *j, const struct cache_jnl_op *op,
                     bool sync, uint64_t *seq)
	__attribute__((warn_unused_result));

/* Makes everything appended before the call durable, with the staged files
 * those operations name.  -EIO (or the fdatasync's errno) if a staged file
 * could not be synced: that file is then unusable (-EIO from every call on
 * it) and its operations are set aside, because the kernel may have dropped
 * its unwritten pages.  A failed sync of the log is repaired by rewriting
 * the log; the call fails only if that fails too. */
int cache_jnl_sync(struct cache_jnl *j)
	__attribute__((warn_unused_result));

/* Calls fn for each pending operation in sequence order, without the
 * journal's lock held (fn may call any cache_jnl_* function, including
 * cache_jnl_done on this op).  Operations appended during the walk are
 * visited too.  A non-zero return from fn stops the walk and is returned. */
int cache_jnl_foreach(struct cache_jnl *j,
                      int (*fn)(void *arg, uint64_t seq,
                                const struct cache_jnl_op *op),
                      void *arg);
/* As cache_jnl_foreach, from the first operation whose seq >= first. */
int cache_jnl_foreach_from(struct cache_jnl *j, uint64_t first,
                           int (*fn)(void *arg, uint64_t seq,
                                     const struct cache_jnl_op *op),
                           void *arg);

/* Records an attempt for dmsctl status: retries is incremented, last_try
 * set to now and the error text (NULL: cleared) kept, truncated to
 * CACHE_JNL_TEXT_MAX.  Not synced by itself.  -ENOENT for an unknown seq. */
int cache_jnl_update(struct cache_jnl *j, uint64_t seq, const char *error);

/* Removes a completed operation; its staged file is deleted when no other
 * operation refers to it and nobody holds it.  Durable at the next sync
 * (until then a crash may replay it once more).  A full disk does not make
 * it fail (draining is what frees space): the record is retried at later
 * calls, and a restart before that sets the operation aside (logged) since
 * its staged file is gone.  -ENOENT if unknown. */
int cache_jnl_done(struct cache_jnl *j, uint64_t seq);

struct cache_jnl_stats {
	uint64_t bytes;      /* staged bytes (what the cap counts) */
	uint64_t max_bytes;
	uint64_t ops;        /* pending operations */
	uint64_t files;      /* staged files */
	uint64_t log_bytes;  /* size of the operation log */
	uint64_t setaside;   /* records/operations set aside since open */
};

/* A snapshot of the counters.  Cannot fail. */
void cache_jnl_stats(struct cache_jnl *j, struct cache_jnl_stats *st);

/* ==== Mode table (cache/modes.c) ==========================================
 *
 * The mode bits (07777) that chmod gave files and folders of writable
 * exports whose origin cannot store them, keyed by path, kept for as long as
 * the file exists: apart from the evictable block cache and from the write
 * journal (which forgets an operation once it is uploaded).  The caller
 * keeps it in step with the namespace: a rename moves the path and every
 * path under it, an unlink or rmdir removes them.
 *
 * Storage: one log file (e.g. <cache_dir>/modes, 0600, owned by the daemon's
 * user, refused otherwise), each change one checksummed append, rewritten
 * atomically (new file, fsync, rename, directory fsync) when mostly dead.
 * A change survives kill -9 of the daemon once the call returns; a power
 * cut once cache_modes_sync returned.  A torn last record is dropped (and
 * logged) at open.
 *
 * Thread safety: every function but _open/_close may be called from many
 * threads at once (one internal lock, not held across any callback).
 * Errors are 0 or -errno; the cause is logged.
 */
struct cache_modes;

/* Opens (creating) the table in file and replays it.  *out is the caller's
 * (cache_modes_close).  One process at a time (the caller's lock, e.g. the
 * cache's). */
int cache_modes_open(struct cache_modes **out, const char *file)
	__attribute__((warn_unused_result));
/* Syncs, compacts if worth it and frees.  NULL is fine. */
void cache_modes_close(struct cache_modes *m);

/* The mode bits kept for path; -ENOENT if none. */
int cache_modes_get(struct cache_modes *m, const char *path, uint32_t *mode)
	__attribute__((warn_unused_result));
/* Keeps mode & 07777 for path (replacing any). */
int cache_modes_set(struct cache_modes *m, const char *path, uint32_t mode)
	__attribute__((warn_unused_result));
/* Forgets path and every path under it. */
int cache_modes_remove(struct cache_modes *m, const char *path);
/* Moves the modes of from and everything under it to to, dropping those
 * that were at or under to. */
int cache_modes_rename(struct cache_modes *m, const char *from,
                       const char *to);
/* Makes every change so far durable against a power cut. */
int cache_modes_sync(struct cache_modes *m);

#endif
