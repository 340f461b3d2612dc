/* The FUSE low-level operations and the mount's life cycle.
 *
 * Kernel caching: entries and attributes are given a timeout of meta_ttl, so
 * the kernel asks again once dmsfs would revalidate.  Pages are kept across
 * opens (keep_cache) unless the file's size, mtime or ETag changed since the
 * kernel last saw it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/fs_i.h"

struct fs {
	const struct fs_config *cfg;
	struct cache *cache;
	struct xfer *xfer;
	struct fs_meta *meta;
	struct fs_blocks *blocks;
	struct fs_inodes *inodes;
	double ttl;
};

/* One open file.  Read-ahead state is per handle: a sequential reader gets a
 * window that doubles up to cfg->readahead; a random reader gets none, so it
 * pays only for the blocks it touches. */
struct fs_handle {
	struct fs_file *file;
	pthread_mutex_t lock;
	uint64_t next_off;   /* where a sequential reader reads next; guarded by lock */
	uint64_t ra_next;    /* first block not yet queued for read-ahead; guarded by lock */
	uint64_t window;     /* read-ahead window in blocks; guarded by lock */
};

static struct fs *req_fs(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static int64_t wall_now(void)
{
	return (int64_t)time(NULL);
}

static void fill_stat(const struct fs *fs, uint64_t ino,
                      const struct xfer_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	if ((a->mode & S_IFMT) == S_IFDIR) {
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)a->size;
		st->st_blocks = (blkcnt_t)((a->size + 511) / 512);
	}
	st->st_blksize = (blksize_t)fs->cfg->block_size;
	st->st_mtime = st->st_ctime = st->st_atime = (time_t)a->mtime;
}

/* Brings the attributes of ino up to date when older than meta_ttl, from its
 * parent's listing.  Copies path (if asked; caller frees) and attr out. */
static int node_attr(struct fs *fs, uint64_t ino, char **path_out,
                     struct xfer_attr *attr)
{
	char *path = NULL, *parent = NULL;
	struct fs_dir *d = NULL;
	const struct fs_dirent *e;
	int64_t validated, now = wall_now();
	int rc;

	rc = fs_inodes_get(fs->inodes, ino, &path, attr, &validated);
	if (rc)
		goto out;
	if (ino == FUSE_ROOT_ID || now - validated < (int64_t)fs->cfg->meta_ttl)
		goto out;
	parent = fs_path_parent(path);
	if (!parent) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fs_meta_dir(fs->meta, parent, &d);
	if (rc)
		goto out;
	e = fs_dir_find(d, fs_path_base(path));
	if (!e) {
		rc = -ENOENT;
		goto out;
	}
	*attr = e->attr;
	fs_inodes_update(fs->inodes, ino, attr, now);
out:
	fs_dir_put(d);
	free(parent);
	if (rc == 0 && path_out) {
		*path_out = path;
		path = NULL;
	}
	free(path);
	return rc;
}

static void fill_entry(struct fs *fs, uint64_t ino, const struct xfer_attr *a,
                       struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = 1;
	e->attr_timeout = fs->ttl;
	e->entry_timeout = fs->ttl;
	fill_stat(fs, ino, a, &e->attr);
}

static void fs_op_init(void *userdata, struct fuse_conn_info *conn)
{
	if (conn->capable & FUSE_CAP_AUTO_INVAL_DATA)
		conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* Readers' requests should be large: fewer round trips per block. */
	conn->max_read = 0;
}

static void fs_op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fs *fs = req_fs(req);
	struct fuse_entry_param e;
	struct fs_dir *d = NULL;
	const struct fs_dirent *ent;
	char *dir = NULL, *path = NULL;
	uint64_t ino;
	int rc;

	if (strlen(name) > 255) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	rc = fs_inodes_get(fs->inodes, parent, &dir, NULL, NULL);
	if (rc)
		goto out;
	rc = fs_meta_dir(fs->meta, dir, &d);
	if (rc)
		goto out;
	ent = fs_dir_find(d, name);
	if (!ent) {
		/* A negative entry: the kernel remembers the miss for meta_ttl. */
		memset(&e, 0, sizeof(e));
		e.entry_timeout = fs->ttl;
		fuse_reply_entry(req, &e);
		goto out;
	}
	path = fs_path_join(dir, name);
	if (!path) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fs_inodes_lookup(fs->inodes, path, &ent->attr, d->validated, &ino);
	if (rc)
		goto out;
	fill_entry(fs, ino, &ent->attr, &e);
	if (fuse_reply_entry(req, &e) != 0)
		fs_inodes_forget(fs->inodes, ino, 1);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	fs_dir_put(d);
	free(dir);
	free(path);
}

