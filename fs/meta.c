/* Listings and attributes.  A listing is fetched from the sources once per
 * meta_ttl, kept in memory (bounded by a total entry count, least recently
 * used dropped first) and in the LMDB cache so that a remount, or a mount
 * with the sources down, still knows the tree.  One fetch per directory at a
 * time: other threads wanting the same listing wait for it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "common/log.h"
#include "fs/fs_i.h"

#define DIR_MAGIC 0x444d5344u    /* "DMSD" */
#define DIR_VERSION 1u
#define DCACHE_BUCKETS 4096u
/* After a failed revalidation, serve the stale listing this long before
 * asking the sources again, so an unreachable origin does not make every
 * lookup wait for a connect timeout. */
#define RETRY_AFTER_S 10

struct dcache_ent {
	char *path;
	struct fs_dir *dir;          /* may be NULL while first fetched */
	int64_t retry_after;         /* wall-clock seconds */
	bool busy;                   /* a thread is fetching this listing */
	bool expired;                /* fs_meta_expire since the last fetch
	                                began: the LMDB copy is not fresh */
	struct dcache_ent *next;     /* hash chain */
	struct dcache_ent *lru_prev, *lru_next;
};

struct fs_meta {
	struct cache *cache;
	struct fs_exports *exports;
	unsigned ttl;
	size_t max_entries;
	pthread_mutex_t lock;
	pthread_cond_t done;             /* a fetch finished */
	struct dcache_ent *buckets[DCACHE_BUCKETS]; /* guarded by lock */
	struct dcache_ent lru;           /* list head, most recent first; guarded by lock */
	size_t entries;                  /* listing entries held; guarded by lock */
	int64_t warned_offline;          /* last stale-if-error warning; guarded by lock */
};

static int64_t wall_now(void)
{
	return (int64_t)time(NULL);
}

void fs_dir_put(struct fs_dir *d)
{
	if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
		return;
	free(d->ents);
	free(d->names);
	free(d);
}

static int dirent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct fs_dirent *)a)->name,
	              ((const struct fs_dirent *)b)->name);
}

const struct fs_dirent *fs_dir_find(const struct fs_dir *d, const char *name)
{
	struct fs_dirent key = { .name = name };

	/* An empty listing may have no array: bsearch must not see NULL. */
	if (d->count == 0)
		return NULL;
	return bsearch(&key, d->ents, d->count, sizeof(key), dirent_cmp);
}

/* ---- building a listing from the sources ---- */

struct dir_builder {
	size_t count, cap;
	struct fs_dirent *ents;
	size_t *name_off;
	char *names;
	size_t nlen, ncap;
};

static int builder_add(void *arg, const char *name, const struct xfer_attr *attr)
{
	struct dir_builder *b = arg;
	size_t len = strlen(name) + 1;

	if (b->count == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct fs_dirent *e = realloc(b->ents, cap * sizeof(*e));
		size_t *o;

		if (!e)
			return -ENOMEM;
		b->ents = e;
		o = realloc(b->name_off, cap * sizeof(*o));
		if (!o)
			return -ENOMEM;
		b->name_off = o;
		b->cap = cap;
	}
	if (b->nlen + len > b->ncap) {
		size_t cap = b->ncap ? b->ncap * 2 : 4096;
		char *n;

		while (cap < b->nlen + len)
			cap *= 2;
		n = realloc(b->names, cap);
		if (!n)
			return -ENOMEM;
		b->names = n;
		b->ncap = cap;
	}
	memcpy(b->names + b->nlen, name, len);
	b->name_off[b->count] = b->nlen;
	b->nlen += len;
	b->ents[b->count].attr = *attr;
	b->count++;
	return 0;
}

/* Turns a builder into a sorted listing without duplicate names.  The
 * builder is emptied either way. */
static int builder_finish(struct dir_builder *b, int64_t validated,
                          struct fs_dir **out)
{
	struct fs_dir *d = calloc(1, sizeof(*d));
	size_t i, kept = 0;
	int rc = -ENOMEM;

