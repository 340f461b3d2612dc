#ifndef DMS_CACHE_I_H
#define DMS_CACHE_I_H
/*
 * cache/ private: checks on the LMDB data file before LMDB maps it.  Not for
 * use outside cache/ (the unit tests include it).
 *
 * LMDB maps data.mdb and trusts its meta pages: a file shorter than the last
 * page the meta names (disk full, a copy cut short) is mapped past its end,
 * and the first touch of a missing page kills the process with SIGBUS.  LMDB
 * 0.9.24 reads only pages below the chosen meta's mm_last_pg + 1 (mdb_page_get
 * refuses higher page numbers), so a file at least that long is safe to map.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the meta page LMDB will use says (the valid one with the higher
 * transaction id). */
struct cache_lmdb_meta {
	uint32_t psize;     /* page size */
	uint64_t last_pg;   /* last page in use */
	uint64_t txnid;     /* transaction that wrote this meta */
	uint64_t need;      /* bytes the file must hold: (last_pg + 1) * psize */
};

/* Checks the LMDB data file open on fd, size bytes long (from fstat),
 * against its two meta pages as LMDB 0.9.24 lays them out (native byte order
 * and word size).  Returns 0 if LMDB can open and map it safely (an empty
 * file is fine: LMDB starts a new environment in it; *m is then zeroed),
 * -EILSEQ if it cannot, with the reason in why (always terminated), or another
 * -errno if the file cannot be read.  Reads with pread only; never maps. */
int cache_lmdb_check(int fd, uint64_t size, struct cache_lmdb_meta *m,
                     char *why, size_t whylen)
	__attribute__((warn_unused_result));

/* bootmark.c: the open marker of the cache and of the write journal, one
 * CACHE_MARK_LEN record ("open <boot id>" / "clean"). */
#define CACHE_MARK_LEN 64
/* The kernel's boot id into buf ("" if unknown).  Cannot fail. */
void cache_boot_id(char *buf, size_t n);
/* Whether the marker open on fd says "open" in another boot (the system
 * went down while the store was open).  Unreadable or short: false. */
bool cache_mark_other_boot(int fd);
/* Writes the marker for open_now at offset 0 of fd and fdatasyncs it. */
int cache_mark_write(int fd, bool open_now)
	__attribute__((warn_unused_result));

#endif
