/* dmsctl: admin tool.
 *   dmsctl acl lint FILE
 *   dmsctl acl check [-r FILE] USER PATH
 *   dmsctl sync [-t SECONDS] PATH, dmsctl status PATH: the control socket
 *   of a mount with writable exports (fs/ctl_proto.h)
 * Exit status: 0 ok, 1 rules file errors / check failed, 2 usage. */
#define _GNU_SOURCE   /* struct ucred */
#include "acl/acl.h"
#include "common/log.h"

#include "fs/ctl_proto.h"

#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_RULES "/etc/dmsfs/authdb"
#define MAX_GROUPS 65536

static void usage(void)
{
	fprintf(stderr,
	        "usage: dmsctl acl lint FILE\n"
	        "       dmsctl acl check [-r FILE] USER PATH\n"
	        "       dmsctl sync [-t SECONDS] PATH\n"
	        "       dmsctl status PATH\n"
	        "  sync   wait until nothing is pending under PATH (in a dmsfs\n"
	        "         mount) at the origin; -t: give up after SECONDS (exit 1)\n"
	        "  status list the pending operations of the mount holding PATH\n"
	        "  lint   validate a rules file (XRootD authdb subset) and that\n"
	        "         no one but root (or you) can change it, as dmsfs does\n"
	        "  check  print USER's rights on PATH (letters of lrwidn, or "
	        "none)\n"
	        "         and the rules that decide each right; default FILE "
	        DEFAULT_RULES "\n");
}

static void print_diag(void *arg, const char *file, unsigned line,
                       bool is_error, const char *msg)
{
	int *warnings = arg;

	if (!is_error)
		(*warnings)++;
	if (line)
		fprintf(stderr, "%s:%u: %s%s\n", file, line,
		        is_error ? "" : "warning: ", msg);
	else
		fprintf(stderr, "%s: %s%s\n", file, is_error ? "" : "warning: ",
		        msg);
}

static int cmd_lint(int argc, char **argv)
{
	unsigned n = 0;
	int warnings = 0, rc;

	if (argc != 2) {
		usage();
		rc = 2;
		goto out;
	}
	rc = acl_lint(argv[1], print_diag, &warnings, &n);
	if (rc) {
		rc = 1;
		goto out;
	}
	printf("ok: %u rules%s\n", n, warnings ? " (with warnings)" : "");
out:
	return rc;
}

static const char *right_letter(unsigned right)
{
	static const char *const names[] = { "l", "r", "w", "i", "d", "n" };
	unsigned i;

	for (i = 0; i < 6; i++)
		if (right == 1u << i)
			return names[i];
	return "?";
}

struct seen {
	unsigned rights;   /* rights that got at least one line */
	FILE *out;         /* details, printed after the verdict */
};

static void print_why(void *arg, const struct acl_why *w)
{
	struct seen *s = arg;

	s->rights |= w->right;
	switch (w->how) {
	case ACL_GRANTED:
	case ACL_DENIED:
		fprintf(s->out, "  %s: %s by %s:%u: %s\n",
		        right_letter(w->right),
		        w->how == ACL_GRANTED ? "granted" : "denied", w->file,
		        w->line, w->text);
		break;
	case ACL_IMPLICIT:
		fprintf(s->out, "  %s: implicit (a path below is "
		        "accessible)\n", right_letter(w->right));
		break;
	}
}

