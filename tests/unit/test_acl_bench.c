/* Micro-benchmark of acl/ checks: 1,000 rules, 1M checks.  Prints numbers;
 * asserts only correctness, never timings (machines differ). */
#include "acl/acl_i.h"
#include "tests/unit/check.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#define NRULES_STAR  700
#define NRULES_USER  150
#define NRULES_GROUP 100
#define NRULES_SELF  50
#define NUSERS 64
#define NGRP 8
#define NPATHS 4096
#define NCHECKS 1000000

static int bench_user(void *arg, uid_t uid, char *buf, size_t len)
{
	snprintf(buf, len, "user%u", (unsigned)uid - 10000);
	return 0;
}

static int bench_group(void *arg, gid_t gid, char *buf, size_t len)
{
	snprintf(buf, len, "group%u", (unsigned)gid - 20000);
	return 0;
}

static const struct acl_resolver res = { bench_user, bench_group, NULL };

static gid_t grp[NUSERS][NGRP];
static struct acl_caller callers[NUSERS];
static char *paths[NPATHS];
static uint64_t rng = 88172645463325252ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *make_rules(size_t *len)
{
	size_t cap = 256 * 1024, o = 0;
	char *t = malloc(cap);
	unsigned i;

	if (!t)
		return NULL;
	for (i = 0; i < NRULES_STAR; i++)
		o += (size_t)snprintf(t + o, cap - o, "u * /data/proj%03u/"
		                      "restricted -rl /data/proj%03u rl\n",
		                      i, i);
	for (i = 0; i < NRULES_USER; i++)
		o += (size_t)snprintf(t + o, cap - o, "u user%u /data/proj%03u"
		                      "/user%u a\n", i % NUSERS, i, i % NUSERS);
	for (i = 0; i < NRULES_GROUP; i++)
		o += (size_t)snprintf(t + o, cap - o, "g group%u /groups/g%u "
		                      "a-d\n", i, i);
	for (i = 0; i < NRULES_SELF; i++)
		o += (size_t)snprintf(t + o, cap - o, "u = /home/@=/sub%u a "
		                      "/scratch%u/@= rw\n", i, i);
	*len = o;
	return t;
}

static int make_paths(void)
{
	unsigned i;
	int rc = 0;

	for (i = 0; i < NPATHS && !rc; i++) {
		char p[256];

		switch (rnd(6)) {
		case 0:
			snprintf(p, sizeof(p), "/data/proj%03u/run%u/f%u.h5",
			         rnd(800), rnd(50), rnd(1000));
			break;
		case 1:
			snprintf(p, sizeof(p), "/data/proj%03u/restricted/x%u",
			         rnd(700), rnd(100));
			break;
		case 2:
			snprintf(p, sizeof(p), "/home/user%u/sub%u/a/b/c/d.txt",
			         rnd(NUSERS), rnd(60));
			break;
		case 3:
			snprintf(p, sizeof(p), "/groups/g%u/sub/file%u",
			         rnd(120), rnd(100));
			break;
		case 4:
			snprintf(p, sizeof(p), "/data/proj%03u/user%u/out",
			         rnd(150), rnd(NUSERS));
			break;
		default:
			snprintf(p, sizeof(p), "%s", rnd(2) ? "/data" : "/home");
			break;
		}
		paths[i] = strdup(p);
		if (!paths[i])
			rc = -ENOMEM;
	}
	return rc;
}

struct worker {
	struct acl *a;
	unsigned seed;
	unsigned long n;
	unsigned long granted;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	unsigned long i;
	unsigned s = w->seed;

	for (i = 0; i < w->n; i++) {
		s = s * 1103515245u + 12345u;
		if (acl_rights(w->a, &callers[(s >> 8) % NUSERS],
		               paths[(s >> 16) % NPATHS]))
			w->granted++;
	}
	return NULL;
}

