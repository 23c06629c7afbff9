"""Certified budget inverting the auto rule (THEORY.md §11.7): on small residual/BatchNorm and chain networks, the
reported counts are turned into exact-k masks independently (stable argsort of |w|), Cert-D (``certify_graph``) and the
§12 certificate (``certify_chains`` on ``lower_graph_pair``) are recomputed from the pruned weights, their minimum is
<= eps and equals the reported value, and a multi-restart PGD on the pruned network (a lower bound on the true error)
stays below it."""
from __future__ import annotations

import numpy as np

from ._core import import_attr, register, require
from .ground_truth import exact_k_masks


def residual_bn_net(seed: int):
    """The small residual MLP with BatchNorm (eval statistics drawn from the seed) of the budget checks (§11.7, §11.8)."""
    import torch
    from torch import nn

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.bn = nn.Linear(5, 7), nn.BatchNorm1d(7)
            self.b, self.c, self.o = nn.Linear(7, 7), nn.Linear(7, 7), nn.Linear(7, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.a(x)))
            return self.o(torch.relu(h + self.c(torch.relu(self.b(h)))))

    torch.manual_seed(seed)
    res = Res()
    with torch.no_grad():
        res.bn.running_mean.uniform_(-0.3, 0.3)
        res.bn.running_var.uniform_(0.5, 2.0)
    return res


@register("budget-auto-sound", "11.7: auto-rule budget counts -> independent exact-k masks; min(Cert-D, §12) <= eps, "
          "== the reported value, >= 64-restart PGD (residual + BatchNorm and chain nets)", "§11.7", "numeric",
          covers=["budget-auto-sound"])
def _chk_budget_auto():
    torch = __import__("torch")
    nn = torch.nn
    certified_budget = import_attr("probprune.budgets.certified", "certified_budget")
    certify_graph = import_attr("probprune.certificates.lemma", "certify_graph")
    lower_graph_pair = import_attr("probprune.certificates.lower", "lower_graph_pair")
    certify_chains = import_attr("probprune.certificates.tight", "certify_chains")
    pgd = import_attr("probprune.measure.attack", "pgd_sup_error")
    graph_from_torch = import_attr("probprune.net", "from_torch")

    n = 0
    for seed, eps in ((0, 0.1), (1, 0.4)):
        res = residual_bn_net(seed)
        mlp = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 8), nn.ReLU(), nn.Linear(8, 3))
        for model, shape in ((res, (5,)), (mlp, (6,))):
            g = graph_from_torch(model.double().eval(), shape)
            for mode in ("optimal", "uniform"):
                r = certified_budget(g, eps, mode=mode, tight_method="propagate", tight_evaluations=4)
                counts = [L.max_prunable for L in r.layers]
                masks = exact_k_masks(g, counts)
                d = certify_graph(g, masks).eps
                F, Fh = lower_graph_pair(g, g.with_masks(masks))
                t = certify_chains(F, Fh, "propagate").eps
                v = min(d, t)
                require(v <= eps, f"recomputed certificate {v} > eps {eps}")
                require(abs(v - r.eps_achieved) <= 1e-12 * max(v, 1e-300), f"reported {r.eps_achieved} != {v}")
                a = pgd(g.forward, g.with_masks(masks).forward, shape, restarts=64, steps=60, seed=seed).value
                require(a <= v * (1 + 1e-9), f"PGD {a} above the certificate {v}")
                if mode == "uniform":  # one allocation: the layers are the uniform counts the fraction describes
                    require(counts == list(r.certificate_detail["uniform_counts"]) and sum(counts) == r.uniform_total,
                            f"uniform mode: layers {counts} != uniform counts {r.certificate_detail['uniform_counts']}")
                n += 1
    return f"{n} budgets (residual+BatchNorm and MLP, optimal and uniform) recertified from independent masks"
