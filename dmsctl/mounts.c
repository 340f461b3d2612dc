/* dmsctl: finding dmsfs mounts (/proc/self/mountinfo) and asking the
 * daemon of one over its control socket (fs/ctl_proto.h; where the socket
 * lives: common/ctlsock.h).  See dmsctl.h. */
#define _GNU_SOURCE   /* struct ucred */
#include "dmsctl/dmsctl.h"
#include "common/ctlsock.h"
#include "fs/ctl_proto.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Every dmsfs mountpoint in /proc/self/mountinfo (absolute, unescaped),
 * NULL-terminated; NULL without memory. */
static char **dmsfs_mounts(void)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL, **v = calloc(1, sizeof(*v));
	size_t cap = 0, n = 0;

	if (!f || !v)
		goto out;
	while (getline(&line, &cap, f) > 0) {
		char mp[PATH_MAX], *sep = strstr(line, " - "), **nv;

		if (!sep || strncmp(sep + 3, "fuse.dmsfs ", 11) ||
		    sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		dms_mountinfo_unescape(mp);
		nv = realloc(v, (n + 2) * sizeof(*v));
		if (!nv)
			break;
		v = nv;
		v[n] = strdup(mp);
		if (v[n])
			v[++n] = NULL;
	}
out:
	free(line);
	if (f)
		fclose(f);
	return v;
}

static void mounts_free(char **all)
{
	for (size_t i = 0; all && all[i]; i++)
		free(all[i]);
	free(all);
}

/* For a path the caller may not look at (a mount with rules that give
 * root nothing, as an admin's `dmsctl sync /mnt` meets): the longest
 * prefix that resolves, the rest taken as written (no "..": a dmsfs mount
 * has no symlinks to follow), matched against the dmsfs mountpoints.
 * 0, or -1 (caller reports errno). */
static int find_mount_unseen(const char *path, char *mnt, size_t cap,
                             char *rel, size_t rcap)
{
	char head[PATH_MAX], real[PATH_MAX], full[PATH_MAX], **all;
	const char *tail = "";
	size_t i, n, best = 0;
	char *cut;
	int rc = -1, len;

	if (snprintf(head, sizeof(head), "%s", path) >= (int)sizeof(head))
		goto out;
	while (!realpath(head, real)) {
		cut = strrchr(head, '/');
		if (!cut || cut == head)
			goto out;
		*cut = '\0';
		tail = path + (cut - head) + 1;
	}
	if (!strncmp(tail, "../", 3) || strstr(tail, "/../") ||
	    !strcmp(tail, "..") || (strlen(tail) >= 3 &&
	                            !strcmp(tail + strlen(tail) - 3, "/..")))
		goto out;
	len = snprintf(full, sizeof(full), "%s%s%s", real,
	               *tail && strcmp(real, "/") ? "/" : "", tail);
	if (len < 0 || len >= (int)sizeof(full))
		goto out;
	while (len > 1 && full[len - 1] == '/')
		full[--len] = '\0';
	all = dmsfs_mounts();
	for (i = 0; all && all[i]; i++) {
		n = strlen(all[i]);
		if (n > best && !strncmp(full, all[i], n) &&
		    (full[n] == '\0' || full[n] == '/')) {
			best = n;
			snprintf(mnt, cap, "%s", all[i]);
			snprintf(rel, rcap, "%s", full[n] ? full + n : "/");
			rc = 0;
		}
	}
	mounts_free(all);
out:
	errno = EACCES;
	return rc;
}

/* The mountpoint holding path (realpath'd into mnt) and path inside the
 * mount (rel): the topmost folder with path's device. */
