/* Unit tests for cache/: round trips, lengths, persistence, corruption
 * handling, the cap and LRU order, metadata, directory checks. */
#define _XOPEN_SOURCE 700  /* nftw */
#define _DEFAULT_SOURCE
#include "cache/cache.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ---- */

static void fid_of(struct cache_fid *f, int file)
{
	char path[64];

	snprintf(path, sizeof(path), "/archive/run%d/data.h5", file);
	cache_fid_make(f, path, 1ull << 30, 1700000000 + file, "\"etag\"", 1 << 20);
}

/* Puts block (file, index) of n bytes with content derived from them. */
static void put_block(struct cache *c, int file, uint64_t index, size_t n)
{
	struct cache_fid f;
	unsigned char *b = malloc(n ? n : 1);

	fid_of(&f, file);
	fill(b, n, (uint64_t)file << 32 | index);
	cache_block_put(c, &f, index, b, n);
	free(b);
}

/* 0 if block (file, index) is stored whole and right, else the error
 * (-EILSEQ for wrong content). */
static int get_block(struct cache *c, int file, uint64_t index, size_t n)
{
	struct cache_fid f;
	unsigned char *b = malloc(n ? n : 1), *want = malloc(n ? n : 1);
	int rc;

	fid_of(&f, file);
	fill(want, n, (uint64_t)file << 32 | index);
	rc = cache_block_get(c, &f, index, n, 0, n, b);
	if (rc == 0 && memcmp(b, want, n) != 0)
		rc = -EILSEQ;
	free(b);
	free(want);
	return rc;
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_size : -1;
}

/* ---- tests ---- */

static void test_fid(void)
{
	struct cache_fid a, b;

	cache_fid_make(&a, "ab", 1, 2, "c", 4096);
	cache_fid_make(&b, "a", 1, 2, "bc", 4096);
	CHECK(memcmp(a.id, b.id, 16) != 0);
	cache_fid_make(&b, "ab", 1, 2, "c", 4096);
	CHECK(memcmp(a.id, b.id, 16) == 0);
	cache_fid_make(&b, "ab", 1, 2, "c", 8192);
	CHECK(memcmp(a.id, b.id, 16) != 0);
	cache_fid_make(&b, "ab", 1, 3, "c", 4096);
	CHECK(memcmp(a.id, b.id, 16) != 0);
	cache_fid_make(&b, "ab", 2, 2, "c", 4096);
	CHECK(memcmp(a.id, b.id, 16) != 0);
	cache_fid_make(&a, "x", 1, 2, NULL, 4096);
	cache_fid_make(&b, "x", 1, 2, "", 4096);
	CHECK(memcmp(a.id, b.id, 16) == 0);
}