	if (!d)
		goto out;
	for (i = 0; i < b->count; i++)
		b->ents[i].name = b->names + b->name_off[i];
	if (b->count)
		qsort(b->ents, b->count, sizeof(*b->ents), dirent_cmp);
	for (i = 0; i < b->count; i++) {
		if (kept && strcmp(b->ents[kept - 1].name, b->ents[i].name) == 0)
			continue;
		b->ents[kept++] = b->ents[i];
	}
	atomic_init(&d->refs, 1);
	d->validated = validated;
	d->count = kept;
	d->ents = b->ents;
	d->names = b->names;
	b->ents = NULL;
	b->names = NULL;
	*out = d;
	d = NULL;
	rc = 0;
out:
	free(d);
	free(b->ents);
	free(b->names);
	free(b->name_off);
	memset(b, 0, sizeof(*b));
	return rc;
}

static int add_virtual_child(void *arg, const char *name)
{
	struct xfer_attr dir = { .mode = S_IFDIR };

	return builder_add(arg, name, &dir);
}

int fs_dir_virtual(struct fs_exports *ex, const char *path, const char *user,
                   int64_t mtime, struct fs_dir **out)
{
	struct dir_builder b = { 0 };
	struct xfer_attr dir = { .mode = S_IFDIR, .mtime = mtime };
	size_t i;
	int rc;

	if (!user)
		rc = fs_exports_children(ex, path, add_virtual_child, &b);
	else
		rc = user[0] ? builder_add(&b, user, &dir) : 0;
	for (i = 0; i < b.count; i++)
		b.ents[i].attr.mtime = mtime;
	if (rc) {
		free(b.ents);
		free(b.names);
		free(b.name_off);
		return rc;
	}
	return builder_finish(&b, mtime, out);
}

/* ---- serialization for the LMDB cache ---- */

struct wbuf {
	char *p;
	size_t len, cap;
	int err;
};

static void put_bytes(struct wbuf *w, const void *src, size_t n)
{
	if (w->err)
		return;
	if (w->len + n > w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 4096;
		char *p;

		while (cap < w->len + n)
			cap *= 2;
		p = realloc(w->p, cap);
		if (!p) {
			w->err = -ENOMEM;
			return;
		}
		w->p = p;
		w->cap = cap;
	}
	memcpy(w->p + w->len, src, n);
	w->len += n;
}

#define PUT(w, v) put_bytes((w), &(v), sizeof(v))

int fs_dir_encode(const struct fs_dir *d, void **out, size_t *len)
{
	struct wbuf w = { 0 };
	uint32_t magic = DIR_MAGIC, version = DIR_VERSION;
	uint64_t count = d->count;
	size_t i;

	PUT(&w, magic);
	PUT(&w, version);
	PUT(&w, d->validated);
	PUT(&w, count);
	for (i = 0; i < d->count; i++) {
		const struct fs_dirent *e = &d->ents[i];
		uint16_t nl = (uint16_t)strlen(e->name);
		uint8_t el = (uint8_t)strnlen(e->attr.etag, XFER_ETAG_MAX - 1);

		PUT(&w, nl);
		put_bytes(&w, e->name, nl);
		PUT(&w, e->attr.size);
		PUT(&w, e->attr.mtime);
		PUT(&w, e->attr.mode);
		PUT(&w, el);
		put_bytes(&w, e->attr.etag, el);
	}
	if (w.err) {
		free(w.p);
		return w.err;
	}
	*out = w.p;
	*len = w.len;
	return 0;
}

struct rbuf {
	const char *p;
	size_t len, pos;
};

static bool get_bytes(struct rbuf *r, void *dst, size_t n)
{
	if (r->len - r->pos < n)
		return false;
	memcpy(dst, r->p + r->pos, n);
	r->pos += n;
	return true;
}

#define GET(r, v) get_bytes((r), &(v), sizeof(v))

