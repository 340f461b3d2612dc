/*
 * cache/cache.c: the persistent block and metadata store (see cache.h for
 * the contract).
 *
 * Layout: one LMDB environment in opts->dir with five named databases.
 *   blocks  key fid(16) || be64(index)          -> bhdr(16) || block data
 *   lru     be64(seq)                            -> block key (24)
 *   atime   block key (24)                       -> be64(seq)
 *   meta    'k' || key  (keys up to 400 bytes)   -> mhdr(24) || key || value
 *           'h' || XXH3_128(key) (longer keys)
 *   info    "totals"                             -> struct cache_totals
 *   pins    XXH3_128(pin key)                    -> pinrec(48) || pin key
 *   pinfid  fid(16)                              -> XXH3_128(pin key)
 * Every value carries a magic (format version), its length and an XXH3-64
 * checksum.  Block checksums are seeded with a hash of the key, and metadata
 * checksums cover the full key, so a value is also bound to its key.
 *
 * Totals (block bytes, block count, next LRU sequence number) live in one
 * small record written in the same transaction as every change to blocks, so
 * cache_open reads them instead of scanning.  Only when that record is
 * missing or fails its checksum while blocks exist does open rebuild it, with
 * one scan of the blocks keys (sizes come from the B-tree nodes, block data is
 * not read) and a warning.  A record of another format version resets the
 * cache.
 *
 * Writes: cache_block_put copies the block, checksums it in the caller's
 * thread and queues it (at most CACHE_QUEUE_MAX_BYTES pending; beyond that a
 * put is dropped and counted).  One writer thread takes up to
 * CACHE_BATCH_PUTS puts (and at most batch_bytes) per round and commits them:
 *   txn A (only if needed): drop blocks readers found corrupt (re-verified
 *         first), apply queued LRU touches, evict oldest blocks until the
 *         batch fits under the cap;
 *   txn B: insert the batch, update lru/atime/totals.
 * Eviction before insertion keeps stats.bytes <= cap at every commit; the
 * data file can exceed the cap by about one batch because pages freed by a
 * transaction are reusable only after it commits.  Nothing slow happens while
 * a write transaction is open (checksums and copies are done before).
 * MDB_MAP_FULL: evict a further quarter of the cap and retry once, else drop
 * the batch.  ENOSPC/EIO/EDQUOT at commit (full disk): drop the batch, log,
 * and lower the effective cap below what is stored so that later batches
 * reuse pages inside the file; the full cap is retried after a minute.
 *
 * Reads: a pool of reset read transactions is renewed per call (MDB_NOTLS
 * lets them move between threads).  The whole stored block is verified, then
 * the requested range is copied out before the transaction is reset.  A bad
 * block is counted and logged at once and queued for deletion by the writer.
 * A hit queues an LRU touch only if the block is not among the newest quarter
 * of blocks (by sequence distance), and touches are deduplicated in a small
 * in-memory set, so a hot block costs no writes.
 *
 * Durability: the environment uses MDB_NOTLS | MDB_NOSYNC, never with
 * MDB_WRITEMAP.  LMDB (lmdb.h, MDB_NOSYNC): "if the filesystem preserves
 * write order and the MDB_WRITEMAP flag is not used, transactions exhibit ACI
 * (atomicity, consistency, isolation) properties and only lose D
 * (durability) ... a system crash can corrupt the database or lose the last
 * transactions if buffers are not yet flushed to disk."  A process crash never
 * corrupts LMDB (the kernel still holds every written page).  Because common
 * filesystems do not promise write order, open writes a marker holding the
 * kernel boot id and close removes it after mdb_env_sync(force): a marker
 * from another boot means the system went down while the cache was open, and
 * the data file is moved aside (data.mdb.bad) instead of trusted.  A system
 * crash thus costs the cache's contents, never a corrupt read.
 * CACHE_SYNC_META builds with MDB_NOMETASYNC instead (ACI kept without that
 * marker, one fdatasync per commit); measured here it halved put throughput
 * (1.4-3 GB/s against 3-6 GB/s with 256 KiB-1 MiB blocks).
 *
 * Measured tunables (tests/unit/test_cache_stress.c, CACHE_BENCH=1): batch
 * sizes 16, 32 and 64 were within run-to-run noise; 32 is used.  The read
 * transaction pool made no measurable difference at 1-2 threads (~1.5 us per
 * 4 KiB get either way); it is kept to spare LMDB's reader-table mutex under
 * many FUSE threads.  A get verifies the whole stored block, so its cost
 * follows the block size (about 15 us for 256 KiB, 55 us for 1 MiB).
 *
 * Pins: a pinned file's blocks (its fid is in pinfid) have no lru/atime
 * entries, so eviction never meets them and touches skip them; pinning takes
 * a file's stored blocks out of the LRU, unpinning puts them back as the
 * newest.  A put of a pinned file's block goes in without an LRU entry.  Its
 * bytes still count in the totals (the cap covers pinned and unpinned
 * blocks alike); when only pinned blocks are left, eviction stops and puts of
 * unpinned blocks that would pass the cap are dropped.  The bytes of pinned
 * blocks are counted at open (one walk of each pinned file's keys) and kept
 * in step by every write transaction (c->pin_delta).
 *
 * Locking: c->lock guards the queue, the touch set and the writer/flush
 * handshake; c->pool_lock guards the read transaction pool; counters are
 * atomics.  Lock order: never hold both.  LMDB write transactions are taken
 * by the writer thread, by cache_meta_put and by cache_meta_get when it
 * drops a corrupt record; LMDB serializes them.
 */
#include "cache/cache.h"
#include "cache/cache_i.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#define XXH_STATIC_LINKING_ONLY  /* XXH3_state_t on the stack */
#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
/* The library's plain XXH3 entry points are its SSE2 build; this header
 * maps them to the dispatching ones, which pick AVX2/AVX-512 at run time
 * (4x faster per 64 KiB block here): every block read from LMDB or put
 * into it is summed.  Same hashes, so existing caches stay valid. */
#include <xxh_x86dispatch.h>
#endif

/* Tunables.  The batch and pool sizes can be overridden at build time
 * (-DCACHE_BATCH_PUTS=16) to measure them. */
#define CACHE_BLOCK_MAX        (16u << 20)     /* largest block accepted */
#define CACHE_QUEUE_MAX_BYTES  (8ull << 20)    /* pending put data */
#define CACHE_PUT_WAIT_S       2              /* for room in the queue */
#ifndef CACHE_BATCH_PUTS
#define CACHE_BATCH_PUTS       32
#endif
#define CACHE_BATCH_MAX_BYTES  (32ull << 20)
#ifndef CACHE_RTXN_POOL
#define CACHE_RTXN_POOL        32              /* 0 disables the pool */
#endif
#define CACHE_TOUCH_SLOTS      1024            /* power of two */
#define CACHE_TOUCH_WAKE       64              /* wake the writer at this many */
#define CACHE_TOUCH_DELAY_S    1               /* else apply within this time */
#define CACHE_DROPS_MAX        1024            /* queued corrupt-block drops */
#define CACHE_META_INLINE_KEY  400             /* longer meta keys are hashed */
#define CACHE_META_MAX         (64u << 20)     /* largest metadata value */
#define CACHE_MAP_MIN          (256ull << 20)
#define CACHE_CAP_MAX          (1ull << 45)    /* 32 TiB: keeps the map sane */
#define CACHE_MAXREADERS       512
#define CACHE_LOG_INTERVAL_S   10              /* rate limit for repeated logs */
#define CACHE_CAP_RETRY_S      60              /* full cap again after ENOSPC */

#define CACHE_KEY_LEN          24
#define CACHE_BLOCK_MAGIC      0x31424d44u     /* "DMB1" */
#define CACHE_META_MAGIC       0x314d4d44u     /* "DMM1" */
#define CACHE_TOTALS_MAGIC     0x31544d44u     /* "DMT1" */
#define CACHE_PIN_MAGIC        0x31504d44u     /* "DMP1" */
#define CACHE_PIN_KEY_MAX      8192            /* bytes of a pin key */
#define CACHE_FORMAT_VERSION   1u

#define CACHE_DATA_FILE        "data.mdb"
#define CACHE_LOCK_FILE        "lock.mdb"
#define CACHE_BAD_FILE         "data.mdb.bad"
#define CACHE_OPEN_MARK        "open.boot"     /* present while open */
#define CACHE_DIR_LOCK         ".lock"         /* one daemon per cache */
#define CACHE_BROKEN_MARK      "data.mdb.broken"

#ifdef CACHE_SYNC_META
#define CACHE_ENV_FLAGS        (MDB_NOTLS | MDB_NOMETASYNC)
#else
#define CACHE_ENV_FLAGS        (MDB_NOTLS | MDB_NOSYNC)
#endif
_Static_assert(!((CACHE_ENV_FLAGS & MDB_NOSYNC) && (CACHE_ENV_FLAGS & MDB_WRITEMAP)),
               "MDB_NOSYNC | MDB_WRITEMAP can corrupt on a system crash");
_Static_assert((CACHE_TOUCH_SLOTS & (CACHE_TOUCH_SLOTS - 1)) == 0,
               "touch slots must be a power of two");

/* On-disk records; read with memcpy (LMDB values are not aligned). */
struct cache_bhdr {
	uint32_t magic;
	uint32_t len;        /* data bytes that follow */
	uint64_t sum;        /* XXH3_64(data, seed = XXH3_64(key)) */
};
_Static_assert(sizeof(struct cache_bhdr) == 16, "block header is 16 bytes");
_Static_assert(CACHE_BLOCK_MAX <= UINT32_MAX, "block length fits the header");

struct cache_mhdr {
	uint32_t magic;
	uint32_t key_len;
	uint64_t val_len;
	uint64_t sum;        /* XXH3_64 over key_len, val_len, key, value */
};
_Static_assert(sizeof(struct cache_mhdr) == 24, "meta header is 24 bytes");

struct cache_totals {
	uint32_t magic;
	uint32_t version;
	uint64_t bytes;      /* block data bytes stored */
	uint64_t blocks;     /* blocks stored */
	uint64_t next_seq;   /* next LRU sequence number */
	uint64_t sum;        /* XXH3_64 of the fields above */
};
_Static_assert(sizeof(struct cache_totals) == 40, "totals record is 40 bytes");

enum cache_item_type { CACHE_ITEM_PUT, CACHE_ITEM_DROP };

/* A queued write.  Owned by the queue, then by the writer, which frees it. */
struct cache_item {
	struct cache_item *next;
	uint64_t id;                     /* queue order, for cache_flush */
	enum cache_item_type type;
	unsigned char key[CACHE_KEY_LEN];
	size_t len;                      /* PUT: data bytes; DROP: expected length */
	unsigned char val[];             /* PUT: bhdr || data, stored as is */
};

struct cache_touch_slot {
	bool used;
	unsigned char key[CACHE_KEY_LEN];
};

struct cache {
	/* Set by cache_open, read-only afterwards. */
	char *dir;
	MDB_env *env;
	MDB_dbi dbi_blocks, dbi_lru, dbi_atime, dbi_meta, dbi_info;
	MDB_dbi dbi_pins, dbi_pinfid;
	void *map_addr;                  /* LMDB's read-only map, if found */
	size_t map_len;
	atomic_uint_fast64_t mapped_bytes; /* through the map since unmapping */
	uint64_t cap;
	uint64_t batch_bytes;            /* byte limit of one writer batch */
	pthread_t writer;
	bool writer_started;
	bool locks_ready;
	int lock_fd;                     /* holds CACHE_DIR_LOCK; -1 if none */

	pthread_mutex_t lock;
	pthread_cond_t wake;             /* writer waits here for work */
	pthread_cond_t done;             /* cache_flush waits here for progress */
	struct cache_item *head, *tail;  /* guarded by lock */
	uint64_t pending_bytes;          /* guarded by lock: queued + in-flight */
	unsigned n_drops;                /* guarded by lock: queued DROP items */
	uint64_t enq_id;                 /* guarded by lock: last id queued */
	uint64_t done_id;                /* guarded by lock: ids <= this are done */
	uint64_t iter_started;           /* guarded by lock: writer rounds begun */
	uint64_t iter_done;              /* guarded by lock: writer rounds ended */
	uint64_t iter_want;              /* guarded by lock: round a flusher needs */
	bool writer_waiting;             /* guarded by lock */
	bool stop;                       /* guarded by lock */
	struct cache_touch_slot *touch;  /* guarded by lock: CACHE_TOUCH_SLOTS */
	unsigned n_touch;                /* guarded by lock */

	pthread_mutex_t pool_lock;
	MDB_txn *pool[CACHE_RTXN_POOL > 0 ? CACHE_RTXN_POOL : 1]; /* guarded by pool_lock */
	int pool_n;                      /* guarded by pool_lock */

	/* Writer thread only. */
	uint64_t eff_cap;                /* cap, lowered for a while after ENOSPC */
	time_t eff_cap_since;

