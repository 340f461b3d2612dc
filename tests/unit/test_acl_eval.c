/* Unit tests for acl/ evaluation, identity, reload, explain, denials. */
#include "acl/acl_i.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

/* ---- a fake NSS ---- */

static const struct { uid_t id; const char *name; int err; } users[] = {
	{ 1000, "alice", 0 }, { 1001, "bob", 0 }, { 1002, "carol", 0 },
	{ 1003, "..", 0 }, { 1004, "a/b", 0 }, { 1005, "", 0 },
	{ 1006, "@=", 0 }, { 1007, NULL, -EIO }, { 1008, ".", 0 },
};
static const struct { gid_t id; const char *name; int err; } groups[] = {
	{ 100, "users", 0 }, { 2000, "rb1810001", 0 }, { 2001, "banned", 0 },
	{ 2002, NULL, -EIO },
};
static atomic_uint fake_calls;

static int fake_user(void *arg, uid_t uid, char *buf, size_t len)
{
	size_t i;

	atomic_fetch_add(&fake_calls, 1);
	for (i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		if (users[i].id != uid)
			continue;
		if (users[i].err)
			return users[i].err;
		snprintf(buf, len, "%s", users[i].name);
		return 0;
	}
	return -ENOENT;
}

static int fake_group(void *arg, gid_t gid, char *buf, size_t len)
{
	size_t i;

	atomic_fetch_add(&fake_calls, 1);
	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		if (groups[i].id != gid)
			continue;
		if (groups[i].err)
			return groups[i].err;
		snprintf(buf, len, "%s", groups[i].name);
		return 0;
	}
	return -ENOENT;
}

static const struct acl_resolver fake = { fake_user, fake_group, NULL };

static void quiet(void *arg, const char *file, unsigned line, bool is_error,
                  const char *msg)
{
	if (is_error)
		fprintf(stderr, "%s:%u: %s\n", file, line, msg);
}

static struct acl *open_rules(const char *text)
{
	struct acl *a = NULL;

	CHECK_OK(acl_open_buf(&a, "t.authdb", text, strlen(text), quiet,
	                      NULL));
	if (a)
		acl_set_resolver(a, &fake);
	return a;
}

static const gid_t g_users[] = { 100 };
static const gid_t g_rb[] = { 100, 2000 };
static const gid_t g_banned[] = { 100, 2001 };
static const gid_t g_broken[] = { 100, 2002 };

#define CALLER(u, g) ((struct acl_caller){ .uid = (u), .gid = 100, \
	.groups = (g), .ngroups = (int)(sizeof(g) / sizeof((g)[0])) })

static struct acl_caller alice, bob, carol;

static void init_callers(void)
{
	alice = CALLER(1000, g_users);
	bob = CALLER(1001, g_rb);
	carol = CALLER(1002, g_users);
}

struct row {
	const struct acl_caller *who;
	const char *path;
	unsigned want;
};

#define LR (ACL_LOOKUP | ACL_READ)

static void check_table(struct acl *a, const struct row *t, size_t n,
                        const char *what)
{
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned got = acl_rights(a, t[i].who, t[i].path);

		if (got != t[i].want) {
			char g[ACL_RIGHTS_STRLEN], w[ACL_RIGHTS_STRLEN];

			acl_rights_str(got, g);
			acl_rights_str(t[i].want, w);
			fprintf(stderr, "%s: uid %u %s: got %s, want %s\n",
			        what, (unsigned)t[i].who->uid, t[i].path, g, w);
			check_failures++;
		}
		CHECK(acl_may_see(a, t[i].who, t[i].path) == (t[i].want != 0));
	}
}

#define TABLE(a, t) check_table(a, t, sizeof(t) / sizeof(t[0]), #t)

static const char sample[] =
	"u * -rl /archive/private /archive rl   # everyone reads the archive\n"
	"u = /home/@=/ a                        # each user owns /home/NAME\n"
	"g rb1810001 /shared/RB1810001 rl       # group members read\n"
	"u alice /shared/RB1810001 a-d          # alice: all but delete\n";

