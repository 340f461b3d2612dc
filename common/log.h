#ifndef DMS_LOG_H
#define DMS_LOG_H
/*
 * common/: the one logging function every module uses.  Levels are syslog's
 * (LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG).  Messages go to
 * stderr until dms_log_to_syslog() or dms_log_to_file() is called (the
 * daemon does that once mounted).  LOG_DEBUG is dropped unless debug output
 * was turned on.  Lines read "PROG[TAG]: LEVEL: text" (the file's with a
 * time first; syslog's "TAG: text").
 * Messages (not debug) that repeat text and level within 60 s are counted,
 * not written: the first is always written, the count follows as one line
 * "text (repeated N times in the last S s)" when the window is over (at
 * the next message or dms_log_flush).
 * Thread safe: each message is written with a single write.
 */
#include <stdbool.h>
#include <syslog.h>

void dms_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Turns LOG_DEBUG output on or off.  Call before starting threads. */
void dms_log_set_debug(bool on);

/* Keeps messages back (up to a bound) instead of writing them: a daemon
 * that has not detached yet should say one thing on stderr, why it could
 * not start, not every warning on the way. */
void dms_log_hold(void);

/* Stops holding.  failed: writes only the held reason (the last error,
 * LOG_ERR or worse, but see dms_log_failed) to stderr and drops the rest;
 * else writes every held message to the current destination.  Nothing
 * held: does nothing. */
void dms_log_release(bool failed);

/* How many errors (LOG_ERR or worse) have been logged so far.  Take it
 * before a step, to pass to dms_log_failed() if the step fails. */
unsigned dms_log_nerrors(void);

/* Logs at LOG_ERR that a step failed, as dms_log does; since: the value
 * of dms_log_nerrors() before the step.  If the step logged an error of
 * its own, that one says more (a rules file's FILE:LINE, libfuse's own
 * words): nothing more is logged, so it stays the one reason printed,
 * with or without -f. */
void dms_log_failed(unsigned since, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* From now on messages go to syslog with this ident. */
void dms_log_to_syslog(const char *ident);

/* Drops messages less important than prio (LOG_NOTICE: no info lines).
 * Call before starting threads, like the setters below. */
void dms_log_set_level(int prio);
/* The program named on each line ("dmsfs" unless set); name must live
 * as long as the program. */
void dms_log_set_prog(const char *name);
/* What every line carries after the program name (the mount point), so
 * that the lines of several mounts can be told apart; copied. */
void dms_log_set_tag(const char *tag);

/* Opens (creates 0640) path to append messages to, close-on-exec;
 * 0 or -errno.  Messages still go where they went until
 * dms_log_to_file().  A file moved away or deleted (logrotate) is
 * reopened at path, checked at most once a second. */
int dms_log_file_open(const char *path);
void dms_log_to_file(void);

/* Whether a syslog daemon accepts connections on /dev/log. */
bool dms_log_syslog_available(void);

/* Writes the pending counts of repeated messages now (at exit). */
void dms_log_flush(void);

#endif