int ctl_find_mount(const char *path, char *mnt, size_t cap, char *rel,
                   size_t rcap)
{
	char real[PATH_MAX], up[PATH_MAX];
	struct stat st, pst;
	char *slash;
	size_t n;

	if (!realpath(path, real) || stat(real, &st) != 0) {
		if (errno == EACCES &&
		    find_mount_unseen(path, mnt, cap, rel, rcap) == 0)
			return 0;
		fprintf(stderr, "dmsctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	snprintf(up, sizeof(up), "%s", real);
	for (;;) {
		char parent[PATH_MAX];

		slash = strrchr(up, '/');
		if (!slash || !up[1]) {
			fprintf(stderr, "dmsctl: %s is not in a mount\n", path);
			return -1;
		}
		snprintf(parent, sizeof(parent), "%.*s",
		         slash == up ? 1 : (int)(slash - up), up);
		if (stat(parent, &pst) != 0 || pst.st_dev != st.st_dev)
			break;      /* up is the mountpoint */
		snprintf(up, sizeof(up), "%s", parent);
	}
	n = strlen(up);
	snprintf(mnt, cap, "%s", up);
	snprintf(rel, rcap, "%s", real[n] ? real + n : "/");
	return 0;
}

/* The control socket path of the mount at mnt into out (a sun_path), and
 * the uid that mounted it; -1 with a message. */
static int ctl_socket_of(const char *mnt, char *out, size_t cap, uid_t *owner,
                         bool say)
{
	char dir[PATH_MAX];
	int rc;

	rc = dms_ctl_mount_owner(mnt, owner);
	if (rc) {
		if (say)
			fprintf(stderr, "dmsctl: %s: %s\n", mnt, rc == -ENOENT
			        ? "not a dmsfs mount" : strerror(-rc));
		return -1;
	}
	rc = dms_ctl_dir(*owner, dir, sizeof(dir));
	if (!rc)
		rc = dms_ctl_sock_path(dir, mnt, out, cap);
	if (rc) {
		if (say)
			fprintf(stderr, "dmsctl: %s: control socket folder: "
			        "%s\n", mnt, strerror(-rc));
		return -1;
	}
	return 0;
}

/* A socket file nobody listens on is what a killed daemon leaves: the
 * mount is stale and only an unmount helps, so say that. */
static void say_no_answer(const char *level, const char *mnt,
                          const char *sock, int err)
{
	if (err == ECONNREFUSED || err == ENOENT)
		fprintf(stderr, "dmsctl: %s%s: its dmsfs daemon is not running "
		        "(%s: %s); unmount the stale mount with "
		        "`fusermount3 -u %s`\n", level, mnt, sock, strerror(err),
		        mnt);
	else
		fprintf(stderr, "dmsctl: %s%s: no dmsfs daemon answers at %s "
		        "(%s)\n", level, mnt, sock, strerror(err));
}

/* true when the daemon of the mount at mnt is gone: its socket refuses
 * connections.  Walks over every mount skip such a mount with a warning,
 * so one stale mount does not fail status or sync of the live ones. */
static bool daemon_gone(const char *mnt, const char *sock)
{
	if (dms_ctl_probe(mnt) != -ECONNREFUSED)
		return false;
	say_no_answer("warning: ", mnt, sock, ECONNREFUSED);
	return true;
}

/* Connects to the control socket of the dmsfs mount at mnt and checks who
 * listens there: only root or the uid that mounted it (an answer from
 * anyone else could be a lie).  The descriptor, or -1 with a message (dmsctl.h). */
int ctl_connect(const char *mnt)
{
	struct sockaddr_un a;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	uid_t owner;
	int fd = -1;

	/* A daemon that answers "error busy" closes before reading our
	 * request: the write fails, and the answer is still there to read. */
	signal(SIGPIPE, SIG_IGN);
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (ctl_socket_of(mnt, a.sun_path, sizeof(a.sun_path), &owner,
	                  true) != 0)
		goto fail;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		say_no_answer("", mnt, a.sun_path, errno);
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) != 0) {
		fprintf(stderr, "dmsctl: %s: %s\n", a.sun_path, strerror(errno));
		goto fail;
	}
	if (cr.uid != 0 && cr.uid != owner) {
		fprintf(stderr, "dmsctl: %s: not trusting the control socket %s: "
		        "it is served by uid %u (pid %d), not by root or uid %u "
		        "who mounted it\n", mnt, a.sun_path, (unsigned)cr.uid,
		        (int)cr.pid, (unsigned)owner);
		goto fail;
	}
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Sends one request; the whole answer goes to out.  -1 with a message if
 * the mount cannot be asked. */
static int ask_stream(const char *mnt, const char *req, FILE *out)
{
	char buf[65536];
	ssize_t r, w;
	int fd, rc = -1;

	fd = ctl_connect(mnt);
	if (fd < 0)
		goto out;
	w = write(fd, req, strlen(req));
	if (w < 0 ? errno != EPIPE && errno != ECONNRESET
	          : (size_t)w != strlen(req))
		goto out;
	while ((r = read(fd, buf, sizeof(buf))) > 0)
		if (fwrite(buf, 1, (size_t)r, out) != (size_t)r)
			goto out;
	rc = r < 0 ? -1 : 0;
	if (rc)
		fprintf(stderr, "dmsctl: %s: %s\n", mnt, strerror(errno));
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int ctl_ask(const char *mnt, const char *req, char *out, size_t cap)
{
	FILE *f = fmemopen(out, cap, "w");
	int rc = -1;

	if (!f) {
		fprintf(stderr, "dmsctl: %s\n", strerror(errno));
		return -1;
	}
	/* A longer answer than cap is cut: these answers are one line. */
	setvbuf(f, NULL, _IONBF, 0);
	rc = ask_stream(mnt, req, f);
	fclose(f);
	out[cap - 1] = '\0';
	return rc;
}

/* Asks req and checks the answer ends with ".\n" (cut off there); NULL
 * with a message otherwise.  An old daemon answers "error ..." to a
 * request it does not know: *unknown is set then (no message). */
char *ctl_ask_list(const char *mnt, const char *req, bool *unknown)
{
	char *ans = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&ans, &len);

	if (unknown)
		*unknown = false;
	if (!mem || ask_stream(mnt, req, mem) != 0) {
		if (mem)
			fclose(mem);
		free(ans);
		return NULL;
	}
	fclose(mem);
	if (!strcmp(ans, "error busy\n")) {
		fprintf(stderr, "dmsctl: %s: the daemon is busy with other "
		        "control requests; try again\n", mnt);
		free(ans);
		return NULL;
	}
	if (unknown && !strncmp(ans, "error ", 6)) {
		*unknown = true;
		free(ans);
		return NULL;
	}
	if (len < 2 || strcmp(ans + len - 2, ".\n")) {
		fprintf(stderr, "dmsctl: %s: the answer was cut short\n", mnt);
		free(ans);
		return NULL;
	}
	ans[len - 2] = '\0';
	return ans;
}

char *ctl_line_end(char *line)
{
	char *next = strchr(line, '\n');

	if (next)
		*next++ = '\0';
	else
		next = line + strlen(line);
	return next;
}

int ctl_each_mount(char *const *paths, int n, ctl_mount_fn *fn, void *arg)
{
	char mnt[PATH_MAX], rel[PATH_MAX], **all = NULL;
	int i, rc = 0;

	if (n > 0) {
		for (i = 0; i < n; i++)
			if (ctl_find_mount(paths[i], mnt, sizeof(mnt), rel,
			                   sizeof(rel)) != 0 ||
			    fn(mnt, rel, paths[i], arg) != 0)
				rc = 1;
		goto out;
	}
	/* A mount without a control socket is an older daemon's, or its
	 * socket is gone: not asked. */
	all = dmsfs_mounts();
	if (!all) {
		fprintf(stderr, "dmsctl: out of memory\n");
		rc = -1;
		goto out;
	}
	for (i = 0; all[i]; i++) {
		char path[PATH_MAX];
		uid_t owner;

		if (ctl_socket_of(all[i], path, sizeof(path), &owner, false) != 0 ||
		    access(path, F_OK) != 0 || daemon_gone(all[i], path))
			continue;
		/* A mount that went away meanwhile (unmounted while we
		 * asked) is not a failure of this walk. */
		if (fn(all[i], "/", all[i], arg) != 0 &&
		    access(path, F_OK) == 0 && dms_ctl_probe(all[i]) == 0)
			rc = 1;
	}
out:
	mounts_free(all);
	return rc;
}
