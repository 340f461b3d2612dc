/* Unit tests for the write journal (cache/journal.c): round trips, order,
 * replay, kill -9 at random points, a system crash, corrupt and torn
 * records, the cap, a full filesystem, foreign file types at journal paths,
 * a 1 GiB staged file read back with bounded memory.
 * JNL_SEED=n repeats a run; JNL_ROUNDS=n more kill -9 rounds; JNL_BIG_MB. */
#define _XOPEN_SOURCE 700  /* nftw */
#define _DEFAULT_SOURCE
#define _GNU_SOURCE
#include "cache/cache.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t seed0;

static struct cache_jnl *jopen(const char *dir, uint64_t cap)
{
	struct cache_jnl_opts o = { .dir = dir, .max_bytes = cap };
	struct cache_jnl *j = NULL;
	int rc = cache_jnl_open(&j, &o);

	CHECK_OK(rc);
	if (rc != 0) {
		fprintf(stderr, "cannot open journal in %s\n", dir);
		exit(1);
	}
	return j;
}

static int try_open(const char *dir, struct cache_jnl **j)
{
	struct cache_jnl_opts o = { .dir = dir, .max_bytes = 1 << 20 };

	return cache_jnl_open(j, &o);
}

/* Collects what foreach reports. */
struct seen {
	int n;
	uint64_t seq[4096];
	struct cache_jnl_op op[4096];
	char path[4096][64];
	char path2[4096][64];
	char err[4096][64];
};

static int collect(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct seen *s = arg;

	if (s->n >= 4096)
		return 1;
	s->seq[s->n] = seq;
	s->op[s->n] = *op;
	snprintf(s->path[s->n], 64, "%s", op->path);
	snprintf(s->path2[s->n], 64, "%s", op->path2 ? op->path2 : "(null)");
	snprintf(s->err[s->n], 64, "%s", op->last_error);
	s->op[s->n].path = s->path[s->n];
	s->n++;
	return 0;
}

static struct seen *seen_of(struct cache_jnl *j)
{
	struct seen *s = calloc(1, sizeof(*s));

	CHECK_OK(cache_jnl_foreach(j, collect, s));
	for (int i = 1; i < s->n; i++)
		CHECK(s->seq[i] > s->seq[i - 1]);
	return s;
}

static uint64_t new_file(struct cache_jnl *j, size_t len, uint64_t seed)
{
	unsigned char *p = malloc(len + 8);
	uint64_t id = 0;

	fill(p, len, seed);
	CHECK_OK(cache_jnl_file_new(j, &id));
	if (len)
		CHECK_OK(cache_jnl_pwrite(j, id, p, len, 0));
	free(p);
	return id;
}

static bool file_is(struct cache_jnl *j, uint64_t id, size_t len,
                    uint64_t seed)
{
	unsigned char *want = malloc(len + 8), *got = malloc(len + 9);
	bool ok;

	fill(want, len, seed);
	ok = cache_jnl_pread(j, id, got, len + 1, 0) == (ssize_t)len &&
	     memcmp(want, got, len) == 0;
	free(want);
	free(got);
	return ok;
}

static uint64_t append_write(struct cache_jnl *j, const char *path,
                             uint64_t id, uint64_t size, bool sync)
{
	struct cache_jnl_op op = {
		.kind = CACHE_JNL_WRITE, .path = path, .file_id = id,
		.size = size, .mode = 0644, .uid = 1001, .gid = 1002,
		.mtime_sec = 1700000000, .mtime_nsec = 5,
	};
	uint64_t seq = 0;

	CHECK_OK(cache_jnl_append(j, &op, sync, &seq));
	return seq;
}

static const char *jpath(const char *dir, const char *name, char *buf)
{
	snprintf(buf, 1024, "%s/%s", dir, name);
	return buf;
}

/* ---- tests ---- */

