/* Where rights are the same for every caller.
 *
 * fs/ lets the kernel cache entries and attributes only where that cache
 * cannot carry one user's view to another: where every caller has the same
 * rights and sees the same children.  That is so at a path unless a rule
 * that depends on who asks ('u NAME', 'u =', 'g NAME') has a path at, above
 * or below it ("below" through implicit traversal and filtered listings).
 * A "u =" path with "@=" counts from the segment before the substitution
 * ("/home/@=" makes all of /home depend on the caller). */
#define _GNU_SOURCE   /* memmem */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl_i.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool contains(char *const *v, size_t n, const char *s)
{
	return n && bsearch(&s, v, n, sizeof(*v), cmp_str) != NULL;
}

static int push(char ***v, size_t *n, size_t *cap, const char *s, size_t len)
{
	if (*n == *cap) {
		size_t c = *cap ? *cap * 2 : 16;
		char **nv = realloc(*v, c * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = c;
	}
	(*v)[*n] = strndup(s, len);
	if (!(*v)[*n])
		return -ENOMEM;
	(*n)++;
	return 0;
}

/* Sorts and drops duplicates. */
static void settle(char **v, size_t *n)
{
	size_t i, kept = 0;

	if (*n)
		qsort(v, *n, sizeof(*v), cmp_str);
	for (i = 0; i < *n; i++) {
		if (kept && strcmp(v[kept - 1], v[i]) == 0)
			free(v[i]);
		else
			v[kept++] = v[i];
	}
	*n = kept;
}

/* The part of a rule path that does not depend on the caller's name. */
static size_t fixed_len(const struct acl_rpath *p)
{
	const char *at;
	size_t len;

	if (!p->subst)
		return p->len;
	at = memmem(p->path, p->len, "@=", 2);
	len = (size_t)(at - p->path);
	while (len > 1 && p->path[len - 1] != '/')
		len--;
	return len > 1 ? len - 1 : 1;
}

int acl_uniform_build(struct acl_rules *r)
{
	size_t acap = 0, dcap = 0, len, i;
	unsigned l, k;
	int rc = 0;

	for (l = 0; l < r->nlines && rc == 0; l++) {
		const struct acl_line *line = &r->lines[l];

		if (line->type == ACL_T_ALL)
			continue;
		for (k = 0; k < line->npaths && rc == 0; k++) {
			const struct acl_rpath *p = &line->paths[k];

			len = fixed_len(p);
			rc = push(&r->varies_at, &r->nvaries_at, &acap, p->path, len);
			/* Every strict ancestor: "/" and each '/' before len. */
			for (i = 1; i < len && rc == 0; i++) {
				if (p->path[i] == '/')
					rc = push(&r->varies_below, &r->nvaries_below,
					          &dcap, p->path, i);
			}
			if (len > 1 && rc == 0)
				rc = push(&r->varies_below, &r->nvaries_below, &dcap,
				          "/", 1);
		}
	}
	settle(r->varies_at, &r->nvaries_at);
	settle(r->varies_below, &r->nvaries_below);
	return rc;
}

void acl_uniform_free(struct acl_rules *r)
{
	size_t i;

	for (i = 0; i < r->nvaries_at; i++)
		free(r->varies_at[i]);
	for (i = 0; i < r->nvaries_below; i++)
		free(r->varies_below[i]);
	free(r->varies_at);
	free(r->varies_below);
}

bool acl_uniform_check(const struct acl_rules *r, const char *path)
{
	char buf[ACL_MAX_PATH_BYTES + 1];
	size_t len = strlen(path);

	if (len > ACL_MAX_PATH_BYTES || !acl_path_ok(path, len))
		return false;
	if (contains(r->varies_below, r->nvaries_below, path))
		return false;
	/* path itself, then each ancestor up to "/". */
	memcpy(buf, path, len + 1);
	for (;;) {
		if (contains(r->varies_at, r->nvaries_at, buf))
			return false;
		if (len == 1)
			return true;
		while (len > 1 && buf[len - 1] != '/')
			len--;
		if (len > 1)
			len--;
		buf[len] = '\0';
	}
}
