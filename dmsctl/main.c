/* dmsctl: the control program of dmsfs.
 *   dmsctl acl lint FILE, dmsctl acl check [-r FILE] USER PATH: the rules
 *   engine (acl_cmds.c);
 *   dmsctl sync, status, pin, unpin, pins: the control socket of a dmsfs
 *   mount (mounts.c; sync.c, status.c, pin.c).
 * What they all print with (usage, sizes, JSON strings): output.c.
 * Exit status: 0 ok, 1 rules file errors / check failed, 2 usage. */
#include "dmsctl/dmsctl.h"
#include "common/log.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	int rc = 2;

	/* Lines from the modules dmsctl runs (the rules engine) name it. */
	dms_log_set_prog("dmsctl");
	if (argc >= 2 && !strcmp(argv[1], "--version")) {
		printf("dmsctl %s\n", DMSFS_VERSION);
		return 0;
	}
	if (argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	                  !strcmp(argv[1], "help"))) {
		ctl_usage(stdout);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "sync"))
		return ctl_cmd_sync(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "status"))
		return ctl_cmd_status(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "pin"))
		return ctl_cmd_pin(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "unpin"))
		return ctl_cmd_unpin(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "pins"))
		return ctl_cmd_pins(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "stats"))
		return ctl_cmd_stats(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "evict"))
		return ctl_cmd_evict(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "reload"))
		return ctl_cmd_reload(argc - 1, argv + 1);
	if (argc < 3 || strcmp(argv[1], "acl")) {
		ctl_usage(stderr);
		goto out;
	}
	if (!strcmp(argv[2], "lint"))
		rc = ctl_cmd_lint(argc - 2, argv + 2);
	else if (!strcmp(argv[2], "check"))
		rc = ctl_cmd_check(argc - 2, argv + 2);
	else
		ctl_usage(stderr);
out:
	return rc;
}