static void test_round_trip(void)
{
	char base[256], dir[300], p[1024];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	unsigned char buf[10000], got[10000];
	uint64_t id, seq[6], sz;
	struct seen *s;
	struct stat sb;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 1 << 20);
	CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	CHECK(stat(jpath(dir, "data", p), &sb) == 0 &&
	      (sb.st_mode & 0777) == 0700);
	CHECK(stat(jpath(dir, "ops", p), &sb) == 0 &&
	      (sb.st_mode & 0777) == 0600);

	/* Odd offsets, a hole, a shrink and a grow. */
	fill(buf, sizeof(buf), 7);
	CHECK_OK(cache_jnl_file_new(j, &id));
	CHECK(id != 0);
	CHECK_OK(cache_jnl_pwrite(j, id, buf + 4095, 4097, 4095));
	CHECK_OK(cache_jnl_pwrite(j, id, buf, 1, 0));
	CHECK(cache_jnl_pread(j, id, got, sizeof(got), 0) == 8192);
	CHECK(got[0] == buf[0] && memcmp(got + 4095, buf + 4095, 4097) == 0);
	for (int i = 1; i < 4095; i++)
		if (got[i] != 0) {
			CHECK(got[i] == 0);
			break;
		}
	CHECK_OK(cache_jnl_truncate(j, id, 5000));
	CHECK_OK(cache_jnl_file_size(j, id, &sz));
	CHECK(sz == 5000);
	CHECK(cache_jnl_pread(j, id, got, sizeof(got), 4000) == 1000);
	CHECK_OK(cache_jnl_truncate(j, id, 9000));
	CHECK(cache_jnl_pread(j, id, got, sizeof(got), 4999) == 4001);
	CHECK(got[0] == buf[4999] && got[1] == 0 && got[4000] == 0);
	cache_jnl_stats(j, &st);
	CHECK(st.bytes == 9000 && st.files == 1 && st.ops == 0);
	{
		int fd = cache_jnl_file_open(j, id);

		CHECK(fd >= 0);
		CHECK(fd >= 0 && write(fd, "x", 1) < 0);  /* read-only */
		CHECK(fd >= 0 && pread(fd, got, 1, 4095) == 1 &&
		      got[0] == buf[4095]);
		if (fd >= 0)
			close(fd);
	}

	/* Every kind, fields intact, in order. */
	{
		struct cache_jnl_op ops[6] = {
			{ .kind = CACHE_JNL_MKDIR, .path = "/u/d", .mode = 0750,
			  .uid = 5, .gid = 6 },
			{ .kind = CACHE_JNL_WRITE, .path = "/u/d/f", .file_id = id,
			  .size = 9000, .mode = 0600, .uid = 5, .gid = 6,
			  .mtime_sec = 123, .mtime_nsec = 456,
			  .base_present = true, .base_size = 77,
			  .base_mtime = 88, .base_etag = "\"etag-1\"" },
			{ .kind = CACHE_JNL_RENAME, .path = "/u/d/f",
			  .path2 = "/u/d/g", .flags = 1, .uid = 5 },
			{ .kind = CACHE_JNL_SETATTR, .path = "/u/d/g",
			  .flags = CACHE_JNL_SET_MODE, .mode = 0755, .uid = 5 },
			{ .kind = CACHE_JNL_UNLINK, .path = "/u/x", .uid = 5 },
			{ .kind = CACHE_JNL_RMDIR, .path = "/u/y", .uid = 5 },
		};

		for (int i = 0; i < 6; i++)
			CHECK_OK(cache_jnl_append(j, &ops[i], i == 5, &seq[i]));
	}
	CHECK_OK(cache_jnl_file_release(j, id));
	CHECK_ERR(cache_jnl_file_release(j, id), -ENOENT);
	s = seen_of(j);
	CHECK(s->n == 6);
	CHECK(s->op[0].kind == CACHE_JNL_MKDIR && s->op[0].mode == 0750);
	CHECK(s->op[1].kind == CACHE_JNL_WRITE && s->op[1].file_id == id &&
	      s->op[1].size == 9000 && s->op[1].uid == 5 &&
	      s->op[1].gid == 6 && s->op[1].mtime_sec == 123 &&
	      s->op[1].mtime_nsec == 456 && s->op[1].base_present &&
	      s->op[1].base_size == 77 && s->op[1].base_mtime == 88);
	CHECK_STR(s->path2[2], "/u/d/g");
	CHECK(s->op[2].flags == 1);
	CHECK_STR(s->path2[1], "(null)");
	CHECK(!s->op[0].base_present);
	for (int i = 0; i < 6; i++)
		CHECK(s->seq[i] == seq[i]);
	free(s);

	/* Malformed ops are refused and change nothing. */
	{
		struct cache_jnl_op bad = { .kind = CACHE_JNL_RENAME,
		                            .path = "/a" };
		char *longp = malloc(CACHE_JNL_PATH_MAX + 2);

		CHECK_ERR(cache_jnl_append(j, &bad, false, NULL), -EINVAL);
		bad.kind = CACHE_JNL_WRITE;
		bad.file_id = 999;
		CHECK_ERR(cache_jnl_append(j, &bad, false, NULL), -EINVAL);
		bad.kind = 99;
		CHECK_ERR(cache_jnl_append(j, &bad, false, NULL), -EINVAL);
		memset(longp, 'a', CACHE_JNL_PATH_MAX + 1);
		longp[CACHE_JNL_PATH_MAX + 1] = '\0';
		bad.kind = CACHE_JNL_MKDIR;
		bad.path = longp;
		CHECK_ERR(cache_jnl_append(j, &bad, false, NULL), -EINVAL);
		bad.path = "";
		CHECK_ERR(cache_jnl_append(j, &bad, false, NULL), -EINVAL);
		free(longp);
	}
	cache_jnl_stats(j, &st);
	CHECK(st.ops == 6);

	/* done: the file goes when its op goes (it was released). */
	CHECK_OK(cache_jnl_update(j, seq[1], "HTTP 507 Insufficient Storage"));
	CHECK_OK(cache_jnl_update(j, seq[1], "HTTP 507 again"));
	CHECK_OK(cache_jnl_done(j, seq[0]));
	CHECK_ERR(cache_jnl_done(j, seq[0]), -ENOENT);
	CHECK_ERR(cache_jnl_update(j, seq[0], "x"), -ENOENT);
	s = seen_of(j);
	CHECK(s->n == 5 && s->seq[0] == seq[1] && s->op[0].retries == 2);
	CHECK_STR(s->err[0], "HTTP 507 again");
	free(s);
	CHECK_OK(cache_jnl_done(j, seq[1]));
	cache_jnl_stats(j, &st);
	CHECK(st.files == 0 && st.bytes == 0 && st.ops == 4);
	CHECK(cache_jnl_pread(j, id, got, 1, 0) == -ENOENT);
	cache_jnl_close(j);
	rm_rf(base);
}

