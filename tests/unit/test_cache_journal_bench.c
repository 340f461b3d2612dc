/* Measurements behind the write journal's design (cache/journal.c).
 * By default a short smoke run (small sizes, no figures asserted); with
 * JNL_BENCH=1 the full run whose figures the README quotes:
 *   - pwrite throughput into a staged file vs. a plain local file;
 *   - fsync latency: cache_jnl_sync_file after a 4 KiB write vs. plain
 *     write + fdatasync;
 *   - operation append rate: not synced, synced per append, and the same
 *     small records as LMDB commits (default flags = durable commit,
 *     MDB_NOMETASYNC, MDB_NOSYNC), the alternative the design rejected. */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
#include "cache/cache.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool full;

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static struct cache_jnl *jopen(const char *dir)
{
	struct cache_jnl_opts o = { .dir = dir, .max_bytes = 4ull << 30 };
	struct cache_jnl *j = NULL;

	CHECK_OK(cache_jnl_open(&j, &o));
	if (!j)
		exit(1);
	return j;
}

/* One timed write of total bytes in chunk pieces, into the journal or into
 * a plain file in the same directory tree, ending with one fdatasync if
 * sync.  Returns seconds. */
static double pwrite_once(const char *base, unsigned char *b, size_t chunk,
                          uint64_t total, bool journal, bool sync)
{
	char dir[512], plain[512];
	struct cache_jnl *j;
	uint64_t id;
	double t0, t;
	int fd;

	snprintf(dir, sizeof(dir), "%s/j", base);
	snprintf(plain, sizeof(plain), "%s/plain", base);
	if (journal) {
		j = jopen(dir);
		CHECK_OK(cache_jnl_file_new(j, &id));
		t0 = now_s();
		for (uint64_t off = 0; off < total; off += chunk)
			CHECK_OK(cache_jnl_pwrite(j, id, b, chunk, off));
		if (sync)
			CHECK_OK(cache_jnl_sync_file(j, id));
		t = now_s() - t0;
		CHECK_OK(cache_jnl_file_release(j, id));
		cache_jnl_close(j);
		rm_rf(dir);
		return t;
	}
	fd = open(plain, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	t0 = now_s();
	for (uint64_t off = 0; off < total; off += chunk)
		CHECK(pwrite(fd, b, chunk, (off_t)off) == (ssize_t)chunk);
	if (sync)
		CHECK(fdatasync(fd) == 0);
	t = now_s() - t0;
	close(fd);
	unlink(plain);
	return t;
}

/* Alternates journal and plain runs (the order matters: write-back of one
 * run slows the next), reports the medians of three of each. */
static void bench_pwrite(const char *base, size_t chunk, uint64_t total,
                         bool sync)
{
	unsigned char *b = malloc(chunk);
	double tj[3], tp[3];

	fill(b, chunk, 1);
	/* Discarded: the first run pays for write-back left by earlier work. */
	(void)pwrite_once(base, b, chunk, total, false, sync);
	for (int r = 0; r < 3; r++) {
		if (r % 2 == 0) {
			tj[r] = pwrite_once(base, b, chunk, total, true, sync);
			tp[r] = pwrite_once(base, b, chunk, total, false, sync);
		} else {
			tp[r] = pwrite_once(base, b, chunk, total, false, sync);
			tj[r] = pwrite_once(base, b, chunk, total, true, sync);
		}
	}
	if (getenv("JNL_BENCH_VERBOSE"))
		for (int r = 0; r < 3; r++)
			printf("    round %d: journal %.3f s, plain %.3f s\n", r,
			       tj[r], tp[r]);
	qsort(tj, 3, sizeof(double), cmp_d);
	qsort(tp, 3, sizeof(double), cmp_d);
	printf("  pwrite %" PRIu64 " MiB in %zu KiB pieces%s: journal %.0f "
	       "MB/s, plain file %.0f MB/s, journal/plain %.2f\n",
	       total >> 20, chunk >> 10, sync ? " + fdatasync" : "",
	       total / tj[1] / 1e6, total / tp[1] / 1e6, tp[1] / tj[1]);
	free(b);
}

static void bench_fsync(const char *base, int n)
{
	char dir[512], plain[512];
	unsigned char b[4096];
	double *tj = calloc((size_t)n, sizeof(double));
	double *tp = calloc((size_t)n, sizeof(double));
	struct cache_jnl *j;
	uint64_t id;
	int fd;

	memset(b, 'a', sizeof(b));
	snprintf(dir, sizeof(dir), "%s/j", base);
	snprintf(plain, sizeof(plain), "%s/plain", base);
	j = jopen(dir);
	CHECK_OK(cache_jnl_file_new(j, &id));
	for (int i = 0; i < n; i++) {
		double t0 = now_s();

		CHECK_OK(cache_jnl_pwrite(j, id, b, sizeof(b),
		                          (uint64_t)i * sizeof(b)));
		CHECK_OK(cache_jnl_sync_file(j, id));
		tj[i] = now_s() - t0;
	}
	CHECK_OK(cache_jnl_file_release(j, id));
	cache_jnl_close(j);
	rm_rf(dir);
	fd = open(plain, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	for (int i = 0; i < n; i++) {
		double t0 = now_s();

		CHECK(pwrite(fd, b, sizeof(b), (off_t)i * 4096) == 4096);
		CHECK(fdatasync(fd) == 0);
		tp[i] = now_s() - t0;
	}
	close(fd);
	unlink(plain);
	qsort(tj, (size_t)n, sizeof(double), cmp_d);
	qsort(tp, (size_t)n, sizeof(double), cmp_d);
	printf("  4 KiB write + sync (%d runs): journal median %.2f ms, p90 "
	       "%.2f ms; plain write+fdatasync median %.2f ms, p90 %.2f ms\n",
	       n, tj[n / 2] * 1e3, tj[n * 9 / 10] * 1e3, tp[n / 2] * 1e3,
	       tp[n * 9 / 10] * 1e3);
	free(tj);
	free(tp);
}

static void bench_append(const char *base, int n, int nsync)
{
	char dir[512], name[128];
	struct cache_jnl *j;
	double t0, ta, ts;

	snprintf(dir, sizeof(dir), "%s/j", base);
	j = jopen(dir);
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR, .path = name,
		                          .mode = 0755, .uid = 1000 };

		snprintf(name, sizeof(name), "/home/user/src/project/dir%d", i);
		CHECK_OK(cache_jnl_append(j, &m, false, NULL));
	}
	ta = now_s() - t0;
	t0 = now_s();
	for (int i = 0; i < nsync; i++) {
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR, .path = name,
		                          .mode = 0755, .uid = 1000 };

		snprintf(name, sizeof(name), "/home/user/src/project/s%d", i);
		CHECK_OK(cache_jnl_append(j, &m, true, NULL));
	}
	ts = now_s() - t0;
	cache_jnl_close(j);
	rm_rf(dir);
	printf("  journal appends: %.0f ops/s not synced (survive kill -9), "
	       "%.0f ops/s synced each (survive power cut)\n", n / ta,
	       nsync / ts);
}

