/* Options: from -o (fuse_opt table) and from a config file (INI, libinih).
 * Values are kept as given until every source is read, so that -o wins over
 * the file, then checked in one place with errors that name the option. */
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/trustfile.h"
#include "fs/fs_i.h"

#define DEFAULT_CACHE_SIZE (10ull << 30)
#define DEFAULT_BLOCK_SIZE (64u << 10)
#define DEFAULT_MEM_SIZE (40ull << 20)
#define DEFAULT_READAHEAD (32u << 20)
/* The kernel's read-ahead window of the mount, which bounds its page-cache
 * read requests: 1 MiB is the largest request FUSE takes (max_pages 256),
 * eight times the kernel's 128 KiB default. */
#define DEFAULT_KERNEL_READAHEAD (1u << 20)
#define DEFAULT_META_TTL 60u
#define MEM_SLACK (8u << 20)   /* mem_cache beyond readahead */
/* 0.5 Mbit/s: with connect_timeout 5 s a 128 KiB kernel read request gets
 * 7 s, a 1 MiB one 21 s, a 2 MiB read-ahead run 37 s (README, measured). */
#define DEFAULT_MIN_RATE (64u << 10)
#define MAX_EXPORTS 256

#define OPT(t, f) { t, offsetof(struct fs_raw_opts, f), 0 }
const struct fuse_opt fs_opt_table[] = {
	OPT("config=%s", config),
	OPT("acl=%s", acl),
	OPT("cache_dir=%s", cache_dir),
	OPT("cache_size=%s", cache_size),
	OPT("block_size=%s", block_size),
	OPT("mem_cache=%s", mem_cache),
	OPT("meta_ttl=%s", meta_ttl),
	OPT("readahead=%s", readahead),
	OPT("kernel_readahead=%s", kernel_readahead),
	OPT("threads=%s", threads),
	OPT("fetchers=%s", fetchers),
	OPT("prefetch_files=%s", prefetch_files),
	OPT("proxy=%s", proxy),
	OPT("gridftp_streams=%s", gridftp_streams),
	OPT("connect_timeout=%s", connect_timeout),
	OPT("stall_timeout=%s", stall_timeout),
	OPT("max_listing=%s", max_listing),
	OPT("min_rate=%s", min_rate),
	OPT("writeback_delay=%s", writeback_delay),
	OPT("writeback_size=%s", writeback_size),
	OPT("unmount_flush=%s", unmount_flush),
	OPT("metrics_file=%s", metrics_file),
	OPT("metrics_interval=%s", metrics_interval),
	OPT("log=%s", log),
	{ "rw", offsetof(struct fs_raw_opts, rw), 1 },
	/* Options of mount(8) and fstab that mean nothing to dmsfs: mount.fuse3
	 * drops most of them, but they reach dmsfs when an fstab line's
	 * options are copied to a command line or a unit; libfuse would refuse
	 * them.  (x-* options are dropped in main.c's opt_proc.) */
	FUSE_OPT_KEY("_netdev", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nofail", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("auto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("noauto", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("user", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("nouser", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("users", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("owner", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("group", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("defaults", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_KEY("comment=", FUSE_OPT_KEY_DISCARD),
	FUSE_OPT_END
};

void fs_raw_opts_free(struct fs_raw_opts *raw)
{
	char **fields[] = {
		&raw->config, &raw->acl, &raw->cache_dir, &raw->cache_size,
		&raw->block_size, &raw->mem_cache, &raw->meta_ttl, &raw->readahead,
		&raw->threads, &raw->fetchers, &raw->proxy, &raw->gridftp_streams,
		&raw->connect_timeout, &raw->stall_timeout, &raw->max_listing,
		&raw->min_rate, &raw->kernel_readahead, &raw->writeback_delay,
		&raw->writeback_size, &raw->unmount_flush, &raw->prefetch_files,
		&raw->metrics_file, &raw->metrics_interval,
		&raw->log,
	};
	size_t i;

	for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		free(*fields[i]);
		*fields[i] = NULL;
	}
}

/* ---- the config file ---- */

struct ini_state {
	struct fs_raw_opts *raw;
	struct fs_config *cfg;
	const char *buf;        /* the whole file, NUL-terminated */
	size_t len, pos;        /* its length, the next unread byte */
	int line;               /* lines read so far: the handler's line */
	int *export_lines;      /* first line of each export's section */
	char reason[256];
};

/* libinih does not pass line numbers to handlers; counting lines as they
 * are read gives every error, even those found after parsing, a line.
 * Reads like fgets, from the file read whole (and checked) beforehand. */
static char *read_line(char *str, int num, void *stream)
{
	struct ini_state *st = stream;
	size_t n = 0;

	if (num < 2 || st->pos >= st->len)
		return NULL;
	while (n < (size_t)num - 1 && st->pos < st->len) {
		str[n] = st->buf[st->pos++];
		if (str[n++] == '\n')
			break;
	}
	str[n] = '\0';
	st->line++;
	return str;
}

/* Sets *field from the file unless -o gave it already. */
static int take(char **field, const char *value)
{
	if (*field)
		return 1;
	*field = strdup(value);
	return *field ? 1 : 0;
}

/* A size from the file, checked where its line is known. */
static int take_size(struct ini_state *st, char **field, const char *key,
                     const char *value)
{
	uint64_t v;

	if (fs_parse_size(value, &v) != 0) {
		snprintf(st->reason, sizeof(st->reason), "%s = %s is not a size "
		         "(such as 512K, 64M, 10G)", key, value);
		return 0;
	}
	return take(field, value);
}

static struct fs_export_conf *export_named(struct ini_state *st,
                                           const char *name)
{
	struct fs_config *cfg = st->cfg;
	struct fs_export_conf *e;
	int *lines;
	size_t i;

	for (i = 0; i < cfg->nexports; i++) {
		if (strcmp(cfg->exports[i].name, name) == 0)
			return &cfg->exports[i];
	}
	if (cfg->nexports == MAX_EXPORTS)
		return NULL;
	e = realloc(cfg->exports, (cfg->nexports + 1) * sizeof(*e));
	if (!e)
		return NULL;
	cfg->exports = e;
	lines = realloc(st->export_lines, (cfg->nexports + 1) * sizeof(*lines));
	if (!lines)
		return NULL;
	st->export_lines = lines;
	lines[cfg->nexports] = st->line;
	e = &cfg->exports[cfg->nexports];
	memset(e, 0, sizeof(*e));
	e->name = strdup(name);
	if (!e->name)
		return NULL;
	cfg->nexports++;
	return e;
}

static int parse_bool(const char *v, bool *out)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") ||
	    !strcasecmp(v, "on"))
		*out = true;
	else if (!strcasecmp(v, "no") || !strcasecmp(v, "false") ||
	         !strcmp(v, "0") || !strcasecmp(v, "off"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int config_line(void *user, const char *section, const char *name,
                       const char *value)
{
	struct ini_state *st = user;
	struct fs_raw_opts *raw = st->raw;

	if (!strcmp(section, "cache")) {
		if (!strcmp(name, "dir"))
			return take(&raw->cache_dir, value);
		if (!strcmp(name, "size"))
			return take_size(st, &raw->cache_size, name, value);
		if (!strcmp(name, "block_size"))
			return take_size(st, &raw->block_size, name, value);
		if (!strcmp(name, "meta_ttl"))
			return take(&raw->meta_ttl, value);
		if (!strcmp(name, "mem"))
			return take_size(st, &raw->mem_cache, name, value);
		if (!strcmp(name, "readahead"))
			return take_size(st, &raw->readahead, name, value);
		if (!strcmp(name, "prefetch_files"))
			return take(&raw->prefetch_files, value);
		if (!strcmp(name, "kernel_readahead"))
			return take_size(st, &raw->kernel_readahead, name, value);
		if (!strcmp(name, "writeback_delay"))
			return take(&raw->writeback_delay, value);
		if (!strcmp(name, "writeback_size"))
			return take_size(st, &raw->writeback_size, name, value);
		if (!strcmp(name, "unmount_flush"))
			return take(&raw->unmount_flush, value);
	} else if (!strcmp(section, "metrics")) {
		if (!strcmp(name, "file"))
			return take(&raw->metrics_file, value);
		if (!strcmp(name, "interval"))
			return take(&raw->metrics_interval, value);
	} else if (!strcmp(section, "acl")) {
		if (!strcmp(name, "rules"))
			return take(&raw->acl, value);
	} else if (!strcmp(section, "transfer")) {
		if (!strcmp(name, "proxy"))
			return take(&raw->proxy, value);
		if (!strcmp(name, "gridftp_streams"))
			return take(&raw->gridftp_streams, value);
		if (!strcmp(name, "connect_timeout"))
			return take(&raw->connect_timeout, value);
		if (!strcmp(name, "stall_timeout"))
			return take(&raw->stall_timeout, value);
		if (!strcmp(name, "max_listing"))
			return take_size(st, &raw->max_listing, name, value);
		if (!strcmp(name, "min_rate"))
			return take_size(st, &raw->min_rate, name, value);
	} else if (!strncmp(section, "export ", 7) && section[7]) {
		struct fs_export_conf *e = export_named(st, section + 7);
		char **field = NULL;

		if (!e) {
			snprintf(st->reason, sizeof(st->reason), "too many exports");
			return 0;
		}
		if (!strcmp(name, "path"))
			field = (char **)&e->path;
		else if (!strcmp(name, "source"))
			field = (char **)&e->source;
		else if (!strcmp(name, "per_user")) {
			if (parse_bool(value, &e->per_user) == 0)
				return 1;
			snprintf(st->reason, sizeof(st->reason),
			         "per_user must be yes or no, not '%s'", value);
			return 0;
		} else if (!strcmp(name, "writable")) {
			if (parse_bool(value, &e->writable) == 0)
				return 1;
			snprintf(st->reason, sizeof(st->reason),
			         "writable must be yes or no, not '%s'", value);
			return 0;
		}
		if (field) {
			free(*field);
			*field = strdup(value);
			return *field ? 1 : 0;
		}
	} else {
		snprintf(st->reason, sizeof(st->reason), "unknown section [%s]",
		         section);
		return 0;
	}
	snprintf(st->reason, sizeof(st->reason), "unknown key '%s' in [%s]",
	         name, section);
	return 0;
}

int fs_config_load(const char *file, struct fs_raw_opts *raw,
                   struct fs_config *cfg)
{
	struct ini_state st = { .raw = raw, .cfg = cfg };
	char why[DMS_TRUST_WHYLEN];
	char reason[256];
	char *buf = NULL;
	size_t bad;
	int line, rc;

	/* The config names the rules file: trusted as the rules are. */
	rc = dms_read_trusted(file, DMS_TRUST_MAX_BYTES, &buf, &st.len, NULL,
	                      why, sizeof(why));
	if (rc) {
		fprintf(stderr, "dmsfs: config %s: %s\n", file, why);
		return rc;
	}
	rc = -EINVAL;
	st.buf = buf;
	line = ini_parse_stream(read_line, &st, config_line, &st);
	if (line != 0) {
		fprintf(stderr, "dmsfs: config %s:%d: %s\n", file, line,
		        st.reason[0] ? st.reason : line < 0 ? "cannot read"
		                                           : "syntax error");
		goto out;
	}
	if (cfg->nexports == 0) {
		fprintf(stderr, "dmsfs: config %s:%d: no [export NAME] section\n",
		        file, st.line);
		goto out;
	}
	if (fs_exports_check(cfg->exports, cfg->nexports, &bad, reason,
	                     sizeof(reason)) != 0) {
		fprintf(stderr, "dmsfs: config %s:%d: %s\n", file,
		        st.export_lines[bad], reason);
		goto out;
	}
	rc = 0;
out:
	free(st.export_lines);
	free(buf);
	return rc;
}

void fs_config_free(struct fs_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nexports; i++) {
		free((char *)cfg->exports[i].name);
		free((char *)cfg->exports[i].path);
		free((char *)cfg->exports[i].source);
	}
	free(cfg->exports);
	free(cfg->cache_dir);
	free(cfg->proxy);
	free(cfg->acl_file);
	free(cfg->metrics_file);
	cfg->metrics_file = NULL;
	cfg->exports = NULL;
	cfg->nexports = 0;
}

/* ---- checking values ---- */

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

/* Limits that depend on other options; each error names the option given
 * and the one it depends on.  Defaults (not given) are raised instead. */
static int check_together(struct fs_config *cfg, const struct fs_raw_opts *raw)
{
	/* Blocks read ahead, on their way or waiting for their reader, live
	 * in this memory: room for the whole window, or they would be dropped
	 * before use; and room for two blocks at least. */
	uint64_t mem_min = (uint64_t)cfg->readahead + MEM_SLACK;
	int rc = 0;

	if (mem_min < 2 * cfg->block_size)
		mem_min = 2 * cfg->block_size;
	if (cfg->mem_size < mem_min) {
		if (raw->mem_cache) {
			fprintf(stderr, "dmsfs: invalid mem_cache=%s (below its minimum "
			        "of readahead + 8M and two blocks: %lluK with "
			        "readahead=%uK, block_size=%lluK)\n", raw->mem_cache,
			        (unsigned long long)(mem_min >> 10), cfg->readahead >> 10,
			        (unsigned long long)(cfg->block_size >> 10));
			rc = -EINVAL;
		}
		cfg->mem_size = mem_min;
	}
	if (cfg->readahead && cfg->readahead < cfg->block_size) {
		fprintf(stderr, "dmsfs: invalid readahead=%s (less than one block, "
		        "block_size=%lluK; 0 turns read-ahead off)\n", raw->readahead,
		        (unsigned long long)(cfg->block_size >> 10));
		rc = -EINVAL;
	}
	if (cfg->readahead && cfg->fetchers == 0) {
		fprintf(stderr, "dmsfs: invalid fetchers=0 (read-ahead needs a "
		        "fetcher; give readahead=0 as well to turn it off)\n");
		rc = -EINVAL;
	}
	/* The cache evicts in batches of an eighth of its cap: a batch must
	 * hold a block, or blocks could never be kept. */
	if (cfg->cache_size < 8 * cfg->block_size) {
		fprintf(stderr, "dmsfs: invalid cache_size=%s (at least 8 blocks, "
		        "%lluK with block_size=%lluK)\n",
		        raw->cache_size ? raw->cache_size : "default",
		        (unsigned long long)(8 * cfg->block_size >> 10),
		        (unsigned long long)(cfg->block_size >> 10));
		rc = -EINVAL;
	}
	return rc;
}

/* metrics_file must name a file in an existing folder: the daemon writes
 * PATH.tmp there and renames it (same filesystem), from any working
 * folder. */
static int apply_metrics(struct fs_config *cfg, const struct fs_raw_opts *raw)
{
	char dir[PATH_MAX];
	const char *slash;
	struct stat st;
	int rc = 0;

	cfg->metrics_interval = 15;
	if (raw->metrics_interval)
		rc |= parse_uint("metrics_interval", raw->metrics_interval, 1,
		                 86400, &cfg->metrics_interval);
	if (!raw->metrics_file)
		return rc;
	slash = strrchr(raw->metrics_file, '/');
	if (raw->metrics_file[0] != '/' || !slash[1] ||
	    strlen(raw->metrics_file) + 5 > PATH_MAX) {
		fprintf(stderr, "dmsfs: invalid metrics_file=%s (give the absolute "
		        "path of a file)\n", raw->metrics_file);
		return -EINVAL;
	}
	snprintf(dir, sizeof(dir), "%.*s", slash == raw->metrics_file ? 1
	         : (int)(slash - raw->metrics_file), raw->metrics_file);
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "dmsfs: invalid metrics_file=%s (%s is not a "
		        "folder)\n", raw->metrics_file, dir);
		return -EINVAL;
	}
	cfg->metrics_file = strdup(raw->metrics_file);
	if (!cfg->metrics_file)
		rc = -ENOMEM;
	return rc;
}

int fs_config_apply(struct fs_config *cfg, const struct fs_raw_opts *raw)
{
	uint64_t v;
	int rc = 0;

	cfg->cache_size = DEFAULT_CACHE_SIZE;
	cfg->block_size = DEFAULT_BLOCK_SIZE;
	cfg->mem_size = DEFAULT_MEM_SIZE;
	cfg->readahead = DEFAULT_READAHEAD;
	cfg->kernel_readahead = DEFAULT_KERNEL_READAHEAD;
	cfg->meta_ttl = DEFAULT_META_TTL;
	cfg->max_threads = 32;
	cfg->fetchers = 16;
	cfg->prefetch_files = 32;
	cfg->connect_timeout = 5;
	cfg->stall_timeout = 15;
	cfg->max_listing = 128ull << 20;
	cfg->min_rate = DEFAULT_MIN_RATE;
	cfg->writeback_delay = 2;
	cfg->writeback_size = 10ull << 30;
	cfg->unmount_flush = 10;
	cfg->writable = raw->rw != 0;
	for (v = 0; v < cfg->nexports; v++)
		if (cfg->exports[v].writable)
			cfg->writable = true;
	if (raw->writeback_size)
		rc |= parse_size_opt("writeback_size", raw->writeback_size,
		                     1u << 20, 1ull << 50, &cfg->writeback_size);
	if (raw->writeback_delay)
		rc |= parse_uint("writeback_delay", raw->writeback_delay, 0,
		                 86400, &cfg->writeback_delay);
	if (raw->unmount_flush)
		rc |= parse_uint("unmount_flush", raw->unmount_flush, 0, 86400,
		                 &cfg->unmount_flush);

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
	if (raw->kernel_readahead) {
		rc |= parse_size_opt("kernel_readahead", raw->kernel_readahead,
		                     0, 1u << 30, &v);
		cfg->kernel_readahead = (unsigned)v;
		if (rc == 0 && v && v < 4096) {
			fprintf(stderr, "dmsfs: invalid kernel_readahead=%s (0 "
			        "keeps the kernel's; else at least 4K)\n",
			        raw->kernel_readahead);
			rc = -EINVAL;
		}
	}
	if (raw->max_listing)
		rc |= parse_size_opt("max_listing", raw->max_listing, 4096,
		                     1ull << 32, &cfg->max_listing);
	if (raw->min_rate)
		rc |= parse_size_opt("min_rate", raw->min_rate, 1024, 1ull << 30,
		                     &cfg->min_rate);
	if (raw->meta_ttl)
		rc |= parse_uint("meta_ttl", raw->meta_ttl, 0, 1u << 30, &cfg->meta_ttl);
	if (raw->threads)
		rc |= parse_uint("threads", raw->threads, 1, 1024, &cfg->max_threads);
	if (raw->fetchers)
		rc |= parse_uint("fetchers", raw->fetchers, 0, 256, &cfg->fetchers);
	if (raw->prefetch_files)
		rc |= parse_uint("prefetch_files", raw->prefetch_files, 0, 1024,
		                 &cfg->prefetch_files);
	if (raw->gridftp_streams)
		rc |= parse_uint("gridftp_streams", raw->gridftp_streams, 1, 64,
		                 &cfg->gridftp_streams);
	if (raw->connect_timeout)
		rc |= parse_uint("connect_timeout", raw->connect_timeout, 1, 3600,
		                 &cfg->connect_timeout);
	if (raw->stall_timeout)
		rc |= parse_uint("stall_timeout", raw->stall_timeout, 1, 3600,
		                 &cfg->stall_timeout);
	if (raw->proxy) {
		char why[512];

		/* Checked here so a typo fails the mount with one line
		 * naming the option, in daemon mode too. */
		if (xfer_check_proxy(raw->proxy, why, sizeof(why)) < 0) {
			fprintf(stderr, "dmsfs: %s\n", why);
			rc = -EINVAL;
		} else if (!(cfg->proxy = strdup(raw->proxy))) {
			rc = -ENOMEM;
		}
	}
	if (raw->acl && !(cfg->acl_file = absolute(raw->acl)))
		rc = -ENOMEM;
	/* An empty or relative cache_dir would put the cache in whatever
	 * folder dmsfs was started from: refused, never guessed. */
	if (raw->cache_dir && raw->cache_dir[0] != '/') {
		fprintf(stderr, "dmsfs: invalid cache_dir=%s (%s): give an "
		        "absolute path, or leave cache_dir out for the default\n",
		        raw->cache_dir, raw->cache_dir[0] ? "a relative path"
		        : "empty");
		rc = -EINVAL;
	} else if (raw->cache_dir) {
		cfg->cache_dir = strdup(raw->cache_dir);
		if (!cfg->cache_dir)
			rc = -ENOMEM;
	} else {
		cfg->cache_dir = default_cache_dir();
		cfg->cache_dir_default = true;
		if (!cfg->cache_dir) {
			fprintf(stderr, "dmsfs: no cache_dir given and no home "
			        "directory to default to\n");
			rc = -EINVAL;
		}
	}
	rc |= apply_metrics(cfg, raw);
	if (rc == 0)
		rc = check_together(cfg, raw);
	return rc ? -EINVAL : 0;
}