static void bench(void)
{
	struct acl_view *v = NULL;
	struct acl_ident id;
	struct acl_stats st;
	struct acl *a = NULL;
	struct acl_rules *r = NULL;
	unsigned long i, granted = 0, mismatch = 0;
	double t0, t1;
	size_t len;
	char *text = make_rules(&len);
	unsigned u, g;

	if (!text || make_paths()) {
		check_failures++;
		goto out;
	}
	for (u = 0; u < NUSERS; u++) {
		for (g = 0; g < NGRP; g++)
			grp[u][g] = 20000 + (u * NGRP + g) % 120;
		callers[u] = (struct acl_caller){ .uid = 10000 + u,
			.gid = 20000 + u % 120, .groups = grp[u],
			.ngroups = NGRP };
	}
	t0 = now_s();
	CHECK_OK(acl_rules_parse(&r, "bench", text, len, NULL, NULL));
	t1 = now_s();
	if (!r)
		goto out;
	printf("rules: %u lines, %zu bytes, parsed in %.2f ms\n", r->nlines,
	       len, (t1 - t0) * 1e3);
	CHECK(r->nlines == NRULES_STAR + NRULES_USER + NRULES_GROUP +
	                   NRULES_SELF);
	CHECK_OK(acl_open_buf(&a, "bench", text, len, NULL, NULL));
	if (!a)
		goto out;
	acl_set_resolver(a, &res);

	/* Cold: compile every caller once. */
	t0 = now_s();
	for (u = 0; u < NUSERS; u++)
		(void)acl_rights(a, &callers[u], "/");
	t1 = now_s();
	printf("compile per caller (cold cache, fake NSS): %.1f us\n",
	       (t1 - t0) * 1e6 / NUSERS);

	/* The full public path: cache lookup + evaluation. */
	t0 = now_s();
	for (i = 0; i < NCHECKS; i++)
		if (acl_rights(a, &callers[i % NUSERS],
		               paths[(i * 7919) % NPATHS]))
			granted++;
	t1 = now_s();
	printf("acl_rights, 1 thread: %lu checks in %.3f s = %.0f ns/check "
	       "(%lu granted)\n", (unsigned long)NCHECKS, t1 - t0,
	       (t1 - t0) * 1e9 / NCHECKS, granted);

	/* Evaluation alone against one compiled view. */
	CHECK_OK(acl_ident_resolve(&res, &callers[3], true, &id));
	CHECK_OK(acl_view_build(&v, r, &id));
	if (v) {
		granted = 0;
		t0 = now_s();
		for (i = 0; i < NCHECKS; i++)
			if (acl_view_rights(v, paths[(i * 7919) % NPATHS]))
				granted++;
		t1 = now_s();
		printf("view evaluation only: %.0f ns/check\n",
		       (t1 - t0) * 1e9 / NCHECKS);
		/* Same answers as the definition (explicit part). */
		t0 = now_s();
		for (i = 0; i < 20000; i++) {
			const char *p = paths[i % NPATHS];
			unsigned ref = acl_eval_ref(r, &id, p, NULL, NULL);
			unsigned fast = acl_view_rights(v, p);

			if ((fast & ~(ACL_LOOKUP | ACL_READ)) !=
			    (ref & ~(ACL_LOOKUP | ACL_READ)) ||
			    (fast & ref) != ref)
				mismatch++;
		}
		t1 = now_s();
		printf("reference evaluator (linear scan) for comparison: "
		       "%.0f ns/check\n", (t1 - t0) * 1e9 / 20000);
		CHECK(mismatch == 0);
	}
	acl_ident_free(&id);

	/* Two threads (this machine's core count) on the shared cache. */
	{
		struct worker w[2] = { { a, 1, NCHECKS / 2, 0 },
		                       { a, 2, NCHECKS / 2, 0 } };
		pthread_t th[2];
		int k;

		t0 = now_s();
		for (k = 0; k < 2; k++)
			CHECK(pthread_create(&th[k], NULL, work, &w[k]) == 0);
		for (k = 0; k < 2; k++)
			pthread_join(th[k], NULL);
		t1 = now_s();
		printf("acl_rights, 2 threads: %.0f ns/check wall, %.1f M "
		       "checks/s\n", (t1 - t0) * 1e9 / NCHECKS,
		       NCHECKS / (t1 - t0) / 1e6);
	}
	acl_get_stats(a, &st);
	printf("callers compiled: %llu\n",
	       (unsigned long long)st.callers_compiled);
	CHECK(st.callers_compiled == NUSERS);
out:
	acl_view_free(v);
	acl_close(a);
	acl_rules_unref(r);
	free(text);
	for (i = 0; i < NPATHS; i++)
		free(paths[i]);
}

int main(void)
{
	RUN(bench);
	CHECK_EXIT();
}
