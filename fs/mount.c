/* The mount's neighbours: what is already at the mountpoint, who else uses
 * the cache, and what libfuse's mount helper says on the way.
 *
 * Two daemons never share a mountpoint or a cache: the second would stack
 * on the first (its kernel requests never reach the first daemon) or write
 * the same LMDB files under the first one's crash marks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/ctlsock.h"
#include "common/log.h"
#include "fs/fs_i.h"


/* Whether the topmost mount at path (absolute, resolved) is a dmsfs
 * mount: "fuse.dmsfs", or "fuse" named dmsfs. */
static bool dmsfs_mounted_at(const char *path)
{
	uid_t owner;

	return dms_ctl_mount_owner(path, &owner) == 0;
}

static int stale(const char *mnt)
{
	fprintf(stderr, "dmsfs: %s: stale mount (daemon gone); clear it with "
	        "fusermount3 -u %s\n", mnt, mnt);
	return -ENOTCONN;
}

int fs_mountpoint_check(const char *mnt)
{
	char real[PATH_MAX];
	struct statfs sfs;
	struct stat st;
	int rc;

	/* A FUSE mount whose daemon died answers ENOTCONN. */
	if (stat(mnt, &st) != 0) {
		rc = -errno;
		if (rc == -ENOTCONN)
			return stale(mnt);
		fprintf(stderr, "dmsfs: mountpoint %s: %s\n", mnt, strerror(-rc));
		return rc;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "dmsfs: mountpoint %s: not a directory\n", mnt);
		return -ENOTDIR;
	}
	if (realpath(mnt, real) && dmsfs_mounted_at(real)) {
		/* stat may come from the kernel's attribute cache; statfs
		 * always asks the daemon (dmsfs answers it at once).  The
		 * kernel aborts the connection only when the last holder of
		 * its /dev/fuse descriptor lets go, which may be later than
		 * the daemon's death; a socket nobody listens on says it
		 * sooner. */
		if ((statfs(mnt, &sfs) != 0 && errno == ENOTCONN) ||
		    dms_ctl_probe(real) == -ECONNREFUSED)
			return stale(mnt);
		fprintf(stderr, "dmsfs: %s is already mounted (by another dmsfs); "
		        "unmount it first with fusermount3 -u %s\n", mnt, mnt);
		return -EBUSY;
	}
	return 0;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
			              (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

int fs_bdi_name(const char *mnt, char *out, size_t n)
{
	char *line = NULL, *save, *dev, *point, *sep, *type;
	size_t cap = 0;
	int rc = -ENOENT, i;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return -errno;
	/* "ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - TYPE SOURCE OPTS";
	 * the last match is the topmost mount. */
	while (getline(&line, &cap, f) > 0) {
		strtok_r(line, " ", &save);
		strtok_r(NULL, " ", &save);
		dev = strtok_r(NULL, " ", &save);
		strtok_r(NULL, " ", &save);
		point = strtok_r(NULL, " ", &save);
		sep = NULL;
		for (i = 0; i < 64 && (sep = strtok_r(NULL, " ", &save)); i++)
			if (!strcmp(sep, "-"))
				break;
		type = sep ? strtok_r(NULL, " ", &save) : NULL;
		if (!dev || !point || !type || strncmp(type, "fuse", 4))
			continue;
		unescape(point);
		if (strcmp(point, mnt))
			continue;
		rc = snprintf(out, n, "%s", dev) < (int)n ? 0 : -ENAMETOOLONG;
	}
	free(line);
	fclose(f);
	return rc;
}

int fs_bdi_set_readahead(const char *bdi, unsigned kib)
{
	char path[128], val[16];
	int fd, rc = 0, len;

	if (snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb",
	             bdi) >= (int)sizeof(path))
		return -ENAMETOOLONG;
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = snprintf(val, sizeof(val), "%u\n", kib);
	errno = 0;
	if (write(fd, val, (size_t)len) != len)
		rc = errno ? -errno : -EIO;
	close(fd);
	return rc;
}

/* Logs what the mount helper wrote (one message per line). */
static void log_captured(int fd, int prio)
{
	char buf[4096], *line, *save;
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return;
	buf[n] = '\0';
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		if (line[strspn(line, " \t\r")])
			dms_log(prio, "%s", line);
}

int fs_session_mount(struct fuse_session *se, const char *mnt, bool capture)
{
	unsigned since = dms_log_nerrors();
	int saved = -1, cap = -1, rc;

	/* libfuse logs through fuse_log, but fusermount3 (the mount helper of
	 * a non-root user) writes to the stderr it inherits: a daemon holding
	 * its messages back takes those lines into its log as well, so the
	 * one line it prints is the helper's reason. */
	if (capture) {
		cap = memfd_create("dmsfs-mount", MFD_CLOEXEC);
		saved = cap >= 0 ? fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3) : -1;
		if (saved >= 0 && dup2(cap, STDERR_FILENO) < 0) {
			close(saved);
			saved = -1;
		}
	}
	rc = fuse_session_mount(se, mnt) == 0 ? 0 : -EIO;
	if (saved >= 0) {
		dup2(saved, STDERR_FILENO);
		close(saved);
		log_captured(cap, rc ? LOG_ERR : LOG_WARNING);
	}
	if (cap >= 0)
		close(cap);
	if (rc)
		dms_log_failed(since, "cannot mount on %s", mnt);
	return rc;
}
