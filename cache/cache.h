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

#endif