static void test_sample(void)
{
	const unsigned AD = ACL_ALL & ~ACL_DELETE;
	const struct row t[] = {
		{ &alice, "/", LR },                /* implicit */
		{ &alice, "/archive", LR },
		{ &alice, "/archive/2019/run1.h5", LR },
		{ &alice, "/archive/private", 0 },
		{ &alice, "/archive/private/x", 0 },
		{ &alice, "/archive/privatex", LR },  /* segment boundary */
		{ &alice, "/archives", 0 },
		{ &alice, "/home", LR },              /* implicit */
		{ &alice, "/home/alice", ACL_ALL },
		{ &alice, "/home/alice/deep/file", ACL_ALL },
		{ &alice, "/home/bob", 0 },
		{ &alice, "/home/alicex", 0 },
		{ &alice, "/shared", LR },            /* implicit */
		{ &alice, "/shared/RB1810001", AD },
		{ &alice, "/shared/RB1810001/raw/f", AD },
		{ &alice, "/shared/RB1810002", 0 },
		{ &alice, "/other", 0 },
		{ &bob, "/home/bob", ACL_ALL },
		{ &bob, "/home/alice", 0 },
		{ &bob, "/shared/RB1810001/x", LR },  /* via group */
		{ &bob, "/shared", LR },
		{ &carol, "/shared", 0 },             /* nothing below */
		{ &carol, "/shared/RB1810001", 0 },
		{ &carol, "/archive/x", LR },
		{ &carol, "/home/carol", ACL_ALL },
	};
	struct acl *a = open_rules(sample);

	if (!a)
		return;
	TABLE(a, t);
	acl_close(a);
}

static void test_deny_union_first_path(void)
{
	const char *rules =
	    "u * /data a\n"
	    "g banned /data/secret -a\n"          /* deny beats allow */
	    "u * /ro -w\n"                        /* deny at a broader path */
	    "u alice /ro/alice a\n"
	    "u * /x/y -r /x rl\n"                 /* first path wins: */
	    "u * /p rl /p/q -l\n"                 /* /p/q never decides */
	    "u * /u l\n"                          /* union across lines */
	    "u alice /u r\n"
	    "g rb1810001 /u w\n";
	const gid_t *none = NULL;
	struct acl_caller mallory = { .uid = 1002, .gid = 100,
	                              .groups = g_banned, .ngroups = 2 };
	struct acl_caller nobody = { .uid = 4242, .gid = 4242,
	                             .groups = none, .ngroups = 0 };
	const struct row t[] = {
		{ &alice, "/data/secret/f", ACL_ALL },
		{ &mallory, "/data/secret/f", 0 },
		{ &mallory, "/data/secret", 0 },
		{ &mallory, "/data/secretive", ACL_ALL },
		{ &mallory, "/data", ACL_ALL },
		{ &alice, "/ro/alice/f", ACL_ALL & ~ACL_WRITE },
		{ &alice, "/ro", LR },                /* implicit */
		{ &bob, "/ro", 0 },
		{ &alice, "/x/y", 0 },                /* "-r" decided: no grant */
		{ &alice, "/x/y/z", 0 },
		{ &alice, "/x/z", LR },
		{ &alice, "/p/q", LR },               /* /p decided first */
		{ &alice, "/u", LR },
		{ &bob, "/u", ACL_LOOKUP | ACL_WRITE },
		{ &carol, "/u/v", ACL_LOOKUP },
		{ &nobody, "/data/x", ACL_ALL },      /* u * covers no-name */
		{ &nobody, "/u", ACL_LOOKUP },
	};
	struct acl *a = open_rules(rules);

	if (!a)
		return;
	TABLE(a, t);
	acl_close(a);
}

