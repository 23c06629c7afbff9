"""Benchmark (issue 19 speed, SA): seconds of the §12 ``auto`` certificate (``certify_chains(F, F_hat, "auto")``, no
time limit so that every component runs in both versions) on the trained digits CNNs of bench_certificates.py
(max pooling: LeNet-5 shape; average pooling), at magnitude fractions 0.3 / 0.6 / 0.9, with this tree and with the
package at an earlier commit (``git archive`` into a temporary directory, a subprocess), in the same run.

Also the same on LeNet-300-100 (bench_scale's random init, seed 0) at 0.3.

The machine is shared (2 cores, other jobs): load averages are recorded beside every timing; the ratios old/new of
one run are the meaningful numbers. The bound cache of certificates/compose.py is cleared before every new-code
certificate (cold: no reuse across certificates).

Usage: python benchmarks/bench_tight_speed.py [--before COMMIT] [--nets lenet5_maxpool_digits,cnn_avgpool_digits,lenet]
Writes benchmarks/results/tight_speed_sa.json. Trained models are read from PROBPRUNE_BENCH_CACHE (default
/tmp/probprune_bench_cache) or trained there once (bench_certificates._trained).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "164a041"
FRACTIONS = (0.3, 0.6, 0.9)


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def _pair(name: str, q: float):
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    if name == "lenet":
        from bench_scale import build

        model, shape = build("lenet")
        model = model.double().eval()
    else:
        import bench_certificates as BC

        cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
        os.makedirs(cache, exist_ok=True)
        _, dsname, images, build, epochs = [n for n in BC._nets() if n[0] == name][0]
        ds, model = BC._trained(name, dsname, images, build, epochs, cache)
        model = model.double().eval()
        shape = tuple(ds.input_shape)
    g = from_torch(model, shape)
    masks = {}
    for n in g.weight_nodes:  # layer-wise exact-k magnitude masks (ties by flat index)
        W = np.asarray(n.op.weight, float)
        keep = np.ones(W.size, bool)
        keep[np.argsort(np.abs(W.ravel()), kind="stable")[:int(q * W.size)]] = False
        masks[n.op.fqn] = keep.reshape(W.shape)
    torch.set_num_threads(1)
    return lower_graph_pair(g, g.with_masks(masks))


def worker(nets, fractions) -> list:
    """Time certify_chains(..., "auto", time_limit=None) in this process (whichever package is on the path)."""
    from probprune.certificates.tight import certify_chains

    try:
        from probprune.certificates.compose import clear_bound_cache
    except ImportError:  # the code before the cache
        def clear_bound_cache():
            return None
    out = []
    for name in nets:
        for q in (fractions if name != "lenet" else (0.3,)):
            F, Fh = _pair(name, q)
            clear_bound_cache()
            la = _load()
            t = time.perf_counter()
            c = certify_chains(F, Fh, "auto", time_limit=None)
            out.append({"net": name, "fraction": q, "seconds": time.perf_counter() - t, "eps": c.eps,
                        "method": c.method, "components": c.components, "loadavg": la})
            print(json.dumps(out[-1]), file=sys.stderr, flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default=BEFORE)
    ap.add_argument("--nets", default="lenet5_maxpool_digits,cnn_avgpool_digits,lenet")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tight_speed_sa.json"))
    args = ap.parse_args(argv)
    os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    nets = [n for n in args.nets.split(",") if n]
    if args.worker:
        print("JSON" + json.dumps(worker(nets, FRACTIONS)))
        return 0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    res = {"machine": {"cpu_count": os.cpu_count(), "loadavg_start": _load(),
                       "note": "shared 2-core machine loaded by other jobs; old/new ratios of one run are the numbers"},
           "new_commit": commit, "before_commit": args.before, "time_limit": None}
    new = worker(nets, FRACTIONS)
    with tempfile.TemporaryDirectory() as d:
        arch = subprocess.run(["git", "archive", args.before, "probprune"], cwd=ROOT, capture_output=True,
                              check=True).stdout
        subprocess.run(["tar", "-x", "-C", d], input=arch, check=True)
        env = dict(os.environ, PYTHONPATH=d)
        pr = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--nets", args.nets],
                            capture_output=True, text=True, env=env, cwd=d)
    line = [x for x in pr.stdout.splitlines() if x.startswith("JSON")]
    old = json.loads(line[-1][4:]) if line else []
    if not line:
        res["before_error"] = pr.stderr[-1000:]
    rows = []
    for a in new:
        b = next((o for o in old if o["net"] == a["net"] and o["fraction"] == a["fraction"]), None)
        rows.append({"net": a["net"], "fraction": a["fraction"], "new_seconds": a["seconds"], "new_eps": a["eps"],
                     "new_method": a["method"], "new_loadavg": a["loadavg"],
                     "before_seconds": b and b["seconds"], "before_eps": b and b["eps"],
                     "before_method": b and b["method"], "before_loadavg": b and b["loadavg"],
                     "ratio_seconds_before_over_new": (b["seconds"] / a["seconds"]) if b else None,
                     "eps_new_over_before": (a["eps"] / b["eps"]) if b and b["eps"] else None,
                     "target_seconds": 2.0 if a["net"] == "lenet" else 10.0})
    res["rows"] = rows
    res["new_components"] = new
    res["before_components"] = old
    res["machine"]["loadavg_end"] = _load()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    for r in rows:
        print(f"{r['net']:24s} q={r['fraction']:.1f} new {r['new_seconds']:7.2f} s  before "
              f"{(r['before_seconds'] or float('nan')):7.2f} s  eps new/before {r['eps_new_over_before']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    raise SystemExit(main())
