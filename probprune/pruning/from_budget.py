"""Apply exactly what a budget certified (THEORY §3.9b; issue 20 item 1).

A budget (:class:`probprune.budgets.apriori.BudgetResult`, or its ``as_dict()`` / JSON) names the pruning rule its
guarantee is about. :func:`masks_from_budget` turns it into masks (True = kept, the package's convention, §5) by that
rule and no other:

* rule ``exact_k``: magnitude prunes exactly ``max_prunable`` (= ``exact_k``) smallest |w| per layer, ties by
  flat index (the one exact-k rule :func:`probprune.pruning.sampling.exact_k_prune_mask`); random prunes exactly that
  many entries chosen uniformly at random (i.i.d. uniform scores from ``seed``, the same rule);
* rule ``threshold``: prunes |w| < ``threshold`` (the pruned count is random);
* rule ``bernoulli``: prunes each entry independently with probability ``bernoulli_p`` (seeded);
* certified budgets of a given network (``source == "certificate"``, no rule): magnitude prunes the
  ``max_prunable`` smallest |w| (the ordering Cert-D certified, §11.3); random prunes each entry with probability
  ``fraction`` (the Bernoulli masks Cert-R is about).

Anything else (rescaled random, whose kept weights change; a layer the budget does not list; a weight the budget does
not know) is refused with a one-line :class:`ProbPruneError`: nothing is guessed.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from probprune.core.errors import ProbPruneError, check_seed


def _as_dict(budget) -> dict:
    if hasattr(budget, "as_dict"):
        budget = budget.as_dict()
    if not isinstance(budget, Mapping):
        raise ProbPruneError(f"a budget must be a BudgetResult or its as_dict()/JSON, got {type(budget).__name__}")
    if "layers" not in budget or "method" not in budget:
        raise ProbPruneError("not a budget: the 'layers' and 'method' keys are missing")
    return dict(budget)


def budget_rule(budget) -> str:
    """The rule a budget's guarantee is about: its ``rule``; for certified budgets (no rule) exact_k for magnitude
    (Cert-D certifies the k smallest) and bernoulli for random (Cert-R)."""
    b = _as_dict(budget)
    rule = b.get("rule")
    if rule is not None:
        return str(rule)
    if b.get("source") == "certificate":
        from probprune.core.registry import method as registered

        return "bernoulli" if registered(b["method"]).random_mask else "exact_k"
    raise ProbPruneError("the budget names no pruning rule (made before rules were recorded); recompute it")


def _exact_k_pruned(name, L, w, rng, random: bool, recorded: bool):
    """exact_k: exactly k entries, the k smallest |w| or k uniformly random ones (ties by flat index); k is the
    budget's ``exact_k`` where the budget recorded the rule, else its ``max_prunable`` (certified budgets)."""
    from probprune.pruning.sampling import exact_k_prune_mask

    n = w.size
    k = int(L.get("exact_k", L["max_prunable"]) if recorded else L["max_prunable"])
    if not 0 <= k <= n:
        raise ProbPruneError(f"layer {name!r}: exact-k count {k} outside 0..{n}")
    scores = rng.random(n) if random else np.abs(w.ravel())
    return exact_k_prune_mask(scores, k)


def _threshold_pruned(name, L, w, rng, random: bool, recorded: bool):
    """threshold: every |w| < t (the count is random)."""
    t = L.get("threshold")
    if t is None or not math.isfinite(float(t)) or float(t) < 0:
        raise ProbPruneError(f"layer {name!r}: the budget has no threshold for the threshold rule")
    return np.abs(w.ravel()) < float(t)


def _bernoulli_pruned(name, L, w, rng, random: bool, recorded: bool):
    """bernoulli: each entry independently with probability p (seeded)."""
    from probprune.pruning.sampling import bernoulli_keep_mask

    p = L.get("bernoulli_p", L.get("fraction"))
    if p is None or not 0.0 <= float(p) <= 1.0:
        raise ProbPruneError(f"layer {name!r}: the budget has no Bernoulli probability in [0, 1]")
    return ~bernoulli_keep_mask(rng, w.size, float(p))


