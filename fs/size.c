#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fs/fs.h"

int fs_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTP";
	double v, mult = 1;
	char *end;
	int i;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		for (i = 0; units[i]; i++) {
			mult *= 1024;
			if (toupper((unsigned char)*end) == units[i])
				break;
		}
		if (!units[i])
			return -EINVAL;
		end++;
		/* "64K", "64KB" and "64KiB" all mean 65536. */
		if (strcasecmp(end, "iB") == 0 || strcasecmp(end, "B") == 0)
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	v *= mult;
	if (!isfinite(v) || v >= 18446744073709551616.0 || v != floor(v))
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}
