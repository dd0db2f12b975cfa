#!/bin/sh
# run-import.sh - tests of `mxc import`:
#   - every tests/golden/CASE/config.json (its official_config) imports to a spec whose resolved
#     form (`mxc check --resolved`) is that of the hand-written tests/golden/CASE/model.mx;
#   - tests/import/NAME.{json,yaml} prints NAME.expected: the spec on success, or the error
#     (exit status 1) for the files named bad_*.
# Set MXC_UPDATE_GOLDEN=1 to rewrite the expected files from the current output.
. "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"

for dir in "$SRC"/golden/*/; do
    case=$(basename "$dir")
    [ -f "$dir/config.json" ] && [ -f "$dir/model.mx" ] || continue
    if ! "$MXC" import "$dir/config.json" >"$TMP/imported.mx" 2>"$TMP/err"; then
        report "golden/$case import" 1 "$TMP/err"
        continue
    fi
    "$MXC" check --resolved "$dir/model.mx" >"$TMP/want" 2>&1
    "$MXC" check --resolved "$TMP/imported.mx" >"$TMP/got" 2>&1
    if diff -u "$TMP/want" "$TMP/got" >"$TMP/diff" 2>&1; then
        report "golden/$case" 0
    else
        report "golden/$case" 1 "$TMP/diff"
    fi
done

for input in "$SRC"/import/*.json "$SRC"/import/*.yaml; do
    [ -e "$input" ] || continue
    file=$(basename "$input")
    name=${file%.*}
    expected="$SRC/import/$name.expected"
    (cd "$SRC/import" && "$MXC" import "$file") >"$TMP/out" 2>"$TMP/err"
    status=$?
    case $name in
        bad_*) want_status=1; got="$TMP/err" ;;
        *) want_status=0; got="$TMP/out" ;;
    esac
    update_golden "$got" "$expected"
    if [ "$status" != "$want_status" ]; then
        { echo "exit status $status, expected $want_status"; cat "$TMP/err"; } >"$TMP/diff"
        report "import/$file" 1 "$TMP/diff"
    elif ! diff -u "$expected" "$got" >"$TMP/diff" 2>&1; then
        report "import/$file" 1 "$TMP/diff"
    elif [ "$want_status" = 0 ] && ! "$MXC" check "$TMP/out" >"$TMP/diff" 2>&1; then
        report "import/$file (check)" 1 "$TMP/diff"
    else
        report "import/$file" 0
    fi
done

finish
