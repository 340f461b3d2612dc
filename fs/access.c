/* Who is asking, and may they: the bridge from FUSE requests to acl/.
 *
 * The caller's supplementary groups come from fuse_req_getgroups, which reads
 * /proc: too slow for every read() of a file, so they are kept per process
 * for a second.  Rules are reloaded on SIGHUP and when the rules file
 * changes (checked every two seconds) by a thread of this module. */
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "acl/acl.h"
#include "common/log.h"
#include "fs/fs_i.h"

#define GROUP_SLOTS 256u
#define GROUP_TTL_NS 1000000000ll
#define RELOAD_POLL_S 2

struct group_slot {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	int ngroups;
	int64_t expires_ns;
	gid_t groups[FS_MAX_GROUPS];
};

struct fs_access {
	struct acl *acl;
	void (*on_reload)(void *arg);   /* set before the reloader starts */
	void *on_reload_arg;
	pthread_mutex_t lock;
	struct group_slot slots[GROUP_SLOTS];  /* guarded by lock */
	pthread_t reloader;
	bool stopping;                         /* guarded by lock */
};

/* Posted by the SIGHUP handler (sem_post is async-signal-safe). */
static sem_t reload_sem;

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void on_sighup(int sig)
{
	(void)sig;
	sem_post(&reload_sem);
}

static void *reloader_main(void *arg)
{
	struct fs_access *a = arg;
	struct timespec ts;
	bool stop;

	for (;;) {
		bool hup;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += RELOAD_POLL_S;
		hup = sem_timedwait(&reload_sem, &ts) == 0;
		pthread_mutex_lock(&a->lock);
		stop = a->stopping;
		pthread_mutex_unlock(&a->lock);
		if (stop)
			break;
		if (hup) {
			if (acl_reload(a->acl) == 0) {
				dms_log(LOG_NOTICE, "access rules reloaded (SIGHUP)");
				a->on_reload(a->on_reload_arg);
			} else {
				dms_log(LOG_ERR, "access rules not reloaded: keeping the "
				        "previous rules");
			}
		} else if (acl_maybe_reload(a->acl) == 1) {
			dms_log(LOG_NOTICE, "access rules reloaded (file changed)");
			a->on_reload(a->on_reload_arg);
		}
	}
	return NULL;
}

int fs_access_open(struct fs_access **out, const char *rules_file,
                   void (*on_reload)(void *arg), void *arg)
{
	struct fs_access *a = calloc(1, sizeof(*a));
	struct sigaction sa;
	int rc = -ENOMEM;

	if (!a) {
		dms_log(LOG_ERR, "access rules %s: %s", rules_file, strerror(ENOMEM));
		goto fail;
	}
	a->on_reload = on_reload;
	a->on_reload_arg = arg;
	rc = acl_open(&a->acl, rules_file);
	if (rc)
		goto fail;
	pthread_mutex_init(&a->lock, NULL);
	sem_init(&reload_sem, 0, 0);
	if (pthread_create(&a->reloader, NULL, reloader_main, a) != 0) {
		rc = -EAGAIN;
		dms_log(LOG_ERR, "cannot start the access rules reloader: %s",
		        strerror(-rc));
		goto fail_acl;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sighup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
	*out = a;
	return 0;
fail_acl:
	acl_close(a->acl);
	pthread_mutex_destroy(&a->lock);
fail:
	free(a);
	return rc;
}

void fs_access_close(struct fs_access *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_mutex_unlock(&a->lock);
	sem_post(&reload_sem);
	pthread_join(a->reloader, NULL);
	signal(SIGHUP, SIG_DFL);
	acl_close(a->acl);
	pthread_mutex_destroy(&a->lock);
	free(a);
}

int fs_access_caller(struct fs_access *a, fuse_req_t req, struct fs_caller *c)
{
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	struct group_slot *s;
	int64_t now = mono_ns();
	int n;

	c->ac.uid = ctx->uid;
	c->ac.gid = ctx->gid;
	c->ac.groups = c->groups;
	c->ac.ngroups = 0;
	if (!a)
		return 0;
	s = &a->slots[(unsigned)ctx->pid % GROUP_SLOTS];
	pthread_mutex_lock(&a->lock);
	if (s->pid == ctx->pid && s->uid == ctx->uid && s->gid == ctx->gid &&
	    s->expires_ns > now) {
		memcpy(c->groups, s->groups, (size_t)s->ngroups * sizeof(gid_t));
		c->ac.ngroups = s->ngroups;
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	pthread_mutex_unlock(&a->lock);
	n = fuse_req_getgroups(req, FS_MAX_GROUPS, c->groups);
	if (n < 0) {
		/* Without the groups a group rule's denial could be missed. */
		dms_log(LOG_WARNING, "cannot read the groups of pid %d: %s",
		        (int)ctx->pid, strerror(-n));
		return -EACCES;
	}
	c->ac.ngroups = n > FS_MAX_GROUPS ? FS_MAX_GROUPS : n;
	pthread_mutex_lock(&a->lock);
	s->pid = ctx->pid;
	s->uid = ctx->uid;
	s->gid = ctx->gid;
	s->ngroups = c->ac.ngroups;
	memcpy(s->groups, c->groups, (size_t)c->ac.ngroups * sizeof(gid_t));
	s->expires_ns = now + GROUP_TTL_NS;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

int fs_access_check(struct fs_access *a, const struct fs_caller *c,
                    const char *path, unsigned want)
{
	bool ok;

	if (!a)
		return 0;
	ok = want ? (acl_rights(a->acl, &c->ac, path) & want) == want
	          : acl_may_see(a->acl, &c->ac, path);
	if (ok)
		return 0;
	acl_denied(a->acl, &c->ac, path, want ? want : ACL_LOOKUP);
	return -EACCES;
}

bool fs_access_visible(struct fs_access *a, const struct fs_caller *c,
                       const char *path)
{
	return !a || acl_may_see(a->acl, &c->ac, path);
}

bool fs_access_may(struct fs_access *a, const struct fs_caller *c,
                   const char *path, unsigned want)
{
	return !a || (acl_may_see(a->acl, &c->ac, path) &&
	              (acl_rights(a->acl, &c->ac, path) & want) == want);
}

bool fs_access_uniform(struct fs_access *a, const char *path)
{
	return !a || acl_uniform(a->acl, path);
}

void fs_access_stats(struct fs_access *a, struct acl_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (a)
		acl_get_stats(a->acl, st);
}

int fs_access_reload(struct fs_access *a, const char *rules_file,
                     acl_diag_fn *fn, void *arg)
{
	int rc = acl_lint(rules_file, fn, arg, NULL);

	if (rc == 0)
		rc = acl_reload(a->acl);
	if (rc == 0) {
		dms_log(LOG_NOTICE, "access rules reloaded (dmsctl reload)");
		a->on_reload(a->on_reload_arg);
	} else {
		dms_log(LOG_ERR, "access rules %s not reloaded (dmsctl reload): "
		        "keeping the previous rules", rules_file);
	}
	return rc;
}
