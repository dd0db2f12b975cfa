#!/bin/sh
# run-header.sh - the header `mxc build` writes (P.h) is valid C and C++: tests/header/
# use_header.c includes the one of the golden model mamba_tiny, calls every function through
# a typed pointer, and is built as C (-std=c11 -Wall -Wextra -Werror -pedantic) and as C++
# (-std=c++11, the same warnings), linked against the model and run. Every function the
# header declares must appear in use_header.c, so that a new one gets its typed pointer.
. "${MXC_TEST_SRCDIR:-$(dirname "$0")}/testlib.sh"
CC_FOR_HEADER=${CC_FOR_HEADER:-gcc}
CXX_FOR_HEADER=${CXX_FOR_HEADER:-g++}
USE="$SRC/header/use_header.c"
W="$SRC/golden/mamba_tiny/model.safetensors"
WARN="-Wall -Wextra -Werror -pedantic"
# shellcheck disable=SC2086
if ! "$MXC" build "$SRC/golden/mamba_tiny/model.mx" -o "$TMP/libmamba_tiny.so" 2>"$TMP/err"; then
    report "mxc build mamba_tiny" 1 "$TMP/err"
    finish header
fi
report "mxc build writes mamba_tiny.h" "$([ -f "$TMP/mamba_tiny.h" ]; echo $?)"

# every function declared in the header is used by use_header.c
sed -n 's/^[a-z_0-9 *]*[ *]\(mamba_tiny_[a-z_0-9]*\)(.*/\1/p' "$TMP/mamba_tiny.h" >"$TMP/declared"
missing=""
for f in $(cat "$TMP/declared"); do
    grep -q "= $f;" "$USE" || missing="$missing $f"
done
echo "declared but not called through a pointer in use_header.c:$missing" >"$TMP/missing"
report "use_header.c covers the $(wc -l <"$TMP/declared") functions of the header" \
    "$([ -z "$missing" ] && [ -s "$TMP/declared" ]; echo $?)" "$TMP/missing"

# shellcheck disable=SC2086
for lang in c c++; do
    if [ $lang = c ]; then
        set -- "$CC_FOR_HEADER" -std=c11 $WARN
    else
        set -- "$CXX_FOR_HEADER" -std=c++11 $WARN -x c++
    fi
    if "$@" -I"$TMP" -c "$USE" -o "$TMP/use_$lang.o" 2>"$TMP/err"; then
        report "header compiles as $lang" 0
    else
        report "header compiles as $lang" 1 "$TMP/err"
        continue
    fi
    # link with the driver of the language (C++ links libstdc++ for nothing, but it must link)
    if "$1" ${MXC_LINK_FLAGS:-} "$TMP/use_$lang.o" -L"$TMP" -lmamba_tiny -lm -o "$TMP/use_$lang" \
        2>"$TMP/err" &&
        LD_LIBRARY_PATH="$TMP" "$TMP/use_$lang" "$W" "$TMP/state_$lang.bin" >"$TMP/run" 2>&1; then
        report "the $lang program runs" 0
    else
        cat "$TMP/run" >>"$TMP/err" 2>/dev/null
        report "the $lang program runs" 1 "$TMP/err"
    fi
done
finish header
