/*
 * delayrelay: a loopback TCP relay that behaves like a long fat pipe.
 *
 *   delayrelay [-v] [-w WINDOW] [--rate RATE] LISTEN_PORT_OR_0 TARGET_HOST:PORT
 *              DELAY_MS
 *
 * Listens on 127.0.0.1, prints the port on stdout once listening, and for
 * every accepted connection opens one to TARGET and forwards both directions
 * with DELAY_MS of one-way delay each.  Each direction is a timestamped queue:
 * bytes read at time t are written at t + DELAY_MS, however many are in
 * flight, so throughput is not limited to one buffer per round trip.
 *
 * What limits a single TCP stream on a real long path is its window: the
 * sender may have at most about one socket buffer of unacknowledged data
 * out, and an acknowledgement needs one more DELAY_MS to come back.  The relay
 * models exactly that and nothing else: per direction it stops reading once
 * WINDOW bytes are in flight (read but not yet delivered + DELAY_MS for the
 * ack), so one stream gets at most WINDOW / (2 * DELAY_MS).  WINDOW defaults
 * to the smaller of the kernel's maximum TCP send and receive buffers
 * (net.ipv4.tcp_wmem[2], net.ipv4.tcp_rmem[2]), i.e. the window a Linux
 * sender and receiver could reach; -w 0 removes the window (a pure delay
 * line, memory capped at 256 MiB per direction).  A new connection also pays
 * its handshake: nothing is delivered before accept + 2 * DELAY_MS + DELAY_MS.
 * TCP slow start and loss are not modelled.
 *
 * --rate RATE makes the path a shared link of that capacity: per direction,
 * all connections' bytes go out one after another at RATE (a virtual clock
 * "link free at": a chunk read at t leaves the link at max(t, free) +
 * len / RATE and arrives DELAY_MS later), so N streams share RATE as they
 * would share a real bottleneck.  The link's queue holds at most QUEUE_MS of
 * sending (a router buffer): beyond that no connection reads more from its
 * source, which is what keeps one greedy stream from delaying the others'
 * small requests without bound.  RATE is a number with an optional k/m/g
 * (decimal: 1000) and a unit: "bit" (bit/s) or "B"/"byte" (byte/s, also
 * the unit of a bare number): 1000mbit, 125MB, 64mbit.
 *
 * One thread per connection (ppoll on the two sockets, ns timers); the main
 * thread accepts.  SIGTERM or SIGINT: stop accepting and exit 0.
 */
#define _GNU_SOURCE
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define READ_MAX     (256u * 1024u)
#define NOWINDOW_CAP ((size_t)256 << 20)
#define QUEUE_MS     20u

struct chunk {
	struct chunk *next;
	uint64_t due;		/* monotonic ns when it may be written */
	size_t len, off;
	char data[];
};

struct ack {
	struct ack *next;
	uint64_t due;		/* monotonic ns when the window opens again */
	size_t bytes;
};

struct dir {
	int src, dst;
	int link;		/* index into g_link_free */
	struct chunk *head, *tail;
	struct ack *ahead, *atail;
	size_t inflight;	/* read from src, ack not yet back */
	bool src_eof;		/* src sent FIN */
	bool shut;		/* FIN passed on to dst */
	bool want_out;		/* a due chunk waits for dst to drain */
	uint64_t total;		/* bytes delivered to dst */
};

struct conn {
	int fd[2];		/* 0: client, 1: target */
	uint64_t start;		/* nothing is delivered before start + delay */
	uint64_t accepted;	/* monotonic ns of accept */
	unsigned long id;
	struct dir d[2];	/* 0: client -> target, 1: target -> client */
	char *buf;
};

static uint64_t g_delay_ns;
static uint64_t g_ack_delay_ns;
static size_t g_window;
static struct sockaddr_storage g_target;
static socklen_t g_target_len;
static volatile sig_atomic_t g_stop;
static bool g_verbose;
static unsigned long g_nconn;

/* The shared link, one per direction (0: client -> target). */
static uint64_t g_rate;                 /* bytes per second; 0: unlimited */
static pthread_mutex_t g_link_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_link_free[2];         /* monotonic ns; guarded by g_link_lock */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* When a chunk of len bytes read at t has crossed the link of direction
 * i: it waits for the bytes queued before it, then takes len / rate. */
static uint64_t link_send(int i, uint64_t t, size_t len)
{
	uint64_t done;

	if (!g_rate)
		return t;
	pthread_mutex_lock(&g_link_lock);
	done = (g_link_free[i] > t ? g_link_free[i] : t) +
	       (uint64_t)len * 1000000000u / g_rate;
	g_link_free[i] = done;
	pthread_mutex_unlock(&g_link_lock);
	return done;
}

