"""Benchmark: seconds per IMP level for LeNet-300-100 on the MNIST 5k subset (issue 3).

One IMP level = magnitude pruning step + rewind + masked retraining for ``--epochs`` epochs (Adam 1.2e-3, batch 60,
4000 training images). Baselines in the same run, same thread count, same epochs:

* ``dense_train``: training the dense network (no mask) -> ratio = masking overhead of our loop;
* ``torch_prune_level``: a level done the way a user would with ``torch.nn.utils.prune`` (``l1_unstructured`` per
  layer with the LTH amounts on the remaining weights, forward-pre-hook reparametrisation, rewind by copying
  ``weight_orig``) and the same training loop.

Writes benchmarks/results/imp.json.    python benchmarks/bench_imp.py [--levels 3] [--epochs 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time

from probprune.core.threads import limit_threads

limit_threads()  # entry point: one BLAS/OpenMP/torch thread unless OMP_NUM_THREADS etc. are set (probprune/core/threads.py)


def main(argv=None) -> dict:
    import torch
    from torch.nn.utils import prune as tprune

    from probprune.net.data import load_dataset
    from probprune.net.zoo import lenet_300_100
    from probprune.pruning.imp import IMPConfig, run_imp
    from probprune.net.train import TrainConfig, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    ds = load_dataset("mnist5k")
    tc = TrainConfig(epochs=a.epochs, seed=0)

    # ours
    m = lenet_300_100(seed=0)
    res = run_imp(m, ds, IMPConfig(levels=a.levels, train=tc))
    level_s = [r["seconds"] for r in res.rows[1:]]

    # baseline 1: dense training, same epochs
    dense_s = []
    for _ in range(2):
        d = lenet_300_100(seed=0)
        t = time.perf_counter()
        train(d, ds, config=tc, eval_each_epoch=False)
        dense_s.append(time.perf_counter() - t)

    # baseline 2: torch.nn.utils.prune level (hooks), same loop
    tp_s = []
    base = lenet_300_100(seed=0)
    theta0 = copy.deepcopy(base.state_dict())
    train(base, ds, config=tc, eval_each_epoch=False)
    amounts = {0: 0.2, 2: 0.2, 4: 0.1}
    for _ in range(a.levels):
        t = time.perf_counter()
        for i, f in amounts.items():
            tprune.l1_unstructured(base[i], "weight", amount=f)  # f of the remaining (torch semantics)
        with torch.no_grad():
            for i in amounts:
                base[i].weight_orig.copy_(theta0[f"{i}.weight"])
                base[i].bias.copy_(theta0[f"{i}.bias"])
        train(base, ds, config=tc, eval_each_epoch=False)
        tp_s.append(time.perf_counter() - t)

    med = statistics.median(level_s)
    out = {
        "task": "IMP level (prune + rewind + retrain) for LeNet-300-100 on mnist5k (4000 train)",
        "epochs_per_level": a.epochs, "levels": a.levels, "threads": a.threads,
        "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
                    "cpus": os.cpu_count(), "loadavg_1min": os.getloadavg()[0]},
        "probprune_seconds_per_level": level_s, "probprune_median_s": med,
        "dense_train_seconds": dense_s, "ratio_level_to_dense_train": med / statistics.median(dense_s),
        "torch_prune_seconds_per_level": tp_s,
        "ratio_level_to_torch_prune_level": med / statistics.median(tp_s),
        "remaining_after_levels": [r["remaining"] for r in res.rows],
        "note": "shared machine: compare ratios from the same run, not absolute seconds across runs",
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "imp.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=2)
    print(f"probprune IMP level: median {med:.2f} s ({a.epochs} epochs); dense training {statistics.median(dense_s):.2f}"
          f" s (ratio {out['ratio_level_to_dense_train']:.2f}); torch.prune level {statistics.median(tp_s):.2f} s "
          f"(ratio {out['ratio_level_to_torch_prune_level']:.2f}); load {out['machine']['loadavg_1min']:.1f}")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
