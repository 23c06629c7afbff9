"""beta, Lemma B's inverse, the moment table and Theorems RM / RR / RR' (THEORY.md §3, §3.2-§3.4, §3.10)."""
from __future__ import annotations

import numpy as np
import sympy as sp

from . import formulas as F
from ._core import close, hypothesis_cases, register, require, sym_positive, sym_zero


@register("beta-positive", "beta is positive and reduces to 2 R lam/3 at s2 = 0 and sqrt(2 s2 lam) at R = 0", "§3",
          "symbolic", covers=["beta-def"])
def _chk_beta_positive():
    b = F.beta(F.s2, F.R, F.lam)
    sym_positive(b, "beta(s2, R, lam)")
    sym_zero(F.beta(0, F.R, F.lam) - 2 * F.R * F.lam / 3, "beta at s2 = 0")
    sym_zero(F.beta(F.s2, 0, F.lam) - sp.sqrt(2 * F.s2 * F.lam), "beta at R = 0")
    return "positive for s2, R, lam > 0; limits at s2 = 0 and R = 0"


@register("bernstein-solve", "solve(t^2/2 = lam (v + R t/3), t): beta is the positive root; substitute back", "§3.2",
          "symbolic", covers=["bernstein-inverse", "beta-def"])
def _chk_bernstein_solve():
    tt = sp.Symbol("tt", real=True)
    v, R, lam = F.v, F.R, F.lam
    eq = tt ** 2 / 2 - lam * (v + R * tt / 3)
    roots = sp.solve(eq, tt)
    require(len(roots) == 2, f"expected 2 roots, got {roots}")
    b = F.beta(v, R, lam)
    pos = [r for r in roots if sp.simplify(r - b) == 0]
    require(len(pos) == 1, f"beta is not a root of the tail equation: roots {roots}")
    other = [r for r in roots if r is not pos[0]][0]
    # the other root is <= 0: product of the roots is -2 lam v < 0
    sym_zero(sp.expand(roots[0] * roots[1]) + 2 * lam * v, "product of roots")
    sym_zero(other + 2 * lam * v / b, "other root = -2 lam v / beta (< 0 since beta > 0)")
    # substitute back
    sym_zero(eq.subs(tt, b), "tail equation at t = beta")
    # exponent at beta equals lam, so (d1+d2) exp(-lam') = delta' for lam' = ln((d1+d2)/delta')
    sym_zero((b ** 2 / 2) / (v + R * b / 3) - lam, "exponent at beta")
    n, dl = sp.symbols("n delta", positive=True)
    sym_zero(n * sp.exp(-sp.log(n / dl)) - dl, "(d1+d2) exp(-ln((d1+d2)/delta')) = delta'")
    # the exponent (t^2/2)/(v + R t/3) is increasing in t > 0, so P(||sum Z|| >= t) <= delta' for all t >= beta
    x = sp.Symbol("x", positive=True)
    sym_positive(sp.diff((x ** 2 / 2) / (v + R * x / 3), x), "d/dt of the Bernstein exponent")
    return "two roots, beta the positive one; exponent(beta) = lam; exponent increasing in t"


@register("beta-monotone", "d beta/d s2, d beta/d R, d beta/d lam > 0", "§3.9", "symbolic",
          covers=["inverse-monotone"])
def _chk_beta_monotone():
    b = F.beta(F.s2, F.R, F.lam)
    for x in (F.s2, F.R, F.lam):
        sym_positive(sp.diff(b, x), f"d beta / d {x}")
    return "all three partial derivatives provably positive"


@register("bernstein-entrywise", "Z_rc = x_rc e_r e_c^T: sum E Z Z^T = diag(row sums), sum E Z^T Z = diag(col sums)",
          "§3.2", "symbolic", covers=["bernstein-entrywise"])
