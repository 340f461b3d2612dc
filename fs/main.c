/* dmsfs command line: options, validation, and detaching once mounted.
 *
 * The daemon forks before it opens LMDB or any connection (neither survives a
 * fork); the parent waits on a pipe until the child reports the mount usable,
 * so `dmsfs URL MNT` returns only when MNT works, or fails with the reason. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "fs/fs.h"

#define DEFAULT_CACHE_SIZE (10ull << 30)
#define DEFAULT_BLOCK_SIZE (256u << 10)
#define DEFAULT_MEM_SIZE (32ull << 20)
#define DEFAULT_READAHEAD (8u << 20)
#define DEFAULT_META_TTL 60u

/* Option values as given; parsed and checked after fuse_opt_parse so that
 * errors name the option. */
struct raw_opts {
	char *cache_dir, *cache_size, *block_size, *mem_cache, *meta_ttl;
	char *readahead, *threads, *fetchers, *proxy, *gridftp_streams;
	char *connect_timeout, *stall_timeout, *max_listing;
	int show_help, show_version;
};

#define OPT(t, f) { t, offsetof(struct raw_opts, f), 0 }
static const struct fuse_opt dms_opts[] = {
	OPT("cache_dir=%s", cache_dir),
	OPT("cache_size=%s", cache_size),
	OPT("block_size=%s", block_size),
	OPT("mem_cache=%s", mem_cache),
	OPT("meta_ttl=%s", meta_ttl),
	OPT("readahead=%s", readahead),
	OPT("threads=%s", threads),
	OPT("fetchers=%s", fetchers),
	OPT("proxy=%s", proxy),
	OPT("gridftp_streams=%s", gridftp_streams),
	OPT("connect_timeout=%s", connect_timeout),
	OPT("stall_timeout=%s", stall_timeout),
	OPT("max_listing=%s", max_listing),
	FUSE_OPT_END
};

struct parse_state {
	struct raw_opts raw;
	char *url;
	int nonopts;
};

static int opt_proc(void *data, const char *arg, int key,
                    struct fuse_args *outargs)
{
	struct parse_state *ps = data;

	if (key != FUSE_OPT_KEY_NONOPT)
		return 1;
	/* The first bare argument is the URL; the rest go to libfuse. */
	if (ps->nonopts++ == 0) {
		ps->url = strdup(arg);
		return ps->url ? 0 : -1;
	}
	return 1;
}

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-o OPT[,OPT...]] URL MOUNTPOINT\n"
	       "\n"
	       "Mounts the tree under URL read-only.  URL: http(s)://, ftp:// or\n"
	       "gsiftp:// sources, several separated by ';' in order of preference.\n"
	       "\n"
	       "dmsfs options:\n"
	       "    -o cache_dir=DIR       block and metadata cache (default\n"
	       "                           /var/cache/dmsfs for root, else\n"
	       "                           $XDG_CACHE_HOME/dmsfs or ~/.cache/dmsfs)\n"
	       "    -o cache_size=SIZE     cap on cached data (default 10G)\n"
	       "    -o block_size=SIZE     unit of fetching and caching, power of\n"
	       "                           two from 4K to 16M (default 256K)\n"
	       "    -o meta_ttl=SECONDS    trust listings and attributes this long\n"
	       "                           (default 60)\n"
	       "    -o readahead=SIZE      read ahead of sequential readers (default 8M)\n"
	       "    -o mem_cache=SIZE      recently used blocks kept in memory (default 32M)\n"
	       "    -o fetchers=N          read-ahead threads (default 8)\n"
	       "    -o threads=N           FUSE worker threads (default 32)\n"
	       "    -o proxy=GROUPS        HTTP proxies: p1|p2;p3;DIRECT\n"
	       "    -o gridftp_streams=N   parallel GridFTP data streams\n"
	       "    -o connect_timeout=S   per connection attempt (default 5)\n"
	       "    -o stall_timeout=S     abort transfers stalled this long (default 15)\n"
	       "    -o max_listing=SIZE    cap on one listing reply (default 128M)\n"
	       "\n"
	       "FUSE options:\n", prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

static int parse_uint(const char *name, const char *val, unsigned min,
                      unsigned max, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(val, &end, 10);
	if (errno || end == val || *end || val[0] == '-' || v < min || v > max) {
		fprintf(stderr, "dmsfs: invalid %s=%s (a whole number from %u to %u)\n",
		        name, val, min, max);
		return -EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

static int parse_size_opt(const char *name, const char *val, uint64_t min,
                          uint64_t max, uint64_t *out)
{
	if (fs_parse_size(val, out) != 0 || *out < min || *out > max) {
		fprintf(stderr, "dmsfs: invalid %s=%s (a size such as 512K, 64M, 10G, "
		        "from %llu to %llu bytes)\n", name, val,
		        (unsigned long long)min, (unsigned long long)max);
		return -EINVAL;
	}
	return 0;
}

static char *default_cache_dir(void)
{
	const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char buf[PATH_MAX];
	int n;

	if (geteuid() == 0)
		return strdup("/var/cache/dmsfs");
	if (xdg && xdg[0] == '/')
		n = snprintf(buf, sizeof(buf), "%s/dmsfs", xdg);
	else if (home && home[0] == '/')
		n = snprintf(buf, sizeof(buf), "%s/.cache/dmsfs", home);
	else
		return NULL;
	return n < (int)sizeof(buf) ? strdup(buf) : NULL;
}

/* The daemon changes to "/" when it detaches: keep paths absolute. */
static char *absolute(const char *path)
{
	char cwd[PATH_MAX], buf[PATH_MAX];

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)) ||
	    snprintf(buf, sizeof(buf), "%s/%s", cwd, path) >= (int)sizeof(buf))
		return NULL;
	return strdup(buf);
}

