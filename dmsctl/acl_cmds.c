/* dmsctl acl lint / acl check: the rules engine (acl/acl.h) run as the
 * daemon runs it, on a file or for a user. */
#include "dmsctl/dmsctl.h"
#include "acl/acl.h"
#include "common/log.h"

#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_GROUPS 65536
#define MAX_NAMED_GROUPS 256   /* -g given on one command line */

static void print_diag(void *arg, const char *file, unsigned line,
                       bool is_error, const char *msg)
{
	int *warnings = arg;

	if (!is_error)
		(*warnings)++;
	if (line)
		fprintf(stderr, "%s:%u: %s%s\n", file, line,
		        is_error ? "" : "warning: ", msg);
	else
		fprintf(stderr, "%s: %s%s\n", file, is_error ? "" : "warning: ",
		        msg);
}

int ctl_cmd_lint(int argc, char **argv)
{
	unsigned n = 0;
	int warnings = 0, rc;

	if (argc != 2) {
		ctl_usage(stderr);
		rc = 2;
		goto out;
	}
	rc = acl_lint(argv[1], print_diag, &warnings, &n);
	if (rc) {
		rc = 1;
		goto out;
	}
	printf("ok: %u rules%s\n", n, warnings ? " (with warnings)" : "");
out:
	return rc;
}

static const char *right_letter(unsigned right)
{
	static const char *const names[] = { "l", "r", "w", "i", "d", "n" };
	unsigned i;

	for (i = 0; i < 6; i++)
		if (right == 1u << i)
			return names[i];
	return "?";
}

struct seen {
	unsigned rights;   /* rights that got at least one line */
	FILE *out;         /* details, printed after the verdict */
};

static void print_why(void *arg, const struct acl_why *w)
{
	struct seen *s = arg;

	s->rights |= w->right;
	switch (w->how) {
	case ACL_GRANTED:
	case ACL_DENIED:
		fprintf(s->out, "  %s: %s by %s:%u: %s\n",
		        right_letter(w->right),
		        w->how == ACL_GRANTED ? "granted" : "denied", w->file,
		        w->line, w->text);
		break;
	case ACL_IMPLICIT:
		fprintf(s->out, "  %s: implicit (a path below is "
		        "accessible)\n", right_letter(w->right));
		break;
	}
}

/* Resolves USER like a login would: passwd entry, then getgrouplist. */
static int lookup_user(const char *name, struct acl_caller *c, gid_t **groups)
{
	struct passwd pw, *res = NULL;
	char *buf = NULL;
	size_t sz = 16384;
	gid_t *g = NULL;
	int n = 64, e, rc = 0;

	*groups = NULL;
	buf = malloc(sz);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	e = getpwnam_r(name, &pw, buf, sz, &res);
	if (!res) {
		rc = e ? -e : -ENOENT;
		goto out;
	}
	for (;;) {
		gid_t *ng = reallocarray(g, (size_t)n, sizeof(*g));
		int want = n;

		if (!ng) {
			rc = -ENOMEM;
			goto out;
		}
		g = ng;
		if (getgrouplist(name, pw.pw_gid, g, &want) >= 0) {
			n = want;
			break;
		}
		if (want <= n || want > MAX_GROUPS) {
			rc = -E2BIG;
			goto out;
		}
		n = want;
	}
	c->uid = pw.pw_uid;
	c->gid = pw.pw_gid;
	c->groups = g;
	c->ngroups = n;
	*groups = g;
	g = NULL;
out:
	free(g);
	free(buf);
	return rc;
}

int ctl_cmd_check(int argc, char **argv)
{
	const char *file = CTL_DEFAULT_RULES;
	struct acl_caller c = { 0 };
	const char *named[MAX_NAMED_GROUPS];
	struct acl_named who = { .groups = named };
	bool by_name = false;
	char letters[ACL_RIGHTS_STRLEN];
	struct seen s = { 0 };
	struct acl *a = NULL;
	gid_t *groups = NULL;
	char *details = NULL;
	size_t dlen = 0;
	unsigned rights, b;
	int opt, rc;

	optind = 1;
	while ((opt = getopt(argc, argv, "+r:g:")) != -1) {
		if (opt == 'r') {
			file = optarg;
		} else if (opt == 'g' && who.ngroups < MAX_NAMED_GROUPS) {
			named[who.ngroups++] = optarg;
			by_name = true;
		} else {
			ctl_usage(stderr);
			rc = 2;
			goto out;
		}
	}
	if (argc - optind != 2) {
		ctl_usage(stderr);
		rc = 2;
		goto out;
	}
	who.user = argv[optind];
	/* -g: USER and its groups as named, no account needed (a site's
	 * user not yet created here, or one from another machine). */
	rc = by_name ? 0 : lookup_user(argv[optind], &c, &groups);
	if (rc) {
		fprintf(stderr, "dmsctl: user %s: %s\n", argv[optind],
		        rc == -ENOENT ? "no such user here (give its groups "
		        "with -g GROUP... to check it by name)" : strerror(-rc));
		rc = 1;
		goto out;
	}
	/* The verdict is the output: no "rules loaded" line on success. */
	dms_log_set_level(LOG_NOTICE);
	rc = acl_open(&a, file);
	if (rc) {
		rc = 1;
		goto out;
	}
	s.out = open_memstream(&details, &dlen);
	if (!s.out) {
		fprintf(stderr, "dmsctl: %s\n", strerror(errno));
		rc = 1;
		goto out;
	}
	rc = by_name
		? acl_explain_named(a, &who, argv[optind + 1], print_why, &s,
		                    &rights)
		: acl_explain(a, &c, argv[optind + 1], print_why, &s, &rights);
	if (rc) {
		fprintf(stderr, "dmsctl: %s: %s\n", argv[optind + 1],
		        rc == -EINVAL ? "not a normalized absolute path"
		                      : strerror(-rc));
		rc = 1;
		goto out;
	}
	for (b = 1; b <= ACL_RENAME; b <<= 1)
		if (!(s.rights & b))
			fprintf(s.out, "  %s: not granted (no rule)\n",
			        right_letter(b));
	fflush(s.out);
	/* Verdict first (what scripts read), then the indented details. */
	acl_rights_str(rights, letters);
	printf("%s\n%s", letters, details);
out:
	if (s.out)
		fclose(s.out);
	free(details);
	acl_close(a);
	free(groups);
	return rc;
}
