/* The pending namespace of writable exports: see overlay.h.
 *
 * Entries are indexed by path (a hash) and by parent folder (each folder
 * with entries in it has a node listing them), so lookups, listings and
 * creates cost the same with 20,000 pending entries as with 20 (a cp -r of
 * thousands of files).  They are also on one list, which operations on a
 * whole subtree (rename or delete of a folder, an operation reaching the
 * origin) walk: once per such operation, not per file. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "fs/overlay.h"

#define COPY_CHUNK (1u << 20)
/* RENAME flag: a folder was renamed (replay must know without the origin). */
#define OV_RENAME_DIR 0x100u

enum ov_kind { OV_FILE, OV_DIR, OV_GONE };

/* A string-keyed chained hash table node, embedded in what it indexes. */
struct ov_hnode {
	struct ov_hnode *next;
	uint64_t h;
	const char *key;         /* the owner's string */
};

struct ov_map {
	struct ov_hnode **b;
	size_t nb;               /* buckets: 0 or a power of two */
	size_t n;
};

struct fs_ov_file {
	int refs;                /* guarded by fs_ov.lock */
	uint64_t file_id;        /* current staged version; guarded by lock */
	bool held;               /* we hold file_id (cache_jnl_file_new) */
	bool sealed;             /* file_id named by a journal op */
	bool dirty;              /* written since the last WRITE op */
	bool at_origin;          /* the origin has (or earlier ops make) it */
	bool uploaded;           /* the last WRITE reached the origin */
	unsigned writers;
	uint64_t size;
	int64_t mtime;
	uint32_t mode;
	uid_t uid;
	gid_t gid;
	bool base_present;       /* the origin version this was read at */
	struct xfer_attr base;
	struct xfer_attr result; /* uploaded: what the origin reported */
	char *path;              /* NULL once unlinked */
};

struct ov_dir;

struct ov_ent {
	struct ov_hnode hn;      /* in fs_ov.by_path, key path */
	struct ov_ent *prev, *next;   /* fs_ov.ents */
	struct ov_ent *sprev, *snext; /* dir->kids */
	struct ov_dir *dir;      /* the node of the parent folder */
	enum ov_kind kind;
	struct fs_ov_file *file; /* FILE with staged content (a ref) */
	uint32_t mode;           /* kept permission bits; 0: none */
	int64_t mtime;           /* new directory */
	/* The journal operation that made this entry what it is, until it
	 * reaches the origin (else 0): the MKDIR of a directory made here,
	 * the UNLINK, RMDIR or RENAME of a deletion.  The entry may be renamed
	 * meanwhile (with a folder above it), so the operation finds it by
	 * seq (fs_ov.by_seq, key skey), not by path.  A directory made here
	 * has an origin only then (the MKDIR's path, which later RENAMEs at
	 * the origin carry along). */
	uint64_t mkseq;
	struct ov_hnode sn;
	char skey[20];
	char *origin;            /* origin object's path; NULL: none */
	char *path;
};

/* An origin path one handle reads: the origin must keep it there until
 * the handle closes (unlink and rename of an open file, POSIX).  Once the
 * mount opens that file for writing, succ is its pending version: the
 * handle reads it from then on, as a reader of a local file sees every
 * later write through any descriptor. */
struct fs_ov_reader {
	struct fs_ov_reader *next;
	struct fs_ov_file *succ; /* a ref; guarded by fs_ov.lock */
	char *path;              /* guarded by fs_ov.lock */
};

/* A folder with entries directly in it (it need not have one itself). */
struct ov_dir {
	struct ov_hnode hn;      /* in fs_ov.dirs, key path */
	struct ov_ent *kids;
	size_t n;
	char path[];
};

/* The last pending journal operation naming path (as path or path2): an
 * operation that reached the origin settles an entry only if no later one
 * names it too (mkdir a, rmdir a, mkdir a: the first mkdir must not drop
 * the entry of the second). */
struct ov_seq {
	struct ov_hnode hn;      /* in fs_ov.seqs, key path */
	uint64_t seq;
	char path[];
};

struct fs_ov {
	pthread_mutex_t lock;
	struct ov_map seqs;         /* of ov_seq; guarded by lock */
	struct fs_ov_reader *readers;  /* guarded by lock */
	struct cache_jnl *jnl;
	struct ov_ent *ents;     /* guarded by lock */
	struct ov_map by_path;   /* of ov_ent; guarded by lock */
	struct ov_map dirs;      /* of ov_dir; guarded by lock */
	struct ov_map by_seq;    /* of ov_ent.sn; guarded by lock */
	size_t count;            /* guarded by lock */
	/* A RENAME the writeback thread is replaying at the origin, from
	 * fs_ov_applying to fs_ov_applied: the origin may have moved already
	 * while the entries do not say so yet.  All guarded by lock. */
	char *fly_from, *fly_to;
	pthread_t fly_thread;
	pthread_cond_t fly_done;
};

/* Longest a lookup waits for a RENAME in flight at the origin. */
#define FLY_WAIT_S 10

static bool under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/')
		return path[0] == '/';
	return strncmp(path, prefix, n) == 0 && (path[n] == '/' || !path[n]);
}

/* ---- index ---- */

/* find() and friends cast a node to what holds it. */
_Static_assert(offsetof(struct ov_ent, hn) == 0, "hn first in ov_ent");
_Static_assert(offsetof(struct ov_dir, hn) == 0, "hn first in ov_dir");
_Static_assert(offsetof(struct ov_seq, hn) == 0, "hn first in ov_seq");

