"""Union-bound bookkeeping (§3.8) and the inverse problem (§3.9): monotonicity and the equal-share closed forms."""
from __future__ import annotations

import numpy as np
import sympy as sp

from . import formulas as F
from ._core import close, hypothesis_cases, register, require, sym_positive, sym_zero

_beta_np = sp.lambdify((F.s2, F.R, F.lam), F.beta(F.s2, F.R, F.lam), "numpy")


@register("union-bound", "|E| = l + l_p events; equal split delta/|E| sums to delta; delta/(2l) when all pruned",
          "§3.8", "symbolic+numeric", covers=["union-bound"])
def _chk_union():
    l, lp, delta = sp.symbols("l l_p delta", positive=True, integer=True)
    nE = l + lp
    sym_zero(nE * (delta / nE) - delta, "equal split sums to delta")
    sym_zero((delta / nE).subs(lp, l) - delta / (2 * l), "all layers pruned")
    # explicit event sets for every pruning pattern of up to 6 layers
    from itertools import product

    for L in range(1, 7):
        for pattern in product((0, 1), repeat=L):
            events = [("W", i) for i in range(L)] + [("E", i) for i in range(L) if pattern[i]]
            require(len(events) == L + sum(pattern), "event count")
            d = 0.05
            de = np.full(len(events), d / len(events))
            require(abs(de.sum() - d) <= 1e-15, "split does not sum to delta")
    # the union bound itself: P(some event fails) <= sum of the allocations (checked on independent events)
    rng = np.random.default_rng(38)
    probs = rng.uniform(0, 0.02, 8)
    fails = rng.random((200_000, 8)) < probs
    require(fails.any(1).mean() <= probs.sum() + 3 * np.sqrt(probs.sum() / 200_000), "union bound")
    return "symbolic split; all 126 pruning patterns for l <= 6; sampled union bound"


@register("inverse-monotone", "eta increasing in q (RM), p (RR), p (RR'); RR jump eta(0+) = 2 a lam/3 > 0", "§3.9",
          "symbolic+numeric", covers=["inverse-monotone"])
def _chk_inverse_monotone():
    a, q, p, m, lam = F.a, F.q, F.p, F.m, F.lam
    sym_positive(sp.diff(F.eta_RM(m, a, q, lam), q), "d eta_RM / dq")
    sym_positive(sp.diff(F.eta_RR(m, a, p, lam), p), "d eta_RR / dp")
    u = sp.Symbol("u", positive=True)  # p = u/(1+u): p/(1-p) = u, increasing in p
    sym_positive(sp.diff(u / (1 + u), u), "dp/du")
    # RR' on p <= 1/2 (u <= 1): R = a; on p >= 1/2 (u >= 1): R = a u. Both branches increasing in u; they agree at u=1
    low = F.beta(m * u * a ** 2 / 3, a, lam)
    high = F.beta(m * u * a ** 2 / 3, a * u, lam)
    sym_positive(sp.diff(low, u), "d eta_RR'/du (p <= 1/2)")
    sym_positive(sp.diff(high, u), "d eta_RR'/du (p >= 1/2)")
    sym_zero(low.subs(u, 1) - high.subs(u, 1), "RR' branches continuous at p = 1/2")
    # the RR jump at p = 0+
    sym_zero(sp.limit(F.eta_RR(m, a, p, lam), p, 0, "+") - 2 * a * lam / 3, "RR eta(0+)")
    # RM is continuous at q = 0 (no jump)
    require(sp.limit(F.eta_RM(m, a, q, lam), q, 0, "+") == 0, "RM eta(0+) != 0")
    # dense numeric grid of strict monotonicity
    g = np.linspace(1e-6, 1 - 1e-6, 20001)
    for mm, aa, ll in ((300, 0.05, 9.0), (10, 0.4, 4.0)):
        for eta in (_beta_np(mm * g ** 3 * aa ** 2 / 3, g * aa, ll), _beta_np(mm * g * aa ** 2 / 3, aa, ll),
                    _beta_np(mm * g * aa ** 2 / (3 * (1 - g)), aa * np.maximum(1, g / (1 - g)), ll)):
            require(np.all(np.diff(eta) > 0), "eta not strictly increasing on the grid")

    def case(mm, aa, ll, p1, p2):
        lo, hi = min(p1, p2), max(p1, p2)
        if hi - lo < 1e-9:
            return
        for f in (lambda x: _beta_np(mm * x ** 3 * aa ** 2 / 3, x * aa, ll),
                  lambda x: _beta_np(mm * x * aa ** 2 / 3, aa, ll),
                  lambda x: _beta_np(mm * x * aa ** 2 / (3 * (1 - x)), aa * max(1, x / (1 - x)), ll)):
            assert f(lo) < f(hi), (lo, hi)

    from hypothesis import strategies as st

    unit = st.floats(1e-6, 1 - 1e-6)
    hypothesis_cases(case, st.integers(1, 10_000), st.floats(1e-4, 10), st.floats(0.01, 50), unit, unit,
                     max_examples=200)
    return "derivatives provably > 0 (RR' piecewise); limits at 0; grid 2 x 3 x 20001 + 200 hypothesis pairs"


