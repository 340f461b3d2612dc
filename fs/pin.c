/* dmsctl pin / unpin / pins, the daemon side (see fs/pin.h, protocol in
 * fs/ctl_proto.h).
 *
 * A pin runs in three steps on the connection's thread: the walk (listings
 * through fs_meta_dir, as the caller may see them), the reservation (under
 * p->lock, so two pins cannot both pass the cap check: every file gets its
 * cache pin record before any fetch, so blocks fetched from then on are
 * kept), then the fetch by PIN_WORKERS threads taking chunks of
 * PIN_CHUNK_BYTES (one request each at most) from a shared cursor over the
 * files: a folder of small files has that many files in flight, a large
 * file that many runs.  A chunk whose blocks are all stored is skipped
 * without reading them, so a rerun fetches only what is missing. */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/ctlsock.h"
#include "common/log.h"
#include "fs/ctl_proto.h"
#include "fs/ops_i.h"
#include "fs/pin.h"

#define PIN_WORKERS       8           /* chunks in flight per pin */
#define PIN_CHUNK_BYTES   (2u << 20)  /* one fetch engine run */
#define PIN_PROGRESS_MS   500
#define PIN_PATHS_MAX     65536       /* paths in one request */
#define PIN_DEPTH_MAX     512
#define PIN_SEND_TIMEOUT_S 10

struct pin_file {
	struct fs_file *f;
	char *path;                  /* in the mount */
	uint64_t nchunks;
	atomic_uint_fast64_t left;   /* chunks not done */
	atomic_int err;              /* first error, -errno */
};

struct pin_fail {
	struct pin_fail *next;
	int err;
	char *path, *why;
};

struct pin_job {
	struct fs_pins *p;
	struct fs *fs;
	uid_t uid;
	bool root;
	struct fs_caller caller;
	int fd;
	struct pin_file *files;
	size_t n, cap;
	uint64_t bytes, chunk;
	atomic_bool cancel;
	_Atomic uint64_t bytes_done, fetched, files_done, files_failed;
	pthread_mutex_t lock;
	size_t next_file;            /* guarded by lock */
	uint64_t next_chunk;         /* guarded by lock */
	struct pin_fail *fails;      /* guarded by lock; newest first */
	unsigned nfails;             /* guarded by lock */
	struct pin_job *next;        /* fs_pins.jobs; guarded by fs_pins.lock */
};

struct fs_pins {
	struct fs *fs;
	pthread_mutex_t lock;
	struct pin_job *jobs;        /* running; guarded by lock */
	bool stopping;               /* guarded by lock */
};

int fs_pins_init(struct fs_pins **out, struct fs *fs)
{
	struct fs_pins *p = calloc(1, sizeof(*p));

	if (!p)
		return -ENOMEM;
	p->fs = fs;
	pthread_mutex_init(&p->lock, NULL);
	*out = p;
	return 0;
}

void fs_pins_cancel(struct fs_pins *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	for (struct pin_job *j = p->jobs; j; j = j->next)
		atomic_store(&j->cancel, true);
	pthread_mutex_unlock(&p->lock);
}

void fs_pins_destroy(struct fs_pins *p)
{
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	free(p);
}

int fs_pins_wants(const char *req)
{
	return !strncmp(req, "pin ", 4) || !strncmp(req, "unpin ", 6) ||
	       !strcmp(req, "pins") || !strncmp(req, "evict ", 6);
}

/* ---- output ---- */

/* Sends all of s; false once the client is gone or stopped reading. */
static bool say(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len > 0) {
		ssize_t r = send(fd, s, len, MSG_NOSIGNAL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		s += r;
		len -= (size_t)r;
	}
	return true;
}

/* A path as one protocol field: control characters (a newline in a name
 * would end the line) become '?'. */
static void field(char *out, size_t cap, const char *path)
{
	size_t i;

	for (i = 0; path[i] && i + 1 < cap; i++)
		out[i] = (unsigned char)path[i] < 0x20 ? '?' : path[i];
	out[i] = '\0';
}