static void test_implicit_and_may_see(void)
{
	const char *rules =
	    "u = /home/@=/ a\n"
	    "u carol /deep/a/b/c r\n"
	    "u carol /deep/a/b/c/hidden -r\n"
	    "u * /pub -a\n"                       /* denial: nothing below */
	    "u alice /pub/alice l\n"
	    "u * /drop i\n"                       /* insert-only drop box */
	    "u * /drop/x -l\n"
	    "u bob /drop/bob rl\n";
	const struct row t[] = {
		{ &alice, "/home", LR },
		{ &alice, "/home/alice", ACL_ALL },
		{ &alice, "/home/bob", 0 },          /* hidden in listings */
		{ &bob, "/home/bob", ACL_ALL },
		{ &bob, "/home/alice", 0 },
		{ &carol, "/deep", LR },
		{ &carol, "/deep/a", LR },
		{ &carol, "/deep/a/b", LR },
		{ &carol, "/deep/a/b/c", ACL_READ },
		{ &carol, "/deep/a/b/c/hidden", 0 },
		{ &carol, "/deep/a/b/x", 0 },
		{ &carol, "/deep/b", 0 },
		{ &alice, "/deep", 0 },
		{ &alice, "/pub", 0 },                /* -a covers the subtree, */
		{ &alice, "/pub/alice", 0 },          /* so nothing is live */
		{ &bob, "/pub", 0 },
		{ &alice, "/", LR },
		{ &alice, "/drop", ACL_INSERT },      /* not listable */
		{ &alice, "/drop/x", ACL_INSERT },
		{ &bob, "/drop", ACL_INSERT | LR },   /* leads to /drop/bob */
		{ &bob, "/drop/bob", ACL_INSERT | LR },
	};
	struct acl *a = open_rules(rules);

	if (!a)
		return;
	TABLE(a, t);
	acl_close(a);
}

static void test_self_and_odd_names(void)
{
	const char *rules =
	    "u = /home/@=/ a /x.@= r /p-@= a\n"
	    "u * /lit l\n";
	struct acl_caller dotdot = CALLER(1003, g_users);
	struct acl_caller slash = CALLER(1004, g_users);
	struct acl_caller empty = CALLER(1005, g_users);
	struct acl_caller at = CALLER(1006, g_users);
	struct acl_caller dot = CALLER(1008, g_users);
	const struct row t[] = {
		{ &dotdot, "/home", 0 },
		{ &dotdot, "/", LR },                 /* from /lit only */
		{ &dotdot, "/x...", 0 },
		{ &slash, "/home/a/b", 0 },
		{ &slash, "/home/a", 0 },
		{ &slash, "/home", 0 },
		{ &empty, "/home", 0 },
		{ &empty, "/home/x", 0 },
		{ &dot, "/home", 0 },
		{ &dot, "/x..", 0 },
		{ &at, "/home/@=", ACL_ALL },        /* a real name "@=" */
		{ &at, "/home/@=@=", 0 },            /* no re-substitution */
		{ &alice, "/home/@=", 0 },           /* raw bytes in targets */
		{ &alice, "/p-alice", ACL_ALL },
		{ &alice, "/x.alice", ACL_READ },
		{ &alice, "/lit/@=", ACL_LOOKUP },
	};
	struct acl *a = open_rules(rules);

	if (!a)
		return;
	TABLE(a, t);
	acl_close(a);
}

static void test_bad_paths(void)
{
	static const char *const bad[] = {
		"", "archive", "archive/x", "/archive/../home/bob",
		"/archive/..", "/archive/.", "/./archive", "//archive",
		"/archive//x", "/archive/", "/home/alice/../bob",
	};
	struct acl *a = open_rules("u * / a\n");
	size_t i;

	if (!a)
		return;
	CHECK(acl_rights(a, &alice, "/archive") == ACL_ALL);
	CHECK(acl_rights(a, &alice, "/") == ACL_ALL);
	CHECK(acl_rights(a, &alice, "/...") == ACL_ALL);   /* a real name */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		unsigned rights = 0;

		if (acl_rights(a, &alice, bad[i])) {
			fprintf(stderr, "bad path '%s' got rights\n", bad[i]);
			check_failures++;
		}
		CHECK(!acl_may_see(a, &alice, bad[i]));
		CHECK_ERR(acl_explain(a, &alice, bad[i], NULL, NULL, &rights),
		          -EINVAL);
	}
	acl_close(a);
}