static void fs_op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	fs_inodes_forget(req_fs(req)->inodes, ino, nlookup);
	fuse_reply_none(req);
}

static void fs_op_forget_multi(fuse_req_t req, size_t count,
                               struct fuse_forget_data *forgets)
{
	struct fs *fs = req_fs(req);
	size_t i;

	for (i = 0; i < count; i++)
		fs_inodes_forget(fs->inodes, forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void fs_op_getattr(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct xfer_attr a;
	struct stat st;
	int rc = node_attr(fs, ino, NULL, &a);

	if (rc) {
		fuse_reply_err(req, -rc);
		return;
	}
	fill_stat(fs, ino, &a, &st);
	fuse_reply_attr(req, &st, fs->ttl);
}

static void fs_op_opendir(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_dir *d = NULL;
	char *path = NULL;
	int rc;

	rc = fs_inodes_get(fs->inodes, ino, &path, NULL, NULL);
	if (rc)
		goto out;
	rc = fs_meta_dir(fs->meta, path, &d);
	if (rc)
		goto out;
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) != 0)
		fs_dir_put(d);
out:
	if (rc)
		fuse_reply_err(req, -rc);
	free(path);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
	struct fs *fs = req_fs(req);
	struct fs_dir *d = (struct fs_dir *)(uintptr_t)fi->fh;
	char *buf = malloc(size), *dir = NULL, *path = NULL;
	size_t used = 0;
	uint64_t i;
	int rc = 0;

	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	if (plus) {
		rc = fs_inodes_get(fs->inodes, ino, &dir, NULL, NULL);
		if (rc)
			goto out;
	}
	for (i = (uint64_t)off; i < d->count + 2; i++) {
		const char *name = i == 0 ? "." : i == 1 ? ".." : d->ents[i - 2].name;
		struct fuse_entry_param e;
		size_t need;

		memset(&e, 0, sizeof(e));
		if (i < 2) {
			/* No attributes (ino 0 in the entry) but a visible inode
			 * number: readdir callers skip entries whose d_ino is 0. */
			e.attr.st_mode = S_IFDIR;
			e.attr.st_ino = i == 0 ? ino : FUSE_ROOT_ID;
		} else {
			const struct xfer_attr *a = &d->ents[i - 2].attr;

			e.attr.st_mode = (a->mode & S_IFMT) == S_IFDIR ? S_IFDIR : S_IFREG;
		}
		need = plus ? fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0)
		            : fuse_add_direntry(req, NULL, 0, name, NULL, 0);
		if (used + need > size)
			break;
		if (plus && i >= 2) {
			const struct xfer_attr *a = &d->ents[i - 2].attr;
			uint64_t child;

			free(path);
			path = fs_path_join(dir, name);
			if (!path) {
				rc = -ENOMEM;
				goto out;
			}
			rc = fs_inodes_lookup(fs->inodes, path, a, d->validated, &child);
			if (rc)
				goto out;
			fill_entry(fs, child, a, &e);
		}
		if (plus)
			fuse_add_direntry_plus(req, buf + used, size - used, name, &e,
			                       (off_t)(i + 1));
		else
			fuse_add_direntry(req, buf + used, size - used, name, &e.attr,
			                  (off_t)(i + 1));
		used += need;
	}
out:
	if (rc && used == 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, buf, used);
	free(buf);
	free(dir);
	free(path);
}

static void fs_op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size,
                          off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void fs_op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
                              off_t off, struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, true);
}

