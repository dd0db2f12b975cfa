"""Narrow weight types in the bench (issue 12): bf16, f16 and q8 builds beside the f32 one.

For each model and narrow type: the F32 weights are converted by `mxc convert` into the bench's
out dir (kept while newer than the F32 file and mxc), the spec is built with `--weight-type`,
and bench_model measures decode batch 1 and 8 and prefill 128 and 512 with fewer repetitions
than the f32 build. Each decode is held against the roofline of the bytes that type reads:
every tensor at its stored size (read from the converted file's header; q8 scales included;
an untied embedding only as one row per sequence) plus the F32 state read and written.
llama.cpp runs on one GGUF per llama.cpp type; each mxc type is compared with the llama.cpp type
that reads about as many bytes (LLAMA_TYPE). `svg()` draws M130's decode per type as a chart.
"""
import argparse
import json
import os
import struct
import subprocess

import models

# The narrow types measured by default, per model (the f32 build is bench.py's main one).
DEFAULT_TYPES = "m130:bf16,f16,q8;x125:bf16"
ALL_TYPES = ("f32", "bf16", "f16", "q8")
# The llama.cpp weight type each mxc type is compared with (issue 12: bf16 against F16).
LLAMA_TYPE = {"f32": "F32", "bf16": "F16", "f16": "F16", "q8": "Q8_0"}
# Issue 12's targets: decode batch 1 against the roofline of its bytes, speed-up over llama.cpp.
ROOF_TARGET = {"bf16": 1.3, "q8": 1.4}
LLAMA_TARGET = {"bf16": 1.5, "q8": 1.5}
PREFILL_AS_FAST = ("bf16", "q8")   # prefill 512 at least as fast as the f32 build
EMBEDDINGS = ("backbone.embedding.weight", "token_embedding.weight")
MB = 1e6


def parse_types(text):
    """'m130:bf16,f16,q8;x125:bf16' -> {'m130': ['bf16', 'f16', 'q8'], 'x125': ['bf16']}."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, types = part.partition(":")
        ts = [t for t in types.split(",") if t]
        bad = [t for t in ts if t not in ALL_TYPES[1:]]
        if name not in models.MODELS or bad or not ts:
            raise argparse.ArgumentTypeError(f"bad entry '{part}' (MODEL:TYPE,...; types bf16 f16 q8)")
        out[name] = ts
    return out


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h


def stored_decode_bytes(cfg, path, batch=1):
    """Bytes a decode step moves with the weights as stored in PATH: every tensor once (an
    untied embedding as `batch` rows, its q8 scales likewise), plus the F32 state read and
    written for each sequence."""
    total = 0
    for name, v in header(path).items():
        n = v["data_offsets"][1] - v["data_offsets"][0]
        base = name[:-len(".q8_scales")] if name.endswith(".q8_scales") else name
        if base in EMBEDDINGS and not cfg.tied:
            n = n * batch // v["shape"][0]
        total += n
    return total + batch * 2 * 4 * cfg.state_floats()


def _run(cmd, env=None):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    return p.stdout, p.stderr, p.returncode


def convert(mxc, spec, f32_path, dst, wt, log):
    """OUT/NAME-WT.safetensors by `mxc convert`, kept while newer than the F32 file and the mxc
    binary (a new mxc may store a tensor in another type: a stale file would then be converted
    at open instead of read in place)."""
    if os.path.exists(dst) and os.path.getmtime(dst) >= max(os.path.getmtime(f32_path), os.path.getmtime(mxc)):
        log(f"  {os.path.basename(dst)}: kept ({os.path.getsize(dst) / MB:.0f} MB)")
        return None
    o, e, rc = _run([mxc, "convert", spec, f32_path, "--weight-type", wt, "-o", dst])
    if rc:
        return f"mxc convert --weight-type {wt} failed: {e.strip()[-800:]}"
    notes = e.strip().splitlines()  # e.g. a tensor whose shape does not fit q8's blocks
    log(f"  {os.path.basename(dst)}: converted ({os.path.getsize(dst) / MB:.0f} MB)"
        + (f"; mxc convert said {len(notes)} time(s): {notes[0]}" if notes else ""))
    return None


def jobs(quick):
    """Fewer repetitions than the f32 build's (bench.mxc_jobs), and no prefill 4096."""
    r = (lambda full, q: q if quick else full)
    return [("decode", 1, r(20, 3), 15), ("decode", 8, r(8, 2), 15),
            ("prefill", 128, r(5, 1), 15), ("prefill", 512, r(3, 1), 20)]