	/* Any thread. */
	_Atomic uint64_t hits, misses, corrupt, evicted, dropped;
	_Atomic uint64_t bytes, blocks, next_seq; /* committed totals (mirror) */
	atomic_bool broken;              /* LMDB reported corruption: stop using it */
	_Atomic int64_t log_drop_t, log_batch_t; /* rate limits for repeated logs */
	/* Pins: committed figures. */
	_Atomic uint64_t pin_stored;     /* bytes of pinned blocks stored */
	_Atomic uint64_t pin_size;       /* sum of the pinned files' sizes */
	_Atomic uint64_t pin_count;      /* pin records */
	/* Change of pin_stored in the open write transaction: guarded by
	 * LMDB's writer lock (one write transaction at a time). */
	int64_t pin_delta;
};

static bool cache_fid_pinned(struct cache *c, MDB_txn *txn,
                             const unsigned char *fid);

/* ---- small helpers ---------------------------------------------------- */

static void cache_be64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static uint64_t cache_get_be64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

static void cache_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static void cache_make_key(unsigned char *key, const struct cache_fid *fid,
                           uint64_t index)
{
	memcpy(key, fid->id, sizeof(fid->id));
	cache_be64(key + sizeof(fid->id), index);
}

/* Formats a block key as "<fid hex>#<index>" for log messages. */
static const char *cache_key_str(const unsigned char *key, char *buf, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	for (int i = 0; i < 16 && o + 2 < n; i++) {
		buf[o++] = hex[key[i] >> 4];
		buf[o++] = hex[key[i] & 15];
	}
	snprintf(buf + o, n - o, "#%" PRIu64, cache_get_be64(key + 16));
	return buf;
}

static uint64_t cache_block_sum(const unsigned char *key, const void *data,
                                size_t len)
{
	return XXH3_64bits_withSeed(data, len, XXH3_64bits(key, CACHE_KEY_LEN));
}

static uint64_t cache_meta_sum(const struct cache_mhdr *h, const void *key,
                               const void *val)
{
	XXH3_state_t st;
	unsigned char lens[12];

	memcpy(lens, &h->key_len, 4);
	memcpy(lens + 4, &h->val_len, 8);
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, lens, sizeof(lens));
	XXH3_64bits_update(&st, key, h->key_len);
	XXH3_64bits_update(&st, val, (size_t)h->val_len);
	return XXH3_64bits_digest(&st);
}

static uint64_t cache_totals_sum(const struct cache_totals *t)
{
	return XXH3_64bits(t, offsetof(struct cache_totals, sum));
}

static int64_t cache_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

/* True at most once per CACHE_LOG_INTERVAL_S for one *last. */
static bool cache_log_due(_Atomic int64_t *last)
{
	int64_t now = cache_now(), prev = atomic_load(last);

	if (prev != 0 && now - prev < CACHE_LOG_INTERVAL_S)
		return false;
	return atomic_compare_exchange_strong(last, &prev, now);
}

/* LMDB result -> 0 / -errno. */
static int cache_errno(int rc)
{
	if (rc >= 0)
		return -rc;
	switch (rc) {
	case MDB_NOTFOUND:     return -ENOENT;
	case MDB_MAP_FULL:     return -ENOSPC;
	case MDB_READERS_FULL: return -EAGAIN;
	case MDB_BAD_VALSIZE:  return -EINVAL;
	default:               return -EIO;
	}
}

/* Errors meaning the data file itself cannot be trusted. */
static bool cache_rc_bad_file(int rc)
{
	return rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ||
	       rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
	       rc == MDB_PANIC || rc == MDB_INCOMPATIBLE;
}

/* Errors of the storage under the file (full disk, I/O). */
static bool cache_rc_storage(int rc)
{
	return rc == ENOSPC || rc == EIO || rc == EDQUOT || rc == EFBIG;
}

static int cache_path(const struct cache *c, const char *name, char *buf,
                      size_t n)
{
	int w = snprintf(buf, n, "%s/%s", c->dir, name);

	return (w < 0 || (size_t)w >= n) ? -ENAMETOOLONG : 0;
}

/* After LMDB reported a corrupt tree: stop using the environment, and leave
 * a mark so that the next cache_open moves the data file aside. */
static void cache_set_broken(struct cache *c, int rc, const char *where)
{
	char path[PATH_MAX];
	int fd;

	if (atomic_exchange(&c->broken, true))
		return;
	dms_log(LOG_ERR, "cache: %s: %s; cache disabled until reopened, "
	        "data file will be set aside", where, mdb_strerror(rc));
	if (cache_path(c, CACHE_BROKEN_MARK, path, sizeof(path)) != 0)
		return;
	fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK |
	          O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* Checks a run-time LMDB error for corruption; returns rc unchanged. */
static int cache_check_rc(struct cache *c, int rc, const char *where)
{
	if (cache_rc_bad_file(rc))
		cache_set_broken(c, rc, where);
	return rc;
}

/* ---- file identity ---------------------------------------------------- */

void cache_fid_make(struct cache_fid *fid, const char *path, uint64_t size,
                    int64_t mtime, const char *etag, uint32_t block_size)
{
	static const char tag[] = "dmsfs-fid-v1";
	XXH3_state_t st;
	XXH128_canonical_t out;
	unsigned char n[8];
	size_t plen, elen;

	if (!path)
		path = "";
	if (!etag)
		etag = "";
	plen = strlen(path);
	elen = strlen(etag);
	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, tag, sizeof(tag));
	cache_le64(n, plen);
	XXH3_128bits_update(&st, n, 8);
	XXH3_128bits_update(&st, path, plen);
	cache_le64(n, size);
	XXH3_128bits_update(&st, n, 8);
	cache_le64(n, (uint64_t)mtime);
	XXH3_128bits_update(&st, n, 8);
	cache_le64(n, elen);
	XXH3_128bits_update(&st, n, 8);
	XXH3_128bits_update(&st, etag, elen);
	cache_le64(n, block_size);
	XXH3_128bits_update(&st, n, 8);
	XXH128_canonicalFromHash(&out, XXH3_128bits_digest(&st));
	_Static_assert(sizeof(out.digest) == sizeof(fid->id), "fid is 128 bits");
	memcpy(fid->id, out.digest, sizeof(fid->id));
}

/* ---- read transactions ------------------------------------------------ */

/* A read transaction from the pool or a new one: 0, or -errno (logged). */
static int cache_rtxn_get(struct cache *c, MDB_txn **out)
{
	MDB_txn *txn = NULL;
	int rc;

	pthread_mutex_lock(&c->pool_lock);
	if (c->pool_n > 0)
		txn = c->pool[--c->pool_n];
	pthread_mutex_unlock(&c->pool_lock);
	if (txn) {
		rc = mdb_txn_renew(txn);
		if (rc == 0)
			goto out;
		mdb_txn_abort(txn);
		txn = NULL;
	}
	rc = mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn);
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: read transaction: %s", mdb_strerror(rc));
		rc = cache_errno(rc);
		txn = NULL;
	}
out:
	*out = txn;
	return rc;
}

