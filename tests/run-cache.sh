#!/bin/sh
# run-cache.sh - the compile cache of `mxc run SPEC` (driver/cache.c), on the golden case
# mamba_tiny: a first run compiles and keeps the object, a second loads it, a corrupted object
# is rebuilt rather than loaded, two runs building one key at once both succeed and leave one
# entry, --no-cache leaves none, and `mxc cache list|clear` show and empty the cache. Every
# run must print the same tokens.
. "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"
export XDG_CACHE_HOME="$TMP/cache"
CASE="$SRC/golden/mamba_tiny"
RUN="--weights $CASE/model.safetensors --prompt-ids 24,29,93 -n 8 --seed 3 --ids"

entries() { ls "$XDG_CACHE_HOME/mxc" 2>/dev/null | grep -c '^[0-9a-f]\{16\}$'; }
run() { # output-name: run the spec, stdout to $TMP/NAME, stderr to $TMP/NAME.err
    # shellcheck disable=SC2086
    "$MXC" run "$CASE/model.mx" $RUN >"$TMP/$1" 2>"$TMP/$1.err"
}

run first
report "first run succeeds" $?
grep -q "kept in the cache" "$TMP/first.err"
report "first run compiles into the cache" $?
[ "$(entries)" = 1 ]
report "one entry after the first run" $?

run second
report "second run succeeds" $?
grep -q "from the cache" "$TMP/second.err"
report "second run loads from the cache" $?
cmp -s "$TMP/first" "$TMP/second"
report "cached object gives the same tokens" $?

# A truncated object fails its checksum: rebuilt, not loaded.
so=$(ls "$XDG_CACHE_HOME"/mxc/*/*.so)
head -c 1000 "$so" >"$TMP/cut" && cat "$TMP/cut" >"$so"
run third
report "run after corruption succeeds" $?
grep -q "kept in the cache" "$TMP/third.err"
report "corrupted object is rebuilt" $?
cmp -s "$TMP/first" "$TMP/third"
report "rebuilt object gives the same tokens" $?

# Two processes building the same key at once.
"$MXC" cache clear >/dev/null
[ "$(entries)" = 0 ]
report "cache clear empties the cache" $?
run par1 &
p1=$!
run par2 &
p2=$!
wait $p1
s1=$?
wait $p2
s2=$?
report "concurrent build 1 succeeds" $s1
report "concurrent build 2 succeeds" $s2
cmp -s "$TMP/first" "$TMP/par1" && cmp -s "$TMP/first" "$TMP/par2"
report "concurrent builds give the same tokens" $?
[ "$(entries)" = 1 ]
report "concurrent builds leave one entry" $?
ls -a "$XDG_CACHE_HOME/mxc" | grep -q '^\.build-'
[ $? != 0 ]
report "no build folder left behind" $?

"$MXC" cache list >"$TMP/list"
grep -q "mamba_tiny/model.mx" "$TMP/list"
report "cache list names the spec" $?

"$MXC" cache clear >/dev/null
# shellcheck disable=SC2086
"$MXC" run "$CASE/model.mx" $RUN --no-cache >"$TMP/nocache" 2>/dev/null
report "--no-cache run succeeds" $?
[ "$(entries)" = 0 ]
report "--no-cache keeps nothing" $?
cmp -s "$TMP/first" "$TMP/nocache"
report "--no-cache gives the same tokens" $?

"$MXC" cache bogus >/dev/null 2>&1
[ $? = 2 ]
report "unknown cache command is a usage error" $?

finish cache
