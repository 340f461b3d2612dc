/*
 * cache/datafile.c: checks an LMDB data file against its meta pages before
 * LMDB maps it (see cache_i.h for why).
 *
 * The layout below is LMDB 0.9.24's on-disk format as its sources describe
 * it (mdb.c: MDB_page, MDB_db, MDB_meta, mdb_env_read_header): pages 0 and 1
 * are meta pages, each a page header followed by the meta record, in native
 * byte order and word size.  Page numbers and transaction ids are size_t.
 * The page size is kept in the free-space DB's md_pad (mm_psize), and meta
 * page 1 starts at meta page 0's page size.  LMDB refuses the file unless
 * both meta pages carry the meta flag, the magic and data format version 1,
 * then uses the one with the higher transaction id (meta 0 on a tie).
 */
#include "cache/cache_i.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LM_MAGIC          0xBEEFC0DEu
#define LM_DATA_VERSION   1u
#define LM_P_META         0x08u
#define LM_NUM_METAS      2
#define LM_PSIZE_MIN      512u     /* no system LMDB runs on has less */
#define LM_PSIZE_MAX      0x8000u  /* LMDB's MAX_PAGESIZE without PAGEBASE */
#define LM_P_INVALID      SIZE_MAX /* root of an empty tree */

struct lm_page_hdr {
	size_t pgno;
	uint16_t pad;
	uint16_t flags;
	uint16_t lower, upper;
};

struct lm_db {
	uint32_t pad;            /* for the free-space DB: the page size */
	uint16_t flags, depth;
	size_t branch_pages, leaf_pages, overflow_pages;
	size_t entries;
	size_t root;
};

struct lm_meta {
	uint32_t magic;
	uint32_t version;
	uintptr_t address;
	size_t mapsize;
	struct lm_db dbs[2];     /* free space, main */
	size_t last_pg;
	size_t txnid;
};

/* The layout LMDB 0.9.24 has on LP64 (PAGEHDRSZ 16, MDB_meta 136 bytes). */
_Static_assert(sizeof(size_t) != 8 ||
               (sizeof(struct lm_page_hdr) == 16 &&
                sizeof(struct lm_db) == 48 && sizeof(struct lm_meta) == 136),
               "LMDB meta page layout");

/* Reads meta page i at off into *out.  0, -EILSEQ (why filled) or -errno. */
static int lm_read_meta(int fd, int i, uint64_t off, uint64_t size,
                        struct lm_meta *out, char *why, size_t whylen)
{
	unsigned char buf[sizeof(struct lm_page_hdr) + sizeof(struct lm_meta)];
	struct lm_page_hdr h;
	ssize_t n;
	int rc;

	n = pread(fd, buf, sizeof(buf), (off_t)off);
	if (n < 0) {
		rc = -errno;
		goto out;
	}
	rc = -EILSEQ;
	if ((size_t)n != sizeof(buf)) {
		snprintf(why, whylen, "file ends inside meta page %d (%" PRIu64
		         " bytes)", i, size);
		goto out;
	}
	memcpy(&h, buf, sizeof(h));
	memcpy(out, buf + sizeof(h), sizeof(*out));
	if (!(h.flags & LM_P_META))
		snprintf(why, whylen, "page %d is not an LMDB meta page", i);
	else if (out->magic != LM_MAGIC)
		snprintf(why, whylen, "meta page %d has no LMDB magic", i);
	else if (out->version != LM_DATA_VERSION)
		snprintf(why, whylen, "meta page %d has data format version %"
		         PRIu32 ", not %u", i, out->version, LM_DATA_VERSION);
	else
		rc = 0;
out:
	return rc;
}

static bool lm_psize_ok(uint32_t p)
{
	return p >= LM_PSIZE_MIN && p <= LM_PSIZE_MAX && (p & (p - 1)) == 0;
}

/* A tree root is empty or a page after the meta pages, up to last_pg. */
static bool lm_root_ok(size_t root, size_t last_pg)
{
	return root == LM_P_INVALID ||
	       (root >= LM_NUM_METAS && root <= last_pg);
}

int cache_lmdb_check(int fd, uint64_t size, struct cache_lmdb_meta *m,
                     char *why, size_t whylen)
{
	struct lm_meta meta[LM_NUM_METAS];
	const struct lm_meta *use;
	uint32_t psize;
	int rc = 0;

	memset(m, 0, sizeof(*m));
	if (whylen)
		why[0] = '\0';
	/* LMDB starts a new environment in an empty file. */
	if (size == 0)
		goto out;
	rc = lm_read_meta(fd, 0, 0, size, &meta[0], why, whylen);
	if (rc != 0)
		goto out;
	psize = meta[0].dbs[0].pad;
	if (!lm_psize_ok(psize)) {
		snprintf(why, whylen, "meta page 0 gives page size %" PRIu32,
		         psize);
		rc = -EILSEQ;
		goto out;
	}
	rc = lm_read_meta(fd, 1, psize, size, &meta[1], why, whylen);
	if (rc != 0)
		goto out;
	if (meta[1].dbs[0].pad != psize) {
		snprintf(why, whylen, "meta pages give page sizes %" PRIu32
		         " and %" PRIu32, psize, meta[1].dbs[0].pad);
		rc = -EILSEQ;
		goto out;
	}
	use = meta[1].txnid > meta[0].txnid ? &meta[1] : &meta[0];
	if (use->last_pg < LM_NUM_METAS - 1 ||
	    (uint64_t)use->last_pg >= UINT64_MAX / psize) {
		snprintf(why, whylen, "meta page %d names last page %zu",
		         (int)(use - meta), use->last_pg);
		rc = -EILSEQ;
		goto out;
	}
	m->psize = psize;
	m->last_pg = use->last_pg;
	m->txnid = use->txnid;
	m->need = ((uint64_t)use->last_pg + 1) * psize;
	for (int i = 0; i < 2; i++) {
		if (!lm_root_ok(use->dbs[i].root, use->last_pg)) {
			snprintf(why, whylen, "meta page %d (txn %zu) names root "
			         "page %zu, last page is %zu", (int)(use - meta),
			         use->txnid, use->dbs[i].root, use->last_pg);
			rc = -EILSEQ;
			goto out;
		}
	}
	if (size < m->need) {
		snprintf(why, whylen, "truncated: %" PRIu64 " bytes, but meta "
		         "page %d (txn %" PRIu64 ") needs %" PRIu64 " (%" PRIu64
		         " pages of %" PRIu32 ")", size, (int)(use - meta),
		         m->txnid, m->need, m->last_pg + 1, psize);
		rc = -EILSEQ;
		goto out;
	}
out:
	return rc;
}
