/* dmsctl sync: waits until nothing is pending at the origin under each
 * PATH, asking the mount's daemon ("sync PATH", fs/ctl_proto.h) five
 * times a second. */
#include "dmsctl/dmsctl.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sync_opts {
	double deadline;        /* 0: none */
	long timeout;
	bool quiet;
	bool tty;               /* stderr is a terminal: one line rewritten */
};

/* Waits until nothing is pending under rel in the mount at mnt; shown is
 * the path the user named.  0, or 1 (said why). */
static int sync_one(const char *mnt, const char *rel, const char *shown,
                    void *arg)
{
	const struct sync_opts *o = arg;
	char req[PATH_MAX + 16], ans[512], b[32], rate[48] = "";
	unsigned long long n = 0, bytes = 0, files = 0, first_bytes = 0;
	unsigned long long last_n = ~0ull;
	double start = ctl_now_s(), printed = 0;
	bool first = true, drawn = false;
	int rc = 1;

	snprintf(req, sizeof(req), "sync %s\n", rel);
	for (;;) {
		char err[400] = "-";
		double t;

		if (ctl_ask(mnt, req, ans, sizeof(ans)) != 0)
			goto out;
		if (!strcmp(ans, "error busy\n")) {
			/* Other requests hold the slots a caller may use:
			 * waiting is what sync does anyway. */
			usleep(200 * 1000);
			continue;
		}
		if (sscanf(ans, "%llu %llu %llu %399[^\n]", &n, &bytes, &files,
		           err) < 3) {
			fprintf(stderr, "dmsctl: unexpected answer from %s: %s\n",
			        mnt, ans);
			goto out;
		}
		t = ctl_now_s();
		if (first) {
			first_bytes = bytes;
			first = false;
		}
		if (n == 0) {
			rc = 0;
			goto out;
		}
		ctl_human_bytes(bytes, b, sizeof(b));
		/* Uploaded bytes over time: new writes during the wait only
		 * make the figure look slower, never wrong by much. */
		if (t - start >= 1 && first_bytes > bytes) {
			double r = (double)(first_bytes - bytes) / (t - start);
			char rb[32];

			ctl_human_bytes((unsigned long long)r, rb, sizeof(rb));
			snprintf(rate, sizeof(rate), ", %s/s, ~%.0f s left", rb,
			         r > 0 ? (double)bytes / r : 0);
		}
		if (o->deadline > 0 && t >= o->deadline) {
			if (drawn)
				fputc('\n', stderr);
			drawn = false;
			fprintf(stderr, "dmsctl: gave up after %ld s: %llu "
			        "operations (%llu bytes) still pending under %s "
			        "(%llu file uploads)%s%s\n",
			        o->timeout, n, bytes, shown, files,
			        strcmp(err, "-") ? "; last error: " : "",
			        strcmp(err, "-") ? err : "");
			goto out;
		}
		if (!o->quiet && (o->tty || n != last_n || t - printed >= 5)) {
			fprintf(stderr, "%sdmsctl: %s: %llu operations pending "
			        "(%llu files, %s)%s%s%s%s",
			        o->tty ? "\r\033[K" : "", shown, n, files, b, rate,
			        strcmp(err, "-") ? "; last error: " : "",
			        strcmp(err, "-") ? err : "", o->tty ? "" : "\n");
			drawn = o->tty;
			printed = t;
			last_n = n;
		}
		usleep(200 * 1000);
	}
out:
	if (drawn)
		fputs("\r\033[K", stderr);
	if (rc == 0 && !o->quiet)
		printf("dmsctl: everything under %s is at the origin\n", shown);
	return rc;
}

int ctl_cmd_sync(int argc, char **argv)
{
	struct sync_opts o = { .tty = isatty(2) };
	int c, rc;

	optind = 1;
	while ((c = getopt(argc, argv, "+t:q")) != -1) {
		if (c == 't') {
			char *end;

			o.timeout = strtol(optarg, &end, 10);
			if (*end || o.timeout <= 0) {
				fprintf(stderr, "dmsctl: -t takes a number of "
				        "seconds above 0, not '%s'\n", optarg);
				return 2;
			}
		} else if (c == 'q') {
			o.quiet = true;
		} else {
			ctl_usage(stderr);
			return 2;
		}
	}
	if (o.timeout)
		o.deadline = ctl_now_s() + (double)o.timeout;
	/* No PATH: every dmsfs mount whose daemon has writable exports (the
	 * others have no control socket and nothing to wait for). */
	rc = ctl_each_mount(argv + optind, argc - optind, sync_one, &o);
	return rc ? 1 : 0;
}
