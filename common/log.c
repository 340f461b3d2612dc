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

void dms_log(int prio, const char *fmt, ...)
{
	char text[LINE_MAX_LEN];
	va_list ap;

	if (prio >= LOG_DEBUG && !log_debug)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&held_lock);
	if (holding) {
		struct held *h = prio <= LOG_ERR ? &last_error
		               : nheld < HELD_MAX ? &held[nheld++] : NULL;

		if (h) {
			h->prio = prio;
			memcpy(h->text, text, sizeof(text));
		}
		pthread_mutex_unlock(&held_lock);
		return;
	}
	pthread_mutex_unlock(&held_lock);
	emit(prio, text);
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
