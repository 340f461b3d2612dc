/*
 * Streaming parser for WebDAV PROPFIND (207 Multi-Status) replies, built on
 * the libxml2 SAX2 push parser so a 50,000-entry listing never sits in
 * memory as XML: only the collected entries do.
 *
 * Elements are matched by namespace ("DAV:") and local name, never by
 * prefix: nginx says <D:href>, Apache mixes D: with lp1:, others use none.
 * Each element is given a role from its context (an href counts only as the
 * direct child of a response, a getetag only inside a prop...), and
 * anything else is skipped with all its children.
 *
 * Hostile replies: a DOCTYPE stops the parser (that is where entity
 * declarations live, so no billion laughs, no external entities), network
 * access is off (XML_PARSE_NONET), entities are never substituted (no
 * XML_PARSE_NOENT), elements nest at most PF_MAX_DEPTH deep, a text node we
 * keep is at most PF_MAX_TEXT bytes, and the whole body at most max_bytes.
 */
#include "transfer/xfer_i.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libxml/parser.h>
#include <libxml/xmlerror.h>

#include "common/log.h"

#define PF_MAX_DEPTH 64
#define PF_MAX_TEXT  16384   /* an href of a 4 KiB path, all escaped, fits */
#define PF_MAX_SHOWN 200     /* bytes of an href quoted in a log line */
/* libxml2's push parser does not give the same verdict on every cut of the
 * same bytes (a malformed reply fed whole failed, fed in small pieces
 * passed: found by fuzz_propfind), so it is fed pieces of this fixed size
 * whatever pieces the network delivers: one reply, one verdict. */
#define PF_FEED_PIECE 16384

enum pf_role {
	PF_OTHER,            /* ignored, as are its descendants */
	PF_MULTISTATUS,
	PF_RESPONSE,
	PF_HREF,
	PF_PROPSTAT,
	PF_PROP,
	PF_STATUS_PS,        /* <status> of a <propstat> */
	PF_STATUS_RESP,      /* <status> of a <response> (no propstat form) */
	PF_RESOURCETYPE,
	PF_COLLECTION,
	PF_LENGTH,
	PF_MTIME,
	PF_ETAG,
};

/* What one <propstat> (and then one <response>) said. */
struct pf_props {
	bool is_dir;
	bool have_size, bad_size;
	uint64_t size;
	int64_t mtime;
	char etag[XFER_ETAG_MAX];
};

struct xfer_propfind {
	xmlParserCtxtPtr ctxt;
	int depth;                  /* PROPFIND Depth: 0 or 1 */
	size_t max_bytes, fed;
	int err;                    /* first error, sticky */
	char *target;               /* decoded path of the request, no
	                               trailing '/' ("" for the server root) */
	char *url;                  /* for log lines */

	enum pf_role stack[PF_MAX_DEPTH];
	int level;                  /* elements open */
	bool seen_root, root_closed;

	char piece[PF_FEED_PIECE];  /* bytes not yet given to libxml2 */
	size_t piece_len;

	char text[PF_MAX_TEXT + 1]; /* the text node being captured */
	size_t textlen;

	/* the <response> being parsed */
	char href[PF_MAX_TEXT + 1];
	bool have_href;
	int resp_status;            /* 0 if absent */
	bool have_props;            /* a 200 propstat was seen */
	struct pf_props resp, ps;
	int ps_status;

	/* results */
	struct xfer_propfind_result res;
	size_t valid;               /* responses usable as entries */
	struct xfer_attr first;     /* attributes of the first of those */
	size_t skipped_outside;
	size_t skipped_bad;
	size_t skipped_long;        /* names over NAME_MAX */
	size_t skipped_foreign;     /* hrefs naming another server */
	char foreign_example[PF_MAX_SHOWN + 1];
};

static pthread_once_t pf_once = PTHREAD_ONCE_INIT;

static void pf_global_init(void)
{
	/* libxml2 2.9 must be initialised once before concurrent use. */
	xmlInitParser();
}