@register("inverse-rho", "equal share: eps_bound = Lip prod B ((1+rho)^l_p - 1) = eps  <=>  rho = (1+eps/(Lip prod B))^(1/l_p) - 1",
          "§3.9", "symbolic", covers=["inverse-equal-share"])
def _chk_rho():
    eps, C, rho = sp.symbols("eps C rho", positive=True)
    for lp in range(1, 7):
        sym_zero(C * ((1 + F.equal_share_rho(eps, C, lp)) ** lp - 1) - eps, f"rho substitution, l_p = {lp}")
        # eta_i = rho B_i in every pruned layer, eta_i = 0 elsewhere: (A*) gives C((1+rho)^l_p - 1)
        Bs = sp.symbols(f"B1:{lp + 2}", positive=True)
        etas = [rho * b for b in Bs[:lp]] + [0]
        sym_zero(F.product_form(Bs, etas) - sp.prod(Bs) * ((1 + rho) ** lp - 1), f"(A*) at equal share, l_p={lp}")
    return "l_p = 1..6 (one unpruned layer included)"


@register("inverse-RR", "RR closed form p = t(3t - 2 a lam)/(2 m a^2 lam) solves beta(m p a^2/3, a, lam) = t", "§3.9",
          "symbolic", covers=["inverse-equal-share"])
def _chk_inverse_rr():
    a, m, lam = F.a, F.m, F.lam
    u = sp.Symbol("u", positive=True)
    tt = sp.Symbol("tt", positive=True)
    # solve the tail equation for p
    pp = sp.Symbol("pp")
    sol = sp.solve(sp.Eq(tt ** 2 / 2, lam * (m * pp * a ** 2 / 3 + a * tt / 3)), pp)
    require(len(sol) == 1 and sp.simplify(sol[0] - F.rr_equal_share(tt, a, m, lam)) == 0, f"solve gives {sol}")
    # substitute back: t = 2 a lam/3 + u (> 2 a lam/3, i.e. p > 0)
    t = 2 * a * lam / 3 + u
    p_star = F.rr_equal_share(t, a, m, lam)
    sym_positive(p_star, "p* for t > 2 a lam/3")
    sym_zero(F.eta_RR(m, a, p_star, lam) - t, "beta(m p* a^2/3, a, lam) = t")
    # t <= 2 a lam/3: p* <= 0 (clip to 0; eta(0+) = 2 a lam/3 already exceeds t)
    y = sp.Symbol("y", positive=True)  # t = (2 a lam/3) y/(1+y) in (0, 2 a lam/3)
    sym_positive(-F.rr_equal_share(2 * a * lam / 3 * y / (1 + y), a, m, lam), "-p* below the jump")
    require(F.rr_equal_share(2 * a * lam / 3, a, m, lam).simplify() == 0, "p* at the jump")
    return "solve + substitute back for t > 2 a lam/3; sign below the jump"


@register("inverse-magnitude", "magnitude cubic: eta_RM(q) = t <=> cubic(q) = 0; exactly one positive root", "§3.9",
          "symbolic+numeric", covers=["inverse-equal-share"])
