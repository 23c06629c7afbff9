"""Memory estimate of a Monte Carlo chunk (probprune.mc.memory.chunk_memory) vs the measured peak resident memory of
the same chunk (probprune.mc.trials.evaluate_unit in a fresh process; ru_maxrss), for the guard of issue 18.

    python benchmarks/bench_mc_memory.py            # every case, one subprocess each -> benchmarks/results/mc_memory.json
    python benchmarks/bench_mc_memory.py C          # one case (prints its JSON line)

Target: the estimate is never below the measured peak (the guard must catch a chunk that does not fit) and not far
above it (it must not refuse sweeps that fit); the ratio is reported per case.
"""
import json
import resource
import subprocess
import sys
from pathlib import Path

CASES = {
    "A": ("linear 512-512-512, 50 nets, magnitude + random",
          dict(widths=[512], depths=[2], n_trials=50, batch_size=50)),
    "B": ("ReLU 64-128-128-10, 50 nets, digits",
          dict(widths=[128], depths=[3], input_dim=64, output_dim=10, activations=["relu"], dataset="digits",
               n_trials=50, batch_size=50, pgd_iters=2, fractions=[0.2], deltas=[0.05])),
    "C": ("ReLU 784-256-10, 20 nets",
          dict(widths=[256], depths=[2], input_dim=784, output_dim=10, activations=["relu"], n_trials=20,
               batch_size=20, pgd_iters=2, fractions=[0.2], deltas=[0.05])),
    "D": ("linear 800-800-800, 10 nets, magnitude",
          dict(widths=[800], depths=[2], n_trials=10, batch_size=10, fractions=[0.2], deltas=[0.05],
               methods=["magnitude"])),
    "E": ("ReLU 100-1000-10, 10 nets",
          dict(widths=[1000], depths=[2], input_dim=100, output_dim=10, activations=["relu"], n_trials=10,
               batch_size=10, pgd_iters=2, fractions=[0.2], deltas=[0.05])),
    "F": ("hold-out: ReLU 200-512-512-10, 16 nets",
          dict(widths=[512], depths=[3], input_dim=200, output_dim=10, activations=["relu"], n_trials=16,
               batch_size=16, pgd_iters=2, fractions=[0.2], deltas=[0.05])),
    "G": ("hold-out: CNN 1x8x8 c8k3p1 max2 fc10, 20 nets, digits",
          dict(cnns=[{"input_shape": [1, 8, 8], "convs": [{"c_out": 8, "kernel": 3, "padding": 1,
                                                           "pool": ["max", 2, 2]}], "fc": [10]}],
               activations=["relu"], dataset="digits", n_trials=20, batch_size=20, pgd_iters=2, fractions=[0.2],
               deltas=[0.05])),
}


def one(key: str) -> dict:
    from probprune.mc import MCConfig
    from probprune.mc.memory import chunk_memory
    from probprune.mc.trials import evaluate_unit

    cfg = MCConfig(**CASES[key][1])
    est = chunk_memory(cfg).total
    evaluate_unit(cfg, 0, 0, 0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"case": key, "what": CASES[key][0], "estimate_MiB": round(est / 2**20, 1),
            "peak_MiB": round(peak / 2**20, 1), "ratio": round(est / peak, 3)}


if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(one(sys.argv[1])))
        sys.exit(0)
    rows = []
    for k in CASES:
        out = subprocess.run([sys.executable, __file__, k], capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    res = {"target": "estimate >= measured peak, ratio reported (A-E fitted, F-G hold-out)", "cases": rows,
           "min_ratio": min(r["ratio"] for r in rows), "max_ratio": max(r["ratio"] for r in rows)}
    Path(__file__).with_name("results").joinpath("mc_memory.json").write_text(json.dumps(res, indent=2) + "\n")