static void cache_rtxn_put(struct cache *c, MDB_txn *txn)
{
	mdb_txn_reset(txn);
	pthread_mutex_lock(&c->pool_lock);
	if (CACHE_RTXN_POOL > 0 && c->pool_n >= 0 && c->pool_n < CACHE_RTXN_POOL) {
		c->pool[c->pool_n++] = txn;
		txn = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (txn)
		mdb_txn_abort(txn);
}

/* ---- totals and block records inside a write transaction --------------- */

static void cache_totals_fresh(struct cache_totals *t)
{
	memset(t, 0, sizeof(*t));
	t->magic = CACHE_TOTALS_MAGIC;
	t->version = CACHE_FORMAT_VERSION;
	t->next_seq = 1;
}

/* 0: *t loaded; 1: record absent; 2: record corrupt; 3: other version;
 * < 0: LMDB error. */
static int cache_totals_read(struct cache *c, MDB_txn *txn,
                             struct cache_totals *t)
{
	MDB_val k = { 6, (void *)"totals" }, v;
	int rc = mdb_get(txn, c->dbi_info, &k, &v);

	if (rc == MDB_NOTFOUND)
		return 1;
	if (rc != 0)
		return rc;
	if (v.mv_size != sizeof(*t))
		return 2;
	memcpy(t, v.mv_data, sizeof(*t));
	if (t->magic != CACHE_TOTALS_MAGIC || t->sum != cache_totals_sum(t))
		return 2;
	if (t->version != CACHE_FORMAT_VERSION)
		return 3;
	return 0;
}

static int cache_totals_write(struct cache *c, MDB_txn *txn,
                              struct cache_totals *t)
{
	MDB_val k = { 6, (void *)"totals" }, v = { sizeof(*t), t };

	t->sum = cache_totals_sum(t);
	return mdb_put(txn, c->dbi_info, &k, &v, 0);
}

/* Loads the totals for a writer transaction; falls back to the mirror if the
 * record went bad while open (it is rewritten at commit). */
static int cache_totals_load(struct cache *c, MDB_txn *txn,
                             struct cache_totals *t)
{
	int rc = cache_totals_read(c, txn, t);

	if (rc < 0)
		return rc;
	if (rc > 0) {
		dms_log(LOG_WARNING, "cache: totals record unreadable (%d); "
		        "using the in-memory totals", rc);
		cache_totals_fresh(t);
		t->bytes = atomic_load(&c->bytes);
		t->blocks = atomic_load(&c->blocks);
		t->next_seq = atomic_load(&c->next_seq);
	}
	return 0;
}

static void cache_totals_publish(struct cache *c, const struct cache_totals *t)
{
	atomic_store(&c->bytes, t->bytes);
	atomic_store(&c->blocks, t->blocks);
	atomic_store(&c->next_seq, t->next_seq);
}

/* Begins a writer transaction with the totals loaded into t.  On failure
 * *txn may be set: the caller aborts it. */
static int cache_totals_begin(struct cache *c, MDB_txn **txn,
                              struct cache_totals *t)
{
	int rc = mdb_txn_begin(c->env, NULL, 0, txn);

	if (rc == 0) {
		c->pin_delta = 0;
		rc = cache_totals_load(c, *txn, t);
	}
	return rc;
}

/* Ends a writer transaction: writes t into it (if write), commits, and
 * once committed makes t the in-memory totals.  *txn is NULL after a
 * commit, failed or not; if writing t failed it is left for the caller to
 * abort.  LMDB result codes. */
static int cache_totals_commit(struct cache *c, MDB_txn **txn,
                               struct cache_totals *t, bool write)
{
	int rc = write ? cache_totals_write(c, *txn, t) : 0;

	if (rc != 0)
		goto out;
	rc = mdb_txn_commit(*txn);
	*txn = NULL;
	if (rc != 0)
		goto out;
	cache_totals_publish(c, t);
	atomic_fetch_add(&c->pin_stored, (uint64_t)c->pin_delta);
out:
	return rc;
}

static void cache_totals_sub(struct cache_totals *t, size_t stored_size)
{
	uint64_t n = stored_size >= sizeof(struct cache_bhdr) ?
	             stored_size - sizeof(struct cache_bhdr) : 0;

	t->bytes = t->bytes >= n ? t->bytes - n : 0;
	if (t->blocks > 0)
		t->blocks--;
}

/* Removes one block and its LRU entries; the block record must exist with
 * stored_size bytes. */
static int cache_block_del(struct cache *c, MDB_txn *txn,
                           struct cache_totals *t, const unsigned char *key,
                           size_t stored_size)
{
	MDB_val k = { CACHE_KEY_LEN, (void *)key }, v;
	unsigned char seq[8];
	int rc;

	rc = mdb_get(txn, c->dbi_atime, &k, &v);
	if (rc == 0 && v.mv_size == 8) {
		MDB_val sk = { 8, seq };

		memcpy(seq, v.mv_data, 8);
		rc = mdb_del(txn, c->dbi_lru, &sk, NULL);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	rc = mdb_del(txn, c->dbi_atime, &k, NULL);
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	rc = mdb_del(txn, c->dbi_blocks, &k, NULL);
	if (rc != 0)
		goto out;
	cache_totals_sub(t, stored_size);
	if (cache_fid_pinned(c, txn, key))
		c->pin_delta -= (int64_t)(stored_size - sizeof(struct cache_bhdr));
out:
	return rc;
}

/* Gives key the newest LRU position (the block must exist). */
static int cache_lru_set(struct cache *c, MDB_txn *txn, struct cache_totals *t,
                         const unsigned char *key)
{
	MDB_val k = { CACHE_KEY_LEN, (void *)key }, v;
	unsigned char seq[8];
	MDB_val sk = { 8, seq }, sv = { 8, seq };
	int rc;

	rc = mdb_get(txn, c->dbi_atime, &k, &v);
	if (rc == 0 && v.mv_size == 8) {
		memcpy(seq, v.mv_data, 8);
		rc = mdb_del(txn, c->dbi_lru, &sk, NULL);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	cache_be64(seq, t->next_seq++);
	v.mv_size = CACHE_KEY_LEN;
	v.mv_data = (void *)key;
	rc = mdb_put(txn, c->dbi_lru, &sk, &v, 0);
	if (rc != 0)
		goto out;
	rc = mdb_put(txn, c->dbi_atime, &k, &sv, 0);
out:
	return rc;
}

/* Applies one queued touch: the block may be gone by now. */
static int cache_touch_apply(struct cache *c, MDB_txn *txn,
                             struct cache_totals *t, const unsigned char *key)
{
	MDB_val k = { CACHE_KEY_LEN, (void *)key }, v;
	int rc = mdb_get(txn, c->dbi_atime, &k, &v);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	return cache_lru_set(c, txn, t, key);
}

/* Why a stored block fails, or NULL if it is good and want_len long. */
static const char *cache_block_check(const unsigned char *key,
                                     const MDB_val *v, size_t want_len,
                                     char *why, size_t why_n)
{
	struct cache_bhdr h;

	if (v->mv_size < sizeof(h))
		return "record shorter than its header";
	memcpy(&h, v->mv_data, sizeof(h));
	if (h.magic != CACHE_BLOCK_MAGIC)
		return "bad magic";
	if (h.len != v->mv_size - sizeof(h))
		return "header length differs from record length";
	if (h.len != want_len) {
		snprintf(why, why_n, "stored length %" PRIu32 ", expected %zu",
		         h.len, want_len);
		return why;
	}
	if (h.sum != cache_block_sum(key, (const unsigned char *)v->mv_data +
	                             sizeof(h), h.len))
		return "checksum mismatch";
	return NULL;
}

/* Reads the whole record v (a value of a read transaction still open) from
 * LMDB's file instead of through its map: one copy and no page faults, no
 * page-table entries to set up and zap (cache_unmap_after), and no file
 * pages counted in the daemon's RSS.  While the transaction lives the
 * record's pages are not reused, and the writer writes through the same
 * page cache (no MDB_WRITEMAP), so the file holds the bytes the map shows.
 * The sum is checked on the bytes read, as cache_block_check does: *bad is
 * the reason they are wrong, or NULL.  -ENOTSUP when the map or the file is
 * not usable this way (the caller reads through the map). */
static int cache_block_pread(struct cache *c, const unsigned char *key,
                             const MDB_val *v, size_t want_len, void *buf,
                             char *why, size_t why_n, const char **bad)
{
	const char *p = v->mv_data, *map = c->map_addr;
	struct cache_bhdr h;
	struct iovec iov[2] = {
		{ &h, sizeof(h) }, { buf, want_len },
	};
	ssize_t n;
	int fd;

	*bad = NULL;
	if (!map || v->mv_size != sizeof(h) + want_len || p < map ||
	    (size_t)(p - map) > c->map_len ||
	    c->map_len - (size_t)(p - map) < v->mv_size ||
	    mdb_env_get_fd(c->env, &fd) != 0)
		return -ENOTSUP;
	n = preadv(fd, iov, 2, (off_t)(p - map));
	if (n != (ssize_t)v->mv_size)
		return -ENOTSUP;
	if (h.magic != CACHE_BLOCK_MAGIC)
		*bad = "bad magic";
	else if (h.len != want_len) {
		snprintf(why, why_n, "stored length %" PRIu32 ", expected %zu",
		         h.len, want_len);
		*bad = why;
	} else if (h.sum != cache_block_sum(key, buf, h.len)) {
		*bad = "checksum mismatch";
	}
	return 0;
}

/* Writer: deletes a block a reader found bad, if it is still bad. */
static int cache_drop_apply(struct cache *c, MDB_txn *txn,
                            struct cache_totals *t, const unsigned char *key,
                            size_t want_len)
{
	MDB_val k = { CACHE_KEY_LEN, (void *)key }, v;
	char why[64];
	int rc = mdb_get(txn, c->dbi_blocks, &k, &v);

	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return rc;
	if (!cache_block_check(key, &v, want_len, why, sizeof(why)))
		return 0;  /* replaced by a good copy since */
	return cache_block_del(c, txn, t, key, v.mv_size);
}

/* Evicts least recently used blocks until t->bytes <= target. */
static int cache_evict(struct cache *c, MDB_txn *txn, struct cache_totals *t,
                       uint64_t target, uint64_t *n_evicted)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	unsigned char key[CACHE_KEY_LEN];
	int rc;

	rc = mdb_cursor_open(txn, c->dbi_lru, &cur);
	if (rc != 0)
		goto out;
	while (t->bytes > target) {
		rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
		if (rc == MDB_NOTFOUND &&
		    atomic_load(&c->pin_stored) + (uint64_t)c->pin_delta > 0) {
			/* The rest is pinned: kept, whatever the target. */
			rc = 0;
			break;
		}
		if (rc == MDB_NOTFOUND) {
			dms_log(LOG_WARNING, "cache: LRU list empty with %" PRIu64
			        " bytes counted; resetting the count", t->bytes);
			t->bytes = 0;
			t->blocks = 0;
			rc = 0;
			break;
		}
		if (rc != 0)
			goto out;
		if (v.mv_size != CACHE_KEY_LEN) {
			rc = mdb_cursor_del(cur, 0);
			if (rc != 0)
				goto out;
			continue;
		}
		memcpy(key, v.mv_data, CACHE_KEY_LEN);
		rc = mdb_cursor_del(cur, 0);
		if (rc != 0)
			goto out;
		k.mv_size = CACHE_KEY_LEN;
		k.mv_data = key;
		rc = mdb_del(txn, c->dbi_atime, &k, NULL);
		if (rc != 0 && rc != MDB_NOTFOUND)
			goto out;
		rc = mdb_get(txn, c->dbi_blocks, &k, &v);
		if (rc == MDB_NOTFOUND) {
			rc = 0;
			continue;
		}
		if (rc != 0)
			goto out;
		{
			size_t sz = v.mv_size;

			rc = mdb_del(txn, c->dbi_blocks, &k, NULL);
			if (rc != 0)
				goto out;
			cache_totals_sub(t, sz);
			(*n_evicted)++;
		}
	}
out:
	if (cur)
		mdb_cursor_close(cur);
	return rc;
}

/* ---- the writer ------------------------------------------------------- */

struct cache_batch {
	struct cache_item *items;        /* FIFO order */
	struct cache_item *last;
	size_t n_puts, n_drops;
	uint64_t put_bytes;              /* data bytes of the puts */
	uint64_t held_bytes;             /* pending_bytes to release */
	unsigned char (*touch)[CACHE_KEY_LEN];
	unsigned n_touch;
};

/* Txn A: drops, touches and eviction down to target (if above it). */
static int cache_txn_prepare(struct cache *c, const struct cache_batch *b,
                             uint64_t target)
{
	MDB_txn *txn = NULL;
	struct cache_totals t;
	uint64_t n_evicted = 0;
	int rc;

	rc = cache_totals_begin(c, &txn, &t);
	if (rc != 0)
		goto out;
	for (const struct cache_item *it = b->items; it; it = it->next) {
		if (it->type != CACHE_ITEM_DROP)
			continue;
		rc = cache_drop_apply(c, txn, &t, it->key, it->len);
		if (rc != 0)
			goto out;
	}
	for (unsigned i = 0; i < b->n_touch; i++) {
		rc = cache_touch_apply(c, txn, &t, b->touch[i]);
		if (rc != 0)
			goto out;
	}
	rc = cache_evict(c, txn, &t, target, &n_evicted);
	if (rc != 0)
		goto out;
	rc = cache_totals_commit(c, &txn, &t, true);
	if (rc != 0)
		goto out;
	atomic_fetch_add(&c->evicted, n_evicted);
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

/* Txn B: inserts the batch's puts. */
static int cache_txn_insert(struct cache *c, const struct cache_batch *b)
{
	MDB_txn *txn = NULL;
	struct cache_totals t;
	int rc;

	rc = cache_totals_begin(c, &txn, &t);
	if (rc != 0)
		goto out;
	for (struct cache_item *it = b->items; it; it = it->next) {
		MDB_val k = { CACHE_KEY_LEN, it->key }, v;
		bool pinned;

		if (it->type != CACHE_ITEM_PUT)
			continue;
		pinned = cache_fid_pinned(c, txn, it->key);
		rc = mdb_get(txn, c->dbi_blocks, &k, &v);
		if (rc == 0 && v.mv_size == sizeof(struct cache_bhdr) + it->len) {
			/* Same identity, same length: the same bytes (a duplicate
			 * fetch).  Keep the stored copy, refresh its LRU place. */
			rc = pinned ? 0 : cache_lru_set(c, txn, &t, it->key);
			if (rc != 0)
				goto out;
			continue;
		}
		if (rc == 0)
			rc = cache_block_del(c, txn, &t, it->key, v.mv_size);
		if (rc != 0 && rc != MDB_NOTFOUND)
			goto out;
		/* Pinned blocks left no room: an unpinned one would pass
		 * the cap (a pinned one fits: pins are refused past it). */
		if (!pinned && t.bytes + it->len > c->eff_cap &&
		    atomic_load(&c->pin_stored) + (uint64_t)c->pin_delta > 0) {
			atomic_fetch_add(&c->dropped, 1);
			continue;
		}
		v.mv_size = sizeof(struct cache_bhdr) + it->len;
		v.mv_data = it->val;
		rc = mdb_put(txn, c->dbi_blocks, &k, &v, 0);
		if (rc != 0)
			goto out;
		if (pinned)
			c->pin_delta += (int64_t)it->len;
		else
			rc = cache_lru_set(c, txn, &t, it->key);
		if (rc != 0)
			goto out;
		t.bytes += it->len;
		t.blocks++;
	}
	rc = cache_totals_commit(c, &txn, &t, true);
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

static void cache_batch_drop(struct cache *c, const struct cache_batch *b,
                             int rc, const char *why)
{
	atomic_fetch_add(&c->dropped, b->n_puts);
	if (b->n_puts && cache_log_due(&c->log_batch_t))
		dms_log(LOG_WARNING, "cache: dropped a batch of %zu blocks "
		        "(%" PRIu64 " bytes): %s: %s (%" PRIu64 " puts dropped "
		        "so far)", b->n_puts, b->put_bytes, why,
		        mdb_strerror(rc), atomic_load(&c->dropped));
}

/* Full disk: keep below what is stored now so later batches reuse pages
 * freed inside the file instead of growing it. */
static void cache_lower_cap(struct cache *c)
{
	uint64_t now = atomic_load(&c->bytes);
	uint64_t lowered = now - now / 8;

	if (lowered < c->eff_cap) {
		c->eff_cap = lowered;
		dms_log(LOG_WARNING, "cache: storage full; keeping the cache "
		        "below %" PRIu64 " bytes for %d s", lowered,
		        CACHE_CAP_RETRY_S);
	}
	c->eff_cap_since = cache_now();
}

static void cache_batch_apply(struct cache *c, struct cache_batch *b)
{
	uint64_t target, bytes;
	int rc;

	if (atomic_load(&c->broken)) {
		atomic_fetch_add(&c->dropped, b->n_puts);
		return;
	}
	if (c->eff_cap < c->cap && cache_now() - c->eff_cap_since >= CACHE_CAP_RETRY_S)
		c->eff_cap = c->cap;
	if (b->n_puts && b->put_bytes > c->eff_cap) {
		cache_batch_drop(c, b, ENOSPC, "storage full");
		b->n_puts = 0;
	}
	target = c->eff_cap - (b->n_puts ? b->put_bytes : 0);
	bytes = atomic_load(&c->bytes);
	if (b->n_drops || b->n_touch || bytes > target) {
		rc = cache_check_rc(c, cache_txn_prepare(c, b, target), "evict");
		if (rc != 0) {
			if (b->n_puts)
				cache_batch_drop(c, b, rc, "eviction failed");
			else if (cache_log_due(&c->log_batch_t))
				dms_log(LOG_WARNING, "cache: eviction/LRU update "
				        "failed: %s", mdb_strerror(rc));
			if (cache_rc_storage(rc))
				cache_lower_cap(c);
			return;
		}
	}
	if (!b->n_puts)
		return;
	rc = cache_check_rc(c, cache_txn_insert(c, b), "insert");
	if (rc == MDB_MAP_FULL) {
		/* Free a further quarter of the cap, committed, and retry. */
		uint64_t harder = target > c->cap / 4 ? target - c->cap / 4 : 0;
		struct cache_batch none = { 0 };

		dms_log(LOG_WARNING, "cache: map full; evicting down to %"
		        PRIu64 " bytes and retrying", harder);
		rc = cache_check_rc(c, cache_txn_prepare(c, &none, harder), "evict");
		if (rc == 0)
			rc = cache_check_rc(c, cache_txn_insert(c, b), "insert");
	}
	if (rc != 0) {
		cache_batch_drop(c, b, rc, "commit failed");
		if (cache_rc_storage(rc))
			cache_lower_cap(c);
	}
}

/* Takes the next batch off the queue and the touch set.  Called with
 * c->lock held. */
static void cache_batch_take(struct cache *c, struct cache_batch *b)
{
	struct cache_item *it;

	b->items = b->last = NULL;
	b->n_puts = b->n_drops = 0;
	b->put_bytes = b->held_bytes = 0;
	while ((it = c->head) != NULL) {
		if (it->type == CACHE_ITEM_PUT && b->n_puts > 0 &&
		    (b->n_puts >= CACHE_BATCH_PUTS ||
		     b->put_bytes + it->len > c->batch_bytes))
			break;
		c->head = it->next;
		if (!c->head)
			c->tail = NULL;
		it->next = NULL;
		if (b->last)
			b->last->next = it;
		else
			b->items = it;
		b->last = it;
		if (it->type == CACHE_ITEM_PUT) {
			b->n_puts++;
			b->put_bytes += it->len;
			b->held_bytes += it->len;
		} else {
			b->n_drops++;
			c->n_drops--;
		}
	}
	b->n_touch = 0;
	for (unsigned i = 0; i < CACHE_TOUCH_SLOTS && c->n_touch; i++) {
		if (!c->touch[i].used)
			continue;
		if (b->touch)  /* else (no memory) the touch is forgotten */
			memcpy(b->touch[b->n_touch++], c->touch[i].key,
			       CACHE_KEY_LEN);
		c->touch[i].used = false;
		c->n_touch--;
	}
}

/* Called with c->lock held. */
static bool cache_has_work(const struct cache *c, bool touch_due)
{
	return c->head || c->iter_want > c->iter_started ||
	       c->n_touch >= CACHE_TOUCH_WAKE || (touch_due && c->n_touch);
}

/* The daemon's resident set would otherwise grow with every value read or
 * written through LMDB's map (B-tree walks fault pages in, and the kernel
 * maps up to 64 KiB around each fault).  The map is read-only and shared,
 * so dropping its page-table entries never loses data: the pages stay in
 * the page cache and a reader simply faults them in again.  Each time this
 * much has gone through the map, all of it is dropped.  Every put walks
 * the B-tree: a few faults, each mapping up to 64 KiB of the freshly
 * written pages around it, so each counts CACHE_WALK_BYTES besides its
 * value.  Measured with 32 cold readers of 64 KiB blocks: the
 * value bytes alone and 32 MiB let the map reach 83 MB of the daemon's
 * VmHWM; counted this way and 16 MiB, about 20-35 MB.  Each drop is a TLB
 * shootdown on every thread: more often cost warm readers a third of
 * their speed. */
#define CACHE_UNMAP_EVERY (16ull << 20)
#define CACHE_WALK_BYTES (512u << 10)
/* A miss walks the pages the last stores mapped already; counting it like
 * a store made the drops (each a TLB shootdown on every thread) cost a
 * cold sequential reader half its speed. */
#define CACHE_MISS_WALK_BYTES (16u << 10)

static void cache_unmap_after(struct cache *c, uint64_t bytes)
{
	uint64_t seen = atomic_fetch_add(&c->mapped_bytes, bytes) + bytes;

	if (seen < CACHE_UNMAP_EVERY || !c->map_len)
		return;
	atomic_store(&c->mapped_bytes, 0);
	madvise(c->map_addr, c->map_len, MADV_DONTNEED);
}

/* Finds LMDB's map of data.mdb in /proc/self/maps (LMDB does not say where
 * it is unless the map is fixed).  Leaves it unknown (no unmapping) if it
 * cannot be found. */
static void cache_find_map(struct cache *c)
{
	char path[PATH_MAX], line[PATH_MAX + 256];
	unsigned long long start, end, ino;
	struct stat st;
	FILE *f;

	if (cache_path(c, CACHE_DATA_FILE, path, sizeof(path)) != 0 ||
	    stat(path, &st) != 0)
		return;
	f = fopen("/proc/self/maps", "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%llx-%llx %*s %*s %*s %llu", &start, &end,
		           &ino) == 3 && ino == (unsigned long long)st.st_ino &&
		    strstr(line, CACHE_DATA_FILE)) {
			c->map_addr = (void *)(uintptr_t)start;
			c->map_len = (size_t)(end - start);
			break;
		}
	}
	fclose(f);
}

static void *cache_writer_main(void *arg)
{
	struct cache *c = arg;
	struct cache_batch b = { 0 };
	bool touch_due = false;

	b.touch = malloc(sizeof(*b.touch) * CACHE_TOUCH_SLOTS);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		uint64_t iter, last_id;

		while (!cache_has_work(c, touch_due || c->stop)) {
			if (c->stop)
				goto out;
			c->writer_waiting = true;
			if (c->n_touch) {
				struct timespec ts;

				clock_gettime(CLOCK_MONOTONIC, &ts);
				ts.tv_sec += CACHE_TOUCH_DELAY_S;
				if (pthread_cond_timedwait(&c->wake, &c->lock,
				                           &ts) == ETIMEDOUT)
					touch_due = true;
			} else {
				pthread_cond_wait(&c->wake, &c->lock);
			}
			c->writer_waiting = false;
		}
		touch_due = false;
		cache_batch_take(c, &b);
		iter = ++c->iter_started;
		pthread_mutex_unlock(&c->lock);

		cache_batch_apply(c, &b);
		/* An LRU touch rewrites two small trees: the same walks as
		 * a put's, without the value. */
		cache_unmap_after(c, b.put_bytes +
		                  (uint64_t)(b.n_puts + b.n_touch) *
		                  CACHE_WALK_BYTES);
		last_id = b.last ? b.last->id : 0;
		while (b.items) {
			struct cache_item *it = b.items;

			b.items = it->next;
			free(it);
		}

		pthread_mutex_lock(&c->lock);
		c->pending_bytes -= b.held_bytes;
		if (last_id)
			c->done_id = last_id;
		c->iter_done = iter;
		pthread_cond_broadcast(&c->done);
	}
out:
	pthread_mutex_unlock(&c->lock);
	free(b.touch);
	return NULL;
}

/* Appends it to the writer's queue and wakes the writer; c->lock held. */
static void cache_enqueue_locked(struct cache *c, struct cache_item *it)
{
	it->id = ++c->enq_id;
	if (c->tail)
		c->tail->next = it;
	else
		c->head = it;
	c->tail = it;
	if (c->writer_waiting)
		pthread_cond_signal(&c->wake);
}

/* ---- public: blocks --------------------------------------------------- */

void cache_block_put(struct cache *c, const struct cache_fid *fid,
                     uint64_t index, const void *data, size_t len)
{
	struct cache_item *it;
	struct cache_bhdr h;
	bool room;

	if (!c || !fid || (!data && len))
		return;
	if (len > CACHE_BLOCK_MAX || len > c->cap || atomic_load(&c->broken)) {
		atomic_fetch_add(&c->dropped, 1);
		if (len > CACHE_BLOCK_MAX && cache_log_due(&c->log_drop_t))
			dms_log(LOG_WARNING, "cache: block of %zu bytes is over "
			        "the %u byte limit; not stored", len, CACHE_BLOCK_MAX);
		return;
	}
	pthread_mutex_lock(&c->lock);
	/* A full queue means blocks arrive faster than LMDB stores them: wait
	 * a little for the writer, so that a fast reader slows to the speed
	 * of the cache instead of leaving what it read uncached. */
	if (c->pending_bytes + len > CACHE_QUEUE_MAX_BYTES && !c->stop) {
		struct timespec deadline;

		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += CACHE_PUT_WAIT_S;
		while (!c->stop &&
		       c->pending_bytes + len > CACHE_QUEUE_MAX_BYTES &&
		       pthread_cond_timedwait(&c->done, &c->lock, &deadline) == 0)
			;
	}
	room = !c->stop && c->pending_bytes + len <= CACHE_QUEUE_MAX_BYTES;
	if (room)
		c->pending_bytes += len;
	pthread_mutex_unlock(&c->lock);
	if (!room) {
		atomic_fetch_add(&c->dropped, 1);
		if (cache_log_due(&c->log_drop_t))
			dms_log(LOG_NOTICE, "cache: write queue full (%llu bytes); "
			        "dropping puts (%" PRIu64 " dropped so far)",
			        CACHE_QUEUE_MAX_BYTES, atomic_load(&c->dropped));
		return;
	}

	it = malloc(sizeof(*it) + sizeof(h) + len);
	if (!it) {
		pthread_mutex_lock(&c->lock);
		c->pending_bytes -= len;
		pthread_mutex_unlock(&c->lock);
		atomic_fetch_add(&c->dropped, 1);
		return;
	}
	it->next = NULL;
	it->type = CACHE_ITEM_PUT;
	it->len = len;
	cache_make_key(it->key, fid, index);
	h.magic = CACHE_BLOCK_MAGIC;
	h.len = (uint32_t)len;
	h.sum = cache_block_sum(it->key, data, len);
	memcpy(it->val, &h, sizeof(h));
	if (len)
		memcpy(it->val + sizeof(h), data, len);

	pthread_mutex_lock(&c->lock);
	cache_enqueue_locked(c, it);
	pthread_mutex_unlock(&c->lock);
}

/* Queues the deletion of a block a reader found bad. */
static void cache_queue_drop(struct cache *c, const unsigned char *key,
                             size_t want_len)
{
	struct cache_item *it = malloc(sizeof(*it));

	if (!it)
		return;
	it->next = NULL;
	it->type = CACHE_ITEM_DROP;
	it->len = want_len;
	memcpy(it->key, key, CACHE_KEY_LEN);
	pthread_mutex_lock(&c->lock);
	if (c->stop || c->n_drops >= CACHE_DROPS_MAX) {
		pthread_mutex_unlock(&c->lock);
		free(it);  /* the next reader finds it bad again */
		return;
	}
	c->n_drops++;
	cache_enqueue_locked(c, it);
	pthread_mutex_unlock(&c->lock);
}

/* Records a hit for the writer's next round (deduplicated, bounded). */
static void cache_queue_touch(struct cache *c, const unsigned char *key)
{
	uint64_t h = XXH3_64bits(key, CACHE_KEY_LEN);

	pthread_mutex_lock(&c->lock);
	if (c->n_touch >= CACHE_TOUCH_SLOTS / 2)
		goto out;  /* rate limit: the writer is behind */
	for (unsigned p = 0; p < 8; p++) {
		struct cache_touch_slot *s =
			&c->touch[(h + p) & (CACHE_TOUCH_SLOTS - 1)];

		if (!s->used) {
			s->used = true;
			memcpy(s->key, key, CACHE_KEY_LEN);
			if (++c->n_touch >= CACHE_TOUCH_WAKE && c->writer_waiting)
				pthread_cond_signal(&c->wake);
			goto out;
		}
		if (memcmp(s->key, key, CACHE_KEY_LEN) == 0)
			goto out;  /* already queued */
	}
out:
	pthread_mutex_unlock(&c->lock);
}

int cache_block_get(struct cache *c, const struct cache_fid *fid,
                    uint64_t index, size_t block_len, size_t off, size_t len,
                    void *buf)
{
	unsigned char key[CACHE_KEY_LEN];
	MDB_val k = { CACHE_KEY_LEN, key }, v;
	MDB_txn *txn = NULL;
	const char *bad = NULL;
	char why[64], ks[64];
	bool touch = false;
	size_t stored_len = 0;
	int rc;

	if (!c || !fid || (!buf && len) || off > block_len ||
	    len > block_len - off)
		return -EINVAL;
	if (atomic_load(&c->broken)) {
		rc = -ENOENT;
		goto out;
	}
	cache_make_key(key, fid, index);
	rc = cache_rtxn_get(c, &txn);
	if (rc != 0)
		goto out;
	rc = cache_check_rc(c, mdb_get(txn, c->dbi_blocks, &k, &v), "get");
	if (rc == MDB_NOTFOUND) {
		cache_unmap_after(c, CACHE_MISS_WALK_BYTES);
		rc = -ENOENT;
		goto out;
	}
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: get %s: %s",
		        cache_key_str(key, ks, sizeof(ks)), mdb_strerror(rc));
		rc = cache_rc_bad_file(rc) ? -ENOENT : cache_errno(rc);
		goto out;
	}
	if (off == 0 && len == block_len &&
	    cache_block_pread(c, key, &v, block_len, buf, why, sizeof(why),
	                      &bad) == 0) {
		/* The value's pages are not mapped (read with preadv), but
		 * the walks of both trees fault pages in, each with up to
		 * 64 KiB of neighbours, block data included: a warm 1 GiB
		 * read uncounted left ~190 MB of the map resident. */
		cache_unmap_after(c, CACHE_MISS_WALK_BYTES);
		if (bad) {
			stored_len = v.mv_size;
			rc = -ENOENT;
			goto out;
		}
	} else {
		bad = cache_block_check(key, &v, block_len, why, sizeof(why));
		if (bad) {
			stored_len = v.mv_size;
			rc = -ENOENT;
			goto out;
		}
		if (len)
			memcpy(buf, (const unsigned char *)v.mv_data +
			       sizeof(struct cache_bhdr) + off, len);
		cache_unmap_after(c, v.mv_size);
	}
	/* LRU: only blocks outside the newest quarter need a touch. */
	if (mdb_get(txn, c->dbi_atime, &k, &v) == 0 && v.mv_size == 8) {
		uint64_t seq = cache_get_be64(v.mv_data);
		uint64_t next = atomic_load_explicit(&c->next_seq,
		                                     memory_order_relaxed);
		uint64_t n = atomic_load_explicit(&c->blocks,
		                                  memory_order_relaxed);
		uint64_t age = next > seq ? next - 1 - seq : 0;

		touch = age * 4 >= n && age > 0;
	}
	rc = 0;
