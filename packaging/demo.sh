#!/bin/sh
# dmsfs demo: a sample archive served by nginx (WebDAV) on a loopback port,
# mounted read-only with build/dmsfs.
#
#   sh packaging/demo.sh start   (make demo)       idempotent
#   sh packaging/demo.sh stop    (make demo-stop)  fine when nothing runs
#   sh packaging/demo.sh status
#
# Everything lives under $DMSFS_DEMO_DIR (default /var/tmp/dmsfs-demo):
# archive/ (generated once), cache/, mnt/, nginx/ (conf, logs), state.
# Processes are stopped by the PIDs recorded in state, never by name.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${DMSFS_BIN:-$ROOT/build/dmsfs}
DEMO=${DMSFS_DEMO_DIR:-/var/tmp/dmsfs-demo}
ARCHIVE=$DEMO/archive
MNT=$DEMO/mnt
CACHE=$DEMO/cache
NGX=$DEMO/nginx
STATE=$DEMO/state
DAV_EXT=/usr/lib/nginx/modules/ngx_http_dav_ext_module.so
PY=${PYTHON:-/usr/bin/python3}
BIG_MB=${DMSFS_DEMO_BIG_MB:-300}

say() { printf 'dmsfs demo: %s\n' "$*"; }
die() { printf 'dmsfs demo: error: %s\n' "$*" >&2; exit 1; }

# The value of KEY in the state file (empty if none).
state_get() {
	[ -f "$STATE" ] || return 0
	sed -n "s/^$1=//p" "$STATE" | tail -n 1
}

# True if PID is alive and its command line contains WORD.
pid_is() {
	[ -n "$1" ] && [ -r "/proc/$1/cmdline" ] &&
		tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -q -- "$2"
}

is_mounted() {
	awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/self/mounts
}

# PID of the dmsfs daemon serving $MNT (empty if none).
dmsfs_pid() {
	for p in /proc/[0-9]*; do
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		case "$cmd" in
		*dmsfs*" $MNT "* | *dmsfs*" $MNT") echo "${p#/proc/}"; return 0 ;;
		esac
	done
}