/* Walks with done and append inside the callback. */
struct walk {
	struct cache_jnl *j;
	int n;
	uint64_t last;
};

static int walk_fn(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct walk *w = arg;

	CHECK(seq > w->last);
	w->last = seq;
	w->n++;
	CHECK_OK(cache_jnl_done(w->j, seq));
	if (w->n == 1) {
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR,
		                          .path = "/late" };

		CHECK_OK(cache_jnl_append(w->j, &m, false, NULL));
	}
	return 0;
}

static void test_reopen_order(void)
{
	char base[256], dir[300], name[64];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	uint64_t ids[50], seqs[50], held, last;
	struct seen *s;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 64 << 20);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "/f%d", i);
		ids[i] = new_file(j, 1000 + 37 * i, seed0 + i);
		seqs[i] = append_write(j, name, ids[i], 1000 + 37 * i, false);
		CHECK_OK(cache_jnl_file_release(j, ids[i]));
	}
	for (int i = 0; i < 50; i += 3)
		CHECK_OK(cache_jnl_done(j, seqs[i]));
	CHECK_OK(cache_jnl_update(j, seqs[1], "origin down"));
	held = new_file(j, 500, 1);  /* never recorded: an orphan later */
	(void)held;
	cache_jnl_close(j);

	j = jopen(dir, 64 << 20);
	s = seen_of(j);
	CHECK(s->n == 33);
	last = 0;
	for (int i = 0, k = 0; i < 50; i++) {
		if (i % 3 == 0)
			continue;
		snprintf(name, sizeof(name), "/f%d", i);
		CHECK(k < s->n && s->seq[k] == seqs[i]);
		CHECK(k < s->n && strcmp(s->path[k], name) == 0);
		CHECK(file_is(j, ids[i], 1000 + 37 * i, seed0 + i));
		last = seqs[i];
		k++;
	}
	CHECK(s->op[0].retries == 1);
	CHECK_STR(s->err[0], "origin down");
	CHECK(s->op[0].uid == 1001 && s->op[0].gid == 1002);
	free(s);
	cache_jnl_stats(j, &st);
	CHECK(st.files == 33 && st.ops == 33);
	CHECK(cache_jnl_pread(j, held, name, 1, 0) == -ENOENT);
	/* Sequence numbers and file ids keep increasing across reopens. */
	{
		uint64_t id = new_file(j, 1, 2);

		CHECK(id > held);
		CHECK(append_write(j, "/new", id, 1, false) > last);
	}
	/* foreach tolerates done and append from inside the callback. */
	{
		struct walk w = { j, 0, 0 };

		CHECK_OK(cache_jnl_foreach(j, walk_fn, &w));
		CHECK(w.n == 35);  /* 33 + /new + /late */
	}
	cache_jnl_stats(j, &st);
	CHECK(st.ops == 0);
	cache_jnl_close(j);
	rm_rf(base);
}

/* Many append/done rounds: the log is compacted and stays correct. */
static void test_compaction(void)
{
	char base[256], dir[300], name[64];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	uint64_t keep[10], kid[10];
	struct seen *s;
	int k = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 64 << 20);
	for (int i = 0; i < 20000; i++) {
		uint64_t id = new_file(j, 16, i), seq;

		snprintf(name, sizeof(name), "/dir/some/longer/path/%d", i);
		seq = append_write(j, name, id, 16, false);
		CHECK_OK(cache_jnl_file_release(j, id));
		if (i % 2000 == 7 && k < 10) {
			kid[k] = id;
			keep[k++] = seq;
		} else {
			CHECK_OK(cache_jnl_done(j, seq));
		}
	}
	cache_jnl_stats(j, &st);
	CHECK(st.ops == 10 && st.files == 10);
	CHECK(st.log_bytes < (8u << 20));
	cache_jnl_close(j);
	j = jopen(dir, 64 << 20);
	s = seen_of(j);
	CHECK(s->n == 10);
	for (int i = 0; i < 10 && i < s->n; i++) {
		CHECK(s->seq[i] == keep[i]);
		CHECK(file_is(j, kid[i], 16, 7 + 2000 * i));
	}
	free(s);
	cache_jnl_close(j);
	rm_rf(base);
}

/* ---- kill -9 at random points ---- */

struct progress {
	uint64_t seq, id, size, seed;
};

/* The child: writes files and ops; reports each op after its sync
 * returned.  Never returns. */