out:
	if (txn)
		cache_rtxn_put(c, txn);
	if (bad) {
		atomic_fetch_add(&c->corrupt, 1);
		dms_log(LOG_WARNING, "cache: block %s (%zu byte record) dropped: "
		        "%s", cache_key_str(key, ks, sizeof(ks)), stored_len, bad);
		cache_queue_drop(c, key, block_len);
	}
	if (touch)
		cache_queue_touch(c, key);
	if (rc == 0)
		atomic_fetch_add_explicit(&c->hits, 1, memory_order_relaxed);
	else if (rc == -ENOENT)
		atomic_fetch_add_explicit(&c->misses, 1, memory_order_relaxed);
	return rc;
}

void cache_flush(struct cache *c)
{
	uint64_t target, want;

	if (!c)
		return;
	pthread_mutex_lock(&c->lock);
	target = c->enq_id;
	want = c->iter_started + 1;
	if (c->iter_want < want)
		c->iter_want = want;
	if (c->writer_waiting)
		pthread_cond_signal(&c->wake);
	while (c->writer_started && (c->done_id < target || c->iter_done < want))
		pthread_cond_wait(&c->done, &c->lock);
	pthread_mutex_unlock(&c->lock);
}

void cache_get_stats(struct cache *c, struct cache_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (!c)
		return;
	st->bytes = atomic_load(&c->bytes);
	st->blocks = atomic_load(&c->blocks);
	st->hits = atomic_load(&c->hits);
	st->misses = atomic_load(&c->misses);
	st->corrupt = atomic_load(&c->corrupt);
	st->evicted = atomic_load(&c->evicted);
	st->dropped = atomic_load(&c->dropped);
	st->cap = c->cap;
	st->pinned = atomic_load(&c->pin_stored);
	st->pinned_size = atomic_load(&c->pin_size);
	st->pins = atomic_load(&c->pin_count);
}

