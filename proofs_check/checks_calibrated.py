"""THEORY.md §10 (calibrated, relative and task-level statements): the order-statistic rank, the grid union bound, the
output-scale recursion, the exact sqrt(2) margin condition, scaling into the ball, the accuracy-drop tolerance and the
optimal a-priori inversion's delta split. Bridges call probprune.budgets.calibrated / taskbudget / budget."""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy import stats

from ._core import ProofFailure, close, register, require, sym_zero


@register("calib-rank", "Statement 10.1: k = min{k : binom.cdf(k-1,T,1-delta) >= 1-gamma} gives P(U_(k) < Q) <= gamma; "
          "exists iff (1-delta)^T <= gamma", "§10.1", "symbolic+numeric", covers=("calib-order-stat", "calib-overview"))
def _chk_rank():
    from probprune.budgets.calibrated import min_trials, order_statistic_rank

    # symbolic: P(Bin(T, pi) >= k) is non-decreasing in pi (derivative = T C(T-1,k-1) pi^(k-1)(1-pi)^(T-k) >= 0)
    p = sp.Symbol("p", positive=True)
    for T, k in ((5, 3), (7, 7), (6, 1)):
        tail = sum(sp.binomial(T, j) * p**j * (1 - p) ** (T - j) for j in range(k, T + 1))
        sym_zero(sp.diff(tail, p) - T * sp.binomial(T - 1, k - 1) * p ** (k - 1) * (1 - p) ** (T - k),
                 f"d/dp P(Bin({T},p) >= {k})")
    # the rank and its existence condition
    for T, d, g in ((59, 0.05, 0.05), (300, 0.05, 0.05), (300, 0.05, 0.05 / 257), (1000, 0.01, 0.05), (2000, 0.5, 1e-6)):
        if (1 - d) ** T > g:
            try:
                order_statistic_rank(T, d, g)
            except Exception:
                pass
            else:
                raise ProofFailure(f"rank returned for T={T} below min_trials")
            continue
        k = order_statistic_rank(T, d, g)
        require(stats.binom.cdf(k - 1, T, 1 - d) >= 1 - g, f"coverage at k={k}")
        require(k == 1 or stats.binom.cdf(k - 2, T, 1 - d) < 1 - g, f"k={k} is the smallest")
    require(min_trials(0.05, 0.05) == 59 and (0.95 ** 59 <= 0.05 < 0.95 ** 58), "T_min(0.05, 0.05) = 59")
    # Monte Carlo of the statement with a discrete-continuous U (an atom at the quantile is the hard case)
    rng = np.random.default_rng(0)
    T, d, g, R = 120, 0.05, 0.1, 20000
    k = order_statistic_rank(T, d, g)
    for name, draw, Q in (("exp", lambda n: rng.exponential(size=n), -math.log(d)),
                          ("atom", lambda n: np.where(rng.random(n) < 0.96, 0.0, 1.0 + rng.random(n)), 0.0)):
        U = np.sort(draw((R, T)), axis=1)[:, k - 1]
        fail = np.mean(U < Q)
        ub = stats.beta.ppf(1 - 1e-6, fail * R + 1, R - fail * R) if fail < 1 else 1.0
        require(fail <= g or ub >= g, f"{name}: P(U_(k) < Q) = {fail} vs gamma {g}")
        require(fail <= g + 4 * math.sqrt(g * (1 - g) / R), f"{name}: simulated failure {fail} > gamma {g}")
    return f"tail monotone in p (symbolic); ranks minimal; MC failure rates <= gamma (k={k} of {T})"


@register("calib-grid", "Statement 10.2: union bound over the fixed grid; the budget search uses rank(T, delta, "
          "gamma/|grid|) and returns a grid point satisfying the order-statistic check", "§10.2", "numeric",
          covers=("calib-grid-union",), kind="bridge")
def _chk_grid():
    from probprune.budgets.calibrated import calibrated_uniform_budget, fraction_grid, order_statistic_rank
    from probprune.net.templates import fcn_spec

    grid = fraction_grid(1e-3, 4)
    require(grid[0] == 0 and len(grid) == 18 and np.all(np.diff(grid) > 0) and abs(grid[-1] - 1) < 1e-12, "grid")
    spec = fcn_spec([6, 8, 3], "identity", 1.0)
    r = calibrated_uniform_budget(spec, 0.2, 0.1, 0.1, "magnitude", "uniform", trials=200, seed=3, q_min=1e-3, depth=4,
                                  pilot_trials=None)
    require(r.grid_points == 17, "grid points")
    require(r.rank == order_statistic_rank(200, 0.1, 0.1 / 17), "rank uses gamma/|grid|")
    require(r.fraction == 0 or r.quantile_at_fraction <= 0.2, "returned point satisfies the check")
    require(any(abs(r.fraction - q) < 1e-15 for q in grid), "returned fraction is a grid point")
    return f"rank {r.rank}/200 at gamma/17; fraction {r.fraction:.4g}"


