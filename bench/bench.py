"""The mxc benchmark (issues 5, 13, 14): one run measures the model shapes (M130, X125, M2-130,
XL-125), compiled by mxc, against the machine's roofline and a PyTorch eager baseline, and writes
the table. `--models xl7b` runs the xLSTM-7B shape on its own (xl7b_main below).

usage: /usr/bin/python3 bench/bench.py [options]        (what `make bench` runs)

Steps, in this order, all in one run:
  1. machine: lscpu model, cores, load (uptime), versions;
  2. helpers: cc bench_model.c and roofline.c (OpenBLAS) into OUT;
  3. weights: gen_weights.py writes OUT/NAME.safetensors (kept between runs when the
     generator is unchanged);
  4. compile: `mxc build bench/NAME.mx` (wall time);
  5. roofline: read bandwidth (roofline.c, THREADS threads, 1 GB, best of 20) and OpenBLAS
     sgemm on each model's prefill-512 GEMM shapes (OPENBLAS_NUM_THREADS=THREADS; the
     OpenBLAS core type is chosen by measurement when auto-detection picks a slow one);
  6. mxc: bench_model, one process per measurement (decode batch 1 and 8, prefill 128, 512,
     4096), MXC_THREADS=THREADS;
  7. check: the compiled model's logits against the PyTorch model's on the same tokens;
  8. PyTorch: torch_ref.py, same weights, same threads, OMP_WAIT_POLICY=PASSIVE;
  9. llama.cpp (optional): an existing llama-bench and M130 GGUF, when given (see
     docs/performance.md for how to make them; nothing here builds llama.cpp);
 10. narrow weight types (bench/narrow.py, --weight-types): each converted once by `mxc
     convert`, built with --weight-type, measured like step 6 with fewer repetitions; llama.cpp
     on one GGUF per type (F16, Q8_0) when given;
 11. the table: OUT/results.md, OUT/results.json, the block between the markers in
     docs/performance.md, and the chart docs/performance-narrow.svg (also OUT/).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_weights  # noqa: E402
import models  # noqa: E402
import narrow  # noqa: E402

BEGIN, END = "<!-- BEGIN bench results -->", "<!-- END bench results -->"
SERVING_BEGIN, SERVING_END = "<!-- BEGIN serving results -->", "<!-- END serving results -->"
XL7B_BEGIN, XL7B_END = "<!-- BEGIN xl7b results -->", "<!-- END xl7b results -->"
PREFILLS = (128, 512, 4096)
MB = 1e6
CHECK_TOL = 1e-4  # max |logit difference| allowed between mxc and PyTorch (see docs)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def run(cmd, env=None, timeout=None):
    """Run a command; returns (stdout, stderr, returncode, seconds)."""
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    return p.stdout, p.stderr, p.returncode, time.perf_counter() - t


def json_lines(text):
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine():
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cores": os.cpu_count(), "kernel": platform.release(), "python": sys.version.split()[0]}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for key in ("Model name", "Core(s) per socket", "Thread(s) per core", "Hypervisor vendor"):
            m = re.search(rf"^{re.escape(key)}:\s*(.+)$", lscpu, re.M)
            if m:
                info[key] = m.group(1).strip()
    except OSError:
        pass
    with open("/proc/cpuinfo") as f:
        flags = re.search(r"^flags\s*:\s*(.*)$", f.read(), re.M).group(1).split()
    info["simd"] = " ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16") if x in flags)
    info["uptime_start"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return info, flags


# ---- steps ----------------------------------------------------------------------------

def build_helpers(out, cc):
    exe = {"bench_model": os.path.join(out, "bench_model"), "roofline": os.path.join(out, "roofline")}
    cmds = [[cc, "-O2", "-std=gnu11", "-Wall", "-o", exe["bench_model"],
             os.path.join(HERE, "bench_model.c"), "-ldl"],
            [cc, "-O3", "-march=native", "-std=gnu11", "-Wall", "-o", exe["roofline"],
             os.path.join(HERE, "roofline.c"), "-lopenblas", "-lpthread"]]
    for cmd in cmds:
        o, e, rc, _ = run(cmd)
        if rc:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{e}\n(roofline needs OpenBLAS: "
                     "apt-get install libopenblas-dev)")
    return exe


def compile_models(mxc, out, names):
    res = {}
    for name in names:
        lib = os.path.join(out, f"lib{name}.so")
        cmd = [mxc, "build", os.path.join(HERE, name + ".mx"), "-o", lib]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        o, e, rc, secs = run(cmd)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        res[name] = {"seconds": secs, "cpu_seconds": cpu, "ok": rc == 0, "lib": lib,
                     "error": e.strip()[-2000:] if rc else ""}
        log(f"  mxc build {name}: {'ok' if rc == 0 else 'FAILED'} in {secs:.1f} s (cpu {cpu:.1f} s)")
        if rc:
            log(e)
    return res


def pick_openblas_core(roofline, flags, threads):
    """OpenBLAS 0.3.21 does not know recent Xeons and falls back to a generic SSE3 kernel
    ('Prescott'); its best setting on such a CPU is to name the core type. Measure the
    candidates on one model shape and keep the fastest."""
    cands = [""] + (["SkylakeX"] if "avx512f" in flags else []) + (["Haswell"] if "avx2" in flags else [])
    best, detected = ("", -1.0), "?"
    trials = {}
    for core in cands:
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OPENBLAS_VERBOSE="2")
        env.pop("OPENBLAS_CORETYPE", None)
        if core:
            env["OPENBLAS_CORETYPE"] = core
        o, e, rc, _ = run([roofline, "sgemm", "512,3072,768,1"], env)
        if rc:
            continue
        m = re.search(r"Core: (\S+)", e + o)
        if not core and m:
            detected = m.group(1)
        gf = json_lines(o)[-1]["sgemm_gflops"]
        trials[core or f"auto ({detected})"] = gf
        if gf > best[1] * 1.05:  # prefer auto-detection unless clearly slower
            best = (core, gf)
    return best[0], detected, trials


def measure_roofline(roofline, names, threads, core, weights):
    o, e, rc, _ = run([roofline, "bandwidth", str(threads), "1024", "20"])
    bw = json_lines(o)[0]
    # The same loop over each weights file, mapped as the runtime maps it: what decode can
    # stream its weights at (4 KB or 2 MB pages, as the kernel gives them), for the notes.
    file_gbs = {}
    for name in names:
        o, e, rc, _ = run([roofline, "filebw", str(threads), "10", weights[name]])
        if rc == 0:
            file_gbs[name] = json_lines(o)[0]["file_bandwidth_gbs"]
            log(f"  streaming {name}'s mapped weights file: {file_gbs[name]:.2f} GB/s")
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    if core:
        env["OPENBLAS_CORETYPE"] = core
    gemm = {}
    for name in names:
        shapes = [f"{m},{n},{k},{c}" for m, n, k, c in models.MODELS[name].gemms(512)]
        o, e, rc, _ = run([roofline, "sgemm"] + shapes, env)
        if rc:
            sys.exit(f"bench: roofline sgemm failed: {e}")
        lines = json_lines(o)
        gemm[name] = {"gflops": lines[-1]["sgemm_gflops"], "shapes": lines[:-1]}
        log(f"  OpenBLAS sgemm, {name} prefill-512 shapes: {lines[-1]['sgemm_gflops']:.1f} GFLOPS")
    log(f"  read bandwidth ({threads} threads, 1 GB, best of 20): {bw['bandwidth_gbs']:.2f} GB/s")
    return {"bandwidth_gbs": bw["bandwidth_gbs"], "passes": bw["passes"], "hugepages": bw.get("hugepages"),
            "gemm": gemm, "file_gbs": file_gbs}


def mxc_jobs(quick):
    r = (lambda full, q: q if quick else full)
    return ([("decode", 1, r(30, 5), 20), ("decode", 8, r(20, 3), 20)] +
            [("prefill", t, r(n, 1), s) for t, n, s in ((128, 10, 20), (512, 5, 30), (4096, 3, 60))])


def run_mxc(exe, name, lib, weights, threads, quick):
    env = dict(os.environ, MXC_THREADS=str(threads))
    res = {}
    for mode, n, reps, secs in mxc_jobs(quick):
        key = f"{mode}{n}"
        load = loadavg()
        o, e, rc, _ = run([exe, lib, name, weights, mode, str(n), str(reps), str(secs)], env)
        if rc:
            res[key] = {"error": e.strip()}
            log(f"  {name} {key}: FAILED {e.strip()}")
            continue
        r = json_lines(o)[0]
        r["load"] = load
        r["note"] = e.strip()
        res[key] = r
        log(f"  {name} {key}: median {r['median_ms']:.2f} ms, min {r['min_ms']:.2f} ms "
            f"({r['reps']} reps, {r['threads']} threads, load {load})")
    return res


def torch_env(threads, core):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), OMP_WAIT_POLICY="PASSIVE", TORCH_THREADS=str(threads))
    if core:
        env["OPENBLAS_CORETYPE"] = core
    return env


def check_logits(exe, name, lib, weights, out, threads, python, core):
    """Same tokens through both: forward of L, then S steps; max |difference| of logits."""
    cfg = models.MODELS[name]
    L, S = 64, 8
    tok = os.path.join(out, f"{name}.check_tokens.i32")
    np.random.default_rng(7).integers(0, cfg.vocab_size, L + S).astype(np.int32).tofile(tok)
    a_path, b_path = os.path.join(out, f"{name}.mxc.f32"), os.path.join(out, f"{name}.torch.f32")
    o, e, rc, _ = run([exe, lib, name, weights, "dump", tok, str(L), str(S), a_path],
                      dict(os.environ, MXC_THREADS=str(threads)))
    if rc:
        return {"error": "mxc: " + e.strip()}
    o, e, rc, _ = run([python, os.path.join(HERE, "torch_ref.py"), name, weights,
                       f"dump:{tok}:{L}:{S}:{b_path}"], torch_env(threads, core))
    if rc:
        return {"error": "torch: " + e.strip()[-1000:]}
    a = np.fromfile(a_path, dtype=np.float32).reshape(L + S, cfg.vocab)
    b = np.fromfile(b_path, dtype=np.float32).reshape(L + S, cfg.vocab)
    d = np.abs(a - b)
    r = {"forward_max_abs_diff": float(d[:L].max()), "step_max_abs_diff": float(d[L:].max()),
         "max_abs_logit": float(np.abs(b).max()), "argmax_agree": float((a.argmax(1) == b.argmax(1)).mean()),
         "finite": bool(np.isfinite(a).all()), "L": L, "S": S, "tol": CHECK_TOL}
    r["ok"] = r["finite"] and max(r["forward_max_abs_diff"], r["step_max_abs_diff"]) <= CHECK_TOL
    log(f"  {name}: max |mxc - torch| forward {r['forward_max_abs_diff']:.2e}, step "
        f"{r['step_max_abs_diff']:.2e} (max |logit| {r['max_abs_logit']:.2f}) -> "
        f"{'ok' if r['ok'] else 'MISMATCH'}")
    return r


def torch_jobs(quick, t4096):
    r = (lambda full, q: q if quick else full)
    jobs = [f"decode:1:{r(15, 3)}:20", f"decode:8:{r(8, 2)}:20",
            f"prefill:128:{r(3, 1)}:20", f"prefill:512:{r(2, 1)}:30"]
    if t4096 == "measure":
        jobs.append("prefill:4096:1:0")  # once (minutes with the python time loop)
    return jobs


def run_torch(python, name, weights, threads, core, quick, t4096):
    jobs = torch_jobs(quick, t4096)
    o, e, rc, secs = run([python, os.path.join(HERE, "torch_ref.py"), name, weights] + jobs,
                         torch_env(threads, core))
    res = {}
    for r in json_lines(o):
        key = f"{r['mode']}{r['batch'] if r['mode'] == 'decode' else r['len']}"
        res[key] = r
        log(f"  torch {name} {key}: median {r['median_ms']:.1f} ms ({r['reps']} reps)")
    if rc:
        res["error"] = e.strip()[-1500:]
        log(f"  torch {name}: FAILED\n{e[-1500:]}")
    if "prefill4096" not in res and "prefill512" in res:
        r = dict(res["prefill512"])
        r.update(median_ms=8 * r["median_ms"], min_ms=8 * r["min_ms"], len=4096, extrapolated=True)
        res["prefill4096"] = r
    log(f"  torch {name}: {secs:.0f} s in all")
    return res


LLAMA_TESTS = (["-p", "128,512", "-n", "64", "-r", "2"], ["-p", "4096", "-n", "0", "-r", "1"])
LLAMA_NARROW_TESTS = (["-p", "512", "-n", "64", "-r", "2"],)  # the narrow rows: prefill 512, decode


def run_llamacpp(bench_bin, gguf, threads, tests=LLAMA_TESTS):
    """llama-bench: prompt processing (prefill) and generation (decode, batch 1), by default of
    128/512/4096 tokens and 64 generated (the narrow rows pass LLAMA_NARROW_TESTS). ggml's
    threads spin between graphs: its best setting on an idle machine, its worst on a loaded one.
    So every test runs with OpenMP's default wait policy and with OMP_WAIT_POLICY=PASSIVE, and
    keeps the faster."""
    def bench(args, policy):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        cmd = [bench_bin, "-m", gguf, "-t", str(threads)] + args + ["-o", "json"]
        o, e, rc, secs = run(cmd, env)
        if rc:
            raise RuntimeError(e.strip()[-1500:])
        return json.loads(o), " ".join(cmd)

    res, cmds = {}, []
    try:
        for policy in ("default", "PASSIVE"):
            for args in tests:
                out, cmd = bench(args, policy)
                if policy == "default":
                    cmds.append(cmd)
                for r in out:
                    n_p, n_g = r.get("n_prompt", 0), r.get("n_gen", 0)
                    key, n = (f"prefill{n_p}", n_p) if n_p and not n_g else ("decode1", 1)
                    if key not in res or r["avg_ts"] > res[key]["tokens_per_s"]:
                        res[key] = {"tokens_per_s": r["avg_ts"], "median_ms": 1e3 * n / r["avg_ts"],
                                    "omp_wait_policy": policy}
                    res["build"] = f"{r.get('build_commit', '?')} ({r.get('build_number', '?')})"
                    res["type"] = r.get("model_type", "")
    except RuntimeError as err:
        log(f"  llama.cpp: FAILED\n{err}")
        return {"error": str(err)}
    res["cmd"] = " ; ".join(cmds)
    log("  llama.cpp: " + ", ".join(f"{k} {v['median_ms']:.1f} ms ({v['omp_wait_policy']})"
                                    for k, v in res.items() if k.startswith(("pre", "dec"))))
    return res


# ---- the table --------------------------------------------------------------------------

def fmt_ms(x):
    return "—" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}")


def tps(n, ms):
    return None if not ms else n * 1e3 / ms


def fmt_tps(x):
    return "—" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.1f}")


def ratio(x, limit):
    """x with 2 decimals, or 3 when 2 would print the limit itself for a value on either side."""
    return f"{x:.3f}" if f"{x:.2f}" == f"{limit:.2f}" and x != limit else f"{x:.2f}"


def verdict(ok):
    return "ok" if ok else "**miss**"


def model_rows(name, R):
    """Rows of one model's table and the target summary lines."""
    cfg = models.MODELS[name]
    mx, th, ll = R["mxc"].get(name, {}), R["torch"].get(name, {}), R["llamacpp"] if name == "m130" else {}
    bw = R["roofline"]["bandwidth_gbs"] * 1e9
    gf = R["roofline"]["gemm"][name]["gflops"] * 1e9
    fpt = cfg.flops_per_token()
    med = lambda d, k: d.get(k, {}).get("median_ms")
    rows, targets = [], []

    def vs_torch(k, mxc_ms):
        t = med(th, k)
        if t is None or mxc_ms is None:
            return "—", "—"
        mark = " (extrap.)" if th[k].get("extrapolated") else ""
        sp = t / mxc_ms
        targets.append((f"{name} {k}: faster than PyTorch", sp > 1, f"{sp:.2f}×"))
        return fmt_ms(t) + mark, f"{sp:.2f}×"

    def llama(k, n=1):
        v = ll.get(k, {}).get("median_ms") if isinstance(ll, dict) else None
        return "—" if v is None else f"{fmt_ms(v)} ({fmt_tps(tps(n, v))} tok/s)"

    # decode
    d1, d8 = med(mx, "decode1"), med(mx, "decode8")
    roof1, roof8 = models.decode_bytes(cfg, 1) / bw * 1e3, models.decode_bytes(cfg, 8) / bw * 1e3
    dt, bt = cfg.decode_target, cfg.batch8_target  # per model: issue 5, 13 or 14
    if d1:
        r = d1 / roof1
        targets.append((f"{name} decode b1 ≤ {dt:g}× roofline", r <= dt, f"{ratio(r, dt)}×"))
    t1, s1 = vs_torch("decode1", d1)
    rows.append(("decode, batch 1: ms/token", fmt_ms(d1), f"{fmt_ms(mx.get('decode1', {}).get('min_ms'))}",
                 fmt_ms(roof1), f"{ratio(d1 / roof1, dt)}× roofline (≤ {dt:g})" if d1 else "—", t1, s1,
                 llama("decode1")))
    b8 = (8 / d8) / (1 / d1) if d1 and d8 else None
    if b8 and bt:
        targets.append((f"{name} decode b8 ≥ {bt:g}× b1 tokens/s", b8 >= bt, f"{ratio(b8, bt)}×"))
    t8, s8 = vs_torch("decode8", d8)
    rows.append(("decode, batch 8: ms/step (tokens/s)",
                 f"{fmt_ms(d8)} ({fmt_tps(tps(8, d8))})", fmt_ms(mx.get("decode8", {}).get("min_ms")),
                 f"{fmt_ms(roof8)} ({fmt_tps(tps(8, roof8))})",
                 (f"{ratio(b8, bt)}× batch-1 tokens/s (≥ {bt:g})" if bt else
                  f"{b8:.2f}× batch-1 tokens/s (roofline {roof1 * 8 / roof8:.1f}×)") if b8 else "—",
                 t8, s8, "—"))
    # prefill
    for T in PREFILLS:
        k = f"prefill{T}"
        p = med(mx, k)
        roof = fpt * T / gf * 1e3
        note = "—"
        if p and T == 512:
            eff = fpt * T / (p / 1e3) / gf
            note = f"{eff * 100:.0f}% of OpenBLAS rate (≥ 60%)"
            targets.append((f"{name} prefill 512 ≥ 60% of OpenBLAS sgemm rate", eff >= 0.6, f"{eff * 100:.0f}%"))
        elif p and T == 4096 and med(mx, "prefill512"):
            c = p / med(mx, "prefill512")
            cmin = mx[k]["min_ms"] / mx["prefill512"]["min_ms"]
            note = f"{ratio(c, 8.5)}× prefill 512 (≤ 8.5); min/min {cmin:.2f}×"
            targets.append((f"{name} prefill 4096 ≤ 8.5× prefill 512", c <= 8.5, f"{ratio(c, 8.5)}×"))
        elif p:
            note = f"{roof / p * 100:.0f}% of OpenBLAS rate"
        tt, st_ = vs_torch(k, p)
        rows.append((f"prefill {T}: ms (tokens/s)", f"{fmt_ms(p)} ({fmt_tps(tps(T, p))})",
                     fmt_ms(mx.get(k, {}).get("min_ms")), f"{fmt_ms(roof)} ({fmt_tps(tps(T, roof))})",
                     note, tt, st_, llama(k, T)))
    # llama.cpp (M130 only): the issue asks mxc to beat it on decode and prefill
    for k in ("decode1", "prefill512"):
        v = ll.get(k, {}).get("median_ms") if isinstance(ll, dict) else None
        if v and med(mx, k):
            sp = v / med(mx, k)
            targets.append((f"{name} {k}: faster than llama.cpp", sp > 1, f"{sp:.2f}×"))
    # memory
    wbytes = os.path.getsize(R["weights"][name])
    worst = None
    for k, r in mx.items():
        if "maxrss_kb" not in r:
            continue
        budget = wbytes + r["batch"] * 4 * cfg.state_floats() + 64 * 2 ** 20
        used = r["maxrss_kb"] * 1024 - r["logits_bytes"]
        if worst is None or used / budget > worst[0]:
            worst = (used / budget, used, budget, k)
    if worst:
        targets.append((f"{name} peak RSS ≤ weights + states + 64 MB", worst[0] <= 1, f"{worst[0]:.2f}"))
        trss = max((r.get("maxrss_kb", 0) for r in th.values() if isinstance(r, dict)), default=0)
        rows.append(("peak RSS − caller's logits buffer: MB", f"{worst[1] / MB:.0f} ({worst[3]})", "—",
                     f"{worst[2] / MB:.0f}", f"{worst[0]:.2f} of weights + states + 64 MB (≤ 1)",
                     f"{trss * 1024 / MB:.0f} (whole run)" if trss else "—", "—", "—"))
    c = R["compile"].get(name, {})
    if c.get("ok"):
        targets.append((f"{name} compile < 5 s", c["seconds"] < 5, f"{c['seconds']:.1f} s"))
        rows.append(("compile (`mxc build`): s, wall (cpu)", f"{c['seconds']:.1f} ({c['cpu_seconds']:.1f})",
                     "—", "—", "target < 5 s", "—", "—", "—"))
    return rows, targets


