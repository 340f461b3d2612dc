/* The figures of a running mount for dmsctl status: the "info" answer of
 * the control socket (format: fs/ctl_proto.h).  It only reads counters
 * other modules keep; nothing here blocks on the network. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "fs/ops_i.h"

/* Tabs and newlines would break the line format: a URL or path holding
 * one is shown with '?' there. */
static void put_field(FILE *out, const char *s)
{
	for (; *s; s++)
		fputc(*s == '\t' || *s == '\n' ? '?' : *s, out);
}

static void put_sources(FILE *out, struct xfer *x)
{
	struct xfer_source_info si;
	size_t i;

	for (i = 0; xfer_source_info(x, i, &si) == 0; i++) {
		fputs("source\t", out);
		put_field(out, si.url);
		fprintf(out, "\t%s\t%lld\t%llu\t%llu\t%u\t%llu\t%lld\t",
		        si.down ? "down" : "up", (long long)si.retry_in_ms,
		        (unsigned long long)si.bytes,
		        (unsigned long long)si.requests, si.inflight,
		        (unsigned long long)si.failures,
		        si.last_err ? (long long)(time(NULL) - si.last_err_wall)
		                    : -1LL);
		if (si.last_err) {
			fprintf(out, "%s: ", si.last_op);
			put_field(out, si.last_why[0] ? si.last_why
			                               : strerror(-si.last_err));
			fputc('\n', out);
		}
		else
			fputs("-\n", out);
	}
}

void fs_status_info(void *arg, FILE *out)
{
	struct fs *fs = arg;
	struct fs_blocks_stats bs = { 0 };
	struct cache_stats cs = { 0 };
	struct mallinfo2 mi;
	const char *name, *path;
	struct fs_route r;
	size_t i;

	fputs("mount\t", out);
	put_field(out, fs->cfg->mountpoint);
	fputc('\n', out);
	for (i = 0; fs_exports_probe_list(fs->exports, i, &name, &path, &r) == 0;
	     i++) {
		fputs("export\t", out);
		put_field(out, name);
		fputc('\t', out);
		put_field(out, path);
		fprintf(out, "\t%s\t%s\t", r.writable ? "rw" : "ro",
		        r.xfer ? "shared" : "per-user");
		put_field(out, r.tree);
		fputc('\n', out);
		/* A per-user export's sources are one set per user: their
		 * figures are not summed here. */
		if (r.xfer)
			put_sources(out, r.xfer);
	}
	if (fs->cache)
		cache_get_stats(fs->cache, &cs);
	if (fs->blocks)
		fs_blocks_stats(fs->blocks, &bs);
	fprintf(out, "cache\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\t%llu\n",
	        (unsigned long long)cs.bytes,
	        (unsigned long long)fs->cfg->cache_size,
	        (unsigned long long)cs.pinned,
	        (unsigned long long)cs.blocks, (unsigned long long)bs.from_cache,
	        (unsigned long long)bs.fetched, (unsigned long long)cs.evicted);
	/* malloc's view: what is allocated, and what it holds from the
	 * system (heap and mmapped chunks), for telling memory in use from
	 * memory kept. */
	mi = mallinfo2();
	fprintf(out, "memory\t%llu\t%llu\t%u\t%llu\t%llu\n",
	        (unsigned long long)bs.mem_used, (unsigned long long)bs.mem_max,
	        bs.queued, (unsigned long long)(mi.uordblks + mi.hblkhd),
	        (unsigned long long)(mi.arena + mi.hblkhd));
}
