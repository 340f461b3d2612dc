#ifndef DMS_GRIDFTP_I_H
#define DMS_GRIDFTP_I_H
/*
 * Private to gridftp.c and gridftp_write.c: the small helpers both sides of
 * the GridFTP backend use (monotonic time for deadlines, server reply
 * text).  Static inline: nothing here is a symbol of the module.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

/* Globus headers declare "f()" functions (see gridftp.c). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <globus_ftp_client.h>
#pragma GCC diagnostic pop

static inline void xfer_gftp_ts_now(struct timespec *t)
{
	clock_gettime(CLOCK_MONOTONIC, t);
}

static inline void xfer_gftp_ts_add_ms(struct timespec *t, long ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static inline bool xfer_gftp_ts_passed(const struct timespec *now,
                                       const struct timespec *t)
{
	return now->tv_sec > t->tv_sec ||
	       (now->tv_sec == t->tv_sec && now->tv_nsec >= t->tv_nsec);
}

/* What every operation's monitor has: the first member of the read and
 * the write op structs, so the op a callback gets as arg is also a
 * pointer to its monitor. */
struct xfer_gftp_mon {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	globus_ftp_client_handle_t *handle;
	/* below: mu */
	bool done;                 /* complete callback has run */
	globus_object_t *err;      /* copy of the first error seen */
	struct timespec progress;  /* moved by every callback */
};

/* The condition waits on the monotonic clock, so deadlines do not jump
 * with the wall clock. */
static inline void xfer_gftp_mon_init(struct xfer_gftp_mon *m,
                                      globus_ftp_client_handle_t *h)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&m->mu, NULL);
	m->handle = h;
	xfer_gftp_ts_now(&m->progress);
}

static inline void xfer_gftp_mon_destroy(struct xfer_gftp_mon *m)
{
	if (m->err != NULL)
		globus_object_free(m->err);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
}

/* Keeps the first error; later ones are usually its consequences. */
static inline void xfer_gftp_mon_error_locked(struct xfer_gftp_mon *m,
                                              globus_object_t *err)
{
	if (err != NULL && m->err == NULL)
		m->err = globus_object_copy(err);
}

/* Complete callback of every operation; arg is the op. */
static inline void xfer_gftp_complete_cb(void *arg,
                                         globus_ftp_client_handle_t *h,
                                         globus_object_t *err)
{
	struct xfer_gftp_mon *m = arg;

	(void)h;
	pthread_mutex_lock(&m->mu);
	xfer_gftp_mon_error_locked(m, err);
	m->done = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

/* Copies text into out on one line (server replies span several). */
static inline void xfer_gftp_flatten(const char *in, char *out, size_t cap)
{
	size_t n = 0;

	for (; in != NULL && *in != '\0' && n + 1 < cap; in++)
		out[n++] = (*in == '\r' || *in == '\n') ? ' ' : *in;
	out[n] = '\0';
}

/* Whether a server's reply text says needle (any case); the files define
 * _GNU_SOURCE for strcasestr. */
static inline bool xfer_gftp_has(const char *text, const char *needle)
{
	return strcasestr(text, needle) != NULL;
}

#endif
