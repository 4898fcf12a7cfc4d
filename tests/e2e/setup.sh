#!/usr/bin/env bash
# Installs what tests/e2e and the packaging tests check against beyond Python: zsh and fish
# (the completion scripts must parse in them) and groff (the man page must format without
# a warning), from Debian's packages. Called by tests/setup.sh; safe to run again. When
# they cannot be installed, it says so and exits 0: those tests skip, with the reason.
set -u

missing=()
command -v zsh >/dev/null 2>&1 || missing+=(zsh)
command -v fish >/dev/null 2>&1 || missing+=(fish)
command -v groff >/dev/null 2>&1 || missing+=(groff-base)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
    echo "tests/e2e/setup.sh: cannot install ${missing[*]} here: their tests will be skipped" >&2
    exit 0
fi
echo "tests/e2e/setup.sh: installing ${missing[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; }; }; then
    echo "tests/e2e/setup.sh: could not install ${missing[*]}: their tests will be skipped" >&2
fi
exit 0
