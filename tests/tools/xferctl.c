/*
 * xferctl: the transfer/ module from the command line, for tests and for
 * looking at a source by hand.
 *
 *   xferctl [options] stat SOURCES PATH
 *   xferctl [options] list SOURCES PATH
 *   xferctl [options] read SOURCES PATH [OFFSET [LEN]]   (bytes to stdout)
 *
 * stat and list print "type<TAB>size<TAB>mtime<TAB>etag<TAB>name" lines,
 * type "d" or "f", etag "-" when none (stat prints PATH as the name).
 * read stats PATH first to learn its size and ETag (unless -Z gives them),
 * then reads [OFFSET, OFFSET+LEN) (default: to the end) in 1 MiB calls.
 *
 * Options: -d debug log, -v log every request, -p PROXY (xfer_opts.proxy),
 * -r RETRIES, -t CONNECT_TIMEOUT_MS, -s STALL_TIMEOUT_S, -m MAX_LISTING,
 * -Z SIZE and -E ETAG (read: the expected attributes, no stat).
 *
 * Exit status 0, or 1 with "xferctl: OP PATH: message (ENAME)" on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "transfer/xfer.h"

#define CHUNK (1u << 20)

static const char *errname(int e)
{
	switch (e) {
	case ENOENT: return "ENOENT";
	case EACCES: return "EACCES";
	case ENOTDIR: return "ENOTDIR";
	case ESTALE: return "ESTALE";
	case EFBIG: return "EFBIG";
	case EHOSTDOWN: return "EHOSTDOWN";
	case EIO: return "EIO";
	case ENOMEM: return "ENOMEM";
	case EINVAL: return "EINVAL";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
	default: return "E?";
	}
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static void print_attr(const char *name, const struct xfer_attr *a)
{
	printf("%s\t%" PRIu64 "\t%" PRId64 "\t%s\t%s\n",
	       S_ISDIR(a->mode) ? "d" : "f", a->size, a->mtime,
	       a->etag[0] ? a->etag : "-", name);
}

static int on_entry(void *arg, const char *name, const struct xfer_attr *a)
{
	print_attr(name, a);
	return 0;
}

static int write_all(const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(STDOUT_FILENO, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int do_read(struct xfer *x, const char *path, struct xfer_attr *a,
                   int argc, char **argv)
{
	uint64_t off = 0, len, end;
	char *buf = NULL;
	size_t n;
	int rc = 0;

	if (argc > 0 && parse_u64(argv[0], &off) < 0) {
		rc = -EINVAL;
		goto out;
	}
	if (off > a->size) {
		rc = -EINVAL;
		goto out;
	}
	len = a->size - off;
	if (argc > 1 && parse_u64(argv[1], &len) < 0) {
		rc = -EINVAL;
		goto out;
	}
	end = off + len;
	buf = malloc(CHUNK);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	while (off < end) {
		n = end - off > CHUNK ? CHUNK : (size_t)(end - off);
		rc = xfer_read(x, path, a, off, n, buf);
		if (rc < 0)
			goto out;
		rc = write_all(buf, n);
		if (rc < 0)
			goto out;
		off += n;
	}
out:
	free(buf);
	return rc;
}

static void usage(void)
{
	fprintf(stderr, "usage: xferctl [-dv] [-p PROXY] [-r RETRIES] "
	        "[-t CONNECT_MS] [-s STALL_S] [-m MAX_LISTING]\n"
	        "               [-Z SIZE] [-E ETAG] [-M MTIME] "
	        "stat|list|read SOURCES PATH [OFFSET [LEN]]\n");
}

int main(int argc, char **argv)
{
	struct xfer_opts opts = { 0 };
	struct xfer_attr a = { 0 };
	struct xfer *x = NULL;
	const char *cmd, *sources, *path, *etag = NULL;
	uint64_t v, size = 0, mtime = 0;
	int have_mtime = 0, have_size = 0, c, rc = 0, status = 1;

	while ((c = getopt(argc, argv, "dvp:r:t:s:m:Z:E:M:")) != -1) {
		if (strchr("rtsmZM", c) && parse_u64(optarg, &v) < 0) {
			fprintf(stderr, "xferctl: -%c: not a number: %s\n", c,
			        optarg);
			goto out;
		}
		switch (c) {
		case 'd': dms_log_set_debug(true); break;
		case 'v': opts.verbose = 1; dms_log_set_debug(true); break;
		case 'p': opts.proxy = optarg; break;
		/* -r 0 means no retry; the library's 0 means its default. */
		case 'r': opts.retries = v ? (int)v : -1; break;
		case 't': opts.connect_timeout_ms = (long)v; break;
		case 's': opts.stall_timeout_s = (long)v; break;
		case 'm': opts.max_listing_bytes = (size_t)v; break;
		case 'Z': size = v; have_size = 1; break;
		case 'E': etag = optarg; break;
		case 'M': mtime = v; have_mtime = 1; break;
		default: usage(); goto out;
		}
	}
	if (argc - optind < 3) {
		usage();
		goto out;
	}
	cmd = argv[optind];
	sources = argv[optind + 1];
	path = argv[optind + 2];
	rc = xfer_open(&x, sources, &opts);
	if (rc < 0)
		goto fail;
	if (strcmp(cmd, "stat") == 0) {
		rc = xfer_stat(x, path, &a);
		if (rc == 0)
			print_attr(path, &a);
	} else if (strcmp(cmd, "list") == 0) {
		rc = xfer_list(x, path, on_entry, NULL);
	} else if (strcmp(cmd, "read") == 0) {
		if (have_size) {
			a.mode = S_IFREG;
			a.size = size;
			if (etag)
				snprintf(a.etag, sizeof(a.etag), "%s", etag);
		} else {
			rc = xfer_stat(x, path, &a);
			if (rc == 0 && etag)
				snprintf(a.etag, sizeof(a.etag), "%s", etag);
		}
		if (have_mtime)
			a.mtime = (int64_t)mtime;
		if (rc == 0)
			rc = do_read(x, path, &a, argc - optind - 3,
			             argv + optind + 3);
	} else {
		usage();
		goto out;
	}
	if (fflush(stdout) != 0 && rc == 0)
		rc = -EIO;
fail:
	if (rc < 0)
		fprintf(stderr, "xferctl: %s %s: %s (%s)\n", cmd, path,
		        strerror(-rc), errname(-rc));
	else
		status = 0;
out:
	xfer_close(x);
	return status;
}
