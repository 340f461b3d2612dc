/* dmsctl pin, unpin, pins.  Each PATH goes to the daemon of the mount it
 * is in: the paths of one mount in one request (fs/ctl_proto.h), so the
 * cap check sees them all. */
#include "dmsctl/dmsctl.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct pin_opts {
	bool quiet, json, tty;
};

/* Groups argv's paths by mount, in the order first named.  -1 (said why)
 * if one is not in a dmsfs mount or cannot be sent. */
int ctl_paths_group(int argc, char **argv, struct ctl_paths **out,
                     size_t *nout)
{
	struct ctl_paths *m = NULL;
	size_t n = 0;
	int rc = 0;

	for (int i = 0; i < argc; i++) {
		char mnt[PATH_MAX], rel[PATH_MAX];
		size_t k;

		if (ctl_find_mount(argv[i], mnt, sizeof(mnt), rel, sizeof(rel)) != 0) {
			rc = -1;
			continue;
		}
		if (strchr(rel, '\n')) {
			fprintf(stderr, "dmsctl: %s: a name with a newline cannot "
			        "be sent to the daemon\n", argv[i]);
			rc = -1;
			continue;
		}
		for (k = 0; k < n && strcmp(m[k].mnt, mnt); k++)
			;
		if (k == n) {
			void *v = realloc(m, (n + 1) * sizeof(*m));

			if (!v)
				goto oom;
			m = v;
			memset(&m[n], 0, sizeof(m[n]));
			snprintf(m[n].mnt, sizeof(m[n].mnt), "%s", mnt);
			n++;
		}
		{
			void *v = realloc(m[k].rel, (m[k].n + 1) * sizeof(char *));

			if (!v)
				goto oom;
			m[k].rel = v;
			m[k].rel[m[k].n] = strdup(rel);
			if (!m[k].rel[m[k].n])
				goto oom;
			m[k].n++;
		}
	}
	*out = m;
	*nout = n;
	return rc;
oom:
	fprintf(stderr, "dmsctl: out of memory\n");
	*out = m;
	*nout = n;
	return -1;
}

void ctl_paths_free(struct ctl_paths *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; k < m[i].n; k++)
			free(m[i].rel[k]);
		free(m[i].rel);
	}
	free(m);
}

/* Sends "VERB N\n" and the paths; the answer to read, or NULL (said why,
 * unless out of memory). */
FILE *ctl_paths_open(const struct ctl_paths *m, const char *verb)
{
	char head[64];
	int fd = ctl_connect(m->mnt);
	FILE *f, *in = NULL;
	bool ok;

	if (fd < 0)
		goto out;
	snprintf(head, sizeof(head), "%s %zu\n", verb, m->n);
	f = fdopen(dup(fd), "w");
	ok = f && fputs(head, f) >= 0;
	for (size_t i = 0; ok && i < m->n; i++)
		ok = fprintf(f, "%s\n", m->rel[i]) >= 0;
	if (f && fclose(f) != 0)
		ok = false;
	if (!ok) {
		fprintf(stderr, "dmsctl: %s: %s\n", m->mnt, strerror(errno));
		goto out;
	}
	in = fdopen(fd, "r");
out:
	if (!in && fd >= 0)
		close(fd);
	return in;
}

/* "fail ERRNAME PATH\tWHY" (line past "fail ") into its parts; false if
 * it has no PATH.  line is modified. */
bool ctl_fail_split(char *line, char **err, char **path, char **why)
{
	*err = line;
	*path = strchr(line, ' ');
	if (!*path)
		return false;
	*(*path)++ = '\0';
	*why = strchr(*path, '\t');
	if (*why)
		*(*why)++ = '\0';
	return true;
}

/* "3:04" or "1:02:03" */
static void clock_str(double s, char *out, size_t cap)
{
	long t = s < 0 ? 0 : s > 359999 ? 359999 : (long)(s + 0.5);

	if (t >= 3600)
		snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
	else
		snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
}