static void test_roundtrip(void)
{
	char base[256], dir[300];
	struct cache *c;
	struct cache_fid f;
	struct cache_stats st;
	const size_t bl = 256 << 10, tail = 1000;
	unsigned char *want = malloc(bl), *got = malloc(bl);
	struct stat sb;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 64 << 20);
	CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	fid_of(&f, 1);
	fill(want, bl, 42);
	cache_block_put(c, &f, 0, want, bl);
	put_block(c, 1, 1, tail);
	cache_flush(c);

	CHECK_OK(cache_block_get(c, &f, 0, bl, 0, bl, got));
	CHECK(memcmp(got, want, bl) == 0);
	memset(got, 0, bl);
	CHECK_OK(cache_block_get(c, &f, 0, bl, 1, 4095, got));
	CHECK(memcmp(got, want + 1, 4095) == 0);
	CHECK_OK(cache_block_get(c, &f, 0, bl, bl - 1, 1, got));
	CHECK(got[0] == want[bl - 1]);
	CHECK_OK(cache_block_get(c, &f, 0, bl, 100000, 0, got));
	CHECK_OK(cache_block_get(c, &f, 0, bl, 131072, 65536, got));
	CHECK(memcmp(got, want + 131072, 65536) == 0);
	CHECK_OK(get_block(c, 1, 1, tail));
	CHECK_ERR(cache_block_get(c, &f, 1, tail, 900, 100, got), 0);
	CHECK_ERR(cache_block_get(c, &f, 2, bl, 0, 10, got), -ENOENT);
	CHECK_ERR(get_block(c, 2, 0, bl), -ENOENT);
	CHECK_ERR(cache_block_get(c, &f, 0, bl, bl - 10, 11, got), -EINVAL);
	CHECK_ERR(cache_block_get(c, &f, 0, bl, bl + 1, 0, got), -EINVAL);

	/* A duplicate put of the same block keeps one copy. */
	cache_block_put(c, &f, 0, want, bl);
	cache_flush(c);
	cache_get_stats(c, &st);
	CHECK(st.blocks == 2);
	CHECK(st.bytes == bl + tail);
	CHECK(st.hits == 7);
	CHECK(st.misses == 2);
	CHECK(st.corrupt == 0 && st.dropped == 0 && st.evicted == 0);
	cache_close(c);

	snprintf((char *)got, 400, "%s/data.mdb", dir);
	CHECK(stat((char *)got, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	rm_rf(base);
	free(want);
	free(got);
}

static void test_wrong_len(void)
{
	char base[256], dir[300];
	struct cache *c;
	struct cache_stats st;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 64 << 20);
	put_block(c, 3, 7, 4096);
	put_block(c, 3, 8, 4096);
	cache_flush(c);
	CHECK_ERR(get_block(c, 3, 7, 4095), -ENOENT);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 1);
	cache_flush(c);
	cache_get_stats(c, &st);
	CHECK(st.blocks == 1);
	CHECK(st.bytes == 4096);
	CHECK_ERR(get_block(c, 3, 7, 4096), -ENOENT);  /* it was dropped */
	CHECK_OK(get_block(c, 3, 8, 4096));
	put_block(c, 3, 7, 4096);
	cache_flush(c);
	CHECK_OK(get_block(c, 3, 7, 4096));
	cache_close(c);
	rm_rf(base);
}

/* Adds a record to the blocks database behind the cache's back, without
 * touching the totals: a cache_open that scanned would count it. */
static void sneak_block(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	unsigned char key[24] = { 0xff }, val[100] = { 0 };
	MDB_val k = { sizeof(key), key }, v = { sizeof(val), val };

	CHECK_OK(mdb_env_create(&env));
	mdb_env_set_maxdbs(env, 8);
	CHECK_OK(mdb_env_open(env, dir, 0, 0600));
	CHECK_OK(mdb_txn_begin(env, NULL, 0, &txn));
	CHECK_OK(mdb_dbi_open(txn, "blocks", 0, &dbi));
	CHECK_OK(mdb_put(txn, dbi, &k, &v, 0));
	CHECK_OK(mdb_txn_commit(txn));
	mdb_env_close(env);
}

static void test_persist(void)
{
	char base[256], dir[300];
	struct cache *c;
	struct cache_stats st;
	const int n = 40000;
	double t0, t1;
	void *v = NULL;
	size_t vl = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 64 << 20);
	/* Many small blocks: a scan at open would have to read many pages. */
	for (int i = 0; i < n; i++)
		put_block(c, 5, (uint64_t)i, 16 + (size_t)(i % 5));
	put_block(c, 6, 0, 300000);
	CHECK_OK(cache_meta_put(c, "attr:/x", "hello", 5));
	cache_close(c);

	sneak_block(dir);
	t0 = now_s();
	c = open_cache(dir, 64 << 20);
	t1 = now_s();
	printf("  reopen with %d blocks: %.2f ms\n", n + 1, (t1 - t0) * 1e3);
	CHECK(t1 - t0 < 2.0);
	cache_get_stats(c, &st);
	CHECK(st.blocks == (uint64_t)n + 1);
	CHECK(st.bytes == 300000 + 16ull * n + (0 + 1 + 2 + 3 + 4) * (n / 5));
	CHECK(st.hits == 0 && st.misses == 0);
	CHECK_OK(get_block(c, 5, 0, 16));
	CHECK_OK(get_block(c, 5, (uint64_t)n - 1, 16 + (size_t)((n - 1) % 5)));
	CHECK_OK(get_block(c, 6, 0, 300000));
	CHECK_OK(cache_meta_get(c, "attr:/x", &v, &vl));
	CHECK(vl == 5 && v && memcmp(v, "hello", 5) == 0);
	free(v);
	/* New puts continue the LRU sequence after reopen. */
	put_block(c, 6, 1, 1000);
	cache_flush(c);
	CHECK_OK(get_block(c, 6, 1, 1000));
	cache_close(c);
	rm_rf(base);
}

