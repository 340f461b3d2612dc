/* Unit tests for common/prom.c: the metrics answer read line by line and
 * rendered as Prometheus text, label values escaped per the text format
 * (backslash, double quote, newline), one HELP/TYPE per family however
 * many mounts. */
#define _GNU_SOURCE
#include "common/prom.h"
#include "tests/unit/check.h"

#include <stdlib.h>

/* The rendering of n answers as one string (caller frees). */
static char *render(const struct dms_prom_src *v, size_t n)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	CHECK(f != NULL);
	if (!f)
		return NULL;
	CHECK_OK(dms_prom_render(f, v, n));
	fclose(f);
	return buf;
}

static void escape_label_values(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	dms_prom_escape(f, "a\\b\"c\nd\te/");
	fclose(f);
	/* Tab and other bytes go through: only the three are escaped. */
	CHECK_STR(buf, "a\\\\b\\\"c\\nd\te/");
	free(buf);
}

static void mount_label_escaped_and_first(void)
{
	struct dms_prom_src v = {
		"/mnt/we\"ird\\na\nme",
		"family\tdmsfs_x_total\tcounter\tSome \\ help\n"
		"sample\tdmsfs_x_total\t7\tsource=http://h/\"q\\\n"
		".\n",
	};
	char *out = render(&v, 1);

	CHECK_STR(out,
	          "# HELP dmsfs_x_total Some \\\\ help\n"
	          "# TYPE dmsfs_x_total counter\n"
	          "dmsfs_x_total{mount=\"/mnt/we\\\"ird\\\\na\\nme\","
	          "source=\"http://h/\\\"q\\\\\"} 7\n");
	free(out);
}

static void families_once_across_mounts(void)
{
	static const char ans[] =
		"family\tdmsfs_a_total\tcounter\tA.\n"
		"sample\tdmsfs_a_total\t1\n"
		"family\tdmsfs_h_seconds\thistogram\tH.\n"
		"sample\tdmsfs_h_seconds_bucket\t1\tle=0.5\n"
		"sample\tdmsfs_h_seconds_bucket\t2\tle=+Inf\n"
		"sample\tdmsfs_h_seconds_sum\t0.75\n"
		"sample\tdmsfs_h_seconds_count\t2\n";
	struct dms_prom_src v[2] = { { "/a", ans }, { "/b", ans } };
	char *out = render(v, 2);

	CHECK_STR(out,
	          "# HELP dmsfs_a_total A.\n"
	          "# TYPE dmsfs_a_total counter\n"
	          "dmsfs_a_total{mount=\"/a\"} 1\n"
	          "dmsfs_a_total{mount=\"/b\"} 1\n"
	          "# HELP dmsfs_h_seconds H.\n"
	          "# TYPE dmsfs_h_seconds histogram\n"
	          "dmsfs_h_seconds_bucket{mount=\"/a\",le=\"0.5\"} 1\n"
	          "dmsfs_h_seconds_bucket{mount=\"/a\",le=\"+Inf\"} 2\n"
	          "dmsfs_h_seconds_sum{mount=\"/a\"} 0.75\n"
	          "dmsfs_h_seconds_count{mount=\"/a\"} 2\n"
	          "dmsfs_h_seconds_bucket{mount=\"/b\",le=\"0.5\"} 1\n"
	          "dmsfs_h_seconds_bucket{mount=\"/b\",le=\"+Inf\"} 2\n"
	          "dmsfs_h_seconds_sum{mount=\"/b\"} 0.75\n"
	          "dmsfs_h_seconds_count{mount=\"/b\"} 2\n");
	free(out);
}

/* What a newer daemon or a broken one may send: lines of unknown kinds,
 * bad names, bad values, a "mount" label of its own, are left out. */
static void malformed_lines_skipped(void)
{
	static const char ans[] =
		"future\tsomething\n"
		"family\tbad name\tcounter\tX.\n"
		"family\tdmsfs_ok\tgauge\tOK.\n"
		"sample\tdmsfs_ok\tnot-a-number\n"
		"sample\tdmsfs_ok\t3\tmount=/evil\tbad-key=1\tnoequals\tk=v\n"
		"sample\t9bad\t1\n"
		"family\tdmsfs_t\tsummary\tNo such type here.\n";
	struct dms_prom_src v = { "/m", ans };
	char *out = render(&v, 1);

	CHECK_STR(out,
	          "# HELP dmsfs_ok OK.\n"
	          "# TYPE dmsfs_ok gauge\n"
	          "dmsfs_ok{mount=\"/m\",k=\"v\"} 3\n");
	free(out);
}

static void next_walks_lines(void)
{
	const char *pos = "family\tdmsfs_c\tcounter\tC.\n"
	                  "sample\tdmsfs_c\t5\ta=1\tb=x=y\n.\n";
	char buf[DMS_PROM_LINE_MAX];
	struct dms_prom_line l;

	CHECK(dms_prom_next(&pos, &l, buf, sizeof(buf)));
	CHECK(l.kind == DMS_PROM_FAMILY);
	CHECK_STR(l.name, "dmsfs_c");
	CHECK_STR(l.type, "counter");
	CHECK(dms_prom_next(&pos, &l, buf, sizeof(buf)));
	CHECK(l.kind == DMS_PROM_SAMPLE);
	CHECK_STR(l.value, "5");
	CHECK(l.nlabels == 2);
	CHECK_STR(l.val[1], "x=y");   /* split at the first '=' */
	CHECK(!dms_prom_next(&pos, &l, buf, sizeof(buf)));
}

int main(void)
{
	RUN(escape_label_values);
	RUN(mount_label_escaped_and_first);
	RUN(families_once_across_mounts);
	RUN(malformed_lines_skipped);
	RUN(next_walks_lines);
	CHECK_EXIT();
}
