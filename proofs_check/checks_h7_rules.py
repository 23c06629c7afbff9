"""Issue 20 / issue 22 item 3 (helper H7): law statements only for law specs (THEORY §3.0), budgets that name their
rule (§3.9b), rate lower bounds S9.10 (§9.10), several calibrated runs (§10.1c) and the median vacuity statement
(§10.3b')."""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from scipy import stats

from ._core import ProofFailure, register, require, sym_zero


@register("h7-law-origin", "§3.0: law statements refuse a spec read from a model unless assume_law=True, and then "
          "repeat the assumption", "§3.0", "numeric", covers=("law-origin",), kind="bridge")
def _chk_origin():
    import torch.nn as nn

    from probprune.budgets.apriori import max_prunable
    from probprune.budgets.calibrated import calibrated_bound
    from probprune.core.errors import ProbPruneError
    from probprune.net.templates import fcn_spec, from_torch
    from probprune.theory.apriori import apriori_bound

    spec = from_torch(nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 2, bias=False)).double()).spec
    require(spec.origin == "model" and fcn_spec([5, 7, 2]).origin == "law", "origins")
    for name, fn in (("apriori_bound", lambda **k: apriori_bound(spec, 0.1, 0.05, **k)),
                     ("exact-k", lambda **k: apriori_bound(spec, 0.1, 0.05, "magnitude_exact", **k)),
                     ("max_prunable", lambda **k: max_prunable(spec, 0.5, 0.05, mode="uniform", **k)),
                     ("calibrated_bound", lambda **k: calibrated_bound(spec, 0.1, trials=60, **k))):
        try:
            fn()
        except ProbPruneError as e:
            require("certif" in str(e), f"{name}: the refusal names the certificate")
        else:
            raise ProofFailure(f"{name} accepted a model-derived spec")
        r = fn(assume_law=True)
        require(any("ASSUMED" in a for a in r.assumptions), f"{name}: assumption repeated")
    return "4 law statements refuse a from_torch spec and repeat assume_law=True"


@register("h7-budget-rules", "§3.9b: the exact-k counts satisfy the exact-k bound and the threshold fractions the "
          "threshold bound; masks_from_budget prunes exactly those counts / thresholds", "§3.9", "numeric",
          covers=("budget-rules",), kind="bridge")
def _chk_rules():
    from probprune.budgets.apriori import max_prunable
    from probprune.net.templates import fcn_spec, sample_weights
    from probprune.pruning.from_budget import masks_from_budget
    from probprune.theory.apriori import apriori_bound

    spec = fcn_spec([10, 16, 4], "identity")
    N = np.array([L.N for L in spec.layers], float)
    out = []
    for method, exact in (("magnitude", "magnitude_exact"), ("random", "random_exact")):
        b = max_prunable(spec, 0.3, 0.05, method, "uniform")
        ks = np.array([L.exact_k for L in b.layers], float)
        require(b.rule == "exact_k" and [L.max_prunable for L in b.layers] == list(ks.astype(int)), "default rule")
        e_k = float(apriori_bound(spec, ks / N, 0.05, exact).eps) if ks.any() else 0.0
        e_t = float(apriori_bound(spec, b.fractions, 0.05, method).eps)
        require(e_k <= 0.3 * (1 + 1e-12) and e_t <= 0.3 * (1 + 1e-9), f"{method}: {e_k}, {e_t} <= 0.3")
        W = {L.name: w for L, w in zip(spec.layers, sample_weights(spec, 0))}
        m = masks_from_budget(W, b.as_dict(), seed=1)
        require([int((~m[L.name]).sum()) for L in b.layers] == list(ks.astype(int)), f"{method}: exact counts")
        out.append(f"{method}: exact-k {e_k:.3g}, threshold {e_t:.3g}")
    return "; ".join(out)


@register("h7-rate-lower", "S9.10: L^2 = m mu - beta(m v, mu, ln(1/delta)/n) gives P(max line norm < L) <= delta; "
          "moments of table M; L ~ q^(3/2) (magnitude), p^(1/2) (random)", "§9.10", "symbolic+numeric",
          covers=("rate-lower",))
