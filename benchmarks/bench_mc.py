"""Benchmark: the batched Monte Carlo engine vs the one-trial-at-a-time loop a user would write with
``torch.nn.utils.prune`` (prune, forward, measure), on the same trials, in the same run.

Two workloads (float64, CPU, the same torch thread count for both sides):

* ``relu_pgd``: ReLU FCN, magnitude pruning (threshold |w| < q a_i); the worst-case error lower bound by multi-start
  projected gradient ascent (THEORY §6), identical algorithm and starts on both sides. Baseline: per trial, build the
  ``nn.Sequential``, prune it with ``prune.l1_unstructured`` (same mask: the k smallest |w| are exactly |w| < q a_i),
  run the ascent with the modules' forward/backward. Engine: ``probprune.mc.measure.pgd_lower_bound`` on all trials
  stacked (torch.bmm).
* ``linear_exact``: identity-activation FCN, random pruning; exact error ||prod W - prod What|| plus the Cert-D layer
  norms. Baseline: per trial, ``prune.random_unstructured``-style masks applied with ``prune.custom_from_mask``,
  products and norms of the module weights. Engine: ``exact_linear_error`` + ``operator_norms_upper`` batched.

Reports the speed ratio, the engine's achieved GFLOP/s (useful flops counted analytically) and this machine's
measured float64 matmul GFLOP/s at the same thread count, for several network sizes: the engine's gain is the
per-trial Python / module / hook overhead it removes, so it is largest for small networks and shrinks to the
kernel-efficiency ratio when each trial's own matmuls are large. Writes benchmarks/results/mc.json.

    python benchmarks/bench_mc.py [--threads 1] [--trials 64] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

from probprune.core.threads import limit_threads

limit_threads()  # entry point: one BLAS/OpenMP/torch thread unless OMP_NUM_THREADS etc. are set (probprune/core/threads.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn
from torch.nn.utils import prune

from probprune.mc import measure as M
from probprune.net.templates import fcn_spec, sample_weights, to_torch


def matmul_gflops(threads: int, n: int = 1024, reps: int = 5) -> float:
    a = torch.randn(n, n, dtype=torch.float64)
    b = torch.randn(n, n, dtype=torch.float64)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _linears(model):
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


# --------------------------------------------------------------------------------------------- relu PGD
def user_pgd(model, pruned, x, iters, step):
    """The same ascent as the engine's, written for one trial with nn.Module forward (what a user would write)."""
    S = x.shape[0] // 2
    fp_iters = iters // 2
    fp_chain = torch.zeros(x.shape[0], 1, dtype=torch.bool)
    fp_chain[S:] = True
    best = 0.0
    for t in range(iters + 1):
        x = x.detach().requires_grad_(t < iters)
        with torch.set_grad_enabled(t < iters):
            d = model(x) - pruned(x)
            f = (d * d).sum(-1)
        val = f.detach().sqrt() / x.detach().norm(dim=-1).clamp_min(1.0)
        best = max(best, float(val.max()))
        if t == iters:
            break
        (g,) = torch.autograd.grad(f.sum(), x)
        gn = g.norm(dim=-1, keepdim=True)
        ok = gn > 0
        u = torch.where(ok, g / gn.clamp_min(1e-300), torch.zeros_like(g))
        eta_loc = step * (1e-4) ** (t / max(1, iters - 1))
        tt = max(0, t - fp_iters)
        eta_fp = step * (1e-4) ** (tt / max(1, iters - fp_iters - 1))
        x_loc = x.detach() + eta_loc * u
        x_fp = torch.where(ok, u, x.detach()) if t < fp_iters else x.detach() + eta_fp * u
        x = torch.where(fp_chain, x_fp, x_loc)
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return best


def bench_relu_pgd(widths, n, q, iters, seed=0):
    spec = fcn_spec(widths, "relu")
    Wn = sample_weights(spec, seed, n=n)
    W = [torch.from_numpy(w) for w in Wn]
    Wh = [torch.where(w.abs() < q * L.half_width, torch.zeros_like(w), w) for w, L in zip(W, spec.layers)]
    gens = [torch.Generator().manual_seed(1000 + k) for k in range(n)]
    x0 = M.pgd_starts(spec, W, Wh, 64, gens)  # the same starts for both sides
    S = x0.shape[1]

    t = time.perf_counter()
    gens = [torch.Generator().manual_seed(1000 + k) for k in range(n)]
    lb_engine = M.pgd_lower_bound(spec, W, Wh, n_random=64, iters=iters, generators=gens)
    t_engine = time.perf_counter() - t

    t = time.perf_counter()
    lb_user = []
    for k in range(n):
        model = to_torch(spec, [w[k] for w in Wn])
        pruned = copy.deepcopy(model)
        for L, mod in zip(spec.layers, _linears(pruned)):
            amount = int((mod.weight.detach().abs() < q * L.half_width).sum())
            prune.l1_unstructured(mod, "weight", amount=amount)
        x = torch.cat([x0[k], x0[k]])  # two chains per start, as in the engine
        lb_user.append(user_pgd(model, pruned, x, iters, 0.5))
    t_user = time.perf_counter() - t
    lb_user = torch.tensor(lb_user, dtype=torch.float64)
    agree = float((lb_engine / lb_user - 1).abs().max())
    fwd = 2 * n * (2 * S) * spec.n_weights * 2  # two nets, 2 flops per MAC
    flops = (iters + 1) * fwd + iters * 2 * fwd  # forward every iteration + backward (about 2x forward)
    return {"workload": "relu_pgd", "widths": widths, "trials": n, "fraction": q, "iters": iters,
            "starts_per_trial": 2 * S, "engine_s": t_engine, "user_loop_s": t_user, "speedup": t_user / t_engine,
            "engine_gflops": flops / t_engine / 1e9, "user_gflops": flops / t_user / 1e9,
            "max_rel_diff_lb": agree}