/* Finds needle in path's contents; returns its offset or -1. */
static long find_in_file(const char *path, const void *needle, size_t nl,
                         int *count)
{
	FILE *f = fopen(path, "rb");
	long size, at = -1;
	unsigned char *buf;

	*count = 0;
	if (!f)
		return -1;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	rewind(f);
	buf = malloc((size_t)size);
	if (buf && fread(buf, 1, (size_t)size, f) == (size_t)size) {
		for (long i = 0; i + (long)nl <= size; i++) {
			if (memcmp(buf + i, needle, nl) == 0) {
				if (at < 0)
					at = i;
				(*count)++;
			}
		}
	}
	free(buf);
	fclose(f);
	return at;
}

static void flip_byte(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	unsigned char b;

	CHECK(fd >= 0);
	CHECK(pread(fd, &b, 1, off) == 1);
	b ^= 0x40;
	CHECK(pwrite(fd, &b, 1, off) == 1);
	close(fd);
}

/* Whole-block reads come from LMDB's file (preadv), not its map: every
 * block size reads back byte for byte, and a byte flipped anywhere in a
 * stored block -- its last bytes, far from the header, or the header's
 * sum -- is never returned: -ENOENT, counted once, the record dropped. */
static void test_whole_block_reads(void)
{
	static const char tail[] = "<<dmsfs-tail-of-block-0123456>>";
	static const char head[] = "<<dmsfs-head-of-block-6543210>>";
	static const size_t sizes[] = { 1, 4095, 4096, 4097, 65536, 1u << 20 };
	char base[256], dir[300], data[400];
	const size_t bl = 64 << 10;
	unsigned char *blk = malloc(bl), *got = malloc(bl);
	struct cache_stats st;
	struct cache_fid f;
	struct cache *c;
	int count;
	long at;
	size_t i;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 64 << 20);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		put_block(c, 11, i, sizes[i]);
	fid_of(&f, 12);
	fill(blk, bl, 5);
	memcpy(blk + bl - sizeof(tail), tail, sizeof(tail));
	cache_block_put(c, &f, 0, blk, bl);
	fill(blk, bl, 6);
	memcpy(blk, head, sizeof(head));
	cache_block_put(c, &f, 1, blk, bl);
	cache_close(c);

	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	at = find_in_file(data, tail, sizeof(tail) - 1, &count);
	CHECK(at > 0 && count == 1);
	if (at > 0)
		flip_byte(data, at + (long)sizeof(tail) - 2);
	/* The sum is the header's last 8 bytes, right before the data. */
	at = find_in_file(data, head, sizeof(head) - 1, &count);
	CHECK(at > 8 && count == 1);
	if (at > 8)
		flip_byte(data, at - 3);

	c = open_cache(dir, 64 << 20);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		CHECK_OK(get_block(c, 11, i, sizes[i]));
	memset(got, 0, bl);
	CHECK_ERR(cache_block_get(c, &f, 0, bl, 0, bl, got), -ENOENT);
	CHECK_ERR(cache_block_get(c, &f, 1, bl, 0, bl, got), -ENOENT);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 2);
	cache_flush(c);
	CHECK_ERR(cache_block_get(c, &f, 0, bl, 0, bl, got), -ENOENT);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 2);   /* dropped, not met again */
	CHECK(st.blocks == sizeof(sizes) / sizeof(sizes[0]));
	cache_close(c);
	rm_rf(base);
	free(blk);
	free(got);
}

