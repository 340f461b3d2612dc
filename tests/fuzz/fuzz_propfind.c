/* libFuzzer target for transfer/propfind.c: the input is a PROPFIND reply
 * body after one control byte (Depth, request URL, chunking, size cap).
 * The body is parsed twice, in chunks and whole: a streaming parser must
 * not depend on how the network cut the reply.  Every listed name must be
 * a usable file name and every attribute well formed. */
#include "tests/fuzz/fuzz.h"
#include "transfer/xfer_i.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define NAME_CAP 1024   /* propfind.c's PF_MAX_NAME */

static const char *const urls[] = {
	"/", "/sub", "http://127.0.0.1:8080/sub/", "/dir%20a/",
	"https://h.example/a/b/c", "/%C3%A9/", "",
	"http://example.org/dav/my%20dir/",
};

/* Returns the parser's verdict; res is filled on success. */
static int parse(const uint8_t *body, size_t n, const char *url, int depth,
                 size_t chunk, size_t max, struct xfer_propfind_result *res)
{
	struct xfer_propfind *p;
	size_t off = 0, k;
	int rc;

	memset(res, 0, sizeof(*res));
	rc = xfer_propfind_new(&p, url, depth, max);
	FZ_CHECK(rc == 0);
	while (off < n && rc == 0) {
		k = n - off < chunk ? n - off : chunk;
		rc = xfer_propfind_feed(p, (const char *)body + off, k);
		off += k;
	}
	FZ_CHECK(rc == 0 || rc == -EIO || rc == -EFBIG);
	rc = xfer_propfind_finish(p, res);
	xfer_propfind_free(p);
	return rc;
}

static void check_attr(const struct xfer_attr *a)
{
	FZ_CHECK(a->mode == S_IFDIR || a->mode == S_IFREG);
	FZ_CHECK(a->mode == S_IFREG || a->size == 0);
	FZ_CHECK(a->size <= (uint64_t)INT64_MAX);
	FZ_CHECK(memchr(a->etag, '\0', sizeof(a->etag)) != NULL);
}

static void check_result(int rc, const struct xfer_propfind_result *r,
                         int depth, size_t n, size_t max)
{
	size_t i, len;

	FZ_CHECK(rc == 0 || rc == -EIO || rc == -EFBIG || rc == -ENOTDIR);
	if (rc != 0) {
		FZ_CHECK(r->children.count == 0 && !r->have_self);
		return;
	}
	FZ_CHECK(n <= max);
	if (depth == 0) {
		FZ_CHECK(r->have_self && r->children.count == 0);
	}
	if (r->have_self) {
		check_attr(&r->self);
		FZ_CHECK(depth == 0 || S_ISDIR(r->self.mode));
	}
	for (i = 0; i < r->children.count; i++) {
		const char *name = r->children.entries[i].name;

		len = strlen(name);
		FZ_CHECK(len > 0 && len <= NAME_CAP);
		FZ_CHECK(!strchr(name, '/'));
		FZ_CHECK(strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
		check_attr(&r->children.entries[i].attr);
	}
}

static void same(const struct xfer_propfind_result *a,
                 const struct xfer_propfind_result *b)
{
	size_t i;

	FZ_CHECK(a->have_self == b->have_self);
	FZ_CHECK(!a->have_self || memcmp(&a->self, &b->self,
	                                 sizeof(a->self)) == 0);
	FZ_CHECK(a->children.count == b->children.count);
	for (i = 0; i < a->children.count; i++) {
		const struct xfer_listing_entry *x = &a->children.entries[i];
		const struct xfer_listing_entry *y = &b->children.entries[i];

		FZ_CHECK(strcmp(x->name, y->name) == 0);
		FZ_CHECK(memcmp(&x->attr, &y->attr, sizeof(x->attr)) == 0);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = { 1, 2, 3, 7, 64, 4096 };
	struct xfer_propfind_result r1, r2;
	size_t chunk, max, n;
	const char *url;
	int depth, rc1, rc2;

	if (size < 1)
		return 0;
	depth = data[0] & 1;
	url = urls[(data[0] >> 1) & 7];
	chunk = chunks[(data[0] >> 4) % 6];
	max = data[0] & 0x80 ? 512 : 1u << 20;
	data++;
	n = size - 1;
	rc1 = parse(data, n, url, depth, chunk, max, &r1);
	check_result(rc1, &r1, depth, n, max);
	rc2 = parse(data, n, url, depth, n ? n : 1, max, &r2);
	check_result(rc2, &r2, depth, n, max);
	/* Over the cap, a chunk may still find an error before the cap is
	 * reached: any error will do. */
	FZ_CHECK(rc1 == rc2 || (n > max && rc1 && rc2));
	same(&r1, &r2);
	xfer_listing_free(&r1.children);
	xfer_listing_free(&r2.children);
	return 0;
}