/* 0 if direction i's link queue has room now, else when it will. */
static uint64_t link_room_at(int i, uint64_t now)
{
	uint64_t at = 0, q = (uint64_t)QUEUE_MS * 1000000u;

	if (!g_rate)
		return 0;
	pthread_mutex_lock(&g_link_lock);
	if (g_link_free[i] > now + q)
		at = g_link_free[i] - q;
	pthread_mutex_unlock(&g_link_lock);
	return at;
}

static void on_signal(int sig)
{
	(void)sig;
	g_stop = 1;
}

static void dir_free(struct dir *d)
{
	while (d->head) {
		struct chunk *c = d->head;

		d->head = c->next;
		free(c);
	}
	while (d->ahead) {
		struct ack *a = d->ahead;

		d->ahead = a->next;
		free(a);
	}
	d->tail = NULL;
	d->atail = NULL;
}

/* Returns false when out of memory. */
static bool add_ack(struct dir *d, uint64_t due, size_t bytes)
{
	struct ack *a;

	if (g_ack_delay_ns == 0) {
		d->inflight -= bytes;
		return true;
	}
	/* Merge acks less than 100 us apart: bounds the list length. */
	if (d->atail && due - d->atail->due < 100000) {
		d->atail->bytes += bytes;
		return true;
	}
	a = malloc(sizeof(*a));
	if (!a)
		return false;
	a->next = NULL;
	a->due = due;
	a->bytes = bytes;
	if (d->atail)
		d->atail->next = a;
	else
		d->ahead = a;
	d->atail = a;
	return true;
}

static void release_acks(struct dir *d, uint64_t now)
{
	while (d->ahead && d->ahead->due <= now) {
		struct ack *a = d->ahead;

		d->inflight -= a->bytes;
		d->ahead = a->next;
		if (!d->ahead)
			d->atail = NULL;
		free(a);
	}
}

/* Writes what is due.  Returns -1 on a fatal socket error. */
static int flush_due(struct dir *d, uint64_t now)
{
	d->want_out = false;
	while (d->head && d->head->due <= now) {
		struct chunk *c = d->head;
		ssize_t n = send(d->dst, c->data + c->off, c->len - c->off,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				d->want_out = true;
				return 0;
			}
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->off += (size_t)n;
		d->total += (uint64_t)n;
		if (!add_ack(d, now + g_ack_delay_ns, (size_t)n))
			return -1;
		if (c->off == c->len) {
			d->head = c->next;
			if (!d->head)
				d->tail = NULL;
			free(c);
		}
	}
	if (d->src_eof && !d->head && !d->shut) {
		shutdown(d->dst, SHUT_WR);
		d->shut = true;
	}
	return 0;
}

static size_t window_of(void)
{
	return g_window ? g_window : NOWINDOW_CAP;
}

static bool want_read(const struct dir *d)
{
	return !d->src_eof && d->inflight < window_of();
}

/* Reads one buffer from src into the queue.  Returns -1 on fatal error. */
static int read_src(struct conn *c, struct dir *d)
{
	size_t room = window_of() - d->inflight;
	size_t want = room < READ_MAX ? room : READ_MAX;
	ssize_t n;
	struct chunk *ch;
	uint64_t t;

	n = recv(d->src, c->buf, want, MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return 0;
		return -1;
	}
	if (n == 0) {
		d->src_eof = true;
		return 0;
	}
	ch = malloc(sizeof(*ch) + (size_t)n);
	if (!ch)
		return -1;
	memcpy(ch->data, c->buf, (size_t)n);
	t = now_ns();
	ch->next = NULL;
	ch->due = link_send(d->link, t > c->start ? t : c->start, (size_t)n) +
		  g_delay_ns;
	ch->len = (size_t)n;
	ch->off = 0;
	if (d->tail)
		d->tail->next = ch;
	else
		d->head = ch;
	d->tail = ch;
	d->inflight += (size_t)n;
	return 0;
}