static void test_groups_and_nss_errors(void)
{
	const char *rules = "u * /a rl\ng banned /a -r\ng rb1810001 /g r\n";
	struct acl_caller broken_user = CALLER(1007, g_users);
	struct acl_caller broken_group = CALLER(1000, g_broken);
	struct acl_caller primary = { .uid = 1002, .gid = 2000,
	                              .groups = NULL, .ngroups = 0 };
	struct acl_caller bad_n = { .uid = 1000, .gid = 100, .groups = NULL,
	                            .ngroups = 3 };
	struct acl_caller banned = CALLER(1002, g_banned);
	const struct row t[] = {
		{ &alice, "/a", LR },
		{ &banned, "/a", ACL_LOOKUP },
		{ &bob, "/g", ACL_READ },
		{ &primary, "/g", ACL_READ },        /* primary gid counts */
		{ &alice, "/g", 0 },
		/* A failed lookup could hide a denial: fail closed. */
		{ &broken_user, "/a", 0 },
		{ &broken_group, "/a", 0 },
		{ &bad_n, "/a", 0 },
	};
	struct acl *a = open_rules(rules);
	struct acl_stats st;
	unsigned rights;

	if (!a)
		return;
	TABLE(a, t);
	acl_get_stats(a, &st);
	CHECK(st.nss_errors >= 2);
	CHECK_ERR(acl_explain(a, &broken_user, "/a", NULL, NULL, &rights),
	          -EIO);
	acl_close(a);
	/* Without 'g' lines, group names are not even looked up, so a
	 * broken group does not matter. */
	a = open_rules("u * /a rl\n");
	if (!a)
		return;
	CHECK(acl_rights(a, &broken_group, "/a") == LR);
	acl_close(a);
}

static void test_cache(void)
{
	struct acl *a = open_rules(sample);
	struct acl_stats st;
	unsigned before;
	int i;

	if (!a)
		return;
	CHECK(acl_rights(a, &alice, "/archive") == LR);
	before = atomic_load(&fake_calls);
	for (i = 0; i < 1000; i++)
		CHECK(acl_rights(a, &alice, "/home/alice/x") == ACL_ALL);
	CHECK(atomic_load(&fake_calls) == before);   /* no NSS per check */
	acl_get_stats(a, &st);
	CHECK(st.callers_compiled == 1);
	/* Many distinct callers: bounded cache still answers right. */
	for (i = 0; i < 2000; i++) {
		struct acl_caller c = { .uid = (uid_t)(5000 + i), .gid = 100,
		                        .groups = g_users, .ngroups = 1 };

		CHECK(acl_rights(a, &c, "/archive/x") == LR);
	}
	CHECK(acl_rights(a, &alice, "/home/alice") == ACL_ALL);
	acl_close(a);
}

struct why_log {
	char text[1024];
	size_t len;
};

static void why_fn(void *arg, const struct acl_why *w)
{
	struct why_log *l = arg;
	char r[ACL_RIGHTS_STRLEN];

	acl_rights_str(w->right, r);
	l->len += (size_t)snprintf(l->text + l->len, sizeof(l->text) - l->len,
	                           "%s%c%u;", r, "+-i"[w->how], w->line);
}

static void test_explain(void)
{
	struct acl *a = open_rules(sample);
	struct why_log l = { .len = 0 };
	unsigned rights = 0;

	if (!a)
		return;
	CHECK_OK(acl_explain(a, &alice, "/shared/RB1810001/x", why_fn, &l,
	                     &rights));
	CHECK(rights == (ACL_ALL & ~ACL_DELETE));
	CHECK_STR(l.text, "l+4;r+4;w+4;i+4;d-4;n+4;");
	memset(&l, 0, sizeof(l));
	CHECK_OK(acl_explain(a, &bob, "/shared/RB1810001/x", why_fn, &l,
	                     &rights));
	CHECK(rights == LR);
	CHECK_STR(l.text, "l+3;r+3;");
	memset(&l, 0, sizeof(l));
	CHECK_OK(acl_explain(a, &alice, "/archive/private", why_fn, &l,
	                     &rights));
	CHECK(rights == 0);
	CHECK_STR(l.text, "l-1;r-1;");
	memset(&l, 0, sizeof(l));
	CHECK_OK(acl_explain(a, &alice, "/home", why_fn, &l, &rights));
	CHECK(rights == LR);
	CHECK_STR(l.text, "li0;ri0;");
	acl_close(a);
}

