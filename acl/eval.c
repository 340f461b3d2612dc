/* acl/eval.c: caller identity, per-caller compiled views, evaluation.
 *
 * Why views: for one caller, explicit rights on a path T depend only on
 * which rule paths match T.  The rule paths matching T form a chain of
 * prefixes; the longest one, R, is matched by exactly the same rule paths
 * as T, so rights(T) == rights(R).  A view therefore stores every rule path
 * that applies to the caller (after "@=" substitution) with its rights
 * precomputed, plus every ancestor of a rule path.  A check walks T's
 * prefixes through a hash table, stopping at the first prefix that is not
 * in the table (no rule path lies below it), and takes the rights of the
 * deepest rule path seen: one pass over T, independent of the number of
 * rules.  The same argument gives implicit traversal: T is traversable when
 * some applying rule path strictly below T gives rights that T itself does
 * not have; that is precomputed per node (live_below).
 */
#include "acl/acl_i.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define FNV_OFF   0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

struct vnode {
	uint64_t hash;
	uint32_t off, len;      /* key: arena[off .. off+len) */
	uint32_t efirst, ecount;/* entries (during the build only) */
	uint8_t rights;         /* explicit rights, if is_rule */
	bool is_rule;           /* some applying rule names this path */
	bool live_below;        /* some rule path strictly below has rights */
};

struct ventry {                 /* one PATH PRIVS of an applying line */
	uint32_t node, line, pidx;
	uint8_t pos, neg;
};

struct acl_view {
	struct vnode *nodes;
	uint32_t nnodes, ncap;
	uint32_t *table;        /* node index + 1; 0 = empty */
	uint32_t mask;
	char *arena;
	size_t alen, acap;
};

static inline uint64_t fnv(uint64_t h, unsigned char c)
{
	return (h ^ c) * FNV_PRIME;
}

static bool name_safe(const char *n)
{
	return n[0] && strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/');
}

int acl_ident_resolve(const struct acl_resolver *res,
                      const struct acl_caller *c, bool need_groups,
                      struct acl_ident *id)
{
	char buf[ACL_NAME_MAX];
	int rc = 0, i, n;

	memset(id, 0, sizeof(*id));
	if (c->ngroups < 0 || (c->ngroups > 0 && !c->groups)) {
		rc = -EINVAL;
		goto out;
	}
	n = res->user(res->arg, c->uid, buf, sizeof(buf));
	if (n == 0) {
		id->user = strdup(buf);
		if (!id->user) {
			rc = -ENOMEM;
			goto out;
		}
		id->user_safe = name_safe(buf);
	} else if (n != -ENOENT) {
		id->nss_error = true;
		goto out;
	}
	if (!need_groups)
		goto out;
	id->groups = calloc((size_t)c->ngroups + 1, sizeof(*id->groups));
	if (!id->groups) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = -1; i < c->ngroups; i++) {
		gid_t g = i < 0 ? c->gid : c->groups[i];

		if (i >= 0 && g == c->gid)
			continue;
		n = res->group(res->arg, g, buf, sizeof(buf));
		if (n == -ENOENT)
			continue;
		if (n) {
			id->nss_error = true;
			goto out;
		}
		id->groups[id->ngroups] = strdup(buf);
		if (!id->groups[id->ngroups]) {
			rc = -ENOMEM;
			goto out;
		}
		id->ngroups++;
	}
out:
	if (rc)
		acl_ident_free(id);
	return rc;
}

int acl_ident_from_names(const char *user, const char *const *groups,
                         int ngroups, struct acl_ident *id)
{
	int rc = -ENOMEM, i;

	memset(id, 0, sizeof(*id));
	id->user = strdup(user);
	id->groups = calloc((size_t)ngroups + 1, sizeof(*id->groups));
	if (!id->user || !id->groups)
		goto out;
	id->user_safe = name_safe(user);
	for (i = 0; i < ngroups; i++) {
		id->groups[i] = strdup(groups[i]);
		if (!id->groups[i])
			goto out;
		id->ngroups++;
	}
	rc = 0;
out:
	if (rc)
		acl_ident_free(id);
	return rc;
}

void acl_ident_free(struct acl_ident *id)
{
	int i;

	for (i = 0; i < id->ngroups; i++)
		free(id->groups[i]);
	free(id->groups);
	free(id->user);
	memset(id, 0, sizeof(*id));
}

