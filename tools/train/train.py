"""train.py - train one of the demo character-level models that mxc ships in examples/.

    nice -n 19 /usr/bin/python3 tools/train/train.py mamba --minutes 5
    nice -n 19 /usr/bin/python3 tools/train/train.py xlstm --minutes 5

The text is the King James Version of the Bible (1611; public domain), as Debian's
`bible-kjv-text` package carries it: tools/train/kjv.py turns the output of its `bible` program
into one verse per line. Tokens are bytes (vocab_size 256, token id = byte value), the
convention `mxc run` and examples/generate.py use.

Runs on one CPU thread (torch.set_num_threads(1)) for a fixed budget of CPU time, then writes
examples/kjv_NAME.safetensors (F32, official parameter names) and prints the parameter count,
the time and the final losses. Run once by hand; not part of the build or of CI. Needs Debian's
python3-torch and python3-numpy (use /usr/bin/python3).
"""
import argparse
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kjv  # noqa: E402
import models  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def build(kind, width):
    if kind == "mamba":
        return models.MambaLM(vocab_size=256, d_model=width, n_layer=4)
    return models.XLSTMLM(vocab_size=256, E=width, block_map="msmm")


def batches(data, batch, seq, rng):
    """Random windows of seq + 1 bytes: inputs and next-byte targets."""
    n = len(data) - seq - 1
    while True:
        starts = [rng.randrange(n) for _ in range(batch)]
        x = torch.stack([data[s:s + seq + 1] for s in starts]).long()
        yield x[:, :-1], x[:, 1:]


@torch.no_grad()
def evaluate(model, data, seq, n_windows=16):
    model.eval()
    step = (len(data) - seq - 1) // n_windows
    x = torch.stack([data[i * step:i * step + seq + 1] for i in range(n_windows)]).long()
    logits = model(x[:, :-1])
    loss = F.cross_entropy(logits[..., :256].reshape(-1, 256), x[:, 1:].reshape(-1))
    model.train()
    return loss.item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["mamba", "xlstm"])
    ap.add_argument("--minutes", type=float, default=7.0,
                    help="training budget in CPU minutes (so that a busy machine gives the same model)")
    ap.add_argument("--width", type=int, default=96, help="d_model / embedding_dim")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--resume", default=None, help="start from these weights instead of the init")
    ap.add_argument("--out", default=None, help="weights file (default examples/kjv_KIND.safetensors)")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    text = kjv.load_text().encode("ascii")
    data = torch.frombuffer(bytearray(text), dtype=torch.uint8)
    split = int(len(data) * 0.98)
    train, val = data[:split], data[split:]        # the last 2% (end of Revelation) held out
    print(f"text: {len(text)} bytes, {len(set(text))} distinct; train {len(train)}, val {len(val)}")

    model = build(args.kind, args.width)
    if args.resume:
        sd = models.load_safetensors(args.resume)
        if args.kind == "mamba":
            sd["lm_head.weight"] = sd["backbone.embedding.weight"]
        model.load_state_dict(sd)
        print(f"resuming from {args.resume}")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{args.kind}: {n_params} parameters")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    budget = args.minutes * 60.0
    t0, wall0 = time.process_time(), time.time()
    it, avg = 0, None
    for x, y in batches(train, args.batch, args.seq, rng):
        elapsed = time.process_time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget                    # schedule by time: warm-up, then cosine
        lr = args.lr * min(1.0, (it + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        logits = model(x)
        loss = F.cross_entropy(logits[..., :256].reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        avg = loss.item() if avg is None else 0.95 * avg + 0.05 * loss.item()
        it += 1
        if it % 25 == 0:
            print(f"iter {it:5d}  {elapsed:6.0f}s  lr {lr:.2e}  loss {avg:.3f}", flush=True)
    train_time = time.process_time() - t0
    wall_time = time.time() - wall0
    val_loss = evaluate(model, val, 256)
    print(f"done: {it} iterations, {it * args.batch * args.seq} tokens, {train_time:.0f} CPU s "
          f"({wall_time:.0f} s wall); "
          f"train loss {avg:.3f} nats/byte, validation loss {val_loss:.3f} nats/byte "
          f"({val_loss / math.log(2):.2f} bits/byte)")
    out = args.out or os.path.join(ROOT, "examples", f"kjv_{args.kind}.safetensors")
    models.save_safetensors(out, model.export(), metadata={
        "model": f"kjv_{args.kind}", "tokenizer": "bytes", "text": "King James Version (1611), public domain",
        "parameters": n_params, "iterations": it, "train_seconds": round(train_time),
        "train_loss": round(avg, 4), "val_loss": round(val_loss, 4)})
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