/* ---- reload ---- */

static int write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	int rc = 0;

	if (!f)
		return -errno;
	if (fputs(text, f) < 0)
		rc = -EIO;
	if (fclose(f))
		rc = -errno;
	return rc;
}

static void test_reload(void)
{
	const char *tmp = getenv("TMPDIR");
	char path[4096];
	struct acl *a = NULL;
	struct acl_stats st;

	snprintf(path, sizeof(path), "%s/acl-test-%d.authdb",
	         tmp ? tmp : "/tmp", (int)getpid());
	CHECK_OK(write_file(path, "u * /one rl\n"));
	CHECK_OK(acl_open(&a, path));
	if (!a)
		goto out;
	acl_set_resolver(a, &fake);
	CHECK(acl_rights(a, &alice, "/one") == LR);
	CHECK(acl_maybe_reload(a) == 0);       /* unchanged */

	/* A broken file keeps the old rules. */
	CHECK_OK(write_file(path, "u * /two rl\nu * /three rq\n"));
	CHECK_ERR(acl_reload(a), -EINVAL);
	CHECK(acl_rights(a, &alice, "/one") == LR);
	CHECK(acl_rights(a, &alice, "/two") == 0);
	CHECK(acl_maybe_reload(a) == 0);       /* same broken file: quiet */

	/* A fixed file goes live; its mtime may equal the broken one's, so
	 * the size differs here on purpose. */
	CHECK_OK(write_file(path, "u * /two rl\n"));
	CHECK(acl_maybe_reload(a) == 1);
	CHECK(acl_rights(a, &alice, "/one") == 0);
	CHECK(acl_rights(a, &alice, "/two") == LR);

	/* Broken through maybe_reload: reported once, old rules stay. */
	CHECK_OK(write_file(path, "bogus\n"));
	CHECK_ERR(acl_maybe_reload(a), -EINVAL);
	CHECK(acl_maybe_reload(a) == 0);
	CHECK(acl_rights(a, &alice, "/two") == LR);

	/* File gone: keep rules. */
	CHECK(unlink(path) == 0);
	CHECK_ERR(acl_maybe_reload(a), -ENOENT);
	CHECK(acl_maybe_reload(a) == 0);
	CHECK_ERR(acl_reload(a), -ENOENT);
	CHECK(acl_rights(a, &alice, "/two") == LR);

	CHECK_OK(write_file(path, "u * /three r\n"));
	CHECK(acl_maybe_reload(a) == 1);
	CHECK(acl_rights(a, &alice, "/three") == ACL_READ);
	acl_get_stats(a, &st);
	CHECK(st.rules == 1);
	CHECK(st.reloads == 2);
	CHECK(st.reload_failures >= 3);
	CHECK(st.generation == 3);
	acl_close(a);
	a = NULL;

	/* acl_open on a broken or missing file fails. */
	CHECK_OK(write_file(path, "u * /x\n"));
	CHECK_ERR(acl_open(&a, path), -EINVAL);
	CHECK(a == NULL);
	unlink(path);
	CHECK_ERR(acl_open(&a, path), -ENOENT);
out:
	unlink(path);
	acl_close(a);
}

struct racer {
	struct acl *a;
	atomic_bool stop;
	atomic_ulong checks, bad;
};

static void *race_checks(void *arg)
{
	struct racer *r = arg;
	struct acl_caller c = CALLER(1000, g_rb);

	while (!atomic_load(&r->stop)) {
		unsigned x = acl_rights(r->a, &c, "/v/x");

		/* Either file's answer, never a mix, never more. */
		if (x != ACL_READ && x != ACL_LOOKUP)
			atomic_fetch_add(&r->bad, 1);
		atomic_fetch_add(&r->checks, 1);
	}
	return NULL;
}

/* Reloads while other threads check: every check sees one whole rule set
 * (run under -fsanitize=thread too). */
