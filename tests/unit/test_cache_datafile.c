/* Unit tests for cache/: the LMDB data file checked against its meta pages
 * before it is mapped (truncated, tampered), and what the cache does with
 * files that are not regular files (links, FIFOs, folders) at the names it
 * opens.  The meta page offsets below are written from LMDB 0.9.24's
 * description of its format (LP64), independently of cache/datafile.c. */
#define _XOPEN_SOURCE 700  /* nftw */
#define _DEFAULT_SOURCE
#include "cache/cache.h"
#include "cache/cache_i.h"
#include "common/log.h"
#include "tests/unit/check.h"
#include "tests/unit/cache_testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Offsets in a meta page (page header 16 bytes, then MDB_meta). */
#define OFF_FLAGS    10    /* mp_flags (uint16) */
#define OFF_MAGIC    16
#define OFF_VERSION  20
#define OFF_PSIZE    40    /* mm_dbs[FREE_DBI].md_pad */
#define OFF_FREEROOT 80    /* mm_dbs[FREE_DBI].md_root */
#define OFF_MAINROOT 128   /* mm_dbs[MAIN_DBI].md_root */
#define OFF_LASTPG   136
#define OFF_TXNID    144
#define PSIZE        4096  /* LMDB uses the OS page size */

#define BLOCK        (64u << 10)

/* ---- helpers ---- */

static void fid_of(struct cache_fid *f, int file)
{
	char path[64];

	snprintf(path, sizeof(path), "/df/run%d.h5", file);
	cache_fid_make(f, path, 1ull << 30, 1700000000, "\"e\"", BLOCK);
}

static int open_at(struct cache **c, const char *dir)
{
	struct cache_opts o = { .dir = dir, .max_bytes = 64u << 20 };

	*c = NULL;
	return cache_open(c, &o);
}

/* Stores n blocks of file 1 and closes the cache. */
static void fill_cache(const char *dir, int n)
{
	unsigned char *b = malloc(BLOCK);
	struct cache_fid f;
	struct cache *c;

	CHECK_OK(open_at(&c, dir));
	if (!c) {
		free(b);
		return;
	}
	fid_of(&f, 1);
	for (int i = 0; i < n; i++) {
		fill(b, BLOCK, (uint64_t)i);
		cache_block_put(c, &f, (uint64_t)i, b, BLOCK);
	}
	cache_flush(c);
	cache_close(c);
	free(b);
}

/* A put and a get of the right bytes work: the cache is usable. */
static void check_usable(struct cache *c)
{
	unsigned char *b = malloc(BLOCK), *got = malloc(BLOCK);
	struct cache_fid f;

	fid_of(&f, 2);
	fill(b, BLOCK, 77);
	cache_block_put(c, &f, 0, b, BLOCK);
	cache_flush(c);
	CHECK_OK(cache_block_get(c, &f, 0, BLOCK, 0, BLOCK, got));
	CHECK(memcmp(b, got, BLOCK) == 0);
	free(b);
	free(got);
}

static off_t lsize(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0 ? st.st_size : -1;
}

static void copy_file(const char *from, const char *to, off_t len)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT |
	                                           O_TRUNC, 0600);
	char buf[65536];
	off_t done = 0;

	CHECK(in >= 0 && out >= 0);
	while (in >= 0 && out >= 0 && done < len) {
		ssize_t n = read(in, buf, (size_t)(len - done) < sizeof(buf) ?
		                 (size_t)(len - done) : sizeof(buf));

		if (n <= 0)
			break;
		CHECK(write(out, buf, (size_t)n) == n);
		done += n;
	}
	CHECK(done == len);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
}

static void poke(const char *path, off_t off, const void *v, size_t n)
{
	int fd = open(path, O_WRONLY);

	CHECK(fd >= 0 && pwrite(fd, v, n, off) == (ssize_t)n);
	if (fd >= 0)
		close(fd);
}

static uint64_t peek64(const char *path, off_t off)
{
	uint64_t v = 0;
	int fd = open(path, O_RDONLY);

	CHECK(fd >= 0 && pread(fd, &v, 8, off) == 8);
	if (fd >= 0)
		close(fd);
	return v;
}

/* cache_lmdb_check on a file: its result, the reason in why. */
static int check_file(const char *path, struct cache_lmdb_meta *m, char *why,
                      size_t n)
{
	struct stat st;
	int fd = open(path, O_RDONLY), rc;

	CHECK(fd >= 0 && fstat(fd, &st) == 0);
	if (fd < 0)
		return -errno;
	rc = cache_lmdb_check(fd, (uint64_t)st.st_size, m, why, n);
	close(fd);
	return rc;
}

