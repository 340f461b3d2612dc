#ifndef DMS_PROM_H
#define DMS_PROM_H
/*
 * common/: the "metrics" answer of a mount's control socket (format:
 * fs/ctl_proto.h), read line by line, and rendered as the Prometheus text
 * exposition format (version 0.0.4) for one or several mounts.  One rule
 * for the daemon (fs/metrics.c writes metrics_file) and dmsctl stats.
 *
 * Thread safe (no shared state).  Nothing here allocates.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define DMS_PROM_LINE_MAX 8192
#define DMS_PROM_LABELS 8

/* One line of a metrics answer, split in place into the caller's buffer:
 * valid until that buffer is reused. */
struct dms_prom_line {
	enum { DMS_PROM_FAMILY, DMS_PROM_SAMPLE } kind;
	const char *name;       /* family or sample name */
	const char *type;       /* family: "counter", "gauge", "histogram" */
	const char *help;       /* family */
	const char *value;      /* sample: a number as text */
	size_t nlabels;         /* sample: labels kept (extra ones dropped) */
	const char *key[DMS_PROM_LABELS], *val[DMS_PROM_LABELS];
};

/* Reads the next family or sample line at *pos (advanced past it) into l,
 * using buf (cap bytes) for its fields.  Lines of other kinds, malformed
 * ones and the final "." are skipped.  true while there is a line, false
 * at the end. */
bool dms_prom_next(const char **pos, struct dms_prom_line *l, char *buf,
                   size_t cap);

/* Writes s as a label value is written in the text format: backslash,
 * double quote and newline escaped as \\, \" and \n. */
void dms_prom_escape(FILE *out, const char *s);

/* One mount's answer to render. */
struct dms_prom_src {
	const char *mount;      /* the value of the "mount" label */
	const char *answer;     /* its metrics answer, NUL-terminated */
};

/* Writes the samples of every answer in the text format, each with a
 * mount label first, grouped by family (HELP and TYPE once per family, in
 * the order families first appear).  0, or -EIO if out failed. */
int dms_prom_render(FILE *out, const struct dms_prom_src *v, size_t n);

#endif
