/* dmsctl evict PATH...: drop the blocks of files (folders recursively)
 * from the cache of the mount holding them, as the caller may read them
 * (fs/ctl_proto.h "evict").  Pinned files are refused, not unpinned: the
 * message says to run dmsctl unpin first. */
#include "dmsctl/dmsctl.h"

#include <stdlib.h>
#include <string.h>

/* Asks one mount; prints what was freed.  0 ok, 1 failed. */
static int evict_one(const struct ctl_paths *m, bool quiet)
{
	char *line = NULL;
	size_t cap = 0;
	unsigned long long files = 0, bytes = 0;
	unsigned nfails = 0;
	bool done = false;
	FILE *in = ctl_paths_open(m, "evict");

	if (!in)
		return 1;
	while (getline(&line, &cap, in) > 0) {
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "fail ", 5)) {
			char *err, *path, *why;

			if (!ctl_fail_split(line + 5, &err, &path, &why))
				continue;
			fprintf(stderr, "dmsctl: evict %s%s: %s (%s)\n", m->mnt,
			        strcmp(path, "/") ? path : "", err,
			        why ? why : "");
			nfails++;
		} else if (sscanf(line, "done %llu %llu", &files, &bytes) == 2) {
			done = true;
		} else if (!strncmp(line, "error ", 6)) {
			fprintf(stderr, "dmsctl: %s: %s\n", m->mnt, line + 6);
		}
	}
	if (!done)
		fprintf(stderr, "dmsctl: %s: the daemon ended the evict without "
		        "an answer (unmounted, or a dmsfs without evict?)\n",
		        m->mnt);
	else if (!quiet) {
		char b[32];

		ctl_human_bytes(bytes, b, sizeof(b));
		printf("dmsctl: %s: evicted %llu files, freed %llu bytes (%s)\n",
		       m->mnt, files, bytes, b);
	}
	free(line);
	fclose(in);
	return done && !nfails ? 0 : 1;
}

int ctl_cmd_evict(int argc, char **argv)
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
	for (size_t i = 0; i < n; i++)
		if (evict_one(&m[i], quiet) != 0)
			rc = 1;
	ctl_paths_free(m, n);
	return rc;
}
