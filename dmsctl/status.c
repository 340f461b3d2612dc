/* dmsctl status: the "info" and "status" answers of each mount
 * (fs/ctl_proto.h) as text or one JSON object. */
#include "dmsctl/dmsctl.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* "AGE_S PATH\tOURS": theirs kept at PATH, ours beside it. */
static void print_conflict(char *line, bool first)
{
	char *ours = strchr(line, '\t'), *path;
	long long age = strtoll(line, &path, 10);

	if (first)
		printf("conflicts (changed at the origin since read here; theirs "
		       "kept, ours uploaded beside it):\n");
	if (ours)
		*ours++ = '\0';
	printf("  %lld s ago: %s: ours is %s\n", age, path + (*path == ' '),
	       ours ? ours : "?");
}

#define MAX_FIELDS 12

struct st_out {
	bool json;
	unsigned nmounts;       /* mounts printed so far (JSON commas) */
};

/* Splits line at tabs into f[] (at most MAX_FIELDS; the last keeps the
 * rest).  Returns the number of fields. */
static int split_tabs(char *line, char **f)
{
	int n = 0;

	while (n < MAX_FIELDS - 1) {
		f[n++] = line;
		line = strchr(line, '\t');
		if (!line)
			return n;
		*line++ = '\0';
	}
	f[n++] = line;
	return n;
}

static unsigned long long num(const char *s)
{
	return strtoull(s, NULL, 10);
}

/* One "source" line of the info answer (fs/ctl_proto.h), split. */
struct st_source {
	char *url, *state, *err;
	long long retry_ms, err_age;
	unsigned long long bytes, requests, failures;
	unsigned inflight;
};

static void source_state(const struct st_source *s, char *out, size_t cap)
{
	if (strcmp(s->state, "down"))
		snprintf(out, cap, "up");
	else if (s->retry_ms > 0)
		snprintf(out, cap, "backing off, %lld s left",
		         (s->retry_ms + 999) / 1000);
	else
		snprintf(out, cap, "down, next call tries it");
}

static void print_sources_text(const struct st_source *v, size_t n)
{
	size_t w = strlen("SOURCE"), i;
	char state[64], b[32];

	for (i = 0; i < n; i++)
		if (strlen(v[i].url) > w)
			w = strlen(v[i].url);
	printf("  %-*s  %-24s %9s %10s %9s  %s\n", (int)w, "SOURCE", "STATE",
	       "REQUESTS", "BYTES", "IN FLIGHT", "LAST ERROR");
	for (i = 0; i < n; i++) {
		source_state(&v[i], state, sizeof(state));
		ctl_human_bytes(v[i].bytes, b, sizeof(b));
		printf("  %-*s  %-24s %9llu %10s %9u  ", (int)w, v[i].url, state,
		       v[i].requests, b, v[i].inflight);
		if (v[i].err_age >= 0)
			printf("%s (%lld s ago)\n", v[i].err, v[i].err_age);
		else
			printf("-\n");
	}
}

static void print_sources_json(const struct st_source *v, size_t n)
{
	char state[64];
	size_t i;

	printf("\"sources\":[");
	for (i = 0; i < n; i++) {
		source_state(&v[i], state, sizeof(state));
		printf("%s{\"url\":", i ? "," : "");
		ctl_json_str(stdout, v[i].url);
		printf(",\"state\":\"%s\",\"backing_off\":%s,\"retry_in_s\":%.1f,"
		       "\"bytes\":%llu,\"requests\":%llu,\"in_flight\":%u,"
		       "\"failures\":%llu,\"last_error\":",
		       strcmp(v[i].state, "down") ? "up" : "down",
		       !strcmp(v[i].state, "down") && v[i].retry_ms > 0
		       ? "true" : "false", (double)v[i].retry_ms / 1000,
		       v[i].bytes, v[i].requests, v[i].inflight, v[i].failures);
		if (v[i].err_age >= 0) {
			ctl_json_str(stdout, v[i].err);
			printf(",\"last_error_age_s\":%lld}", v[i].err_age);
		} else {
			printf("null,\"last_error_age_s\":null}");
		}
	}
	printf("],");
}

/* Prints the info answer of one mount (text or the JSON members up to
 * "pending").  ans is modified. */