struct pin_progress {
	unsigned long long fd, f, bd, b, fetched;
	double start, last_line;
	bool drawn;
};

static void pin_show(const struct ctl_paths *m, struct pin_progress *p,
                     const struct pin_opts *o, bool final)
{
	double el = ctl_now_s() - p->start;
	double rate = el > 0 ? (double)p->fetched / el : 0;
	double eta = rate > 0 ? (double)(p->b - p->bd) / rate : -1;
	char bd[32], b[32], r[32], e[32] = "?";

	if (o->quiet || o->json || (!final && p->bd == p->b && p->fd == p->f))
		return;   /* the final line says it */
	if (!o->tty && !final && ctl_now_s() - p->last_line < 1.0)
		return;
	ctl_human_bytes(p->bd, bd, sizeof(bd));
	ctl_human_bytes(p->b, b, sizeof(b));
	ctl_human_bytes((unsigned long long)rate, r, sizeof(r));
	if (eta >= 0)
		clock_str(eta, e, sizeof(e));
	if (o->tty) {
		int width = 24, fill = p->b ? (int)((double)p->bd / (double)p->b *
		                                     width) : width;

		printf("\r\033[K[%.*s%.*s] %llu/%llu files  %s/%s  %s/s  ETA %s",
		       fill, "########################", width - fill,
		       "........................", p->fd, p->f, bd, b, r,
		       final ? "0:00" : e);
		if (final)
			putchar('\n');
		p->drawn = !final;
	} else {
		/* One line per second at most: a log, not a screen. */
		printf("pin %s: %llu/%llu files, %llu/%llu bytes, %llu fetched, "
		       "%.1f MiB/s, eta %s\n", m->mnt, p->fd, p->f, p->bd, p->b,
		       p->fetched, rate / 1048576.0, final ? "0:00" : e);
		p->last_line = ctl_now_s();
	}
	fflush(stdout);
}

/* Runs one mount's pin; appends its JSON object to js.  0 ok, 1 failed. */
static int pin_one(const struct ctl_paths *m, const struct pin_opts *o,
                   FILE *js)
{
	struct pin_progress p = { .start = ctl_now_s() };
	char *line = NULL;
	size_t cap = 0;
	unsigned long long need = 0, pinned = 0, pcap = 0;
	bool refused = false, done = false, first_fail = true;
	unsigned nfail = 0;
	FILE *in = ctl_paths_open(m, "pin");

	if (!in)
		return 1;
	if (js) {
		fputs("{\"mount\": ", js);
		ctl_json_str(js, m->mnt);
		fputs(", \"failed\": [", js);
	}
	while (getline(&line, &cap, in) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "progress %llu %llu %llu %llu %llu", &p.fd, &p.f,
		           &p.bd, &p.b, &p.fetched) == 5) {
			pin_show(m, &p, o, false);
		} else if (sscanf(line, "walk %llu %llu", &p.f, &p.b) == 2) {
			;
		} else if (sscanf(line, "refused %llu %llu %llu", &need, &pinned,
		                  &pcap) == 3) {
			char a[32], b[32], c[32];

			refused = true;
			ctl_human_bytes(need, a, sizeof(a));
			ctl_human_bytes(pinned, b, sizeof(b));
			ctl_human_bytes(pcap, c, sizeof(c));
			fprintf(stderr, "dmsctl: %s: pin refused: it needs %llu "
			        "bytes (%s), %llu (%s) are pinned already, "
			        "cache_size is %llu (%s)\n", m->mnt, need, a, pinned,
			        b, pcap, c);
		} else if (!strncmp(line, "fail ", 5)) {
			char *err, *path, *why, full[2 * PATH_MAX];

			if (!ctl_fail_split(line + 5, &err, &path, &why))
				continue;
			snprintf(full, sizeof(full), "%s%s", m->mnt,
			         strcmp(path, "/") ? path : "");
			if (p.drawn) {
				putchar('\n');
				p.drawn = false;
			}
			fprintf(stderr, "dmsctl: pin %s: %s (%s)\n", full, err,
			        why ? why : "");
			nfail++;
			if (js) {
				fputs(first_fail ? "{\"path\": " : ", {\"path\": ", js);
				ctl_json_str(js, full);
				fputs(", \"error\": ", js);
				ctl_json_str(js, err);
				fputs(", \"reason\": ", js);
				ctl_json_str(js, why ? why : "");
				fputc('}', js);
			}
			first_fail = false;
		} else if (sscanf(line, "done %llu %llu %llu %llu", &p.fd, &p.f,
		                  &p.bd, &p.fetched) == 4) {
			done = true;
		} else if (!strncmp(line, "error ", 6)) {
			fprintf(stderr, "dmsctl: %s: %s\n", m->mnt, line + 6);
		}
	}
	if (!done && !refused)
		fprintf(stderr, "dmsctl: %s: the daemon ended the pin without "
		        "an answer (unmounted?)\n", m->mnt);
	if (done)
		pin_show(m, &p, o, true);
	if (js) {
		fprintf(js, "], \"files\": %llu, \"files_done\": %llu, \"bytes\": "
		        "%llu, \"bytes_done\": %llu, \"fetched\": %llu, "
		        "\"seconds\": %.3f, \"complete\": %s", p.f, p.fd, p.b,
		        p.bd, p.fetched, ctl_now_s() - p.start,
		        done && !nfail ? "true" : "false");
		if (refused)
			fprintf(js, ", \"refused\": {\"needed\": %llu, \"pinned\": "
			        "%llu, \"cap\": %llu}", need, pinned, pcap);
		fputc('}', js);
	}
	free(line);
	fclose(in);
	return done && !nfail && !refused ? 0 : 1;
}