static void *conn_thread(void *arg)
{
	struct conn *c = arg;

	for (;;) {
		struct pollfd pfd[2];
		uint64_t now = now_ns(), next = UINT64_MAX;
		struct timespec ts;
		int i, r;
		bool fatal = false, full[2];

		for (i = 0; i < 2; i++) {
			struct dir *d = &c->d[i];

			release_acks(d, now);
			if (flush_due(d, now) < 0)
				fatal = true;
		}
		if (fatal)
			break;
		if (c->d[0].shut && c->d[1].shut)
			break;
		for (i = 0; i < 2; i++) {
			struct dir *d = &c->d[i];

			if (d->head && d->head->due > now && d->head->due < next)
				next = d->head->due;
			if (!d->src_eof && !want_read(d) && d->ahead &&
			    d->ahead->due < next)
				next = d->ahead->due;
			/* A full link queue: read again once it has drained. */
			full[i] = false;
			if (want_read(d)) {
				uint64_t at = link_room_at(d->link, now);

				if (at) {
					full[i] = true;
					if (at < next)
						next = at;
				}
			}
		}
		/* fd[i] is the source of d[i] and the destination of d[1-i]. */
		for (i = 0; i < 2; i++) {
			pfd[i].fd = c->fd[i];
			pfd[i].events = (short)((want_read(&c->d[i]) && !full[i]
						 ? POLLIN : 0) |
						(c->d[1 - i].want_out ? POLLOUT : 0));
			pfd[i].revents = 0;
			if (!pfd[i].events)
				pfd[i].fd = -1;	/* no POLLHUP spinning */
		}
		if (next != UINT64_MAX) {
			uint64_t wait = next - now;

			ts.tv_sec = (time_t)(wait / 1000000000u);
			ts.tv_nsec = (long)(wait % 1000000000u);
		}
		if (pfd[0].fd < 0 && pfd[1].fd < 0 && next == UINT64_MAX) {
			/* Nothing can ever happen again (should not occur). */
			dms_log(LOG_WARNING, "delayrelay: connection stalled, closing");
			break;
		}
		r = ppoll(pfd, 2, next == UINT64_MAX ? NULL : &ts, NULL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			dms_log(LOG_ERR, "delayrelay: ppoll: %s", strerror(errno));
			break;
		}
		for (i = 0; i < 2 && !fatal; i++) {
			if (pfd[i].fd < 0)
				continue;
			if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
			    want_read(&c->d[i]) && !full[i] &&
			    read_src(c, &c->d[i]) < 0)
				fatal = true;
			else if ((pfd[i].revents & POLLERR) && !want_read(&c->d[i]))
				fatal = true;
		}
		if (fatal)
			break;
	}
	if (g_verbose)
		dms_log(LOG_NOTICE, "delayrelay: close %lu: %llu bytes up, %llu bytes down, %.3f s",
			c->id, (unsigned long long)c->d[0].total,
			(unsigned long long)c->d[1].total,
			(double)(now_ns() - c->accepted) / 1e9);
	close(c->fd[0]);
	close(c->fd[1]);
	dir_free(&c->d[0]);
	dir_free(&c->d[1]);
	free(c->buf);
	free(c);
	return NULL;
}

