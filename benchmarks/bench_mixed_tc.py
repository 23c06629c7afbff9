"""Issue 19 / TC: the mixed bound (Statement 12.8, pair_bounds="full") before and after THEORY §12.10
(Statement 12.40: beta anchored at the centre; Statement 12.41: slope-product segments through max-pool blocks),
on the benchmark's cached trained networks with its per-layer magnitude masks, ball of radius 1 at the origin.
The PGD values (128 restarts x 100 steps) are read from benchmarks/bench_certificates.py's stored rows
(<cache>/results_issue19/<network>.json). Writes benchmarks/results/certificates_mixed_tc.json.

    PYTHONPATH=. python benchmarks/bench_mixed_tc.py [network ...]"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

NETS = ("lenet5_maxpool_digits", "resnet_bn_digits", "cnn_maxpool_mnist16")
FRACTIONS = (0.3, 0.6, 0.9)
LIMIT_S = 240.0  # per mixed-bound evaluation (stopped and recorded as such past it)
TARGETS = {"overall_median": 2.0, "family_median": 2.5, "every_ratio_at_least": 1.0}


def main(names=NETS, out="benchmarks/results/certificates_mixed_tc.json"):
    import torch

    import bench_certificates as bc
    from probprune.certificates.compose import TimeLimitReached, bound_cache, deadline
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region
    from probprune.certificates.tight import unscale
    from probprune.net.trace import from_torch

    torch.set_num_threads(1)
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    rows = []
    if os.path.exists(out):  # keep the stored rows of the networks not rerun now
        rows = [r for r in json.load(open(out))["rows"] if r["network"] not in names]
    for name, family, dsname, images, build, epochs in bc._nets():
        if name not in names:
            continue
        ds, model = bc._trained(name, dsname, images, build, epochs, cache)
        model = model.double().eval()
        g = from_torch(model, tuple(ds.input_shape))
        stored = json.load(open(os.path.join(cache, bc.RESULTS_DIR, f"{name}.json")))
        for q in FRACTIONS:
            pgd = next(r["pgd_ball"] for r in stored["fractions"] if r["fraction"] == q)
            masks = bc.graph_masks(model, g, q)
            F, Fh = lower_graph_pair(g, g.with_masks(masks))
            reg = Region(np.zeros((1, F.n_in)), 1.0)
            row = {"network": name, "family": family, "fraction": q, "pgd": pgd, "load_avg": os.getloadavg()}
            variants = [("old", dict(pool_segments=False)), ("new", {})]
            if family == "residual":  # wide carried stages: longer Statement 12.10 segments (opt-in)
                variants.append(("new_long", dict(long_segment_dim=2048)))
            for tag, kw in variants:
                t = time.perf_counter()
                try:
                    with bound_cache(False), deadline(time.perf_counter() + LIMIT_S):  # cold, as one certify call
                        m = lemma_a_mixed(F, Fh, reg, pair_bounds="full", **kw)
                    row[f"{tag}_eps"] = unscale(m.eps, F.scale_exp)
                    row[f"{tag}_terms"] = [float(v) for v in m.terms]
                    row[f"{tag}_ratio"] = row[f"{tag}_eps"] / pgd
                except TimeLimitReached:
                    row[f"{tag}_stopped"] = f"stopped after {LIMIT_S} s"
                row[f"{tag}_seconds"] = time.perf_counter() - t
            row["sound"] = bool(min(row.get(f"{t}_eps", np.inf) for t, _ in variants) >= pgd)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("terms")}), flush=True)
            rows.append(row)
            _write(rows, out)
    return rows


def _write(rows, out):
    def best(r):
        return min(r.get("new_ratio", np.inf), r.get("new_long_ratio", np.inf))

    ratios = [best(r) for r in rows if np.isfinite(best(r))]
    fam = {}
    for r in rows:
        if np.isfinite(best(r)):
            fam.setdefault(r["family"], []).append(best(r))
    res = {"what": "mixed bound (pair_bounds='full') old vs new (THEORY §12.10, Statements 12.40/12.41), ball r=1 "
                   "at the origin, per-layer magnitude masks; ratio = certificate / PGD (128 restarts, from "
                   "bench_certificates' stored rows); bound cache off for both",
           "issue_targets": TARGETS,
           "median_best_new_ratio_these_rows": statistics.median(ratios) if ratios else None,
           "median_best_new_ratio_by_family_these_rows": {k: statistics.median(v) for k, v in fam.items()},
           "targets_met": bool(ratios) and statistics.median(ratios) <= 2.0 and all(
               statistics.median(v) <= 2.5 for v in fam.values()),
           "machine": platform.platform(), "rows": rows}
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1, default=float)


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    main(tuple(sys.argv[1:]) or NETS)
