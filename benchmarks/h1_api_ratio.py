"""Benchmark (H1, issue 22 acceptance): certified / empirical uniform fraction of ``probprune.budget`` on trained
networks at ``eps_rel = 0.1``, through the library call that ``probprune budget --model`` renders.

Networks (seed 0): the ``make run`` LeNet-300-100 (bias-free, 1 epoch on MNIST 5k), a digits MLP 64-64-32-10, a
digits CNN with max pooling, a digits residual MLP with BatchNorm. For each: the certified best uniform fraction
(``budget["uniform"]["fraction"]``: the largest common fraction whose inverted certificate is <= eps), the empirical
uniform fraction (largest grid fraction whose PGD-measured error is <= eps; a lower bound on the error, so an
optimistic reference, not a guarantee), their ratio, which certificate was inverted, and the wall time.
"Before" in the same run: whether the pre-issue chain view (``parsed_from_graph``, what ``budget --model`` read)
accepts the network at all. Targets (issue 22): ratio >= 0.6 on the MLPs, >= 0.4 on the CNN and the residual net.
Writes benchmarks/results/h1_api_ratio.json.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

from probprune.core.threads import limit_threads

limit_threads()

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import probprune  # noqa: E402
from probprune.net.data import load_dataset  # noqa: E402
from probprune.net.train import evaluate, train  # noqa: E402

TARGETS = {"lenet_300_100": 0.6, "digits_mlp": 0.6, "digits_cnn": 0.4, "digits_residual_bn": 0.4}


class ResBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 64)
        self.bn = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, 64)
        self.out = nn.Linear(64, 10)

    def forward(self, x):
        h = F.relu(self.bn(self.fc1(x)))
        h = h + F.relu(self.fc2(h))
        return self.out(h)


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 2, 10))


def _trained(name: str):
    if name == "lenet_300_100":
        from probprune.budgets.task import train_demo

        return train_demo(0)
    images = name == "digits_cnn"
    ds = load_dataset("digits", seed=0, images=images)
    torch.manual_seed(0)
    model = {"digits_mlp": lambda: nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                                                 nn.Linear(32, 10)),
             "digits_cnn": _cnn, "digits_residual_bn": ResBN}[name]()
    train(model, ds, epochs=15, seed=0, eval_each_epoch=False)
    model.eval()
    return model, float(evaluate(model, ds.X_test, ds.y_test))


def main(names=None) -> dict:
    rows = []
    for name in names or list(TARGETS):
        model, acc = _trained(name)
        shape = (1, 8, 8) if name == "digits_cnn" else None
        g = probprune.api.read_network(model, None, shape).graph
        from probprune.net.templates import parsed_from_graph

        try:
            parsed_from_graph(g)
            before = "accepted (chain)"
        except probprune.ProbPruneError as e:
            before = f"refused: {str(e)[:120]}"
        t0 = time.perf_counter()
        rep = probprune.budget(g, eps_rel=0.1, empirical=True, seed=0, data=None if shape is None else "digits")
        sec = time.perf_counter() - t0
        q_c, q_e = rep.budget["uniform"]["fraction"], rep.empirical["fraction"]
        ratio = q_c / q_e if q_e > 0 else None
        rows.append({"network": name, "test_accuracy": acc, "eps": rep.eps, "certified_uniform_fraction": q_c,
                     "empirical_uniform_fraction": q_e, "ratio_certified_over_empirical": ratio,
                     "target": TARGETS[name], "met": ratio is not None and ratio >= TARGETS[name],
                     "inverted_certificate": rep.inverted_certificate, "total_prunable_optimal": rep.total_prunable,
                     "eps_rel_reference": rep.eps_rel["reference"], "before_chain_view": before, "seconds": sec})
        print(json.dumps(rows[-1]), flush=True)
    return {"benchmark": "h1_api_ratio", "python": sys.version.split()[0], "machine": platform.machine(),
            "rows": rows}


if __name__ == "__main__":
    out = main(sys.argv[1:] or None)
    p = Path(__file__).parent / "results" / "h1_api_ratio.json"
    p.write_text(json.dumps(out, indent=2))
    print(f"wrote {p}")
