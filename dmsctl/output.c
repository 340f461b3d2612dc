/* dmsctl: what every command prints with: the usage text, sizes in
 * binary units, JSON strings; and the clock for rates. */
#include "dmsctl/dmsctl.h"

#include <time.h>

void ctl_usage(FILE *to)
{
	fprintf(to,
	        "usage: dmsctl acl lint FILE\n"
	        "       dmsctl acl check [-r FILE] [-g GROUP]... USER PATH\n"
	        "       dmsctl sync [-t SECONDS] [-q] [PATH...]\n"
	        "       dmsctl status [--json] [PATH...]\n"
	        "       dmsctl pin [--quiet|--json] PATH...\n"
	        "       dmsctl unpin [--quiet] PATH...\n"
	        "       dmsctl pins [PATH...]\n"
	        "       dmsctl stats [--json|--prometheus] [PATH...]\n"
	        "       dmsctl evict [--quiet] PATH...\n"
	        "       dmsctl reload [PATH...]\n"
	        "       dmsctl --version | --help\n"
	        "  sync   wait until nothing is pending under each PATH (in a\n"
	        "         dmsfs mount) at the origin, with a progress line;\n"
	        "         no PATH: every dmsfs mount with writable exports;\n"
	        "         -t: give up after SECONDS (exit 1, saying what is\n"
	        "         left and why); -q: no progress\n"
	        "  status per mount holding PATH (no PATH: every running dmsfs\n"
	        "         mount): exports, each source's state (up, backing\n"
	        "         off, last error), requests, bytes and requests in\n"
	        "         flight, cache size/cap/pinned, hit ratio, evictions,\n"
	        "         and the pending operations (yours; root: all);\n"
	        "         --json: the same as one JSON object\n"
	        "  pin    bring every block of each PATH (files, folders\n"
	        "         recursively, in dmsfs mounts) into the cache and keep\n"
	        "         it there (never evicted); what is cached already is\n"
	        "         not fetched again, so an interrupted pin resumes;\n"
	        "         refused up front if it would not fit in cache_size;\n"
	        "         progress bar on a terminal, a line per second\n"
	        "         otherwise; --json: one JSON object at the end;\n"
	        "         exit 1 naming each path that failed and why\n"
	        "  unpin  let the blocks of each PATH (recursively) be evicted\n"
	        "         again: your pins (root: anyone's)\n"
	        "  pins   list your pins (root: all) of the mount holding each\n"
	        "         PATH (none: every mount): size, cached, percent\n"
	        "  stats  counters of the mount holding each PATH (none:\n"
	        "         every mount): cache hits/misses, bytes per source,\n"
	        "         request latencies, errors by kind, failovers,\n"
	        "         denials, evictions, pending uploads; --prometheus:\n"
	        "         the Prometheus text format\n"
	        "  evict  drop the cached blocks of each PATH (recursively);\n"
	        "         pinned files are refused (unpin them first)\n"
	        "  reload re-read the rules file of the mount holding each\n"
	        "         PATH (none: every mount) and check its config file;\n"
	        "         root or the mount's owner only\n"
	        "  lint   validate a rules file (XRootD authdb subset) and that\n"
	        "         no one but root (or you) can change it, as dmsfs does\n"
	        "  check  print USER's rights on PATH (letters of lrwidn, or "
	        "none)\n"
	        "         and the rules that decide each right; default FILE "
	        CTL_DEFAULT_RULES ";\n"
	        "         -g: USER by name, in exactly these groups (no local\n"
	        "         account needed)\n"
	        "  dmsctl --help, -h, help: this text; dmsctl --version\n");
}

double ctl_now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

void ctl_human_bytes(unsigned long long b, char *out, size_t cap)
{
	static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	unsigned u = 0;

	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	snprintf(out, cap, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void ctl_json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}