static void pf_fail(struct xfer_propfind *p, int err, const char *why)
{
	if (p->err)
		return;
	p->err = err;
	dms_log(LOG_ERR, "transfer: PROPFIND %s: %s: %s", p->url, why,
	        strerror(-err));
	xfer_note("the PROPFIND reply of %s is not usable WebDAV: %s", p->url,
	          why);
	if (p->ctxt)
		xmlStopParser(p->ctxt);
}

/* ---- paths ----------------------------------------------------------- */

/* Decodes the path of an href (an absolute path or a full URL) into a
 * malloc'd canonical form: segments decoded, '/'-separated, no empty
 * segments, no trailing '/', "" for the server root.  *last points into it
 * at the last segment.  -EINVAL when a segment cannot be decoded (bad
 * escape, encoded '/' or NUL). */
static int pf_decode_path(const char *s, char **out, const char **last)
{
	size_t n, o = 0, lastpos = 0;
	const char *p, *end, *stop;
	char *buf = NULL;
	int rc = 0, k;

	*out = NULL;
	*last = NULL;
	/* Skip "scheme://authority" of a full URL, "//authority" of a
	 * network-path reference (which server: xfer_href_same_origin). */
	p = strstr(s, "://");
	if (p && (size_t)(p - s) == strspn(s, "abcdefghijklmnopqrstuvwxyz"
	                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                                     "0123456789+-.")) {
		s = p + 3;
		s += strcspn(s, "/?#");
	} else if (strncmp(s, "//", 2) == 0) {
		s += 2;
		s += strcspn(s, "/?#");
	}
	stop = s + strcspn(s, "?#");
	n = (size_t)(stop - s);
	buf = malloc(n + 2);
	if (!buf) {
		rc = -ENOMEM;
		goto fail;
	}
	for (p = s; p < stop; p = end) {
		while (p < stop && *p == '/')
			p++;
		if (p == stop)
			break;
		end = memchr(p, '/', (size_t)(stop - p));
		if (!end)
			end = stop;
		buf[o++] = '/';
		lastpos = o;
		/* Decoding never makes a segment longer. */
		k = xfer_decode_segment(p, (size_t)(end - p), buf + o,
		                        n + 2 - o);
		if (k < 0) {
			rc = -EINVAL;
			goto fail;
		}
		o += (size_t)k;
	}
	buf[o] = '\0';
	*out = buf;
	*last = buf + lastpos;
	return 0;
fail:
	free(buf);
	return rc;
}

/* Length of the "scheme:" of an absolute URI at s (RFC 3986 3.1), or 0
 * for a relative reference. */
static size_t scheme_len(const char *s)
{
	size_t n;

	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return 0;
	n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	              "0123456789+-.");
	return s[n] == ':' ? n + 1 : 0;
}

/* The authority of a URL with scheme (scheme_len slen) as "host:port",
 * lower case, userinfo dropped, the scheme's default port filled in. */
static void authority_of(const char *url, size_t slen, char *out, size_t cap)
{
	char buf[512];
	size_t i, alen;

	out[0] = '\0';
	if (strncmp(url + slen, "//", 2) != 0)
		goto out;
	/* Longer than any host name and port: never "the same", since a cut
	 * copy could equal the request's. */
	alen = strcspn(url + slen + 2, "/?#");
	if (alen > 255 || slen > 32)
		goto out;
	snprintf(buf, sizeof(buf), "%.*s://%.*s", (int)(slen - 1), url,
	         (int)alen, url + slen + 2);
	xfer_url_hostport(buf, out, cap);
	for (i = 0; out[i]; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
out:
	return;
}

int xfer_href_same_origin(const char *req_url, const char *href)
{
	char a[300], b[300], full[512];
	size_t rs = scheme_len(req_url), hs = scheme_len(href);
	int same = 1;

	if (hs == 0 && strncmp(href, "//", 2) != 0)
		goto out;   /* absolute-path or relative: this server */
	if (rs == 0)
		goto out;   /* a bare-path request: nothing to compare with */
	same = 0;
	if (hs == 0) {   /* "//host/path": the request's scheme */
		snprintf(full, sizeof(full), "%.*s%.*s", (int)rs, req_url,
		         (int)strcspn(href + 2, "/?#") + 2, href);
		authority_of(full, rs, b, sizeof(b));
	} else if (hs == rs && strncasecmp(href, req_url, rs) == 0) {
		authority_of(href, hs, b, sizeof(b));
	} else {
		goto out;
	}
	authority_of(req_url, rs, a, sizeof(a));
	same = a[0] && strcmp(a, b) == 0;
out:
	return same;
}

/* ---- values ---------------------------------------------------------- */

static void trim(char **s, size_t *n)
{
	while (*n && (**s == ' ' || **s == '\t' || **s == '\r' || **s == '\n')) {
		(*s)++;
		(*n)--;
	}
	while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t' ||
	              (*s)[*n - 1] == '\r' || (*s)[*n - 1] == '\n'))
		(*n)--;
	(*s)[*n] = '\0';
}

