/* fs/overlay.c without a mount: the pending namespace over a real write
 * journal in a temporary folder, its journal ops, and its replay. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs/overlay.h"
#include "tests/unit/check.h"

static char dir[] = "/tmp/dmsfs-ovtest-XXXXXX";

static struct cache_jnl *jopen(void)
{
	char p[256];
	struct cache_jnl_opts o = { .dir = p, .max_bytes = 1u << 30 };
	struct cache_jnl *j = NULL;

	snprintf(p, sizeof(p), "%s/journal", dir);
	CHECK_OK(cache_jnl_open(&j, &o));
	return j;
}

static int count_op(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	int *kinds = arg;

	(void)seq;
	kinds[op->kind]++;
	return 0;
}

static void test_namespace_and_replay(void)
{
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_file *f = NULL;
	struct fs_ov_info in;
	struct fs_dir *d = NULL;
	char buf[16];
	int kinds[8] = { 0 };

	CHECK_OK(fs_ov_init(&ov, j));
	/* A new folder and a new file in it: shown at once. */
	CHECK_OK(fs_ov_mkdir(ov, "/d", 0755, 0, 0));
	CHECK_OK(fs_ov_open_write(ov, "/d/f", true, true, false, 0644, 0, 0,
	                          NULL, NULL, NULL, &f));
	CHECK_OK(fs_ov_pwrite(ov, f, "hello", 5, 3));
	CHECK(fs_ov_pread(ov, f, buf, sizeof(buf), 0) == 8);
	CHECK(memcmp(buf, "\0\0\0hello", 8) == 0);
	CHECK_ERR(fs_ov_open_write(ov, "/d/f", true, true, false, 0644, 0, 0,
	                           NULL, NULL, NULL, &(struct fs_ov_file *){ 0 }),
	          -EEXIST);
	CHECK_OK(fs_ov_stat(ov, "/d/f", &in));
	CHECK(in.file && in.attr.size == 8);
	fs_ov_file_put(ov, in.file);
	/* Inside a new folder nothing comes from the origin. */
	CHECK_ERR(fs_ov_stat(ov, "/d/other", &in), -ENOENT);
	/* A path the overlay does not know is the origin's. */
	CHECK_OK(fs_ov_stat(ov, "/x/y", &in));
	CHECK_STR(in.origin, "/x/y");
	CHECK_OK(fs_ov_close_write(ov, f, false));
	fs_ov_file_put(ov, f);
	/* A folder renamed: its children follow, the old name is gone, and
	 * an origin folder renamed keeps pointing at its origin path. */
	CHECK_OK(fs_ov_rename(ov, "/d", "/e", true, false, 0, 0));
	CHECK_ERR(fs_ov_stat(ov, "/d/f", &in), -ENOENT);
	CHECK_OK(fs_ov_stat(ov, "/e/f", &in));
	CHECK(in.file != NULL);
	if (in.file)
		fs_ov_file_put(ov, in.file);
	CHECK_OK(fs_ov_rename(ov, "/orig", "/moved", true, false, 0, 0));
	CHECK_OK(fs_ov_stat(ov, "/moved/deep/x", &in));
	CHECK_STR(in.origin, "/orig/deep/x");
	CHECK_ERR(fs_ov_stat(ov, "/orig/deep/x", &in), -ENOENT);
	CHECK_OK(fs_ov_merge(ov, "/", NULL, 0, &d));
	CHECK(d && d->count == 2);
	if (d && d->count == 2) {
		CHECK_STR(d->ents[0].name, "e");
		CHECK_STR(d->ents[1].name, "moved");
	}
	fs_dir_put(d);
	d = NULL;
	/* rmdir of a folder with pending children: ENOTEMPTY. */
	CHECK_ERR(fs_ov_rmdir(ov, "/e", NULL, 0, 0), -ENOTEMPTY);
	/* Journal: MKDIR, WRITE, RENAME, RENAME in order. */
	CHECK_OK(cache_jnl_foreach(j, count_op, kinds));
	CHECK(kinds[CACHE_JNL_MKDIR] == 1 && kinds[CACHE_JNL_WRITE] == 1 &&
	      kinds[CACHE_JNL_RENAME] == 2);
	fs_ov_destroy(ov);
	cache_jnl_close(j);

	/* Replay after a restart: the same namespace. */
	j = jopen();
	CHECK_OK(fs_ov_init(&ov, j));
	CHECK_OK(fs_ov_stat(ov, "/e/f", &in));
	CHECK(in.file && in.attr.size == 8);
	if (in.file) {
		CHECK(fs_ov_pread(ov, in.file, buf, sizeof(buf), 0) == 8);
		CHECK(memcmp(buf, "\0\0\0hello", 8) == 0);
		fs_ov_file_put(ov, in.file);
	}
	CHECK_ERR(fs_ov_stat(ov, "/d", &in), -ENOENT);
	CHECK_OK(fs_ov_stat(ov, "/moved/a", &in));
	CHECK_STR(in.origin, "/orig/a");
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

