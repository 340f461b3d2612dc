/* The read pipeline: memory -> LMDB cache -> sources.
 *
 * A block being loaded has one entry in a hash table; every reader that
 * wants it waits on that entry, so concurrent readers of one block cause one
 * fetch.  Loaded blocks stay in memory (a small LRU, mem_bytes) so that
 * readers of the same block, and blocks fetched ahead, are served without
 * going back to LMDB, and so that a block is readable before the cache's
 * writer has committed it.
 *
 * Blocks are the unit of caching, not of fetching: contiguous missing
 * blocks are fetched with one request (a "run" of up to FETCH_RUN_BYTES), so
 * a sequential reader costs few large requests while a random reader pays
 * only for the blocks it touches.  Read-ahead threads fetch runs ahead of
 * sequential readers, several at a time, which keeps a long network path
 * full.
 *
 * A reader waits only for the blocks it asked for.  Its own misses are its
 * own requests, each bounded by the transfer deadline (xfer_deadline_ms).
 * A block already on its way in someone else's fetch (a read-ahead run, or
 * another reader's request) is waited for only as long as the reader's own
 * bytes would take at min_rate (at least 1 s); after that, or if that fetch
 * failed, the reader fetches what it still lacks itself, in one request,
 * and read-ahead of that file pauses for RA_PAUSE_MS, so that it does not
 * compete with readers for a slow origin; meanwhile readers of the file do
 * not wait for fetches already under way at all.  One FUSE read thus waits
 * at most about two of its own request deadlines plus that patience.
 *
 * Data from the sources is never checksummed here: it is verified against
 * the request by transfer/ and checksummed by cache/ when stored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "fs/fs_i.h"

#define NBUCKETS 4096u
#define PREFETCH_QUEUE_MAX 256u          /* jobs */
#define FETCH_RUN_BYTES (2u << 20)       /* largest single request */
#define LOADED_CONDS 64u
#define PATIENCE_MIN_MS 1000
#define RA_PAUSE_MS 30000
#define RA_ROOM_WAIT_MS 1000            /* a fetcher looks again */
#define RA_STALE_MS 10000               /* read ahead, never read: dropped */
#define RA_SPARE (16u << 20)            /* mem_cache not for read-ahead */

enum blk_state { BLK_LOADING, BLK_READY, BLK_FAILED };

/* The buffer of one fetch, shared by the blocks it filled.  It lives
 * until the last of them goes: a run a reader is half way through holds
 * all its bytes, which is why read-ahead is budgeted by runs (run_bytes). */
struct run {
	int refs;               /* blocks using it; guarded by fs_blocks.lock */
	size_t size;
	char data[];
};

struct blk {
	struct cache_fid fid;
	uint64_t idx;
	enum blk_state state;   /* guarded by fs_blocks.lock */
	int err;                /* when FAILED; guarded by fs_blocks.lock */
	int refs;               /* guarded by fs_blocks.lock */
	bool hashed;            /* in the table; guarded by fs_blocks.lock */
	bool consumed;          /* read to its end; guarded by fs_blocks.lock */
	int64_t ready_ms;       /* monotonic: loaded, or last handed to a
	                           reader; guarded by fs_blocks.lock */
	size_t len;
	struct run *run;        /* set by the loader alone, read after READY */
	char *data;             /* inside run */
	struct blk *next;       /* hash chain; guarded by fs_blocks.lock */
	struct blk *lru_prev, *lru_next; /* READY blocks; guarded by fs_blocks.lock */
};

struct prefetch_job {
	struct fs_file *file;
	uint64_t first, count;
	struct prefetch_job *next;
};

struct fs_blocks {
	struct cache *cache;
	uint64_t block_size;
	uint64_t mem_max;
	unsigned run_max;               /* blocks per request */

	pthread_mutex_t lock;
	/* A block left LOADING: readers wait on the one of its hash slot, so
	 * a finished block wakes its own readers, not every waiting thread. */
	pthread_cond_t loaded[LOADED_CONDS];
	struct blk *buckets[NBUCKETS];  /* guarded by lock */
	struct blk lru;                 /* READY blocks, most recent first; guarded by lock */
	uint64_t mem_used;              /* bytes of LOADING and READY blocks; guarded by lock */
	/* Bytes of all live runs, whoever holds them (blocks in the table,
	 * readers, blocks dropped from the table whose run lives on): the
	 * read-ahead budget.  Guarded by lock; room is signalled when a run
	 * is freed. */
	uint64_t run_bytes;
	uint64_t ra_max;                /* the budget: mem_max less RA_SPARE */
	unsigned room_waiters;          /* fetchers in ra_room; guarded by lock */
	pthread_cond_t room;