@register("scale-recursion", "Statement 10.3: ||F(x)|| <= b_l (activation-norm recursion with biases) on the unit "
          "ball; Lip prod||W_i|| for bias-free nets; data directions give lower bounds", "§10.3", "numeric",
          covers=("rel-scale",), kind="bridge")
def _chk_scale():
    import torch

    from probprune.net.templates import ParsedModel, fcn_spec, sample_weights
    from probprune.budgets.task import _torch_model, network_output_scale

    rng = np.random.default_rng(5)
    worst = 0.0
    for widths, act, bias in (([5, 7, 3], "relu", True), ([4, 6, 6, 2], "tanh", True), ([6, 5, 4], "relu", False)):
        spec = fcn_spec(widths, act, 1.0)
        W = sample_weights(spec, rng)
        b = [rng.normal(size=L.d_out) if bias else None for L in spec.layers]
        pm = ParsedModel(spec, W, b, [L.name for L in spec.layers])
        X = rng.normal(size=(200, widths[0]))
        sc = network_output_scale(pm, X)
        m = _torch_model(pm)
        x = torch.as_tensor(rng.normal(size=(4000, widths[0])))
        x = x / x.norm(dim=1, keepdim=True) * torch.as_tensor(rng.random((4000, 1))) ** (1 / widths[0])
        with torch.no_grad():
            val = float(m(x).norm(dim=1).max())
        require(val <= sc.upper * (1 + 1e-9), f"sampled ||F|| {val} > b_l {sc.upper}")
        require(sc.lower <= sc.upper * (1 + 1e-9), "lower <= upper")
        worst = max(worst, val / sc.upper)
        if not bias and act == "relu":
            nW = [np.linalg.norm(w, 2) for w in W]
            close(sc.upper, float(np.prod(nW)), rtol=1e-6, what="bias-free recursion = prod norms")
    return f"sampled / b_l <= {worst:.3f}"


@register("margin-sqrt2", "Statement 10.4a: argmax(z+d) = {c} for all ||d|| <= e iff margin > sqrt(2) e (exact)",
          "§10.4", "symbolic+numeric", covers=("margin-sqrt2",))
def _chk_margin():
    from probprune.budgets.task import prediction_stable

    # symbolic: ||e_c - e_j||^2 = 2 and the extremal d attains m - sqrt(2) e
    e, m = sp.symbols("e m", positive=True)
    ec, ej = sp.Matrix([1, 0, 0]), sp.Matrix([0, 1, 0])
    sym_zero((ec - ej).dot(ec - ej) - 2, "||e_c - e_j||^2")
    d = e / sp.sqrt(2) * (ej - ec)
    sym_zero(d.dot(d) - e**2, "||d|| = e")
    z = sp.Matrix([m, 0, -1])  # top class 0, runner-up 1, margin m
    zz = z + d
    sym_zero((zz[0] - zz[1]) - (m - sp.sqrt(2) * e), "extremal gap")
    # numeric: sufficiency on random perturbations, exactness at the boundary
    rng = np.random.default_rng(1)
    for _ in range(200):
        C = int(rng.integers(2, 12))
        zv = rng.normal(size=C) * 3
        c = int(np.argmax(zv))
        mar = zv[c] - np.max(np.delete(zv, c))
        ev = float(rng.random() * 2)
        stable = bool(prediction_stable(zv[None], ev)[0])
        require(stable == (mar > math.sqrt(2) * ev), "prediction_stable implements the condition")
        if stable:
            D = rng.normal(size=(500, C))
            D = D / np.linalg.norm(D, axis=1, keepdims=True) * ev
            require(np.all(np.argmax(zv[None] + D, 1) == c), "sufficiency")
        else:
            j = int(np.argsort(zv)[-2])
            dv = np.zeros(C)
            dv[j], dv[c] = ev / math.sqrt(2), -ev / math.sqrt(2)
            zz = zv + dv
            require(zz[j] >= zz[c] - 1e-12, "necessity: the extremal d ties or flips")
    return "symbolic extremal direction; 200 random logit vectors"


@register("ball-scaling", "Statement 10.4b: G(u) = F(su) via s W_1; certificate of G bounds err on ||x|| <= s; "
          "homogeneous bias-free nets: err(x) <= (||x||/s) e_G", "§10.4", "numeric", covers=("ball-scaling",),
          kind="bridge")
