/* dmsfs command line: arguments, then detaching once mounted.
 *
 * The daemon forks before it opens LMDB or any connection (neither survives a
 * fork); the parent waits on a pipe until the child reports the mount usable,
 * so `dmsfs URL MNT` returns only when MNT works, or fails with the reason. */
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/fs_i.h"

struct parse_state {
	struct fs_raw_opts raw;
	char *bare[2];    /* URL and mountpoint, or only the mountpoint */
	int nbare;
};

static int opt_proc(void *data, const char *arg, int key,
                    struct fuse_args *outargs)
{
	struct parse_state *ps = data;

	/* x-systemd.*, x-mount.*: fstab options for other programs. */
	if (key == FUSE_OPT_KEY_OPT && strncmp(arg, "x-", 2) == 0)
		return 0;
	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	if (ps->nbare == 2) {
		fprintf(stderr, "dmsfs: unexpected argument '%s'\n", arg);
		return -1;
	}
	ps->bare[ps->nbare] = strdup(arg);
	return ps->bare[ps->nbare++] ? 0 : -1;
}

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-o OPT[,OPT...]] URL MOUNTPOINT\n"
	       "       %s [-f] [-d] -o config=FILE[,OPT...] MOUNTPOINT\n"
	       "\n"
	       "Mounts the tree under URL (read-only unless rw).  URL: http(s)://,\n"
	       "ftp:// or gsiftp:// sources, several separated by ';' in order\n"
	       "of preference.  Returns once the mount works; -f stays in the\n"
	       "foreground and logs to stderr, -d adds debug lines.\n"
	       "\n"
	       "dmsfs options (see README.md), with their defaults:\n"
	       "    -o config=FILE         exports, cache and rules from an INI\n"
	       "                           file (none; -o options override it)\n"
	       "    -o acl=FILE            access rules, XRootD authdb subset\n"
	       "                           (none: no rules, default_permissions)\n"
	       "    -o cache_dir=DIR       block and metadata cache, absolute\n"
	       "                           (/var/cache/dmsfs for root, else\n"
	       "                           $XDG_CACHE_HOME/dmsfs or ~/.cache/dmsfs)\n"
	       "    -o cache_size=SIZE     cap on cached data (10G)\n"
	       "    -o block_size=SIZE     cache unit, a power of two 4K..16M (64K)\n"
	       "    -o meta_ttl=SECONDS    trust listings this long (60)\n"
	       "    -o readahead=SIZE      read ahead of sequential readers\n"
	       "                           (32M; 0: off)\n"
	       "    -o kernel_readahead=SIZE  the mount's kernel read-ahead\n"
	       "                           window (1M; 0: the kernel's)\n"
	       "    -o mem_cache=SIZE      recent blocks in memory (40M, at least\n"
	       "                           readahead + 8M)\n"
	       "    -o fetchers=N          read-ahead threads (16)\n"
	       "    -o prefetch_files=N    files of a folder fetched ahead of a\n"
	       "                           reader walking it (32; 0: off)\n"
	       "    -o threads=N           FUSE worker threads at most (32),\n"
	       "                           started as requests come and kept;\n"
	       "                           libfuse's -s, max_threads,\n"
	       "                           max_idle_threads and clone_fd below\n"
	       "                           are not used: threads= applies\n"
	       "    -o proxy=GROUPS        HTTP proxies: p1|p2;p3;DIRECT (none)\n"
	       "    -o gridftp_streams=N   parallel GridFTP data streams (2)\n"
	       "    -o connect_timeout=S   per connection attempt (5)\n"
	       "    -o stall_timeout=S     abort transfers stalled this long (15)\n"
	       "    -o min_rate=SIZE       bytes/s every request must average (64K)\n"
	       "    -o max_listing=SIZE    cap on one listing reply (128M)\n"
	       "    -o rw                  the URL's export is writable (off)\n"
	       "    -o writeback_delay=S   upload a closed file once quiet this\n"
	       "                           long (2)\n"
	       "    -o writeback_size=SIZE cap on pending writes (10G)\n"
	       "    -o unmount_flush=S     unmount keeps uploading this long (10)\n"
	       "    -o metrics_file=PATH   write Prometheus metrics there (none)\n"
	       "    -o metrics_interval=S  every S seconds (15)\n"
	       "    -o log=FILE            append log lines to FILE (none: stderr\n"
	       "                           with -f, else syslog; without a syslog\n"
	       "                           daemon, the stderr dmsfs started with)\n"
	       "    -o allow_other         other users may use the mount (off; on\n"
	       "                           with acl=)\n"
	       "\n"
	       "FUSE options:\n", prog, prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/* Waits for the child to report the mount usable (one byte) or to exit. */
static int wait_ready(int fd, pid_t child)
{
	char byte;
	ssize_t n;
	int status;

	do {
		n = read(fd, &byte, 1);
	} while (n < 0 && errno == EINTR);
	close(fd);
	if (n == 1)
		return 0;
	if (waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	    WEXITSTATUS(status) != 0)
		return WEXITSTATUS(status);
	return 1;
}

/* What `mount`, `df` and /proc/mounts show as the source: the first
 * source of the only export (a config with several: the config file).
 * Commas would split the mount options and blanks the fields of
 * /proc/mounts and fstab: they are percent-encoded, as in a URL. */
