/* Unit tests for cache pins: records survive reopen, eviction skips the
 * blocks of pinned files (stored before or after the pin), unpinning gives
 * them back to the LRU, a changed version drops the old blocks, and only
 * pinned blocks left: unpinned puts past the cap are dropped. */
#define _XOPEN_SOURCE 700  /* nftw */
#define _DEFAULT_SOURCE
#include "cache/cache.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BS 65536

static void fid_of(struct cache_fid *f, int file, int version)
{
	char path[64];

	snprintf(path, sizeof(path), "tree\n/run%d/data", file);
	cache_fid_make(f, path, 16 * BS, 1700000000 + version, "", BS);
}

static void put_file(struct cache *c, int file, int version, int blocks)
{
	struct cache_fid f;
	unsigned char *b = malloc(BS);

	fid_of(&f, file, version);
	for (int i = 0; i < blocks; i++) {
		fill(b, BS, (uint64_t)file << 32 | (uint64_t)i);
		cache_block_put(c, &f, (uint64_t)i, b, BS);
	}
	free(b);
	cache_flush(c);
}

/* Blocks of (file, version) stored now. */
static int stored(struct cache *c, int file, int version, int blocks)
{
	struct cache_fid f;
	int n = 0;

	fid_of(&f, file, version);
	for (int i = 0; i < blocks; i++)
		n += cache_block_has(c, &f, (uint64_t)i, BS);
	return n;
}

static int count_pins(void *arg, const struct cache_pin_info *p)
{
	int *n = arg;

	CHECK(p->key != NULL && !strncmp(p->key, "tree\n/run", 9));
	(*n)++;
	return 0;
}

static void test_pin_survives_eviction(void)
{
	char base[4096], dir[4096];
	struct cache *c;
	struct cache_fid f;
	struct cache_pin_info pi;
	struct cache_stats st;
	int n = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 32 * BS);
	/* File 1: 8 blocks stored before the pin, 8 after. */
	put_file(c, 1, 0, 8);
	fid_of(&f, 1, 0);
	CHECK_OK(cache_pin_set(c, "tree\n/run1/data", 1000, &f, 16 * BS));
	cache_get_stats(c, &st);
	CHECK(st.pinned == 8 * BS);
	CHECK(st.pinned_size == 16 * BS && st.pins == 1 && st.cap == 32 * BS);
	put_file(c, 1, 0, 16);
	CHECK(cache_pinned_bytes(c) == 16 * BS);
	/* Other data far past the cap. */
	for (int k = 2; k < 10; k++)
		put_file(c, k, 0, 16);
	CHECK(stored(c, 1, 0, 16) == 16);
	cache_get_stats(c, &st);
	CHECK(st.bytes <= 32 * BS);
	CHECK(st.evicted > 0);
	CHECK_OK(cache_pin_get(c, "tree\n/run1/data", &pi));
	CHECK(pi.uid == 1000 && pi.size == 16 * BS && pi.cached == 16 * BS);
	CHECK_ERR(cache_pin_get(c, "tree\n/run2/data", NULL), -ENOENT);
	cache_close(c);

	/* Reopen: the pin and its blocks are still there and still kept. */
	c = open_cache(dir, 32 * BS);
	CHECK(cache_pinned_bytes(c) == 16 * BS);
	CHECK_OK(cache_pin_foreach(c, count_pins, &n));
	CHECK(n == 1);
	for (int k = 10; k < 14; k++)
		put_file(c, k, 0, 16);
	CHECK(stored(c, 1, 0, 16) == 16);

	/* Unpinned, they are evictable again. */
	CHECK_OK(cache_pin_del(c, "tree\n/run1/data"));
	CHECK_ERR(cache_pin_del(c, "tree\n/run1/data"), -ENOENT);
	CHECK(cache_pinned_bytes(c) == 0);
	for (int k = 14; k < 18; k++)
		put_file(c, k, 0, 16);
	CHECK(stored(c, 1, 0, 16) == 0);
	cache_get_stats(c, &st);
	CHECK(st.pins == 0 && st.pinned_size == 0);
	cache_close(c);
	rm_rf(base);
}