static void child_writer(const char *dir, int fd, uint64_t seed)
{
	struct cache_jnl *j = jopen(dir, 1ull << 30);
	uint64_t s = seed;
	char name[64];

	for (int i = 0;; i++) {
		uint64_t len = splitmix(&s) % 300000, id, seq;
		uint64_t dseed = splitmix(&s);
		bool sync = splitmix(&s) % 3 == 0;
		struct progress pr;

		id = new_file(j, (size_t)len, dseed);
		snprintf(name, sizeof(name), "/k/%" PRIu64, dseed);
		seq = append_write(j, name, id, len, false);
		if (sync && cache_jnl_sync_file(j, id) != 0)
			_exit(3);
		CHECK_OK(cache_jnl_file_release(j, id));
		if (splitmix(&s) % 4 == 0) {
			struct cache_jnl_op r = { .kind = CACHE_JNL_RENAME,
			                          .path = name, .path2 = "/k/x" };

			if (cache_jnl_append(j, &r, true, NULL) != 0)
				_exit(3);
		}
		pr = (struct progress){ seq, id, len, dseed };
		/* Reported only when durable (sync) — unsynced ones must
		 * survive a kill -9 too, but are checked by content only. */
		if (sync && write(fd, &pr, sizeof(pr)) != sizeof(pr))
			_exit(4);
		if (check_failures)
			_exit(5);
	}
}

struct kcheck {
	struct cache_jnl *j;
	int bad;
};

static int kcheck_fn(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct kcheck *k = arg;
	uint64_t dseed;

	if (op->kind != CACHE_JNL_WRITE)
		return 0;
	dseed = strtoull(op->path + 3, NULL, 10);
	/* Every record present is whole, and so is its data (kill -9 keeps
	 * the page cache), synced or not. */
	if (!file_is(k->j, op->file_id, op->size, dseed)) {
		fprintf(stderr, "op %" PRIu64 " %s: data differ\n", seq,
		        op->path);
		k->bad++;
	}
	return 0;
}

static void test_kill9(void)
{
	int rounds = getenv("JNL_ROUNDS") ? atoi(getenv("JNL_ROUNDS")) : 6;
	uint64_t s = seed0 ^ 0x1234;

	for (int r = 0; r < rounds; r++) {
		char base[256], dir[300];
		struct progress pr[4096];
		int pfd[2], n = 0, status;
		struct cache_jnl *j;
		struct seen *seen;
		struct kcheck kc = { 0 };
		pid_t pid;
		ssize_t got;
		uint64_t cseed = splitmix(&s);
		unsigned delay = (unsigned)(splitmix(&s) % 400000) + 5000;

		tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
		/* A first session leaves pending ops behind. */
		j = jopen(dir, 1ull << 30);
		{
			uint64_t id = new_file(j, 4321, 99);

			append_write(j, "/k/99", id, 4321, true);
		}
		cache_jnl_close(j);
		CHECK(pipe(pfd) == 0);
		pid = fork();
		if (pid == 0) {
			close(pfd[0]);
			child_writer(dir, pfd[1], cseed);
		}
		close(pfd[1]);
		usleep(delay);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		while (n < 4096 && (got = read(pfd[0], &pr[n], sizeof(pr[n]))) ==
		       (ssize_t)sizeof(pr[n]))
			n++;
		close(pfd[0]);

		j = jopen(dir, 1ull << 30);
		seen = seen_of(j);
		kc.j = j;
		CHECK_OK(cache_jnl_foreach(j, kcheck_fn, &kc));
		CHECK(kc.bad == 0);
		CHECK(seen->n >= 1 && strcmp(seen->path[0], "/k/99") == 0);
		for (int i = 0, k = 0; i < n; i++) {
			while (k < seen->n && seen->seq[k] < pr[i].seq)
				k++;
			CHECK(k < seen->n && seen->seq[k] == pr[i].seq &&
			      seen->op[k].file_id == pr[i].id &&
			      seen->op[k].size == pr[i].size);
			if (!(k < seen->n && seen->seq[k] == pr[i].seq)) {
				fprintf(stderr, "round %d seed %" PRIu64 ": "
				        "synced op %" PRIu64 " lost\n", r, cseed,
				        pr[i].seq);
				break;
			}
		}
		printf("  kill -9 round %d after %u us: %d synced ops reported, "
		       "%d ops found\n", r, delay, n, seen->n);
		free(seen);
		cache_jnl_close(j);
		rm_rf(base);
	}
}

/* A system crash: the marker names another boot, so operations after the
 * last sync barrier are set aside and their staged files kept in lost/. */