free_port() {
	"$PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

make_archive() {
	[ -f "$ARCHIVE/.complete" ] && return 0
	say "generating the sample archive in $ARCHIVE (once)"
	rm -rf "$ARCHIVE"
	mkdir -p "$ARCHIVE"
	"$PY" - "$ARCHIVE" <<'EOF'
import os, random, sys, time
root = sys.argv[1]
rng = random.Random(1810001)
base = int(time.time()) - 90 * 86400
def put(rel, size, age_days):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(rng.randbytes(size))
    t = base + age_days * 86400
    os.utime(p, (t, t))
for e, exp in enumerate(["RB1810001", "RB1810002", "RB1820417"]):
    for r in range(4):
        run = 123 + 10 * e + r
        put(f"{exp}/raw/run_{run:06d}.nxs", rng.randrange(200_000, 2_000_000), e * 10 + r)
        put(f"{exp}/raw/run_{run:06d}.log", rng.randrange(1_000, 20_000), e * 10 + r)
    put(f"{exp}/processed/reduced_{123 + 10 * e:06d}.h5", 750_000, e * 10 + 5)
with open(os.path.join(root, "RB1810001", "logbook.txt"), "w") as f:
    f.write("2018-10-01 beam on\n2018-10-02 sample changed\n")
with open(os.path.join(root, "README.txt"), "w") as f:
    f.write("dmsfs demo archive: experiments RB*/raw (NeXus), processed "
            "(HDF5), large/ (one big scan).\n")
os.makedirs(os.path.join(root, "large"), exist_ok=True)
EOF
	say "writing a ${BIG_MB} MB file (large/scan_000001.nxs)"
	head -c "${BIG_MB}M" /dev/urandom >"$ARCHIVE/large/scan_000001.nxs"
	touch "$ARCHIVE/.complete"
}

start_nginx() {
	pid=$(state_get nginx_pid)
	if pid_is "$pid" nginx; then
		say "nginx already running (pid $pid, port $(state_get port))"
		return 0
	fi
	[ -f "$DAV_EXT" ] || die "$DAV_EXT missing (apt-get install libnginx-mod-http-dav-ext)"
	mkdir -p "$NGX/tmp"
	port=$(free_port)
	user=""
	[ "$(id -u)" = 0 ] && user="user root;"
	cat >"$NGX/nginx.conf" <<EOF
load_module $DAV_EXT;
$user
worker_processes 2;
pid $NGX/nginx.pid;
error_log $NGX/error.log notice;
events { worker_connections 1024; }
http {
    access_log $NGX/access.log;
    client_body_temp_path $NGX/tmp/body;
    proxy_temp_path $NGX/tmp/proxy;
    fastcgi_temp_path $NGX/tmp/fastcgi;
    uwsgi_temp_path $NGX/tmp/uwsgi;
    scgi_temp_path $NGX/tmp/scgi;
    default_type application/octet-stream;
    sendfile on;
    server {
        listen 127.0.0.1:$port;
        root $ARCHIVE;
        location / {
            dav_ext_methods PROPFIND OPTIONS;
            autoindex on;
        }
    }
}
EOF
	rm -f "$NGX/nginx.pid"
	nginx -p "$NGX" -c "$NGX/nginx.conf" -e "$NGX/error.log" ||
		die "nginx did not start (see $NGX/error.log)"
	i=0
	while [ ! -s "$NGX/nginx.pid" ] ||
		! curl -s -o /dev/null -X PROPFIND -H 'Depth: 0' "http://127.0.0.1:$port/"; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "nginx not answering on port $port (see $NGX/error.log)"
		sleep 0.1
	done
	pid=$(cat "$NGX/nginx.pid")
	printf 'nginx_pid=%s\nport=%s\n' "$pid" "$port" >"$STATE"
	say "nginx (WebDAV) serving $ARCHIVE at http://127.0.0.1:$port/ (pid $pid)"
}

do_start() {
	[ -x "$BIN" ] || die "$BIN not built (run make)"
	mkdir -p "$DEMO" "$MNT"    # the cache dir is created (0700) by dmsfs
	make_archive
	old_port=$(state_get port)
	start_nginx
	port=$(state_get port)
	if is_mounted "$MNT"; then
		if [ "$old_port" = "$port" ] && ls "$MNT" >/dev/null 2>&1; then
			say "already mounted at $MNT"
		else
			say "remounting $MNT (origin changed or mount dead)"
			fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"
		fi
	fi
	if ! is_mounted "$MNT"; then
		"$BIN" -o "cache_dir=$CACHE,cache_size=1G,meta_ttl=60" \
			"http://127.0.0.1:$port/" "$MNT" || die "dmsfs could not mount"
		printf 'dmsfs_pid=%s\n' "$(dmsfs_pid)" >>"$STATE"
		say "mounted http://127.0.0.1:$port/ at $MNT"
	fi
	echo
	echo "\$ ls -l $MNT"
	ls -l "$MNT"
	echo "\$ ls -l $MNT/RB1810001/raw"
	ls -l "$MNT/RB1810001/raw" || true
	cat <<EOF

Browse it:    ls -lR $MNT
              cat $MNT/README.txt
              time cat $MNT/large/scan_000001.nxs >/dev/null   # first read: from nginx
              time cat $MNT/large/scan_000001.nxs >/dev/null   # again: from the cache
Cache:        $CACHE (LMDB; survives remounts)
Writes fail:  touch $MNT/x   -> Read-only file system
Stop:         make demo-stop   (or sh packaging/demo.sh stop)
EOF
}

do_stop() {
	stopped=""
	if is_mounted "$MNT"; then
		dpid=$(state_get dmsfs_pid)
		[ -n "$dpid" ] || dpid=$(dmsfs_pid)
		i=0
		until fusermount3 -u "$MNT" 2>/dev/null; do
			i=$((i + 1))
			if [ $i -ge 20 ]; then
				say "mount busy; detaching it lazily"
				fusermount3 -uz "$MNT"
				break
			fi
			sleep 0.25
		done
		i=0
		while pid_is "$dpid" dmsfs && [ $i -lt 100 ]; do
			i=$((i + 1))
			sleep 0.1
		done
		pid_is "$dpid" dmsfs && say "warning: dmsfs (pid $dpid) still running"
		stopped="$stopped dmsfs"
	fi
	pid=$(state_get nginx_pid)
	if pid_is "$pid" nginx; then
		kill -QUIT "$pid"
		i=0
		while pid_is "$pid" nginx && [ $i -lt 100 ]; do
			i=$((i + 1))
			sleep 0.1
		done
		pid_is "$pid" nginx && kill -KILL "$pid"
		stopped="$stopped nginx"
	fi
	rm -f "$STATE"
	if [ -n "$stopped" ]; then
		say "stopped:$stopped (archive and cache kept in $DEMO; rm -rf it to remove)"
	else
		say "nothing was running"
	fi
}

do_status() {
	if is_mounted "$MNT"; then say "mounted at $MNT"; else say "not mounted"; fi
	pid=$(state_get nginx_pid)
	if pid_is "$pid" nginx; then
		say "nginx running (pid $pid, http://127.0.0.1:$(state_get port)/)"
	else
		say "nginx not running"
	fi
}

case "${1:-}" in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
