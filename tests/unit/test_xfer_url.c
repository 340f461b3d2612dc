/* transfer/: percent-encoding, decoding, URL joining, listings, dates,
 * source-string parsing (no network: xfer_open does none). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/unit/check.h"
#include "transfer/xfer_i.h"

static void test_encode(void)
{
	char out[256];

	CHECK_ERR(xfer_encode_segment("abc-._~XYZ019", out, sizeof(out)), 13);
	CHECK_STR(out, "abc-._~XYZ019");
	CHECK_ERR(xfer_encode_segment("a b#%?+", out, sizeof(out)), 17);
	CHECK_STR(out, "a%20b%23%25%3F%2B");
	CHECK(xfer_encode_segment("\xc3\xa9", out, sizeof(out)) == 6);
	CHECK_STR(out, "%C3%A9");
	CHECK(xfer_encode_segment("a/b", out, sizeof(out)) == 5);
	CHECK_STR(out, "a%2Fb");
	CHECK(xfer_encode_segment("", out, sizeof(out)) == 0);
	CHECK_STR(out, "");
	/* Capacity: the NUL must fit too. */
	CHECK_ERR(xfer_encode_segment("abc", out, 3), -ENAMETOOLONG);
	CHECK_ERR(xfer_encode_segment("abc", out, 4), 3);
	CHECK_ERR(xfer_encode_segment(" ", out, 3), -ENAMETOOLONG);
	CHECK_ERR(xfer_encode_segment(" ", out, 4), 3);
}

