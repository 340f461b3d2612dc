/* Kernel inode numbers <-> paths.  A node lives while the kernel holds a
 * lookup count on it (FUSE forget semantics); the root lives for the mount.
 * Two chained hash tables (by ino, by path) share one lock: lookups are short
 * and the lock is never held across I/O. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "fs/fs_i.h"

#define NBUCKETS_MIN 1024u

struct fs_inodes {
	pthread_mutex_t lock;
	struct fs_node **by_ino;   /* guarded by lock */
	struct fs_node **by_path;  /* guarded by lock */
	size_t nbuckets;           /* power of two; guarded by lock */
	size_t count;              /* guarded by lock */
};

static size_t ino_slot(const struct fs_inodes *t, uint64_t ino)
{
	return (size_t)(ino * 0x9E3779B97F4A7C15ull >> 20) & (t->nbuckets - 1);
}

static size_t path_slot(const struct fs_inodes *t, const char *path)
{
	return (size_t)XXH3_64bits(path, strlen(path)) & (t->nbuckets - 1);
}

static struct fs_node *find_ino(struct fs_inodes *t, uint64_t ino)
{
	struct fs_node *n = t->by_ino[ino_slot(t, ino)];

	while (n && n->ino != ino)
		n = n->ino_next;
	return n;
}

static struct fs_node *find_path(struct fs_inodes *t, const char *path)
{
	struct fs_node *n = t->by_path[path_slot(t, path)];

	while (n && strcmp(n->path, path) != 0)
		n = n->path_next;
	return n;
}

static void link_node(struct fs_inodes *t, struct fs_node *n)
{
	size_t is = ino_slot(t, n->ino), ps = path_slot(t, n->path);

	n->ino_next = t->by_ino[is];
	t->by_ino[is] = n;
	n->path_next = t->by_path[ps];
	t->by_path[ps] = n;
}

/* Doubling keeps chains short for directories of many thousand entries. */
static void maybe_grow(struct fs_inodes *t)
{
	struct fs_node **old_ino = t->by_ino, *n, *next;
	size_t old_n = t->nbuckets, i;
	struct fs_node **bi, **bp;

	if (t->count < t->nbuckets * 2)
		return;
	bi = calloc(old_n * 2, sizeof(*bi));
	bp = calloc(old_n * 2, sizeof(*bp));
	if (!bi || !bp) {
		free(bi);
		free(bp);
		return;
	}
	free(t->by_path);
	t->by_ino = bi;
	t->by_path = bp;
	t->nbuckets = old_n * 2;
	for (i = 0; i < old_n; i++) {
		for (n = old_ino[i]; n; n = next) {
			next = n->ino_next;
			link_node(t, n);
		}
	}
	free(old_ino);
}

static void unlink_node(struct fs_inodes *t, struct fs_node *n)
{
	struct fs_node **p = &t->by_ino[ino_slot(t, n->ino)];

	while (*p != n)
		p = &(*p)->ino_next;
	*p = n->ino_next;
	p = &t->by_path[path_slot(t, n->path)];
	while (*p != n)
		p = &(*p)->path_next;
	*p = n->path_next;
}

static struct fs_node *node_new(uint64_t ino, const char *path)
{
	size_t len = strlen(path) + 1;
	struct fs_node *n = calloc(1, sizeof(*n) + len);

	if (!n)
		return NULL;
	n->ino = ino;
	memcpy(n->path, path, len);
	return n;
}

int fs_inodes_init(struct fs_inodes **out, const struct xfer_attr *root)
{
	struct fs_inodes *t = calloc(1, sizeof(*t));
	struct fs_node *n = NULL;
	int rc = -ENOMEM;

	if (!t)
		goto fail;
	t->nbuckets = NBUCKETS_MIN;
	t->by_ino = calloc(t->nbuckets, sizeof(*t->by_ino));
	t->by_path = calloc(t->nbuckets, sizeof(*t->by_path));
	n = node_new(FUSE_ROOT_ID, "/");
	if (!t->by_ino || !t->by_path || !n)
		goto fail;
	pthread_mutex_init(&t->lock, NULL);
	n->attr = *root;
	n->nlookup = 1;   /* the root is never forgotten */
	link_node(t, n);
	t->count = 1;
	*out = t;
	return 0;
fail:
	free(n);
	if (t) {
		free(t->by_ino);
		free(t->by_path);
		free(t);
	}
	return rc;
}

