/*
 * cache/modes.c: the mode bits of files in writable exports whose origin
 * cannot store them (contract in cache.h, "Mode table").
 *
 * Why a log of its own and not the write journal's operations: a mode must
 * outlive the upload (the journal forgets an operation once it reached the
 * origin) and must never be evicted like the block cache.  Why a log and
 * not a table rewritten per change: tar -x calls chmod for every file it
 * makes; one append per chmod costs what the chmod itself costs, a rewrite
 * would grow with the table.  The log is rewritten (compacted) at open and
 * close when most of it is dead: a new file, synced, renamed over the old
 * one, directory synced, so a crash leaves the old or the new log whole.
 *
 * Record (little-endian): u32 magic "DMM1" | u32 len (whole record) |
 * u32 kind | u32 mode | u32 n1 | u32 n2 | u64 xxh3 (of the record with this
 * field zero) | path1 (n1 bytes) | path2 (n2 bytes).  Kinds: SET path1 mode,
 * DEL path1 (and everything under it), REN path1 -> path2 (the tree).  A bad
 * record ends the replay: it is a torn append (kill -9 or power cut in the
 * middle of one) and is cut off, with a log line.
 */
#define _GNU_SOURCE
#include "cache/cache.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define MODES_MAGIC   0x314d4d44u   /* "DMM1" */
#define MODES_HDR     32u
#define MODES_MAX     (64u << 20)   /* largest log replayed */
#define MODES_PATH    4096u

enum { REC_SET = 1, REC_DEL = 2, REC_REN = 3 };

struct ent {
	struct ent *next;
	uint64_t hash;
	uint32_t mode;
	char path[];
};

struct cache_modes {
	pthread_mutex_t lock;
	char *file;              /* the log's path */
	int fd;                  /* guarded by lock */
	uint64_t log_bytes;      /* guarded by lock */
	bool dirty;              /* appended since the last sync; lock */
	struct ent **tab;        /* guarded by lock */
	size_t nbuckets, count;  /* guarded by lock */
};

static uint64_t hash_of(const char *p)
{
	return XXH3_64bits(p, strlen(p));
}

static bool under(const char *p, const char *top)
{
	size_t n = strlen(top);

	if (n == 1 && top[0] == '/')
		return true;
	return strncmp(p, top, n) == 0 && (p[n] == '/' || p[n] == '\0');
}

static struct ent **slot(struct cache_modes *m, const char *path, uint64_t h)
{
	struct ent **e = &m->tab[h & (m->nbuckets - 1)];

	while (*e && ((*e)->hash != h || strcmp((*e)->path, path) != 0))
		e = &(*e)->next;
	return e;
}

