"""UA (issue 19 item 5, times): wall seconds of ``lower_graph_pair + certify_chains(..., "auto", time_limit=10)``
(the clock starts before the lowering, as in bench_certificates.rescore_auto) on the benchmark's cached networks,
with the eps each gives, the phases (lowering, composed bound) and the "skipped components" report.

    python benchmarks/bench_time_ua.py LABEL [OUT.json] [all]   # rows under LABEL ("before" / "after");
                                                                 # "all": the ten networks x three fractions

The code measured is whatever ``probprune`` PYTHONPATH imports (run "before" on an export of the old commit and
"after" on this tree, back to back). One BLAS thread; os.getloadavg() recorded next to every timing."""
from __future__ import annotations

import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from probprune.core.threads import limit_threads  # noqa: E402

limit_threads(1)

import bench_certificates as B  # noqa: E402

CACHE = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
TIME_LIMIT = 10.0
ROWS = [("vgg_maxpool_mnist16", 0.3), ("vgg_maxpool_mnist16", 0.6), ("vgg_maxpool_mnist16", 0.9),
        ("cnn_avgpool_mnist5k", 0.3), ("resnet_bn_mnist16", 0.3), ("lenet300-100_mnist5k", 0.3)]
ALL_ROWS = ROWS + [(n[0], q) for n in B._nets() for q in B.FRACTIONS if (n[0], q) not in ROWS]  # the 30 of issue 19


def main(label: str, out: str, rows=ROWS) -> None:
    import probprune
    import probprune.certificates.tight as T
    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch as graph_from_torch

    phases: dict = {}

    spans: list = []  # (name, start, end) relative to the row's clock start
    t_row = [0.0]

    def timed(name, fn):
        def w(*a, **k):
            t = time.perf_counter()
            ok = "stopped"
            try:
                out = fn(*a, **k)
                ok = "done"
                return out
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t
                spans.append((name if name != "mixed" else f"mixed_{k.get('pair_bounds', 'full')}"
                              + ("_np" if k.get("propagation") is False else ""),
                              round(t - t_row[0], 3), round(time.perf_counter() - t_row[0], 3), ok))
        return w

    T.certify_composed = timed("composed", T.certify_composed)
    T.lemma_a_mixed = timed("mixed", T.lemma_a_mixed)
    T.lemma_a_pairs = timed("pairs", T.lemma_a_pairs)
    T.CoupledPropagator = timed("propagator", T.CoupledPropagator)
    T.region_error_bound = timed("region", T.region_error_bound)
    res = json.load(open(out)) if os.path.exists(out) else {}
    res.setdefault("runs", {})
    res["description"] = __doc__.split("\n\n")[0]
    res["target"] = "auto <= 10 s per certificate (lowering included), <= 2 s on LeNet-300-100 (issue 19)"
    nets = {n[0]: n for n in B._nets()}
    got = []
    for name, q in rows:
        n = nets[name]
        ds, model = B._trained(n[0], n[2], n[3], n[4], n[5], CACHE)
        model = model.double().eval()
        g = graph_from_torch(model, tuple(ds.input_shape))
        gh = g.with_masks(B.graph_masks(model, g, q))
        phases.clear()
        spans.clear()
        load = os.getloadavg()
        t = t_row[0] = time.perf_counter()
        F, Fh = lower_graph_pair(g, gh)
        t_low = time.perf_counter() - t
        c = T.certify_chains(F, Fh, "auto", 1.0, time_limit=TIME_LIMIT, clock_start=t)
        secs = time.perf_counter() - t
        row = {"network": name, "fraction": q, "seconds": secs, "lower_seconds": t_low,
               "composed_seconds": phases.get("composed"), "eps": c.eps, "method": c.method,
               "components": c.components, "load_start": load, "load_end": os.getloadavg(),
               "spans": list(spans),
               "skipped": next((x for x in c.stages if x.get("stage") == "skipped components"), {})}
        got.append(row)
        print(f"{label} {name} q={q}: {secs:.2f} s (lower {t_low:.2f}, composed {phases.get('composed', 0):.2f}) "
              f"eps {c.eps:.6g} {c.method} load {load[0]:.2f}", flush=True)
    res["runs"][label] = {"code": os.path.dirname(os.path.dirname(os.path.abspath(probprune.__file__))),
                          "time_limit": TIME_LIMIT, "blas_threads": 1, "rows": got}
    with open(out + ".tmp", "w") as f:
        json.dump(res, f, indent=1, default=float)
    os.replace(out + ".tmp", out)


def summarize(out: str, before: str = "before", after: str = "after") -> dict:
    """Per-row comparison of two labels (seconds, eps, eps ratio) and the target's verdict, written into ``out``."""
    res = json.load(open(out))
    b = {(r["network"], r["fraction"]): r for r in res["runs"][before]["rows"]}
    rows = []
    for r in res["runs"][after]["rows"]:
        o = b.get((r["network"], r["fraction"]))
        if o is None:
            continue
        rows.append({"network": r["network"], "fraction": r["fraction"], "seconds_before": round(o["seconds"], 3),
                     "seconds_after": round(r["seconds"], 3), "eps_before": o["eps"], "eps_after": r["eps"],
                     "eps_after_over_before": r["eps"] / o["eps"], "method_after": r["method"]})
    lenet = [x["seconds_after"] for x in rows if x["network"].startswith("lenet300")]
    res.setdefault("summary", {})
    if "rows" in res["summary"]:  # an older single summary
        res["summary"] = {}
    res["summary"][after] = sm = {
        "before": before, "after": after, "rows": rows,
        "max_seconds_before": max(x["seconds_before"] for x in rows),
        "max_seconds_after": max(x["seconds_after"] for x in rows),
        "rows_over_10s_before": sum(x["seconds_before"] > TIME_LIMIT for x in rows),
        "rows_over_10s_after": sum(x["seconds_after"] > TIME_LIMIT for x in rows),
        "max_seconds_after_lenet300_100": max(lenet) if lenet else None,
        "max_eps_ratio_after_over_before": max(x["eps_after_over_before"] for x in rows),
        "target": "auto <= 10 s per certificate (lowering included) on the 30 rows, <= 2 s on LeNet-300-100; eps not "
                  "worse by more than ~1% where the old run was under 10 s",
    }
    with open(out + ".tmp", "w") as f:
        json.dump(res, f, indent=1, default=float)
    os.replace(out + ".tmp", out)
    return sm


if __name__ == "__main__":
    if sys.argv[1] == "summary":  # summary [AFTER_LABEL ...] against "before"
        for lab in sys.argv[2:] or ["after"]:
            sm = summarize(os.path.join(HERE, "results", "certificates_time_ua.json"), after=lab)
            print({k: v for k, v in sm.items() if k != "rows"})
        sys.exit(0)
    out = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else os.path.join(HERE, "results",
                                                                                    "certificates_time_ua.json")
    main(sys.argv[1], out, ALL_ROWS if len(sys.argv) > 3 and sys.argv[3] == "all" else ROWS)