static void print_info(char *ans, const char *mnt, const struct st_out *o)
{
	struct st_source src[64];
	char *line, *next, *f[MAX_FIELDS], b1[32], b2[32], b3[32];
	size_t nsrc = 0, nexp = 0;
	int n;

	if (o->json)
		printf("\"exports\":[");
	for (line = ans; *line; line = next) {
		next = ctl_line_end(line);
		n = split_tabs(line, f);
		if (!strcmp(f[0], "export") && n >= 6) {
			if (o->json) {
				printf("%s{\"name\":", nexp ? "," : "");
				ctl_json_str(stdout, f[1]);
				printf(",\"path\":");
				ctl_json_str(stdout, f[2]);
				printf(",\"writable\":%s,\"per_user\":%s,"
				       "\"sources\":", strcmp(f[3], "rw")
				       ? "false" : "true", strcmp(f[4], "per-user")
				       ? "false" : "true");
				ctl_json_str(stdout, f[5]);
				putchar('}');
			} else {
				printf("  export %s at %s (%s%s): %s\n", f[1],
				       f[2], strcmp(f[3], "rw") ? "read-only"
				       : "writable", strcmp(f[4], "per-user")
				       ? "" : ", per user", f[5]);
			}
			nexp++;
		} else if (!strcmp(f[0], "source") && n >= 10 &&
		           nsrc < sizeof(src) / sizeof(src[0])) {
			struct st_source *s = &src[nsrc++];

			s->url = f[1];
			s->state = f[2];
			s->retry_ms = strtoll(f[3], NULL, 10);
			s->bytes = num(f[4]);
			s->requests = num(f[5]);
			s->inflight = (unsigned)num(f[6]);
			s->failures = num(f[7]);
			s->err_age = strtoll(f[8], NULL, 10);
			s->err = f[9];
		} else if (!strcmp(f[0], "cache") && n >= 8) {
			unsigned long long hit = num(f[5]), fetched = num(f[6]);
			double ratio = hit + fetched
			               ? (double)hit / (double)(hit + fetched) : 0;

			if (o->json) {
				printf("],");
				print_sources_json(src, nsrc);
				printf("\"cache\":{\"used_bytes\":%llu,"
				       "\"cap_bytes\":%llu,\"pinned_bytes\":%s,"
				       "\"blocks\":%llu,\"blocks_from_cache\":%llu,"
				       "\"blocks_fetched\":%llu,\"hit_ratio\":%.4f,"
				       "\"evicted_blocks\":%llu},", num(f[1]),
				       num(f[2]), strcmp(f[3], "-") ? f[3] : "null",
				       num(f[4]), hit, fetched, ratio, num(f[7]));
			} else {
				if (nsrc)
					print_sources_text(src, nsrc);
				ctl_human_bytes(num(f[1]), b1, sizeof(b1));
				ctl_human_bytes(num(f[2]), b2, sizeof(b2));
				if (strcmp(f[3], "-"))
					ctl_human_bytes(num(f[3]), b3, sizeof(b3));
				else
					snprintf(b3, sizeof(b3), "-");
				printf("  cache: %s used of %s, pinned %s, hit ratio "
				       "%.1f%% (%llu blocks from the cache, %llu "
				       "fetched), %llu evicted\n", b1, b2, b3,
				       100 * ratio, hit, fetched, num(f[7]));
			}
		} else if (!strcmp(f[0], "memory") && n >= 4) {
			if (o->json) {
				printf("\"memory\":{\"block_bytes\":%llu,"
				       "\"block_cap_bytes\":%llu,"
				       "\"readahead_runs_queued\":%llu,"
				       "\"malloc_in_use_bytes\":%llu,"
				       "\"malloc_held_bytes\":%llu},",
				       num(f[1]), num(f[2]), num(f[3]),
				       n > 4 ? num(f[4]) : 0, n > 5 ? num(f[5]) : 0);
			} else {
				ctl_human_bytes(num(f[1]), b1, sizeof(b1));
				ctl_human_bytes(num(f[2]), b2, sizeof(b2));
				printf("  memory: %s of %s (mem_cache) in blocks, %llu "
				       "read-ahead runs queued\n", b1, b2, num(f[3]));
			}
		}
	}
	(void)mnt;
}

