/* Unit tests for cache/ under load: many threads at once, a full disk
 * (a small tmpfs; skipped when mount is not permitted), and, with
 * CACHE_BENCH=1, a micro-benchmark of put and get throughput
 * (CACHE_BENCH_DIR chooses where; default $TMPDIR or /tmp). */
#define _XOPEN_SOURCE 700  /* nftw */
#define _DEFAULT_SOURCE
#include "cache/cache.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- concurrency ---- */

#define MT_THREADS 8
#define MT_FILES   4
#define MT_BLOCKS  48
#define MT_BLOCK   (16 << 10)
#define MT_TAIL    3000

struct mt_arg {
	struct cache *c;
	int id;
	double until;
	long gets, hits, puts, metas;
	atomic_int *bad;
};

static size_t mt_len(uint64_t index)
{
	return index == MT_BLOCKS - 1 ? MT_TAIL : MT_BLOCK;
}

static void *mt_main(void *p)
{
	struct mt_arg *a = p;
	uint64_t rnd = (uint64_t)a->id * 7919 + 1;
	unsigned char *buf = malloc(MT_BLOCK), *want = malloc(MT_BLOCK);

	while (now_s() < a->until) {
		uint64_t r = splitmix(&rnd);
		int file = (int)(r % MT_FILES);
		uint64_t index = (r >> 8) % MT_BLOCKS;
		size_t len = mt_len(index);
		unsigned op = (unsigned)((r >> 20) % 100);
		struct cache_fid f;
		char path[32];

		snprintf(path, sizeof(path), "/f%d", file);
		cache_fid_make(&f, path, 1000000, 1, "e", MT_BLOCK);
		fill(want, len, (uint64_t)file << 32 | index);
		if (op < 55) {
			size_t off = (r >> 32) % len, n = len - off;
			int rc;

			if (n > 5000)
				n = 5000;
			rc = cache_block_get(a->c, &f, index, len, off, n, buf);
			a->gets++;
			if (rc == 0) {
				a->hits++;
				if (memcmp(buf, want + off, n) != 0)
					atomic_fetch_add(a->bad, 1);
			} else if (rc != -ENOENT) {
				atomic_fetch_add(a->bad, 1);
			}
		} else if (op < 93) {
			cache_block_put(a->c, &f, index, want, len);
			a->puts++;
		} else if (op < 98) {
			char key[64], val[96];
			void *v = NULL;
			size_t vl = 0;
			int rc;

			snprintf(key, sizeof(key), "meta/%d/%d", file, (int)(index % 8));
			snprintf(val, sizeof(val), "value of %s", key);
			if (op & 1) {
				if (cache_meta_put(a->c, key, val, strlen(val)) != 0)
					atomic_fetch_add(a->bad, 1);
			} else {
				rc = cache_meta_get(a->c, key, &v, &vl);
				if (rc == 0 && (vl != strlen(val) ||
				                memcmp(v, val, vl) != 0))
					atomic_fetch_add(a->bad, 1);
				else if (rc != 0 && rc != -ENOENT)
					atomic_fetch_add(a->bad, 1);
				free(v);
			}
			a->metas++;
		} else {
			cache_flush(a->c);
		}
	}
	free(buf);
	free(want);
	return NULL;
}

