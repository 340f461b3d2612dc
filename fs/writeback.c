/* The uploader: see writeback.h. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/writeback.h"

#define BACKOFF_MIN 1
#define BACKOFF_MAX 60
/* Uploads whose folder is relisted once for all of them (see settle_add). */
#define SETTLE_MAX 256

/* Operation flag on a WRITE: it replaces our own earlier upload, so there
 * is no origin version to check (overlay.c sets it). */
#define WB_CHAINED 1u
/* Operation flag on a RENAME: a folder is moved (overlay.c sets it). */
#define WB_RENAME_DIR 0x100u

#define CONFLICTS_KEPT 64

struct fs_wb {
	struct fs_wb_conf c;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;                /* guarded by lock */
	bool kicked;              /* guarded by lock */
	int64_t flush_until;      /* guarded by lock; 0: not flushing */
	int64_t hurry_until;      /* guarded by lock: dmsctl sync */
	/* thread-only state */
	unsigned backoff;         /* seconds; 0 when the last try worked */
	int64_t retry_at;
	int last_err;             /* for logging once per state change */
	bool blocked;             /* stopped at an op not ready / failed */
	/* Uploaded files of one folder waiting for its listing (thread-only):
	 * one relist for a run of uploads instead of one per upload, which
	 * made uploading n files into a folder cost O(n^2) listed entries. */
	char *settle_dir;
	char *settle[SETTLE_MAX];
	size_t nsettle;
	/* The last conflicts, for dmsctl status (the log has them all). */
	struct fs_wb_conflict conflicts[CONFLICTS_KEPT];  /* guarded by lock */
	unsigned nconflicts;                  /* total so far; lock */
};

struct put_src {
	struct fs_wb *wb;
	uint64_t file_id, size;
};

static int64_t now_s(void)
{
	return (int64_t)time(NULL);
}

/* Unmount is waiting and its unmount_flush time is over. */
static bool flush_over(struct fs_wb *wb)
{
	bool over;

	pthread_mutex_lock(&wb->lock);
	over = wb->stop && now_s() >= wb->flush_until;
	pthread_mutex_unlock(&wb->lock);
	return over;
}

/* An upload still going when unmount_flush runs out is cut here (the
 * transfer aborts and removes its temporary): unmount must not wait for a
 * 10 GiB upload.  It stays pending for the next mount. */
static ssize_t put_read(void *arg, void *buf, size_t cap, uint64_t off)
{
	struct put_src *s = arg;

	if (flush_over(s->wb))
		return -ECANCELED;
	if (off >= s->size)
		return 0;
	if (cap > s->size - off)
		cap = (size_t)(s->size - off);
	return cache_jnl_pread(s->wb->c.jnl, s->file_id, buf, cap, off);
}

static bool transient(int rc)
{
	return rc == -EHOSTDOWN || rc == -ENOSPC || rc == -EDQUOT ||
	       rc == -EIO || rc == -ETIMEDOUT || rc == -EAGAIN ||
	       rc == -ENOMEM || rc == -ECONNREFUSED;
}

static void changed(struct fs_wb *wb, const char *path)
{
	if (wb->c.changed)
		wb->c.changed(wb->c.changed_arg, path);
}

/* Refetches the listing of path's parent, so that what the overlay stops
 * showing next is shown by the origin listing (settle: and drops the
 * uploaded file's entry if the listing shows it). */
static void relist(struct fs_wb *wb, const char *path, bool expire,
                   bool settle)
{
	char *parent = fs_path_parent(path);
	struct fs_dir *d = NULL;
	const struct fs_dirent *e;

	if (!parent || !wb->c.meta)
		goto out;
	if (expire)
		fs_meta_expire(wb->c.meta, parent);
	if (fs_meta_dir(wb->c.meta, parent, &d) == 0 && settle) {
		e = fs_dir_find(d, fs_path_base(path));
		if (e)
			fs_ov_settle(wb->c.ov, path, &e->attr);
	}
	if (settle)
		changed(wb, path);
out:
	fs_dir_put(d);
	free(parent);
}

/* Relists the folder of the uploads waiting in wb->settle and drops the
 * overlay entries the listing now shows.  Until then those entries keep
 * showing our bytes (their staged files are held by the overlay), and
 * the folder's cached listing is already expired, so nothing shows the
 * old state in between. */
