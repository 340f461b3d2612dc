/*
 * cache/journal.c: the write journal (contract in cache.h, "Write journal").
 *
 * Why a log file and not LMDB for the operations: appends must cost what a
 * local metadata change costs (tar -x, cp -r: one record per file), and a
 * record must survive kill -9 without a sync.  Measured here
 * (tests/unit/test_cache_journal_bench.c, JNL_BENCH=1): power-cut-safe LMDB
 * commits ran at 100-1,370/s (default or MDB_NOMETASYNC), like a synced
 * append here (195-840/s), so each create would wait for the disk;
 * MDB_NOSYNC commits ran at 27k-77k/s, but a power cut can then damage pages
 * of the last synced snapshot (pages it freed are reused by later unsynced
 * commits), which the journal cannot afford.  Unsynced appends to the log
 * ran at 135k-250k/s: one pwrite per record, one fdatasync per sync, and
 * the integrity check is ours.
 *
 * Log record (little-endian, padded to 8 bytes):
 *   u32 magic "DMJ1" | u32 len (whole record) | u64 seq | u32 kind | u32 0 |
 *   u64 xxh3 (of the record with this field zero) | payload
 * kinds: OP (an operation with its status), DONE (u64 seq), UPDATE (u64 seq,
 * u32 retries, i64 last_try, text), BARRIER (no payload: everything before
 * it was synced).  Record sequence numbers increase strictly; an operation's
 * number is its record's.  Replay reads the log once: a bad checksum or
 * header in the middle is set aside (bytes to ops.bad) and reading goes on at
 * the next valid header; a bad or short record at the very end is a torn
 * append (never synced) and is cut off.
 *
 * Rewrite (compaction, and repair after a failed fdatasync of the log): the
 * pending operations are written from memory (status folded in) to ops.new:
 * those up to the last barrier whose staged files were synced, that
 * barrier, then the later ones; synced, renamed over ops, directory synced.
 * Compaction runs when the log passes JNL_COMPACT_MIN and live records are
 * less than a quarter of it, after a full sync.
 *
 * In memory: pending operations in an array sorted by seq (removed slots are
 * NULL, squeezed out when they are the majority), staged files in a hash
 * table by id with their size, an open descriptor, the number of operations
 * referring to them and the caller's hold.  j->lock guards all of it and the
 * log's end offset; data I/O and fdatasync run outside it on pinned files
 * (busy > 0: neither freed nor their descriptor closed).  j->sync_lock
 * serialises syncs and rewrites (taken before j->lock): a barrier must not
 * claim a file that another sync has only started to flush, and logfd is
 * replaced only under it.
 */
#define _GNU_SOURCE
#include "cache/cache.h"
#include "cache/cache_i.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define JNL_MAGIC          0x314a4d44u       /* "DMJ1" */
#define JNL_HDR            32u
#define JNL_REC_MAX        (JNL_HDR + 128u + 2u * CACHE_JNL_PATH_MAX + \
                            2u * CACHE_JNL_TEXT_MAX + 64u)
#define JNL_COMPACT_MIN    (4ull << 20)
#define JNL_FD_MAX         256               /* staged files kept open */
#define JNL_SPARE_MAX      256               /* emptied files kept for reuse */
#define JNL_CAP_MAX        (1ull << 50)
#define JNL_PREALLOC       (1 << 20)         /* log space reserved ahead */

enum { REC_OP = 1, REC_DONE = 2, REC_UPDATE = 3, REC_BARRIER = 4 };

struct jnl_file {
	uint64_t id;
	uint64_t size;        /* accounted size */
	int fd;               /* -1 when closed */
	unsigned busy;        /* I/O in flight outside the lock */
	unsigned oprefs;      /* pending operations naming it */
	bool held;            /* by the creator, until file_release */
	bool dirty;           /* written since the last sync */
	bool lose;            /* replay: named by an op set aside */
	bool broken;          /* an fdatasync failed: bytes on disk unknown */
	struct jnl_file *next;  /* hash chain */
};

struct jnl_op {
	uint64_t seq;
	struct cache_jnl_op op;  /* strings point into str */
	size_t rec_len;          /* bytes its OP record takes in the log */
	char str[];
};

struct jnl_slot {
	uint64_t seq;
	struct jnl_op *op;       /* NULL once done */
};

struct cache_jnl {
	char *dir;
	int dfd;                 /* the journal directory */
	int datafd;              /* data/ */
	int logfd;               /* ops */
	uint64_t max_bytes;
	pthread_mutex_t sync_lock;  /* serialises syncs and compaction;
	                             * taken before lock */
	pthread_mutex_t lock;
	/* guarded by lock: */
	uint64_t log_end;        /* offset of the next record */
	uint64_t prealloc_end;   /* space reserved in ops up to here */
	uint64_t live_bytes;     /* OP record bytes of pending ops */
	uint64_t next_seq;
	uint64_t next_id;
	uint64_t bytes;          /* staged bytes */
	uint64_t nfiles;
	unsigned nopen;          /* open staged descriptors */
	unsigned trim_at;        /* trim when nopen reaches it (0: JNL_FD_MAX) */
	int sparefd;             /* spare/: emptied staged files; -1: none */
	uint64_t spare[JNL_SPARE_MAX];  /* their names (ids) */
	size_t nspare;
	uint64_t next_spare;
	bool dir_dirty;          /* data/ names not yet synced */
	bool log_dirty;          /* log written since the last sync */
	bool log_suspect;        /* an fdatasync of the log failed: the log
	                          * must be rewritten before a sync succeeds */
	uint64_t synced_seq;     /* seq of the last durable barrier (0: none) */
	uint64_t covered_seq;    /* seq of the last barrier written after its
	                          * staged files were synced (durable or not) */
	struct jnl_slot *ops;
	size_t nops, capops, liveops;
	struct jnl_file **tab;
	size_t tabn;             /* buckets, power of two */
	uint64_t setaside;
	uint64_t *backlog;       /* done ops whose DONE record is not written
	                          * yet (the disk was full) */
	size_t nbacklog, capbacklog;
	bool log_broken;         /* a failed append left an unknown tail */
};

/* ---- small helpers ---------------------------------------------------- */

static void jnl_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void jnl_put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t jnl_get32(const unsigned char *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t jnl_get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static int64_t jnl_now(void)
{
	return (int64_t)time(NULL);
}

/* Writes all of len bytes at off (retrying short writes).  0 or -errno;
 * *done says how much was written either way. */
static int jnl_pwrite_all(int fd, const void *buf, size_t len, uint64_t off,
                          size_t *done)
{
	const unsigned char *p = buf;
	int rc = 0;

	*done = 0;
	while (*done < len) {
		ssize_t w = pwrite(fd, p + *done, len - *done,
		                   (off_t)(off + *done));

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			break;
		}
		*done += (size_t)w;
	}
	return rc;
}

static void jnl_idname(uint64_t id, char *buf, size_t n)
{
	snprintf(buf, n, "%016" PRIx64, id);
}

/* Opens name under dirfd without following a symlink and checks that it is
 * a regular file owned by us.  Returns the fd or -errno. */
static int jnl_open_reg(int dirfd, const char *name, int flags, mode_t mode)
{
	struct stat st;
	int fd, rc;

	fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
	            mode);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		rc = -EACCES;
		goto fail;
	}
	if ((st.st_mode & 077) != 0 && fchmod(fd, 0600) != 0) {
		rc = -errno;
		goto fail;
	}
	if (fcntl(fd, F_SETFL, flags & O_APPEND) != 0) {
		rc = -errno;
		goto fail;
	}
	return fd;
fail:
	close(fd);
	return rc;
}

/* Creates (0700) or checks a directory at dirfd/name (dirfd AT_FDCWD for an
 * absolute path) and opens it without following symlinks. */
