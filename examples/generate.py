#!/usr/bin/env python3
"""generate.py - generate text with a model compiled by mxc, from Python, with nothing but the
standard library (ctypes).

    ./mxc build examples/kjv_mamba.mx -o build/libkjv_mamba.so
    python3 examples/generate.py build/libkjv_mamba.so examples/kjv_mamba.safetensors \\
        --prompt "And God said" -n 200 --seed 1

The shared object exports a small C API whose names start with the model's prefix (the model
name, or `mxc build --prefix`); see docs/c-api.md. This script finds the prefix from the file
name libPREFIX.so, declares the functions it uses to ctypes, runs the prompt through
PREFIX_forward in one call, then samples one byte at a time and feeds it back with PREFIX_step.
Tokens are bytes (token id = byte value), the convention of the shipped demo models.

The sampler here is Python's `random` (so a seed gives different text than `mxc run` with the
same seed); the model's numbers are the same.
"""
import argparse
import ctypes
import math
import os
import random
import sys
import time


class Model:
    """A compiled model: the shared object, its opened weights and one state (batch 1)."""

    def __init__(self, so_path, weights, prefix=None):
        if prefix is None:
            base = os.path.basename(so_path)
            if not (base.startswith("lib") and ".so" in base):
                raise ValueError(f"cannot tell the prefix of {so_path}; pass prefix=")
            prefix = base[3:base.index(".so")]
        self.lib = ctypes.CDLL(os.path.abspath(so_path))
        f = lambda name: getattr(self.lib, f"{prefix}_{name}")  # noqa: E731
        vp = ctypes.c_void_p
        i32p = ctypes.POINTER(ctypes.c_int32)
        f32p = ctypes.POINTER(ctypes.c_float)
        self._open = f("open")
        self._open.argtypes, self._open.restype = [ctypes.c_char_p, ctypes.POINTER(vp)], ctypes.c_int
        self._close = f("close")
        self._close.argtypes, self._close.restype = [vp], None
        self._state_new = f("state_new")
        self._state_new.argtypes, self._state_new.restype = [vp, ctypes.c_int, ctypes.POINTER(vp)], ctypes.c_int
        self._state_free = f("state_free")
        self._state_free.argtypes, self._state_free.restype = [vp], None
        self._state_reset = f("state_reset")
        self._state_reset.argtypes, self._state_reset.restype = [vp], None
        self._forward = f("forward")
        self._forward.argtypes = [vp, vp, i32p, ctypes.c_int, f32p]
        self._forward.restype = ctypes.c_int
        self._step = f("step")
        self._step.argtypes, self._step.restype = [vp, vp, i32p, f32p], ctypes.c_int
        self._last_error = f("last_error")
        self._last_error.argtypes, self._last_error.restype = [], ctypes.c_char_p
        for name in ("vocab_size", "vocab_padded"):
            fn = f(name)
            fn.argtypes, fn.restype = [], ctypes.c_int32
        self.vocab_size = f("vocab_size")()
        self.vocab_padded = f("vocab_padded")()

        self.model, self.state = vp(), vp()
        self._check(self._open(os.fsencode(weights), ctypes.byref(self.model)))
        self._check(self._state_new(self.model, 1, ctypes.byref(self.state)))
        # One thread per call unless $MXC_THREADS says otherwise: the demo models are so small
        # that splitting a step among threads costs more than it saves.
        if hasattr(self.lib, f"{prefix}_state_set_threads") and not os.environ.get("MXC_THREADS"):
            f("state_set_threads").argtypes = [vp, ctypes.c_int]
            f("state_set_threads")(self.state, 1)
        self._step_out = (ctypes.c_float * self.vocab_padded)()

    def _check(self, rc):
        if rc != 0:
            raise RuntimeError(self._last_error().decode("utf-8", "replace"))

    def reset(self):
        """Back to the start of a sequence."""
        self._state_reset(self.state)

    def forward(self, tokens):
        """Run `tokens` (a list of ids); returns the logits of every position, each a list."""
        n, vp = len(tokens), self.vocab_padded
        ids = (ctypes.c_int32 * n)(*tokens)
        out = (ctypes.c_float * (n * vp))()
        self._check(self._forward(self.model, self.state, ids, n, out))
        return [out[i * vp:(i + 1) * vp] for i in range(n)]

    def step(self, token):
        """Run one token; returns its logits."""
        tok = ctypes.c_int32(token)
        self._check(self._step(self.model, self.state, ctypes.byref(tok), self._step_out))
        return self._step_out[:]

    def close(self):
        if self.state:
            self._state_free(self.state)
            self.state = ctypes.c_void_p()
        if self.model:
            self._close(self.model)
            self.model = ctypes.c_void_p()


def sample(logits, vocab, temperature, top_k, rng):
    """A token id from the first `vocab` logits: greedy at temperature 0, else softmax over the
    top_k largest (all if 0) at the given temperature."""
    cand = sorted(range(vocab), key=lambda i: (-logits[i], i))
    if temperature <= 0:
        return cand[0]
    if top_k > 0:
        cand = cand[:top_k]
    top = logits[cand[0]]
    weights = [math.exp((logits[i] - top) / temperature) for i in cand]
    return rng.choices(cand, weights=weights)[0]


def main():
    ap = argparse.ArgumentParser(description="Generate text with a model compiled by mxc.")
    ap.add_argument("so", help="shared object from `mxc build`, named libPREFIX.so")
    ap.add_argument("weights", help="safetensors weights")
    ap.add_argument("--prompt", default="\n")
    ap.add_argument("-n", type=int, default=200, help="bytes to generate")
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--prefix", default=None, help="C prefix (default: from libPREFIX.so)")
    args = ap.parse_args()

    m = Model(args.so, args.weights, args.prefix)
    rng = random.Random(args.seed)
    prompt = list(args.prompt.encode("utf-8"))
    if max(prompt) >= m.vocab_size:
        sys.exit(f"the prompt has bytes beyond the model's {m.vocab_size} tokens")
    out = sys.stdout.buffer
    out.write(bytes(prompt))
    t0 = time.perf_counter()
    logits = m.forward(prompt)[-1]          # prefill: the whole prompt in one call
    t1 = time.perf_counter()
    for _ in range(args.n):                  # decode: one token per call
        tok = sample(logits, m.vocab_size, args.temperature, args.top_k, rng)
        out.write(bytes([tok]) if tok < 256 else b"<%d>" % tok)
        out.flush()
        logits = m.step(tok)
    t2 = time.perf_counter()
    out.write(b"\n")
    m.close()
    print(f"prefill {len(prompt)} tokens in {1e3 * (t1 - t0):.1f} ms; decode {args.n} tokens in "
          f"{1e3 * (t2 - t1):.1f} ms ({args.n / max(t2 - t1, 1e-9):.0f} tokens/s, Python sampling included)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
