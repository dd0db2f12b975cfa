#!/bin/sh
# quickstart.sh - build mxc, then two demonstrations:
#   1. compile the Mamba example into a shared object with its header, build a small C program
#      against it, and run it on the golden weights: it prints its logits beside the official
#      implementation's and a greedy continuation;
#   2. compile the shipped demo model (a character-level Mamba trained on the King James Bible)
#      and generate text with it, printing the speed of prefill and decode.
set -eu
cd "$(dirname "$0")"
sh ./bootstrap.sh
mkdir -p build
./mxc build examples/mamba_tiny.mx -o build/libmamba_tiny.so
echo "quickstart: built build/libmamba_tiny.so and build/mamba_tiny.h"
cc -Ibuild examples/mamba_app.c -Lbuild -lmamba_tiny -lm -o build/mamba_app
LD_LIBRARY_PATH=build ./build/mamba_app tests/golden/mamba_tiny/model.safetensors \
    examples/mamba_tiny.expected
echo
echo "quickstart: generating text with examples/kjv_mamba.mx and its weights:"
echo "  ./mxc run examples/kjv_mamba.mx --prompt \"And God said\" -n 400 --seed 1"
echo
./mxc run examples/kjv_mamba.mx --prompt "And God said" -n 400 --seed 1