def _chk_rate():
    from probprune.theory import sharp
    from probprune.theory.apriori import beta

    # beta is the positive root of t^2/2 = lam (s2 + R t/3)
    t, s2, R, lam = sp.symbols("t s2 R lam", positive=True)
    root = R * lam / 3 + sp.sqrt((R * lam / 3) ** 2 + 2 * s2 * lam)
    sym_zero(sp.expand(root**2 / 2 - lam * (s2 + R * root / 3)), "beta solves the Bernstein equation")
    # table M moments for the uniform law (density 1/(2a) on [-a, a])
    w, a, q = sp.symbols("w a q", positive=True)
    for kind, m2, m4 in (("magnitude", sp.integrate(w**2 / a, (w, 0, q * a)), sp.integrate(w**4 / a, (w, 0, q * a))),
                         ("random", q * a**2 / 3, q * a**4 / 5)):
        for qv in (0.01, 0.2, 0.7):
            mu, mm4 = sharp.entry_moments(kind, "uniform", qv, 1.3)
            require(math.isclose(float(mu), float(m2.subs({q: qv, a: 1.3})), rel_tol=1e-10), f"{kind} E e^2")
            require(math.isclose(float(mm4), float(m4.subs({q: qv, a: 1.3})), rel_tol=1e-10), f"{kind} E e^4")
    # one-sided Bernstein lower tail and the product over independent lines, by simulation (uniform random, q = 0.2)
    rng = np.random.default_rng(0)
    m, n, dl, qv, Rn = 50, 8, 0.2, 0.2, 20000
    L = float(sharp.line_lower_bound(m, n, "random", "uniform", qv, 1.0, dl))
    e = rng.uniform(-1, 1, (Rn, n, m)) * (rng.random((Rn, n, m)) < qv)
    fail = float(np.mean(np.sqrt((e**2).sum(-1)).max(-1) < L))
    require(fail <= dl + 4 * math.sqrt(dl * (1 - dl) / Rn), f"P(max line < L) = {fail} > {dl}")
    # rates: L^2/(m mu) -> 1 for long lines, mu ~ q^3 (magnitude), q (random)
    for kind, r in (("magnitude", 3.0), ("random", 1.0)):
        mus = [float(sharp.entry_moments(kind, "uniform", x, 1.0)[0]) for x in (0.01, 0.1)]
        require(math.isclose(math.log(mus[1] / mus[0]) / math.log(10), r, rel_tol=1e-9), f"{kind} rate")
        Lbig = float(sharp.line_lower_bound(10**7, 10, kind, "uniform", 0.1, 1.0, 0.05))
        require(0.99 < Lbig**2 / (10**7 * mus[1]) <= 1.0, f"{kind}: L^2 / (m mu) -> 1")
    return f"beta root (symbolic); moments (symbolic); MC line failure {fail:.4f} <= {dl}; rates 3/2, 1/2"


@register("h7-calib-multirun", "§10.1c: R runs at rank k(T, delta, gamma/R): P(min_r U^(r)_(k) < Q) <= gamma; the "
          "minimum over runs at rank k(T, delta, gamma) does not keep gamma", "§10.1", "numeric",
          covers=("calib-multirun",))
def _chk_multirun():
    from probprune.budgets.calibrated import order_statistic_rank

    rng = np.random.default_rng(1)
    T, d, g, R, S = 100, 0.05, 0.1, 5, 8000
    Q = -math.log(d)  # exponential: upper (1 - d)-quantile
    U = np.sort(rng.exponential(size=(S, R, T)), axis=-1)
    k_adj = order_statistic_rank(T, d, g / R)
    k_one = order_statistic_rank(T, d, g)
    f_adj = float(np.mean(U[:, :, k_adj - 1].min(axis=1) < Q))
    f_naive = float(np.mean(U[:, :, k_one - 1].min(axis=1) < Q))
    require(f_adj <= g + 4 * math.sqrt(g * (1 - g) / S), f"adjusted failure {f_adj} > gamma {g}")
    require(f_naive > g, f"naive minimum over runs keeps gamma ({f_naive}): the warning would be vacuous")
    return f"adjusted rank {k_adj}: failure {f_adj:.4f} <= {g}; naive rank {k_one}: {f_naive:.3f} > {g}"


@register("h7-median-lower", "§10.3b': j = max{j : binom.cdf(j-1,T,1/2) <= gamma}: P(Y_(j) > median) <= gamma",
          "§10.3", "numeric", covers=("median-vacuity",))
