"""Cases of the Monte Carlo before/after identity test (issue 22, TE): small sweeps over a grid FCN, a linear FCN, a
CNN, a chain model file (biased MLP), a bias-free FCN model file and a graph model file (residual + BatchNorm), every
method family. ``python tests/te_mc_identity_cases.py OUT.pkl`` writes the frames (the reference at the commit before
the Monte Carlo engine read the graph directly)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

METHODS = ("magnitude", "magnitude_exact", "random", "random_rescaled", "random_exact", "lib_magnitude_layer",
           "lib_random_erk", "lib_structured_l1")


class ResBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.bn0 = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.fc = nn.Linear(27, 4)

    def forward(self, x):
        h = F.relu(self.bn0(self.stem(x)))
        h = F.relu(h + self.bn1(self.conv(h)))
        return self.fc(torch.flatten(F.max_pool2d(h, 2), 1))


def write_models(folder: Path) -> dict:
    """The model files of the cases (fixed seeds): {name: path}."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(5)
    mlp = nn.Sequential(nn.Linear(8, 12), nn.Sigmoid(), nn.Linear(12, 3)).double().eval()
    fcn = nn.Sequential(nn.Linear(8, 10, bias=False), nn.ReLU(), nn.Linear(10, 3, bias=False)).double().eval()
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(18, 3)).double().eval()
    m = ResBN()
    for bn in (m.bn0, m.bn1):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    out = {}
    for name, mod in (("mlp", mlp), ("fcn", fcn), ("cnn", cnn), ("resbn", m.double().eval())):
        p = folder / f"{name}.pt"
        torch.save(mod, p)
        out[name] = str(p)
    return out


def configs(models: dict) -> dict:
    from probprune.mc import MCConfig

    base = dict(fractions=(0.1, 0.3), deltas=(0.1,), n_trials=3, batch_size=2, pgd_starts=64, pgd_iters=4)
    cnn = {"input_shape": [1, 6, 6], "convs": [{"c_out": 2, "kernel": 3, "padding": 1, "pool": ["max", 2, 2]}],
           "fc": [3]}
    return {
        "grid_relu": MCConfig(widths=(6,), depths=(2,), input_dim=5, output_dim=3, activations=("relu", "tanh"),
                              laws=("uniform", "gaussian"), methods=METHODS, **base),
        "linear": MCConfig(archs=((5, 6, 4),), activations=("identity",), methods=METHODS, **base),
        "cnn": MCConfig(cnns=(cnn,), activations=("relu",), methods=METHODS, **base),
        "models": MCConfig(models=(models["mlp"], models["fcn"],
                                   {"path": models["resbn"], "input_shape": [1, 6, 6]}), methods=METHODS, **base),
        "cnn_model": MCConfig(models=({"path": models["cnn"], "input_shape": [1, 6, 6]},), methods=METHODS, **base),
        "digits": MCConfig(archs=((64, 10, 3),), activations=("relu",), laws=("gaussian",), dataset="digits",
                           dataset_n=32, methods=("magnitude", "random_exact", "lib_random_erk"), **base),
    }


def frames(models: dict) -> dict:
    """{case: (rows of every (group, block), check_bounds notes)} for the configs above."""
    import pandas as pd

    from probprune.mc.trials import check_bounds, evaluate_unit, groups, n_blocks

    out = {}
    for name, cfg in configs(models).items():
        rows = [evaluate_unit(cfg, s, g.index, b) for s in cfg.seeds for g in groups(cfg) for b in range(n_blocks(cfg))]
        out[name] = (pd.concat(rows, ignore_index=True), check_bounds(cfg))
    return out


if __name__ == "__main__":
    import pickle
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    import te_mc_identity_cases as cases  # the pickled ResBN names this module (not __main__): same file md5

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        res = cases.frames(cases.write_models(Path(d)))
    Path(sys.argv[1]).write_bytes(pickle.dumps({k: (df, notes) for k, (df, notes) in res.items()}))
    print({k: len(df) for k, (df, _) in res.items()})
