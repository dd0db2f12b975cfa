#!/bin/sh
# check.sh - the whole test suite: build (installing what is missing), then `make check`,
# which runs the CUnit suites, the golden-file tests and the end-to-end tests.
set -eu
cd "$(dirname "$0")"
sh ./bootstrap.sh
if ! make -j"$(nproc)" check; then
    for log in tests/*.log; do
        echo "=== $log"
        tail -n 60 "$log"
    done
    exit 1
fi
cat tests/*.log | grep -E "^ +(suites|tests|asserts) " || true
