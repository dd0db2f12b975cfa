#!/bin/sh
# run-serve-example.sh - examples/serve_chat.c, built against the demo model kjv_mamba: the
# conversations served from one batched state (forks, a parked and a retired slot), in one
# process and split over two processes by a saved state, print per conversation the same
# lines (text and the top logit after each reply) as each conversation run alone.
set -u
MXC=${MXC:-$(pwd)/mxc}
SRC=${MXC_TEST_SRCDIR:-$(cd "$(dirname "$0")" && pwd)}
EX="$SRC/../examples"
CC=${CC:-cc}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
step() { echo "FAIL: $1"; fail=$((fail + 1)); }

"$MXC" build "$EX/kjv_mamba.mx" -o "$TMP/libkjv_mamba.so" || { echo "FAIL: build"; exit 1; }
# shellcheck disable=SC2086
$CC -std=gnu11 -Wall -Wextra -Werror ${MXC_LINK_FLAGS:-} -I"$TMP" "$EX/serve_chat.c" -L"$TMP" \
    -lkjv_mamba -o "$TMP/serve_chat" || { echo "FAIL: compile serve_chat.c"; exit 1; }
W="$EX/kjv_mamba.safetensors"
run() { LD_LIBRARY_PATH="$TMP" "$TMP/serve_chat" "$W" "$@"; }
run alone >"$TMP/alone" || step "alone"
run served >"$TMP/served" || step "served"
run served --stop-after 2 "$TMP/state" >"$TMP/first" || step "served, first process"
test -s "$TMP/state" || step "the state file"
run served --resume-at 2 "$TMP/state" >"$TMP/second" || step "served, second process"
by_conv() { sort -s -k1,1.2 "$@"; }  # stable: each conversation's lines in their order
by_conv "$TMP/alone" >"$TMP/a"
by_conv "$TMP/served" >"$TMP/b"
cat "$TMP/first" "$TMP/second" | by_conv >"$TMP/c"
cmp -s "$TMP/a" "$TMP/b" || { step "served != alone"; diff "$TMP/a" "$TMP/b"; }
cmp -s "$TMP/a" "$TMP/c" || { step "served over two processes != alone"; diff "$TMP/a" "$TMP/c"; }
test "$(wc -l <"$TMP/a")" = 14 || step "14 lines expected"
cmp -s "$TMP/alone" "$TMP/served" && step "served in the same order as alone: not interleaved"
# a state file of another batch or model is refused
printf 'not a state' >"$TMP/bad"
run served --resume-at 2 "$TMP/bad" >/dev/null 2>"$TMP/err" && step "bad state accepted"
grep -q "not a saved state" "$TMP/err" || { step "message"; cat "$TMP/err"; }
[ "$fail" = 0 ] && echo "serve_chat: served, split and alone agree"
[ "$fail" = 0 ]