static void test_unlink_open_file(void)
{
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_file *f = NULL;
	struct fs_ov_info in;
	char buf[8];

	CHECK_OK(fs_ov_init(&ov, j));
	CHECK_OK(fs_ov_open_write(ov, "/u", true, false, false, 0600, 0, 0,
	                          NULL, NULL, NULL, &f));
	CHECK_OK(fs_ov_pwrite(ov, f, "abc", 3, 0));
	memset(&in, 0, sizeof(in));
	CHECK_OK(fs_ov_unlink(ov, "/u", &in, NULL, 0, 0));
	CHECK_ERR(fs_ov_stat(ov, "/u", &in), -ENOENT);
	CHECK(fs_ov_pread(ov, f, buf, sizeof(buf), 0) == 3);
	CHECK_OK(fs_ov_close_write(ov, f, false));
	fs_ov_file_put(ov, f);
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

/* The writeback thread without an origin: each pending operation is taken
 * as done at the origin (which lists everything), in order, once. */
struct upto { struct fs_ov *ov; struct cache_jnl *j; uint64_t last; };

static int apply_done(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct upto *u = arg;

	if (seq > u->last) {
		fs_ov_applied(u->ov, seq, op, NULL, NULL);
		u->last = seq;
		CHECK_OK(cache_jnl_done(u->j, seq));
	}
	return 0;
}

static void upload(struct upto *u)
{
	CHECK_OK(cache_jnl_foreach(u->j, apply_done, u));
}

/* A folder made here is renamed (once or more) before its MKDIR reaches the
 * origin: the MKDIR must give the entry, wherever it is now, its origin
 * folder, or what is made in it later vanishes once uploaded. */
static void test_new_folder_renamed_before_upload(void)
{
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_info in;
	struct fs_dir *d = NULL;
	struct upto u = { NULL, j, 0 };

	CHECK_OK(fs_ov_init(&ov, j));
	u.ov = ov;
	upload(&u);     /* what earlier tests left */
	CHECK_OK(fs_ov_mkdir(ov, "/b", 0755, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/b", "/c", true, false, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/c", "/e", true, false, 0, 0));
	CHECK_OK(fs_ov_mkdir(ov, "/e/y", 0755, 0, 0));
	upload(&u);
	CHECK_OK(fs_ov_stat(ov, "/e/y", &in));
	CHECK_STR(in.origin, "/e/y");
	CHECK_OK(fs_ov_stat(ov, "/e/y/deeper", &in));
	CHECK_STR(in.origin, "/e/y/deeper");
	/* Nothing is pending any more: the origin's namespace shows through. */
	CHECK(fs_ov_count(ov) == 0);
	/* mkdir, rmdir, mkdir of one name, renamed in between: the first
	 * MKDIR does not stand for the second folder. */
	CHECK_OK(fs_ov_mkdir(ov, "/m", 0755, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/m", "/n", true, false, 0, 0));
	CHECK_OK(fs_ov_mkdir(ov, "/m", 0755, 0, 0));
	CHECK_OK(fs_ov_mkdir(ov, "/m/k", 0755, 0, 0));
	CHECK_OK(fs_ov_mkdir(ov, "/n/k", 0755, 0, 0));
	upload(&u);
	CHECK_OK(fs_ov_stat(ov, "/m/k", &in));
	CHECK_OK(fs_ov_stat(ov, "/n/k", &in));
	CHECK_OK(fs_ov_stat(ov, "/n/k/z", &in));
	CHECK_STR(in.origin, "/n/k/z");
	CHECK_OK(fs_ov_stat(ov, "/m/k/z", &in));
	CHECK_STR(in.origin, "/m/k/z");
	/* Not uploaded yet: a rename chain of a folder with content made in
	 * it; the merge shows the content under the last name only. */
	CHECK_OK(fs_ov_mkdir(ov, "/p", 0755, 0, 0));
	CHECK_OK(fs_ov_mkdir(ov, "/p/q", 0755, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/p", "/r", true, false, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/r", "/s", true, false, 0, 0));
	CHECK_OK(fs_ov_merge(ov, "/s", NULL, 0, &d));
	CHECK(d && d->count == 1);
	fs_dir_put(d);
	upload(&u);
	CHECK_OK(fs_ov_stat(ov, "/s/q/t", &in));
	CHECK_STR(in.origin, "/s/q/t");
	CHECK(fs_ov_count(ov) == 0);
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

static int fill_nothing(void *arg, struct cache_jnl *j, uint64_t id)
{
	(void)arg;
	(void)j;
	(void)id;
	return 0;
}

/* A handle reading an origin file under a renamed folder follows the file
 * once it is opened for writing by its new path: it reads the origin path
 * the new one resolves to, not the new path. */
static void test_reader_follows_under_renamed_folder(void)
{
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_file *f = NULL, *now;
	struct fs_ov_reader *r, *r2;
	struct fs_ov_info in;
	struct xfer_attr base = { .mode = S_IFREG | 0644, .size = 0 };

	CHECK_OK(fs_ov_init(&ov, j));
	CHECK_OK(fs_ov_rename(ov, "/o", "/p", true, false, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/p", "/q", true, false, 0, 0));
	CHECK_OK(fs_ov_stat(ov, "/q/f", &in));
	CHECK_STR(in.origin, "/o/f");
	r = fs_ov_reader_add(ov, in.origin);
	r2 = fs_ov_reader_add(ov, "/o/g");
	CHECK(r && r2);
	CHECK_OK(fs_ov_open_write(ov, "/q/f", false, false, false, 0644, 0, 0,
	                          &base, fill_nothing, NULL, &f));
	now = fs_ov_reader_now(ov, r);
	CHECK(now == f);
	if (now)
		fs_ov_file_put(ov, now);
	CHECK(fs_ov_reader_now(ov, r2) == NULL);
	CHECK_OK(fs_ov_truncate(ov, f, 70000));
	CHECK_OK(fs_ov_close_write(ov, f, false));
	fs_ov_file_put(ov, f);
	fs_ov_reader_del(ov, r);
	fs_ov_reader_del(ov, r2);
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

struct stat_arg {
	struct fs_ov *ov;
	struct fs_ov_info in;
	int rc;
	volatile int done;
};

static void *stat_thread(void *arg)
{
	struct stat_arg *a = arg;

	a->rc = fs_ov_stat(a->ov, "/g/x", &a->in);
	a->done = 1;
	return NULL;
}

/* The writeback thread replays a RENAME: the origin moves before the
 * entries say so.  A lookup meanwhile waits for it rather than resolve to
 * the old origin path; handles reading an origin file under it move too. */
static void test_rename_in_flight(void)
{
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_file *f = NULL, *now;
	struct fs_ov_reader *r;
	struct xfer_attr base = { .mode = S_IFREG | 0644, .size = 0 };
	struct upto u = { NULL, j, 0 };
	struct stat_arg sa;
	struct cache_jnl_op op = {
		.kind = CACHE_JNL_RENAME, .path = "/f", .path2 = "/g",
	};
	pthread_t t;

	CHECK_OK(fs_ov_init(&ov, j));
	u.ov = ov;
	upload(&u);
	CHECK_OK(fs_ov_rename(ov, "/f", "/g", true, false, 0, 0));
	r = fs_ov_reader_add(ov, "/f/x");
	CHECK(r != NULL);
	memset(&sa, 0, sizeof(sa));
	sa.ov = ov;
	fs_ov_applying(ov, &op);
	CHECK(pthread_create(&t, NULL, stat_thread, &sa) == 0);
	usleep(100 * 1000);
	CHECK(!sa.done);        /* waiting for the RENAME */
	upload(&u);             /* fs_ov_applied of the RENAME */
	pthread_join(t, NULL);
	CHECK_OK(sa.rc);
	CHECK_STR(sa.in.origin, "/g/x");
	/* The reader of /f/x reads /g/x now, and follows a writer of it. */
	CHECK_OK(fs_ov_open_write(ov, "/g/x", false, false, false, 0644, 0, 0,
	                          &base, fill_nothing, NULL, &f));
	now = fs_ov_reader_now(ov, r);
	CHECK(now == f);
	if (now)
		fs_ov_file_put(ov, now);
	CHECK_OK(fs_ov_close_write(ov, f, false));
	fs_ov_file_put(ov, f);
	fs_ov_reader_del(ov, r);
	/* A RENAME that failed at the origin releases the waiters too. */
	fs_ov_applying(ov, &op);
	fs_ov_applying(ov, NULL);
	CHECK_OK(fs_ov_stat(ov, "/g/y", &sa.in));
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

static int last_write_id(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	uint64_t *id = arg;

	(void)seq;
	if (op->kind == CACHE_JNL_WRITE)
		*id = op->file_id;
	return 0;
}

/* A handle reads a pending file that is then uploaded: the entry stays
 * while the handle is open, so a later writer of the path writes the file
 * the handle reads (as on a local disk) instead of a new copy. */
static void test_reader_of_uploaded_file(void)
{
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_file *f = NULL, *w = NULL;
	struct fs_ov_info in;
	struct xfer_attr res;
	struct xfer_attr base = { .mode = S_IFREG | 0644, .size = 3 };
	struct upto u = { NULL, j, 0 };
	uint64_t id = 0;
	char buf[8];

	CHECK_OK(fs_ov_init(&ov, j));
	u.ov = ov;
	upload(&u);
	CHECK_OK(fs_ov_open_write(ov, "/s", true, false, false, 0644, 0, 0,
	                          NULL, NULL, NULL, &f));
	CHECK_OK(fs_ov_pwrite(ov, f, "abc", 3, 0));
	CHECK_OK(fs_ov_close_write(ov, f, false));
	fs_ov_file_put(ov, f);
	CHECK_OK(fs_ov_stat(ov, "/s", &in));      /* the reading handle */
	CHECK(in.file != NULL);
	if (!in.file)
		goto out;
	CHECK_OK(cache_jnl_foreach(j, last_write_id, &id));
	fs_ov_file_attr(ov, in.file, &res);
	/* The upload reached the origin and its listing shows it. */
	fs_ov_uploaded(ov, "/s", id, &res);
	fs_ov_settle(ov, "/s", &res);
	CHECK_OK(fs_ov_open_write(ov, "/s", false, false, false, 0644, 0, 0,
	                          &base, fill_nothing, NULL, &w));
	CHECK(w == in.file);
	if (w) {
		CHECK_OK(fs_ov_pwrite(ov, w, "X", 1, 1));
		CHECK_OK(fs_ov_close_write(ov, w, false));
		fs_ov_file_put(ov, w);
	}
	CHECK(fs_ov_pread(ov, in.file, buf, sizeof(buf), 0) == 3);
	CHECK(memcmp(buf, "aXc", 3) == 0);
	fs_ov_file_put(ov, in.file);
	upload(&u);
out:
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

static int names_sorted(const struct fs_dir *d)
{
	size_t i;

	for (i = 1; d && i < d->count; i++)
		if (strcmp(d->ents[i - 1].name, d->ents[i].name) >= 0)
			return 0;
	return 1;
}

static size_t merged(struct fs_ov *ov, const char *path)
{
	struct fs_dir *d = NULL;
	size_t n;

	CHECK_OK(fs_ov_merge(ov, path, NULL, 0, &d));
	if (!d)
		return (size_t)-1;
	n = d->count;
	CHECK(names_sorted(d));
	fs_dir_put(d);
	return n;
}

/* 20,000 pending entries (what a cp -r of a big tree leaves before upload):
 * the indexes answer lookups, listings and renames of a folder with
 * thousands of children as the list did. */
static void test_many_entries(void)
{
	enum { DIRS = 100, SUBS = 190, FILES = 10 };
	struct cache_jnl *j = jopen();
	struct fs_ov *ov = NULL;
	struct fs_ov_file *f = NULL;
	struct fs_ov_info in;
	struct upto u = { NULL, j, 0 };
	char p[256];
	size_t n0;
	int i, k;

	CHECK_OK(fs_ov_init(&ov, j));
	u.ov = ov;
	upload(&u);
	n0 = fs_ov_count(ov);
	CHECK_OK(fs_ov_mkdir(ov, "/big", 0755, 0, 0));
	for (i = 0; i < DIRS; i++) {
		snprintf(p, sizeof(p), "/big/d%d", i);
		CHECK_OK(fs_ov_mkdir(ov, p, 0755, 0, 0));
		for (k = 0; k < SUBS; k++) {
			snprintf(p, sizeof(p), "/big/d%d/s%d", i, k);
			CHECK_OK(fs_ov_mkdir(ov, p, 0755, 0, 0));
		}
		for (k = 0; k < FILES; k++) {
			snprintf(p, sizeof(p), "/big/d%d/f%d", i, k);
			CHECK_OK(fs_ov_open_write(ov, p, true, true, false, 0644,
			                          0, 0, NULL, NULL, NULL, &f));
			CHECK_OK(fs_ov_pwrite(ov, f, p, strlen(p), 0));
			CHECK_OK(fs_ov_close_write(ov, f, false));
			fs_ov_file_put(ov, f);
		}
	}
	CHECK(fs_ov_count(ov) == n0 + 1 + DIRS * (1 + SUBS + FILES));
	CHECK(merged(ov, "/big") == DIRS);
	CHECK(merged(ov, "/big/d42") == SUBS + FILES);
	CHECK_OK(fs_ov_stat(ov, "/big/d42/s7", &in));
	CHECK(in.is_dir && in.pending);
	CHECK_ERR(fs_ov_stat(ov, "/big/d42/s7/x", &in), -ENOENT);
	CHECK_OK(fs_ov_stat(ov, "/big/d42/f3", &in));
	CHECK(in.file && in.attr.size == strlen("/big/d42/f3"));
	if (in.file)
		fs_ov_file_put(ov, in.file);
	CHECK_ERR(fs_ov_open_write(ov, "/big/d42/f3", true, true, false, 0644,
	                           0, 0, NULL, NULL, NULL,
	                           &(struct fs_ov_file *){ 0 }), -EEXIST);
	CHECK_ERR(fs_ov_rmdir(ov, "/big/d42", NULL, 0, 0), -ENOTEMPTY);
	CHECK_OK(fs_ov_rmdir(ov, "/big/d42/s7", NULL, 0, 0));
	CHECK(merged(ov, "/big/d42") == SUBS + FILES - 1);
	CHECK_OK(fs_ov_unlink(ov, "/big/d42/f3", &in, NULL, 0, 0));
	CHECK(merged(ov, "/big/d42") == SUBS + FILES - 2);

	/* The whole tree renamed: every child follows, nothing is left. */
	CHECK_OK(fs_ov_rename(ov, "/big", "/huge", true, false, 0, 0));
	CHECK_ERR(fs_ov_stat(ov, "/big/d5/s7", &in), -ENOENT);
	CHECK_OK(fs_ov_stat(ov, "/huge/d5/s7", &in));
	CHECK(in.is_dir);
	CHECK_OK(fs_ov_stat(ov, "/huge/d5/f9", &in));
	CHECK(in.file != NULL);
	if (in.file) {
		char *fp = fs_ov_file_path(ov, in.file);

		CHECK(fp && !strcmp(fp, "/huge/d5/f9"));
		free(fp);
		fs_ov_file_put(ov, in.file);
	}
	CHECK(merged(ov, "/big") == 0);
	CHECK(merged(ov, "/huge") == DIRS);
	CHECK(merged(ov, "/huge/d42") == SUBS + FILES - 2);
	/* One folder with its 200 children out of it, onto a new name. */
	CHECK_OK(fs_ov_rename(ov, "/huge/d7", "/other", true, false, 0, 0));
	CHECK(merged(ov, "/huge") == DIRS - 1);
	CHECK(merged(ov, "/other") == SUBS + FILES);
	CHECK_ERR(fs_ov_stat(ov, "/other/s3/x", &in), -ENOENT);
	/* A folder replaced by a rename onto it: its children go. */
	CHECK_OK(fs_ov_rmdir(ov, "/huge/d8/s0", NULL, 0, 0));
	CHECK_OK(fs_ov_rename(ov, "/huge/d9/s0", "/huge/d8/s1", true, true,
	                      0, 0));
	CHECK(merged(ov, "/huge/d8") == SUBS + FILES - 1);
	CHECK(merged(ov, "/huge/d9") == SUBS + FILES - 1);

	/* Everything reaches the origin: the folders become the origin's. */
	upload(&u);
	CHECK_OK(fs_ov_stat(ov, "/other/s3/x", &in));
	CHECK_STR(in.origin, "/other/s3/x");
	CHECK_OK(fs_ov_stat(ov, "/huge/d8/s1/y", &in));
	CHECK_STR(in.origin, "/huge/d8/s1/y");
	/* What is left are the files whose upload the test does not make
	 * (fs_ov_uploaded is the writeback's); deletions that a folder rename
	 * carried along went when their operations did. */
	CHECK(fs_ov_count(ov) == (size_t)(DIRS * FILES - 1));
	fs_ov_destroy(ov);
	cache_jnl_close(j);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(dir))
		return 1;
	RUN(test_namespace_and_replay);
	RUN(test_unlink_open_file);
	RUN(test_new_folder_renamed_before_upload);
	RUN(test_reader_follows_under_renamed_folder);
	RUN(test_rename_in_flight);
	RUN(test_reader_of_uploaded_file);
	RUN(test_many_entries);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	CHECK_EXIT();
}