static void fs_op_releasedir(fuse_req_t req, fuse_ino_t ino,
                             struct fuse_file_info *fi)
{
	fs_dir_put((struct fs_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void fs_op_open(fuse_req_t req, fuse_ino_t ino,
                       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = NULL;
	struct xfer_attr a;
	char *path = NULL;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) {
		rc = -EROFS;
		goto out;
	}
	rc = node_attr(fs, ino, &path, &a);
	if (rc)
		goto out;
	if ((a.mode & S_IFMT) == S_IFDIR) {
		rc = -EISDIR;
		goto out;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		rc = -ENOMEM;
		goto out;
	}
	h->file = fs_file_new(path, &a, fs->cfg->block_size);
	if (!h->file) {
		rc = -ENOMEM;
		goto out;
	}
	pthread_mutex_init(&h->lock, NULL);
	fi->fh = (uintptr_t)h;
	fi->keep_cache = !fs_inodes_take_changed(fs->inodes, ino);
	if (fuse_reply_open(req, fi) != 0) {
		pthread_mutex_destroy(&h->lock);
		goto out;
	}
	h = NULL;
out:
	if (rc)
		fuse_reply_err(req, -rc);
	if (h) {
		fs_file_put(h->file);
		free(h);
	}
	free(path);
}

/* Grows or resets the read-ahead window and queues the blocks after this
 * read.  Kernel read-ahead sends requests slightly out of order, so "near the
 * last end" counts as sequential. */
static void read_ahead(struct fs *fs, struct fs_handle *h, uint64_t off,
                       size_t len)
{
	uint64_t bs = fs->cfg->block_size, max = fs->cfg->readahead / bs;
	uint64_t last = fs_block_index(off + len - 1, bs), first, count = 0;
	uint64_t slack = 2 * bs;

	pthread_mutex_lock(&h->lock);
	if (off + slack >= h->next_off && off <= h->next_off + slack) {
		h->window = h->window ? h->window * 2 : 2;
		if (h->window > max)
			h->window = max;
	} else {
		h->window = 0;
		h->ra_next = 0;
	}
	if (off + len > h->next_off)
		h->next_off = off + len;
	first = h->ra_next > last + 1 ? h->ra_next : last + 1;
	if (h->window && last + 1 + h->window > first) {
		count = last + 1 + h->window - first;
		h->ra_next = first + count;
	}
	pthread_mutex_unlock(&h->lock);
	if (count)
		fs_blocks_prefetch(fs->blocks, h->file, first, count);
}

static void fs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	struct fs *fs = req_fs(req);
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;
	struct fs_file *f = h->file;
	char *buf = NULL;
	size_t len;
	int rc = 0;

	if (off < 0 || (uint64_t)off >= f->attr.size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	len = f->attr.size - (uint64_t)off < size ? (size_t)(f->attr.size - (uint64_t)off)
	                                          : size;
	read_ahead(fs, h, (uint64_t)off, len);
	buf = malloc(len);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = fs_blocks_read(fs->blocks, f, (uint64_t)off, len, buf);
	if (rc == -ESTALE) {
		char *parent = fs_path_parent(f->path);

		dms_log(LOG_WARNING, "%s changed at the source while open; "
		        "reopen it to read the new version", f->path);
		if (parent)
			fs_meta_expire(fs->meta, parent);
		free(parent);
		rc = -EIO;
	} else if (rc == -EHOSTDOWN || rc == -ENOENT) {
		rc = -EIO;
	}
	if (rc == 0)
		fuse_reply_buf(req, buf, len);
out:
	if (rc) {
		dms_log(LOG_ERR, "read of %s at %lld (%zu bytes) failed: %s",
		        f->path, (long long)off, len, strerror(-rc));
		fuse_reply_err(req, -rc);
	}
	free(buf);
}

static void fs_op_release(fuse_req_t req, fuse_ino_t ino,
                          struct fuse_file_info *fi)
{
	struct fs_handle *h = (struct fs_handle *)(uintptr_t)fi->fh;

	fs_file_put(h->file);
	pthread_mutex_destroy(&h->lock);
	free(h);
	fuse_reply_err(req, 0);
}

static void fs_op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct fs *fs = req_fs(req);
	struct statvfs sv;

	memset(&sv, 0, sizeof(sv));
	sv.f_bsize = sv.f_frsize = (unsigned long)fs->cfg->block_size;
	sv.f_namemax = 255;
	fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops fs_ops = {
	.init = fs_op_init,
	.lookup = fs_op_lookup,
	.forget = fs_op_forget,
	.forget_multi = fs_op_forget_multi,
	.getattr = fs_op_getattr,
	.opendir = fs_op_opendir,
	.readdir = fs_op_readdir,
	.readdirplus = fs_op_readdirplus,
	.releasedir = fs_op_releasedir,
	.open = fs_op_open,
	.read = fs_op_read,
	.release = fs_op_release,
	.statfs = fs_op_statfs,
};

static void write_stats(const struct fs *fs)
{
	struct cache_stats st;
	char path[4096];
	FILE *f;

	cache_get_stats(fs->cache, &st);
	dms_log(LOG_INFO, "cache: %llu bytes in %llu blocks, %llu hits, %llu "
	        "misses, %llu corrupt, %llu evicted, %llu dropped",
	        (unsigned long long)st.bytes, (unsigned long long)st.blocks,
	        (unsigned long long)st.hits, (unsigned long long)st.misses,
	        (unsigned long long)st.corrupt, (unsigned long long)st.evicted,
	        (unsigned long long)st.dropped);
	if (snprintf(path, sizeof(path), "%s/stats", fs->cfg->cache_dir) >=
	    (int)sizeof(path))
		return;
	f = fopen(path, "w");
	if (!f)
		return;
	fprintf(f, "bytes=%llu blocks=%llu hits=%llu misses=%llu corrupt=%llu "
	        "evicted=%llu dropped=%llu\n",
	        (unsigned long long)st.bytes, (unsigned long long)st.blocks,
	        (unsigned long long)st.hits, (unsigned long long)st.misses,
	        (unsigned long long)st.corrupt, (unsigned long long)st.evicted,
	        (unsigned long long)st.dropped);
	fclose(f);
}

static void detach_stdio(void)
{
	int fd = open("/dev/null", O_RDWR);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

int fs_run(struct fs_config *cfg, int ready_fd)
{
	struct fs fs = { .cfg = cfg, .ttl = cfg->meta_ttl };
	struct cache_opts copts = {
		.dir = cfg->cache_dir, .max_bytes = cfg->cache_size,
	};
	struct xfer_opts xopts = {
		.connect_timeout_ms = (long)cfg->connect_timeout * 1000,
		.stall_timeout_s = (long)cfg->stall_timeout,
		.max_listing_bytes = (size_t)cfg->max_listing,
		.proxy = cfg->proxy,
		.gridftp_streams = (int)cfg->gridftp_streams,
		.verbose = cfg->debug,
	};
	struct fuse_session *se = NULL;
	struct fuse_loop_config *loop = NULL;
	struct xfer_attr root;
	char ok = 0;
	int rc, status = 1;

	rc = cache_open(&fs.cache, &copts);
	if (rc) {
		dms_log(LOG_ERR, "cannot use cache_dir %s: %s", cfg->cache_dir,
		        strerror(-rc));
		goto out;
	}
	rc = xfer_open(&fs.xfer, cfg->sources, &xopts);
	if (rc) {
		dms_log(LOG_ERR, "cannot use %s: %s", cfg->sources, strerror(-rc));
		goto out;
	}
	rc = fs_meta_init(&fs.meta, fs.cache, fs.xfer, cfg->meta_ttl, 1000000);
	if (rc)
		goto out;
	rc = fs_meta_root(fs.meta, &root);
	if (rc) {
		dms_log(LOG_ERR, "cannot mount %s: %s", cfg->sources,
		        rc == -EHOSTDOWN || rc == -EIO
		        ? "origin unreachable and nothing cached" : strerror(-rc));
		goto out;
	}
	rc = fs_inodes_init(&fs.inodes, &root);
	if (rc)
		goto out;
	rc = fs_blocks_init(&fs.blocks, fs.cache, fs.xfer, cfg->block_size,
	                    cfg->mem_size, cfg->fetchers);
	if (rc)
		goto out;
	se = fuse_session_new(&cfg->args, &fs_ops, sizeof(fs_ops), &fs);
	if (!se) {
		dms_log(LOG_ERR, "cannot mount %s: invalid FUSE options",
		        cfg->mountpoint);
		goto out;
	}
	if (fuse_set_signal_handlers(se) != 0)
		goto out;
	if (fuse_session_mount(se, cfg->mountpoint) != 0) {
		dms_log(LOG_ERR, "cannot mount on %s", cfg->mountpoint);
		goto out_signals;
	}
	dms_log(LOG_INFO, "mounted %s on %s", cfg->sources, cfg->mountpoint);
	if (ready_fd >= 0) {
		if (write(ready_fd, &ok, 1) != 1)
			goto out_unmount;
		close(ready_fd);
		ready_fd = -1;
	}
	if (!cfg->foreground) {
		dms_log_to_syslog("dmsfs");
		detach_stdio();
	}
	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(loop, cfg->max_threads);
	fuse_loop_cfg_set_clone_fd(loop, 0);
	/* A positive result is the signal that ended the loop: a clean stop. */
	status = fuse_session_loop_mt(se, loop) >= 0 ? 0 : 1;
	fuse_loop_cfg_destroy(loop);
out_unmount:
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	if (se)
		fuse_session_destroy(se);
	fs_blocks_destroy(fs.blocks);
	fs_inodes_destroy(fs.inodes);
	fs_meta_destroy(fs.meta);
	if (fs.cache) {
		cache_flush(fs.cache);
		write_stats(&fs);
		cache_close(fs.cache);
	}
	if (fs.xfer)
		xfer_close(fs.xfer);
	if (ready_fd >= 0)
		close(ready_fd);
	return status;
}
