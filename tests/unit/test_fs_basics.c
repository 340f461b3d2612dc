/* fs/ helpers that need no mount: sizes, block arithmetic, paths, and the
 * listing serialization stored in the cache. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs/fs_i.h"
#include "tests/unit/check.h"

static void test_parse_size(void)
{
	uint64_t v = 0;

	CHECK_OK(fs_parse_size("0", &v));
	CHECK(v == 0);
	CHECK_OK(fs_parse_size("4096", &v));
	CHECK(v == 4096);
	CHECK_OK(fs_parse_size("64K", &v));
	CHECK(v == 65536);
	CHECK_OK(fs_parse_size("64k", &v));
	CHECK(v == 65536);
	CHECK_OK(fs_parse_size("1M", &v));
	CHECK(v == 1048576);
	CHECK_OK(fs_parse_size("1MiB", &v));
	CHECK(v == 1048576);
	CHECK_OK(fs_parse_size("50G", &v));
	CHECK(v == 50ull << 30);
	CHECK_OK(fs_parse_size("1.5G", &v));
	CHECK(v == 3ull << 29);
	CHECK_OK(fs_parse_size("2T", &v));
	CHECK(v == 2ull << 40);
	CHECK_ERR(fs_parse_size("", &v), -EINVAL);
	CHECK_ERR(fs_parse_size("-1", &v), -EINVAL);
	CHECK_ERR(fs_parse_size("12Q", &v), -EINVAL);
	CHECK_ERR(fs_parse_size("12KX", &v), -EINVAL);
	CHECK_ERR(fs_parse_size("K", &v), -EINVAL);
	CHECK_ERR(fs_parse_size("0.3", &v), -EINVAL);
	CHECK_ERR(fs_parse_size("99999999999P", &v), -EINVAL);
	CHECK_ERR(fs_parse_size(" 5", &v), -EINVAL);
}

static void test_block_math(void)
{
	const uint64_t B = 262144;

	CHECK(fs_block_index(0, B) == 0);
	CHECK(fs_block_index(B - 1, B) == 0);
	CHECK(fs_block_index(B, B) == 1);
	CHECK(fs_block_count(0, B) == 0);
	CHECK(fs_block_count(1, B) == 1);
	CHECK(fs_block_count(B, B) == 1);
	CHECK(fs_block_count(B + 1, B) == 2);
	CHECK(fs_block_count(3 * B + 7, B) == 4);
	CHECK(fs_block_len(0, 1, B) == 1);
	CHECK(fs_block_len(0, B, B) == B);
	CHECK(fs_block_len(1, B, B) == 0);
	CHECK(fs_block_len(3, 3 * B + 7, B) == 7);
	CHECK(fs_block_len(2, 3 * B + 7, B) == B);
	CHECK(fs_block_len(0, 0, B) == 0);
	CHECK(fs_block_len(1ull << 40, (1ull << 40) * B + 5, B) == 5);
}

static void test_paths(void)
{
	char *p;

	p = fs_path_join("/", "a b");
	CHECK_STR(p, "/a b");
	free(p);
	p = fs_path_join("/x/y", "z");
	CHECK_STR(p, "/x/y/z");
	free(p);
	p = fs_path_parent("/x/y/z");
	CHECK_STR(p, "/x/y");
	free(p);
	p = fs_path_parent("/x");
	CHECK_STR(p, "/");
	free(p);
	p = fs_path_parent("/");
	CHECK_STR(p, "/");
	free(p);
	CHECK_STR(fs_path_base("/x/y z"), "y z");
}

static void test_dir_roundtrip(void)
{
	struct fs_dirent ents[3] = {
		{ "zeta", { .size = 7, .mtime = 1700000000, .mode = S_IFREG } },
		{ "alpha #%?+ ü", { .size = 0, .mtime = 5, .mode = S_IFDIR } },
		{ "mid", { .size = 1ull << 40, .mtime = -1, .mode = S_IFREG,
		           .etag = "\"abc-123\"" } },
	};
	struct fs_dir d = { .validated = 42, .count = 3, .ents = ents };
	struct fs_dir *back = NULL;
	const struct fs_dirent *e;
	void *buf = NULL;
	size_t len = 0;

	CHECK_OK(fs_dir_encode(&d, &buf, &len));
	CHECK_OK(fs_dir_decode(buf, len, &back));
	if (!back)
		goto out;
	CHECK(back->count == 3);
	CHECK(back->validated == 42);
	/* Decoded listings are sorted for bsearch. */
	CHECK_STR(back->ents[0].name, "alpha #%?+ ü");
	CHECK_STR(back->ents[2].name, "zeta");
	e = fs_dir_find(back, "mid");
	CHECK(e && e->attr.size == 1ull << 40 && e->attr.mtime == -1);
	CHECK(e && strcmp(e->attr.etag, "\"abc-123\"") == 0);
	CHECK(fs_dir_find(back, "nope") == NULL);
	fs_dir_put(back);
	back = NULL;
	/* Every truncation and a trailing byte are refused, never misread. */
	for (size_t cut = 0; cut < len; cut++) {
		CHECK_ERR(fs_dir_decode(buf, cut, &back), -EINVAL);
	}
	{
		char *longer = malloc(len + 1);

		memcpy(longer, buf, len);
		longer[len] = 0;
		CHECK_ERR(fs_dir_decode(longer, len + 1, &back), -EINVAL);
		free(longer);
	}