static void settle_flush(struct fs_wb *wb)
{
	struct fs_dir *d = NULL;
	const struct fs_dirent *e;
	size_t i;

	/* Expired again: a reader may have fetched the folder while one of
	 * the uploads still had its temporary there. */
	if (wb->nsettle && wb->c.meta)
		fs_meta_expire(wb->c.meta, wb->settle_dir);
	if (wb->nsettle && wb->c.meta &&
	    fs_meta_dir(wb->c.meta, wb->settle_dir, &d) == 0) {
		for (i = 0; i < wb->nsettle; i++) {
			e = fs_dir_find(d, fs_path_base(wb->settle[i]));
			if (e)
				fs_ov_settle(wb->c.ov, wb->settle[i], &e->attr);
		}
	}
	fs_dir_put(d);
	for (i = 0; i < wb->nsettle; i++) {
		changed(wb, wb->settle[i]);
		free(wb->settle[i]);
	}
	wb->nsettle = 0;
	free(wb->settle_dir);
	wb->settle_dir = NULL;
}

/* An upload of path is done: its folder's listing is expired now (a
 * lookup meanwhile fetches it fresh) and relisted with the next uploads
 * of the same folder.  Falls back to relisting at once if out of memory. */
static void settle_add(struct fs_wb *wb, const char *path)
{
	char *parent = fs_path_parent(path);
	char *p = strdup(path);

	if (!parent || !p || !wb->c.meta) {
		relist(wb, path, true, true);
		goto out;
	}
	if (wb->nsettle && (wb->nsettle == SETTLE_MAX ||
	                    strcmp(wb->settle_dir, parent) != 0))
		settle_flush(wb);
	fs_meta_expire(wb->c.meta, parent);
	if (!wb->settle_dir) {
		wb->settle_dir = parent;
		parent = NULL;
	}
	wb->settle[wb->nsettle++] = p;
	p = NULL;
out:
	free(p);
	free(parent);
}

/* Whether the origin's (cached, just refreshed) listing shows path. */
static bool shown(void *arg, const char *path)
{
	struct fs_wb *wb = arg;
	char *parent = fs_path_parent(path);
	struct fs_dir *d = NULL;
	bool yes = false;

	if (!wb->c.meta)
		yes = true;
	else if (parent && fs_meta_dir(wb->c.meta, parent, &d) == 0)
		yes = fs_dir_find(d, fs_path_base(path)) != NULL;
	fs_dir_put(d);
	free(parent);
	return yes;
}

/* inner + suffix into out, the last name cut (at a UTF-8 character
 * boundary) so that it stays within NAME_MAX: a conflict copy of a long
 * name must not fail for ever on the origin's name limit. */
static int conflict_name(const char *inner, const char *suffix, char *out,
                         size_t cap)
{
	const char *base = strrchr(inner, '/') + 1;
	size_t dlen = (size_t)(base - inner), blen = strlen(base);
	size_t room = NAME_MAX - strlen(suffix);

	if (blen > room) {
		blen = room;
		while (blen > 0 && ((unsigned char)base[blen] & 0xC0) == 0x80)
			blen--;
	}
	if (dlen + blen + strlen(suffix) + 1 > cap)
		return -ENAMETOOLONG;
	snprintf(out, cap, "%.*s%.*s%s", (int)dlen, inner, (int)blen, base,
	         suffix);
	return 0;
}

static void note_conflict(struct fs_wb *wb, const struct cache_jnl_op *op,
                          const char *ours)
{
	struct fs_wb_conflict *c;

	pthread_mutex_lock(&wb->lock);
	c = &wb->conflicts[wb->nconflicts++ % CONFLICTS_KEPT];
	c->when = now_s();
	c->uid = op->uid;
	snprintf(c->path, sizeof(c->path), "%s", op->path);
	snprintf(c->ours, sizeof(c->ours), "%s", ours);
	pthread_mutex_unlock(&wb->lock);
}

void fs_wb_conflicts(struct fs_wb *wb,
                     void (*fn)(void *arg, const struct fs_wb_conflict *c),
                     void *arg)
{
	struct fs_wb_conflict *copy;
	unsigned n, first, i;

	if (!wb)
		return;
	copy = malloc(sizeof(wb->conflicts));
	if (!copy)
		return;
	pthread_mutex_lock(&wb->lock);
	n = wb->nconflicts < CONFLICTS_KEPT ? wb->nconflicts : CONFLICTS_KEPT;
	first = wb->nconflicts - n;
	for (i = 0; i < n; i++)
		copy[i] = wb->conflicts[(first + i) % CONFLICTS_KEPT];
	pthread_mutex_unlock(&wb->lock);
	for (i = 0; i < n; i++)
		fn(arg, &copy[i]);
	free(copy);
}

