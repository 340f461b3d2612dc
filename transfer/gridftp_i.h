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

/* An operation monitor's lock and condition; the condition waits on the
 * monotonic clock, so deadlines do not jump with the wall clock. */
static inline void xfer_gftp_monitor_init(pthread_mutex_t *mu,
                                          pthread_cond_t *cv)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(mu, NULL);
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
