/* libFuzzer target for HTTP header values transfer/ trusts: Content-Range
 * of a 206 (xfer_content_range_parse) and dates (xfer_parse_http_date, for
 * Last-Modified and getlastmodified).  The input text is parsed as both;
 * whatever is accepted must print back to the same value, and values made
 * from the input's bytes must survive print-then-parse. */
#include "tests/fuzz/fuzz.h"
#include "transfer/xfer_i.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#define YEAR_9999_END INT64_C(253402300799)

static void check_range(const char *s)
{
	uint64_t a, b, t, a2, b2, t2;
	bool have, have2;
	char buf[96];
	int rc;

	rc = xfer_content_range_parse(s, &a, &b, &t, &have);
	FZ_CHECK(rc == 0 || rc == -EINVAL);
	if (rc)
		return;
	FZ_CHECK(a <= b);
	FZ_CHECK(!have || b < t);
	if (have)
		snprintf(buf, sizeof(buf), "bytes %" PRIu64 "-%" PRIu64 "/%"
		         PRIu64, a, b, t);
	else
		snprintf(buf, sizeof(buf), "bytes %" PRIu64 "-%" PRIu64 "/*",
		         a, b);
	FZ_CHECK(xfer_content_range_parse(buf, &a2, &b2, &t2, &have2) == 0);
	FZ_CHECK(a2 == a && b2 == b && have2 == have && (!have || t2 == t));
}

/* The three numbers as a server would print them. */
static void check_range_values(uint64_t a, uint64_t b, uint64_t t)
{
	uint64_t a2, b2, t2;
	bool have;
	char buf[96];
	int rc;

	snprintf(buf, sizeof(buf), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64,
	         a, b, t);
	rc = xfer_content_range_parse(buf, &a2, &b2, &t2, &have);
	FZ_CHECK((rc == 0) == (a <= b && b < t));
	FZ_CHECK(rc != 0 || (a2 == a && b2 == b && t2 == t && have));
}

static void format_date(int64_t v, char *buf, size_t cap)
{
	time_t t = (time_t)v;
	struct tm tm;

	FZ_CHECK(gmtime_r(&t, &tm) != NULL);
	FZ_CHECK(strftime(buf, cap, "%a, %d %b %Y %H:%M:%S GMT", &tm) > 0);
}

static void check_date(const char *s)
{
	char buf[64];
	int64_t v, v2;
	int rc;

	rc = xfer_parse_http_date(s, &v);
	FZ_CHECK(rc == 0 || rc == -EINVAL);
	/* before 1970 and after 9999 strftime's %Y is not four digits */
	if (rc || v < 0 || v > YEAR_9999_END)
		return;
	format_date(v, buf, sizeof(buf));
	FZ_CHECK(xfer_parse_http_date(buf, &v2) == 0 && v2 == v);
}

static void check_date_value(uint64_t raw)
{
	int64_t v = (int64_t)(raw % (uint64_t)(YEAR_9999_END + 1)), v2;
	char buf[64];

	format_date(v, buf, sizeof(buf));
	FZ_CHECK(xfer_parse_http_date(buf, &v2) == 0);
	FZ_CHECK(v2 == v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t w[3] = { 0, 0, 0 };
	char *s;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	FZ_CHECK(s != NULL);
	memcpy(s, data, size);
	s[size] = '\0';
	check_range(s);
	check_date(s);
	free(s);
	memcpy(w, data, size < sizeof(w) ? size : sizeof(w));
	check_range_values(w[0], w[1], w[2]);
	check_range_values(w[0] % 4096, w[0] % 4096 + w[1] % 8192,
	                   w[2] % 65536);
	check_date_value(w[0]);
	return 0;
}
