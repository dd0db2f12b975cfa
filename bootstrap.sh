#!/bin/sh
# bootstrap.sh - make this checkout buildable and built: install the Debian packages mxc
# needs (when missing, as root), generate the build system, configure, and compile.
# Safe to run again: each step is skipped when its result is already there.
set -eu
cd "$(dirname "$0")"

PACKAGES="gcc g++ make libc6-dev autoconf automake libtool pkg-config flex bison llvm-19-dev libcunit1-dev"
# the tokenizer: Unicode regexes (PCRE2) and normalization (utf8proc)
PACKAGES="$PACKAGES libpcre2-dev libutf8proc-dev"
# check.sh only: libFuzzer (clang-14, libclang-rt-14-dev), valgrind, and git (the sanitizer
# stage copies the tracked sources)
PACKAGES="$PACKAGES clang-14 libclang-rt-14-dev valgrind git"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "bootstrap: missing Debian packages:$missing" >&2
        echo "bootstrap: install them (sudo apt-get install$missing) or run this as root" >&2
        exit 1
    fi
    echo "bootstrap: installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure ${MXC_CONFIGURE_FLAGS:-}
make -j"$(nproc)"
