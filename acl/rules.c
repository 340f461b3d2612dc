/* acl/rules.c: the rules file parser and linter. */
#define _GNU_SOURCE   /* memmem */
#include "acl/acl_i.h"
#include "common/log.h"
#include "common/trustfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Past this many diagnostics a broken file is not worth reading on. */
#define MAX_DIAGS 100
/* TYPE ID + pairs, + 1 to notice one too many. */
#define MAX_TOKENS ((int)(2 + 2 * ACL_MAX_PAIRS + 1))

struct parser {
	const char *name;
	acl_diag_fn *fn;
	void *arg;
	unsigned errors;
	unsigned diags;
	struct acl_rules *rules;
	unsigned cap;      /* allocated lines */
};

struct token {
	const char *p;
	size_t len;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Copies at most 64 bytes of s for a message, escaping anything that is
 * not printable ASCII so a hostile file cannot forge log lines. */
static const char *esc(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0, i;

	for (i = 0; i < n && i < 64 && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[o++] = (char)c;
		} else {
			snprintf(out + o, cap - o, "\\x%02x", c);
			o += 4;
		}
	}
	if (i < n && o + 4 < cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

__attribute__((format(printf, 4, 5)))
static void diag(struct parser *ps, unsigned line, bool is_error,
                 const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (is_error)
		ps->errors++;
	if (++ps->diags > MAX_DIAGS)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ps->diags == MAX_DIAGS)
		snprintf(msg, sizeof(msg), "too many problems, stopping here");
	if (ps->fn)
		ps->fn(ps->arg, ps->name, line, is_error, msg);
	else
		dms_log(is_error ? LOG_ERR : LOG_WARNING, "acl: %s:%u: %s",
		        ps->name, line, msg);
}

bool acl_path_ok(const char *p, size_t len)
{
	size_t i, seg = 1;
	bool ok = len > 0 && p[0] == '/';

	for (i = 1; ok && len > 1 && i <= len; i++) {
		size_t n;

		if (i < len && p[i] != '/') {
			ok = p[i] != '\0';
			continue;
		}
		n = i - seg;
		ok = !(n == 0 || (n == 1 && p[seg] == '.') ||
		       (n == 2 && p[seg] == '.' && p[seg + 1] == '.'));
		seg = i + 1;
	}
	return ok;
}

bool acl_path_match(const char *p, size_t plen, const char *t, size_t tlen)
{
	/* "/" matches everything; otherwise a prefix ending at a '/'. */
	return plen == 1 || (tlen >= plen && !memcmp(p, t, plen) &&
	                     (tlen == plen || t[plen] == '/'));
}

static int parse_privs(struct parser *ps, unsigned line, const struct token *t,
                       uint8_t *pos, uint8_t *neg)
{
	static const char letters[] = "alrwidn";
	static const uint8_t bits[] = { ACL_ALL, ACL_LOOKUP, ACL_READ,
	                                ACL_WRITE, ACL_INSERT, ACL_DELETE,
	                                ACL_RENAME };
	char e[300];
	bool minus = false;
	int rc = 0;
	size_t i;

	*pos = *neg = 0;
	for (i = 0; i < t->len; i++) {
		const char *l;

		if (t->p[i] == '-') {
			if (minus) {
				diag(ps, line, true, "more than one '-' in "
				     "privileges '%s'", esc(t->p, t->len, e,
				                            sizeof(e)));
				rc = -EINVAL;
				goto out;
			}
			minus = true;
			continue;
		}
		l = t->p[i] ? memchr(letters, t->p[i], sizeof(letters) - 1)
		            : NULL;
		if (!l) {
			diag(ps, line, true, "bad privilege letter '%s' in '%s' "
			     "(use a l r w i d n, '-' before denied ones)",
			     esc(t->p + i, 1, e, 16),
			     esc(t->p, t->len, e + 16, sizeof(e) - 16));
			rc = -EINVAL;
			goto out;
		}
		if (minus)
			*neg |= bits[l - letters];
		else
			*pos |= bits[l - letters];
	}
	if (minus && !*neg) {
		diag(ps, line, true, "nothing after '-' in privileges '%s'",
		     esc(t->p, t->len, e, sizeof(e)));
		rc = -EINVAL;
	}
out:
	return rc;
}

static bool looks_like_privs(const struct token *t)
{
	size_t i;

	for (i = 0; i < t->len; i++)
		if (!t->p[i] || !strchr("alrwidn-", t->p[i]))
			return false;
	return true;
}

static int parse_path(struct parser *ps, unsigned line, enum acl_type type,
                      const struct token *t, struct acl_rpath *rp)
{
	char e[300];
	size_t len = t->len;
	int rc = 0;

	if (t->p[0] != '/' && looks_like_privs(t)) {
		/* e.g. "u * /a rl -r /b": only the first pair may be
		 * written PRIVS PATH. */
		diag(ps, line, true, "expected a path, found privileges '%s' "
		     "(the order is PATH PRIVS)", esc(t->p, t->len, e,
		                                      sizeof(e)));
		rc = -EINVAL;
		goto out;
	}
	if (t->p[0] != '/') {
		diag(ps, line, true, "path '%s' is not absolute",
		     esc(t->p, t->len, e, sizeof(e)));
		rc = -EINVAL;
		goto out;
	}
	if (len > ACL_MAX_PATH_BYTES) {
		diag(ps, line, true, "path longer than %u bytes",
		     ACL_MAX_PATH_BYTES);
		rc = -EINVAL;
		goto out;
	}
	if (len > 1 && t->p[len - 1] == '/')
		len--;   /* "/home/@=/" means the same as "/home/@=" */
	if (!acl_path_ok(t->p, len)) {
		diag(ps, line, true, "path '%s' is not normalized (empty, '.' "
		     "or '..' segment)", esc(t->p, t->len, e, sizeof(e)));
		rc = -EINVAL;
		goto out;
	}
	rp->subst = memmem(t->p, len, "@=", 2) != NULL;
	if (rp->subst && type != ACL_T_SELF) {
		diag(ps, line, true, "'@=' in path '%s' is only allowed in "
		     "'u =' rules", esc(t->p, t->len, e, sizeof(e)));
		rc = -EINVAL;
		goto out;
	}
	rp->path = strndup(t->p, len);
	if (!rp->path) {
		rc = -ENOMEM;
		goto out;
	}
	rp->len = (uint32_t)len;
out:
	return rc;
}

static void free_line(struct acl_line *l)
{
	unsigned i;

	for (i = 0; i < l->npaths; i++)
		free(l->paths[i].path);
	free(l->paths);
	free(l->id);
	free(l->text);
}

/* Warns about paths that can never decide because an earlier path on the
 * same line matches everything they match (a common ordering mistake:
 * "/archive rl /archive/private -rl"). */
static void lint_shadowed(struct parser *ps, const struct acl_line *l)
{
	char e1[300], e2[300];
	unsigned i, j;

	for (j = 1; j < l->npaths; j++) {
		const struct acl_rpath *pj = &l->paths[j];

		for (i = 0; i < j; i++) {
			const struct acl_rpath *pi = &l->paths[i];

			if (!acl_path_match(pi->path, pi->len, pj->path,
			                    pj->len))
				continue;
			diag(ps, l->lineno, false, "path '%s' never decides: "
			     "the earlier path '%s' on this line covers it",
			     esc(pj->path, pj->len, e1, sizeof(e1)),
			     esc(pi->path, pi->len, e2, sizeof(e2)));
			break;
		}
	}
}

static int add_line(struct parser *ps, const struct token *tok, int ntok,
                    unsigned lineno, const char *text, size_t textlen)
{
	struct acl_line l = { .lineno = lineno };
	struct acl_rules *r = ps->rules;
	char e[300];
	int rc = 0, i;

	if (tok[0].len != 1 || (tok[0].p[0] != 'u' && tok[0].p[0] != 'g')) {
		diag(ps, lineno, true, "unknown rule type '%s' (only 'u' and "
		     "'g' are supported)", esc(tok[0].p, tok[0].len, e,
		                               sizeof(e)));
		rc = -EINVAL;
		goto out;
	}
	if (ntok < 2) {
		diag(ps, lineno, true, "missing ID after '%c'", tok[0].p[0]);
		rc = -EINVAL;
		goto out;
	}
	if (ntok < 3) {
		diag(ps, lineno, true, "missing path and privileges");
		rc = -EINVAL;
		goto out;
	}
	if (ntok > 2 + 2 * (int)ACL_MAX_PAIRS) {
		diag(ps, lineno, true, "more than %u paths on one line",
		     ACL_MAX_PAIRS);
		rc = -EINVAL;
		goto out;
	}
	if (ntok % 2) {
		diag(ps, lineno, true, "missing privileges for path '%s'",
		     esc(tok[ntok - 1].p, tok[ntok - 1].len, e, sizeof(e)));
		rc = -EINVAL;
		goto out;
	}
	if (tok[0].p[0] == 'g') {
		l.type = ACL_T_GROUP;
		if (tok[1].len == 1 && (tok[1].p[0] == '*' ||
		                        tok[1].p[0] == '=')) {
			diag(ps, lineno, true, "a group rule needs a group "
			     "name, not '%c'", tok[1].p[0]);
			rc = -EINVAL;
			goto out;
		}
	} else if (tok[1].len == 1 && tok[1].p[0] == '*') {
		l.type = ACL_T_ALL;
	} else if (tok[1].len == 1 && tok[1].p[0] == '=') {
		l.type = ACL_T_SELF;
	} else {
		l.type = ACL_T_USER;
	}
	if (l.type == ACL_T_USER || l.type == ACL_T_GROUP) {
		l.id = strndup(tok[1].p, tok[1].len);
		if (!l.id) {
			rc = -ENOMEM;
			goto out;
		}
	}
	l.paths = calloc((size_t)(ntok - 2) / 2, sizeof(*l.paths));
	l.text = strndup(text, textlen);
	if (!l.paths || !l.text) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 2; i < ntok; i += 2) {
		struct acl_rpath *rp = &l.paths[l.npaths];
		const struct token *path = &tok[i], *privs = &tok[i + 1];

		/* The first pair may also be written PRIVS PATH, as in
		 * "u * -rl /archive/private /archive rl": tokens tell paths
		 * (leading '/') from privileges, so this is not a guess. */
		if (i == 2 && looks_like_privs(path) && privs->len &&
		    privs->p[0] == '/') {
			path = &tok[i + 1];
			privs = &tok[i];
		}
		rc = parse_path(ps, lineno, l.type, path, rp);
		if (rc)
			goto out;
		l.npaths++;
		rc = parse_privs(ps, lineno, privs, &rp->pos, &rp->neg);
		if (rc)
			goto out;
	}
	lint_shadowed(ps, &l);
	if (r->nlines == ps->cap) {
		unsigned ncap = ps->cap ? ps->cap * 2 : 16;
		struct acl_line *nl = reallocarray(r->lines, ncap,
		                                   sizeof(*nl));

		if (!nl) {
			rc = -ENOMEM;
			goto out;
		}
		r->lines = nl;
		ps->cap = ncap;
	}
	if (l.type == ACL_T_GROUP)
		r->has_groups = true;
	r->lines[r->nlines++] = l;
	memset(&l, 0, sizeof(l));
out:
	free_line(&l);
	/* A bad line is counted in ps->errors; only ENOMEM stops parsing. */
	return rc == -ENOMEM ? rc : 0;
}