static void test_corrupt_block(void)
{
	static const char pat[] = "<<dmsfs-corrupt-me-0123456789>>";
	char base[256], dir[300], data[400];
	struct cache *c;
	struct cache_fid f;
	struct cache_stats st;
	const size_t bl = 64 << 10;
	unsigned char *blk = malloc(bl), *got = malloc(bl);
	void *v = NULL;
	size_t vl;
	long at;
	int count;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 64 << 20);
	fid_of(&f, 9);
	fill(blk, bl, 77);
	memcpy(blk + 5000, pat, sizeof(pat));
	cache_block_put(c, &f, 3, blk, bl);
	put_block(c, 9, 4, bl);
	put_block(c, 9, 5, bl);
	CHECK_OK(cache_meta_put(c, "meta-key", "[[meta-value-pattern]]", 22));
	cache_close(c);

	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	at = find_in_file(data, pat, sizeof(pat) - 1, &count);
	CHECK(at > 0 && count == 1);
	if (at > 0)
		flip_byte(data, at + 7);
	at = find_in_file(data, "[[meta-value-pattern]]", 22, &count);
	CHECK(at > 0 && count == 1);
	if (at > 0)
		flip_byte(data, at + 3);

	c = open_cache(dir, 64 << 20);
	CHECK_ERR(cache_block_get(c, &f, 3, bl, 0, 16, got), -ENOENT);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 1);
	CHECK_OK(get_block(c, 9, 4, bl));
	CHECK_OK(get_block(c, 9, 5, bl));
	cache_flush(c);
	cache_get_stats(c, &st);
	CHECK(st.blocks == 2 && st.bytes == 2 * bl);
	/* Gone now, not counted twice. */
	CHECK_ERR(cache_block_get(c, &f, 3, bl, 0, 16, got), -ENOENT);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 1);
	/* Stored again, it reads back. */
	cache_block_put(c, &f, 3, blk, bl);
	cache_flush(c);
	CHECK_OK(cache_block_get(c, &f, 3, bl, 0, bl, got));
	CHECK(memcmp(got, blk, bl) == 0);

	CHECK_ERR(cache_meta_get(c, "meta-key", &v, &vl), -ENOENT);
	CHECK(v == NULL);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 2);
	CHECK_ERR(cache_meta_get(c, "meta-key", &v, &vl), -ENOENT);
	cache_get_stats(c, &st);
	CHECK(st.corrupt == 2);  /* the bad record was deleted */
	CHECK_OK(cache_meta_put(c, "meta-key", "ok", 2));
	CHECK_OK(cache_meta_get(c, "meta-key", &v, &vl));
	CHECK(vl == 2 && memcmp(v, "ok", 2) == 0);
	free(v);
	cache_close(c);
	rm_rf(base);
	free(blk);
	free(got);
}

static void write_garbage(const char *path, size_t n, uint64_t seed)
{
	unsigned char *b = malloc(n);
	FILE *f = fopen(path, "wb");

	fill(b, n, seed);
	CHECK(f && fwrite(b, 1, n, f) == n);
	if (f)
		fclose(f);
	free(b);
}

