/*
 * xferctl: the transfer/ module from the command line, for tests and for
 * looking at a source by hand.
 *
 *   xferctl [options] stat SOURCES PATH
 *   xferctl [options] list SOURCES PATH
 *   xferctl [options] read SOURCES PATH [OFFSET [LEN]]   (bytes to stdout)
 *   xferctl [options] put SOURCES PATH FILE   (prints the result's stat line)
 *   xferctl [options] mkdir|rmdir|rm SOURCES PATH
 *   xferctl [options] mv SOURCES FROM TO
 *   xferctl [options] mtime SOURCES PATH MTIME
 *
 * stat and list print "type<TAB>size<TAB>mtime<TAB>etag<TAB>name" lines,
 * type "d" or "f", etag "-" when none (stat prints PATH as the name).
 * read stats PATH first to learn its size and ETag (unless -Z gives them),
 * then reads [OFFSET, OFFSET+LEN) (default: to the end) in 1 MiB calls.
 *
 * Options: -d debug log, -v log every request, -p PROXY (xfer_opts.proxy),
 * -r RETRIES, -t CONNECT_TIMEOUT_MS, -s STALL_TIMEOUT_S, -m MAX_LISTING,
 * -Z SIZE and -E ETAG (read: the expected attributes, no stat).
 * Writes: -Z SIZE [-M MTIME] [-E ETAG] is put/rm/mv's expect, -A expects
 * the path absent (put), -T MTIME is the mtime put sets, -N renames without
 * replacing, -S MS sleeps MS milliseconds before each 64 KiB of FILE is
 * read (a slow upload), -H prints VmHWM (peak memory) to stderr at exit.
 *
 * Exit status 0, or 1 with "xferctl: OP PATH: message (ENAME)" on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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
	case EEXIST: return "EEXIST";
	case ENOTEMPTY: return "ENOTEMPTY";
	case ENOSPC: return "ENOSPC";
	case EISDIR: return "EISDIR";
	case ENOTSUP: return "ENOTSUP";
	case EBUSY: return "EBUSY";
	case EROFS: return "EROFS";
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

struct upload {
	int fd;
	long sleep_ms;
};

/* pread from the local file; with -S in 64 KiB steps, sleeping first. */
static ssize_t up_read(void *arg, void *buf, size_t cap, uint64_t off)
{
	struct upload *u = arg;
	struct timespec ts;
	ssize_t n;

	if (u->sleep_ms) {
		if (cap > 65536)
			cap = 65536;
		ts.tv_sec = u->sleep_ms / 1000;
		ts.tv_nsec = (u->sleep_ms % 1000) * 1000000L;
		nanosleep(&ts, NULL);
	}
	n = pread(u->fd, buf, cap, (off_t)off);
	return n < 0 ? -errno : n;
}

static int do_put(struct xfer *x, const char *path, const char *file,
                  long sleep_ms, int64_t mtime, const struct xfer_attr *exp)
{
	struct upload u = { -1, sleep_ms };
	struct xfer_attr res;
	struct stat st;
	int rc;

	u.fd = open(file, O_RDONLY);
	if (u.fd < 0 || fstat(u.fd, &st) < 0) {
		rc = -errno;
		goto out;
	}
	rc = xfer_put(x, path, up_read, &u, (uint64_t)st.st_size, mtime, exp,
	              &res);
	if (rc == 0)
		print_attr(path, &res);
out:
	if (u.fd >= 0)
		close(u.fd);
	return rc;
}

static void print_hwm(void)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (strncmp(line, "VmHWM:", 6) == 0)
			fprintf(stderr, "%s", line);
	if (f)
		fclose(f);
}

static void usage(void)
{
	fprintf(stderr, "usage: xferctl [-dv] [-p PROXY] [-r RETRIES] "
	        "[-t CONNECT_MS] [-s STALL_S] [-m MAX_LISTING]\n"
	        "               [-Z SIZE] [-E ETAG] [-M MTIME] "
	        "stat|list|read SOURCES PATH [OFFSET [LEN]]\n"
	        "       xferctl [-AHN] [-Z SIZE] [-M MTIME] [-E ETAG] [-T MTIME] "
	        "[-S MS]\n"
	        "               put|mkdir|rmdir|rm|mv|mtime SOURCES PATH "
	        "[FILE|TO|MTIME]\n");
}

int main(int argc, char **argv)
{
	struct xfer_opts opts = { 0 };
	struct xfer_attr a = { 0 };
	struct xfer *x = NULL;
	const char *cmd, *sources, *path, *etag = NULL;
	const struct xfer_attr *exp = NULL;
	uint64_t v, size = 0, mtime = 0, put_mtime = 0, sleep_ms = 0;
	int have_mtime = 0, have_size = 0, absent = 0, noreplace = 0, hwm = 0;
	int c, rc = 0, status = 1;

	while ((c = getopt(argc, argv, "dvp:r:t:s:m:Z:E:M:AT:NS:H")) != -1) {
		if (strchr("rtsmZMTS", c) && parse_u64(optarg, &v) < 0) {
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
		case 'A': absent = 1; break;
		case 'T': put_mtime = v; break;
		case 'N': noreplace = 1; break;
		case 'S': sleep_ms = v; break;
		case 'H': hwm = 1; break;
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
	if (absent || have_size) {
		a.mode = S_IFREG;
		a.size = absent ? XFER_EXPECT_ABSENT : size;
		a.mtime = (int64_t)mtime;
		if (etag)
			snprintf(a.etag, sizeof(a.etag), "%s", etag);
		exp = &a;
	}
	if (strcmp(cmd, "put") == 0 && argc - optind == 4) {
		rc = do_put(x, path, argv[optind + 3], (long)sleep_ms,
		            (int64_t)put_mtime, exp);
	} else if (strcmp(cmd, "mkdir") == 0) {
		rc = xfer_mkdir(x, path);
	} else if (strcmp(cmd, "rmdir") == 0) {
		rc = xfer_rmdir(x, path);
	} else if (strcmp(cmd, "rm") == 0) {
		rc = xfer_unlink(x, path, exp);
	} else if (strcmp(cmd, "mv") == 0 && argc - optind == 4) {
		rc = xfer_rename(x, path, argv[optind + 3], !noreplace, exp);
	} else if (strcmp(cmd, "mtime") == 0 && argc - optind == 4) {
		rc = parse_u64(argv[optind + 3], &v);
		if (rc == 0)
			rc = xfer_set_mtime(x, path, (int64_t)v);
	} else if (strcmp(cmd, "stat") == 0) {
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
	if (hwm)
		print_hwm();
	return status;
}