/* A size: decimal digits only, at most INT64_MAX (it becomes an off_t). */
static int parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int rc = -EINVAL;

	if (!*s)
		goto out;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			goto out;
		if (v > ((uint64_t)INT64_MAX - (uint64_t)(*s - '0')) / 10)
			goto out;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	rc = 0;
out:
	return rc;
}

static int parse_num(const char **s, int digits_min, int digits_max, int *out)
{
	int v = 0, n = 0;

	while (n < digits_max && **s >= '0' && **s <= '9') {
		v = v * 10 + (**s - '0');
		(*s)++;
		n++;
	}
	*out = v;
	return n >= digits_min ? 0 : -EINVAL;
}

int xfer_parse_http_date(const char *s, int64_t *out)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	struct tm tm;
	int mon, rc = -EINVAL;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	while (*s == ' ')
		s++;
	/* Optional "Sun, " (RFC 1123 always has it; be lenient). */
	if (s[0] && s[1] && s[2] && s[3] == ',')
		s += 4;
	while (*s == ' ')
		s++;
	if (parse_num(&s, 1, 2, &tm.tm_mday) < 0 || *s++ != ' ')
		goto out;
	for (mon = 0; mon < 12; mon++)
		if (strncmp(s, months + 3 * mon, 3) == 0)
			break;
	if (mon == 12 || s[3] != ' ')
		goto out;
	tm.tm_mon = mon;
	s += 4;
	if (parse_num(&s, 4, 4, &tm.tm_year) < 0 || *s++ != ' ')
		goto out;
	tm.tm_year -= 1900;
	if (parse_num(&s, 2, 2, &tm.tm_hour) < 0 || *s++ != ':' ||
	    parse_num(&s, 2, 2, &tm.tm_min) < 0 || *s++ != ':' ||
	    parse_num(&s, 2, 2, &tm.tm_sec) < 0 || *s++ != ' ')
		goto out;
	if (strcmp(s, "GMT") != 0 && strcmp(s, "UTC") != 0)
		goto out;
	if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
	    tm.tm_min > 59 || tm.tm_sec > 60)
		goto out;
	t = timegm(&tm);
	if (t == (time_t)-1)
		goto out;
	*out = (int64_t)t;
	rc = 0;
out:
	return rc;
}

/* "HTTP/1.1 200 OK" -> 200; 0 if unparsable. */
static int parse_status(const char *s)
{
	int code;

	s = strchr(s, ' ');
	if (!s)
		return 0;
	while (*s == ' ')
		s++;
	if (parse_num(&s, 3, 3, &code) < 0)
		return 0;
	return code;
}

/* ---- SAX handlers ---------------------------------------------------- */