static int do_write(struct fs_wb *wb, struct xfer *x, const char *inner,
                    const struct cache_jnl_op *op, struct xfer_attr *res)
{
	struct put_src s = { wb, op->file_id, op->size };
	struct xfer_attr expect;
	char host[256], name[4096], stamp[32], suffix[128];
	const struct xfer_attr *ex = NULL;
	struct tm tm;
	time_t t;
	int rc;

	memset(&expect, 0, sizeof(expect));
	if (!(op->flags & WB_CHAINED)) {
		if (op->base_present) {
			expect.size = op->base_size;
			expect.mtime = op->base_mtime;
			snprintf(expect.etag, sizeof(expect.etag), "%s",
			         op->base_etag ? op->base_etag : "");
		} else {
			expect.size = XFER_EXPECT_ABSENT;
		}
		ex = &expect;
	}
	rc = xfer_put(x, inner, put_read, &s, op->size, op->mtime_sec, ex, res);
	if (rc != -ESTALE)
		return rc;
	/* Someone changed the origin's file: keep theirs, ours beside it. */
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	t = time(NULL);
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%S", &tm);
	snprintf(suffix, sizeof(suffix), ".conflict-%.64s-%s", host, stamp);
	rc = conflict_name(inner, suffix, name, sizeof(name));
	if (rc)
		return rc;
	rc = xfer_put(x, name, put_read, &s, op->size, op->mtime_sec, NULL, res);
	if (rc == 0) {
		dms_log(LOG_WARNING, "conflict: %s was changed at the origin since "
		        "this mount read it; theirs kept, ours uploaded as %s",
		        op->path, name);
		note_conflict(wb, op, strrchr(name, '/') + 1);
		relist(wb, op->path, true, false);
		rc = 1;     /* done, but ours is not at path */
	}
	return rc;
}

/* A MKCOL or MKD refused because the name exists is our folder made
 * already (a replay) only if the origin holds a folder there: a file
 * someone made meanwhile must not swallow our pending tree.  0 or
 * -ENOTDIR (logged), or the stat's error. */
static int mkdir_exists(struct xfer *x, const char *path, const char *inner)
{
	struct xfer_attr a;
	int rc = xfer_stat(x, inner, &a);

	if (rc == 0 && !S_ISDIR(a.mode)) {
		dms_log(LOG_ERR, "writeback: mkdir of %s: the origin holds a "
		        "file of that name, not a folder; kept pending with "
		        "everything under it", path);
		rc = -ENOTDIR;
	}
	return rc;
}

/* Where the bytes an operation leaves at cur go in the operations after
 * it (see dead_walk). */
struct fate {
	char cur[CACHE_JNL_PATH_MAX + 1];
	char next[CACHE_JNL_PATH_MAX + 1];
	bool replaced;           /* a later WRITE of cur took their place */
	bool dead;               /* cur (or a folder above) is deleted */
	bool unsure;             /* something else moved over cur */
};

static bool at_or_under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(path, dir, n) && (path[n] == '\0' || path[n] == '/' ||
	                                  !strcmp(dir, "/"));
}

static int fate_step(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct fate *f = arg;
	size_t n;

	(void)seq;
	switch (op->kind) {
	case CACHE_JNL_UNLINK:
	case CACHE_JNL_RMDIR:
		if (at_or_under(f->cur, op->path)) {
			f->dead = true;
			return 1;
		}
		break;
	case CACHE_JNL_WRITE:
		if (!strcmp(f->cur, op->path))
			f->replaced = true;
		break;
	case CACHE_JNL_RENAME:
		if (!op->path2)
			break;
		if (at_or_under(f->cur, op->path)) {
			/* Moved along (itself or a folder above it). */
			n = strlen(op->path);
			if (snprintf(f->next, sizeof(f->next), "%s%s",
			             op->path2, f->cur + n) >= (int)sizeof(f->next)) {
				f->unsure = true;
				return 1;
			}
			memcpy(f->cur, f->next, sizeof(f->cur));
		} else if (at_or_under(f->cur, op->path2)) {
			f->unsure = true;
			return 1;
		}
		break;
	default:
		break;
	}
	return 0;
}

