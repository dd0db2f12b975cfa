#!/bin/sh
# check.sh - the whole test suite: build (installing what is missing), then
#   1. `make check`: the CUnit suites, the golden-file tests and the end-to-end tests;
#   2. `make fuzz`: a short run (FUZZ_TIME seconds, default 60) of each libFuzzer target,
#      after replaying the inputs of past findings;
#   3. the whole of `make check` again built with ASan + UBSan (generated shared objects
#      included), in build-asan/; test_narrow's golden sweep (15 cases x 3 weight types,
#      about 70 builds, already run in stage 1) is cut there to the xlstm_mixed case, its
#      format and loader tests all run;
#   4. `make -j valgrind`: the runtime and end-to-end tests under valgrind, side by side.
# MXC_CHECK_STAGES picks stages (default "check fuzz asan valgrind").
set -eu
cd "$(dirname "$0")"
stages=${MXC_CHECK_STAGES:-check fuzz asan valgrind}
jobs=$(nproc)

# Print the tails of the logs of a failed `make check` in directory $1.
show_logs() {
    for log in "$1"/tests/*.log; do
        echo "=== $log"
        tail -n 60 "$log"
    done
}

stage() {
    echo "=== check.sh: $1 ($(date +%T))"
}

sh ./bootstrap.sh
for s in $stages; do
    case $s in
    check)
        stage "make check"
        if ! make -j"$jobs" check; then
            show_logs .
            exit 1
        fi
        cat tests/*.log | grep -E "^ +(suites|tests|asserts) " || true ;;
    fuzz)
        stage "short fuzz"
        make fuzz FUZZ_TIME="${FUZZ_TIME:-60}" ;;
    asan)
        # configure refuses a VPATH build beside an in-tree one, so the sanitizer build gets
        # its own copy of the sources: what git tracks or would track, plus the autotools
        # output of bootstrap.sh. Times are kept, so a second run rebuilds only what changed.
        stage "ASan + UBSan build and make check (build-asan/)"
        if ! git rev-parse --git-dir >/dev/null 2>&1; then
            echo "check.sh: the sanitizer stage copies the sources with git; not a git checkout" >&2
            exit 1
        fi
        rm -rf build-asan/src
        mkdir -p build-asan/src build-asan/build
        git ls-files -z --cached --others --exclude-standard |
            xargs -0 cp -p --parents -t build-asan/src 2>/dev/null || true
        cp -pr configure aclocal.m4 config.h.in Makefile.in build-aux m4 build-asan/src/
        (cd build-asan/build &&
            { [ -f Makefile ] || ../src/configure --enable-sanitizers ${MXC_CONFIGURE_FLAGS:-}; })
        if ! MXC_NARROW_ONLY=${MXC_NARROW_ONLY:-xlstm_mixed} make -C build-asan/build -j"$jobs" check; then
            show_logs build-asan/build
            exit 1
        fi
        cat build-asan/build/tests/*.log | grep -E "^ +(suites|tests|asserts) " || true ;;
    valgrind)
        stage "valgrind"
        make -j"$jobs" valgrind ;;
    *)
        echo "check.sh: unknown stage '$s'" >&2
        exit 2 ;;
    esac
done
stage "done"