static void pin_interrupted(int sig)
{
	static const char msg[] = "\ndmsctl: interrupted; the daemon stops "
	                          "the pin; run it again to resume\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(130);
	_exit(130);
}

int ctl_cmd_pin(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "quiet", no_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	struct pin_opts o = { .tty = isatty(1) };
	struct ctl_paths *m = NULL;
	size_t n = 0;
	char *jbuf = NULL;
	size_t jlen = 0;
	FILE *js = NULL;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+qj", lo, NULL)) != -1) {
		if (c == 'q') {
			o.quiet = true;
		} else if (c == 'j') {
			o.json = true;
		} else {
			ctl_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		ctl_usage(stderr);
		return 2;
	}
	if (ctl_paths_group(argc - optind, argv + optind, &m, &n) != 0)
		rc = 1;
	signal(SIGINT, pin_interrupted);
	signal(SIGTERM, pin_interrupted);
	if (o.json) {
		js = open_memstream(&jbuf, &jlen);
		if (!js) {
			fprintf(stderr, "dmsctl: out of memory\n");
			rc = 1;
			goto out;
		}
		fputs("{\"mounts\": [", js);
	}
	for (size_t i = 0; i < n; i++) {
		if (js && i)
			fputs(", ", js);
		if (pin_one(&m[i], &o, js) != 0)
			rc = 1;
	}
	if (js) {
		fprintf(js, "], \"ok\": %s}\n", rc ? "false" : "true");
		fclose(js);
		fputs(jbuf, stdout);
	}
out:
	free(jbuf);
	ctl_paths_free(m, n);
	return rc;
}