/* Whether the bytes that operation seq leaves at path can no longer reach
 * anyone at the origin: a later operation deletes them (following renames;
 * later rewrites of the same name too), or, when replaced_ok, a later WRITE
 * replaces them.  Walks the operations still pending after seq. */
static bool dead_walk(struct fs_wb *wb, uint64_t seq, const char *path,
                      bool replaced_ok)
{
	struct fate *f;
	bool dead = false;

	f = calloc(1, sizeof(*f));
	if (!f)
		return false;
	if (snprintf(f->cur, sizeof(f->cur), "%s", path) < (int)sizeof(f->cur) &&
	    cache_jnl_foreach_from(wb->c.jnl, seq + 1, fate_step, f) >= 0 &&
	    !f->unsure)
		dead = f->dead || (replaced_ok && f->replaced);
	free(f);
	return dead;
}

/* A WRITE whose bytes no one will see at the origin is not uploaded: it
 * is deleted later (WRITE a; RENAME a b; UNLINK b: the RENAME then finds
 * no a, see apply), or a later WRITE of the same name replaces it.  The
 * latter only when this WRITE has no origin version of its own to check
 * (chained): the first upload of a file keeps its conflict check. */
static bool skippable(struct fs_wb *wb, uint64_t seq,
                      const struct cache_jnl_op *op)
{
	/* The common case in one lookup: the file is still where its WRITE
	 * puts it, so nothing after it deleted or rewrote it. */
	if (op->kind != CACHE_JNL_WRITE ||
	    fs_ov_holds(wb->c.ov, op->path, op->file_id))
		return false;
	return dead_walk(wb, seq, op->path, (op->flags & WB_CHAINED) != 0);
}

/* Whether the file op uploaded has an mtime set since (its next WRITE, of
 * the same staged file, carries it): it then stays shown from the overlay
 * until that WRITE is uploaded too, not from the origin's older mtime. */
static bool newer_mtime(struct fs_wb *wb, const struct cache_jnl_op *op)
{
	struct fs_ov_info in;
	bool newer = false;

	if (fs_ov_stat(wb->c.ov, op->path, &in) == 0 && in.file) {
		newer = in.attr.mtime != op->mtime_sec;
		fs_ov_file_put(wb->c.ov, in.file);
	}
	return newer;
}