static void set_nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void start_conn(int cfd)
{
	struct conn *c;
	pthread_t th;
	pthread_attr_t attr;
	int tfd;

	tfd = socket(g_target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (tfd < 0 || connect(tfd, (struct sockaddr *)&g_target, g_target_len) < 0) {
		dms_log(LOG_WARNING, "delayrelay: connect to target: %s", strerror(errno));
		if (tfd >= 0)
			close(tfd);
		close(cfd);
		return;
	}
	set_nodelay(cfd);
	set_nodelay(tfd);
	c = calloc(1, sizeof(*c));
	if (c)
		c->buf = malloc(READ_MAX);
	if (!c || !c->buf) {
		dms_log(LOG_ERR, "delayrelay: out of memory");
		free(c);
		close(cfd);
		close(tfd);
		return;
	}
	c->fd[0] = cfd;
	c->fd[1] = tfd;
	/* Emulated handshake: the client's connect would have taken one RTT. */
	c->accepted = now_ns();
	c->start = c->accepted + 2 * g_delay_ns;
	c->id = ++g_nconn;
	if (g_verbose)
		dms_log(LOG_NOTICE, "delayrelay: open %lu", c->id);
	c->d[0].src = cfd;
	c->d[0].dst = tfd;
	c->d[0].link = 0;
	c->d[1].src = tfd;
	c->d[1].dst = cfd;
	c->d[1].link = 1;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	if (pthread_create(&th, &attr, conn_thread, c) != 0) {
		dms_log(LOG_ERR, "delayrelay: pthread_create failed");
		close(cfd);
		close(tfd);
		free(c->buf);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

static bool parse_size(const char *s, size_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return false;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end)
		return false;
	*out = (size_t)v;
	return true;
}

/* RATE: digits, optional k/m/g (x1000), unit bit|B|byte (default B). */
static bool parse_rate(const char *s, uint64_t *bytes_per_s)
{
	char *end;
	unsigned long long v;
	bool bits = false;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || v == 0)
		return false;
	switch (*end) {
	case 'k': case 'K': v *= 1000ull; end++; break;
	case 'm': case 'M': v *= 1000000ull; end++; break;
	case 'g': case 'G': v *= 1000000000ull; end++; break;
	default: break;
	}
	if (!strcmp(end, "bit") || !strcmp(end, "bps"))
		bits = true;
	else if (*end && strcmp(end, "B") && strcmp(end, "byte") &&
		 strcmp(end, "Bps"))
		return false;
	*bytes_per_s = bits ? v / 8 : v;
	return *bytes_per_s > 0;
}

/* Third field of a /proc/sys/net/ipv4/tcp_[rw]mem file, 0 if unreadable. */
static size_t sysctl_max(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long long a, b, c;
	size_t v = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%llu %llu %llu", &a, &b, &c) == 3)
		v = (size_t)c;
	fclose(f);
	return v;
}

static size_t default_window(void)
{
	size_t w = sysctl_max("/proc/sys/net/ipv4/tcp_wmem");
	size_t r = sysctl_max("/proc/sys/net/ipv4/tcp_rmem");

	if (!w)
		w = 4u << 20;
	if (!r)
		r = 6u << 20;
	return w < r ? w : r;
}

static bool resolve_target(const char *spec)
{
	char host[256];
	const char *colon = strrchr(spec, ':');
	const char *h = spec;
	size_t hl;
	struct addrinfo hints, *res = NULL;
	int e;

	if (!colon || colon == spec || !colon[1])
		return false;
	hl = (size_t)(colon - spec);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	e = getaddrinfo(host, colon + 1, &hints, &res);
	if (e != 0 || !res) {
		dms_log(LOG_ERR, "delayrelay: %s: %s", spec, gai_strerror(e));
		return false;
	}
	memcpy(&g_target, res->ai_addr, res->ai_addrlen);
	g_target_len = res->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

static void usage(void)
{
	fprintf(stderr, "usage: delayrelay [-v] [-w WINDOW_BYTES] [--rate RATE] "
		"LISTEN_PORT_OR_0 TARGET_HOST:PORT DELAY_MS\n"
		"  -v  log each connection's open and close (bytes, duration) to stderr\n"
		"  -w  per-direction window (k/m/g suffixes; 0 = none); default: "
		"min(tcp_wmem max, tcp_rmem max)\n"
		"  --rate RATE  capacity of the link all connections share, each "
		"direction\n"
		"      (1000mbit, 64mbit, 125MB: k/m/g = 1000, bit or B/byte)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	struct sockaddr_in sin;
	socklen_t sl = sizeof(sin);
	int opt, lfd, one = 1;
	long port, delay_ms;
	char *end;
	bool have_window = false;

	static const struct option longopts[] = {
		{ "rate", required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};

	while ((opt = getopt_long(argc, argv, "vw:r:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'r':
			if (!parse_rate(optarg, &g_rate))
				usage();
			break;
		case 'v':
			g_verbose = true;
			break;
		case 'w':
			if (!parse_size(optarg, &g_window))
				usage();
			have_window = true;
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 3)
		usage();
	port = strtol(argv[optind], &end, 10);
	if (*end || port < 0 || port > 65535)
		usage();
	delay_ms = strtol(argv[optind + 2], &end, 10);
	if (*end || delay_ms < 0 || delay_ms > 600000)
		usage();
	if (!resolve_target(argv[optind + 1]))
		usage();
	if (!have_window)
		g_window = default_window();
	g_delay_ns = (uint64_t)delay_ms * 1000000u;
	g_ack_delay_ns = g_window ? g_delay_ns : 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		dms_log(LOG_ERR, "delayrelay: socket: %s", strerror(errno));
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)port);
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(lfd, 256) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) < 0) {
		dms_log(LOG_ERR, "delayrelay: listen on port %ld: %s", port, strerror(errno));
		return 1;
	}
	printf("%u\n", ntohs(sin.sin_port));
	fflush(stdout);
	dms_log(LOG_INFO, "delayrelay: 127.0.0.1:%u -> %s, %ld ms each way, window %zu, "
		"link %llu bytes/s (0: unlimited)", ntohs(sin.sin_port),
		argv[optind + 1], delay_ms, g_window, (unsigned long long)g_rate);

	while (!g_stop) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int cfd;

		if (poll(&p, 1, 500) <= 0)
			continue;
		cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
				dms_log(LOG_WARNING, "delayrelay: accept: %s", strerror(errno));
			if (errno == EMFILE || errno == ENFILE)
				usleep(100000);
			continue;
		}
		start_conn(cfd);
	}
	close(lfd);
	return 0;
}
