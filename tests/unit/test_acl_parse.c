/* Unit tests for the acl/ rules parser and linter. */
#include "acl/acl_i.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <stdbool.h>

struct diags {
	unsigned n, errors, warnings;
	unsigned line[32];
	bool is_error[32];
	char msg[32][256];
};

static void collect(void *arg, const char *file, unsigned line, bool is_error,
                    const char *msg)
{
	struct diags *d = arg;

	CHECK_STR(file, "t.authdb");
	if (is_error)
		d->errors++;
	else
		d->warnings++;
	if (d->n < 32) {
		d->line[d->n] = line;
		d->is_error[d->n] = is_error;
		snprintf(d->msg[d->n], sizeof(d->msg[0]), "%s", msg);
	}
	d->n++;
}

static int lint(const char *text, struct diags *d, unsigned *n)
{
	memset(d, 0, sizeof(*d));
	return acl_lint_buf("t.authdb", text, strlen(text), collect, d, n);
}

static struct acl_rules *parse_ok(const char *text)
{
	struct acl_rules *r = NULL;
	struct diags d = { 0 };

	CHECK_OK(acl_rules_parse(&r, "t.authdb", text, strlen(text), collect,
	                         &d));
	CHECK(d.errors == 0);
	return r;
}

static void test_good_lines(void)
{
	const char *text =
	    "# comment\n"
	    "u * /archive/private -rl /archive rl   # everyone, not private\n"
	    "u = /home/@=/ a                  # own home\n"
	    "g rb1810001 /shared/RB1810001 rl\n"
	    "u alice /shared/RB1810001 a-d\n"
	    "\n"
	    "   \t  # indented comment\n";
	struct acl_rules *r = parse_ok(text);
	struct diags d;
	unsigned n = 0;

	CHECK_OK(lint(text, &d, &n));
	CHECK(n == 4);
	CHECK(d.n == 0);
	if (!r)
		return;
	CHECK(r->nlines == 4);
	CHECK(r->has_groups);
	CHECK(r->lines[0].type == ACL_T_ALL);
	CHECK(r->lines[0].lineno == 2);
	CHECK(r->lines[0].npaths == 2);
	CHECK_STR(r->lines[0].paths[0].path, "/archive/private");
	CHECK(r->lines[0].paths[0].pos == 0);
	CHECK(r->lines[0].paths[0].neg == (ACL_READ | ACL_LOOKUP));
	CHECK_STR(r->lines[0].paths[1].path, "/archive");
	CHECK(r->lines[0].paths[1].pos == (ACL_READ | ACL_LOOKUP));
	CHECK_STR(r->lines[0].text,
	          "u * /archive/private -rl /archive rl");
	CHECK(r->lines[1].type == ACL_T_SELF);
	CHECK_STR(r->lines[1].paths[0].path, "/home/@=");   /* '/' dropped */
	CHECK(r->lines[1].paths[0].subst);
	CHECK(r->lines[1].paths[0].pos == ACL_ALL);
	CHECK(r->lines[2].type == ACL_T_GROUP);
	CHECK_STR(r->lines[2].id, "rb1810001");
	CHECK(r->lines[3].type == ACL_T_USER);
	CHECK_STR(r->lines[3].id, "alice");
	CHECK(r->lines[3].paths[0].pos == ACL_ALL);
	CHECK(r->lines[3].paths[0].neg == ACL_DELETE);
	acl_rules_unref(r);
}

static void test_privs(void)
{
	static const struct { const char *p; unsigned pos, neg; } t[] = {
		{ "l", ACL_LOOKUP, 0 },
		{ "r", ACL_READ, 0 },
		{ "w", ACL_WRITE, 0 },
		{ "i", ACL_INSERT, 0 },
		{ "d", ACL_DELETE, 0 },
		{ "n", ACL_RENAME, 0 },
		{ "a", ACL_ALL, 0 },
		{ "lrwidn", ACL_ALL, 0 },
		{ "-rl", 0, ACL_READ | ACL_LOOKUP },
		{ "a-d", ACL_ALL, ACL_DELETE },
		{ "rl-wi", ACL_READ | ACL_LOOKUP, ACL_WRITE | ACL_INSERT },
		{ "-a", 0, ACL_ALL },
	};
	char line[64];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct acl_rules *r;

		snprintf(line, sizeof(line), "u * /x %s\n", t[i].p);
		r = parse_ok(line);
		if (!r)
			continue;
		CHECK(r->lines[0].paths[0].pos == t[i].pos);
		CHECK(r->lines[0].paths[0].neg == t[i].neg);
		acl_rules_unref(r);
	}
}