/* Replays one operation on the origin.  0 or 1 (done), else -errno. */
static int apply(struct fs_wb *wb, uint64_t seq, const struct cache_jnl_op *op)
{
	struct fs_route r, r2;
	struct xfer_attr res;
	int rc;

	memset(&res, 0, sizeof(res));
	/* Metadata operations see the listings the uploads before them left. */
	if (op->kind != CACHE_JNL_WRITE)
		settle_flush(wb);
	rc = fs_exports_route(wb->c.exports, op->path, &r);
	if (rc == 0 && r.kind != FS_ROUTE_SOURCE)
		rc = -EPERM;
	if (rc)
		return rc;
	switch (op->kind) {
	case CACHE_JNL_WRITE:
		rc = do_write(wb, r.xfer, r.inner, op, &res);
		if (rc == 0) {
			/* The listing forgets first: a replayed file's
			 * entry goes at once, and it must then be listed
			 * (settle_add expires it; the next lookup fetches). */
			settle_add(wb, op->path);
			if (!newer_mtime(wb, op))
				fs_ov_uploaded(wb->c.ov, op->path, op->file_id,
				               &res);
		}
		break;
	case CACHE_JNL_MKDIR:
		rc = xfer_mkdir(r.xfer, r.inner);
		if (rc == -EEXIST)
			rc = mkdir_exists(r.xfer, op->path, r.inner);
		break;
	case CACHE_JNL_RMDIR:
		rc = xfer_rmdir(r.xfer, r.inner);
		if (rc == -ENOENT)
			rc = 0;
		break;
	case CACHE_JNL_UNLINK:
		rc = xfer_unlink(r.xfer, r.inner, NULL);
		if (rc == -ENOENT)
			rc = 0;
		break;
	case CACHE_JNL_RENAME:
		rc = fs_exports_route(wb->c.exports, op->path2, &r2);
		if (rc == 0 && (r2.kind != FS_ROUTE_SOURCE || r2.xfer != r.xfer))
			rc = -EXDEV;
		if (rc == 0) {
			fs_ov_applying(wb->c.ov, op);
			rc = xfer_rename(r.xfer, r.inner, r2.inner, 1, NULL);
			/* The file's upload was skipped (its bytes are
			 * deleted later): nothing to move.  What the rename
			 * would have replaced at path2 goes with that delete. */
			if (rc == -ENOENT && !(op->flags & WB_RENAME_DIR) &&
			    dead_walk(wb, seq, op->path2, false))
				rc = 0;
			if (rc < 0)
				fs_ov_applying(wb->c.ov, NULL);
		}
		if (rc == 0) {
			relist(wb, op->path2, true, false);
			if (wb->c.meta) {
				fs_meta_expire_under(wb->c.meta, op->path);
				fs_meta_expire_under(wb->c.meta, op->path2);
			}
		}
		break;
	case CACHE_JNL_SETATTR:
		/* Mode bits stay with dmsfs; an mtime where the protocol can. */
		if (op->flags & CACHE_JNL_SET_MTIME) {
			rc = xfer_set_mtime(r.xfer, r.inner, op->mtime_sec);
			if (rc == -ENOTSUP || rc == -ENOENT)
				rc = 0;
		}
		break;
	}
	if (rc >= 0) {
		/* A folder made or removed: no earlier listing there holds. */
		if ((op->kind == CACHE_JNL_MKDIR ||
		     op->kind == CACHE_JNL_RMDIR) && wb->c.meta)
			fs_meta_expire_under(wb->c.meta, op->path);
		if (op->kind != CACHE_JNL_WRITE)
			relist(wb, op->path, true, false);
		fs_ov_applied(wb->c.ov, seq, op, shown, wb);
		if (rc == 1)
			changed(wb, op->path);  /* a conflict: theirs shown */
	}
	return rc;
}

static const char *kind_name(enum cache_jnl_kind k)
{
	switch (k) {
	case CACHE_JNL_WRITE: return "upload";
	case CACHE_JNL_MKDIR: return "mkdir";
	case CACHE_JNL_RMDIR: return "rmdir";
	case CACHE_JNL_UNLINK: return "delete";
	case CACHE_JNL_RENAME: return "rename";
	case CACHE_JNL_SETATTR: return "setattr";
	}
	return "?";
}

static int step(void *arg, uint64_t seq, const struct cache_jnl_op *op)
{
	struct fs_wb *wb = arg;
	bool flushing, hurry;
	int64_t now = now_s();
	int rc;

	pthread_mutex_lock(&wb->lock);
	flushing = wb->flush_until != 0;
	hurry = now < wb->hurry_until;
	if (wb->stop && (!flushing || now >= wb->flush_until)) {
		pthread_mutex_unlock(&wb->lock);
		return 1;
	}
	pthread_mutex_unlock(&wb->lock);
	if (skippable(wb, seq, op)) {
		/* The operations that make it dead must outlive its DONE
		 * record (a power cut must not bring back the file without
		 * its bytes): they are synced first. */
		rc = cache_jnl_sync(wb->c.jnl);
		if (rc == 0)
			rc = cache_jnl_done(wb->c.jnl, seq);
		if (rc == 0) {
			dms_log(LOG_DEBUG, "writeback: upload of %s skipped: "
			        "deleted or replaced later", op->path);
			fs_ov_applied(wb->c.ov, seq, op, shown, wb);
			return 0;
		}
	}
	if ((op->kind == CACHE_JNL_WRITE &&
	     ((!flushing && !hurry &&
	       now - op->added < (int64_t)wb->c.delay) ||
	      !fs_ov_quiet(wb->c.ov, op->path))) ||
	    (op->kind != CACHE_JNL_MKDIR && op->kind != CACHE_JNL_SETATTR &&
	     !flushing && (fs_ov_read_under(wb->c.ov, op->path) ||
	                   (op->path2 &&
	                    fs_ov_read_under(wb->c.ov, op->path2))))) {
		wb->blocked = true;
		return 1;
	}
	rc = apply(wb, seq, op);
	if (rc >= 0) {
		if (wb->last_err)
			dms_log(LOG_NOTICE, "writeback: uploads go through again");
		wb->last_err = 0;
		wb->backoff = 0;
		cache_jnl_done(wb->c.jnl, seq);
		return 0;
	}
	cache_jnl_update(wb->c.jnl, seq, strerror(-rc));
	if (rc == -ECANCELED && flush_over(wb)) {
		dms_log(LOG_NOTICE, "writeback: %s of %s cut at unmount_flush; "
		        "kept for the next mount", kind_name(op->kind), op->path);
		return 1;
	}
	/* Every failure keeps the operation (nothing is dropped): an origin
	 * that is down or full, or one that refuses, may come round. */
	if (rc != wb->last_err)
		dms_log(transient(rc) ? LOG_WARNING : LOG_ERR, "writeback: %s of "
		        "%s failed: %s; kept pending, retrying",
		        kind_name(op->kind), op->path, strerror(-rc));
	wb->last_err = rc;
	wb->backoff = wb->backoff ? wb->backoff * 2 : BACKOFF_MIN;
	if (wb->backoff > BACKOFF_MAX)
		wb->backoff = BACKOFF_MAX;
	wb->retry_at = now + wb->backoff;
	wb->blocked = true;
	return 1;
}