static int parse_logical(struct parser *ps, const char *s, size_t len,
                         unsigned lineno)
{
	struct token tok[MAX_TOKENS];
	size_t i = 0, start;
	int ntok = 0, rc = 0;

	while (len && is_blank(s[len - 1]))
		len--;
	while (i < len && is_blank(s[i]))
		i++;
	start = i;
	while (i < len && ntok < MAX_TOKENS) {
		size_t b = i;

		while (i < len && !is_blank(s[i]))
			i++;
		tok[ntok].p = s + b;
		tok[ntok].len = i - b;
		ntok++;
		while (i < len && is_blank(s[i]))
			i++;
	}
	if (ntok)
		rc = add_line(ps, tok, ntok, lineno, s + start, len - start);
	return rc;
}

void acl_rules_ref(struct acl_rules *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void acl_rules_unref(struct acl_rules *r)
{
	unsigned i;

	if (!r || atomic_fetch_sub_explicit(&r->refs, 1,
	                                    memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < r->nlines; i++)
		free_line(&r->lines[i]);
	acl_uniform_free(r);
	free(r->lines);
	free(r->name);
	free(r);
}

int acl_rules_parse(struct acl_rules **out, const char *name, const char *buf,
                    size_t len, acl_diag_fn *fn, void *arg)
{
	struct parser ps = { .name = name, .fn = fn, .arg = arg };
	char *lb = NULL;           /* the logical line being collected */
	size_t lblen = 0, pos = 0;
	unsigned lineno = 0, first = 0;
	bool bad = false;          /* logical line already reported */
	int rc = 0;

	*out = NULL;
	ps.rules = calloc(1, sizeof(*ps.rules));
	lb = malloc(ACL_MAX_LINE_BYTES);
	if (!ps.rules || !lb) {
		rc = -ENOMEM;
		goto out;
	}
	atomic_init(&ps.rules->refs, 1);
	ps.rules->name = strdup(name);
	if (!ps.rules->name) {
		rc = -ENOMEM;
		goto out;
	}
	if (len > ACL_MAX_FILE_BYTES) {
		diag(&ps, 0, true, "file larger than %u bytes",
		     ACL_MAX_FILE_BYTES);
		goto out;
	}
	while (pos < len) {
		const char *p = buf + pos;
		const char *nl = memchr(p, '\n', len - pos);
		size_t n = nl ? (size_t)(nl - p) : len - pos;
		const char *hash = memchr(p, '#', n);
		bool cont = false;

		pos += n + (nl ? 1 : 0);
		lineno++;
		if (!lblen && !bad)
			first = lineno;
		if (memchr(p, '\0', n)) {
			if (!bad)
				diag(&ps, lineno, true, "NUL byte in line");
			bad = true;
		}
		if (hash)
			n = (size_t)(hash - p);
		while (n && is_blank(p[n - 1]))
			n--;
		if (n && p[n - 1] == '\\') {
			cont = true;
			n--;
		}
		if (!bad && lblen + n + 1 > ACL_MAX_LINE_BYTES) {
			diag(&ps, first, true, "line longer than %u bytes",
			     ACL_MAX_LINE_BYTES);
			bad = true;
		}
		if (!bad) {
			memcpy(lb + lblen, p, n);
			lblen += n;
			if (cont)
				lb[lblen++] = ' ';
		}
		if (cont && pos < len)
			continue;
		if (!bad) {
			rc = parse_logical(&ps, lb, lblen, first);
			if (rc)
				goto out;
		}
		lblen = 0;
		bad = false;
	}
out:
	if (!rc && ps.errors)
		rc = -EINVAL;
	if (!rc && ps.rules)
		rc = acl_uniform_build(ps.rules);
	if (rc) {
		acl_rules_unref(ps.rules);
		ps.rules = NULL;
	}
	free(lb);
	*out = ps.rules;
	return rc;
}

int acl_lint_buf(const char *name, const char *buf, size_t len,
                 acl_diag_fn *fn, void *arg, unsigned *nrules)
{
	struct acl_rules *r = NULL;
	int rc;

	rc = acl_rules_parse(&r, name, buf, len, fn, arg);
	if (nrules)
		*nrules = r ? r->nlines : 0;
	acl_rules_unref(r);
	return rc;
}

int acl_lint(const char *rules_file, acl_diag_fn *fn, void *arg,
             unsigned *nrules)
{
	char why[DMS_TRUST_WHYLEN];
	char *buf = NULL;
	size_t len;
	int rc;

	if (nrules)
		*nrules = 0;
	/* The daemon's own rule for what it will load (trustfile.h). */
	rc = dms_read_trusted(rules_file, ACL_MAX_FILE_BYTES, &buf, &len, NULL,
	                      why, sizeof(why));
	if (rc) {
		if (fn)
			fn(arg, rules_file, 0, true, why);
		else
			dms_log(LOG_ERR, "acl: %s: %s", rules_file, why);
		goto out;
	}
	rc = acl_lint_buf(rules_file, buf, len, fn, arg, nrules);
out:
	free(buf);
	return rc;
}
