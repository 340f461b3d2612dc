/* Unit tests for cache/modes.c: the mode table kept for writable exports
 * (set/get, renames and removes of whole trees, reopen replays, a torn
 * append is cut off, compaction keeps the live entries, a foreign file is
 * refused). */
#define _GNU_SOURCE
#include "cache/cache.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char file[4096];

static uint32_t get(struct cache_modes *m, const char *p)
{
	uint32_t v = 0;

	return cache_modes_get(m, p, &v) == 0 ? v : 0xffffffffu;
}

static struct cache_modes *reopen(struct cache_modes *m)
{
	cache_modes_close(m);
	m = NULL;
	CHECK_OK(cache_modes_open(&m, file));
	return m;
}

static void test_trees(void)
{
	struct cache_modes *m = NULL;

	unlink(file);
	CHECK_OK(cache_modes_open(&m, file));
	if (!m)
		return;
	CHECK_OK(cache_modes_set(m, "/h/a/x.sh", 0100755));
	CHECK_OK(cache_modes_set(m, "/h/a/sub/y", 0700));
	CHECK_OK(cache_modes_set(m, "/h/ab", 0600));
	CHECK_OK(cache_modes_set(m, "/h/b/old", 0711));
	CHECK(get(m, "/h/a/x.sh") == 0755);
	CHECK_ERR(cache_modes_get(m, "/h/a", &(uint32_t){0}), -ENOENT);
	/* The folder moves with everything under it, not its namesake /h/ab;
	 * what was at the target goes. */
	CHECK_OK(cache_modes_rename(m, "/h/a", "/h/b"));
	CHECK(get(m, "/h/b/x.sh") == 0755);
	CHECK(get(m, "/h/b/sub/y") == 0700);
	CHECK(get(m, "/h/b/old") == 0xffffffffu);
	CHECK(get(m, "/h/a/x.sh") == 0xffffffffu);
	CHECK(get(m, "/h/ab") == 0600);
	m = reopen(m);
	CHECK(get(m, "/h/b/x.sh") == 0755);
	CHECK(get(m, "/h/b/sub/y") == 0700);
	CHECK(get(m, "/h/ab") == 0600);
	CHECK(get(m, "/h/b/old") == 0xffffffffu);
	CHECK_OK(cache_modes_remove(m, "/h/b/sub"));
	CHECK_OK(cache_modes_remove(m, "/h/nothing"));
	CHECK(get(m, "/h/b/sub/y") == 0xffffffffu);
	CHECK(get(m, "/h/b/x.sh") == 0755);
	m = reopen(m);
	CHECK(get(m, "/h/b/sub/y") == 0xffffffffu);
	CHECK(get(m, "/h/b/x.sh") == 0755);
	CHECK_OK(cache_modes_sync(m));
	cache_modes_close(m);
}

static void test_torn_tail(void)
{
	struct cache_modes *m = NULL;
	struct stat st;
	off_t good;
	int fd;

	unlink(file);
	CHECK_OK(cache_modes_open(&m, file));
	if (!m)
		return;
	CHECK_OK(cache_modes_set(m, "/k", 0750));
	cache_modes_close(m);
	CHECK(stat(file, &st) == 0);
	good = st.st_size;
	fd = open(file, O_WRONLY | O_APPEND);
	CHECK(fd >= 0);
	CHECK(write(fd, "DMM1\x40\0\0\0junk", 12) == 12);
	close(fd);
	m = NULL;
	CHECK_OK(cache_modes_open(&m, file));
	if (!m)
		return;
	CHECK(get(m, "/k") == 0750);
	CHECK(stat(file, &st) == 0 && st.st_size == good);
	/* Appends after the cut are read back. */
	CHECK_OK(cache_modes_set(m, "/k2", 0700));
	m = reopen(m);
	CHECK(get(m, "/k2") == 0700);
	cache_modes_close(m);
}

static void test_compaction(void)
{
	struct cache_modes *m = NULL;
	struct stat st;
	int i;

	unlink(file);
	CHECK_OK(cache_modes_open(&m, file));
	if (!m)
		return;
	for (i = 0; i < 5000; i++)
		CHECK_OK(cache_modes_set(m, "/same/file/chmodded/again", 0700 |
		                         (unsigned)(i & 7)));
	CHECK_OK(cache_modes_set(m, "/other", 0711));
	m = reopen(m);
	CHECK(stat(file, &st) == 0 && st.st_size < 4096);
	CHECK(get(m, "/same/file/chmodded/again") == (0700 | (4999 & 7)));
	CHECK(get(m, "/other") == 0711);
	cache_modes_close(m);
}

static void test_foreign_file(void)
{
	struct cache_modes *m = NULL;
	char link[4200];

	unlink(file);
	CHECK(close(open(file, O_CREAT | O_WRONLY, 0644)) == 0);
	chmod(file, 0644);
	CHECK_ERR(cache_modes_open(&m, file), -EPERM);
	unlink(file);
	snprintf(link, sizeof(link), "%s.target", file);
	CHECK(symlink(link, file) == 0);
	CHECK(cache_modes_open(&m, file) < 0);
	CHECK(m == NULL);
	unlink(file);
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(file, sizeof(file), "%s/modes-test-%d", tmp ? tmp : "/tmp",
	         (int)getpid());
	RUN(test_trees);
	RUN(test_torn_tail);
	RUN(test_compaction);
	RUN(test_foreign_file);
	unlink(file);
	CHECK_EXIT();
}
