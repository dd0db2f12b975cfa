#!/bin/sh
# run-generate.sh - tests of `mxc run` on the golden case mamba_tiny (random weights, vocab 128):
# a fixed seed always gives the same tokens (tests/run/*.expected), from the shared object and
# from the spec alike; another seed gives others; greedy decoding is stable; bad input is refused.
# Set MXC_UPDATE_GOLDEN=1 to rewrite the expected files from the current output.
. "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"
CASE="$SRC/golden/mamba_tiny"
W="$CASE/model.safetensors"
PROMPT="24 29 93 69 16 12 82 82"

if ! "$MXC" build "$CASE/model.mx" -o "$TMP/libmamba_tiny.so" 2>"$TMP/err"; then
    report "mxc build $CASE/model.mx" 1 "$TMP/err"
    finish
fi
SO="$TMP/libmamba_tiny.so"

# sampling with a seed: the same tokens every time, from the .so and from the spec
"$MXC" run "$SO" --weights "$W" --prompt-ids "$PROMPT" -n 24 --seed 7 --ids >"$TMP/a" 2>"$TMP/a.err"
same "seed 7" "$SRC/run/mamba_tiny_seed7.expected" "$TMP/a"
"$MXC" run "$SO" --weights "$W" --prompt-ids "$PROMPT" -n 24 --seed 7 --ids >"$TMP/b" 2>/dev/null
same "seed 7, again" "$TMP/a" "$TMP/b"
"$MXC" run "$CASE/model.mx" --weights "$W" --prompt-ids "$PROMPT" -n 24 --seed 7 --ids >"$TMP/c" 2>/dev/null
same "seed 7, from the spec" "$TMP/a" "$TMP/c"
"$MXC" run "$SO" --weights "$W" --prompt-ids "$PROMPT" -n 24 --seed 8 --ids >"$TMP/d" 2>/dev/null
! cmp -s "$TMP/a" "$TMP/d"
report "seed 8 differs from seed 7" $?
grep -q "prefill 8 tokens in .* tokens/s); decode 24 tokens in .* tokens/s); seed 7" "$TMP/a.err"
report "timings on stderr" $?

# top-k 1 is greedy decoding, and so is temperature 0
"$MXC" run "$SO" --weights "$W" --prompt-ids "$PROMPT" -n 24 --temperature 0 --ids --no-echo >"$TMP/g" 2>/dev/null
same "greedy" "$SRC/run/mamba_tiny_greedy.expected" "$TMP/g"
"$MXC" run "$SO" --weights "$W" --prompt-ids "$PROMPT" -n 24 --top-k 1 --seed 3 --ids --no-echo >"$TMP/k" 2>/dev/null
same "top-k 1" "$TMP/g" "$TMP/k"

# text prompts are bytes; text output is bytes
"$MXC" run "$SO" --weights "$W" --prompt "Hello" -n 10 --seed 1 >"$TMP/t" 2>/dev/null
[ "$(head -c 5 "$TMP/t")" = "Hello" ] && [ "$(wc -c <"$TMP/t")" -eq 16 ]
report "text prompt echoed, 10 bytes and a newline after it" $?

# errors: a byte beyond the vocabulary, no weights, a .so whose prefix cannot be guessed
"$MXC" run "$SO" --weights "$W" --prompt "$(printf '\303\251')" -n 1 >/dev/null 2>"$TMP/e1"
[ $? = 1 ] && grep -q "is not a token of this model (vocab_size 128)" "$TMP/e1"
report "non-ASCII byte refused for a 128-token model" $?
"$MXC" run "$SO" -n 1 >/dev/null 2>"$TMP/e2"
[ $? = 1 ] && grep -q "no weights" "$TMP/e2"
report "weights required for a .so" $?
cp "$SO" "$TMP/model.so"
"$MXC" run "$TMP/model.so" --weights "$W" -n 1 >/dev/null 2>"$TMP/e3"
[ $? = 1 ] && grep -q "give --prefix" "$TMP/e3"
report "prefix of a renamed .so" $?
"$MXC" run "$TMP/model.so" --prefix mamba_tiny --weights "$W" --prompt-ids "$PROMPT" -n 24 --seed 7 --ids >"$TMP/p" 2>/dev/null
same "--prefix" "$TMP/a" "$TMP/p"
"$MXC" run "$SO" --weights "$W" --temperature -1 >/dev/null 2>&1
[ $? = 2 ]
report "negative temperature is a usage error" $?

finish