bool acl_line_applies(const struct acl_line *l, const struct acl_ident *id)
{
	bool yes = false;
	int i;

	switch (l->type) {
	case ACL_T_ALL:
		yes = true;
		break;
	case ACL_T_SELF:
		yes = id->user && id->user_safe;
		break;
	case ACL_T_USER:
		yes = id->user && !strcmp(l->id, id->user);
		break;
	case ACL_T_GROUP:
		for (i = 0; i < id->ngroups && !yes; i++)
			yes = !strcmp(l->id, id->groups[i]);
		break;
	}
	return yes;
}

/* The path of rule rp for this caller: *out points to it (rp's own string,
 * or buf after "@=" substitution).  Returns its length, or 0 if it is not
 * a valid path after substitution or does not fit: it then matches
 * nothing, as no normalized target path could equal it. */
static size_t rule_path(const struct acl_rpath *rp, const struct acl_ident *id,
                        char *buf, size_t cap, const char **out)
{
	size_t i, o = 0, ulen;

	*out = rp->path;
	if (!rp->subst) {
		o = rp->len;
		goto out;
	}
	ulen = strlen(id->user);
	for (i = 0; i < rp->len; i++) {
		if (rp->path[i] == '@' && i + 1 < rp->len &&
		    rp->path[i + 1] == '=') {
			if (o + ulen > cap) {
				o = 0;
				goto out;
			}
			memcpy(buf + o, id->user, ulen);
			o += ulen;
			i++;
			continue;
		}
		if (o + 1 > cap) {
			o = 0;
			goto out;
		}
		buf[o++] = rp->path[i];
	}
	*out = buf;
	if (!acl_path_ok(buf, o))
		o = 0;
out:
	return o;
}

unsigned acl_eval_ref(const struct acl_rules *r, const struct acl_ident *id,
                      const char *path, acl_decide_fn *fn, void *arg)
{
	char buf[ACL_MAX_PATH_BYTES * 2];
	size_t tlen = strlen(path);
	unsigned pos = 0, neg = 0, i, j;

	if (id->nss_error || !acl_path_ok(path, tlen))
		return 0;
	for (i = 0; i < r->nlines; i++) {
		const struct acl_line *l = &r->lines[i];

		if (!acl_line_applies(l, id))
			continue;
		for (j = 0; j < l->npaths; j++) {
			const char *p;
			size_t plen = rule_path(&l->paths[j], id, buf,
			                        sizeof(buf), &p);

			if (!plen || !acl_path_match(p, plen, path, tlen))
				continue;
			pos |= l->paths[j].pos;
			neg |= l->paths[j].neg;
			if (fn)
				fn(arg, l, l->paths[j].pos, l->paths[j].neg);
			break;
		}
	}
	return pos & ~neg;
}

/* ---- views ---- */

static const struct vnode *vlookup(const struct acl_view *v, uint64_t h,
                                   const char *p, uint32_t len)
{
	const struct vnode *n = NULL;
	uint32_t i, idx;

	for (i = (uint32_t)h & v->mask; (idx = v->table[i]);
	     i = (i + 1) & v->mask) {
		n = &v->nodes[idx - 1];
		if (n->hash == h && n->len == len &&
		    !memcmp(v->arena + n->off, p, len))
			break;
		n = NULL;
	}
	return n;
}

static int vgrow(struct acl_view *v)
{
	uint32_t cap = v->mask ? (v->mask + 1) * 2 : 64, i;
	uint32_t *t = calloc(cap, sizeof(*t));
	int rc = 0;

	if (!t) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < v->nnodes; i++) {
		uint32_t s = (uint32_t)v->nodes[i].hash & (cap - 1);

		while (t[s])
			s = (s + 1) & (cap - 1);
		t[s] = i + 1;
	}
	free(v->table);
	v->table = t;
	v->mask = cap - 1;
out:
	return rc;
}

/* Finds or adds the node for arena[off .. off+len); *idx gets its index. */
static int vadd(struct acl_view *v, uint64_t h, uint32_t off, uint32_t len,
                uint32_t *idx)
{
	const struct vnode *n;
	struct vnode *nn;
	uint32_t s;
	int rc = 0;

	if (v->mask) {
		n = vlookup(v, h, v->arena + off, len);
		if (n) {
			*idx = (uint32_t)(n - v->nodes);
			goto out;
		}
	}
	if ((v->nnodes + 1) * 2 > v->mask) {   /* load factor <= 1/2 */
		rc = vgrow(v);
		if (rc)
			goto out;
	}
	if (v->nnodes == v->ncap) {
		uint32_t ncap = v->ncap ? v->ncap * 2 : 32;

		nn = reallocarray(v->nodes, ncap, sizeof(*nn));
		if (!nn) {
			rc = -ENOMEM;
			goto out;
		}
		v->nodes = nn;
		v->ncap = ncap;
	}
	nn = &v->nodes[v->nnodes];
	memset(nn, 0, sizeof(*nn));
	nn->hash = h;
	nn->off = off;
	nn->len = len;
	for (s = (uint32_t)h & v->mask; v->table[s]; s = (s + 1) & v->mask)
		;
	v->table[s] = ++v->nnodes;
	*idx = v->nnodes - 1;
out:
	return rc;
}