/* ---- tests ---- */

/* A real file, then copies of it cut at several sizes and with single
 * fields of a meta page changed. */
static void test_meta_check(void)
{
	char base[256], dir[300], data[400], cp[400], why[256];
	struct cache_lmdb_meta m;
	off_t size;
	uint64_t v64, want_need;
	uint32_t v32;
	uint16_t v16;
	int cur;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(cp, sizeof(cp), "%s/copy.mdb", base);
	fill_cache(dir, 40);
	size = lsize(data);
	CHECK(size > 8 * PSIZE);

	CHECK_OK(check_file(data, &m, why, sizeof(why)));
	CHECK(m.psize == PSIZE);
	CHECK(m.need == (m.last_pg + 1) * PSIZE && m.need <= (uint64_t)size);
	CHECK(m.txnid > 0);
	/* The meta in use is the one with the higher txnid. */
	cur = peek64(data, PSIZE + OFF_TXNID) > peek64(data, OFF_TXNID);
	CHECK(m.txnid == peek64(data, cur * PSIZE + OFF_TXNID));
	CHECK(m.last_pg == peek64(data, cur * PSIZE + OFF_LASTPG));
	want_need = m.need;

	/* Empty: LMDB starts afresh, fine. */
	copy_file(data, cp, 0);
	CHECK_OK(check_file(cp, &m, why, sizeof(why)));
	CHECK(m.need == 0);
	/* Cut anywhere short of what the meta needs. */
	{
		off_t cuts[] = { 100, PSIZE, PSIZE + 100, 2 * PSIZE,
		                 (off_t)want_need / 2,
		                 (off_t)want_need - PSIZE,
		                 (off_t)want_need - 1 };

		for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
			copy_file(data, cp, cuts[i]);
			CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);
			CHECK(why[0] != '\0');
		}
		copy_file(data, cp, (off_t)want_need / 2);
		CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);
		CHECK(strstr(why, "truncated") != NULL);
	}
	/* Exactly what it needs: fine. */
	copy_file(data, cp, (off_t)want_need);
	CHECK_OK(check_file(cp, &m, why, sizeof(why)));

	/* One field changed in either meta page. */
	for (int page = 0; page < 2; page++) {
		off_t p = (off_t)page * PSIZE;

		copy_file(data, cp, size);
		v32 = 0xDEADBEEF;
		poke(cp, p + OFF_MAGIC, &v32, 4);
		CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);

		copy_file(data, cp, size);
		v32 = 2;
		poke(cp, p + OFF_VERSION, &v32, 4);
		CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);

		copy_file(data, cp, size);
		v16 = 0x02;  /* a leaf page, not a meta page */
		poke(cp, p + OFF_FLAGS, &v16, 2);
		CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);

		/* Page sizes that are no page size. */
		{
			uint32_t bad[] = { 0, 3000, 256, 65536, 1u << 31 };

			for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
				copy_file(data, cp, size);
				poke(cp, p + OFF_PSIZE, &bad[i], 4);
				CHECK_ERR(check_file(cp, &m, why, sizeof(why)),
				          -EILSEQ);
			}
		}
	}

	/* The meta in use names pages the file does not have, or roots past
	 * its last page. */
	{
		uint64_t bad_last[] = { 0, (uint64_t)size / PSIZE,
		                        1ull << 40, UINT64_MAX };

		for (size_t i = 0; i < sizeof(bad_last) / sizeof(bad_last[0]);
		     i++) {
			copy_file(data, cp, size);
			poke(cp, cur * PSIZE + OFF_LASTPG, &bad_last[i], 8);
			CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);
		}
	}
	copy_file(data, cp, size);
	v64 = peek64(data, cur * PSIZE + OFF_LASTPG) + 1;
	poke(cp, cur * PSIZE + OFF_MAINROOT, &v64, 8);
	CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);
	copy_file(data, cp, size);
	v64 = 1;  /* a meta page */
	poke(cp, cur * PSIZE + OFF_FREEROOT, &v64, 8);
	CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);

	/* The other (older) meta is not used for the size: a huge last page
	 * there is no reason to refuse, as LMDB ignores it. */
	copy_file(data, cp, size);
	v64 = 1ull << 40;
	poke(cp, (1 - cur) * PSIZE + OFF_LASTPG, &v64, 8);
	CHECK_OK(check_file(cp, &m, why, sizeof(why)));
	/* ... until its txnid makes it the one in use. */
	v64 = peek64(data, cur * PSIZE + OFF_TXNID) + 1;
	poke(cp, (1 - cur) * PSIZE + OFF_TXNID, &v64, 8);
	CHECK_ERR(check_file(cp, &m, why, sizeof(why)), -EILSEQ);
	rm_rf(base);
}