static void test_concurrency(void)
{
	char base[256], dir[300];
	const uint64_t cap = 40 * MT_BLOCK;  /* smaller than the working set */
	struct cache *c;
	struct cache_stats st;
	pthread_t th[MT_THREADS];
	struct mt_arg args[MT_THREADS];
	atomic_int bad = 0;
	long gets = 0, hits = 0, puts = 0, metas = 0;
	const char *env_secs = getenv("CACHE_MT_SECONDS");
	double secs = env_secs ? strtod(env_secs, NULL) : 2.0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, cap);
	for (int i = 0; i < MT_THREADS; i++) {
		args[i] = (struct mt_arg){ .c = c, .id = i, .until = now_s() + secs,
		                           .bad = &bad };
		CHECK(pthread_create(&th[i], NULL, mt_main, &args[i]) == 0);
	}
	for (int i = 0; i < MT_THREADS; i++) {
		pthread_join(th[i], NULL);
		gets += args[i].gets;
		hits += args[i].hits;
		puts += args[i].puts;
		metas += args[i].metas;
	}
	cache_flush(c);
	cache_get_stats(c, &st);
	printf("  %d threads, %.1f s: %ld gets (%ld hits), %ld puts, %ld meta ops;"
	       " stored %" PRIu64 " blocks / %" PRIu64 " bytes, evicted %" PRIu64
	       ", dropped %" PRIu64 "\n", MT_THREADS, secs, gets, hits, puts,
	       metas, st.blocks, st.bytes, st.evicted, st.dropped);
	CHECK(atomic_load(&bad) == 0);
	CHECK(st.corrupt == 0);
	CHECK(st.bytes <= cap);
	CHECK(hits > 0);
	CHECK(st.hits == (uint64_t)hits);
	cache_close(c);
	/* Everything still reads back right after reopening. */
	c = open_cache(dir, cap);
	{
		unsigned char *buf = malloc(MT_BLOCK), *want = malloc(MT_BLOCK);
		uint64_t found = 0;

		for (int file = 0; file < MT_FILES; file++) {
			struct cache_fid f;
			char path[32];

			snprintf(path, sizeof(path), "/f%d", file);
			cache_fid_make(&f, path, 1000000, 1, "e", MT_BLOCK);
			for (uint64_t i = 0; i < MT_BLOCKS; i++) {
				size_t len = mt_len(i);
				int rc = cache_block_get(c, &f, i, len, 0, len, buf);

				fill(want, len, (uint64_t)file << 32 | i);
				CHECK(rc == 0 || rc == -ENOENT);
				if (rc == 0) {
					found++;
					CHECK(memcmp(buf, want, len) == 0);
				}
			}
		}
		cache_get_stats(c, &st);
		CHECK(found == st.blocks);
		free(buf);
		free(want);
	}
	cache_close(c);
	rm_rf(base);
}

/* ---- full disk ---- */

static void test_full_disk(void)
{
	char base[256], dir[300];
	const size_t bl = 256 << 10;
	const int n = 64;          /* 16 MiB into an 8 MiB tmpfs */
	struct cache *c;
	struct cache_stats st;
	struct cache_fid f;
	unsigned char *buf = malloc(bl), *want = malloc(bl);
	int present = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	if (mount("tmpfs", base, "tmpfs", 0, "size=8m,mode=0700") != 0) {
		printf("  skipped: cannot mount a tmpfs (%s)\n", strerror(errno));
		rm_rf(base);
		free(buf);
		free(want);
		return;
	}
	c = open_cache(dir, 64 << 20);
	cache_fid_make(&f, "/full", 1 << 30, 1, NULL, (uint32_t)bl);
	for (int i = 0; i < n; i++) {
		fill(want, bl, 1000 + (uint64_t)i);
		cache_block_put(c, &f, (uint64_t)i, want, bl);
		if (i % 4 == 3)
			cache_flush(c);
	}
	cache_flush(c);
	cache_get_stats(c, &st);
	for (int i = 0; i < n; i++) {
		int rc = cache_block_get(c, &f, (uint64_t)i, bl, 0, bl, buf);

		fill(want, bl, 1000 + (uint64_t)i);
		CHECK(rc == 0 || rc == -ENOENT);
		if (rc == 0) {
			present++;
			CHECK(memcmp(buf, want, bl) == 0);
		}
	}
	printf("  tmpfs 8 MiB: %d of %d blocks present, stats: %" PRIu64
	       " blocks, %" PRIu64 " bytes, dropped %" PRIu64 ", evicted %"
	       PRIu64 "\n", present, n, st.blocks, st.bytes, st.dropped,
	       st.evicted);
	CHECK(present > 0);
	CHECK((uint64_t)present == st.blocks);
	CHECK(st.dropped > 0);
	CHECK(st.bytes < (8u << 20));
	CHECK(st.corrupt == 0);
	/* Metadata on a full disk fails cleanly or succeeds. */
	{
		int rc = cache_meta_put(c, "k", want, 100000);

		CHECK(rc == 0 || rc == -ENOSPC || rc == -EIO);
	}
	cache_close(c);
	/* Reopening on the full disk works and keeps what was stored. */
	c = open_cache(dir, 64 << 20);
	cache_get_stats(c, &st);
	CHECK((uint64_t)present == st.blocks);
	for (int i = n - 1; i >= 0; i--) {
		int rc = cache_block_get(c, &f, (uint64_t)i, bl, 0, bl, buf);

		fill(want, bl, 1000 + (uint64_t)i);
		CHECK(rc == 0 || rc == -ENOENT);
		if (rc == 0)
			CHECK(memcmp(buf, want, bl) == 0);
	}
	cache_close(c);
	CHECK(umount(base) == 0);
	rm_rf(base);
	free(buf);
	free(want);
}

