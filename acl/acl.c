/* acl/acl.c: the handle: current rule set, per-caller cache, reloads,
 * denial accounting. */
#include "acl/acl_i.h"
#include "common/log.h"
#include "common/trustfile.h"

#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The caller cache: SETS x WAYS compiled views, each valid for TTL (or
 * ERR_TTL after an NSS failure, so a directory outage heals quickly).
 * Bounded, so memory is bounded by rules size x SETS x WAYS. */
#define SETS 64
#define WAYS 4
#define TTL_NS (30ull * 1000000000ull)
#define ERR_TTL_NS (2ull * 1000000000ull)
/* Largest getpw*_r/getgr*_r buffer tried (LDAP groups can be huge). */
#define NSS_BUF_MAX (16u << 20)

_Static_assert((SETS & (SETS - 1)) == 0, "SETS must be a power of two");

/* One compiled caller; immutable after it is built except refs. */
struct cached {
	atomic_uint refs;
	uint64_t key;          /* hash of uid, gid, groups */
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t *groups;
	unsigned gen;          /* rule set generation it was built from */
	uint64_t expires;      /* CLOCK_MONOTONIC ns */
	char *user;            /* for messages; NULL if unknown */
	struct acl_view *view;
};

struct cset {
	pthread_mutex_t lock;
	struct cached *way[WAYS];   /* protected by lock */
};

struct acl {
	char *file;                     /* NULL: opened from a buffer */
	struct acl_resolver res;        /* set before threads start */

	pthread_mutex_t rules_lock;
	struct acl_rules *rules;        /* protected by rules_lock */
	atomic_uint gen;                /* written under rules_lock */

	pthread_mutex_t reload_lock;    /* serializes reloads */
	struct stat seen;               /* protected by reload_lock */
	bool seen_valid;                /* protected by reload_lock */
	int seen_err;                   /* protected by reload_lock */
	char seen_why[DMS_TRUST_WHYLEN]; /* protected by reload_lock */

	struct cset sets[SETS];

	pthread_mutex_t log_lock;
	uint64_t log_sec;               /* protected by log_lock */
	unsigned log_count;             /* protected by log_lock */
	uint64_t log_suppressed;        /* protected by log_lock */

