/* dmsctl reload [PATH...]: the daemon of each mount (no PATH: every dmsfs
 * mount) re-reads its rules file and checks its config file
 * (fs/ctl_proto.h "reload").  What it did goes to stdout; what it refused
 * (the previous rules stay) to stderr, with exit status 1. */
#include "dmsctl/dmsctl.h"

#include <stdlib.h>
#include <string.h>

static int reload_one(const char *mnt, const char *rel, const char *shown,
                      void *arg)
{
	bool unknown = false;
	char *ans = ctl_ask_list(mnt, "reload\n", &unknown), *line, *next;
	int rc = 0;

	(void)rel;
	(void)shown;
	(void)arg;
	if (unknown) {
		char why[512];

		/* Ask again for the words of the refusal. */
		if (ctl_ask(mnt, "reload\n", why, sizeof(why)) == 0) {
			why[strcspn(why, "\n")] = '\0';
			fprintf(stderr, "dmsctl: %s: %s\n", mnt,
			        strncmp(why, "error ", 6) ? why : why + 6);
		}
		return 1;
	}
	if (!ans)
		return 1;
	for (line = ans; *line; line = next) {
		next = ctl_line_end(line);
		if (!strncmp(line, "ok ", 3)) {
			printf("dmsctl: %s: %s\n", mnt, line + 3);
		} else if (!strncmp(line, "note ", 5)) {
			printf("dmsctl: %s: %s\n", mnt, line + 5);
		} else if (!strncmp(line, "fail ", 5)) {
			fprintf(stderr, "dmsctl: %s: %s\n", mnt, line + 5);
			rc = 1;
		}
	}
	free(ans);
	return rc;
}

int ctl_cmd_reload(int argc, char **argv)
{
	return ctl_each_mount(argv + 1, argc - 1, reload_one, NULL) ? 1 : 0;
}
