#!/bin/sh
# run-import.sh - tests of `mxc import`:
#   - every tests/golden/CASE/config.json (its official_config) imports to a spec whose resolved
#     form (`mxc check --resolved`) is that of the hand-written tests/golden/CASE/model.mx;
#   - tests/import/NAME.{json,yaml} prints NAME.expected: the spec on success, or the error
#     (exit status 1) for the files named bad_*;
#   - tests/hf/CASE (a transformers config.json) imports to the spec of tests/golden/CASE;
#   - inputs made here: near-limit (16 MiB) configs whose containers hold ~10^6 members must be
#     read within a CPU-time bound that a parser quadratic in the members cannot meet, and a
#     100 000-byte key is clipped in the message.
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

# tests/hf/CASE/config.json: a transformers MambaConfig of golden CASE; the folder itself is
# imported (a model folder is read through its config.json) and must give the spec of
# tests/hf/CASE/model.mx when there is one (the vocabulary as transformers counts it), else
# that of the golden case.
for dir in "$SRC"/hf/*/; do
    case=$(basename "$dir")
    if ! "$MXC" import "$dir" >"$TMP/imported.mx" 2>"$TMP/err"; then
        report "hf/$case import" 1 "$TMP/err"
        continue
    fi
    want="$SRC/golden/$case/model.mx"
    [ -f "$dir/model.mx" ] && want="$dir/model.mx"
    "$MXC" check --resolved "$want" >"$TMP/want" 2>&1
    "$MXC" check --resolved "$TMP/imported.mx" >"$TMP/got" 2>&1
    if diff -u "$TMP/want" "$TMP/got" >"$TMP/diff" 2>&1; then
        report "hf/$case" 0
    else
        report "hf/$case" 1 "$TMP/diff"
    fi
done

# A folder without config.json is refused, naming the file.
mkdir "$TMP/empty_folder"
if "$MXC" import "$TMP/empty_folder" >/dev/null 2>"$TMP/err"; then
    report "folder without config.json" 1 "$TMP/err"
elif grep -q "cannot open $TMP/empty_folder/config.json: No such file" "$TMP/err"; then
    report "folder without config.json" 0
else
    report "folder without config.json" 1 "$TMP/err"
fi

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

# Linear time: each file is just under the 16 MiB limit and refused for its unknown key 'x'
# (or its 900 000 unknown keys) after a complete parse. A linear reader needs about a second
# of CPU (a few under the sanitizers); the quadratic one this replaces needed hours.
CPU_LIMIT=60
big() { # name, then an awk program that writes the file
    awk "BEGIN { $2 }" > "$TMP/$1"
    (ulimit -t $CPU_LIMIT; exec "$MXC" import "$TMP/$1") >/dev/null 2>"$TMP/err"
    status=$?
    if [ "$status" = 1 ] && grep -q "unknown key '\(x\|k0000000\)'" "$TMP/err"; then
        report "linear/$1" 0
    else
        { echo "exit status $status (over $CPU_LIMIT s of CPU if > 128)"; cat "$TMP/err"; } >"$TMP/diff"
        report "linear/$1" 1 "$TMP/diff"
    fi
}
head='d_model: 64\nn_layer: 2\nvocab_size: 256\n'
big array.json 'printf "{\"d_model\":64,\"n_layer\":2,\"vocab_size\":256,\"x\":[0";
    for (i = 1; i < 980000; i++) printf ",1234567890123456"; print "]}"'
big keys.json 'printf "{\"d_model\":64,\"n_layer\":2,\"vocab_size\":256";
    for (i = 0; i < 1000000; i++) printf ",\"k%07d\":0", i; print "}"'
big empties.json 'printf "{\"d_model\":64,\"n_layer\":2,\"vocab_size\":256,\"x\":[{}";
    for (i = 1; i < 1000000; i++) printf ",{}"; print "]}"'
big list.yaml "printf \"$head\"; print \"x:\"; for (i = 0; i < 1000000; i++) print \"- 123456789012\""
big keys.yaml "printf \"$head\"; for (i = 0; i < 1000000; i++) printf \"k%07d: 0\\n\", i"
big flow.yaml "printf \"$head\"; printf \"x: [0\"; for (i = 1; i < 1000000; i++) printf \",1234567890\"; print \"]\""

# A long key is clipped in the message, not echoed whole.
awk 'BEGIN { printf "{\"d_model\": 64, \"n_layer\": 2, \"vocab_size\": 256, \""; for (i = 0; i < 100000; i++) printf "n"; print "\": 1}" }' >"$TMP/long.json"
"$MXC" import "$TMP/long.json" >/dev/null 2>"$TMP/err"
status=$?
bytes=$(wc -c <"$TMP/err")
if [ "$status" = 1 ] && [ "$bytes" -lt 300 ] && grep -q "unknown key 'nnnn*\.\.\. (100000 bytes)'" "$TMP/err"; then
    report "clip/long-key" 0
else
    { echo "exit status $status, $bytes bytes of messages:"; cut -c 1-300 "$TMP/err"; } >"$TMP/diff"
    report "clip/long-key" 1 "$TMP/diff"
fi

finish
