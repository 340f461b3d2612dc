#ifndef DMS_CACHE_TESTLIB_H
#define DMS_CACHE_TESTLIB_H
/* Helpers shared by the cache/ unit tests: scratch directories, test data,
 * a clock.  static inline: each test uses a different subset. */
#include <ftw.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>

#include "cache/cache.h"
#include "tests/unit/check.h"

/* A cache in dir with cap bytes; exits the test if it cannot be opened. */
static inline struct cache *open_cache(const char *dir, uint64_t cap)
{
	struct cache_opts o = { .dir = dir, .max_bytes = cap };
	struct cache *c = NULL;
	int rc = cache_open(&c, &o);

	CHECK_OK(rc);
	if (rc != 0) {
		fprintf(stderr, "cannot open cache in %s\n", dir);
		exit(1);
	}
	return c;
}

static inline int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	remove(path);
	return 0;
}

static inline void rm_rf(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory under `under` (NULL: $TMPDIR or /tmp) in base; the
 * cache dir is <base>/c, not created. */
static inline void tmp_make(const char *under, char *base, size_t n, char *cdir,
                     size_t cn)
{
	const char *t = under ? under : getenv("TMPDIR");

	snprintf(base, n, "%s/cachetest.XXXXXX", t && *t ? t : "/tmp");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(cdir, cn, "%s/c", base);
}

/* Deterministic test data: block contents derived from a seed. */
static inline uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline void fill(unsigned char *p, size_t n, uint64_t seed)
{
	uint64_t s = seed;

	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = splitmix(&s);

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

static inline double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#endif