/* Each bad line alone: its error, at its line number (line 3). */
static void test_bad_lines(void)
{
	static const struct { const char *line, *want; } t[] = {
		{ "x * /a r", "unknown rule type 'x'" },
		{ "h host /a r", "unknown rule type 'h'" },
		{ "uu * /a r", "unknown rule type 'uu'" },
		{ "u", "missing ID" },
		{ "g", "missing ID" },
		{ "u alice", "missing path and privileges" },
		{ "u alice /a", "missing privileges for path '/a'" },
		{ "u alice /a r /b", "missing privileges for path '/b'" },
		{ "u alice /a rq", "bad privilege letter 'q'" },
		{ "u alice /a R", "bad privilege letter 'R'" },
		{ "u alice /a r-", "nothing after '-'" },
		{ "u alice /a -", "nothing after '-'" },
		{ "u alice /a r-w-d", "more than one '-'" },
		{ "u alice x r", "path 'x' is not absolute" },
		{ "u alice archive/x r", "path 'archive/x' is not absolute" },
		{ "u alice ./a r", "path './a' is not absolute" },
		{ "u * /a r -rl /archive/private", "expected a path, found "
		  "privileges '-rl'" },
		{ "u alice /a/../b r", "not normalized" },
		{ "u alice /a/./b r", "not normalized" },
		{ "u alice //a r", "not normalized" },
		{ "u alice /a//b r", "not normalized" },
		{ "u alice /.. r", "not normalized" },
		{ "u alice /a// r", "not normalized" },
		{ "g * /a r", "group rule needs a group name" },
		{ "g = /a r", "group rule needs a group name" },
		{ "u alice /home/@= r", "'@=' in path '/home/@=' is only "
		  "allowed in 'u =' rules" },
		{ "g grp /@=/x r", "only allowed in 'u =' rules" },
	};
	char text[256];
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct diags d;
		unsigned n = 99;

		snprintf(text, sizeof(text), "u * /ok r\n# c\n%s\nu * /ok2 l\n",
		         t[i].line);
		CHECK_ERR(lint(text, &d, &n), -EINVAL);
		CHECK(d.errors == 1);
		CHECK(d.line[0] == 3);
		CHECK(d.is_error[0]);
		if (!strstr(d.msg[0], t[i].want)) {
			fprintf(stderr, "line '%s': got '%s', want '%s'\n",
			        t[i].line, d.msg[0], t[i].want);
			check_failures++;
		}
		CHECK(n == 0);    /* nothing is installed */
	}
}

static void test_many_errors_reported(void)
{
	struct diags d;

	CHECK_ERR(lint("u a /x q\nu * /ok r\nz\ng * /a r\n", &d, NULL),
	          -EINVAL);
	CHECK(d.errors == 3);
	CHECK(d.line[0] == 1 && d.line[1] == 3 && d.line[2] == 4);
}

static void test_comments_continuation(void)
{
	struct acl_rules *r;

	/* '#' anywhere ends the line, even glued to a token. */
	r = parse_ok("u * /a r#comment\nu * /b l # x \\\nu * /c l\n");
	if (r) {
		CHECK(r->nlines == 3);   /* '\' inside a comment: no join */
		CHECK_STR(r->lines[0].paths[0].path, "/a");
		CHECK(r->lines[0].paths[0].pos == ACL_READ);
		acl_rules_unref(r);
	}
	/* Continued lines join; errors report the first line. */
	r = parse_ok("u * /a r \\\n    /b l \\\n\t/c w\nu * /d r\n");
	if (r) {
		CHECK(r->nlines == 2);
		CHECK(r->lines[0].npaths == 3);
		CHECK(r->lines[0].lineno == 1);
		CHECK_STR(r->lines[0].paths[2].path, "/c");
		CHECK(r->lines[1].lineno == 4);
		acl_rules_unref(r);
	}
	{
		struct diags d;

		CHECK_ERR(lint("u * /ok r\nu * /a \\\n  rq\n", &d, NULL),
		          -EINVAL);
		CHECK(d.errors == 1 && d.line[0] == 2);
	}
	/* Continuation at end of file, CRLF line ends, no final newline. */
	r = parse_ok("u * /a r\r\nu * /b l \\");
	if (r) {
		CHECK(r->nlines == 2);
		acl_rules_unref(r);
	}
	/* Trailing slash means the same path; root stays "/". */
	r = parse_ok("u * / l /x/ r\n");
	if (r) {
		CHECK_STR(r->lines[0].paths[0].path, "/");
		CHECK_STR(r->lines[0].paths[1].path, "/x");
		acl_rules_unref(r);
	}
}