static void test_system_crash(void)
{
	char base[256], dir[300], p[1024], lost[1024];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	struct seen *s;
	uint64_t id1, id2, seq1;
	pid_t pid;
	int status, fd;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	pid = fork();
	if (pid == 0) {
		j = jopen(dir, 1 << 20);
		id1 = new_file(j, 100, 1);
		append_write(j, "/synced", id1, 100, true);
		id2 = new_file(j, 200, 2);
		append_write(j, "/unsynced", id2, 200, false);
		_exit(check_failures ? 1 : 0);  /* no close, no sync */
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fd = open(jpath(dir, "open.boot", p), O_WRONLY | O_TRUNC);
	CHECK(fd >= 0 && write(fd, "open 00000000-other-boot\n", 25) == 25);
	if (fd >= 0)
		close(fd);
	j = jopen(dir, 1 << 20);
	s = seen_of(j);
	CHECK(s->n == 1 && strcmp(s->path[0], "/synced") == 0);
	seq1 = s->n ? s->seq[0] : 0;
	CHECK(s->n && file_is(j, s->op[0].file_id, 100, 1));
	free(s);
	cache_jnl_stats(j, &st);
	CHECK(st.setaside == 1 && st.files == 1 && st.bytes == 100);
	{
		DIR *d = opendir(jpath(dir, "lost", lost));
		struct dirent *e;
		int found = 0;

		while (d && (e = readdir(d)) != NULL)
			found += strncmp(e->d_name, "0000000000000002.", 17) == 0;
		if (d)
			closedir(d);
		CHECK(found == 1);
	}
	cache_jnl_close(j);
	/* A clean close: no more setting aside. */
	j = jopen(dir, 1 << 20);
	s = seen_of(j);
	CHECK(s->n == 1 && s->seq[0] == seq1);
	free(s);
	cache_jnl_close(j);
	rm_rf(base);
}

/* Corrupt bytes in a record: detected, set aside, others replayed. */
static void test_corrupt(void)
{
	char base[256], dir[300], p[1024];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	struct seen *s;
	uint64_t seq[4];
	struct stat sb;
	off_t offs[5];
	int fd;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 1 << 20);
	for (int i = 0; i < 4; i++) {
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR,
		                          .path = i == 0 ? "/a" : i == 1 ? "/b" :
		                          i == 2 ? "/c" : "/d" };

		cache_jnl_stats(j, &st);
		offs[i] = (off_t)st.log_bytes;
		CHECK_OK(cache_jnl_append(j, &m, false, &seq[i]));
	}
	cache_jnl_stats(j, &st);
	offs[4] = (off_t)st.log_bytes;
	cache_jnl_close(j);

	/* One flipped bit in the path of /b, and one in the header of /d. */
	fd = open(jpath(dir, "ops", p), O_RDWR);
	CHECK(fd >= 0);
	{
		unsigned char c;

		CHECK(pread(fd, &c, 1, offs[2] - 9) == 1);
		c ^= 0x10;
		CHECK(pwrite(fd, &c, 1, offs[2] - 9) == 1);
		CHECK(pread(fd, &c, 1, offs[3] + 9) == 1);
		c ^= 0x01;
		CHECK(pwrite(fd, &c, 1, offs[3] + 9) == 1);
	}
	close(fd);
	j = jopen(dir, 1 << 20);
	s = seen_of(j);
	CHECK(s->n == 2);
	CHECK(s->n == 2 && s->seq[0] == seq[0] && s->seq[1] == seq[2]);
	free(s);
	cache_jnl_stats(j, &st);
	CHECK(st.setaside == 2);
	CHECK(stat(jpath(dir, "ops.bad", p), &sb) == 0 && sb.st_size > 0 &&
	      (sb.st_mode & 0777) == 0600);
	cache_jnl_close(j);

	/* A torn append at the end: dropped; appends go on after it. */
	fd = open(jpath(dir, "ops", p), O_WRONLY | O_APPEND);
	CHECK(fd >= 0 && write(fd, "DMJ1\x40\0\0\0garbage", 15) == 15);
	if (fd >= 0)
		close(fd);
	j = jopen(dir, 1 << 20);
	{
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR, .path = "/e" };

		CHECK_OK(cache_jnl_append(j, &m, true, NULL));
	}
	cache_jnl_close(j);
	j = jopen(dir, 1 << 20);
	s = seen_of(j);
	CHECK(s->n == 3 && strcmp(s->path[2], "/e") == 0);
	free(s);
	cache_jnl_close(j);
	rm_rf(base);
}

/* The cap: -ENOSPC for growth past it, nothing changed, data intact. */
static void test_full(void)
{
	char base[256], dir[300];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	static unsigned char b[65536];
	uint64_t a, c, sz;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 1 << 20);
	a = new_file(j, 700000, 5);
	append_write(j, "/a", a, 700000, false);
	c = new_file(j, 300000, 6);
	memset(b, 'x', sizeof(b));
	CHECK_ERR(cache_jnl_pwrite(j, c, b, 100000, 300000), -ENOSPC);
	CHECK_ERR(cache_jnl_truncate(j, c, 400000), -ENOSPC);
	CHECK_OK(cache_jnl_file_size(j, c, &sz));
	CHECK(sz == 300000);
	CHECK_OK(cache_jnl_pwrite(j, c, b, 48576, 300000));  /* exactly full */
	CHECK_ERR(cache_jnl_pwrite(j, c, b, 1, 348576), -ENOSPC);
	CHECK_OK(cache_jnl_pwrite(j, c, b, 4096, 0));  /* inside: fine */
	cache_jnl_stats(j, &st);
	CHECK(st.bytes == 1 << 20);
	CHECK(file_is(j, a, 700000, 5));
	/* A shrink gives room back. */
	CHECK_OK(cache_jnl_truncate(j, c, 1000));
	CHECK_OK(cache_jnl_pwrite(j, c, b, 4096, 1000));
	CHECK_OK(cache_jnl_file_release(j, c));
	cache_jnl_stats(j, &st);
	CHECK(st.bytes == 700000);
	cache_jnl_close(j);
	j = jopen(dir, 1 << 20);
	CHECK(file_is(j, a, 700000, 5));
	cache_jnl_stats(j, &st);
	CHECK(st.bytes == 700000 && st.files == 1);
	cache_jnl_close(j);
	rm_rf(base);
}