def render(R):
    m = R["machine"]
    lines = [f"Run of {m['date']} on {m.get('Model name', '?')}, {m['cores']} cores "
             f"({m.get('Hypervisor vendor', 'bare metal')} guest, {m['simd']}); "
             f"mxc {R['git']}; {R['threads']} threads everywhere.",
             "",
             f"- Load: at start `{m['uptime_start']}`; at end `{R['uptime_end']}`. "
             "Other work on the machine inflates every time below (both sides alike only roughly).",
             f"- Roofline: read bandwidth {R['roofline']['bandwidth_gbs']:.2f} GB/s "
             f"({R['threads']} threads, 1 GB buffer, huge pages {({True: 'yes', False: 'no'}).get(R['roofline'].get('hugepages'), '?')}, "
             f"best of {R['roofline'].get('passes', 10)}); OpenBLAS {R['openblas']['core_used']} "
             f"(auto-detected core: {R['openblas']['detected']}; trials on 512×768·768×3072: "
             + ", ".join(f"{k or 'auto'} {v:.0f}" for k, v in R['openblas']['trials'].items()) + " GFLOPS); "
             + "; ".join(f"sgemm on {n}'s prefill-512 GEMMs {g['gflops']:.1f} GFLOPS"
                         for n, g in R["roofline"]["gemm"].items()) + "."
             + ("".join(f" The same reading loop over {n}'s weights file mapped as the runtime maps it: "
                        f"{g:.2f} GB/s." for n, g in R["roofline"].get("file_gbs", {}).items())),
             f"- PyTorch {R.get('torch_version', '?')} (`{R['python']}`), OMP_WAIT_POLICY=PASSIVE, "
             f"OMP/OpenBLAS threads {R['threads']}, torch.inference_mode()"
             + (f", OPENBLAS_CORETYPE={R['openblas']['core_used']}" if R['openblas']['core_used'] else "") + ".",
             f"- Threads of the compiled models: " + ", ".join(
                 f"{n}: {next((r['threads'] for r in mx.values() if 'threads' in r), '?')} "
                 f"(API: {next((r['threads_api'] for r in mx.values() if 'threads_api' in r), '?')})"
                 for n, mx in R["mxc"].items()) + ".",
             ]
    for name, chk in R["check"].items():
        if "error" in chk:
            lines.append(f"- Logit check {name}: **error** {chk['error'][:300]}")
        else:
            lines.append(f"- Logit check {name} (forward of {chk['L']} tokens, then {chk['S']} steps): "
                         f"max |mxc − PyTorch| {chk['forward_max_abs_diff']:.1e} (forward), "
                         f"{chk['step_max_abs_diff']:.1e} (step), max |logit| {chk['max_abs_logit']:.2f}, "
                         f"argmax agreement {chk['argmax_agree'] * 100:.0f}% → "
                         f"{'ok' if chk['ok'] else '**MISMATCH**'} (tolerance {chk['tol']:g}).")
    ll = R["llamacpp"]
    if ll.get("decode1") or ll.get("error"):
        lines.append(f"- llama.cpp: `{ll.get('cmd', '')}` (llama-bench reports the mean of its "
                     "repetitions), each with OpenMP's default wait policy and with OMP_WAIT_POLICY=PASSIVE, "
                     "the faster kept ("
                     + ", ".join(f"{k}: {v.get('omp_wait_policy', '?')}" for k, v in ll.items() if k.startswith(("pre", "dec")))
                     + "); its prefill computes the last position's logits only (mxc and PyTorch: every "
                     "position's) — " + (f"build {ll.get('build')}, {ll.get('type')}" if not ll.get("error")
                                         else f"**error** {ll['error'][:200]}"))
    else:
        lines.append("- llama.cpp: not run (no llama-bench / GGUF given; see below).")
    all_targets = []
    for name in R["models"]:
        cfg = models.MODELS[name]
        rows, targets = model_rows(name, R)
        all_targets += targets
        lines += ["", f"### {getattr(cfg, 'title', name.upper())} ({models.n_params(cfg) / 1e6:.1f} M parameters, "
                      f"{os.path.getsize(R['weights'][name]) / MB:.0f} MB F32; decode reads "
                      f"{models.decode_bytes(cfg) / MB:.0f} MB/token incl. state; "
                      f"{cfg.flops_per_token() / 1e6:.0f} MFLOP/token)", "",
                  "| measurement | mxc median | mxc min | roofline | mxc vs roofline / target | "
                  "PyTorch median | mxc speed-up vs PyTorch | llama.cpp |",
                  "|---|---:|---:|---:|---|---:|---:|---:|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "### Targets (issues 5, 13, 14)", "", "| target | measured | |", "|---|---:|---|"]
    lines += [f"| {t} | {v} | {verdict(ok)} |" for t, ok, v in all_targets]
    misses = sum(1 for _, ok, _ in all_targets if not ok)
    lines += ["", f"{len(all_targets) - misses} of {len(all_targets)} targets met."]
    lines += narrow.render(R)
    return "\n".join(lines) + "\n"


def write_chart(R, out, docs):
    """The narrow-weights chart (bench/narrow.py) into OUT and beside the docs file."""
    if not R.get("narrow", {}).get("types"):
        return
    text = narrow.svg(R)
    dirs = [os.path.abspath(out)] + ([os.path.dirname(os.path.abspath(docs))] if docs else [])
    for d in sorted(set(dirs), key=dirs.index):
        if os.path.isdir(d):
            with open(os.path.join(d, "performance-narrow.svg"), "w") as f:
                f.write(text)
            log(f"== wrote {os.path.join(d, 'performance-narrow.svg')}")


def update_docs(path, block, cmdline):
    text = open(path).read() if os.path.exists(path) else (
        "# Performance\n\n" + BEGIN + "\n" + END + "\n")
    if BEGIN not in text or END not in text:
        text += "\n" + BEGIN + "\n" + END + "\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = (f"{BEGIN}\n<!-- written by bench/bench.py; do not edit by hand -->\n\n"
            f"Produced by `{cmdline}`.\n\n{block}{END}")
    with open(path, "w") as f:
        f.write(head + body + tail)