/* Adds path p and all its ancestors; *idx gets p's node. */
static int vadd_path(struct acl_view *v, const char *p, size_t len,
                     uint32_t *idx)
{
	uint64_t h = fnv(FNV_OFF, '/');
	uint32_t off, i, dummy;
	int rc = 0;

	if (v->alen + len > v->acap) {
		size_t ncap = (v->acap + len) * 2;
		char *na = realloc(v->arena, ncap);

		if (!na) {
			rc = -ENOMEM;
			goto out;
		}
		v->arena = na;
		v->acap = ncap;
	}
	off = (uint32_t)v->alen;
	memcpy(v->arena + off, p, len);
	v->alen += len;
	rc = vadd(v, h, off, 1, len == 1 ? idx : &dummy);
	for (i = 1; !rc && i < len; i++) {
		h = fnv(h, (unsigned char)p[i]);
		if (i + 1 == len)
			rc = vadd(v, h, off, i + 1, idx);
		else if (p[i + 1] == '/')
			rc = vadd(v, h, off, i + 1, &dummy);
	}
out:
	return rc;
}

static int ventry_cmp(const void *a, const void *b)
{
	const struct ventry *x = a, *y = b;

	if (x->node != y->node)
		return x->node < y->node ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->pidx < y->pidx ? -1 : x->pidx > y->pidx;
}

static int ventry_cmp_line(const void *a, const void *b)
{
	const struct ventry *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->pidx < y->pidx ? -1 : x->pidx > y->pidx;
}

/* Calls fn for every node from "/" down to node n, ancestors first; n
 * itself only if include_self.  All of them exist: vadd_path adds them. */
static void chain(const struct acl_view *v, const struct vnode *n,
                  void (*fn)(const struct vnode *, void *), void *arg,
                  bool include_self)
{
	const char *p = v->arena + n->off;
	uint64_t h = fnv(FNV_OFF, '/');
	uint32_t i;

	if (n->len > 1 || include_self)
		fn(vlookup(v, h, p, 1), arg);
	for (i = 1; i < n->len; i++) {
		h = fnv(h, (unsigned char)p[i]);
		if (i + 1 == n->len ? include_self : p[i + 1] == '/')
			fn(vlookup(v, h, p, i + 1), arg);
	}
}

struct gather {
	const struct acl_view *v;
	const struct ventry *e;
	struct ventry *out;
	uint32_t n;
};

static void gather_fn(const struct vnode *n, void *arg)
{
	struct gather *g = arg;

	memcpy(g->out + g->n, g->e + n->efirst, n->ecount * sizeof(*g->out));
	g->n += n->ecount;
}

struct live {
	struct acl_view *v;
	unsigned rights;   /* of the rule path below */
	unsigned above;    /* explicit rights of the node visited */
};

/* Ancestors come root first, so "above" tracks the deepest rule path seen:
 * the explicit rights of each ancestor.  An ancestor becomes traversable
 * only if the path below gives something it does not already have, so
 * "u * /drop i" plus a denial rule inside /drop does not make /drop
 * listable. */
static void mark_live(const struct vnode *n, void *arg)
{
	struct live *l = arg;

	if (n->is_rule)
		l->above = n->rights;
	if (l->rights & ~l->above)
		l->v->nodes[n - l->v->nodes].live_below = true;
}

