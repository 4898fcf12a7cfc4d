#!/usr/bin/env bash
# Installs what tests/reliability needs beyond Python: libfaketime (the clock jump test
# runs taskforce under it), from Debian's packages. Called by tests/setup.sh before the
# tests; safe to run again. When it cannot be installed (no root, no apt, no network), it
# says so and exits 0: that test then skips, with the reason (the in-process clock test
# still runs).
set -u

if [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ] \
    || [ -e /usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1 ] \
    || command -v faketime >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/reliability/setup.sh: no apt-get here: the faketime test will be skipped" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "tests/reliability/setup.sh: not root: install faketime to run its test" >&2
        exit 0
    fi
else
    SUDO=""
fi
echo "tests/reliability/setup.sh: installing faketime (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get install -y -qq faketime >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq faketime >/dev/null; }; }; then
    echo "tests/reliability/setup.sh: could not install faketime: its test will be skipped" >&2
fi
exit 0