static const char *err_name(int err)
{
	const char *n = strerrorname_np(err);

	return n ? n : "EIO";
}

static void fail(struct pin_job *j, int err, const char *path,
                 const char *why)
{
	struct pin_fail *f = calloc(1, sizeof(*f));

	if (!f)
		return;
	f->err = err;
	f->path = strdup(path);
	f->why = strdup(why ? why : strerror(err));
	pthread_mutex_lock(&j->lock);
	f->next = j->fails;
	j->fails = f;
	j->nfails++;
	pthread_mutex_unlock(&j->lock);
}

static void fails_free(struct pin_job *j)
{
	while (j->fails) {
		struct pin_fail *f = j->fails;

		j->fails = f->next;
		free(f->path);
		free(f->why);
		free(f);
	}
}

/* Sends the failures, oldest first. */
static void fails_send(struct pin_job *j)
{
	struct pin_fail *rev = NULL;
	char line[DMS_CTL_LINE_MAX], p[4200], w[1024];

	while (j->fails) {
		struct pin_fail *f = j->fails;

		j->fails = f->next;
		f->next = rev;
		rev = f;
	}
	j->fails = rev;
	for (struct pin_fail *f = j->fails; f; f = f->next) {
		field(p, sizeof(p), f->path);
		field(w, sizeof(w), f->why);
		snprintf(line, sizeof(line), "fail %s %s\t%s\n", err_name(f->err),
		         p, w);
		if (!say(j->fd, line))
			break;
	}
}

/* ---- who asks ---- */

/* The caller as the ACL sees a process of uid: its primary group and the
 * supplementary groups the user database gives uid (as a login would). */
static void caller_of(struct fs_caller *c, uid_t uid, gid_t gid)
{
	char buf[16384];
	struct passwd pw, *res = NULL;
	int n = FS_MAX_GROUPS;

	memset(c, 0, sizeof(*c));
	c->ac.uid = uid;
	c->ac.gid = gid;
	c->ac.groups = c->groups;
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) != 0 || !res)
		return;
	c->ac.gid = pw.pw_gid;
	if (getgrouplist(pw.pw_name, pw.pw_gid, c->groups, &n) < 0)
		n = FS_MAX_GROUPS;   /* more than fit: the first ones */
	c->ac.ngroups = n;
}

/* Whether the mount at mnt lets other users in (allow_other in its
 * super options, /proc/self/mountinfo). */
static bool allows_others(const char *mnt)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	bool yes = false;

	while (f && getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], *sep = strstr(line, " - ");

		if (!sep || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		dms_mountinfo_unescape(mp);
		if (!strcmp(mp, mnt))
			yes = strstr(sep, "allow_other") != NULL; /* the last wins */
	}
	free(line);
	if (f)
		fclose(f);
	return yes;
}

/* Without access rules the kernel checks mode bits (default_permissions):
 * a caller who is neither root nor the mount's owner reads what others
 * may read. */
static bool mode_lets(const struct pin_job *j, const struct xfer_attr *a)
{
	bool dir = (a->mode & S_IFMT) == S_IFDIR;

	if (j->root || j->fs->access || j->uid == geteuid())
		return true;
	return dir ? (a->mode & (S_IROTH | S_IXOTH)) == (S_IROTH | S_IXOTH)
	           : (a->mode & S_IROTH) != 0;
}

static int may(struct pin_job *j, const char *path, unsigned want)
{
	return j->root ? 0 : fs_access_check(j->fs->access, &j->caller, path,
	                                     want);
}

/* ---- the walk ---- */

/* Attributes and route of path from its parent's listing (origin only:
 * pending writes are local already). */
static int pin_stat(struct fs *fs, const char *path, struct xfer_attr *a,
                    struct fs_route *r)
{
	struct fs_dir *d = NULL;
	const struct fs_dirent *e;
	char *parent = NULL;
	int rc;