static void test_garbage_file(void)
{
	char base[256], dir[300], data[400], bad[400], mark[400];
	struct cache *c;
	struct cache_stats st;
	FILE *f;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	CHECK(mkdir(dir, 0700) == 0);
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(bad, sizeof(bad), "%s/data.mdb.bad", dir);
	write_garbage(data, 100000, 1);
	c = open_cache(dir, 8 << 20);
	CHECK(file_size(bad) == 100000);
	cache_get_stats(c, &st);
	CHECK(st.blocks == 0 && st.bytes == 0);
	put_block(c, 1, 0, 5000);
	cache_flush(c);
	CHECK_OK(get_block(c, 1, 0, 5000));
	cache_close(c);

	/* Again: the older .bad is replaced. */
	write_garbage(data, 12345, 2);
	c = open_cache(dir, 8 << 20);
	CHECK(file_size(bad) == 12345);
	CHECK_ERR(get_block(c, 1, 0, 5000), -ENOENT);
	put_block(c, 1, 0, 5000);
	cache_close(c);

	/* A file left open by another boot (a system crash while running
	 * without sync) is not trusted. */
	snprintf(mark, sizeof(mark), "%s/open.boot", dir);
	f = fopen(mark, "r+");
	CHECK(f != NULL);
	if (f) {
		fputs("open 00000000-dead-beef-0000-000000000000", f);
		fclose(f);
	}
	c = open_cache(dir, 8 << 20);
	cache_get_stats(c, &st);
	CHECK(st.blocks == 0);
	CHECK(file_size(bad) > 12345);
	cache_close(c);

	/* A crash of the process alone (same boot) keeps the data. */
	c = open_cache(dir, 8 << 20);
	put_block(c, 1, 1, 5000);
	cache_flush(c);
	cache_close(c);
	f = fopen(mark, "r");
	{
		char line[80] = "";

		CHECK(f && fgets(line, sizeof(line), f));
		CHECK(strncmp(line, "clean", 5) == 0);
		if (f)
			fclose(f);
	}
	rm_rf(base);
}

/* Deletes or overwrites the totals record behind the cache's back. */
static void tamper_totals(const char *dir, bool del)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { 6, (void *)"totals" }, v = { 5, (void *)"junk!" };

	CHECK_OK(mdb_env_create(&env));
	mdb_env_set_maxdbs(env, 8);
	CHECK_OK(mdb_env_open(env, dir, 0, 0600));
	CHECK_OK(mdb_txn_begin(env, NULL, 0, &txn));
	CHECK_OK(mdb_dbi_open(txn, "info", 0, &dbi));
	if (del)
		CHECK_OK(mdb_del(txn, dbi, &k, NULL));
	else
		CHECK_OK(mdb_put(txn, dbi, &k, &v, 0));
	CHECK_OK(mdb_txn_commit(txn));
	mdb_env_close(env);
}

static void test_totals_rebuild(void)
{
	char base[256], dir[300];
	struct cache *c;
	struct cache_stats st;
	uint64_t n = 10, bytes = 10 * 1000 + 45;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 8 << 20);
	for (int i = 0; i < 10; i++)
		put_block(c, 2, (uint64_t)i, 1000 + (size_t)i);
	cache_close(c);
	/* Round 0: record missing; round 1: record corrupt. */
	for (int round = 0; round < 2; round++) {
		tamper_totals(dir, round == 0);
		c = open_cache(dir, 8 << 20);
		cache_get_stats(c, &st);
		CHECK(st.blocks == n);
		CHECK(st.bytes == bytes);
		CHECK_OK(get_block(c, 2, 9, 1009));
		put_block(c, 2, 100 + (uint64_t)round, 10);
		cache_flush(c);
		n++;
		bytes += 10;
		cache_get_stats(c, &st);
		CHECK(st.blocks == n && st.bytes == bytes);
		CHECK_OK(get_block(c, 2, 100 + (uint64_t)round, 10));
		cache_close(c);
		c = open_cache(dir, 8 << 20);
		cache_get_stats(c, &st);
		CHECK(st.blocks == n && st.bytes == bytes);
		cache_close(c);
	}
	rm_rf(base);
}

