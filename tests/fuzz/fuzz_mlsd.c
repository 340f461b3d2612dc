/* libFuzzer target for GridFTP listings (transfer/gridftp.c): the input
 * after one control byte is an MLSD reply, parsed whole into a listing
 * (xfer_mlsd_parse), and each of its lines is parsed alone as an MLST
 * reply would be (xfer_mlsx_parse) with a name capacity from the control
 * byte.  Listed names must be usable file names, attributes well formed. */
#define _GNU_SOURCE   /* memmem */
#include "tests/fuzz/fuzz.h"
#include "transfer/xfer_i.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

static void check_attr(const struct xfer_attr *a)
{
	FZ_CHECK((a->mode & S_IFMT) == S_IFDIR || (a->mode & S_IFMT) == S_IFREG);
	FZ_CHECK((a->mode & ~(uint32_t)S_IFMT) <= 07777);
	FZ_CHECK(!S_ISDIR(a->mode) || a->size == 0);
	FZ_CHECK(a->etag[0] == '\0');
}

static void check_line(const char *line, size_t n, size_t cap)
{
	char *name = malloc(cap);
	struct xfer_attr a;
	size_t len;
	int rc;

	FZ_CHECK(name != NULL);
	rc = xfer_mlsx_parse(line, n, name, cap, &a);
	FZ_CHECK(rc == 0 || rc == 1 || rc == 2 || rc == -EINVAL ||
	         rc == -ENAMETOOLONG);
	if (rc < 0)
		goto out;
	/* The name is the end of the line, after "; ". */
	len = strlen(name);
	FZ_CHECK(len > 0 && len < cap && len < n);
	FZ_CHECK(memcmp(line + n - len, name, len) == 0);
	FZ_CHECK(line[n - len - 1] == ' ' && line[n - len - 2] == ';');
	FZ_CHECK(!memchr(line, '\0', n));
	if (rc != 1)
		check_attr(&a);
	if (rc == 2)
		FZ_CHECK(S_ISDIR(a.mode));
out:
	free(name);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xfer_listing l = { 0 };
	const char *buf, *p, *nl, *end;
	bool cdir = false;
	size_t i, n, len, cap;
	int rc;

	if (size < 1)
		return 0;
	cap = data[0] & 0x80 ? (size_t)(data[0] & 0x7f) + 1 : 4096;
	buf = (const char *)data + 1;
	n = size - 1;
	rc = xfer_mlsd_parse(buf, n, "ftp://fuzz/dir", &l, &cdir);
	FZ_CHECK(rc == 0 || rc == -EIO);
	for (i = 0; rc == 0 && i < l.count; i++) {
		const char *name = l.entries[i].name;

		len = strlen(name);
		FZ_CHECK(len > 0 && len <= NAME_MAX);
		FZ_CHECK(!strchr(name, '/'));
		FZ_CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
		FZ_CHECK(memmem(buf, n, name, len) != NULL);
		check_attr(&l.entries[i].attr);
	}
	xfer_listing_free(&l);
	for (p = buf, end = buf + n; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			nl = end;
		len = (size_t)(nl - p);
		if (len && p[len - 1] == '\r')
			len--;
		check_line(p, len, cap);
		/* MLST: the whole reply is one entry, buffer sized to fit */
		check_line(p, len, len + 1);
	}
	return 0;
}