static enum pf_role role_of(enum pf_role parent, const xmlChar *local,
                            const xmlChar *uri)
{
	static const struct {
		enum pf_role parent;
		const char *name;
		enum pf_role role;
	} rules[] = {
		{ PF_MULTISTATUS, "response", PF_RESPONSE },
		{ PF_RESPONSE, "href", PF_HREF },
		{ PF_RESPONSE, "propstat", PF_PROPSTAT },
		{ PF_RESPONSE, "status", PF_STATUS_RESP },
		{ PF_PROPSTAT, "prop", PF_PROP },
		{ PF_PROPSTAT, "status", PF_STATUS_PS },
		{ PF_PROP, "resourcetype", PF_RESOURCETYPE },
		{ PF_PROP, "getcontentlength", PF_LENGTH },
		{ PF_PROP, "getlastmodified", PF_MTIME },
		{ PF_PROP, "getetag", PF_ETAG },
		{ PF_RESOURCETYPE, "collection", PF_COLLECTION },
	};
	size_t i;

	if (!uri || strcmp((const char *)uri, "DAV:") != 0)
		return PF_OTHER;
	for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		if (rules[i].parent == parent &&
		    strcmp((const char *)local, rules[i].name) == 0)
			return rules[i].role;
	return PF_OTHER;
}

static bool captures_text(enum pf_role r)
{
	return r == PF_HREF || r == PF_STATUS_PS || r == PF_STATUS_RESP ||
	       r == PF_LENGTH || r == PF_MTIME || r == PF_ETAG;
}

static void on_start(void *ctx, const xmlChar *local, const xmlChar *prefix,
                     const xmlChar *uri, int nns, const xmlChar **ns,
                     int nattr, int ndef, const xmlChar **attrs)
{
	struct xfer_propfind *p = ctx;
	enum pf_role role;

	if (p->err)
		return;
	if (p->level >= PF_MAX_DEPTH) {
		pf_fail(p, -EIO, "XML nested too deeply");
		return;
	}
	if (p->level == 0) {
		if (p->seen_root || !uri ||
		    strcmp((const char *)uri, "DAV:") != 0 ||
		    strcmp((const char *)local, "multistatus") != 0) {
			pf_fail(p, -EIO, "root element is not DAV:multistatus");
			return;
		}
		p->seen_root = true;
		role = PF_MULTISTATUS;
	} else {
		role = role_of(p->stack[p->level - 1], local, uri);
	}
	p->stack[p->level++] = role;
	p->textlen = 0;
	switch (role) {
	case PF_RESPONSE:
		p->have_href = false;
		p->href[0] = '\0';
		p->resp_status = 0;
		p->have_props = false;
		memset(&p->resp, 0, sizeof(p->resp));
		break;
	case PF_PROPSTAT:
		memset(&p->ps, 0, sizeof(p->ps));
		p->ps_status = 0;
		break;
	case PF_COLLECTION:
		p->ps.is_dir = true;
		break;
	default:
		break;
	}
}

/* Decodes a relative href against the directory of the request URL. */
static int pf_resolve_relative(struct xfer_propfind *p, char **out,
                               const char **last)
{
	const char *base = p->url, *q;
	size_t blen, cap;
	char *joined;
	int rc;

	if (scheme_len(base)) {
		base = strstr(base, "://") + 3;
		base += strcspn(base, "/?#");
	}
	blen = strcspn(base, "?#");
	for (q = base + blen; q > base && q[-1] != '/'; q--)
		;
	blen = (size_t)(q - base);
	cap = blen + strlen(p->href) + 2;
	joined = malloc(cap);
	if (!joined) {
		rc = -ENOMEM;
		goto out;
	}
	snprintf(joined, cap, "%s%.*s%s", blen ? "" : "/", (int)blen, base,
	         p->href);
	rc = pf_decode_path(joined, out, last);
	free(joined);
out:
	return rc;
}

