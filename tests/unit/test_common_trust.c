/* Unit tests for common/trustfile.c: which files that decide access are
 * opened, on a real tree in $TMPDIR.  As root (make test runs as root) the
 * ownership cases use the nobody account's uid; as another user they are
 * skipped.  An alarm fails the run if anything blocks (a FIFO). */
#define _GNU_SOURCE   /* nftw flags */
#include "common/trustfile.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

static char base[PATH_MAX];
static uid_t nobody = 65534;
static bool root;

static const char *p(const char *rel)
{
	static char bufs[4][2 * PATH_MAX];
	static int i;
	char *b = bufs[i++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", base, rel);
	return b;
}

static void mk_file(const char *rel, mode_t mode, uid_t uid)
{
	const char *path = p(rel);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	CHECK(write(fd, "u * / rl\n", 9) == 9);
	close(fd);
	CHECK_OK(chmod(path, mode));
	if (uid != 0)
		CHECK_OK(chown(path, uid, (gid_t)-1));
}

static void mk_dir(const char *rel, mode_t mode, uid_t uid)
{
	const char *path = p(rel);

	CHECK_OK(mkdir(path, 0700));
	CHECK_OK(chmod(path, mode));
	if (uid != 0)
		CHECK_OK(chown(path, uid, (gid_t)-1));
}

static void mk_link(const char *target, const char *rel, uid_t uid)
{
	CHECK_OK(symlink(target, p(rel)));
	if (uid != 0)
		CHECK_OK(lchown(p(rel), uid, (gid_t)-1));
}

/* Opens path; wants rc and, on failure, why containing want_why. */
static void expect(const char *path, int want, const char *want_why)
{
	char why[DMS_TRUST_WHYLEN];
	struct stat st;
	int fd = -1, rc;

	rc = dms_open_trusted(path, &fd, &st, why, sizeof(why));
	if (rc != want)
		fprintf(stderr, "  %s: got %d (%s), want %d\n", path, rc, why,
		        want);
	CHECK_ERR(rc, want);
	if (rc == 0) {
		char b[16];

		CHECK(fd >= 0);
		CHECK(S_ISREG(st.st_mode));
		CHECK(read(fd, b, sizeof(b)) == 9);
		CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
		close(fd);
	} else {
		CHECK(fd == -1);
		CHECK(why[0] != '\0');
		if (want_why && !strstr(why, want_why)) {
			fprintf(stderr, "  why '%s' lacks '%s'\n", why, want_why);
			CHECK(strstr(why, want_why) != NULL);
		}
	}
}

static void test_regular_ok(void)
{
	mk_file("ok", 0644, 0);
	mk_file("ro", 0400, 0);
	expect(p("ok"), 0, NULL);
	expect(p("ro"), 0, NULL);
}

static void test_writable_file_refused(void)
{
	mk_file("gw", 0664, 0);
	mk_file("ow", 0606, 0);
	mk_file("ww", 0666, 0);
	expect(p("gw"), -EPERM, "writable by group or others (mode 0664)");
	expect(p("ow"), -EPERM, "writable by group or others");
	expect(p("ww"), -EPERM, "writable by group or others");
}

static void test_owner_refused(void)
{
	if (!root)
		return;
	mk_file("theirs", 0644, nobody);
	mk_file("theirs_ro", 0444, nobody);
	expect(p("theirs"), -EPERM, "is owned by uid");
	expect(p("theirs_ro"), -EPERM, "not by root");
}

static void test_symlinks(void)
{
	mk_file("target", 0644, 0);
	mk_file("wtarget", 0666, 0);
	mk_link("target", "to_ok", 0);
	mk_link(p("target"), "to_ok_abs", 0);
	mk_link("to_ok", "to_to_ok", 0);
	mk_link("wtarget", "to_writable", 0);
	mk_link("nowhere", "dangling", 0);
	mk_link("loop", "loop", 0);
	expect(p("to_ok"), 0, NULL);
	expect(p("to_ok_abs"), 0, NULL);
	expect(p("to_to_ok"), 0, NULL);
	/* The reason names the target, not the link. */
	expect(p("to_writable"), -EPERM, "/wtarget is writable");
	expect(p("dangling"), -ENOENT, "/nowhere");
	expect(p("loop"), -ELOOP, "too many symlinks");
	if (!root)
		return;
	mk_file("nobodys", 0644, nobody);
	mk_link("nobodys", "to_untrusted", 0);
	mk_link("target", "their_link", nobody);
	expect(p("to_untrusted"), -EPERM, "/nobodys is owned by uid");
	expect(p("their_link"), -EPERM, "symlink ");
}

static void test_parent_dirs(void)
{
	mk_dir("open", 0777, 0);
	mk_file("open/f", 0644, 0);
	mk_dir("grp", 0775, 0);
	mk_file("grp/f", 0644, 0);
	mk_dir("fine", 0755, 0);
	mk_dir("fine/deeper", 0755, 0);
	mk_file("fine/deeper/f", 0644, 0);
	expect(p("open/f"), -EPERM, "/open is writable by group or others "
	       "(mode 0777) and not sticky");
	expect(p("grp/f"), -EPERM, "/grp is writable");
	expect(p("fine/deeper/f"), 0, NULL);
	/* Deeper below an untrusted directory: still refused. */
	mk_dir("open/sub", 0755, 0);
	mk_file("open/sub/f", 0644, 0);
	expect(p("open/sub/f"), -EPERM, "/open is writable");
	/* Resolved through "..": the physical chain is what counts. */
	expect(p("fine/deeper/../deeper/./f"), 0, NULL);
	expect(p("open/../ok"), -EPERM, "/open is writable");
	if (!root)
		return;
	mk_dir("theirs_dir", 0755, nobody);
	mk_file("theirs_dir/f", 0644, 0);
	expect(p("theirs_dir/f"), -EPERM, "directory ");
}

static void test_symlinked_dirs(void)
{
	mk_dir("trusted", 0755, 0);
	mk_file("trusted/f", 0644, 0);
	mk_dir("open2", 0777, 0);
	mk_file("open2/f", 0644, 0);
	/* An intermediate link to a trusted directory is fine... */
	mk_link("trusted", "dlink", 0);
	expect(p("dlink/f"), 0, NULL);
	/* ...to an untrusted one is not... */
	mk_link("open2", "dlink_bad", 0);
	expect(p("dlink_bad/f"), -EPERM, "/open2 is writable");
	/* ...nor is a link that lives in an untrusted directory, even to a
	 * trusted target: whoever can write there can retarget it. */
	mk_link(p("trusted"), "open2/back", 0);
	expect(p("open2/back/f"), -EPERM, "/open2 is writable");
	/* Relative target with "..": resolved from the link's directory. */
	mk_link("../ok", "trusted/up", 0);
	expect(p("trusted/up"), 0, NULL);
}

static void test_sticky_dir(void)
{
	mk_dir("sticky", 01777, 0);
	mk_file("sticky/root_f", 0644, 0);
	mk_dir("sticky/root_d", 0755, 0);
	mk_file("sticky/root_d/f", 0644, 0);
	expect(p("sticky/root_f"), 0, NULL);
	expect(p("sticky/root_d/f"), 0, NULL);
	mk_dir("gsticky", 01775, 0);
	mk_file("gsticky/f", 0644, 0);
	expect(p("gsticky/f"), 0, NULL);
	if (!root)
		return;
	mk_file("sticky/their_f", 0644, nobody);
	mk_dir("sticky/their_d", 0755, nobody);
	mk_file("sticky/their_d/f", 0644, 0);
	mk_link(p("ok"), "sticky/their_link", nobody);
	expect(p("sticky/their_f"), -EPERM, "is owned by uid");
	expect(p("sticky/their_d/f"), -EPERM, "directory ");
	expect(p("sticky/their_link"), -EPERM, "symlink ");
}

/* dms_open_trusted_dir: the folder itself must be writable by no one but
 * its owner, sticky or not; a symlink or a file at its name is refused. */
static void expect_dir(const char *path, int want, const char *want_why)
{
	char why[DMS_TRUST_WHYLEN];
	struct stat st;
	int fd = -1, rc;

	rc = dms_open_trusted_dir(path, &fd, &st, why, sizeof(why));
	if (rc != want)
		fprintf(stderr, "  %s: got %d (%s), want %d\n", path, rc, why,
		        want);
	CHECK_ERR(rc, want);
	if (rc == 0) {
		CHECK(fd >= 0 && S_ISDIR(st.st_mode));
		CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
		close(fd);
	} else {
		CHECK(fd == -1);
		if (want_why && !strstr(why, want_why)) {
			fprintf(stderr, "  why '%s' lacks '%s'\n", why, want_why);
			CHECK(strstr(why, want_why) != NULL);
		}
	}
}

static void test_trusted_dir(void)
{
	mk_dir("sock", 0755, 0);
	mk_dir("sock_w", 0777, 0);
	mk_dir("sock_t", 01777, 0);
	mk_file("sock_f", 0644, 0);
	mk_link(p("sock"), "sock_l", 0);
	expect_dir(p("sock"), 0, NULL);
	expect_dir(p("sock/"), 0, NULL);
	expect_dir(p("sock_w"), -EPERM, "writable by group or others");
	expect_dir(p("sock_t"), -EPERM, "writable by group or others");
	expect_dir(p("sock_f"), -ENOTDIR, "not a directory");
	/* A trusted symlink is followed as on the way to a file. */
	expect_dir(p("sock_l"), 0, NULL);
	if (!root)
		return;
	mk_dir("sock_theirs", 0755, nobody);
	mk_link(p("sock"), "sock_their_l", nobody);
	expect_dir(p("sock_theirs"), -EPERM, "is owned by uid");
	expect_dir(p("sock_their_l"), -EPERM, "symlink ");
}

static void on_alarm(int sig)
{
	static const char msg[] = "test_common_trust: blocked (FIFO?)\n";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(2);
}

static void test_special_files(void)
{
	char *buf = (char *)1;
	size_t len = 1;

	CHECK_OK(mkfifo(p("fifo"), 0644));
	mk_link("fifo", "to_fifo", 0);
	mk_dir("adir", 0755, 0);
	alarm(20);
	expect(p("fifo"), -EINVAL, "not a regular file but a FIFO");
	expect(p("to_fifo"), -EINVAL, "a FIFO");
	CHECK_ERR(dms_read_trusted(p("fifo"), 100, &buf, &len, NULL, NULL, 0),
	          -EINVAL);
	CHECK(buf == NULL && len == 0);
	alarm(0);
	expect(p("adir"), -EISDIR, "not a regular file but a directory");
	expect(p("adir/"), -EISDIR, "a directory");
	expect("/", -EISDIR, "a directory");
	expect("/dev/null", -EINVAL, "character device");
	expect(p("missing"), -ENOENT, "No such file");
	expect(p("ok/child"), -ENOTDIR, "not a directory");
	expect("", -ENOENT, NULL);
}

static void test_read_capped(void)
{
	char why[DMS_TRUST_WHYLEN];
	struct stat st;
	char *buf = NULL;
	size_t len = 0;

	CHECK_OK(dms_read_trusted(p("ok"), 9, &buf, &len, &st, why,
	                          sizeof(why)));
	CHECK(buf && len == 9 && buf[9] == '\0' && st.st_size == 9);
	CHECK(buf && !memcmp(buf, "u * / rl\n", 9));
	free(buf);
	CHECK_ERR(dms_read_trusted(p("ok"), 8, &buf, &len, &st, why,
	                           sizeof(why)), -EFBIG);
	CHECK(buf == NULL && strstr(why, "larger than 8 bytes"));
	CHECK_ERR(dms_read_trusted(p("ww"), 100, &buf, &len, NULL, why,
	                           sizeof(why)), -EPERM);
	CHECK(buf == NULL);
}

static void test_relative_path(void)
{
	char cwd[PATH_MAX];

	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	CHECK_OK(chdir(p("fine")));
	expect("deeper/f", 0, NULL);
	expect("../open/f", -EPERM, "/open is writable");
	CHECK_OK(chdir(cwd));
}

/* A user's own mount: the daemon runs as that user and trusts its own
 * files as well as root's, but no third user's.  Needs a tree the user
 * can reach, so it gets its own under /tmp (sticky, root's). */
static void test_non_root_euid(void)
{
	char tree[] = "/tmp/dmstrust.XXXXXX";
	char f[PATH_MAX], d[PATH_MAX], g[PATH_MAX], x[PATH_MAX];
	pid_t pid;
	int status = -1;

	if (!root)
		return;
	CHECK(mkdtemp(tree) != NULL);
	CHECK_OK(chmod(tree, 0755));
	snprintf(d, sizeof(d), "%s/home", tree);
	snprintf(f, sizeof(f), "%s/home/rules", tree);
	snprintf(g, sizeof(g), "%s/rootfile", tree);
	snprintf(x, sizeof(x), "%s/home/other", tree);
	CHECK_OK(mkdir(d, 0755));
	CHECK_OK(chown(d, nobody, (gid_t)-1));
	close(open(f, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	CHECK_OK(chown(f, nobody, (gid_t)-1));
	close(open(g, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	close(open(x, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
	CHECK_OK(chown(x, 1, (gid_t)-1));   /* daemon: a third account */
	pid = fork();
	if (pid == 0) {
		char why[DMS_TRUST_WHYLEN];
		int fd, bad = 0;

		if (setresuid(nobody, nobody, nobody) != 0)
			_exit(3);
		bad |= dms_open_trusted(f, &fd, NULL, why, sizeof(why)) != 0;
		if (fd >= 0)
			close(fd);
		bad |= (dms_open_trusted(g, &fd, NULL, why, sizeof(why)) != 0) << 1;
		if (fd >= 0)
			close(fd);
		bad |= (dms_open_trusted(x, &fd, NULL, why, sizeof(why)) !=
		        -EPERM) << 2;
		bad |= (strstr(why, "not by root or uid") == NULL) << 3;
		_exit(bad);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "  as uid %u: status %d\n", (unsigned)nobody,
		        status);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The same files as root: the user's file is not root's to trust. */
	expect(f, -EPERM, "not by root");
	unlink(f);
	unlink(g);
	unlink(x);
	rmdir(d);
	rmdir(tree);
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? -1 : 0;
}

int main(void)
{
	const char *tmp = getenv("TMPDIR");
	struct passwd *pw = getpwnam("nobody");
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	root = geteuid() == 0;
	if (pw)
		nobody = pw->pw_uid;
	umask(022);
	snprintf(base, sizeof(base), "%s/trustXXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	/* Trusted only if every directory above it is: say so if not. */
	{
		char why[DMS_TRUST_WHYLEN];
		int fd;

		mk_file("probe", 0644, 0);
		if (dms_open_trusted(p("probe"), &fd, NULL, why, sizeof(why))) {
			fprintf(stderr, "TMPDIR is not a trusted place: %s\n", why);
			return 1;
		}
		close(fd);
	}
	RUN(test_regular_ok);
	RUN(test_writable_file_refused);
	RUN(test_owner_refused);
	RUN(test_symlinks);
	RUN(test_parent_dirs);
	RUN(test_symlinked_dirs);
	RUN(test_sticky_dir);
	RUN(test_special_files);
	RUN(test_read_capped);
	RUN(test_relative_path);
	RUN(test_non_root_euid);
	RUN(test_trusted_dir);
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	CHECK_EXIT();
}
