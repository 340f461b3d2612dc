/* dmsctl reload: what a running mount can take from its files without a
 * remount.
 *   - The rules file (-o acl= or [acl] rules): re-read now, with the trust
 *     checks and parse of the start (acl_lint first, so its diagnostics
 *     reach the caller); a file that does not load is refused and the
 *     rules in force stay.  The same happens on SIGHUP and, within about
 *     two seconds, whenever the file changes (fs/access.c).
 *   - The config file (-o config=): read and checked as at start; its
 *     exports, cache, transfer and write settings are applied when the
 *     mount starts, so a change there is reported as needing a remount,
 *     never half applied.
 * Adding or removing access rules altogether (no rules file at mount)
 * needs a remount too. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "fs/ops_i.h"

/* One answer line: control characters (a newline would end it) as '?'. */
static void put_line(FILE *out, const char *kind, const char *text)
{
	fputs(kind, out);
	fputc(' ', out);
	for (; *text; text++)
		fputc((unsigned char)*text < 0x20 ? '?' : *text, out);
	fputc('\n', out);
}

static void rules_diag(void *arg, const char *file, unsigned line,
                       bool is_error, const char *msg)
{
	FILE *out = arg;
	char text[4400];

	if (line)
		snprintf(text, sizeof(text), "rules %s:%u: %s%s", file, line,
		         is_error ? "" : "warning: ", msg);
	else
		snprintf(text, sizeof(text), "rules %s: %s", file, msg);
	if (is_error)
		dms_log(LOG_ERR, "%s", text);
	put_line(out, is_error ? "fail" : "note", text);
}

static void reload_rules(struct fs *fs, FILE *out)
{
	char text[4400];
	int rc;

	if (!fs->access) {
		put_line(out, "note", "no rules file in force; adding one "
		         "needs a remount");
		return;
	}
	rc = fs_access_reload(fs->access, fs->cfg->acl_file, rules_diag, out);
	snprintf(text, sizeof(text), rc ? "rules %s not reloaded (%s): the "
	         "previous rules stay in force" : "rules %s reloaded",
	         fs->cfg->acl_file, strerror(-rc));
	put_line(out, rc ? "fail" : "ok", text);
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* The differences that need a remount: exports and the rules file's
 * name (the rest of the config may be overridden by -o options, so its
 * running values say nothing about the file). */
static void config_changes(const struct fs_config *now,
                           const struct fs_config *file,
                           const struct fs_raw_opts *raw, FILE *out)
{
	char text[1024];
	size_t i, k;

	for (i = 0; i < file->nexports; i++) {
		const struct fs_export_conf *e = &file->exports[i];

		for (k = 0; k < now->nexports &&
		     !same(now->exports[k].name, e->name); k++)
			;
		if (k == now->nexports)
			snprintf(text, sizeof(text), "config: export %s is new: "
			         "needs a remount (not applied)", e->name);
		else if (!same(now->exports[k].path, e->path) ||
		         !same(now->exports[k].source, e->source) ||
		         now->exports[k].per_user != e->per_user ||
		         now->exports[k].writable != e->writable)
			snprintf(text, sizeof(text), "config: export %s changed: "
			         "needs a remount (not applied)", e->name);
		else
			continue;
		put_line(out, "note", text);
	}
	for (k = 0; k < now->nexports; k++) {
		for (i = 0; i < file->nexports &&
		     !same(now->exports[k].name, file->exports[i].name); i++)
			;
		if (i < file->nexports)
			continue;
		snprintf(text, sizeof(text), "config: export %s is gone: needs "
		         "a remount (not applied)", now->exports[k].name);
		put_line(out, "note", text);
	}
	if (raw->acl && now->acl_file && raw->acl[0] == '/' &&
	    strcmp(raw->acl, now->acl_file)) {
		snprintf(text, sizeof(text), "config: [acl] rules names %s, the "
		         "mount reads %s: a new name needs a remount", raw->acl,
		         now->acl_file);
		put_line(out, "note", text);
	}
}

static void reload_config(struct fs *fs, FILE *out)
{
	const char *file = fs->cfg->config_file;
	struct fs_raw_opts raw;
	struct fs_config c;
	char text[4400];

	if (!file)
		return;
	memset(&raw, 0, sizeof(raw));
	memset(&c, 0, sizeof(c));
	/* Trust and parse as at start; the reason goes to the log. */
	if (fs_config_load(file, &raw, &c) != 0) {
		snprintf(text, sizeof(text), "config %s does not load (the "
		         "daemon's log says why); nothing changed", file);
		dms_log(LOG_ERR, "%s", text);
		put_line(out, "fail", text);
	} else {
		config_changes(fs->cfg, &c, &raw, out);
		snprintf(text, sizeof(text), "config %s checked: its exports, "
		         "cache, transfer and write settings apply at mount",
		         file);
		put_line(out, "ok", text);
	}
	fs_config_free(&c);
	fs_raw_opts_free(&raw);
}

void fs_reload(void *arg, FILE *out)
{
	struct fs *fs = arg;

	dms_log(LOG_NOTICE, "reload asked (dmsctl reload)");
	reload_config(fs, out);
	reload_rules(fs, out);
}
