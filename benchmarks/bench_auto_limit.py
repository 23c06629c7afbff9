"""Benchmark (issue 19): ``certify --bound auto`` with a longer time limit (30 s) on every row of the certificate
benchmark, against the stored auto at the default 10 s (benchmarks/results/certificates.json: same networks, masks,
fractions and PGD values). With at least tight.JOINT_LONG_MIN_SECONDS of the limit left, auto runs the joint bound
on max-pool chains on the rewritten lowering (Statement 12.64) and, on wide chains without max pooling, the long
end-to-end search (tight.JOINT_LONG_E2E); this measures what the extra time buys per family against issue 19's
targets. Every value is a valid bound; how many end-to-end steps fit depends on the machine (one BLAS thread).

Usage: bench_auto_limit.py [SECONDS]   (default 30); writes benchmarks/results/certificates_auto<SECONDS>.json."""
from __future__ import annotations

import json
import os
import platform
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import bench_certificates as BC  # noqa: E402
from bench_joint_probes import _model, _stored  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def run(stored, limit):
    """``certify --bound auto --time-limit LIMIT`` (what probprune.certify runs: the rewritten joint bound on max-pool
    chains and the long end-to-end search on wide chains, both from tight.JOINT_LONG_MIN_SECONDS left) on every row of
    the certificate benchmark, against the stored auto at the default 10 s; per-family medians next to issue 19's
    targets (2.5x per family, 2x overall). Every value is a bound; how many steps fit depends on the machine."""
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains, pool_pair_for, unscale
    from probprune.net.trace import from_torch

    rows = []
    for (name, family, _dsn, _img, _build, _ep) in BC._nets():
        model, shape = _model(name)
        g = from_torch(model, shape)
        for q in BC.FRACTIONS:
            st = stored[(name, q)]
            pgd = st["pgd_ball"]
            t = time.perf_counter()
            gh = g.with_masks(BC.graph_masks(model, g, q))
            F, Fh = lower_graph_pair(g, gh)
            c = certify_chains(F, Fh, "auto", 1.0, time_limit=limit, clock_start=t,
                               pool_pair=pool_pair_for(g, gh, "auto", limit), joint_long=True)
            js = next((s for s in c.stages if "end_to_end_search" in s), {})
            rows.append({"network": name, "family": family, "fraction": q,
                         "auto_10s_over_pgd": st["auto_eps"] / pgd, "auto_10s_method": st["auto_method"],
                         f"auto_{limit:g}s_over_pgd": unscale(c.eps, F.scale_exp) / pgd,
                         f"auto_{limit:g}s_method": c.method,
                         f"auto_{limit:g}s_seconds": time.perf_counter() - t,
                         "joint_search": js.get("end_to_end_search"), "load": os.getloadavg()[0]})
            print(rows[-1], flush=True)
    fams = sorted({r["family"] for r in rows})
    summary = {"limit_s": limit, "targets": {"overall": 2.0, "per_family": 2.5}}
    for key in ("auto_10s_over_pgd", f"auto_{limit:g}s_over_pgd"):
        summary[key] = {"overall": float(np.median([r[key] for r in rows])),
                        **{f: float(np.median([r[key] for r in rows if r["family"] == f])) for f in fams}}
    summary[f"auto_{limit:g}s_seconds_max"] = max(r[f"auto_{limit:g}s_seconds"] for r in rows)
    print(summary, flush=True)
    return rows, summary


def main(argv):
    try:
        limit = float(argv[0]) if argv else 30.0
    except ValueError:
        print(f"error: the time limit must be a number of seconds, got {argv[0]!r}", file=sys.stderr)
        return 2
    if not (limit > 0 and np.isfinite(limit)):
        print("error: the time limit must be a positive number of seconds", file=sys.stderr)
        return 2
    t = time.perf_counter()
    rows, summary = run(_stored(), limit)
    out = {"benchmark": f"certify --bound auto --time-limit {limit:g} on the certificate benchmark (issue 19)",
           "doc": __doc__.split("\n\n")[0], "summary": summary, "rows": rows, "seconds": time.perf_counter() - t,
           "machine": platform.processor() or platform.machine(), "blas_threads": 1}
    path = os.path.join(HERE, "results", f"certificates_auto{limit:g}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
