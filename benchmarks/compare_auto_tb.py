"""TB: ``certify --bound auto`` (10 s) before (a tree at commit 8fe2fdd, PYTHONPATH=/tmp/tb_base) and after (this
tree) on the benchmark's larger networks, interleaved per network so both see the same machine load; seconds =
lowering + certificate (what a user waits for). Writes benchmarks/results/certificates_auto_tb.json.

usage: python benchmarks/compare_auto_tb.py run <old_root> <net>... (child) | python benchmarks/compare_auto_tb.py"""
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NETS = ("resnet_bn_digits", "cnn_avgpool_mnist5k", "cnn_maxpool_mnist16", "resnet_bn_mnist16", "vgg_maxpool_mnist16")


def child(nets):
    import torch

    sys.path.insert(0, HERE)
    import bench_certificates as B
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates import tight
    from probprune.net.trace import from_torch

    torch.set_num_threads(1)
    cache = "/tmp/probprune_bench_cache"
    out = []
    for name, fam, ds, im, build, ep in B._nets():
        if name not in nets:
            continue
        d, model = B._trained(name, ds, im, build, ep, cache)
        model = model.double().eval()
        g = from_torch(model, tuple(d.input_shape))
        rows = json.load(open(os.path.join(cache, "results_issue19", name + ".json")))["fractions"]
        for r in rows:
            masks = B.graph_masks(model, g, r["fraction"])
            load = os.getloadavg()[0]
            t = time.perf_counter()
            F, Fh = lower_graph_pair(g, g.with_masks(masks))
            kw = {"clock_start": t} if "clock_start" in tight.certify_chains.__code__.co_varnames else {}
            c = tight.certify_chains(F, Fh, "auto", 1.0, time_limit=10.0, **kw)
            out.append({"net": name, "family": fam, "fraction": r["fraction"], "seconds": time.perf_counter() - t,
                        "eps": c.eps, "method": c.method, "over_pgd": c.eps / r["pgd_ball"], "load_start": load,
                        "sound": bool(c.eps >= r["pgd_ball"]),
                        "skipped": next((s for s in c.stages if s.get("stage") == "skipped components"), {})})
    print(json.dumps(out))


def main():
    root = os.path.dirname(HERE)
    res = {"old": [], "new": []}
    for net in NETS:
        for which, path in (("old", "/tmp/tb_base"), ("new", root)):
            env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "run", net], env=env, capture_output=True,
                               text=True, cwd="/tmp")
            rows = json.loads(p.stdout.strip().splitlines()[-1])
            res[which] += rows
            for r in rows:
                print(which, r["net"], r["fraction"], f"{r['seconds']:.1f} s", f"{r['over_pgd']:.2f}", r["method"],
                      f"load {r['load_start']:.1f}", flush=True)
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    summ = {w: {"seconds_median": med([r["seconds"] for r in v]), "seconds_max": max(r["seconds"] for r in v),
                "over_pgd_median": med([r["over_pgd"] for r in v]), "all_sound": all(r["sound"] for r in v),
                "per_family": {f: {"over_pgd_median": med([r["over_pgd"] for r in v if r["family"] == f]),
                                   "seconds_max": max(r["seconds"] for r in v if r["family"] == f)}
                               for f in sorted({r["family"] for r in v})}}
            for w, v in res.items()}
    out = {"benchmark": "auto (10 s) before (8fe2fdd) / after (TB) on the 5 larger benchmark networks, interleaved",
           "seconds": "lowering + certificate; old code's limit counts from after the lowering, the new one from before",
           "target_seconds": 10.0, "summary": summ, "rows": res, "load_at_end": os.getloadavg()}
    with open(os.path.join(HERE, "results", "certificates_auto_tb.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps(summ, indent=1))


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        child(sys.argv[2:])
    else:
        main()
