"""Statistical verdicts of the figures (THEORY.md §17, issue 21 item 3): the dispersion statistic, the paired
interval / t-test duality and the finite-width slope of the width condition."""
from __future__ import annotations

import numpy as np
import sympy as sp
from scipy import stats

from ._core import close, register, require, sym_zero


@register("verdict-dispersion", "D is the 2 x k Pearson chi-square; under exact-k masks E D = (k-1) N/(N-1); an i.i.d. "
          "mask cuts off a neuron with probability 1-(1-p^n)^k <= k p^n", "§17.1", "symbolic+numeric",
          covers=("verdict-dispersion",))
def _chk_dispersion():
    x, n, p = sp.symbols("x n p", positive=True)
    pearson = (x - n * p) ** 2 / (n * p) + ((n - x) - n * (1 - p)) ** 2 / (n * (1 - p))
    sym_zero(pearson - (x - n * p) ** 2 / (n * p * (1 - p)), "two cells of column i")
    k, nn = sp.symbols("k n", positive=True, integer=True)
    N = k * nn
    ED = k * (N - nn) / (N - 1)  # sum_i Var(X_i) / (n p (1-p)), hypergeometric variance
    sym_zero(ED - (k - 1) * N / (N - 1), "E D under exact-k")
    # numeric: hypergeometric variance from scipy and the implementation against the contingency chi-square
    from probprune.experiments.figure_verdicts import dispersion_test

    for kk, n_, K in ((300, 784, 160000), (100, 300, 9000), (10, 100, 300)):
        Nn = kk * n_
        v = stats.hypergeom(Nn, K, n_).var()
        ph = K / Nn
        close(v, n_ * ph * (1 - ph) * (Nn - n_) / (Nn - 1), rtol=1e-10, what="hypergeometric variance")
    rng = np.random.default_rng(0)
    for _ in range(5):
        xs = rng.binomial(200, 0.4, size=40)
        chi2 = stats.chi2_contingency(np.stack([xs, 200 - xs]), correction=False)[0]
        close(dispersion_test(xs, 200).statistic, chi2, rtol=1e-10, what="implementation vs contingency table")
    # cut-off probability and its union bound
    for pp, n_, kk in ((0.9, 50, 300), (0.99, 100, 10), (0.5, 20, 1000)):
        exact = -np.expm1(kk * np.log1p(-(pp ** n_)))
        require(exact <= kk * pp ** n_ * (1 + 1e-12), f"union bound p={pp}")
    return "symbolic identity and E D; scipy hypergeometric variance; implementation = contingency chi-square"


@register("verdict-paired", "the paired t-interval excludes 0 iff the two-sided paired t-test rejects at 1 - c", "§17.2",
          "numeric", covers=("verdict-paired",))
def _chk_paired():
    from probprune.experiments.figure_verdicts import paired_interval

    rng = np.random.default_rng(1)
    agree = 0
    for i in range(400):
        s = int(rng.integers(2, 8))
        a, b = rng.normal(0, 1, s), rng.normal(rng.normal(0, 1), 1, s)
        iv = paired_interval(a - b, 0.95)
        rej = stats.ttest_rel(a, b).pvalue < 0.05
        require((iv.verdict != "not distinguishable") == rej, f"duality case {i}")
        agree += 1
    return f"{agree} random cases (2-7 seeds): interval excludes 0 <=> scipy ttest_rel p < 0.05"


@register("verdict-slope", "eps(d) = C d^-(alpha+beta) locally gives d(eps) with log-log slope -1/(alpha+beta)", "§17.3",
          "symbolic", covers=("verdict-slope",))
def _chk_slope():
    e, C, a, b = sp.symbols("epsilon C alpha beta", positive=True)
    d = (e / C) ** (-1 / (a + b))  # the inverse of eps = C d^-(alpha+beta)
    d_sym = sp.Symbol("d", positive=True)
    sym_zero((C * d_sym ** (-(a + b))).subs(d_sym, d) - e, "inverse")
    slope = sp.simplify(sp.diff(sp.log(d), e) * e)
    sym_zero(slope + 1 / (a + b), "log-log slope")
    return "symbolic inverse and log-log derivative"
