/* Shared by the libFuzzer targets in tests/fuzz/.  FZ_CHECK turns a broken
 * invariant into a crash (abort) that libFuzzer saves as a crash input;
 * the message says which invariant and where. */
#ifndef DMS_FUZZ_H
#define DMS_FUZZ_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CHECK(cond)                                                      \
	do {                                                                \
		if (!(cond)) {                                              \
			fprintf(stderr, "%s:%d: invariant broken: %s\n",    \
			        __FILE__, __LINE__, #cond);                 \
			abort();                                            \
		}                                                           \
	} while (0)

#endif
