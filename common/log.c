#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define HELD_MAX 64
#define LINE_MAX_LEN 2048

/* Written before threads start (or under held_lock), read afterwards. */
static bool log_debug;
static bool log_syslog;
static int log_level = LOG_DEBUG;            /* least important kept */
static const char *log_prog = "dmsfs";
static char log_tag[1024];                   /* the mount point, or "" */

/* -o log=FILE: opened early (so a bad path fails the mount), used once
 * log_to_file is set.  The fd changes only under file_lock (reopening
 * after a rotation); writers take it for the write only. */
static pthread_mutex_t file_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = -1;                      /* guarded by file_lock */
static char log_path[4096];
static bool log_to_file;
static _Atomic int64_t file_checked;

/* Repeating messages (not debug ones): the first of a kind (text and
 * level) is written, the others within WINDOW_S are counted and written as one line when the
 * window is over (at the next message, or at dms_log_flush). */
#define WINDOW_S 60
#define RL_SLOTS 64
#define RL_TEXT 512
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rl_slot {
	uint64_t hash;                   /* 0: free */
	int64_t start;                   /* monotonic s of the first */
	unsigned repeats;                /* not written since start */
	int prio;
	char text[RL_TEXT];
} rl[RL_SLOTS];                              /* guarded by rl_lock */
static _Atomic unsigned rl_pending;          /* slots with repeats > 0 */
static _Atomic int64_t rl_scanned;           /* monotonic s of the last scan */

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

static int64_t mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

/* logrotate moves the file away (or deletes it): once a second at most,
 * a file that is no longer at log_path is closed and log_path created. */
static void file_maybe_reopen(void)
{
	int64_t now = mono_s(), was = atomic_load(&file_checked);
	struct stat a, b;
	int fd;

	if (now == was ||
	    !atomic_compare_exchange_strong(&file_checked, &was, now))
		return;
	pthread_mutex_lock(&file_lock);
	if (log_fd >= 0 && fstat(log_fd, &a) == 0 &&
	    (stat(log_path, &b) != 0 || a.st_ino != b.st_ino ||
	     a.st_dev != b.st_dev)) {
		/* Made again after a rotation, maybe in a folder others
		 * can write: neither a symlink nor a FIFO planted there. */
		fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC |
		          O_NOFOLLOW | O_NONBLOCK, 0640);
		if (fd >= 0) {
			close(log_fd);
			log_fd = fd;
		}
	}
	pthread_mutex_unlock(&file_lock);
}

static void emit(int prio, const char *text)
{
	char line[LINE_MAX_LEN + 1200], stamp[40] = "";
	size_t cap = sizeof(line) - 1;
	struct tm tm;
	time_t now;
	int n;

	if (log_syslog && !log_to_file) {
		if (log_tag[0])
			syslog(prio, "%s: %s", log_tag, text);
		else
			syslog(prio, "%s", text);
		return;
	}
	if (log_to_file) {
		now = time(NULL);
		if (localtime_r(&now, &tm))
			strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S%z ", &tm);
	}
	/* prog[MOUNTPOINT]: one mount's lines apart from another's. */
	n = snprintf(line, cap, "%s%s%s%s%s: %s: %s", stamp, log_prog,
	             log_tag[0] ? "[" : "", log_tag, log_tag[0] ? "]" : "",
	             prio_name(prio), text);
	if (n < 0)
		return;
	if ((size_t)n > cap - 1)
		n = (int)cap - 1;
	line[n++] = '\n';
	/* One write per message keeps lines from different threads whole. */
	if (log_to_file) {
		file_maybe_reopen();
		pthread_mutex_lock(&file_lock);
		/* A full disk loses the line: there is nowhere to say so. */
		if (write(log_fd, line, (size_t)n) < 0)
			n = 0;
		pthread_mutex_unlock(&file_lock);
		return;
	}
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static uint64_t text_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h ? h : 1;
}

/* A slot's summary line, when it counted repeats. */
static void rl_summary(const struct rl_slot *sl, int64_t now, char *out,
                       size_t cap)
{
	snprintf(out, cap, "%s (repeated %u times in the last %lld s)",
	         sl->text, sl->repeats, (long long)(now - sl->start));
}