	memset(a, 0, sizeof(*a));
	memset(r, 0, sizeof(*r));
	rc = fs_exports_route(fs->exports, path, r);
	if (rc)
		goto out;
	if (r->kind != FS_ROUTE_SOURCE || !strcmp(r->inner, "/")) {
		a->mode = S_IFDIR;
		goto out;
	}
	parent = fs_path_parent(path);
	rc = parent ? fs_meta_dir(fs->meta, parent, &d) : -ENOMEM;
	if (rc)
		goto out;
	e = fs_dir_find(d, fs_path_base(path));
	if (e)
		*a = e->attr;
	else
		rc = -ENOENT;
out:
	fs_dir_put(d);
	free(parent);
	return rc;
}

static int add_file(struct pin_job *j, const char *path,
                    const struct xfer_attr *a, const struct fs_route *r)
{
	struct pin_file *pf;

	if (j->n == j->cap) {
		size_t nc = j->cap ? j->cap * 2 : 64;
		void *v = realloc(j->files, nc * sizeof(*j->files));

		if (!v)
			return -ENOMEM;
		j->files = v;
		j->cap = nc;
	}
	pf = &j->files[j->n];
	memset(pf, 0, sizeof(*pf));
	pf->path = strdup(path);
	pf->f = fs_file_new(path, r, a, j->fs->cfg->block_size);
	if (!pf->path || !pf->f) {
		free(pf->path);
		fs_file_put(pf->f);
		return -ENOMEM;
	}
	pf->nchunks = (a->size + j->chunk - 1) / j->chunk;
	atomic_init(&pf->left, pf->nchunks);
	atomic_init(&pf->err, 0);
	j->n++;
	j->bytes += a->size;
	return 0;
}

static void listing_fail(struct pin_job *j, const char *path, int rc,
                         const struct fs_route *r)
{
	char why[4400];

	if (rc == -EIO || rc == -EHOSTDOWN || rc == -ETIMEDOUT) {
		snprintf(why, sizeof(why), "listing %s%s: %s",
		         r && r->kind == FS_ROUTE_SOURCE ? r->tree : "",
		         r && r->kind == FS_ROUTE_SOURCE ? r->inner : "",
		         strerror(-rc));
		fail(j, EIO, path, why);
	} else {
		fail(j, -rc, path, NULL);
	}
}

/* Adds path (a directory, which the caller may read) and everything
 * below it that the caller may see. */
static int walk_dir(struct pin_job *j, const char *path, int depth)
{
	struct fs *fs = j->fs;
	struct fs_dir *d = NULL;
	struct fs_route r = { 0 };
	int rc;

	if (atomic_load(&j->cancel))
		return -ECANCELED;
	if (depth > PIN_DEPTH_MAX) {
		fail(j, ELOOP, path, "too deep");
		return 0;
	}
	rc = fs_exports_route(fs->exports, path, &r);
	if (rc == 0 && r.kind == FS_ROUTE_SOURCE) {
		rc = fs_meta_dir(fs->meta, path, &d);
	} else if (rc == 0 && r.kind == FS_ROUTE_VIRTUAL) {
		rc = fs_dir_virtual(fs->exports, path, NULL, fs->started, &d);
	} else if (rc == 0) {
		/* Users' areas: the caller's own (root: each of them). */
		char buf[4096];
		struct passwd pw, *res = NULL;
		bool known = getpwuid_r(j->uid, &pw, buf, sizeof(buf), &res) == 0
		             && res;

		rc = fs_dir_virtual(fs->exports, path, known ? pw.pw_name : "",
		                    fs->started, &d);
	}
	if (rc) {
		listing_fail(j, path, rc, &r);
		return 0;
	}
	for (size_t i = 0; i < d->count && rc == 0; i++) {
		const struct fs_dirent *e = &d->ents[i];
		char *child = fs_path_join(path, e->name);
		struct fs_route cr;

		if (!child) {
			rc = -ENOMEM;
			break;
		}
		/* Names the caller may not see are neither pinned nor
		 * named in an answer. */
		if (!j->root && !fs_access_visible(fs->access, &j->caller, child)) {
			free(child);
			continue;
		}
		if (may(j, child, ACL_READ) != 0 || !mode_lets(j, &e->attr)) {
			fail(j, EACCES, child, NULL);
		} else if ((e->attr.mode & S_IFMT) == S_IFDIR ||
		           r.kind != FS_ROUTE_SOURCE) {
			rc = walk_dir(j, child, depth + 1);
		} else if (fs_exports_route(fs->exports, child, &cr) == 0) {
			rc = add_file(j, child, &e->attr, &cr);
		}
		free(child);
	}
	fs_dir_put(d);
	return rc;
}