/* FNV-1a, 64 bits: paths are short and trusted (the mount's own). */
static uint64_t hash_n(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	size_t i;

	for (i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static struct ov_hnode *map_find_n(const struct ov_map *m, const char *key,
                                   size_t n)
{
	uint64_t h;
	struct ov_hnode *x;

	if (!m->nb)
		return NULL;
	h = hash_n(key, n);
	for (x = m->b[h & (m->nb - 1)]; x; x = x->next)
		if (x->h == h && !strncmp(x->key, key, n) && !x->key[n])
			return x;
	return NULL;
}

static struct ov_hnode *map_find(const struct ov_map *m, const char *key)
{
	return map_find_n(m, key, strlen(key));
}

/* Adds x (x->key set).  A failed growth only makes the chains longer;
 * -ENOMEM only without any table. */
static int map_add(struct ov_map *m, struct ov_hnode *x)
{
	if (m->n >= m->nb) {
		size_t nb = m->nb ? m->nb * 2 : 64, i;
		struct ov_hnode **b = calloc(nb, sizeof(*b));

		if (b) {
			for (i = 0; i < m->nb; i++) {
				while (m->b[i]) {
					struct ov_hnode *y = m->b[i];

					m->b[i] = y->next;
					y->next = b[y->h & (nb - 1)];
					b[y->h & (nb - 1)] = y;
				}
			}
			free(m->b);
			m->b = b;
			m->nb = nb;
		}
	}
	x->h = hash_n(x->key, strlen(x->key));
	if (!m->nb)
		return -ENOMEM;
	x->next = m->b[x->h & (m->nb - 1)];
	m->b[x->h & (m->nb - 1)] = x;
	m->n++;
	return 0;
}

static void map_del(struct ov_map *m, struct ov_hnode *x)
{
	struct ov_hnode **p;

	if (!m->nb)
		return;
	for (p = &m->b[x->h & (m->nb - 1)]; *p; p = &(*p)->next) {
		if (*p == x) {
			*p = x->next;
			m->n--;
			return;
		}
	}
}

/* Length of path's parent ("/a" for "/a/b", "/" for "/a"). */
static size_t parent_len(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash || slash == path)
		return 1;
	return (size_t)(slash - path);
}

static struct ov_ent *find(struct fs_ov *ov, const char *path)
{
	return (struct ov_ent *)map_find(&ov->by_path, path);
}

static struct ov_dir *dir_of(struct fs_ov *ov, const char *path)
{
	return (struct ov_dir *)map_find(&ov->dirs, path);
}

static void ent_set_seq(struct fs_ov *ov, struct ov_ent *e, uint64_t seq);

/* Puts e (e->path set) in the indexes.  -ENOMEM: it is in none. */
static int ent_index(struct fs_ov *ov, struct ov_ent *e)
{
	size_t pl = parent_len(e->path);
	struct ov_dir *d = (struct ov_dir *)map_find_n(&ov->dirs, e->path, pl);

	if (!d) {
		d = calloc(1, sizeof(*d) + pl + 1);
		if (!d)
			return -ENOMEM;
		memcpy(d->path, e->path, pl);
		d->path[pl] = '\0';
		d->hn.key = d->path;
		if (map_add(&ov->dirs, &d->hn) != 0) {
			free(d);
			return -ENOMEM;
		}
	}
	e->hn.key = e->path;
	if (map_add(&ov->by_path, &e->hn) != 0) {
		if (d->n == 0) {
			map_del(&ov->dirs, &d->hn);
			free(d);
		}
		return -ENOMEM;
	}
	e->dir = d;
	e->sprev = NULL;
	e->snext = d->kids;
	if (d->kids)
		d->kids->sprev = e;
	d->kids = e;
	d->n++;
	if (e->mkseq) {
		uint64_t seq = e->mkseq;

		e->mkseq = 0;
		ent_set_seq(ov, e, seq);
	}
	return 0;
}

static void ent_unindex(struct fs_ov *ov, struct ov_ent *e)
{
	struct ov_dir *d = e->dir;

	if (!d)
		return;
	if (e->mkseq)
		map_del(&ov->by_seq, &e->sn);
	map_del(&ov->by_path, &e->hn);
	if (e->sprev)
		e->sprev->snext = e->snext;
	else
		d->kids = e->snext;
	if (e->snext)
		e->snext->sprev = e->sprev;
	e->dir = NULL;
	if (--d->n == 0) {
		map_del(&ov->dirs, &d->hn);
		free(d);
	}
}

/* e's path becomes np (taken over); e stays where it is on fs_ov.ents, so
 * a walk of that list may rename as it goes. */
static int ent_move(struct fs_ov *ov, struct ov_ent *e, char *np)
{
	int rc;

	ent_unindex(ov, e);
	free(e->path);
	e->path = np;
	rc = ent_index(ov, e);
	if (rc)
		dms_log(LOG_ERR, "overlay: no memory to index %s", np);
	return rc;
}

/* Sets e's operation seq (0: none), keeping fs_ov.by_seq in step.  A
 * failed insertion leaves none: the entry is then found by path, as
 * before the index. */
static void ent_set_seq(struct fs_ov *ov, struct ov_ent *e, uint64_t seq)
{
	if (e->mkseq && e->dir)
		map_del(&ov->by_seq, &e->sn);
	e->mkseq = seq;
	if (!seq || !e->dir)
		return;
	snprintf(e->skey, sizeof(e->skey), "%" PRIx64, seq);
	e->sn.key = e->skey;
	if (map_add(&ov->by_seq, &e->sn) != 0)
		e->mkseq = 0;
}

static struct ov_ent *find_seq(struct fs_ov *ov, uint64_t seq)
{
	char key[20];
	struct ov_hnode *x;

	snprintf(key, sizeof(key), "%" PRIx64, seq);
	x = map_find(&ov->by_seq, key);
	return x ? (struct ov_ent *)((char *)x - offsetof(struct ov_ent, sn))
	         : NULL;
}

static void map_free(struct ov_map *m)
{
	free(m->b);
	m->b = NULL;
	m->nb = m->n = 0;
}

static void ent_free(struct fs_ov *ov, struct ov_ent *e);

static void file_put_locked(struct fs_ov *ov, struct fs_ov_file *f)
{
	if (!f || --f->refs > 0)
		return;
	if (f->held)
		cache_jnl_file_release(ov->jnl, f->file_id);
	free(f->path);
	free(f);
}

static void ent_free(struct fs_ov *ov, struct ov_ent *e)
{
	file_put_locked(ov, e->file);
	free(e->origin);
	free(e->path);
	free(e);
}

/* Takes e off the list and the indexes and frees it. */
static void ent_remove(struct fs_ov *ov, struct ov_ent *e)
{
	ent_unindex(ov, e);
	if (e->prev)
		e->prev->next = e->next;
	else
		ov->ents = e->next;
	if (e->next)
		e->next->prev = e->prev;
	ov->count--;
	ent_free(ov, e);
}

/* Removes every entry strictly under path (self too: with_self). */
static void remove_under(struct fs_ov *ov, const char *path, bool with_self,
                         bool orphan_files)
{
	struct ov_ent *e, *next;

	for (e = ov->ents; e; e = next) {
		next = e->next;
		if (under(e->path, path) && (with_self || strcmp(e->path, path))) {
			if (orphan_files && e->file && e->file->path) {
				free(e->file->path);
				e->file->path = NULL;
			}
			ent_remove(ov, e);
		}
	}
}

/* The entry of path, made (kind GONE, nothing else) if missing. */
static struct ov_ent *ent_get(struct fs_ov *ov, const char *path)
{
	struct ov_ent *e = find(ov, path);

	if (e)
		return e;
	e = calloc(1, sizeof(*e));
	if (!e || !(e->path = strdup(path)) || ent_index(ov, e) != 0) {
		if (e)
			free(e->path);
		free(e);
		return NULL;
	}
	e->kind = OV_GONE;
	e->next = ov->ents;
	if (ov->ents)
		ov->ents->prev = e;
	ov->ents = e;
	ov->count++;
	return e;
}

static void ent_clear(struct fs_ov *ov, struct ov_ent *e)
{
	file_put_locked(ov, e->file);
	e->file = NULL;
	free(e->origin);
	e->origin = NULL;
	e->mode = 0;
	e->mtime = 0;
	ent_set_seq(ov, e, 0);
}

static char *join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *p = malloc(la + lb + 1);

	if (p) {
		memcpy(p, a, la);
		memcpy(p + la, b, lb + 1);
	}
	return p;
}

/* Where the origin has path now: "" none.  The nearest of path and its
 * ancestors with an entry decides: looked up one by one. */
