/* libFuzzer target for the config file (fs/config.c, INI via libinih):
 * the input is written to a root-owned 0600 file in a private folder and
 * loaded as `-o config=FILE` would load it, then the values are checked as
 * at mount.  Whatever is accepted must be a usable configuration: exports
 * with an absolute, normalised path and a source, no two on one path, and
 * every value within the bounds the README documents. */
#include "tests/fuzz/fuzz.h"
#include "fs/fs_i.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/dmsfs-fuzz-XXXXXX";
static char file[sizeof(dir) + 16];

static void cleanup(void)
{
	unlink(file);
	rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	FZ_CHECK(mkdtemp(dir) != NULL);
	snprintf(file, sizeof(file), "%s/dmsfs.conf", dir);
	atexit(cleanup);
	return 0;
}

static void check_values(const struct fs_config *c)
{
	FZ_CHECK(c->block_size >= 4096 && c->block_size <= (16u << 20));
	FZ_CHECK((c->block_size & (c->block_size - 1)) == 0);
	FZ_CHECK(c->cache_size >= (1u << 20) && c->cache_size <= (1ull << 50));
	FZ_CHECK(c->mem_size >= (uint64_t)c->readahead + (8u << 20));
	FZ_CHECK(c->mem_size >= 2 * c->block_size);
	FZ_CHECK(c->readahead <= (1u << 30));
	FZ_CHECK(c->max_listing >= 4096 && c->max_listing <= (1ull << 32));
	FZ_CHECK(c->max_threads >= 1 && c->max_threads <= 1024);
	FZ_CHECK(c->fetchers <= 256);
	FZ_CHECK(c->gridftp_streams <= 64);
	FZ_CHECK(c->connect_timeout >= 1 && c->connect_timeout <= 3600);
	FZ_CHECK(c->stall_timeout >= 1 && c->stall_timeout <= 3600);
	FZ_CHECK(c->cache_dir && c->cache_dir[0] == '/');
	FZ_CHECK(!c->acl_file || c->acl_file[0] == '/');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fs_raw_opts raw;
	struct fs_config cfg;
	size_t i, j;
	int fd, rc;

	if (size > 65536)
		return 0;
	fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	FZ_CHECK(fd >= 0);
	FZ_CHECK(write(fd, data, size) == (ssize_t)size);
	close(fd);
	memset(&raw, 0, sizeof(raw));
	memset(&cfg, 0, sizeof(cfg));
	rc = fs_config_load(file, &raw, &cfg);
	FZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc == 0) {
		FZ_CHECK(cfg.nexports >= 1 && cfg.nexports <= 256);
		for (i = 0; i < cfg.nexports; i++) {
			const struct fs_export_conf *e = &cfg.exports[i];

			FZ_CHECK(e->name && e->name[0]);
			FZ_CHECK(e->path && e->path[0] == '/');
			FZ_CHECK(e->source && e->source[0]);
			for (j = 0; j < i; j++)
				FZ_CHECK(strcmp(cfg.exports[j].name, e->name) &&
				         strcmp(cfg.exports[j].path, e->path));
		}
		if (fs_config_apply(&cfg, &raw) == 0)
			check_values(&cfg);
	}
	fs_config_free(&cfg);
	fs_raw_opts_free(&raw);
	return 0;
}