def _chk_ball():
    import torch

    from probprune.budgets.apriori import magnitude_prune_count
    from probprune.certificates.lemma import certify
    from probprune.net.templates import ParsedModel, fcn_spec, sample_weights
    from probprune.budgets.task import _torch_model, scaled_into_ball

    rng = np.random.default_rng(2)
    for bias in (False, True):
        spec = fcn_spec([5, 9, 4], "relu", 1.0)
        W = sample_weights(spec, rng)
        b = [rng.normal(size=L.d_out) * 0.3 if bias else None for L in spec.layers]
        pm = ParsedModel(spec, W, b, [L.name for L in spec.layers])
        X = rng.normal(size=(300, 5)) * 4
        G, s, r = scaled_into_ball(pm, X)
        Wh = [magnitude_prune_count(w, w.size // 3) for w in W]
        Gh = list(Wh)
        Gh[0] = Gh[0] * s
        eG = certify(G.spec, G.weights, Gh, G.biases).eps
        F, Fh, Gm = _torch_model(pm), _torch_model(pm, Wh), _torch_model(G)
        x = torch.as_tensor(X)
        with torch.no_grad():
            close(Gm(x / s).numpy(), F(x).numpy(), rtol=1e-10, what="G(x/s) = F(x)")
            err = (F(x) - Fh(x)).norm(dim=1).numpy()
        bound = eG * r if not bias else np.full(len(r), eG)
        require(np.all(err <= bound * (1 + 1e-9)), f"err {err.max()} above the scaled certificate")
    return "G(x/s) = F(x); per-input errors <= scaled certificate (with and without biases)"


@register("acc-drop-eps", "Statement 10.4c: CA(e) >= acc - A iff e < t_(m); eps_for_accuracy_drop returns the float "
          "below t_(m) (relative 1e-9)", "§10.4", "numeric", covers=("acc-drop-eps",), kind="bridge")
def _chk_accdrop():
    from probprune.budgets.task import SQRT2, eps_for_accuracy_drop, margins

    rng = np.random.default_rng(3)
    for _ in range(50):
        n, C = int(rng.integers(20, 200)), int(rng.integers(2, 10))
        Z = rng.normal(size=(n, C))
        y = rng.integers(0, C, size=n)
        y[: n // 2] = np.argmax(Z[: n // 2], 1)
        r = rng.random(n) + 0.01
        A = float(rng.random() * 20)
        e, m = eps_for_accuracy_drop(Z, y, r, A)
        c, mar = margins(Z)
        acc = np.mean(c == y)

        def CA(ev):
            return np.mean((c == y) & (mar > SQRT2 * ev * r))

        if m <= 0:
            require(math.isinf(e), "no requirement -> inf")
            continue
        require(CA(e) >= acc - A / 100 - 1e-12, f"CA({e}) = {CA(e)} < {acc - A / 100}")
        t = np.sort((mar / (SQRT2 * r))[c == y])[::-1][m - 1]
        require(CA(t * (1 + 1e-9)) * n < m, "just above t_(m) the requirement fails (the tolerance is the largest)")
    return "50 random instances: the tolerance is the largest one keeping the certified accuracy"


@register("opt-inversion", "Statement 10.5: constraint <=> sum ln(1+eta/B) <= ln(1+eps/(Lip prod B)); split over the "
          "pruned set only sums to delta; max_prunable's allocation has E events exactly on pruned layers",
          "§10.5", "symbolic+numeric", covers=("opt-inversion",), kind="bridge")
def _chk_opt():
    from probprune.theory.apriori import DeltaAllocation, apriori_bound
    from probprune.budgets.apriori import max_prunable
    from probprune.net.templates import fcn_spec

    x1, x2, x3, L, P, e = sp.symbols("x1 x2 x3 Lambda P eps", positive=True)
    # Lambda P (e^(sum x) - 1) <= eps  <=>  sum x <= ln(1 + eps/(Lambda P)): the map is increasing; check the inverse
    sym_zero(sp.simplify(L * P * (sp.exp(sp.log(1 + e / (L * P))) - 1) - e), "inverse map")
    for S in ([1, 0, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]):
        a = DeltaAllocation.equal_split(0.05, np.array(S, bool))
        close(float(np.sum(a.delta_W) + np.sum(a.delta_E) + np.sum(a.delta_T)), 0.05, rtol=1e-12, what="split sums")
        require(np.all((a.delta_E > 0) == np.array(S, bool)), "E events only on S")
    spec = fcn_spec([30, 40, 20, 10], "relu", 1.0)
    res = max_prunable(spec, 0.3, 0.05, "magnitude", "optimal")
    q = res.fractions
    alloc = apriori_bound(spec, q, 0.05, "magnitude").allocation
    require(apriori_bound(spec, q, 0.05, "magnitude", allocation=alloc).eps <= 0.3 * (1 + 1e-9), "bound <= eps")
    require(res.eps_achieved <= 0.3 * (1 + 1e-9), "reported bound <= eps")
    return f"split over pruned layers; allocation {np.round(q, 4).tolist()} within eps"