def measure(exe, name, lib, weights, threads, quick, log):
    env = dict(os.environ, MXC_THREADS=str(threads))
    res = {}
    for mode, n, reps, secs in jobs(quick):
        key = f"{mode}{n}"
        with open("/proc/loadavg") as f:
            load = " ".join(f.read().split()[:3])
        o, e, rc = _run([exe, lib, name, weights, mode, str(n), str(reps), str(secs)], env)
        lines = [json.loads(x) for x in o.splitlines() if x.strip().startswith("{")]
        if rc or not lines:
            res[key] = {"error": e.strip()}
            log(f"  {name} {key}: FAILED {e.strip()}")
            continue
        r = lines[0]
        r["load"] = load
        res[key] = r
        log(f"  {name} {key}: median {r['median_ms']:.2f} ms, min {r['min_ms']:.2f} ms "
            f"({r['reps']} reps, load {load})")
    return res


def run_all(mxc, bench_dir, out, exe, names, types, threads, quick, llama, log):
    """Convert, build and measure every (model, narrow type); then llama.cpp per GGUF type.
    llama = (function(gguf) -> results, {llama type: gguf path}) or None."""
    R = {"types": {}, "llamacpp": {}}
    for name in names:
        f32_path = os.path.join(out, name + ".safetensors")
        spec = os.path.join(bench_dir, name + ".mx")
        for wt in types.get(name, []):
            entry = R["types"].setdefault(name, {}).setdefault(wt, {})
            path = os.path.join(out, f"{name}-{wt}.safetensors")
            err = convert(mxc, spec, f32_path, path, wt, log)
            lib = os.path.join(out, f"lib{name}_{wt}.so")
            if not err:
                o, e, rc = _run([mxc, "build", spec, "--weight-type", wt, "-o", lib])
                err = f"mxc build --weight-type {wt} failed: {e.strip()[-800:]}" if rc else None
            if err:
                entry["error"] = err
                log(f"  {name} {wt}: {err}")
                continue
            entry.update(weights=path, file_bytes=os.path.getsize(path),
                         decode_bytes={b: stored_decode_bytes(models.MODELS[name], path, b) for b in (1, 8)})
            log(f"  {name} {wt}: file {entry['file_bytes'] / MB:.0f} MB, decode reads "
                f"{entry['decode_bytes'][1] / MB:.0f} MB/token")
            entry["mxc"] = measure(exe, name, lib, path, threads, quick, log)
    if llama and "m130" in R["types"]:
        fn, ggufs = llama
        wanted = {LLAMA_TYPE[t] for t in R["types"]["m130"]} - {"F32"}
        for lt in sorted(wanted):
            g = ggufs.get(lt)
            if g and os.path.exists(g):
                log(f"  llama.cpp {lt}: {g}")
                R["llamacpp"][lt] = fn(g)
            else:
                log(f"  llama.cpp {lt}: no GGUF ({g}); column left empty")
    return R


# ---- table and chart ---------------------------------------------------------------------

def _fmt(x):
    return "—" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def _med(d, k, field="median_ms"):
    return (d or {}).get(k, {}).get(field)