/* Writes the summaries of windows that are over (all of them if all). */
static void rl_flush(bool all)
{
	char line[RL_TEXT + 80];
	int64_t now, was;
	unsigned i;
	int prio = LOG_ERR;

	if (!atomic_load(&rl_pending))
		return;
	/* Windows end on second boundaries: one scan a second is enough. */
	now = mono_s();
	was = atomic_load(&rl_scanned);
	if (!all && (now == was ||
	             !atomic_compare_exchange_strong(&rl_scanned, &was, now)))
		return;
	for (i = 0; i < RL_SLOTS; i++) {
		line[0] = '\0';
		pthread_mutex_lock(&rl_lock);
		if (rl[i].repeats && (all || now - rl[i].start >= WINDOW_S)) {
			rl_summary(&rl[i], now, line, sizeof(line));
			prio = rl[i].prio;
			rl[i].hash = 0;
			rl[i].repeats = 0;
			atomic_fetch_sub(&rl_pending, 1);
		}
		pthread_mutex_unlock(&rl_lock);
		if (line[0])
			emit(prio, line);
	}
}

/* true: text repeats one written less than WINDOW_S ago; counted, not
 * written.  The first of its kind is never held back. */
static bool rl_suppress(int prio, const char *text)
{
	uint64_t h = (text_hash(text) ^ ((uint64_t)prio << 1)) | 1;
	int64_t now = mono_s();
	struct rl_slot *sl, *old = &rl[0];
	char evicted[RL_TEXT + 80] = "";
	int eprio = prio;
	unsigned i;
	bool hide = false;

	pthread_mutex_lock(&rl_lock);
	for (i = 0; i < RL_SLOTS; i++) {
		sl = &rl[i];
		if (sl->hash == h && sl->prio == prio &&
		    !strncmp(sl->text, text, RL_TEXT - 1)) {
			if (now - sl->start >= WINDOW_S) {
				old = sl;      /* its window is over: a new one */
				break;
			}
			if (!sl->repeats++)
				atomic_fetch_add(&rl_pending, 1);
			hide = true;
			goto out;
		}
		if (old->hash && (!sl->hash || sl->start < old->start))
			old = sl;
	}
	/* A new kind takes the oldest slot; its count is written first. */
	if (old->repeats) {
		rl_summary(old, now, evicted, sizeof(evicted));
		eprio = old->prio;
		atomic_fetch_sub(&rl_pending, 1);
	}
	old->hash = h;
	old->start = now;
	old->repeats = 0;
	old->prio = prio;
	snprintf(old->text, sizeof(old->text), "%s", text);
out:
	pthread_mutex_unlock(&rl_lock);
	if (evicted[0])
		emit(eprio, evicted);
	return hide;
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
		rl_flush(false);
		if (prio < LOG_DEBUG && rl_suppress(prio, text))
			return;
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

	if ((prio >= LOG_DEBUG && !log_debug) || prio > log_level)
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

void dms_log_set_level(int prio)
{
	log_level = prio;
}

void dms_log_set_prog(const char *name)
{
	log_prog = name;
}

void dms_log_set_tag(const char *tag)
{
	snprintf(log_tag, sizeof(log_tag), "%s", tag ? tag : "");
}

int dms_log_file_open(const char *path)
{
	int fd, rc = 0;

	char cwd[2048];

	/* The daemon changes to "/": reopening needs the full path. */
	if (path[0] != '/' && !getcwd(cwd, sizeof(cwd)))
		return -errno;
	if (snprintf(log_path, sizeof(log_path), "%s%s%s",
	             path[0] == '/' ? "" : cwd, path[0] == '/' ? "" : "/",
	             path) >= (int)sizeof(log_path))
		return -ENAMETOOLONG;
	fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	pthread_mutex_lock(&file_lock);
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	pthread_mutex_unlock(&file_lock);
	return rc;
}

void dms_log_to_file(void)
{
	if (log_fd >= 0)
		log_to_file = true;
}

bool dms_log_syslog_available(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	static const int types[] = { SOCK_DGRAM, SOCK_STREAM };
	bool ok = false;
	unsigned i;
	int fd;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", "/dev/log");
	for (i = 0; i < 2 && !ok; i++) {
		fd = socket(AF_UNIX, types[i] | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(fd);
	}
	return ok;
}

void dms_log_flush(void)
{
	rl_flush(true);
}