int ctl_paths_run(int argc, char **argv, const char *verb,
                  ctl_paths_done_fn *done_fn)
{
	struct ctl_paths *m = NULL;
	size_t n = 0;
	bool quiet = false;
	int rc = 0;

	if (argc >= 2 && (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet"))) {
		quiet = true;
		argc--;
		argv++;
	}
	if (argc < 2) {
		ctl_usage(stderr);
		return 2;
	}
	if (ctl_paths_group(argc - 1, argv + 1, &m, &n) != 0)
		rc = 1;
	for (size_t i = 0; i < n; i++) {
		char *line = NULL;
		size_t cap = 0;
		unsigned long long files = 0, bytes = 0;
		bool done = false;
		FILE *in = ctl_paths_open(&m[i], verb);

		if (!in) {
			rc = 1;
			continue;
		}
		while (getline(&line, &cap, in) > 0) {
			line[strcspn(line, "\n")] = '\0';
			if (!strncmp(line, "fail ", 5)) {
				char *err, *path, *why;

				if (!ctl_fail_split(line + 5, &err, &path, &why))
					continue;
				fprintf(stderr, "dmsctl: %s %s%s: %s (%s)\n", verb,
				        m[i].mnt, strcmp(path, "/") ? path : "", err,
				        why ? why : "");
				rc = 1;
			} else if (sscanf(line, "done %llu %llu", &files,
			                  &bytes) == 2) {
				done = true;
			} else if (!strncmp(line, "error ", 6)) {
				fprintf(stderr, "dmsctl: %s: %s\n", m[i].mnt, line + 6);
			}
		}
		if (!done) {
			fprintf(stderr, "dmsctl: %s: the daemon ended the %s "
			        "without an answer (unmounted, or a dmsfs without "
			        "%s?)\n", m[i].mnt, verb, verb);
			rc = 1;
		} else if (!quiet) {
			done_fn(m[i].mnt, files, bytes);
		}
		free(line);
		fclose(in);
	}
	ctl_paths_free(m, n);
	return rc;
}

static void unpin_done(const char *mnt, unsigned long long files,
                       unsigned long long bytes)
{
	char b[32];

	ctl_human_bytes(bytes, b, sizeof(b));
	printf("dmsctl: %s: unpinned %llu files (%s)\n", mnt, files, b);
}

int ctl_cmd_unpin(int argc, char **argv)
{
	return ctl_paths_run(argc, argv, "unpin", unpin_done);
}

/* Lists the pins of the mount at mnt (the caller's own; root: all). */
static int pins_one(const char *mnt, const char *rel, const char *shown,
                    void *arg)
{
	char *ans = ctl_ask_list(mnt, "pins\n", NULL), *line, *next;

	if (!ans)
		return 1;
	printf("%s:\n", mnt);
	for (line = ans; *line; line = next) {
		unsigned long long size, cached, n, pall, cap;
		unsigned uid;
		int off = 0;
		char s[32], c[32], a[32], k[32];

		next = ctl_line_end(line);
		if (sscanf(line, "pin %u %llu %llu %n", &uid, &size, &cached,
		           &off) == 3 && off) {
			struct passwd *pw = getpwuid(uid);

			ctl_human_bytes(size, s, sizeof(s));
			ctl_human_bytes(cached, c, sizeof(c));
			printf("  %5.1f%%  %10s of %-10s  %-10s  %s%s\n",
			       size ? 100.0 * (double)cached / (double)size : 100.0,
			       c, s, pw ? pw->pw_name : "?", mnt,
			       strcmp(line + off, "/") ? line + off : "");
		} else if (sscanf(line, "total %llu %llu %llu %llu %llu", &n, &size,
		                  &cached, &pall, &cap) == 5) {
			ctl_human_bytes(size, s, sizeof(s));
			ctl_human_bytes(cached, c, sizeof(c));
			ctl_human_bytes(pall, a, sizeof(a));
			ctl_human_bytes(cap, k, sizeof(k));
			printf("  total: %llu pins, %s of %s cached (%.1f%%); "
			       "pinned on this mount: %s of cache_size %s\n", n, c, s,
			       size ? 100.0 * (double)cached / (double)size : 100.0,
			       a, k);
		}
	}
	free(ans);
	return 0;
}

int ctl_cmd_pins(int argc, char **argv)
{
	return ctl_each_mount(argv + 1, argc - 1, pins_one, NULL) ? 1 : 0;
}