def _chk_entrywise():
    d1, d2 = 3, 4
    nu = sp.Matrix(d1, d2, lambda r, c: sp.Symbol(f"nu_{r}{c}", positive=True))
    ZZt = sp.zeros(d1, d1)
    ZtZ = sp.zeros(d2, d2)
    for r in range(d1):
        for c in range(d2):
            E = sp.zeros(d1, d2)
            E[r, c] = 1
            ZZt += nu[r, c] * E * E.T  # E[x^2] e_r e_c^T e_c e_r^T
            ZtZ += nu[r, c] * E.T * E
    require(ZZt == sp.diag(*[sum(nu[r, :]) for r in range(d1)]), "sum E Z Z^T is not diag(row sums)")
    require(ZtZ == sp.diag(*[sum(nu[:, c]) for c in range(d2)]), "sum E Z^T Z is not diag(col sums)")
    # i.i.d. variance nu: row sums d2 nu, col sums d1 nu -> v = max(d1, d2) nu; ||Z_rc|| = |x_rc| (rank one)
    nuu = sp.Symbol("nu", positive=True)
    require(sp.Max(*[sum(nu[r, :]) for r in range(d1)]).subs({x: nuu for x in nu}) == d2 * nuu, "row sums")
    require(sp.Max(d1 * nuu, d2 * nuu) == max(d1, d2) * nuu, "v = max(d1, d2) nu")
    x = sp.Symbol("x", real=True)
    E = sp.zeros(d1, d2)
    E[1, 2] = x
    require(sp.simplify(sp.Max(*[sp.sqrt(ev) for ev in (E.T * E).eigenvals()]) - sp.Abs(x)) == 0,
            "||x e_r e_c^T|| != |x|")
    return f"{d1}x{d2} symbolic variance matrix"


@register("moments-uniform", "second moments / means of the four pruned-entry laws, P(|w|<qa) = q, E w^4 1{|w|<tau}",
          "§3.3", "symbolic", covers=["moments-uniform"])
def _chk_moments():
    w = sp.Symbol("w", real=True)
    a, q, p = F.a, F.q, F.p
    tau = sp.Symbol("tau", positive=True)
    dens = 1 / (2 * a)
    E = lambda f, lo=-a, hi=a: sp.integrate(f * dens, (w, lo, hi))  # noqa: E731
    sym_zero(E(1) - 1, "density integrates to 1")
    sym_zero(E(w ** 2) - a ** 2 / 3, "E w^2")
    sym_zero(E(w) - 0, "E w")
    # magnitude error w 1{|w| < q a}, q in (0, 1]
    sym_zero(E(w ** 2, -q * a, q * a) - q ** 3 * a ** 2 / 3, "E (w 1{|w|<qa})^2")
    sym_zero(E(w ** 2, -tau, tau) - tau ** 3 / (3 * a), "E w^2 1{|w|<tau}")
    sym_zero(E(w, -q * a, q * a), "E w 1{|w|<qa}")
    sym_zero(E(1, -q * a, q * a) - q, "P(|w| < qa)")
    sym_zero(E(w ** 4, -tau, tau) - tau ** 5 / (5 * a), "E w^4 1{|w|<tau}")
    # random error w b, b ~ Bern(p) independent: E (wb)^2 = E w^2 E b^2 = p a^2/3, E wb = 0
    Eb = lambda f: sp.expand(p * f.subs(sp.Symbol("b"), 1) + (1 - p) * f.subs(sp.Symbol("b"), 0))  # noqa: E731
    b = sp.Symbol("b")
    sym_zero(Eb(b ** 2) * E(w ** 2) - p * a ** 2 / 3, "E (w b)^2")
    sym_zero(Eb(b) * E(w), "E w b")
    # rescaled error w (b - p)/(1 - p); E = W - What with What = W (1 - b)/(1 - p)
    sym_zero(w - w * (1 - b) / (1 - p) - w * (b - p) / (1 - p), "E = W - What = W (P - p)/(1 - p)")
    sym_zero(sp.simplify(Eb((b - p) ** 2) / (1 - p) ** 2 * E(w ** 2)) - p * a ** 2 / (3 * (1 - p)),
             "E (w (b-p)/(1-p))^2")
    sym_zero(Eb(b - p), "E (b - p)")
    return "uniform law: 1, E w, E w^2, magnitude/random/rescaled errors, P(|w|<qa), 4th moment"


