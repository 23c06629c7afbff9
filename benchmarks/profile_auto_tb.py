"""TB profiling helper: time each stage of certify_chains(method="auto") on one benchmark network and fraction."""
import cProfile
import os
import pstats
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_certificates as B  # noqa: E402


def load(name, q):
    from probprune.net.trace import from_torch
    for nm, fam, ds, im, build, ep in B._nets():
        if nm == name:
            d, model = B._trained(nm, ds, im, build, ep, "/tmp/probprune_bench_cache")
            model = model.double().eval()
            g = from_torch(model, tuple(d.input_shape))
            masks = B.graph_masks(model, g, q)
            return g, g.with_masks(masks)


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    torch.set_num_threads(1)
    name, q = sys.argv[1], float(sys.argv[2])
    lim = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    g, gh = load(name, q)
    print("load", os.getloadavg())
    pr = cProfile.Profile()
    pr.enable()
    t = time.perf_counter()
    F, Fh = lower_graph_pair(g, gh)
    t1 = time.perf_counter()
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=lim, clock_start=t)
    t2 = time.perf_counter()
    pr.disable()
    print(f"lower {t1 - t:.2f} s, certify {t2 - t1:.2f} s, eps {c.eps:.4g} {c.method}")
    print({k: round(v, 4) for k, v in c.components.items()})
    print([s for s in c.stages if s.get("stage") == "skipped components"])
    print("n_in", F.n_in, "stages", len(F.stages))
    pstats.Stats(pr).sort_stats("cumulative").print_stats(35)