/* ---- micro-benchmark ---- */

static void bench_size(const char *under, size_t bl)
{
	char base[256], dir[300];
	const uint64_t total = 1ull << 30;
	const int n = (int)(total / bl);
	unsigned char *blk = malloc(bl), *buf = malloc(bl);
	struct cache *c;
	struct cache_stats st;
	struct cache_fid f;
	uint64_t rnd = 1;
	double t0, t1;

	tmp_make(under, base, sizeof(base), dir, sizeof(dir));
	fill(blk, bl, 3);
	cache_fid_make(&f, "/bench", total, 1, NULL, (uint32_t)bl);

	/* Fill: 1 GiB into a 2 GiB cap, flushing every 32 MiB so that the
	 * 64 MiB queue never overflows. */
	c = open_cache(dir, 2 * total);
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		blk[0] = (unsigned char)i;
		blk[1] = (unsigned char)(i >> 8);
		cache_block_put(c, &f, (uint64_t)i, blk, bl);
		if ((uint64_t)(i + 1) * bl % (32u << 20) == 0)
			cache_flush(c);
	}
	cache_flush(c);
	t1 = now_s();
	cache_get_stats(c, &st);
	printf("  bench %4zu KiB put (fill):        %7.0f MB/s (%" PRIu64
	       " dropped)\n", bl >> 10, total / (t1 - t0) / 1e6, st.dropped);

	/* Whole-block gets in random order. */
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		uint64_t idx = splitmix(&rnd) % (uint64_t)n;

		if (cache_block_get(c, &f, idx, bl, 0, bl, buf) != 0)
			CHECK(0);
	}
	t1 = now_s();
	printf("  bench %4zu KiB get (whole block): %7.0f MB/s, %.1f us/get\n",
	       bl >> 10, total / (t1 - t0) / 1e6, (t1 - t0) / n * 1e6);

	/* Small gets: the per-call cost (transaction, checksum of the block). */
	t0 = now_s();
	for (int i = 0; i < 20000; i++) {
		uint64_t idx = splitmix(&rnd) % (uint64_t)n;

		if (cache_block_get(c, &f, idx, bl, 4096, 4096, buf) != 0)
			CHECK(0);
	}
	t1 = now_s();
	printf("  bench %4zu KiB get (4 KiB range): %7.1f us/get\n", bl >> 10,
	       (t1 - t0) / 20000 * 1e6);
	cache_close(c);

	/* Steady state: cap 256 MiB, 1 GiB more of new blocks (evicting). */
	c = open_cache(dir, 256u << 20);
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		blk[0] = (unsigned char)i;
		cache_block_put(c, &f, (uint64_t)(n + i), blk, bl);
		if ((uint64_t)(i + 1) * bl % (32u << 20) == 0)
			cache_flush(c);
	}
	cache_flush(c);
	t1 = now_s();
	cache_get_stats(c, &st);
	printf("  bench %4zu KiB put (evicting):    %7.0f MB/s (%" PRIu64
	       " evicted, %" PRIu64 " dropped, %" PRIu64 " MiB stored)\n",
	       bl >> 10, total / (t1 - t0) / 1e6, st.evicted, st.dropped,
	       st.bytes >> 20);
	cache_close(c);
	rm_rf(base);
	free(blk);
	free(buf);
}