/* Resolves USER like a login would: passwd entry, then getgrouplist. */
static int lookup_user(const char *name, struct acl_caller *c, gid_t **groups)
{
	struct passwd pw, *res = NULL;
	char *buf = NULL;
	size_t sz = 16384;
	gid_t *g = NULL;
	int n = 64, e, rc = 0;

	*groups = NULL;
	buf = malloc(sz);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	e = getpwnam_r(name, &pw, buf, sz, &res);
	if (!res) {
		rc = e ? -e : -ENOENT;
		goto out;
	}
	for (;;) {
		gid_t *ng = reallocarray(g, (size_t)n, sizeof(*g));
		int want = n;

		if (!ng) {
			rc = -ENOMEM;
			goto out;
		}
		g = ng;
		if (getgrouplist(name, pw.pw_gid, g, &want) >= 0) {
			n = want;
			break;
		}
		if (want <= n || want > MAX_GROUPS) {
			rc = -E2BIG;
			goto out;
		}
		n = want;
	}
	c->uid = pw.pw_uid;
	c->gid = pw.pw_gid;
	c->groups = g;
	c->ngroups = n;
	*groups = g;
	g = NULL;
out:
	free(g);
	free(buf);
	return rc;
}

static int cmd_check(int argc, char **argv)
{
	const char *file = DEFAULT_RULES;
	struct acl_caller c = { 0 };
	char letters[ACL_RIGHTS_STRLEN];
	struct seen s = { 0 };
	struct acl *a = NULL;
	gid_t *groups = NULL;
	char *details = NULL;
	size_t dlen = 0;
	unsigned rights, b;
	int opt, rc;

	optind = 1;
	while ((opt = getopt(argc, argv, "+r:")) != -1) {
		if (opt != 'r') {
			usage();
			rc = 2;
			goto out;
		}
		file = optarg;
	}
	if (argc - optind != 2) {
		usage();
		rc = 2;
		goto out;
	}
	rc = lookup_user(argv[optind], &c, &groups);
	if (rc) {
		fprintf(stderr, "dmsctl: user %s: %s\n", argv[optind],
		        rc == -ENOENT ? "no such user" : strerror(-rc));
		rc = 1;
		goto out;
	}
	rc = acl_open(&a, file);
	if (rc) {
		rc = 1;
		goto out;
	}
	s.out = open_memstream(&details, &dlen);
	if (!s.out) {
		fprintf(stderr, "dmsctl: %s\n", strerror(errno));
		rc = 1;
		goto out;
	}
	rc = acl_explain(a, &c, argv[optind + 1], print_why, &s, &rights);
	if (rc) {
		fprintf(stderr, "dmsctl: %s: %s\n", argv[optind + 1],
		        rc == -EINVAL ? "not a normalized absolute path"
		                      : strerror(-rc));
		rc = 1;
		goto out;
	}
	for (b = 1; b <= ACL_RENAME; b <<= 1)
		if (!(s.rights & b))
			fprintf(s.out, "  %s: not granted (no rule)\n",
			        right_letter(b));
	fflush(s.out);
	/* Verdict first (what scripts read), then the indented details. */
	acl_rights_str(rights, letters);
	printf("%s\n%s", letters, details);
out:
	if (s.out)
		fclose(s.out);
	free(details);
	acl_close(a);
	free(groups);
	return rc;
}

/* The mountpoint holding path (realpath'd into mnt) and path inside the
 * mount (rel): the topmost folder with path's device. */