uint64_t cache_pinned_bytes(struct cache *c)
{
	return c ? atomic_load(&c->pin_stored) : 0;
}

/* ---- public: metadata ------------------------------------------------- */

/* The LMDB key for a metadata key: 'k' || key, or 'h' || XXH3_128(key). */
static size_t cache_meta_key(const char *key, size_t klen, unsigned char *out)
{
	XXH128_canonical_t h;

	if (klen <= CACHE_META_INLINE_KEY) {
		out[0] = 'k';
		memcpy(out + 1, key, klen);
		return klen + 1;
	}
	XXH128_canonicalFromHash(&h, XXH3_128bits(key, klen));
	out[0] = 'h';
	memcpy(out + 1, h.digest, sizeof(h.digest));
	return 1 + sizeof(h.digest);
}

/* Checks a stored metadata record: 0 good, 1 a different key (hash
 * collision: a plain miss), -1 corrupt (*why says how). */
static int cache_meta_check(const MDB_val *v, const char *key, size_t klen,
                            const char **why)
{
	struct cache_mhdr h;
	const unsigned char *p = v->mv_data;

	*why = NULL;
	if (v->mv_size < sizeof(h)) {
		*why = "record shorter than its header";
		return -1;
	}
	memcpy(&h, p, sizeof(h));
	if (h.magic != CACHE_META_MAGIC) {
		*why = "bad magic";
		return -1;
	}
	if (h.key_len > v->mv_size - sizeof(h) ||
	    h.val_len != v->mv_size - sizeof(h) - h.key_len) {
		*why = "lengths differ from record length";
		return -1;
	}
	if (h.sum != cache_meta_sum(&h, p + sizeof(h), p + sizeof(h) + h.key_len)) {
		*why = "checksum mismatch";
		return -1;
	}
	if (h.key_len != klen || memcmp(p + sizeof(h), key, klen) != 0)
		return 1;
	return 0;
}

/* Deletes a corrupt metadata record if it is still corrupt. */
static void cache_meta_drop(struct cache *c, const unsigned char *mk,
                            size_t mklen, const char *key, size_t klen)
{
	MDB_val k = { mklen, (void *)mk }, v;
	MDB_txn *txn = NULL;
	const char *why;
	int rc;

	rc = mdb_txn_begin(c->env, NULL, 0, &txn);
	if (rc != 0)
		goto out;
	rc = mdb_get(txn, c->dbi_meta, &k, &v);
	if (rc != 0 || cache_meta_check(&v, key, klen, &why) >= 0)
		goto out;
	rc = mdb_del(txn, c->dbi_meta, &k, NULL);
	if (rc != 0)
		goto out;
	rc = mdb_txn_commit(txn);
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	if (rc != 0 && rc != MDB_NOTFOUND)
		dms_log(LOG_WARNING, "cache: could not delete a corrupt metadata "
		        "record: %s", mdb_strerror(cache_check_rc(c, rc, "meta")));
}

int cache_meta_get(struct cache *c, const char *key, void **val, size_t *len)
{
	unsigned char mk[1 + CACHE_META_INLINE_KEY];
	MDB_val k, v;
	MDB_txn *txn = NULL;
	const char *why = NULL;
	void *copy = NULL;
	size_t klen, n = 0;
	int rc;

	if (val)
		*val = NULL;
	if (len)
		*len = 0;
	if (!c || !key || !val || !len)
		return -EINVAL;
	if (atomic_load(&c->broken))
		return -ENOENT;
	klen = strlen(key);
	k.mv_size = cache_meta_key(key, klen, mk);
	k.mv_data = mk;
	rc = cache_rtxn_get(c, &txn);
	if (rc != 0)
		goto out;
	rc = cache_check_rc(c, mdb_get(txn, c->dbi_meta, &k, &v), "meta get");
	if (rc != 0) {
		if (rc != MDB_NOTFOUND)
			dms_log(LOG_ERR, "cache: meta get: %s", mdb_strerror(rc));
		rc = (rc == MDB_NOTFOUND || cache_rc_bad_file(rc)) ? -ENOENT :
		     cache_errno(rc);
		goto out;
	}
	rc = cache_meta_check(&v, key, klen, &why);
	if (rc != 0) {
		rc = -ENOENT;
		goto out;
	}
	{
		struct cache_mhdr h;

		memcpy(&h, v.mv_data, sizeof(h));
		n = (size_t)h.val_len;
		copy = malloc(n ? n : 1);
		if (!copy) {
			rc = -ENOMEM;
			goto out;
		}
		memcpy(copy, (const unsigned char *)v.mv_data + sizeof(h) +
		       h.key_len, n);
	}
	*val = copy;
	*len = n;
	rc = 0;
	cache_unmap_after(c, v.mv_size + CACHE_MISS_WALK_BYTES);
out:
	if (txn)
		cache_rtxn_put(c, txn);
	if (why) {
		atomic_fetch_add(&c->corrupt, 1);
		dms_log(LOG_WARNING, "cache: metadata record for key of %zu "
		        "bytes (\"%.64s\") dropped: %s", klen, key, why);
		cache_meta_drop(c, mk, k.mv_size, key, klen);
	}
	return rc;
}

int cache_meta_put(struct cache *c, const char *key, const void *val,
                   size_t len)
{
	unsigned char mk[1 + CACHE_META_INLINE_KEY];
	MDB_val k, v;
	MDB_txn *txn = NULL;
	struct cache_mhdr h;
	unsigned char *rec = NULL;
	size_t klen;
	int rc;

	if (!c || !key || (!val && len))
		return -EINVAL;
	if (len > CACHE_META_MAX)
		return -EFBIG;
	if (atomic_load(&c->broken))
		return -EIO;
	klen = strlen(key);
	if (klen > UINT32_MAX || klen > CACHE_META_MAX)
		return -ENAMETOOLONG;
	k.mv_size = cache_meta_key(key, klen, mk);
	k.mv_data = mk;
	/* Build the record before the write transaction. */
	rec = malloc(sizeof(h) + klen + len);
	if (!rec)
		return -ENOMEM;
	h.magic = CACHE_META_MAGIC;
	h.key_len = (uint32_t)klen;
	h.val_len = len;
	h.sum = cache_meta_sum(&h, key, val ? val : "");
	memcpy(rec, &h, sizeof(h));
	memcpy(rec + sizeof(h), key, klen);
	if (len)
		memcpy(rec + sizeof(h) + klen, val, len);
	v.mv_size = sizeof(h) + klen + len;
	v.mv_data = rec;

	rc = mdb_txn_begin(c->env, NULL, 0, &txn);
	if (rc != 0)
		goto out;
	rc = mdb_put(txn, c->dbi_meta, &k, &v, 0);
	if (rc != 0)
		goto out;
	rc = mdb_txn_commit(txn);
	txn = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	free(rec);
	if (rc != 0) {
		dms_log(LOG_WARNING, "cache: meta put (%zu byte value): %s", len,
		        mdb_strerror(cache_check_rc(c, rc, "meta put")));
		rc = cache_errno(rc);
	}
	return rc;
}

/* ---- open and close --------------------------------------------------- */

/* Creates the missing folders above dir, each 0700 (mkdir -p).  Only for
 * the default path: the parent of a cache_dir someone chose is theirs to
 * make. */
static int cache_mkdir_parents(const char *dir)
{
	char p[PATH_MAX];
	size_t n = strlen(dir);
	int rc = 0;

	if (n >= sizeof(p)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	memcpy(p, dir, n + 1);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/' || s[-1] == '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) == 0) {
			dms_log(LOG_NOTICE, "cache: created %s (mode 0700)", p);
			/* Ours: the umask must not leave it unusable. */
			if (chmod(p, 0700) != 0)
				rc = -errno;
		} else if (errno != EEXIST) {
			rc = -errno;
		}
		if (rc != 0) {
			dms_log(LOG_ERR, "cache: cannot create %s: %s", p,
			        strerror(-rc));
			break;
		}
		*s = '/';
	}
out:
	return rc;
}

/* Creates (0700) or checks the cache directory.  The directory itself is
 * looked at with lstat: a symbolic link is refused, not followed.  The mode
 * of a directory dmsfs did not create is never changed: one that group or
 * others can use is refused. */
static int cache_dir_prepare(const char *dir, bool make_parents)
{
	struct stat st;
	int rc = 0;

	if (lstat(dir, &st) != 0) {
		if (errno != ENOENT) {
			rc = -errno;
			goto fail;
		}
		if (make_parents) {
			rc = cache_mkdir_parents(dir);
			if (rc != 0)
				goto out;
		}
		if (mkdir(dir, 0700) == 0) {
			if (chmod(dir, 0700) != 0) {
				rc = -errno;
				goto fail;
			}
		} else if (errno != EEXIST) {
			rc = -errno;
			goto fail;
		}
		if (lstat(dir, &st) != 0) {
			rc = -errno;
			goto fail;
		}
	}
	if (S_ISLNK(st.st_mode)) {
		char to[PATH_MAX];
		ssize_t n = readlink(dir, to, sizeof(to) - 1);

		to[n > 0 ? n : 0] = '\0';
		dms_log(LOG_ERR, "cache: cache_dir %s is a symbolic link (to %s); "
		        "dmsfs does not follow links for its cache: give the "
		        "directory itself", dir, to);
		rc = -ELOOP;
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = -ENOTDIR;
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		dms_log(LOG_ERR, "cache: directory %s belongs to uid %u, not to "
		        "this process (uid %u)", dir, (unsigned)st.st_uid,
		        (unsigned)geteuid());
		rc = -EACCES;
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		dms_log(LOG_ERR, "cache: directory %s is open to group or others "
		        "(mode %04o); the cache must be private and dmsfs does "
		        "not change the mode of a directory it did not create: "
		        "run chmod 700 %s, or give a cache_dir that does not "
		        "exist yet (it is created 0700)", dir,
		        (unsigned)(st.st_mode & 07777), dir);
		rc = -EACCES;
		goto out;
	}
	if (access(dir, W_OK | X_OK) != 0) {
		rc = -errno;
		goto fail;
	}
	goto out;
fail:
	dms_log(LOG_ERR, "cache: directory %s unusable: %s", dir, strerror(-rc));
out:
	return rc;
}

/* Only a regular file is tightened: chmod would follow a link. */
static void cache_file_tighten(const struct cache *c, const char *name)
{
	char path[PATH_MAX];
	struct stat st;

	if (cache_path(c, name, path, sizeof(path)) == 0 &&
	    lstat(path, &st) == 0 && S_ISREG(st.st_mode) &&
	    (st.st_mode & 077) != 0 && chmod(path, 0600) != 0)
		dms_log(LOG_WARNING, "cache: chmod 0600 %s: %s", path,
		        strerror(errno));
}

/* Opens a file of the cache directory: never through a symbolic link,
 * never blocking on a FIFO, and only if it is a regular file.  A new file
 * (O_CREAT) is created 0600.  Returns the descriptor or -errno (-EINVAL for
 * a file of another type). */
static int cache_open_reg(const char *path, int flags)
{
	struct stat st;
	int fd, rc;

	fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (fstat(fd, &st) != 0)
		rc = -errno;
	else if (!S_ISREG(st.st_mode))
		rc = -EINVAL;
	else
		rc = fd;
	if (rc < 0)
		close(fd);
out:
	return rc;
}

