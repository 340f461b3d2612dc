/* dmsctl evict, per file: what fs/pin.c's walk found (as the caller may
 * read it) loses its blocks everywhere dmsfs keeps them: the memory of
 * recent blocks (those no reader holds right now) and the LMDB cache; the
 * kernel's pages of the file go at its next open, so that the next read
 * after it goes to the source.  (No notify_inval_inode here: an evict may
 * still run while the session is torn down at unmount.)  A pinned file is
 * refused: its pin promises the blocks stay, and undoing a pin is dmsctl
 * unpin's job.  The write journal (pending content of writable exports) is
 * a separate store and is never touched. */
#include <errno.h>

#include "fs/ops_i.h"

int fs_evict_file(struct fs *fs, const char *path, struct fs_file *f,
                  uint64_t *freed)
{
	int rc;

	*freed = 0;
	rc = cache_pin_get(fs->cache, fs_file_identity(f), NULL);
	if (rc == 0)
		return -EBUSY;
	if (rc != -ENOENT)
		return rc;
	fs_blocks_forget(fs->blocks, &f->fid);
	rc = cache_fid_drop(fs->cache, &f->fid, freed);
	if (rc == 0)
		fs_inodes_set_changed(fs->inodes, path);
	return rc;
}
