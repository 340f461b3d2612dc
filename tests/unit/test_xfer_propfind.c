/* transfer/propfind.c: PROPFIND replies from real servers, fed in chunks,
 * and hostile ones. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "tests/unit/check.h"
#include "transfer/xfer_i.h"

#define MB (1u << 20)

/* Captured from nginx 1.22.1 + ngx_http_dav_ext_module (Debian 12):
 * PROPFIND / with Depth: 1 and dmsfs's request body.  Note: no getetag
 * (dav-ext does not implement it), '+' left unescaped, UTF-8 escaped. */
static const char nginx_root[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n"
	"<D:multistatus xmlns:D=\"DAV:\">\n"
	"<D:response>\n"
	"<D:href>/</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT</D:getlastmodified>\n"
	"<D:resourcetype><D:collection/></D:resourcetype>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"<D:response>\n"
	"<D:href>/dir%20a/</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT</D:getlastmodified>\n"
	"<D:resourcetype><D:collection/></D:resourcetype>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"<D:response>\n"
	"<D:href>/sub/</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT</D:getlastmodified>\n"
	"<D:resourcetype><D:collection/></D:resourcetype>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"<D:response>\n"
	"<D:href>/a%20b%23%25%3F+%C3%A9.txt</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<D:getcontentlength>12</D:getcontentlength>\n"
	"<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT</D:getlastmodified>\n"
	"<D:resourcetype></D:resourcetype>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"</D:multistatus>\n";

/* Same server, Depth: 0 on a file in a subdirectory, URL without '/'. */
static const char nginx_file[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n"
	"<D:multistatus xmlns:D=\"DAV:\">\n"
	"<D:response>\n"
	"<D:href>/sub/f</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<D:getcontentlength>2</D:getcontentlength>\n"
	"<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT</D:getlastmodified>\n"
	"<D:resourcetype></D:resourcetype>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"</D:multistatus>\n";

/* Apache httpd 2.4 mod_dav_fs style: live properties under lp1:, full-URL
 * hrefs (as some servers and proxies send), missing properties in a 404
 * propstat, lower-case escapes, plus entries a careful client must skip. */
static const char apache_dir[] =
	"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
	"<D:multistatus xmlns:D=\"DAV:\" xmlns:ns0=\"DAV:\">\n"
	"<D:response xmlns:lp1=\"DAV:\" xmlns:lp2=\"http://apache.org/dav/props/\">\n"
	"<D:href>http://example.org/dav/my%20dir/</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<lp1:resourcetype><D:collection/></lp1:resourcetype>\n"
	"<lp1:getlastmodified>Tue, 05 Mar 2024 10:00:00 GMT</lp1:getlastmodified>\n"
	"<lp1:getetag>\"1000-613e85d1c4e40\"</lp1:getetag>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<ns0:getcontentlength/>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 404 Not Found</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"<D:response xmlns:lp1=\"DAV:\" xmlns:lp2=\"http://apache.org/dav/props/\">\n"
	"<D:href>http://example.org/dav/my%20dir/data%231.bin</D:href>\n"
	"<D:propstat>\n"
	"<D:prop>\n"
	"<lp1:resourcetype/>\n"
	"<lp1:getcontentlength>1048576</lp1:getcontentlength>\n"
	"<lp1:getlastmodified>Tue, 05 Mar 2024 10:00:01 GMT</lp1:getlastmodified>\n"
	"<lp1:getetag>\"100000-613e85d1c4e41\"</lp1:getetag>\n"
	"<lp2:executable>F</lp2:executable>\n"
	"</D:prop>\n"
	"<D:status>HTTP/1.1 200 OK</D:status>\n"
	"</D:propstat>\n"
	"</D:response>\n"
	"<D:response xmlns:lp1=\"DAV:\">\n"
	"<D:href>http://example.org/dav/my%20dir/%e6%97%a5%e6%9c%ac/</D:href>\n"
	"<D:propstat><D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype>"
	"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\n"
	"</D:response>\n"
	/* an encoded '/' in a name: skipped with a warning */
	"<D:response xmlns:lp1=\"DAV:\">\n"
	"<D:href>/dav/my%20dir/a%2Fb</D:href>\n"
	"<D:propstat><D:prop><lp1:getcontentlength>1</lp1:getcontentlength>"
	"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\n"
	"</D:response>\n"
	/* "..": skipped */
	"<D:response xmlns:lp1=\"DAV:\">\n"
	"<D:href>/dav/my%20dir/..</D:href>\n"
	"<D:propstat><D:prop><lp1:getcontentlength>1</lp1:getcontentlength>"
	"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\n"
	"</D:response>\n"
	/* outside the collection: skipped */
	"<D:response xmlns:lp1=\"DAV:\">\n"
	"<D:href>/elsewhere/x</D:href>\n"
	"<D:propstat><D:prop><lp1:getcontentlength>1</lp1:getcontentlength>"
	"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\n"
	"</D:response>\n"
	/* a member the server could not read: skipped */
	"<D:response>\n"
	"<D:href>/dav/my%20dir/secret</D:href>\n"
	"<D:status>HTTP/1.1 403 Forbidden</D:status>\n"
	"</D:response>\n"
	/* no href at all: skipped */
	"<D:response xmlns:lp1=\"DAV:\">\n"
	"<D:propstat><D:prop><lp1:getcontentlength>1</lp1:getcontentlength>"
	"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\n"
	"</D:response>\n"
	/* an href inside an unknown property is not the entry's href */
	"<D:response xmlns:lp1=\"DAV:\" xmlns:x=\"urn:x\">\n"
	"<D:href>/dav/my%20dir/plain%20name.txt</D:href>\n"
	"<D:propstat><D:prop><x:thing><D:href>/dav/my%20dir/bogus</D:href>"
	"</x:thing><lp1:getcontentlength> 42 </lp1:getcontentlength>"
	"<lp1:getetag>W/\"weak\"</lp1:getetag>"
	"</D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat>\n"
	"</D:response>\n"
	"</D:multistatus>\n";

struct run {
	int rc;
	struct xfer_propfind_result res;
};

/* Feeds doc in pieces of step bytes (0: one piece). */
static struct run parse(const char *url, int depth, const char *doc,
                        size_t len, size_t step, size_t max)
{
	struct xfer_propfind *p = NULL;
	struct run r;
	size_t off, n;

	memset(&r, 0, sizeof(r));
	r.rc = xfer_propfind_new(&p, url, depth, max ? max : 128 * MB);
	if (r.rc)
		return r;
	for (off = 0; off < len && r.rc == 0; off += n) {
		n = step && len - off > step ? step : len - off;
		r.rc = xfer_propfind_feed(p, doc + off, n);
	}
	if (r.rc == 0)
		r.rc = xfer_propfind_finish(p, &r.res);
	xfer_propfind_free(p);
	return r;
}

static const struct xfer_listing_entry *find(const struct run *r,
                                             const char *name)
{
	size_t i;

	for (i = 0; i < r->res.children.count; i++)
		if (strcmp(r->res.children.entries[i].name, name) == 0)
			return &r->res.children.entries[i];
	return NULL;
}

static void check_nginx_root(struct run *r)
{
	const struct xfer_listing_entry *e;

	CHECK_OK(r->rc);
	CHECK(r->res.have_self && S_ISDIR(r->res.self.mode));
	CHECK(r->res.children.count == 3);
	e = find(r, "dir a");
	CHECK(e && S_ISDIR(e->attr.mode) && e->attr.size == 0);
	e = find(r, "sub");
	CHECK(e && S_ISDIR(e->attr.mode));
	e = find(r, "a b#%?+\xc3\xa9.txt");
	CHECK(e && S_ISREG(e->attr.mode) && e->attr.size == 12 &&
	      e->attr.mtime == 1795303918 && e->attr.etag[0] == '\0');
}

static void test_nginx(void)
{
	struct run r;

	r = parse("http://127.0.0.1:8080/", 1, nginx_root,
	          sizeof(nginx_root) - 1, 0, 0);
	check_nginx_root(&r);
	xfer_listing_free(&r.res.children);
	/* The request URL without '/', or as a path. */
	r = parse("/", 1, nginx_root, sizeof(nginx_root) - 1, 0, 0);
	check_nginx_root(&r);
	xfer_listing_free(&r.res.children);

	r = parse("http://127.0.0.1:8080/sub/f", 0, nginx_file,
	          sizeof(nginx_file) - 1, 0, 0);
	CHECK_OK(r.rc);
	CHECK(r.res.have_self && S_ISREG(r.res.self.mode) &&
	      r.res.self.size == 2 && r.res.self.mtime == 1795303918);
	CHECK(r.res.children.count == 0);
	xfer_listing_free(&r.res.children);
}

static void test_chunks(void)
{
	struct xfer_propfind *p;
	struct run r;
	size_t split, len = sizeof(nginx_root) - 1;
	int bad = 0;

	/* Every split point into two pieces. */
	for (split = 0; split <= len; split++) {
		memset(&r, 0, sizeof(r));
		r.rc = xfer_propfind_new(&p, "/", 1, 128 * MB);
		if (r.rc == 0)
			r.rc = xfer_propfind_feed(p, nginx_root, split);
		if (r.rc == 0)
			r.rc = xfer_propfind_feed(p, nginx_root + split,
			                          len - split);
		if (r.rc == 0)
			r.rc = xfer_propfind_finish(p, &r.res);
		xfer_propfind_free(p);
		if (r.rc || r.res.children.count != 3 ||
		    !find(&r, "a b#%?+\xc3\xa9.txt"))
			bad++;
		xfer_listing_free(&r.res.children);
	}
	CHECK(bad == 0);
	/* Byte by byte, and odd sizes. */
	r = parse("/", 1, nginx_root, len, 1, 0);
	check_nginx_root(&r);
	xfer_listing_free(&r.res.children);
	r = parse("/", 1, nginx_root, len, 7, 0);
	check_nginx_root(&r);
	xfer_listing_free(&r.res.children);
	r = parse("http://example.org/dav/my%20dir", 1, apache_dir,
	          sizeof(apache_dir) - 1, 3, 0);
	CHECK_OK(r.rc);
	CHECK(r.res.children.count == 3);
	xfer_listing_free(&r.res.children);
}

static void test_apache(void)
{
	const struct xfer_listing_entry *e;
	struct run r;

	/* Request without the trailing '/', hrefs with it and full URLs. */
	r = parse("http://EXAMPLE.org:80/dav/my%20dir", 1, apache_dir,
	          sizeof(apache_dir) - 1, 0, 0);
	CHECK_OK(r.rc);
	CHECK(r.res.have_self && S_ISDIR(r.res.self.mode));
	CHECK_STR(r.res.self.etag, "\"1000-613e85d1c4e40\"");
	CHECK(r.res.self.mtime == 1709632800);
	CHECK(r.res.children.count == 3);
	e = find(&r, "data#1.bin");
	CHECK(e && S_ISREG(e->attr.mode) && e->attr.size == 1048576 &&
	      e->attr.mtime == 1709632801);
	if (e)
		CHECK_STR(e->attr.etag, "\"100000-613e85d1c4e41\"");
	e = find(&r, "\xe6\x97\xa5\xe6\x9c\xac");
	CHECK(e && S_ISDIR(e->attr.mode));
	e = find(&r, "plain name.txt");
	CHECK(e && e->attr.size == 42);
	if (e)
		CHECK_STR(e->attr.etag, "W/\"weak\"");
	CHECK(!find(&r, "bogus") && !find(&r, "a/b") && !find(&r, "..") &&
	      !find(&r, "x") && !find(&r, "secret"));
	xfer_listing_free(&r.res.children);

	/* Same reply, request with '/': same result. */
	r = parse("/dav/my%20dir/", 1, apache_dir, sizeof(apache_dir) - 1, 0, 0);
	CHECK_OK(r.rc);
	CHECK(r.res.children.count == 3);
	xfer_listing_free(&r.res.children);

	/* Depth 0 of the collection: self only. */
	r = parse("/dav/my%20dir", 0, apache_dir, sizeof(apache_dir) - 1, 0, 0);
	CHECK_OK(r.rc);
	CHECK(r.res.have_self && S_ISDIR(r.res.self.mode) &&
	      r.res.children.count == 0);
	xfer_listing_free(&r.res.children);
}

#define DOC(body) "<?xml version=\"1.0\"?>\n" body

static int rc_of(const char *url, int depth, const char *doc, size_t max)
{
	struct run r = parse(url, depth, doc, strlen(doc), 0, max);

	xfer_listing_free(&r.res.children);
	return r.rc;
}

static const char one_file[] = DOC(
	"<multistatus xmlns=\"DAV:\"><response><href>/f</href><propstat>"
	"<prop><getcontentlength>5</getcontentlength><resourcetype/></prop>"
	"<status>HTTP/1.1 200 OK</status></propstat></response>"
	"</multistatus>");

static void test_depth1_on_file(void)
{
	/* Default namespace, no prefix: works; Depth 1 on a file. */
	CHECK_ERR(rc_of("/f", 1, one_file, 0), -ENOTDIR);
	CHECK_ERR(rc_of("/f/", 1, one_file, 0), -ENOTDIR);
	CHECK_ERR(rc_of("/f", 0, one_file, 0), 0);
	/* nginx names a file asked for as "/sub/f/" with the '/'. */
	CHECK_ERR(rc_of("/sub/f/", 1, DOC(
		"<D:multistatus xmlns:D=\"DAV:\"><D:response>"
		"<D:href>/sub/f/</D:href><D:propstat><D:prop>"
		"<D:getcontentlength>2</D:getcontentlength><D:resourcetype>"
		"</D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK"
		"</D:status></D:propstat></D:response></D:multistatus>"), 0),
		-ENOTDIR);
	/* Depth 0 where the only entry is named differently: taken. */
	CHECK_ERR(rc_of("/other", 0, one_file, 0), 0);
	/* Depth 0 with no usable entry. */
	CHECK_ERR(rc_of("/f", 0, DOC("<multistatus xmlns=\"DAV:\"/>"), 0),
	          -EIO);
}

static void test_hostile(void)
{
	char *big;
	size_t i, n;

	/* Billion laughs: refused at the DOCTYPE, nothing expanded. */
	CHECK_ERR(rc_of("/", 1, DOC(
		"<!DOCTYPE lolz [<!ENTITY lol \"lol\">"
		"<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">"
		"<!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">"
		"]><D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>&lol3;"
		"</D:href></D:response></D:multistatus>"), 0), -EIO);
	/* External entity. */
	CHECK_ERR(rc_of("/", 1, DOC(
		"<!DOCTYPE m [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/&xxe;"
		"</D:href></D:response></D:multistatus>"), 0), -EIO);
	/* External DTD. */
	CHECK_ERR(rc_of("/", 1, DOC(
		"<!DOCTYPE m SYSTEM \"http://127.0.0.1:1/x.dtd\">"
		"<D:multistatus xmlns:D=\"DAV:\"/>"), 0), -EIO);
	/* Undeclared entity. */
	CHECK_ERR(rc_of("/", 1, DOC(
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>/&x;"
		"</D:href></D:response></D:multistatus>"), 0), -EIO);
	/* Predefined entities and character references are fine. */
	{
		static const char doc[] = DOC(
			"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>"
			"/a&amp;b&#x20;c</D:href><D:propstat><D:prop>"
			"<D:resourcetype/></D:prop><D:status>HTTP/1.1 200 OK"
			"</D:status></D:propstat></D:response>"
			"</D:multistatus>");
		struct run r = parse("/", 1, doc, sizeof(doc) - 1, 0, 0);

		CHECK_OK(r.rc);
		CHECK(r.res.children.count == 1 && find(&r, "a&b c"));
		xfer_listing_free(&r.res.children);
	}
	/* Deep nesting: 200 levels inside a prop. */
	n = 200;
	big = malloc(n * 16 + 512);
	CHECK(big != NULL);
	if (big) {
		size_t o = 0, cap = n * 16 + 512;

		o += (size_t)snprintf(big + o, cap - o, "<D:multistatus "
		                      "xmlns:D=\"DAV:\"><D:response><D:href>/a"
		                      "</D:href>");
		for (i = 0; i < n; i++)
			o += (size_t)snprintf(big + o, cap - o, "<x>");
		for (i = 0; i < n; i++)
			o += (size_t)snprintf(big + o, cap - o, "</x>");
		snprintf(big + o, cap - o, "</D:response></D:multistatus>");
		CHECK_ERR(rc_of("/", 1, big, 0), -EIO);
		free(big);
	}
	/* A text node over the cap. */
	n = 40000;
	big = malloc(n + 256);
	CHECK(big != NULL);
	if (big) {
		size_t o = (size_t)snprintf(big, 256, "<D:multistatus "
		                            "xmlns:D=\"DAV:\"><D:response>"
		                            "<D:href>/");
		memset(big + o, 'a', n);
		o += n;
		snprintf(big + o, 256, "</D:href></D:response>"
		         "</D:multistatus>");
		CHECK_ERR(rc_of("/", 1, big, 0), -EIO);
		free(big);
	}
	/* Over max_bytes. */
	CHECK_ERR(rc_of("/", 1, nginx_root, 100), -EFBIG);
	CHECK_ERR(rc_of("/", 1, nginx_root, sizeof(nginx_root) - 1), 0);
	/* Truncated. */
	{
		struct run r = parse("/", 1, nginx_root, sizeof(nginx_root) / 2,
		                     0, 0);

		CHECK_ERR(r.rc, -EIO);
		CHECK(r.res.children.count == 0);
		/* Cut right before the closing tag. */
		r = parse("/", 1, nginx_root, sizeof(nginx_root) - 20, 0, 0);
		CHECK_ERR(r.rc, -EIO);
	}
	/* Not XML at all, HTML, empty, wrong root, two roots. */
	CHECK_ERR(rc_of("/", 1, "<html><body>It works!</body></html>", 0),
	          -EIO);
	CHECK_ERR(rc_of("/", 1, "hello", 0), -EIO);
	CHECK_ERR(rc_of("/", 1, "", 0), -EIO);
	CHECK_ERR(rc_of("/", 1, "\x89PNG\r\n\x1a\n\0\0\0", 0), -EIO);
	CHECK_ERR(rc_of("/", 1, DOC("<multistatus/>"), 0), -EIO);
	CHECK_ERR(rc_of("/", 1, DOC("<D:multistatus xmlns:D=\"urn:notdav\"/>"),
	                0), -EIO);
	CHECK_ERR(rc_of("/", 1, DOC("<D:multistatus xmlns:D=\"DAV:\"/>"
	                            "<D:multistatus xmlns:D=\"DAV:\"/>"), 0),
	          -EIO);
}

static void test_bad_entries(void)
{
	static const char doc[] = DOC(
		"<D:multistatus xmlns:D=\"DAV:\">"
		"<D:response><D:href>/neg</D:href><D:propstat><D:prop>"
		"<D:getcontentlength>-1</D:getcontentlength></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"</D:response>"
		"<D:response><D:href>/huge</D:href><D:propstat><D:prop>"
		"<D:getcontentlength>99999999999999999999999"
		"</D:getcontentlength></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"</D:response>"
		"<D:response><D:href>/ok</D:href><D:propstat><D:prop>"
		"<D:getcontentlength>9223372036854775807"
		"</D:getcontentlength><D:getlastmodified>garbage"
		"</D:getlastmodified></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"</D:response>"
		"<D:response><D:href>/offt</D:href><D:propstat><D:prop>"
		"<D:getcontentlength>9223372036854775808"
		"</D:getcontentlength></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"</D:response>"
		"<D:response><D:href>/%00nul</D:href><D:propstat>"
		"<D:prop/><D:status>HTTP/1.1 200 OK</D:status>"
		"</D:propstat></D:response>"
		"<D:response><D:href>/bad%zzescape</D:href><D:propstat>"
		"<D:prop/><D:status>HTTP/1.1 200 OK</D:status>"
		"</D:propstat></D:response>"
		"<D:response><D:href>/.</D:href><D:propstat>"
		"<D:prop/><D:status>HTTP/1.1 200 OK</D:status>"
		"</D:propstat></D:response>"
		"<D:response><D:href></D:href><D:propstat>"
		"<D:prop/><D:status>HTTP/1.1 200 OK</D:status>"
		"</D:propstat></D:response>"
		"</D:multistatus>");
	const struct xfer_listing_entry *e;
	struct run r = parse("/", 1, doc, sizeof(doc) - 1, 0, 0);

	CHECK_OK(r.rc);
	CHECK(r.res.children.count == 1);
	e = find(&r, "ok");
	CHECK(e && e->attr.size == INT64_MAX && e->attr.mtime == 0);
	xfer_listing_free(&r.res.children);
}

static void test_same_origin(void)
{
	static const struct {
		const char *req, *href;
		int same;
	} cases[] = {
		{ "http://h.example:8080/d/", "/d/x", 1 },
		{ "http://h.example:8080/d/", "x", 1 },
		{ "http://h.example:8080/d/", "sub/x", 1 },
		{ "http://h.example:8080/d/", "http://h.example:8080/d/x", 1 },
		{ "http://h.example:8080/d/", "HTTP://H.EXAMPLE:8080/d/x", 1 },
		{ "http://h.example/d/", "http://h.example:80/d/x", 1 },
		{ "https://h.example/d/", "https://h.example:443/d/x", 1 },
		{ "http://u:pw@h.example/d/", "http://h.example/d/x", 1 },
		{ "http://[::1]:81/d/", "http://[::1]:81/d/x", 1 },
		{ "http://h.example:8080/d/", "//h.example:8080/d/x", 1 },
		{ "/d/", "http://anything.example/d/x", 1 },
		{ "http://h.example:8080/d/", "http://other.example/d/x", 0 },
		{ "http://h.example:8080/d/", "http://h.example/d/x", 0 },
		{ "http://h.example:8080/d/", "http://h.example:8081/d/x", 0 },
		{ "http://h.example/d/", "https://h.example/d/x", 0 },
		{ "https://h.example/d/", "http://h.example:443/d/x", 0 },
		{ "http://h.example/d/", "ftp://h.example/d/x", 0 },
		{ "http://h.example/d/", "//other.example/d/x", 0 },
		{ "http://h.example/d/", "mailto:x@h.example", 0 },
		{ "http://h.example/d/", "http://h.example.evil/d/x", 0 },
		{ "http://h.example/d/", "http://h.example@evil/d/x", 0 },
		{ "http://[::1]:81/d/", "http://[::1]:82/d/x", 0 },
		{ "http://h.example/d/", "http:///d/x", 0 },
		{ "http://h.example/d/", "http://h.example:80"
		  "0000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000"
		  "0000000000000000000000000000000000000000000000000000000000"
		  "/d/x", 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (xfer_href_same_origin(cases[i].req, cases[i].href) !=
		    cases[i].same) {
			fprintf(stderr, "same origin(%s, %s) != %d\n",
			        cases[i].req, cases[i].href, cases[i].same);
			CHECK(0);
		}
}

static void test_names_and_hrefs(void)
{
	char doc[16384], name[1100];
	const struct xfer_listing_entry *e;
	struct run r;
	size_t n;
	int i;

#define RESP(href) "<D:response><D:href>" href "</D:href><D:propstat>" \
	"<D:prop><D:getcontentlength>1</D:getcontentlength></D:prop>" \
	"<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
	n = (size_t)snprintf(doc, sizeof(doc), "%s",
		"<?xml version=\"1.0\"?><D:multistatus xmlns:D=\"DAV:\">"
		"<D:response><D:href>/d/</D:href><D:propstat><D:prop>"
		"<D:resourcetype><D:collection/></D:resourcetype></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		"</D:response>"
		RESP("http://h.example:8080/d/full")
		RESP("rel")
		RESP("http://other.example/d/evil")
		RESP("http://h.example:9999/d/port")
		RESP("https://h.example:8080/d/scheme")
		RESP("//other.example/d/netpath")
		RESP("/d/%C3%A9%C3%A9"));
	/* 255 bytes (kept), 256 and 1024 (skipped); one escaped. */
	for (i = 0; i < 3; i++) {
		size_t len = i == 0 ? 255 : i == 1 ? 256 : 1024;

		memset(name, i == 0 ? 'k' : 'l', len);
		name[len] = '\0';
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "<D:response>"
		        "<D:href>/d/%s%s</D:href><D:propstat><D:prop>"
		        "<D:getcontentlength>1</D:getcontentlength></D:prop>"
		        "<D:status>HTTP/1.1 200 OK</D:status></D:propstat>"
		        "</D:response>", i == 2 ? "%41" : "",
		        i == 2 ? name + 1 : name);
	}
	n += (size_t)snprintf(doc + n, sizeof(doc) - n, "</D:multistatus>");
#undef RESP
	r = parse("http://h.example:8080/d/", 1, doc, n, 0, 0);
	CHECK_OK(r.rc);
	CHECK(r.res.have_self);
	CHECK(r.res.children.count == 4);
	CHECK(find(&r, "full") && find(&r, "rel") &&
	      find(&r, "\xc3\xa9\xc3\xa9"));
	memset(name, 'k', 255);
	name[255] = '\0';
	e = find(&r, name);
	CHECK(e != NULL);
	for (i = 0; i < (int)r.res.children.count; i++)
		CHECK(strlen(r.res.children.entries[i].name) <= 255);
	CHECK(!find(&r, "evil") && !find(&r, "port") && !find(&r, "scheme") &&
	      !find(&r, "netpath"));
	xfer_listing_free(&r.res.children);

	/* Relative hrefs resolve under the request's collection, also for a
	 * request without the trailing '/' (the base is then the parent). */
	CHECK_ERR(rc_of("http://h.example/d/f", 0, DOC(
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>f"
		"</D:href><D:propstat><D:prop><D:getcontentlength>3"
		"</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK"
		"</D:status></D:propstat></D:response></D:multistatus>"), 0),
		0);
	/* A reply that names only other servers is wrong, not empty; a
	 * stat whose only answer is another server's has no answer. */
	CHECK_ERR(rc_of("http://h.example/d/", 1, DOC(
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>"
		"http://evil.example/d/</D:href><D:propstat><D:prop>"
		"<D:resourcetype><D:collection/></D:resourcetype></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
		"<D:response><D:href>http://evil.example/d/x</D:href>"
		"<D:propstat><D:prop><D:getcontentlength>1"
		"</D:getcontentlength></D:prop><D:status>HTTP/1.1 200 OK"
		"</D:status></D:propstat></D:response></D:multistatus>"), 0),
		-EIO);
	CHECK_ERR(rc_of("http://h.example/f", 0, DOC(
		"<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>"
		"http://evil.example/f</D:href><D:propstat><D:prop>"
		"<D:getcontentlength>1</D:getcontentlength></D:prop>"
		"<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>"
		"</D:multistatus>"), 0), -EIO);
}

/* 50,000 entries fed as generated, as from the network. */
static void test_large(void)
{
	struct xfer_propfind *p = NULL;
	struct xfer_propfind_result res;
	char chunk[512];
	int i, n, rc;

	memset(&res, 0, sizeof(res));
	rc = xfer_propfind_new(&p, "/big/", 1, 128 * MB);
	CHECK_OK(rc);
	if (rc)
		return;
	n = snprintf(chunk, sizeof(chunk), "<?xml version=\"1.0\"?>"
	             "<D:multistatus xmlns:D=\"DAV:\"><D:response><D:href>"
	             "/big/</D:href><D:propstat><D:prop><D:resourcetype>"
	             "<D:collection/></D:resourcetype></D:prop><D:status>"
	             "HTTP/1.1 200 OK</D:status></D:propstat></D:response>");
	rc = xfer_propfind_feed(p, chunk, (size_t)n);
	for (i = 0; i < 50000 && rc == 0; i++) {
		n = snprintf(chunk, sizeof(chunk), "<D:response><D:href>/big/"
		             "file%%20%06d.dat</D:href><D:propstat><D:prop>"
		             "<D:getcontentlength>%d</D:getcontentlength>"
		             "<D:getlastmodified>Sat, 21 Nov 2026 23:31:58 GMT"
		             "</D:getlastmodified><D:resourcetype></D:resourcetype>"
		             "</D:prop><D:status>HTTP/1.1 200 OK</D:status>"
		             "</D:propstat></D:response>\n", i, i);
		rc = xfer_propfind_feed(p, chunk, (size_t)n);
	}
	if (rc == 0)
		rc = xfer_propfind_feed(p, "</D:multistatus>", 16);
	if (rc == 0)
		rc = xfer_propfind_finish(p, &res);
	CHECK_OK(rc);
	CHECK(res.children.count == 50000);
	if (res.children.count == 50000) {
		CHECK_STR(res.children.entries[49999].name, "file 049999.dat");
		CHECK(res.children.entries[49999].attr.size == 49999);
	}
	xfer_listing_free(&res.children);
	xfer_propfind_free(p);
}

int main(void)
{
	RUN(test_nginx);
	RUN(test_chunks);
	RUN(test_apache);
	RUN(test_depth1_on_file);
	RUN(test_hostile);
	RUN(test_bad_entries);
	RUN(test_large);
	RUN(test_same_origin);
	RUN(test_names_and_hrefs);
	CHECK_EXIT();
}