static void test_pin_follows_new_version(void)
{
	char base[4096], dir[4096];
	struct cache *c;
	struct cache_fid f0, f1;
	struct cache_pin_info pi;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 64 * BS);
	fid_of(&f0, 1, 0);
	fid_of(&f1, 1, 1);
	CHECK_OK(cache_pin_set(c, "tree\n/run1/data", 7, &f0, 16 * BS));
	put_file(c, 1, 0, 16);
	CHECK(cache_pinned_bytes(c) == 16 * BS);
	/* Same version: nothing changes. */
	CHECK_OK(cache_pin_follow(c, "tree\n/run1/data", &f0, 16 * BS));
	CHECK(stored(c, 1, 0, 16) == 16);
	/* Not pinned: nothing happens. */
	CHECK_OK(cache_pin_follow(c, "tree\n/run2/data", &f1, 16 * BS));
	/* Changed at the origin: old blocks dropped, new ones pinned. */
	CHECK_OK(cache_pin_follow(c, "tree\n/run1/data", &f1, 16 * BS));
	CHECK(stored(c, 1, 0, 16) == 0);
	CHECK(cache_pinned_bytes(c) == 0);
	put_file(c, 1, 1, 16);
	CHECK(cache_pinned_bytes(c) == 16 * BS);
	CHECK_OK(cache_pin_get(c, "tree\n/run1/data", &pi));
	CHECK(pi.uid == 7 && !memcmp(pi.fid.id, f1.id, 16));
	for (int k = 2; k < 12; k++)
		put_file(c, k, 0, 16);
	CHECK(stored(c, 1, 1, 16) == 16);
	cache_close(c);
	rm_rf(base);
}

static void test_full_of_pins(void)
{
	char base[4096], dir[4096];
	struct cache *c;
	struct cache_fid f;
	struct cache_stats st;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 16 * BS);
	fid_of(&f, 1, 0);
	CHECK_OK(cache_pin_set(c, "tree\n/run1/data", 0, &f, 16 * BS));
	put_file(c, 1, 0, 16);
	/* No room left but pinned blocks: other puts are dropped, the cap
	 * holds and the pinned file stays whole. */
	put_file(c, 2, 0, 8);
	cache_get_stats(c, &st);
	CHECK(st.bytes <= 16 * BS);
	CHECK(stored(c, 1, 0, 16) == 16);
	CHECK(stored(c, 2, 0, 8) == 0);
	CHECK(st.dropped >= 8);
	cache_close(c);
	rm_rf(base);
}

/* A whole file's blocks: counted, then dropped with the totals and the
 * LRU kept right (a later fill evicts normally); a pinned file's blocks
 * go too when the caller asks (fs/ refuses that before calling). */
static void test_fid_stored_and_drop(void)
{
	char base[4096], dir[4096];
	struct cache *c;
	struct cache_fid f1, f2;
	struct cache_stats st;
	uint64_t bytes = 1;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 32 * BS);
	fid_of(&f1, 1, 0);
	fid_of(&f2, 2, 0);
	CHECK_OK(cache_fid_stored(c, &f1, &bytes));
	CHECK(bytes == 0);
	put_file(c, 1, 0, 10);
	put_file(c, 2, 0, 4);
	CHECK_OK(cache_fid_stored(c, &f1, &bytes));
	CHECK(bytes == 10 * BS);
	CHECK_OK(cache_fid_drop(c, &f1, &bytes));
	CHECK(bytes == 10 * BS);
	CHECK(stored(c, 1, 0, 10) == 0 && stored(c, 2, 0, 4) == 4);
	cache_get_stats(c, &st);
	CHECK(st.bytes == 4 * BS && st.blocks == 4);
	CHECK_OK(cache_fid_drop(c, &f1, &bytes));
	CHECK(bytes == 0);
	/* The LRU has no stale entries: filling past the cap evicts. */
	put_file(c, 3, 0, 16);
	put_file(c, 4, 0, 16);
	cache_get_stats(c, &st);
	CHECK(st.bytes <= 32 * BS);
	CHECK(stored(c, 4, 0, 16) == 16);
	/* Pinned blocks and the pinned-bytes figure. */
	fid_of(&f2, 4, 0);
	CHECK_OK(cache_pin_set(c, "tree\n/run4/data", 0, &f2, 16 * BS));
	CHECK(cache_pinned_bytes(c) == 16 * BS);
	CHECK_OK(cache_fid_drop(c, &f2, &bytes));
	CHECK(bytes == 16 * BS);
	CHECK(cache_pinned_bytes(c) == 0);
	cache_close(c);
	rm_rf(base);
}

int main(void)
{
	RUN(test_pin_survives_eviction);
	RUN(test_pin_follows_new_version);
	RUN(test_full_of_pins);
	RUN(test_fid_stored_and_drop);
	CHECK_EXIT();
}