static void response_done(struct xfer_propfind *p)
{
	struct xfer_attr a;
	char *path = NULL;
	const char *name;
	size_t plen;
	int rc;

	if (!p->have_href) {
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: <response> "
		        "without <href> skipped", p->url);
		p->skipped_bad++;
		goto out;
	}
	if (p->resp_status && p->resp_status != 200)
		goto out;   /* e.g. a member reported as 404/403 */
	if (!p->have_props)
		goto out;   /* no property could be read: not usable */
	if (p->resp.bad_size) {
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: bad "
		        "getcontentlength for \"%s\", entry skipped", p->url,
		        p->href);
		p->skipped_bad++;
		goto out;
	}
	if (!xfer_href_same_origin(p->url, p->href)) {
		/* Never a local name, whatever its path says. */
		if (p->skipped_foreign++ == 0)
			snprintf(p->foreign_example, sizeof(p->foreign_example),
			         "%s", p->href);
		goto out;
	}
	if (p->href[0] != '/' && !scheme_len(p->href)) {
		/* Relative to the request URL (RFC 4918 8.3, RFC 3986 5.2):
		 * under its last '/', which for a collection is itself. */
		rc = pf_resolve_relative(p, &path, &name);
	} else {
		rc = pf_decode_path(p->href, &path, &name);
	}
	if (rc == -ENOMEM) {
		pf_fail(p, rc, "out of memory");
		goto out;
	}
	if (rc < 0) {
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: undecodable href "
		        "\"%s\" (bad escape, '/' or NUL in a name), entry "
		        "skipped", p->url, p->href);
		p->skipped_bad++;
		goto out;
	}
	memset(&a, 0, sizeof(a));
	a.mode = p->resp.is_dir ? S_IFDIR : S_IFREG;
	a.size = p->resp.is_dir ? 0 : p->resp.size;
	a.mtime = p->resp.mtime;
	memcpy(a.etag, p->resp.etag, sizeof(a.etag));
	if (p->valid++ == 0)
		p->first = a;
	if (strcmp(path, p->target) == 0) {
		p->res.self = a;
		p->res.have_self = 1;
		goto out;
	}
	plen = (size_t)(name - path);   /* "<parent>/" */
	if (plen == 0 || plen - 1 != strlen(p->target) ||
	    memcmp(path, p->target, plen - 1) != 0) {
		p->skipped_outside++;
		goto out;
	}
	if (strlen(name) > NAME_MAX) {
		p->skipped_long++;
		goto out;
	}
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: invalid name in "
		        "href \"%s\", entry skipped", p->url, p->href);
		p->skipped_bad++;
		goto out;
	}
	if (p->depth == 0)
		goto out;   /* a stat needs no children */
	rc = xfer_listing_add(&p->res.children, name, &a);
	if (rc < 0)
		pf_fail(p, rc, "out of memory");
out:
	free(path);
}

static void on_end(void *ctx, const xmlChar *local, const xmlChar *prefix,
                   const xmlChar *uri)
{
	struct xfer_propfind *p = ctx;
	enum pf_role role;
	char *t;
	size_t n;

	if (p->err || p->level == 0)
		return;
	role = p->stack[--p->level];
	t = p->text;
	n = p->textlen;
	if (captures_text(role))
		trim(&t, &n);
	switch (role) {
	case PF_HREF:
		if (!p->have_href) {
			memcpy(p->href, t, n + 1);
			p->have_href = n > 0;
		}
		break;
	case PF_STATUS_RESP:
		p->resp_status = parse_status(t);
		break;
	case PF_STATUS_PS:
		p->ps_status = parse_status(t);
		break;
	case PF_LENGTH:
		if (parse_size(t, &p->ps.size) == 0)
			p->ps.have_size = true;
		else
			p->ps.bad_size = true;
		break;
	case PF_MTIME:
		if (xfer_parse_http_date(t, &p->ps.mtime) < 0)
			p->ps.mtime = 0;   /* unknown rather than wrong */
		break;
	case PF_ETAG:
		if (n < sizeof(p->ps.etag))
			memcpy(p->ps.etag, t, n + 1);
		else    /* a cut ETag could match a different one */
			p->ps.etag[0] = '\0';
		break;
	case PF_PROPSTAT:
		/* Apache sends missing props in a 404 propstat: only 200s
		 * count. */
		if (p->ps_status != 200)
			break;
		p->have_props = true;
		p->resp.is_dir |= p->ps.is_dir;
		if (p->ps.have_size) {
			p->resp.have_size = true;
			p->resp.size = p->ps.size;
		}
		p->resp.bad_size |= p->ps.bad_size;
		if (p->ps.mtime)
			p->resp.mtime = p->ps.mtime;
		if (p->ps.etag[0])
			memcpy(p->resp.etag, p->ps.etag, sizeof(p->ps.etag));
		break;
	case PF_RESPONSE:
		response_done(p);
		break;
	case PF_MULTISTATUS:
		p->root_closed = true;
		break;
	default:
		break;
	}
	p->textlen = 0;
}