static void test_warnings(void)
{
	struct diags d;
	unsigned n;

	/* Shadowed path: allowed, but warned about. */
	CHECK_OK(lint("u * /x rl /x/y -r\nu * /p r /q r /p r\n", &d, &n));
	CHECK(n == 2);
	CHECK(d.warnings == 2 && d.errors == 0);
	CHECK(d.line[0] == 1 && !d.is_error[0]);
	CHECK(strstr(d.msg[0], "'/x/y' never decides") != NULL);
	CHECK(d.line[1] == 2);
	/* A deeper path first is the right order: no warning. */
	CHECK_OK(lint("u * /x/y -r /x rl\n", &d, &n));
	CHECK(d.n == 0);
	/* "/" covers everything after it. */
	CHECK_OK(lint("u * / l /x r\n", &d, &n));
	CHECK(d.warnings == 1);
}

static void test_limits_and_bytes(void)
{
	struct diags d;
	char *big;
	size_t i, n;

	/* NUL byte in a line. */
	CHECK_ERR(acl_lint_buf("t.authdb", "u * /a r\nu * /b\0 r\n", 19,
	                       collect, (memset(&d, 0, sizeof(d)), &d), NULL),
	          -EINVAL);
	CHECK(d.errors == 1 && d.line[0] == 2);
	/* Unprintable bytes in a message are escaped. */
	CHECK_ERR(lint("u * rel\x1b[2J r\n", &d, NULL), -EINVAL);
	CHECK(strchr(d.msg[0], '\x1b') == NULL);
	CHECK(strstr(d.msg[0], "\\x1b") != NULL);
	/* Too many pairs. */
	n = 16 + (ACL_MAX_PAIRS + 1) * 6;
	big = malloc(n);
	if (!big)
		return;
	i = (size_t)snprintf(big, n, "u *");
	for (unsigned k = 0; k <= ACL_MAX_PAIRS; k++)
		i += (size_t)snprintf(big + i, n - i, " /%c r", 'a' + k % 26);
	CHECK_ERR(lint(big, &d, NULL), -EINVAL);
	CHECK(strstr(d.msg[0], "more than") != NULL);
	free(big);
	/* Overlong logical line. */
	n = ACL_MAX_LINE_BYTES + 100;
	big = malloc(n + 1);
	if (!big)
		return;
	memset(big, 'x', n);
	memcpy(big, "u * /", 5);
	big[n] = '\0';
	CHECK_ERR(lint(big, &d, NULL), -EINVAL);
	CHECK(strstr(d.msg[0], "longer than") != NULL);
	free(big);
}

static void test_path_helpers(void)
{
	CHECK(acl_path_ok("/", 1));
	CHECK(acl_path_ok("/a", 2));
	CHECK(acl_path_ok("/a/b.c/..d/...", 14));
	CHECK(!acl_path_ok("", 0));
	CHECK(!acl_path_ok("a", 1));
	CHECK(!acl_path_ok("/a/", 3));
	CHECK(!acl_path_ok("//", 2));
	CHECK(!acl_path_ok("/a/../b", 7));
	CHECK(!acl_path_ok("/.", 2));
	CHECK(!acl_path_ok("/a/.", 4));
	CHECK(acl_path_match("/", 1, "/anything", 9));
	CHECK(acl_path_match("/archive", 8, "/archive", 8));
	CHECK(acl_path_match("/archive", 8, "/archive/x", 10));
	CHECK(!acl_path_match("/archive", 8, "/archives", 9));
	CHECK(!acl_path_match("/archive", 8, "/arch", 5));
}

int main(void)
{
	RUN(test_good_lines);
	RUN(test_privs);
	RUN(test_bad_lines);
	RUN(test_many_errors_reported);
	RUN(test_comments_continuation);
	RUN(test_warnings);
	RUN(test_limits_and_bytes);
	RUN(test_path_helpers);
	CHECK_EXIT();
}