/* With MDB_NOSYNC, a data file left open across a system crash may be
 * inconsistent: true if the marker says it was open in another boot. */
static bool cache_crashed_open(const struct cache *c)
{
	char path[PATH_MAX];
	bool crashed;
	int fd;

	if (!(CACHE_ENV_FLAGS & MDB_NOSYNC))
		return false;
	if (cache_path(c, CACHE_OPEN_MARK, path, sizeof(path)) != 0)
		return false;
	fd = cache_open_reg(path, O_RDONLY);
	if (fd < 0)
		return false;
	crashed = cache_mark_other_boot(fd);
	close(fd);
	return crashed;
}

/* Writes the marker ("open <boot id>" or "clean") and syncs it. */
static int cache_mark(const struct cache *c, bool open_now)
{
	char path[PATH_MAX];
	int fd, rc = 0;
	bool created;

	rc = cache_path(c, CACHE_OPEN_MARK, path, sizeof(path));
	if (rc != 0)
		return rc;
	fd = cache_open_reg(path, O_WRONLY);
	created = fd == -ENOENT;
	if (created)
		fd = cache_open_reg(path, O_WRONLY | O_CREAT | O_EXCL);
	if (fd < 0)
		return fd;
	rc = cache_mark_write(fd, open_now);
	close(fd);
	if (rc != 0 || !created)
		return rc;
	/* Make the new name durable too. */
	fd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Renames from to to, replacing an older to of any type (an empty
 * directory included).  Whatever is at from is moved, never followed. */
static int cache_rename_aside(const char *from, const char *to)
{
	struct stat st;
	int rc = 0;

	if (rename(from, to) == 0 || errno == ENOENT)
		goto out;
	/* An older to of another type is in the way: remove it, once. */
	if ((errno == EISDIR || errno == ENOTDIR || errno == ENOTEMPTY ||
	     errno == EEXIST) && lstat(to, &st) == 0 &&
	    (S_ISDIR(st.st_mode) ? rmdir(to) : unlink(to)) == 0 &&
	    (rename(from, to) == 0 || errno == ENOENT))
		goto out;
	rc = -errno;
	dms_log(LOG_ERR, "cache: cannot move %s aside to %s: %s; move or "
	        "remove them by hand", from, to, strerror(errno));
out:
	return rc;
}

/* Moves an unusable data file to data.mdb.bad (replacing an older one). */
static int cache_set_aside(const struct cache *c, const char *why)
{
	char data[PATH_MAX], bad[PATH_MAX], lock[PATH_MAX], mark[PATH_MAX];
	int rc;

	rc = cache_path(c, CACHE_DATA_FILE, data, sizeof(data));
	if (rc == 0)
		rc = cache_path(c, CACHE_BAD_FILE, bad, sizeof(bad));
	if (rc == 0)
		rc = cache_path(c, CACHE_LOCK_FILE, lock, sizeof(lock));
	if (rc == 0)
		rc = cache_path(c, CACHE_BROKEN_MARK, mark, sizeof(mark));
	if (rc != 0)
		return rc;
	dms_log(LOG_WARNING, "cache: %s: %s; moving it to %s and starting "
	        "an empty cache", data, why, bad);
	rc = cache_rename_aside(data, bad);
	if (rc != 0)
		return rc;
	if (unlink(lock) != 0 && errno != ENOENT)
		dms_log(LOG_WARNING, "cache: unlink %s: %s", lock, strerror(errno));
	if (unlink(mark) != 0 && errno != ENOENT)
		dms_log(LOG_WARNING, "cache: unlink %s: %s", mark, strerror(errno));
	return 0;
}

static const char *cache_ftype(mode_t m)
{
	return S_ISLNK(m) ? "a symbolic link" : S_ISFIFO(m) ? "a FIFO" :
	       S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket" :
	       S_ISCHR(m) || S_ISBLK(m) ? "a device" : "not a regular file";
}

/* Checks data.mdb against its meta pages (cache_i.h) and sets it aside if
 * LMDB could not map it safely.  *size: the size of the data file kept. */
static int cache_data_check(struct cache *c, uint64_t *size)
{
	struct cache_lmdb_meta m;
	char path[PATH_MAX], why[256];
	struct stat st;
	int fd = -1, rc;

	*size = 0;
	rc = cache_path(c, CACHE_DATA_FILE, path, sizeof(path));
	if (rc != 0)
		goto out;
	fd = cache_open_reg(path, O_RDONLY);
	if (fd == -ENOENT) {
		rc = 0;
		goto out;
	}
	if (fd < 0) {
		snprintf(why, sizeof(why), "cannot be opened: %s",
		         strerror(-fd));
	} else if (fstat(fd, &st) != 0) {
		snprintf(why, sizeof(why), "fstat: %s", strerror(errno));
	} else {
		rc = cache_lmdb_check(fd, (uint64_t)st.st_size, &m, why,
		                      sizeof(why));
		if (rc == 0) {
			*size = (uint64_t)st.st_size;
			goto out;
		}
		if (rc != -EILSEQ)
			snprintf(why, sizeof(why), "cannot be read: %s",
			         strerror(-rc));
	}
	rc = cache_set_aside(c, why);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

/* LMDB opens data.mdb and lock.mdb by name, following links and blocking on
 * a FIFO; the marker is opened by name too.  Anything but a regular file at
 * one of those names is moved aside (NAME.bad) before any of them is opened,
 * so the cache never writes through a link out of its directory. */
static int cache_files_check(struct cache *c)
{
	static const char *const names[] = {
		CACHE_LOCK_FILE, CACHE_OPEN_MARK, CACHE_BROKEN_MARK,
		CACHE_DATA_FILE,
	};
	char path[PATH_MAX], bad[PATH_MAX], why[64];
	struct stat st;
	int rc = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		rc = cache_path(c, names[i], path, sizeof(path));
		if (rc != 0)
			break;
		if (lstat(path, &st) != 0) {
			if (errno == ENOENT)
				continue;
			rc = -errno;
			dms_log(LOG_ERR, "cache: %s: %s", path, strerror(errno));
			break;
		}
		if (S_ISREG(st.st_mode))
			continue;
		snprintf(why, sizeof(why), "is %s", cache_ftype(st.st_mode));
		if (strcmp(names[i], CACHE_DATA_FILE) == 0) {
			rc = cache_set_aside(c, why);
		} else {
			rc = snprintf(bad, sizeof(bad), "%s.bad", path) >=
			     (int)sizeof(bad) ? -ENAMETOOLONG : 0;
			if (rc == 0) {
				dms_log(LOG_WARNING, "cache: %s %s; moving it to "
				        "%s", path, why, bad);
				rc = cache_rename_aside(path, bad);
			}
		}
		if (rc != 0)
			break;
	}
	return rc;
}

/* Recomputes the totals with one pass over the block keys (sizes come from
 * the B-tree nodes); blocks without an LRU entry get one. */
/* Makes room for one more element of size elem in *v (n used of *cap):
 * doubles it from 64.  0, or ENOMEM (an LMDB-style positive code). */
static int cache_grow(void **v, size_t n, size_t *cap, size_t elem)
{
	size_t nc = *cap ? *cap * 2 : 64;
	void *p;

	if (n < *cap)
		return 0;
	p = realloc(*v, nc * elem);
	if (!p)
		return ENOMEM;
	*v = p;
	*cap = nc;
	return 0;
}

static int cache_totals_rebuild(struct cache *c, MDB_txn *txn,
                                struct cache_totals *t)
{
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	unsigned char (*orphans)[CACHE_KEY_LEN] = NULL;
	size_t n_orphans = 0, cap_orphans = 0;
	int rc;

	cache_totals_fresh(t);
	rc = mdb_cursor_open(txn, c->dbi_lru, &cur);
	if (rc != 0)
		goto out;
	rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
	if (rc == 0 && k.mv_size == 8)
		t->next_seq = cache_get_be64(k.mv_data) + 1;
	else if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	mdb_cursor_close(cur);
	cur = NULL;

	rc = mdb_cursor_open(txn, c->dbi_blocks, &cur);
	if (rc != 0)
		goto out;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		MDB_val av;

		t->blocks++;
		if (v.mv_size > sizeof(struct cache_bhdr))
			t->bytes += v.mv_size - sizeof(struct cache_bhdr);
		if (k.mv_size != CACHE_KEY_LEN)
			continue;
		if (mdb_get(txn, c->dbi_atime, &k, &av) == 0 ||
		    cache_fid_pinned(c, txn, k.mv_data))
			continue;
		rc = cache_grow((void **)&orphans, n_orphans, &cap_orphans,
		                sizeof(*orphans));
		if (rc != 0)
			goto out;
		memcpy(orphans[n_orphans++], k.mv_data, CACHE_KEY_LEN);
	}
	if (rc != MDB_NOTFOUND)
		goto out;
	mdb_cursor_close(cur);
	cur = NULL;
	rc = 0;
	for (size_t i = 0; i < n_orphans && rc == 0; i++)
		rc = cache_lru_set(c, txn, t, orphans[i]);
out:
	if (cur)
		mdb_cursor_close(cur);
	free(orphans);
	return rc;
}

/* Opens the DBIs and loads (or repairs) the totals.  LMDB result codes. */
static int cache_db_init(struct cache *c)
{
	static const struct { const char *name; size_t off; } dbs[] = {
		{ "blocks", offsetof(struct cache, dbi_blocks) },
		{ "lru",    offsetof(struct cache, dbi_lru) },
		{ "atime",  offsetof(struct cache, dbi_atime) },
		{ "meta",   offsetof(struct cache, dbi_meta) },
		{ "info",   offsetof(struct cache, dbi_info) },
		{ "pins",   offsetof(struct cache, dbi_pins) },
		{ "pinfid", offsetof(struct cache, dbi_pinfid) },
	};
	MDB_txn *txn = NULL;
	struct cache_totals t;
	MDB_stat ms;
	int rc, st;

	rc = mdb_txn_begin(c->env, NULL, 0, &txn);
	if (rc != 0)
		goto out;
	for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
		rc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE,
		                  (MDB_dbi *)((char *)c + dbs[i].off));
		if (rc != 0)
			goto out;
	}
	st = cache_totals_read(c, txn, &t);
	if (st < 0) {
		rc = st;
		goto out;
	}
	if (st == 3) {
		dms_log(LOG_NOTICE, "cache: stored format version %" PRIu32
		        ", this is %u; emptying the cache", t.version,
		        CACHE_FORMAT_VERSION);
		MDB_dbi all[] = { c->dbi_blocks, c->dbi_lru, c->dbi_atime,
		                  c->dbi_meta, c->dbi_info, c->dbi_pins,
		                  c->dbi_pinfid };
		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
			rc = mdb_drop(txn, all[i], 0);
			if (rc != 0)
				goto out;
		}
		st = 1;
	}
	if (st == 1 || st == 2) {
		rc = mdb_stat(txn, c->dbi_blocks, &ms);
		if (rc != 0)
			goto out;
		if (ms.ms_entries == 0) {
			cache_totals_fresh(&t);
		} else {
			dms_log(LOG_WARNING, "cache: totals record %s with %zu "
			        "blocks stored; recounting (one scan)",
			        st == 1 ? "missing" : "corrupt", ms.ms_entries);
			rc = cache_totals_rebuild(c, txn, &t);
			if (rc != 0)
				goto out;
		}
	}
	rc = cache_totals_commit(c, &txn, &t, st == 1 || st == 2);
out:
	if (txn)
		mdb_txn_abort(txn);
	return rc;
}

static int cache_pin_load(struct cache *c);

/* Creates and opens the environment.  LMDB result codes. */
static int cache_env_open(struct cache *c, size_t mapsize)
{
	int rc, dead = 0;

	rc = mdb_env_create(&c->env);
	if (rc != 0) {
		c->env = NULL;
		goto out;
	}
	rc = mdb_env_set_mapsize(c->env, mapsize);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(c->env, CACHE_MAXREADERS);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(c->env, 8);
	if (rc == 0)
		rc = mdb_env_open(c->env, c->dir, CACHE_ENV_FLAGS, 0600);
	if (rc != 0)
		goto out;
	rc = mdb_reader_check(c->env, &dead);
	if (rc != 0)
		goto out;
	cache_find_map(c);
	if (dead)
		dms_log(LOG_NOTICE, "cache: cleared %d stale reader slots", dead);
	rc = cache_db_init(c);
out:
	if (rc != 0 && c->env) {
		mdb_env_close(c->env);
		c->env = NULL;
	}
	return rc;
}

/* The pid written in the lock file by the daemon holding it, or 0. */
static long cache_lock_owner(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long pid;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 ? pid : 0;
}

/* Takes cache_dir/.lock (flock, exclusive, with our pid in it for the
 * message a second daemon gets): LMDB's own lock file lets several
 * processes share an environment, but the cache's marks, set-asides and
 * journal are one daemon's.  -EBUSY if another process holds it. */
