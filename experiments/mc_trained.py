"""Monte Carlo on a fixed *trained* network (THEORY §3.11 Cert-R, §6): train an MLP 64-128-64-10 (biases) on
sklearn digits, save it, then redraw random masks 200 times per setting and check Cert-R's violation rate against
delta; magnitude (exact-k) pruning gets the Cert-D bracket. Also reports the average error on the digits test set.

    python experiments/mc_trained.py [--out results/mc]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from probprune.net.data import load_dataset
from probprune.mc import MCConfig, load_run, run
from probprune.net.zoo import mlp
from probprune.net.train import evaluate, train


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/mc")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset("digits", seed=0)
    model = mlp([64, 128, 64, 10], bias=True, activation="relu", seed=0)
    train(model, ds, epochs=20, lr=1e-3, batch_size=64, seed=0, eval_each_epoch=False)
    acc = evaluate(model, ds.X_test, ds.y_test)
    path = Path(a.out).parent / "mc_models" / "digits_mlp_64-128-64-10.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model, path)
    print(f"trained MLP 64-128-64-10 on digits: test accuracy {acc:.4f}; saved {path}")
    cfg = MCConfig(name="mc_trained", models=(str(path),), methods=("random", "random_rescaled", "magnitude_exact"),
                   fractions=(0.05, 0.2), deltas=(0.05,), n_trials=200, batch_size=50, pgd_iters=30,
                   dataset="digits", dataset_n=256)
    res = run(cfg, out_root=a.out, workers=1)
    print(f"run folder {res.run_dir} ({res.seconds:.1f} s)")
    return res.run_dir


if __name__ == "__main__":
    main()
