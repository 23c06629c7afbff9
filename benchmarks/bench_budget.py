"""Benchmark: latency of a budget query for LeNet-300-100 (issue 2; target well under 100 ms).

Baseline in the same run: evaluating the bound once (``apriori_bound``), so the ratio says how many bound
evaluations a full inversion costs. Writes benchmarks/results/budget.json.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

from probprune.core.threads import limit_threads

limit_threads()  # entry point: one BLAS/OpenMP/torch thread unless OMP_NUM_THREADS etc. are set (probprune/core/threads.py)

from probprune.theory.apriori import apriori_bound  # noqa: E402
from probprune.budgets.apriori import max_prunable
from probprune.net.templates import fcn_spec


def timeit(fn, repeat: int) -> dict:
    fn()  # warm-up (imports, caches)
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return {"median_ms": 1e3 * statistics.median(ts), "min_ms": 1e3 * min(ts), "max_ms": 1e3 * max(ts), "repeat": repeat}


def main(repeat: int = 30) -> dict:
    spec = fcn_spec([784, 300, 100, 10])
    res = {"network": "LeNet-300-100 (784-300-100-10), paper law K=1, eps=0.5, delta=0.05",
           "machine": {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()},
           "baseline_single_bound_eval": timeit(lambda: apriori_bound(spec, 0.05, 0.05), repeat)}
    for method in ("magnitude", "random"):
        for mode in ("optimal", "uniform", "equal_share"):
            r = timeit(lambda: max_prunable(spec, 0.5, 0.05, method, mode), repeat)
            r["ratio_to_single_bound_eval"] = r["median_ms"] / res["baseline_single_bound_eval"]["median_ms"]
            r["target_ms"] = 100.0
            r["meets_target"] = r["median_ms"] < 100.0
            res[f"{method}/{mode}"] = r
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    path = os.path.join(os.path.dirname(__file__), "results", "budget.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=2)
    for k, v in res.items():
        if isinstance(v, dict) and "median_ms" in v:
            print(f"{k:28s} median {v['median_ms']:8.2f} ms")
    print(f"wrote {path}")
    return res


if __name__ == "__main__":
    main()