def _chk_inverse_mag():
    a, m, lam, t, q = F.a, F.m, F.lam, F.t, F.q
    # the tail equation for eta_RM(q) = t, times -2, is the cubic
    tail = t ** 2 / 2 - lam * (m * q ** 3 * a ** 2 / 3 + q * a * t / 3)
    sym_zero(-2 * tail - F.magnitude_cubic(q, t, a, m, lam), "cubic = -2 x tail equation")
    # uniqueness: cubic(0) = -t^2 < 0, derivative > 0 for q > 0, cubic -> +oo
    cub = F.magnitude_cubic(q, t, a, m, lam)
    sym_positive(-cub.subs(q, 0), "-cubic(0)")
    sym_positive(sp.diff(cub, q), "cubic'(q)")
    require(sp.limit(cub, q, sp.oo) == sp.oo, "cubic does not grow to +oo")
    # Descartes: coefficient signs (+, 0, +, -): exactly one sign change -> exactly one positive root
    coeffs = sp.Poly(cub, q).all_coeffs()
    signs = [sp.sign(cf) for cf in coeffs if cf != 0]
    require(sum(1 for x, y in zip(signs, signs[1:]) if x != y) == 1, f"sign changes {signs}")

    # numeric: the positive root q* satisfies eta_RM(q*) = t (beta is the positive root, so t > 0 suffices)
    def case(mm, aa, ll, tt):
        roots = np.roots([2 * ll * mm * aa ** 2 / 3, 0.0, 2 * ll * aa * tt / 3, -tt ** 2])
        pos = [r.real for r in roots if abs(r.imag) < 1e-9 * max(1, abs(r)) and r.real > 0]
        assert len(pos) == 1, roots
        eta = _beta_np(mm * pos[0] ** 3 * aa ** 2 / 3, pos[0] * aa, ll)
        assert abs(eta - tt) <= 1e-8 * tt, (eta, tt)

    from hypothesis import strategies as st

    n = hypothesis_cases(case, st.integers(2, 5000), st.floats(1e-3, 2.0), st.floats(0.5, 30.0),
                         st.floats(1e-4, 10.0), max_examples=200)
    return f"symbolic uniqueness (Descartes + monotone) and {n} numeric roots"


def _eps_with_split(widths, fracs, dW, dE, method):
    """(A*) of §3.4 from the sympy formulas, for an arbitrary delta split (paper law a = 1/sqrt(m), Lip = 1)."""
    B, eta = [], []
    for i in range(len(widths) - 1):
        d1, d0 = widths[i + 1], widths[i]
        n, m = d1 + d0, max(d1, d0)
        a = 1 / np.sqrt(m)
        B.append(_beta_np(m * a * a / 3, a, np.log(n / dW[i])))
        f = fracs[i]
        if f == 0:
            eta.append(0.0)
        elif method == "magnitude":
            eta.append(_beta_np(m * f ** 3 * a * a / 3, f * a, np.log(n / dE[i])))
        else:
            eta.append(_beta_np(m * f * a * a / 3, a, np.log(n / dE[i])))
    B, eta = np.array(B), np.array(eta)
    return float(np.prod(B) * (np.prod(1 + eta / B) - 1))


@register("union-near-optimal", "the equal delta split is near-optimal: within 2% of the best split (Nelder-Mead over "
          "the simplex) on 4 networks", "§3.8", "numeric", covers=["union-bound"])
def _chk_union_near_optimal():
    from scipy.optimize import minimize

    worst = 1.0
    for widths, fr, method in (([784, 300, 100, 10], [0.3] * 3, "magnitude"), ([784, 300, 100, 10], [0.05] * 3, "random"),
                               ([20, 500, 500, 10], [0.5] * 3, "magnitude"), ([100, 100, 100], [0.5, 0.01], "random")):
        l = len(widths) - 1
        pr = np.array(fr) > 0
        ne = l + int(pr.sum())
        delta = 0.05

        def split(z):
            w = np.exp(z - z.max())
            d = w / w.sum() * delta
            dE = np.ones(l)
            dE[pr] = d[l:]
            return d[:l], dE

        eq = _eps_with_split(widths, fr, *split(np.zeros(ne)), method)
        res = minimize(lambda z: np.log(_eps_with_split(widths, fr, *split(z), method)), np.zeros(ne),
                       method="Nelder-Mead", options=dict(maxiter=3000, xatol=1e-6, fatol=1e-10))
        best = float(np.exp(res.fun))
        require(best <= eq * (1 + 1e-12), "optimiser worse than its start")
        worst = min(worst, best / eq)
    require(worst >= 0.98, f"equal split is {1 / worst:.3f}x the optimal split")
    return f"best split / equal split >= {worst:.4f}"
