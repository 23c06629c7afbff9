"""Sharper a-priori bounds (THEORY.md §9): the algebra of S9.1-S9.8 and the code-to-proof bridge for probprune.theory.sharp.

Exact (enumeration) checks of the trace comparison on tiny matrices, symbolic moments, numeric integrals for the
closed forms, and small Monte Carlo checks of the inequalities quoted from the literature (Chevet/Gordon) at the sizes
used. The Monte Carlo coverage of the composed bounds is in tests/test_sharp_coverage.py.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import sympy as sp
from scipy import integrate, special, stats

from ._core import close, hypothesis_cases, import_attr, register, require, sym_zero


def _sharp():
    import_attr("probprune.theory.sharp", "moment_bound")
    import probprune.theory.sharp as S

    return S


def _dfact(k: int) -> float:
    """(2k-1)!!"""
    return float(np.prod(np.arange(1, 2 * k, 2, dtype=float))) if k > 0 else 1.0


# ------------------------------------------------------------------------------------------- table M
@register("sharp-moments", "table M: E w^2k = a^2k/(2k+1) (uniform), magnitude q (qa)^2k/(2k+1), Gaussian "
          "E[g^2k 1{|g|<c}] = (2k-1)!! P(chi2_(2k+1) < c^2); log_moment_ratio equals these", "§9.1", "symbolic+numeric",
          covers=["sharp-tableM"])
def _chk_moments():
    S = _sharp()
    x, a, q = sp.symbols("x a q", positive=True)
    for k in range(1, 4):
        sym_zero(sp.integrate(x ** (2 * k) / (2 * a), (x, -a, a)) - a ** (2 * k) / (2 * k + 1), f"uniform k={k}")
        sym_zero(sp.integrate(x ** (2 * k) / (2 * a), (x, -q * a, q * a)) - q * (q * a) ** (2 * k) / (2 * k + 1),
                 f"magnitude k={k}")
    rng = np.random.default_rng(0)
    n = 0
    for _ in range(40):
        qq, k, c = rng.uniform(0.01, 0.99), int(rng.integers(1, 30)), None
        kk = float(k)
        lr = {kind: float(S.log_moment_ratio(kind, "uniform", qq, kk)) for kind in
              ("full", "magnitude", "random", "random_rescaled", "kept_magnitude", "kept_random", "kept_rescaled")}
        base = 1.0 / (_dfact(k + 1))
        close(math.exp(lr["full"]), base, rtol=1e-9, what="uniform full")
        close(math.exp(lr["magnitude"]), base * qq ** (2 * k + 1), rtol=1e-9, what="uniform magnitude")
        close(math.exp(lr["random"]), base * qq, rtol=1e-9, what="uniform random")
        close(math.exp(lr["random_rescaled"]), base * (qq + qq ** (2 * k) / (1 - qq) ** (2 * k - 1)), rtol=1e-9,
              what="uniform rescaled")
        close(math.exp(lr["kept_magnitude"]), base * (1 - qq ** (2 * k + 1)), rtol=1e-9, what="kept magnitude")
        close(math.exp(lr["kept_random"]), base * (1 - qq), rtol=1e-9, what="kept random")
        close(math.exp(lr["kept_rescaled"]), base * (1 - qq) ** (1 - 2 * k), rtol=1e-9, what="kept rescaled")
        if k <= 8:  # Gaussian truncated moments by quadrature
            c = stats.norm.ppf((1 + qq) / 2)
            num = 2 * integrate.quad(lambda t: t ** (2 * k) * stats.norm.pdf(t), 0, c, epsabs=0, epsrel=1e-12)[0]
            close(math.exp(float(S.log_moment_ratio("magnitude", "gaussian", qq, kk))) * _dfact(k), num, rtol=1e-7,
                  what=f"gaussian magnitude k={k}")
            num2 = 2 * integrate.quad(lambda t: t ** (2 * k) * stats.norm.pdf(t), c, np.inf, epsabs=0, epsrel=1e-12)[0]
            close(math.exp(float(S.log_moment_ratio("kept_magnitude", "gaussian", qq, kk))) * _dfact(k), num2,
                  rtol=1e-7, what=f"gaussian kept k={k}")
            n += 1
    return f"sympy integrals k=1..3; 40 random (q, k) bridge cases, {n} Gaussian quadratures"


@register("sharp-strict-subgaussian", "((2k+1)!!)^(-1/k) <= 1/3 (k >= 1): sigma_p^2 = a^2/3 for full uniform matrices; "
          "dominating_variance is the running max of rho_k^(1/k)", "§9.1", "numeric", covers=["sharp-tableM"])
def _chk_strict():
    S = _sharp()
    k = np.arange(1, 400, dtype=float)
    v = np.exp(-S._log_dfact_odd(k + 1) / k)
    require(np.all(v <= 1 / 3 + 1e-15) and abs(v[0] - 1 / 3) < 1e-15, "uniform moments not dominated by a^2/3")
    close(S.dominating_variance("full", "uniform", 1.0), np.full(S.P_MAX, 1 / 3), rtol=1e-12, what="sigma_p^2")
    for q in (0.001, 0.1, 0.7):
        d = S.dominating_variance("random", "uniform", q)
        lr = np.exp(S.log_moment_ratio("random", "uniform", q, np.arange(1, S.P_MAX + 1.0)) / np.arange(1, S.P_MAX + 1))
        close(d, np.maximum.accumulate(lr), rtol=1e-12, what="running max")
    return "k = 1..399; running max for 3 fractions"


# ------------------------------------------------------------------------------------------- S9.1
def _exact_trace_moment(d1, d2, p, moment):
    """E tr((X X^T)^p) for independent symmetric entries with E x^m = moment(m) (0 for odd m), by enumeration."""
    tot = 0.0
    for I in itertools.product(range(d1), repeat=p):
        for J in itertools.product(range(d2), repeat=p):
            cnt = {}
            for t in range(p):
                for pos in ((I[t], J[t]), (I[(t + 1) % p], J[t])):
                    cnt[pos] = cnt.get(pos, 0) + 1
            if any(c % 2 for c in cnt.values()):
                continue
            tot += float(np.prod([moment(c) for c in cnt.values()]))
    return tot


@register("sharp-trace-comparison", "S9.1: E tr((XX^T)^p) <= E tr((GG^T)^p) <= T_p for entries dominated by N(0, "
          "sigma_p^2) (exact enumeration, d1, d2 <= 3, p <= 3)", "§9.1", "numeric", covers=["sharp-S9.1"])
def _chk_trace():
    S = _sharp()
    rows = 0
    for d1, d2, p in ((2, 2, 2), (2, 3, 3), (3, 2, 2), (3, 3, 2), (1, 3, 3)):
        a = 1.0
        uni = _exact_trace_moment(d1, d2, p, lambda m: a ** m / (m + 1))
        s2 = 1 / 3
        gau = _exact_trace_moment(d1, d2, p, lambda m: s2 ** (m // 2) * _dfact(m // 2))
        Tp = math.exp(float(S.log_trace_moment(d1, d2, p)[p - 1])) * s2 ** p
        require(uni <= gau * (1 + 1e-12), f"uniform {uni} > Gaussian {gau} ({d1}x{d2}, p={p})")
        require(gau <= Tp * (1 + 1e-12), f"Gaussian trace moment {gau} > T_p {Tp} ({d1}x{d2}, p={p})")
        for q in (0.2, 0.6):  # sparse magnitude entries vs their dominating variance at this p
            sig = float(S.dominating_variance("magnitude", "uniform", q, p)[p - 1])
            mag = _exact_trace_moment(d1, d2, p, lambda m: q * q ** m / (m + 1))
            gq = _exact_trace_moment(d1, d2, p, lambda m: sig ** (m // 2) * _dfact(m // 2))
            require(mag <= gq * (1 + 1e-12), f"magnitude {mag} > dominating Gaussian {gq}")
        rows += 1
    # closed forms of T_p: E(A+R)^(2p) by quadrature, chi-square moments
    for A, p in ((2.0, 1), (5.3, 3), (12.0, 7)):
        num = integrate.quad(lambda r: (A + r) ** (2 * p) * r * math.exp(-r * r / 2), 0, np.inf, epsrel=1e-12)[0]
        d1 = d2 = int(round((A / 2) ** 2)) if A == 2.0 else None
        if d1:
            lear, _ = S._log_gauss_moment_terms(d1, d2, 8)
            close(math.exp(lear[p - 1]), num, rtol=1e-8, what="E(A+R)^2p")
    for N, p in ((6, 3), (40, 5)):
        close(float(np.prod([N + 2 * j for j in range(p)])), stats.chi2.moment(p, N), rtol=1e-10, what="chi2 moment")
    # tr(S^p) <= ||S||^(p-1) tr S on random PSD matrices
    rng = np.random.default_rng(1)
    for _ in range(50):
        X = rng.normal(size=(4, 6))
        Sm = X @ X.T
        p = int(rng.integers(1, 6))
        ev = np.linalg.eigvalsh(Sm)
        require(np.sum(ev ** p) <= ev.max() ** (p - 1) * ev.sum() * (1 + 1e-12), "trace inequality")
    return f"{rows} shapes enumerated (uniform <= Gaussian <= T_p, sparse magnitude dominated); quadratures; 50 PSD"


@register("sharp-moment-mc", "S9.1/S9.2/S9.3 thresholds are above the empirical (1 - delta') quantile of ||W|| "
          "(2000 draws, 12x20 and 40x25, delta' = 0.5, 0.9)", "§9.1", "numeric",
          covers=["sharp-S9.1", "sharp-S9.2", "sharp-S9.3"])
def _chk_moment_mc():
    S = _sharp()
    rng = np.random.default_rng(2)
    out = []
    for d1, d2 in ((12, 20), (40, 25)):
        for law in ("uniform", "gaussian"):
            W = rng.uniform(-1, 1, (2000, d1, d2)) if law == "uniform" else rng.normal(size=(2000, d1, d2))
            n = np.linalg.norm(W, 2, axis=(1, 2))
            for dl in (0.5, 0.9):
                emp = np.quantile(n, 1 - dl)
                c = [S.moment_bound(d1, d2, S.dominating_variance("full", law, 1.0), 1.0, dl)[0]]
                c.append(S.gaussian_full_bound(d1, d2, 1.0, dl) if law == "gaussian"
                         else S.lipschitz_uniform_bound(d1, d2, 1.0, dl))
                for x in c:
                    require(float(x) >= emp, f"{law} {d1}x{d2} delta'={dl}: threshold {float(x):.4f} < quantile {emp:.4f}")
                out.append(float(min(c)) / emp)
    return f"threshold / empirical quantile in [{min(out):.2f}, {max(out):.2f}]"


@register("sharp-lipschitz", "S9.3: d/dg a(2Phi(g)-1) = 2 a phi(g) <= a sqrt(2/pi); deviation a sqrt(2/pi) "
          "sqrt(2 ln(1/delta)) = a (2/sqrt(pi)) sqrt(ln(1/delta)); S9.2 formula", "§9.3", "symbolic+numeric",
          covers=["sharp-S9.3", "sharp-S9.2"])
def _chk_lip():
    S = _sharp()
    g, a, dl = sp.symbols("g a delta", positive=True)
    Phi = (1 + sp.erf(g / sp.sqrt(2))) / 2
    d = sp.diff(a * (2 * Phi - 1), g)
    sym_zero(d - 2 * a * sp.exp(-g ** 2 / 2) / sp.sqrt(2 * sp.pi), "derivative")
    sym_zero(d.subs(g, 0) - a * sp.sqrt(2 / sp.pi), "max at 0")
    sym_zero(a * sp.sqrt(2 / sp.pi) * sp.sqrt(2 * sp.log(1 / dl)) - a * 2 / sp.sqrt(sp.pi) * sp.sqrt(sp.log(1 / dl)),
             "deviation")
    mean = S.expected_norm_bound(30, 17, S.dominating_variance("full", "uniform", 1.0), 0.3)
    close(S.lipschitz_uniform_bound(30, 17, 0.3, 0.01), mean + 0.3 * 2 / math.sqrt(math.pi) * math.sqrt(math.log(100)),
          what="S9.3 bridge")
    close(S.gaussian_full_bound(30, 17, 0.3, 0.01), 0.3 * (math.sqrt(30) + math.sqrt(17) + math.sqrt(2 * math.log(100))),
          what="S9.2 bridge")
    return "sympy derivative, maximum and deviation; bridges for S9.2, S9.3"


# ------------------------------------------------------------------------------------------- S9.4
@register("sharp-schur", "S9.4: ||X|| <= sqrt(max row l1 * max col l1), monotone in the support; count quantile "
          "P(count > k*) <= delta; Hoeffding / half-normal line forms; table L moments", "§9.4", "symbolic+numeric",
          covers=["sharp-S9.4"])
def _chk_schur():
    S = _sharp()
    from hypothesis import strategies as st

    def case(seed):
        r = np.random.default_rng(seed)
        X = r.normal(size=(int(r.integers(1, 9)), int(r.integers(1, 9)))) * (r.random((1, 1)) + 0.1)
        rs, cs = np.abs(X).sum(1).max(), np.abs(X).sum(0).max()
        assert np.linalg.norm(X, 2) <= math.sqrt(rs * cs) * (1 + 1e-12)
        M = r.random(X.shape) < 0.5
        Y = np.where(M, X, 0)
        assert np.abs(Y).sum(1).max() <= rs and np.abs(Y).sum(0).max() <= cs

    hypothesis_cases(case, st.integers(0, 2 ** 31 - 1), max_examples=100)
    for n, q, d in ((100, 0.1, 0.01), (784, 0.003, 1e-4), (30, 0.9, 0.2)):
        k = stats.binom.isf(d, n, q)
        require(stats.binom.sf(k, n, q) <= d and (k == 0 or stats.binom.sf(k - 1, n, q) > d), "binom.isf semantics")
    x, a, q, s, c = sp.symbols("x a q s c", positive=True)
    sym_zero(2 * sp.integrate(x / (2 * a), (x, 0, q * a)) - q * q * a / 2, "E|e| magnitude")
    dens = sp.exp(-x ** 2 / (2 * s ** 2)) / (s * sp.sqrt(2 * sp.pi))
    sym_zero(2 * sp.integrate(x * dens, (x, 0, c * s)) - s * sp.sqrt(2 / sp.pi) * (1 - sp.exp(-c ** 2 / 2)),
             "E|e| Gaussian magnitude")
    sym_zero(2 * sp.integrate(x * dens, (x, 0, sp.oo)) - s * sp.sqrt(2 / sp.pi), "half-normal mean")
    # the line bound at q -> 0 goes to 0 (no jump): count quantile 0 once N q < delta
    v = S.schur_bound(50, 50, "random", "uniform", 1e-7, 1.0, 0.05)
    require(float(v) == 0.0, f"Schur bound at q = 1e-7 is {float(v)}, expected 0")
    return "100 hypothesis matrices (Schur, support monotonicity), isf semantics, sympy line moments, q -> 0+ gives 0"


# ------------------------------------------------------------------------------------------- S9.5, S9.6
@register("sharp-exact-k", "S9.5(b): a Bernoulli mask given its count k is uniform over k-subsets; S9.6: u_(j) ~ "
          "Beta(j, N-j+1) brackets (binomial duality), pmf(k; N, t) unimodal in t; S9.5(a) Jensen sample check",
          "§9.5", "symbolic+numeric", covers=["sharp-S9.5", "sharp-S9.6"])
def _chk_exact_k():
    S = _sharp()
    p = sp.Symbol("p", positive=True)
    N, k = 5, 2
    probs = {m: sp.Mul(*[p if b else (1 - p) for b in m]) for m in itertools.product((0, 1), repeat=N)
             if sum(m) == k}
    tot = sum(probs.values())
    for v in probs.values():
        sym_zero(v / tot - sp.Rational(1, math.comb(N, k)), "conditional mask law")
    for N, k, d in ((100, 10, 0.05), (5000, 1, 0.01), (300, 299, 0.1)):
        lo, hi = S.order_statistic_bracket(N, k, d)
        close(stats.binom.cdf(k - 1, N, hi), d / 2, rtol=1e-7, what="P(u_(k) > x_hi) = P(Bin(N,x_hi) < k)")
        close(stats.binom.sf(k - 1, N, lo), d / 2, rtol=1e-7, what="P(u_(k) < x_lo) = P(Bin(N,x_lo) >= k)")
        t = np.linspace(1e-6, 1 - 1e-6, 20001)
        pm = stats.binom.logpmf(k, N, t)
        dd = np.sign(np.diff(pm))
        require(np.sum(dd[1:] != dd[:-1]) <= 1, "pmf not unimodal in t")
    # order statistic of uniforms: simulation agrees with Beta(k, N-k+1)
    r = np.random.default_rng(3)
    u = np.sort(r.random((4000, 50)), axis=1)[:, 9]
    require(stats.kstest(u, stats.beta(10, 41).cdf).pvalue > 1e-3, "u_(10) of 50 uniforms is not Beta(10, 41)")
    # Jensen for masks: E||W o M||^2p <= E||W||^2p (sample means, same W)
    W = r.uniform(-1, 1, (3000, 6, 9))
    M = r.random((3000, 6, 9)) < 0.4
    for pp in (1, 3):
        require(np.mean(np.linalg.norm(W * M, 2, axis=(1, 2)) ** (2 * pp))
                <= np.mean(np.linalg.norm(W, 2, axis=(1, 2)) ** (2 * pp)), "masked moment above full moment")
    return "conditional mask law (sympy, N=5, k=2); 3 bracket identities; unimodality; Beta KS; Jensen samples"


# ------------------------------------------------------------------------------------------- S9.7, S9.8
@register("sharp-min", "S9.7: apriori_bound('best') <= both 'bernstein' and 'sharp' per term and in eps "
          "(deterministic minimum, same failure probability per term)", "§9.7", "numeric", covers=["sharp-S9.7", "sharp-setting"])
def _chk_min():
    apriori_bound = import_attr("probprune.theory.apriori", "apriori_bound")
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    r = np.random.default_rng(4)
    n = 0
    for _ in range(12):
        widths = [int(x) for x in r.integers(3, 200, int(r.integers(2, 5)))]
        act = "identity" if r.random() < 0.5 else "relu"
        spec = fcn_spec(widths, act)
        for method in ("magnitude", "random", "random_rescaled"):
            for law in ("uniform", "gaussian"):
                q = float(r.uniform(0.001, 0.9))
                rb = apriori_bound(spec, q, 0.05, method, law, statement="best")
                rs = apriori_bound(spec, q, 0.05, method, law, statement="sharp")
                ro = apriori_bound(spec, q, 0.05, method, law, statement="bernstein")
                require(np.all(rb.B <= ro.B * (1 + 1e-12)) and np.all(rb.B <= rs.B * (1 + 1e-12)), "B not the min")
                require(np.all(rb.eta <= rs.eta * (1 + 1e-12)), "eta above the sharp candidate")
                require(rb.eps <= min(ro.eps, rs.eps) * (1 + 1e-12) + 1e-300, "eps not the minimum")
                n += 1
    return f"{n} random (spec, method, law, q) cases"


@register("sharp-product", "S9.8: Chevet E||G Y|| <= sqrt(d)||Y|| + ||Y||_F (MC), Rayleigh L^2p norm r_p = (2^p p!)^(1/2p), "
          "quadrature Minkowski, depth-1 recursion >= S9.1, and coverage of the product bound (linear nets)", "§9.8",
          "symbolic+numeric", covers=["sharp-S9.8"])
def _chk_product():
    S = _sharp()
    r = np.random.default_rng(5)
    for _ in range(5):
        d, m, n = (int(x) for x in r.integers(2, 12, 3))
        Y = r.normal(size=(m, n)) * r.random((m, 1))
        G = r.normal(size=(4000, d, m))
        lhs = np.mean(np.linalg.norm(G @ Y, 2, axis=(1, 2)))
        rhs = math.sqrt(d) * np.linalg.norm(Y, 2) + np.linalg.norm(Y)
        require(lhs <= rhs, f"Chevet: {lhs} > {rhs}")
    pp = sp.Symbol("p", positive=True, integer=True)
    rr = sp.Symbol("r", positive=True)
    for pv in (1, 2, 5):
        m = sp.integrate(rr ** (2 * pv) * rr * sp.exp(-rr ** 2 / 2), (rr, 0, sp.oo))
        sym_zero(m - 2 ** pv * sp.factorial(pv), f"E R^(2p), p={pv}")
    del pp
    X, V = r.normal(size=(2, 10000)) * np.array([[1.0], [2.0]])
    for pv in (1, 2, 4):
        lhs = np.mean((X * X + V * V) ** pv) ** (1 / (2 * pv))
        rhs = math.sqrt(np.mean(X ** (2 * pv)) ** (1 / pv) + np.mean(V ** (2 * pv)) ** (1 / pv))
        require(lhs <= rhs * (1 + 1e-12), "quadrature Minkowski")
    # depth 1 (random pruning of one layer): the recursion is a (looser) bound on the same quantity as S9.1
    for q in (0.05, 0.5):
        x8, _ = S.product_moment_bound([20, 30], [0.2], np.array([q]), 0.1, "random", "uniform")
        x1, _ = S.moment_bound(30, 20, S.dominating_variance("random", "uniform", q), 0.2, 0.1)
        require(float(x8) >= float(x1) * (1 - 1e-12), f"depth-1 recursion {float(x8)} below S9.1 {float(x1)}")
    # coverage on a small linear net at delta = 0.5 (exact errors)
    fcn_spec = import_attr("probprune.net.templates", "fcn_spec")
    sample_weights = import_attr("probprune.net.templates", "sample_weights")
    spec = fcn_spec([6, 9, 4, 7], "identity")
    rates = []
    for method in ("magnitude", "random"):
        W = sample_weights(spec, r, "uniform", n=3000)
        Wh = [np.where((np.abs(w) < 0.3 * L.half_width) if method == "magnitude" else (r.random(w.shape) < 0.3), 0, w)
              for w, L in zip(W, spec.layers)]
        A, B = W[0], Wh[0]
        for w, wh in zip(W[1:], Wh[1:]):
            A, B = w @ A, wh @ B
        err = np.linalg.norm(A - B, 2, axis=(1, 2))
        x, _ = S.product_moment_bound(spec.widths, [L.half_width for L in spec.layers], np.full(3, 0.3), 0.5, method,
                                      "uniform")
        rates.append(float(np.mean(err > x)))
        require(rates[-1] <= 0.5, f"S9.8 violated in {rates[-1]:.3f} of draws at delta 0.5 ({method})")
    try:
        S.product_moment_bound([3, 3], [1.0], np.array([0.2]), 0.1, "random_rescaled", "uniform")
        require(False, "rescaled random accepted by S9.8")
    except Exception as exc:  # noqa: BLE001
        require("disjoint" in str(exc), f"wrong refusal: {exc}")
    return f"Chevet MC (5 cases), E R^2p symbolic, Minkowski, depth-1 >= S9.1, violation rates {rates} at delta 0.5"


@register("sharp-bridge-rp", "code-to-proof bridge: r_p and c_k of S9.8, log_trace_moment of S9.1 against direct "
          "formulas", "§9.8", "numeric", covers=["sharp-S9.8", "sharp-S9.1"], kind="bridge")
def _chk_bridge():
    S = _sharp()
    for d1, d2 in ((3, 5), (40, 17)):
        lt = S.log_trace_moment(d1, d2, 12)
        A, N = math.sqrt(d1) + math.sqrt(d2), d1 * d2
        for p in (1, 4, 12):
            ear = sum(math.comb(2 * p, j) * A ** (2 * p - j) * 2 ** (j / 2) * math.gamma(1 + j / 2)
                      for j in range(2 * p + 1))
            direct = (p - 1) / p * math.log(ear) + sum(math.log(N + 2 * j) for j in range(p)) / p
            close(lt[p - 1], direct, rtol=1e-10, what=f"log_trace_moment {d1}x{d2} p={p}")
    # moment_bound = sigma (T_p / delta)^(1/2p) at its reported p
    s2 = S.dominating_variance("full", "uniform", 1.0)
    x, p = S.moment_bound(10, 20, s2, 0.5, 0.01)
    p = int(p)
    close(float(x), 0.5 * math.sqrt(s2[p - 1]) * math.exp((S.log_trace_moment(10, 20)[p - 1] - math.log(0.01)) / (2 * p)),
          what="moment_bound at its p")
    close(float(np.exp((np.log(2) * 3 + special.gammaln(4)) / 6)), (2 ** 3 * 6) ** (1 / 6), what="r_3")
    return "log_trace_moment (6 cases), moment_bound, r_p"