/* A real full filesystem (1 MiB tmpfs): -ENOSPC, never corruption. */
static void test_tiny_fs(void)
{
	char base[256], dir[300], name[64];
	struct cache_jnl *j;
	unsigned char b[65536];
	uint64_t ids[200], seqs[200];
	int n = 0, wrc = 0, arc = 0;
	struct seen *s;

	if (geteuid() != 0) {
		printf("  skipped: needs root to mount a tmpfs\n");
		return;
	}
	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	if (mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV,
	          "size=1m,mode=0700") != 0) {
		printf("  skipped: mount tmpfs: %s\n", strerror(errno));
		rm_rf(base);
		return;
	}
	j = jopen(dir, 1ull << 30);
	fill(b, sizeof(b), 3);
	for (int i = 0; i < 200; i++) {
		struct cache_jnl_op op = { .kind = CACHE_JNL_WRITE,
		                           .size = sizeof(b) };
		uint64_t id;

		if (cache_jnl_file_new(j, &id) != 0)
			break;
		wrc = cache_jnl_pwrite(j, id, b, sizeof(b), 0);
		if (wrc != 0) {
			CHECK(wrc == -ENOSPC);
			CHECK_OK(cache_jnl_file_release(j, id));
			break;
		}
		snprintf(name, sizeof(name), "/t%d", i);
		op.path = name;
		op.file_id = id;
		arc = cache_jnl_append(j, &op, true, &seqs[n]);
		CHECK_OK(cache_jnl_file_release(j, id));
		if (arc != 0) {
			CHECK(arc == -ENOSPC);
			break;
		}
		ids[n++] = id;
	}
	CHECK(n > 0 && n < 200 && (wrc == -ENOSPC || arc == -ENOSPC));
	/* Metadata ops until the log itself cannot grow. */
	for (int i = 0; i < 100000; i++) {
		struct cache_jnl_op m = { .kind = CACHE_JNL_MKDIR,
		                          .path = "/a/rather/long/name/for/a/"
		                          "folder/that/fills/the/log/quickly" };
		int rc = cache_jnl_append(j, &m, false, NULL);

		if (rc != 0) {
			CHECK(rc == -ENOSPC);
			break;
		}
	}
	cache_jnl_close(j);
	j = jopen(dir, 1ull << 30);
	s = seen_of(j);
	CHECK(s->n >= n);
	for (int i = 0; i < n && i < s->n; i++) {
		CHECK(s->seq[i] == seqs[i]);
		CHECK(file_is(j, ids[i], sizeof(b), 3));
	}
	/* Uploads free the disk: then everything syncs again. */
	for (int i = 0; i < s->n; i++)
		CHECK_OK(cache_jnl_done(j, s->seq[i]));
	free(s);
	CHECK_OK(cache_jnl_sync(j));
	{
		uint64_t id = new_file(j, 4096, 9);

		append_write(j, "/after", id, 4096, true);
		CHECK_OK(cache_jnl_file_release(j, id));
	}
	cache_jnl_close(j);
	j = jopen(dir, 1ull << 30);
	s = seen_of(j);
	CHECK(s->n == 1 && strcmp(s->path[0], "/after") == 0);
	free(s);
	cache_jnl_close(j);
	printf("  tmpfs 1 MiB: %d staged files of 64 KiB, then ENOSPC\n", n);
	CHECK(umount2(base, MNT_DETACH) == 0);
	rm_rf(base);
}

/* Symlinks, FIFOs, directories where the journal expects its own files:
 * refused, never followed, never blocking. */