# --------------------------------------------------------------------------------------------- linear exact
def bench_linear_exact(widths, n, p, seed=0):
    spec = fcn_spec(widths, "identity")
    Wn = sample_weights(spec, seed, n=n)
    rng = np.random.default_rng(seed + 1)
    masks = [rng.random(w.shape) >= p for w in Wn]  # True = kept
    W = [torch.from_numpy(w) for w in Wn]

    t = time.perf_counter()
    Wh = [w * torch.from_numpy(m) for w, m in zip(W, masks)]
    ex_engine = M.exact_linear_error(spec, W, Wh)
    nW = M.operator_norms_upper(spec, W).numpy()
    nWh = M.operator_norms_upper(spec, Wh).numpy()
    nE = M.operator_norms_upper(spec, [a - b for a, b in zip(W, Wh)]).numpy()
    cert_engine = M.cert_d(spec, nW, nWh, nE)
    t_engine = time.perf_counter() - t

    t = time.perf_counter()
    ex_user, cert_user = [], []
    for k in range(n):
        model = to_torch(spec, [w[k] for w in Wn])
        pruned = copy.deepcopy(model)
        for mod, m in zip(_linears(pruned), masks):
            prune.custom_from_mask(mod, "weight", torch.from_numpy(m[k]))
        A = [mod.weight.detach() for mod in _linears(model)]
        B = [mod.weight.detach() for mod in _linears(pruned)]  # forward pre-hook output: weight_orig * mask
        PA, PB = A[0], B[0]
        for a, b in zip(A[1:], B[1:]):
            PA, PB = a @ PA, b @ PB
        ex_user.append(float(torch.linalg.matrix_norm(PA - PB, ord=2)))
        w = [float(torch.linalg.matrix_norm(a, ord=2)) * M.SVD_SAFETY for a in A]
        wh = [float(torch.linalg.matrix_norm(b, ord=2)) * M.SVD_SAFETY for b in B]
        e = [float(torch.linalg.matrix_norm(a - b, ord=2)) * M.SVD_SAFETY for a, b in zip(A, B)]
        cert_user.append(float(M.cert_d(spec, np.array(w), np.array(wh), np.array(e))))
    t_user = time.perf_counter() - t
    agree = float(np.max(np.abs(ex_engine.numpy() / np.array(ex_user) - 1)))
    d = widths
    flops = n * 2 * sum(2 * d[i + 1] * d[i] * d[0] for i in range(1, len(d) - 1))  # two products
    return {"workload": "linear_exact", "widths": widths, "trials": n, "fraction": p, "engine_s": t_engine,
            "user_loop_s": t_user, "speedup": t_user / t_engine, "engine_gflops_matmul_part": flops / t_engine / 1e9,
            "max_rel_diff_exact": agree,
            "max_rel_diff_cert": float(np.max(np.abs(cert_engine / np.array(cert_user) - 1)))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "mc.json"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    peak = matmul_gflops(a.threads)
    if a.quick:
        cases = [("relu", [8, 16, 16, 4], 16, 10), ("linear", [16] * 4, 32, None)]
    else:
        n = a.trials
        cases = [("relu", [8, 16, 16, 4], 2 * n, 60), ("relu", [16, 32, 32, 8], n, 60),
                 ("relu", [32, 128, 128, 10], max(4, n // 4), 60),
                 ("linear", [8] * 4, 8 * n, None), ("linear", [32] * 4, 4 * n, None), ("linear", [128] * 4, n, None)]
    res = []
    for kind, widths, trials, iters in cases:
        if kind == "relu":
            res.append(bench_relu_pgd(widths, trials, 0.2, iters))
        else:
            res.append(bench_linear_exact(widths, trials, 0.2))
    out = {"benchmark": "mc engine vs per-trial torch.nn.utils.prune loop (same trials, same algorithm)",
           "torch": torch.__version__, "threads": a.threads, "machine": platform.processor() or platform.machine(),
           "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count(),
           "matmul_gflops_float64_1024": peak, "results": res, "target": "speedup >= 10x on the same trials",
           "target_met": {f"{r['workload']} {r['widths']}": r["speedup"] >= 10 for r in res}}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2))
    print(f"machine float64 matmul (1024^3, {a.threads} thread(s)): {peak:.1f} GFLOP/s; "
          f"load average {out['load_average_1min']:.1f} on {out['cpu_count']} cores")
    for r in res:
        g = r.get("engine_gflops", r.get("engine_gflops_matmul_part"))
        print(f"{r['workload']:13s} widths={str(r['widths']):18s} trials={r['trials']:4d}: engine {r['engine_s']:7.3f} s, "
              f"user loop {r['user_loop_s']:7.3f} s, speedup {r['speedup']:5.1f}x, engine {g:6.2f} GFLOP/s "
              f"({100 * g / peak:.0f}% of matmul)")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