/* Reopening a journal with n pending operations (a tenth of them staged
 * files): the replay reads the log and lists data/, never the data. */
static void bench_reopen(const char *base, int n)
{
	char dir[512], name[128];
	struct cache_jnl *j;
	double t0, t;

	snprintf(dir, sizeof(dir), "%s/j", base);
	j = jopen(dir);
	for (int i = 0; i < n; i++) {
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR, .path = name,
		                          .uid = 1000 };
		uint64_t id = 0;

		snprintf(name, sizeof(name), "/home/user/src/project/e%d", i);
		if (i % 10 == 0) {
			CHECK_OK(cache_jnl_file_new(j, &id));
			CHECK_OK(cache_jnl_pwrite(j, id, name, 16, 0));
			m.kind = CACHE_JNL_WRITE;
			m.file_id = id;
			m.size = 16;
		}
		CHECK_OK(cache_jnl_append(j, &m, false, NULL));
		if (id)
			CHECK_OK(cache_jnl_file_release(j, id));
	}
	cache_jnl_close(j);
	t0 = now_s();
	j = jopen(dir);
	t = now_s() - t0;
	{
		struct cache_jnl_stats st;

		cache_jnl_stats(j, &st);
		CHECK(st.ops == (uint64_t)n);
		printf("  reopen with %d pending operations (%d staged files, log "
		       "%.1f MB): %.3f s\n", n, n / 10, st.log_bytes / 1e6, t);
	}
	cache_jnl_close(j);
	rm_rf(dir);
}

static void bench_lmdb(const char *base, unsigned flags, const char *label,
                       int n)
{
	char path[512];
	MDB_env *env = NULL;
	MDB_dbi dbi;
	MDB_txn *txn;
	unsigned char val[120];
	double t0, t;
	int rc;

	memset(val, 'v', sizeof(val));
	snprintf(path, sizeof(path), "%s/lmdb", base);
	rc = mdb_env_create(&env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(env, 1ull << 30);
	if (rc == 0)
		rc = mdb_env_open(env, path, MDB_NOSUBDIR | flags, 0600);
	CHECK(rc == 0);
	if (rc != 0)
		return;
	CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
	CHECK(mdb_dbi_open(txn, NULL, 0, &dbi) == 0);
	CHECK(mdb_txn_commit(txn) == 0);
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		uint64_t k = __builtin_bswap64((uint64_t)i);
		MDB_val kv = { 8, &k }, vv = { sizeof(val), val };

		CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
		CHECK(mdb_put(txn, dbi, &kv, &vv, MDB_APPEND) == 0);
		CHECK(mdb_txn_commit(txn) == 0);
	}
	t = now_s() - t0;
	mdb_env_close(env);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lmdb-lock", base);
	unlink(path);
	printf("  LMDB, one commit per record, %s: %.0f commits/s\n", label,
	       n / t);
}

int main(void)
{
	char base[256], dir[300];

	full = getenv("JNL_BENCH") && atoi(getenv("JNL_BENCH")) > 0;
	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	bench_pwrite(base, 128 << 10, full ? 256 << 20 : 8 << 20, false);
	bench_pwrite(base, 1 << 20, full ? 256 << 20 : 8 << 20, false);
	bench_pwrite(base, 1 << 20, full ? 1ull << 30 : 8 << 20, true);
	bench_fsync(base, full ? 200 : 10);
	bench_append(base, full ? 200000 : 2000, full ? 300 : 10);
	bench_reopen(base, full ? 100000 : 1000);
	bench_lmdb(base, 0, "default (durable)", full ? 300 : 10);
	bench_lmdb(base, MDB_NOMETASYNC, "MDB_NOMETASYNC", full ? 300 : 10);
	bench_lmdb(base, MDB_NOSYNC, "MDB_NOSYNC (not power-cut safe)",
	           full ? 200000 : 2000);
	rm_rf(base);
	CHECK_EXIT();
}