/* Adds one path named in the request. */
static int walk(struct pin_job *j, const char *path)
{
	struct xfer_attr a;
	struct fs_route r;
	int rc;

	if (!fs_path_normalized(path)) {
		fail(j, EINVAL, path, "not a normalized absolute path in the mount");
		return 0;
	}
	/* As a lookup would: invisible is denied, never "absent". */
	if (may(j, path, 0) != 0) {
		fail(j, EACCES, path, NULL);
		return 0;
	}
	rc = pin_stat(j->fs, path, &a, &r);
	if (rc) {
		listing_fail(j, path, rc, &r);
		return 0;
	}
	if (may(j, path, ACL_READ) != 0 || !mode_lets(j, &a)) {
		fail(j, EACCES, path, NULL);
		return 0;
	}
	if ((a.mode & S_IFMT) == S_IFDIR)
		return walk_dir(j, path, 0);
	return add_file(j, path, &a, &r);
}

/* ---- the reservation ---- */

/* Refuses (said on fd) a pin past the cap, else records a pin per file.
 * 0, 1 (refused), or -errno. */
static int reserve(struct pin_job *j)
{
	struct cache *cache = j->fs->cache;
	struct cache_stats st;
	uint64_t need = 0, freed = 0;
	char line[256];
	int rc = 0;

	pthread_mutex_lock(&j->p->lock);
	for (size_t i = 0; i < j->n; i++) {
		struct cache_pin_info pi;
		struct fs_file *f = j->files[i].f;

		if (cache_pin_get(cache, fs_file_identity(f), &pi) == 0) {
			if (pi.size == f->attr.size &&
			    !memcmp(pi.fid.id, f->fid.id, sizeof(pi.fid.id)))
				continue;
			freed += pi.size;
		}
		need += f->attr.size;
	}
	cache_get_stats(cache, &st);
	if (need > freed && st.pinned_size + (need - freed) > st.cap) {
		snprintf(line, sizeof(line), "refused %llu %llu %llu\n",
		         (unsigned long long)(need - freed),
		         (unsigned long long)st.pinned_size,
		         (unsigned long long)st.cap);
		say(j->fd, line);
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < j->n && rc == 0; i++) {
		struct fs_file *f = j->files[i].f;

		rc = cache_pin_set(cache, fs_file_identity(f), (uint32_t)j->uid,
		                   &f->fid, f->attr.size);
	}
out:
	pthread_mutex_unlock(&j->p->lock);
	return rc;
}

/* ---- the fetch ---- */

static bool take(struct pin_job *j, size_t *fi, uint64_t *chunk)
{
	bool got = false;

	pthread_mutex_lock(&j->lock);
	while (j->next_file < j->n && !atomic_load(&j->cancel)) {
		struct pin_file *pf = &j->files[j->next_file];

		if (j->next_chunk < pf->nchunks && !atomic_load(&pf->err)) {
			*fi = j->next_file;
			*chunk = j->next_chunk++;
			got = true;
			break;
		}
		j->next_file++;
		j->next_chunk = 0;
	}
	pthread_mutex_unlock(&j->lock);
	return got;
}