/* Fills cfg from the raw options; every error names the option. */
static int apply_opts(struct fs_config *cfg, const struct raw_opts *raw)
{
	uint64_t v;
	int rc = 0;

	cfg->cache_size = DEFAULT_CACHE_SIZE;
	cfg->block_size = DEFAULT_BLOCK_SIZE;
	cfg->mem_size = DEFAULT_MEM_SIZE;
	cfg->readahead = DEFAULT_READAHEAD;
	cfg->meta_ttl = DEFAULT_META_TTL;
	cfg->max_threads = 32;
	cfg->fetchers = 8;
	cfg->connect_timeout = 5;
	cfg->stall_timeout = 15;
	cfg->max_listing = 128ull << 20;

	if (raw->cache_size)
		rc |= parse_size_opt("cache_size", raw->cache_size, 1ull << 20,
		                     1ull << 50, &cfg->cache_size);
	if (raw->block_size) {
		rc |= parse_size_opt("block_size", raw->block_size, 4096, 16u << 20,
		                     &cfg->block_size);
		if (rc == 0 && (cfg->block_size & (cfg->block_size - 1))) {
			fprintf(stderr, "dmsfs: invalid block_size=%s (a power of two)\n",
			        raw->block_size);
			rc = -EINVAL;
		}
	}
	if (raw->mem_cache)
		rc |= parse_size_opt("mem_cache", raw->mem_cache, 1u << 20,
		                     1ull << 40, &cfg->mem_size);
	if (raw->readahead) {
		rc |= parse_size_opt("readahead", raw->readahead, 0, 1u << 30, &v);
		cfg->readahead = (unsigned)v;
	}
	if (raw->max_listing)
		rc |= parse_size_opt("max_listing", raw->max_listing, 4096,
		                     1ull << 32, &cfg->max_listing);
	if (raw->meta_ttl)
		rc |= parse_uint("meta_ttl", raw->meta_ttl, 0, 1u << 30, &cfg->meta_ttl);
	if (raw->threads)
		rc |= parse_uint("threads", raw->threads, 1, 1024, &cfg->max_threads);
	if (raw->fetchers)
		rc |= parse_uint("fetchers", raw->fetchers, 0, 256, &cfg->fetchers);
	if (raw->gridftp_streams)
		rc |= parse_uint("gridftp_streams", raw->gridftp_streams, 1, 64,
		                 &cfg->gridftp_streams);
	if (raw->connect_timeout)
		rc |= parse_uint("connect_timeout", raw->connect_timeout, 1, 3600,
		                 &cfg->connect_timeout);
	if (raw->stall_timeout)
		rc |= parse_uint("stall_timeout", raw->stall_timeout, 1, 3600,
		                 &cfg->stall_timeout);
	if (raw->proxy)
		cfg->proxy = strdup(raw->proxy);
	cfg->cache_dir = raw->cache_dir ? absolute(raw->cache_dir) : default_cache_dir();
	if (!cfg->cache_dir) {
		fprintf(stderr, "dmsfs: no cache_dir given and no home directory "
		        "to default to\n");
		rc = -EINVAL;
	}
	if (cfg->mem_size < 2 * cfg->block_size)
		cfg->mem_size = 2 * cfg->block_size;
	return rc ? -EINVAL : 0;
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

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct fuse_cmdline_opts cl = { 0 };
	struct parse_state ps = { 0 };
	struct fs_config cfg = { 0 };
	struct stat st;
	int pipefd[2] = { -1, -1 };
	int status = 1;
	pid_t pid;

	if (fuse_opt_parse(&args, &ps, dms_opts, opt_proc) != 0)
		goto out;
	if (fuse_parse_cmdline(&args, &cl) != 0)
		goto out;
	if (cl.show_help) {
		usage(argv[0]);
		status = 0;
		goto out;
	}
	if (cl.show_version) {
		printf("dmsfs 0.1\n");
		printf("FUSE library version %s\n", fuse_pkgversion());
		status = 0;
		goto out;
	}
	if (!ps.url || !cl.mountpoint) {
		fprintf(stderr, "dmsfs: usage: %s [-f] [-d] [-o OPT,...] URL "
		        "MOUNTPOINT (see --help)\n", argv[0]);
		goto out;
	}
	if (apply_opts(&cfg, &ps.raw) != 0)
		goto out;
	if (stat(cl.mountpoint, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "dmsfs: mountpoint %s: %s\n", cl.mountpoint,
		        errno && !S_ISDIR(st.st_mode) ? strerror(errno)
		                                      : "not a directory");
		goto out;
	}
	cfg.sources = ps.url;
	cfg.mountpoint = cl.mountpoint;
	cfg.foreground = cl.foreground;
	cfg.debug = cl.debug;
	dms_log_set_debug(cl.debug);
	/* Read-only for now; the kernel then refuses every change with EROFS. */
	if (fuse_opt_add_arg(&args, "-oro,default_permissions,subtype=dmsfs,"
	                     "fsname=dmsfs") != 0)
		goto out;
	cfg.args = args;

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
	free(ps.url);
	free(cfg.cache_dir);
	free(cfg.proxy);
	free(ps.raw.cache_dir);
	free(ps.raw.cache_size);
	free(ps.raw.block_size);
	free(ps.raw.mem_cache);
	free(ps.raw.meta_ttl);
	free(ps.raw.readahead);
	free(ps.raw.threads);
	free(ps.raw.fetchers);
	free(ps.raw.proxy);
	free(ps.raw.gridftp_streams);
	free(ps.raw.connect_timeout);
	free(ps.raw.stall_timeout);
	free(ps.raw.max_listing);
	fuse_opt_free_args(&args);
	return status;
}
