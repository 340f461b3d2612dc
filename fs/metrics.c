/* The metrics of a running mount (fs/metrics.h).  Families are declared
 * once each ("family" line) and followed by their samples, which
 * common/prom.c renders with a mount label. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/prom.h"
#include "fs/metrics.h"
#include "fs/ops_i.h"

struct fs_metrics {
	struct fs *fs;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;          /* guarded by lock */
	int last_err;           /* the last write's -errno, logged once */
};

static void family(FILE *out, const char *name, const char *type,
                   const char *help)
{
	fprintf(out, "family\t%s\t%s\t%s\n", name, type, help);
}

/* A label value: tabs and newlines would break the line format ('?'). */
static void put_label(FILE *out, const char *key, const char *val)
{
	fprintf(out, "\t%s=", key);
	for (; *val; val++)
		fputc(*val == '\t' || *val == '\n' ? '?' : *val, out);
}

/* A family of one sample without labels. */
static void scalar(FILE *out, const char *name, const char *type,
                   const char *help, unsigned long long v)
{
	family(out, name, type, help);
	fprintf(out, "sample\t%s\t%llu\n", name, v);
}

/* One source's labels: export, source URL, protocol. */
static void source_labels(FILE *out, const char *exp,
                          const struct xfer_source_info *si)
{
	put_label(out, "export", exp);
	put_label(out, "source", si->url);
	put_label(out, "protocol", si->protocol ? si->protocol : "?");
}

/* Shared exports' sources, in the order of the probe list; per-user
 * exports have a set of sources per user and are left out. */
struct src_walk {
	struct fs *fs;
	size_t i, j;            /* export, source: the next one */
	const char *exp;
	struct xfer_source_info si;
};

static void walk_start(struct src_walk *w, struct fs *fs)
{
	memset(w, 0, sizeof(*w));
	w->fs = fs;
}

static bool next_source(struct src_walk *w)
{
	const char *name, *path;
	struct fs_route r;

	while (fs_exports_probe_list(w->fs->exports, w->i, &name, &path,
	                             &r) == 0) {
		if (r.xfer && xfer_source_info(r.xfer, w->j, &w->si) == 0) {
			w->exp = name;
			w->j++;
			return true;
		}
		w->i++;
		w->j = 0;
	}
	return false;
}

/* The per-source counters that are one number each. */
static const struct src_family {
	const char *name, *type, *help;
	size_t off;             /* of the uint64_t in xfer_source_info */
} src_families[] = {
	{ "dmsfs_fetched_bytes_total", "counter",
	  "File bytes read from a source.",
	  offsetof(struct xfer_source_info, bytes) },
	{ "dmsfs_source_requests_total", "counter",
	  "Calls (stat, list, read) sent to a source, failed ones too.",
	  offsetof(struct xfer_source_info, requests) },
	{ "dmsfs_source_failovers_total", "counter",
	  "Calls that failed on a source and moved on to the next one.",
	  offsetof(struct xfer_source_info, failovers) },
	{ "dmsfs_source_down_total", "counter",
	  "Failures that took a source out for a back-off period.",
	  offsetof(struct xfer_source_info, failures) },
};

/* One sample of a source's series; extra: one more label or NULL. */
static void source_sample(FILE *out, const char *name, unsigned long long v,
                          const struct src_walk *w, const char *key,
                          const char *val)
{
	fprintf(out, "sample\t%s\t%llu", name, v);
	source_labels(out, w->exp, &w->si);
	if (key)
		put_label(out, key, val);
	fputc('\n', out);
}

