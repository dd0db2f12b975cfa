#!/bin/sh
# run-golden.sh - golden-file tests of the real mxc binary:
#   tests/specs/bad/NAME.mx  ->  `mxc check` fails with status 1 and prints NAME.expected
#   tests/specs/ir/NAME.mx   ->  `mxc ir` prints NAME.ir (options in NAME.args, if present)
# Specs run from their own directory, so diagnostics carry the bare file name.
# Set MXC_UPDATE_GOLDEN=1 to rewrite the expected files from the current output.
. "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"

for spec in "$SRC"/specs/bad/*.mx; do
    [ -e "$spec" ] || continue
    name=$(basename "$spec" .mx)
    expected="$SRC/specs/bad/$name.expected"
    (cd "$SRC/specs/bad" && "$MXC" check "$name.mx") >"$TMP/out" 2>"$TMP/err"
    status=$?
    update_golden "$TMP/err" "$expected"
    if [ "$status" != 1 ]; then
        echo "exit status $status, expected 1" >"$TMP/diff"
        report "bad/$name" 1 "$TMP/diff"
    elif ! diff -u "$expected" "$TMP/err" >"$TMP/diff" 2>&1; then
        report "bad/$name" 1 "$TMP/diff"
    else
        report "bad/$name" 0
    fi
done

for spec in "$SRC"/specs/ir/*.mx; do
    [ -e "$spec" ] || continue
    name=$(basename "$spec" .mx)
    expected="$SRC/specs/ir/$name.ir"
    args=""
    [ -f "$SRC/specs/ir/$name.args" ] && args=$(cat "$SRC/specs/ir/$name.args")
    # shellcheck disable=SC2086
    (cd "$SRC/specs/ir" && "$MXC" ir $args "$name.mx") >"$TMP/out" 2>"$TMP/err"
    status=$?
    update_golden "$TMP/out" "$expected"
    if [ "$status" != 0 ]; then
        report "ir/$name" 1 "$TMP/err"
    elif ! diff -u "$expected" "$TMP/out" >"$TMP/diff" 2>&1; then
        report "ir/$name" 1 "$TMP/diff"
    else
        report "ir/$name" 0
    fi
done

finish golden
