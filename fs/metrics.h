#ifndef DMS_FS_METRICS_H
#define DMS_FS_METRICS_H
/* A mount's metrics: the "metrics" answer of the control socket (format:
 * fs/ctl_proto.h; rendered by common/prom.h) and the metrics_file writer
 * for node_exporter's textfile collector.  Only reads counters other
 * modules keep (transfer/, blocks.c, cache/, access.c, the journal);
 * nothing here blocks on the network. */
#include <stdio.h>

struct fs;
struct fs_metrics;

/* Writes the metrics answer's lines of the mount fs (a struct fs *),
 * without the final ".".  Safe on any thread while the mount runs. */
void fs_metrics_answer(void *fs, FILE *out);

/* Writes cfg->metrics_file every cfg->metrics_interval seconds from a
 * thread of its own, from now until fs_metrics_stop.  *out is NULL when
 * no metrics_file is configured.  A failure to start is logged and
 * returned; the mount goes on without the file. */
int fs_metrics_start(struct fs_metrics **out, struct fs *fs);
/* Stops the writer (m may be NULL); the file is left as last written. */
void fs_metrics_stop(struct fs_metrics *m);

#endif
