/* libFuzzer target for acl/: parses the input as a rules file from memory;
 * if it loads, checks a few callers on paths built from the rules and
 * compares the compiled fast path with the reference evaluator, including
 * implicit traversal.  Any disagreement aborts (a crash for libFuzzer). */
#include "acl/acl_i.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LR (ACL_LOOKUP | ACL_READ)

static const char *const user_names[] = { "alice", "bob", "..", "@=", "a/b",
                                          "" };

static int fz_user(void *arg, uid_t uid, char *buf, size_t len)
{
	if (uid >= sizeof(user_names) / sizeof(user_names[0]))
		return uid == 99 ? -EIO : -ENOENT;
	snprintf(buf, len, "%s", user_names[uid]);
	return 0;
}

static int fz_group(void *arg, gid_t gid, char *buf, size_t len)
{
	if (gid > 3)
		return -ENOENT;
	snprintf(buf, len, "g%u", (unsigned)gid);
	return 0;
}

static const struct acl_resolver fz_res = { fz_user, fz_group, NULL };

static void quiet(void *arg, const char *file, unsigned line, bool is_error,
                  const char *msg)
{
}

static void why_nop(void *arg, const struct acl_why *w)
{
	unsigned *seen = arg;

	*seen |= w->right;
}

/* Rule path rp as the caller sees it; false if it is no valid path. */
static bool subst(const struct acl_line *l, const struct acl_rpath *rp,
                  const struct acl_ident *id, char *out, size_t cap)
{
	size_t o = 0, i;

	for (i = 0; i < rp->len; i++) {
		if (l->type == ACL_T_SELF && rp->path[i] == '@' &&
		    rp->path[i + 1] == '=') {
			size_t n = strlen(id->user);

			if (o + n >= cap)
				return false;
			memcpy(out + o, id->user, n);
			o += n;
			i++;
		} else {
			if (o + 1 >= cap)
				return false;
			out[o++] = rp->path[i];
		}
	}
	out[o] = '\0';
	return acl_path_ok(out, o);
}

/* Expected rights: the definition, including implicit traversal. */
static unsigned expected(const struct acl_rules *r,
                         const struct acl_ident *id, const char *p)
{
	char q[ACL_MAX_PATH_BYTES * 2];
	unsigned ref = acl_eval_ref(r, id, p, NULL, NULL), i, j;
	size_t plen = strlen(p);

	if (id->nss_error || !acl_path_ok(p, plen))
		return 0;
	for (i = 0; i < r->nlines; i++) {
		const struct acl_line *l = &r->lines[i];

		if (!acl_line_applies(l, id))
			continue;
		for (j = 0; j < l->npaths; j++) {
			size_t qlen;

			if (!subst(l, &l->paths[j], id, q, sizeof(q)))
				continue;
			qlen = strlen(q);
			if (qlen > plen && acl_path_match(p, plen, q, qlen) &&
			    (acl_eval_ref(r, id, q, NULL, NULL) & ~ref))
				return ref | LR;
		}
	}
	return ref;
}

static void check_path(struct acl *a, const struct acl_rules *r,
                       const struct acl_caller *c, const char *p)
{
	struct acl_ident id;
	unsigned fast, want, ex = 0, seen = 0;
	int rc;

	if (acl_ident_resolve(&fz_res, c, true, &id))
		return;
	fast = acl_rights(a, c, p);
	want = expected(r, &id, p);
	if (fast != want) {
		fprintf(stderr, "uid %u path '%s': fast %x, expected %x\n",
		        (unsigned)c->uid, p, fast, want);
		abort();
	}
	if (acl_may_see(a, c, p) != (fast != 0))
		abort();
	rc = acl_explain(a, c, p, why_nop, &seen, &ex);
	if (rc == 0 && (ex != fast || (seen & fast) != fast))
		abort();
	acl_ident_free(&id);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const gid_t gs[] = { 1, 2, 3, 77 };
	static const char *const fixed[] = { "/", "/a", "/a/b", "/alice",
		"/home/alice", "/home/bob/x", "/@=", "/x/../y", "//", "/a/",
		"", "rel", "/." };
	struct acl_caller callers[] = {
		{ .uid = 0, .gid = 1, .groups = gs, .ngroups = 2 },
		{ .uid = 1, .gid = 2, .groups = gs + 2, .ngroups = 2 },
		{ .uid = 2, .gid = 0, .groups = NULL, .ngroups = 0 },
		{ .uid = 3, .gid = 3, .groups = gs, .ngroups = 4 },
		{ .uid = 50, .gid = 50, .groups = NULL, .ngroups = 0 },
		{ .uid = 99, .gid = 1, .groups = NULL, .ngroups = 0 },
	};
	const size_t nc = sizeof(callers) / sizeof(callers[0]);
	struct acl_rules *r = NULL;
	struct acl *a = NULL;
	unsigned nrules = 0, i, j, k = 0;
	int rc;

	rc = acl_lint_buf("fuzz", (const char *)data, size, quiet, NULL,
	                  &nrules);
	if (acl_open_buf(&a, "fuzz", (const char *)data, size, quiet,
	                 NULL) != rc)
		abort();
	if (rc)
		goto out;
	if (acl_rules_parse(&r, "fuzz", (const char *)data, size, quiet,
	                    NULL) || r->nlines != nrules)
		abort();
	acl_set_resolver(a, &fz_res);
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		check_path(a, r, &callers[i % nc], fixed[i]);
	/* Paths around the rule paths: each, its parent, a child, a
	 * sibling-prefix ("/ab" next to "/a"), for a rotating caller. */
	for (i = 0; i < r->nlines && k < 64; i++) {
		const struct acl_line *l = &r->lines[i];

		for (j = 0; j < l->npaths && k < 64; j++, k++) {
			const struct acl_rpath *rp = &l->paths[j];
			const struct acl_caller *c = &callers[k % nc];
			char p[ACL_MAX_PATH_BYTES + 16];
			char *slash;

			snprintf(p, sizeof(p), "%s", rp->path);
			check_path(a, r, c, p);
			snprintf(p, sizeof(p), "%s%s", rp->path,
			         rp->len > 1 ? "/x" : "x");
			check_path(a, r, c, p);
			snprintf(p, sizeof(p), "%sx", rp->path);
			check_path(a, r, c, p);
			snprintf(p, sizeof(p), "%s", rp->path);
			slash = strrchr(p, '/');
			if (slash && slash != p) {
				*slash = '\0';
				check_path(a, r, c, p);
			}
			if (rp->subst) {
				/* As alice would see it. */
				char alice[] = "alice";
				struct acl_ident id = { .user = alice,
				                        .user_safe = true };

				if (subst(l, rp, &id, p, sizeof(p)))
					check_path(a, r, &callers[0], p);
			}
		}
	}
out:
	acl_rules_unref(r);
	acl_close(a);
	return 0;
}
