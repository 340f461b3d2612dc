#ifndef DMS_FS_CTL_H
#define DMS_FS_CTL_H
/* The control socket's daemon side (protocol: fs/ctl_proto.h). */
#include <stdio.h>

#include "fs/writeback.h"

struct fs_ctl;

/* Writes the "info" answer's lines (fs/ctl_proto.h), without the final
 * ".": called on the control thread while the mount runs. */
typedef void (*fs_ctl_info_fn)(void *arg, FILE *out);

/* Listens on the mount's control socket; a failure is logged and
 * returned (the mount goes on without it).  jnl and wb are NULL for a
 * mount without writable exports (nothing pending). */
int fs_ctl_start(struct fs_ctl **out, const char *mountpoint,
                 struct cache_jnl *jnl, struct fs_wb *wb,
                 fs_ctl_info_fn info, void *info_arg);
/* Stops accepting, cancels running pins, ends every connection. */
void fs_ctl_stop(struct fs_ctl *c);
/* Writes the "reload" answer's lines (fs/ctl_proto.h), without the final
 * ".", for a caller already known to be root or the mount's owner. */
typedef void (*fs_ctl_reload_fn)(void *arg, FILE *out);
void fs_ctl_set_reload(struct fs_ctl *c, fs_ctl_reload_fn fn, void *arg);
/* Serves pin, unpin, pins and evict through p (fs/pin.h) from now on. */
struct fs_pins;
void fs_ctl_set_pins(struct fs_ctl *c, struct fs_pins *p);

#endif
