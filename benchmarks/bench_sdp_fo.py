"""Benchmark (issue 19 item 3): the first-order SDP solver (THEORY §12.6b) against the SCS SDP (§12.6, where it runs)
and the other tight certificates ("auto"), each over a 128-restart PGD attack, on the unit ball around the origin.

Networks (trained once with probprune.net.train, seed 0, cached under $PROBPRUNE_BENCH_CACHE or /tmp/sb_bench_cache):
* mlp_digits_64-64-64-10 (issue 19's "SDP 2.2x, auto 4.7x" net; 321 lifted coordinates: SCS still runs);
* lenet300-100_mnist5k (1,585 lifted coordinates: above SCS's 700);
* cnn_mnist5k_large: Conv(1->8, 5, stride 2) - ReLU - Conv(8->24, 3, pad 1) - ReLU - AvgPool 2 - Linear(864, 10) on
  28x28 inputs (1 + 784 + 2 (1152 + 3456) = 10,001 lifted coordinates), the scaling case (LARGE_ITERS steps).
Magnitude pruning per layer at the fractions given (default 0.6). Per case: lifted dimension, seconds and
certificate / PGD for SCS, the first-order SDP (standalone, with the CROWN intervals auto uses), "auto" as shipped (without the first-order SDP:
tight.SDP_FO_IN_AUTO is False) and with it (sdp_fo=True, default time limit), and os.getloadavg().

Usage: python benchmarks/bench_sdp_fo.py [net names ...] [--fractions 0.3,0.6] [--iters N] [--out NAME.json] [--fo-only]
(rows of nets not run are kept from the existing results file).
"""
from __future__ import annotations

import copy
import json
import os
import platform
import sys
import time

import numpy as np

ITERS = 300  # Adam steps of the first-order solver (the "auto" default, SDP_FO_AUTO_ITERS)
PGD_RESTARTS, PGD_ITERS = 128, 100
LARGE_DIM, LARGE_ITERS = 5000, 40  # above LARGE_DIM lifted coordinates the first-order solve runs LARGE_ITERS steps


def _nets():
    import torch
    import torch.nn as nn

    from probprune.net.zoo import lenet_300_100, mlp

    def cnn_large(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 24, 3, padding=1), nn.ReLU(),
                             nn.AvgPool2d(2), nn.Flatten(), nn.Linear(24 * 6 * 6, 10))

    # name, dataset, images, builder, epochs
    return [
        ("mlp_digits_64-64-64-10", "digits", False, lambda s: mlp((64, 64, 64, 10), seed=s), 10),
        ("lenet300-100_mnist5k", "mnist5k", False, lambda s: lenet_300_100(seed=s), 2),
        ("cnn_mnist5k_large", "mnist5k", True, cnn_large, 2),
    ]


def _trained(name, dsname, images, build, epochs, cache):
    """The trained network from the cache folder (or trained once, seed 0): bench_certificates' loader."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_certificates import _trained as load_or_train

    ds, model = load_or_train(name, dsname, images, build, epochs, cache)
    return ds, model.eval()


def _magnitude_masks(model, q):
    """bench_certificates' per-layer magnitude masks (the same rows as the certificate benchmark)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_certificates import _magnitude_masks as masks

    return masks(model, q)


