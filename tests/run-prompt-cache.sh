#!/bin/sh
# run-prompt-cache.sh - `mxc run --prompt-cache FILE` on the demo models (examples/kjv_*):
# the first run writes FILE; a run whose prompt extends the cached one skips the cached tokens
# and prints the same text as a run without the cache (greedy); the identical prompt skips all
# of them; a cache of another model, a corrupt one, or of a prompt the new one does not start
# with is not used (a message says why), the text stays the same, and FILE is rewritten.
set -u
MXC=${MXC:-$(pwd)/mxc}
SRC=${MXC_TEST_SRCDIR:-$(cd "$(dirname "$0")" && pwd)}
EX="$SRC/../examples"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0

ok() { # name, status
    if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}
says() { # name, file, text
    if grep -qF "$3" "$2"; then pass=$((pass + 1)); else
        fail=$((fail + 1)); echo "FAIL: $1: '$3' not in:"; cat "$2"; fi
}

for m in kjv_mamba kjv_xlstm; do
    if ! "$MXC" build "$EX/$m.mx" -o "$TMP/lib$m.so" 2>"$TMP/err"; then
        cat "$TMP/err"; echo "0 passed, 1 failed"; exit 1
    fi
done
run() { # model, prompt, output base, [cache]
    if [ $# -ge 4 ]; then set -- "$1" "$2" "$3" --prompt-cache "$4"; else set -- "$1" "$2" "$3"; fi
    m=$1 p=$2 out=$3
    shift 3
    "$MXC" run "$TMP/lib$m.so" --weights "$EX/$m.safetensors" --prompt "$p" -n 60 \
        --temperature 0 "$@" >"$TMP/$out" 2>"$TMP/$out.err"
}
P1="And Moses said unto the people"
P2="And Moses said unto the people, Fear ye not, stand still"
C="$TMP/prompt.cache"

run kjv_mamba "$P1" a "$C"; ok "first run" $?
says "first run skips nothing" "$TMP/a.err" "skipped 0 of 30 prompt tokens"
test -s "$C"; ok "the cache is written" $?
run kjv_mamba "$P2" plain; ok "run without cache" $?
run kjv_mamba "$P2" b "$C"; ok "extending run" $?
says "extending run skips the cached prompt" "$TMP/b.err" "skipped 30 of 56 prompt tokens"
cmp -s "$TMP/plain" "$TMP/b"; ok "extending run prints the same text" $?
run kjv_mamba "$P2" c "$C"; ok "identical prompt" $?
says "identical prompt skips all" "$TMP/c.err" "skipped 56 of 56 prompt tokens"
cmp -s "$TMP/plain" "$TMP/c"; ok "identical prompt prints the same text" $?

# another model's cache: refused by the state's fingerprint, not used, then replaced
run kjv_xlstm "$P2" xplain; ok "xlstm without cache" $?
run kjv_xlstm "$P2" x "$C"; ok "xlstm with a mamba cache" $?
says "another model's cache is refused" "$TMP/x.err" "saved by another model or build"
says "and not used" "$TMP/x.err" "skipped 0 of 56"
cmp -s "$TMP/xplain" "$TMP/x"; ok "xlstm text unchanged" $?
run kjv_xlstm "$P2" x2 "$C"; ok "xlstm reuses its own cache" $?
says "the cache was rewritten for xlstm" "$TMP/x2.err" "skipped 56 of 56"

# a prompt that does not start with the cached one; a corrupt cache
run kjv_xlstm "Moses" y "$C"
says "shorter prompt" "$TMP/y.err" "a longer prompt, or another model"
run kjv_xlstm "$P2" z "$C"
run kjv_xlstm "In the beginning God created the heaven and the earth. And the earth was" w "$C"
says "different prompt" "$TMP/w.err" "does not start with the cached prompt"
printf 'MXCPRMT1garbage' >"$C"
run kjv_mamba "$P1" g "$C"; ok "corrupt cache" $?
says "corrupt cache is not used" "$TMP/g.err" "not a prompt cache"
cmp -s "$TMP/a" "$TMP/g"; ok "corrupt cache: same text" $?
run kjv_mamba "$P2" t "$C"   # rewrites it (for P1 + the rest)
sz=$(wc -c <"$C")
head -c $((sz - 3)) "$C" >"$TMP/cut" && mv "$TMP/cut" "$C"
run kjv_mamba "$P2" u "$C"; ok "truncated cache" $?
says "truncated cache is refused" "$TMP/u.err" "truncated"
cmp -s "$TMP/plain" "$TMP/u"; ok "truncated cache: same text" $?

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