@register("ranges-uniform", "range bounds |x| <= R of the pruned-entry laws", "§3.3", "symbolic+numeric",
          covers=["ranges-uniform"])
def _chk_ranges():
    p = sp.Symbol("p", positive=True)
    # rescaled: b in {0,1}: |b - p| <= max(p, 1 - p); max(p,1-p)/(1-p) = max(1, p/(1-p)) for p in (0,1)
    u = sp.Symbol("u", positive=True)  # p = u/(1+u), p/(1-p) = u
    pp = u / (1 + u)
    lhs = sp.Max(pp, 1 - pp) / (1 - pp)
    rhs = sp.Max(1, pp / (1 - pp))
    for val in (sp.Rational(1, 10), sp.Rational(1, 2), 1, 3, 17):
        require(sp.simplify((lhs - rhs).subs(u, val)) == 0, f"max(p,1-p)/(1-p) != max(1,p/(1-p)) at u={val}")
    pg = np.linspace(1e-6, 1 - 1e-6, 20001)
    close(np.maximum(pg, 1 - pg) / (1 - pg), np.maximum(1, pg / (1 - pg)), rtol=1e-12, what="range identity")
    # dense numeric check of each range on samples
    rng = np.random.default_rng(5)
    aa = 1.7
    w = rng.uniform(-aa, aa, 200_000)
    for qq in (0.05, 0.3, 1.0):
        require(np.max(np.abs(w * (np.abs(w) < qq * aa))) <= qq * aa, "magnitude range")
    for pv in (0.1, 0.5, 0.9):
        bb = rng.random(w.size) < pv
        require(np.max(np.abs(w * bb)) <= aa, "random range")
        require(np.max(np.abs(w * (bb - pv) / (1 - pv))) <= aa * max(1, pv / (1 - pv)) * (1 + 1e-12),
                "rescaled range")
    return "piecewise identity (symbolic at 5 points, numeric on 20001) and sampled ranges"


# ------------------------------------------------------------------------------------- theorems RM/RR/RR'
def _lam(n, delta_e):
    return np.log(n / delta_e)


_beta_np = sp.lambdify((F.s2, F.R, F.lam), F.beta(F.s2, F.R, F.lam), "numpy")


def reference_bound(widths, a, fracs, delta, method):
    """ε_bound of §3.4 from the sympy formulas (linear/ReLU FCN, Lip = 1), equal δ split (§3.8)."""
    l = len(widths) - 1
    pruned = [f > 0 for f in fracs]
    n_events = l + sum(pruned)
    de = delta / n_events
    B, eta = [], []
    for i in range(l):
        d1, d0 = widths[i + 1], widths[i]
        n, m = d1 + d0, max(d1, d0)
        lamW, lamE = _lam(n, de), _lam(n, de)
        B.append(_beta_np(m * a[i] ** 2 / 3, a[i], lamW))
        f = fracs[i]
        if f == 0:
            eta.append(0.0)
        elif method == "magnitude":
            eta.append(_beta_np(m * f ** 3 * a[i] ** 2 / 3, f * a[i], lamE))
        elif method == "random":
            eta.append(_beta_np(m * f * a[i] ** 2 / 3, a[i], lamE))
        else:
            eta.append(_beta_np(m * f * a[i] ** 2 / (3 * (1 - f)), a[i] * max(1, f / (1 - f)), lamE))
    B, eta = np.array(B), np.array(eta)
    return float(np.prod(B) * (np.prod(1 + eta / B) - 1)), B, eta


