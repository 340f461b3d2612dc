/* GridFTP backend (ftp://, gsiftp://) — placeholder until implemented. */
#include <errno.h>
#include "transfer/xfer_i.h"

static int gftp_open(void **state, const char *url, const struct xfer_opts *opts)
{
	(void)state; (void)url; (void)opts;
	return -EPROTONOSUPPORT;
}

const struct xfer_backend_ops xfer_gridftp_ops = {
	.name = "gridftp",
	.open = gftp_open,
};