# ---- stateful serving rows (issue 16): `bench.py --serving`, on their own ------------------

def serving_jobs(quick):
    r = (lambda full, q: q if quick else full)
    return [("prefill", 512, r(5, 2)), ("prefill_last", 512, r(5, 2)), ("saveload", 512, r(20, 3)),
            ("spec", r(200, 64), r(3, 1))]


def run_serving(exe, name, lib, weights, threads, quick):
    env = dict(os.environ, MXC_THREADS=str(threads))
    res = {}
    for mode, n, reps in serving_jobs(quick):
        load = loadavg()
        o, e, rc, _ = run([exe, lib, name, weights, mode, str(n), str(reps), "120"], env)
        if rc:
            sys.exit(f"bench: {name} {mode}: {e.strip()}")
        r = {}
        for line in json_lines(o):
            r.update(line)
        r["load"] = load
        res[mode] = r
        log(f"  {name} {mode} {n}: {json.dumps(r)}")
    return res


def render_serving(name, R, threads, cmdline, machine_name):
    S = R
    pf, pl, sl, sp = S["prefill"], S["prefill_last"], S["saveload"], S["spec"]
    lines = [f"Measured {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} "
             f"on {machine_name}, {threads} threads, model `{name}`, with `{cmdline}` "
             f"(median of the reps; load average at the start of each row in the last column).", "",
             "| row | mxc | compared with | ratio | load |", "| --- | --- | --- | --- | --- |"]
    lines.append(f"| prefill 512, logits of the last position only (`forward_last`) | {pl['median_ms']:.1f} ms "
                 f"| all positions (`forward`): {pf['median_ms']:.1f} ms | {pl['median_ms'] / pf['median_ms']:.2f} "
                 f"| {pl['load']} |")
    lines.append(f"| save + load of the state after 512 tokens ({sl['state_bytes'] / 1e6:.2f} MB) "
                 f"| {sl['median_ms']:.3f} ms | re-running the 512-token prompt (`prefill`): {sl['rerun_ms']:.1f} ms "
                 f"| {sl['rerun_ms'] / sl['median_ms']:.0f}x faster | {sl['load']} |")
    lines.append(f"| speculative-style greedy loop, 4-token rounds with 4 snapshots, "
                 f"{sp['tokens_per_round']:.2f} tokens accepted per round ({sp['len']} tokens) | {sp['spec_ms']:.2f} ms/token "
                 f"| plain step loop: {sp['median_ms']:.2f} ms/token; same tokens: "
                 f"{'yes' if sp['same_tokens'] else 'NO'} | {sp['spec_ms'] / sp['median_ms']:.2f} | {sp['load']} |")
    lines.append(f"| the same rounds without snapshots: a state copy before each, one 4-token `forward`, "
                 f"on a rejection the copy back and `prefill` of the accepted tokens | {sp['rerun_ms']:.2f} ms/token "
                 f"| plain step loop: {sp['median_ms']:.2f} ms/token; same tokens: "
                 f"{'yes' if sp['rerun_same_tokens'] else 'NO'} | {sp['rerun_ms'] / sp['median_ms']:.2f} | {sp['load']} |")
    return "\n".join(lines) + "\n"