static void chunk_failed(struct pin_job *j, struct pin_file *pf, int rc)
{
	int none = 0;
	char why[4400];

	if (!atomic_compare_exchange_strong(&pf->err, &none, rc))
		return;
	atomic_fetch_add(&j->files_failed, 1);
	if (rc == -EIO || rc == -EHOSTDOWN || rc == -ETIMEDOUT || rc == -ESTALE) {
		/* The identity is "tree\npath": show the source's URL. */
		snprintf(why, sizeof(why), "reading %.*s%s: %s",
		         (int)strcspn(fs_file_identity(pf->f), "\n"),
		         fs_file_identity(pf->f), pf->f->inner, strerror(-rc));
		fail(j, rc == -ESTALE ? ESTALE : EIO, pf->path, why);
	} else {
		fail(j, -rc, pf->path, NULL);
	}
}

static void do_chunk(struct pin_job *j, struct pin_file *pf, uint64_t chunk)
{
	struct fs *fs = j->fs;
	struct fs_file *f = pf->f;
	uint64_t bs = fs->cfg->block_size, off = chunk * j->chunk;
	size_t len = (size_t)(f->attr.size - off < j->chunk ?
	                      f->attr.size - off : j->chunk);
	uint64_t first = off / bs, last = (off + len - 1) / bs, missing = 0;
	struct fs_pin pin;
	int rc;

	for (uint64_t i = first; i <= last; i++) {
		size_t bl = fs_block_len(i, f->attr.size, bs);

		if (!cache_block_has(fs->cache, &f->fid, i, bl))
			missing += bl;
	}
	if (missing) {
		rc = fs_blocks_pin(fs->blocks, f, off, len, &pin);
		if (rc) {
			chunk_failed(j, pf, rc);
			return;
		}
		fs_blocks_unpin(fs->blocks, &pin);
		atomic_fetch_add(&j->fetched, missing);
	}
	atomic_fetch_add(&j->bytes_done, len);
	if (atomic_fetch_sub(&pf->left, 1) == 1 && !atomic_load(&pf->err))
		atomic_fetch_add(&j->files_done, 1);
}

static void *worker(void *arg)
{
	struct pin_job *j = arg;
	size_t fi;
	uint64_t chunk;

	while (take(j, &fi, &chunk))
		do_chunk(j, &j->files[fi], chunk);
	return NULL;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool progress(struct pin_job *j)
{
	char line[256];

	snprintf(line, sizeof(line), "progress %llu %llu %llu %llu %llu\n",
	         (unsigned long long)atomic_load(&j->files_done),
	         (unsigned long long)j->n,
	         (unsigned long long)atomic_load(&j->bytes_done),
	         (unsigned long long)j->bytes,
	         (unsigned long long)atomic_load(&j->fetched));
	return say(j->fd, line);
}

/* Whether the client hung up (it sends nothing after its request). */
static bool client_gone(int fd, int wait_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };

	return poll(&p, 1, wait_ms) > 0 && p.revents;
}

/* Runs the workers until they finish, streaming progress; stops them when
 * the client goes away. */
static void fetch_all(struct pin_job *j)
{
	pthread_t t[PIN_WORKERS];
	unsigned nt = 0;
	uint64_t chunks = 0;
	int64_t next = mono_ms();

	for (size_t i = 0; i < j->n; i++) {
		chunks += j->files[i].nchunks;
		if (j->files[i].nchunks == 0)
			atomic_fetch_add(&j->files_done, 1);
	}
	while (nt < PIN_WORKERS && nt < chunks &&
	       pthread_create(&t[nt], NULL, worker, j) == 0)
		nt++;
	if (chunks && nt == 0)
		worker(j);   /* no thread to be had: do it here */
	for (;;) {
		bool done;

		pthread_mutex_lock(&j->lock);
		done = j->next_file >= j->n;
		pthread_mutex_unlock(&j->lock);
		if (done || atomic_load(&j->cancel))
			break;
		if (client_gone(j->fd, 100)) {
			dms_log(LOG_INFO, "pin by uid %u: the client went away; "
			        "stopping", (unsigned)j->uid);
			atomic_store(&j->cancel, true);
			break;
		}
		if (mono_ms() >= next) {
			if (!progress(j))
				atomic_store(&j->cancel, true);
			next = mono_ms() + PIN_PROGRESS_MS;
		}
	}
	for (unsigned i = 0; i < nt; i++)
		pthread_join(t[i], NULL);
	/* Stored before the answer: `dmsctl pins` then says 100%. */
	cache_flush(j->fs->cache);
}

