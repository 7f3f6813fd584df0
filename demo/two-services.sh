#!/bin/sh
# The two-service demo: an internal API that only the frontend reaches, and a web
# service published on a host port. `make demo-net` runs it inside a private network
# namespace (unshare --net), with a root of its own, so the host's network is untouched.
#
# usage: two-services.sh PINNACE BUSYBOX_TAR
set -eu
PINNACE=$1
TAR=$2
ROOT=$(mktemp -d /tmp/pinnace-demo-net.XXXXXX)
P="$PINNACE --root $ROOT"
export PINNACE_STORAGE=dir
serve() { echo "sh -c 'mkdir -p /www && echo $1 > /www/index.html && exec httpd -f -p 80 -h /www'"; }
get() { echo "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 $1 80 | tail -n 1"; }

cleanup() {
    $P rm -f api web >/dev/null 2>&1 || true
    $P network rm backend frontend >/dev/null 2>&1 || true
    $P network rm pinnace0 >/dev/null 2>&1 || true
    rm -rf "$ROOT"
}
trap cleanup EXIT

ip link set lo up
$P import -c 'CMD ["sh"]' "$TAR" busybox >/dev/null
set -x
$P network create --subnet 10.77.0.0/24 --internal backend
$P network create frontend
eval "$P run -d --name api --network backend busybox $(serve internal-api)"
eval "$P run -d --name web --network frontend -p 8080:80 busybox $(serve external-web)"
$P network connect backend web
$P network ls
python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/").read().decode().strip())'
$P run --rm --net=container:web busybox sh -c "$(get api)"
$P run --rm --net=bridge busybox sh -c "$(get 10.77.0.2) || echo 'api is unreachable from the default network, as intended'"
$P network rm backend || echo "(backend is in use: rm refuses)"
