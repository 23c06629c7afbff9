"""Helpers of ``probprune budget`` / ``bound`` for issue 11 part B: relative tolerances (``--eps-rel``), the calibrated
statement (``--calibrated``), the empirical budget (``--empirical``) and certified accuracy (``--max-acc-drop``).
THEORY.md §10. Kept apart from ``bounds_cmds`` so that the command bodies only call these."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
from rich.console import Console
from rich.table import Table

from probprune.core.errors import ProbPruneError, check_eps

DEFAULT_EPS_REL = 0.1


def resolve_tolerance(eps: Optional[float], eps_rel: Optional[float]) -> tuple[Optional[float], Optional[float]]:
    """(eps, eps_rel): exactly one is set; neither given means the default relative tolerance."""
    if eps is not None and eps_rel is not None:
        raise ProbPruneError("give either --eps (absolute) or --eps-rel (relative to sup ||F||), not both")
    if eps is None and eps_rel is None:
        eps_rel = DEFAULT_EPS_REL
    if eps is not None:
        check_eps(eps)
    if eps_rel is not None and not (0 < eps_rel and math.isfinite(eps_rel)):
        raise ProbPruneError(f"--eps-rel must be a finite number > 0, got {eps_rel}")
    return eps, eps_rel


def spec_eps(spec, law: str, eps: Optional[float], eps_rel: Optional[float], delta: float, gamma: float,
             seed: int) -> tuple[float, Optional[dict]]:
    """eps for a spec: absolute, or eps_rel x the calibrated upper bound of sup||F|| (§10.3)."""
    if eps_rel is None:
        return float(eps), None
    from probprune.budgets.calibrated import output_scale

    sc = output_scale(spec, law, delta, gamma, trials=100, seed=seed + 2)
    e = eps_rel * sc.upper
    return e, {"eps_rel": eps_rel, "eps": e, "reference": "calibrated (1 - delta) quantile bound of a certified "
               "per-draw upper bound of sup_{||x||<=1} ||F(x)|| (THEORY §10.3)", **sc.as_dict(),
               "eps_over_lower": e / sc.lower_median if sc.lower_median > 0 else None}


def spec_extras(spec, eps: float, delta: float, gamma: float, method: str, law: str, calibrated: bool,
                empirical: bool, trials: Optional[int], seed: int, analytic_uniform: float) -> dict:
    """The calibrated and empirical uniform budgets for a spec, and their ratios to the analytic one."""
    from probprune.budgets.calibrated import DrawSet, calibrated_uniform_budget, empirical_uniform_budget
    from probprune.mc.measure import is_linear_fcn

    out: dict = {}
    meth = method
    if calibrated:
        T = trials or 300
        c = calibrated_uniform_budget(spec, eps, delta, gamma, meth, law, T, seed)
        out["calibrated"] = c.as_dict()
    if empirical:
        linear = is_linear_fcn(spec)
        T = trials or (200 if linear else 20)
        e = empirical_uniform_budget(spec, eps, delta, meth, law, T, seed + 1)
        out["empirical"] = e.as_dict()
        qe = e.fraction
        out["empirical"]["ratio_analytic_over_empirical"] = analytic_uniform / qe if qe > 0 else None
        if calibrated:
            out["empirical"]["ratio_calibrated_over_empirical"] = out["calibrated"]["fraction"] / qe if qe > 0 else None
    return out


def load_eval_data(spec, dataset: Optional[str]):
    """Test inputs and labels for certified accuracy (default dataset from the input size, as ``certify``)."""
    from probprune.net.data import load_dataset
    from probprune.net.io import INPUT_DIM_TO_DATASET

    name = dataset or INPUT_DIM_TO_DATASET.get(int(np.prod(spec.input_shape)))
    if not name:
        return None, None, None
    ds = load_dataset(name, images=len(spec.input_shape) == 3)
    return ds.X_test.double().numpy(), ds.y_test.numpy(), name


def trained_extras(parsed, budget_fn, eps: Optional[float], eps_rel: Optional[float], method: str, mode: str,
                   delta: float, X, y, max_acc_drop: Optional[float], empirical: bool, seed: int) -> tuple[dict, float]:
    """For a given network: eps (absolute or relative to its certified sup||F||), the certified budget at it, its
    certified accuracy on (X, y), the accuracy-drop budget, and (``empirical``) the largest uniform fraction whose
    PGD-measured error stays within eps. Returns (the budget dict with extras, eps)."""
    from probprune.budgets.task import budget_for_accuracy_drop, certified_accuracy, network_output_scale, pruned_weights_for

    extra: dict = {}
    if eps_rel is not None:
        sc = network_output_scale(parsed, X)
        eps = eps_rel * sc.upper
        extra["eps_rel"] = {"eps_rel": eps_rel, "eps": eps, "reference": "certified upper bound of "
                            "sup_{||x||<=1} ||F(x)|| (THEORY §10.3)", **sc.as_dict(),
                            "eps_over_lower": eps / sc.lower if sc.lower > 0 else None}
    res = budget_fn(parsed, eps, method, mode, delta=delta)
    d = res.as_dict() | extra
    if X is not None:
        Wh = pruned_weights_for(parsed, [L["max_prunable"] for L in d["layers"]], method, seed)
        d["certified_accuracy"] = certified_accuracy(parsed, Wh, X, y).as_dict()
        if max_acc_drop is not None:
            d["max_acc_drop"] = budget_for_accuracy_drop(parsed, X, y, max_acc_drop, method,
                                                         "optimal" if mode not in ("optimal", "uniform") else mode,
                                                         delta=delta, seed=seed).as_dict()
    if empirical:
        d["empirical"] = trained_empirical(parsed, eps, method, delta, seed)
        qe = d["empirical"]["fraction"]
        d["empirical"]["ratio_certified_over_empirical"] = d["uniform"]["fraction"] / qe if qe > 0 else None
    return d, float(eps)


def trained_empirical(parsed, eps: float, method: str, delta: float, seed: int, trials: int = 20) -> dict:
    """Largest uniform fraction (geometric grid, bisection) whose PGD-measured error (a lower bound on err) is <= eps:
    magnitude (layer-wise exact-k) on the network itself; random in >= 1 - delta of ``trials`` seeded masks."""
    import torch

    from probprune.budgets.apriori import magnitude_prune_count
    from probprune.budgets.calibrated import _largest_ok, fraction_grid
    from probprune.mc.measure import pgd_lower_bound

    spec = parsed.spec
    W = [np.asarray(w, float) for w in parsed.weights]
    biases = None
    if parsed.has_bias:
        biases = [None if b is None else torch.as_tensor(np.asarray(b, float)) for b in parsed.biases]
    n = 1 if method == "magnitude" else trials
    k = 1 if method == "magnitude" else int(math.ceil((1 - delta) * n - 1e-12))
    rng_seed = seed

    def measured(q: float) -> float:
        rng = np.random.default_rng(rng_seed)
        Ws, Whs = [], []
        for L, w in zip(spec.layers, W):
            if method == "magnitude":
                wh = magnitude_prune_count(w, int(math.floor(q * L.N)))[None]
            else:
                wh = w[None] * (rng.random((n, *w.shape)) >= q)
            Ws.append(torch.as_tensor(np.broadcast_to(w, (n, *w.shape)).copy()))
            Whs.append(torch.as_tensor(wh))
        gens = [torch.Generator().manual_seed(seed * 1009 + t) for t in range(n)]
        e = pgd_lower_bound(spec, Ws, Whs, n_random=8, iters=30, basis=False, generators=gens, biases=biases).numpy()
        return float(np.sort(e)[k - 1])

    grid = fraction_grid()
    memo: dict = {}

    def ok(q):
        memo[q] = measured(q)
        return memo[q] <= eps

    j = _largest_ok(grid, ok)
    return {"kind": "empirical", "fraction": float(grid[j]), "measured_at_fraction": memo.get(float(grid[j]), 0.0),
            "trials": n, "per_draw_kind": "PGD lower bound (8 random starts + SVD start, 30 iterations)",
            "statement": "empirical: measured (PGD, a lower bound) error within eps"
            + ("" if method == "magnitude" else f" in >= {k} of {n} masks") + "; not a guarantee"}


# --------------------------------------------------------------------------------------------- rendering
def render_eps_rel(console: Console, er: Optional[dict], what: str) -> None:
    if not er:
        return
    low = er.get("lower_median", er.get("lower"))
    console.print(f"  eps = {er['eps_rel']:g} x {what} sup_(||x||<=1) ||F(x)|| upper bound {er['upper']:.5g} = "
                  f"{er['eps']:.5g}  (lower estimate of sup||F|| {low:.5g}: eps is {er['eps_over_lower'] or float('nan'):.3g} "
                  f"of it; for a bias-free net pruning everything costs sup||F|| >= {low:.5g}, §10.3)", markup=False)


def render_spec_extras(console: Console, d: dict) -> None:
    rows = [("analytic (§3.4/§9, w.p. >= 1 - delta)", d["uniform"]["fraction"], d["uniform"]["total_prunable"], "")]
    if "calibrated" in d:
        c = d["calibrated"]
        rows.append((f"calibrated (§10.2, conf. 1 - {c['gamma']:g}, T = {c['trials']})", c["fraction"],
                     c["total_prunable"], f"rank {c['rank']}/{c['trials']}, err quantile {c['quantile_at_fraction']:.4g}"))
    if "empirical" in d:
        e = d["empirical"]
        rows.append((f"empirical (measured, T = {e['trials']}, not a guarantee)", e["fraction"], e["total_prunable"],
                     e["per_draw_kind"][:40]))
    if len(rows) == 1:
        return
    t = Table(title=f"Uniform budgets at eps = {d['eps']:.5g}, delta = {d['delta']:g}: guaranteed beside empirical")
    for col in ("statement", "fraction", "weights", "note"):
        t.add_column(col, justify="left" if col in ("statement", "note") else "right")
    for r in rows:
        t.add_row(r[0], f"{r[1]:.4%}", f"{r[2]:,}", r[3])
    console.print(t)
    if "empirical" in d and d["empirical"].get("ratio_analytic_over_empirical") is not None:
        e = d["empirical"]
        msg = f"  guaranteed / empirical: analytic {e['ratio_analytic_over_empirical']:.3g}"
        if e.get("ratio_calibrated_over_empirical") is not None:
            msg += f", calibrated {e['ratio_calibrated_over_empirical']:.3g}"
        console.print(msg, markup=False)


def render_trained_extras(console: Console, d: dict) -> None:
    render_eps_rel(console, d.get("eps_rel"), "its certified")
    ca = d.get("certified_accuracy")
    if ca:
        console.print(f"  predictions at this allocation ({ca['n']} test inputs, scaled into the ball by 1/{ca['input_scale']:.4g}): "
                      f"accuracy {ca['accuracy']:.2%}; certified unchanged-and-correct {ca['certified_accuracy']:.2%}; "
                      f"measured accuracy of the pruned net {ca['pruned_accuracy']:.2%}  (margin > sqrt(2) x certified error, §10.4)",
                      markup=False)
    ab = d.get("max_acc_drop")
    if ab:
        chk = ab["check"]
        console.print(f"  certified accuracy may drop by at most {ab['max_acc_drop_points']:g} points: "
                      f"max prunable {ab['budget']['total_prunable']:,} of {ab['budget']['total_weights']:,} weights "
                      f"(tolerance on the scaled net {ab['eps_needed']:.4g}); certified accuracy there "
                      f"{chk['certified_accuracy']:.2%} (accuracy {chk['accuracy']:.2%}, pruned measured "
                      f"{chk['pruned_accuracy']:.2%})", markup=False)
    e = d.get("empirical")
    if e:
        r = e.get("ratio_certified_over_empirical")
        console.print(f"  empirical uniform fraction (PGD-measured error <= eps): {e['fraction']:.4%}"
                      + (f"; certified / empirical = {r:.3g}" if r is not None else ""), markup=False)
