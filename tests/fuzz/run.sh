#!/bin/sh
# run.sh - build the libFuzzer targets, replay the regression inputs, then fuzz.
#
#   sh tests/fuzz/run.sh [-t SECONDS] [-j JOBS] [-w WORKDIR] [TARGET...]
#
# TARGET is spec (the spec frontend: tests/fuzz/fuzz_spec.c), ir (spec text lowered to the
# IR: tests/fuzz/fuzz_ir.c), st (the safetensors reader and weight binding:
# tests/fuzz/fuzz_st.c) or import (`mxc import` on a JSON/YAML config:
# tests/fuzz/fuzz_import.c) or state (the saved-state loader: tests/fuzz/fuzz_state.c) or
# tokenizer (tokenizer.json files and texts: tests/fuzz/fuzz_tokenizer.c; not in the default set);
# default all five. Each target runs SECONDS (default
# 60; 0 = replay only) under `nice -n 19`, with JOBS libFuzzer processes (default 1). The
# targets run side by side. The corpus grows in WORKDIR/TARGET/corpus (default
# tests/fuzz/work in the build directory) and is kept between runs, so repeated runs go
# deeper; crash inputs land in WORKDIR/TARGET/crash-*. A crash fails the run: minimise it
# (./fuzz_TARGET -minimize_crash=1 CRASH), add it to tests/fuzz/regress/TARGET/ with a name
# that says what it was, fix the bug, and it is replayed on every run from then on.
#
# Environment: FUZZ_CC (default clang-14, else clang) must support -fsanitize=fuzzer (Debian:
# clang-14 and libclang-rt-14-dev); without it the script says so and exits 0 (skipped).
# MXC_SRCDIR / MXC_BUILDDIR: source and build trees (default: this script's tree, built in
# place); the generated scanner and parser are taken from the build tree.
#
# Longer runs, e.g. an hour per target with two processes each:
#   make fuzz FUZZ_TIME=3600 FUZZ_JOBS=2        (or: sh tests/fuzz/run.sh -t 3600 -j 2)
set -eu

time_s=60
jobs=1
work=""
while getopts t:j:w: opt; do
    case $opt in
    t) time_s=$OPTARG ;;
    j) jobs=$OPTARG ;;
    w) work=$OPTARG ;;
    *) echo "usage: run.sh [-t SECONDS] [-j JOBS] [-w WORKDIR] [spec] [ir] [st] [import] [state] [tokenizer]" >&2
       exit 2 ;;
    esac
done
shift $((OPTIND - 1))
targets=${*:-spec ir st import state}

here=$(cd "$(dirname "$0")" && pwd)
src=${MXC_SRCDIR:-$(cd "$here/../.." && pwd)}
build=${MXC_BUILDDIR:-$src}
out=$build/tests/fuzz
work=${work:-$out/work}
mkdir -p "$out" "$work"

cc=${FUZZ_CC:-}
if [ -z "$cc" ]; then
    for c in clang-14 clang; do
        if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
    done
fi
probe=$out/probe.c
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' > "$probe"
if [ -z "$cc" ] || ! "$cc" -fsanitize=fuzzer,address,undefined "$probe" -o "$out/probe" 2>/dev/null; then
    echo "fuzz: SKIPPED: no clang with libFuzzer (install clang-14 and libclang-rt-14-dev)"
    exit 0
fi

for f in frontend/parser.c frontend/lexer.c frontend/parser.h; do
    if [ ! -f "$build/$f" ] && [ ! -f "$src/$f" ]; then
        echo "fuzz: $f is missing: build mxc first (make)" >&2
        exit 1
    fi
done
gen() { if [ -f "$build/$1" ]; then echo "$build/$1"; else echo "$src/$1"; fi; }

flags="-std=gnu11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=all -I$src -I$build"
front="$src/frontend/diag.c $src/frontend/ast.c $src/frontend/check.c $src/frontend/spec.c
       $(gen frontend/parser.c) $(gen frontend/lexer.c)"
st="$src/runtime/error.c $src/runtime/json.c $src/runtime/safetensors.c $src/runtime/bind.c $src/runtime/narrow.c"

