#ifndef DMS_FS_CTL_H
#define DMS_FS_CTL_H
/* The control socket's daemon side (protocol: fs/ctl_proto.h). */
#include "fs/writeback.h"

struct fs_ctl;

/* Listens on the mount's control socket (jnl and wb NULL: no writable
 * exports, nothing pending); a failure is logged and
 * returned (the mount goes on without it). */
int fs_ctl_start(struct fs_ctl **out, const char *mountpoint,
                 struct cache_jnl *jnl, struct fs_wb *wb);
/* Stops accepting, cancels running pins, ends every connection. */
void fs_ctl_stop(struct fs_ctl *c);
/* Serves pin, unpin and pins through p (fs/pin.h) from now on. */
struct fs_pins;
void fs_ctl_set_pins(struct fs_ctl *c, struct fs_pins *p);

#endif
