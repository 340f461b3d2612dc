/* Write journal (cache/journal.c) under injected fdatasync results.  This
 * binary defines fdatasync itself, so journal.o's calls land here (the
 * executable's definition wins over libc's): each call is recorded by the
 * file's name, and chosen names fail with EIO.  That shows what a sync
 * flushes, in which order, and what happens when the disk reports an error
 * (after which Linux may have dropped the pages: a retried fdatasync would
 * succeed without them). */
#define _XOPEN_SOURCE 700
#define _DEFAULT_SOURCE
#define _GNU_SOURCE
#include "cache/cache.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the interposed fdatasync ---- */

#define LOG_MAX 256
static char synced[LOG_MAX][64];  /* base names, in call order */
static int nsynced;
static struct {
	char name[64];                /* this base name fails ... */
	int left;                     /* ... this many more times */
} fails[2];

static void fail_set(int k, const char *name, int times)
{
	snprintf(fails[k].name, sizeof(fails[k].name), "%s", name);
	fails[k].left = times;
}

static void base_of(int fd, char *out, size_t n)
{
	char link[64], path[PATH_MAX];
	ssize_t l;
	const char *b;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	l = readlink(link, path, sizeof(path) - 1);
	path[l > 0 ? l : 0] = '\0';
	b = strrchr(path, '/');
	b = b ? b + 1 : path;
	l = (ssize_t)strnlen(b, n - 1);
	memcpy(out, b, (size_t)l);
	out[l] = '\0';
}

int fdatasync(int fd)
{
	char name[64];

	base_of(fd, name, sizeof(name));
	if (nsynced < LOG_MAX)
		snprintf(synced[nsynced++], 64, "%s", name);
	for (int k = 0; k < 2; k++)
		if (fails[k].left > 0 && strcmp(name, fails[k].name) == 0) {
			fails[k].left--;
			errno = EIO;
			return -1;
		}
	return (int)syscall(SYS_fdatasync, fd);
}

static int synced_at(const char *name)
{
	for (int i = 0; i < nsynced; i++)
		if (strcmp(synced[i], name) == 0)
			return i;
	return -1;
}

static void idname(uint64_t id, char *buf)
{
	snprintf(buf, 32, "%016" PRIx64, id);
}

/* ---- helpers ---- */

static struct cache_jnl *jopen(const char *dir)
{
	struct cache_jnl_opts o = { .dir = dir, .max_bytes = 1ull << 30 };
	struct cache_jnl *j = NULL;

	CHECK_OK(cache_jnl_open(&j, &o));
	if (!j)
		exit(1);
	return j;
}

static uint64_t staged(struct cache_jnl *j, const char *path, bool record)
{
	unsigned char b[5000];
	uint64_t id = 0;

	fill(b, sizeof(b), 42);
	CHECK_OK(cache_jnl_file_new(j, &id));
	CHECK_OK(cache_jnl_pwrite(j, id, b, sizeof(b), 0));
	if (record) {
		struct cache_jnl_op op = { .kind = CACHE_JNL_WRITE, .path = path,
		                           .file_id = id, .size = sizeof(b) };

		CHECK_OK(cache_jnl_append(j, &op, false, NULL));
	}
	return id;
}

static int count_ops(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	(*(int *)arg)++;
	return 0;
}

static int nops(struct cache_jnl *j)
{
	int n = 0;

	CHECK_OK(cache_jnl_foreach(j, count_ops, &n));
	return n;
}

/* ---- tests ---- */

/* A sync flushes the staged files that operations name, then the log;
 * not a file still being written that no operation names; sync_file adds
 * that one. */
static void test_sync_set(void)
{
	char base[256], dir[300], a[32], b[32];
	struct cache_jnl *j;
	uint64_t ida, idb;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir);
	ida = staged(j, "/a", false);
	idb = staged(j, "/b", true);
	idname(ida, a);
	idname(idb, b);
	nsynced = 0;
	CHECK_OK(cache_jnl_sync(j));
	CHECK(synced_at(b) >= 0);
	CHECK(synced_at(a) < 0);
	CHECK(synced_at("ops") > synced_at(b));  /* data before the log */
	nsynced = 0;
	CHECK_OK(cache_jnl_sync(j));
	CHECK(nsynced == 0);  /* nothing new: nothing to flush */
	CHECK_OK(cache_jnl_sync_file(j, ida));
	CHECK(synced_at(a) >= 0);
	CHECK_OK(cache_jnl_file_release(j, ida));
	CHECK_OK(cache_jnl_file_release(j, idb));
	cache_jnl_close(j);
	rm_rf(base);
}