def columns(name, R):
    """[(type, mxc results, weights path, decode bytes {1, 8}, llama.cpp type, llama.cpp results)]
    with the f32 build first (bench.py's main measurements)."""
    cfg = models.MODELS[name]
    N = R.get("narrow", {})
    cols = [("f32", R["mxc"].get(name, {}), R["weights"][name],
             {b: models.decode_bytes(cfg, b) for b in (1, 8)}, "F32",
             R["llamacpp"] if name == "m130" else {})]
    for wt, e in N.get("types", {}).get(name, {}).items():
        if "mxc" in e:
            lt = LLAMA_TYPE[wt]
            ll = (R["llamacpp"] if lt == "F32" else N.get("llamacpp", {}).get(lt, {})) if name == "m130" else {}
            cols.append((wt, e["mxc"], e["weights"], {int(b): v for b, v in e["decode_bytes"].items()}, lt, ll))
    return cols


def decode_rows(name, R):
    """Per type: (type, mxc median, mxc min, roofline ms, llama.cpp type, llama.cpp ms)."""
    bw = R["roofline"]["bandwidth_gbs"] * 1e9
    return [(wt, _med(mx, "decode1"), _med(mx, "decode1", "min_ms"), db[1] / bw * 1e3, lt,
             _med(ll if isinstance(ll, dict) else {}, "decode1"))
            for wt, mx, _, db, lt, ll in columns(name, R)]