static void on_text(void *ctx, const xmlChar *s, int len)
{
	struct xfer_propfind *p = ctx;

	if (p->err || p->level == 0 || len <= 0 ||
	    !captures_text(p->stack[p->level - 1]))
		return;
	if ((size_t)len > PF_MAX_TEXT - p->textlen) {
		pf_fail(p, -EIO, "text node too long");
		return;
	}
	memcpy(p->text + p->textlen, s, (size_t)len);
	p->textlen += (size_t)len;
	p->text[p->textlen] = '\0';
}

static void on_dtd(void *ctx, const xmlChar *name, const xmlChar *ext_id,
                   const xmlChar *sys_id)
{
	pf_fail(ctx, -EIO, "DOCTYPE refused");
}

static void on_entity_decl(void *ctx, const xmlChar *name, int type,
                           const xmlChar *public_id, const xmlChar *system_id,
                           xmlChar *content)
{
	pf_fail(ctx, -EIO, "entity declaration refused");
}

static void on_reference(void *ctx, const xmlChar *name)
{
	pf_fail(ctx, -EIO, "entity reference refused");
}

static xmlEntityPtr on_get_entity(void *ctx, const xmlChar *name)
{
	/* Only the predefined entities (&amp; ...), which libxml2 resolves
	 * before asking; nothing else exists here. */
	return xmlGetPredefinedEntity(name);
}

static void on_error(void *ctx, xmlErrorPtr e)
{
	struct xfer_propfind *p = ctx;
	char why[256];
	size_t n;

	if (!e || e->level < XML_ERR_ERROR || p->err)
		return;
	n = (size_t)snprintf(why, sizeof(why), "malformed XML (line %d: %s",
	                     e->line, e->message ? e->message : "?");
	/* libxml2 messages end with '\n'. */
	if (n >= sizeof(why))
		n = sizeof(why) - 1;
	while (n > 0 && why[n - 1] == '\n')
		why[--n] = '\0';
	if (n + 2 < sizeof(why)) {
		why[n++] = ')';
		why[n] = '\0';
	}
	pf_fail(p, -EIO, why);
}

/* ---- public (to transfer/) ------------------------------------------- */

int xfer_propfind_new(struct xfer_propfind **out, const char *req_url,
                      int depth, size_t max_bytes)
{
	struct xfer_propfind *p = NULL;
	xmlSAXHandler sax;
	const char *last;
	int rc;

	*out = NULL;
	pthread_once(&pf_once, pf_global_init);
	p = calloc(1, sizeof(*p));
	if (!p) {
		rc = -ENOMEM;
		goto fail;
	}
	p->depth = depth;
	p->max_bytes = max_bytes;
	p->url = strdup(req_url);
	if (!p->url) {
		rc = -ENOMEM;
		goto fail_p;
	}
	rc = pf_decode_path(req_url, &p->target, &last);
	if (rc < 0) {
		dms_log(LOG_ERR, "transfer: PROPFIND: cannot decode request "
		        "URL %s", req_url);
		goto fail_url;
	}
	memset(&sax, 0, sizeof(sax));
	sax.initialized = XML_SAX2_MAGIC;
	sax.startElementNs = on_start;
	sax.endElementNs = on_end;
	sax.characters = on_text;
	sax.cdataBlock = on_text;
	sax.internalSubset = on_dtd;
	sax.externalSubset = on_dtd;
	sax.entityDecl = on_entity_decl;
	sax.reference = on_reference;
	sax.getEntity = on_get_entity;
	sax.serror = on_error;
	p->ctxt = xmlCreatePushParserCtxt(&sax, p, NULL, 0, NULL);
	if (!p->ctxt) {
		rc = -ENOMEM;
		goto fail_target;
	}
	/* No XML_PARSE_NOENT (no substitution), no DTDLOAD, no network. */
	xmlCtxtUseOptions(p->ctxt, XML_PARSE_NONET);
	*out = p;
	return 0;

fail_target:
	free(p->target);
fail_url:
	free(p->url);
fail_p:
	free(p);
fail:
	return rc;
}