static int jnl_open_dir(int dirfd, const char *name, const char *shown)
{
	struct stat st;
	int fd, rc = 0;

	if (mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST) {
		rc = -errno;
		goto fail;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	if (st.st_uid != geteuid()) {
		close(fd);
		rc = -EACCES;
		goto fail;
	}
	if ((st.st_mode & 077) != 0 && fchmod(fd, 0700) != 0) {
		rc = -errno;
		close(fd);
		goto fail;
	}
	return fd;
fail:
	/* ENOTDIR from O_DIRECTORY|O_NOFOLLOW on a symlink reads as ELOOP. */
	if (rc == -ENOTDIR && fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0
	    && S_ISLNK(st.st_mode))
		rc = -ELOOP;
	dms_log(LOG_ERR, "journal: directory %s unusable: %s", shown,
	        strerror(-rc));
	return rc;
}

/* ---- staged file table (lock held) ----------------------------------- */

static size_t jnl_hash(const struct cache_jnl *j, uint64_t id)
{
	return (size_t)(XXH3_64bits(&id, sizeof(id)) & (j->tabn - 1));
}

static struct jnl_file *jnl_file_find(struct cache_jnl *j, uint64_t id)
{
	struct jnl_file *f;

	for (f = j->tab[jnl_hash(j, id)]; f; f = f->next)
		if (f->id == id)
			return f;
	return NULL;
}

static int jnl_file_add(struct cache_jnl *j, struct jnl_file *f)
{
	size_t h;

	if (j->nfiles + 1 > j->tabn * 2) {
		size_t n = j->tabn * 4;
		struct jnl_file **t = calloc(n, sizeof(*t));

		if (!t)
			return -ENOMEM;
		for (size_t i = 0; i < j->tabn; i++) {
			struct jnl_file *e = j->tab[i], *nx;

			for (; e; e = nx) {
				nx = e->next;
				h = (size_t)(XXH3_64bits(&e->id, 8) & (n - 1));
				e->next = t[h];
				t[h] = e;
			}
		}
		free(j->tab);
		j->tab = t;
		j->tabn = n;
	}
	h = jnl_hash(j, f->id);
	f->next = j->tab[h];
	j->tab[h] = f;
	j->nfiles++;
	return 0;
}

static void jnl_file_unlink_tab(struct cache_jnl *j, struct jnl_file *f)
{
	struct jnl_file **pp = &j->tab[jnl_hash(j, f->id)];

	while (*pp && *pp != f)
		pp = &(*pp)->next;
	if (*pp)
		*pp = f->next;
	j->nfiles--;
}

/* Closes descriptors of idle files once too many are open.  Files written
 * since the last sync keep theirs (a new descriptor would not see a
 * writeback error before it): when those are most, the next walk waits
 * until twice as many are open, or a sync, so that creating many files
 * without a sync stays linear. */
static void jnl_fd_trim(struct cache_jnl *j)
{
	for (size_t i = 0; i < j->tabn && j->nopen > JNL_FD_MAX / 2; i++)
		for (struct jnl_file *f = j->tab[i]; f; f = f->next)
			if (f->fd >= 0 && f->busy == 0 && !f->dirty) {
				close(f->fd);
				f->fd = -1;
				j->nopen--;
			}
	j->trim_at = j->nopen > JNL_FD_MAX / 2 ? j->nopen * 2 : 0;
}

static bool jnl_fd_many(const struct cache_jnl *j)
{
	return j->nopen >= (j->trim_at ? j->trim_at : JNL_FD_MAX);
}

/* Gets an open descriptor for f (lock held). */
static int jnl_file_fd(struct cache_jnl *j, struct jnl_file *f)
{
	char name[32];
	int fd;

	if (f->fd >= 0)
		return 0;
	if (jnl_fd_many(j))
		jnl_fd_trim(j);
	jnl_idname(f->id, name, sizeof(name));
	fd = jnl_open_reg(j->datafd, name, O_RDWR, 0);
	if (fd < 0) {
		dms_log(LOG_ERR, "journal: staged file %s/data/%s: %s", j->dir,
		        name, strerror(-fd));
		return fd;
	}
	f->fd = fd;
	j->nopen++;
	return 0;
}

/* Keeps f's inode for a later cache_jnl_file_new, emptied, in spare/ (lock
 * held): a new inode per file is what creating thousands of small files
 * cost most (the filesystem's search for a free one).  False: unlink it. */
static bool jnl_file_spare(struct cache_jnl *j, struct jnl_file *f,
                           const char *name)
{
	char sname[32];

	if (j->sparefd < 0 || j->nspare == JNL_SPARE_MAX || f->fd < 0 ||
	    f->broken || ftruncate(f->fd, 0) != 0)
		return false;
	jnl_idname(++j->next_spare, sname, sizeof(sname));
	if (renameat2(j->datafd, name, j->sparefd, sname, RENAME_NOREPLACE) != 0)
		return false;
	j->spare[j->nspare++] = j->next_spare;
	j->dir_dirty = true;
	return true;
}

/* An emptied inode from spare/ under data/name, opened (lock held); -1 if
 * none. */
static int jnl_file_unspare(struct cache_jnl *j, const char *name)
{
	char sname[32];
	int fd;

	while (j->nspare > 0) {
		jnl_idname(j->spare[--j->nspare], sname, sizeof(sname));
		if (renameat2(j->sparefd, sname, j->datafd, name,
		              RENAME_NOREPLACE) != 0) {
			unlinkat(j->sparefd, sname, 0);
			continue;
		}
		fd = jnl_open_reg(j->datafd, name, O_RDWR, 0);
		if (fd >= 0) {
			struct stat st;

			if (fstat(fd, &st) == 0 && st.st_size == 0)
				return fd;
			close(fd);
		}
		unlinkat(j->datafd, name, 0);
	}
	return -1;
}

/* Empties spare/ (at open): a crash may have left anything there. */
static void jnl_spare_clear(struct cache_jnl *j)
{
	struct dirent *e;
	DIR *d;
	int fd = dup(j->sparefd);

	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlinkat(j->sparefd, e->d_name, 0);
	closedir(d);
}

/* Deletes a file nobody needs any more (lock held). */
static void jnl_file_maybe_free(struct cache_jnl *j, struct jnl_file *f)
{
	char name[32];

	if (f->held || f->oprefs > 0 || f->busy > 0)
		return;
	jnl_idname(f->id, name, sizeof(name));
	if (jnl_file_spare(j, f, name))
		;
	else if (unlinkat(j->datafd, name, 0) != 0 && errno != ENOENT)
		dms_log(LOG_WARNING, "journal: unlink %s/data/%s: %s", j->dir,
		        name, strerror(errno));
	if (f->fd >= 0) {
		close(f->fd);
		j->nopen--;
	}
	j->bytes -= f->size;
	jnl_file_unlink_tab(j, f);
	free(f);
}

/* A staged file whose bytes can be used (lock held): -ENOENT if unknown,
 * -EIO after a failed sync. */
static int jnl_file_usable(struct cache_jnl *j, uint64_t id,
                           struct jnl_file **out)
{
	*out = jnl_file_find(j, id);
	if (!*out)
		return -ENOENT;
	return (*out)->broken ? -EIO : 0;
}

/* Looks a file up and pins it for I/O outside the lock. */
static int jnl_file_pin(struct cache_jnl *j, uint64_t id, struct jnl_file **out)
{
	struct jnl_file *f;
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = jnl_file_usable(j, id, &f);
	if (rc != 0)
		goto out;
	rc = jnl_file_fd(j, f);
	if (rc == 0) {
		f->busy++;
		*out = f;
	}
out:
	pthread_mutex_unlock(&j->lock);
	return rc;
}

static void jnl_file_unpin(struct cache_jnl *j, struct jnl_file *f,
                           bool wrote)
{
	pthread_mutex_lock(&j->lock);
	/* Also after the write: a sync that began meanwhile cleared it. */
	if (wrote)
		f->dirty = true;
	f->busy--;
	jnl_file_maybe_free(j, f);
	pthread_mutex_unlock(&j->lock);
}

/* ---- records ---------------------------------------------------------- */

struct jnl_buf {
	unsigned char *p;
	size_t n;
};

static void jnl_b32(struct jnl_buf *b, uint32_t v)
{
	jnl_put32(b->p + b->n, v);
	b->n += 4;
}

static void jnl_b64(struct jnl_buf *b, uint64_t v)
{
	jnl_put64(b->p + b->n, v);
	b->n += 8;
}

static void jnl_bstr(struct jnl_buf *b, const char *s, size_t max)
{
	size_t l = s ? strnlen(s, max) : 0;

	jnl_b32(b, (uint32_t)l);
	if (l)
		memcpy(b->p + b->n, s, l);
	b->n += l;
}

/* Finishes a record in b (payload after the header): header, padding, sum.
 * Returns the record length. */
static size_t jnl_seal(struct jnl_buf *b, uint64_t seq, uint32_t kind)
{
	size_t len = (b->n + 7) & ~(size_t)7;

	memset(b->p + b->n, 0, len - b->n);
	jnl_put32(b->p, JNL_MAGIC);
	jnl_put32(b->p + 4, (uint32_t)len);
	jnl_put64(b->p + 8, seq);
	jnl_put32(b->p + 16, kind);
	jnl_put32(b->p + 20, 0);
	jnl_put64(b->p + 24, 0);
	jnl_put64(b->p + 24, XXH3_64bits(b->p, len));
	return len;
}

static size_t jnl_enc_op(unsigned char *p, uint64_t seq,
                         const struct cache_jnl_op *op)
{
	struct jnl_buf b = { p, JNL_HDR };

	jnl_b32(&b, (uint32_t)op->kind);
	jnl_b32(&b, op->flags);
	jnl_b64(&b, op->file_id);
	jnl_b64(&b, op->size);
	jnl_b32(&b, op->mode);
	jnl_b32(&b, op->uid);
	jnl_b32(&b, op->gid);
	jnl_b32(&b, op->mtime_nsec);
	jnl_b64(&b, (uint64_t)op->mtime_sec);
	jnl_b32(&b, op->base_present ? 1 : 0);
	jnl_b32(&b, op->retries);
	jnl_b64(&b, op->base_size);
	jnl_b64(&b, (uint64_t)op->base_mtime);
	jnl_b64(&b, (uint64_t)op->added);
	jnl_b64(&b, (uint64_t)op->last_try);
	jnl_bstr(&b, op->path, CACHE_JNL_PATH_MAX);
	jnl_bstr(&b, op->path2, CACHE_JNL_PATH_MAX);
	jnl_bstr(&b, op->base_etag, CACHE_JNL_TEXT_MAX);
	jnl_bstr(&b, op->last_error, CACHE_JNL_TEXT_MAX);
	return jnl_seal(&b, seq, REC_OP);
}

/* A decoding cursor that fails (sets bad) instead of reading past the end. */
struct jnl_rd {
	const unsigned char *p;
	size_t n, off;
	bool bad;
};

/* The next n bytes, or NULL (and r marked bad) if there are fewer. */
static const unsigned char *jnl_rtake(struct jnl_rd *r, size_t n)
{
	if (r->bad || r->n - r->off < n) {
		r->bad = true;
		return NULL;
	}
	r->off += n;
	return r->p + r->off - n;
}

static uint32_t jnl_r32(struct jnl_rd *r)
{
	const unsigned char *p = jnl_rtake(r, 4);

	return p ? jnl_get32(p) : 0;
}

static uint64_t jnl_r64(struct jnl_rd *r)
{
	const unsigned char *p = jnl_rtake(r, 8);

	return p ? jnl_get64(p) : 0;
}

static const unsigned char *jnl_rstr(struct jnl_rd *r, size_t max, size_t *len)
{
	size_t l = jnl_r32(r);

	if (l > max)
		r->bad = true;
	*len = l;
	return jnl_rtake(r, l);
}

static bool jnl_kind_ok(uint32_t k)
{
	return k >= CACHE_JNL_WRITE && k <= CACHE_JNL_SETATTR;
}

/* Builds an in-memory op from its fields, copying strings (s[i] may be
 * NULL for "none").  NULL on ENOMEM. */
static struct jnl_op *jnl_op_new(uint64_t seq, const struct cache_jnl_op *op,
                                 const char *s[4], const size_t l[4])
{
	struct jnl_op *o;
	size_t tot = 0;
	char *p;
	const char **dst[4];

	for (int i = 0; i < 4; i++)
		tot += l[i] + 1;
	o = malloc(sizeof(*o) + tot);
	if (!o)
		return NULL;
	o->seq = seq;
	o->op = *op;
	dst[0] = &o->op.path;
	dst[1] = &o->op.path2;
	dst[2] = &o->op.base_etag;
	dst[3] = &o->op.last_error;
	p = o->str;
	for (int i = 0; i < 4; i++) {
		if (l[i])
			memcpy(p, s[i], l[i]);
		p[l[i]] = '\0';
		*dst[i] = (i == 1 && !s[i]) ? NULL : p;
		p += l[i] + 1;
	}
	return o;
}

/* A copy of o (same seq and rec_len) whose error text is err[0..elen) or,
 * with err NULL, o's own.  NULL on ENOMEM. */
static struct jnl_op *jnl_op_copy(const struct jnl_op *o, const char *err,
                                  size_t elen)
{
	const char *s[4] = { o->op.path, o->op.path2, o->op.base_etag,
	                     err ? err : o->op.last_error };
	size_t l[4];
	struct jnl_op *n;

	for (int k = 0; k < 3; k++)
		l[k] = s[k] ? strlen(s[k]) : 0;
	l[3] = err ? elen : strlen(s[3]);
	n = jnl_op_new(o->seq, &o->op, s, l);
	if (n)
		n->rec_len = o->rec_len;
	return n;
}

static struct jnl_op *jnl_dec_op(const unsigned char *p, size_t len,
                                 uint64_t seq)
{
	struct jnl_rd r = { p, len, JNL_HDR, false };
	struct cache_jnl_op op;
	const char *s[4];
	size_t l[4];

	memset(&op, 0, sizeof(op));
	op.kind = (enum cache_jnl_kind)jnl_r32(&r);
	op.flags = jnl_r32(&r);
	op.file_id = jnl_r64(&r);
	op.size = jnl_r64(&r);
	op.mode = jnl_r32(&r);
	op.uid = jnl_r32(&r);
	op.gid = jnl_r32(&r);
	op.mtime_nsec = jnl_r32(&r);
	op.mtime_sec = (int64_t)jnl_r64(&r);
	op.base_present = jnl_r32(&r) != 0;
	op.retries = jnl_r32(&r);
	op.base_size = jnl_r64(&r);
	op.base_mtime = (int64_t)jnl_r64(&r);
	op.added = (int64_t)jnl_r64(&r);
	op.last_try = (int64_t)jnl_r64(&r);
	for (int i = 0; i < 4; i++)
		s[i] = (const char *)jnl_rstr(&r, i < 2 ? CACHE_JNL_PATH_MAX :
		                              CACHE_JNL_TEXT_MAX, &l[i]);
	if (r.bad || !jnl_kind_ok((uint32_t)op.kind) || l[0] == 0)
		return NULL;
	if (op.kind != CACHE_JNL_RENAME)
		s[1] = NULL;
	return jnl_op_new(seq, &op, s, l);
}

/* Appends one record at the log's end (lock held). */
static int jnl_log_write(struct cache_jnl *j, const void *rec, size_t len)
{
	size_t done = 0;
	int rc = 0;

	if (j->log_broken)
		return -EIO;
	rc = jnl_pwrite_all(j->logfd, rec, len, j->log_end, &done);
	if (rc != 0) {
		dms_log(LOG_ERR, "journal: append to %s/ops: %s", j->dir,
		        strerror(-rc));
		/* Take back a partial record so the log ends on a boundary. */
		if (done > 0 && ftruncate(j->logfd, (off_t)j->log_end) != 0) {
			dms_log(LOG_ERR, "journal: cannot cut %s/ops back: %s; "
			        "no more appends", j->dir, strerror(errno));
			j->log_broken = true;
		}
		return rc;
	}
	j->log_end += len;
	j->log_dirty = true;
	/* Keep room ahead so that a disk filled by staged data still takes
	 * metadata records and sync barriers. */
	if (j->log_end + JNL_PREALLOC / 2 > j->prealloc_end &&
	    fallocate(j->logfd, FALLOC_FL_KEEP_SIZE, (off_t)j->log_end,
	              JNL_PREALLOC) == 0)
		j->prealloc_end = j->log_end + JNL_PREALLOC;
	return 0;
}

static int jnl_log_simple(struct cache_jnl *j, uint32_t kind, uint64_t target,
                          const struct jnl_op *o)
{
	unsigned char rec[JNL_HDR + 32 + CACHE_JNL_TEXT_MAX];
	struct jnl_buf b = { rec, JNL_HDR };
	size_t len;

	if (kind == REC_DONE || kind == REC_UPDATE)
		jnl_b64(&b, target);
	if (kind == REC_UPDATE) {
		jnl_b32(&b, o->op.retries);
		jnl_b64(&b, (uint64_t)o->op.last_try);
		jnl_bstr(&b, o->op.last_error, CACHE_JNL_TEXT_MAX);
	}
	len = jnl_seal(&b, j->next_seq, kind);
	{
		int rc = jnl_log_write(j, rec, len);

		if (rc == 0)
			j->next_seq++;
		return rc;
	}
}

/* ---- pending operation array (lock held) ------------------------------ */

static ssize_t jnl_slot_find(const struct cache_jnl *j, uint64_t seq)
{
	size_t lo = 0, hi = j->nops;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (j->ops[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (ssize_t)lo;  /* first slot with seq >= the one asked for */
}

static int jnl_slot_add(struct cache_jnl *j, struct jnl_op *o)
{
	if (j->nops == j->capops) {
		size_t n = j->capops ? j->capops * 2 : 64;
		struct jnl_slot *s;

		/* Squeeze out done slots before growing. */
		if (j->liveops < j->nops / 2) {
			size_t w = 0;

			for (size_t i = 0; i < j->nops; i++)
				if (j->ops[i].op)
					j->ops[w++] = j->ops[i];
			j->nops = w;
		} else {
			s = realloc(j->ops, n * sizeof(*s));
			if (!s)
				return -ENOMEM;
			j->ops = s;
			j->capops = n;
		}
	}
	j->ops[j->nops].seq = o->seq;
	j->ops[j->nops].op = o;
	j->nops++;
	j->liveops++;
	return 0;
}

/* Removes and frees the op in slot i (its file reference already dropped
 * or never taken). */
static void jnl_slot_clear(struct cache_jnl *j, size_t i)
{
	struct jnl_op *o = j->ops[i].op;

	j->ops[i].op = NULL;
	j->liveops--;
	j->live_bytes -= o->rec_len;
	free(o);
}

/* Binds an op to its staged file; false if the file is unknown. */
static bool jnl_op_ref(struct cache_jnl *j, struct jnl_op *o)
{
	struct jnl_file *f;

	if (o->op.kind != CACHE_JNL_WRITE)
		return true;
	f = jnl_file_find(j, o->op.file_id);
	if (!f)
		return false;
	f->oprefs++;
	return true;
}

static void jnl_op_unref(struct cache_jnl *j, struct jnl_op *o)
{
	struct jnl_file *f;

	if (o->op.kind != CACHE_JNL_WRITE)
		return;
	f = jnl_file_find(j, o->op.file_id);
	if (f) {
		f->oprefs--;
		jnl_file_maybe_free(j, f);
	}
}

static int jnl_record_done(struct cache_jnl *j, uint64_t seq);

/* After a failed fdatasync of f (lock held): its bytes on disk are unknown,
 * so it is never read or uploaded again (-EIO), and the operations that
 * name it are set aside: an error now, never a wrong byte later. */
static void jnl_file_break(struct cache_jnl *j, struct jnl_file *f)
{
	f->broken = true;
	f->dirty = false;
	for (size_t i = 0; i < j->nops; i++) {
		struct jnl_op *o = j->ops[i].op;

		if (!o || o->op.kind != CACHE_JNL_WRITE || o->op.file_id != f->id)
			continue;
		j->setaside++;
		dms_log(LOG_ERR, "journal: %s: operation %" PRIu64 " (%s, uid "
		        "%u) set aside: its staged file could not be synced",
		        j->dir, o->seq, o->op.path, (unsigned)o->op.uid);
		(void)jnl_record_done(j, o->seq);
		f->oprefs--;
		jnl_slot_clear(j, i);
	}
}

/* ---- sync -------------------------------------------------------------- */

/* Makes durable every dirty staged file named by a pending operation (and
 * the file `also`, if not 0), then new names in data/, then the log, after
 * appending a barrier to it: everything before the barrier is then on disk.
 * Files still being written that no operation names yet are left alone, so
 * one fsync does not flush someone else's half-written file.  The
 * fdatasyncs run without j->lock (writers go on); j->sync_lock serialises
 * syncs, so a barrier never claims a file that another sync has only
 * started to flush.  Called with sync_lock held and lock not held. */
static int jnl_rewrite_log(struct cache_jnl *j, uint64_t covered);
static void jnl_backlog_flush(struct cache_jnl *j);
static void jnl_file_break(struct cache_jnl *j, struct jnl_file *f);

static int jnl_sync_inner(struct cache_jnl *j, uint64_t also)
{
	struct jnl_file **v = NULL;
	int *fds = NULL;
	size_t n = 0, cap = 0;
	uint64_t barrier = 0;
	bool dir, suspect;
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	for (size_t i = 0; i < j->tabn && rc == 0; i++)
		for (struct jnl_file *f = j->tab[i]; f && rc == 0; f = f->next) {
			if (!f->dirty || f->broken ||
			    (f->oprefs == 0 && f->id != also))
				continue;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct jnl_file **nv = realloc(v, nc * sizeof(*v));
				int *nf = nv ? realloc(fds, nc * sizeof(*fds)) : NULL;

				if (nv)
					v = nv;
				if (nf)
					fds = nf;
				if (!nv || !nf) {
					rc = -ENOMEM;
					break;
				}
				cap = nc;
			}
			f->busy++;  /* keeps f and its fd (if open) alive */
			f->dirty = false;  /* a write from now on sets it again */
			fds[n] = f->fd;
			v[n++] = f;
		}
	dir = j->dir_dirty;
	j->dir_dirty = false;
	pthread_mutex_unlock(&j->lock);
	for (size_t i = 0; i < n && rc == 0; i++) {
		char name[32];
		int fd = fds[i];

		/* Replayed files have no descriptor: a passing one, so that a
		 * long tail does not pile up open files. */
		if (fd < 0) {
			jnl_idname(v[i]->id, name, sizeof(name));
			fd = jnl_open_reg(j->datafd, name, O_RDONLY, 0);
			if (fd < 0) {
				rc = fd;
				dms_log(LOG_ERR, "journal: staged file %s/data/%s:"
				        " %s", j->dir, name, strerror(-rc));
				break;
			}
		}
		if (fdatasync(fd) != 0) {
			rc = -errno;
			dms_log(LOG_ERR, "journal: fdatasync staged file %016"
			        PRIx64 ": %s; its pending data may be lost",
			        v[i]->id, strerror(errno));
			fds[i] = -2;  /* marks the one that failed */
		}
		if (fd != v[i]->fd)
			close(fd);
	}
	if (rc == 0 && dir && fsync(j->datafd) != 0) {
		rc = -errno;
		dms_log(LOG_ERR, "journal: fsync %s/data: %s", j->dir,
		        strerror(errno));
	}
	pthread_mutex_lock(&j->lock);
	for (size_t i = 0; i < n; i++) {
		/* After a failed fdatasync the kernel may have dropped the
		 * pages: a later fdatasync would succeed without them. */
		if (fds[i] == -2)
			jnl_file_break(j, v[i]);
		else if (rc != 0)
			v[i]->dirty = true;
	}
	for (size_t i = 0; i < n; i++) {
		v[i]->busy--;
		jnl_file_maybe_free(j, v[i]);
	}
	if (n)
		j->trim_at = 0;
	if (rc == 0)
		jnl_backlog_flush(j);
	if (rc != 0) {
		j->dir_dirty = j->dir_dirty || dir;
	} else if (j->log_dirty) {
		barrier = j->next_seq;
		rc = jnl_log_simple(j, REC_BARRIER, 0, NULL);
		if (rc == 0) {
			j->log_dirty = false;
			j->covered_seq = barrier;
		} else {
			barrier = 0;
		}
	}
	suspect = j->log_suspect;
	pthread_mutex_unlock(&j->lock);
	/* logfd changes only in jnl_rewrite_log, under sync_lock. */
	if (barrier && !suspect && fdatasync(j->logfd) != 0) {
		dms_log(LOG_ERR, "journal: fdatasync %s/ops: %s; rewriting it",
		        j->dir, strerror(errno));
		suspect = true;
		pthread_mutex_lock(&j->lock);
		j->log_suspect = true;
		pthread_mutex_unlock(&j->lock);
	}
	if (rc == 0 && suspect) {
		/* The kernel may have dropped log pages: write the whole state
		 * into a fresh file instead of trusting a second fdatasync. */
		rc = jnl_rewrite_log(j, j->covered_seq);
	} else if (rc == 0 && barrier) {
		pthread_mutex_lock(&j->lock);
		j->synced_seq = barrier;
		pthread_mutex_unlock(&j->lock);
	}
	free(v);
	free(fds);
	return rc;
}

int cache_jnl_sync(struct cache_jnl *j)
{
	int rc;

	pthread_mutex_lock(&j->sync_lock);
	rc = jnl_sync_inner(j, 0);
	pthread_mutex_unlock(&j->sync_lock);
	return rc;
}

int cache_jnl_sync_file(struct cache_jnl *j, uint64_t file_id)
{
	int rc = 0;

	struct jnl_file *f;

	pthread_mutex_lock(&j->sync_lock);
	rc = jnl_sync_inner(j, file_id);
	pthread_mutex_lock(&j->lock);
	if (rc == 0 || jnl_file_find(j, file_id) == NULL)
		rc = jnl_file_usable(j, file_id, &f);
	pthread_mutex_unlock(&j->lock);
	pthread_mutex_unlock(&j->sync_lock);
	return rc;
}

/* ---- staged file API --------------------------------------------------- */

int cache_jnl_file_new(struct cache_jnl *j, uint64_t *file_id)
{
	struct jnl_file *f;
	char name[32];
	int rc, fd;

	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&j->lock);
	f->id = j->next_id++;
	jnl_idname(f->id, name, sizeof(name));
	if (jnl_fd_many(j))
		jnl_fd_trim(j);
	fd = jnl_file_unspare(j, name);
	if (fd < 0)
		fd = jnl_open_reg(j->datafd, name, O_RDWR | O_CREAT | O_EXCL,
		                  0600);
	if (fd < 0) {
		rc = fd;
		dms_log(LOG_ERR, "journal: create %s/data/%s: %s", j->dir, name,
		        strerror(-rc));
		goto fail;
	}
	f->fd = fd;
	f->held = true;
	f->dirty = true;
	rc = jnl_file_add(j, f);
	if (rc != 0) {
		close(fd);
		unlinkat(j->datafd, name, 0);
		goto fail;
	}
	j->nopen++;
	j->dir_dirty = true;
	*file_id = f->id;
	pthread_mutex_unlock(&j->lock);
	return 0;
fail:
	pthread_mutex_unlock(&j->lock);
	free(f);
	return rc;
}

int cache_jnl_file_release(struct cache_jnl *j, uint64_t file_id)
{
	struct jnl_file *f;
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	f = jnl_file_find(j, file_id);
	if (!f || !f->held) {
		rc = -ENOENT;
		goto out;
	}
	f->held = false;
	jnl_file_maybe_free(j, f);
out:
	pthread_mutex_unlock(&j->lock);
	return rc;
}

/* Reserves growth of f to at least end against the cap (lock held). */
static int jnl_grow(struct cache_jnl *j, struct jnl_file *f, uint64_t end)
{
	if (end <= f->size)
		return 0;
	if (end - f->size > j->max_bytes - j->bytes)
		return -ENOSPC;
	j->bytes += end - f->size;
	f->size = end;
	return 0;
}

/* After a failed write or truncate: account what the file really is. */
static void jnl_resize(struct cache_jnl *j, struct jnl_file *f)
{
	struct stat st;

	pthread_mutex_lock(&j->lock);
	if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size != f->size) {
		j->bytes = j->bytes - f->size + (uint64_t)st.st_size;
		f->size = (uint64_t)st.st_size;
	}
	pthread_mutex_unlock(&j->lock);
}