/* "SEQ AGE_S RETRIES KIND PATH[ -> PATH2]\tERROR" as a table row. */
static void print_pending(char *line, bool json, bool first)
{
	char kind[16], *err = strchr(line, '\t');
	unsigned long long seq;
	long long age;
	unsigned retries;
	int off = 0;

	if (err)
		*err++ = '\0';
	if (sscanf(line, "%llu %lld %u %15s %n", &seq, &age, &retries, kind,
	           &off) < 4 || !off) {
		if (json) {
			printf("%s{\"raw\":", first ? "" : ",");
			ctl_json_str(stdout, line);
			putchar('}');
		} else {
			printf("%s\n", line);
		}
		return;
	}
	if (json) {
		printf("%s{\"seq\":%llu,\"age_s\":%lld,\"retries\":%u,"
		       "\"kind\":\"%s\",\"path\":", first ? "" : ",", seq, age,
		       retries, kind);
		ctl_json_str(stdout, line + off);
		printf(",\"error\":");
		if (err && strcmp(err, "-"))
			ctl_json_str(stdout, err);
		else
			printf("null");
		putchar('}');
		return;
	}
	if (first)
		printf("%-8s %7s %7s %s %s\n", "SEQ", "AGE_S", "RETRIES",
		       "OPERATION", "PATH  (LAST ERROR)");
	printf("%-8llu %7lld %7u %s %s%s%s%s\n", seq, age, retries, kind,
	       line + off, err && strcmp(err, "-") ? "  (" : "",
	       err && strcmp(err, "-") ? err : "",
	       err && strcmp(err, "-") ? ")" : "");
}

/* The figures and pending operations of the mount at mnt: 0 or 1. */
static int status_one(const char *mnt, const char *rel, const char *named,
                      void *arg)
{
	struct st_out *o = arg;
	char *info = NULL, *ans = NULL, *copy = NULL, *line, *next;
	size_t shown = 0, conflicts = 0;
	bool unknown;
	int rc = 1;

	info = ctl_ask_list(mnt, "info\n", &unknown);
	if (!info && !unknown)
		goto out;
	ans = ctl_ask_list(mnt, "status\n", NULL);
	if (!ans)
		goto out;
	copy = strdup(ans);     /* the conflicts' pass, for JSON */
	if (!copy)
		goto out;
	if (o->json) {
		printf("%s{\"mount\":", o->nmounts ? "," : "");
		ctl_json_str(stdout, mnt);
		putchar(',');
	} else {
		printf("%s%s\n", o->nmounts ? "\n" : "", mnt);
	}
	o->nmounts++;
	if (info)
		print_info(info, mnt, o);
	if (o->json)
		printf("\"pending\":[");
	for (line = ans; *line; line = next) {
		next = ctl_line_end(line);
		if (!strncmp(line, "conflict ", 9)) {
			if (!o->json)
				print_conflict(line + 9, conflicts == 0);
			conflicts++;
			continue;
		}
		print_pending(line, o->json, shown++ == 0);
	}
	if (o->json) {
		printf("],\"conflicts\":[");
		conflicts = 0;
		for (line = copy; *line; line = next) {
			char *ours, *path;
			long long age;

			next = ctl_line_end(line);
			if (strncmp(line, "conflict ", 9))
				continue;
			ours = strchr(line, '\t');
			if (ours)
				*ours++ = '\0';
			age = strtoll(line + 9, &path, 10);
			printf("%s{\"age_s\":%lld,\"path\":", conflicts++ ? ","
			       : "", age);
			ctl_json_str(stdout, path + (*path == ' '));
			printf(",\"ours\":");
			ctl_json_str(stdout, ours ? ours : "");
			putchar('}');
		}
		printf("]}");
	} else if (!shown) {
		printf("dmsctl: nothing pending in %s\n", mnt);
	} else {
		printf("dmsctl: %zu operations pending in %s\n", shown, mnt);
	}
	rc = 0;
out:
	free(info);
	free(ans);
	free(copy);
	return rc;
}

int ctl_cmd_status(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct st_out o = { 0 };
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+j", longs, NULL)) != -1) {
		if (c == 'j') {
			o.json = true;
		} else {
			ctl_usage(stderr);
			return 2;
		}
	}
	if (o.json)
		printf("{\"mounts\":[");
	/* No PATH: every running dmsfs mount that answers. */
	rc = ctl_each_mount(argv + optind, argc - optind, status_one, &o);
	if (optind >= argc && rc >= 0 && !o.json && !o.nmounts)
		printf("dmsctl: no dmsfs mount is running\n");
	if (o.json)
		printf("]}\n");
	return rc ? 1 : 0;
}