int xfer_propfind_feed(struct xfer_propfind *p, const char *data, size_t len)
{
	size_t take;

	if (p->err)
		goto out;
	if (len > p->max_bytes - p->fed) {
		/* Logged here so the cap's value shows in the message. */
		dms_log(LOG_ERR, "transfer: PROPFIND %s: listing larger than "
		        "max_listing_bytes (%zu bytes)", p->url, p->max_bytes);
		xfer_note("the PROPFIND reply of %s is larger than max_listing "
		          "(%zu bytes)", p->url, p->max_bytes);
		p->err = -EFBIG;
		goto out;
	}
	p->fed += len;
	while (len > 0 && !p->err) {
		take = PF_FEED_PIECE - p->piece_len;
		if (take > len)
			take = len;
		memcpy(p->piece + p->piece_len, data, take);
		p->piece_len += take;
		data += take;
		len -= take;
		if (p->piece_len == PF_FEED_PIECE) {
			xmlParseChunk(p->ctxt, p->piece, PF_FEED_PIECE, 0);
			p->piece_len = 0;
		}
	}
out:
	return p->err;
}

int xfer_propfind_finish(struct xfer_propfind *p,
                         struct xfer_propfind_result *res)
{
	int rc;

	memset(res, 0, sizeof(*res));
	if (!p->err)
		xmlParseChunk(p->ctxt, p->piece, (int)p->piece_len, 1);
	if (!p->err && (!p->ctxt->wellFormed || !p->root_closed))
		pf_fail(p, -EIO, p->seen_root ? "truncated or malformed XML"
		                              : "no XML document");
	rc = p->err;
	if (rc)
		goto out;
	if (!p->res.have_self && p->valid == 1 &&
	    (p->depth == 0 || p->res.children.count == 0)) {
		/* A server that names the target differently (rewritten
		 * paths) but answered with exactly one entry: that's it. */
		p->res.self = p->first;
		p->res.have_self = 1;
		if (p->skipped_outside)
			p->skipped_outside--;
	}
	if (p->skipped_outside)
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: %zu entries outside "
		        "the requested collection skipped", p->url,
		        p->skipped_outside);
	if (p->skipped_foreign)
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: %zu entries whose "
		        "href names another server skipped (e.g. \"%s\")",
		        p->url, p->skipped_foreign, p->foreign_example);
	if (p->skipped_long)
		dms_log(LOG_WARNING, "transfer: PROPFIND %s: %zu names longer "
		        "than NAME_MAX (%d bytes) skipped", p->url,
		        p->skipped_long, NAME_MAX);
	if (p->skipped_foreign && p->valid == 0) {
		/* Not an empty directory: a server (or a proxy rewriting
		 * hosts) that names only others; nothing here is usable. */
		pf_fail(p, -EIO, "every href names another server");
		rc = p->err;
		goto out;
	}
	if (p->depth == 0 && !p->res.have_self) {
		pf_fail(p, -EIO, "no <response> for the requested path");
		rc = p->err;
		goto out;
	}
	if (p->depth != 0 && p->res.have_self &&
	    !S_ISDIR(p->res.self.mode)) {
		rc = -ENOTDIR;
		dms_log(LOG_INFO, "transfer: PROPFIND %s: not a collection",
		        p->url);
		goto out;
	}
	*res = p->res;
	memset(&p->res, 0, sizeof(p->res));
out:
	return rc;
}

void xfer_propfind_free(struct xfer_propfind *p)
{
	if (!p)
		return;
	if (p->ctxt)
		xmlFreeParserCtxt(p->ctxt);
	xfer_listing_free(&p->res.children);
	free(p->target);
	free(p->url);
	free(p);
}
