#ifndef DMS_DMSCTL_H
#define DMS_DMSCTL_H
/* dmsctl's own header: what its command files (acl_cmds.c, sync.c,
 * status.c, pin.c) share.  Not a library: single-threaded, and a function
 * that fails has said why on stderr ("dmsctl: ...") unless noted.
 *
 * Exit status of every command: 0 ok, 1 failed (rules file errors, check
 * failed, a mount could not be asked or said no), 2 usage. */
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* dmsctl acl check without -r */
#define CTL_DEFAULT_RULES "/etc/dmsfs/authdb"

/* output.c */
void ctl_usage(FILE *to);
double ctl_now_s(void);                 /* CLOCK_MONOTONIC, in seconds */
void ctl_human_bytes(unsigned long long b, char *out, size_t cap);
void ctl_json_str(FILE *f, const char *s);  /* quoted and escaped */

/* mounts.c: finding dmsfs mounts and asking their daemons
 * (protocol: fs/ctl_proto.h). */

/* The mountpoint holding path (realpath'd into mnt) and path inside the
 * mount (rel).  0 or -1. */
int ctl_find_mount(const char *path, char *mnt, size_t cap, char *rel,
                   size_t rcap);

/* Connects to the control socket of the dmsfs mount at mnt, checking it is
 * served by root or the uid that mounted it.  The descriptor or -1. */
int ctl_connect(const char *mnt);

/* Sends one request; an answer of one line (cut at cap) into out. 0 or -1. */
int ctl_ask(const char *mnt, const char *req, char *out, size_t cap);

/* Sends req and checks the answer ends with ".\n" (cut off there): the
 * answer (malloc'd) or NULL.  An old daemon answers "error ..." to a
 * request it does not know: if unknown is given, it is set then (NULL, no
 * message). */
char *ctl_ask_list(const char *mnt, const char *req, bool *unknown);

/* Ends the line at line (its '\n' overwritten) and returns the next one,
 * or the terminating NUL after the last: for walking an answer. */
char *ctl_line_end(char *line);

/* Calls fn for each PATH in paths: fn(mount, path inside it, PATH, arg);
 * no paths (n == 0): for every dmsfs mount whose daemon has a control
 * socket, fn(mount, "/", mount, arg).  0, 1 if a PATH was in no mount or
 * an fn returned non-zero, -1 out of memory. */
typedef int ctl_mount_fn(const char *mnt, const char *rel, const char *shown,
                         void *arg);
int ctl_each_mount(char *const *paths, int n, ctl_mount_fn *fn, void *arg);

/* pin.c: paths named on the command line, grouped by the mount holding
 * them, sent in one "VERB N" request per mount (pin, unpin, evict). */
struct ctl_paths {
	char mnt[PATH_MAX];
	char **rel;                 /* paths inside the mount */
	size_t n;
};
/* Groups argv's paths by mount, in the order first named: 0, or -1 (said
 * why) if one is not in a dmsfs mount or cannot be sent (the others are
 * grouped all the same).  Free *out with ctl_paths_free. */
int ctl_paths_group(int argc, char **argv, struct ctl_paths **out,
                    size_t *nout);
void ctl_paths_free(struct ctl_paths *m, size_t n);
/* Sends "VERB N\n" and the paths; the answer to read, or NULL (said why,
 * unless out of memory). */
FILE *ctl_paths_open(const struct ctl_paths *m, const char *verb);
/* "fail ERRNAME PATH\tWHY" (line past "fail ") into its parts; false if
 * it has no PATH.  line is modified. */
bool ctl_fail_split(char *line, char **err, char **path, char **why);
/* A command "VERB [-q|--quiet] PATH..." whose answer is "fail ..." lines
 * and "done FILES BYTES ...": failures to stderr, then done_fn per mount
 * (unless quiet).  argv[0] is the command's name.  Exit status. */
typedef void ctl_paths_done_fn(const char *mnt, unsigned long long files,
                               unsigned long long bytes);
int ctl_paths_run(int argc, char **argv, const char *verb,
                  ctl_paths_done_fn *done_fn);

/* acl_cmds.c, sync.c, status.c, pin.c: argv[0] is the command's name. */
int ctl_cmd_lint(int argc, char **argv);
int ctl_cmd_check(int argc, char **argv);
int ctl_cmd_sync(int argc, char **argv);
int ctl_cmd_status(int argc, char **argv);
int ctl_cmd_pin(int argc, char **argv);
int ctl_cmd_unpin(int argc, char **argv);
int ctl_cmd_pins(int argc, char **argv);
int ctl_cmd_stats(int argc, char **argv);      /* stats.c */
int ctl_cmd_evict(int argc, char **argv);    /* evict.c */
int ctl_cmd_reload(int argc, char **argv);   /* reload.c */

#endif