#: budget rule (THEORY §3.9b; ``budgets.apriori.RULES``) -> the pruned set it certifies for one layer
_RULE_MASKS = {"exact_k": _exact_k_pruned, "threshold": _threshold_pruned, "bernoulli": _bernoulli_pruned}


def masks_from_budget(weights: Mapping[str, np.ndarray], budget, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Keep-masks (bool arrays, True = kept) for ``weights`` (name -> array, the budget's layer names) applying exactly
    the rule the budget certified (module docstring). Layers the budget lists with nothing pruned get all-True masks;
    weights the budget does not list are refused, as are budget layers missing from ``weights`` or of another size.
    ``seed`` drives the random rules (exact-k random, Bernoulli)."""
    from probprune.core.registry import METHODS

    b = _as_dict(budget)
    method = b["method"]
    entry = METHODS.get(method)  # calibrated budgets of the exact-k methods: the same family
    if b.get("kind") == "empirical":
        raise ProbPruneError("an empirical budget certifies nothing (not a guarantee); use a certified, a-priori or "
                             "calibrated budget")
    if entry is None or entry.rescaled or entry.family_model.batched_score is None:  # magnitude or random family
        raise ProbPruneError(f"masks_from_budget applies magnitude or random budgets, not {method!r} (rescaled random "
                             "changes the kept weights as well)")
    rule = budget_rule(b)
    if rule not in _RULE_MASKS:
        raise ProbPruneError(f"unknown budget rule {rule!r}")
    recorded = b.get("rule") is not None  # the budget recorded its rule (certified budgets: none)
    random = entry.random_mask
    if random:
        seed = check_seed(seed)
    layers = {L["name"]: L for L in b["layers"]}
    extra = [n for n in weights if n not in layers]
    if extra:
        raise ProbPruneError(f"weight {extra[0]!r} is not in the budget (layers: {', '.join(layers)})")
    rng = np.random.default_rng(seed if random else 0)
    out = {}
    for name, L in layers.items():
        if name not in weights:
            raise ProbPruneError(f"budget layer {name!r} has no weight in the given weights")
        w = np.asarray(weights[name], dtype=np.float64)
        n = w.size
        if int(L.get("n_weights", n)) != n:
            raise ProbPruneError(f"layer {name!r}: the budget is for {L['n_weights']} weights, the tensor has {n}")
        pruned = _RULE_MASKS[rule](name, L, w, rng, random, recorded)
        out[name] = ~np.asarray(pruned, bool).reshape(w.shape)
    return out


def apply_budget(model, budget, *, seed: int = 0) -> dict:
    """Prune ``model`` (a torch module, in place) by exactly the rule ``budget`` certified (:func:`masks_from_budget`
    on the model's parameters named in the budget). Returns a tidy summary: the rule, and per layer the weights, the
    count the budget allows and the count pruned (for exact-k rules the two are equal)."""
    import torch

    b = _as_dict(budget)
    params = dict(model.named_parameters())
    names = [L["name"] for L in b["layers"]]
    missing = [n for n in names if n not in params]
    if missing:
        raise ProbPruneError(f"the model has no parameter {missing[0]!r} that the budget lists "
                             f"(model weights: {', '.join(n for n in params if n.endswith('weight'))})")
    masks = masks_from_budget({n: params[n].detach().cpu().numpy() for n in names}, b, seed=seed)
    rows = []
    with torch.no_grad():
        for L in b["layers"]:
            m = torch.as_tensor(masks[L["name"]], dtype=torch.bool).reshape(params[L["name"]].shape)
            params[L["name"]].mul_(m.to(params[L["name"]].dtype))
            rows.append({"name": L["name"], "n_weights": int(m.numel()), "max_prunable": int(L["max_prunable"]),
                         "pruned": int((~m).sum())})
    return {"rule": budget_rule(b), "method": b["method"], "seed": int(seed), "layers": rows,
            "total_pruned": sum(r["pruned"] for r in rows), "total_weights": sum(r["n_weights"] for r in rows)}
