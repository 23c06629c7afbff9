"""Gaussian analogue (THEORY.md §3.12)."""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy import stats

from . import formulas as F
from ._core import hypothesis_cases, register, require, sym_positive, sym_zero


@register("gauss-moments", "w ~ N(0,s^2), tau = c s: P(|w|<tau) = 2Phi(c)-1, E (w 1{|w|<tau})^2 = s^2 g(c), mean 0",
          "§3.12", "symbolic", covers=["gauss-magnitude"])
def _chk_gauss_moments():
    x = sp.Symbol("x", real=True)
    c, s = F.c, F.s
    dens = sp.exp(-x ** 2 / (2 * s ** 2)) / (s * sp.sqrt(2 * sp.pi))
    sym_zero(sp.integrate(dens, (x, -c * s, c * s)) - (2 * F.Phi(c) - 1), "P(|w| < c s)")
    sym_zero(sp.integrate(x ** 2 * dens, (x, -c * s, c * s)) - s ** 2 * F.gaussian_g(c), "E e^2 = s^2 g(c)")
    sym_zero(sp.integrate(x * dens, (x, -c * s, c * s)), "E e = 0")
    # g is positive and increasing (g' = 2 c^2 phi(c)), so the magnitude eta is increasing in q
    sym_zero(sp.diff(F.gaussian_g(c), c) - 2 * c ** 2 * F.phi(c), "g'(c)")
    sym_positive(sp.diff(F.gaussian_g(c), c), "g'(c)")
    return "integrals over [-cs, cs] by sympy; g' = 2 c^2 phi(c) > 0"


@register("gauss-small-q", "g(c) ~ (pi/6) q^3 with q = 2Phi(c)-1; sqrt(g) ~ sqrt(pi/6) q^(3/2)", "§3.12",
          "symbolic+numeric", covers=["gauss-magnitude"])
def _chk_gauss_small_q():
    c = F.c
    qc = 2 * F.Phi(c) - 1
    g = F.gaussian_g(c)
    lim = sp.limit(g / qc ** 3, c, 0)
    sym_zero(lim - sp.pi / 6, "lim g/q^3")
    lim2 = sp.limit(sp.sqrt(g) / qc ** sp.Rational(3, 2), c, 0)
    sym_zero(lim2 - sp.sqrt(sp.pi / 6), "lim sqrt(g)/q^(3/2)")
    # numeric: relative error of the approximation for small q, via c = Phi^-1((1+q)/2)
    qs = np.array([1e-3, 1e-2, 0.05, 0.1])
    cs = stats.norm.ppf((1 + qs) / 2)
    gn = 2 * stats.norm.cdf(cs) - 1 - 2 * cs * stats.norm.pdf(cs)
    rel = np.abs(gn / (np.pi / 6 * qs ** 3) - 1)
    require(rel[0] < 1e-5 and rel[-1] < 0.02 and np.all(np.diff(rel) > 0), f"small-q approximation errors {rel}")
    return f"limits pi/6 and sqrt(pi/6); rel. error {rel[1]:.1e} at q=0.01, {rel[-1]:.1e} at q=0.1"


@register("gauss-truncation", "1-Phi(u) <= e^(-u^2/2)/2; u = sqrt(2 ln(N/delta'')) => N e^(-u^2/2) = delta''; "
          "truncated variance <= s^2", "§3.12", "symbolic+numeric", covers=["gauss-truncation"])
def _chk_gauss_trunc():
    u = sp.Symbol("u", nonnegative=True)
    h = sp.exp(-u ** 2 / 2) / 2 - (1 - F.Phi(u))
    # h(0) = 0, h(oo) = 0, h'(u) = e^{-u^2/2} (1/sqrt(2 pi) - u/2): positive then negative (one sign change),
    # so h rises from 0 and decreases to 0: h >= 0
    sym_zero(h.subs(u, 0), "h(0)")
    require(sp.limit(h, u, sp.oo) == 0, "h(oo)")
    sym_zero(sp.diff(h, u) - sp.exp(-u ** 2 / 2) * (1 / sp.sqrt(2 * sp.pi) - u / 2), "h'(u)")
    ug = np.linspace(0, 40, 400001)
    tail = stats.norm.sf(ug)
    require(np.all(tail <= np.exp(-ug ** 2 / 2) / 2 * (1 + 1e-12) + 1e-300), "tail bound on the grid")

    def case(uu_):
        assert stats.norm.sf(uu_) <= np.exp(-uu_ ** 2 / 2) / 2 * (1 + 1e-12) + 1e-300

    from hypothesis import strategies as st

    hypothesis_cases(case, st.floats(0, 38), max_examples=200)
    # union over N entries: P(max|w| > s u) <= N 2 (1 - Phi(u)) <= N e^{-u^2/2} = delta'' at the stated u
    N, d2 = sp.symbols("N delta2", positive=True)
    uu = sp.sqrt(2 * sp.log(N / d2))
    sym_zero(sp.simplify(N * sp.exp(-uu ** 2 / 2)) - d2, "N exp(-u^2/2) = delta''")
    # truncation keeps the variance <= s^2: E[w^2 | |w| <= s u]/s^2 = g(u)/(2Phi(u)-1) <= 1 <=> 2 u phi(u) >= 0
    c = F.c
    sym_zero((2 * F.Phi(c) - 1) - F.gaussian_g(c) - 2 * c * F.phi(c), "(2Phi-1) - g = 2 c phi")
    ratio = (2 * stats.norm.cdf(ug[1:]) - 1 - 2 * ug[1:] * stats.norm.pdf(ug[1:])) / (2 * stats.norm.cdf(ug[1:]) - 1)
    require(np.all(ratio <= 1.0), "truncated variance exceeds s^2")
    return ("symbolic h(0), h(oo), h'; tail bound on 400001 points + 200 hypothesis cases; union-bound u; "
            "variance ratio <= 1")


@register("gauss-random-looseness", "Gaussian random bound by truncation holds and is 'about 4x loose' (eta/||E|| at "
          "widths 300-500); uniform RR for comparison", "§3.12", "numeric", covers=["gauss-truncation"])
def _chk_gauss_looseness():
    b = sp.lambdify((F.s2, F.R, F.lam), F.beta(F.s2, F.R, F.lam), "numpy")
    rng = np.random.default_rng(312)
    gauss, unif = [], []
    for d, p in ((500, 0.1), (500, 0.5), (300, 0.05), (300, 0.3)):
        s = 1 / np.sqrt(d)
        P = rng.random((d, d)) < p
        de = 0.05 / 3  # W, E and truncation events of one layer
        lam = np.log(2 * d / de)
        u = np.sqrt(2 * np.log(d * d / de))
        E = np.linalg.norm(rng.standard_normal((d, d)) * s * P, 2)
        eta = b(d * p * s * s, s * u, lam)
        require(eta >= E, f"Gaussian random eta {eta} < ||E|| {E}")
        gauss.append(eta / E)
        a = np.sqrt(3) * s  # same variance, uniform law
        Eu = np.linalg.norm(rng.uniform(-a, a, (d, d)) * P, 2)
        etau = b(d * p * a * a / 3, a, lam)
        require(etau >= Eu, f"uniform RR eta {etau} < ||E|| {Eu}")
        unif.append(etau / Eu)
    require(2.0 <= min(gauss) and max(gauss) <= 8.0, f"Gaussian looseness {gauss} not 'about 4x'")
    return (f"Gaussian eta/||E|| in [{min(gauss):.1f}, {max(gauss):.1f}]; uniform RR in "
            f"[{min(unif):.1f}, {max(unif):.1f}]")
