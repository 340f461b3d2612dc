#ifndef DMS_FS_H
#define DMS_FS_H
/*
 * fs/: the FUSE daemon.  It asks acl/ whether a caller may act, reads
 * through cache/ and fills misses from transfer/.  Nothing below it calls up.
 *
 * fs_config is filled from the command line (fs/main.c) and owned by main;
 * fs_run borrows it for the life of the mount.
 */
#include <stdint.h>
#include <stdbool.h>
#include <fuse_lowlevel.h>

struct fs_export_conf;

struct fs_config {
	char *sources;          /* URL argument: one or more ';'-separated
	                           sources (NULL when exports come from a file) */
	struct fs_export_conf *exports;  /* from the config file */
	size_t nexports;
	char *acl_file;         /* rules file; NULL: no access rules */
	const char *config_file; /* -o config=FILE (main's); NULL: none */
	char *mountpoint;
	char *cache_dir;        /* absolute */
	bool cache_dir_default; /* the default path: parents may be created */
	uint64_t cache_size;    /* bytes */
	uint64_t block_size;    /* bytes, power of two in [4 KiB, 16 MiB] */
	uint64_t mem_size;      /* bytes of recently used blocks kept in memory */
	unsigned meta_ttl;      /* seconds */
	unsigned readahead;     /* bytes read ahead for sequential readers */
	unsigned kernel_readahead; /* bytes: the mount's kernel read-ahead
	                              window; 0 = the kernel's default */
	unsigned max_threads;   /* FUSE worker threads */
	unsigned fetchers;      /* read-ahead threads */
	unsigned prefetch_files; /* files of a folder fetched ahead of a walker; 0: off */
	char *proxy;            /* HTTP proxy groups, NULL for DIRECT */
	unsigned gridftp_streams;
	unsigned connect_timeout; /* seconds */
	unsigned stall_timeout;   /* seconds */
	uint64_t min_rate;        /* bytes/s a request must average */
	uint64_t max_listing;   /* bytes */
	bool writable;          /* some export is writable (-o rw) */
	unsigned writeback_delay; /* seconds a closed file waits for upload */
	uint64_t writeback_size;  /* bytes: cap of the write journal */
	unsigned unmount_flush;   /* seconds unmount spends uploading */
	char *metrics_file;       /* Prometheus textfile; NULL: none */
	unsigned metrics_interval; /* seconds between its writes */
	int foreground;
	int debug;
	bool log_file;          /* -o log=FILE: messages go to the file (opened
	                           by dms_log_file_open) once mounted */
	struct fuse_args args;  /* what is left for libfuse */
};

/* Parses "123", "64K", "1.5G"... (K/M/G/T, binary multiples, optional
 * trailing 'B' or 'iB').  Returns 0, or -EINVAL for anything else, including
 * overflow.  Cannot fail otherwise. */
int fs_parse_size(const char *s, uint64_t *out) __attribute__((warn_unused_result));

/* Opens the cache and the sources, checks that the tree can be served,
 * mounts, then writes one byte 0 to ready_fd (if >= 0) and closes it, and
 * serves until unmounted.  When mounting fails, logs one line saying why and
 * returns non-zero without writing to ready_fd.  Returns the exit status. */
int fs_run(struct fs_config *cfg, int ready_fd);

#endif