@register("thm-RM-RR-instance", "RM/RR/RR': v = m E[x^2] (i.i.d. entries, max(d1,d2) = m) gives the B_i, eta_i formulas",
          "§3.4", "symbolic", covers=["thm-RM-RR"])
def _chk_thm_instance():
    a, q, p, m, lam = F.a, F.q, F.p, F.m, F.lam
    sym_zero(F.B_uniform(m, a, lam) - F.beta(m * (a ** 2 / 3), a, lam), "B_i")
    sym_zero(F.eta_RM(m, a, q, lam) - F.beta(m * (q ** 3 * a ** 2 / 3), q * a, lam), "RM eta")
    sym_zero(F.eta_RR(m, a, p, lam) - F.beta(m * (p * a ** 2 / 3), a, lam), "RR eta")
    # paper scaling m a^2 = K^2: B = beta(K^2/3, a, .)
    sym_zero(F.B_uniform(m, a, lam).subs(m, F.K ** 2 / a ** 2) - F.beta(F.K ** 2 / 3, a, lam), "paper scaling")
    # ||What|| <= ||W|| + ||E|| <= B + eta, and (A*) is increasing in every eta and B entry that enters it
    B1, B2, e1, e2 = sp.symbols("B1 B2 e1 e2", positive=True)
    f2 = F.product_form([B1, B2], [e1, e2])
    for x in (e1, e2):
        sym_positive(sp.diff(f2, x), f"d(A*)/d{x}")
    for x in (B1, B2):
        sym_positive(sp.diff(f2, x), f"d(A*)/d{x}")
    return "formulas are Lemma B instances; (A*) increasing in B and eta (l = 2 symbolic)"


@register("thm-RM-RR-mc", "Theorems RM/RR/RR' on small linear nets: no violation in 300 draws (exact sup by SVD)",
          "§3.4", "numeric", covers=["thm-RM-RR"])
def _chk_thm_mc():
    rng = np.random.default_rng(34)
    widths = [12, 20, 20, 8]
    a = [1 / np.sqrt(max(widths[i], widths[i + 1])) for i in range(3)]
    worst = 0.0
    draws = 0
    for method, fr in (("magnitude", 0.4), ("random", 0.2), ("rescaled", 0.2)):
        bound, B, eta = reference_bound(widths, a, [fr] * 3, 0.1, method)
        for _ in range(100):
            W = [rng.uniform(-a[i], a[i], (widths[i + 1], widths[i])) for i in range(3)]
            if method == "magnitude":
                Wh = [M * (np.abs(M) >= fr * a[i]) for i, M in enumerate(W)]
            elif method == "random":
                Wh = [M * (rng.random(M.shape) >= fr) for M in W]
            else:
                Wh = [M * (rng.random(M.shape) >= fr) / (1 - fr) for M in W]
            err = np.linalg.norm(np.linalg.multi_dot(W[::-1]) - np.linalg.multi_dot(Wh[::-1]), 2)
            for i in range(3):
                require(np.linalg.norm(W[i], 2) <= B[i], f"||W_{i}|| > B_{i} ({method})")
                require(np.linalg.norm(W[i] - Wh[i], 2) <= eta[i], f"||E_{i}|| > eta_{i} ({method})")
            require(err <= bound, f"{method}: exact error {err} > eps_bound {bound}")
            worst = max(worst, err / bound)
            draws += 1
    return f"{draws} draws, max err/bound = {worst:.3f} (every component event held)"


@register("RRprime-ge-RR", "RR' >= RR: s2 and R of RR' dominate those of RR, beta increasing", "§3.4",
          "symbolic+numeric", covers=["RRprime-ge-RR"])