static int find_mount(const char *path, char *mnt, size_t cap, char *rel,
                      size_t rcap)
{
	char real[PATH_MAX], up[PATH_MAX];
	struct stat st, pst;
	char *slash;
	size_t n;

	if (!realpath(path, real) || stat(real, &st) != 0) {
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

/* Connects to the control socket of the dmsfs mount at mnt and checks who
 * listens there: only root or the uid that mounted it (an answer from
 * anyone else could be a lie).  The descriptor, or -1 with a message. */
static int connect_ctl(const char *mnt)
{
	char dir[PATH_MAX];
	struct sockaddr_un a;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	uid_t owner;
	int fd = -1, rc;

	rc = dms_ctl_mount_owner(mnt, &owner);
	if (rc) {
		fprintf(stderr, "dmsctl: %s: %s\n", mnt, rc == -ENOENT
		        ? "not a dmsfs mount" : strerror(-rc));
		goto fail;
	}
	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	rc = dms_ctl_dir(owner, dir, sizeof(dir));
	if (!rc)
		rc = dms_ctl_sock_path(dir, mnt, a.sun_path, sizeof(a.sun_path));
	if (rc) {
		fprintf(stderr, "dmsctl: %s: control socket folder: %s\n", mnt,
		        strerror(-rc));
		goto fail;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		fprintf(stderr, "dmsctl: %s: no dmsfs mount with writable exports "
		        "answers at %s (%s)\n", mnt, a.sun_path, strerror(errno));
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

/* Sends one request to the mount's control socket; the answer goes to
 * out (NUL-terminated).  -1 with a message if the mount cannot be asked. */
static int ask(const char *mnt, const char *req, char *out, size_t cap)
{
	size_t got = 0;
	ssize_t r;
	int fd, rc = -1;

	fd = connect_ctl(mnt);
	if (fd < 0)
		goto out;
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto out;
	while (got + 1 < cap && (r = read(fd, out + got, cap - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = '\0';
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

static int cmd_sync(int argc, char **argv)
{
	char mnt[PATH_MAX], rel[PATH_MAX], req[PATH_MAX + 16], ans[512];
	unsigned long long n = 0, bytes = 0, last_n = ~0ull;
	long timeout = 0;
	time_t start = time(NULL), printed = 0;
	int i = 1;

	if (argc >= 3 && !strcmp(argv[1], "-t")) {
		timeout = atol(argv[2]);
		i = 3;
	}
	if (argc != i + 1) {
		usage();
		return 2;
	}
	if (find_mount(argv[i], mnt, sizeof(mnt), rel, sizeof(rel)) != 0)
		return 1;
	snprintf(req, sizeof(req), "sync %s\n", rel);
	for (;;) {
		char err[400] = "-";

		if (ask(mnt, req, ans, sizeof(ans)) != 0)
			return 1;
		if (sscanf(ans, "%llu %llu %399[^\n]", &n, &bytes, err) < 2) {
			fprintf(stderr, "dmsctl: unexpected answer: %s\n", ans);
			return 1;
		}
		if (n == 0) {
			printf("dmsctl: everything under %s is at the origin\n",
			       argv[i]);
			return 0;
		}
		if (n != last_n || time(NULL) - printed >= 5) {
			fprintf(stderr, "dmsctl: %llu operations (%llu bytes) "
			        "pending under %s%s%s\n", n, bytes, argv[i],
			        strcmp(err, "-") ? "; last error: " : "",
			        strcmp(err, "-") ? err : "");
			printed = time(NULL);
			last_n = n;
		}
		if (timeout > 0 && time(NULL) - start >= timeout) {
			fprintf(stderr, "dmsctl: gave up after %ld s: %llu "
			        "operations (%llu bytes) still pending%s%s\n",
			        timeout, n, bytes,
			        strcmp(err, "-") ? "; last error: " : "",
			        strcmp(err, "-") ? err : "");
			return 1;
		}
		usleep(200 * 1000);
	}
}

static int cmd_status(int argc, char **argv)
{
	char mnt[PATH_MAX], rel[PATH_MAX];
	static char ans[1 << 20];

	if (argc != 2) {
		usage();
		return 2;
	}
	if (find_mount(argv[1], mnt, sizeof(mnt), rel, sizeof(rel)) != 0 ||
	    ask(mnt, "status\n", ans, sizeof(ans)) != 0)
		return 1;
	printf("SEQ AGE_S RETRIES OPERATION PATH\tLAST_ERROR\n%s", ans);
	return 0;
}

int main(int argc, char **argv)
{
	int rc = 2;

	if (argc >= 2 && !strcmp(argv[1], "sync"))
		return cmd_sync(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "status"))
		return cmd_status(argc - 1, argv + 1);
	if (argc < 3 || strcmp(argv[1], "acl")) {
		usage();
		goto out;
	}
	if (!strcmp(argv[2], "lint"))
		rc = cmd_lint(argc - 2, argv + 2);
	else if (!strcmp(argv[2], "check"))
		rc = cmd_check(argc - 2, argv + 2);
	else
		usage();
out:
	return rc;
}
