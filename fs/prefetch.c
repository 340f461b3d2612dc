/* Folder-aware prefetch: the next files of a folder a reader walks.
 *
 * Far from the origin, a copy of many small files costs one round trip per
 * file however fast the link is.  A reader walking a folder (cp -r, tar,
 * rsync) opens its files one after another in an order that can be
 * predicted from the listing: by name (the listing's order: tar, rsync,
 * find) or by inode number (GNU cp sorts a folder by d_ino before copying
 * it; the inode numbers are a hash of the path, inode.c).  Two opens in a
 * row that are neighbours in one of these orders start a walk; each open of
 * that walk then queues the files after it (whole, up to PF_FILE_MAX each)
 * on threads of its own (PF_THREADS requests in flight, apart from the
 * read-ahead threads of sequential readers: neither kind of reader waits
 * behind the other's fetches) while the reader copies the current one.
 *
 * Bounds: at most conf.files files and conf.bytes bytes ahead of the
 * reader, and per folder state at most conf.files files fetched that the
 * reader then did not open: a random reader stops getting any once it has
 * wasted that many.  States (one per folder and user) are few (PF_STATES)
 * and only for listings of at most PF_LIST_MAX entries.
 *
 * Rules: the walk belongs to the uid that opened the files, and only files
 * that caller may see and read are fetched.  Fetching only fills the cache;
 * every open and read checks the rules again, so the daemon's fetching
 * makes nothing visible to anyone.  A file is fetched as the listing
 * describes it (size, mtime, ETag: the cache key): a reader whose
 * attributes say otherwise (changed at the origin, after meta_ttl) does not
 * find those blocks.
 *
 * The open hook only queues an event; one thread does the rest, so no open
 * waits for a listing or the rules. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "common/log.h"
#include "fs/fs_i.h"

#define PF_EVENTS_MAX 64u        /* opens waiting for the thread */
#define PF_STATES 8u             /* folders walked at once */
#define PF_LIST_MAX 65536u       /* larger listings are not tracked */
#define PF_FILE_MAX (1u << 20)   /* a larger file: its first MiB only */
#define PF_GAP 2u                /* files a walker may skip and stay one */
#define PF_THREADS 16u           /* files fetched at once */

enum { ORD_NAME, ORD_INO, NORD };

struct pf_event {
	struct pf_event *next;
	struct fs_caller c;
	char path[];
};

/* One file to fetch: its first count blocks. */
struct pf_job {
	struct pf_job *next;
	struct fs_file *file;
	uint64_t count;
};

struct pf_state {
	char *dir;                      /* NULL: unused */
	uid_t uid;
	struct fs_dir *d;               /* the listing the ranks are of */
	uint32_t *ino_order;            /* listing indices by inode number */
	uint32_t *ino_rank;             /* inverse of ino_order */
	uint8_t *flags;                 /* PF_* per listing index */
	long last[NORD];                /* rank of the last open; -1: none */
	unsigned fetched, used;         /* files queued; of those, opened */
	uint64_t stamp;                 /* for replacement */
};

#define PF_FETCHED 1u
#define PF_OPENED 2u
#define PF_NOT_OURS 4u   /* the walker may not read it, or not fetchable */

struct fs_prefetch {
	struct fs_prefetch_conf conf;
	pthread_mutex_t lock;
	pthread_cond_t work;
	struct pf_event *head, *tail;   /* guarded by lock */
	unsigned nevents;               /* guarded by lock */
	bool stopping;                  /* guarded by lock */
	pthread_t thread;
	pthread_cond_t jobs_cond;       /* jobs queued or stopping */
	struct pf_job *jobs, *jobs_tail; /* guarded by lock */
	unsigned nworkers;
	pthread_t workers[PF_THREADS];
	/* Used by the thread alone. */
	struct pf_state states[PF_STATES];
	uint64_t clock;
};

static void state_clear(struct pf_state *s)
{
	free(s->dir);
	fs_dir_put(s->d);
	free(s->ino_order);
	free(s->ino_rank);
	free(s->flags);
	memset(s, 0, sizeof(*s));
}

static uint64_t ino_key(const char *dir, const char *name)
{
	char *p = fs_path_join(dir, name);
	uint64_t h = p ? XXH3_64bits(p, strlen(p)) : 0;

	free(p);
	return h;
}

/* qsort has no context argument: the keys travel with the indices. */
struct keyed {
	uint64_t key;
	uint32_t idx;
};