static void origin_of(struct fs_ov *ov, const char *path, char *out, size_t cap)
{
	struct ov_ent *best = NULL;
	size_t blen = strlen(path);

	for (;;) {
		best = (struct ov_ent *)map_find_n(&ov->by_path, path,
		                                   blen ? blen : 1);
		if (best || blen <= 1)
			break;
		while (blen > 0 && path[blen - 1] != '/')
			blen--;
		if (blen > 1)
			blen--;         /* the slash, unless it is the root */
	}
	if (best)
		blen = strlen(best->path);
	out[0] = '\0';
	if (!best) {
		snprintf(out, cap, "%s", path);
		return;
	}
	if (!best->origin)
		return;
	if (best->kind == OV_FILE && path[blen])
		return;
	if (best->kind == OV_GONE)
		return;
	if (snprintf(out, cap, "%s%s", best->origin, path + blen) >= (int)cap)
		out[0] = '\0';
}

/* Whether origin path o may be moving at the origin right now (lock held):
 * the writeback thread itself never waits for its own RENAME. */
static bool in_flight(struct fs_ov *ov, const char *o)
{
	if (!ov->fly_from || !o[0] ||
	    pthread_equal(ov->fly_thread, pthread_self()))
		return false;
	return under(o, ov->fly_from) || under(o, ov->fly_to);
}

/* origin_of, once no RENAME in flight at the origin touches the result
 * (lock held; may drop it while waiting).  A bounded wait: an origin that
 * hangs must not hang lookups for longer than its own timeouts would. */
static void origin_settled(struct fs_ov *ov, const char *path, char *out,
                           size_t cap)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += FLY_WAIT_S;
	for (;;) {
		origin_of(ov, path, out, cap);
		if (!in_flight(ov, out) ||
		    pthread_cond_timedwait(&ov->fly_done, &ov->lock, &until))
			return;
	}
}

static void fly_clear(struct fs_ov *ov)
{
	free(ov->fly_from);
	free(ov->fly_to);
	ov->fly_from = ov->fly_to = NULL;
	pthread_cond_broadcast(&ov->fly_done);
}

/* Whether e's origin is where its parent's mapping puts it anyway: only
 * then may the entry go (a folder moved here whose parent is itself still
 * moving at the origin must keep saying where it is). */
static bool maps_to_itself(struct fs_ov *ov, const struct ov_ent *e)
{
	const char *slash = strrchr(e->path, '/');
	char parent[4096], org[4096], want[4096];
	size_t n;

	if (!e->origin || !slash)
		return false;
	n = (size_t)(slash - e->path);
	if (n == 0 || n >= sizeof(parent))
		return n == 0 && !strcmp(e->origin, e->path);
	memcpy(parent, e->path, n);
	parent[n] = '\0';
	origin_of(ov, parent, org, sizeof(org));
	if (!org[0] ||
	    snprintf(want, sizeof(want), "%s%s", org, slash) >= (int)sizeof(want))
		return false;
	return !strcmp(want, e->origin);
}

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

static void seq_note(struct fs_ov *ov, const char *path, uint64_t seq)
{
	struct ov_seq *q;

	if (!path)
		return;
	q = (struct ov_seq *)map_find(&ov->seqs, path);
	if (q) {
		if (seq > q->seq)
			q->seq = seq;
		return;
	}
	q = malloc(sizeof(*q) + strlen(path) + 1);
	if (!q)
		return;
	q->seq = seq;
	strcpy(q->path, path);
	q->hn.key = q->path;
	if (map_add(&ov->seqs, &q->hn) != 0)
		free(q);
}

/* Whether an operation after seq still pending names path (lock held). */
static bool seq_later(struct fs_ov *ov, const char *path, uint64_t seq)
{
	struct ov_seq *q = (struct ov_seq *)map_find(&ov->seqs, path);

	return q && q->seq > seq;
}

/* Operation seq on path reached the origin (lock held). */
static void seq_done(struct fs_ov *ov, const char *path, uint64_t seq)
{
	struct ov_seq *q;

	if (!path)
		return;
	q = (struct ov_seq *)map_find(&ov->seqs, path);
	if (q && q->seq <= seq) {
		map_del(&ov->seqs, &q->hn);
		free(q);
	}
}

static int append_seq(struct fs_ov *ov, const struct cache_jnl_op *op,
                      bool sync, uint64_t *out)
{
	uint64_t seq = 0;
	int rc = cache_jnl_append(ov->jnl, op, sync, &seq);

	if (rc == 0) {
		seq_note(ov, op->path, seq);
		seq_note(ov, op->path2, seq);
		if (out)
			*out = seq;
	}
	return rc;
}

static int append(struct fs_ov *ov, const struct cache_jnl_op *op, bool sync)
{
	return append_seq(ov, op, sync, NULL);
}

/* ---- replay ---- */

static int replay_op(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct fs_ov *ov = arg;
	struct ov_ent *e;
	char org[4096];

	seq_note(ov, op->path, seq);
	seq_note(ov, op->path2, seq);
	switch (op->kind) {
	case CACHE_JNL_WRITE: {
		struct fs_ov_file *f = calloc(1, sizeof(*f));

		e = ent_get(ov, op->path);
		if (!f || !e || !(f->path = strdup(op->path))) {
			free(f);
			return -ENOMEM;
		}
		f->refs = 1;
		f->file_id = op->file_id;
		f->sealed = f->at_origin = true;
		f->size = op->size;
		f->mtime = op->mtime_sec;
		f->mode = op->mode & 07777;
		f->uid = op->uid;
		f->gid = op->gid;
		ent_clear(ov, e);
		e->kind = OV_FILE;
		e->file = f;
		e->mode = f->mode;
		break;
	}
	case CACHE_JNL_MKDIR:
		e = ent_get(ov, op->path);
		if (!e)
			return -ENOMEM;
		ent_clear(ov, e);
		e->kind = OV_DIR;
		e->mode = op->mode & 07777;
		e->mtime = op->added;
		ent_set_seq(ov, e, seq);
		break;
	case CACHE_JNL_RMDIR:
	case CACHE_JNL_UNLINK: {
		remove_under(ov, op->path, false, false);
		e = ent_get(ov, op->path);
		if (!e)
			return -ENOMEM;
		ent_clear(ov, e);
		e->kind = OV_GONE;
		ent_set_seq(ov, e, seq);
		break;
	}
	case CACHE_JNL_RENAME: {
		struct fs_ov_info in;

		if (fs_ov_stat(ov, op->path, &in) != 0)
			break;
		if (in.file)
			fs_ov_file_put(ov, in.file);
		return fs_ov_rename(ov, op->path, op->path2,
		                    in.is_dir || (op->flags & OV_RENAME_DIR),
		                    false, op->uid, op->gid) == 0 ? 0 : 0;
	}
	case CACHE_JNL_SETATTR:
		if (op->flags & CACHE_JNL_SET_MODE) {
			e = find(ov, op->path);
			if (!e) {
				origin_of(ov, op->path, org, sizeof(org));
				e = ent_get(ov, op->path);
				if (!e)
					return -ENOMEM;
				e->kind = OV_FILE;
				e->origin = strdup(org);
			}
			e->mode = op->mode & 07777;
			if (e->file)
				e->file->mode = e->mode;
		}
		break;
	}
	return 0;
}