static void test_cap(void)
{
	char base[256], dir[300], data[400];
	struct cache *c;
	struct cache_stats st;
	const uint64_t cap = 1 << 20;
	const size_t bl = 32 << 10;
	const int n = (int)(3 * cap / bl);  /* 3x the cap */
	uint64_t max_seen = 0;
	int present_new = 0, present_old = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, cap);
	for (int i = 0; i < n; i++) {
		put_block(c, 4, (uint64_t)i, bl);
		if (i % 5 == 4) {
			cache_flush(c);
			cache_get_stats(c, &st);
			if (st.bytes > max_seen)
				max_seen = st.bytes;
		}
	}
	cache_flush(c);
	cache_get_stats(c, &st);
	printf("  cap %" PRIu64 ": max bytes seen %" PRIu64 ", now %" PRIu64
	       " in %" PRIu64 " blocks, evicted %" PRIu64 "\n", cap, max_seen,
	       st.bytes, st.blocks, st.evicted);
	CHECK(max_seen <= cap + cap / 8);
	CHECK(st.bytes <= cap);
	CHECK(st.bytes == st.blocks * bl);
	CHECK(st.evicted + st.blocks == (uint64_t)n);
	CHECK(st.dropped == 0);
	for (int i = 0; i < n; i++) {
		int rc = get_block(c, 4, (uint64_t)i, bl);

		CHECK(rc == 0 || rc == -ENOENT);
		if (rc == 0 && i >= n - 16)
			present_new++;
		if (rc == 0 && i < n / 2)
			present_old++;
	}
	CHECK(present_new == 16);
	CHECK(present_old == 0);
	cache_close(c);
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	printf("  data file %lld bytes\n", (long long)file_size(data));
	CHECK(file_size(data) < (off_t)(2 * cap + (1 << 20)));
	rm_rf(base);
}

static void test_lru(void)
{
	char base[256], dir[300];
	struct cache *c;
	struct cache_stats st;
	const size_t bl = 16 << 10;
	int hot_hits = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 8 * bl);
	put_block(c, 7, 1000, bl);  /* the hot block */
	cache_flush(c);
	for (int i = 0; i < 64; i++) {
		put_block(c, 7, (uint64_t)i, bl);
		cache_flush(c);
		hot_hits += get_block(c, 7, 1000, bl) == 0;
		for (int j = 0; j < 20; j++)   /* hot reads cost no extra writes */
			hot_hits += get_block(c, 7, 1000, bl) == 0;
	}
	CHECK(hot_hits == 64 * 21);
	CHECK_ERR(get_block(c, 7, 0, bl), -ENOENT);
	CHECK_OK(get_block(c, 7, 63, bl));
	cache_get_stats(c, &st);
	CHECK(st.blocks == 8);
	CHECK(st.evicted == 65 - 8);
	cache_close(c);
	rm_rf(base);
}