static void test_foreign_types(void)
{
	char base[256], dir[300], p[1024], q[1024];
	char target[512];
	struct cache_jnl *j = NULL;
	struct stat sb;
	uint64_t id;
	struct seen *s;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	snprintf(target, sizeof(target), "%s/target", base);
	CHECK(mkdir(target, 0755) == 0);

	/* The journal dir itself a symlink. */
	CHECK(symlink(target, dir) == 0);
	CHECK_ERR(try_open(dir, &j), -ELOOP);
	CHECK(unlink(dir) == 0);

	/* data/ a symlink. */
	CHECK(mkdir(dir, 0700) == 0);
	CHECK(symlink(target, jpath(dir, "data", p)) == 0);
	CHECK_ERR(try_open(dir, &j), -ELOOP);
	CHECK(unlink(p) == 0);

	/* ops a symlink to a file, then a FIFO, then a directory. */
	snprintf(q, sizeof(q), "%s/victim", target);
	CHECK(close(open(q, O_CREAT | O_WRONLY, 0644)) == 0);
	CHECK(symlink(q, jpath(dir, "ops", p)) == 0);
	CHECK_ERR(try_open(dir, &j), -ELOOP);
	CHECK(stat(q, &sb) == 0 && sb.st_size == 0 &&
	      (sb.st_mode & 0777) == 0644);
	CHECK(unlink(p) == 0);
	CHECK(mkfifo(p, 0600) == 0);
	CHECK_ERR(try_open(dir, &j), -EINVAL);
	CHECK(unlink(p) == 0);

	/* data/<id>: a symlink and a FIFO are removed, not followed; an op
	 * whose staged file became a symlink is set aside. */
	j = jopen(dir, 1 << 20);
	id = new_file(j, 10, 1);
	append_write(j, "/f", id, 10, true);
	CHECK_OK(cache_jnl_file_release(j, id));
	cache_jnl_close(j);
	snprintf(p, sizeof(p), "%s/data/%016" PRIx64, dir, id);
	CHECK(unlink(p) == 0 && symlink(q, p) == 0);
	snprintf(p, sizeof(p), "%s/data/%016x", dir, 0x777);
	CHECK(mkfifo(p, 0600) == 0);
	j = jopen(dir, 1 << 20);
	s = seen_of(j);
	CHECK(s->n == 0);
	free(s);
	CHECK(lstat(p, &sb) != 0);
	CHECK(stat(q, &sb) == 0 && sb.st_size == 0);
	cache_jnl_close(j);

	/* A second opener is refused while the first has it. */
	j = jopen(dir, 1 << 20);
	{
		struct cache_jnl *j2 = NULL;

		CHECK_ERR(try_open(dir, &j2), -EBUSY);
	}
	cache_jnl_close(j);

	/* Loose modes are tightened; someone else's directory is refused. */
	CHECK(chmod(dir, 0755) == 0);
	j = jopen(dir, 1 << 20);
	CHECK(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	cache_jnl_close(j);
	if (geteuid() == 0) {
		CHECK(chown(dir, 65534, 65534) == 0);
		CHECK_ERR(try_open(dir, &j), -EACCES);
	}
	rm_rf(base);
}

/* A 1 GiB staged file written and read back in 1 MiB pieces: the
 * process's memory does not follow the file's size. */
static void test_big(void)
{
	char base[256], dir[300];
	long mb = getenv("JNL_BIG_MB") ? atol(getenv("JNL_BIG_MB")) : 1024;
	size_t chunk = 1 << 20;
	unsigned char *b = malloc(chunk), *g = malloc(chunk);
	struct cache_jnl *j;
	struct rusage ru0, ru1;
	uint64_t id, s = seed0;
	double t0, t1, t2;
	bool same = true;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 2ull << 30);
	getrusage(RUSAGE_SELF, &ru0);
	CHECK_OK(cache_jnl_file_new(j, &id));
	t0 = now_s();
	for (long i = 0; i < mb; i++) {
		uint64_t v = splitmix(&s);

		fill(b, chunk, v);
		if (cache_jnl_pwrite(j, id, b, chunk, (uint64_t)i * chunk) != 0) {
			CHECK(0);
			break;
		}
	}
	CHECK_OK(cache_jnl_sync_file(j, id));
	append_write(j, "/big", id, (uint64_t)mb * chunk, true);
	t1 = now_s();
	s = seed0;
	for (long i = 0; i < mb && same; i++) {
		fill(b, chunk, splitmix(&s));
		same = cache_jnl_pread(j, id, g, chunk, (uint64_t)i * chunk) ==
		       (ssize_t)chunk && memcmp(b, g, chunk) == 0;
	}
	t2 = now_s();
	CHECK(same);
	getrusage(RUSAGE_SELF, &ru1);
	CHECK(ru1.ru_maxrss - ru0.ru_maxrss < 64 * 1024);  /* KiB */
	printf("  %ld MiB staged: write+fdatasync %.2f s, read back %.2f s, "
	       "max RSS grew %ld KiB\n", mb, t1 - t0, t2 - t1,
	       ru1.ru_maxrss - ru0.ru_maxrss);
	cache_jnl_close(j);
	rm_rf(base);
	free(b);
	free(g);
}

/* ---- many threads at once ---- */

#define THR_WRITERS 4
#define THR_OPS     6000

static struct cache_jnl *thr_j;
static _Atomic int thr_writers_left;
static _Atomic int thr_bad;

static void *thr_writer(void *arg)
{
	uint64_t s = seed0 + (uint64_t)(uintptr_t)arg * 7919;
	char name[64];

	for (int i = 0; i < THR_OPS; i++) {
		uint64_t dseed = splitmix(&s), id = 0;
		size_t len = (size_t)(dseed % 3000);
		unsigned char b[3000];
		struct cache_jnl_op op = { .kind = CACHE_JNL_WRITE,
		                           .size = len, .uid = 1000 };

		fill(b, len, dseed);
		if (cache_jnl_file_new(thr_j, &id) != 0 ||
		    (len && cache_jnl_pwrite(thr_j, id, b, len, 0) != 0)) {
			thr_bad++;
			break;
		}
		snprintf(name, sizeof(name), "/w/%" PRIu64, dseed);
		op.path = name;
		op.file_id = id;
		if (cache_jnl_append(thr_j, &op, i % 500 == 0, NULL) != 0 ||
		    cache_jnl_file_release(thr_j, id) != 0)
			thr_bad++;
	}
	thr_writers_left--;
	return NULL;
}