/* ---- requests ---- */

/* Reads n path lines (after the request line) into a NULL-terminated
 * malloc'd vector; NULL on a malformed request. */
static char **read_paths(int fd, unsigned long n, const char *more,
                         size_t have)
{
	size_t cap = have + 4096, len = have, k = 0;
	char *buf = malloc(cap + 1), **v = calloc(n + 1, sizeof(*v));
	char *s;

	if (!buf || !v || n > PIN_PATHS_MAX)
		goto bad;
	memcpy(buf, more, have);
	for (;;) {
		size_t lines = 0;

		for (size_t i = 0; i < len; i++)
			lines += buf[i] == '\n';
		if (lines >= n)
			break;
		if (len == cap) {
			char *nb;

			if (cap > (size_t)n * (PATH_MAX + 1) + 4096)
				goto bad;
			cap *= 2;
			nb = realloc(buf, cap + 1);
			if (!nb)
				goto bad;
			buf = nb;
		}
		{
			struct pollfd p = { .fd = fd, .events = POLLIN };
			ssize_t r;

			if (poll(&p, 1, 5000) != 1)
				goto bad;
			r = read(fd, buf + len, cap - len);
			if (r <= 0)
				goto bad;
			len += (size_t)r;
		}
	}
	buf[len] = '\0';
	s = buf;
	for (k = 0; k < n; k++) {
		/* memchr, not strchr: a NUL a caller put inside a line must
		 * not hide its newline. */
		char *nl = memchr(s, '\n', (size_t)(buf + len - s));

		if (!nl || memchr(s, '\0', (size_t)(nl - s)))
			goto bad;
		*nl = '\0';
		v[k] = strdup(s);
		if (!v[k])
			goto bad;
		s = nl + 1;
	}
	free(buf);
	return v;
bad:
	for (k = 0; v && v[k]; k++)
		free(v[k]);
	free(v);
	free(buf);
	return NULL;
}

