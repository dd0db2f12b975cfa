#!/bin/sh
# run-tokenize.sh - `mxc tokenize` end to end: the ids of every corpus text under every test
# tokenizer equal the ones the reference implementation produced (tests/tokenizer/expected),
# --decode gives back its text (--clean-up-spaces: the reference's clean-up), and bad input
# fails with a message.
set -u
: "${MXC:?}" "${MXC_TEST_SRCDIR:?}"
D="$MXC_TEST_SRCDIR/tokenizer"
T="${MXC_TEST_BUILDDIR:-/tmp}/run-tokenize.$$"
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
export XDG_CACHE_HOME="$T/cache" # `mxc run` below keeps its compiled model here
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

for tok in gpt2 gpt-neox-20b split normalized decomposed bytes; do
    for txt in "$D"/corpus/*.txt; do
        name=$(basename "$txt" .txt)
        exp="$D/expected/$tok/$name.ids"
        if ! "$MXC" tokenize "$D/$tok" "$txt" > "$T/ids" 2> "$T/err"; then
            bad "$tok/$name: mxc tokenize failed: $(cat "$T/err")"; continue
        fi
        if cmp -s "$T/ids" "$exp"; then ok; else bad "$tok/$name: ids differ from $exp"; continue; fi
        "$MXC" tokenize --decode "$D/$tok/tokenizer.json" "$T/ids" > "$T/text" 2> "$T/err" &&
            cmp -s "$T/text" "$D/expected/$tok/$name.decoded" && ok ||
            bad "$tok/$name: --decode differs from $D/expected/$tok/$name.decoded"
        "$MXC" tokenize --decode --clean-up-spaces "$D/$tok" "$T/ids" > "$T/text" 2> "$T/err" &&
            cmp -s "$T/text" "$D/expected/$tok/$name.cleaned" && ok ||
            bad "$tok/$name: --decode --clean-up-spaces differs from $D/expected/$tok/$name.cleaned"
    done
done

# errors: a missing tokenizer, a folder without one, ids out of range, invalid UTF-8
expect_fail() { # WHAT PATTERN ARGS...
    what=$1 pat=$2; shift 2
    if "$MXC" tokenize "$@" > /dev/null 2> "$T/err"; then bad "$what: succeeded"
    elif grep -q -- "$pat" "$T/err"; then ok
    else bad "$what: message lacks '$pat': $(cat "$T/err")"; fi
}
expect_fail "missing tokenizer" "No such file" "$T/nope.json" "$D/corpus/prose.txt"
mkdir -p "$T/empty"
expect_fail "folder without tokenizer.json" "holds no tokenizer.json" "$T/empty" "$D/corpus/prose.txt"
echo "12 99999999" > "$T/big"
expect_fail "id out of range" "not in the vocabulary" --decode "$D/gpt2" "$T/big"
printf 'ab\377cd' > "$T/bin"
expect_fail "invalid UTF-8" "not valid UTF-8 (byte 2)" "$D/gpt2" "$T/bin"
echo "12 x3" > "$T/word"
expect_fail "not an id" "is not a token id" --decode "$D/gpt2" "$T/word"

# mxc run --tokenizer: with one token per byte (id = byte value) the byte-level KJV demo model
# must generate exactly what it generates without a tokenizer, printed through the streaming
# decoder; a tokenizer whose ids pass the model's vocabulary is refused.
KJV="$MXC_TEST_SRCDIR/../examples/kjv_mamba.mx"
if "$MXC" run "$KJV" --prompt "In the beginning" -n 80 --seed 3 > "$T/run-bytes" 2> "$T/err" &&
   "$MXC" run "$KJV" --prompt "In the beginning" -n 80 --seed 3 --tokenizer "$D/bytes" > "$T/run-tok" 2>> "$T/err"; then
    if cmp -s "$T/run-bytes" "$T/run-tok" && [ "$(wc -c < "$T/run-tok")" -gt 80 ]; then ok
    else bad "mxc run --tokenizer differs from mxc run on bytes"; fi
else
    bad "mxc run: $(cat "$T/err")"
fi
if "$MXC" run "$KJV" --prompt "In the beginning" -n 5 --tokenizer "$D/gpt2" > /dev/null 2> "$T/err"; then
    bad "mxc run --tokenizer gpt2 on a 256-token model succeeded"
elif grep -q "past this model's vocab_size 256" "$T/err"; then ok
else bad "mxc run --tokenizer: message: $(cat "$T/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
