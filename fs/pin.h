#ifndef DMS_FS_PIN_H
#define DMS_FS_PIN_H
/* The daemon side of dmsctl pin, unpin, pins and evict (protocol:
 * fs/ctl_proto.h; evict walks as a pin does, then fs/evict.c drops).
 *
 * A pin request walks the named files and folders as the caller (uid from
 * the control socket's SO_PEERCRED, groups of that uid from the user
 * database; root may pin anything the mount can read), refuses up front a
 * pin that would not fit in cache_size with what is pinned already, records
 * a pin per file in the cache (cache_pin_set) and fetches every block not
 * yet stored through the fetch engine (fs_blocks_pin), several files and
 * runs at once with a bounded number in flight.  The connection's thread
 * runs the request: it streams progress and stops the work when the client
 * goes away or fs_pins_cancel is called.
 *
 * Thread safety: fs_pins_serve may run on many threads at once;
 * fs_pins_cancel from any thread; fs_pins_destroy once no call runs. */
#include <stddef.h>
#include <sys/types.h>

struct fs;
struct fs_pins;

/* 0, or -ENOMEM. */
int fs_pins_init(struct fs_pins **out, struct fs *fs);
/* Stops every running pin (they answer what they did) and refuses new
 * ones: before unmount. */
void fs_pins_cancel(struct fs_pins *p);
void fs_pins_destroy(struct fs_pins *p);
/* Whether req (the first request line, without its newline) is one of
 * ours. */
int fs_pins_wants(const char *req);
/* Serves req on fd for the caller (uid, gid from SO_PEERCRED); more holds
 * the n bytes already read after the request line. */
void fs_pins_serve(struct fs_pins *p, int fd, uid_t uid, gid_t gid,
                   const char *req, const char *more, size_t n);

#endif
