#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define HELD_MAX 64
#define LINE_MAX_LEN 2048

/* Written before threads start (or under held_lock), read afterwards. */
static bool log_debug;
static bool log_syslog;

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static bool holding;                         /* guarded by held_lock */
static unsigned nheld;                       /* guarded by held_lock */
static struct held {
	int prio;
	char text[LINE_MAX_LEN];
} held[HELD_MAX];                            /* guarded by held_lock */
static struct held last_error;               /* guarded by held_lock */
static unsigned nerrors;                     /* guarded by held_lock */
/* The last few errors held, by number (nerrors when logged) modulo
 * RECENT: where dms_log_failed finds the first error of a failed step. */
#define RECENT 16
static struct held recent[RECENT];           /* guarded by held_lock */
static unsigned recent_no[RECENT];           /* guarded by held_lock */

static const char *prio_name(int prio)
{
	switch (prio) {
	case LOG_EMERG: case LOG_ALERT: case LOG_CRIT: case LOG_ERR:
		return "error";
	case LOG_WARNING:
		return "warning";
	case LOG_NOTICE:
		return "notice";
	case LOG_INFO:
		return "info";
	default:
		return "debug";
	}
}

static void emit(int prio, const char *text)
{
	char line[LINE_MAX_LEN + 32];
	int n;

	if (log_syslog) {
		syslog(prio, "%s", text);
		return;
	}
	n = snprintf(line, sizeof(line) - 1, "dmsfs: %s: %s", prio_name(prio),
	             text);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per message keeps lines from different threads whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static void log_text(int prio, const char *text)
{
	struct held *h = NULL;
	unsigned no;

	pthread_mutex_lock(&held_lock);
	if (prio <= LOG_ERR)
		nerrors++;
	if (!holding) {
		pthread_mutex_unlock(&held_lock);
		emit(prio, text);
		return;
	}
	if (prio <= LOG_ERR) {
		no = nerrors;
		recent_no[no % RECENT] = no;
		recent[no % RECENT].prio = prio;
		snprintf(recent[no % RECENT].text, LINE_MAX_LEN, "%s", text);
		h = &last_error;
	}
	if (!h)
		h = nheld < HELD_MAX ? &held[nheld++] : NULL;
	if (h) {
		h->prio = prio;
		snprintf(h->text, LINE_MAX_LEN, "%s", text);
	}
	pthread_mutex_unlock(&held_lock);
}

void dms_log(int prio, const char *fmt, ...)
{
	char text[LINE_MAX_LEN];
	va_list ap;

	if (prio >= LOG_DEBUG && !log_debug)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_text(prio, text);
}

void dms_log_failed(unsigned since, const char *fmt, ...)
{
	char text[LINE_MAX_LEN];
	va_list ap;

	unsigned first = since + 1;

	/* The step's own first error is its deepest, most specific one (those
	 * after it are its callers giving up): it is the one line printed,
	 * with or without -f, and this summary is not logged at all. */
	pthread_mutex_lock(&held_lock);
	if (nerrors != since) {
		if (holding && nerrors - first < RECENT &&
		    recent_no[first % RECENT] == first)
			last_error = recent[first % RECENT];
		pthread_mutex_unlock(&held_lock);
		return;
	}
	pthread_mutex_unlock(&held_lock);
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	log_text(LOG_ERR, text);
}

unsigned dms_log_nerrors(void)
{
	unsigned n;

	pthread_mutex_lock(&held_lock);
	n = nerrors;
	pthread_mutex_unlock(&held_lock);
	return n;
}

void dms_log_hold(void)
{
	pthread_mutex_lock(&held_lock);
	holding = true;
	nheld = 0;
	last_error.text[0] = '\0';
	pthread_mutex_unlock(&held_lock);
}

void dms_log_release(bool failed)
{
	unsigned i;

	pthread_mutex_lock(&held_lock);
	if (!holding)
		goto out;
	holding = false;
	if (failed) {
		if (last_error.text[0])
			emit(last_error.prio, last_error.text);
		goto out;
	}
	for (i = 0; i < nheld; i++)
		emit(held[i].prio, held[i].text);
	if (last_error.text[0])
		emit(last_error.prio, last_error.text);
out:
	nheld = 0;
	last_error.text[0] = '\0';
	pthread_mutex_unlock(&held_lock);
}

void dms_log_set_debug(bool on)
{
	log_debug = on;
}

void dms_log_to_syslog(const char *ident)
{
	openlog(ident, LOG_PID, LOG_DAEMON);
	log_syslog = true;
}