def _chk_median():
    from probprune.budgets.calibrated import median_lower_rank

    rng = np.random.default_rng(2)
    out = []
    for T, g in ((20, 0.1), (100, 0.05), (8, 0.05)):
        j = median_lower_rank(T, g)
        require(stats.binom.cdf(j - 1, T, 0.5) <= g and (j == T or stats.binom.cdf(j, T, 0.5) > g), "j maximal")
        Y = np.sort(rng.exponential(size=(20000, T)), axis=1)[:, j - 1]
        f = float(np.mean(Y > math.log(2)))
        require(f <= g + 4 * math.sqrt(g * (1 - g) / 20000), f"T={T}: P(Y_(j) > median) = {f}")
        out.append(f"T={T}: j={j}, {f:.4f}")
    require(median_lower_rank(4, 0.05) == 0, "no rank for T = 4")
    return "; ".join(out)


@register("h7-exact-k-product", "S9.8b: given t = u_(k+1), the exact-k pattern is the Bernoulli(t) pattern on N-1 "
          "positions given its count; the recursion is monotone in sigma_E, sigma_W; pmf unimodal in t; MC coverage",
          "§9.8", "symbolic+numeric", covers=("exact-k-product",))
def _chk_exact_k_product():
    from probprune.pruning.sampling import exact_k_prune_mask
    from probprune.theory import sharp

    # (3) unimodality of pmf(k; n, t) in t: d/dt log pmf = k/t - (n-k)/(1-t), decreasing in t (symbolic)
    t, n, k = sp.symbols("t n k", positive=True)
    dlog = sp.diff(k * sp.log(t) + (n - k) * sp.log(1 - t), t)
    sym_zero(sp.simplify(sp.diff(dlog, t) + k / t**2 + (n - k) / (1 - t) ** 2), "second derivative of log pmf")
    # monotonicity of the core in each sigma (numeric, several p)
    P = sharp.P_MAX
    base = [np.full(P, 0.01), np.full(P, 0.02)], [np.full(P, 0.3), np.full(P, 0.3)]
    x0 = float(sharp.product_moment_core((10, 12, 6), *base, 0.1)[0])
    for j in range(2):
        for which in (0, 1):
            b = [list(base[0]), list(base[1])]
            b[which][j] = b[which][j] * 1.1
            require(float(sharp.product_moment_core((10, 12, 6), *b, 0.1)[0]) >= x0, "monotone in sigma")
    # (1) the count law: given u_(k+1) = t, #{u < t} among the other N-1 is exactly k (by construction) and the
    # pruned set equals {u < t}: check on draws that exact-k pruning = threshold at u_(k+1)
    rng = np.random.default_rng(3)
    u = rng.random((200, 50))
    kk = 12
    tt = np.sort(u, axis=1)[:, kk]
    require(np.array_equal(exact_k_prune_mask(u, kk), u < tt[:, None]), "exact-k = threshold at u_(k+1)")
    # MC coverage on a small linear net at delta = 0.3
    dims, hw, ks, dl, T = (8, 14, 5), (1 / math.sqrt(14), 1 / math.sqrt(14)), (33, 21), 0.3, 2000
    x = float(sharp.exact_k_magnitude_product_bound(dims, hw, ks, dl, "uniform")[0])
    W1 = rng.uniform(-hw[0], hw[0], (T, 14 * 8))
    W2 = rng.uniform(-hw[1], hw[1], (T, 5 * 14))
    Wh1 = np.where(exact_k_prune_mask(np.abs(W1), ks[0]), 0.0, W1).reshape(T, 14, 8)
    Wh2 = np.where(exact_k_prune_mask(np.abs(W2), ks[1]), 0.0, W2).reshape(T, 5, 14)
    err = np.linalg.norm(W2.reshape(T, 5, 14) @ W1.reshape(T, 14, 8) - Wh2 @ Wh1, 2, axis=(-2, -1))
    f = float(np.mean(err > x))
    require(f <= dl, f"violation rate {f} > {dl}")
    return f"log pmf concave (symbolic); core monotone; exact-k = threshold at u_(k+1); MC violation {f:.4f} <= {dl}"


@register("h7-rescaled-product", "S9.8c: D = sum_{S != 0} M_S - kappa prod Y exactly; dropping the signs cannot "
          "decrease E tr((D D^T)^p) (exact enumeration on a tiny case); MC coverage", "§9.8", "symbolic+numeric",
          covers=("rescaled-product",))
