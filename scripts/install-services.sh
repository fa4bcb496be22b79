#!/bin/sh
# Installs the Redis and PostgreSQL server binaries the tests start for themselves
# (tests/support/services.py), without leaving any system service running, and the Chromium
# browser the web page's test drives (tests/service/test_service_web.py).
# Run as root. Quiet and idempotent when everything is already there.
set -eu

pg_bin_dir() {
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/postgres" ] && [ -x "$dir/initdb" ]; then
            return 0
        fi
    done
    return 1
}

packages=""
command -v redis-server >/dev/null 2>&1 || packages="$packages redis-server"
pg_bin_dir || packages="$packages postgresql"
[ -x /usr/bin/chromium ] || packages="$packages chromium"

if [ -z "$packages" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-services: need root to install:$packages" >&2
    exit 1
fi

# Pids of server processes that run now; anything new after the install was started by
# a package's postinst and is stopped again. Read from /proc so no procps is needed.
server_pids() {
    for comm in /proc/[0-9]*/comm; do
        name=$(cat "$comm" 2>/dev/null) || continue
        case "$name" in
            redis-server | postgres)
                pid=${comm#/proc/}
                echo "${pid%/comm}"
                ;;
        esac
    done
}

before=$(server_pids)

# Debian's postinst scripts ask invoke-rc.d whether they may start the services;
# a policy-rc.d that exits 101 says no. Keep one the machine already has.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    own_policy=1
fi

cleanup() {
    if [ -n "$own_policy" ]; then
        rm -f "$policy"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "install-services: installing$packages" >&2
apt-get update -q >/dev/null
# shellcheck disable=SC2086  # the package list is meant to split into words
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages >/dev/null

for pid in $(server_pids); do
    case " $(echo $before) " in
        *" $pid "*) ;;
        *)
            echo "install-services: stopping server pid $pid started by the install" >&2
            kill -TERM "$pid" 2>/dev/null || true
            ;;
    esac
done

command -v redis-server >/dev/null 2>&1 || {
    echo "install-services: redis-server is still missing" >&2
    exit 1
}
pg_bin_dir || {
    echo "install-services: no postgres/initdb under /usr/lib/postgresql/*/bin" >&2
    exit 1
}
[ -x /usr/bin/chromium ] || {
    echo "install-services: /usr/bin/chromium is still missing" >&2
    exit 1
}