static int by_key(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

/* Fills s for listing d of dir, walked by uid.  -ENOMEM. */
static int state_build(struct pf_state *s, const char *dir, uid_t uid,
                       struct fs_dir *d)
{
	struct keyed *k = calloc(d->count ? d->count : 1, sizeof(*k));
	size_t i;
	int rc = -ENOMEM;

	s->dir = strdup(dir);
	s->ino_order = calloc(d->count ? d->count : 1, sizeof(uint32_t));
	s->ino_rank = calloc(d->count ? d->count : 1, sizeof(uint32_t));
	s->flags = calloc(d->count ? d->count : 1, 1);
	if (!k || !s->dir || !s->ino_order || !s->ino_rank || !s->flags)
		goto out;
	for (i = 0; i < d->count; i++) {
		k[i].key = ino_key(dir, d->ents[i].name);
		k[i].idx = (uint32_t)i;
	}
	qsort(k, d->count, sizeof(*k), by_key);
	for (i = 0; i < d->count; i++) {
		s->ino_order[i] = k[i].idx;
		s->ino_rank[k[i].idx] = (uint32_t)i;
	}
	atomic_fetch_add(&d->refs, 1);
	s->d = d;
	s->uid = uid;
	s->last[ORD_NAME] = s->last[ORD_INO] = -1;
	rc = 0;
out:
	free(k);
	if (rc)
		state_clear(s);
	return rc;
}

static uint32_t at_rank(const struct pf_state *s, int o, size_t r)
{
	return o == ORD_NAME ? (uint32_t)r : s->ino_order[r];
}

static size_t rank_of(const struct pf_state *s, int o, size_t idx)
{
	return o == ORD_NAME ? idx : s->ino_rank[idx];
}

static bool is_file(const struct fs_dirent *e)
{
	return (e->attr.mode & S_IFMT) != S_IFDIR;
}

/* Whether rank r follows s->last[o] with at most PF_GAP files between. */
static bool follows(const struct pf_state *s, int o, size_t r)
{
	size_t k, gap = 0;

	if (s->last[o] < 0 || r <= (size_t)s->last[o])
		return false;
	for (k = (size_t)s->last[o] + 1; k < r; k++) {
		if (is_file(&s->d->ents[at_rank(s, o, k)]) && ++gap > PF_GAP)
			return false;
	}
	return true;
}

/* Queues the whole of the file at listing index idx, if the caller may
 * read it and it is in a read-only export.  Returns its bytes, 0 if not. */
static uint64_t fetch_file(struct fs_prefetch *p, const struct pf_state *s,
                           const struct fs_caller *c, uint32_t idx)
{
	const struct fs_dirent *e = &s->d->ents[idx];
	uint64_t bs = p->conf.block_size, n, bytes = 0;
	char *path = fs_path_join(s->dir, e->name);
	struct pf_job *job = NULL;
	struct fs_file *f;
	struct fs_route r;

	if (!path)
		goto out;
	if (!fs_access_may(p->conf.access, c, path, ACL_READ))
		goto out;
	/* A writable export's file may be pending in the overlay: its
	 * readers do not read the origin's blocks. */
	if (fs_exports_route(p->conf.exports, path, &r) != 0 ||
	    r.kind != FS_ROUTE_SOURCE || r.writable)
		goto out;
	bytes = e->attr.size < PF_FILE_MAX ? e->attr.size : PF_FILE_MAX;
	n = fs_block_count(bytes, bs);
	job = n ? malloc(sizeof(*job)) : NULL;
	f = job ? fs_file_new(path, &r, &e->attr, bs) : NULL;
	if (!f) {
		bytes = 0;
		goto out;
	}
	job->next = NULL;
	job->file = f;
	job->count = n;
	pthread_mutex_lock(&p->lock);
	if (p->jobs_tail)
		p->jobs_tail->next = job;
	else
		p->jobs = job;
	p->jobs_tail = job;
	pthread_cond_signal(&p->jobs_cond);
	pthread_mutex_unlock(&p->lock);
	job = NULL;
out:
	free(job);
	free(path);
	return bytes;
}

/* The walk in order o is at rank r: keeps files and bytes ahead of it. */
static void ahead(struct fs_prefetch *p, struct pf_state *s,
                  const struct fs_caller *c, int o, size_t r)
{
	uint64_t bytes = 0;
	unsigned files = 0;
	size_t k;

	for (k = r + 1; k < s->d->count; k++) {
		uint32_t idx = at_rank(s, o, k);
		const struct fs_dirent *e = &s->d->ents[idx];

		if (files >= p->conf.files || bytes >= p->conf.bytes)
			break;
		if (!is_file(e) || (s->flags[idx] & PF_NOT_OURS))
			continue;
		if (s->flags[idx]) {
			files++;
			bytes += e->attr.size < PF_FILE_MAX ? e->attr.size
			                                    : PF_FILE_MAX;
			continue;
		}
		/* What was fetched and never opened is this walk's waste. */
		if (s->fetched - s->used >= p->conf.files)
			break;
		if (!fetch_file(p, s, c, idx)) {
			s->flags[idx] |= PF_NOT_OURS;   /* or empty */
			continue;
		}
		s->flags[idx] |= PF_FETCHED;
		s->fetched++;
		files++;
		bytes += e->attr.size < PF_FILE_MAX ? e->attr.size : PF_FILE_MAX;
	}
}

static struct pf_state *state_for(struct fs_prefetch *p, const char *dir,
                                  uid_t uid, struct fs_dir *d)
{
	struct pf_state *s, *free_s = NULL, *old = NULL;
	unsigned i;

	for (i = 0; i < PF_STATES; i++) {
		s = &p->states[i];
		if (s->dir && s->uid == uid && !strcmp(s->dir, dir)) {
			if (s->d == d)
				return s;
			/* A new listing: ranks and flags are of the old one. */
			state_clear(s);
			free_s = s;
			break;
		}
		if (!s->dir && !free_s)
			free_s = s;
		if (s->dir && (!old || s->stamp < old->stamp))
			old = s;
	}
	s = free_s ? free_s : old;
	state_clear(s);
	return state_build(s, dir, uid, d) == 0 ? s : NULL;
}

static void handle(struct fs_prefetch *p, const struct pf_event *ev)
{
	char *dir = fs_path_parent(ev->path);
	const char *name = fs_path_base(ev->path);
	const struct fs_dirent *e;
	struct fs_dir *d = NULL;
	struct pf_state *s;
	size_t idx;
	int o, walk = -1;

	if (!dir || fs_meta_dir(p->conf.meta, dir, &d) != 0)
		goto out;
	if (d->count < 2 || d->count > PF_LIST_MAX)
		goto out;
	e = fs_dir_find(d, name);
	if (!e)
		goto out;
	idx = (size_t)(e - d->ents);
	s = state_for(p, dir, ev->c.ac.uid, d);
	if (!s)
		goto out;
	s->stamp = ++p->clock;
	if ((s->flags[idx] & (PF_FETCHED | PF_OPENED)) == PF_FETCHED)
		s->used++;
	s->flags[idx] |= PF_OPENED;
	for (o = 0; o < NORD; o++) {
		size_t r = rank_of(s, o, idx);

		if (walk < 0 && follows(s, o, r))
			walk = o;
		s->last[o] = (long)r;
	}
	if (walk >= 0)
		ahead(p, s, &ev->c, walk, rank_of(s, walk, idx));
out:
	fs_dir_put(d);
	free(dir);
}

static void *pf_main(void *arg)
{
	struct fs_prefetch *p = arg;
	struct pf_event *ev;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->work, &p->lock);
		if (p->stopping)
			break;
		ev = p->head;
		p->head = ev->next;
		if (!p->head)
			p->tail = NULL;
		p->nevents--;
		pthread_mutex_unlock(&p->lock);
		handle(p, ev);
		free(ev);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static void *pf_worker(void *arg)
{
	struct fs_prefetch *p = arg;
	struct pf_job *job;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->jobs && !p->stopping)
			pthread_cond_wait(&p->jobs_cond, &p->lock);
		if (p->stopping)
			break;
		job = p->jobs;
		p->jobs = job->next;
		if (!p->jobs)
			p->jobs_tail = NULL;
		pthread_mutex_unlock(&p->lock);
		/* Errors are left for the reader to meet, with its own. */
		(void)fs_blocks_load(p->conf.blocks, job->file, 0, job->count);
		fs_file_put(job->file);
		free(job);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int fs_prefetch_init(struct fs_prefetch **out, const struct fs_prefetch_conf *conf)
{
	struct fs_prefetch *p;

	*out = NULL;
	if (!conf->files)
		return 0;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->conf = *conf;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->jobs_cond, NULL);
	if (pthread_create(&p->thread, NULL, pf_main, p) != 0) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->work);
		pthread_cond_destroy(&p->jobs_cond);
		free(p);
		return -EAGAIN;
	}
	while (p->nworkers < PF_THREADS &&
	       pthread_create(&p->workers[p->nworkers], NULL, pf_worker, p) == 0)
		p->nworkers++;
	*out = p;
	return 0;
}