void fs_inodes_destroy(struct fs_inodes *t)
{
	struct fs_node *n, *next;
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->nbuckets; i++) {
		for (n = t->by_ino[i]; n; n = next) {
			next = n->ino_next;
			free(n);
		}
	}
	free(t->by_ino);
	free(t->by_path);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

bool fs_attr_same_version(const struct xfer_attr *a, const struct xfer_attr *b)
{
	/* One side without an ETag (a mirror that has none) says nothing. */
	return a->size == b->size && a->mtime == b->mtime &&
	       (a->mode & S_IFMT) == (b->mode & S_IFMT) &&
	       (!a->etag[0] || !b->etag[0] || strcmp(a->etag, b->etag) == 0);
}

static void store_attr(struct fs_node *n, const struct xfer_attr *attr,
                       int64_t now)
{
	if (!fs_attr_same_version(&n->attr, attr))
		n->changed = true;
	n->attr = *attr;
	n->validated = now;
}

/* An inode number derived from the path, so that a file keeps its number
 * when the kernel forgets and looks it up again (cp, tar and rsync compare
 * st_ino across calls), and across remounts.  On the rare collision with a
 * live node the next free number is taken. */
static uint64_t stable_ino(struct fs_inodes *t, const char *path)
{
	uint64_t ino = XXH3_64bits(path, strlen(path));

	while (ino <= FUSE_ROOT_ID || find_ino(t, ino))
		ino++;
	return ino;
}

int fs_inodes_lookup(struct fs_inodes *t, const char *path,
                     const struct xfer_attr *attr, int64_t now,
                     uint64_t *ino)
{
	struct fs_node *n;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	n = find_path(t, path);
	if (n) {
		store_attr(n, attr, now);
	} else {
		n = node_new(stable_ino(t, path), path);
		if (!n) {
			rc = -ENOMEM;
			goto out;
		}
		n->attr = *attr;
		n->validated = now;
		link_node(t, n);
		t->count++;
		maybe_grow(t);
	}
	n->nlookup++;
	*ino = n->ino;
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void fs_inodes_forget(struct fs_inodes *t, uint64_t ino, uint64_t nlookup)
{
	struct fs_node *n;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (!n || ino == FUSE_ROOT_ID)
		goto out;
	n->nlookup = nlookup < n->nlookup ? n->nlookup - nlookup : 0;
	if (n->nlookup == 0) {
		unlink_node(t, n);
		t->count--;
		free(n);
	}
out:
	pthread_mutex_unlock(&t->lock);
}

int fs_inodes_get(struct fs_inodes *t, uint64_t ino, char **path,
                  struct xfer_attr *attr, int64_t *validated)
{
	struct fs_node *n;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (!n) {
		rc = -ENOENT;
		goto out;
	}
	if (path) {
		*path = strdup(n->path);
		if (!*path) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if (attr)
		*attr = n->attr;
	if (validated)
		*validated = n->validated;
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void fs_inodes_update(struct fs_inodes *t, uint64_t ino,
                      const struct xfer_attr *attr, int64_t now)
{
	struct fs_node *n;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n)
		store_attr(n, attr, now);
	pthread_mutex_unlock(&t->lock);
}

int fs_inodes_list(struct fs_inodes *t, uint64_t **inos, size_t *n)
{
	struct fs_node *node;
	size_t i, k = 0;
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	*inos = malloc((t->count ? t->count : 1) * sizeof(**inos));
	if (!*inos) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < t->nbuckets; i++)
		for (node = t->by_ino[i]; node; node = node->ino_next)
			(*inos)[k++] = node->ino;
	*n = k;
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void fs_inodes_expire(struct fs_inodes *t, uint64_t ino)
{
	struct fs_node *n;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n)
		n->validated = 0;
	pthread_mutex_unlock(&t->lock);
}

int fs_inodes_find(struct fs_inodes *t, const char *path, uint64_t *ino)
{
	struct fs_node *n;

	pthread_mutex_lock(&t->lock);
	n = find_path(t, path);
	if (n)
		*ino = n->ino;
	pthread_mutex_unlock(&t->lock);
	return n ? 0 : -ENOENT;
}

void fs_inodes_set_changed(struct fs_inodes *t, const char *path)
{
	struct fs_node *n;

	pthread_mutex_lock(&t->lock);
	n = find_path(t, path);
	if (n)
		n->changed = true;
	pthread_mutex_unlock(&t->lock);
}

bool fs_inodes_take_changed(struct fs_inodes *t, uint64_t ino)
{
	struct fs_node *n;
	bool changed = true;

	pthread_mutex_lock(&t->lock);
	n = find_ino(t, ino);
	if (n) {
		changed = n->changed;
		n->changed = false;
	}
	pthread_mutex_unlock(&t->lock);
	return changed;
}

char *fs_path_join(const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	char *p = malloc(dl + nl + 2);

	if (!p)
		return NULL;
	memcpy(p, dir, dl);
	if (dl == 0 || dir[dl - 1] != '/')
		p[dl++] = '/';
	memcpy(p + dl, name, nl + 1);
	return p;
}

char *fs_path_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	size_t len = slash && slash != path ? (size_t)(slash - path) : 1;

	return strndup(path, len);
}