static void test_decode(void)
{
	char out[256];

	CHECK_ERR(xfer_decode_segment("a%20b%23%25%3F+", 15, out, sizeof(out)),
	          7);
	CHECK_STR(out, "a b#%?+");   /* '+' is not a space in a path */
	CHECK_ERR(xfer_decode_segment("%c3%A9", 6, out, sizeof(out)), 2);
	CHECK_STR(out, "\xc3\xa9");
	CHECK_ERR(xfer_decode_segment("\xc3\xa9", 2, out, sizeof(out)), 2);
	CHECK_ERR(xfer_decode_segment("a%2Fb", 5, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("a%2fb", 5, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("a/b", 3, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("a%00b", 5, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("a%", 2, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("a%4", 3, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("a%4g", 4, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("%%41", 4, out, sizeof(out)), -EINVAL);
	/* seglen bounds the input: the escape past it is not read. */
	CHECK_ERR(xfer_decode_segment("ab%41", 2, out, sizeof(out)), 2);
	CHECK_STR(out, "ab");
	CHECK_ERR(xfer_decode_segment("ab%41", 4, out, sizeof(out)), -EINVAL);
	CHECK_ERR(xfer_decode_segment("abc", 3, out, 3), -ENAMETOOLONG);
	CHECK_ERR(xfer_decode_segment("abc", 3, out, 4), 3);
	CHECK_ERR(xfer_decode_segment("", 0, out, 4), 0);
}

static void test_roundtrip(void)
{
	char enc[1024], dec[256], in[256];
	int i, n;

	/* Every byte but '/' and NUL survives encode + decode. */
	for (i = 1, n = 0; i < 256; i++)
		if (i != '/')
			in[n++] = (char)i;
	in[n] = '\0';
	CHECK(xfer_encode_segment(in, enc, sizeof(enc)) > 0);
	CHECK_ERR(xfer_decode_segment(enc, strlen(enc), dec, sizeof(dec)), n);
	CHECK(memcmp(in, dec, (size_t)n + 1) == 0);
}

static void test_url_join(void)
{
	char *u;

	u = xfer_url_join("http://h:1/root", "/", 0);
	CHECK_STR(u, "http://h:1/root/");
	free(u);
	u = xfer_url_join("http://h:1/root", "/", 1);
	CHECK_STR(u, "http://h:1/root/");
	free(u);
	u = xfer_url_join("http://h:1", "/a b/c#d", 0);
	CHECK_STR(u, "http://h:1/a%20b/c%23d");
	free(u);
	u = xfer_url_join("http://h:1/", "/a b/c?d", 1);
	CHECK_STR(u, "http://h:1/a%20b/c%3Fd/");
	free(u);
	u = xfer_url_join("https://h/x", "/\xc3\xa9/100%+", 0);
	CHECK_STR(u, "https://h/x/%C3%A9/100%25%2B");
	free(u);
	/* Root given with an encoded path stays as given. */
	u = xfer_url_join("http://h/my%20tree", "/f", 0);
	CHECK_STR(u, "http://h/my%20tree/f");
	free(u);
	/* An over-long path is refused, not truncated. */
	{
		char *p = malloc(5000);

		CHECK(p != NULL);
		if (p) {
			memset(p, 'a', 4999);
			p[0] = '/';
			p[4999] = '\0';
			CHECK(xfer_url_join("http://h", p, 0) == NULL);
			p[4000] = '\0';
			u = xfer_url_join("http://h", p, 0);
			CHECK(u != NULL && strlen(u) == 8 + 4000);
			free(u);
			free(p);
		}
	}
}

static int count_cb(void *arg, const char *name, const struct xfer_attr *a)
{
	int *n = arg;

	(*n)++;
	return *n == 3 ? 42 : 0;
}

static void test_listing(void)
{
	struct xfer_listing l = { 0 };
	struct xfer_attr a = { .size = 7, .mode = S_IFREG };
	char name[32];
	int i, n = 0;

	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		CHECK_OK(xfer_listing_add(&l, name, &a));
	}
	CHECK(l.count == 1000);
	CHECK_STR(l.entries[999].name, "f999");
	CHECK(l.entries[5].attr.size == 7);
	CHECK_ERR(xfer_listing_emit(&l, count_cb, &n), 42);
	CHECK(n == 3);
	xfer_listing_free(&l);
	CHECK(l.count == 0 && l.entries == NULL);
	xfer_listing_free(&l);
}

static void test_dates(void)
{
	int64_t t = -1;

	CHECK_OK(xfer_parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", &t));
	CHECK(t == 784111777);
	CHECK_OK(xfer_parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT", &t));
	CHECK(t == 0);
	CHECK_OK(xfer_parse_http_date("Sat, 21 Nov 2026 23:31:58 GMT", &t));
	CHECK(t == 1795303918);
	CHECK_ERR(xfer_parse_http_date("Sun, 06 Nov 1994 08:49:37", &t),
	          -EINVAL);
	CHECK_ERR(xfer_parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT", &t),
	          -EINVAL);
	CHECK_ERR(xfer_parse_http_date("Sun, 06 Nov 94 08:49:37 GMT", &t),
	          -EINVAL);
	CHECK_ERR(xfer_parse_http_date("", &t), -EINVAL);
	CHECK_ERR(xfer_parse_http_date("Sun, 36 Nov 1994 08:49:37 GMT", &t),
	          -EINVAL);
}

static void test_open(void)
{
	struct xfer *x = NULL;
	struct xfer_opts o = { .proxy = "http://127.0.0.1:1|DIRECT;DIRECT" };

	CHECK_OK(xfer_open(&x, "http://127.0.0.1:1/a/;https://127.0.0.1:2",
	                   &o));
	xfer_close(x);
	x = NULL;
	CHECK_OK(xfer_open(&x, " http://127.0.0.1:1 ; ", NULL));
	xfer_close(x);
	x = NULL;
	CHECK_ERR(xfer_open(&x, "file:///etc", NULL), -EINVAL);
	CHECK(x == NULL);
	CHECK_ERR(xfer_open(&x, "http:///nohost", NULL), -EINVAL);
	CHECK_ERR(xfer_open(&x, "", NULL), -EINVAL);
	CHECK_ERR(xfer_open(&x, ";;", NULL), -EINVAL);
	CHECK_ERR(xfer_open(&x, "http://127.0.0.1:1;bogus", NULL), -EINVAL);
	o.proxy = "|;|";
	CHECK_ERR(xfer_open(&x, "http://127.0.0.1:1", &o), -EINVAL);
}

int main(void)
{
	RUN(test_encode);
	RUN(test_decode);
	RUN(test_roundtrip);
	RUN(test_url_join);
	RUN(test_listing);
	RUN(test_dates);
	RUN(test_open);
	CHECK_EXIT();
}
