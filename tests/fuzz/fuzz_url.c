/* libFuzzer target for transfer/'s URL handling: percent-decoding of href
 * segments (xfer_decode_segment, checked against a reference decoder),
 * encode/decode round trips, xfer_url_join (the URL must decode back to
 * the path's segments), and source strings with proxy lists (xfer_open,
 * which parses but does no network I/O).
 * The first input byte picks the output capacity; the rest is the text. */
#include "tests/fuzz/fuzz.h"
#include "transfer/xfer_i.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

static struct xfer *keep;

/* Keeps the Globus module active, so each ftp:// source in the inputs
 * does not activate and deactivate it again. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (xfer_open(&keep, "ftp://127.0.0.1:1/keep", NULL) != 0)
		keep = NULL;
	return 0;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Reference: -EINVAL, -ENAMETOOLONG or the decoded length (in out, which
 * is big enough). */
static int ref_decode(const uint8_t *s, size_t n, char *out, size_t cap)
{
	size_t i, o = 0;

	for (i = 0; i < n; i++) {
		int c = s[i];

		if (c == '%') {
			if (i + 2 >= n)
				return -EINVAL;
			if (hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				return -EINVAL;
			c = hexval(s[i + 1]) << 4 | hexval(s[i + 2]);
			i += 2;
		}
		if (c == '/' || c == 0)
			return -EINVAL;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return o >= cap ? -ENAMETOOLONG : (int)o;
}

static void check_decode(const uint8_t *s, size_t n, size_t cap)
{
	char *out = malloc(cap), *ref = malloc(n + 1);
	char *enc = malloc(3 * n + 1), *back = malloc(n + 1);
	int rc, want, k;

	FZ_CHECK(out && ref && enc && back);
	rc = xfer_decode_segment((const char *)s, n, out, cap);
	want = ref_decode(s, n, ref, cap);
	/* A bad escape and a too-long result may both hold; either error. */
	if (want >= 0 || rc >= 0) {
		FZ_CHECK(rc == want);
		FZ_CHECK((size_t)rc < cap && strlen(out) == (size_t)rc);
		FZ_CHECK(memcmp(out, ref, (size_t)rc) == 0);
		FZ_CHECK(!memchr(out, '/', (size_t)rc));
		/* encode then decode gives the name back */
		k = xfer_encode_segment(out, enc, 3 * n + 1);
		FZ_CHECK(k >= rc && k <= 3 * rc);
		FZ_CHECK(xfer_decode_segment(enc, (size_t)k, back, n + 1) == rc);
		FZ_CHECK(memcmp(back, out, (size_t)rc + 1) == 0);
	} else {
		FZ_CHECK(rc == -EINVAL || rc == -ENAMETOOLONG);
		FZ_CHECK(cap == 0 || out[0] == '\0');
	}
	free(out);
	free(ref);
	free(enc);
	free(back);
}

/* The input as a raw name (up to its first NUL): encoding keeps only
 * unreserved bytes, and decoding restores it unless it holds a '/'. */
static void check_encode(const char *name, size_t cap)
{
	size_t n = strlen(name);
	char *enc = malloc(cap), *back = malloc(n + 1);
	int k, rc;
	size_t i;

	FZ_CHECK(enc && back);
	k = xfer_encode_segment(name, enc, cap);
	if (k < 0) {
		FZ_CHECK(k == -ENAMETOOLONG);
		goto out;
	}
	FZ_CHECK((size_t)k < cap && strlen(enc) == (size_t)k);
	for (i = 0; i < (size_t)k; i++)
		FZ_CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstu"
		                "vwxyz0123456789-._~%", enc[i]) != NULL);
	rc = xfer_decode_segment(enc, (size_t)k, back, n + 1);
	if (strchr(name, '/')) {
		FZ_CHECK(rc == -EINVAL);
	} else {
		FZ_CHECK(rc == (int)n && memcmp(back, name, n + 1) == 0);
	}
out:
	free(enc);
	free(back);
}

/* The joined URL is root, then one encoded segment per non-empty path
 * segment, then '/' for a directory or the tree's root. */
#define ROOT "https://h.example:8443/a%20b"
#define ROOT_SLASHES ROOT "//"

static void check_join(const char *path, bool dir)
{
	static const char root[] = ROOT;
	const char *p = path, *u, *end, *uend;
	char seg[4097];
	size_t rl = sizeof(root) - 1, nseg = 0;
	/* trailing '/' of the root are dropped */
	char *url = xfer_url_join(strlen(path) % 2 ? root : ROOT_SLASHES,
	                          path, dir);

	if (strlen(path) > 4096) {
		FZ_CHECK(url == NULL);
		return;
	}
	FZ_CHECK(url != NULL);
	FZ_CHECK(strncmp(url, root, rl) == 0);
	u = url + rl;
	for (;;) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		end = p + strcspn(p, "/");
		FZ_CHECK(*u == '/');
		u++;
		uend = u + strcspn(u, "/");
		FZ_CHECK(*uend || !dir);  /* a directory's URL ends in '/' */
		FZ_CHECK(xfer_decode_segment(u, (size_t)(uend - u), seg,
		                             sizeof(seg)) == (int)(end - p));
		FZ_CHECK(memcmp(seg, p, (size_t)(end - p)) == 0);
		u = uend;
		p = end;
		nseg++;
	}
	if (dir || nseg == 0)
		FZ_CHECK(strcmp(u, "/") == 0);
	else
		FZ_CHECK(*u == '\0');
	free(url);
}

/* Sources ';'-separated, then after a '\n' the proxy list. */
static void check_open(const char *text)
{
	struct xfer_opts o = { .connect_timeout_ms = 1 };
	struct xfer *x = NULL;
	char *s = strdup(text), *nl;
	int rc;

	FZ_CHECK(s != NULL);
	nl = strchr(s, '\n');
	if (nl) {
		*nl = '\0';
		o.proxy = nl + 1;
	}
	rc = xfer_open(&x, s, &o);
	FZ_CHECK(rc == 0 || rc == -EINVAL || rc == -EPROTONOSUPPORT ||
	         rc == -ENOMEM);
	FZ_CHECK((rc == 0) == (x != NULL));
	if (x)
		xfer_close(x);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;
	size_t cap;

	if (size < 1 || size > 20000)
		return 0;
	cap = data[0] < 0xf0 ? data[0] % 64 : 5000;
	check_decode(data + 1, size - 1, cap);
	text = malloc(size);
	FZ_CHECK(text != NULL);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	check_encode(text, cap);
	check_join(text, data[0] & 1);
	if (data[0] & 2)
		check_open(text);
	free(text);
	return 0;
}
