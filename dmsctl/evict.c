/* dmsctl evict [-q] PATH...: drop the blocks of files (folders
 * recursively) from the cache of the mount holding them, as the caller may
 * read them (fs/ctl_proto.h "evict").  Pinned files are refused, not
 * unpinned: the daemon's answer says to run dmsctl unpin first. */
#include "dmsctl/dmsctl.h"

static void evict_done(const char *mnt, unsigned long long files,
                       unsigned long long bytes)
{
	char b[32];

	ctl_human_bytes(bytes, b, sizeof(b));
	printf("dmsctl: %s: evicted %llu files, freed %llu bytes (%s)\n", mnt,
	       files, bytes, b);
}

int ctl_cmd_evict(int argc, char **argv)
{
	return ctl_paths_run(argc, argv, "evict", evict_done);
}
