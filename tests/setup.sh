#!/usr/bin/env bash
# System packages some tests need (each script installs what is missing and never fails:
# the tests that need something unavailable skip and say why).
set -u
cd "$(dirname "$0")/.."
for script in tests/browser/setup.sh tests/e2e/setup.sh tests/fleet/setup.sh \
    tests/reliability/setup.sh; do
    if [ -f "$script" ]; then
        bash "$script" || echo "setup: $script failed; the tests that need it will skip"
    fi
done
exit 0