int fs_dir_decode(const void *buf, size_t len, struct fs_dir **out)
{
	struct rbuf r = { .p = buf, .len = len };
	struct dir_builder b = { 0 };
	uint32_t magic, version;
	int64_t validated;
	uint64_t count, i;
	char name[65536];
	int rc = -EINVAL;

	if (!GET(&r, magic) || !GET(&r, version) || !GET(&r, validated) ||
	    !GET(&r, count) || magic != DIR_MAGIC || version != DIR_VERSION)
		goto fail;
	for (i = 0; i < count; i++) {
		struct xfer_attr a = { 0 };
		uint16_t nl;
		uint8_t el;

		if (!GET(&r, nl) || nl == 0 || !get_bytes(&r, name, nl) ||
		    !GET(&r, a.size) || !GET(&r, a.mtime) || !GET(&r, a.mode) ||
		    !GET(&r, el) || el >= XFER_ETAG_MAX ||
		    !get_bytes(&r, a.etag, el))
			goto fail;
		name[nl] = '\0';
		if (memchr(name, '/', nl) || strlen(name) != nl)
			goto fail;
		rc = builder_add(&b, name, &a);
		if (rc)
			goto fail;
		rc = -EINVAL;
	}
	if (r.pos != r.len)
		goto fail;
	return builder_finish(&b, validated, out);
fail:
	free(b.ents);
	free(b.names);
	free(b.name_off);
	return rc;
}

/* ---- the in-memory listing cache ---- */

static size_t dslot(const char *path)
{
	return (size_t)XXH3_64bits(path, strlen(path)) & (DCACHE_BUCKETS - 1);
}

static struct dcache_ent *dfind(struct fs_meta *m, const char *path)
{
	struct dcache_ent *e = m->buckets[dslot(path)];

	while (e && strcmp(e->path, path) != 0)
		e = e->next;
	return e;
}

static void lru_unlink(struct dcache_ent *e)
{
	e->lru_prev->lru_next = e->lru_next;
	e->lru_next->lru_prev = e->lru_prev;
}

static void lru_push_front(struct fs_meta *m, struct dcache_ent *e)
{
	e->lru_next = m->lru.lru_next;
	e->lru_prev = &m->lru;
	m->lru.lru_next->lru_prev = e;
	m->lru.lru_next = e;
}

static void dremove(struct fs_meta *m, struct dcache_ent *e)
{
	struct dcache_ent **p = &m->buckets[dslot(e->path)];

	while (*p != e)
		p = &(*p)->next;
	*p = e->next;
	lru_unlink(e);
	if (e->dir)
		m->entries -= e->dir->count;
	fs_dir_put(e->dir);
	free(e->path);
	free(e);
}

/* Drops least recently used listings until the entry budget holds; the
 * LMDB copy stays, so a dropped listing costs a cache read, not a fetch. */
static void dtrim(struct fs_meta *m)
{
	struct dcache_ent *e = m->lru.lru_prev, *prev;

	while (m->entries > m->max_entries && e != &m->lru) {
		prev = e->lru_prev;
		if (!e->busy)
			dremove(m, e);
		e = prev;
	}
}

static struct dcache_ent *dget(struct fs_meta *m, const char *path)
{
	struct dcache_ent *e = dfind(m, path);
	size_t s;