/* cache_open on a cut data file: set aside, a fresh cache, no crash. */
static void test_truncated_open(void)
{
	char base[256], dir[300], data[400], bad[400], keep[400];
	struct cache *c;
	struct cache_stats st;
	off_t size;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(bad, sizeof(bad), "%s/data.mdb.bad", dir);
	snprintf(keep, sizeof(keep), "%s/whole.mdb", base);
	fill_cache(dir, 40);
	size = lsize(data);
	copy_file(data, keep, size);
	{
		off_t cuts[] = { PSIZE, 2 * PSIZE, size / 2, size - PSIZE };

		for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
			copy_file(keep, data, cuts[i]);
			CHECK_OK(open_at(&c, dir));
			if (!c)
				continue;
			CHECK(lsize(bad) == cuts[i]);
			cache_get_stats(c, &st);
			CHECK(st.blocks == 0);
			check_usable(c);
			cache_close(c);
		}
	}
	/* An empty file is a new cache, nothing to set aside. */
	unlink(bad);
	copy_file(keep, data, 0);
	CHECK_OK(open_at(&c, dir));
	if (c) {
		CHECK(lsize(bad) == -1);
		check_usable(c);
		cache_close(c);
	}
	/* The whole file keeps its blocks. */
	copy_file(keep, data, size);
	CHECK_OK(open_at(&c, dir));
	if (c) {
		cache_get_stats(c, &st);
		CHECK(st.blocks == 40);
		cache_close(c);
	}
	rm_rf(base);
}

/* Links, FIFOs and folders at the names the cache opens are moved aside,
 * never followed or opened; nothing is created outside the directory. */
static void test_special_files(void)
{
	static const char *const names[] = {
		"data.mdb", "lock.mdb", "open.boot", "data.mdb.broken",
	};
	char base[256], dir[300], path[400], bad[400], target[512];
	struct stat st;
	struct cache *c;

	tmp_make(NULL, base, sizeof(base), dir, sizeof(dir));
	CHECK(mkdir(dir, 0700) == 0);
	snprintf(target, sizeof(target), "%s/elsewhere", base);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		snprintf(bad, sizeof(bad), "%s/%s.bad", dir, names[i]);
		for (int kind = 0; kind < 4; kind++) {
			unlink(bad);
			rmdir(bad);
			unlink(target);
			unlink(path);  /* what the last open made there */
			switch (kind) {
			case 0:  /* dangling link out of the directory */
				CHECK(symlink(target, path) == 0);
				break;
			case 1:  /* link to an existing file elsewhere */
				copy_file("/dev/null", target, 0);
				CHECK(symlink(target, path) == 0);
				break;
			case 2:
				CHECK(mkfifo(path, 0600) == 0);
				break;
			default:
				CHECK(mkdir(path, 0700) == 0);
				break;
			}
			CHECK_OK(open_at(&c, dir));
			if (c) {
				check_usable(c);
				cache_close(c);
			}
			CHECK(lstat(bad, &st) == 0);
			CHECK(kind > 1 || S_ISLNK(st.st_mode));
			CHECK(kind != 2 || S_ISFIFO(st.st_mode));
			CHECK(kind != 3 || S_ISDIR(st.st_mode));
			/* Nothing created or written through the link. */
			CHECK(lsize(target) == (kind == 1 ? 0 : -1));
			CHECK(lstat(path, &st) != 0 || S_ISREG(st.st_mode));
		}
	}
	/* The .bad in the way is of another kind: replaced if it can be
	 * (an empty folder), else open fails and says so. */
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	snprintf(bad, sizeof(bad), "%s/data.mdb.bad", dir);
	unlink(bad);
	rmdir(bad);
	CHECK(mkdir(bad, 0700) == 0);
	unlink(path);
	CHECK(symlink(target, path) == 0);
	CHECK_OK(open_at(&c, dir));
	if (c)
		cache_close(c);
	CHECK(lstat(bad, &st) == 0 && S_ISLNK(st.st_mode));
	unlink(bad);
	CHECK(mkdir(bad, 0700) == 0);
	snprintf(target, sizeof(target), "%s/full", bad);
	copy_file("/dev/null", target, 0);
	unlink(path);
	CHECK(mkfifo(path, 0600) == 0);
	CHECK(open_at(&c, dir) < 0);
	CHECK(c == NULL);
	rm_rf(base);
}

int main(void)
{
	/* A FIFO opened by mistake would block for good: fail instead. */
	alarm(300);
	RUN(test_meta_check);
	RUN(test_truncated_open);
	RUN(test_special_files);
	CHECK_EXIT();
}