int fs_ov_init(struct fs_ov **out, struct cache_jnl *j)
{
	struct fs_ov *ov = calloc(1, sizeof(*ov));
	int rc;

	if (!ov)
		return -ENOMEM;
	pthread_mutex_init(&ov->lock, NULL);
	pthread_cond_init(&ov->fly_done, NULL);
	ov->jnl = j;
	/* Rebuilt without appending: replay_op calls the mutators with the
	 * journal detached. */
	ov->jnl = NULL;
	rc = cache_jnl_foreach(j, replay_op, ov);
	ov->jnl = j;
	if (rc) {
		fs_ov_destroy(ov);
		return rc;
	}
	if (ov->count)
		dms_log(LOG_INFO, "write journal: %zu pending paths restored",
		        ov->count);
	*out = ov;
	return 0;
}

void fs_ov_destroy(struct fs_ov *ov)
{
	struct ov_ent *e, *next;
	size_t i;

	if (!ov)
		return;
	for (e = ov->ents; e; e = next) {
		next = e->next;
		ent_remove(ov, e);
	}
	for (i = 0; i < ov->seqs.nb; i++) {
		while (ov->seqs.b[i]) {
			struct ov_hnode *q = ov->seqs.b[i];

			ov->seqs.b[i] = q->next;
			free(q);        /* the node is the ov_seq's first member */
		}
	}
	map_free(&ov->seqs);
	map_free(&ov->by_path);
	map_free(&ov->dirs);
	map_free(&ov->by_seq);
	while (ov->readers) {
		struct fs_ov_reader *r = ov->readers;

		ov->readers = r->next;
		file_put_locked(ov, r->succ);
		free(r->path);
		free(r);
	}
	free(ov->fly_from);
	free(ov->fly_to);
	pthread_cond_destroy(&ov->fly_done);
	pthread_mutex_destroy(&ov->lock);
	free(ov);
}

size_t fs_ov_count(struct fs_ov *ov)
{
	size_t n;

	pthread_mutex_lock(&ov->lock);
	n = ov->count;
	pthread_mutex_unlock(&ov->lock);
	return n;
}

/* ---- queries ---- */

static void info_from(struct fs_ov *ov, struct ov_ent *e, struct fs_ov_info *in)
{
	(void)ov;
	in->pending = true;
	in->mode = e->mode;
	if (e->kind == OV_DIR) {
		in->is_dir = true;
		/* A folder's attributes are its type and an mtime: ours, so
		 * that one the origin does not list is still shown. */
		if (e->origin)
			snprintf(in->origin, sizeof(in->origin), "%s", e->origin);
		in->have_attr = true;
		in->attr.mode = S_IFDIR;
		in->attr.mtime = e->mtime;
	} else if (e->file) {
		e->file->refs++;
		in->file = e->file;
		in->have_attr = true;
		in->attr.mode = S_IFREG;
		in->attr.size = e->file->size;
		in->attr.mtime = e->file->mtime;
		in->mode = e->file->mode;
	} else if (e->origin) {
		snprintf(in->origin, sizeof(in->origin), "%s", e->origin);
	}
}

int fs_ov_stat(struct fs_ov *ov, const char *path, struct fs_ov_info *in)
{
	struct ov_ent *e;
	int rc = 0;

	memset(in, 0, sizeof(*in));
	pthread_mutex_lock(&ov->lock);
	/* Only to wait out a RENAME in flight at the origin. */
	origin_settled(ov, path, in->origin, sizeof(in->origin));
	in->origin[0] = '\0';
	e = find(ov, path);
	if (e && e->kind == OV_GONE) {
		rc = -ENOENT;
	} else if (e) {
		info_from(ov, e, in);
	} else {
		origin_of(ov, path, in->origin, sizeof(in->origin));
		if (!in->origin[0])
			rc = -ENOENT;
	}
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fs_dirent *)a)->name,
	              ((const struct fs_dirent *)b)->name);
}

int fs_ov_merge(struct fs_ov *ov, const char *path, const struct fs_dir *origin,
                int64_t validated, struct fs_dir **out)
{
	size_t n0 = origin ? origin->count : 0, cap, n = 0, used = 0, i, plen;
	struct fs_dir *d = calloc(1, sizeof(*d));
	struct ov_dir *kids;
	struct ov_ent *e;
	size_t names_cap = 0;
	int rc = -ENOMEM;

	plen = strlen(path);
	pthread_mutex_lock(&ov->lock);
	kids = dir_of(ov, path);
	cap = n0 + (kids ? kids->n : 0);
	for (i = 0; i < n0; i++)
		names_cap += strlen(origin->ents[i].name) + 1;
	for (e = kids ? kids->kids : NULL; e; e = e->snext)
		names_cap += strlen(e->path) + 1;
	if (!d)
		goto out;
	d->ents = calloc(cap ? cap : 1, sizeof(*d->ents));
	d->names = malloc(names_cap ? names_cap : 1);
	if (!d->ents || !d->names)
		goto out;
	for (i = 0; i < n0; i++) {
		const char *nm = origin->ents[i].name;
		char *child = malloc(plen + strlen(nm) + 2);

		if (!child)
			goto out;
		sprintf(child, "%s/%s", plen == 1 ? "" : path, nm);
		e = find(ov, child);
		free(child);
		if (e)
			continue;   /* the overlay's version below */
		d->ents[n].attr = origin->ents[i].attr;
		d->ents[n].name = d->names + used;
		memcpy(d->names + used, nm, strlen(nm) + 1);
		used += strlen(nm) + 1;
		n++;
	}
	for (e = kids ? kids->kids : NULL; e; e = e->snext) {
		const char *nm;
		struct fs_ov_info in;

		if (e->kind == OV_GONE || !strcmp(e->path, path))
			continue;
		nm = e->path + (plen == 1 ? 1 : plen + 1);
		memset(&in, 0, sizeof(in));
		info_from(ov, e, &in);
		if (in.file)
			file_put_locked(ov, in.file);
		if (in.have_attr) {
			d->ents[n].attr = in.attr;
		} else {
			/* The origin's object under another name: its listed
			 * attributes when this listing has them. */
			const struct fs_dirent *oe = NULL;
			size_t k;

			for (k = 0; origin && k < origin->count; k++)
				if (!strcmp(origin->ents[k].name, nm))
					oe = &origin->ents[k];
			if (oe && !in.is_dir)
				d->ents[n].attr = oe->attr;
			else
				d->ents[n].attr.mode = in.is_dir ? S_IFDIR : S_IFREG;
			if (!oe && !in.is_dir) {
				/* Renamed from elsewhere: size shown at lookup. */
				d->ents[n].attr.mode = S_IFREG;
			}
		}
		d->ents[n].attr.mode = (d->ents[n].attr.mode & S_IFMT) |
		                       (in.mode & 07777);
		d->ents[n].name = d->names + used;
		memcpy(d->names + used, nm, strlen(nm) + 1);
		used += strlen(nm) + 1;
		n++;
	}
	d->count = n;
	qsort(d->ents, n, sizeof(*d->ents), name_cmp);
	d->validated = validated;
	atomic_init(&d->refs, 1);
	*out = d;
	d = NULL;
	rc = 0;
out:
	pthread_mutex_unlock(&ov->lock);
	if (d) {
		free(d->ents);
		free(d->names);
		free(d);
	}
	return rc;
}