	if (e) {
		lru_unlink(e);
		lru_push_front(m, e);
		return e;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->path = strdup(path);
	if (!e->path) {
		free(e);
		return NULL;
	}
	s = dslot(path);
	e->next = m->buckets[s];
	m->buckets[s] = e;
	lru_push_front(m, e);
	return e;
}

static void dset(struct fs_meta *m, struct dcache_ent *e, struct fs_dir *d)
{
	if (e->dir)
		m->entries -= e->dir->count;
	fs_dir_put(e->dir);
	e->dir = d;
	if (d)
		m->entries += d->count;
}

/* "d:tree\npath": listings of the same path in two trees never mix. */
static char *meta_key(char kind, const char *tree, const char *path)
{
	size_t tlen = strlen(tree), len = strlen(path);
	char *k = malloc(tlen + len + 4);

	if (!k)
		return NULL;
	k[0] = kind;
	k[1] = ':';
	memcpy(k + 2, tree, tlen);
	k[2 + tlen] = '\n';
	memcpy(k + 3 + tlen, path, len + 1);
	return k;
}

static struct fs_dir *load_cached_dir(struct fs_meta *m, const char *tree,
                                      const char *path)
{
	struct fs_dir *d = NULL;
	char *key = meta_key('d', tree, path);
	void *val = NULL;
	size_t len;

	if (!key || cache_meta_get(m->cache, key, &val, &len) != 0)
		goto out;
	if (fs_dir_decode(val, len, &d) != 0) {
		dms_log(LOG_WARNING, "cached listing of %s is unreadable; refetching",
		        path);
		d = NULL;
	}
out:
	free(val);
	free(key);
	return d;
}

static void store_cached_dir(struct fs_meta *m, const char *tree,
                             const char *path, const struct fs_dir *d)
{
	char *key = meta_key('d', tree, path);
	void *val = NULL;
	size_t len;
	int rc;

	if (!key || fs_dir_encode(d, &val, &len) != 0)
		goto out;
	rc = cache_meta_put(m->cache, key, val, len);
	if (rc)
		dms_log(LOG_WARNING, "cannot cache the listing of %s: %s", path,
		        strerror(-rc));
out:
	free(val);
	free(key);
}

/* Errors after which an older listing may stand in for a fresh one. */
static bool source_unavailable(int rc)
{
	return rc == -EHOSTDOWN || rc == -EIO || rc == -ETIMEDOUT ||
	       rc == -ENOMEM || rc == -EFBIG;
}

/* Uploads in flight (and ones a killed daemon left) are not shown: a
 * listing fetched while one was running would show its temporary beside
 * the file being replaced, and a leftover one for ever. */
static int builder_add_shown(void *arg, const char *name,
                             const struct xfer_attr *attr)
{
	return xfer_is_upload_temp(name) ? 0 : builder_add(arg, name, attr);
}

static int fetch_dir(struct fs_meta *m, const struct fs_route *r,
                     struct fs_dir **out)
{
	struct dir_builder b = { 0 };
	int rc = xfer_list(r->xfer, r->inner, builder_add_shown, &b);

