/* The read pipeline: memory -> LMDB cache -> sources.
 *
 * A block being loaded has one entry in a hash table; every reader that
 * wants it waits on that entry, so concurrent readers of one block cause one
 * fetch.  Loaded blocks stay in memory (a small LRU, mem_bytes) so that
 * readers of the same block, and blocks fetched ahead, are served without
 * going back to LMDB, and so that a block is readable before the cache's
 * writer has committed it.  Read-ahead threads load blocks that sequential
 * readers will want next.
 *
 * Data from the sources is never checksummed here: it is verified against
 * the request by transfer/ and checksummed by cache/ when stored. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "fs/fs_i.h"

#define NBUCKETS 4096u
#define PREFETCH_QUEUE_MAX 1024u

enum blk_state { BLK_LOADING, BLK_READY, BLK_FAILED };

struct blk {
	struct cache_fid fid;
	uint64_t idx;
	enum blk_state state;   /* guarded by fs_blocks.lock */
	int err;                /* when FAILED; guarded by fs_blocks.lock */
	int refs;               /* guarded by fs_blocks.lock */
	bool hashed;            /* in the table; guarded by fs_blocks.lock */
	size_t len;
	char *data;             /* written by the loader alone, read after READY */
	struct blk *next;       /* hash chain; guarded by fs_blocks.lock */
	struct blk *lru_prev, *lru_next; /* READY blocks; guarded by fs_blocks.lock */
};

struct prefetch_job {
	struct fs_file *file;
	uint64_t idx;
	struct prefetch_job *next;
};

struct fs_blocks {
	struct cache *cache;
	uint64_t block_size;
	uint64_t mem_max;

	pthread_mutex_t lock;
	pthread_cond_t loaded;          /* some block left LOADING */
	struct blk *buckets[NBUCKETS];  /* guarded by lock */
	struct blk lru;                 /* READY blocks, most recent first; guarded by lock */
	uint64_t mem_used;              /* bytes of READY blocks; guarded by lock */

	pthread_cond_t work;            /* jobs queued or stopping */
	struct prefetch_job *head, *tail; /* guarded by lock */
	unsigned queued;                /* guarded by lock */
	bool stopping;                  /* guarded by lock */
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

static void bfree(struct blk *b)
{
	free(b->data);
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
			bfree(b);
		}
		b = prev;
	}
}

static void release(struct fs_blocks *bl, struct blk *b)
{
	pthread_mutex_lock(&bl->lock);
	if (--b->refs == 0 && !b->hashed)
		bfree(b);
	else
		trim(bl);
	pthread_mutex_unlock(&bl->lock);
}

/* Fills b from the cache or, on a miss, from the sources; *fetched tells
 * which, so the caller stores fetched blocks once readers have them. */
static int load(struct fs_blocks *bl, struct fs_file *f, struct blk *b,
                bool *fetched)
{
	int rc;

	*fetched = false;
	b->data = malloc(b->len ? b->len : 1);
	if (!b->data)
		return -ENOMEM;
	rc = cache_block_get(bl->cache, &f->fid, b->idx, b->len, 0, b->len,
	                     b->data);
	if (rc != -ENOENT) {
		if (rc == 0)
			return 0;
		dms_log(LOG_WARNING, "cache read of %s block %llu failed (%s); "
		        "fetching", f->path, (unsigned long long)b->idx,
		        strerror(-rc));
	}
	rc = xfer_read(f->xfer, f->inner, &f->attr, b->idx * bl->block_size,
	               b->len, b->data);
	*fetched = rc == 0;
	return rc;
}

/* Returns the READY block idx of f with a reference held, loading it (or
 * waiting for the thread loading it) as needed. */
static int acquire(struct fs_blocks *bl, struct fs_file *f, uint64_t idx,
                   struct blk **out)
{
	struct blk *b;
	bool fetched;
	int rc = 0;

