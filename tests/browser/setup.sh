#!/usr/bin/env bash
# Installs what tests/browser needs: Chromium, from Debian's packages (never a browser
# build of its own). Called by .ci/run before the tests; safe to run again. When Chromium
# cannot be installed (no root, no apt, no network), it says so and exits 0: the browser
# tests then skip, with that reason.
set -u

if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "tests/browser/setup.sh: no apt-get here: the browser tests will be skipped" >&2
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "tests/browser/setup.sh: not root: install chromium to run the browser tests" >&2
        exit 0
    fi
else
    SUDO=""
fi
echo "tests/browser/setup.sh: installing chromium (Debian package)" >&2
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq >/dev/null && $SUDO apt-get install -y -qq chromium >/dev/null; then
    chromium --version >&2 || true
else
    echo "tests/browser/setup.sh: could not install chromium: the browser tests will be skipped" >&2
fi
exit 0
