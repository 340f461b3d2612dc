/* dmsctl evict, per file: what fs/pin.c's walk found (as the caller may
 * read it) loses its blocks everywhere dmsfs keeps them: the memory of
 * recent blocks (those no reader holds right now), the LMDB cache, and the
 * kernel's page cache of the file, so that the next read goes to the
 * source.  A pinned file is refused: its pin promises the blocks stay, and
 * undoing a pin is dmsctl unpin's job.  The write journal (pending content
 * of writable exports) is a separate store and is never touched. */
#include <errno.h>

#include "fs/ops_i.h"

int fs_evict_file(struct fs *fs, const char *path, struct fs_file *f,
                  uint64_t *freed)
{
	uint64_t ino;
	int rc;

	*freed = 0;
	rc = cache_pin_get(fs->cache, fs_file_identity(f), NULL);
	if (rc == 0)
		return -EBUSY;
	if (rc != -ENOENT)
		return rc;
	fs_blocks_forget(fs->blocks, &f->fid);
	rc = cache_fid_drop(fs->cache, &f->fid, freed);
	if (rc == 0 && fs->se && fs_inodes_find(fs->inodes, path, &ino) == 0)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
	return rc;
}