int acl_view_build(struct acl_view **out, const struct acl_rules *r,
                   const struct acl_ident *id)
{
	char buf[ACL_MAX_PATH_BYTES * 2];
	struct acl_view *v = calloc(1, sizeof(*v));
	struct ventry *e = NULL, *tmp = NULL;
	size_t ne = 0, ecap = 0;
	unsigned i, j;
	uint32_t k;
	int rc = 0;

	*out = NULL;
	if (!v) {
		rc = -ENOMEM;
		goto out;
	}
	if (id->nss_error)
		goto done;   /* empty view: no rights anywhere */
	for (i = 0; i < r->nlines; i++) {
		const struct acl_line *l = &r->lines[i];

		if (!acl_line_applies(l, id))
			continue;
		for (j = 0; j < l->npaths; j++) {
			const char *p;
			size_t plen = rule_path(&l->paths[j], id, buf,
			                        sizeof(buf), &p);
			uint32_t node;

			if (!plen)
				continue;
			rc = vadd_path(v, p, plen, &node);
			if (rc)
				goto out;
			if (ne == ecap) {
				size_t nc = ecap ? ecap * 2 : 64;
				struct ventry *ee = reallocarray(e, nc,
				                                 sizeof(*e));

				if (!ee) {
					rc = -ENOMEM;
					goto out;
				}
				e = ee;
				ecap = nc;
			}
			e[ne++] = (struct ventry){ .node = node, .line = i,
				.pidx = j, .pos = l->paths[j].pos,
				.neg = l->paths[j].neg };
		}
	}
	if (!ne)
		goto done;
	qsort(e, ne, sizeof(*e), ventry_cmp);
	for (k = 0; k < ne; k++) {
		struct vnode *n = &v->nodes[e[k].node];

		if (!n->is_rule)
			n->efirst = k;
		n->is_rule = true;
		n->ecount++;
	}
	tmp = calloc(ne, sizeof(*tmp));
	if (!tmp) {
		rc = -ENOMEM;
		goto out;
	}
	/* Rights of each rule path: the entries of all rule paths on its
	 * chain; per line the first listed path decides. */
	for (k = 0; k < v->nnodes; k++) {
		struct vnode *n = &v->nodes[k];
		struct gather g = { .v = v, .e = e, .out = tmp };
		unsigned pos = 0, neg = 0, line = UINT32_MAX;
		uint32_t x;

		if (!n->is_rule)
			continue;
		chain(v, n, gather_fn, &g, true);
		qsort(tmp, g.n, sizeof(*tmp), ventry_cmp_line);
		for (x = 0; x < g.n; x++) {
			if (tmp[x].line == line)
				continue;
			line = tmp[x].line;
			pos |= tmp[x].pos;
			neg |= tmp[x].neg;
		}
		n->rights = (uint8_t)(pos & ~neg);
	}
	for (k = 0; k < v->nnodes; k++) {
		struct live l = { .v = v, .rights = v->nodes[k].rights };

		if (v->nodes[k].is_rule && v->nodes[k].rights)
			chain(v, &v->nodes[k], mark_live, &l, false);
	}
done:
	if (!v->mask)
		rc = vgrow(v);   /* lookups need a table, even an empty one */
out:
	free(tmp);
	free(e);
	if (rc) {
		acl_view_free(v);
		v = NULL;
	}
	*out = v;
	return rc;
}

void acl_view_free(struct acl_view *v)
{
	if (!v)
		return;
	free(v->nodes);
	free(v->table);
	free(v->arena);
	free(v);
}

unsigned acl_view_rights(const struct acl_view *v, const char *p)
{
	const struct vnode *n = NULL;
	uint64_t h;
	unsigned best = 0;
	uint32_t i, seg = 1;
	bool track = false;

	if (p[0] != '/')
		goto done;
	h = fnv(FNV_OFF, '/');
	n = vlookup(v, h, p, 1);
	track = n != NULL;
	if (n && n->is_rule)
		best = n->rights;
	if (p[1] == '\0')
		goto done;
	/* One pass: validate every segment, hash prefixes while they are
	 * still in the table. */
	for (i = 1;; i++) {
		char c = p[i];
		uint32_t len;

		if (c != '/' && c != '\0') {
			if (track)
				h = fnv(h, (unsigned char)c);
			continue;
		}
		len = i - seg;
		if (len == 0 || (len == 1 && p[seg] == '.') ||
		    (len == 2 && p[seg] == '.' && p[seg + 1] == '.')) {
			best = 0;     /* not normalized: no rights at all */
			track = false;
			break;
		}
		if (track) {
			n = vlookup(v, h, p, i);
			track = n != NULL;
			if (n && n->is_rule)
				best = n->rights;
		}
		if (c == '\0')
			break;
		if (track)
			h = fnv(h, '/');
		seg = i + 1;
	}
done:
	/* n is the node for the whole path, if it is in the table. */
	if (track && n->live_below)
		best |= ACL_LOOKUP | ACL_READ;
	return best;
}