static int grow(struct cache_modes *m)
{
	size_t n = m->nbuckets ? m->nbuckets * 2 : 64, i;
	struct ent **t = calloc(n, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (i = 0; i < m->nbuckets; i++) {
		struct ent *e = m->tab[i], *next;

		for (; e; e = next) {
			next = e->next;
			e->next = t[e->hash & (n - 1)];
			t[e->hash & (n - 1)] = e;
		}
	}
	free(m->tab);
	m->tab = t;
	m->nbuckets = n;
	return 0;
}

static int mem_set(struct cache_modes *m, const char *path, uint32_t mode)
{
	uint64_t h = hash_of(path);
	struct ent **s, *e;
	size_t len = strlen(path);

	if (m->count >= m->nbuckets && grow(m) != 0)
		return -ENOMEM;
	s = slot(m, path, h);
	if (*s) {
		(*s)->mode = mode;
		return 0;
	}
	e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -ENOMEM;
	e->next = NULL;
	e->hash = h;
	e->mode = mode;
	memcpy(e->path, path, len + 1);
	*s = e;
	m->count++;
	return 0;
}

static void mem_del(struct cache_modes *m, const char *top)
{
	size_t i;

	for (i = 0; i < m->nbuckets; i++) {
		struct ent **e = &m->tab[i];

		while (*e) {
			struct ent *x = *e;

			if (under(x->path, top)) {
				*e = x->next;
				free(x);
				m->count--;
			} else {
				e = &x->next;
			}
		}
	}
}

/* Moves the tree at from to to; what was at to goes first (replaced). */
static int mem_ren(struct cache_modes *m, const char *from, const char *to)
{
	struct ent *moved = NULL, *x;
	size_t i, lf = strlen(from), lt = strlen(to);
	int rc = 0;

	if (!strcmp(from, to))
		return 0;
	for (i = 0; i < m->nbuckets; i++) {
		struct ent **e = &m->tab[i];

		while (*e) {
			x = *e;
			if (under(x->path, from)) {
				*e = x->next;
				x->next = moved;
				moved = x;
				m->count--;
			} else {
				e = &x->next;
			}
		}
	}
	mem_del(m, to);
	while ((x = moved)) {
		size_t rest = strlen(x->path) - lf;
		char *p = malloc(lt + rest + 1);

		moved = x->next;
		if (p) {
			memcpy(p, to, lt);
			memcpy(p + lt, x->path + lf, rest + 1);
			if (mem_set(m, p, x->mode) != 0)
				rc = -ENOMEM;
			free(p);
		} else {
			rc = -ENOMEM;
		}
		free(x);
	}
	return rc;
}

static void put32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* One record into buf (room for MODES_HDR + 2 * MODES_PATH); its length. */
static size_t encode(unsigned char *buf, uint32_t kind, uint32_t mode,
                     const char *p1, const char *p2)
{
	size_t n1 = strlen(p1), n2 = p2 ? strlen(p2) : 0;
	size_t len = MODES_HDR + n1 + n2;

	memset(buf, 0, MODES_HDR);
	put32(buf, MODES_MAGIC);
	put32(buf + 4, (uint32_t)len);
	put32(buf + 8, kind);
	put32(buf + 12, mode);
	put32(buf + 16, (uint32_t)n1);
	put32(buf + 20, (uint32_t)n2);
	memcpy(buf + MODES_HDR, p1, n1);
	if (n2)
		memcpy(buf + MODES_HDR + n1, p2, n2);
	put64(buf + 24, XXH3_64bits(buf, len));
	return len;
}

static int write_all(int fd, const unsigned char *b, size_t n)
{
	while (n) {
		ssize_t w = write(fd, b, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Appends one record under m->lock.  A short append leaves a torn record
 * that the next replay cuts off; the file is cut back here too so that
 * later records stay readable. */
static int append(struct cache_modes *m, uint32_t kind, uint32_t mode,
                  const char *p1, const char *p2)
{
	unsigned char buf[MODES_HDR + 2 * MODES_PATH];
	size_t len;
	int rc;

	if (strlen(p1) > MODES_PATH || (p2 && strlen(p2) > MODES_PATH))
		return -ENAMETOOLONG;
	len = encode(buf, kind, mode, p1, p2);
	rc = write_all(m->fd, buf, len);
	if (rc) {
		dms_log(LOG_ERR, "mode table %s: cannot append: %s", m->file,
		        strerror(-rc));
		if (ftruncate(m->fd, (off_t)m->log_bytes) != 0)
			dms_log(LOG_ERR, "mode table %s: cannot cut a torn "
			        "record: %s", m->file, strerror(errno));
		return rc;
	}
	m->log_bytes += len;
	m->dirty = true;
	return 0;
}

/* Applies the log in buf; *good: bytes of whole valid records. */
static int replay(struct cache_modes *m, const unsigned char *buf, size_t n,
                  size_t *good)
{
	size_t off = 0;
	int rc = 0;

	while (off + MODES_HDR <= n) {
		const unsigned char *r = buf + off;
		uint32_t len = get32(r + 4), kind = get32(r + 8);
		uint32_t n1 = get32(r + 16), n2 = get32(r + 20);
		unsigned char hdr[MODES_HDR];
		char p1[MODES_PATH + 1], p2[MODES_PATH + 1];
		XXH3_state_t *st;
		uint64_t sum;

		if (get32(r) != MODES_MAGIC || len < MODES_HDR ||
		    len > n - off || n1 > MODES_PATH || n2 > MODES_PATH ||
		    (uint64_t)MODES_HDR + n1 + n2 != len || n1 == 0 ||
		    (kind == REC_REN) != (n2 > 0))
			break;
		memcpy(hdr, r, MODES_HDR);
		memset(hdr + 24, 0, 8);
		st = XXH3_createState();
		if (!st)
			return -ENOMEM;
		XXH3_64bits_reset(st);
		XXH3_64bits_update(st, hdr, MODES_HDR);
		XXH3_64bits_update(st, r + MODES_HDR, len - MODES_HDR);
		sum = XXH3_64bits_digest(st);
		XXH3_freeState(st);
		if (sum != get64(r + 24))
			break;
		memcpy(p1, r + MODES_HDR, n1);
		p1[n1] = '\0';
		memcpy(p2, r + MODES_HDR + n1, n2);
		p2[n2] = '\0';
		if (kind == REC_SET)
			rc = mem_set(m, p1, get32(r + 12));
		else if (kind == REC_DEL)
			mem_del(m, p1);
		else if (kind == REC_REN)
			rc = mem_ren(m, p1, p2);
		else
			break;
		if (rc)
			return rc;
		off += len;
	}
	*good = off;
	return 0;
}

/* Writes the live table to a new log and renames it over the old one.
 * Under m->lock (or before the table is shared). */
static int compact(struct cache_modes *m)
{
	unsigned char buf[MODES_HDR + 2 * MODES_PATH];
	char *tmp = NULL, *dir = NULL, *slash;
	uint64_t total = 0;
	size_t i;
	int fd = -1, dfd = -1, rc = 0;

	if (asprintf(&tmp, "%s.new", m->file) < 0) {
		tmp = NULL;
		rc = -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	          0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	for (i = 0; i < m->nbuckets && !rc; i++) {
		struct ent *e;

		for (e = m->tab[i]; e && !rc; e = e->next) {
			size_t len = encode(buf, REC_SET, e->mode, e->path, NULL);

			rc = write_all(fd, buf, len);
			total += len;
		}
	}
	if (rc)
		goto out;
	if (fsync(fd) != 0 || rename(tmp, m->file) != 0) {
		rc = -errno;
		goto out;
	}
	dir = strdup(m->file);
	slash = dir ? strrchr(dir, '/') : NULL;
	if (slash) {
		*slash = '\0';
		dfd = open(slash == dir ? "/" : dir, O_RDONLY | O_DIRECTORY |
		           O_CLOEXEC);
		if (dfd < 0 || fsync(dfd) != 0) {
			rc = -errno;
			goto out;
		}
	}
	if (m->fd >= 0)
		close(m->fd);
	m->fd = open(m->file, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	if (m->fd < 0) {
		rc = -errno;
		goto out;
	}
	m->log_bytes = total;
	m->dirty = false;
out:
	if (rc) {
		dms_log(LOG_ERR, "mode table %s: cannot rewrite it: %s", m->file,
		        strerror(-rc));
		if (tmp)
			unlink(tmp);
	}
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	free(dir);
	free(tmp);
	return rc;
}

/* Whether the log is mostly dead records. */
static bool worth_compacting(const struct cache_modes *m)
{
	return m->log_bytes > (64u << 10) &&
	       m->log_bytes > 4 * (m->count * (MODES_HDR + 64) + 1);
}

int cache_modes_open(struct cache_modes **out, const char *file)
{
	struct cache_modes *m = calloc(1, sizeof(*m));
	unsigned char *buf = NULL;
	size_t got = 0, good = 0;
	struct stat st;
	int rc = 0;

	*out = NULL;
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->lock, NULL);
	m->fd = -1;
	m->file = strdup(file);
	if (!m->file) {
		rc = -ENOMEM;
		goto out;
	}
	m->fd = open(file, O_RDWR | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC,
	             0600);
	if (m->fd < 0 || fstat(m->fd, &st) != 0) {
		rc = -errno;
		dms_log(LOG_ERR, "mode table %s: %s", file, strerror(-rc));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (st.st_mode & 077)) {
		rc = -EPERM;
		dms_log(LOG_ERR, "mode table %s: not a private regular file of "
		        "uid %u (mode %04o, uid %u)", file, (unsigned)geteuid(),
		        (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid);
		goto out;
	}
	if ((uint64_t)st.st_size > MODES_MAX) {
		rc = -EFBIG;
		dms_log(LOG_ERR, "mode table %s: larger than %u bytes", file,
		        MODES_MAX);
		goto out;
	}
	rc = grow(m);
	if (rc)
		goto out;
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = pread(m->fd, buf + got, (size_t)st.st_size - got,
		                  (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			dms_log(LOG_ERR, "mode table %s: cannot read: %s", file,
			        strerror(-rc));
			goto out;
		}
		got += (size_t)r;
	}
	rc = replay(m, buf, got, &good);
	if (rc)
		goto out;
	m->log_bytes = good;
	if (good < got) {
		dms_log(LOG_WARNING, "mode table %s: %zu bytes after offset %zu "
		        "are a torn or damaged record, dropped", file,
		        got - good, good);
		if (ftruncate(m->fd, (off_t)good) != 0) {
			rc = -errno;
			goto out;
		}
	}
	if (worth_compacting(m))
		rc = compact(m);
out:
	free(buf);
	if (rc) {
		cache_modes_close(m);
		return rc;
	}
	*out = m;
	return 0;
}

void cache_modes_close(struct cache_modes *m)
{
	size_t i;

	if (!m)
		return;
	if (m->fd >= 0) {
		if (worth_compacting(m))
			(void)compact(m);
		if (m->dirty && fdatasync(m->fd) != 0)
			dms_log(LOG_ERR, "mode table %s: fdatasync: %s", m->file,
			        strerror(errno));
		close(m->fd);
	}
	for (i = 0; i < m->nbuckets; i++) {
		struct ent *e = m->tab[i], *next;

		for (; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->tab);
	free(m->file);
	pthread_mutex_destroy(&m->lock);
	free(m);
}

int cache_modes_get(struct cache_modes *m, const char *path, uint32_t *mode)
{
	struct ent **e;
	int rc = -ENOENT;

	pthread_mutex_lock(&m->lock);
	e = slot(m, path, hash_of(path));
	if (*e) {
		*mode = (*e)->mode;
		rc = 0;
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int cache_modes_set(struct cache_modes *m, const char *path, uint32_t mode)
{
	int rc;

	pthread_mutex_lock(&m->lock);
	rc = append(m, REC_SET, mode & 07777, path, NULL);
	if (!rc)
		rc = mem_set(m, path, mode & 07777);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

/* Whether an entry is at or under a (or b, if not NULL).  Under lock. */
static bool any_under(const struct cache_modes *m, const char *a,
                      const char *b)
{
	size_t i;
	struct ent *e;

	for (i = 0; i < m->nbuckets; i++)
		for (e = m->tab[i]; e; e = e->next)
			if (under(e->path, a) || (b && under(e->path, b)))
				return true;
	return false;
}

int cache_modes_remove(struct cache_modes *m, const char *path)
{
	bool any;
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	/* Most unlinks name a file that never had a mode: no record. */
	any = any_under(m, path, NULL);
	if (any)
		rc = append(m, REC_DEL, 0, path, NULL);
	if (any && !rc)
		mem_del(m, path);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int cache_modes_rename(struct cache_modes *m, const char *from,
                       const char *to)
{
	bool any;
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	any = any_under(m, from, to);
	if (any)
		rc = append(m, REC_REN, 0, from, to);
	if (any && !rc)
		rc = mem_ren(m, from, to);
	pthread_mutex_unlock(&m->lock);
	return rc;
}

int cache_modes_sync(struct cache_modes *m)
{
	int rc = 0;

	pthread_mutex_lock(&m->lock);
	if (m->dirty) {
		if (fdatasync(m->fd) != 0) {
			rc = -errno;
			dms_log(LOG_ERR, "mode table %s: fdatasync: %s", m->file,
			        strerror(-rc));
		} else {
			m->dirty = false;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return rc;
}