/* ---- files ---- */

struct fs_ov_file *fs_ov_file_get(struct fs_ov_file *f)
{
	/* Callers hold a ref already (from fs_ov_stat); the count is changed
	 * under no lock only by the owner of that ref. */
	__atomic_add_fetch(&f->refs, 1, __ATOMIC_SEQ_CST);
	return f;
}

void fs_ov_file_put(struct fs_ov *ov, struct fs_ov_file *f)
{
	pthread_mutex_lock(&ov->lock);
	file_put_locked(ov, f);
	pthread_mutex_unlock(&ov->lock);
}

/* Copies f's sealed staged file into a new one it holds (lock held). */
static int unseal(struct fs_ov *ov, struct fs_ov_file *f)
{
	uint64_t id = 0, off = 0;
	char *buf = NULL;
	int rc;

	rc = cache_jnl_file_new(ov->jnl, &id);
	if (rc)
		return rc;
	buf = malloc(COPY_CHUNK);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < f->size) {
		ssize_t n = cache_jnl_pread(ov->jnl, f->file_id, buf, COPY_CHUNK, off);

		if (n < 0) {
			rc = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		rc = cache_jnl_pwrite(ov->jnl, id, buf, (size_t)n, off);
		if (rc)
			goto out;
		off += (uint64_t)n;
	}
	rc = cache_jnl_truncate(ov->jnl, id, f->size);
out:
	free(buf);
	if (rc) {
		cache_jnl_file_release(ov->jnl, id);
		return rc;
	}
	if (f->held)
		cache_jnl_file_release(ov->jnl, f->file_id);
	f->file_id = id;
	f->held = true;
	f->sealed = false;
	return 0;
}

static struct fs_ov_file *file_new(struct fs_ov *ov, const char *path,
                                   uint32_t mode, uid_t uid, gid_t gid)
{
	struct fs_ov_file *f = calloc(1, sizeof(*f));

	if (!f || !(f->path = strdup(path)) ||
	    cache_jnl_file_new(ov->jnl, &f->file_id) != 0) {
		if (f)
			free(f->path);
		free(f);
		return NULL;
	}
	f->refs = 1;
	f->held = true;
	f->mode = mode & 07777;
	f->uid = uid;
	f->gid = gid;
	f->mtime = now_s();
	return f;
}

/* The origin file at opath became f (opened for writing here): every
 * handle reading it follows. */
static void readers_follow(struct fs_ov *ov, const char *opath,
                           struct fs_ov_file *f)
{
	struct fs_ov_reader *r;

	for (r = ov->readers; r; r = r->next) {
		if (!r->succ && !strcmp(r->path, opath)) {
			r->succ = f;
			f->refs++;
		}
	}
}