static void *run(void *arg)
{
	struct fs_wb *wb = arg;
	struct cache_jnl_stats st;

	for (;;) {
		struct timespec ts;
		bool stop;

		pthread_mutex_lock(&wb->lock);
		stop = wb->stop;
		pthread_mutex_unlock(&wb->lock);
		if (!stop || now_s() < wb->flush_until) {
			wb->blocked = false;
			if (now_s() >= wb->retry_at || stop)
				cache_jnl_foreach(wb->c.jnl, step, wb);
			settle_flush(wb);
		}
		cache_jnl_stats(wb->c.jnl, &st);
		pthread_mutex_lock(&wb->lock);
		if (wb->stop && (st.ops == 0 || now_s() >= wb->flush_until)) {
			pthread_mutex_unlock(&wb->lock);
			break;
		}
		if (!wb->kicked) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 250 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&wb->cond, &wb->lock, &ts);
		}
		wb->kicked = false;
		pthread_mutex_unlock(&wb->lock);
		if (wb->stop && wb->backoff)
			sleep(1);
	}
	return NULL;
}

int fs_wb_start(struct fs_wb **out, const struct fs_wb_conf *c)
{
	struct fs_wb *wb = calloc(1, sizeof(*wb));
	int rc;

	if (!wb)
		return -ENOMEM;
	wb->c = *c;
	pthread_mutex_init(&wb->lock, NULL);
	pthread_cond_init(&wb->cond, NULL);
	rc = pthread_create(&wb->thread, NULL, run, wb);
	if (rc) {
		pthread_cond_destroy(&wb->cond);
		pthread_mutex_destroy(&wb->lock);
		free(wb);
		return -rc;
	}
	*out = wb;
	return 0;
}

void fs_wb_hurry(struct fs_wb *wb)
{
	if (!wb)
		return;
	pthread_mutex_lock(&wb->lock);
	wb->hurry_until = now_s() + 5;
	wb->retry_at = 0;
	wb->kicked = true;
	pthread_cond_signal(&wb->cond);
	pthread_mutex_unlock(&wb->lock);
}

void fs_wb_kick(struct fs_wb *wb)
{
	if (!wb)
		return;
	pthread_mutex_lock(&wb->lock);
	wb->kicked = true;
	pthread_cond_signal(&wb->cond);
	pthread_mutex_unlock(&wb->lock);
}

void fs_wb_stop(struct fs_wb *wb, unsigned flush)
{
	struct cache_jnl_stats st;

	if (!wb)
		return;
	pthread_mutex_lock(&wb->lock);
	wb->stop = true;
	wb->flush_until = now_s() + (int64_t)flush;
	wb->retry_at = 0;
	wb->kicked = true;
	pthread_cond_signal(&wb->cond);
	pthread_mutex_unlock(&wb->lock);
	pthread_join(wb->thread, NULL);
	cache_jnl_stats(wb->c.jnl, &st);
	if (st.ops)
		dms_log(LOG_WARNING, "%llu operations left pending for the next "
		        "mount", (unsigned long long)st.ops);
	pthread_cond_destroy(&wb->cond);
	pthread_mutex_destroy(&wb->lock);
	free(wb);
}
