"""The uniform reference of an optimal tight budget (THEORY.md §11.8): on small chain and residual/BatchNorm networks,
the reported uniform counts are turned into exact-k masks independently (stable argsort of |w|), the named §12 method
(``certify_chains`` on ``lower_graph_pair``) is recomputed from the pruned weights: it equals the reported value when
that value is the search's own, it is <= eps, and a multi-restart PGD on the pruned network (a lower bound on the true
error) stays below it."""
from __future__ import annotations

from .checks_budget_graph import residual_bn_net
from ._core import import_attr, register, require
from .ground_truth import exact_k_masks


@register("budget-uniform-reference-tf", "11.8: optimal tight budget's uniform_counts -> independent exact-k masks; the "
          "named §12 method recomputed == the reported value (search's own) <= eps, >= 64-restart PGD", "§11.8",
          "numeric", covers=["budget-uniform-reference-tf"])
def _chk_uniform_reference():
    torch = __import__("torch")
    nn = torch.nn
    certified_budget = import_attr("probprune.budgets.certified", "certified_budget")
    lower_graph_pair = import_attr("probprune.certificates.lower", "lower_graph_pair")
    certify_chains = import_attr("probprune.certificates.tight", "certify_chains")
    pgd = import_attr("probprune.measure.attack", "pgd_sup_error")
    graph_from_torch = import_attr("probprune.net", "from_torch")

    n = sourced = 0
    for seed, eps in ((0, 0.2), (1, 0.4)):
        res = residual_bn_net(seed)
        mlp = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 8), nn.ReLU(), nn.Linear(8, 3))
        for model, shape in ((res, (5,)), (mlp, (6,))):
            g = graph_from_torch(model.double().eval(), shape)
            for method in ("propagate", "mixed"):
                r = certified_budget(g, eps, tight_method=method, tight_evaluations=4)
                d = r.certificate_detail
                counts, u = d.get("uniform_counts"), d.get("uniform_at_allocation")
                if counts is None or u is None:
                    continue
                require(sum(counts) == r.uniform_total, "uniform_counts do not add up to uniform_total")
                require(u["eps"] <= eps, f"uniform reference certificate {u['eps']} > eps {eps}")
                masks = exact_k_masks(g, counts)
                if "source" in u:
                    m = u["certificate"].split(":", 1)[1]
                    F, Fh = lower_graph_pair(g, g.with_masks(masks))
                    t = certify_chains(F, Fh, m).eps
                    require(abs(t - u["eps"]) <= 1e-12 * max(t, 1e-300), f"recomputed {m} {t} != reported {u['eps']}")
                    sourced += 1
                a = pgd(g.forward, g.with_masks(masks).forward, shape, restarts=64, steps=60, seed=seed).value
                require(a <= u["eps"] * (1 + 1e-9), f"PGD {a} above the uniform reference certificate {u['eps']}")
                n += 1
    require(sourced > 0, "no uniform reference took the search's own value: the statement was not exercised")
    return f"{n} uniform references recertified from independent masks ({sourced} with the search's own value)"
