# testlib.sh - what the shell tests (tests/run-*.sh) share; each sources it first:
#   . "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"
# It sets MXC (the binary under test), SRC (the test sources), TMP (a scratch directory removed
# on exit) and the pass/fail counters.
set -u
MXC=${MXC:-$(pwd)/mxc}
SRC=${MXC_TEST_SRCDIR:-$(cd "$(dirname "$0")" && pwd)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

# report NAME STATUS [DETAIL-FILE]: count one result (status 0 passes); a failure prints NAME
# and the head of DETAIL-FILE.
report() {
    if [ "$2" = 0 ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $1"
        if [ -n "${3:-}" ]; then head -n 40 "$3"; fi
    fi
}

# update_golden ACTUAL EXPECTED: with MXC_UPDATE_GOLDEN=1, rewrite EXPECTED from ACTUAL.
update_golden() {
    if [ "${MXC_UPDATE_GOLDEN:-}" = 1 ]; then cp "$1" "$2"; fi
}

# same NAME EXPECTED ACTUAL: passes when the two files are equal (after update_golden).
same() {
    update_golden "$3" "$2"
    if diff -u "$2" "$3" >"$TMP/diff" 2>&1; then
        report "$1" 0
    else
        report "$1" 1 "$TMP/diff"
    fi
}

# finish [LABEL]: print the counts and exit: 0 if nothing failed and something ran.
finish() {
    echo "${1:+$1: }$pass passed, $fail failed"
    if [ "$fail" = 0 ] && [ "$pass" -gt 0 ]; then exit 0; fi
    exit 1
}
