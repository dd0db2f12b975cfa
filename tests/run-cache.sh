#!/bin/sh
# run-cache.sh - the compile cache of `mxc run SPEC` (driver/cache.c), on the golden case
# mamba_tiny: a first run compiles and keeps the object, a second loads it, a corrupted object
# is rebuilt rather than loaded, two runs building one key at once both succeed and leave one
# entry, --no-cache leaves none, and `mxc cache list|clear` show and empty the cache. Every
# run must print the same tokens.
set -u
MXC=${MXC:-$(pwd)/mxc}
SRC=${MXC_TEST_SRCDIR:-$(cd "$(dirname "$0")" && pwd)}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
export XDG_CACHE_HOME="$TMP/cache"
pass=0
fail=0
CASE="$SRC/golden/mamba_tiny"
RUN="--weights $CASE/model.safetensors --prompt-ids 24,29,93 -n 8 --seed 3 --ids"

ok() { # name, condition status
    if [ "$2" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $1"; fi
}
entries() { ls "$XDG_CACHE_HOME/mxc" 2>/dev/null | grep -c '^[0-9a-f]\{16\}$'; }
run() { # output-name: run the spec, stdout to $TMP/NAME, stderr to $TMP/NAME.err
    # shellcheck disable=SC2086
    "$MXC" run "$CASE/model.mx" $RUN >"$TMP/$1" 2>"$TMP/$1.err"
}

run first
ok "first run succeeds" $?
grep -q "kept in the cache" "$TMP/first.err"
ok "first run compiles into the cache" $?
[ "$(entries)" = 1 ]
ok "one entry after the first run" $?

run second
ok "second run succeeds" $?
grep -q "from the cache" "$TMP/second.err"
ok "second run loads from the cache" $?
cmp -s "$TMP/first" "$TMP/second"
ok "cached object gives the same tokens" $?

# A truncated object fails its checksum: rebuilt, not loaded.
so=$(ls "$XDG_CACHE_HOME"/mxc/*/*.so)
head -c 1000 "$so" >"$TMP/cut" && cat "$TMP/cut" >"$so"
run third
ok "run after corruption succeeds" $?
grep -q "kept in the cache" "$TMP/third.err"
ok "corrupted object is rebuilt" $?
cmp -s "$TMP/first" "$TMP/third"
ok "rebuilt object gives the same tokens" $?

# Two processes building the same key at once.
"$MXC" cache clear >/dev/null
[ "$(entries)" = 0 ]
ok "cache clear empties the cache" $?
run par1 &
p1=$!
run par2 &
p2=$!
wait $p1
s1=$?
wait $p2
s2=$?
ok "concurrent build 1 succeeds" $s1
ok "concurrent build 2 succeeds" $s2
cmp -s "$TMP/first" "$TMP/par1" && cmp -s "$TMP/first" "$TMP/par2"
ok "concurrent builds give the same tokens" $?
[ "$(entries)" = 1 ]
ok "concurrent builds leave one entry" $?
ls -a "$XDG_CACHE_HOME/mxc" | grep -q '^\.build-'
[ $? != 0 ]
ok "no build folder left behind" $?

"$MXC" cache list >"$TMP/list"
grep -q "mamba_tiny/model.mx" "$TMP/list"
ok "cache list names the spec" $?

"$MXC" cache clear >/dev/null
# shellcheck disable=SC2086
"$MXC" run "$CASE/model.mx" $RUN --no-cache >"$TMP/nocache" 2>/dev/null
ok "--no-cache run succeeds" $?
[ "$(entries)" = 0 ]
ok "--no-cache keeps nothing" $?
cmp -s "$TMP/first" "$TMP/nocache"
ok "--no-cache gives the same tokens" $?

"$MXC" cache bogus >/dev/null 2>&1
[ $? = 2 ]
ok "unknown cache command is a usage error" $?

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