static int cache_dir_lock(const char *dir, int *fd_out)
{
	char path[PATH_MAX], pid[32];
	struct stat st;
	int fd = -1, rc = 0, n;
	long owner;

	*fd_out = -1;
	if (snprintf(path, sizeof(path), "%s/%s", dir, CACHE_DIR_LOCK) >=
	    (int)sizeof(path)) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	/* Never through a link, never blocking on a FIFO someone put there. */
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC,
	          0600);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		rc = -EPERM;
		dms_log(LOG_ERR, "cache_dir %s: %s is not a regular file of uid "
		        "%u", dir, CACHE_DIR_LOCK, (unsigned)geteuid());
		goto out_close;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		rc = -errno;
		if (rc == -EWOULDBLOCK) {
			owner = cache_lock_owner(fd);
			rc = -EBUSY;
			if (owner)
				dms_log(LOG_ERR, "cache_dir %s is in use by pid %ld (one "
				        "dmsfs per cache)", dir, owner);
			else
				dms_log(LOG_ERR, "cache_dir %s is in use by another dmsfs "
				        "(one dmsfs per cache)", dir);
			goto out_close;
		}
		goto fail;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		dms_log(LOG_WARNING, "cache_dir %s: cannot write %s: %s", dir,
		        CACHE_DIR_LOCK, strerror(errno));
	*fd_out = fd;
	return 0;
fail:
	dms_log(LOG_ERR, "cannot lock cache_dir %s (%s): %s", dir, CACHE_DIR_LOCK,
	        strerror(-rc));
out_close:
	if (fd >= 0)
		close(fd);
	return rc;
}

static void cache_free(struct cache *c)
{
	if (c->locks_ready) {
		for (int i = 0; i < c->pool_n; i++)
			mdb_txn_abort(c->pool[i]);
		c->pool_n = 0;
		pthread_mutex_destroy(&c->lock);
		pthread_mutex_destroy(&c->pool_lock);
		pthread_cond_destroy(&c->wake);
		pthread_cond_destroy(&c->done);
	}
	if (c->env)
		mdb_env_close(c->env);
	if (c->lock_fd >= 0)
		close(c->lock_fd);
	free(c->touch);
	free(c->dir);
	free(c);
}

static int cache_locks_init(struct cache *c)
{
	pthread_condattr_t ca;
	int rc;

	rc = pthread_condattr_init(&ca);
	if (rc != 0)
		return -rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(&c->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0)
		return -rc;
	if (pthread_cond_init(&c->done, NULL) != 0) {
		pthread_cond_destroy(&c->wake);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	c->locks_ready = true;
	return 0;
}

int cache_open(struct cache **out, const struct cache_opts *opts)
{
	struct cache *c = NULL;
	char path[PATH_MAX];
	struct stat st;
	uint64_t mapsize, data_size;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!opts || !opts->dir || !opts->dir[0] || opts->max_bytes == 0 ||
	    opts->max_bytes > CACHE_CAP_MAX) {
		dms_log(LOG_ERR, "cache: invalid options (dir %s, max_bytes %"
		        PRIu64 ", at most %llu)", opts && opts->dir ? opts->dir :
		        "(none)", opts ? opts->max_bytes : 0, CACHE_CAP_MAX);
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->lock_fd = -1;
	c->dir = strdup(opts->dir);
	c->touch = calloc(CACHE_TOUCH_SLOTS, sizeof(*c->touch));
	if (!c->dir || !c->touch) {
		rc = -ENOMEM;
		goto fail;
	}
	c->cap = c->eff_cap = opts->max_bytes;
	c->batch_bytes = c->cap / 8 < CACHE_BATCH_MAX_BYTES ? c->cap / 8 :
	                 CACHE_BATCH_MAX_BYTES;
	rc = cache_dir_prepare(c->dir, opts->make_parents);
	if (rc != 0)
		goto fail;
	/* Before any cache file is looked at or moved. */
	rc = cache_dir_lock(c->dir, &c->lock_fd);
	if (rc != 0)
		goto fail;
	rc = cache_files_check(c);
	if (rc != 0)
		goto fail;
	if (cache_path(c, CACHE_BROKEN_MARK, path, sizeof(path)) == 0 &&
	    lstat(path, &st) == 0) {
		rc = cache_set_aside(c, "marked corrupt during the last run");
		if (rc != 0)
			goto fail;
	} else if (cache_crashed_open(c)) {
		rc = cache_set_aside(c, "was open when the system went down "
		                     "(written without sync)");
		if (rc != 0)
			goto fail;
	}
	rc = cache_data_check(c, &data_size);
	if (rc != 0)
		goto fail;
	/* The map: 1.25 x the cap, or the existing file if it is larger (a
	 * cap lowered since), plus 256 MiB of headroom for eviction and
	 * copy-on-write.  LMDB never maps less than the file's used size, so
	 * without headroom a bigger old file would leave no room to evict. */
	mapsize = c->cap + c->cap / 4;
	if (data_size > mapsize)
		mapsize = data_size;
	mapsize += CACHE_MAP_MIN;
	/* Before the first (unsynced) write to the environment. */
	rc = cache_mark(c, true);
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: cannot write %s/%s: %s", c->dir,
		        CACHE_OPEN_MARK, strerror(-rc));
		goto fail;
	}
	for (int attempt = 0;; attempt++) {
		rc = cache_env_open(c, (size_t)mapsize);
		if (rc == 0)
			break;
		if (!cache_rc_bad_file(rc) || attempt > 0) {
			dms_log(LOG_ERR, "cache: cannot open LMDB environment in "
			        "%s: %s", c->dir, mdb_strerror(rc));
			rc = cache_errno(rc);
			goto fail;
		}
		rc = cache_set_aside(c, mdb_strerror(rc));
		if (rc != 0)
			goto fail;
	}
	cache_file_tighten(c, CACHE_DATA_FILE);
	cache_file_tighten(c, CACHE_LOCK_FILE);
	rc = cache_locks_init(c);
	if (rc != 0)
		goto fail;
	rc = cache_pin_load(c);
	if (rc != 0)
		goto fail;
	if (atomic_load(&c->bytes) > c->cap)
		c->iter_want = 1;  /* cap lowered: the writer evicts at once */
	rc = pthread_create(&c->writer, NULL, cache_writer_main, c);
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: cannot start the writer thread: %s",
		        strerror(rc));
		rc = -rc;
		goto fail;
	}
	c->writer_started = true;
	dms_log(LOG_INFO, "cache: %s: %" PRIu64 " blocks, %" PRIu64 " of %"
	        PRIu64 " bytes", c->dir, atomic_load(&c->blocks),
	        atomic_load(&c->bytes), c->cap);
	*out = c;
	return 0;
fail:
	cache_free(c);
	return rc;
}

void cache_close(struct cache *c)
{
	int rc;

	if (!c)
		return;
	if (c->writer_started) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(c->writer, NULL);
		c->writer_started = false;
	}
	for (int i = 0; i < c->pool_n; i++)
		mdb_txn_abort(c->pool[i]);
	c->pool_n = 0;
	rc = mdb_env_sync(c->env, 1);
	if (rc != 0)
		dms_log(LOG_WARNING, "cache: sync at close: %s", mdb_strerror(rc));
	mdb_env_close(c->env);
	c->env = NULL;
	/* Synced: a system crash from now on cannot hurt the file. */
	if (rc == 0) {
		rc = cache_mark(c, false);
		if (rc != 0)
			dms_log(LOG_WARNING, "cache: %s/%s: %s", c->dir,
			        CACHE_OPEN_MARK, strerror(-rc));
	}
	cache_free(c);
}

/* ---- pins ------------------------------------------------------------- */

/* A pin record; the pin key (its bytes) follows.  Read with memcpy. */
struct cache_pinrec {
	uint32_t magic;
	uint32_t uid;
	uint64_t size;
	unsigned char fid[16];
	uint32_t key_len;
	uint32_t pad;
	uint64_t sum;        /* XXH3_64 of the fields above (sum 0) and the key */
};
_Static_assert(sizeof(struct cache_pinrec) == 48, "pin record is 48 bytes");

static void cache_pin_lkey(const char *key, unsigned char *out)
{
	XXH128_canonical_t h;

	XXH128_canonicalFromHash(&h, XXH3_128bits(key, strlen(key)));
	memcpy(out, h.digest, 16);
}

static uint64_t cache_pinrec_sum(const struct cache_pinrec *r, const void *key)
{
	struct cache_pinrec z = *r;
	XXH3_state_t st;

	z.sum = 0;
	XXH3_64bits_reset(&st);
	XXH3_64bits_update(&st, &z, sizeof(z));
	XXH3_64bits_update(&st, key, r->key_len);
	return XXH3_64bits_digest(&st);
}

/* The record of a stored value: 0, or -EILSEQ if it fails its check. */
static int cache_pinrec_read(const MDB_val *v, struct cache_pinrec *r)
{
	if (v->mv_size < sizeof(*r))
		return -EILSEQ;
	memcpy(r, v->mv_data, sizeof(*r));
	if (r->magic != CACHE_PIN_MAGIC ||
	    r->key_len != v->mv_size - sizeof(*r) ||
	    r->sum != cache_pinrec_sum(r, (const char *)v->mv_data + sizeof(*r)))
		return -EILSEQ;
	return 0;
}

static bool cache_fid_pinned(struct cache *c, MDB_txn *txn,
                             const unsigned char *fid)
{
	MDB_val k = { 16, (void *)fid }, v;

	return mdb_get(txn, c->dbi_pinfid, &k, &v) == 0;
}

enum cache_pin_walk { PIN_SUM, PIN_UNLRU, PIN_RELRU, PIN_DROP, PIN_EVICT };

/* Visits the stored blocks of fid (keys fid || index): adds up their data
 * bytes into *bytes and, in a write transaction, takes them out of the LRU,
 * puts them back, or deletes them (PIN_DROP: pinned blocks, which have no
 * LRU entry; PIN_EVICT: any block, with its LRU entry).  The keys are gathered first, so no
 * cursor walks a tree that is being changed.  LMDB result codes (ENOMEM). */
static int cache_pin_walk(struct cache *c, MDB_txn *txn,
                          struct cache_totals *t, const unsigned char *fid,
                          enum cache_pin_walk what, uint64_t *bytes)
{
	unsigned char key[CACHE_KEY_LEN], (*keys)[CACHE_KEY_LEN] = NULL;
	uint64_t *lens = NULL;
	size_t n = 0, cap = 0;
	MDB_cursor *cur = NULL;
	MDB_val k = { CACHE_KEY_LEN, key }, v;
	int rc;

	memcpy(key, fid, 16);
	memset(key + 16, 0, 8);
	rc = mdb_cursor_open(txn, c->dbi_blocks, &cur);
	if (rc != 0)
		goto out;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		uint64_t len;

		if (k.mv_size != CACHE_KEY_LEN || memcmp(k.mv_data, fid, 16))
			break;
		len = v.mv_size > sizeof(struct cache_bhdr) ?
		      v.mv_size - sizeof(struct cache_bhdr) : 0;
		*bytes += len;
		if (what == PIN_SUM)
			continue;
		if (n == cap) {
			size_t kcap = cap;

			rc = cache_grow((void **)&keys, n, &kcap, sizeof(*keys));
			if (rc == 0)
				rc = cache_grow((void **)&lens, n, &cap, sizeof(*lens));
			if (rc != 0)
				goto out;
		}
		memcpy(keys[n], k.mv_data, CACHE_KEY_LEN);
		lens[n++] = len;
	}
	if (rc != MDB_NOTFOUND && rc != 0)
		goto out;
	rc = 0;
	mdb_cursor_close(cur);
	cur = NULL;
	for (size_t i = 0; i < n && rc == 0; i++) {
		MDB_val ak = { CACHE_KEY_LEN, keys[i] };

		switch (what) {
		case PIN_SUM:
			break;
		case PIN_UNLRU:
			rc = mdb_get(txn, c->dbi_atime, &ak, &v);
			if (rc == 0 && v.mv_size == 8) {
				unsigned char seq[8];
				MDB_val sk = { 8, seq };

				memcpy(seq, v.mv_data, 8);
				rc = mdb_del(txn, c->dbi_lru, &sk, NULL);
			}
			if (rc == 0 || rc == MDB_NOTFOUND)
				rc = mdb_del(txn, c->dbi_atime, &ak, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
			c->pin_delta += (int64_t)lens[i];
			break;
		case PIN_RELRU:
			rc = cache_lru_set(c, txn, t, keys[i]);
			c->pin_delta -= (int64_t)lens[i];
			break;
		case PIN_EVICT:
			/* Unpinned blocks: out of the LRU too. */
			rc = cache_block_del(c, txn, t, keys[i], lens[i] +
			                     sizeof(struct cache_bhdr));
			break;
		case PIN_DROP:
			rc = mdb_del(txn, c->dbi_blocks, &ak, NULL);
			if (rc == 0) {
				cache_totals_sub(t, lens[i] +
				                 sizeof(struct cache_bhdr));
				c->pin_delta -= (int64_t)lens[i];
			}
			break;
		}
	}
out:
	if (cur)
		mdb_cursor_close(cur);
	free(keys);
	free(lens);
	return rc;
}