def _chk_rrp_ge_rr():
    u = sp.Symbol("u", positive=True)  # p = u/(1+u)
    pp = u / (1 + u)
    s2_rr = F.m * pp * F.a ** 2 / 3
    s2_rrp = F.m * pp * F.a ** 2 / (3 * (1 - pp))
    sym_positive(sp.simplify(s2_rrp - s2_rr), "s2(RR') - s2(RR)")  # = m a^2 u^2/(3(1+u)) > 0
    # R(RR') = a max(1, u) >= a = R(RR); with beta increasing in s2 and R (beta-monotone) this gives RR' >= RR
    pg = np.linspace(1e-4, 1 - 1e-4, 4001)
    for mm, aa, ll in ((100, 0.1, 8.0), (784, 0.036, 12.0), (10, 0.5, 3.0)):
        rr = _beta_np(mm * pg * aa ** 2 / 3, aa, ll)
        rrp = _beta_np(mm * pg * aa ** 2 / (3 * (1 - pg)), aa * np.maximum(1, pg / (1 - pg)), ll)
        require(np.all(rrp >= rr), "RR' < RR somewhere on the grid")

    def case(mm, aa, ll, pv):
        rr = _beta_np(mm * pv * aa ** 2 / 3, aa, ll)
        rrp = _beta_np(mm * pv * aa ** 2 / (3 * (1 - pv)), aa * max(1, pv / (1 - pv)), ll)
        assert rrp >= rr * (1 - 1e-15), (rr, rrp)

    from hypothesis import strategies as st

    hypothesis_cases(case, st.integers(1, 10_000), st.floats(1e-4, 10), st.floats(0.01, 50), st.floats(1e-6, 1 - 1e-6),
                     max_examples=200)
    return "symbolic dominance of s2 and R; numeric grid 3 x 4001 + 200 hypothesis cases"


@register("RR-mask", "RR-mask: for a fixed mask, v = D a^2/3 with D = max pruned entries per row/column", "§3.4",
          "numeric", covers=["RR-mask"])
def _chk_rr_mask():
    rng = np.random.default_rng(7)
    aa = 0.3
    for trial in range(50):
        d1, d0 = rng.integers(2, 40, 2)
        P = rng.random((d1, d0)) < rng.uniform(0.05, 0.9)
        var = P * aa ** 2 / 3  # entry variance of E = W ⊙ P given P
        v = max(var.sum(1).max(), var.sum(0).max())
        D = max(P.sum(1).max(), P.sum(0).max())
        close(v, D * aa ** 2 / 3, what="v vs D a^2/3")
    # R-Bern: E D ~ p m: the expected count of the longest line direction is p max(d1, d0)
    P = rng.random((400, 300)) < 0.2
    require(abs(P.sum(1).mean() - 0.2 * 300) < 3 and abs(P.sum(0).mean() - 0.2 * 400) < 3, "mean line counts")
    return "50 random masks: v == D a^2/3 exactly; R-Bern line counts ~ p m"


# ------------------------------------------------------------------------------------- §3.10 scaling
@register("scaling-ratios", "lim_{a->0} eta/B (m a^2 = K^2 fixed) = q^(3/2), p^(1/2), (p/(1-p))^(1/2)", "§3.10",
          "symbolic", covers=["scaling-ratios"])
def _chk_scaling_ratios():
    a, q, p, K = F.a, F.q, F.p, F.K
    lW, lE = sp.symbols("lamW lamE", positive=True)
    m = K ** 2 / a ** 2
    B = F.B_uniform(m, a, lW)
    # equal logs (equal δ split with the same n): ratios are q^{3/2}, p^{1/2}
    lim = sp.limit(F.eta_RM(m, a, q, lW) / B, a, 0)
    sym_zero(lim - q ** sp.Rational(3, 2), "RM ratio limit")
    lim = sp.limit(F.eta_RR(m, a, p, lW) / B, a, 0)
    sym_zero(lim - sp.sqrt(p), "RR ratio limit")
    u = sp.Symbol("u", positive=True)  # p = u/(1+u) in (0, 1), p/(1-p) = u; max(1, u) is a constant factor
    Rp = a * sp.Max(1, u)
    etap = F.beta(m * u * a ** 2 / 3, Rp, lW)  # m p a^2/(3(1-p)) = m u a^2/3
    lim = sp.limit(etap / B, a, 0)
    sym_zero(lim - sp.sqrt(u), "RR' ratio limit")
    # with different logs the ratio picks up sqrt(lamE/lamW)
    lim = sp.limit(F.eta_RM(m, a, q, lE) / B, a, 0)
    sym_zero(lim - q ** sp.Rational(3, 2) * sp.sqrt(lE / lW), "RM ratio with lamE != lamW")
    return "sympy limits as a -> 0"