	pthread_mutex_lock(&bl->lock);
	b = bfind(bl, &f->fid, idx);
	if (b) {
		b->refs++;
		while (b->state == BLK_LOADING)
			pthread_cond_wait(&bl->loaded, &bl->lock);
		if (b->state == BLK_READY) {
			lru_unlink(b);
			lru_push_front(bl, b);
			*out = b;
			pthread_mutex_unlock(&bl->lock);
			return 0;
		}
		rc = b->err;
		pthread_mutex_unlock(&bl->lock);
		release(bl, b);
		return rc;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		pthread_mutex_unlock(&bl->lock);
		return -ENOMEM;
	}
	b->fid = f->fid;
	b->idx = idx;
	b->len = fs_block_len(idx, f->attr.size, bl->block_size);
	b->state = BLK_LOADING;
	b->refs = 1;
	b->hashed = true;
	b->next = bl->buckets[slot(&f->fid, idx)];
	bl->buckets[slot(&f->fid, idx)] = b;
	pthread_mutex_unlock(&bl->lock);

	rc = load(bl, f, b, &fetched);

	pthread_mutex_lock(&bl->lock);
	if (rc == 0) {
		b->state = BLK_READY;
		bl->mem_used += b->len;
		lru_push_front(bl, b);
		*out = b;
	} else {
		/* Failures are not remembered: the next reader tries again. */
		b->state = BLK_FAILED;
		b->err = rc;
		bunhash(bl, b);
	}
	pthread_cond_broadcast(&bl->loaded);
	pthread_mutex_unlock(&bl->lock);
	if (rc)
		release(bl, b);
	else if (fetched)
		cache_block_put(bl->cache, &f->fid, idx, b->data, b->len);
	return rc;
}

int fs_blocks_read(struct fs_blocks *bl, struct fs_file *f, uint64_t off,
                   size_t len, char *buf)
{
	uint64_t idx = fs_block_index(off, bl->block_size);
	size_t done = 0;
	int rc = 0;

	while (done < len) {
		uint64_t pos = off + done;
		size_t in = (size_t)(pos - idx * bl->block_size), n;
		struct blk *b;

		rc = acquire(bl, f, idx, &b);
		if (rc)
			break;
		n = b->len - in < len - done ? b->len - in : len - done;
		memcpy(buf + done, b->data + in, n);
		release(bl, b);
		done += n;
		idx++;
	}
	return rc;
}

static void *prefetch_main(void *arg)
{
	struct fs_blocks *bl = arg;
	struct prefetch_job *job;
	struct blk *b;

	pthread_mutex_lock(&bl->lock);
	for (;;) {
		while (!bl->head && !bl->stopping)
			pthread_cond_wait(&bl->work, &bl->lock);
		if (bl->stopping)
			break;
		job = bl->head;
		bl->head = job->next;
		if (!bl->head)
			bl->tail = NULL;
		bl->queued--;
		pthread_mutex_unlock(&bl->lock);
		if (acquire(bl, job->file, job->idx, &b) == 0)
			release(bl, b);
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
	uint64_t end = fs_block_count(f->attr.size, bl->block_size), i;

	if (first + count < end)
		end = first + count;
	pthread_mutex_lock(&bl->lock);
	for (i = first; i < end; i++) {
		struct prefetch_job *job;

		if (bl->queued >= PREFETCH_QUEUE_MAX || bl->stopping)
			break;
		if (bfind(bl, &f->fid, i))
			continue;
		job = malloc(sizeof(*job));
		if (!job)
			break;
		job->file = fs_file_get(f);
		job->idx = i;
		job->next = NULL;
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

int fs_blocks_init(struct fs_blocks **out, struct cache *cache,
                   uint64_t block_size, uint64_t mem_bytes, unsigned fetchers)
{
	struct fs_blocks *bl = calloc(1, sizeof(*bl));
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
	bl->lru.lru_next = bl->lru.lru_prev = &bl->lru;
	pthread_mutex_init(&bl->lock, NULL);
	pthread_cond_init(&bl->loaded, NULL);
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
		bfree(b);
	}
	pthread_mutex_destroy(&bl->lock);
	pthread_cond_destroy(&bl->loaded);
	pthread_cond_destroy(&bl->work);
	free(bl->threads);
	free(bl);
}
