"""Issue 19 item 2 (SE): the coupled propagation (THEORY §12.4-12.5) with dense stage matrices vs the operator path
(§12.9: sparse / identity operators, shared F / F_hat operators, zero biases skipped), in one process, on LeNet-5
(max pooling) at 8x8, 16x16 and 24x24 inputs with random masks (keep 0.5), one centre (the origin, radius 1).
Writes benchmarks/results/certificates_issue19_operators.json with the ratio dense / operator and the load average
(the machine is shared: compare only the ratio within a row)."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def main(sizes=(8, 16, 24)) -> dict:
    import torch

    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound
    from probprune.net.trace import from_torch
    from probprune.net.zoo import lenet5

    torch.set_num_threads(1)
    rows = []
    for sz in sizes:
        model = lenet5((1, sz, sz), seed=0).double().eval()
        g = from_torch(model, (1, sz, sz))
        rng = np.random.default_rng(0)
        gh = g.with_masks({k: rng.random(w.shape) < 0.5 for k, w in g.weights.items()})
        t = time.perf_counter()
        F, Fh = lower_graph_pair(g, gh)
        row = {"input": [1, sz, sz], "stage_shapes": [list(s.M.shape) for s in F.stages],
               "lower_seconds": time.perf_counter() - t, "load_avg_start": os.getloadavg()}
        reg = Region(np.zeros((1, F.n_in)), 1.0)
        for mode in ("auto", "dense", "auto"):  # operator path before and after the dense one (load drift)
            t = time.perf_counter()
            p = CoupledPropagator(F, Fh, reg, operators=mode)
            eps = float(region_error_bound(F, Fh, reg, p).eps[0])
            row.setdefault(f"{mode}_seconds", []).append(time.perf_counter() - t)
            row[f"{mode}_eps"] = eps
            row["n_sparse_operators"] = max(row.get("n_sparse_operators", 0), p.n_sparse)
        row["load_avg_end"] = os.getloadavg()
        row["dense_over_operator"] = row["dense_seconds"][0] / min(row["auto_seconds"])
        row["relative_difference"] = abs(row["auto_eps"] - row["dense_eps"]) / row["dense_eps"]
        rows.append(row)
        print(f"{sz}x{sz}: dense {row['dense_seconds'][0]:.1f} s, operators {min(row['auto_seconds']):.1f} s "
              f"(x{row['dense_over_operator']:.2f}), eps {row['auto_eps']:.6g} vs {row['dense_eps']:.6g}, "
              f"load {row['load_avg_start'][0]:.1f}", flush=True)
    out = {"benchmark": "coupled propagation: dense vs operator back-substitution (issue 19 item 2)", "rows": rows,
           "target": "16x16 CNN in seconds; LeNet-5 / small VGG at 32x32 in tens of seconds",
           "environment": {"python": sys.version.split()[0], "torch": torch.__version__, "torch_threads": 1}}
    path = os.path.join(os.path.dirname(__file__), "results", "certificates_issue19_operators.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    return out


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    main(tuple(int(a) for a in sys.argv[1:]) or (8, 16, 24))
