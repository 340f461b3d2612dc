#ifndef DMS_FS_WRITEBACK_H
#define DMS_FS_WRITEBACK_H
/* The uploader of writable exports (issue 8), FUSE-free: one thread replays
 * the write journal on the origin strictly in sequence order and stops at
 * the first operation that is not ready (a WRITE younger than delay or still
 * being written) or that fails (retried with back-off, 1 s doubling to 60 s).
 * So an upload never overtakes the mkdir or rename it depends on. */
#include "fs/overlay.h"

struct fs_wb;

/* route(arg, path, &r): where a mount path is uploaded (fs_exports_route).
 * settle(arg, path): after an upload, relist the parent and let the overlay
 * drop what the origin now shows. */
struct fs_wb_conf {
	struct cache_jnl *jnl;
	struct fs_ov *ov;
	struct fs_exports *exports;
	struct fs_meta *meta;        /* may be NULL (unit tests) */
	unsigned delay;              /* writeback_delay, seconds */
	/* May be NULL.  Called by the uploader thread (no lock of its own
	 * held) when what path shows changed behind the kernel: an upload
	 * settled into the origin's file, or a conflict kept theirs there. */
	void (*changed)(void *arg, const char *path);
	void *changed_arg;
};

int fs_wb_start(struct fs_wb **out, const struct fs_wb_conf *c);
/* Stops the thread after uploading what it can within flush seconds
 * (ignoring delay); logs what is left pending. */
void fs_wb_stop(struct fs_wb *wb, unsigned flush);
/* dmsctl sync: for the next few seconds uploads do not wait for
 * writeback_delay. */
void fs_wb_hurry(struct fs_wb *wb);
/* A file changed at the origin since this mount read it: theirs kept,
 * ours uploaded beside it as ours (a name in the same folder). */
struct fs_wb_conflict {
	int64_t when;
	uid_t uid;               /* who wrote ours */
	char path[4096];         /* mount path */
	char ours[256];
};
/* Calls fn for the last conflicts of this mount, oldest first (a copy:
 * fn may take its time). */
void fs_wb_conflicts(struct fs_wb *wb,
                     void (*fn)(void *arg, const struct fs_wb_conflict *c),
                     void *arg);
/* Wakes the thread (new operation appended). */
void fs_wb_kick(struct fs_wb *wb);

#endif