static void test_reload_race(void)
{
	const char *tmp = getenv("TMPDIR");
	struct racer r = { .a = NULL };
	pthread_t th[2];
	char path[4096];
	int i, k;

	snprintf(path, sizeof(path), "%s/acl-race-%d.authdb",
	         tmp ? tmp : "/tmp", (int)getpid());
	CHECK_OK(write_file(path, "u * /v r\n"));
	CHECK_OK(acl_open(&r.a, path));
	if (!r.a)
		goto out;
	acl_set_resolver(r.a, &fake);
	atomic_init(&r.stop, false);
	for (k = 0; k < 2; k++)
		CHECK(pthread_create(&th[k], NULL, race_checks, &r) == 0);
	for (i = 0; i < 200; i++) {
		CHECK_OK(write_file(path, i % 2 ? "u * /v r\n"
		                                : "u * /v l\ng rb1810001 /v -r\n"));
		CHECK_OK(acl_reload(r.a));
	}
	atomic_store(&r.stop, true);
	for (k = 0; k < 2; k++)
		pthread_join(th[k], NULL);
	CHECK(atomic_load(&r.bad) == 0);
	printf("  %lu checks during 200 reloads\n", atomic_load(&r.checks));
	acl_close(r.a);
out:
	unlink(path);
}

static void test_denied_and_strings(void)
{
	struct acl *a = open_rules(sample);
	struct acl_stats st;
	char s[ACL_RIGHTS_STRLEN];
	int i;

	if (!a)
		return;
	(void)acl_rights(a, &alice, "/x");    /* caches alice's name */
	for (i = 0; i < 100; i++)
		acl_denied(a, &alice, "/home/bob/\n\x1b[31mfake log line",
		           ACL_READ);
	acl_get_stats(a, &st);
	CHECK(st.denials == 100);
	CHECK(st.denials_logged >= ACL_DENIAL_LOG_PER_SEC);
	CHECK(st.denials_logged <= 2 * ACL_DENIAL_LOG_PER_SEC);
	acl_rights_str(0, s);
	CHECK_STR(s, "none");
	acl_rights_str(ACL_ALL, s);
	CHECK_STR(s, "lrwidn");
	acl_rights_str(ACL_READ | ACL_LOOKUP | ACL_RENAME, s);
	CHECK_STR(s, "lrn");
	acl_close(a);
}