/* Operations a killed daemon appended but never synced are flushed, with
 * their staged files, when the journal is opened again. */
static void test_tail_at_open(void)
{
	char base[256], dir[300], c[32];
	struct cache_jnl *j;
	uint64_t idc = 0;
	int pfd[2], status;
	pid_t pid;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	CHECK(pipe(pfd) == 0);
	pid = fork();
	if (pid == 0) {
		j = jopen(dir);
		(void)staged(j, "/synced", true);
		CHECK_OK(cache_jnl_sync(j));
		idc = staged(j, "/tail", true);
		if (write(pfd[1], &idc, sizeof(idc)) != sizeof(idc))
			_exit(2);
		_exit(check_failures ? 1 : 0);  /* as if killed: no sync */
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(read(pfd[0], &idc, sizeof(idc)) == sizeof(idc));
	close(pfd[0]);
	close(pfd[1]);
	idname(idc, c);
	nsynced = 0;
	j = jopen(dir);
	CHECK(synced_at(c) >= 0);
	CHECK(synced_at("ops") > synced_at(c));
	CHECK(nops(j) == 2);
	cache_jnl_close(j);
	rm_rf(base);
}

/* A staged file whose fdatasync fails: the sync fails, the file reads as
 * EIO from then on, its operation is set aside (also after a restart),
 * and later syncs of everything else succeed. */
static void test_data_fsync_fails(void)
{
	char base[256], dir[300], d[32];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	unsigned char buf[16];
	uint64_t idd, ide;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir);
	idd = staged(j, "/d", true);
	idname(idd, d);
	fail_set(0, d, 1);
	CHECK_ERR(cache_jnl_sync(j), -EIO);
	CHECK(fails[0].left == 0);
	CHECK_ERR(cache_jnl_pread(j, idd, buf, sizeof(buf), 0), -EIO);
	CHECK_ERR(cache_jnl_pwrite(j, idd, buf, sizeof(buf), 0), -EIO);
	CHECK_ERR(cache_jnl_sync_file(j, idd), -EIO);
	CHECK(cache_jnl_file_open(j, idd) == -EIO);
	CHECK(nops(j) == 0);
	cache_jnl_stats(j, &st);
	CHECK(st.setaside == 1);
	ide = staged(j, "/e", true);
	CHECK_OK(cache_jnl_sync(j));
	CHECK_OK(cache_jnl_file_release(j, idd));
	CHECK_OK(cache_jnl_file_release(j, ide));
	cache_jnl_close(j);
	j = jopen(dir);
	CHECK(nops(j) == 1);
	cache_jnl_stats(j, &st);
	CHECK(st.setaside == 0);
	cache_jnl_close(j);
	rm_rf(base);
}

/* The log's fdatasync fails: the log is rewritten into a fresh file and
 * the sync succeeds; if the rewrite fails too, the sync fails and the next
 * one rewrites again instead of trusting a second fdatasync. */
static void test_log_fsync_fails(void)
{
	char base[256], dir[300], p[400];
	struct cache_jnl *j;
	struct stat before, after;
	uint64_t id[3];

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	snprintf(p, sizeof(p), "%s/ops", dir);
	j = jopen(dir);
	id[0] = staged(j, "/f", true);
	CHECK(stat(p, &before) == 0);
	fail_set(0, "ops", 1);
	nsynced = 0;
	CHECK_OK(cache_jnl_sync(j));
	CHECK(synced_at("ops") >= 0 && synced_at("ops.new") > synced_at("ops"));
	CHECK(stat(p, &after) == 0 && after.st_ino != before.st_ino);

	id[1] = staged(j, "/g", true);
	fail_set(0, "ops", 1);
	fail_set(1, "ops.new", 1);
	CHECK_ERR(cache_jnl_sync(j), -EIO);
	nsynced = 0;
	CHECK_OK(cache_jnl_sync(j));
	CHECK(synced_at("ops.new") >= 0);  /* rewritten, not just synced */
	nsynced = 0;
	CHECK_OK(cache_jnl_sync(j));
	CHECK(nsynced == 0);  /* trusted again */

	id[2] = staged(j, "/h", true);
	for (int i = 0; i < 3; i++)
		CHECK_OK(cache_jnl_file_release(j, id[i]));
	cache_jnl_close(j);
	j = jopen(dir);
	CHECK(nops(j) == 3);
	cache_jnl_close(j);
	rm_rf(base);
}

int main(void)
{
	RUN(test_sync_set);
	RUN(test_tail_at_open);
	RUN(test_data_fsync_fails);
	RUN(test_log_fsync_fails);
	CHECK_EXIT();
}