@register("scaling-norms", "||W|| ~ a(sqrt d_i + sqrt d_{i-1})/sqrt 3; ||E||/||W|| ~ q^(3/2), p^(1/2), (p/(1-p))^(1/2)",
          "§3.10", "numeric", covers=["scaling-norms"])
def _chk_scaling_norms():
    rng = np.random.default_rng(310)
    d = 500
    aa = 1 / np.sqrt(d)
    W = rng.uniform(-aa, aa, (d, d))
    nW = np.linalg.norm(W, 2)
    lim = aa * 2 * np.sqrt(d) / np.sqrt(3)  # = 2K/sqrt 3 with K = 1
    dev = [abs(nW / lim - 1)]
    require(dev[0] < 0.03, f"||W|| = {nW:.4f} vs Bai-Yin {lim:.4f}")
    for qq in (0.3, 0.6):
        E = W * (np.abs(W) < qq * aa)
        dev.append(abs(np.linalg.norm(E, 2) / nW / qq ** 1.5 - 1))
    for pp in (0.1, 0.5):
        P = rng.random(W.shape) < pp
        dev.append(abs(np.linalg.norm(W * P, 2) / nW / np.sqrt(pp) - 1))
        dev.append(abs(np.linalg.norm(W * (P - pp) / (1 - pp), 2) / nW / np.sqrt(pp / (1 - pp)) - 1))
    require(max(dev) < 0.05, f"scaling ratio off by {max(dev):.3f} at width {d}")
    return f"width {d}: max relative deviation {max(dev):.3f}"


@register("scaling-laws", "q = p^(1/3) at equal error; q ~ d^(-2a/3), p ~ d^(-2a); B ~ a sqrt(2 m lam/3)", "§3.10",
          "symbolic", covers=["scaling-laws"])
def _chk_scaling_laws():
    q, p, K = F.q, F.p, F.K
    sol = sp.solve(sp.Eq(q ** sp.Rational(3, 2), sp.sqrt(p)), q)
    require(len(sol) == 1 and sp.simplify(sol[0] - p ** sp.Rational(1, 3)) == 0, f"equal error: {sol}")
    d, al, C = sp.symbols("d alpha C", positive=True)
    sq = sp.solve(sp.Eq(q ** sp.Rational(3, 2), C * d ** (-al)), q)
    sp_ = sp.solve(sp.Eq(sp.sqrt(p), C * d ** (-al)), p)
    exponent = lambda e: sp.expand_log(sp.log(e), force=True).coeff(sp.log(d))  # noqa: E731
    require(len(sq) == 1 and sp.simplify(exponent(sq[0]) + 2 * al / 3) == 0, f"magnitude exponent: {sq}")
    require(len(sp_) == 1 and sp.simplify(exponent(sp_[0]) + 2 * al) == 0, f"random exponent: {sp_}")
    # B_i / (a sqrt(2 m lam/3)) -> 1 as m -> oo with a = K/sqrt(m)
    mm, lam = sp.symbols("mm lam", positive=True)
    aa = K / sp.sqrt(mm)
    lim = sp.limit(F.B_uniform(mm, aa, lam) / (aa * sp.sqrt(2 * mm * lam / 3)), mm, sp.oo)
    require(lim == 1, f"B ~ a sqrt(2 m lam/3): limit {lim}")
    return "equal-error exponent, sublinear-rate exponents, leading term of B"