static int thr_consume(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	int *n = arg;

	if (!file_is(thr_j, op->file_id, op->size,
	             strtoull(op->path + 3, NULL, 10)))
		thr_bad++;
	if (seq % 3 == 0 && cache_jnl_update(thr_j, seq, "busy") != 0)
		thr_bad++;
	if (cache_jnl_done(thr_j, seq) != 0)
		thr_bad++;
	(*n)++;
	return 0;
}

static void *thr_consumer(void *arg)
{
	int *n = arg;

	while (thr_writers_left > 0)
		if (cache_jnl_foreach(thr_j, thr_consume, n) != 0)
			thr_bad++;
	if (cache_jnl_foreach(thr_j, thr_consume, n) != 0)
		thr_bad++;
	return NULL;
}

static void test_threads(void)
{
	char base[256], dir[300];
	pthread_t w[THR_WRITERS], c;
	struct cache_jnl_stats st;
	int consumed = 0;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	thr_j = jopen(dir, 1ull << 30);
	thr_writers_left = THR_WRITERS;
	for (int i = 0; i < THR_WRITERS; i++)
		CHECK(pthread_create(&w[i], NULL, thr_writer,
		                     (void *)(uintptr_t)i) == 0);
	CHECK(pthread_create(&c, NULL, thr_consumer, &consumed) == 0);
	for (int i = 0; i < THR_WRITERS; i++)
		pthread_join(w[i], NULL);
	pthread_join(c, NULL);
	CHECK(thr_bad == 0);
	CHECK(consumed == THR_WRITERS * THR_OPS);
	cache_jnl_stats(thr_j, &st);
	CHECK(st.ops == 0 && st.files == 0 && st.bytes == 0);
	CHECK(st.log_bytes < (4u << 20));  /* compacted on the way */
	cache_jnl_close(thr_j);
	thr_j = jopen(dir, 1ull << 30);
	cache_jnl_stats(thr_j, &st);
	CHECK(st.ops == 0 && st.files == 0);
	cache_jnl_close(thr_j);
	rm_rf(base);
}

/* Files whose uploads are done leave their inode, emptied, for the next new
 * file: never their bytes, at most JNL_SPARE_MAX (256) of them, none after a
 * reopen; many unsynced files stay usable (descriptors trimmed linearly). */
static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void test_spare_reuse(void)
{
	char base[256], dir[300], p[1024], name[64];
	struct cache_jnl *j;
	struct cache_jnl_stats st;
	unsigned char got[16];
	uint64_t a, b, ids[300];
	struct stat sa, sb;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	j = jopen(dir, 1 << 30);
	a = new_file(j, 5000, 3);
	snprintf(name, sizeof(name), "data/%016llx", (unsigned long long)a);
	CHECK(stat(jpath(dir, name, p), &sa) == 0);
	CHECK_OK(cache_jnl_file_release(j, a));
	CHECK(stat(jpath(dir, name, p), &sb) != 0);
	CHECK(count_dir(jpath(dir, "spare", p)) == 1);
	CHECK_OK(cache_jnl_file_new(j, &b));
	CHECK(b != a);
	snprintf(name, sizeof(name), "data/%016llx", (unsigned long long)b);
	CHECK(stat(jpath(dir, name, p), &sb) == 0 && sb.st_ino == sa.st_ino &&
	      sb.st_size == 0);
	CHECK(count_dir(jpath(dir, "spare", p)) == 0);
	CHECK(cache_jnl_pread(j, b, got, sizeof(got), 0) == 0);
	CHECK_OK(cache_jnl_pwrite(j, b, "new", 3, 0));
	CHECK(cache_jnl_pread(j, b, got, sizeof(got), 0) == 3 &&
	      memcmp(got, "new", 3) == 0);
	CHECK_OK(cache_jnl_file_release(j, b));
	/* 300 files written and not synced, then all released. */
	for (int i = 0; i < 300; i++)
		ids[i] = new_file(j, 100 + (size_t)i, (uint64_t)i);
	for (int i = 0; i < 300; i++)
		CHECK(file_is(j, ids[i], 100 + (size_t)i, (uint64_t)i));
	for (int i = 0; i < 300; i++)
		CHECK_OK(cache_jnl_file_release(j, ids[i]));
	CHECK(count_dir(jpath(dir, "spare", p)) == 256);
	CHECK(count_dir(jpath(dir, "data", p)) == 0);
	cache_jnl_stats(j, &st);
	CHECK(st.files == 0 && st.bytes == 0);
	cache_jnl_close(j);
	j = jopen(dir, 1 << 30);
	CHECK(count_dir(jpath(dir, "spare", p)) == 0);
	cache_jnl_close(j);
	rm_rf(base);
}

int main(void)
{
	seed0 = getenv("JNL_SEED") ? strtoull(getenv("JNL_SEED"), NULL, 0) :
	        (uint64_t)time(NULL);
	printf("JNL_SEED=%" PRIu64 "\n", seed0);
	RUN(test_round_trip);
	RUN(test_reopen_order);
	RUN(test_compaction);
	RUN(test_threads);
	RUN(test_kill9);
	RUN(test_system_crash);
	RUN(test_corrupt);
	RUN(test_full);
	RUN(test_tiny_fs);
	RUN(test_foreign_types);
	RUN(test_big);
	RUN(test_spare_reuse);
	CHECK_EXIT();
}
