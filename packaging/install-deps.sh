#!/bin/sh
# Installs, with apt-get, the Debian 12 packages dmsfs needs to build, test,
# benchmark and demo, skipping those already installed.
set -eu
PKGS="build-essential pkg-config libfuse3-dev fuse3 libcurl4-openssl-dev
liblmdb-dev lmdb-utils libxxhash-dev libxml2-dev libinih-dev
libglobus-ftp-client-dev globus-gridftp-server-progs globus-gass-copy-progs
globus-proxy-utils globus-gsi-cert-utils-progs openssl
nginx libnginx-mod-http-dav-ext squid python3 python3-pytest fio curl
rclone xrootd-server xrootd-fuse xrootd-client clang passwd util-linux procps
attr"
missing=""
for p in $PKGS; do
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
