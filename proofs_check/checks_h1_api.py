"""THEORY.md Statement 10.3c (H1, issue 22): sup ||F|| <= Cert-D(F, F_0) + ||F_0(0)|| on traced graphs whose input
feeds only weight layers (F_0: every weight zeroed, a constant map). Bridge to probprune.budgets.task."""
from __future__ import annotations

import numpy as np

from ._core import ProofFailure, register, require


def _res_bn(seed: int, din: int = 6):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(din, 8)
            self.bn = nn.BatchNorm1d(8)
            self.fc2 = nn.Linear(8, 8)
            self.out = nn.Linear(8, 3)

        def forward(self, x):
            h = F.relu(self.bn(self.fc1(x)))
            h = h + 0.5 * F.relu(self.fc2(h))
            return self.out(h)

    torch.manual_seed(seed)
    m = M().eval()
    with torch.no_grad():
        m.bn.running_var.uniform_(0.3, 2.0)
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.bias.uniform_(-0.5, 0.5)
    return m


@register("graph-scale", "Statement 10.3c: F_0 (zero weights) is constant when the input feeds only weight layers; "
          "sup_{||x||<=1} ||F|| <= Cert-D(F, F_0) + ||F_0(0)|| on residual + BatchNorm graphs (sampled points and "
          "PGD stay below); an input feeding a residual addition is refused", "§10.3", "numeric",
          covers=("graph-scale",), kind="bridge")
def _chk_graph_scale():
    import torch

    from probprune.budgets.task import graph_output_scale
    from probprune.core.errors import ProbPruneError
    from probprune.measure.attack import pgd_sup_error
    from probprune.net import from_torch

    worst = 0.0
    rng = np.random.default_rng(0)
    for seed in range(4):
        g = from_torch(_res_bn(seed), (6,))
        sc = graph_output_scale(g)
        G0 = g.with_weights({k: np.zeros_like(w) for k, w in g.weights.items()})
        x = torch.as_tensor(rng.normal(size=(3000, 6)))
        x = x / x.norm(dim=1, keepdim=True) * torch.as_tensor(rng.random((3000, 1))) ** (1 / 6)
        with torch.no_grad():
            c = G0.forward(x)
            require(bool(torch.allclose(c, c[:1].expand_as(c), rtol=0, atol=1e-12)), "F_0 is constant")
            val = float(g.forward(x).norm(dim=1).max())
        zero = lambda z: torch.zeros_like(g.forward(z))  # noqa: E731
        pgd = pgd_sup_error(g.forward, zero, (6,), restarts=32, steps=60, seed=seed).value
        m = max(val, pgd)
        require(m <= sc.upper, f"sampled/PGD ||F|| {m} > bound {sc.upper}")
        worst = max(worst, m / sc.upper)

    class Skip(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(6, 6)

        def forward(self, x):
            return x + torch.relu(self.fc(x))

    try:
        graph_output_scale(from_torch(Skip().eval(), (6,)))
    except ProbPruneError:
        pass
    else:
        raise ProofFailure("an input feeding a residual addition (F_0 not constant) must be refused")
    return f"max (sampled, PGD) / bound = {worst:.3f} over 4 residual+BatchNorm graphs; skip-from-input refused"