void fs_prefetch_destroy(struct fs_prefetch *p)
{
	struct pf_event *ev;
	struct pf_job *job;
	unsigned i;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->work);
	pthread_cond_broadcast(&p->jobs_cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	for (i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i], NULL);
	while ((ev = p->head)) {
		p->head = ev->next;
		free(ev);
	}
	while ((job = p->jobs)) {
		p->jobs = job->next;
		fs_file_put(job->file);
		free(job);
	}
	for (i = 0; i < PF_STATES; i++)
		state_clear(&p->states[i]);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->jobs_cond);
	free(p);
}

void fs_prefetch_opened(struct fs_prefetch *p, const struct fs_caller *c,
                        const char *path)
{
	size_t len = strlen(path) + 1;
	struct pf_event *ev;

	if (!p)
		return;
	ev = malloc(sizeof(*ev) + len);
	if (!ev)
		return;
	ev->next = NULL;
	ev->c = *c;
	ev->c.ac.groups = ev->c.groups;     /* pointed into *c */
	memcpy(ev->path, path, len);
	pthread_mutex_lock(&p->lock);
	/* Behind by this much, the walk's prediction is late anyway. */
	if (p->nevents >= PF_EVENTS_MAX || p->stopping) {
		pthread_mutex_unlock(&p->lock);
		free(ev);
		return;
	}
	if (p->tail)
		p->tail->next = ev;
	else
		p->head = ev;
	p->tail = ev;
	p->nevents++;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}
