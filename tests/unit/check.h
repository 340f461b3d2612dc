#ifndef DMS_CHECK_H
#define DMS_CHECK_H
/* Minimal assertion macros for the unit tests: each failed check prints
 * file:line, the expression and, for -errno results, the error text.  A test
 * binary exits 1 if any check failed, so pytest (tests/test_unit.py) sees it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(expr) do { \
	if (!(expr)) { \
		fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
		check_failures++; \
	} } while (0)

/* For functions returning 0 or -errno. */
#define CHECK_OK(expr) do { \
	long check_rc_ = (long)(expr); \
	if (check_rc_ != 0) { \
		fprintf(stderr, "%s:%d: %s returned %ld (%s)\n", __FILE__, __LINE__, \
		        #expr, check_rc_, check_rc_ < 0 ? strerror((int)-check_rc_) : "?"); \
		check_failures++; \
	} } while (0)

#define CHECK_ERR(expr, want) do { \
	long check_rc_ = (long)(expr); \
	if (check_rc_ != (long)(want)) { \
		fprintf(stderr, "%s:%d: %s returned %ld, want %ld (%s)\n", __FILE__, \
		        __LINE__, #expr, check_rc_, (long)(want), \
		        strerror((int)(want) < 0 ? -(int)(want) : (int)(want))); \
		check_failures++; \
	} } while (0)

#define CHECK_STR(a, b) do { \
	const char *check_a_ = (a), *check_b_ = (b); \
	if (strcmp(check_a_, check_b_) != 0) { \
		fprintf(stderr, "%s:%d: %s == \"%s\", want \"%s\"\n", __FILE__, \
		        __LINE__, #a, check_a_, check_b_); \
		check_failures++; \
	} } while (0)

#define RUN(test) do { \
	int check_before_ = check_failures; \
	test(); \
	printf("%s %s\n", check_failures == check_before_ ? "ok" : "FAIL", #test); \
	fflush(stdout); \
} while (0)

#define CHECK_EXIT() return check_failures ? 1 : 0

#endif
