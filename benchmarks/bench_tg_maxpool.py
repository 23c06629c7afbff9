"""Issue 19, helper TG: ``certify --bound auto`` (10 s, one BLAS thread) before and after this branch's changes
(THEORY §12.11: Statement 12.50, cheaper certified stage norms; Statement 12.51, the mixed bound without propagation
as auto's fallback for mixed_none) on the benchmark's max-pool CNNs and residual nets, in one run.

Each certificate runs in a fresh process (no warm bound cache), "before" with the code of the commit this branch
started from (extracted with ``git archive`` into a temporary folder), "after" with this tree; the two alternate per
row, with os.getloadavg() recorded next to each time. The PGD values (128 restarts x 100 iterations) are the stored
ones of benchmarks/bench_certificates.py (<cache>/results_issue19/<net>.json), not recomputed. Writes
benchmarks/results/certificates_tg.json. ``--diagnose``: the per-stage diagnostics (see :func:`diagnose`).
Usage: bench_tg_maxpool.py [--diagnose | NET ...]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

BASE_COMMIT = "747a3b4"
NETS = ("lenet5_maxpool_digits", "cnn_maxpool_mnist16", "vgg_maxpool_mnist16", "resnet_bn_digits",
        "resnet_bn_mnist16")
TIME_LIMIT = 10.0
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def worker(name: str, q: float) -> dict:
    import numpy as np  # noqa: F401
    import torch

    import probprune
    from probprune.core.threads import limit_threads

    limit_threads(1)
    torch.set_num_threads(1)
    sys.path.insert(0, HERE)
    import bench_certificates as bc
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.net.trace import from_torch

    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    for n, fam, ds_, im, build, ep in bc._nets():
        if n == name:
            break
    else:
        raise SystemExit(f"unknown network {name}")
    ds, model = bc._trained(n, ds_, im, build, ep, cache)
    model = model.double().eval()
    g = from_torch(model, tuple(ds.input_shape))
    gh = g.with_masks(bc.graph_masks(model, g, q))
    load = os.getloadavg()
    t = time.perf_counter()
    F, Fh = lower_graph_pair(g, gh)
    t_lower = time.perf_counter() - t
    c = certify_chains(F, Fh, "auto", 1.0, time_limit=TIME_LIMIT, clock_start=t)
    secs = time.perf_counter() - t
    return {"eps": c.eps, "method": c.method, "seconds": secs, "lower_seconds": t_lower,
            "components": c.components, "load_start": load, "load_end": os.getloadavg(),
            "skipped": next((x for x in c.stages if x.get("stage") == "skipped components"), {}),
            "notes": [x for x in c.stages if "without propagation" in str(x.get("stage", ""))],
            "code": os.path.dirname(probprune.__file__)}


def _run(code_root: str, name: str, q: float) -> dict:
    env = dict(os.environ, PYTHONPATH=code_root, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", name, str(q)], env=env,
                         capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=600)
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"rc {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(names) -> dict:
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    before_root = tempfile.mkdtemp(prefix="tg_before_")
    subprocess.run(f"git -C {ROOT} archive {BASE_COMMIT} probprune | tar -x -C {before_root}", shell=True,
                   check=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "probprune"], capture_output=True,
                                text=True).stdout.strip())
    rows = []
    k = 0
    for name in names:
        stored = json.load(open(os.path.join(cache, "results_issue19", f"{name}.json")))
        for r in stored["fractions"]:
            q, pgd = r["fraction"], r["pgd_ball"]
            order = ("before", "after") if k % 2 == 0 else ("after", "before")
            k += 1
            res = {}
            for which in order:
                res[which] = _run(before_root if which == "before" else ROOT, name, q)
            row = {"network": name, "fraction": q, "pgd_ball": pgd, "order": list(order),
                   "after_code": commit + (" (uncommitted changes)" if dirty else "")}
            for which in ("before", "after"):
                x = res[which]
                row[which] = x
                if "eps" in x:
                    x["over_pgd"] = x["eps"] / pgd
                    x["sound"] = bool(x["eps"] >= pgd)
            rows.append(row)
            b, a = row["before"], row["after"]
            print(f"{name} q={q}: before {b.get('over_pgd', float('nan')):.2f}x ({b.get('method')}, "
                  f"{b.get('seconds', float('nan')):.1f} s) after {a.get('over_pgd', float('nan')):.2f}x "
                  f"({a.get('method')}, {a.get('seconds', float('nan')):.1f} s) load {a.get('load_start', [0])[0]:.1f}",
                  flush=True)
    path = os.path.join(HERE, "results", "certificates_tg.json")
    prev = json.load(open(path)) if os.path.exists(path) else {}
    rerun = {(r["network"], r["fraction"]) for r in rows}
    kept = [r for r in prev.get("rows", []) if (r["network"], r["fraction"]) not in rerun]  # rows of earlier runs
    rows = kept + rows
    ok = [r for r in rows if "eps" in r["before"] and "eps" in r["after"]]
    fam = {"cnn": ("lenet5_maxpool_digits", "cnn_maxpool_mnist16", "vgg_maxpool_mnist16"),
           "residual": ("resnet_bn_digits", "resnet_bn_mnist16")}
    summary = {
        "rows": len(rows),
        "all_sound": all(r["after"].get("sound", False) and r["before"].get("sound", False) for r in ok),
        "median_over_pgd": {w: statistics.median(r[w]["over_pgd"] for r in ok) for w in ("before", "after")} if ok
        else {},
        "per_network_family_median": {
            f: {w: statistics.median(r[w]["over_pgd"] for r in ok if r["network"] in ns) for w in ("before", "after")}
            for f, ns in fam.items() if any(r["network"] in ns for r in ok)},
        "seconds_max": {w: max(r[w]["seconds"] for r in ok) for w in ("before", "after")} if ok else {},
        "targets": {"median_over_pgd_per_family": 2.5, "auto_seconds": 10.0,
                    "note": "family medians here are over the max-pool / residual rows of this subset only (the "
                            "avg-pool CNNs and MLPs are not rerun: unchanged by this branch where mixed_none "
                            "finishes)"},
    }
    out = {"benchmark": "issue 19 helper TG: auto (10 s, one BLAS thread) before / after, same run",
           "statements": "THEORY §12.11: Statement 12.50 (stage norms), Statement 12.51 (mixed without propagation)",
           "before_code": BASE_COMMIT, "after_code": "per row (after_code): rows of a network rerun replace the "
                                                     "earlier ones",
           "pgd": "stored 128-restart x 100-iteration PGD of bench_certificates (results_issue19)",
           "rows": rows, "summary": summary, "environment": {"python": sys.version.split()[0],
                                                             "cpu_count": os.cpu_count()}}
    if "diagnostics" in prev:
        out["diagnostics"] = prev["diagnostics"]
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps(summary, indent=1, default=float))
    return out


def diagnose(names=("lenet5_maxpool_digits", "cnn_maxpool_mnist16", "vgg_maxpool_mnist16"), q: float = 0.6,
             n_samples: int = 512) -> dict:
    """Where the mixed bound (single-norm slope products, Statement 12.33 (a)) loses on the max-pool CNNs: per stage
    with an error, the propagated bounds V_i >= sup ||v_i|| and beta_i >= sup ||shat_i|| (CROWN, Statements 12.5-12.6)
    against lower bounds from sampled inputs (the centre and n_samples points on the unit sphere), and the terms with
    and without propagation (Statement 12.51). Adds "diagnostics" to benchmarks/results/certificates_tg.json."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, HERE)
    import bench_certificates as bc
    from probprune.certificates.compose import stage_norms
    from probprune.certificates.lower import lower_graph_pair, stage_diff
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import CoupledPropagator, Region
    from probprune.net.trace import from_torch

    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    out = {}
    for n, fam, ds_, im, build, ep in bc._nets():
        if n not in names:
            continue
        ds, model = bc._trained(n, ds_, im, build, ep, cache)
        model = model.double().eval()
        g = from_torch(model, tuple(ds.input_shape))
        F, Fh = lower_graph_pair(g, g.with_masks(bc.graph_masks(model, g, q)))
        nrm = stage_norms(F, Fh)
        reg = Region(np.zeros((1, F.n_in)), 1.0, "l2")
        prop = CoupledPropagator(F, Fh, reg, modes="hat")
        a = lemma_a_mixed(F, Fh, reg, prop, norms=nrm, pair_bounds="none")
        b = lemma_a_mixed(F, Fh, reg, None, norms=nrm, pair_bounds="none", propagation=False)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(n_samples, F.n_in))
        X = np.vstack([np.zeros((1, F.n_in)), X / np.linalg.norm(X, axis=1, keepdims=True)])
        s, stages = X, []
        for i in range(F.depth):
            E, db = stage_diff(F, Fh, i)
            if np.any(E) or np.any(db):
                lbV = float(np.linalg.norm(s @ E.T + db, axis=1).max())
                lbB = float(np.linalg.norm(s, axis=1).max())
                stages.append({"stage": i, "name": F.stages[i].name, "term_propagated": a.terms[i],
                               "term_without_propagation": b.terms[i], "slope_product_bound": a.Pi[i],
                               "V_crown": a.V[i], "V_sampled_lower": lbV,
                               "beta_prev_bound": a.beta[i - 1] if i > 0 else None,
                               "beta_prev_sampled_lower": lbB if i > 0 else None})
            if i < F.depth - 1:
                st = Fh.stages[i]
                z = s @ st.M.T + st.b
                s = np.where(st.relu, np.maximum(z, 0.0), z)
        out[n] = {"fraction": q, "mixed_none_propagated": a.eps, "mixed_none_without_propagation": b.eps,
                  "stages": stages}
        print(n, json.dumps(out[n], default=float)[:600], flush=True)
    path = os.path.join(HERE, "results", "certificates_tg.json")
    res = json.load(open(path)) if os.path.exists(path) else {}
    res["diagnostics"] = {"what": diagnose.__doc__.split("\n\n")[0].strip(), "region": "unit l2 ball at the origin",
                          "networks": out}
    with open(path, "w") as f:
        json.dump(res, f, indent=1, default=float)
    return out


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--worker":
        print(json.dumps(worker(sys.argv[2], float(sys.argv[3])), default=float))
    elif sys.argv[1:2] == ["--diagnose"]:
        diagnose()
    elif any(a.startswith("-") for a in sys.argv[1:]):
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    else:
        main(tuple(sys.argv[1:]) or NETS)
