#!/usr/bin/env bash
# Install what the fleet tests need beyond the virtualenv: etcd (Debian's etcd-server).
# Idempotent and quick when etcd is already there; the tests start their own cluster on
# loopback ports (the package's own service is neither needed nor started).
set -euo pipefail
if command -v etcd >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/fleet/setup.sh: cannot install etcd-server here (needs root and apt-get);" \
        "the fleet tests will be skipped" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the package from starting a system etcd on the standard ports.
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d.taskforce
chmod +x /usr/sbin/policy-rc.d.taskforce
if [ ! -e /usr/sbin/policy-rc.d ]; then
    mv /usr/sbin/policy-rc.d.taskforce /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
else
    rm -f /usr/sbin/policy-rc.d.taskforce
fi
apt-get install -y -qq --no-install-recommends etcd-server >/dev/null
command -v etcd
