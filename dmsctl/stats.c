/* dmsctl stats: the "metrics" answer of each mount (fs/ctl_proto.h) as
 * text, one JSON object, or the Prometheus text format (common/prom.h). */
#include "dmsctl/dmsctl.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common/prom.h"

enum stats_form { FORM_TEXT, FORM_JSON, FORM_PROM };

/* The answers collected, one per mount, rendered once all are in (the
 * Prometheus form groups every mount's samples by family). */
struct stats_all {
	struct dms_prom_src *v;
	size_t n;
	bool every;             /* no PATH given: every running mount */
};

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && !strcmp(s + n - t, tail);
}

static int collect(const char *mnt, const char *rel, const char *shown,
                   void *arg)
{
	struct stats_all *all = arg;
	struct dms_prom_src *v;
	char *ans, *name;
	bool unknown;
	size_t i;

	(void)rel;
	for (i = 0; i < all->n; i++)
		if (!strcmp(all->v[i].mount, mnt))
			return 0;   /* two PATHs in one mount: asked once */
	ans = ctl_ask_list(mnt, "metrics\n", &unknown);
	if (!ans && unknown && all->every) {
		/* Asked about every mount: an older daemon is skipped, not a
		 * failure, as status skips a stale mount. */
		fprintf(stderr, "dmsctl: warning: the daemon of %s is older and "
		        "has no metrics (remount to get them); skipped\n", mnt);
		return 0;
	}
	if (!ans) {
		if (unknown)
			fprintf(stderr, "dmsctl: the daemon of %s (for %s) is "
			        "older and has no metrics; remount to get "
			        "them\n", mnt, shown);
		return 1;
	}
	name = strdup(mnt);
	v = realloc(all->v, (all->n + 1) * sizeof(*v));
	if (!name || !v) {
		fprintf(stderr, "dmsctl: out of memory\n");
		free(name);
		free(ans);
		if (v)
			all->v = v;
		return 1;
	}
	all->v = v;
	v[all->n].mount = name;
	v[all->n].answer = ans;
	all->n++;
	return 0;
}

static void print_text(const struct dms_prom_src *m)
{
	char buf[DMS_PROM_LINE_MAX], hb[32];
	struct dms_prom_line l;
	const char *pos = m->answer;

	printf("%s\n", m->mount);
	while (dms_prom_next(&pos, &l, buf, sizeof(buf))) {
		if (l.kind != DMS_PROM_SAMPLE || ends_with(l.name, "_bucket"))
			continue;
		/* Error kinds that never happened are noise in a listing. */
		if (!strcmp(l.name, "dmsfs_source_errors_total") &&
		    !strcmp(l.value, "0"))
			continue;
		printf("  %s", l.name);
		for (size_t i = 0; i < l.nlabels; i++)
			printf("%s%s=%s", i ? "," : "{", l.key[i], l.val[i]);
		printf("%s %s", l.nlabels ? "}" : "", l.value);
		if (strstr(l.name, "_bytes") && strcmp(l.value, "0")) {
			ctl_human_bytes(strtoull(l.value, NULL, 10), hb,
			                sizeof(hb));
			printf(" (%s)", hb);
		}
		putchar('\n');
	}
}

/* {"mount":M,"families":[{"name":..,"type":..,"help":..,"samples":
 *  [{"name":..,"labels":{..},"value":N}]}]} */
static void print_json(const struct dms_prom_src *m, bool first)
{
	char buf[DMS_PROM_LINE_MAX];
	struct dms_prom_line l;
	const char *pos = m->answer;
	unsigned nfam = 0, nsam = 0;

	printf("%s{\"mount\":", first ? "" : ",");
	ctl_json_str(stdout, m->mount);
	printf(",\"families\":[");
	while (dms_prom_next(&pos, &l, buf, sizeof(buf))) {
		if (l.kind == DMS_PROM_FAMILY) {
			printf("%s{\"name\":", nfam++ ? "]}," : "");
			ctl_json_str(stdout, l.name);
			printf(",\"type\":");
			ctl_json_str(stdout, l.type);
			printf(",\"help\":");
			ctl_json_str(stdout, l.help);
			printf(",\"samples\":[");
			nsam = 0;
			continue;
		}
		if (!nfam)
			continue;   /* a sample before any family */
		printf("%s{\"name\":", nsam++ ? "," : "");
		ctl_json_str(stdout, l.name);
		printf(",\"labels\":{");
		for (size_t i = 0; i < l.nlabels; i++) {
			printf("%s", i ? "," : "");
			ctl_json_str(stdout, l.key[i]);
			putchar(':');
			ctl_json_str(stdout, l.val[i]);
		}
		/* Values are plain numbers (the daemon writes no Inf/NaN). */
		printf("},\"value\":%s}", l.value);
	}
	printf("%s]}", nfam ? "]}" : "");
}

int ctl_cmd_stats(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	enum stats_form form = FORM_TEXT;
	struct stats_all all = { 0 };
	size_t i;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+jp", longs, NULL)) != -1) {
		if (c == 'j' && form == FORM_TEXT) {
			form = FORM_JSON;
		} else if (c == 'p' && form == FORM_TEXT) {
			form = FORM_PROM;
		} else {
			ctl_usage(stderr);
			return 2;
		}
	}
	/* No PATH: every running dmsfs mount that answers. */
	all.every = optind >= argc;
	rc = ctl_each_mount(argv + optind, argc - optind, collect, &all);
	if (form == FORM_PROM) {
		if (dms_prom_render(stdout, all.v, all.n) != 0)
			rc = 1;
	} else if (form == FORM_JSON) {
		printf("{\"mounts\":[");
		for (i = 0; i < all.n; i++)
			print_json(&all.v[i], i == 0);
		printf("]}\n");
	} else {
		for (i = 0; i < all.n; i++) {
			if (i)
				putchar('\n');
			print_text(&all.v[i]);
		}
		if (optind >= argc && rc >= 0 && !all.n)
			printf("dmsctl: no dmsfs mount is running\n");
	}
	for (i = 0; i < all.n; i++) {
		free((char *)all.v[i].mount);
		free((char *)all.v[i].answer);
	}
	free(all.v);
	if (fflush(stdout) != 0)
		rc = 1;
	return rc ? 1 : 0;
}