def main(names=None, fractions=(0.6,), iters=ITERS, out_name="sdp_fo.json", fo_only=False) -> dict:
    import torch

    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.propagate import CoupledPropagator, Region
    from probprune.certificates.sdp import MAX_DIM, crown_bounds, lifted_dim, sdp_certificate
    from probprune.certificates.sdp_fo import sdp_fo_certificate
    from probprune.certificates.tight import certify_chains
    from probprune.measure.attack import pgd_sup_error
    from probprune.net.train import evaluate

    torch.set_num_threads(1)
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/sb_bench_cache")
    os.makedirs(cache, exist_ok=True)
    rows = []
    for name, dsname, images, build, epochs in _nets():
        if names and name not in names:
            continue
        ds, model = _trained(name, dsname, images, build, epochs, cache)
        shape = tuple(ds.input_shape)
        acc = float(evaluate(model, ds.X_test, ds.y_test))
        for q in fractions:
            mh = pruned_copy(model, _magnitude_masks(model, q))
            F, Fh = lower_pair(model, mh, shape)
            N = lifted_dim(F)
            r = {"net": name, "test_accuracy": acc, "fraction": q, "lifted_dim": N}
            print(f"{name} q={q}: N={N}", flush=True)
            A, Ah = (copy.deepcopy(x).double().eval() for x in (model, mh))
            t = time.perf_counter()
            r["pgd"] = float(pgd_sup_error(A, Ah, shape, PGD_RESTARTS, PGD_ITERS, 1, center=np.zeros(shape),
                                           radius=1.0).value)
            r["pgd_seconds"] = time.perf_counter() - t
            r["pgd_restarts"] = PGD_RESTARTS
            if fo_only:  # a longer first-order solve only (its row sits next to the full one of the same net)
                r["net"] = f"{name} (first-order only, {iters} steps)"
            # auto with its default time limit: as shipped (no first-order SDP) and with it (sdp_fo=True)
            r["load_before_auto"] = os.getloadavg()
            t = time.perf_counter()
            a = certify_chains(F, Fh, "auto", time_limit=1e-3 if fo_only else 30.0)
            r["auto_seconds"] = time.perf_counter() - t
            r["auto_components"] = dict(a.components)
            r["auto"] = float(a.eps)
            r["auto_method"] = a.method
            t = time.perf_counter()
            a = certify_chains(F, Fh, "auto", sdp_fo=not fo_only, time_limit=1e-3 if fo_only else 30.0)
            r["auto_fo_total_seconds"] = time.perf_counter() - t
            r["auto_with_fo_components"] = dict(a.components)
            r["auto_with_fo"] = float(a.eps)
            r["auto_with_fo_skipped"] = [s for s in a.stages if s.get("stage") == "skipped components"]
            fo_stage = [s for s in a.stages if str(s.get("stage", "")).startswith("sdp first-order")]
            r["auto_fo_seconds"] = float(fo_stage[0]["seconds"]) if fo_stage else None
            r["auto_fo_iterations"] = int(fo_stage[0]["iterations"]) if fo_stage else None
            # standalone first-order SDP with the CROWN intervals (as certify_chains passes them)
            prop = CoupledPropagator(F, Fh, Region(np.zeros((1, F.n_in)), 1.0, "l2"))
            r["load_before_fo"] = os.getloadavg()
            t = time.perf_counter()
            fo = sdp_fo_certificate(F, Fh, 1.0, crown=crown_bounds(prop), iters=iters if N <= LARGE_DIM else LARGE_ITERS)
            r["fo_seconds"] = time.perf_counter() - t
            r["fo"] = float(fo.eps) * 2.0 ** F.scale_exp
            r["fo_detail"] = {k: v for k, v in fo.__dict__.items() if k not in ("eps", "statement")}
            if N <= MAX_DIM and not fo_only:
                r["load_before_scs"] = os.getloadavg()
                t = time.perf_counter()
                sc = sdp_certificate(F, Fh, 1.0, crown=crown_bounds(prop))
                r["scs_seconds"] = time.perf_counter() - t
                r["scs"] = float(sc.eps) * 2.0 ** F.scale_exp
                r["scs_status"] = sc.solver_status
                r["fo_over_scs"] = r["fo"] / r["scs"]
            else:
                r["scs"] = None
                r["scs_refused"] = "not run (--fo-only)" if fo_only else f"lifted dimension {N} > sdp.MAX_DIM = {MAX_DIM}"
            for k in ("auto", "auto_with_fo", "fo", "scs"):
                if r.get(k) is not None:
                    r[f"{k}_over_pgd"] = r[k] / r["pgd"]
            r["every_ratio_ge_1"] = all(r[f"{k}_over_pgd"] >= 1 for k in ("auto", "auto_with_fo", "fo", "scs")
                                        if r.get(k) is not None)
            print(json.dumps({k: v for k, v in r.items() if k.endswith(("over_pgd", "seconds", "over_scs"))}),
                  flush=True)
            rows.append(r)
    out = {"benchmark": "first-order SDP (THEORY §12.6b) vs SCS SDP (§12.6) vs auto, certificate / PGD",
           "targets": {"lifted_dim": ">= 10,000 in tens of seconds (issue 19 item 3)",
                       "fo_over_scs": "within a few % where SCS runs (brief)",
                       "ratios": "every certificate / PGD >= 1"},
           "fo_iterations": iters, "pgd": f"{PGD_RESTARTS} restarts x {PGD_ITERS} steps, float64",
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": 1}, "rows": rows}
    path = os.path.join(os.path.dirname(__file__), "results", out_name)
    if os.path.exists(path):  # runs of other nets are kept (one row per net and fraction, the newest wins)
        with open(path) as f:
            prev = json.load(f).get("rows", [])
        new_keys = {(r["net"], r["fraction"]) for r in rows}
        out["rows"] = [r for r in prev if (r["net"], r["fraction"]) not in new_keys] + rows
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print("wrote", path)
    return out


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    args = sys.argv[1:]
    fr, it, names, out_name, fo_only = (0.6,), ITERS, [], "sdp_fo.json", False
    i = 0
    while i < len(args):
        if args[i] == "--fractions":
            fr = tuple(float(x) for x in args[i + 1].split(","))
            i += 2
        elif args[i] == "--fo-only":
            fo_only = True
            i += 1
        elif args[i] == "--out":
            out_name = args[i + 1]
            i += 2
        elif args[i] == "--iters":
            it = int(args[i + 1])
            i += 2
        else:
            names.append(args[i])
            i += 1
    main(names or None, fr, it, out_name, fo_only)