/* ---- fast path vs. the reference evaluator on random rule sets ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static void rnd_path(char *buf, size_t cap, bool self)
{
	static const char *const seg[] = { "a", "b", "ab", "c", "@=", "x" };
	unsigned depth = rnd(4), i;
	size_t o = 0;

	if (!depth) {
		snprintf(buf, cap, "/");
		return;
	}
	for (i = 0; i < depth; i++) {
		const char *s = seg[rnd(self ? 6 : 4)];

		o += (size_t)snprintf(buf + o, cap - o, "/%s", s);
	}
}

static void test_random_vs_reference(void)
{
	static const char *const privs[] = { "l", "r", "rl", "a", "-r", "-a",
	                                     "a-d", "w", "-l", "rl-w" };
	const struct acl_caller *who[] = { &alice, &bob, &carol };
	unsigned round, mismatches = 0;

	for (round = 0; round < 300; round++) {
		char text[4096], p[64];
		size_t o = 0;
		unsigned nl = 1 + rnd(6), i, j;
		struct acl_rules *r = NULL;
		struct acl *a;

		for (i = 0; i < nl; i++) {
			static const char *const ids[] = { "u *", "u =",
				"u alice", "g rb1810001", "g users" };
			unsigned k = rnd(5), np = 1 + rnd(3);

			o += (size_t)snprintf(text + o, sizeof(text) - o, "%s",
			                      ids[k]);
			for (j = 0; j < np; j++) {
				rnd_path(p, sizeof(p), k == 1);
				o += (size_t)snprintf(text + o,
				                      sizeof(text) - o,
				                      " %s %s", p,
				                      privs[rnd(10)]);
			}
			o += (size_t)snprintf(text + o, sizeof(text) - o,
			                      "\n");
		}
		if (acl_rules_parse(&r, "rand", text, o, quiet, NULL)) {
			check_failures++;
			continue;
		}
		a = open_rules(text);
		for (i = 0; a && i < 200; i++) {
			const struct acl_caller *c = who[rnd(3)];
			struct acl_ident id;
			unsigned ref, fast, below = 0;
			size_t plen;

			rnd_path(p, sizeof(p), true);
			if (i % 3 == 0 && c == &alice)
				snprintf(p, sizeof(p), "/alice");
			if (acl_ident_resolve(&fake, c, true, &id))
				break;
			ref = acl_eval_ref(r, &id, p, NULL, NULL);
			/* Brute force implicit traversal: some applying
			 * rule path strictly below p that gives more. */
			plen = strlen(p);
			for (j = 0; j < r->nlines; j++) {
				const struct acl_line *l = &r->lines[j];
				unsigned k;

				for (k = 0; k < l->npaths; k++) {
					char q[256];
					const char *s = l->paths[k].path;
					size_t qo = 0;

					if (!acl_line_applies(l, &id))
						continue;
					for (; *s && qo + 8 < sizeof(q); s++) {
						if (s[0] == '@' && s[1] == '=' &&
						    l->type == ACL_T_SELF) {
							qo += (size_t)snprintf(
							    q + qo,
							    sizeof(q) - qo,
							    "%s", id.user);
							s++;
						} else {
							q[qo++] = *s;
						}
					}
					q[qo] = '\0';
					if (strlen(q) > plen &&
					    acl_path_match(p, plen, q,
					                   strlen(q)) &&
					    (acl_eval_ref(r, &id, q, NULL,
					                  NULL) & ~ref))
						below = LR;
				}
			}
			fast = acl_rights(a, c, p);
			if (fast != (ref | below)) {
				if (mismatches++ < 5)
					fprintf(stderr, "mismatch uid %u %s: "
					        "fast %x ref %x below %x\n"
					        "rules:\n%s", (unsigned)c->uid,
					        p, fast, ref, below, text);
				check_failures++;
			}
			acl_ident_free(&id);
		}
		acl_close(a);
		acl_rules_unref(r);
	}
}

static void test_uniform(void)
{
	struct acl *a = open_rules(
		"u * -rl /archive/private /archive rl\n"
		"u = /home/@=/ a\n"
		"g rb1810001 /shared/RB1810001 rl\n"
		"u alice /archive/special r\n");

	if (!a)
		return;
	/* Only 'u *' rules here: the same for everybody. */
	CHECK(acl_uniform(a, "/archive/run1"));
	CHECK(acl_uniform(a, "/archive/run1/x.h5"));
	CHECK(acl_uniform(a, "/archive/private"));
	CHECK(acl_uniform(a, "/archivex"));
	CHECK(acl_uniform(a, "/other"));
	/* A caller-dependent rule at, above or below the path. */
	CHECK(!acl_uniform(a, "/archive/special"));
	CHECK(!acl_uniform(a, "/archive/special/y"));
	CHECK(!acl_uniform(a, "/archive"));        /* lists "special" or not */
	CHECK(!acl_uniform(a, "/"));
	CHECK(!acl_uniform(a, "/home"));
	CHECK(!acl_uniform(a, "/home/alice"));
	CHECK(!acl_uniform(a, "/home/alice/f"));
	CHECK(!acl_uniform(a, "/shared"));
	CHECK(!acl_uniform(a, "/shared/RB1810001/z"));
	CHECK(acl_uniform(a, "/shared/other"));
	/* Bad paths are never uniform. */
	CHECK(!acl_uniform(a, "/archive/../home"));
	CHECK(!acl_uniform(a, "archive"));
	acl_close(a);
}

int main(void)
{
	init_callers();
	RUN(test_sample);
	RUN(test_deny_union_first_path);
	RUN(test_implicit_and_may_see);
	RUN(test_self_and_odd_names);
	RUN(test_bad_paths);
	RUN(test_groups_and_nss_errors);
	RUN(test_cache);
	RUN(test_explain);
	RUN(test_reload);
	RUN(test_reload_race);
	RUN(test_denied_and_strings);
	RUN(test_random_vs_reference);
	RUN(test_uniform);
	CHECK_EXIT();
}
