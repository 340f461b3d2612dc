#!/bin/sh
# Installs, with apt-get, the Debian 12 packages dmsfs needs, by group,
# skipping those already installed:
#   sh packaging/install-deps.sh [GROUP...]     (no GROUP: all of them)
# build    compiler and libraries to build dmsfs and dmsctl
# runtime  what a mount needs besides the shared libraries (fuse3)
# demo     what `make demo` runs: nginx with WebDAV listings, curl, python3
# test     the servers and tools of `make test` (GridFTP, Squid, pytest...)
# bench    the peers and tools of `make bench` (fio, rclone, XRootD)
# deb      what `make deb` needs to build the Debian package
set -eu
build="build-essential pkg-config libfuse3-dev libcurl4-openssl-dev
liblmdb-dev libxxhash-dev libxml2-dev libinih-dev libglobus-ftp-client-dev"
runtime="fuse3"
demo="nginx libnginx-mod-http-dav-ext curl python3"
test="lmdb-utils globus-gridftp-server-progs globus-gass-copy-progs
globus-proxy-utils globus-gsi-cert-utils-progs openssl nginx
libnginx-mod-http-dav-ext squid python3 python3-pytest curl clang passwd
util-linux procps python3-prometheus-client dpkg-dev debhelper lintian attr"
bench="fio rclone xrootd-server xrootd-fuse xrootd-client"
deb="$build dpkg-dev debhelper lintian"
[ $# -gt 0 ] || set -- build runtime demo test bench
PKGS=""
for g in "$@"; do
	case $g in
	build) PKGS="$PKGS $build" ;;
	runtime) PKGS="$PKGS $runtime" ;;
	demo) PKGS="$PKGS $demo" ;;
	test) PKGS="$PKGS $test" ;;
	bench) PKGS="$PKGS $bench" ;;
	deb) PKGS="$PKGS $deb" ;;
	*) echo "dmsfs: install-deps.sh: unknown group '$g' (build runtime" \
		"demo test bench deb)" >&2; exit 2 ;;
	esac
done
missing=""
for p in $PKGS; do
	case " $missing " in *" $p "*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "dmsfs: missing packages:$missing (run as root to install them)" >&2
	exit 1
fi
echo "dmsfs: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Package scripts may try to start nginx/squid as services; the tests run
# their own instances on free loopback ports, so a failed start is harmless.
apt-get install -y -q --no-install-recommends $missing </dev/null