static void test_meta(void)
{
	char base[256], dir[300];
	struct cache *c;
	char *k1 = malloc(2001), *k2 = malloc(2001);
	void *v = NULL;
	size_t vl = 0;
	unsigned char big[100000];

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	c = open_cache(dir, 8 << 20);
	memset(k1, 'k', 2000);
	k1[2000] = '\0';
	memcpy(k2, k1, 2001);
	k2[1999] = 'j';   /* differs only at the end */
	fill(big, sizeof(big), 5);
	CHECK_OK(cache_meta_put(c, k1, "one", 3));
	CHECK_OK(cache_meta_put(c, k2, big, sizeof(big)));
	CHECK_OK(cache_meta_put(c, "short", "s", 1));
	CHECK_OK(cache_meta_put(c, "empty", NULL, 0));
	CHECK_OK(cache_meta_put(c, "", "root", 4));
	CHECK_OK(cache_meta_get(c, k1, &v, &vl));
	CHECK(vl == 3 && memcmp(v, "one", 3) == 0);
	free(v);
	CHECK_OK(cache_meta_get(c, k2, &v, &vl));
	CHECK(vl == sizeof(big) && memcmp(v, big, sizeof(big)) == 0);
	free(v);
	CHECK_OK(cache_meta_get(c, "empty", &v, &vl));
	CHECK(vl == 0 && v != NULL);
	free(v);
	CHECK_OK(cache_meta_get(c, "", &v, &vl));
	CHECK(vl == 4);
	free(v);
	CHECK_ERR(cache_meta_get(c, "absent", &v, &vl), -ENOENT);
	CHECK(v == NULL && vl == 0);
	CHECK_OK(cache_meta_put(c, k1, "two!", 4));   /* replace */
	cache_close(c);

	c = open_cache(dir, 8 << 20);
	CHECK_OK(cache_meta_get(c, k1, &v, &vl));
	CHECK(vl == 4 && memcmp(v, "two!", 4) == 0);
	free(v);
	CHECK_OK(cache_meta_get(c, "short", &v, &vl));
	CHECK(vl == 1 && memcmp(v, "s", 1) == 0);
	free(v);
	cache_close(c);
	rm_rf(base);
	free(k1);
	free(k2);
}

static void test_dir_checks(void)
{
	char base[256], dir[300], path[400];
	struct cache_opts o = { .max_bytes = 1 << 20 };
	struct cache *c = NULL;
	FILE *f;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/file", base);
	f = fopen(path, "w");
	if (f)
		fclose(f);
	o.dir = path;
	CHECK_ERR(cache_open(&c, &o), -ENOTDIR);
	CHECK(c == NULL);
	snprintf(path, sizeof(path), "%s/missing/c", base);
	CHECK_ERR(cache_open(&c, &o), -ENOENT);
	o.dir = dir;
	o.max_bytes = 0;
	CHECK_ERR(cache_open(&c, &o), -EINVAL);
	o.max_bytes = 1 << 20;
	CHECK(mkdir(dir, 0755) == 0);
	if (geteuid() == 0) {
		/* Owned by someone else: refused. */
		CHECK(chown(dir, 65534, 65534) == 0);
		CHECK_ERR(cache_open(&c, &o), -EACCES);
		CHECK(chown(dir, 0, 0) == 0);
	}
	/* Open to others: refused, and its mode is left alone (dmsfs did not
	 * create it). */
	CHECK_ERR(cache_open(&c, &o), -EACCES);
	CHECK(c == NULL);
	{
		struct stat st;

		CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0755);
	}
	CHECK(chmod(dir, 0700) == 0);
	CHECK_OK(cache_open(&c, &o));
	cache_close(c);
	/* A link to a good directory is refused, not followed. */
	snprintf(path, sizeof(path), "%s/link", base);
	CHECK(symlink(dir, path) == 0);
	o.dir = path;
	CHECK_ERR(cache_open(&c, &o), -ELOOP);
	CHECK(c == NULL);
	/* Missing parents: created (0700) only when asked (a default path). */
	snprintf(path, sizeof(path), "%s/home/.cache/dmsfs", base);
	CHECK_ERR(cache_open(&c, &o), -ENOENT);
	o.make_parents = true;
	CHECK_OK(cache_open(&c, &o));
	cache_close(c);
	{
		struct stat st;

		snprintf(path, sizeof(path), "%s/home/.cache", base);
		CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
		snprintf(path, sizeof(path), "%s/home", base);
		CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0700);
	}
	rm_rf(base);
}

int main(void)
{
	RUN(test_fid);
	RUN(test_roundtrip);
	RUN(test_wrong_len);
	RUN(test_persist);
	RUN(test_corrupt_block);
	RUN(test_whole_block_reads);
	RUN(test_garbage_file);
	RUN(test_totals_rebuild);
	RUN(test_cap);
	RUN(test_lru);
	RUN(test_meta);
	RUN(test_dir_checks);
	CHECK_EXIT();
}