static void free_paths(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static void job_end(struct pin_job *j)
{
	struct pin_job **pp;

	pthread_mutex_lock(&j->p->lock);
	for (pp = &j->p->jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	pthread_mutex_unlock(&j->p->lock);
	for (size_t i = 0; i < j->n; i++) {
		fs_file_put(j->files[i].f);
		free(j->files[i].path);
	}
	free(j->files);
	fails_free(j);
	pthread_mutex_destroy(&j->lock);
}

/* Enters j among the running jobs (fs_pins_cancel stops it); false, said
 * on its connection, if the mount is stopping. */
static bool job_start(struct fs_pins *p, struct pin_job *j)
{
	bool ok;

	pthread_mutex_lock(&p->lock);
	ok = !p->stopping;
	if (ok) {
		j->next = p->jobs;
		p->jobs = j;
	}
	pthread_mutex_unlock(&p->lock);
	if (!ok)
		say(j->fd, "error the mount is stopping\n");
	return ok;
}

/* Walks every path of the request as the caller: 0 or -errno. */
static int walk_paths(struct fs_pins *p, struct pin_job *j, char **paths)
{
	int rc = 0;

	/* The kernel keeps other users out of a mount without allow_other. */
	if (!j->root && j->uid != geteuid() &&
	    !allows_others(p->fs->cfg->mountpoint)) {
		for (size_t i = 0; paths[i]; i++)
			fail(j, EACCES, paths[i], "the mount does not allow "
			     "other users (allow_other)");
		return 0;
	}
	for (size_t i = 0; paths[i] && rc == 0; i++)
		rc = walk(j, paths[i]);
	return rc;
}

static void serve_pin(struct fs_pins *p, struct pin_job *j, char **paths)
{
	char line[256];
	int rc = 0;

	if (!job_start(p, j))
		return;
	rc = walk_paths(p, j, paths);
	if (rc == 0 && !atomic_load(&j->cancel)) {
		snprintf(line, sizeof(line), "walk %zu %llu\n", j->n,
		         (unsigned long long)j->bytes);
		say(j->fd, line);
		rc = reserve(j);
	}
	if (rc == 0 && !atomic_load(&j->cancel))
		fetch_all(j);
	if (rc < 0)
		fail(j, -rc, "/", "pin stopped");
	if (rc == 1)
		return;
	if (atomic_load(&j->cancel))
		fail(j, ECANCELED, "/", "interrupted; run it again to resume");
	progress(j);
	fails_send(j);
	snprintf(line, sizeof(line), "done %llu %zu %llu %llu %u\n",
	         (unsigned long long)atomic_load(&j->files_done), j->n,
	         (unsigned long long)atomic_load(&j->bytes_done),
	         (unsigned long long)atomic_load(&j->fetched), j->nfails);
	say(j->fd, line);
}

/* dmsctl evict: the walk of a pin (the caller's rights), then each file's
 * blocks dropped (fs/evict.c). */
static void serve_evict(struct fs_pins *p, struct pin_job *j, char **paths)
{
	uint64_t files = 0, freed = 0;
	char line[256];
	int rc;

	if (!job_start(p, j))
		return;
	rc = walk_paths(p, j, paths);
	for (size_t i = 0; rc == 0 && i < j->n && !atomic_load(&j->cancel);
	     i++) {
		struct pin_file *pf = &j->files[i];
		uint64_t n = 0;
		int e = fs_evict_file(j->fs, pf->path, pf->f, &n);

		if (e == -EBUSY) {
			fail(j, EBUSY, pf->path, "pinned; dmsctl unpin it first");
		} else if (e) {
			fail(j, -e, pf->path, NULL);
		} else {
			files++;
			freed += n;
		}
	}
	if (rc < 0)
		fail(j, -rc, "/", "evict stopped");
	else if (atomic_load(&j->cancel))
		fail(j, ECANCELED, "/", "interrupted (the mount is stopping)");
	if (files)
		dms_log(LOG_INFO, "evict by uid %u: %llu bytes of %llu files "
		        "dropped from the cache", (unsigned)j->uid,
		        (unsigned long long)freed, (unsigned long long)files);
	fails_send(j);
	snprintf(line, sizeof(line), "done %llu %llu %u\n",
	         (unsigned long long)files, (unsigned long long)freed,
	         j->nfails);
	say(j->fd, line);
}

static bool under(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);

	if (n == 1 && prefix[0] == '/')
		return true;
	return strncmp(p, prefix, n) == 0 && (p[n] == '/' || !p[n]);
}

/* The path in the mount of a pin key ("tree\npath", blocks.c). */
static const char *key_path(const char *key)
{
	const char *nl = strchr(key, '\n');

	return nl ? nl + 1 : key;
}

struct unpin_walk {
	struct cache *cache;
	uid_t uid;
	const char *path;
	uint64_t n, bytes;
	int err;
};

static int unpin_one(void *arg, const struct cache_pin_info *pi)
{
	struct unpin_walk *u = arg;

	if (!under(key_path(pi->key), u->path) ||
	    (u->uid != 0 && pi->uid != u->uid))
		return 0;
	if (cache_pin_del(u->cache, pi->key) == 0) {
		u->n++;
		u->bytes += pi->size;
	}
	return 0;
}

static void serve_unpin(struct pin_job *j, char **paths)
{
	uint64_t n = 0, bytes = 0;
	char line[256];

	for (size_t i = 0; paths[i]; i++) {
		struct unpin_walk u = {
			.cache = j->fs->cache, .uid = j->uid, .path = paths[i],
		};
		int rc = fs_path_normalized(paths[i])
		         ? cache_pin_foreach(j->fs->cache, unpin_one, &u) : -EINVAL;

		if (rc)
			fail(j, -rc, paths[i], NULL);
		else if (u.n == 0)
			fail(j, ENOENT, paths[i], j->uid ? "nothing you pinned "
			     "is there" : "nothing pinned there");
		n += u.n;
		bytes += u.bytes;
	}
	fails_send(j);
	snprintf(line, sizeof(line), "done %llu %llu %u\n",
	         (unsigned long long)n, (unsigned long long)bytes, j->nfails);
	say(j->fd, line);
}

struct pins_walk {
	int fd;
	uid_t uid;
	uint64_t n, size, cached;
};

static int pins_one(void *arg, const struct cache_pin_info *pi)
{
	struct pins_walk *w = arg;
	char line[DMS_CTL_LINE_MAX], p[4200];

	if (w->uid != 0 && pi->uid != w->uid)
		return 0;
	w->n++;
	w->size += pi->size;
	w->cached += pi->cached;
	field(p, sizeof(p), key_path(pi->key));
	snprintf(line, sizeof(line), "pin %u %llu %llu %s\n", pi->uid,
	         (unsigned long long)pi->size,
	         (unsigned long long)pi->cached, p);
	return say(w->fd, line) ? 0 : -EPIPE;
}

static void serve_pins(struct pin_job *j)
{
	struct pins_walk w = { .fd = j->fd, .uid = j->uid };
	struct cache_stats st;
	char line[256];

	cache_flush(j->fs->cache);
	if (cache_pin_foreach(j->fs->cache, pins_one, &w) != 0)
		return;
	cache_get_stats(j->fs->cache, &st);
	snprintf(line, sizeof(line), "total %llu %llu %llu %llu %llu\n.\n",
	         (unsigned long long)w.n, (unsigned long long)w.size,
	         (unsigned long long)w.cached,
	         (unsigned long long)st.pinned_size,
	         (unsigned long long)st.cap);
	say(j->fd, line);
}

void fs_pins_serve(struct fs_pins *p, int fd, uid_t uid, gid_t gid,
                   const char *req, const char *more, size_t n)
{
	struct timeval tmo = { .tv_sec = PIN_SEND_TIMEOUT_S };
	struct pin_job *j = calloc(1, sizeof(*j));
	char **paths = NULL;
	unsigned long count = 0;
	char *end;

	if (!j)
		return;
	j->p = p;
	j->fs = p->fs;
	j->fd = fd;
	j->uid = uid;
	j->root = uid == 0;
	j->chunk = p->fs->cfg->block_size > PIN_CHUNK_BYTES
	           ? p->fs->cfg->block_size
	           : PIN_CHUNK_BYTES / p->fs->cfg->block_size *
	             p->fs->cfg->block_size;
	pthread_mutex_init(&j->lock, NULL);
	caller_of(&j->caller, uid, gid);
	/* A client that stops reading must not hold the pin forever. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof(tmo));
	if (!strcmp(req, "pins")) {
		serve_pins(j);
		goto out;
	}
	errno = 0;
	count = strtoul(strchr(req, ' ') + 1, &end, 10);
	if (errno || *end || count == 0 ||
	    !(paths = read_paths(fd, count, more, n))) {
		say(fd, "error malformed request\n");
		goto out;
	}
	if (!strncmp(req, "unpin ", 6))
		serve_unpin(j, paths);
	else if (!strncmp(req, "evict ", 6))
		serve_evict(p, j, paths);
	else
		serve_pin(p, j, paths);
out:
	free_paths(paths);
	job_end(j);
	free(j);
}
