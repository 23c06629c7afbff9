"""Benchmark: the Monte Carlo engine's ``cert`` column for conv networks, old path vs the one certify path, same trials.

* old (baseline, what ``evaluate_unit`` did before issue 10's last step): Lemma C conv norms sqrt(r) ||mat W||
  batched over trials (``operator_norms_upper(conv_method="kernel")``) and the chain recursion
  (``lemma_a_batched``, no bias/offset terms); it was >= certify's value, not equal.
* new: ``probprune.mc.measure.cert_d_graph`` = ``probprune certify``'s Cert-D per trial (FFT conv norm min Lemma C,
  ``certificates.weight_node_norms``) with one vectorised graph recursion.

For context the PGD lower bound of the same unit (one method/fraction) is timed too: the cert column is a small part of
a unit. Reports seconds per unit, new/old time ratio and the certificate ratio new/old (<= 1: the FFT norm is
never larger than Lemma C). Writes benchmarks/results/mc_cert.json.

    python benchmarks/bench_mc_cert.py [--trials 32] [--quick]   (--trials 16 took 14 min at load 8 on 2 cores,
    almost all of it the PGD context timing; --quick: 8 trials, 20 PGD steps)
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from probprune.core.threads import limit_threads

limit_threads()  # entry point: one BLAS/OpenMP/torch thread unless OMP_NUM_THREADS etc. are set

import numpy as np  # noqa: E402
import torch  # noqa: E402

from probprune.net import Graph  # noqa: E402
from probprune.mc import measure as M  # noqa: E402
from probprune.mc.trials import prune_batched  # noqa: E402
from probprune.net.templates import ConvLayer, cnn_spec, sample_weights  # noqa: E402

NETS = {
    "cnn_1x16x16_c8_c16_fc32": lambda: cnn_spec((1, 16, 16), [ConvLayer(8, 3, 1, 1, ("max", 2, 2)),
                                                              ConvLayer(16, 3, 1, 1, ("max", 2, 2))], [32, 10], "relu"),
    "cnn_3x32x32_c16_c32_fc10": lambda: cnn_spec((3, 32, 32), [ConvLayer(16, 3, 1, 1, ("max", 2, 2)),
                                                               ConvLayer(32, 3, 1, 1, ("max", 2, 2))], [10], "relu"),
}


def one(name, spec, n, pgd_starts, pgd_iters):
    W = [torch.from_numpy(w) for w in sample_weights(spec, 0, n=n)]
    U = [torch.from_numpy(np.random.default_rng(1).random(tuple(w.shape))) for w in W]
    What, _ = prune_batched(spec, W, U, "random", 0.2, "uniform")
    lips = [L.lip for L in spec.layers]
    t0 = time.perf_counter()
    nW = M.operator_norms_upper(spec, W, conv_method="kernel").numpy()
    nWh = M.operator_norms_upper(spec, What, conv_method="kernel").numpy()
    nE = M.operator_norms_upper(spec, [a - b for a, b in zip(W, What)], conv_method="kernel").numpy()
    old = M.lemma_a_batched(nW, nWh, nE, lips)
    t_old = time.perf_counter() - t0
    t0 = time.perf_counter()
    graph = Graph.from_spec(spec, [w[0].numpy() for w in W])
    new = M.cert_d_graph(graph, W, What)[0]
    t_new = time.perf_counter() - t0
    gens = [torch.Generator().manual_seed(k) for k in range(n)]
    t0 = time.perf_counter()
    M.pgd_lower_bound(spec, W, What, n_random=pgd_starts, iters=pgd_iters, generators=gens, basis=False)
    t_pgd = time.perf_counter() - t0
    r = new / old
    return {"network": name, "trials": n, "old_seconds": t_old, "new_seconds": t_new, "time_ratio_new_over_old":
            t_new / t_old, "pgd_seconds": t_pgd, "pgd": {"starts": pgd_starts, "iters": pgd_iters},
            "cert_ratio_new_over_old": {"median": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n = 8 if a.quick else a.trials
    rows = [one(k, f(), n, 64, 20 if a.quick else 60) for k, f in NETS.items()]
    out = {"benchmark": "mc_cert", "threads": torch.get_num_threads(), "machine": platform.machine(), "rows": rows}
    p = Path(__file__).parent / "results" / "mc_cert.json"
    p.write_text(json.dumps(out, indent=2))
    for r in rows:
        print(f"{r['network']}: cert column old {r['old_seconds']:.2f} s, new {r['new_seconds']:.2f} s "
              f"(x{r['time_ratio_new_over_old']:.2f}); PGD {r['pgd_seconds']:.2f} s; cert new/old median "
              f"{r['cert_ratio_new_over_old']['median']:.3f} (max {r['cert_ratio_new_over_old']['max']:.3f})")


if __name__ == "__main__":
    main()
