/* MLSD/MLST line parsing (transfer/gridftp.c) without a server, plus the
 * backend's open/close life cycle and a bounded failure against a closed
 * loopback port. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "transfer/xfer_i.h"

static int parse(const char *line, char *name, size_t cap,
                 struct xfer_attr *a)
{
	return xfer_mlsx_parse(line, strlen(line), name, cap, a);
}

static void test_file(void)
{
	char name[256];
	struct xfer_attr a;

	CHECK_OK(parse("Type=file;Size=1048583;Modify=20240229123456;Perm=r;"
	               "UNIX.mode=0644;UNIX.owner=root;Unique=fe00-1234; "
	               "data.bin", name, sizeof(name), &a));
	CHECK_STR(name, "data.bin");
	CHECK(a.size == 1048583);
	CHECK(a.mode == (S_IFREG | 0644));
	CHECK(a.mtime == 1709210096); /* 2024-02-29 12:34:56 UTC */
	CHECK_STR(a.etag, "");        /* Unique is not an identity */
}

static void test_dir_and_case(void)
{
	char name[256];
	struct xfer_attr a;

	CHECK_OK(parse("type=DIR;size=4096;modify=19700101000000;unix.mode=755;"
	               " sub dir", name, sizeof(name), &a));
	CHECK_STR(name, "sub dir");
	CHECK(a.size == 0); /* directories report 0 */
	CHECK(a.mode == (S_IFDIR | 0755));
	CHECK(a.mtime == 0);
}

static void test_names(void)
{
	char name[256];
	struct xfer_attr a;

	/* Exactly one space separates facts and name: the rest is the name. */
	CHECK_OK(parse("Type=file;Size=1;  two leading ", name, sizeof(name), &a));
	CHECK_STR(name, " two leading ");
	CHECK_OK(parse("Type=file;Size=1; h\xc3\xa9llo w\xc3\xb6rld; x=y",
	               name, sizeof(name), &a));
	CHECK_STR(name, "h\xc3\xa9llo w\xc3\xb6rld; x=y");
	/* A value with a space (a symlink target) does not end the facts. */
	CHECK_OK(parse("Type=file;Size=2;UNIX.slink=/a b/c; link", name,
	               sizeof(name), &a));
	CHECK_STR(name, "link");
	/* MLST gives a path; the parser keeps it, callers judge '/'. */
	CHECK_OK(parse("Type=file;Size=6; /tmp/d/a.txt", name, sizeof(name), &a));
	CHECK_STR(name, "/tmp/d/a.txt");
	/* No facts at all is still "facts; name" with zero facts: no Type. */
	CHECK_ERR(parse(" name", name, sizeof(name), &a), -EINVAL);
	CHECK_ERR(xfer_mlsx_parse("Type=file; a\0b", 14, name, sizeof(name), &a),
	          -EINVAL);
	CHECK_ERR(parse("Type=file;Size=1; 0123456789", name, 10, &a),
	          -ENAMETOOLONG);
	CHECK_OK(parse("Type=file;Size=1; 012345678", name, 10, &a));
}

static void test_skip(void)
{
	char name[256];
	struct xfer_attr a;

	CHECK_ERR(parse("Type=cdir;Modify=20240101000000;UNIX.mode=0700; .",
	                name, sizeof(name), &a), 2);
	CHECK(a.mode == (S_IFDIR | 0700));
	CHECK_ERR(parse("Type=pdir;Modify=20240101000000; ..", name, sizeof(name),
	                &a), 1);
	CHECK_ERR(parse("Type=OS.unix=slink:/x;Size=1; l", name, sizeof(name),
	                &a), 1);
}

static void test_malformed(void)
{
	static const char *bad[] = {
		"Size=1; nametype",                      /* no Type */
		"Type=file;Size=12a; x",                 /* bad size */
		"Type=file;Size=; x",                    /* empty size */
		"Type=file;Size=99999999999999999999999; x", /* overflow */
		"Type=file;Size=18446744073709551616; x", /* 2^64 */
		"Type=file;Modify=2024022912345; x",     /* short time */
		"Type=file;Modify=20241329123456; x",    /* month 13 */
		"Type=file;Modify=2024022912345x; x",
		"Type=file;UNIX.mode=0999; x",           /* not octal */
		"Type=file;UNIX.mode=177777; x",         /* beyond 07777 */
		"Type=file;Size=1;",                     /* no name */
		"Type=file;Size=1; ",                    /* empty name */
		"Type=file;Size=1 x",                    /* no ';' */
		"Typefile; x",                           /* no '=' */
		"",
	};
	char name[256];
	struct xfer_attr a;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = parse(bad[i], name, sizeof(name), &a);

		if (rc != -EINVAL)
			fprintf(stderr, "line %zu \"%s\": %d\n", i, bad[i], rc);
		CHECK_ERR(rc, -EINVAL);
	}
	/* Fractional seconds are allowed and ignored. */
	CHECK_OK(parse("Type=file;Modify=20240229123456.789; x", name,
	               sizeof(name), &a));
	CHECK(a.mtime == 1709210096);
	CHECK_OK(parse("Type=file;Size=18446744073709551615; x", name,
	               sizeof(name), &a));
	CHECK(a.size == UINT64_MAX);
}

static void test_lifecycle(void)
{
	struct xfer_opts opts = { .connect_timeout_ms = 2000,
	                          .stall_timeout_s = 2, .retries = 1 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	struct xfer_attr a;
	struct timespec t0, t1;
	void *st = NULL;
	char url[64];
	int fd, i;

	CHECK_ERR(xfer_gridftp_ops.open(&st, "http://127.0.0.1/x", &opts),
	          -EINVAL);
	CHECK(st == NULL);
	/* A free port nobody listens on: connect is refused at once. */
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	CHECK_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
	CHECK_OK(getsockname(fd, (struct sockaddr *)&sa, &sl));
	close(fd);
	snprintf(url, sizeof(url), "ftp://127.0.0.1:%d/data",
	         ntohs(sa.sin_port));
	/* Activation is reference counted: open/close twice. */
	for (i = 0; i < 2; i++) {
		CHECK_OK(xfer_gridftp_ops.open(&st, url, &opts));
		if (st == NULL)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		CHECK_ERR(xfer_gridftp_ops.stat(st, "/f", &a), -EHOSTDOWN);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		CHECK(t1.tv_sec - t0.tv_sec < 5);
		xfer_gridftp_ops.close(st);
		st = NULL;
	}
}

int main(void)
{
	RUN(test_file);
	RUN(test_dir_and_case);
	RUN(test_names);
	RUN(test_skip);
	RUN(test_malformed);
	RUN(test_lifecycle);
	CHECK_EXIT();
}
