#!/bin/sh
# quickstart.sh - build mxc, compile the shipped Mamba example into a shared object with its
# header, build a small C program against it, and run it on the shipped weights: it prints
# its logits beside the official implementation's and a greedy continuation.
set -eu
cd "$(dirname "$0")"
sh ./bootstrap.sh
mkdir -p build
./mxc build examples/mamba_tiny.mx -o build/libmamba_tiny.so
echo "quickstart: built build/libmamba_tiny.so and build/mamba_tiny.h"
cc -Ibuild examples/mamba_app.c -Lbuild -lmamba_tiny -lm -o build/mamba_app
LD_LIBRARY_PATH=build ./build/mamba_app tests/golden/mamba_tiny/model.safetensors \
    examples/mamba_tiny.expected