const char *fs_path_base(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static bool path_under(const char *path, const char *prefix)
{
	size_t n = strlen(prefix);

	return strncmp(path, prefix, n) == 0 && (path[n] == '/' || !path[n]);
}

/* Gives node n the path prefix to + rest (lock held); false if out of
 * memory (n is then left as it was). */
static bool repath(struct fs_inodes *t, struct fs_node *n, const char *to,
                   const char *rest)
{
	size_t lt = strlen(to), lr = strlen(rest);
	struct fs_node *m = calloc(1, sizeof(*m) + lt + lr + 1);

	if (!m)
		return false;
	unlink_node(t, n);
	m->ino = n->ino;
	m->nlookup = n->nlookup;
	m->attr = n->attr;
	m->validated = n->validated;
	m->changed = n->changed;
	memcpy(m->path, to, lt);
	memcpy(m->path + lt, rest, lr + 1);
	link_node(t, m);
	free(n);
	return true;
}

/* Nodes at and under path get a path no lookup finds (lock held): the
 * kernel may still hold them, and a new object at path gets a new inode
 * number (the kernel refuses one that changes type). */
static void gone_locked(struct fs_inodes *t, const char *path)
{
	struct fs_node *n, *next;
	char gone[64];
	size_t i;

	for (i = 0; i < t->nbuckets; i++) {
		for (n = t->by_ino[i]; n; n = next) {
			next = n->ino_next;
			if (n->ino != 1 && path_under(n->path, path)) {
				snprintf(gone, sizeof(gone), "//gone/%llx",
				         (unsigned long long)n->ino);
				repath(t, n, gone, "");
			}
		}
	}
}

void fs_inodes_gone(struct fs_inodes *t, const char *path)
{
	pthread_mutex_lock(&t->lock);
	gone_locked(t, path);
	pthread_mutex_unlock(&t->lock);
}

/* Nodes at and under from now answer for to; nodes that were at and under
 * to are gone. */
void fs_inodes_rename(struct fs_inodes *t, const char *from, const char *to)
{
	struct fs_node *n, *next;
	size_t i, lf = strlen(from);

	pthread_mutex_lock(&t->lock);
	gone_locked(t, to);
	for (i = 0; i < t->nbuckets; i++) {
		for (n = t->by_ino[i]; n; n = next) {
			next = n->ino_next;
			/* Re-linked nodes go to the chain's head: skip those
			 * already moved (their path is under to now). */
			if (n->ino != 1 && path_under(n->path, from))
				repath(t, n, to, n->path + lf);
		}
	}
	pthread_mutex_unlock(&t->lock);
}