	atomic_uint_fast64_t reloads, reload_failures, denials,
	                     denials_logged, compiled, nss_errors;
	atomic_uint_fast64_t nss_log_sec;   /* last NSS warning, seconds */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	/* Coarse is enough for a 30 s TTL and costs a few ns (vDSO). */
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- NSS ---- */

/* Not-found codes per getpwnam_r(3) NOTES. */
static bool nss_not_found(int e)
{
	return e == 0 || e == ENOENT || e == ESRCH || e == EBADF || e == EPERM;
}

static int nss_copy(const char *name, char *buf, size_t len)
{
	size_t n = strlen(name);

	if (n >= len)
		return -ENAMETOOLONG;
	memcpy(buf, name, n + 1);
	return 0;
}

/* The name of a uid (or, with group, a gid) from NSS, with a buffer grown
 * as NSS asks. */
static int nss_name(bool group, unsigned id, char *buf, size_t len)
{
	struct passwd pw, *pres = NULL;
	struct group gr, *gres = NULL;
	size_t sz = 1024;
	char *b = NULL;
	int rc, e, tries = 0;

	for (;;) {
		char *nb = realloc(b, sz);

		if (!nb) {
			rc = -ENOMEM;
			goto out;
		}
		b = nb;
		e = group ? getgrgid_r((gid_t)id, &gr, b, sz, &gres)
		          : getpwuid_r((uid_t)id, &pw, b, sz, &pres);
		if (e == ERANGE && sz < NSS_BUF_MAX)
			sz *= 2;
		else if (e != EINTR || ++tries > 3)
			break;
	}
	if (pres || gres)
		rc = nss_copy(group ? gr.gr_name : pw.pw_name, buf, len);
	else
		rc = nss_not_found(e) ? -ENOENT : -e;
out:
	free(b);
	return rc;
}

static int nss_user(void *arg, uid_t uid, char *buf, size_t len)
{
	return nss_name(false, (unsigned)uid, buf, len);
}

static int nss_group(void *arg, gid_t gid, char *buf, size_t len)
{
	return nss_name(true, (unsigned)gid, buf, len);
}

static const struct acl_resolver nss_resolver = { nss_user, nss_group, NULL };

/* ---- caller cache ---- */

static uint64_t caller_key(const struct acl_caller *c)
{
	uint64_t h = 0xcbf29ce484222325ull;
	int i, n = c->ngroups > 0 && c->groups ? c->ngroups : 0;

	/* Word at a time: LDAP users can have hundreds of groups, and this
	 * runs on every check. */
	h = (h ^ (uint64_t)c->uid) * 0x100000001b3ull;
	h = (h ^ (uint64_t)c->gid) * 0x100000001b3ull;
	h = (h ^ (uint64_t)(unsigned)c->ngroups) * 0x100000001b3ull;
	for (i = 0; i < n; i++)
		h = (h ^ (uint64_t)c->groups[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

static bool caller_eq(const struct cached *e, uint64_t key,
                      const struct acl_caller *c)
{
	return e->key == key && e->uid == c->uid && e->gid == c->gid &&
	       e->ngroups == c->ngroups &&
	       (!c->ngroups || !memcmp(e->groups, c->groups,
	                               (size_t)c->ngroups * sizeof(gid_t)));
}

static void cached_put(struct cached *e)
{
	if (!e || atomic_fetch_sub_explicit(&e->refs, 1,
	                                    memory_order_acq_rel) != 1)
		return;
	acl_view_free(e->view);
	free(e->groups);
	free(e->user);
	free(e);
}

static struct acl_rules *rules_get(struct acl *a, unsigned *gen)
{
	struct acl_rules *r;

	pthread_mutex_lock(&a->rules_lock);
	r = a->rules;
	acl_rules_ref(r);
	*gen = atomic_load(&a->gen);
	pthread_mutex_unlock(&a->rules_lock);
	return r;
}

static int cached_build(struct acl *a, const struct acl_caller *c,
                        uint64_t key, struct cached **out)
{
	struct acl_ident id = { 0 };
	struct cached *e = NULL;
	struct acl_rules *r;
	unsigned gen;
	int rc;

	*out = NULL;
	r = rules_get(a, &gen);
	rc = acl_ident_resolve(&a->res, c, r->has_groups, &id);
	if (rc)
		goto out;
	e = calloc(1, sizeof(*e));
	if (!e) {
		rc = -ENOMEM;
		goto out_id;
	}
	atomic_init(&e->refs, 1);
	e->key = key;
	e->uid = c->uid;
	e->gid = c->gid;
	e->ngroups = c->ngroups;
	e->gen = gen;
	e->expires = now_ns() + (id.nss_error ? ERR_TTL_NS : TTL_NS);
	if (c->ngroups) {
		e->groups = malloc((size_t)c->ngroups * sizeof(gid_t));
		if (!e->groups) {
			rc = -ENOMEM;
			goto out_id;
		}
		memcpy(e->groups, c->groups, (size_t)c->ngroups * sizeof(gid_t));
	}
	if (id.user) {
		e->user = strdup(id.user);
		if (!e->user) {
			rc = -ENOMEM;
			goto out_id;
		}
	}
	if (id.nss_error) {
		uint64_t n = atomic_fetch_add(&a->nss_errors, 1) + 1;
		uint64_t sec = now_ns() / 1000000000ull;
		uint64_t last = atomic_load(&a->nss_log_sec);

		/* A directory outage hits every caller: one line a second. */
		if (sec != last && atomic_compare_exchange_strong(
		                       &a->nss_log_sec, &last, sec))
			dms_log(LOG_WARNING, "acl: name lookup failed for uid "
			        "%u gid %u; denying it everything for %llu s "
			        "(%llu lookup failures so far)",
			        (unsigned)c->uid, (unsigned)c->gid,
			        ERR_TTL_NS / 1000000000ull,
			        (unsigned long long)n);
	}
	rc = acl_view_build(&e->view, r, &id);
	if (rc)
		goto out_id;
	atomic_fetch_add(&a->compiled, 1);
	*out = e;
	e = NULL;
out_id:
	acl_ident_free(&id);
out:
	cached_put(e);
	acl_rules_unref(r);
	return rc;
}

/* The valid entry for c in set s, or NULL.  Caller holds s->lock. */
static struct cached *cached_find(struct cset *s, uint64_t key,
                                  const struct acl_caller *c, unsigned gen,
                                  uint64_t now)
{
	struct cached *x;
	int w;

	for (w = 0; w < WAYS; w++) {
		x = s->way[w];
		if (x && x->gen == gen && now < x->expires &&
		    caller_eq(x, key, c))
			return x;
	}
	return NULL;
}

/* Puts e (a new reference is taken) into set s, replacing an entry for
 * the same caller, an empty, stale or expired one, or the oldest. */
static void cached_insert(struct cset *s, struct cached *e,
                          const struct acl_caller *c, uint64_t now)
{
	struct cached *old;
	int w, victim = 0;

	pthread_mutex_lock(&s->lock);
	for (w = 0; w < WAYS; w++) {
		struct cached *x = s->way[w];

		if (!x || x->gen != e->gen || now >= x->expires ||
		    caller_eq(x, e->key, c)) {
			victim = w;
			break;
		}
		if (x->expires < s->way[victim]->expires)
			victim = w;
	}
	old = s->way[victim];
	s->way[victim] = e;
	atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&s->lock);
	cached_put(old);
}

static void cache_flush(struct acl *a)
{
	int i, w;

	for (i = 0; i < SETS; i++) {
		struct cset *s = &a->sets[i];

		pthread_mutex_lock(&s->lock);
		for (w = 0; w < WAYS; w++) {
			cached_put(s->way[w]);
			s->way[w] = NULL;
		}
		pthread_mutex_unlock(&s->lock);
	}
}

/* ---- open, reload ---- */

static void install(struct acl *a, struct acl_rules *r)
{
	struct acl_rules *old;

	pthread_mutex_lock(&a->rules_lock);
	old = a->rules;
	a->rules = r;
	atomic_fetch_add_explicit(&a->gen, 1, memory_order_release);
	pthread_mutex_unlock(&a->rules_lock);
	acl_rules_unref(old);
}

/* Reads and parses the file; installs it if it parses.  Remembers what
 * was read so acl_maybe_reload does not retry an unchanged broken file.
 * A file that cannot be read or is not trusted is retried at every poll
 * (fixing a parent directory does not change the file), so with
 * quiet_repeat the same failure for the same reason is not logged again;
 * *repeated then says so.  Caller holds reload_lock. */
static int do_reload(struct acl *a, bool quiet_repeat, bool *repeated)
{
	char why[DMS_TRUST_WHYLEN];
	struct acl_rules *r = NULL;
	struct stat st;
	char *buf = NULL;
	size_t len;
	int rc;

	*repeated = false;
	rc = dms_read_trusted(a->file, ACL_MAX_FILE_BYTES, &buf, &len, &st,
	                      why, sizeof(why));
	if (rc) {
		*repeated = quiet_repeat && rc == a->seen_err &&
		            !strcmp(why, a->seen_why);
		a->seen_err = rc;
		memcpy(a->seen_why, why, sizeof(why));
		if (!*repeated)
			dms_log(LOG_ERR, "acl: %s: not loaded: %s%s", a->file, why,
			        a->rules ? "; keeping the previous rules" : "");
		goto out;
	}
	a->seen = st;
	a->seen_valid = true;
	a->seen_err = 0;
	rc = acl_rules_parse(&r, a->file, buf, len, NULL, NULL);
	if (rc) {
		dms_log(LOG_ERR, "acl: %s: rules not loaded%s", a->file,
		        a->rules ? "; keeping the previous rules" : "");
		goto out;
	}
	install(a, r);
	dms_log(LOG_INFO, "acl: %s: %u rules loaded", a->file, r->nlines);
out:
	free(buf);
	return rc;
}

static int acl_new(struct acl **out, const char *file)
{
	struct acl *a = calloc(1, sizeof(*a));
	int rc = 0, i;

	*out = NULL;
	if (!a) {
		rc = -ENOMEM;
		goto out;
	}
	a->res = nss_resolver;
	pthread_mutex_init(&a->rules_lock, NULL);
	pthread_mutex_init(&a->reload_lock, NULL);
	pthread_mutex_init(&a->log_lock, NULL);
	for (i = 0; i < SETS; i++)
		pthread_mutex_init(&a->sets[i].lock, NULL);
	if (file) {
		a->file = strdup(file);
		if (!a->file) {
			acl_close(a);
			a = NULL;
			rc = -ENOMEM;
		}
	}
out:
	*out = a;
	return rc;
}

int acl_open(struct acl **out, const char *rules_file)
{
	struct acl *a;
	bool repeated;
	int rc;

	*out = NULL;
	rc = acl_new(&a, rules_file);
	if (rc) {
		dms_log(LOG_ERR, "acl: %s: %s", rules_file, strerror(-rc));
		goto out;
	}
	pthread_mutex_lock(&a->reload_lock);
	rc = do_reload(a, false, &repeated);
	pthread_mutex_unlock(&a->reload_lock);
	if (rc) {
		acl_close(a);
		goto out;
	}
	*out = a;
out:
	return rc;
}

int acl_open_buf(struct acl **out, const char *name, const char *buf,
                 size_t len, acl_diag_fn *fn, void *arg)
{
	struct acl_rules *r = NULL;
	struct acl *a = NULL;
	int rc;

	*out = NULL;
	rc = acl_rules_parse(&r, name, buf, len, fn, arg);
	if (rc)
		goto out;
	rc = acl_new(&a, NULL);
	if (rc)
		goto out;
	install(a, r);
	r = NULL;
	*out = a;
out:
	acl_rules_unref(r);
	return rc;
}

void acl_close(struct acl *a)
{
	int i;

	if (!a)
		return;
	cache_flush(a);
	for (i = 0; i < SETS; i++)
		pthread_mutex_destroy(&a->sets[i].lock);
	acl_rules_unref(a->rules);
	pthread_mutex_destroy(&a->rules_lock);
	pthread_mutex_destroy(&a->reload_lock);
	pthread_mutex_destroy(&a->log_lock);
	free(a->file);
	free(a);
}

int acl_reload(struct acl *a)
{
	bool repeated;
	int rc = -ENOENT;

	if (!a->file)
		goto out;
	pthread_mutex_lock(&a->reload_lock);
	rc = do_reload(a, false, &repeated);
	pthread_mutex_unlock(&a->reload_lock);
	atomic_fetch_add(rc ? &a->reload_failures : &a->reloads, 1);
out:
	return rc;
}

static bool same_file(const struct stat *x, const struct stat *y)
{
	return x->st_dev == y->st_dev && x->st_ino == y->st_ino &&
	       x->st_size == y->st_size &&
	       x->st_mtim.tv_sec == y->st_mtim.tv_sec &&
	       x->st_mtim.tv_nsec == y->st_mtim.tv_nsec &&
	       x->st_ctim.tv_sec == y->st_ctim.tv_sec &&
	       x->st_ctim.tv_nsec == y->st_ctim.tv_nsec;
}

int acl_maybe_reload(struct acl *a)
{
	struct stat st;
	bool repeated;
	int rc = 0;

	if (!a->file)
		goto out;
	pthread_mutex_lock(&a->reload_lock);
	if (stat(a->file, &st) < 0) {
		rc = -errno;
		if (rc == a->seen_err) {
			rc = 0;    /* reported already */
		} else {
			a->seen_err = rc;
			atomic_fetch_add(&a->reload_failures, 1);
			dms_log(LOG_ERR, "acl: %s: %s; keeping the previous "
			        "rules", a->file, strerror(-rc));
		}
		goto out_unlock;
	}
	if (a->seen_valid && !a->seen_err && same_file(&st, &a->seen))
		goto out_unlock;
	rc = do_reload(a, true, &repeated);
	if (repeated) {
		rc = 0;    /* reported already */
		goto out_unlock;
	}
	atomic_fetch_add(rc ? &a->reload_failures : &a->reloads, 1);
	if (!rc)
		rc = 1;
out_unlock:
	pthread_mutex_unlock(&a->reload_lock);
out:
	return rc;
}

void acl_set_resolver(struct acl *a, const struct acl_resolver *r)
{
	a->res = *r;
	cache_flush(a);
}

/* ---- checks ---- */

unsigned acl_rights(struct acl *a, const struct acl_caller *c,
                    const char *path)
{
	uint64_t key = caller_key(c), now = now_ns();
	struct cset *s = &a->sets[key & (SETS - 1)];
	unsigned gen = atomic_load_explicit(&a->gen, memory_order_acquire);
	struct cached *e;
	unsigned r = 0;

	/* Evaluating under the set lock (~50 ns) instead of taking a
	 * reference keeps the shared entry read-only: with many threads
	 * checking for one user, a refcount would bounce between cores. */
	pthread_mutex_lock(&s->lock);
	e = cached_find(s, key, c, gen, now);
	if (e)
		r = acl_view_rights(e->view, path);
	pthread_mutex_unlock(&s->lock);
	if (e)
		goto out;
	/* Built without any lock held: NSS may take milliseconds.  Two
	 * threads may build the same caller; the last one stays cached. */
	if (cached_build(a, c, key, &e))
		goto out;
	r = acl_view_rights(e->view, path);
	cached_insert(s, e, c, now);
	cached_put(e);
out:
	return r;
}

bool acl_may_see(struct acl *a, const struct acl_caller *c, const char *path)
{
	return acl_rights(a, c, path) != 0;
}

bool acl_uniform(struct acl *a, const char *path)
{
	unsigned gen;
	struct acl_rules *r = rules_get(a, &gen);
	bool uniform = acl_uniform_check(r, path);

	acl_rules_unref(r);
	return uniform;
}

struct decision {
	const struct acl_line *line;
	unsigned pos, neg;
};

struct decisions {
	struct decision d[64];
	unsigned n;
	bool overflow;
};

static void collect(void *arg, const struct acl_line *line, unsigned pos,
                    unsigned neg)
{
	struct decisions *ds = arg;

	if (ds->n == sizeof(ds->d) / sizeof(ds->d[0])) {
		ds->overflow = true;
		return;
	}
	ds->d[ds->n++] = (struct decision){ line, pos, neg };
}

/* c: a caller to resolve; else named, an identity given by names. */
static int explain(struct acl *a, const struct acl_caller *c,
                   const struct acl_named *named, const char *path,
                   acl_why_fn *fn, void *arg, unsigned *rights)
{
	struct acl_ident id = { 0 };
	struct acl_view *v = NULL;
	struct decisions *ds = NULL;
	struct acl_rules *r;
	unsigned gen, explicit, all, b, i;
	int rc;

	*rights = 0;
	r = rules_get(a, &gen);
	if (!acl_path_ok(path, strlen(path))) {
		rc = -EINVAL;
		goto out;
	}
	ds = calloc(1, sizeof(*ds));
	if (!ds) {
		rc = -ENOMEM;
		goto out;
	}
	rc = c ? acl_ident_resolve(&a->res, c, r->has_groups, &id)
	       : acl_ident_from_names(named->user, named->groups,
	                              named->ngroups, &id);
	if (rc)
		goto out;
	if (id.nss_error) {
		rc = -EIO;
		goto out_id;
	}
	/* The same rule set for both, even if a reload runs meanwhile. */
	rc = acl_view_build(&v, r, &id);
	if (rc)
		goto out_id;
	all = acl_view_rights(v, path);
	explicit = acl_eval_ref(r, &id, path, collect, ds);
	if (ds->overflow)
		dms_log(LOG_WARNING, "acl: explain: more than %zu rules "
		        "decide on %s; listing the first ones",
		        sizeof(ds->d) / sizeof(ds->d[0]), path);
	for (b = 1; b <= ACL_RENAME; b <<= 1) {
		struct acl_why w = { .right = b, .file = r->name };

		for (i = 0; i < ds->n; i++) {
			if (!((ds->d[i].pos | ds->d[i].neg) & b))
				continue;
			w.how = ds->d[i].neg & b ? ACL_DENIED : ACL_GRANTED;
			w.line = ds->d[i].line->lineno;
			w.text = ds->d[i].line->text;
			if (fn)
				fn(arg, &w);
		}
		if ((all & b) && !(explicit & b)) {
			w = (struct acl_why){ .right = b, .how = ACL_IMPLICIT };
			if (fn)
				fn(arg, &w);
		}
	}
	*rights = all;
out_id:
	acl_ident_free(&id);
out:
	acl_view_free(v);
	free(ds);
	acl_rules_unref(r);
	return rc;
}

int acl_explain(struct acl *a, const struct acl_caller *c, const char *path,
                acl_why_fn *fn, void *arg, unsigned *rights)
{
	return explain(a, c, NULL, path, fn, arg, rights);
}

int acl_explain_named(struct acl *a, const struct acl_named *who,
                      const char *path, acl_why_fn *fn, void *arg,
                      unsigned *rights)
{
	return explain(a, NULL, who, path, fn, arg, rights);
}

/* ---- denials, stats ---- */

static void esc_path(const char *p, char *out, size_t cap)
{
	size_t o = 0;

	for (; *p && o + 5 < cap; p++) {
		unsigned char ch = (unsigned char)*p;

		if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
			out[o++] = (char)ch;
		} else {
			snprintf(out + o, cap - o, "\\x%02x", ch);
			o += 4;
		}
	}
	if (*p && o + 4 <= cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

void acl_denied(struct acl *a, const struct acl_caller *c, const char *path,
                unsigned wanted)
{
	char ep[1024], user[ACL_NAME_MAX * 4 + 8] = "?", want[ACL_RIGHTS_STRLEN];
	uint64_t sec = now_ns() / 1000000000ull, suppressed = 0;
	struct cached *e;
	bool log = false;

	atomic_fetch_add_explicit(&a->denials, 1, memory_order_relaxed);
	pthread_mutex_lock(&a->log_lock);
	if (sec != a->log_sec) {
		suppressed = a->log_suppressed;
		a->log_suppressed = 0;
		a->log_count = 0;
		a->log_sec = sec;
	}
	if (a->log_count < ACL_DENIAL_LOG_PER_SEC) {
		a->log_count++;
		log = true;
	} else {
		a->log_suppressed++;
	}
	pthread_mutex_unlock(&a->log_lock);
	if (suppressed)
		dms_log(LOG_NOTICE, "acl: %llu denial messages suppressed",
		        (unsigned long long)suppressed);
	if (!log)
		goto out;
	atomic_fetch_add_explicit(&a->denials_logged, 1, memory_order_relaxed);
	{
		uint64_t key = caller_key(c);
		struct cset *s = &a->sets[key & (SETS - 1)];

		/* Only what is cached: never NSS from here. */
		pthread_mutex_lock(&s->lock);
		e = cached_find(s, key, c, atomic_load(&a->gen), now_ns());
		if (e && e->user)
			esc_path(e->user, user, sizeof(user));
		pthread_mutex_unlock(&s->lock);
	}
	esc_path(path, ep, sizeof(ep));
	acl_rights_str(wanted, want);
	dms_log(LOG_NOTICE, "acl: denied %s on %s to user %s (uid %u)", want,
	        ep, user, (unsigned)c->uid);
out:
	return;
}

void acl_get_stats(struct acl *a, struct acl_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&a->rules_lock);
	st->rules = a->rules ? a->rules->nlines : 0;
	st->generation = atomic_load(&a->gen);
	pthread_mutex_unlock(&a->rules_lock);
	st->reloads = atomic_load(&a->reloads);
	st->reload_failures = atomic_load(&a->reload_failures);
	st->denials = atomic_load(&a->denials);
	st->denials_logged = atomic_load(&a->denials_logged);
	st->callers_compiled = atomic_load(&a->compiled);
	st->nss_errors = atomic_load(&a->nss_errors);
}

void acl_rights_str(unsigned rights, char out[ACL_RIGHTS_STRLEN])
{
	static const char letters[] = "lrwidn";
	int i, o = 0;

	for (i = 0; i < 6; i++)
		if (rights & (1u << i))
			out[o++] = letters[i];
	if (!o) {
		memcpy(out, "none", 5);
		return;
	}
	out[o] = '\0';
}
