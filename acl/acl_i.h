#ifndef DMS_ACL_I_H
#define DMS_ACL_I_H
/*
 * Private to acl/ (and its tests and fuzzer).
 *
 * rules.c  parses a rules file into an immutable, refcounted struct
 *          acl_rules.
 * eval.c   resolves a caller's names (struct acl_ident), compiles the rules
 *          that apply to one caller into an immutable struct acl_view
 *          (a hash of rule paths and their ancestors, each with its
 *          precomputed rights), evaluates paths against a view, and has the
 *          slow reference evaluator used by acl_explain and the fuzzer.
 * acl.c    the handle: the per-caller view cache, reloads, denial log.
 *
 * Immutable objects (rules, views) are shared between threads by
 * reference counts; nothing in them changes after they are built.
 */
#include "acl/acl.h"

#include <stdatomic.h>
#include <sys/stat.h>

/* Name resolution, replaceable for tests.  Each returns 0 with the
 * NUL-terminated name in buf, -ENOENT if the id has no name, any other
 * -errno if the lookup failed (the caller is then denied everything). */
struct acl_resolver {
	int (*user)(void *arg, uid_t uid, char *buf, size_t len);
	int (*group)(void *arg, gid_t gid, char *buf, size_t len);
	void *arg;
};

/* Longest user or group name accepted from NSS (longer: lookup failure). */
#define ACL_NAME_MAX 256

/* Replaces the NSS resolver and drops cached callers.  Call before other
 * threads use a; r is copied. */
void acl_set_resolver(struct acl *a, const struct acl_resolver *r);

/* ---- rules.c ---- */

enum acl_type { ACL_T_ALL, ACL_T_SELF, ACL_T_USER, ACL_T_GROUP };

struct acl_rpath {
	char *path;      /* normalized, no trailing '/' except "/" */
	uint32_t len;
	bool subst;      /* contains "@=" (only in ACL_T_SELF lines) */
	uint8_t pos;     /* granted ACL_* bits */
	uint8_t neg;     /* denied ACL_* bits */
};

struct acl_line {
	enum acl_type type;
	char *id;        /* user or group name; NULL for '*' and '=' */
	unsigned lineno; /* first physical line */
	char *text;      /* logical line, comment removed, trimmed */
	unsigned npaths;
	struct acl_rpath *paths;
};

struct acl_rules {
	atomic_uint refs;
	char *name;      /* file name or buffer name, for messages */
	unsigned nlines;
	struct acl_line *lines;
	bool has_groups; /* any 'g' line: only then are group names looked up */
	/* uniform.c: sorted paths where rights depend on the caller (at and
	 * below varies_at[i]; at varies_below[j] through a path under it). */
	char **varies_at, **varies_below;
	size_t nvaries_at, nvaries_below;
};

/* Parses buf into *out (refcount 1).  Diagnostics go to fn (NULL:
 * dms_log).  -EINVAL if there was any error, -ENOMEM. */
int acl_rules_parse(struct acl_rules **out, const char *name, const char *buf,
                    size_t len, acl_diag_fn *fn, void *arg);


void acl_rules_ref(struct acl_rules *r);
void acl_rules_unref(struct acl_rules *r);

/* True if p[0..len) is '/' or '/'-separated non-empty segments other than
 * "." and "..", with no trailing '/'. */
bool acl_path_ok(const char *p, size_t len);

/* True if rule path p (length plen) matches target t (length tlen). */
bool acl_path_match(const char *p, size_t plen, const char *t, size_t tlen);

/* ---- uniform.c ---- */

/* Fills r->varies_*; -ENOMEM.  Freed by acl_rules_unref. */
int acl_uniform_build(struct acl_rules *r);
void acl_uniform_free(struct acl_rules *r);
/* True if every caller has the same rights at path (see acl_uniform). */
bool acl_uniform_check(const struct acl_rules *r, const char *path);

/* ---- eval.c ---- */

struct acl_ident {
	char *user;      /* NULL: uid has no passwd entry */
	bool user_safe;  /* may stand for "@=" */
	char **groups;   /* names of the caller's gids that have one */
	int ngroups;
	bool nss_error;  /* a lookup failed: deny everything */
};

/* -ENOMEM, -EINVAL (bad caller); NSS failures set id->nss_error. */
int acl_ident_resolve(const struct acl_resolver *res,
                      const struct acl_caller *c, bool need_groups,
                      struct acl_ident *id);
/* An identity given by names, with no lookup (dmsctl acl check -g): a
 * user who has no local account.  0 or -ENOMEM. */
int acl_ident_from_names(const char *user, const char *const *groups,
                         int ngroups, struct acl_ident *id);
void acl_ident_free(struct acl_ident *id);

/* Whether rule line l applies to the caller id. */
bool acl_line_applies(const struct acl_line *l, const struct acl_ident *id);

struct acl_view;

/* Compiles the rules that apply to id. */
int acl_view_build(struct acl_view **out, const struct acl_rules *r,
                   const struct acl_ident *id);
void acl_view_free(struct acl_view *v);

/* Rights including implicit traversal; 0 for bad paths. */
unsigned acl_view_rights(const struct acl_view *v, const char *path);

/* Called by acl_eval_ref for every applying line that has a path matching
 * the target, with that path's grants and denials. */
typedef void acl_decide_fn(void *arg, const struct acl_line *line,
                           unsigned pos, unsigned neg);

/* Reference evaluation (straight from the definition, slow): explicit
 * rights of id on path (no implicit traversal); fn may be NULL. */
unsigned acl_eval_ref(const struct acl_rules *r, const struct acl_ident *id,
                      const char *path, acl_decide_fn *fn, void *arg);

#endif