struct bench_arg {
	struct cache *c;
	const struct cache_fid *f;
	size_t bl;
	int n, gets;
	uint64_t seed;
};

static void *bench_get_main(void *p)
{
	struct bench_arg *a = p;
	unsigned char *buf = malloc(a->bl);
	uint64_t rnd = a->seed;

	for (int i = 0; i < a->gets; i++) {
		uint64_t idx = splitmix(&rnd) % (uint64_t)a->n;

		if (cache_block_get(a->c, a->f, idx, a->bl, 0, a->bl, buf) != 0)
			CHECK(0);
	}
	free(buf);
	return NULL;
}

/* Per-call overhead with small blocks (transaction, lookup, LRU check), and
 * whole-block gets from two threads at once. */
static void bench_calls(const char *under)
{
	char base[256], dir[300];
	const size_t small = 4096, big = 1 << 20;
	const int n_small = 20000, n_big = 256;
	unsigned char *blk = malloc(big);
	struct cache *c;
	struct cache_fid fs, fb;
	struct bench_arg a[2];
	pthread_t th[2];
	double t0, t1;

	tmp_make(under, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 1ull << 30);
	fill(blk, big, 9);
	cache_fid_make(&fs, "/small", 1, 1, NULL, (uint32_t)small);
	cache_fid_make(&fb, "/big", 1, 1, NULL, (uint32_t)big);
	for (int i = 0; i < n_small; i++)
		cache_block_put(c, &fs, (uint64_t)i, blk, small);
	for (int i = 0; i < n_big; i++) {
		cache_block_put(c, &fb, (uint64_t)i, blk, big);
		if (i % 32 == 31)
			cache_flush(c);
	}
	cache_flush(c);
	a[0] = (struct bench_arg){ c, &fs, small, n_small, 200000, 1 };
	t0 = now_s();
	bench_get_main(&a[0]);
	t1 = now_s();
	printf("  bench    4 KiB get, 1 thread:       %7.2f us/get\n",
	       (t1 - t0) / 200000 * 1e6);
	for (int k = 0; k < 2; k++)
		a[k] = (struct bench_arg){ c, &fs, small, n_small, 200000, 5 + (uint64_t)k };
	t0 = now_s();
	for (int k = 0; k < 2; k++)
		pthread_create(&th[k], NULL, bench_get_main, &a[k]);
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	t1 = now_s();
	printf("  bench    4 KiB get, 2 threads:      %7.0f gets/s total\n",
	       400000 / (t1 - t0));
	for (int k = 0; k < 2; k++)
		a[k] = (struct bench_arg){ c, &fb, big, n_big, 2000, 7 + (uint64_t)k };
	t0 = now_s();
	for (int k = 0; k < 2; k++)
		pthread_create(&th[k], NULL, bench_get_main, &a[k]);
	for (int k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	t1 = now_s();
	printf("  bench 1024 KiB get, 2 threads:      %7.0f MB/s total\n",
	       4000.0 * big / (t1 - t0) / 1e6);
	cache_close(c);
	rm_rf(base);
	free(blk);
}

int main(void)
{
	if (getenv("CACHE_BENCH") && strcmp(getenv("CACHE_BENCH"), "1") == 0) {
		const char *d = getenv("CACHE_BENCH_DIR");

		bench_size(d, 256 << 10);
		bench_size(d, 1 << 20);
		bench_calls(d);
		CHECK_EXIT();
	}
	RUN(test_concurrency);
	RUN(test_full_disk);
	CHECK_EXIT();
}