	if (rc) {
		free(b.ents);
		free(b.names);
		free(b.name_off);
		return rc;
	}
	return builder_finish(&b, wall_now(), out);
}

int fs_meta_dir(struct fs_meta *m, const char *path, struct fs_dir **out)
{
	struct fs_dir *have = NULL, *got = NULL;
	struct dcache_ent *e;
	int64_t now = wall_now();
	bool stale = false, expired;
	struct fs_route r;
	int rc;

	rc = fs_exports_route(m->exports, path, &r);
	if (rc == 0 && r.kind != FS_ROUTE_SOURCE)
		rc = -ENOTDIR;   /* made-up directories are not listed here */
	if (rc)
		return rc;
	pthread_mutex_lock(&m->lock);
	for (;;) {
		e = dget(m, path);
		if (!e) {
			rc = -ENOMEM;
			goto unlock;
		}
		if (e->dir && (now - e->dir->validated < (int64_t)m->ttl ||
		               now < e->retry_after)) {
			atomic_fetch_add(&e->dir->refs, 1);
			*out = e->dir;
			goto unlock;
		}
		if (!e->busy)
			break;
		pthread_cond_wait(&m->done, &m->lock);
		now = wall_now();
	}
	e->busy = true;
	expired = e->expired;
	e->expired = false;
	have = e->dir;
	if (have)
		atomic_fetch_add(&have->refs, 1);
	pthread_mutex_unlock(&m->lock);

	if (!have) {
		have = load_cached_dir(m, r.tree, path);
		/* A writable export's stored listing may predate changes
		 * this mount (or the last one) made: only a fallback. */
		if (have && now - have->validated < (int64_t)m->ttl &&
		    !expired && !r.writable) {
			got = have;
			have = NULL;
			goto install;
		}
	}
	rc = fetch_dir(m, &r, &got);
	if (rc == 0) {
		store_cached_dir(m, r.tree, path, got);
	} else if (have && source_unavailable(rc)) {
		pthread_mutex_lock(&m->lock);
		if (now - m->warned_offline >= 60) {
			dms_log(LOG_WARNING, "sources unavailable (%s): serving cached "
			        "metadata of %s", strerror(-rc), path);
			m->warned_offline = now;
		}
		pthread_mutex_unlock(&m->lock);
		got = have;
		have = NULL;
		stale = true;
		rc = 0;
	}
install:
	pthread_mutex_lock(&m->lock);
	e = dfind(m, path);   /* still there: busy entries are never trimmed */
	e->busy = false;
	if (rc == 0) {
		if (got != e->dir)
			dset(m, e, got);
		else
			fs_dir_put(got);
		e->retry_after = stale ? now + RETRY_AFTER_S : 0;
		/* Expired again while fetching: this answer may predate
		 * the change. */
		if (e->expired)
			e->dir->validated = 0;
		atomic_fetch_add(&e->dir->refs, 1);
		*out = e->dir;
	} else if (rc == -ENOENT || rc == -ENOTDIR) {
		dset(m, e, NULL);
	}
	pthread_cond_broadcast(&m->done);
	dtrim(m);
unlock:
	pthread_mutex_unlock(&m->lock);
	fs_dir_put(have);
	/* No answer in time is EIO for the caller, as for reads (README);
	 * -EHOSTDOWN only chose stale-if-error above. */
	return rc == -EHOSTDOWN ? -EIO : rc;
}

void fs_meta_expire(struct fs_meta *m, const char *path)
{
	struct dcache_ent *e;

	pthread_mutex_lock(&m->lock);
	/* Made if missing: the listing may be in LMDB only, and must not be
	 * taken from there as fresh (a write just changed the folder). */
	e = dget(m, path);
	if (e) {
		e->expired = true;
		e->retry_after = 0;
		if (e->dir)
			e->dir->validated = 0;
	}
	pthread_mutex_unlock(&m->lock);
}

void fs_meta_expire_under(struct fs_meta *m, const char *path)
{
	size_t n = strlen(path);
	struct dcache_ent *e;

	fs_meta_expire(m, path);
	pthread_mutex_lock(&m->lock);
	for (e = m->lru.lru_next; e != &m->lru; e = e->lru_next) {
		if (strncmp(e->path, path, n) || e->path[n] != '/')
			continue;
		e->expired = true;
		e->retry_after = 0;
		if (e->dir)
			e->dir->validated = 0;
	}
	pthread_mutex_unlock(&m->lock);
}

int fs_meta_probe(struct fs_meta *m, const char *path,
                  const struct fs_route *r, char *why, size_t cap)
{
	struct xfer_attr attr;
	struct fs_dir *d = NULL;
	int rc = xfer_probe(r->xfer, r->inner, &attr, why, cap);

	if (rc == 0) {
		if ((attr.mode & S_IFMT) != S_IFDIR) {
			rc = -ENOTDIR;
			snprintf(why, cap, "%s is a file, not a directory",
			         r->tree);
		}
		goto out;
	}
	if (!source_unavailable(rc))
		goto out;
	/* The sources are down: a tree listed before can still be served. */
	d = load_cached_dir(m, r->tree, path);
	if (!d)
		goto out;
	dms_log(LOG_WARNING, "sources of %s unavailable (%s): serving it from "
	        "the cache", path, why[0] ? why : strerror(-rc));
	why[0] = '\0';
	rc = 0;
out:
	fs_dir_put(d);
	return rc;
}

int fs_meta_init(struct fs_meta **out, struct cache *cache,
                 struct fs_exports *exports, unsigned ttl, size_t max_entries)
{
	struct fs_meta *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->cache = cache;
	m->exports = exports;
	m->ttl = ttl;
	m->max_entries = max_entries;
	m->lru.lru_next = m->lru.lru_prev = &m->lru;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->done, NULL);
	*out = m;
	return 0;
}

void fs_meta_destroy(struct fs_meta *m)
{
	if (!m)
		return;
	while (m->lru.lru_next != &m->lru)
		dremove(m, m->lru.lru_next);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->done);
	free(m);
}
