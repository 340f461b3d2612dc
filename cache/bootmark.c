/*
 * The open marker shared by the block cache and the write journal: one
 * fixed-size record, "open <boot id>" while open and "clean" after a synced
 * close, rewritten in place so updating it needs no new disk space.  A
 * marker naming another boot means the system went down while the store was
 * open.
 */
#include "cache/cache_i.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cache_boot_id(char *buf, size_t n)
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	buf[0] = '\0';
	if (!f)
		return;
	if (!fgets(buf, (int)n, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
}

bool cache_mark_other_boot(int fd)
{
	char was[CACHE_MARK_LEN + 1], now[CACHE_MARK_LEN];
	ssize_t n = pread(fd, was, CACHE_MARK_LEN, 0);

	if (n <= 5)
		return false;
	was[n] = '\0';
	if (strncmp(was, "open ", 5) != 0)
		return false;
	was[5 + strcspn(was + 5, " \n")] = '\0';
	cache_boot_id(now, sizeof(now));
	return strcmp(was + 5, now) != 0;
}

int cache_mark_write(int fd, bool open_now)
{
	char rec[CACHE_MARK_LEN], id[CACHE_MARK_LEN - 8];
	int rc = 0, w;

	cache_boot_id(id, sizeof(id));
	memset(rec, ' ', sizeof(rec));
	w = snprintf(rec, sizeof(rec), open_now ? "open %s" : "clean", id);
	rec[w] = ' ';
	rec[sizeof(rec) - 1] = '\n';
	errno = 0;
	if (pwrite(fd, rec, sizeof(rec), 0) != (ssize_t)sizeof(rec) ||
	    fdatasync(fd) != 0)
		rc = errno ? -errno : -EIO;
	return rc;
}
