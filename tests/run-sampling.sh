#!/bin/sh
# run-sampling.sh - the generation options of `mxc run` on the golden case mamba_tiny (random
# weights, vocabulary 128) with the 128-id test tokenizer (tests/tokenizer-128): top-p,
# the repetition penalty, --stop, and what a model folder's configs say (EOS from
# generation_config.json / config.json / tokenizer_config.json, BOS from add_bos_token, the
# clean-up of spaces), with malformed configs refused. The sampling itself is unit-tested in
# tests/test_sampler.c.
. "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"
CASE="$SRC/golden/mamba_tiny"
W="$CASE/model.safetensors"
PROMPT="24 29 93 69 16 12 82 82"
# the spec, compiled once into the compile cache ($XDG_CACHE_HOME; run-generate.sh's too)
if ! "$MXC" run "$CASE/model.mx" --weights "$W" --prompt-ids "$PROMPT" -n 1 >/dev/null 2>"$TMP/err"; then
    report "mxc run $CASE/model.mx" 1 "$TMP/err"
    finish
fi
run_ids() { "$MXC" run "$CASE/model.mx" --weights "$W" --prompt-ids "$PROMPT" -n 24 --ids --no-echo "$@" 2>"$TMP/stderr"; }

# top-p: deterministic under a seed; 0 keeps only the likeliest token (greedy)
run_ids --seed 7 --top-p 0.8 >"$TMP/p1"
run_ids --seed 7 --top-p 0.8 >"$TMP/p2"
same "top-p 0.8, seed 7, twice" "$TMP/p1" "$TMP/p2"
run_ids --seed 7 --top-p 0 >"$TMP/p0"
same "top-p 0 is greedy" "$SRC/run/mamba_tiny_greedy.expected" "$TMP/p0"
run_ids --seed 7 --top-p 1 >"$TMP/p1a"
run_ids --seed 7 >"$TMP/p1b"
same "top-p 1 is off" "$TMP/p1a" "$TMP/p1b"

# the repetition penalty: greedy decoding repeats 82; a penalty of 3 makes it move on (at
# 1.5 this model still repeats 89: its logits favour it by more)
run_ids --temperature 0 --repeat-penalty 1 >"$TMP/r1"
same "repeat-penalty 1 is off" "$SRC/run/mamba_tiny_greedy.expected" "$TMP/r1"
run_ids --temperature 0 --repeat-penalty 3 >"$TMP/r2"
[ "$(tr ' ' '\n' <"$TMP/r2" | sort -u | wc -l)" -gt 20 ]
report "repeat-penalty 3 varies the greedy tokens" $?
run_ids --temperature 0 --repeat-penalty 3 >"$TMP/r3"
same "repeat-penalty, twice" "$TMP/r2" "$TMP/r3"
run_ids --temperature 0 --repeat-penalty 3 --repeat-last-n 0 >"$TMP/r4"
same "repeat-last-n 0 is off" "$SRC/run/mamba_tiny_greedy.expected" "$TMP/r4"

# usage errors
for bad in "--top-p 1.5" "--top-p x" "--repeat-penalty 0" "--repeat-last-n -1"; do
    # shellcheck disable=SC2086
    run_ids $bad >/dev/null
    [ $? = 2 ]
    report "usage error: $bad" $?
done
run_ids --stop x >/dev/null
[ $? = 2 ] && grep -q "does not apply with --ids" "$TMP/stderr"
report "--stop with --ids is a usage error" $?

# A model folder: config.json (transformers, eos_token_id 0), tokenizer.json; the weights
# stay in the golden case (a compiled Mamba model reads mamba_ssm's names too).
D="$TMP/mamba_tiny"
mkdir -p "$D"
cp "$SRC/hf/mamba_tiny/config.json" "$SRC/tokenizer-128/tokenizer.json" "$D/"
fold() { "$MXC" run "$D" --weights "$W" --prompt "The capital of France is" --temperature 0 "$@" 2>"$TMP/stderr"; }
fold -n 12 --no-echo --ignore-eos >"$TMP/f1"
[ "$(cat "$TMP/f1")" = "isisisisisisisisisisisis" ]
report "folder: greedy text through DIR/tokenizer.json" $? "$TMP/f1"
fold -n 12 --ids >"$TMP/fid"
case "$(cat "$TMP/fid")" in "53 98 111 66 81 "*) r=0 ;; *) r=1 ;; esac
report "folder: the prompt's ids, no BOS (post-processor ByteLevel)" $r "$TMP/fid"
first=$(fold -n 1 --ids --no-echo)

# --stop: the text before the first stop string, held back while it may still be one
fold -n 12 --no-echo --stop sis >"$TMP/s1"
[ "$(cat "$TMP/s1")" = "i" ] && grep -q "stopped after 2 tokens at a --stop string" "$TMP/stderr"
report "--stop sis" $? "$TMP/stderr"
fold -n 12 --no-echo --stop zz --stop "sisis" >"$TMP/s2"
[ "$(cat "$TMP/s2")" = "i" ]
report "--stop twice" $? "$TMP/s2"
fold -n 12 --no-echo --stop "isX" >"$TMP/s3"
same "--stop that never appears" "$TMP/f1" "$TMP/s3"
fold -n 3 --no-echo --stop "isisisX" >"$TMP/s4"
[ "$(cat "$TMP/s4")" = "isisis" ]
report "--stop: a held-back tail is printed at the end" $? "$TMP/s4"