static void put_sources(FILE *out, struct fs *fs)
{
	const struct src_family *f;
	struct src_walk w;
	unsigned k;

	for (f = src_families; f < src_families + sizeof(src_families) /
	     sizeof(src_families[0]); f++) {
		family(out, f->name, f->type, f->help);
		for (walk_start(&w, fs); next_source(&w);) {
			uint64_t v;

			memcpy(&v, (const char *)&w.si + f->off, sizeof(v));
			source_sample(out, f->name, v, &w, NULL, NULL);
		}
	}
	family(out, "dmsfs_source_errors_total", "counter",
	       "Failed calls to a source by kind of failure.");
	for (walk_start(&w, fs); next_source(&w);)
		for (k = 0; k < XFER_ERR_KINDS; k++)
			source_sample(out, "dmsfs_source_errors_total",
			              w.si.errors[k], &w, "kind",
			              xfer_err_kind_name(k));
	family(out, "dmsfs_source_up", "gauge",
	       "1 while a source is in use, 0 while it is taken out.");
	for (walk_start(&w, fs); next_source(&w);)
		source_sample(out, "dmsfs_source_up", !w.si.down, &w, NULL,
		              NULL);
	family(out, "dmsfs_request_duration_seconds", "histogram",
	       "Duration of calls to a source, retries included.");
	for (walk_start(&w, fs); next_source(&w);) {
		unsigned long long cum = 0;
		char le[32];

		for (k = 0; k <= XFER_LAT_BUCKETS; k++) {
			cum += w.si.lat[k];
			if (k < XFER_LAT_BUCKETS)
				snprintf(le, sizeof(le), "%g",
				         xfer_lat_bounds[k]);
			else
				snprintf(le, sizeof(le), "+Inf");
			source_sample(out, "dmsfs_request_duration_seconds_"
			              "bucket", cum, &w, "le", le);
		}
		fprintf(out, "sample\tdmsfs_request_duration_seconds_sum\t"
		        "%llu.%06llu", (unsigned long long)w.si.lat_sum_us
		        / 1000000, (unsigned long long)w.si.lat_sum_us % 1000000);
		source_labels(out, w.exp, &w.si);
		fputc('\n', out);
		source_sample(out, "dmsfs_request_duration_seconds_count", cum,
		              &w, NULL, NULL);
	}
}

struct pending {
	unsigned long long ops, uploads, bytes;
};

static int count_pending(void *arg, uint64_t seq,
                         const struct cache_jnl_op *op)
{
	struct pending *p = arg;

	(void)seq;
	p->ops++;
	if (op->kind == CACHE_JNL_WRITE) {
		p->uploads++;
		p->bytes += op->size;
	}
	return 0;
}

void fs_metrics_answer(void *arg, FILE *out)
{
	struct fs *fs = arg;
	struct fs_blocks_stats bs = { 0 };
	struct cache_stats cs = { 0 };
	struct acl_stats as;

	if (fs->cache)
		cache_get_stats(fs->cache, &cs);
	if (fs->blocks)
		fs_blocks_stats(fs->blocks, &bs);
	fs_access_stats(fs->access, &as);
	scalar(out, "dmsfs_cache_hits_total", "counter",
	       "Blocks read from the cache.", bs.from_cache);
	scalar(out, "dmsfs_cache_misses_total", "counter",
	       "Blocks not in the cache, fetched from the sources.",
	       bs.fetched);
	scalar(out, "dmsfs_cache_hit_bytes_total", "counter",
	       "Bytes of the blocks read from the cache.",
	       bs.from_cache_bytes);
	scalar(out, "dmsfs_cache_miss_bytes_total", "counter",
	       "Bytes of the blocks fetched from the sources.",
	       bs.fetched_bytes);
	scalar(out, "dmsfs_cache_size_bytes", "gauge",
	       "Block bytes stored in the cache now.", cs.bytes);
	scalar(out, "dmsfs_cache_capacity_bytes", "gauge",
	       "The cache's cap (cache_size).", fs->cfg->cache_size);
	scalar(out, "dmsfs_cache_blocks", "gauge",
	       "Blocks stored now.", cs.blocks);
	scalar(out, "dmsfs_cache_pinned_bytes", "gauge",
	       "Block bytes of pinned files stored now.", cs.pinned);
	scalar(out, "dmsfs_cache_evictions_total", "counter",
	       "Blocks evicted to keep the cache under its cap.", cs.evicted);
	scalar(out, "dmsfs_cache_checksum_errors_total", "counter",
	       "Cached blocks dropped for a bad checksum or length.",
	       cs.corrupt);
	scalar(out, "dmsfs_access_denials_total", "counter",
	       "Requests refused by the access rules.", as.denials);
	if (fs->exports)
		put_sources(out, fs);
	if (fs->jnl) {
		struct pending p = { 0 };

		cache_jnl_foreach(fs->jnl, count_pending, &p);
		scalar(out, "dmsfs_pending_operations", "gauge",
		       "Changes waiting to be sent to the origin.", p.ops);
		scalar(out, "dmsfs_pending_uploads", "gauge",
		       "File uploads waiting to be sent to the origin.",
		       p.uploads);
		scalar(out, "dmsfs_pending_upload_bytes", "gauge",
		       "Bytes of the file uploads waiting.", p.bytes);
	}
}

