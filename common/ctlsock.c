/* Where a mount's control socket lives; the rule is in ctlsock.h. */
#define _GNU_SOURCE
#include "common/ctlsock.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <xxhash.h>

static int put(char *out, size_t cap, int n)
{
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int dms_ctl_dir(uid_t uid, char *out, size_t cap)
{
	const char *env = getenv(DMS_CTL_DIR_ENV);
	char run[64];
	struct stat st;

	if (env && env[0]) {
		if (env[0] != '/')
			return -EINVAL;
		return put(out, cap, snprintf(out, cap, "%s", env));
	}
	if (uid == 0)
		return put(out, cap, snprintf(out, cap, "/run/dmsfs"));
	/* A login's runtime folder is the user's own and goes away at
	 * logout; without one (su, cron, a container) /tmp, whose sticky bit
	 * keeps others from removing the folder once it is ours. */
	snprintf(run, sizeof(run), "/run/user/%u", (unsigned)uid);
	if (lstat(run, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == uid)
		return put(out, cap, snprintf(out, cap, "%s/dmsfs", run));
	return put(out, cap, snprintf(out, cap, "/tmp/dmsfs-%u", (unsigned)uid));
}

int dms_ctl_name(const char *mnt, const char *ext, char *out, size_t cap)
{
	XXH128_hash_t h = XXH3_128bits(mnt, strlen(mnt));

	return put(out, cap, snprintf(out, cap, "%016llx%016llx%s",
	                              (unsigned long long)h.high64,
	                              (unsigned long long)h.low64, ext));
}

int dms_ctl_sock_path(const char *dir, const char *mnt, char *out,
                      size_t cap)
{
	char name[DMS_CTL_NAME_LEN + 8];
	int rc;

	rc = dms_ctl_name(mnt, ".sock", name, sizeof(name));
	if (rc)
		return rc;
	rc = put(out, cap, snprintf(out, cap, "%s/%s", dir, name));
	if (!rc && strlen(out) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		rc = -ENAMETOOLONG;
	return rc;
}

void dms_mountinfo_unescape(char *s)
{
	char *out = s;

	while (*s) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
			                (s[3] - '0'));
			s += 4;
		} else {
			*out++ = *s++;
		}
	}
	*out = '\0';
}

/* Fields of a mountinfo line: id parent maj:min root mountpoint options
 * [optional...] - fstype source super-options. */
int dms_ctl_mount_owner(const char *mnt, uid_t *owner)
{
	char *line = NULL, *save, *f, *at, *type, *src, *sopt, *uid;
	size_t cap = 0;
	FILE *mi = fopen("/proc/self/mountinfo", "re");
	int rc = -ENOENT, i;

	if (!mi)
		return -errno;
	while (getline(&line, &cap, mi) > 0) {
		line[strcspn(line, "\n")] = '\0';
		f = strtok_r(line, " ", &save);
		for (i = 1; f && i < 5; i++)
			f = strtok_r(NULL, " ", &save);
		at = f;
		while (f && strcmp(f, "-") != 0)
			f = strtok_r(NULL, " ", &save);
		type = f ? strtok_r(NULL, " ", &save) : NULL;
		src = type ? strtok_r(NULL, " ", &save) : NULL;
		sopt = src ? strtok_r(NULL, " ", &save) : NULL;
		if (!at || !type)
			continue;
		dms_mountinfo_unescape(at);
		if (strcmp(at, mnt) != 0)
			continue;
		/* Later lines are mounted on top: the last match wins. */
		rc = -ENOENT;
		/* Without subtypes the kernel says "fuse" and libfuse puts
		 * "dmsfs#" before the source (the fsname). */
		if (strcmp(type, "fuse.dmsfs") != 0 &&
		    !(strncmp(type, "fuse", 4) == 0 && src &&
		      (strcmp(src, "dmsfs") == 0 ||
		       strncmp(src, "dmsfs#", 6) == 0)))
			continue;
		uid = sopt ? strstr(sopt, "user_id=") : NULL;
		if (!uid || (uid != sopt && uid[-1] != ','))
			continue;
		*owner = (uid_t)strtoul(uid + 8, NULL, 10);
		rc = 0;
	}
	free(line);
	fclose(mi);
	return rc;
}

int dms_ctl_probe(const char *mnt)
{
	struct sockaddr_un a;
	char dir[4096];
	uid_t owner;
	int fd = -1, rc;

	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	rc = dms_ctl_mount_owner(mnt, &owner);
	if (!rc)
		rc = dms_ctl_dir(owner, dir, sizeof(dir));
	if (!rc)
		rc = dms_ctl_sock_path(dir, mnt, a.sun_path, sizeof(a.sun_path));
	if (rc)
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
		rc = -errno;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}