def render(R):
    """Markdown lines of the narrow-weights section (empty when no narrow type was run)."""
    N = R.get("narrow")
    if not N or not N.get("types"):
        return []
    bw = R["roofline"]["bandwidth_gbs"] * 1e9
    lines = ["", "### Narrow weight types (issue 12)", "",
             "Each type's build reads its own file (converted once by `mxc convert`); "
             "the f32 column repeats the tables above. Roofline of a decode: the bytes that type reads "
             "(tensors at their stored size, q8 scales included, plus the F32 state read and written) ÷ the "
             "read bandwidth above. The narrow builds run fewer repetitions than the f32 one (a full run: decode 20 and 8, "
             "prefill 5 and 3; no prefill 4096). "
             "llama.cpp: each mxc type beside the llama.cpp type of about the same bytes "
             "(bf16 and f16 beside F16, q8 beside Q8_0), decode = its text generation."]
    targets = []
    for name in R["models"]:
        cols = columns(name, R)
        if len(cols) < 2:
            continue
        cfg = models.MODELS[name]
        for wt, e in N["types"].get(name, {}).items():
            if "error" in e:
                lines.append(f"- {name} {wt}: **error** {e['error'][:300]}")
        head = "| " + name.upper() + " | " + " | ".join(c[0] for c in cols) + " |"
        rows = [head, "|---|" + "---:|" * len(cols)]

        def row(label, cells):
            rows.append(f"| {label} | " + " | ".join(cells) + " |")

        row("weights file: MB", [f"{os.path.getsize(c[2]) / MB:.0f}" for c in cols])
        row("decode reads: MB/token (batch 1)", [f"{c[3][1] / MB:.0f}" for c in cols])
        f32 = cols[0][1]
        d1s, ratios = [], []
        for wt, mx, _, db, lt, ll in cols:
            d1 = _med(mx, "decode1")
            roof = db[1] / bw * 1e3
            d1s.append(f"{_fmt(d1)} ({_fmt(_med(mx, 'decode1', 'min_ms'))})")
            lim = ROOF_TARGET.get(wt)
            ratios.append("—" if not d1 else f"{d1 / roof:.2f}×" + (f" (≤ {lim})" if lim else ""))
            if d1 and lim:
                targets.append((f"{name} {wt} decode b1 ≤ {lim}× roofline of its bytes", d1 / roof <= lim,
                                f"{d1 / roof:.2f}×"))
        row("decode, batch 1: ms/token, median (min)", d1s)
        row("roofline of its bytes: ms", [_fmt(c[3][1] / bw * 1e3) for c in cols])
        row("decode b1 ÷ roofline", ratios)
        has_llama = name == "m130" and any(_med(c[5] if isinstance(c[5], dict) else {}, "decode1") for c in cols)
        if has_llama:
            lls, sps = [], []
            for wt, mx, _, db, lt, ll in cols:
                v = _med(ll if isinstance(ll, dict) else {}, "decode1")
                d1 = _med(mx, "decode1")
                lls.append(f"{_fmt(v)} ({lt})" if v else f"— ({lt})")
                lim = LLAMA_TARGET.get(wt)
                sps.append("—" if not (v and d1) else f"{v / d1:.2f}×" + (f" (≥ {lim})" if lim else ""))
                if v and d1 and lim:
                    targets.append((f"{name} {wt} decode b1 ≥ {lim}× faster than llama.cpp {lt}",
                                    v / d1 >= lim, f"{v / d1:.2f}×"))
            row("llama.cpp decode: ms/token (its type)", lls)
            row("mxc speed-up over llama.cpp, decode", sps)
        row("decode, batch 8: ms/step (tokens/s)",
            [f"{_fmt(_med(c[1], 'decode8'))} ({_fmt(8e3 / _med(c[1], 'decode8')) if _med(c[1], 'decode8') else '—'})"
             for c in cols])
        row("roofline batch 8: ms", [_fmt(c[3][8] / bw * 1e3) for c in cols])
        for T in (128, 512):
            k = f"prefill{T}"
            cells = []
            for wt, mx, *_ in cols:
                p, p32 = _med(mx, k), _med(f32, k)
                rel = f", {p32 / p:.2f}× f32" if p and p32 and wt != "f32" else ""
                cells.append(f"{_fmt(p)}{rel}")
                if T == 512 and p and p32 and wt in PREFILL_AS_FAST:
                    targets.append((f"{name} {wt} prefill 512 at least as fast as f32", p <= p32,
                                    f"{p32 / p:.2f}× f32's speed"))
            row(f"prefill {T}: ms", cells)
        if has_llama:
            row("llama.cpp prefill 512: ms (its type)",
                [f"{_fmt(_med(c[5] if isinstance(c[5], dict) else {}, 'prefill512'))} ({c[4]})" for c in cols])
        rss = []
        for wt, mx, path, *_ in cols:
            worst = None
            for k, r in mx.items():
                if not isinstance(r, dict) or "maxrss_kb" not in r:
                    continue
                budget = os.path.getsize(path) + r["batch"] * 4 * cfg.state_floats() + 64 * 2 ** 20
                used = r["maxrss_kb"] * 1024 - r["logits_bytes"]
                if worst is None or used / budget > worst[0]:
                    worst = (used / budget, used, budget, k)
            rss.append("—" if not worst else f"{worst[1] / MB:.0f} of {worst[2] / MB:.0f} ({worst[3]})")
            if worst and wt != "f32":
                targets.append((f"{name} {wt} peak RSS ≤ its file + states + 64 MB", worst[0] <= 1,
                                f"{worst[0]:.2f}"))
        row("peak RSS − logits buffer: MB, of file + states + 64 MB", rss)
        lines += [""] + rows
    if N.get("llamacpp"):
        lines += ["", "llama.cpp per type: " + "; ".join(
            f"{lt}: " + (f"build {v.get('build')}, {v.get('type')}, faster wait policy "
                         + ", ".join(f"{k} {x.get('omp_wait_policy')}" for k, x in v.items()
                                     if k.startswith(("pre", "dec")))
                         if not v.get("error") else f"**error** {v['error'][:200]}")
            for lt, v in N["llamacpp"].items()) + "."]
    lines += ["", "![M130 decode per weight type](performance-narrow.svg)", "",
              "| target (issue 12) | measured | |", "|---|---:|---|"]
    lines += [f"| {t} | {v} | {'ok' if ok else '**miss**'} |" for t, ok, v in targets]
    misses = sum(1 for _, ok, _ in targets if not ok)
    lines += ["", f"{len(targets) - misses} of {len(targets)} narrow-weight targets met. Not measured here: "
                  "q8 prefill ≥ 1.5× f32 (asked only if q8 used integer dot products; it widens to f32)."]
    return lines


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(R, name="m130"):
    """M130 decode batch 1, ms/token, per weight type: mxc (median, min as a tick), llama.cpp
    at the matching type, the roofline of the type's bytes. Hand-written SVG, no library."""
    rows = decode_rows(name, R) if name in R.get("mxc", {}) else []
    W, H, left, right, top, bottom = 720, 420, 64, 16, 56, 76
    series = [("mxc (median; tick: min)", "#1f77b4"), ("llama.cpp (its type)", "#ff7f0e"),
              ("roofline of the bytes read", "#7f7f7f")]
    vals = [v for r in rows for v in (r[1], r[3], r[5]) if v]
    top_v = max(vals) if vals else 1.0
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000, 2000, 5000, 1e4, 1e5)
                if top_v / s <= 8)
    ymax = step * (int(top_v / step) + 1)
    ph = H - top - bottom
    y = (lambda v: top + ph * (1 - v / ymax))
    m = R.get("machine", {})
    load = m.get("uptime_start", "").split("load average:")[-1].strip()
    try:  # a 1-minute load above the core count: other work inflated every bar
        busy = float(load.split(",")[0]) > (m.get("cores") or 1)
    except ValueError:
        busy = False
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
           'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15">{_esc(name.upper())} decode, batch 1: '
           'ms/token by weight type (lower is faster)</text>',
           f'<text x="{W / 2}" y="38" text-anchor="middle" fill="#555">{_esc(m.get("date", ""))}, '
           f'{R.get("threads", "?")} threads, load average at start {_esc(load)}'
           + ('; loaded machine: preliminary' if busy else '') + '</text>']
    t = 0.0
    while t <= ymax + 1e-9:
        out.append(f'<line x1="{left}" x2="{W - right}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        t += step
    out.append(f'<text x="16" y="{top + ph / 2}" transform="rotate(-90 16 {top + ph / 2})" '
               'text-anchor="middle">ms per token</text>')
    if rows:
        gw = (W - left - right) / len(rows)
        bw_ = min(44.0, gw / 4.5)
        for i, (wt, med, mn, roof, lt, ll) in enumerate(rows):
            x0 = left + gw * i + (gw - 3 * bw_) / 2
            for j, v in enumerate((med, ll, roof)):
                x = x0 + j * bw_
                if not v:
                    out.append(f'<text x="{x + bw_ / 2:.1f}" y="{y(0) - 4:.1f}" text-anchor="middle" '
                               'fill="#999">n/a</text>')
                    continue
                out.append(f'<rect x="{x:.1f}" y="{y(v):.1f}" width="{bw_ - 2:.1f}" height="{y(0) - y(v):.1f}" '
                           f'fill="{series[j][1]}"/>')
                out.append(f'<text x="{x + bw_ / 2 - 1:.1f}" y="{y(v) - 4:.1f}" text-anchor="middle" '
                           f'font-size="11">{_fmt(v)}</text>')
            if mn:
                out.append(f'<line x1="{x0:.1f}" x2="{x0 + bw_ - 2:.1f}" y1="{y(mn):.1f}" y2="{y(mn):.1f}" '
                           'stroke="black" stroke-width="2"/>')
            out.append(f'<text x="{left + gw * (i + 0.5):.1f}" y="{H - bottom + 18}" text-anchor="middle" '
                       f'font-size="13">mxc {_esc(wt)}</text>')
            out.append(f'<text x="{left + gw * (i + 0.5):.1f}" y="{H - bottom + 32}" text-anchor="middle" '
                       f'font-size="11" fill="#555">llama.cpp {_esc(lt)}</text>')
    lx = left
    for lab, col in series:
        out.append(f'<rect x="{lx}" y="{H - 26}" width="12" height="12" fill="{col}"/>')
        out.append(f'<text x="{lx + 16}" y="{H - 16}">{_esc(lab)}</text>')
        lx += 16 + 7 * len(lab) + 24
    out.append(f'<line x1="{left}" x2="{W - right}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="black"/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