/* Writes the Prometheus text of m's mount to PATH.tmp in PATH's folder and
 * renames it over PATH, so the collector never reads half a file.  0 or
 * -errno. */
static int write_file(struct fs_metrics *m)
{
	const struct fs_config *cfg = m->fs->cfg;
	char *ans = NULL, *text = NULL, tmp[PATH_MAX];
	size_t alen = 0, tlen = 0;
	struct dms_prom_src src;
	FILE *f;
	int fd = -1, rc = 0;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", cfg->metrics_file) >=
	    (int)sizeof(tmp))
		return -ENAMETOOLONG;
	f = open_memstream(&ans, &alen);
	if (!f)
		return -ENOMEM;
	fs_metrics_answer(m->fs, f);
	if (fclose(f) != 0) {
		rc = -ENOMEM;
		goto out;
	}
	f = open_memstream(&text, &tlen);
	if (!f) {
		rc = -ENOMEM;
		goto out;
	}
	src.mount = cfg->mountpoint;
	src.answer = ans;
	rc = dms_prom_render(f, &src, 1);
	if (fclose(f) != 0 && !rc)
		rc = -ENOMEM;
	if (rc)
		goto out;
	/* The folder may be open to others (node_exporter's is often
	 * group-writable): whatever stands at the temporary name (a symlink,
	 * a FIFO that would block, a hard link to another file) is removed,
	 * and only a file made here is written. */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	          0644);
	f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		rc = -errno;
		goto out;
	}
	fd = -1;        /* f's now */
	errno = EIO;
	if (fwrite(text, 1, tlen, f) != tlen) {
		rc = -errno;
		fclose(f);
		goto out_unlink;
	}
	if (fclose(f) != 0) {
		rc = -errno;
		goto out_unlink;
	}
	if (rename(tmp, cfg->metrics_file) != 0) {
		rc = -errno;
		goto out_unlink;
	}
	goto out;
out_unlink:
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(ans);
	free(text);
	return rc;
}

static void *writer_main(void *arg)
{
	struct fs_metrics *m = arg;
	struct timespec until;
	int rc;

	pthread_mutex_lock(&m->lock);
	while (!m->stopping) {
		pthread_mutex_unlock(&m->lock);
		rc = write_file(m);
		if (rc && rc != m->last_err)
			dms_log(LOG_WARNING, "cannot write metrics_file %s: %s",
			        m->fs->cfg->metrics_file, strerror(-rc));
		else if (!rc && m->last_err)
			dms_log(LOG_NOTICE, "metrics_file %s written again",
			        m->fs->cfg->metrics_file);
		m->last_err = rc;
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += m->fs->cfg->metrics_interval;
		pthread_mutex_lock(&m->lock);
		while (!m->stopping &&
		       pthread_cond_timedwait(&m->cond, &m->lock, &until) == 0)
			;
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int fs_metrics_start(struct fs_metrics **out, struct fs *fs)
{
	struct fs_metrics *m;
	pthread_condattr_t ca;
	int rc;

	*out = NULL;
	if (!fs->cfg->metrics_file)
		return 0;
	m = calloc(1, sizeof(*m));
	if (!m) {
		rc = -ENOMEM;
		goto fail;
	}
	m->fs = fs;
	pthread_mutex_init(&m->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	rc = -pthread_create(&m->thread, NULL, writer_main, m);
	if (rc)
		goto fail_sync;
	*out = m;
	return 0;
fail_sync:
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
fail:
	dms_log(LOG_WARNING, "metrics_file %s will not be written: %s",
	        fs->cfg->metrics_file, strerror(-rc));
	return rc;
}

void fs_metrics_stop(struct fs_metrics *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stopping = true;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	free(m);
}