	pthread_cond_t work;            /* jobs queued or stopping */
	struct prefetch_job *head, *tail; /* guarded by lock */
	unsigned queued;                /* guarded by lock */
	bool stopping;                  /* guarded by lock */
	/* For dmsctl status (fs_blocks_stats); lock-free counters. */
	atomic_ullong from_cache;       /* blocks loaded from LMDB */
	atomic_ullong fetched;          /* blocks brought from the sources */
	atomic_ullong from_cache_bytes, fetched_bytes; /* their bytes */
	unsigned nthreads;
	pthread_t *threads;
};

struct fs_file *fs_file_new(const char *path, const struct fs_route *r,
                            const struct xfer_attr *attr, uint64_t block_size)
{
	size_t len = strlen(path) + 1, ilen = strlen(r->inner) + 1;
	size_t tlen = strlen(r->tree) + 1;
	struct fs_file *f = malloc(sizeof(*f) + len + ilen + tlen + len);
	char *identity;

	if (!f)
		return NULL;
	atomic_init(&f->refs, 1);
	atomic_init(&f->ra_paused_until, 0);
	atomic_init(&f->read_end, 0);
	f->attr = *attr;
	f->xfer = r->xfer;
	memcpy(f->path, path, len);
	memcpy(f->path + len, r->inner, ilen);
	f->inner = f->path + len;
	/* "tree\npath": the same path in two trees is two files. */
	identity = f->path + len + ilen;
	memcpy(identity, r->tree, tlen);
	identity[tlen - 1] = '\n';
	memcpy(identity + tlen, path, len);
	/* An ETag belongs to one server: mirrors (GridFTP has none) would
	 * give one file several identities, so it counts only for a tree
	 * with a single source. */
	cache_fid_make(&f->fid, identity, attr->size, attr->mtime,
	               strchr(r->tree, ';') ? "" : attr->etag,
	               (uint32_t)block_size);
	return f;
}

struct fs_file *fs_file_get(struct fs_file *f)
{
	atomic_fetch_add(&f->refs, 1);
	return f;
}