static int fsname_opt(const struct fs_config *cfg, const char *config,
                      char *out, size_t cap)
{
	const char *src = cfg->sources;
	size_t n = 0;
	int rc = -ENAMETOOLONG;

	if (!src)
		src = cfg->nexports == 1 ? cfg->exports[0].source : config;
	n = (size_t)snprintf(out, cap, "-ofsname=");
	for (; *src && *src != ';' && n + 4 < cap; src++) {
		if (*src == ',' || *src == ' ' || *src == '\t' || *src == '\\' ||
		    *src == '\n' || *src == '%')
			n += (size_t)snprintf(out + n, cap - n, "%%%02X",
			                      (unsigned char)*src);
		else
			out[n++] = *src;
	}
	if (!*src || *src == ';') {
		out[n] = '\0';
		rc = 0;
	}
	return rc;
}

/* Mount options dmsfs always sets.  Read-only unless an export is
 * writable: the kernel refuses every change with EROFS.  With access rules
 * dmsfs checks every request itself (default_permissions off) and serves
 * all local users. */
static int add_mount_opts(struct fuse_args *args, const struct fs_config *cfg,
                          const char *config)
{
	const char *opts = cfg->acl_file
		? (cfg->writable ? "-oallow_other,subtype=dmsfs"
		   : "-oro,allow_other,subtype=dmsfs")
		: (cfg->writable ? "-odefault_permissions,subtype=dmsfs"
		   : "-oro,default_permissions,subtype=dmsfs");
	char fsname[1024];

	if (fsname_opt(cfg, config, fsname, sizeof(fsname)) != 0)
		snprintf(fsname, sizeof(fsname), "-ofsname=dmsfs");
	if (fuse_opt_add_arg(args, opts) != 0 ||
	    fuse_opt_add_arg(args, fsname) != 0)
		return -1;
	return 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl = { 0 };
	struct parse_state ps = { 0 };
	struct fs_config cfg = { 0 };
	int pipefd[2] = { -1, -1 };
	int status = 1, want_bare;
	pid_t pid;

	/* Dozens of FUSE and read-ahead threads would each get a malloc arena
	 * holding on to freed block buffers; two arenas keep the daemon's
	 * memory close to what it uses, at no measured cost in speed. */
	mallopt(M_ARENA_MAX, 2);
	/* Fetch buffers (up to a run, 2 MiB) come and go all the time: keep
	 * them on the heap, reused, instead of fresh mmaps that fault in every
	 * page again. */
	mallopt(M_MMAP_THRESHOLD, 8 << 20);
	mallopt(M_TRIM_THRESHOLD, 32 << 20);
	if (fuse_opt_parse(&args, &ps, fs_opt_table, opt_proc) != 0)
		goto out;
	want_bare = ps.raw.config ? 1 : 2;
	/* fuse_parse_cmdline wants the mountpoint among its arguments. */
	if (ps.nbare == want_bare &&
	    fuse_opt_add_arg(&args, ps.bare[want_bare - 1]) != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &cl) != 0)
		goto out;
	if (cl.show_help) {
		usage(argv[0]);
		status = 0;
		goto out;
	}
	if (cl.show_version) {
		printf("dmsfs %s\nFUSE library version %s\n", DMSFS_VERSION,
		       fuse_pkgversion());
		status = 0;
		goto out;
	}
	if (ps.nbare != want_bare || !cl.mountpoint) {
		fprintf(stderr, "dmsfs: usage: %s [-o OPT,...] URL MOUNTPOINT, or "
		        "%s -o config=FILE MOUNTPOINT (see --help)\n", argv[0], argv[0]);
		goto out;
	}
	if (ps.raw.config && fs_config_load(ps.raw.config, &ps.raw, &cfg) != 0)
		goto out;
	if (fs_config_apply(&cfg, &ps.raw) != 0)
		goto out;
	if (fs_mountpoint_check(cl.mountpoint) != 0)
		goto out;
	if (!ps.raw.config)
		cfg.sources = ps.bare[0];
	cfg.mountpoint = cl.mountpoint;
	cfg.config_file = ps.raw.config;
	cfg.foreground = cl.foreground;
	cfg.debug = cl.debug;
	dms_log_set_debug(cl.debug);
	dms_log_set_tag(cl.mountpoint);
	if (ps.raw.log) {
		int rc = dms_log_file_open(ps.raw.log);

		if (rc) {
			fprintf(stderr, "dmsfs: invalid log=%s (%s)\n", ps.raw.log,
			        strerror(-rc));
			goto out;
		}
		cfg.log_file = true;
	}
	if (add_mount_opts(&args, &cfg, ps.raw.config) != 0)
		goto out;
	/* From here on cfg.args owns the argument vector. */
	cfg.args = args;
	memset(&args, 0, sizeof(args));

	if (cl.foreground) {
		status = fs_run(&cfg, -1);
		goto out;
	}
	if (pipe(pipefd) != 0) {
		perror("dmsfs: pipe");
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		perror("dmsfs: fork");
		goto out;
	}
	if (pid > 0) {
		close(pipefd[1]);
		status = wait_ready(pipefd[0], pid);
		goto out;
	}
	close(pipefd[0]);
	setsid();
	if (chdir("/") != 0)
		goto out;
	status = fs_run(&cfg, pipefd[1]);
out:
	free(cl.mountpoint);
	free(ps.bare[0]);
	free(ps.bare[1]);
	fs_raw_opts_free(&ps.raw);
	fs_config_free(&cfg);
	fuse_opt_free_args(&cfg.args);
	fuse_opt_free_args(&args);
	return status;
}