# Rebuild a binary when any of its sources is newer (or it is missing).
build_if_stale() {
    bin=$1; shift
    stale=no
    [ -f "$bin" ] || stale=yes
    for s in "$@"; do
        case $s in -*) continue ;; esac
        [ "$stale" = yes ] || [ "$s" -nt "$bin" ] && stale=yes
    done
    if [ "$stale" = yes ]; then
        echo "fuzz: building $(basename "$bin")"
        # shellcheck disable=SC2086
        "$cc" "$@" -o "$bin"
    fi
}
for t in $targets; do
    case $t in
    spec) build_if_stale "$out/fuzz_spec" $flags "$src/tests/fuzz/fuzz_spec.c" $front ;;
    ir) build_if_stale "$out/fuzz_ir" $flags "$src/tests/fuzz/fuzz_ir.c" $front "$src"/ir/*.c ;;
    import)
        build_if_stale "$out/fuzz_import" $flags "$src/tests/fuzz/fuzz_import.c" \
            "$src/driver/import.c" "$src"/import/*.c $front "$src/runtime/json.c" \
            "$src/runtime/error.c" $(pkg-config --cflags --libs yaml-0.1) ;;
    st)
        build_if_stale "$out/fuzz_st" $flags "$src/tests/fuzz/fuzz_st.c" $st
        build_if_stale "$out/st_seeds" -std=gnu11 -O1 -I"$src" "$src/tests/fuzz/st_seeds.c" \
            "$src/runtime/error.c" "$src/runtime/json.c" "$src/runtime/safetensors.c" ;;
    state)
        rt="$st $src/runtime/pool.c $src/runtime/runtime.c $src/runtime/state_blob.c $src/runtime/checkpoint.c"
        build_if_stale "$out/fuzz_state" $flags "$src/tests/fuzz/fuzz_state.c" $rt -lpthread
        build_if_stale "$out/state_seeds" -std=gnu11 -O1 -I"$src" "$src/tests/fuzz/state_seeds.c" \
            $rt -lpthread ;;
    tokenizer)
        # shellcheck disable=SC2046
        build_if_stale "$out/fuzz_tokenizer" $flags -DMXC_TOK_DIR="\"$src/tests/tokenizer\"" \
            "$src/tests/fuzz/fuzz_tokenizer.c" "$src"/tokenizer/*.c "$src/runtime/json.c" \
            $(pkg-config --cflags --libs libpcre2-8 libutf8proc) ;;
    *) echo "fuzz: unknown target '$t' (spec, ir, st, import, state or tokenizer)" >&2; exit 2 ;;
    esac
done

# Seeds: the specs of the tree; for st, small crafted files plus the smallest golden ones.
seeds() {
    dir=$work/$1/seeds
    rm -rf "$dir"
    mkdir -p "$dir"
    case $1 in
    spec | ir)
        for f in "$src"/examples/*.mx "$src"/tests/specs/*/*.mx "$src"/tests/golden/*/*.mx; do
            [ -f "$f" ] && cp "$f" "$dir/$(echo "${f#"$src"/}" | tr / _)"
        done ;;
    st)
        "$out/st_seeds" "$dir"
        for f in "$src"/tests/golden/*/io.safetensors; do
            [ "$(wc -c < "$f")" -le 65536 ] && cp "$f" "$dir/$(basename "$(dirname "$f")").safetensors"
        done ;;
    state)
        "$out/state_seeds" "$dir" ;;
    import)
        for f in "$src"/tests/golden/*/config.json "$src"/tests/import/*.json "$src"/tests/import/*.yaml; do
            [ -f "$f" ] && cp "$f" "$dir/$(echo "${f#"$src"/}" | tr / _)"
        done ;;
    tokenizer) # odd first byte: a text; even: a small tokenizer.json
        for f in "$src"/tests/tokenizer/corpus/*.txt; do
            { printf '\001'; head -c 4000 "$f"; } > "$dir/text_$(basename "$f")"
        done
        printf '\000{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<s>": 3}, "merges": ["a b"]}, "added_tokens": [{"id": 3, "content": "<s>", "special": true, "lstrip": true}], "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}, {"type": "Replace", "pattern": {"Regex": "a+"}, "content": "a"}]}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\\\s+"}, "behavior": "MergedWithNext"}, {"type": "ByteLevel", "use_regex": false}]}, "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {"<s>": {"ids": [3]}}}, "decoder": {"type": "ByteLevel"}}' > "$dir/tiny.json"
        printf '\000{"model": {"type": "BPE", "vocab": {"a": 0, "<0x62>": 1}, "merges": [["a", "a"]], "byte_fallback": true, "unk_token": "a", "fuse_unk": true}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"}}' > "$dir/fallback.json" ;;
    esac
    echo "$dir"
}

status=0
pids=""
for t in $targets; do
    bin=$out/fuzz_$t
    wdir=$work/$t
    mkdir -p "$wdir/corpus"
    regress=$src/tests/fuzz/regress/$t
    if [ -d "$regress" ] && [ -n "$(ls "$regress")" ]; then
        echo "fuzz: $t: replaying $(ls "$regress" | wc -l) regression inputs"
        if ! "$bin" -timeout=30 -runs=1 -close_fd_mask=1 "$regress"/* > "$wdir/replay.log" 2>&1; then
            tail -n 30 "$wdir/replay.log"
            echo "fuzz: $t: a regression input fails again" >&2
            status=1
        fi
    fi
    [ "$time_s" -gt 0 ] || continue
    seed_dir=$(seeds "$t")
    rm -f "$wdir"/fuzz-*.log
    parallel=""
    [ "$jobs" -gt 1 ] && parallel="-jobs=$jobs -workers=$jobs"
    echo "fuzz: $t: $time_s s x $jobs job(s), corpus $wdir/corpus, log $wdir/fuzz.log"
    # with -jobs, each worker writes fuzz-N.log into the current directory
    # shellcheck disable=SC2086
    dict=$src/tests/fuzz/$t.dict
    [ "$t" = ir ] && dict=$src/tests/fuzz/spec.dict
    [ "$t" = state ] && dict=$src/tests/fuzz/state.dict
    quiet=""
    [ "$t" = import ] && quiet="-close_fd_mask=3" # import prints specs and messages
    (cd "$wdir" && exec nice -n 19 "$bin" -dict="$dict" -max_len=16384 \
        -timeout=10 -rss_limit_mb=2048 -max_total_time="$time_s" -print_final_stats=1 \
        -artifact_prefix="$wdir/crash-" $parallel $quiet corpus "$seed_dir" > "$wdir/fuzz.log" 2>&1) &
    pids="$pids $!:$t"
done
for p in $pids; do
    t=${p#*:}
    wdir=$work/$t
    if wait "${p%%:*}"; then
        runs=$(cat "$wdir"/fuzz*.log | awk '/stat::number_of_executed_units/ {s += $2} END {print s + 0}')
        echo "fuzz: $t: no findings ($runs executions; corpus $(ls "$wdir/corpus" | wc -l) inputs)"
    else
        cat "$wdir"/fuzz*.log | grep -A 20 "ERROR: \|SUMMARY: \|Test unit written" | head -n 60 || true
        echo "fuzz: $t: FOUND A PROBLEM; inputs: $(ls "$wdir"/crash-* 2>/dev/null | tr '\n' ' ')" >&2
        status=1
    fi
done
exit $status