# EOS: generation_config.json's (an id or a list) before config.json's; not printed
printf '{"eos_token_id": [5, %s]}' "$first" >"$D/generation_config.json"
fold -n 12 --no-echo >"$TMP/e1"
[ ! -s "$TMP/e1" ] || [ "$(cat "$TMP/e1")" = "" ]
r=$?
grep -q "stopped after 0 tokens at the end-of-sequence token" "$TMP/stderr"
report "EOS from generation_config.json" $((r + $?)) "$TMP/stderr"
fold -n 12 --no-echo --ignore-eos >"$TMP/e2"
same "--ignore-eos" "$TMP/f1" "$TMP/e2"
printf '{"eos_token_id": %s}' "$first" >"$D/generation_config.json"
fold -n 12 --no-echo --ids >"$TMP/e3"
[ ! -s "$TMP/e3" ] || [ "$(tr -d '\n' <"$TMP/e3")" = "" ]
report "EOS as one id, with --ids" $?
rm "$D/generation_config.json"
sed "s/\"eos_token_id\": 0/\"eos_token_id\": $first/" "$SRC/hf/mamba_tiny/config.json" >"$D/config.json"
fold -n 12 --no-echo >"$TMP/e4"
grep -q "stopped after 0 tokens" "$TMP/stderr"
report "EOS from config.json" $?
grep -v eos_token_id "$SRC/hf/mamba_tiny/config.json" >"$D/config.json"
printf '{"eos_token": "%s"}' "$(fold -n 1 --no-echo)" >"$D/tokenizer_config.json"
fold -n 12 --no-echo >"$TMP/e5"
grep -q "stopped after 0 tokens" "$TMP/stderr"
report "EOS from tokenizer_config.json's eos_token" $? "$TMP/stderr"

# BOS: add_bos_token puts bos_token first; add_eos_token eos_token last
printf '{"add_bos_token": true, "bos_token": "<|endoftext|>"}' >"$D/tokenizer_config.json"
fold -n 1 --ids >"$TMP/b1"
case "$(cat "$TMP/b1")" in "0 53 98 111 "*) r=0 ;; *) r=1 ;; esac
report "add_bos_token" $r "$TMP/b1"
printf '{"add_bos_token": false, "add_eos_token": true, "eos_token": {"content": "<|endoftext|>"}}' >"$D/tokenizer_config.json"
fold -n 0 --ids >"$TMP/b2"
[ "$(cat "$TMP/b2")" = "53 98 111 66 81 119 66 77 109 71 1 39 83 115 68 70 1 110 0" ]
report "add_eos_token" $? "$TMP/b2"

# the clean-up of spaces, when tokenizer_config.json asks for it (here on the echoed prompt)
printf '{"clean_up_tokenization_spaces": true}' >"$D/tokenizer_config.json"
"$MXC" run "$D" --weights "$W" --prompt "Hello , world . I do n't" -n 0 >"$TMP/c1" 2>"$TMP/stderr"
[ "$(cat "$TMP/c1")" = "Hello, world. I don't" ]
report "clean_up_tokenization_spaces" $? "$TMP/c1"
printf '{"clean_up_tokenization_spaces": false}' >"$D/tokenizer_config.json"
"$MXC" run "$D" --weights "$W" --prompt "Hello , world ." -n 0 >"$TMP/c2" 2>"$TMP/stderr"
[ "$(cat "$TMP/c2")" = "Hello , world ." ]
report "no clean-up when false" $? "$TMP/c2"

# malformed configs: refused naming file and key
bad_config() { # FILE JSON PATTERN
    printf '%s' "$2" >"$D/$1"
    fold -n 1 >/dev/null
    r=$?
    [ $r = 1 ] && grep -q -- "$3" "$TMP/stderr"
    report "refused: $1 $2" $? "$TMP/stderr"
    rm -f "$D/$1"
}
bad_config generation_config.json '{"eos_token_id": -1}' "generation_config.json: 'eos_token_id': -1 is not a token id"
bad_config generation_config.json '{"eos_token_id": [1, "x"]}' "'eos_token_id': element 1 is not a token id"
bad_config generation_config.json '{"eos_token_id": []}' "'eos_token_id': a list of 0 ids"
bad_config generation_config.json '{"eos_token_id": 1,}' "generation_config.json: invalid JSON"
bad_config tokenizer_config.json '{"add_bos_token": "yes"}' "tokenizer_config.json: 'add_bos_token': expected true or false"
bad_config tokenizer_config.json '{"eos_token": "<nope>"}' "tokenizer_config.json: eos_token '<nope>' is not a token"
bad_config tokenizer_config.json '{"clean_up_tokenization_spaces": 1}' "'clean_up_tokenization_spaces': expected true or false"

finish