int cache_jnl_pwrite(struct cache_jnl *j, uint64_t file_id, const void *buf,
                     size_t len, uint64_t off)
{
	struct jnl_file *f = NULL;
	size_t done = 0;
	int rc;

	if (off > JNL_CAP_MAX || len > JNL_CAP_MAX - off)
		return -EFBIG;
	rc = jnl_file_pin(j, file_id, &f);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&j->lock);
	rc = jnl_grow(j, f, off + len);
	if (rc == 0)
		f->dirty = true;
	pthread_mutex_unlock(&j->lock);
	if (rc != 0)
		goto out;
	rc = jnl_pwrite_all(f->fd, buf, len, off, &done);
	if (rc != 0) {
		dms_log(LOG_ERR, "journal: write staged file %016" PRIx64
		        " at %" PRIu64 ": %s", file_id, off + done,
		        strerror(-rc));
		jnl_resize(j, f);
	}
out:
	jnl_file_unpin(j, f, true);
	return rc;
}

ssize_t cache_jnl_pread(struct cache_jnl *j, uint64_t file_id, void *buf,
                        size_t len, uint64_t off)
{
	unsigned char *p = buf;
	struct jnl_file *f = NULL;
	size_t done = 0;
	ssize_t rc;

	rc = jnl_file_pin(j, file_id, &f);
	if (rc != 0)
		return rc;
	while (done < len) {
		ssize_t r = pread(f->fd, p + done, len - done,
		                  (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			dms_log(LOG_ERR, "journal: read staged file %016" PRIx64
			        " at %" PRIu64 ": %s", file_id, off + done,
			        strerror(errno));
			break;
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	if (rc == 0)
		rc = (ssize_t)done;
	jnl_file_unpin(j, f, false);
	return rc;
}

int cache_jnl_truncate(struct cache_jnl *j, uint64_t file_id, uint64_t size)
{
	struct jnl_file *f = NULL;
	int rc;

	if (size > JNL_CAP_MAX)
		return -EFBIG;
	rc = jnl_file_pin(j, file_id, &f);
	if (rc != 0)
		return rc;
	pthread_mutex_lock(&j->lock);
	rc = jnl_grow(j, f, size);
	if (rc == 0)
		f->dirty = true;
	pthread_mutex_unlock(&j->lock);
	if (rc != 0)
		goto out;
	if (ftruncate(f->fd, (off_t)size) != 0) {
		rc = -errno;
		dms_log(LOG_ERR, "journal: truncate staged file %016" PRIx64
		        " to %" PRIu64 ": %s", file_id, size, strerror(errno));
	}
	jnl_resize(j, f);  /* a shrink gives bytes back */
out:
	jnl_file_unpin(j, f, true);
	return rc;
}

int cache_jnl_file_size(struct cache_jnl *j, uint64_t file_id, uint64_t *size)
{
	struct jnl_file *f;
	int rc = 0;

	pthread_mutex_lock(&j->lock);
	f = jnl_file_find(j, file_id);
	if (f)
		*size = f->size;
	else
		rc = -ENOENT;
	pthread_mutex_unlock(&j->lock);
	return rc;
}

int cache_jnl_file_open(struct cache_jnl *j, uint64_t file_id)
{
	struct jnl_file *f;
	char name[32];
	int rc;

	pthread_mutex_lock(&j->lock);
	rc = jnl_file_usable(j, file_id, &f);
	if (rc != 0)
		goto out;
	jnl_idname(file_id, name, sizeof(name));
	rc = jnl_open_reg(j->datafd, name, O_RDONLY, 0);
out:
	pthread_mutex_unlock(&j->lock);
	return rc;
}

/* ---- operations -------------------------------------------------------- */

static bool jnl_str_ok(const char *s, size_t max, bool required)
{
	if (!s)
		return !required;
	return (!required || s[0]) && strnlen(s, max + 1) <= max;
}

static bool jnl_compact_due(const struct cache_jnl *j);
static int jnl_compact(struct cache_jnl *j);

int cache_jnl_append(struct cache_jnl *j, const struct cache_jnl_op *op,
                     bool sync, uint64_t *seq)
{
	unsigned char *rec = NULL;
	struct cache_jnl_op c;
	struct jnl_op *o = NULL;
	const char *s[4];
	size_t l[4], len;
	int rc;

	if (!op || !jnl_kind_ok((uint32_t)op->kind) ||
	    !jnl_str_ok(op->path, CACHE_JNL_PATH_MAX, true) ||
	    !jnl_str_ok(op->path2, CACHE_JNL_PATH_MAX,
	                op->kind == CACHE_JNL_RENAME) ||
	    !jnl_str_ok(op->base_etag, CACHE_JNL_TEXT_MAX, false))
		return -EINVAL;
	c = *op;
	c.added = jnl_now();
	c.retries = 0;
	c.last_try = 0;
	c.last_error = "";
	if (c.kind != CACHE_JNL_RENAME)
		c.path2 = NULL;
	if (c.kind != CACHE_JNL_WRITE)
		c.file_id = 0;
	s[0] = c.path;
	s[1] = c.path2;
	s[2] = c.base_etag;
	s[3] = c.last_error;
	for (int i = 0; i < 4; i++)
		l[i] = s[i] ? strlen(s[i]) : 0;
	rec = malloc(JNL_REC_MAX);
	if (!rec)
		return -ENOMEM;
	pthread_mutex_lock(&j->lock);
	o = jnl_op_new(j->next_seq, &c, s, l);
	if (!o) {
		rc = -ENOMEM;
		goto out;
	}
	if (!jnl_op_ref(j, o)) {
		rc = -EINVAL;
		goto out;
	}
	rc = jnl_slot_add(j, o);
	if (rc != 0) {
		jnl_op_unref(j, o);
		goto out;
	}
	len = jnl_enc_op(rec, o->seq, &o->op);
	rc = jnl_log_write(j, rec, len);
	if (rc != 0) {
		/* Not in the log: take it back out. */
		j->nops--;
		j->liveops--;
		jnl_op_unref(j, o);
		goto out;
	}
	o->rec_len = len;
	j->live_bytes += len;
	j->next_seq++;
	if (seq)
		*seq = o->seq;
	o = NULL;
out:
	pthread_mutex_unlock(&j->lock);
	free(o);
	free(rec);
	if (rc == 0 && sync)
		rc = cache_jnl_sync(j);
	return rc;
}

int cache_jnl_foreach(struct cache_jnl *j,
                      int (*fn)(void *arg, uint64_t seq,
                                const struct cache_jnl_op *op),
                      void *arg)
{
	return cache_jnl_foreach_from(j, 0, fn, arg);
}

int cache_jnl_foreach_from(struct cache_jnl *j, uint64_t first,
                           int (*fn)(void *arg, uint64_t seq,
                                     const struct cache_jnl_op *op),
                           void *arg)
{
	uint64_t next = first;
	int rc = 0;

	for (;;) {
		struct jnl_op *copy = NULL;
		ssize_t i;

		pthread_mutex_lock(&j->lock);
		for (i = jnl_slot_find(j, next); (size_t)i < j->nops; i++)
			if (j->ops[i].op)
				break;
		if ((size_t)i < j->nops) {
			copy = jnl_op_copy(j->ops[i].op, NULL, 0);
			if (!copy)
				rc = -ENOMEM;
		}
		pthread_mutex_unlock(&j->lock);
		if (!copy)
			break;
		next = copy->seq + 1;
		rc = fn(arg, copy->seq, &copy->op);
		free(copy);
		if (rc != 0)
			break;
	}
	return rc;
}

static struct jnl_op *jnl_op_get(struct cache_jnl *j, uint64_t seq,
                                 ssize_t *slot)
{
	ssize_t i = jnl_slot_find(j, seq);

	if ((size_t)i >= j->nops || j->ops[i].seq != seq || !j->ops[i].op)
		return NULL;
	if (slot)
		*slot = i;
	return j->ops[i].op;
}

int cache_jnl_update(struct cache_jnl *j, uint64_t seq, const char *error)
{
	struct jnl_op *o, *n;
	ssize_t i;
	int rc;

	pthread_mutex_lock(&j->lock);
	o = jnl_op_get(j, seq, &i);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	if (!error)
		error = "";
	n = jnl_op_copy(o, error, strnlen(error, CACHE_JNL_TEXT_MAX));
	if (!n) {
		rc = -ENOMEM;
		goto out;
	}
	n->op.retries = o->op.retries + 1;
	n->op.last_try = jnl_now();
	rc = jnl_log_simple(j, REC_UPDATE, seq, n);
	if (rc != 0) {
		free(n);
		goto out;
	}
	j->ops[i].op = n;
	free(o);
out:
	pthread_mutex_unlock(&j->lock);
	return rc;
}

/* Writes a DONE record, or keeps it for later when the log cannot take it
 * now (lock held).  Fails only for lack of memory. */
static int jnl_record_done(struct cache_jnl *j, uint64_t seq)
{
	int rc;

	jnl_backlog_flush(j);
	rc = jnl_log_simple(j, REC_DONE, seq, NULL);
	if (rc == 0)
		return 0;
	if (j->nbacklog == j->capbacklog) {
		size_t nc = j->capbacklog ? j->capbacklog * 2 : 64;
		uint64_t *nb = realloc(j->backlog, nc * sizeof(*nb));

		if (!nb)
			return -ENOMEM;
		j->backlog = nb;
		j->capbacklog = nc;
	}
	j->backlog[j->nbacklog++] = seq;
	dms_log(LOG_WARNING, "journal: %s: completion of operation %" PRIu64
	        " not recorded yet (%s); retried later", j->dir, seq,
	        strerror(-rc));
	return 0;
}

/* Writes the DONE records that could not be written before (lock held);
 * stops at the first failure. */
static void jnl_backlog_flush(struct cache_jnl *j)
{
	size_t k = 0;

	if (j->nbacklog == 0)
		return;
	while (k < j->nbacklog &&
	       jnl_log_simple(j, REC_DONE, j->backlog[k], NULL) == 0)
		k++;
	memmove(j->backlog, j->backlog + k,
	        (j->nbacklog - k) * sizeof(*j->backlog));
	j->nbacklog -= k;
}

int cache_jnl_done(struct cache_jnl *j, uint64_t seq)
{
	struct jnl_op *o;
	bool compact = false;
	ssize_t i;
	int rc;

	pthread_mutex_lock(&j->lock);
	o = jnl_op_get(j, seq, &i);
	if (!o) {
		rc = -ENOENT;
		goto out;
	}
	/* A full disk must not stop the journal from draining: the op goes
	 * now (its staged file too, which frees space) and its record may
	 * follow later; a restart before that replays it once more (set
	 * aside: its staged file is gone). */
	rc = jnl_record_done(j, seq);
	if (rc != 0)
		goto out;
	jnl_op_unref(j, o);
	jnl_slot_clear(j, (size_t)i);
	compact = jnl_compact_due(j);
out:
	pthread_mutex_unlock(&j->lock);
	if (compact)
		(void)jnl_compact(j);
	return rc;
}

void cache_jnl_stats(struct cache_jnl *j, struct cache_jnl_stats *st)
{
	pthread_mutex_lock(&j->lock);
	st->bytes = j->bytes;
	st->max_bytes = j->max_bytes;
	st->ops = j->liveops;
	st->files = j->nfiles;
	st->log_bytes = j->log_end;
	st->setaside = j->setaside;
	pthread_mutex_unlock(&j->lock);
}

/* ---- compaction (no lock held) ------------------------------------------ */

/* Writes a fresh log from the state in memory to ops.new and puts it in
 * place: the pending operations up to `covered` (the last barrier whose
 * staged files were synced), that barrier, then the later ones, which stay
 * unsynced.  Done and update records are folded in.  Called with sync_lock
 * held (logfd changes here) and lock not held. */
static int jnl_rewrite_log(struct cache_jnl *j, uint64_t covered)
{
	unsigned char *rec = malloc(JNL_REC_MAX);
	uint64_t end = 0;
	bool after = false, barrier = covered == 0;
	size_t done;
	int fd = -1, rc = 0;

	if (!rec)
		return -ENOMEM;
	pthread_mutex_lock(&j->lock);
	unlinkat(j->dfd, "ops.new", 0);
	fd = jnl_open_reg(j->dfd, "ops.new", O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	for (size_t i = 0; i <= j->nops && rc == 0; i++) {
		struct jnl_op *o = i < j->nops ? j->ops[i].op : NULL;
		size_t len;

		if (!barrier && (i == j->nops || (o && o->seq > covered))) {
			struct jnl_buf b = { rec, JNL_HDR };

			len = jnl_seal(&b, covered, REC_BARRIER);
			rc = jnl_pwrite_all(fd, rec, len, end, &done);
			end += len;
			barrier = true;
		}
		if (!o || rc != 0)
			continue;
		after = after || o->seq > covered;
		len = jnl_enc_op(rec, o->seq, &o->op);
		rc = jnl_pwrite_all(fd, rec, len, end, &done);
		o->rec_len = len;  /* status folded in: may differ */
		end += len;
	}
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -errno;
	if (rc == 0 && renameat(j->dfd, "ops.new", j->dfd, "ops") != 0)
		rc = -errno;
	if (rc == 0 && fsync(j->dfd) != 0)
		rc = -errno;
	if (rc != 0) {
		unlinkat(j->dfd, "ops.new", 0);
		goto out;
	}
	close(j->logfd);
	j->logfd = fd;
	fd = -1;
	j->log_end = end;
	j->prealloc_end = 0;
	j->log_dirty = after;
	j->log_suspect = false;
	j->synced_seq = covered;
	j->nbacklog = 0;  /* those ops are not in the new log */
	j->live_bytes = 0;
	{
		size_t w = 0;

		for (size_t i = 0; i < j->nops; i++)
			if (j->ops[i].op) {
				j->live_bytes += j->ops[i].op->rec_len;
				j->ops[w++] = j->ops[i];
			}
		j->nops = w;
	}
out:
	pthread_mutex_unlock(&j->lock);
	if (rc != 0)
		dms_log(LOG_ERR, "journal: rewriting %s/ops: %s", j->dir,
		        strerror(-rc));
	if (fd >= 0)
		close(fd);
	free(rec);
	return rc;
}

/* Syncs, then rewrites the log without its done records. */
static int jnl_compact(struct cache_jnl *j)
{
	int rc;

	pthread_mutex_lock(&j->sync_lock);
	rc = jnl_sync_inner(j, 0);
	if (rc == 0)
		rc = jnl_rewrite_log(j, j->synced_seq);
	pthread_mutex_unlock(&j->sync_lock);
	return rc;
}

static bool jnl_compact_due(const struct cache_jnl *j)
{
	return j->log_end >= JNL_COMPACT_MIN && j->live_bytes < j->log_end / 4;
}

/* ---- open and replay ---------------------------------------------------- */

/* Reads the open marker: true if the journal was open when the system went
 * down (the marker names another boot). */
static bool jnl_crashed(struct cache_jnl *j)
{
	bool crashed;
	int fd;

	fd = jnl_open_reg(j->dfd, "open.boot", O_RDONLY, 0);
	if (fd < 0)
		return false;
	crashed = cache_mark_other_boot(fd);
	close(fd);
	return crashed;
}

static int jnl_mark(struct cache_jnl *j, bool open_now)
{
	int fd, rc;

	fd = jnl_open_reg(j->dfd, "open.boot", O_WRONLY | O_CREAT, 0600);
	if (fd < 0)
		return fd;
	rc = cache_mark_write(fd, open_now);
	if (rc == 0 && fsync(j->dfd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Keeps the bytes of a record set aside in ops.bad for a human. */
static void jnl_bad_append(struct cache_jnl *j, const unsigned char *p,
                           size_t n)
{
	int fd;

	fd = jnl_open_reg(j->dfd, "ops.bad", O_WRONLY | O_CREAT | O_APPEND,
	                  0600);
	if (fd < 0)
		return;
	if (write(fd, p, n) != (ssize_t)n)
		dms_log(LOG_WARNING, "journal: writing %s/ops.bad: %s", j->dir,
		        strerror(errno));
	close(fd);
}

static void jnl_set_aside_bytes(struct cache_jnl *j, const unsigned char *p,
                                size_t n, uint64_t off, const char *why)
{
	j->setaside++;
	dms_log(LOG_ERR, "journal: %s/ops: record at offset %" PRIu64 " (%zu "
	        "bytes) %s; set aside in ops.bad, not replayed", j->dir, off, n,
	        why);
	jnl_bad_append(j, p, n);
}

/* Checks the record at p (avail bytes there).  Returns its length, 0 if
 * the header is not a record, or -(length) if the header is plausible but
 * the record fails its checksum or runs past avail. */
static ssize_t jnl_rec_check(unsigned char *p, size_t avail,
                             uint64_t min_seq)
{
	uint32_t len;
	uint64_t sum;
	unsigned char hdr[JNL_HDR];

	if (avail < JNL_HDR || jnl_get32(p) != JNL_MAGIC)
		return 0;
	len = jnl_get32(p + 4);
	if (len < JNL_HDR || len > JNL_REC_MAX || (len & 7) ||
	    jnl_get64(p + 8) < min_seq)
		return 0;
	if (len > avail)
		return -(ssize_t)len;
	sum = jnl_get64(p + 24);
	memcpy(hdr, p, JNL_HDR);
	jnl_put64(p + 24, 0);
	{
		uint64_t got = XXH3_64bits(p, len);

		memcpy(p, hdr, JNL_HDR);
		if (got != sum)
			return -(ssize_t)len;
	}
	return len;
}

/* Applies one verified record while replaying.  barrier_seq tracks the last
 * barrier. */
static void jnl_replay_rec(struct cache_jnl *j, const unsigned char *p,
                           size_t len, uint64_t off, uint64_t *barrier_seq)
{
	uint64_t seq = jnl_get64(p + 8);
	uint32_t kind = jnl_get32(p + 16);
	struct jnl_rd r = { p, len, JNL_HDR, false };

	if (seq >= j->next_seq)
		j->next_seq = seq + 1;
	switch (kind) {
	case REC_OP: {
		struct jnl_op *o = jnl_dec_op(p, len, seq);

		if (!o) {
			jnl_set_aside_bytes(j, p, len, off, "does not decode");
			return;
		}
		o->rec_len = len;
		if (jnl_slot_add(j, o) != 0) {
			free(o);
			jnl_set_aside_bytes(j, p, len, off, "(out of memory)");
			return;
		}
		j->live_bytes += len;
		if (o->op.kind == CACHE_JNL_WRITE && o->op.file_id >= j->next_id)
			j->next_id = o->op.file_id + 1;
		return;
	}
	case REC_DONE:
	case REC_UPDATE: {
		uint64_t target = jnl_r64(&r);
		ssize_t i;
		struct jnl_op *o;

		if (r.bad) {
			jnl_set_aside_bytes(j, p, len, off, "does not decode");
			return;
		}
		o = jnl_op_get(j, target, &i);
		if (!o)
			return;  /* its op was set aside or compacted away */
		if (kind == REC_DONE) {
			jnl_slot_clear(j, (size_t)i);
		} else {
			uint32_t retries = jnl_r32(&r);
			int64_t last = (int64_t)jnl_r64(&r);
			size_t el = 0;
			const char *e = (const char *)jnl_rstr(&r,
			                    CACHE_JNL_TEXT_MAX, &el);
			struct jnl_op *n;

			if (r.bad) {
				jnl_set_aside_bytes(j, p, len, off,
				                    "does not decode");
				return;
			}
			n = jnl_op_copy(o, e ? e : "", el);
			if (!n)
				return;
			n->op.retries = retries;
			n->op.last_try = last;
			j->ops[i].op = n;
			free(o);
		}
		return;
	}
	case REC_BARRIER:
		*barrier_seq = seq;
		return;
	default:
		jnl_set_aside_bytes(j, p, len, off, "has an unknown kind");
	}
}

/* Reads the whole log.  A torn end is cut off (and the file truncated). */
static int jnl_replay_log(struct cache_jnl *j, uint64_t *barrier_seq,
                          bool *torn)
{
	unsigned char *buf = NULL;
	struct stat st;
	uint64_t size, off = 0, good_end = 0;
	int rc = 0;

	if (fstat(j->logfd, &st) != 0)
		return -errno;
	size = (uint64_t)st.st_size;
	/* The live log is small (compacted); read it whole. */
	if (size > ((uint64_t)1 << 34)) {
		dms_log(LOG_ERR, "journal: %s/ops is %" PRIu64 " bytes, too big",
		        j->dir, size);
		return -EFBIG;
	}
	buf = malloc(size + 1);
	if (!buf)
		return -ENOMEM;
	for (uint64_t got = 0; got < size;) {
		ssize_t r = pread(j->logfd, buf + got, size - got, (off_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = r < 0 ? -errno : -EIO;
			dms_log(LOG_ERR, "journal: read %s/ops: %s", j->dir,
			        strerror(-rc));
			goto out;
		}
		got += (uint64_t)r;
	}
	while (off < size) {
		ssize_t len = jnl_rec_check(buf + off, size - off, j->next_seq);
		uint64_t nx;

		if (len > 0) {
			jnl_replay_rec(j, buf + off, (size_t)len, off,
			               barrier_seq);
			off += (uint64_t)len;
			good_end = off;
			continue;
		}
		/* Find the next record that checks out. */
		for (nx = off + 8; nx + JNL_HDR <= size; nx += 8)
			if (jnl_rec_check(buf + nx, size - nx, j->next_seq) > 0)
				break;
		if (nx + JNL_HDR > size && len < 0 &&
		    (uint64_t)-len == size - off) {
			jnl_set_aside_bytes(j, buf + off, (size_t)(size - off),
			                    off, "at the end fails its checksum "
			                    "(a torn write or damage)");
			break;
		}
		if (nx + JNL_HDR > size) {
			/* Nothing valid follows: a torn append. */
			dms_log(LOG_NOTICE, "journal: %s/ops: %" PRIu64 " bytes "
			        "at the end are an incomplete append (never "
			        "synced); dropped", j->dir, size - off);
			*torn = true;
			break;
		}
		jnl_set_aside_bytes(j, buf + off, (size_t)(nx - off), off,
		                    "fails its checksum");
		off = nx;
		good_end = off;
	}
	if (good_end < size && ftruncate(j->logfd, (off_t)good_end) != 0) {
		rc = -errno;
		dms_log(LOG_ERR, "journal: truncate %s/ops: %s", j->dir,
		        strerror(errno));
		goto out;
	}
	j->log_end = good_end;
out:
	free(buf);
	return rc;
}

/* Lists data/: registers staged files, removes what is not ours. */
static int jnl_scan_data(struct cache_jnl *j)
{
	DIR *d;
	struct dirent *e;
	int fd, rc = 0;

	fd = dup(j->datafd);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	while ((e = readdir(d)) != NULL) {
		struct stat st;
		struct jnl_file *f;
		char *end;
		uint64_t id;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		errno = 0;
		id = strtoull(e->d_name, &end, 16);
		if (fstatat(j->datafd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (strlen(e->d_name) != 16 || *end || errno || id == 0 ||
		    !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
			dms_log(LOG_WARNING, "journal: %s/data/%s is not a "
			        "staged file; removed (not followed)", j->dir,
			        e->d_name);
			if (unlinkat(j->datafd, e->d_name,
			             S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0)
				dms_log(LOG_WARNING, "journal: remove %s/data/%s:"
				        " %s", j->dir, e->d_name, strerror(errno));
			continue;
		}
		f = calloc(1, sizeof(*f));
		if (!f) {
			rc = -ENOMEM;
			break;
		}
		f->id = id;
		f->fd = -1;
		f->size = (uint64_t)st.st_size;
		rc = jnl_file_add(j, f);
		if (rc != 0) {
			free(f);
			break;
		}
		j->bytes += f->size;
		if (id >= j->next_id)
			j->next_id = id + 1;
	}
	closedir(d);
	return rc;
}

/* Moves a staged file to lost/ (kept for a human; never replayed). */
static void jnl_file_lose(struct cache_jnl *j, struct jnl_file *f)
{
	char name[32], kept[64];
	int lfd, rc = -1;

	jnl_idname(f->id, name, sizeof(name));
	/* Ids are reused once a file is gone from data/: the time keeps an
	 * earlier kept file from being replaced. */
	snprintf(kept, sizeof(kept), "%s.%" PRId64, name, jnl_now());
	lfd = jnl_open_dir(j->dfd, "lost", "lost/ in the journal");
	if (lfd >= 0)
		rc = renameat2(j->datafd, name, lfd, kept, RENAME_NOREPLACE);
	if (rc != 0)
		dms_log(LOG_WARNING, "journal: cannot move %s/data/%s to lost/: "
		        "%s", j->dir, name, strerror(errno));
	else
		dms_log(LOG_WARNING, "journal: staged file kept as %s/lost/%s",
		        j->dir, kept);
	if (lfd >= 0)
		close(lfd);
	j->dir_dirty = true;
}

/* After the log is read: binds ops to files, sets aside what cannot be
 * replayed, deletes orphans. */
static int jnl_bind(struct cache_jnl *j, bool crashed, uint64_t barrier_seq)
{
	int rc = 0;

	for (size_t i = 0; i < j->nops && rc == 0; i++) {
		struct jnl_op *o = j->ops[i].op;
		struct jnl_file *f;
		const char *why = NULL;

		if (!o)
			continue;
		f = o->op.kind == CACHE_JNL_WRITE ?
		    jnl_file_find(j, o->op.file_id) : NULL;
		if (crashed && o->seq > barrier_seq)
			why = "was not synced when the system went down";
		else if (o->op.kind == CACHE_JNL_WRITE && !f)
			why = "refers to a missing staged file";
		else if (f && f->size < o->op.size)
			why = "refers to a staged file shorter than recorded";
		if (!why) {
			if (f)
				f->oprefs++;
			continue;
		}
		j->setaside++;
		dms_log(LOG_ERR, "journal: %s: operation %" PRIu64 " (kind %d, "
		        "%s%s%s, uid %u) %s; set aside in ops.bad, not replayed",
		        j->dir,
		        o->seq, (int)o->op.kind, o->op.path,
		        o->op.path2 ? " -> " : "",
		        o->op.path2 ? o->op.path2 : "", (unsigned)o->op.uid,
		        why);
		if (f)
			f->lose = true;
		{
			unsigned char *rec = malloc(JNL_REC_MAX);

			if (rec) {
				jnl_bad_append(j, rec, jnl_enc_op(rec, o->seq,
				                                  &o->op));
				free(rec);
			}
		}
		/* Recorded as done, so that no later open replays it, even if
		 * the log cannot be compacted now. */
		rc = jnl_record_done(j, o->seq);
		jnl_slot_clear(j, i);
	}
	if (rc != 0)
		return rc;  /* not all files bound: none may be collected */
	for (size_t b = 0; b < j->tabn; b++) {
		struct jnl_file *f = j->tab[b], *nx;

		for (; f; f = nx) {
			nx = f->next;
			if (f->oprefs == 0 && f->lose) {
				jnl_file_lose(j, f);
				j->bytes -= f->size;
				jnl_file_unlink_tab(j, f);
				free(f);
			} else if (f->oprefs == 0) {
				dms_log(LOG_INFO, "journal: %s: staged file %016"
				        PRIx64 " was never recorded; removed",
				        j->dir, f->id);
				j->dir_dirty = true;
				jnl_file_maybe_free(j, f);
			}
		}
	}
	return rc;
}

static void jnl_free(struct cache_jnl *j)
{
	if (j->tab) {
		for (size_t i = 0; i < j->tabn; i++) {
			struct jnl_file *f = j->tab[i], *nx;

			for (; f; f = nx) {
				nx = f->next;
				if (f->fd >= 0)
					close(f->fd);
				free(f);
			}
		}
		free(j->tab);
	}
	for (size_t i = 0; i < j->nops; i++)
		free(j->ops[i].op);
	free(j->ops);
	free(j->backlog);
	if (j->logfd >= 0)
		close(j->logfd);
	if (j->datafd >= 0)
		close(j->datafd);
	if (j->sparefd >= 0)
		close(j->sparefd);
	if (j->dfd >= 0)
		close(j->dfd);
	pthread_mutex_destroy(&j->lock);
	pthread_mutex_destroy(&j->sync_lock);
	free(j->dir);
	free(j);
}

int cache_jnl_open(struct cache_jnl **out, const struct cache_jnl_opts *o)
{
	struct cache_jnl *j;
	uint64_t barrier_seq = 0;
	bool crashed, torn = false;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!o || !o->dir || o->dir[0] != '/' || o->max_bytes == 0 ||
	    o->max_bytes > JNL_CAP_MAX) {
		dms_log(LOG_ERR, "journal: invalid options (dir %s, max_bytes %"
		        PRIu64 "; an absolute dir and 0 < max_bytes <= %llu)",
		        o && o->dir ? o->dir : "(none)", o ? o->max_bytes : 0,
		        JNL_CAP_MAX);
		return -EINVAL;
	}
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->dfd = j->datafd = j->logfd = j->sparefd = -1;
	pthread_mutex_init(&j->lock, NULL);
	pthread_mutex_init(&j->sync_lock, NULL);
	j->dir = strdup(o->dir);
	j->tabn = 1024;
	j->tab = calloc(j->tabn, sizeof(*j->tab));
	if (!j->dir || !j->tab) {
		rc = -ENOMEM;
		goto fail;
	}
	j->max_bytes = o->max_bytes;
	j->next_seq = 1;
	j->next_id = 1;
	rc = jnl_open_dir(AT_FDCWD, j->dir, j->dir);
	if (rc < 0)
		goto fail;
	j->dfd = rc;
	/* One process at a time: two appenders would interleave records.
	 * Released by the kernel when the process dies. */
	if (flock(j->dfd, LOCK_EX | LOCK_NB) != 0) {
		rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		dms_log(LOG_ERR, "journal: %s is in use by another process: %s",
		        j->dir, strerror(-rc));
		goto fail;
	}
	rc = jnl_open_dir(j->dfd, "data", "data/ in the journal");
	if (rc < 0)
		goto fail;
	j->datafd = rc;
	/* Without spare/ files are only not reused. */
	rc = jnl_open_dir(j->dfd, "spare", "spare/ in the journal");
	if (rc >= 0) {
		j->sparefd = rc;
		jnl_spare_clear(j);
	}
	rc = jnl_open_reg(j->dfd, "ops", O_RDWR | O_CREAT, 0600);
	if (rc < 0) {
		dms_log(LOG_ERR, "journal: %s/ops unusable (%s); refusing to "
		        "start rather than lose pending writes", j->dir,
		        strerror(-rc));
		goto fail;
	}
	j->logfd = rc;
	crashed = jnl_crashed(j);
	rc = jnl_replay_log(j, &barrier_seq, &torn);
	if (rc != 0)
		goto fail;
	rc = jnl_scan_data(j);
	if (rc != 0)
		goto fail;
	rc = jnl_bind(j, crashed, barrier_seq);
	if (rc != 0)
		goto fail;
	j->synced_seq = j->covered_seq = barrier_seq;
	/* Operations after the last barrier (the daemon was killed before it
	 * synced them) are made durable now, with their staged files: a later
	 * barrier must not claim files nobody flushed. */
	for (size_t i = 0; i < j->nops; i++) {
		struct jnl_op *t = j->ops[i].op;
		struct jnl_file *f;

		if (!t || t->seq < barrier_seq)
			continue;
		j->log_dirty = true;
		f = t->op.kind == CACHE_JNL_WRITE ?
		    jnl_file_find(j, t->op.file_id) : NULL;
		if (f)
			f->dirty = true;
	}
	/* Make the state durable before saying we are open.  A full disk
	 * must not keep the journal from opening (uploads are what frees
	 * it): the next sync tries again. */
	rc = cache_jnl_sync(j);
	if (rc != 0)
		dms_log(LOG_WARNING, "journal: %s: cannot sync at start (%s); "
		        "retried at the next sync", j->dir, strerror(-rc));
	rc = jnl_mark(j, true);
	if (rc != 0) {
		dms_log(LOG_ERR, "journal: cannot write %s/open.boot: %s",
		        j->dir, strerror(-rc));
		goto fail;
	}
	/* Records set aside leave the log, so they are reported once. */
	if (j->setaside > 0 || torn || jnl_compact_due(j))
		(void)jnl_compact(j);
	dms_log(LOG_INFO, "journal: %s: %zu pending operations, %" PRIu64
	        " staged files, %" PRIu64 " of %" PRIu64 " bytes", j->dir,
	        j->liveops, j->nfiles, j->bytes, j->max_bytes);
	*out = j;
	return 0;
fail:
	jnl_free(j);
	return rc;
}

void cache_jnl_close(struct cache_jnl *j)
{
	int rc;

	if (!j)
		return;
	rc = cache_jnl_sync(j);
	if (rc == 0)
		rc = jnl_mark(j, false);
	if (rc != 0)
		dms_log(LOG_WARNING, "journal: %s: not closed cleanly: %s",
		        j->dir, strerror(-rc));
	jnl_free(j);
}