void fs_file_put(struct fs_file *f)
{
	if (f && atomic_fetch_sub(&f->refs, 1) == 1)
		free(f);
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool ra_paused(struct fs_file *f)
{
	return atomic_load(&f->ra_paused_until) > mono_ms();
}

static size_t slot(const struct cache_fid *fid, uint64_t idx)
{
	uint64_t h;

	memcpy(&h, fid->id, sizeof(h));
	return (size_t)((h ^ (idx * 0x9E3779B97F4A7C15ull)) >> 17) & (NBUCKETS - 1);
}

static struct blk *bfind(struct fs_blocks *bl, const struct cache_fid *fid,
                         uint64_t idx)
{
	struct blk *b = bl->buckets[slot(fid, idx)];

	while (b && (b->idx != idx || memcmp(&b->fid, fid, sizeof(*fid)) != 0))
		b = b->next;
	return b;
}

static void bunhash(struct fs_blocks *bl, struct blk *b)
{
	struct blk **p = &bl->buckets[slot(&b->fid, b->idx)];

	while (*p != b)
		p = &(*p)->next;
	*p = b->next;
	b->hashed = false;
}

static void lru_unlink(struct blk *b)
{
	b->lru_prev->lru_next = b->lru_next;
	b->lru_next->lru_prev = b->lru_prev;
}

static void lru_push_front(struct fs_blocks *bl, struct blk *b)
{
	b->lru_next = bl->lru.lru_next;
	b->lru_prev = &bl->lru;
	bl->lru.lru_next->lru_prev = b;
	bl->lru.lru_next = b;
}

/* Drops a reference to r; bl->lock held. */
static void run_put_locked(struct fs_blocks *bl, struct run *r)
{
	if (--r->refs == 0) {
		bl->run_bytes -= r->size;
		pthread_cond_broadcast(&bl->room);
		free(r);
	}
}

/* Drops a reference to r. */
static void run_free(struct fs_blocks *bl, struct run *r)
{
	pthread_mutex_lock(&bl->lock);
	run_put_locked(bl, r);
	pthread_mutex_unlock(&bl->lock);
}

/* Called with bl->lock held. */
static void bfree(struct fs_blocks *bl, struct blk *b)
{
	if (b->run)
		run_put_locked(bl, b->run);
	free(b);
}

/* Drops unused READY blocks, oldest first, until memory fits. */
static void trim(struct fs_blocks *bl)
{
	struct blk *b = bl->lru.lru_prev, *prev;

	while (bl->mem_used > bl->mem_max && b != &bl->lru) {
		prev = b->lru_prev;
		if (b->refs == 0) {
			lru_unlink(b);
			bunhash(bl, b);
			bl->mem_used -= b->len;
			bfree(bl, b);
		}
		b = prev;
	}
}

void fs_blocks_forget(struct fs_blocks *bl, const struct cache_fid *fid)
{
	struct blk *b, *prev;

	pthread_mutex_lock(&bl->lock);
	for (b = bl->lru.lru_prev; b != &bl->lru; b = prev) {
		prev = b->lru_prev;
		if (b->refs == 0 && !memcmp(&b->fid, fid, sizeof(*fid))) {
			lru_unlink(b);
			bunhash(bl, b);
			bl->mem_used -= b->len;
			bfree(bl, b);
		}
	}
	pthread_mutex_unlock(&bl->lock);
}

static void release(struct fs_blocks *bl, struct blk *b)
{
	pthread_mutex_lock(&bl->lock);
	if (--b->refs == 0 && !b->hashed)
		bfree(bl, b);
	else
		trim(bl);
	pthread_mutex_unlock(&bl->lock);
}

/* A reader is done with b up to its end: a sequential reader will not come
 * back (the kernel keeps the pages), so b goes first when memory is short,
 * ahead of blocks read ahead and not yet used. */
static void release_consumed(struct fs_blocks *bl, struct blk *b)
{
	pthread_mutex_lock(&bl->lock);
	if (b->state == BLK_READY && b->hashed) {
		b->consumed = true;
		lru_unlink(b);
		b->lru_prev = bl->lru.lru_prev;
		b->lru_next = &bl->lru;
		bl->lru.lru_prev->lru_next = b;
		bl->lru.lru_prev = b;
		/* A fetcher waiting for room may drop it now (ra_room). */
		if (bl->room_waiters)
			pthread_cond_broadcast(&bl->room);
	}
	pthread_mutex_unlock(&bl->lock);
	release(bl, b);
}

/* Enters block idx of f as LOADING, held by the caller, unless it is known
 * already (loading, loaded): then NULL. */
static struct blk *claim(struct fs_blocks *bl, struct fs_file *f, uint64_t idx)
{
	struct blk *b = NULL;

	pthread_mutex_lock(&bl->lock);
	if (bfind(bl, &f->fid, idx))
		goto out;
	b = calloc(1, sizeof(*b));
	if (!b)
		goto out;
	b->fid = f->fid;
	b->idx = idx;
	b->len = fs_block_len(idx, f->attr.size, bl->block_size);
	b->state = BLK_LOADING;
	b->refs = 1;
	b->hashed = true;
	b->next = bl->buckets[slot(&f->fid, idx)];
	bl->buckets[slot(&f->fid, idx)] = b;
	/* Blocks on their way count against the memory budget too: read-ahead
	 * then makes room by dropping what readers are done with. */
	bl->mem_used += b->len;
	trim(bl);
out:
	pthread_mutex_unlock(&bl->lock);
	return b;
}

/* Publishes the outcome of loading b to the readers waiting for it.
 * Failures are not remembered: the next reader tries again. */
static void finish(struct fs_blocks *bl, struct blk *b, int rc)
{
	pthread_mutex_lock(&bl->lock);
	if (rc == 0) {
		b->state = BLK_READY;
		b->ready_ms = mono_ms();
		lru_push_front(bl, b);
	} else {
		b->state = BLK_FAILED;
		b->err = rc;
		bl->mem_used -= b->len;
		bunhash(bl, b);
	}
	pthread_cond_broadcast(&bl->loaded[slot(&b->fid, b->idx) % LOADED_CONDS]);
	pthread_mutex_unlock(&bl->lock);
}

static struct run *run_new(struct fs_blocks *bl, size_t len)
{
	struct run *r = malloc(sizeof(*r) + (len ? len : 1));

	if (r) {
		r->refs = 1;
		r->size = len;
		pthread_mutex_lock(&bl->lock);
		bl->run_bytes += len;
		pthread_mutex_unlock(&bl->lock);
	}
	return r;
}

/* Loads claimed block b from the LMDB cache: 0 or -ENOENT (a miss). */
static int load_cached(struct fs_blocks *bl, struct fs_file *f, struct blk *b)
{
	struct run *r = run_new(bl, b->len);
	int rc;

	if (!r)
		return -ENOMEM;
	rc = cache_block_get(bl->cache, &f->fid, b->idx, b->len, 0, b->len,
	                     r->data);
	if (rc == 0) {
		b->run = r;
		b->data = r->data;
		atomic_fetch_add_explicit(&bl->from_cache, 1,
		                          memory_order_relaxed);
		atomic_fetch_add_explicit(&bl->from_cache_bytes, b->len,
		                          memory_order_relaxed);
		return 0;
	}
	run_free(bl, r);
	if (rc != -ENOENT)
		dms_log(LOG_WARNING, "cache read of %s block %llu failed (%s); "
		        "fetching", f->path, (unsigned long long)b->idx,
		        strerror(-rc));
	return -ENOENT;
}

/* How many of the blocks from idx on (of f) lie wholly in the first done
 * bytes: those a request cut off by its deadline did bring. */
static uint64_t blocks_in(struct fs_blocks *bl, struct fs_file *f,
                          uint64_t idx, size_t done)
{
	uint64_t k = 0;
	size_t len;

	while ((len = fs_block_len(idx + k, f->attr.size, bl->block_size)) &&
	       len <= done) {
		done -= len;
		k++;
	}
	return k;
}

/* Fetches the n claimed, contiguous blocks v[] with one request, publishes
 * them, stores them in the cache once readers have them, and releases
 * them.  A request cut off by its deadline still publishes the blocks it
 * brought whole (a trickling origin's bytes are not thrown away). */
static int fetch_run(struct fs_blocks *bl, struct fs_file *f, struct blk **v,
                     unsigned n)
{
	size_t total = 0, off = 0, done = 0;
	struct run *r;
	unsigned i, k;
	int rc;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		total += v[i]->len;
	r = run_new(bl, total);
	rc = r ? xfer_read_some(f->xfer, f->inner, &f->attr,
	                        v[0]->idx * bl->block_size, total, r->data,
	                        &done)
	       : -ENOMEM;
	k = rc == 0 ? n : (unsigned)blocks_in(bl, f, v[0]->idx, done);
	if (k > n)
		k = n;
	atomic_fetch_add_explicit(&bl->fetched, k, memory_order_relaxed);
	if (k) {
		r->refs = (int)k;
		for (i = 0; i < k; i++) {
			v[i]->run = r;
			v[i]->data = r->data + off;
			off += v[i]->len;
		}
		atomic_fetch_add_explicit(&bl->fetched_bytes, off,
		                          memory_order_relaxed);
	} else if (r) {
		run_free(bl, r);
	}
	for (i = 0; i < n; i++)
		finish(bl, v[i], i < k ? 0 : rc);
	/* A pinned file fetched at a new version: its pin follows. */
	if (k)
		cache_pin_follow(bl->cache, fs_file_identity(f), &f->fid,
		                 f->attr.size);
	for (i = 0; i < n; i++) {
		if (i < k)
			cache_block_put(bl->cache, &f->fid, v[i]->idx, v[i]->data,
			                v[i]->len);
		release(bl, v[i]);
	}
	return rc;
}

/* Makes blocks [first, first + count) of f present: those neither in
 * memory nor being loaded come from the cache, or from the sources in runs
 * of contiguous misses.  Returns the first fetch error (read-ahead leaves
 * errors for readers to meet). */
static int load_range(struct fs_blocks *bl, struct fs_file *f,
                      uint64_t first, uint64_t count)
{
	uint64_t end = fs_block_count(f->attr.size, bl->block_size), idx;
	struct blk *pend[FETCH_RUN_BYTES / 4096];
	unsigned n = 0;
	int rc = 0, frc;

	if (first + count < end)
		end = first + count;
	for (idx = first; idx < end; idx++) {
		struct blk *b = claim(bl, f, idx);

		if (b && load_cached(bl, f, b) == 0) {
			finish(bl, b, 0);
			release(bl, b);
			b = NULL;
		} else if (b) {
			pend[n++] = b;
			if (n < bl->run_max)
				continue;
		}
		/* A block known or cached ends the run: fetch what came before. */
		frc = fetch_run(bl, f, pend, n);
		if (frc && !rc)
			rc = frc;
		n = 0;
	}
	frc = fetch_run(bl, f, pend, n);
	return rc ? rc : frc;
}

/* Returns the READY block idx of f with a reference held, loading it when
 * nobody is.  A fetch under way elsewhere is waited for until *until (set
 * at the first such wait, patience_ms from then; monotonic).  -EAGAIN:
 * that fetch is still going then, or it failed for want of a good answer:
 * the caller fetches the block itself. */
static int acquire(struct fs_blocks *bl, struct fs_file *f, uint64_t idx,
                   struct timespec *until, long patience_ms,
                   struct blk **out)
{
	pthread_cond_t *cond = &bl->loaded[slot(&f->fid, idx) % LOADED_CONDS];
	struct blk *b;
	int rc;

	for (;;) {
		pthread_mutex_lock(&bl->lock);
		b = bfind(bl, &f->fid, idx);
		if (!b) {
			pthread_mutex_unlock(&bl->lock);
			b = claim(bl, f, idx);
			if (!b)
				continue;   /* someone else claimed it meanwhile */
			rc = load_cached(bl, f, b);
			if (rc == 0) {
				finish(bl, b, 0);
				*out = b;
				return 0;
			}
			/* fetch_run releases the claim's reference: take the
			 * reader's own first. */
			pthread_mutex_lock(&bl->lock);
			b->refs++;
			pthread_mutex_unlock(&bl->lock);
			rc = fetch_run(bl, f, &b, 1);
			if (rc == 0) {
				*out = b;
				return 0;
			}
			release(bl, b);
			return rc;
		}
		b->refs++;
		while (b->state == BLK_LOADING) {
			if (until->tv_sec == 0 && until->tv_nsec == 0) {
				clock_gettime(CLOCK_MONOTONIC, until);
				until->tv_sec += patience_ms / 1000;
				until->tv_nsec += patience_ms % 1000 * 1000000L;
				if (until->tv_nsec >= 1000000000L) {
					until->tv_sec++;
					until->tv_nsec -= 1000000000L;
				}
			}
			if (pthread_cond_timedwait(cond, &bl->lock, until) ==
			    ETIMEDOUT && b->state == BLK_LOADING) {
				pthread_mutex_unlock(&bl->lock);
				release(bl, b);
				return -EAGAIN;
			}
		}
		if (b->state == BLK_READY) {
			lru_unlink(b);
			lru_push_front(bl, b);
			b->ready_ms = mono_ms();
			pthread_mutex_unlock(&bl->lock);
			*out = b;
			return 0;
		}
		rc = b->err;
		pthread_mutex_unlock(&bl->lock);
		release(bl, b);
		/* A read-ahead run fails as a whole, e.g. past its deadline,
		 * where the reader's few blocks may still come in time. */
		return rc == -EHOSTDOWN || rc == -EIO ? -EAGAIN : rc;
	}
}

/* Fetches blocks [first, last] of f with one request of the reader's own
 * and puts them in the pin's empty slots (pin->held[i - base]).  A block
 * nobody holds in the table any more is entered there (and cached); one
 * still on its way elsewhere stays private to this reader.  Blocks of the
 * span already pinned are fetched again: cheaper than another request. */
static int fetch_own(struct fs_blocks *bl, struct fs_file *f,
                     struct fs_pin *pin, uint64_t base, uint64_t first,
                     uint64_t last)
{
	uint64_t bs = bl->block_size, i, end;
	size_t total = 0, done = 0;
	struct run *r;
	int rc;

	for (i = first; i <= last; i++)
		total += fs_block_len(i, f->attr.size, bs);
	/* Read-ahead that cannot keep ahead of readers only takes the slow
	 * origin's bandwidth from them. */
	atomic_store(&f->ra_paused_until, mono_ms() + RA_PAUSE_MS);
	dms_log(LOG_INFO, "%s: blocks %llu-%llu still on their way after the "
	        "reader's patience; fetching them for the reader, read-ahead "
	        "paused for %d s", f->path, (unsigned long long)first,
	        (unsigned long long)last, RA_PAUSE_MS / 1000);
	r = run_new(bl, total);
	rc = r ? xfer_read_some(f->xfer, f->inner, &f->attr, first * bs, total,
	                        r->data, &done)
	       : -ENOMEM;
	/* Cut off: the whole blocks it brought still go to the table. */
	end = rc == 0 ? last + 1 : first + blocks_in(bl, f, first, done);
	if (r && end > first)
		cache_pin_follow(bl->cache, fs_file_identity(f), &f->fid,
		                 f->attr.size);
	if (r) {
		uint64_t got = 0;

		for (i = first; i < end; i++)
			got += fs_block_len(i, f->attr.size, bs);
		atomic_fetch_add_explicit(&bl->fetched, end - first,
		                          memory_order_relaxed);
		atomic_fetch_add_explicit(&bl->fetched_bytes, got,
		                          memory_order_relaxed);
	}
	for (i = first; r && i < end && i <= last; i++) {
		struct blk *b;

		if (pin->held[i - base])
			continue;
		b = claim(bl, f, i);
		if (!b) {
			b = calloc(1, sizeof(*b));
			if (!b) {
				rc = rc ? rc : -ENOMEM;
				break;
			}
			b->fid = f->fid;
			b->idx = i;
			b->len = fs_block_len(i, f->attr.size, bs);
			b->state = BLK_READY;
			b->refs = 1;
		}
		pthread_mutex_lock(&bl->lock);
		r->refs++;
		pthread_mutex_unlock(&bl->lock);
		b->run = r;
		b->data = r->data + (i - first) * bs;
		if (b->hashed) {
			/* The claim's reference becomes the reader's. */
			finish(bl, b, 0);
			cache_block_put(bl->cache, &f->fid, i, b->data, b->len);
		}
		pin->held[i - base] = b;
	}
	if (r) {
		run_free(bl, r);
	}
	return rc;
}

int fs_blocks_pin(struct fs_blocks *bl, struct fs_file *f, uint64_t off,
                  size_t len, struct fs_pin *pin)
{
	uint64_t idx = fs_block_index(off, bl->block_size);
	uint64_t last = fs_block_index(off + len - 1, bl->block_size);
	unsigned n = (unsigned)(last - idx + 1), i;
	uint64_t need_first = UINT64_MAX, need_last = 0;
	struct timespec until = { 0, 0 };
	size_t done = 0;
	long patience;
	int rc = 0;

	atomic_store_explicit(&f->read_end, off + len, memory_order_relaxed);
	pin->n = 0;
	pin->iov = pin->iov_inline;
	pin->held = pin->held_inline;
	if (n > FS_PIN_INLINE) {
		pin->iov = calloc(n, sizeof(*pin->iov));
		pin->held = calloc(n, sizeof(*pin->held));
		if (!pin->iov || !pin->held) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	memset(pin->iov, 0, n * sizeof(*pin->iov));
	memset(pin->held, 0, n * sizeof(*pin->held));
	pin->n = n;
	/* A read over several blocks fetches its misses as runs, not one
	 * request per block. */
	if (n > 1) {
		rc = load_range(bl, f, idx, n);
		if (rc)
			goto fail;
	}
	/* As long as the reader's own bytes would take at min_rate; not at
	 * all while this file's fetches are known to fall behind readers. */
	patience = xfer_deadline_ms(f->xfer, len) - xfer_deadline_ms(f->xfer, 0);
	if (patience < PATIENCE_MIN_MS)
		patience = PATIENCE_MIN_MS;
	if (ra_paused(f))
		patience = 0;
	for (i = 0; i < n; i++) {
		struct blk *b = NULL;

		rc = acquire(bl, f, idx + i, &until, patience, &b);
		if (rc == -EAGAIN) {
			if (need_first == UINT64_MAX)
				need_first = idx + i;
			need_last = idx + i;
			continue;
		}
		if (rc)
			goto fail;
		pin->held[i] = b;
	}
	if (need_first != UINT64_MAX) {
		rc = fetch_own(bl, f, pin, idx, need_first, need_last);
		if (rc)
			goto fail;
	}
	for (i = 0; i < n; i++) {
		struct blk *b = pin->held[i];
		size_t in = (size_t)(off + done - (idx + i) * bl->block_size);

		pin->iov[i].iov_base = b->data + in;
		pin->iov[i].iov_len = b->len - in < len - done ? b->len - in
		                                               : len - done;
		done += pin->iov[i].iov_len;
	}
	return 0;
fail:
	fs_blocks_unpin(bl, pin);
	return rc;
}

void fs_blocks_unpin(struct fs_blocks *bl, struct fs_pin *pin)
{
	unsigned i;

	for (i = 0; i < pin->n; i++) {
		struct blk *b = pin->held[i];
		const char *start = pin->iov[i].iov_base;

		if (!b)
			continue;   /* a pin that failed part way */
		if (start && start + pin->iov[i].iov_len == b->data + b->len)
			release_consumed(bl, b);
		else
			release(bl, b);
	}
	if (pin->iov != pin->iov_inline)
		free(pin->iov);
	if (pin->held != pin->held_inline)
		free(pin->held);
	pin->n = 0;
	pin->iov = pin->iov_inline;
	pin->held = pin->held_inline;
}

int fs_blocks_load(struct fs_blocks *bl, struct fs_file *f, uint64_t first,
                   uint64_t count)
{
	return load_range(bl, f, first, count);
}

/* Drops unused blocks, oldest first, until runs fit in want bytes;
 * bl->lock held.  Only blocks readers are done with, or that nobody used
 * for RA_STALE_MS (read ahead for a reader that stopped): blocks read
 * ahead and not read yet would only be fetched again. */
static void trim_runs(struct fs_blocks *bl, uint64_t want)
{
	struct blk *b = bl->lru.lru_prev, *prev;
	int64_t stale = mono_ms() - RA_STALE_MS;

	while (bl->run_bytes > want && b != &bl->lru) {
		prev = b->lru_prev;
		if (b->refs == 0 && (b->consumed || b->ready_ms < stale)) {
			lru_unlink(b);
			bunhash(bl, b);
			bl->mem_used -= b->len;
			bfree(bl, b);
		}
		b = prev;
	}
}

/* The read-ahead budget, shared by every reader: the job at the head of
 * the queue starts only while all runs in memory (read ahead, half read,
 * readers' own) and its own fit in mem_cache less RA_SPARE.  Jobs start
 * in the order they were queued, nearest first, so the budget never goes
 * to blocks far ahead while a reader waits for near ones; a job is never
 * dropped for want of room (its reader would fetch the blocks itself, one
 * request per read).  Room comes from blocks readers are done with and
 * from read-ahead nobody came for within RA_STALE_MS (a reader that
 * stopped).  Readers' own fetches never wait.  bl->lock held; false:
 * stopping, or no room yet (the caller looks at the queue again). */
static bool ra_room(struct fs_blocks *bl, uint64_t need)
{
	uint64_t want = need < bl->ra_max ? bl->ra_max - need : 0;
	struct timespec until;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += RA_ROOM_WAIT_MS / 1000;
	until.tv_nsec += RA_ROOM_WAIT_MS % 1000 * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	for (;;) {
		trim_runs(bl, want);
		if (bl->run_bytes <= want || bl->stopping)
			return !bl->stopping;
		bl->room_waiters++;
		rc = pthread_cond_timedwait(&bl->room, &bl->lock, &until);
		bl->room_waiters--;
		if (rc == ETIMEDOUT)
			return false;
	}
}

/* Whether the head job job came too late: its reader read past all of it
 * (fetching those blocks itself), so fetching them now would only fill
 * the budget with blocks nobody reads.  Such a job is taken off the queue;
 * one its reader is inside is cut to what lies ahead.  bl->lock held. */
static bool ra_late(struct fs_blocks *bl, struct prefetch_job *job)
{
	uint64_t pos = atomic_load_explicit(&job->file->read_end,
	                                    memory_order_relaxed) /
	               bl->block_size;

	if (pos <= job->first)
		return false;
	if (pos < job->first + job->count) {
		job->count -= pos - job->first;
		job->first = pos;
		return false;
	}
	bl->head = job->next;
	if (!bl->head)
		bl->tail = NULL;
	bl->queued--;
	fs_file_put(job->file);
	free(job);
	return true;
}

static void *prefetch_main(void *arg)
{
	struct fs_blocks *bl = arg;
	struct prefetch_job *job;

	pthread_mutex_lock(&bl->lock);
	for (;;) {
		while (!bl->head && !bl->stopping)
			pthread_cond_wait(&bl->work, &bl->lock);
		if (bl->stopping)
			break;
		if (ra_late(bl, bl->head))
			continue;
		/* The head job waits for room in the queue (ra_room). */
		if (!ra_room(bl, bl->head->count * bl->block_size) ||
		    !bl->head)
			continue;
		job = bl->head;
		bl->head = job->next;
		if (!bl->head)
			bl->tail = NULL;
		bl->queued--;
		pthread_mutex_unlock(&bl->lock);
		if (!ra_paused(job->file))
			(void)load_range(bl, job->file, job->first, job->count);
		fs_file_put(job->file);
		free(job);
		pthread_mutex_lock(&bl->lock);
	}
	pthread_mutex_unlock(&bl->lock);
	return NULL;
}

void fs_blocks_prefetch(struct fs_blocks *bl, struct fs_file *f,
                        uint64_t first, uint64_t count)
{
	uint64_t end = fs_block_count(f->attr.size, bl->block_size);

	if (first + count < end)
		end = first + count;
	if (ra_paused(f))
		return;
	pthread_mutex_lock(&bl->lock);
	/* One job per run, so that runs are fetched side by side. */
	while (first < end && bl->queued < PREFETCH_QUEUE_MAX && !bl->stopping) {
		struct prefetch_job *job = malloc(sizeof(*job));

		if (!job)
			break;
		job->file = fs_file_get(f);
		job->first = first;
		job->count = end - first < bl->run_max ? end - first : bl->run_max;
		job->next = NULL;
		first += job->count;
		if (bl->tail)
			bl->tail->next = job;
		else
			bl->head = job;
		bl->tail = job;
		bl->queued++;
	}
	pthread_cond_broadcast(&bl->work);
	pthread_mutex_unlock(&bl->lock);
}

void fs_blocks_stats(struct fs_blocks *bl, struct fs_blocks_stats *st)
{
	st->from_cache = atomic_load_explicit(&bl->from_cache,
	                                      memory_order_relaxed);
	st->fetched = atomic_load_explicit(&bl->fetched, memory_order_relaxed);
	st->from_cache_bytes = atomic_load_explicit(&bl->from_cache_bytes,
	                                            memory_order_relaxed);
	st->fetched_bytes = atomic_load_explicit(&bl->fetched_bytes,
	                                         memory_order_relaxed);
	pthread_mutex_lock(&bl->lock);
	st->mem_used = bl->run_bytes;
	st->mem_max = bl->mem_max;
	st->queued = bl->queued;
	pthread_mutex_unlock(&bl->lock);
}

int fs_blocks_init(struct fs_blocks **out, struct cache *cache,
                   uint64_t block_size, uint64_t mem_bytes, unsigned fetchers)
{
	struct fs_blocks *bl = calloc(1, sizeof(*bl));
	pthread_condattr_t ca;
	unsigned i;

	if (!bl)
		return -ENOMEM;
	bl->threads = calloc(fetchers ? fetchers : 1, sizeof(*bl->threads));
	if (!bl->threads) {
		free(bl);
		return -ENOMEM;
	}
	bl->cache = cache;
	bl->block_size = block_size;
	bl->mem_max = mem_bytes;
	/* Readers' own fetches and the blocks they are being replied from
	 * come on top of read-ahead: keep room for them. */
	bl->ra_max = mem_bytes > 2 * RA_SPARE ? mem_bytes - RA_SPARE
	                                      : mem_bytes / 2;
	bl->run_max = block_size >= FETCH_RUN_BYTES ? 1
	            : (unsigned)(FETCH_RUN_BYTES / block_size);
	bl->lru.lru_next = bl->lru.lru_prev = &bl->lru;
	pthread_mutex_init(&bl->lock, NULL);
	/* Readers wait for others' fetches with a monotonic deadline. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	for (i = 0; i < LOADED_CONDS; i++)
		pthread_cond_init(&bl->loaded[i], &ca);
	pthread_cond_init(&bl->room, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&bl->work, NULL);
	for (i = 0; i < fetchers; i++) {
		if (pthread_create(&bl->threads[i], NULL, prefetch_main, bl) != 0)
			break;
		bl->nthreads++;
	}
	*out = bl;
	return 0;
}

void fs_blocks_destroy(struct fs_blocks *bl)
{
	struct prefetch_job *job;
	struct blk *b;
	unsigned i;

	if (!bl)
		return;
	pthread_mutex_lock(&bl->lock);
	bl->stopping = true;
	pthread_cond_broadcast(&bl->work);
	pthread_mutex_unlock(&bl->lock);
	for (i = 0; i < bl->nthreads; i++)
		pthread_join(bl->threads[i], NULL);
	while ((job = bl->head)) {
		bl->head = job->next;
		fs_file_put(job->file);
		free(job);
	}
	while ((b = bl->lru.lru_next) != &bl->lru) {
		lru_unlink(b);
		bunhash(bl, b);
		bfree(bl, b);
	}
	pthread_mutex_destroy(&bl->lock);
	for (i = 0; i < LOADED_CONDS; i++)
		pthread_cond_destroy(&bl->loaded[i]);
	pthread_cond_destroy(&bl->work);
	pthread_cond_destroy(&bl->room);
	free(bl->threads);
	free(bl);
}