int fs_ov_open_write(struct fs_ov *ov, const char *path, bool create,
                     bool excl, bool trunc, uint32_t mode, uid_t uid, gid_t gid,
                     const struct xfer_attr *base, fs_ov_fill_fn fill,
                     void *arg, struct fs_ov_file **out)
{
	struct fs_ov_info in;
	struct fs_ov_file *f = NULL;
	struct ov_ent *e;
	int rc;

	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	if (e && e->kind == OV_DIR) {
		rc = -EISDIR;
		goto out;
	}
	if (e && e->file) {
		if (excl) {
			rc = -EEXIST;
			goto out;
		}
		f = e->file;
		if (f->sealed && !trunc) {
			rc = unseal(ov, f);
			if (rc)
				goto out;
		} else if (f->sealed) {
			uint64_t id;

			rc = cache_jnl_file_new(ov->jnl, &id);
			if (rc)
				goto out;
			if (f->held)
				cache_jnl_file_release(ov->jnl, f->file_id);
			f->file_id = id;
			f->held = true;
			f->sealed = false;
			f->size = 0;
		}
		if (trunc && f->size) {
			rc = cache_jnl_truncate(ov->jnl, f->file_id, 0);
			if (rc)
				goto out;
			f->size = 0;
		}
		if (trunc)
			f->dirty = true;
		f->refs++;
		f->writers++;
		*out = f;
		rc = 0;
		goto out;
	}
	/* The origin's file (base given), or a new one. */
	memset(&in, 0, sizeof(in));
	if (base && excl) {
		rc = -EEXIST;
		goto out;
	}
	if (!base && !create) {
		rc = -ENOENT;
		goto out;
	}
	f = file_new(ov, path, mode, uid, gid);
	if (!f) {
		rc = -ENOMEM;
		goto out;
	}
	if (e && e->mode && base)
		f->mode = e->mode;
	if (base) {
		f->base_present = true;
		f->base = *base;
		/* At the origin now, or there once a pending rename of
		 * it is uploaded: either way an UNLINK must go out. */
		f->at_origin = true;
		f->mtime = base->mtime;
		if (!trunc) {
			/* Copied whole at open: simple and the copy runs at
			 * block-cache speed (README). */
			pthread_mutex_unlock(&ov->lock);
			rc = fill(arg, ov->jnl, f->file_id);
			pthread_mutex_lock(&ov->lock);
			if (rc) {
				file_put_locked(ov, f);
				goto out;
			}
			f->size = base->size;
		} else {
			f->dirty = true;
		}
	} else {
		f->dirty = true;
	}
	if (e && e->origin && strcmp(e->origin, path) && base && !trunc) {
		/* A rename not uploaded yet: the origin path is elsewhere; the
		 * WRITE goes to path after that rename, unchecked. */
		f->base_present = false;
	}
	if (base) {
		/* Readers opened the origin path this resolves to, which
		 * differs from path under a renamed folder too. */
		char org[4096];

		origin_settled(ov, path, org, sizeof(org));
		if (org[0])
			readers_follow(ov, org, f);
	}
	e = ent_get(ov, path);
	if (!e) {
		file_put_locked(ov, f);
		rc = -ENOMEM;
		goto out;
	}
	ent_clear(ov, e);
	e->kind = OV_FILE;
	e->file = f;
	e->mode = f->mode;
	f->refs++;
	f->writers++;
	*out = f;
	rc = 0;
out:
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

int fs_ov_pwrite(struct fs_ov *ov, struct fs_ov_file *f, const void *buf,
                 size_t len, uint64_t off)
{
	uint64_t id;
	int rc;

	pthread_mutex_lock(&ov->lock);
	if (f->sealed) {
		rc = unseal(ov, f);
		if (rc)
			goto out;
	}
	id = f->file_id;
	pthread_mutex_unlock(&ov->lock);
	rc = cache_jnl_pwrite(ov->jnl, id, buf, len, off);
	pthread_mutex_lock(&ov->lock);
	if (rc == 0) {
		if (off + len > f->size)
			f->size = off + len;
		f->mtime = now_s();
		f->dirty = true;
		f->uploaded = false;
	}
out:
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

ssize_t fs_ov_pread(struct fs_ov *ov, struct fs_ov_file *f, void *buf,
                    size_t len, uint64_t off)
{
	uint64_t id, size;

	pthread_mutex_lock(&ov->lock);
	id = f->file_id;
	size = f->size;
	pthread_mutex_unlock(&ov->lock);
	if (off >= size)
		return 0;
	if (len > size - off)
		len = (size_t)(size - off);
	return cache_jnl_pread(ov->jnl, id, buf, len, off);
}

int fs_ov_truncate(struct fs_ov *ov, struct fs_ov_file *f, uint64_t size)
{
	int rc = 0;

	pthread_mutex_lock(&ov->lock);
	if (f->sealed)
		rc = unseal(ov, f);
	if (rc == 0)
		rc = cache_jnl_truncate(ov->jnl, f->file_id, size);
	if (rc == 0) {
		f->size = size;
		f->mtime = now_s();
		f->dirty = true;
		f->uploaded = false;
	}
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

char *fs_ov_file_path(struct fs_ov *ov, struct fs_ov_file *f)
{
	char *p;

	pthread_mutex_lock(&ov->lock);
	p = f->path ? strdup(f->path) : NULL;
	pthread_mutex_unlock(&ov->lock);
	return p;
}

void fs_ov_file_set(struct fs_ov *ov, struct fs_ov_file *f, uint32_t mode,
                    int64_t mtime)
{
	pthread_mutex_lock(&ov->lock);
	if (mode != UINT32_MAX)
		f->mode = mode & 07777;
	if (mtime != INT64_MIN)
		f->mtime = mtime;
	pthread_mutex_unlock(&ov->lock);
}

void fs_ov_file_attr(struct fs_ov *ov, struct fs_ov_file *f,
                     struct xfer_attr *a)
{
	pthread_mutex_lock(&ov->lock);
	memset(a, 0, sizeof(*a));
	a->mode = S_IFREG | f->mode;
	a->size = f->size;
	a->mtime = f->mtime;
	pthread_mutex_unlock(&ov->lock);
}

/* Appends f's WRITE (lock held). */
static int write_op(struct fs_ov *ov, struct fs_ov_file *f, bool sync)
{
	struct cache_jnl_op op = {
		.kind = CACHE_JNL_WRITE, .path = f->path, .file_id = f->file_id,
		.size = f->size, .mode = f->mode, .uid = f->uid, .gid = f->gid,
		.mtime_sec = f->mtime, .base_present = f->base_present,
		.base_size = f->base.size, .base_mtime = f->base.mtime,
		.base_etag = f->base.etag,
	};
	int rc;

	if (!f->path || (!f->dirty && !sync))
		return 0;
	if (!f->dirty)
		return cache_jnl_sync_file(ov->jnl, f->file_id);
	/* Later WRITEs of this file replace our own upload: unchecked. */
	op.flags = f->at_origin && !f->base_present ? 1u : 0;
	rc = append(ov, &op, false);
	if (rc)
		return rc;
	f->sealed = true;
	f->dirty = false;
	f->at_origin = true;
	f->base_present = false;
	if (sync)
		rc = cache_jnl_sync_file(ov->jnl, f->file_id);
	return rc;
}

int fs_ov_close_write(struct fs_ov *ov, struct fs_ov_file *f, bool sync)
{
	int rc;

	pthread_mutex_lock(&ov->lock);
	if (f->writers)
		f->writers--;
	rc = f->writers ? 0 : write_op(ov, f, sync);
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

int fs_ov_fsync(struct fs_ov *ov, struct fs_ov_file *f)
{
	int rc;

	pthread_mutex_lock(&ov->lock);
	rc = write_op(ov, f, true);
	pthread_mutex_unlock(&ov->lock);
	if (rc == 0)
		rc = cache_jnl_sync(ov->jnl);
	return rc;
}

/* ---- namespace ---- */

int fs_ov_mkdir(struct fs_ov *ov, const char *path, uint32_t mode,
                uid_t uid, gid_t gid)
{
	struct cache_jnl_op op = {
		.kind = CACHE_JNL_MKDIR, .path = path, .mode = mode & 07777,
		.uid = uid, .gid = gid,
	};
	struct ov_ent *e;
	uint64_t seq = 0;
	int rc = 0;

	pthread_mutex_lock(&ov->lock);
	if (ov->jnl)
		rc = append_seq(ov, &op, false, &seq);
	if (rc)
		goto out;
	e = ent_get(ov, path);
	if (!e) {
		rc = -ENOMEM;
		goto out;
	}
	ent_clear(ov, e);
	e->kind = OV_DIR;
	e->mode = mode & 07777;
	e->mtime = now_s();
	ent_set_seq(ov, e, seq);
out:
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

/* Children of path the overlay shows (lock held). */
static size_t pending_children(struct fs_ov *ov, const char *path)
{
	struct ov_dir *d = dir_of(ov, path);
	struct ov_ent *e;
	size_t n = 0;

	for (e = d ? d->kids : NULL; e; e = e->snext)
		if (e->kind != OV_GONE && strcmp(e->path, path))
			n++;
	return n;
}

static bool gone(struct fs_ov *ov, const char *dir, const char *name)
{
	size_t l = strlen(dir);
	char *p = malloc(l + strlen(name) + 2);
	struct ov_ent *e;

	if (!p)
		return false;
	sprintf(p, "%s/%s", l == 1 ? "" : dir, name);
	e = find(ov, p);
	free(p);
	return e != NULL;   /* GONE, or shown by the overlay (counted) */
}

/* Deletes path and everything the overlay has under it (lock held). */
static int delete_locked(struct fs_ov *ov, const char *path, bool dir,
                         bool journal, uid_t uid, gid_t gid)
{
	struct cache_jnl_op op = {
		.kind = dir ? CACHE_JNL_RMDIR : CACHE_JNL_UNLINK, .path = path,
		.uid = uid, .gid = gid,
	};
	struct ov_ent *e;
	uint64_t seq = 0;
	int rc = 0;

	if (journal && ov->jnl)
		rc = append_seq(ov, &op, false, &seq);
	if (rc)
		return rc;
	/* Nothing is under a file: its unlink need not walk the list. */
	if (dir)
		remove_under(ov, path, false, false);
	e = ent_get(ov, path);
	if (!e)
		return -ENOMEM;
	if (e->file) {
		free(e->file->path);
		e->file->path = NULL;
	}
	ent_clear(ov, e);
	e->kind = OV_GONE;
	ent_set_seq(ov, e, seq);
	return 0;
}

int fs_ov_rmdir(struct fs_ov *ov, const char *path, const struct fs_dir *origin,
                uid_t uid, gid_t gid)
{
	struct ov_ent *e;
	bool at_origin;
	size_t i;
	int rc;

	pthread_mutex_lock(&ov->lock);
	if (pending_children(ov, path)) {
		rc = -ENOTEMPTY;
		goto out;
	}
	for (i = 0; origin && i < origin->count; i++) {
		if (!gone(ov, path, origin->ents[i].name)) {
			rc = -ENOTEMPTY;
			goto out;
		}
	}
	e = find(ov, path);
	/* A folder made here and not uploaded still needs its RMDIR: the
	 * MKDIR is in the journal before it. */
	at_origin = true;
	rc = delete_locked(ov, path, true, at_origin, uid, gid);
out:
	pthread_mutex_unlock(&ov->lock);
	(void)e;
	return rc;
}

int fs_ov_unlink(struct fs_ov *ov, const char *path, const struct fs_ov_info *in,
                 const struct xfer_attr *origin_attr, uid_t uid, gid_t gid)
{
	struct ov_ent *e;
	bool journal = true;
	int rc;

	(void)in;
	(void)origin_attr;
	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	/* A file created here that never got a WRITE: nothing at the origin. */
	if (e && e->file && !e->file->at_origin)
		journal = false;
	rc = delete_locked(ov, path, false, journal, uid, gid);
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

int fs_ov_rename(struct fs_ov *ov, const char *from, const char *to,
                 bool from_dir, bool to_exists, uid_t uid, gid_t gid)
{
	struct cache_jnl_op op = {
		.kind = CACHE_JNL_RENAME, .path = from, .path2 = to,
		.uid = uid, .gid = gid,
	};
	struct ov_ent *e, *src, *dst;
	char org[4096];
	size_t flen = strlen(from);
	uint64_t seq = 0, mk;
	bool journal = true;
	int rc = 0;

	if (from_dir)
		op.flags |= OV_RENAME_DIR;
	pthread_mutex_lock(&ov->lock);
	src = find(ov, from);
	if (src && src->file && !src->file->at_origin)
		journal = false;
	if (journal && ov->jnl) {
		rc = append_seq(ov, &op, false, &seq);
	} else if (to_exists && ov->jnl) {
		/* No RENAME goes out (nothing at the origin to move yet), but
		 * what to names there must go before the WRITE that makes
		 * it (which expects the name absent). */
		struct cache_jnl_op del = {
			.kind = from_dir ? CACHE_JNL_RMDIR : CACHE_JNL_UNLINK,
			.path = to, .uid = uid, .gid = gid,
		};

		rc = append(ov, &del, false);
	}
	if (rc)
		goto out;
	origin_of(ov, from, org, sizeof(org));
	/* Whatever was at to (and under it) goes. */
	remove_under(ov, to, true, true);
	/* Entries under from move to to. */
	for (e = ov->ents; e; e = e->next) {
		if (under(e->path, from) && strcmp(e->path, from)) {
			char *np = join(to, e->path + flen);

			if (!np) {
				rc = -ENOMEM;
				goto out;
			}
			rc = ent_move(ov, e, np);
			if (rc)
				goto out;
			if (e->file && e->file->path) {
				free(e->file->path);
				e->file->path = strdup(np);
			}
		}
	}
	src = find(ov, from);
	dst = ent_get(ov, to);
	if (!dst) {
		rc = -ENOMEM;
		goto out;
	}
	ent_clear(ov, dst);
	if (src && src->kind != OV_GONE) {
		dst->kind = src->kind;
		dst->file = src->file;
		src->file = NULL;
		dst->mode = src->mode;
		dst->mtime = src->mtime;
		mk = src->mkseq;
		ent_set_seq(ov, src, 0);
		ent_set_seq(ov, dst, mk);
		dst->origin = src->origin;
		src->origin = NULL;
		if (dst->file) {
			free(dst->file->path);
			dst->file->path = strdup(to);
		}
	} else {
		dst->kind = from_dir ? OV_DIR : OV_FILE;
		dst->mtime = now_s();
		dst->origin = org[0] ? strdup(org) : NULL;
		if (!dst->origin && org[0]) {
			rc = -ENOMEM;
			goto out;
		}
	}
	src = ent_get(ov, from);
	if (!src) {
		rc = -ENOMEM;
		goto out;
	}
	ent_clear(ov, src);
	src->kind = OV_GONE;
	ent_set_seq(ov, src, seq);
out:
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

int fs_ov_setattr(struct fs_ov *ov, const char *path, struct fs_ov_file *f,
                  uint32_t mode, int64_t mtime, uid_t uid, gid_t gid)
{
	struct cache_jnl_op op = {
		.kind = CACHE_JNL_SETATTR, .path = path, .uid = uid, .gid = gid,
	};
	struct ov_ent *e;
	char org[4096];
	int rc = 0;

	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	if (!f && e && e->file)
		f = e->file;
	if (mode != UINT32_MAX) {
		op.flags |= CACHE_JNL_SET_MODE;
		op.mode = mode & 07777;
		if (!e) {
			origin_of(ov, path, org, sizeof(org));
			e = ent_get(ov, path);
			if (!e || !(e->origin = strdup(org))) {
				rc = -ENOMEM;
				goto out;
			}
			e->kind = OV_FILE;
		}
		e->mode = mode & 07777;
		if (f)
			f->mode = mode & 07777;
	}
	if (mtime != INT64_MIN) {
		op.flags |= CACHE_JNL_SET_MTIME;
		op.mtime_sec = mtime;
		if (f) {
			f->mtime = mtime;
			if (f->writers)
				f->dirty = true;
		}
		if (e && e->kind == OV_DIR)
			e->mtime = mtime;
	}
	/* A pending file's next WRITE carries both; files whose content is
	 * the origin's get a SETATTR. */
	if (f && (f->dirty || f->writers || !f->at_origin))
		goto out;
	if (f && (op.flags & CACHE_JNL_SET_MTIME) && f->sealed) {
		f->dirty = true;
		rc = write_op(ov, f, false);
		goto out;
	}
	rc = append(ov, &op, false);
out:
	pthread_mutex_unlock(&ov->lock);
	return rc;
}

/* ---- writeback ---- */

struct fs_ov_reader *fs_ov_reader_add(struct fs_ov *ov, const char *origin)
{
	struct fs_ov_reader *r = calloc(1, sizeof(*r));

	if (!r || !(r->path = strdup(origin))) {
		free(r);
		return NULL;
	}
	pthread_mutex_lock(&ov->lock);
	r->next = ov->readers;
	ov->readers = r;
	pthread_mutex_unlock(&ov->lock);
	return r;
}

void fs_ov_reader_del(struct fs_ov *ov, struct fs_ov_reader *r)
{
	struct fs_ov_reader **p;

	if (!r)
		return;
	pthread_mutex_lock(&ov->lock);
	for (p = &ov->readers; *p; p = &(*p)->next) {
		if (*p == r) {
			*p = r->next;
			break;
		}
	}
	file_put_locked(ov, r->succ);
	pthread_mutex_unlock(&ov->lock);
	free(r->path);
	free(r);
}

struct fs_ov_file *fs_ov_reader_now(struct fs_ov *ov, struct fs_ov_reader *r)
{
	struct fs_ov_file *f = NULL;

	if (!r)
		return NULL;
	pthread_mutex_lock(&ov->lock);
	if (r->succ) {
		f = r->succ;
		f->refs++;
	}
	pthread_mutex_unlock(&ov->lock);
	return f;
}

bool fs_ov_read_under(struct fs_ov *ov, const char *path)
{
	struct fs_ov_reader *r;
	bool busy = false;

	pthread_mutex_lock(&ov->lock);
	for (r = ov->readers; r && !busy; r = r->next)
		busy = under(r->path, path);
	pthread_mutex_unlock(&ov->lock);
	return busy;
}

bool fs_ov_holds(struct fs_ov *ov, const char *path, uint64_t file_id)
{
	struct ov_ent *e;
	bool holds;

	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	holds = e && e->file && e->file->file_id == file_id;
	pthread_mutex_unlock(&ov->lock);
	return holds;
}

bool fs_ov_quiet(struct fs_ov *ov, const char *path)
{
	struct ov_ent *e;
	bool q = true;

	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	if (e && e->file && e->file->writers)
		q = false;
	pthread_mutex_unlock(&ov->lock);
	return q;
}

/* Whether e may go now that op (seq) reached the origin (lock held).  A
 * MKDIR gives the folder it made its origin path. */
static bool settles(struct fs_ov *ov, struct ov_ent *e, uint64_t seq,
                    const struct cache_jnl_op *op,
                    bool (*shown)(void *arg, const char *path), void *arg)
{
	bool drop = false;

	if (op->kind != CACHE_JNL_MKDIR && e->kind == OV_GONE &&
	    (e->mkseq == seq || !strcmp(e->path, op->path)))
		drop = true;
	if (op->kind == CACHE_JNL_MKDIR && e->kind == OV_DIR &&
	    e->mkseq == seq) {
		/* Its folder is at the origin now, where the MKDIR named it
		 * (since renamed here, maybe): its listing is the origin's
		 * from now on. */
		char *o = strdup(op->path);

		if (o) {
			free(e->origin);
			e->origin = o;
			ent_set_seq(ov, e, 0);
		}
	}
	/* A folder that is the origin's at its own path, once the origin
	 * lists it. */
	if (e->kind == OV_DIR && !e->file && !e->mkseq && e->origin &&
	    !strcmp(e->origin, e->path) && (!shown || shown(arg, e->path)))
		drop = true;
	if (e->kind == OV_FILE && !e->file && !e->mode && e->origin &&
	    !strcmp(e->origin, e->path) && (!shown || shown(arg, e->path)))
		drop = true;
	/* A later operation on the path decides. */
	if (drop && seq_later(ov, e->path, seq))
		drop = false;
	if (drop && e->kind != OV_GONE && e->origin && !maps_to_itself(ov, e))
		drop = false;
	return drop;
}

void fs_ov_applied(struct fs_ov *ov, uint64_t seq,
                   const struct cache_jnl_op *op,
                   bool (*shown)(void *arg, const char *path), void *arg)
{
	struct fs_ov_reader *r;
	struct ov_ent *e, *next;
	size_t flen;

	pthread_mutex_lock(&ov->lock);
	seq_done(ov, op->path, seq);
	seq_done(ov, op->path2, seq);
	switch (op->kind) {
	case CACHE_JNL_RENAME:
		/* The origin has from at to now: origins under from move,
		 * and so do the origin files handles read. */
		flen = strlen(op->path);
		for (r = ov->readers; r; r = r->next) {
			if (under(r->path, op->path)) {
				char *np = join(op->path2, r->path + flen);

				if (np) {
					free(r->path);
					r->path = np;
				}
			}
		}
		for (e = ov->ents; e; e = e->next) {
			if (e->origin && under(e->origin, op->path)) {
				char *np = join(op->path2, e->origin + flen);

				if (np) {
					free(e->origin);
					e->origin = np;
				}
			}
		}
		/* fall through */
	case CACHE_JNL_RMDIR:
		/* Entries elsewhere may now map to themselves: all of them. */
		for (e = ov->ents; e; e = next) {
			next = e->next;
			if (settles(ov, e, seq, op, shown, arg))
				ent_remove(ov, e);
		}
		break;
	case CACHE_JNL_UNLINK:
	case CACHE_JNL_MKDIR:
		/* Only the entry the operation made or deleted can settle: no
		 * walk, so uploading thousands of new folders stays linear.  An
		 * entry renamed here since (with a folder above) is found by
		 * seq. */
		e = find_seq(ov, seq);
		if (!e)
			e = find(ov, op->path);
		if (e && settles(ov, e, seq, op, shown, arg))
			ent_remove(ov, e);
		break;
	default:
		break;
	}
	if (ov->fly_from)
		fly_clear(ov);
	pthread_mutex_unlock(&ov->lock);
}

void fs_ov_applying(struct fs_ov *ov, const struct cache_jnl_op *op)
{
	pthread_mutex_lock(&ov->lock);
	if (ov->fly_from)
		fly_clear(ov);
	if (op && op->kind == CACHE_JNL_RENAME && op->path2) {
		ov->fly_from = strdup(op->path);
		ov->fly_to = strdup(op->path2);
		if (!ov->fly_from || !ov->fly_to)
			fly_clear(ov);  /* no waits then: as before */
		ov->fly_thread = pthread_self();
	}
	pthread_mutex_unlock(&ov->lock);
}

void fs_ov_uploaded(struct fs_ov *ov, const char *path, uint64_t file_id,
                    const struct xfer_attr *attr)
{
	struct ov_ent *e;

	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	if (e && e->file && e->file->file_id == file_id && !e->file->dirty &&
	    !e->file->writers) {
		e->file->uploaded = true;
		e->file->result = *attr;
		/* A handle reading the staged file keeps the entry: a later
		 * writer of path must write that file, which it then sees. */
		if (!e->file->held && e->file->refs == 1) {
			/* Replayed: its staged file goes with the op. */
			uint32_t mode = e->mode;

			ent_clear(ov, e);
			e->kind = OV_FILE;
			e->mode = mode;
			e->origin = strdup(path);
			if (!mode || !e->origin)
				ent_remove(ov, e);
		}
	}
	pthread_mutex_unlock(&ov->lock);
}

void fs_ov_settle(struct fs_ov *ov, const char *path,
                  const struct xfer_attr *listed)
{
	struct ov_ent *e;

	pthread_mutex_lock(&ov->lock);
	e = find(ov, path);
	/* Not while a handle reads the staged file (see fs_ov_uploaded). */
	if (e && e->file && e->file->uploaded && !e->file->writers &&
	    e->file->refs == 1 &&
	    !e->file->dirty && listed->size == e->file->result.size &&
	    (listed->mtime == e->file->result.mtime || !e->file->result.mtime)) {
		uint32_t mode = e->mode;

		ent_clear(ov, e);
		e->mode = mode;
		e->origin = strdup(path);
		/* Mode bits the origin cannot keep stay for the mount's life. */
		if (!mode || !e->origin)
			ent_remove(ov, e);
	}
	pthread_mutex_unlock(&ov->lock);
}