def update_block(path, begin, end, block):
    with open(path) as f:
        text = f.read()
    if begin not in text or end not in text:
        sys.exit(f"bench: {path} has no {begin} ... {end} markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(head + begin + "\n" + block + end + tail)


def serving_main(a, names):
    name = names[0]
    os.makedirs(a.out, exist_ok=True)
    cmdline = os.environ.get("MXC_BENCH_COMMAND") or " ".join([a.python, "bench/bench.py"] + sys.argv[1:])
    info, _ = machine()
    exe = os.path.join(a.out, "bench_model")
    o, e, rc, _ = run([a.cc, "-O2", "-std=gnu11", "-Wall", "-o", exe, os.path.join(HERE, "bench_model.c"), "-ldl"])
    if rc:
        sys.exit(f"bench: cannot build bench_model: {e}")
    o, e, rc, _ = run([sys.executable, os.path.join(HERE, "gen_weights.py"), a.out, name])
    if rc:
        sys.exit(f"bench: gen_weights.py failed:\n{e}")
    comp = compile_models(a.mxc, a.out, [name])[name]
    if not comp["ok"]:
        sys.exit("bench: mxc build failed")
    R = run_serving(exe, name, comp["lib"], os.path.join(a.out, name + ".safetensors"), a.threads, a.quick)
    with open(os.path.join(a.out, "serving.json"), "w") as f:
        json.dump(R, f, indent=1)
    block = render_serving(name, R, a.threads, cmdline, info.get("Model name", "?"))
    print(block)
    if a.docs:
        update_block(a.docs, SERVING_BEGIN, SERVING_END, block)
        log(f"== wrote the serving block of {a.docs}")


# ---- the xLSTM-7B shape (issue 14): `bench.py --models xl7b`, on its own ---------------------

XL7B_TYPES = ("bf16", "q8")
XL7B_FILE_BYTES = {"bf16": 13.8e9, "q8": 7.8e9}  # for the free-space check before making them


def run_rss(cmd, env=None):
    """run(), plus the peak RSS of that child (os.wait4), in bytes."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        secs = time.perf_counter() - t
        fo.seek(0)
        fe.seek(0)
        return fo.read(), fe.read(), p.returncode, secs, ru.ru_maxrss * 1024


def mem_total():
    with open("/proc/meminfo") as f:
        return int(re.search(r"^MemTotal:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def xl7b_weights(a, cfg, R):
    """The BF16 file made once by gen_weights.py (straight to BF16, one F32 tensor in memory at a
    time), the q8 one by `mxc convert` from it; both kept in --xl7b-dir between runs."""
    d = a.xl7b_dir
    os.makedirs(d, exist_ok=True)
    files = {"bf16": gen_weights.weights_path(d, cfg), "q8": os.path.join(d, "xl7b.q8.safetensors")}
    fresh_q8 = (os.path.exists(files["q8"]) and gen_weights.up_to_date(files["bf16"])
                and os.path.getmtime(files["q8"]) >= os.path.getmtime(files["bf16"]))
    need = ((0 if gen_weights.up_to_date(files["bf16"]) else XL7B_FILE_BYTES["bf16"])
            + (0 if fresh_q8 else XL7B_FILE_BYTES["q8"]))
    free = shutil.disk_usage(d).free
    log(f"  {d}: {free / 1e9:.1f} GB free, {need / 1e9:.1f} GB to write")
    if need > free:
        sys.exit(f"bench: {d} has {free / 1e9:.1f} GB free; the xl7b weights need {need / 1e9:.1f} GB "
                 "(give another directory with --xl7b-dir or $MXC_BENCH_7B_DIR)")
    o, e, rc, secs, rss = run_rss([sys.executable, os.path.join(HERE, "gen_weights.py"), d, "xl7b"])
    if rc:
        sys.exit(f"bench: gen_weights.py failed:\n{e}")
    R["gen"] = {"seconds": secs, "maxrss": rss, "out": o.strip()}
    log(f"  {o.strip()} ({secs:.0f} s, peak RSS {rss / 1e9:.2f} GB)")
    if not fresh_q8:
        cmd = [a.mxc, "convert", os.path.join(HERE, "xl7b.mx"), files["bf16"], "--weight-type", "q8",
               "-o", files["q8"]]
        o, e, rc, secs, rss = run_rss(cmd)
        if rc:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{e.strip()[-2000:]}")
        R["convert"] = {"seconds": secs, "maxrss": rss, "cmd": " ".join(cmd)}
        log(f"  mxc convert to q8: {secs:.0f} s, peak RSS {rss / 1e9:.2f} GB")
    return files


def xl7b_measure(a, cfg, R, exe, files):
    env = dict(os.environ, MXC_THREADS=str(a.threads))
    r = (lambda full, q: q if a.quick else full)
    L, S = 16, 4
    tok = os.path.join(a.out, "xl7b.check_tokens.i32")
    np.random.default_rng(7).integers(0, cfg.vocab_size, L + S).astype(np.int32).tofile(tok)
    dumps = {}
    for t in XL7B_TYPES:
        lib = os.path.join(a.out, f"libxl7b_{t}.so")
        cmd = [a.mxc, "build", os.path.join(HERE, "xl7b.mx"), "--weight-type", t, "-o", lib]
        o, e, rc, secs, rss = run_rss(cmd)
        if rc:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{e.strip()[-2000:]}")
        T = R["types"][t] = {"file": files[t], "file_bytes": os.path.getsize(files[t]),
                             "compile_seconds": secs, "decode_bytes": models.decode_bytes_of_file(cfg, files[t])}
        log(f"  mxc build --weight-type {t}: {secs:.1f} s")
        o, e, rc, _ = run([exe["roofline"], "filebw", str(a.threads), r("3", "1"), files[t]])
        if rc == 0:
            T["file_gbs"] = json_lines(o)[0]["file_bandwidth_gbs"]
            log(f"  streaming the {t} file as mapped: {T['file_gbs']:.2f} GB/s")
        out = os.path.join(a.out, f"xl7b.{t}.f32")
        o, e, rc, _ = run([exe["bench_model"], lib, "xl7b", files[t], "dump", tok, str(L), str(S), out], env)
        if rc:
            T["error"] = e.strip()
            log(f"  xl7b {t} dump: FAILED {e.strip()}")
            continue
        T["dump"] = json_lines(o)[0]
        dumps[t] = np.fromfile(out, dtype=np.float32).reshape(L + S, -1)[:, :cfg.vocab_size]
        for mode, n, reps, secs in (("decode", 1, r(10, 3), 300), ("prefill", 128, 1, 900)):
            load = loadavg()
            o, e, rc, _ = run([exe["bench_model"], lib, "xl7b", files[t], mode, str(n), str(reps), str(secs)], env)
            if rc:
                T[f"{mode}{n}"] = {"error": e.strip()}
                log(f"  xl7b {t} {mode}{n}: FAILED {e.strip()}")
                continue
            x = T[f"{mode}{n}"] = dict(json_lines(o)[0], load=load)
            log(f"  xl7b {t} {mode}{n}: median {x['median_ms']:.0f} ms, min {x['min_ms']:.0f} ms "
                f"({x['reps']} reps; open {x['open_ms']:.0f} ms; peak RSS {x['maxrss_kb'] / 1e6:.2f} GB; load {load})")
    if len(dumps) == 2:
        b, q = dumps["bf16"], dumps["q8"]
        R["check"] = {"finite": bool(np.isfinite(b).all() and np.isfinite(q).all()),
                      "max_abs_diff": float(np.abs(b - q).max()), "max_abs_logit": float(np.abs(b).max()),
                      "argmax_agree": float((b.argmax(1) == q.argmax(1)).mean()), "L": L, "S": S}
        log(f"  bf16 vs q8 logits: {R['check']}")


def xl7b_main(a):
    cfg = models.MODELS["xl7b"]
    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    cmdline = os.environ.get("MXC_BENCH_COMMAND") or " ".join([a.python, "bench/bench.py"] + sys.argv[1:])
    R = {"kind": "xl7b", "command": cmdline, "threads": a.threads, "dir": a.xl7b_dir, "types": {},
         "mem_total": mem_total(), "state_bytes": 4 * cfg.state_floats()}
    log("== xl7b: machine")
    R["machine"], flags = machine()
    o, _, _, _ = run(["git", "-C", os.path.dirname(HERE), "describe", "--always", "--dirty"])
    R["git"] = o.strip() or "?"
    exe = build_helpers(a.out, a.cc)
    log("== xl7b: weights")
    files = xl7b_weights(a, cfg, R)
    log("== xl7b: roofline")
    core, detected, trials = pick_openblas_core(exe["roofline"], flags, a.threads)
    o, e, rc, _ = run([exe["roofline"], "bandwidth", str(a.threads), "1024", "20"])
    R["bandwidth_gbs"] = json_lines(o)[0]["bandwidth_gbs"]
    benv = dict(os.environ, OPENBLAS_NUM_THREADS=str(a.threads))
    if core:
        benv["OPENBLAS_CORETYPE"] = core
    o, e, rc, _ = run([exe["roofline"], "sgemm"] + [f"{m},{n},{k},{c}" for m, n, k, c in cfg.gemms(128)], benv)
    R["sgemm_gflops"] = json_lines(o)[-1]["sgemm_gflops"] if rc == 0 else None
    R["openblas_core"] = core or f"auto ({detected})"
    log(f"  read bandwidth {R['bandwidth_gbs']:.2f} GB/s; OpenBLAS sgemm on the prefill-128 shapes "
        f"{R['sgemm_gflops']} GFLOPS ({R['openblas_core']})")
    log("== xl7b: mxc")
    xl7b_measure(a, cfg, R, exe, files)
    R["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    R["seconds"] = time.time() - t_start
    with open(os.path.join(a.out, "xl7b.json"), "w") as f:
        json.dump(R, f, indent=1)
    block = render_xl7b(R)
    with open(os.path.join(a.out, "xl7b.md"), "w") as f:
        f.write(block)
    print(block)
    if a.docs:
        update_block(a.docs, XL7B_BEGIN, XL7B_END, block)
        log(f"== wrote the xl7b block of {a.docs}, {a.out}/xl7b.md, {a.out}/xl7b.json")


def render_xl7b(R):
    cfg = models.MODELS["xl7b"]
    m, bw = R["machine"], R["bandwidth_gbs"] * 1e9
    state, mem = R["state_bytes"], R["mem_total"]
    T = {t: R["types"].get(t, {}) for t in XL7B_TYPES}
    get = lambda t, k, f: T[t].get(k, {}).get(f) if isinstance(T[t].get(k), dict) else None
    targets = []
    lines = [f"Run of {m['date']} on {m.get('Model name', '?')}, {m['cores']} cores, "
             f"{mem / 2 ** 30:.1f} GiB of memory; mxc {R['git']}; {R['threads']} threads. Load: at start "
             f"`{m['uptime_start']}`; at end `{R['uptime_end']}`.", "",
             f"- Shape: xLSTM-7B ({models.n_params(cfg) / 1e9:.3f} B parameters: embedding 4096, 32 blocks, "
             f"8 heads, qk {cfg.qk} / v {cfg.v}, FFN {cfg.ffn}, vocabulary 50304), random weights in `{R['dir']}`; "
             f"state {state / 2 ** 20:.0f} MiB a sequence.",
             f"- Roofline: read bandwidth {R['bandwidth_gbs']:.2f} GB/s (anonymous 1 GB buffer, best of 20); "
             f"OpenBLAS sgemm on the prefill-128 GEMM shapes {R['sgemm_gflops']} GFLOPS ({R['openblas_core']}).",
             ]
    if "gen" in R and "up to date" in R["gen"]["out"]:
        lines.append(f"- Weights: made by an earlier run and kept ({R['gen']['out']}).")
    elif "gen" in R:
        lines.append(f"- Weights: `gen_weights.py` {R['gen']['seconds']:.0f} s (peak RSS {R['gen']['maxrss'] / 1e9:.2f} GB): "
                     f"{R['gen']['out']}")
    if "convert" in R:
        lines.append(f"- q8 file: `{R['convert']['cmd']}`: {R['convert']['seconds']:.0f} s, peak RSS "
                     f"{R['convert']['maxrss'] / 1e9:.2f} GB.")
    c = R.get("check")
    if c:
        lines.append(f"- Logits, bf16 build vs q8 build (forward of {c['L']} tokens, then {c['S']} steps): "
                     f"{'finite' if c['finite'] else '**not finite**'}, max |difference| {c['max_abs_diff']:.2e} "
                     f"(max |logit| {c['max_abs_logit']:.2f}, soft cap 30), argmax agreement {c['argmax_agree'] * 100:.0f}%.")
    lines += ["", "| measurement | " + " | ".join(XL7B_TYPES) + " |", "|---|" + "---:|" * len(XL7B_TYPES)]

    def row(label, f):
        lines.append(f"| {label} | " + " | ".join(f(t) for t in XL7B_TYPES) + " |")

    row("weights file: GB", lambda t: f"{T[t]['file_bytes'] / 1e9:.2f}" if T[t].get("file_bytes") else "—")
    row("compile (`mxc build --weight-type T`): s", lambda t: f"{T[t]['compile_seconds']:.1f}" if T[t].get("compile_seconds") else "—")
    row("open (`P_open`: map, validate, bind): ms", lambda t: fmt_ms(get(t, "decode1", "open_ms")))
    row("decode bytes/token (weights, 1 embedding row, state in + out): GB",
        lambda t: f"{T[t]['decode_bytes'] / 1e9:.2f}" if T[t].get("decode_bytes") else "—")

    def decode(t):
        d = get(t, "decode1", "median_ms")
        if d is None:
            return "—"
        roof = T[t]["decode_bytes"] / bw * 1e3
        targets.append((f"xl7b {t} decode b1 ≤ 1.3× roofline", d / roof <= 1.3, f"{ratio(d / roof, 1.3)}×"))
        return f"{fmt_ms(d)} (min {fmt_ms(get(t, 'decode1', 'min_ms'))}; {ratio(d / roof, 1.3)}× of {fmt_ms(roof)})"

    row("decode, batch 1: ms/token (× roofline, ≤ 1.3)", decode)
    row("the weights file streamed as mapped (`roofline filebw`): GB/s, and its decode time: ms",
        lambda t: f"{T[t]['file_gbs']:.2f}, {fmt_ms(T[t]['decode_bytes'] / (T[t]['file_gbs'] * 1e9) * 1e3)}"
        if T[t].get("file_gbs") else "—")

    def prefill(t):
        p = get(t, "prefill128", "median_ms")
        if p is None:
            return "**failed**" if T[t].get("prefill128") else "—"
        targets.append((f"xl7b {t} prefill 128 runs", True, f"{fmt_ms(p)} ms"))
        eff = (f"; {cfg.flops_per_token() * 128 / (p / 1e3) / (R['sgemm_gflops'] * 1e9) * 100:.0f}% of the sgemm rate"
               if R.get("sgemm_gflops") else "")
        return f"{fmt_ms(p)} ({fmt_tps(tps(128, p))} tok/s{eff})"

    row("prefill 128: ms (tokens/s; share of the sgemm rate)", prefill)

    def rss(t):
        worst = None
        for k in ("decode1", "prefill128"):
            x = T[t].get(k, {})
            if "maxrss_kb" not in x:
                continue
            budget = T[t]["file_bytes"] + x["batch"] * state + 64 * 2 ** 20
            used = x["maxrss_kb"] * 1024 - x["logits_bytes"]
            if worst is None or used / budget > worst[0]:
                worst = (used / budget, used, budget, k)
        if not worst:
            return "—"
        targets.append((f"xl7b {t} peak RSS ≤ file + state + 64 MB", worst[0] <= 1, f"{worst[0]:.2f}"))
        return f"{worst[1] / 1e9:.2f} of {worst[2] / 1e9:.2f} ({worst[3]}; {worst[0]:.2f})"

    row("peak RSS − logits buffer: GB, of file + state + 64 MiB", rss)
    row(f"sequences whose states fit beside the weights in {mem / 2 ** 30:.1f} GiB (less 1 GiB for the system)",
        lambda t: f"{int((mem - 2 ** 30 - T[t]['file_bytes'] - 64 * 2 ** 20) // (state + 4 * cfg.vocab))}"
        if T[t].get("file_bytes") else "—")
    for t in XL7B_TYPES:
        if T[t].get("error"):
            lines.append(f"\n{t}: **error** {T[t]['error'][:300]}")
    lines += ["", "| target | measured | |", "|---|---:|---|"]
    lines += [f"| {t} | {v} | {verdict(ok)} |" for t, ok, v in targets]
    lines += ["", f"Whole run: {R['seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    top = os.path.dirname(HERE)
    ap.add_argument("--mxc", default=os.path.join(top, "mxc"))
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--docs", default=os.path.join(top, "docs", "performance.md"),
                    help="file whose results block is rewritten ('' = leave docs alone)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", default=models.DEFAULT,
                    help=f"comma-separated, of {', '.join(models.MODELS)} (default {models.DEFAULT}; "
                         "xl7b runs on its own, after the others: see --xl7b-dir)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--python", default=sys.executable, help="python with torch (for torch_ref.py)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--torch-4096", choices=("measure", "extrapolate"), default="measure",
                    help="PyTorch prefill 4096: one run, or 8 x prefill 512")
    ap.add_argument("--llamacpp-bench", default=os.environ.get("LLAMACPP_BENCH", "/work/llamacpp/build/bin/llama-bench"))
    ap.add_argument("--llamacpp-gguf", default=os.environ.get("LLAMACPP_GGUF", "/work/llamacpp/m130-f32.gguf"))
    ap.add_argument("--weight-types", default=narrow.DEFAULT_TYPES, type=narrow.parse_types,
                    help="narrow builds per model, 'MODEL:TYPE,...;...' ('' = none; default %(default)s)")
    ap.add_argument("--llamacpp-gguf-f16", default=os.environ.get("LLAMACPP_GGUF_F16", "/work/llamacpp/m130-f16.gguf"))
    ap.add_argument("--llamacpp-gguf-q8_0", default=os.environ.get("LLAMACPP_GGUF_Q8_0", "/work/llamacpp/m130-q8_0.gguf"))
    ap.add_argument("--quick", action="store_true", help="few repetitions (to try the script)")
    ap.add_argument("--serving", action="store_true",
                    help="only the stateful-serving rows (first of --models; docs block 'serving results')")
    ap.add_argument("--xl7b-dir", default=os.environ.get("MXC_BENCH_7B_DIR"),
                    help="where the xl7b weights are made once and kept (~22 GB; default OUT/xl7b, "
                         "or $MXC_BENCH_7B_DIR)")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only redo the table of an earlier run (printed, and into --docs)")
    a = ap.parse_args()
    if a.render:  # the table of an earlier run, e.g. after a change of layout
        with open(a.render) as f:
            R = json.load(f)
        if R.get("kind") == "xl7b":
            block = render_xl7b(R)
            print(block)
            if a.docs:
                update_block(a.docs, XL7B_BEGIN, XL7B_END, block)
            return
        block = render(R) + f"\nWhole run: {R['seconds'] / 60:.1f} min.\n"
        print(block)
        if a.docs:
            update_docs(a.docs, block, R.get("command", os.environ.get("MXC_BENCH_COMMAND", "?")))
        write_chart(R, os.path.dirname(os.path.abspath(a.render)), a.docs)
        return

    names = [n for n in a.models.split(",") if n]
    unknown = [n for n in names if n not in models.MODELS]
    if unknown:
        sys.exit(f"bench: unknown model(s) {', '.join(unknown)}; known: {', '.join(models.MODELS)}")
    a.xl7b_dir = a.xl7b_dir or os.path.join(a.out, "xl7b")
    with_7b = "xl7b" in names
    names = [n for n in names if n != "xl7b"]
    if a.serving:
        return serving_main(a, names)
    if names:
        table_main(a, names)
    if with_7b:
        xl7b_main(a)


def table_main(a, names):
    """The table of the F32 shapes (steps 1-10 of the module's docstring)."""
    t_start = time.time()
    os.makedirs(a.out, exist_ok=True)
    cmdline = os.environ.get("MXC_BENCH_COMMAND") or " ".join([a.python, "bench/bench.py"] + sys.argv[1:])
    R = {"command": cmdline, "models": names, "threads": a.threads, "python": a.python, "mxc": {}, "torch": {},
         "check": {}, "llamacpp": {}, "weights": {}}

    log("== machine")
    R["machine"], flags = machine()
    log(f"  {R['machine'].get('Model name')}, {R['machine']['cores']} cores; {R['machine']['uptime_start']}")
    o, _, _, _ = run(["git", "-C", os.path.dirname(HERE), "describe", "--always", "--dirty"])
    R["git"] = o.strip() or "?"

    log("== helpers")
    exe = build_helpers(a.out, a.cc)

    log("== weights")
    o, e, rc, _ = run([sys.executable, os.path.join(HERE, "gen_weights.py"), a.out] + names)
    if rc:
        sys.exit(f"bench: gen_weights.py failed:\n{e}")
    log("  " + o.strip().replace("\n", "\n  "))
    for n in names:
        R["weights"][n] = os.path.join(a.out, n + ".safetensors")

    log("== compile")
    for _ in range(30):  # a concurrent `make` may be relinking it
        if os.access(a.mxc, os.X_OK):
            break
        time.sleep(1)
    else:
        sys.exit(f"bench: {a.mxc} not found: build mxc first (make)")
    R["compile"] = compile_models(a.mxc, a.out, names)

    log("== roofline")
    core, detected, trials = pick_openblas_core(exe["roofline"], flags, a.threads)
    R["openblas"] = {"core_used": core, "detected": detected, "trials": trials}
    log(f"  OpenBLAS core: detected {detected}; trials {trials}; using {core or 'auto'}")
    R["roofline"] = measure_roofline(exe["roofline"], names, a.threads, core, R["weights"])

    log("== mxc")
    for n in names:
        if R["compile"][n]["ok"]:
            R["mxc"][n] = run_mxc(exe["bench_model"], n, R["compile"][n]["lib"], R["weights"][n],
                                  a.threads, a.quick)

    if "m130" in names and R["compile"]["m130"]["ok"]:
        log("== stateful serving rows (m130)")
        R["serving"] = run_serving(exe["bench_model"], "m130", R["compile"]["m130"]["lib"],
                                   R["weights"]["m130"], a.threads, a.quick)

    if not a.no_torch:
        o, e, rc, _ = run([a.python, "-c", "import torch; print(torch.__version__)"])
        if rc:
            log(f"  no torch in {a.python}: PyTorch columns skipped (apt-get install python3-torch)")
            a.no_torch = True
        else:
            R["torch_version"] = o.strip()
    if not a.no_torch:
        log("== logit check (mxc vs PyTorch)")
        for n in names:
            if R["compile"][n]["ok"]:
                R["check"][n] = check_logits(exe["bench_model"], n, R["compile"][n]["lib"],
                                             R["weights"][n], a.out, a.threads, a.python, core)
        log("== PyTorch")
        for n in names:
            R["torch"][n] = run_torch(a.python, n, R["weights"][n], a.threads, core, a.quick, a.torch_4096)

    if "m130" in names and os.access(a.llamacpp_bench, os.X_OK) and os.path.exists(a.llamacpp_gguf):
        log("== llama.cpp")
        R["llamacpp"] = run_llamacpp(a.llamacpp_bench, a.llamacpp_gguf, a.threads)

    if any(a.weight_types.get(n) for n in names):
        log("== narrow weight types (issue 12)")
        llama = None
        if os.access(a.llamacpp_bench, os.X_OK):
            llama = (lambda g: run_llamacpp(a.llamacpp_bench, g, a.threads, LLAMA_NARROW_TESTS),
                     {"F16": a.llamacpp_gguf_f16, "Q8_0": a.llamacpp_gguf_q8_0})
        R["narrow"] = narrow.run_all(a.mxc, HERE, a.out, exe["bench_model"],
                                     [n for n in names if a.weight_types.get(n) and R["compile"].get(n, {}).get("ok")],
                                     a.weight_types,
                                     a.threads, a.quick, llama, log)

    R["uptime_end"] = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    R["seconds"] = time.time() - t_start
    block = render(R)
    block += f"\nWhole run: {R['seconds'] / 60:.1f} min.\n"
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(R, f, indent=1)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(block)
    print(block)
    if a.docs:
        update_docs(a.docs, block, cmdline)
        log(f"== wrote {a.docs} (results block), {a.out}/results.md, {a.out}/results.json")
        if "serving" in R:
            update_block(a.docs, SERVING_BEGIN, SERVING_END,
                         render_serving("m130", R["serving"], a.threads, cmdline,
                                        R["machine"].get("Model name", "?")))
    write_chart(R, a.out, a.docs)


if __name__ == "__main__":
    main()