def _chk_rescaled():
    import itertools

    from probprune.theory import sharp

    # (1) the decomposition, symbolically on 1x1 layers: w1 w2 - (y1 y2)/((1-q1)(1-q2)) with w = y + z
    y1, y2, z1, z2, q1, q2 = sp.symbols("y1 y2 z1 z2 q1 q2")
    kappa = 1 / ((1 - q1) * (1 - q2)) - 1
    D = (y1 + z1) * (y2 + z2) - y1 * y2 / ((1 - q1) * (1 - q2))
    sym_zero(D - ((y1 + z1) * (y2 + z2) - y1 * y2 - kappa * y1 * y2), "decomposition")
    # sign step: exact expectation over a 2-layer 2x2 net with entries w in {-1, 1}, b in {0, 1} (p = 2)
    q = 0.4
    kap = 1 / (1 - q) ** 2 - 1
    lhs = rhs = 0.0
    for w in itertools.product((-1.0, 1.0), repeat=8):
        for b in itertools.product((0, 1), repeat=8):
            pb = np.prod([q if x else 1 - q for x in b])
            W = np.array(w).reshape(2, 2, 2)
            B = np.array(b, float).reshape(2, 2, 2)
            Y, Z = W * (1 - B), W * B
            P, PY = W[1] @ W[0], Y[1] @ Y[0]
            Dm = P - PY - kap * PY
            Dp = P - PY + kap * PY
            lhs += pb / 256 * np.trace(np.linalg.matrix_power(Dm @ Dm.T, 2))
            rhs += pb / 256 * np.trace(np.linalg.matrix_power(Dp @ Dp.T, 2))
    require(lhs <= rhs + 1e-12, f"E tr((DD^T)^2) = {lhs} > signless {rhs}")
    # MC coverage at delta = 0.3
    rng = np.random.default_rng(4)
    dims, T, dl, qv = (8, 14, 5), 3000, 0.3, 0.3
    hw = (1 / math.sqrt(14), 1 / math.sqrt(14))
    x = float(sharp.rescaled_product_moment_bound(dims, hw, np.full(2, qv), dl, "uniform")[0])
    W1 = rng.uniform(-hw[0], hw[0], (T, 14, 8))
    W2 = rng.uniform(-hw[1], hw[1], (T, 5, 14))
    H1 = np.where(rng.random(W1.shape) < qv, 0.0, W1) / (1 - qv)
    H2 = np.where(rng.random(W2.shape) < qv, 0.0, W2) / (1 - qv)
    f = float(np.mean(np.linalg.norm(W2 @ W1 - H2 @ H1, 2, axis=(-2, -1)) > x))
    require(f <= dl, f"violation rate {f} > {dl}")
    return f"decomposition (symbolic); exact E tr((DD^T)^2) {lhs:.4f} <= {rhs:.4f}; MC violation {f:.4f} <= {dl}"


@register("h7-shifted-rayleigh", "S9.8 step (4) sharpened: s_{k,p} = ||sqrt(d_k) + R||_2p (exact moment sum) is "
          "<= sqrt(d_k) + r_p and matches a Monte Carlo of (A + R)^(2p)", "§9.8", "symbolic+numeric",
          covers=("exact-k-product",))
def _chk_shifted_rayleigh():
    from scipy import special

    from probprune.theory import sharp

    # E R^j = 2^(j/2) Gamma(1 + j/2) for the Rayleigh density r exp(-r^2/2) (symbolic, j = 1..6)
    r = sp.Symbol("r", positive=True)
    for j in range(1, 7):
        sym_zero(sp.integrate(r**j * r * sp.exp(-r**2 / 2), (r, 0, sp.oo)) - 2 ** sp.Rational(j, 2)
                 * sp.gamma(1 + sp.Rational(j, 2)), f"E R^{j}")
    P = np.arange(1, sharp.P_MAX + 1, dtype=float)
    r_p = np.exp((P * np.log(2.0) + special.gammaln(P + 1)) / (2 * P))
    rng = np.random.default_rng(5)
    R = np.sqrt(-2 * np.log(rng.random(2_000_000)))
    for A in (1.0, math.sqrt(32), math.sqrt(784)):
        s = sharp.shifted_rayleigh_norm(A)
        require(np.all(s <= A + r_p + 1e-12) and np.all(np.diff(s) >= -1e-12), f"A={A}: <= A + r_p, increasing in p")
        for p in (1, 3, 6):
            mc = float(np.mean((A + R) ** (2 * p)) ** (1 / (2 * p)))
            require(abs(mc / s[p - 1] - 1) < 0.01, f"A={A}, p={p}: MC {mc} vs {s[p - 1]}")
    return "Rayleigh moments (symbolic); s_{k,p} <= sqrt(d) + r_p; MC agreement within 1% (p <= 6)"
