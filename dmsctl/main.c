/* dmsctl: admin tool.
 *   dmsctl acl lint FILE
 *   dmsctl acl check [-r FILE] USER PATH
 *   dmsctl sync [-t SECONDS] PATH, dmsctl status [--json] [PATH...]: the
 *   control socket of a dmsfs mount (fs/ctl_proto.h)
 * Exit status: 0 ok, 1 rules file errors / check failed, 2 usage. */
#define _GNU_SOURCE   /* struct ucred */
#include "acl/acl.h"
#include "common/log.h"

#include "fs/ctl_proto.h"

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <grp.h>
#include <limits.h>
#include <sys/stat.h>
#include <time.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_RULES "/etc/dmsfs/authdb"
#define MAX_GROUPS 65536

static void usage(FILE *to)
{
	fprintf(to,
	        "usage: dmsctl acl lint FILE\n"
	        "       dmsctl acl check [-r FILE] USER PATH\n"
	        "       dmsctl sync [-t SECONDS] [-q] [PATH...]\n"
	        "       dmsctl status [--json] [PATH...]\n"
	        "       dmsctl pin [--quiet|--json] PATH...\n"
	        "       dmsctl unpin [--quiet] PATH...\n"
	        "       dmsctl pins [PATH...]\n"
	        "  sync   wait until nothing is pending under each PATH (in a\n"
	        "         dmsfs mount) at the origin, with a progress line;\n"
	        "         no PATH: every dmsfs mount with writable exports;\n"
	        "         -t: give up after SECONDS (exit 1, saying what is\n"
	        "         left and why); -q: no progress\n"
	        "  status per mount holding PATH (no PATH: every running dmsfs\n"
	        "         mount): exports, each source's state (up, backing\n"
	        "         off, last error), requests, bytes and requests in\n"
	        "         flight, cache size/cap/pinned, hit ratio, evictions,\n"
	        "         and the pending operations (yours; root: all);\n"
	        "         --json: the same as one JSON object\n"
	        "  pin    bring every block of each PATH (files, folders\n"
	        "         recursively, in dmsfs mounts) into the cache and keep\n"
	        "         it there (never evicted); what is cached already is\n"
	        "         not fetched again, so an interrupted pin resumes;\n"
	        "         refused up front if it would not fit in cache_size;\n"
	        "         progress bar on a terminal, a line per second\n"
	        "         otherwise; --json: one JSON object at the end;\n"
	        "         exit 1 naming each path that failed and why\n"
	        "  unpin  let the blocks of each PATH (recursively) be evicted\n"
	        "         again: your pins (root: anyone's)\n"
	        "  pins   list your pins (root: all) of the mount holding each\n"
	        "         PATH (none: every mount): size, cached, percent\n"
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
		usage(stderr);
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
			usage(stderr);
			rc = 2;
			goto out;
		}
		file = optarg;
	}
	if (argc - optind != 2) {
		usage(stderr);
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

static char **dmsfs_mounts(void);

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
	for (i = 0; all && all[i]; i++)
		free(all[i]);
	free(all);
out:
	errno = EACCES;
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

/* Connects to the control socket of the dmsfs mount at mnt and checks who
 * listens there: only root or the uid that mounted it (an answer from
 * anyone else could be a lie).  The descriptor, or -1 with a message. */
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

static int ctl_socket_path(const char *mnt, char *out, size_t cap)
{
	uid_t owner;

	return ctl_socket_of(mnt, out, cap, &owner, false);
}

static int connect_ctl(const char *mnt)
{
	struct sockaddr_un a;
	struct ucred cr;
	socklen_t crlen = sizeof(cr);
	uid_t owner;
	int fd = -1;

	memset(&a, 0, sizeof(a));
	a.sun_family = AF_UNIX;
	if (ctl_socket_of(mnt, a.sun_path, sizeof(a.sun_path), &owner,
	                  true) != 0)
		goto fail;
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

/* Sends one request; the whole answer goes to out.  -1 with a message if
 * the mount cannot be asked. */
static int ask_stream(const char *mnt, const char *req, FILE *out)
{
	char buf[65536];
	ssize_t r;
	int fd, rc = -1;

	fd = connect_ctl(mnt);
	if (fd < 0)
		goto out;
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
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

static int ask(const char *mnt, const char *req, char *out, size_t cap)
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

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void human_bytes(unsigned long long b, char *out, size_t cap)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

struct sync_opts {
	double deadline;        /* 0: none */
	long timeout;
	bool quiet;
	bool tty;               /* stderr is a terminal: one line rewritten */
};

/* Waits until nothing is pending under rel in the mount at mnt; shown is
 * the path the user named.  0, or 1 (said why). */
static int sync_one(const char *mnt, const char *rel, const char *shown,
                    const struct sync_opts *o)
{
	char req[PATH_MAX + 16], ans[512], b[32], rate[48] = "";
	unsigned long long n = 0, bytes = 0, files = 0, first_bytes = 0;
	unsigned long long last_n = ~0ull;
	double start = now_s(), printed = 0;
	bool first = true, drawn = false;
	int rc = 1;

	snprintf(req, sizeof(req), "sync %s\n", rel);
	for (;;) {
		char err[400] = "-";
		double t;

		if (ask(mnt, req, ans, sizeof(ans)) != 0)
			goto out;
		if (sscanf(ans, "%llu %llu %llu %399[^\n]", &n, &bytes, &files,
		           err) < 3) {
			fprintf(stderr, "dmsctl: unexpected answer from %s: %s\n",
			        mnt, ans);
			goto out;
		}
		t = now_s();
		if (first) {
			first_bytes = bytes;
			first = false;
		}
		if (n == 0) {
			rc = 0;
			goto out;
		}
		human_bytes(bytes, b, sizeof(b));
		/* Uploaded bytes over time: new writes during the wait only
		 * make the figure look slower, never wrong by much. */
		if (t - start >= 1 && first_bytes > bytes) {
			double r = (double)(first_bytes - bytes) / (t - start);
			char rb[32];

			human_bytes((unsigned long long)r, rb, sizeof(rb));
			snprintf(rate, sizeof(rate), ", %s/s, ~%.0f s left", rb,
			         r > 0 ? (double)bytes / r : 0);
		}
		if (o->deadline > 0 && t >= o->deadline) {
			if (drawn)
				fputc('\n', stderr);
			drawn = false;
			fprintf(stderr, "dmsctl: gave up after %ld s: %llu "
			        "operations (%llu bytes) still pending under %s "
			        "(%llu file uploads)%s%s\n",
			        o->timeout, n, bytes, shown, files,
			        strcmp(err, "-") ? "; last error: " : "",
			        strcmp(err, "-") ? err : "");
			goto out;
		}
		if (!o->quiet && (o->tty || n != last_n || t - printed >= 5)) {
			fprintf(stderr, "%sdmsctl: %s: %llu operations pending "
			        "(%llu files, %s)%s%s%s%s",
			        o->tty ? "\r\033[K" : "", shown, n, files, b, rate,
			        strcmp(err, "-") ? "; last error: " : "",
			        strcmp(err, "-") ? err : "", o->tty ? "" : "\n");
			drawn = o->tty;
			printed = t;
			last_n = n;
		}
		usleep(200 * 1000);
	}
out:
	if (drawn)
		fputs("\r\033[K", stderr);
	if (rc == 0 && !o->quiet)
		printf("dmsctl: everything under %s is at the origin\n", shown);
	return rc;
}

static int cmd_sync(int argc, char **argv)
{
	char mnt[PATH_MAX], rel[PATH_MAX];
	struct sync_opts o = { .tty = isatty(2) };
	char **all = NULL;
	int c, i, rc = 0;

	optind = 1;
	while ((c = getopt(argc, argv, "+t:q")) != -1) {
		if (c == 't') {
			char *end;

			o.timeout = strtol(optarg, &end, 10);
			if (*end || o.timeout <= 0) {
				fprintf(stderr, "dmsctl: -t takes a number of "
				        "seconds above 0, not '%s'\n", optarg);
				return 2;
			}
		} else if (c == 'q') {
			o.quiet = true;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (o.timeout)
		o.deadline = now_s() + (double)o.timeout;
	if (optind < argc) {
		for (i = optind; i < argc; i++)
			if (find_mount(argv[i], mnt, sizeof(mnt), rel,
			               sizeof(rel)) != 0 ||
			    sync_one(mnt, rel, argv[i], &o) != 0)
				rc = 1;
		return rc;
	}
	/* No PATH: every dmsfs mount whose daemon has writable exports (the
	 * others have no control socket and nothing to wait for). */
	all = dmsfs_mounts();
	if (!all) {
		fprintf(stderr, "dmsctl: out of memory\n");
		return 1;
	}
	for (i = 0; all[i]; i++) {
		char path[PATH_MAX];

		if (ctl_socket_path(all[i], path, sizeof(path)) != 0 ||
		    access(path, F_OK) != 0)
			continue;
		if (sync_one(all[i], "/", all[i], &o) != 0)
			rc = 1;
	}
	for (i = 0; all[i]; i++)
		free(all[i]);
	free(all);
	return rc;
}

/* "AGE_S PATH\tOURS": theirs kept at PATH, ours beside it. */
static void print_conflict(char *line, bool first)
{
	char *ours = strchr(line, '\t'), *path;
	long long age = strtoll(line, &path, 10);

	if (first)
		printf("conflicts (changed at the origin since read here; theirs "
		       "kept, ours uploaded beside it):\n");
	if (ours)
		*ours++ = '\0';
	printf("  %lld s ago: %s: ours is %s\n", age, path + (*path == ' '),
	       ours ? ours : "?");
}

/* ---- dmsctl status: the "info" and "status" answers of each mount ---- */

#define MAX_FIELDS 12

struct st_out {
	bool json;
	unsigned nmounts;       /* mounts printed so far (JSON commas) */
};

/* Splits line at tabs into f[] (at most MAX_FIELDS; the last keeps the
 * rest).  Returns the number of fields. */
static int split_tabs(char *line, char **f)
{
	int n = 0;

	while (n < MAX_FIELDS - 1) {
		f[n++] = line;
		line = strchr(line, '\t');
		if (!line)
			return n;
		*line++ = '\0';
	}
	f[n++] = line;
	return n;
}

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static unsigned long long num(const char *s)
{
	return strtoull(s, NULL, 10);
}

/* One "source" line of the info answer (fs/ctl_proto.h), split. */
struct st_source {
	char *url, *state, *err;
	long long retry_ms, err_age;
	unsigned long long bytes, requests, failures;
	unsigned inflight;
};

static void source_state(const struct st_source *s, char *out, size_t cap)
{
	if (strcmp(s->state, "down"))
		snprintf(out, cap, "up");
	else if (s->retry_ms > 0)
		snprintf(out, cap, "backing off, %lld s left",
		         (s->retry_ms + 999) / 1000);
	else
		snprintf(out, cap, "down, next call tries it");
}

static void print_sources_text(const struct st_source *v, size_t n)
{
	size_t w = strlen("SOURCE"), i;
	char state[64], b[32];

	for (i = 0; i < n; i++)
		if (strlen(v[i].url) > w)
			w = strlen(v[i].url);
	printf("  %-*s  %-24s %9s %10s %9s  %s\n", (int)w, "SOURCE", "STATE",
	       "REQUESTS", "BYTES", "IN FLIGHT", "LAST ERROR");
	for (i = 0; i < n; i++) {
		source_state(&v[i], state, sizeof(state));
		human_bytes(v[i].bytes, b, sizeof(b));
		printf("  %-*s  %-24s %9llu %10s %9u  ", (int)w, v[i].url, state,
		       v[i].requests, b, v[i].inflight);
		if (v[i].err_age >= 0)
			printf("%s (%lld s ago)\n", v[i].err, v[i].err_age);
		else
			printf("-\n");
	}
}

static void print_sources_json(const struct st_source *v, size_t n)
{
	char state[64];
	size_t i;

	printf("\"sources\":[");
	for (i = 0; i < n; i++) {
		source_state(&v[i], state, sizeof(state));
		printf("%s{\"url\":", i ? "," : "");
		json_str(stdout, v[i].url);
		printf(",\"state\":\"%s\",\"backing_off\":%s,\"retry_in_s\":%.1f,"
		       "\"bytes\":%llu,\"requests\":%llu,\"in_flight\":%u,"
		       "\"failures\":%llu,\"last_error\":",
		       strcmp(v[i].state, "down") ? "up" : "down",
		       !strcmp(v[i].state, "down") && v[i].retry_ms > 0
		       ? "true" : "false", (double)v[i].retry_ms / 1000,
		       v[i].bytes, v[i].requests, v[i].inflight, v[i].failures);
		if (v[i].err_age >= 0) {
			json_str(stdout, v[i].err);
			printf(",\"last_error_age_s\":%lld}", v[i].err_age);
		} else {
			printf("null,\"last_error_age_s\":null}");
		}
	}
	printf("],");
}

/* Prints the info answer of one mount (text or the JSON members up to
 * "pending").  ans is modified. */
static void print_info(char *ans, const char *mnt, const struct st_out *o)
{
	struct st_source src[64];
	char *line, *next, *f[MAX_FIELDS], b1[32], b2[32], b3[32];
	size_t nsrc = 0, nexp = 0;
	int n;

	if (o->json)
		printf("\"exports\":[");
	for (line = ans; *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		else
			next = line + strlen(line);
		n = split_tabs(line, f);
		if (!strcmp(f[0], "export") && n >= 6) {
			if (o->json) {
				printf("%s{\"name\":", nexp ? "," : "");
				json_str(stdout, f[1]);
				printf(",\"path\":");
				json_str(stdout, f[2]);
				printf(",\"writable\":%s,\"per_user\":%s,"
				       "\"sources\":", strcmp(f[3], "rw")
				       ? "false" : "true", strcmp(f[4], "per-user")
				       ? "false" : "true");
				json_str(stdout, f[5]);
				putchar('}');
			} else {
				printf("  export %s at %s (%s%s): %s\n", f[1],
				       f[2], strcmp(f[3], "rw") ? "read-only"
				       : "writable", strcmp(f[4], "per-user")
				       ? "" : ", per user", f[5]);
			}
			nexp++;
		} else if (!strcmp(f[0], "source") && n >= 10 &&
		           nsrc < sizeof(src) / sizeof(src[0])) {
			struct st_source *s = &src[nsrc++];

			s->url = f[1];
			s->state = f[2];
			s->retry_ms = strtoll(f[3], NULL, 10);
			s->bytes = num(f[4]);
			s->requests = num(f[5]);
			s->inflight = (unsigned)num(f[6]);
			s->failures = num(f[7]);
			s->err_age = strtoll(f[8], NULL, 10);
			s->err = f[9];
		} else if (!strcmp(f[0], "cache") && n >= 8) {
			unsigned long long hit = num(f[5]), fetched = num(f[6]);
			double ratio = hit + fetched
			               ? (double)hit / (double)(hit + fetched) : 0;

			if (o->json) {
				printf("],");
				print_sources_json(src, nsrc);
				printf("\"cache\":{\"used_bytes\":%llu,"
				       "\"cap_bytes\":%llu,\"pinned_bytes\":%s,"
				       "\"blocks\":%llu,\"blocks_from_cache\":%llu,"
				       "\"blocks_fetched\":%llu,\"hit_ratio\":%.4f,"
				       "\"evicted_blocks\":%llu},", num(f[1]),
				       num(f[2]), strcmp(f[3], "-") ? f[3] : "null",
				       num(f[4]), hit, fetched, ratio, num(f[7]));
			} else {
				if (nsrc)
					print_sources_text(src, nsrc);
				human_bytes(num(f[1]), b1, sizeof(b1));
				human_bytes(num(f[2]), b2, sizeof(b2));
				if (strcmp(f[3], "-"))
					human_bytes(num(f[3]), b3, sizeof(b3));
				else
					snprintf(b3, sizeof(b3), "-");
				printf("  cache: %s used of %s, pinned %s, hit ratio "
				       "%.1f%% (%llu blocks from the cache, %llu "
				       "fetched), %llu evicted\n", b1, b2, b3,
				       100 * ratio, hit, fetched, num(f[7]));
			}
		} else if (!strcmp(f[0], "memory") && n >= 4) {
			if (o->json) {
				printf("\"memory\":{\"block_bytes\":%llu,"
				       "\"block_cap_bytes\":%llu,"
				       "\"readahead_runs_queued\":%llu,"
				       "\"malloc_in_use_bytes\":%llu,"
				       "\"malloc_held_bytes\":%llu},",
				       num(f[1]), num(f[2]), num(f[3]),
				       n > 4 ? num(f[4]) : 0, n > 5 ? num(f[5]) : 0);
			} else {
				human_bytes(num(f[1]), b1, sizeof(b1));
				human_bytes(num(f[2]), b2, sizeof(b2));
				printf("  memory: %s of %s (mem_cache) in blocks, %llu "
				       "read-ahead runs queued\n", b1, b2, num(f[3]));
			}
		}
	}
	(void)mnt;
}

/* "SEQ AGE_S RETRIES KIND PATH[ -> PATH2]\tERROR" as a table row. */
static void print_pending(char *line, bool json, bool first)
{
	char kind[16], *err = strchr(line, '\t');
	unsigned long long seq;
	long long age;
	unsigned retries;
	int off = 0;

	if (err)
		*err++ = '\0';
	if (sscanf(line, "%llu %lld %u %15s %n", &seq, &age, &retries, kind,
	           &off) < 4 || !off) {
		if (json) {
			printf("%s{\"raw\":", first ? "" : ",");
			json_str(stdout, line);
			putchar('}');
		} else {
			printf("%s\n", line);
		}
		return;
	}
	if (json) {
		printf("%s{\"seq\":%llu,\"age_s\":%lld,\"retries\":%u,"
		       "\"kind\":\"%s\",\"path\":", first ? "" : ",", seq, age,
		       retries, kind);
		json_str(stdout, line + off);
		printf(",\"error\":");
		if (err && strcmp(err, "-"))
			json_str(stdout, err);
		else
			printf("null");
		putchar('}');
		return;
	}
	if (first)
		printf("%-8s %7s %7s %s %s\n", "SEQ", "AGE_S", "RETRIES",
		       "OPERATION", "PATH  (LAST ERROR)");
	printf("%-8llu %7lld %7u %s %s%s%s%s\n", seq, age, retries, kind,
	       line + off, err && strcmp(err, "-") ? "  (" : "",
	       err && strcmp(err, "-") ? err : "",
	       err && strcmp(err, "-") ? ")" : "");
}

/* Asks req and checks the answer ends with ".\n" (cut off there); NULL
 * with a message otherwise.  An old daemon answers "error ..." to a
 * request it does not know: *unknown is set then (no message). */
static char *ask_list(const char *mnt, const char *req, bool *unknown)
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

/* The figures and pending operations of the mount at mnt: 0 or 1. */
static int status_one(const char *mnt, struct st_out *o)
{
	char *info = NULL, *ans = NULL, *copy = NULL, *line, *next;
	size_t shown = 0, conflicts = 0;
	bool unknown;
	int rc = 1;

	info = ask_list(mnt, "info\n", &unknown);
	if (!info && !unknown)
		goto out;
	ans = ask_list(mnt, "status\n", NULL);
	if (!ans)
		goto out;
	copy = strdup(ans);     /* the conflicts' pass, for JSON */
	if (!copy)
		goto out;
	if (o->json) {
		printf("%s{\"mount\":", o->nmounts ? "," : "");
		json_str(stdout, mnt);
		putchar(',');
	} else {
		printf("%s%s\n", o->nmounts ? "\n" : "", mnt);
	}
	o->nmounts++;
	if (info)
		print_info(info, mnt, o);
	if (o->json)
		printf("\"pending\":[");
	for (line = ans; *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		else
			next = line + strlen(line);
		if (!strncmp(line, "conflict ", 9)) {
			if (!o->json)
				print_conflict(line + 9, conflicts == 0);
			conflicts++;
			continue;
		}
		print_pending(line, o->json, shown++ == 0);
	}
	if (o->json) {
		printf("],\"conflicts\":[");
		conflicts = 0;
		for (line = copy; *line; line = next) {
			char *ours, *path;
			long long age;

			next = strchr(line, '\n');
			if (next)
				*next++ = '\0';
			else
				next = line + strlen(line);
			if (strncmp(line, "conflict ", 9))
				continue;
			ours = strchr(line, '\t');
			if (ours)
				*ours++ = '\0';
			age = strtoll(line + 9, &path, 10);
			printf("%s{\"age_s\":%lld,\"path\":", conflicts++ ? ","
			       : "", age);
			json_str(stdout, path + (*path == ' '));
			printf(",\"ours\":");
			json_str(stdout, ours ? ours : "");
			putchar('}');
		}
		printf("]}");
	} else if (!shown) {
		printf("dmsctl: nothing pending in %s\n", mnt);
	} else {
		printf("dmsctl: %zu operations pending in %s\n", shown, mnt);
	}
	rc = 0;
out:
	free(info);
	free(ans);
	free(copy);
	return rc;
}

static int cmd_status(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	char mnt[PATH_MAX], rel[PATH_MAX], **all = NULL;
	struct st_out o = { 0 };
	int c, i, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+j", longs, NULL)) != -1) {
		if (c == 'j') {
			o.json = true;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (o.json)
		printf("{\"mounts\":[");
	if (optind < argc) {
		for (i = optind; i < argc; i++)
			if (find_mount(argv[i], mnt, sizeof(mnt), rel,
			               sizeof(rel)) != 0 ||
			    status_one(mnt, &o) != 0)
				rc = 1;
		goto out;
	}
	/* No PATH: every running dmsfs mount that answers. */
	all = dmsfs_mounts();
	if (!all) {
		fprintf(stderr, "dmsctl: out of memory\n");
		rc = 1;
		goto out;
	}
	for (i = 0; all[i]; i++) {
		char path[PATH_MAX];

		if (ctl_socket_path(all[i], path, sizeof(path)) != 0 ||
		    access(path, F_OK) != 0)
			continue;
		if (status_one(all[i], &o) != 0)
			rc = 1;
	}
	if (!o.json && !o.nmounts)
		printf("dmsctl: no dmsfs mount is running\n");
	for (i = 0; all[i]; i++)
		free(all[i]);
	free(all);
out:
	if (o.json)
		printf("]}\n");
	return rc;
}

/* ---- pin, unpin, pins ---------------------------------------------------
 * Each PATH goes to the daemon of the mount it is in: the paths of one
 * mount in one request (fs/ctl_proto.h), so the cap check sees them all. */

struct pin_opts {
	bool quiet, json, tty;
};

struct pin_mount {
	char mnt[PATH_MAX];
	char **rel;                 /* paths inside the mount */
	size_t n;
};

/* Groups argv's paths by mount, in the order first named.  -1 (said why)
 * if one is not in a dmsfs mount or cannot be sent. */
static int pin_group(int argc, char **argv, struct pin_mount **out,
                     size_t *nout)
{
	struct pin_mount *m = NULL;
	size_t n = 0;
	int rc = 0;

	for (int i = 0; i < argc; i++) {
		char mnt[PATH_MAX], rel[PATH_MAX];
		size_t k;

		if (find_mount(argv[i], mnt, sizeof(mnt), rel, sizeof(rel)) != 0) {
			rc = -1;
			continue;
		}
		if (strchr(rel, '\n')) {
			fprintf(stderr, "dmsctl: %s: a name with a newline cannot "
			        "be sent to the daemon\n", argv[i]);
			rc = -1;
			continue;
		}
		for (k = 0; k < n && strcmp(m[k].mnt, mnt); k++)
			;
		if (k == n) {
			void *v = realloc(m, (n + 1) * sizeof(*m));

			if (!v)
				goto oom;
			m = v;
			memset(&m[n], 0, sizeof(m[n]));
			snprintf(m[n].mnt, sizeof(m[n].mnt), "%s", mnt);
			n++;
		}
		{
			void *v = realloc(m[k].rel, (m[k].n + 1) * sizeof(char *));

			if (!v)
				goto oom;
			m[k].rel = v;
			m[k].rel[m[k].n] = strdup(rel);
			if (!m[k].rel[m[k].n])
				goto oom;
			m[k].n++;
		}
	}
	*out = m;
	*nout = n;
	return rc;
oom:
	fprintf(stderr, "dmsctl: out of memory\n");
	*out = m;
	*nout = n;
	return -1;
}

static void pin_groups_free(struct pin_mount *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < m[i].n; k++)
			free(m[i].rel[k]);
		free(m[i].rel);
	}
	free(m);
}

/* Sends "VERB N\n" and the paths; the connected fd or -1 (said why). */
static int pin_send(const struct pin_mount *m, const char *verb)
{
	char head[64];
	int fd = connect_ctl(m->mnt);
	FILE *f;
	bool ok;

	if (fd < 0)
		return -1;
	snprintf(head, sizeof(head), "%s %zu\n", verb, m->n);
	f = fdopen(dup(fd), "w");
	ok = f && fputs(head, f) >= 0;
	for (size_t i = 0; ok && i < m->n; i++)
		ok = fprintf(f, "%s\n", m->rel[i]) >= 0;
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "dmsctl: %s: %s\n", m->mnt, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* "3:04" or "1:02:03" */
static void clock_str(double s, char *out, size_t cap)
{
	long t = s < 0 ? 0 : s > 359999 ? 359999 : (long)(s + 0.5);

	if (t >= 3600)
		snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

struct pin_progress {
	unsigned long long fd, f, bd, b, fetched;
	double start, last_line;
	bool drawn;
};

static void pin_show(const struct pin_mount *m, struct pin_progress *p,
                     const struct pin_opts *o, bool final)
{
	double el = now_s() - p->start;
	double rate = el > 0 ? (double)p->fetched / el : 0;
	double eta = rate > 0 ? (double)(p->b - p->bd) / rate : -1;
	char bd[32], b[32], r[32], e[32] = "?";

	if (o->quiet || o->json || (!final && p->bd == p->b && p->fd == p->f))
		return;   /* the final line says it */
	if (!o->tty && !final && now_s() - p->last_line < 1.0)
		return;
	human_bytes(p->bd, bd, sizeof(bd));
	human_bytes(p->b, b, sizeof(b));
	human_bytes((unsigned long long)rate, r, sizeof(r));
	if (eta >= 0)
		clock_str(eta, e, sizeof(e));
	if (o->tty) {
		int width = 24, fill = p->b ? (int)((double)p->bd / (double)p->b *
		                                     width) : width;

		printf("\r\033[K[%.*s%.*s] %llu/%llu files  %s/%s  %s/s  ETA %s",
		       fill, "########################", width - fill,
		       "........................", p->fd, p->f, bd, b, r,
		       final ? "0:00" : e);
		if (final)
			putchar('\n');
		p->drawn = !final;
	} else {
		/* One line per second at most: a log, not a screen. */
		printf("pin %s: %llu/%llu files, %llu/%llu bytes, %llu fetched, "
		       "%.1f MiB/s, eta %s\n", m->mnt, p->fd, p->f, p->bd, p->b,
		       p->fetched, rate / 1048576.0, final ? "0:00" : e);
		p->last_line = now_s();
	}
	fflush(stdout);
}

/* Runs one mount's pin; appends its JSON object to js.  0 ok, 1 failed. */
static int pin_one(const struct pin_mount *m, const struct pin_opts *o,
                   FILE *js)
{
	struct pin_progress p = { .start = now_s() };
	char *line = NULL;
	size_t cap = 0;
	unsigned long long need = 0, pinned = 0, pcap = 0;
	bool refused = false, done = false, first_fail = true;
	unsigned nfail = 0;
	FILE *in;
	int fd = pin_send(m, "pin");

	if (fd < 0)
		return 1;
	in = fdopen(fd, "r");
	if (!in) {
		close(fd);
		return 1;
	}
	if (js) {
		fputs("{\"mount\": ", js);
		json_str(js, m->mnt);
		fputs(", \"failed\": [", js);
	}
	while (getline(&line, &cap, in) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "progress %llu %llu %llu %llu %llu", &p.fd, &p.f,
		           &p.bd, &p.b, &p.fetched) == 5) {
			pin_show(m, &p, o, false);
		} else if (sscanf(line, "walk %llu %llu", &p.f, &p.b) == 2) {
			;
		} else if (sscanf(line, "refused %llu %llu %llu", &need, &pinned,
		                  &pcap) == 3) {
			char a[32], b[32], c[32];

			refused = true;
			human_bytes(need, a, sizeof(a));
			human_bytes(pinned, b, sizeof(b));
			human_bytes(pcap, c, sizeof(c));
			fprintf(stderr, "dmsctl: %s: pin refused: it needs %llu "
			        "bytes (%s), %llu (%s) are pinned already, "
			        "cache_size is %llu (%s)\n", m->mnt, need, a, pinned,
			        b, pcap, c);
		} else if (!strncmp(line, "fail ", 5)) {
			char *err = line + 5, *path = strchr(err, ' '), *why;
			char full[2 * PATH_MAX];

			if (!path)
				continue;
			*path++ = '\0';
			why = strchr(path, '\t');
			if (why)
				*why++ = '\0';
			snprintf(full, sizeof(full), "%s%s", m->mnt,
			         strcmp(path, "/") ? path : "");
			if (p.drawn) {
				putchar('\n');
				p.drawn = false;
			}
			fprintf(stderr, "dmsctl: pin %s: %s (%s)\n", full, err,
			        why ? why : "");
			nfail++;
			if (js) {
				fputs(first_fail ? "{\"path\": " : ", {\"path\": ", js);
				json_str(js, full);
				fputs(", \"error\": ", js);
				json_str(js, err);
				fputs(", \"reason\": ", js);
				json_str(js, why ? why : "");
				fputc('}', js);
			}
			first_fail = false;
		} else if (sscanf(line, "done %llu %llu %llu %llu", &p.fd, &p.f,
		                  &p.bd, &p.fetched) == 4) {
			done = true;
		} else if (!strncmp(line, "error ", 6)) {
			fprintf(stderr, "dmsctl: %s: %s\n", m->mnt, line + 6);
		}
	}
	if (!done && !refused)
		fprintf(stderr, "dmsctl: %s: the daemon ended the pin without "
		        "an answer (unmounted?)\n", m->mnt);
	if (done)
		pin_show(m, &p, o, true);
	if (js) {
		fprintf(js, "], \"files\": %llu, \"files_done\": %llu, \"bytes\": "
		        "%llu, \"bytes_done\": %llu, \"fetched\": %llu, "
		        "\"seconds\": %.3f, \"complete\": %s", p.f, p.fd, p.b,
		        p.bd, p.fetched, now_s() - p.start,
		        done && !nfail ? "true" : "false");
		if (refused)
			fprintf(js, ", \"refused\": {\"needed\": %llu, \"pinned\": "
			        "%llu, \"cap\": %llu}", need, pinned, pcap);
		fputc('}', js);
	}
	free(line);
	fclose(in);
	return done && !nfail && !refused ? 0 : 1;
}

static void pin_interrupted(int sig)
{
	static const char msg[] = "\ndmsctl: interrupted; the daemon stops "
	                          "the pin; run it again to resume\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(130);
	_exit(130);
}

static int cmd_pin(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct pin_opts o = { .tty = isatty(1) };
	struct pin_mount *m = NULL;
	size_t n = 0;
	char *jbuf = NULL;
	size_t jlen = 0;
	FILE *js = NULL;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+qj", lo, NULL)) != -1) {
		if (c == 'q') {
			o.quiet = true;
		} else if (c == 'j') {
			o.json = true;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	if (pin_group(argc - optind, argv + optind, &m, &n) != 0)
		rc = 1;
	signal(SIGINT, pin_interrupted);
	signal(SIGTERM, pin_interrupted);
	if (o.json) {
		js = open_memstream(&jbuf, &jlen);
		if (!js) {
			fprintf(stderr, "dmsctl: out of memory\n");
			rc = 1;
			goto out;
		}
		fputs("{\"mounts\": [", js);
	}
	for (size_t i = 0; i < n; i++) {
		if (js && i)
			fputs(", ", js);
		if (pin_one(&m[i], &o, js) != 0)
			rc = 1;
	}
	if (js) {
		fprintf(js, "], \"ok\": %s}\n", rc ? "false" : "true");
		fclose(js);
		fputs(jbuf, stdout);
	}
out:
	free(jbuf);
	pin_groups_free(m, n);
	return rc;
}

static int cmd_unpin(int argc, char **argv)
{
	struct pin_mount *m = NULL;
	size_t n = 0;
	bool quiet = false;
	int rc = 0;

	if (argc >= 2 && (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet"))) {
		quiet = true;
		argc--;
		argv++;
	}
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (pin_group(argc - 1, argv + 1, &m, &n) != 0)
		rc = 1;
	for (size_t i = 0; i < n; i++) {
		char *line = NULL;
		size_t cap = 0;
		unsigned long long files = 0, bytes = 0;
		bool done = false;
		int fd = pin_send(&m[i], "unpin");
		FILE *in = fd >= 0 ? fdopen(fd, "r") : NULL;

		if (!in) {
			if (fd >= 0)
				close(fd);
			rc = 1;
			continue;
		}
		while (getline(&line, &cap, in) > 0) {
			line[strcspn(line, "\n")] = '\0';
			if (!strncmp(line, "fail ", 5)) {
				char *err = line + 5, *path = strchr(err, ' '), *why;

				if (!path)
					continue;
				*path++ = '\0';
				why = strchr(path, '\t');
				if (why)
					*why++ = '\0';
				fprintf(stderr, "dmsctl: unpin %s%s: %s (%s)\n",
				        m[i].mnt, strcmp(path, "/") ? path : "", err,
				        why ? why : "");
				rc = 1;
			} else if (sscanf(line, "done %llu %llu", &files,
			                  &bytes) == 2) {
				done = true;
			} else if (!strncmp(line, "error ", 6)) {
				fprintf(stderr, "dmsctl: %s: %s\n", m[i].mnt, line + 6);
			}
		}
		if (!done)
			rc = 1;
		else if (!quiet) {
			char b[32];

			human_bytes(bytes, b, sizeof(b));
			printf("dmsctl: %s: unpinned %llu files (%s)\n", m[i].mnt,
			       files, b);
		}
		free(line);
		fclose(in);
	}
	pin_groups_free(m, n);
	return rc;
}

/* Lists the pins of the mount at mnt (the caller's own; root: all). */
static int pins_one(const char *mnt)
{
	char *ans = NULL, *line, *next;
	size_t len = 0;
	FILE *mem = open_memstream(&ans, &len);
	int rc = 1;

	if (!mem || ask_stream(mnt, "pins\n", mem) != 0)
		goto out;
	fclose(mem);
	mem = NULL;
	if (len < 2 || strcmp(ans + len - 2, ".\n")) {
		fprintf(stderr, "dmsctl: %s: the answer was cut short\n", mnt);
		goto out;
	}
	printf("%s:\n", mnt);
	for (line = ans; *line; line = next) {
		unsigned long long size, cached, n, pall, cap;
		unsigned uid;
		int off = 0;
		char s[32], c[32], a[32], k[32];

		next = strchr(line, '\n');
		*next++ = '\0';
		if (sscanf(line, "pin %u %llu %llu %n", &uid, &size, &cached,
		           &off) == 3 && off) {
			struct passwd *pw = getpwuid(uid);

			human_bytes(size, s, sizeof(s));
			human_bytes(cached, c, sizeof(c));
			printf("  %5.1f%%  %10s of %-10s  %-10s  %s%s\n",
			       size ? 100.0 * (double)cached / (double)size : 100.0,
			       c, s, pw ? pw->pw_name : "?", mnt,
			       strcmp(line + off, "/") ? line + off : "");
		} else if (sscanf(line, "total %llu %llu %llu %llu %llu", &n, &size,
		                  &cached, &pall, &cap) == 5) {
			human_bytes(size, s, sizeof(s));
			human_bytes(cached, c, sizeof(c));
			human_bytes(pall, a, sizeof(a));
			human_bytes(cap, k, sizeof(k));
			printf("  total: %llu pins, %s of %s cached (%.1f%%); "
			       "pinned on this mount: %s of cache_size %s\n", n, c, s,
			       size ? 100.0 * (double)cached / (double)size : 100.0,
			       a, k);
		}
	}
	rc = 0;
out:
	if (mem)
		fclose(mem);
	free(ans);
	return rc;
}

static int cmd_pins(int argc, char **argv)
{
	char mnt[PATH_MAX], rel[PATH_MAX], **all;
	int rc = 0;

	if (argc >= 2) {
		for (int i = 1; i < argc; i++)
			if (find_mount(argv[i], mnt, sizeof(mnt), rel,
			               sizeof(rel)) != 0 || pins_one(mnt) != 0)
				rc = 1;
		return rc;
	}
	all = dmsfs_mounts();
	for (int i = 0; all && all[i]; i++) {
		char path[PATH_MAX];

		if (ctl_socket_path(all[i], path, sizeof(path)) == 0 &&
		    access(path, F_OK) == 0 && pins_one(all[i]) != 0)
			rc = 1;
		free(all[i]);
	}
	free(all);
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 2;

	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	                  !strcmp(argv[1], "help"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "sync"))
		return cmd_sync(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "status"))
		return cmd_status(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "pin"))
		return cmd_pin(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "unpin"))
		return cmd_unpin(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "pins"))
		return cmd_pins(argc - 1, argv + 1);
	if (argc < 3 || strcmp(argv[1], "acl")) {
		usage(stderr);
		goto out;
	}
	if (!strcmp(argv[2], "lint"))
		rc = cmd_lint(argc - 2, argv + 2);
	else if (!strcmp(argv[2], "check"))
		rc = cmd_check(argc - 2, argv + 2);
	else
		usage(stderr);
out:
	return rc;
}