static int cache_pin_count(void *arg, const struct cache_pin_info *p)
{
	uint64_t *t = arg;

	t[0]++;
	t[1] += p->size;
	t[2] += p->cached;
	return 0;
}

/* Counts the pins and the bytes of their stored blocks (at open). */
static int cache_pin_load(struct cache *c)
{
	uint64_t t[3] = { 0, 0, 0 };
	int rc = cache_pin_foreach(c, cache_pin_count, t);

	if (rc != 0)
		return rc;
	atomic_store(&c->pin_count, t[0]);
	atomic_store(&c->pin_size, t[1]);
	atomic_store(&c->pin_stored, t[2]);
	if (t[0])
		dms_log(LOG_INFO, "cache: %" PRIu64 " pins, %" PRIu64 " of %"
		        PRIu64 " bytes stored", t[0], t[2], t[1]);
	return 0;
}

int cache_pin_get(struct cache *c, const char *key, struct cache_pin_info *out)
{
	unsigned char lk[16];
	MDB_val k = { 16, lk }, v;
	struct cache_pinrec r;
	MDB_txn *txn = NULL;
	int rc;

	if (!c || !key || strlen(key) > CACHE_PIN_KEY_MAX)
		return -EINVAL;
	cache_pin_lkey(key, lk);
	rc = cache_rtxn_get(c, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_get(txn, c->dbi_pins, &k, &v);
	if (rc == 0)
		rc = cache_pinrec_read(&v, &r) == 0 ? 0 : MDB_NOTFOUND;
	if (rc == 0 && out) {
		memset(out, 0, sizeof(*out));
		out->uid = r.uid;
		out->size = r.size;
		memcpy(out->fid.id, r.fid, 16);
		rc = cache_pin_walk(c, txn, NULL, r.fid, PIN_SUM, &out->cached);
	}
	cache_rtxn_put(c, txn);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: pin lookup: %s", mdb_strerror(rc));
		return cache_errno(rc);
	}
	return 0;
}

/* Sets (keep_uid: only re-points an existing) pin key -> fid, size.  */
static int cache_pin_put(struct cache *c, const char *key, uint32_t uid,
                         const struct cache_fid *fid, uint64_t size,
                         bool follow_only)
{
	unsigned char lk[16];
	size_t klen;
	MDB_val k = { 16, lk }, v, fk = { 16, (void *)fid->id };
	struct cache_pinrec r, old;
	struct cache_totals t;
	MDB_txn *txn = NULL;
	unsigned char *val = NULL;
	bool had = false;
	uint64_t seen = 0;
	int rc;

	if (!c || !key || !fid || (klen = strlen(key)) > CACHE_PIN_KEY_MAX)
		return -EINVAL;
	cache_pin_lkey(key, lk);
	val = malloc(sizeof(r) + klen);
	if (!val)
		return -ENOMEM;
	rc = cache_totals_begin(c, &txn, &t);
	if (rc != 0)
		goto out;
	rc = mdb_get(txn, c->dbi_pins, &k, &v);
	if (rc == 0 && cache_pinrec_read(&v, &old) == 0)
		had = true;
	else if (rc != 0 && rc != MDB_NOTFOUND)
		goto out;
	rc = 0;
	if (follow_only && !had)
		goto out;
	if (had && !memcmp(old.fid, fid->id, 16) && old.size == size)
		goto out;   /* nothing to change */
	if (had) {
		MDB_val ofk = { 16, old.fid };

		uid = old.uid;
		/* The file changed at the origin: its old blocks are stale. */
		if (memcmp(old.fid, fid->id, 16)) {
			rc = cache_pin_walk(c, txn, &t, old.fid, PIN_DROP, &seen);
			if (rc == 0)
				rc = mdb_del(txn, c->dbi_pinfid, &ofk, NULL);
			if (rc == MDB_NOTFOUND)
				rc = 0;
			if (rc != 0)
				goto out;
		}
	}
	memset(&r, 0, sizeof(r));
	r.magic = CACHE_PIN_MAGIC;
	r.uid = uid;
	r.size = size;
	memcpy(r.fid, fid->id, 16);
	r.key_len = (uint32_t)klen;
	r.sum = cache_pinrec_sum(&r, key);
	memcpy(val, &r, sizeof(r));
	memcpy(val + sizeof(r), key, klen);
	v.mv_size = sizeof(r) + klen;
	v.mv_data = val;
	rc = mdb_put(txn, c->dbi_pins, &k, &v, 0);
	if (rc != 0)
		goto out;
	if (!cache_fid_pinned(c, txn, fid->id)) {
		rc = cache_pin_walk(c, txn, &t, fid->id, PIN_UNLRU, &seen);
		if (rc != 0)
			goto out;
		v.mv_size = 16;
		v.mv_data = lk;
		rc = mdb_put(txn, c->dbi_pinfid, &fk, &v, 0);
		if (rc != 0)
			goto out;
	}
	rc = cache_check_rc(c, cache_totals_commit(c, &txn, &t, true), "pin");
	if (rc != 0)
		goto out;
	if (had) {
		atomic_fetch_sub(&c->pin_size, old.size);
	} else {
		atomic_fetch_add(&c->pin_count, 1);
	}
	atomic_fetch_add(&c->pin_size, size);
	if (had && memcmp(old.fid, fid->id, 16))
		dms_log(LOG_INFO, "cache: pinned %s changed at the origin; its "
		        "old blocks are dropped, the new ones pinned",
		        strrchr(key, '\n') ? strrchr(key, '\n') + 1 : key);
out:
	if (txn)
		mdb_txn_abort(txn);
	free(val);
	if (rc > 0 || rc <= MDB_KEYEXIST) {
		dms_log(LOG_ERR, "cache: pin %s: %s", key, mdb_strerror(rc));
		rc = cache_errno(rc);
	}
	return rc;
}

int cache_pin_set(struct cache *c, const char *key, uint32_t uid,
                  const struct cache_fid *fid, uint64_t size)
{
	return cache_pin_put(c, key, uid, fid, size, false);
}

int cache_pin_follow(struct cache *c, const char *key,
                     const struct cache_fid *fid, uint64_t size)
{
	unsigned char lk[16];
	MDB_val k = { 16, lk }, v;
	struct cache_pinrec r;
	MDB_txn *txn = NULL;
	bool differs = false;

	if (!c || !key || !fid || strlen(key) > CACHE_PIN_KEY_MAX ||
	    atomic_load(&c->pin_count) == 0)
		return 0;
	/* Mostly no pin, or the same version: a read suffices. */
	cache_pin_lkey(key, lk);
	if (cache_rtxn_get(c, &txn) != 0)
		return 0;
	if (mdb_get(txn, c->dbi_pins, &k, &v) == 0 &&
	    cache_pinrec_read(&v, &r) == 0)
		differs = memcmp(r.fid, fid->id, 16) || r.size != size;
	cache_rtxn_put(c, txn);
	return differs ? cache_pin_put(c, key, 0, fid, size, true) : 0;
}

int cache_pin_del(struct cache *c, const char *key)
{
	unsigned char lk[16];
	MDB_val k = { 16, lk }, v;
	struct cache_pinrec r;
	struct cache_totals t;
	MDB_txn *txn = NULL;
	uint64_t seen = 0;
	int rc;

	if (!c || !key || strlen(key) > CACHE_PIN_KEY_MAX)
		return -EINVAL;
	cache_pin_lkey(key, lk);
	rc = cache_totals_begin(c, &txn, &t);
	if (rc != 0)
		goto out;
	rc = mdb_get(txn, c->dbi_pins, &k, &v);
	if (rc != 0)
		goto out;
	if (cache_pinrec_read(&v, &r) != 0)
		memset(&r, 0, sizeof(r));   /* a bad record goes too */
	rc = mdb_del(txn, c->dbi_pins, &k, NULL);
	if (rc != 0)
		goto out;
	if (r.magic) {
		MDB_val fk = { 16, r.fid };

		rc = mdb_del(txn, c->dbi_pinfid, &fk, NULL);
		if (rc == 0)
			rc = cache_pin_walk(c, txn, &t, r.fid, PIN_RELRU, &seen);
		if (rc == MDB_NOTFOUND)
			rc = 0;
		if (rc != 0)
			goto out;
	}
	rc = cache_check_rc(c, cache_totals_commit(c, &txn, &t, true), "unpin");
	if (rc == 0) {
		atomic_fetch_sub(&c->pin_count, 1);
		atomic_fetch_sub(&c->pin_size, r.size);
	}
out:
	if (txn)
		mdb_txn_abort(txn);
	if (rc == MDB_NOTFOUND)
		return -ENOENT;
	if (rc > 0 || rc <= MDB_KEYEXIST) {
		dms_log(LOG_ERR, "cache: unpin %s: %s", key, mdb_strerror(rc));
		rc = cache_errno(rc);
	}
	return rc;
}

int cache_pin_foreach(struct cache *c,
                      int (*fn)(void *arg, const struct cache_pin_info *p),
                      void *arg)
{
	struct cache_pin_info *all = NULL;
	size_t n = 0, cap = 0;
	MDB_txn *txn = NULL;
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int rc;

	if (!c || !fn)
		return -EINVAL;
	rc = cache_rtxn_get(c, &txn);
	if (rc != 0)
		return rc;
	rc = mdb_cursor_open(txn, c->dbi_pins, &cur);
	if (rc != 0)
		goto out;
	/* Copied out first: callbacks run with no transaction open. */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct cache_pinrec r;
		struct cache_pin_info *p;
		char *key;

		if (cache_pinrec_read(&v, &r) != 0) {
			dms_log(LOG_WARNING, "cache: a pin record fails its check;"
			        " ignored");
			continue;
		}
		rc = cache_grow((void **)&all, n, &cap, sizeof(*all));
		if (rc != 0)
			goto out;
		key = malloc(r.key_len + 1);
		if (!key) {
			rc = ENOMEM;
			goto out;
		}
		memcpy(key, (const char *)v.mv_data + sizeof(r), r.key_len);
		key[r.key_len] = '\0';
		p = &all[n++];
		memset(p, 0, sizeof(*p));
		p->key = key;
		p->uid = r.uid;
		p->size = r.size;
		memcpy(p->fid.id, r.fid, 16);
		rc = cache_pin_walk(c, txn, NULL, r.fid, PIN_SUM, &p->cached);
		if (rc != 0)
			goto out;
	}
	if (rc == MDB_NOTFOUND)
		rc = 0;
out:
	if (cur)
		mdb_cursor_close(cur);
	cache_rtxn_put(c, txn);
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: listing the pins: %s", mdb_strerror(rc));
		rc = cache_errno(rc);
	}
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			rc = fn(arg, &all[i]);
		free((char *)all[i].key);
	}
	free(all);
	return rc;
}

bool cache_block_has(struct cache *c, const struct cache_fid *fid,
                     uint64_t index, size_t block_len)
{
	unsigned char key[CACHE_KEY_LEN];
	MDB_val k = { CACHE_KEY_LEN, key }, v;
	MDB_txn *txn = NULL;
	bool has;

	if (!c || !fid || atomic_load(&c->broken) ||
	    cache_rtxn_get(c, &txn) != 0)
		return false;
	cache_make_key(key, fid, index);
	has = mdb_get(txn, c->dbi_blocks, &k, &v) == 0 &&
	      v.mv_size == sizeof(struct cache_bhdr) + block_len;
	cache_rtxn_put(c, txn);
	return has;
}

/* ---- whole files ------------------------------------------------------- */

int cache_fid_stored(struct cache *c, const struct cache_fid *fid,
                     uint64_t *bytes)
{
	MDB_txn *txn = NULL;
	int rc;

	*bytes = 0;
	if (!c || !fid)
		return -EINVAL;
	rc = cache_rtxn_get(c, &txn);
	if (rc != 0)
		return rc;
	rc = cache_pin_walk(c, txn, NULL, fid->id, PIN_SUM, bytes);
	cache_rtxn_put(c, txn);
	if (rc != 0) {
		dms_log(LOG_ERR, "cache: counting a file's blocks: %s",
		        mdb_strerror(rc));
		rc = cache_errno(rc);
	}
	return rc;
}

int cache_fid_drop(struct cache *c, const struct cache_fid *fid,
                   uint64_t *bytes)
{
	struct cache_totals t;
	MDB_txn *txn = NULL;
	int rc;

	*bytes = 0;
	if (!c || !fid)
		return -EINVAL;
	/* Blocks still queued for this file would land after the delete. */
	cache_flush(c);
	rc = cache_totals_begin(c, &txn, &t);
	if (rc != 0)
		goto out;
	rc = cache_pin_walk(c, txn, &t, fid->id, PIN_EVICT, bytes);
	if (rc != 0)
		goto out;
	rc = cache_totals_commit(c, &txn, &t, true);
out:
	if (txn)
		mdb_txn_abort(txn);
	if (rc > 0 || rc <= MDB_KEYEXIST) {
		dms_log(LOG_ERR, "cache: evicting a file's blocks: %s",
		        mdb_strerror(rc));
		rc = cache_errno(rc);
	}
	if (rc != 0)
		*bytes = 0;
	return rc;
}