out:
	free(buf);
}

static void test_inodes(void)
{
	struct xfer_attr root = { .mode = S_IFDIR }, a = { .size = 3, .mode = S_IFREG };
	struct fs_inodes *t = NULL;
	uint64_t ino1 = 0, ino2 = 0;
	char *path = NULL;
	char name[32];

	CHECK_OK(fs_inodes_init(&t, &root));
	if (!t)
		return;
	CHECK_OK(fs_inodes_lookup(t, "/f", &a, 1, &ino1));
	CHECK_OK(fs_inodes_lookup(t, "/f", &a, 1, &ino2));
	CHECK(ino1 == ino2 && ino1 != FUSE_ROOT_ID);
	CHECK(!fs_inodes_take_changed(t, ino1));
	a.size = 4;
	fs_inodes_update(t, ino1, &a, 2);
	CHECK(fs_inodes_take_changed(t, ino1));
	CHECK(!fs_inodes_take_changed(t, ino1));
	CHECK_OK(fs_inodes_get(t, ino1, &path, NULL, NULL));
	CHECK(path && strcmp(path, "/f") == 0);
	free(path);
	fs_inodes_forget(t, ino1, 1);
	CHECK_OK(fs_inodes_get(t, ino1, NULL, NULL, NULL));
	fs_inodes_forget(t, ino1, 1);
	CHECK_ERR(fs_inodes_get(t, ino1, NULL, NULL, NULL), -ENOENT);
	/* Forgotten and looked up again: the same number (cp compares). */
	CHECK_OK(fs_inodes_lookup(t, "/f", &a, 3, &ino2));
	CHECK(ino2 == ino1);
	fs_inodes_forget(t, ino2, 1);
	/* Growth of the tables keeps every node reachable. */
	for (int i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "/n%d", i);
		CHECK_OK(fs_inodes_lookup(t, name, &a, 1, &ino1));
	}
	CHECK_OK(fs_inodes_get(t, ino1, &path, NULL, NULL));
	CHECK(path && strcmp(path, "/n19999") == 0);
	free(path);
	CHECK_OK(fs_inodes_get(t, FUSE_ROOT_ID, NULL, NULL, NULL));
	fs_inodes_destroy(t);
}

int main(void)
{
	RUN(test_parse_size);
	RUN(test_block_math);
	RUN(test_paths);
	RUN(test_dir_roundtrip);
	RUN(test_inodes);
	CHECK_EXIT();
}
