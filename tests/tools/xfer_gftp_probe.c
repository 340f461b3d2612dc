/*
 * Test driver for the GridFTP backend alone (no xfer.c source list, no
 * failover): calls xfer_gridftp_ops directly so tests see exactly what the
 * backend returns.  Used by tests/integration/test_gridftp.py.
 *
 *   xfer_gftp_probe [opts] URL stat PATH
 *   xfer_gftp_probe [opts] URL list PATH        one line per entry
 *   xfer_gftp_probe [opts] URL read PATH OFF LEN     bytes to stdout
 *   xfer_gftp_probe [opts] URL readall PATH CHUNK PAR
 *        whole file in CHUNK-byte reads, PAR at once, pwrite to stdout
 *        (a regular file or /dev/null); timing on stderr
 *   opts: -s streams -t stall_s -c connect_ms -r retries -L max_listing
 *         -n repeat (stat/read: run the op n times on one state)
 *         -p pause_ms between repeats (lets a test stop the server)
 * Exit status: 0, or the errno of the failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "transfer/xfer_i.h"

struct readall {
	void *state;
	const char *path;
	const struct xfer_attr *attr;
	size_t chunk;
	pthread_mutex_t lock;
	uint64_t next;  /* protected by lock */
	int rc;         /* protected by lock */
};

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return (errno != 0 || end == s || *end != '\0') ? -EINVAL : 0;
}

static void pause_for(uint64_t ms)
{
	struct timespec t = { .tv_sec = (time_t)(ms / 1000),
	                      .tv_nsec = (long)(ms % 1000) * 1000000L };

	if (ms == 0)
		return;
	/* Tells a test (reading stderr) that the previous op finished. */
	fprintf(stderr, "probe: pause\n");
	nanosleep(&t, NULL);
}

static int print_entry(void *arg, const char *name,
                       const struct xfer_attr *a)
{
	printf("%06o %" PRIu64 " %" PRId64 " %s\n", (unsigned)a->mode,
	       a->size, a->mtime, name);
	return 0;
}

static void *readall_worker(void *arg)
{
	struct readall *r = arg;
	char *buf = malloc(r->chunk);
	uint64_t off;
	size_t len, done;
	int rc = buf ? 0 : -ENOMEM;

	while (rc == 0) {
		pthread_mutex_lock(&r->lock);
		off = r->next;
		r->next += r->chunk;
		if (r->rc != 0)
			off = r->attr->size;
		pthread_mutex_unlock(&r->lock);
		if (off >= r->attr->size)
			break;
		len = r->attr->size - off < r->chunk ? r->attr->size - off
		                                     : r->chunk;
		rc = xfer_gridftp_ops.read(r->state, r->path, r->attr, off, len,
		                           buf, &done);
		if (rc == 0 && pwrite(STDOUT_FILENO, buf, len, (off_t)off) !=
		                       (ssize_t)len)
			rc = -errno;
	}
	pthread_mutex_lock(&r->lock);
	if (rc != 0 && r->rc == 0)
		r->rc = rc;
	pthread_mutex_unlock(&r->lock);
	free(buf);
	return NULL;
}

static int do_readall(void *state, const char *path, uint64_t chunk,
                      uint64_t par)
{
	struct xfer_attr attr;
	struct readall r = { .state = state, .path = path, .attr = &attr,
	                     .chunk = (size_t)chunk };
	pthread_t th[64];
	struct timespec t0, t1;
	uint64_t i;
	int rc;

	rc = xfer_gridftp_ops.stat(state, path, &attr);
	if (rc != 0 || chunk == 0 || par == 0 || par > 64) {
		rc = rc ? rc : -EINVAL;
		goto out;
	}
	pthread_mutex_init(&r.lock, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < par; i++)
		pthread_create(&th[i], NULL, readall_worker, &r);
	for (i = 0; i < par; i++)
		pthread_join(th[i], NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rc = r.rc;
	fprintf(stderr, "readall %" PRIu64 " bytes in %.3f s\n", attr.size,
	        (double)(t1.tv_sec - t0.tv_sec) +
	        (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	pthread_mutex_destroy(&r.lock);
out:
	return rc;
}

int main(int argc, char **argv)
{
	struct xfer_opts opts = {0};
	struct xfer_attr attr;
	void *state = NULL;
	uint64_t a, b, repeat = 1, pause_ms = 0, i;
	char *buf = NULL;
	size_t done;
	const char *cmd;
	int c, rc = -EINVAL;

	while ((c = getopt(argc, argv, "s:t:c:r:L:n:p:d")) != -1) {
		uint64_t v = 0;

		if (c != 'd' && parse_u64(optarg, &v) != 0)
			goto usage;
		switch (c) {
		case 's': opts.gridftp_streams = (int)v; break;
		case 't': opts.stall_timeout_s = (long)v; break;
		case 'c': opts.connect_timeout_ms = (long)v; break;
		case 'r': opts.retries = v ? (int)v : -1; break;
		case 'L': opts.max_listing_bytes = (size_t)v; break;
		case 'n': repeat = v; break;
		case 'p': pause_ms = v; break;
		case 'd': dms_log_set_debug(true); opts.verbose = 1; break;
		default: goto usage;
		}
	}
	if (argc - optind < 3)
		goto usage;
	cmd = argv[optind + 1];
	rc = xfer_gridftp_ops.open(&state, argv[optind], &opts);
	if (rc != 0)
		goto out;
	if (strcmp(cmd, "stat") == 0) {
		for (i = 0; i < repeat && rc == 0; i++) {
			if (i > 0)
				pause_for(pause_ms);
			rc = xfer_gridftp_ops.stat(state, argv[optind + 2], &attr);
		}
		if (rc == 0)
			print_entry(NULL, argv[optind + 2], &attr);
	} else if (strcmp(cmd, "list") == 0) {
		rc = xfer_gridftp_ops.list(state, argv[optind + 2], print_entry,
		                           NULL);
	} else if (strcmp(cmd, "read") == 0 && argc - optind == 5 &&
	           parse_u64(argv[optind + 3], &a) == 0 &&
	           parse_u64(argv[optind + 4], &b) == 0) {
		/* The caller of xfer_read knows the size; the probe asks. */
		rc = xfer_gridftp_ops.stat(state, argv[optind + 2], &attr);
		buf = malloc(b ? b : 1);
		if (rc == 0 && buf == NULL)
			rc = -ENOMEM;
		for (i = 0; i < repeat && rc == 0; i++) {
			if (i > 0)
				pause_for(pause_ms);
			rc = xfer_gridftp_ops.read(state, argv[optind + 2], &attr,
			                           a, (size_t)b, buf, &done);
		}
		if (rc == 0 && fwrite(buf, 1, b, stdout) != b)
			rc = -EIO;
	} else if (strcmp(cmd, "readall") == 0 && argc - optind == 5 &&
	           parse_u64(argv[optind + 3], &a) == 0 &&
	           parse_u64(argv[optind + 4], &b) == 0) {
		rc = do_readall(state, argv[optind + 2], a, b);
	} else {
		rc = -EINVAL;
		goto usage;
	}
	goto out;
usage:
	fprintf(stderr, "usage: xfer_gftp_probe [-s N -t S -c MS -r N -L B -n N "
	        "-p MS -d] URL stat|list PATH | read PATH OFF LEN | readall PATH "
	        "CHUNK PAR\n");
out:
	if (state != NULL)
		xfer_gridftp_ops.close(state);
	free(buf);
	fflush(stdout);
	if (rc != 0)
		fprintf(stderr, "xfer_gftp_probe: %s\n", strerror(-rc));
	return -rc;
}
