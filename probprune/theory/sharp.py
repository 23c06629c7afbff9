"""Sharper a-priori bounds on ||W_i|| and ||E_i|| with explicit constants (THEORY.md §9, all statements [D]).

Every function returns a *deterministic* threshold x with P(||X|| > x) <= delta' for the random matrix X it is about
(the full weight matrix W_i, or the pruning error E_i = W_i - What_i), for a given failure probability delta'. Since
every candidate is a deterministic number valid at the same delta', their minimum is valid at delta' too (§9.7): no
union over candidates is needed (the choice of candidate depends only on the shapes, fractions and delta').

Statements (THEORY §9):

* **S9.1 moment comparison** (`moment_bound`): X d1 x d2 with independent symmetric entries whose even moments are
  dominated by those of N(0, sigma^2) up to order 2p: P(||X|| >= x) <= T_p / x^(2p) with
  T_p = (sigma^(2p) E(A+R)^(2p))^((p-1)/p) * (sigma^(2p) prod_{j<p}(N+2j))^(1/p), A = sqrt(d1)+sqrt(d2), R Rayleigh.
  Entry laws: :func:`log_moment_ratio` (rho_k = E e^(2k) / (a^(2k) (2k-1)!!)), sigma_p^2 = a^2 max_{k<=p} rho_k^(1/k).
* **S9.2 Gaussian full matrix** (`gaussian_full_bound`): s (A + sqrt(2 ln(1/delta'))) (Gordon + one-sided Gaussian
  concentration).
* **S9.3 Lipschitz image** (`lipschitz_uniform_bound`): uniform entries are a sqrt(2/pi)-Lipschitz image of a
  Gaussian: ||W|| <= E||W|| + a (2/sqrt(pi)) sqrt(ln(1/delta')), E||W|| <= min_p T_p^(1/(2p)).
* **S9.4 Schur / line sums** (`schur_bound`): ||X|| <= sqrt(max_row ||x_r||_1 max_col ||x_c||_1), row and column
  l1 sums bounded by binomial (or hypergeometric) counts times the entry range, or by Bernstein on the l1 sum. It is
  monotone in the support, so it also bounds exact-k pruning and has no jump at p = 0+.
* **S9.5 masks independent of W** (`masked_moment_bound`): for What = W o M with M independent of W and centred
  independent entries, ||W o M|| = ||E[W | W o M]|| so E phi(||W o M||) <= E phi(||W||) for convex increasing phi:
  every moment bound of W holds for W o M (exact-k random pruning, either law).
* **S9.6 exact-k magnitude** (`exact_k_magnitude_bound`): the k-th order statistic of |w| is bracketed by
  Clopper-Pearson-type binomial quantiles; E_exact = E_thr(q_lo) + shell, ||E_exact|| <= ||E_thr(q_lo)|| + Schur(shell),
  or Schur(support |w| <= q_hi a) alone.

Conventions: a is the layer's ``half_width`` (uniform U[-a, a]) or the standard deviation s (Gaussian law). Conv layers
multiply every bound by sqrt(r_i) (Lemma C, THEORY §3.5-3.6) in :mod:`probprune.theory.apriori`, not here.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import special, stats

from probprune.core.errors import ProbPruneError
from probprune.core.registry import ENTRY_MODELS, LAWS, METHODS, log_double_factorial_odd
from probprune.theory.bernstein import beta

#: p = 1 .. P_MAX is searched for the moment bound (the optimum is ~ (A ln(N/delta))^(2/3), < 100 for widths <= 4096)
P_MAX = 192

#: candidate names (the ``term_statements`` of :class:`probprune.theory.apriori.BoundResult`)
CANDIDATES = {
    "bernstein": "THEORY §3.4/§3.12 matrix Bernstein",
    "moment": "THEORY §9.1 S9.1 moment comparison",
    "gauss-full": "THEORY §9.2 S9.2 Gordon + Gaussian concentration",
    "lipschitz": "THEORY §9.3 S9.3 Lipschitz image of a Gaussian",
    "schur": "THEORY §9.4 S9.4 Schur test with line sums",
    "masked-moment": "THEORY §9.5 S9.5 mask independent of W (Jensen)",
    "exact-k-magnitude": "THEORY §9.6 S9.6 exact-k magnitude bracket",
    "conditioned-bernoulli": "THEORY §9.5 S9.5(b) exact-k = Bernoulli given its count",
    "conditioned-threshold": "THEORY §9.6 S9.6(c) exact-k magnitude = threshold given its count",
    "product-moment": "THEORY §9.8 S9.8 product moment bound",
    "product-moment-exact-k": "THEORY §9.8b S9.8b product moment bound for exact-k magnitude",
    "product-moment-rescaled": "THEORY §9.8c S9.8c product moment bound for rescaled random",
    "second-moment": "THEORY §9.11 S9.11 exact second moment of ||D||_F (identity activations, dense or conv)",
    "fourth-moment": "THEORY §9.12 S9.12 exact fourth moment of ||D||_F (linear dense; threshold, Bernoulli, rescaled)",
    "zero": "nothing pruned: E_i = 0",
}


# ------------------------------------------------------------------------------------------- entry moments
def _log_dfact_odd(k):
    """log (2k-1)!! (the registry's :func:`~probprune.core.registry.log_double_factorial_odd`)."""
    return log_double_factorial_odd(k)


def _law(law: str):
    """The registry's weight law ``law`` (exact canonical name, as every caller here passes it)."""
    entry = LAWS.get(law) if isinstance(law, str) else None
    if entry is None:
        raise ProbPruneError(f"unknown weight law {law!r}")
    return entry


def log_moment_ratio(kind: str, law: str, q, k):
    """log rho_k with rho_k = E e^(2k) / (a^(2k) (2k-1)!!) for one entry e of the matrix (THEORY §9.1, table M).

    kind: "full" (e = w), "magnitude" (e = w 1{|w| < tau}, P(|w| < tau) = q), "random" (e = w b, b ~ Bern(q)),
    "random_rescaled" (e = w (b - (1-b) q/(1-q))), "kept_*" (the kept entries). law: "uniform" (w ~ U[-a, a]) or
    "gaussian" (w ~ N(0, a^2)). The entry models and the laws' moments are the registry's
    (:data:`~probprune.core.registry.ENTRY_MODELS`, :class:`~probprune.core.registry.WeightLaw`).
    Broadcasts q (..., ) against k (the last axis of the result is k when k is 1-D and q has a trailing axis)."""
    q = np.asarray(q, float)
    k = np.asarray(k, float)
    lw = _law(law)
    entry = ENTRY_MODELS.get(kind)
    if entry is None:
        raise ProbPruneError(f"unknown entry kind {kind!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return entry.log_moment_ratio(lw, q, k)


def dominating_variance(kind: str, law: str, q, p_max: int = P_MAX):
    """sigma_p^2 / a^2 = max_{k <= p} rho_k^(1/k) for p = 1..p_max (last axis), THEORY §9.1 step 2."""
    k = np.arange(1, p_max + 1, dtype=float)
    q = np.asarray(q, float)[..., None]
    lr = log_moment_ratio(kind, law, q, k) / k
    return np.exp(np.maximum.accumulate(lr, axis=-1))


# ------------------------------------------------------------------------------------------- S9.1
@lru_cache(maxsize=256)
def _log_gauss_moment_terms(d1: int, d2: int, p_max: int = P_MAX) -> tuple[np.ndarray, np.ndarray]:
    """For p = 1..p_max: log E(A+R)^(2p) (R Rayleigh, A = sqrt(d1)+sqrt(d2)) and (1/p) sum_{j<p} log(N + 2j)."""
    A = np.sqrt(d1) + np.sqrt(d2)
    N = float(d1) * float(d2)
    p = np.arange(1, p_max + 1, dtype=float)[:, None]
    j = np.arange(0, 2 * p_max + 1, dtype=float)[None, :]
    with np.errstate(invalid="ignore"):
        # C(2p, j) A^(2p-j) E R^j with E R^j = 2^(j/2) Gamma(1 + j/2), j = 0..2p
        lt = (special.gammaln(2 * p + 1) - special.gammaln(j + 1) - special.gammaln(np.maximum(2 * p - j, 0) + 1)
              + (2 * p - j) * np.log(A) + 0.5 * j * np.log(2.0) + special.gammaln(1 + j / 2))
    lt = np.where(j <= 2 * p, lt, -np.inf)
    out = special.logsumexp(lt, axis=1)
    logF = np.cumsum(np.log(N + 2.0 * np.arange(p_max))) / np.arange(1, p_max + 1)
    return out, logF


def log_trace_moment(d1: int, d2: int, p_max: int = P_MAX) -> np.ndarray:
    """log (T_p / sigma^(2p)), p = 1..p_max: the bound on E tr((G G^T)^p) / sigma^(2p) of THEORY §9.1 step 3,
    ((p-1)/p) log E(A+R)^(2p) + (1/p) sum_{j<p} log(N + 2j)."""
    lear, logF = _log_gauss_moment_terms(int(d1), int(d2), int(p_max))
    p = np.arange(1, p_max + 1, dtype=float)
    return (p - 1) / p * lear + logF


def moment_bound(d1: int, d2: int, sigma2_over_a2, a, delta, p_max: int = P_MAX):
    """S9.1 (THEORY §9.1): min over p of sigma_p (T_p/sigma^(2p) / delta)^(1/(2p)); P(||X|| > result) <= delta.

    ``sigma2_over_a2`` has a trailing p axis (from :func:`dominating_variance`); ``a`` and ``delta`` broadcast against
    the leading axes. Returns the bound and the minimising p."""
    s2 = np.asarray(sigma2_over_a2, float)
    P = s2.shape[-1]
    grid = _p_grid(P)  # every p is valid; searching a subset only changes which valid x is reported
    p = grid.astype(float) + 1.0
    lt = log_trace_moment(d1, d2, P)[grid]
    logd = np.log(np.asarray(delta, float))[..., None]
    with np.errstate(divide="ignore"):
        lx = 0.5 * np.log(s2[..., grid]) + (lt - logd) / (2 * p)
    i = np.argmin(lx, axis=-1)
    val = np.exp(np.take_along_axis(lx, i[..., None], axis=-1)[..., 0])
    return np.asarray(a, float) * val, grid[i] + 1


@lru_cache(maxsize=8)
def _p_grid(P: int) -> np.ndarray:
    """0-based indices of the p searched: 1..32 all, then about 6% steps up to P."""
    g = np.unique(np.concatenate([np.arange(min(P, 32)), np.round(np.geomspace(32, P, 24)).astype(int) - 1]))
    return g[(g >= 0) & (g < P)]


# ------------------------------------------------------------------------------------------- S9.2, S9.3
def gaussian_full_bound(d1, d2, s, delta):
    """S9.2: ||G|| <= s (sqrt(d1) + sqrt(d2) + sqrt(2 ln(1/delta))) w.p. >= 1 - delta, G with i.i.d. N(0, s^2)
    entries (Gordon: E||G|| <= s(sqrt(d1)+sqrt(d2)); ||G|| is s-Lipschitz in the standard Gaussian vector)."""
    return np.asarray(s, float) * (np.sqrt(d1) + np.sqrt(d2) + np.sqrt(2.0 * np.log(1.0 / np.asarray(delta, float))))


def expected_norm_bound(d1: int, d2: int, sigma2_over_a2, a, p_max: int = P_MAX):
    """E||X|| <= (E||X||^(2p))^(1/(2p)) <= min_p sigma_p (T_p/sigma^(2p))^(1/(2p)) (S9.1 with delta = 1)."""
    return moment_bound(d1, d2, sigma2_over_a2, a, 1.0, p_max)[0]


def lipschitz_uniform_bound(d1: int, d2: int, a, delta):
    """S9.3: for i.i.d. U[-a, a] entries (and for W o M, M an independent mask, conditionally on M, with E||W o M||
    <= E||W|| by S9.5), ||X|| <= E||W|| + a (2/sqrt(pi)) sqrt(ln(1/delta)) w.p. >= 1 - delta.
    w = a (2 Phi(g) - 1) has Lipschitz constant 2 a phi(0) = a sqrt(2/pi); the deviation is
    a sqrt(2/pi) sqrt(2 ln(1/delta))."""
    s2 = dominating_variance("full", "uniform", 1.0)
    mean = expected_norm_bound(d1, d2, s2, a)
    return mean + np.asarray(a, float) * 2.0 / np.sqrt(np.pi) * np.sqrt(np.log(1.0 / np.asarray(delta, float)))


def full_norm_bound(d1: int, d2: int, a, delta, law: str):
    """Best of the new bounds on ||W|| (S9.1-S9.3) at failure probability delta; returns (bound, candidate name):
    S9.1 and the law's own tail bound (``WeightLaw.full_tail``: S9.3 uniform, S9.2 Gaussian)."""
    lw = _law(law)
    m, _ = moment_bound(d1, d2, dominating_variance("full", lw.name, 1.0), a, delta)
    return _argmin_named([("moment", m), (lw.full_tail, FULL_TAIL_BOUNDS[lw.full_tail](d1, d2, a, delta))])


#: the full-matrix tail bounds besides S9.1, by candidate name (``WeightLaw.full_tail``)
FULL_TAIL_BOUNDS = {"gauss-full": gaussian_full_bound, "lipschitz": lipschitz_uniform_bound}


def _argmin_named(cands):
    names = [c[0] for c in cands]
    vals = np.stack(np.broadcast_arrays(*[np.asarray(c[1], float) for c in cands]), axis=0)
    vals = np.where(np.isnan(vals), np.inf, vals)  # a NaN (inf * 0 at a degenerate corner) is no bound, never chosen
    i = np.argmin(vals, axis=0)
    return np.take_along_axis(vals, i[None], axis=0)[0], np.asarray(names, dtype=object)[i]


# ------------------------------------------------------------------------------------------- S9.4 Schur
def _entry_abs_stats(kind: str, law: str, q, a):
    """Statistics of one entry e of E for the line sums of S9.4 (THEORY §9.4, table L):
    (E|e|, E e^2, R, R_nz, m_nz, bounded) with R a bound on |e|, and, given e != 0, |e| <= R_nz with mean m_nz
    (the conditional law used with the count form). ``bounded`` is False for Gaussian random kinds (|e| unbounded).
    The table is the registry's (``EntryModel.abs_stats`` of the law's ``*_abs_stats``)."""
    entry = ENTRY_MODELS.get(kind)
    lw = LAWS.get(law) if isinstance(law, str) else None
    if entry is None or entry.abs_stats is None or lw is None:
        raise ProbPruneError(f"no Schur line-sum statistics for {kind!r} under the {law!r} law")
    return entry.abs_stats(lw, np.asarray(q, float), np.asarray(a, float))


def line_sum_bound(n_line: int, kind: str, law: str, q, a, delta_line, count_quantile=None):
    """Bound on the l1 norm of one line (row or column of n_line entries) at failure probability delta_line
    (THEORY §9.4 (a)-(c)), the minimum of the forms that apply:
    (a) count form R_nz k*(delta_line), k* the count quantile (P(count > k*) <= delta_line);
    (b) conditional form: k* at delta_line/2, then given the count the nonzero |e| are i.i.d.: Hoeffding
        k* m_nz + R_nz sqrt(k* ln(2/delta_line)/2) (bounded), or for half-normal |e| (Gaussian random)
        s (k* sqrt(2/pi) + sqrt(2 k* ln(2/delta_line))) (sum of k* |g| is sqrt(k*)-Lipschitz);
    (c) Bernstein on the l1 sum of i.i.d. entries (not for count_quantile overrides): n E|e| + beta(n E e^2, R, ln(1/dl)).
    ``count_quantile(n_line, delta)`` replaces the Binomial(n_line, q) count quantile (hypergeometric for exact-k)."""
    q = np.asarray(q, float)
    a = np.asarray(a, float)
    dl = np.asarray(delta_line, float)
    iid = count_quantile is None
    cq = count_quantile or (lambda n, d: stats.binom.isf(d, n, np.minimum(q, 1.0)))
    ma, sec, R, Rnz, mnz, bounded = _entry_abs_stats(kind, law, q, a)
    forms = []
    if mnz is not None:  # count forms (the support has the stated count law)
        k2 = cq(n_line, dl / 2)
        if bounded:
            forms.append(Rnz * cq(n_line, dl))
            forms.append(k2 * mnz + Rnz * np.sqrt(k2 * np.log(2 / dl) / 2))
        else:
            forms.append(a * (k2 * np.sqrt(2 / np.pi) + np.sqrt(2 * k2 * np.log(2 / dl))))
    if iid and ma is not None:
        forms.append(n_line * ma + beta(n_line * sec, R, np.log(1 / dl)))
    if not forms:
        return np.full(np.broadcast_shapes(q.shape, a.shape, dl.shape), np.inf)
    return np.minimum.reduce(np.broadcast_arrays(*forms))


def schur_bound(d1: int, d2: int, kind: str, law: str, q, a, delta, count_quantile=None):
    """S9.4: ||X|| <= sqrt(max_row l1 * max_col l1); rows get delta/2 split over d1 rows (each row has d2 entries),
    columns delta/2 over d2 columns. P(||X|| > result) <= delta."""
    d = np.asarray(delta, float)
    r = line_sum_bound(d2, kind, law, q, a, d / (2 * d1), count_quantile)
    c = line_sum_bound(d1, kind, law, q, a, d / (2 * d2), count_quantile)
    return np.sqrt(r * c)


# ------------------------------------------------------------------------------------------- E_i, best
def error_norm_bound(d1: int, d2: int, kind: str, law: str, q, a, delta):
    """Best new bound on ||E|| (S9.1 moment comparison, S9.4 Schur) for threshold magnitude / Bernoulli random pruning
    at failure probability delta; returns (bound, candidate name). q = 0 gives 0 ("zero")."""
    q = np.asarray(q, float)
    a = np.asarray(a, float)
    pos = q > 0
    qq = np.where(pos, q, 0.5)
    s2 = dominating_variance(kind, law, qq)
    mom, _ = moment_bound(d1, d2, s2, a, delta)
    cands = [("moment", mom), ("schur", schur_bound(d1, d2, kind, law, qq, a, delta))]
    val, name = _argmin_named(cands)
    return np.where(pos, val, 0.0), np.where(pos, name, "zero")


def exact_k_random_bound(d1: int, d2: int, law: str, k: int, a, delta):
    """||W o M|| for an exact-k uniformly random mask M independent of W (S9.4 with hypergeometric line counts and
    S9.5 masked moments; Gaussian: S9.2 via Sudakov-Fernique conditional on M). Returns (bound, candidate name)."""
    if k <= 0:
        return np.asarray(0.0), np.asarray("zero", dtype=object)
    N = d1 * d2
    kind = "random"
    frac = k / N

    def cq(n_line, dl):
        return stats.hypergeom.isf(dl, N, k, n_line)

    cands = [("schur", schur_bound(d1, d2, kind, law, frac, a, delta, count_quantile=cq))]
    # S9.5(b): an exact-k mask is a Bernoulli(k/N) mask conditioned on its count being k, so
    # P(||E_exact|| > x) <= P(||E_Bern|| > x) / P(Bin(N, k/N) = k): any Bernoulli bound at delta * pmf
    pmf = float(stats.binom.pmf(k, N, frac))
    v, _ = error_norm_bound(d1, d2, kind, law, frac, a, np.asarray(delta, float) * pmf)
    cands.append(("conditioned-bernoulli", v))
    mom, _ = moment_bound(d1, d2, dominating_variance("full", law, 1.0), a, delta)
    cands.append(("masked-moment", mom))
    tail = _law(law).full_tail  # S9.2 Gaussian (Sudakov-Fernique conditional on M), S9.3 uniform
    cands.append((tail, FULL_TAIL_BOUNDS[tail](d1, d2, a, delta)))
    return _argmin_named(cands)


def order_statistic_bracket(N: int, k: int, delta):
    """S9.6 (a): with u_(k) the k-th smallest of N i.i.d. U[0,1] (u = P(|w'| < |w|), the probability-integral transform
    of |w|), P(u_(k) > x_hi) <= delta/2 and P(u_(k) < x_lo) <= delta/2 for x_hi = Beta^{-1}(1 - delta/2; k, N-k+1),
    x_lo = Beta^{-1}(delta/2; k, N-k+1)  (u_(k) ~ Beta(k, N-k+1))."""
    d = np.asarray(delta, float)
    return stats.beta.ppf(d / 2, k, N - k + 1), stats.beta.isf(d / 2, k, N - k + 1)


def exact_k_magnitude_bound(d1: int, d2: int, law: str, k: int, a, delta):
    """S9.6: exact-k magnitude pruning (the k smallest |w| of the layer). With probability >= 1 - delta/2 the
    k-th order statistic lies in [x_lo, x_hi] (probability scale); then (i) E_exact is supported on {u <= x_hi}:
    Schur bound of the threshold-x_hi error (monotone in the support) at delta/2; (ii) E_exact = E_thr(x_lo) + S with
    S supported on the shell {x_lo < u <= x_hi}: moment bound of E_thr(x_lo) at delta/4 + Schur bound of the shell at
    delta/4 (entries bounded by the x_hi threshold, nonzero with probability x_hi - x_lo). Returns (bound, name)."""
    if k <= 0:
        return np.asarray(0.0), np.asarray("zero", dtype=object)
    N = d1 * d2
    d = float(delta)
    x_lo, x_hi = order_statistic_bracket(N, k, d / 2)
    sch = schur_bound(d1, d2, "magnitude", law, x_hi, a, d / 2)
    mom, _ = moment_bound(d1, d2, dominating_variance("magnitude", law, max(x_lo, 1e-300)), a, d / 4)
    shell = _shell_schur(d1, d2, law, x_lo, x_hi, a, d / 4)
    cands = [("schur", sch), ("exact-k-magnitude", mom + shell)]
    if k < N:
        # S9.6(c): given the (k+1)-th order statistic t of the probability-transformed |w|, E_exact has the law of
        # the threshold-t error given its count is k; bracket t at d/2, then the threshold-x_hi bound (monotone in
        # t) at d/2 * min pmf over the bracket (the binomial pmf in t is unimodal)
        t_lo, t_hi = order_statistic_bracket(N, k + 1, d / 2)
        pmf = float(min(stats.binom.pmf(k, N, t_lo), stats.binom.pmf(k, N, t_hi)))
        if pmf > 0:
            v, _ = error_norm_bound(d1, d2, "magnitude", law, t_hi, a, d / 2 * pmf)
            cands.append(("conditioned-threshold", v))
    return _argmin_named(cands)


def _shell_schur(d1, d2, law, x_lo, x_hi, a, delta):
    """Schur bound (S9.4, count form) for entries nonzero with probability x_hi - x_lo and |e| <= threshold(x_hi)."""
    R = _law(law).threshold(x_hi, a)
    pz = max(x_hi - x_lo, 0.0)
    kr = stats.binom.isf(delta / (2 * d1), d2, pz)
    kc = stats.binom.isf(delta / (2 * d2), d1, pz)
    return R * np.sqrt(kr * kc)


# ------------------------------------------------------------------------------------------- S9.8 products
def product_moment_bound(dims, half_widths, q, delta, method: str, law: str, p_max: int = P_MAX):
    """S9.8 (THEORY §9.8): for a *linear* FCN (identity activations, dense layers) with independent layers whose
    entries are i.i.d., P(||W_l...W_1 - What_l...What_1|| > x) <= delta at the returned x (no per-layer split).

    dims = (d_0, ..., d_l); q has a trailing layer axis (batched leading axes allowed). Gaussian model: What_k and E_k
    replaced by independent Gaussians with the dominating variances (S9.1 step 2); the L^(2p) recursion
    a_k <= tau_k((sqrt(d_k) + r_p) a_(k-1) + af_(k-1)), af_k <= tau_k c_k af_(k-1) (A_k = H_k A_(k-1),
    tau^2 = s_What^2 + s_E^2), e_k <= (sqrt(d_k) + r_p) z_k + zf_k, ef_k <= c_k zf_k with
    z_k = sqrt(s_What^2 e_(k-1)^2 + s_E^2 a_(k-1)^2), zf_k likewise with the Frobenius moments; r_p = ||Rayleigh||_2p,
    c_k = ||chi2_(d_k)||_p^(1/2). Then E tr((D D^T)^p) <= e_l^(2p-2) ef_l^2 and Markov. Returns (x, best p)."""
    m = METHODS.get(method) if isinstance(method, str) else None
    entry = None if m is None else m.entry_model
    if entry is None or m.rescaled:
        # rescaled random: E and What overlap on the kept entries, so the expansion has mixed-sign monomials (§9.8)
        raise ProbPruneError(f"S9.8 needs E_k and What_k with disjoint supports (magnitude, random); not {method!r}")
    dims, sE2s, sW2s = _dominating_variances(dims, half_widths, q, law, p_max, entry.name, entry.kept)
    return product_moment_core(dims, sE2s, sW2s, delta, p_max)


def product_moment_core(dims, sE2s, sW2s, delta, p_max: int = P_MAX):
    """The S9.8 recursion and Markov step (THEORY §9.8) for given dominating variances per layer: ``sE2s[k]`` and
    ``sW2s[k]`` (arrays with a trailing p axis of length p_max, leading batch axes allowed) dominate the moments of
    the entries of E_k and What_k up to order 2p. Returns (x, best p) with P(||D|| > x) <= delta."""
    e, ef, _, _ = _s98_chain(dims, sE2s, sW2s, p_max)
    return _s98_markov(e, ef, delta, p_max)


def _s98_chain(dims, sE2s, sW2s, p_max: int = P_MAX):
    """The L^(2p) recursion of S9.8 (THEORY §9.8): returns (e_l, ef_l, a_l, af_l), the bounds on the L^(2p) norms of
    ||D||, ||D||_F, ||A_l||, ||A_l||_F (trailing p axis)."""
    dims = [int(d) for d in dims]
    depth = len(dims) - 1
    P = np.arange(1, p_max + 1, dtype=float)
    lead = np.broadcast_shapes(*[np.shape(x)[:-1] for x in (*sE2s, *sW2s)])
    a = np.ones(lead + (p_max,))
    af = np.full(lead + (p_max,), math.sqrt(dims[0]))
    e = np.zeros(lead + (p_max,))
    ef = np.zeros(lead + (p_max,))
    for k in range(depth):
        dk = dims[k + 1]
        sE2, kept = sE2s[k], sW2s[k]
        c_k = np.exp(np.cumsum(np.log(dk + 2.0 * np.arange(p_max))) / (2 * P))
        s_k = shifted_rayleigh_norm(math.sqrt(dk), p_max)  # ||sqrt(d_k) + R||_2p <= sqrt(d_k) + r_p (§9.8 step 4)
        z = np.sqrt(kept * e * e + sE2 * a * a)
        zf = np.sqrt(kept * ef * ef + sE2 * af * af)
        e, ef = s_k * z + zf, c_k * zf
        tau = np.sqrt(kept + sE2)
        a, af = tau * (s_k * a + af), tau * c_k * af
    return e, ef, a, af


@lru_cache(maxsize=512)
def _shifted_rayleigh_norm_cached(A: float, p_max: int) -> np.ndarray:
    p = np.arange(1, p_max + 1, dtype=float)[:, None]
    j = np.arange(0, 2 * p_max + 1, dtype=float)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        lt = (special.gammaln(2 * p + 1) - special.gammaln(j + 1) - special.gammaln(np.maximum(2 * p - j, 0) + 1)
              + (2 * p - j) * np.log(A) + 0.5 * j * np.log(2.0) + special.gammaln(1 + j / 2))
    lt = np.where(j <= 2 * p, lt, -np.inf)
    out = np.exp(special.logsumexp(lt, axis=1) / (2 * p[:, 0]))
    out.setflags(write=False)
    return out


def shifted_rayleigh_norm(A: float, p_max: int = P_MAX) -> np.ndarray:
    """||A + R||_(2p) = (E (A + R)^(2p))^(1/(2p)) for p = 1..p_max, R Rayleigh (E R^j = 2^(j/2) Gamma(1 + j/2)), A > 0
    (THEORY §9.8 step (4)); by Minkowski it is <= A + r_p, r_p = ||R||_2p, and close to A + E R when A >> sqrt(p)."""
    return _shifted_rayleigh_norm_cached(float(A), int(p_max))


def _s98_markov(e, ef, delta, p_max: int = P_MAX):
    """Markov on E tr((D D^T)^p) <= e^(2p-2) ef^2 and on E||D||_F^(2p) <= ef^(2p) (S9.8 and S9.8(F)); min over p."""
    P = np.arange(1, p_max + 1, dtype=float)
    logd = np.log(np.asarray(delta, float))
    logd = np.reshape(logd, np.shape(logd) + (1,)) if np.ndim(logd) else logd
    with np.errstate(divide="ignore", invalid="ignore"):  # e = 0 only when nothing is pruned: x = 0
        lx = ((2 * P - 2) * np.log(e) + 2 * np.log(ef) - logd) / (2 * P)
        # S9.8(F): ||D|| <= ||D||_F and E||D||_F^(2p) <= ef^(2p) (same comparison, Frobenius chain only, no r_p)
        lx = np.minimum(lx, np.log(ef) - logd / (2 * P))
    lx = np.where(np.isnan(lx), -np.inf, lx)
    i = np.argmin(lx, axis=-1)
    return np.exp(np.take_along_axis(lx, i[..., None], axis=-1)[..., 0]), i + 1


def _dominating_variances(dims, half_widths, q, law: str, p_max: int, e_method: str, kept_method: str):
    """(dims, sigma_E^2 per layer, sigma_What^2 per layer) for S9.8/S9.8c: the dominating variances (table M) of the
    pruned entries (``e_method``) and of the kept ones (``kept_method``; the full law where a layer is not pruned),
    scaled by the half-width squared. q has a trailing layer axis (batched leading axes allowed)."""
    q = np.asarray(q, float)
    dims = [int(d) for d in dims]
    depth = len(dims) - 1
    if q.shape[-1] != depth:
        raise ProbPruneError(f"need one fraction per layer ({depth}), got shape {q.shape}")
    sE2s, sW2s = [], []
    for k in range(depth):
        qk = q[..., k]
        hw = float(half_widths[k])
        pos = (qk > 0)[..., None]
        qq = np.where(qk > 0, qk, 0.5)
        sE2s.append(np.where(pos, hw * hw * dominating_variance(e_method, law, qq, p_max), 0.0))
        sW2s.append(np.where(pos, hw * hw * dominating_variance(kept_method, law, qq, p_max),
                             hw * hw * dominating_variance("full", law, 1.0, p_max)))
    return dims, sE2s, sW2s


def rescaled_product_moment_bound(dims, half_widths, q, delta, law: str, p_max: int = P_MAX):
    """S9.8c (THEORY §9.8c): rescaled random pruning (What_k = W_k o (1 - B_k)/(1 - q_k)) of a linear FCN. With
    Y_k = W_k o (1 - B_k), Z_k = W_k o B_k and kappa = prod_k (1 - q_k)^-1 - 1, D = [prod(Y + Z) - prod Y] - kappa
    prod Y; dropping the signs can only increase E tr((D D^T)^p) (every monomial expectation is >= 0), then S9.8 for
    the first part (method "random") and the a-recursion with tau = sigma_Y for prod Y, added by Minkowski:
    e+ = e_l + kappa abar_l, f+ = f_l + kappa afbar_l, Markov. q has a trailing layer axis. Returns (x, best p)."""
    q = np.asarray(q, float)
    if np.any(q >= 1):
        raise ProbPruneError("rescaled random pruning needs q < 1")
    dims, sE2s, sW2s = _dominating_variances(dims, half_widths, q, law, p_max, "random", "kept_random")
    e, ef, _, _ = _s98_chain(dims, sE2s, sW2s, p_max)
    _, _, ab, afb = _s98_chain(dims, [np.zeros_like(x) for x in sE2s], sW2s, p_max)
    kappa = (np.expm1(-np.sum(np.log1p(-q), axis=-1)))[..., None]
    return _s98_markov(e + kappa * ab, ef + kappa * afb, delta, p_max)


def exact_k_magnitude_product_bound(dims, half_widths, ks, delta, law: str, p_max: int = P_MAX):
    """S9.8b (THEORY §9.8b): S9.8 for exact-k magnitude pruning of a linear FCN (the k_i smallest |w| of layer i).
    Per pruned layer, t_i = u_(k_i+1) (probability scale) is bracketed at delta/(2 l_p); given t_i the pruned set is a
    Bernoulli(t_i) threshold pattern on the other N_i - 1 positions conditioned on its count k_i, plus one kept
    boundary entry of magnitude c(t_i); S9.8 with sigma_E^2 = magnitude domination at t_hi, sigma_W^2 = max(full-matrix
    domination, c(t_hi)^2) (monotone in t), at delta/2 times prod_i min(pmf(k_i; N_i - 1, t_lo), pmf(k_i; N_i - 1,
    t_hi)). Returns (x, best p) with P(||D|| > x) <= delta."""
    dims = [int(d) for d in dims]
    depth = len(dims) - 1
    ks = [int(k) for k in ks]
    if len(ks) != depth:
        raise ProbPruneError(f"need one count per layer ({depth}), got {len(ks)}")
    pruned = [k > 0 for k in ks]
    lp = sum(pruned)
    if lp == 0:
        return np.asarray(0.0), 0
    d = float(delta)
    sE2s, sW2s, log_pmf = [], [], 0.0
    for i in range(depth):
        N = dims[i] * dims[i + 1]
        hw = float(half_widths[i])
        full = hw * hw * dominating_variance("full", law, 1.0, p_max)
        k = ks[i]
        if k <= 0:
            sE2s.append(np.zeros(p_max))
            sW2s.append(full)
            continue
        if k >= N:
            raise ProbPruneError("S9.8b needs k_i < N_i (a kept entry above the pruned ones)")
        t_lo, t_hi = order_statistic_bracket(N, k + 1, d / (2 * lp))
        sE2s.append(hw * hw * dominating_variance("magnitude", law, float(t_hi), p_max))
        c = float(_law(law).threshold(t_hi, hw))  # the entry at probability level t_hi
        sW2s.append(np.maximum(full, c * c))
        log_pmf += min(stats.binom.logpmf(k, N - 1, t_lo), stats.binom.logpmf(k, N - 1, t_hi))
    return product_moment_core(dims, sE2s, sW2s, d / 2 * math.exp(log_pmf), p_max)


# ------------------------------------------------------------------------------------------- S9.10 rate lower bounds
def entry_moments(kind: str, law: str, q, a):
    """(E e^2, E e^4) of one entry of E (table M of THEORY §9.1): E e^(2k) = a^(2k) (2k-1)!! rho_k, k = 1, 2."""
    q = np.asarray(q, float)
    a = np.asarray(a, float)
    r1 = np.exp(log_moment_ratio(kind, law, q, 1.0))
    r2 = np.exp(log_moment_ratio(kind, law, q, 2.0))
    return a * a * r1, 3.0 * a**4 * r2


def line_lower_bound(n_line: int, n_lines: int, kind: str, law: str, q, a, delta):
    """S9.10 (THEORY §9.10): L with P(max over n_lines independent lines of n_line i.i.d. entries of the line's l2
    norm < L) <= delta: L^2 = n mu - beta(n v, mu, ln(1/delta)/n_lines) (one-sided Bernstein for mu - e^2 <= mu;
    the lines are independent, so P(max < x) = P(line < x)^n_lines), 0 where that is negative."""
    mu, m4 = entry_moments(kind, law, q, a)
    v = np.maximum(m4 - mu * mu, 0.0)
    lam = np.log(1.0 / np.asarray(delta, float)) / n_lines
    L2 = n_line * mu - beta(n_line * v, mu, lam)
    return np.sqrt(np.maximum(L2, 0.0))


def error_norm_lower_bound(d1: int, d2: int, kind: str, law: str, q, a, delta):
    """S9.10 rate lower bound on ||E|| (THEORY §9.10): ||E|| >= max(largest row norm, largest column norm), so
    P(||E|| < L) <= delta with L = max(row form, column form) of :func:`line_lower_bound` (each valid at delta; the
    larger is a deterministic choice, §9.7). E has i.i.d. entries of ``kind`` (magnitude threshold, random Bernoulli,
    random_rescaled) under ``law``. Since E e^2 is q^3 a^2/3 (uniform magnitude) and q a^2/3 (uniform random), L grows
    like q^(3/2) and p^(1/2): the same rates as the upper bounds of §9.1 (rate-tight; constants measured)."""
    q = np.asarray(q, float)
    pos = q > 0
    qq = np.where(pos, q, 0.5)
    rows = line_lower_bound(d2, d1, kind, law, qq, a, delta)
    cols = line_lower_bound(d1, d2, kind, law, qq, a, delta)
    return np.where(pos, np.maximum(rows, cols), 0.0)


def exact_k_random_lower_bound(d1: int, d2: int, law: str, k: int, a, delta):
    """S9.10(b): for an exact-k uniformly random mask (independent of W), P(||E_exact|| < L) <= delta with L the
    Bernoulli(k/N) bound at delta * P(Bin(N, k/N) = k) (S9.5(b): the exact-k mask is the Bernoulli mask given its
    count)."""
    N = d1 * d2
    if k <= 0:
        return np.asarray(0.0)
    pmf = float(stats.binom.pmf(k, N, k / N))
    return error_norm_lower_bound(d1, d2, "random", law, k / N, a, np.asarray(delta, float) * pmf)


# ------------------------------------------------------------------------------------------- S9.11 second moment
#: pruning rules S9.11 covers (every rule whose kept and pruned entries have independent symmetric signs)
SECOND_MOMENT_METHODS = tuple(m.name for m in METHODS.values() if m.second_moments is not None)


def second_moment_applies(spec) -> bool:
    """S9.11's hypothesis on the architecture (THEORY §9.11): every layer linear in its input (identity activations),
    dense or convolutional (any stride, zero padding, dilation), no pooling (fail closed: a pooled net gets no S9.11
    candidate)."""
    return all(L.act.is_identity and L.pool is None and L.kind in ("linear", "conv") for L in spec.layers)


def frobenius_trace_factor(spec) -> float:
    """c = E||G_l ... G_1||_F^2 for the operators G_k of the spec's layers with i.i.d. unit-variance centred kernel
    entries (THEORY §9.11 step 2): c = tr Phi_l(...Phi_1(I)), Phi_k(S) = sum_theta T_theta S T_theta^T over the
    kernel entries theta. A dense layer maps S to tr(S) I_(d_out); a conv layer maps a channel-block-diagonal
    I_C (x) M to I_(c_out) (x) M' with M'[(y,x),(y',x')] = C sum_(u,v) M[(s y + u dil - pad, ...), (s y' + ...)]
    (zero outside the input: zero padding). Exact (float64), cost O(k_h k_w (H W)^2) per conv layer."""
    if not second_moment_applies(spec):
        raise ProbPruneError("S9.11 needs identity activations, dense or conv layers and no pooling")
    first = spec.layers[0]
    if first.kind == "conv":
        C, H, W = first.in_shape
        M = np.eye(H * W)
        scal = None
    else:
        scal = float(first.d_in)
        C = H = W = M = None
    for L in spec.layers:
        if L.kind == "conv":
            if scal is not None:
                raise ProbPruneError("S9.11: a conv layer after a dense layer is not a layer of this spec format")
            kh, kw = L.kernel
            sh, sw = L.stride
            ph, pw = L.padding
            dh, dw = L.dilation
            C, H, W = L.in_shape
            _, Ho, Wo = L.out_shape
            M4 = np.pad(M.reshape(H, W, H, W), ((ph, ph), (pw, pw), (ph, ph), (pw, pw)))
            out = np.zeros((Ho, Wo, Ho, Wo))
            ey, ex = sh * (Ho - 1) + 1, sw * (Wo - 1) + 1
            for u in range(kh):
                for v in range(kw):
                    y0, x0 = u * dh, v * dw
                    out += M4[y0:y0 + ey:sh, x0:x0 + ex:sw, y0:y0 + ey:sh, x0:x0 + ex:sw]
            M = C * out.reshape(Ho * Wo, Ho * Wo)
            C, H, W = L.d_out, Ho, Wo
        else:
            if scal is None:  # flatten: tr(I_C (x) M) = C tr M
                scal = float(C) * float(np.trace(M))
            scal *= float(L.d_out)
    return scal if scal is not None else float(C) * float(np.trace(M))


def exact_k_magnitude_pruned_second_moment(N: int, k: int, a, law: str) -> float:
    """E e_theta^2 for one position of a layer of N i.i.d. entries pruned by exact-k magnitude (the k smallest |w|;
    THEORY §9.11 table S): (1/N) E sum_(j<=k) |w|_(j)^2. Uniform U[-a, a]: a^2 k(k+1)(k+2) / (3 N(N+1)(N+2))
    (E u_(j)^2 = j(j+1)/((N+1)(N+2))). Gaussian N(0, a^2): int_0^1 F^-1(u)^2 P(Beta(k, N-k) > u) du with
    F^-1(u) = a Phi^-1((1+u)/2) (position theta is pruned iff fewer than k of the other N - 1 are smaller).
    The formula is the law's (:meth:`probprune.core.registry.WeightLaw.exact_k_pruned_second_moment`)."""
    return _law(law).exact_k_pruned_second_moment(N, k, a)


def entry_second_moments(method: str, law: str, a, q=None, k=None, N=None):
    """(alpha, beta, gamma) = (E w^2, E w what, E what^2) of one kernel entry (THEORY §9.11 table S). ``q`` for the
    threshold / Bernoulli rules (array, broadcasts), ``k`` and ``N`` for the exact-k rules. For the rules with
    disjoint supports (what in {0, w}) beta = gamma. The formula is the pruning method's
    (:meth:`probprune.core.registry.PruningMethod.entry_second_moments`)."""
    lw = _law(law)
    m = METHODS.get(method) if isinstance(method, str) else None
    if m is None or m.second_moments is None:
        raise ProbPruneError(f"S9.11 does not cover the pruning rule {method!r}")
    return m.entry_second_moments(lw, a, q=q, k=k, N=N)


def second_moment_bound(spec, method: str, law: str, delta, q=None, ks=None):
    """S9.11 (THEORY §9.11): for a network with identity activations (dense and conv layers, no pooling), weights
    i.i.d. per layer from a symmetric law, layers independent, pruned by a rule whose entries have independent
    symmetric signs (threshold or exact-k magnitude, Bernoulli or exact-k random, rescaled random):
    E||D||_F^2 = c (prod alpha_k - 2 prod beta_k + prod gamma_k) exactly (c = :func:`frobenius_trace_factor`), and
    P(err >= x) <= P(||D||_F >= x) <= E||D||_F^2 / x^2, so x = sqrt(E||D||_F^2 / delta) at failure probability delta.
    ``q`` (trailing layer axis, leading batch axes allowed) for the threshold / Bernoulli rules, ``ks`` (one count per
    layer) for the exact-k rules. Returns (x, E||D||_F^2)."""
    if method not in SECOND_MOMENT_METHODS:
        raise ProbPruneError(f"S9.11 does not cover the pruning rule {method!r}")
    counted = METHODS[method].exact_of is not None  # the exact-k rules take counts, the others fractions
    c = frobenius_trace_factor(spec)
    depth = spec.depth
    al, be, ga = [], [], []
    for i, L in enumerate(spec.layers):
        if counted:
            m = entry_second_moments(method, law, L.half_width, k=ks[i], N=L.N)
        else:
            qi = np.asarray(q, float)[..., i] if np.ndim(q) else float(q)
            m = entry_second_moments(method, law, L.half_width, q=qi)
        al.append(m[0])
        be.append(m[1])
        ga.append(m[2])
    # products in logs would lose the cancellation in prod alpha - prod gamma: write it as a telescoping sum of
    # nonnegative terms instead, prod alpha - prod gamma = sum_k (alpha_k - gamma_k) prod_(j<k) gamma_j prod_(j>k) alpha_j
    def _diff(xs, ys):  # prod x - prod y = sum_k (x_k - y_k) prod_(j<k) y_j prod_(j>k) x_j
        tot = 0.0
        for kk in range(depth):
            term = np.asarray(xs[kk], float) - np.asarray(ys[kk], float)
            for j in range(depth):
                if j < kk:
                    term = term * ys[j]
                elif j > kk:
                    term = term * xs[j]
            tot = tot + term
        return tot

    # prod alpha - 2 prod beta + prod gamma = (prod alpha - prod beta) + (prod gamma - prod beta)
    ed2 = c * (_diff(al, be) + _diff(ga, be))
    ed2 = np.maximum(np.asarray(ed2, float), 0.0)
    return np.sqrt(ed2 / np.asarray(delta, float)), ed2


# ------------------------------------------------------------------------------------------- S9.12 fourth moment
#: rules S9.12 covers: i.i.d. entries with disjoint supports of What and E (threshold magnitude, Bernoulli random)
FOURTH_MOMENT_METHODS = tuple(m.name for m in METHODS.values() if m.entry is not None)


def entry_fourth_moments(method: str, law: str, a, q):
    """(E what^2, E e^2, E what^4, E e^4) of one entry, e = w - what, for threshold magnitude or Bernoulli random
    pruning (disjoint supports: what e = 0), THEORY §9.12 table F. Uniform U[-a, a]: E w^2 = a^2/3, E w^4 = a^4/5,
    magnitude E e^2 = a^2 q^3/3, E e^4 = a^4 q^5/5; random E e^(2j) = q E w^(2j). Gaussian N(0, a^2): E[g^(2j) 1{|g|<c}]
    = (2j-1)!! P(chi2_(2j+1) < c^2) a^(2j) with 2 Phi(c) - 1 = q. One implementation of the even entry moments:
    :func:`probprune.theory.trace_moments.entry_even_moments` at order 4 (§9.13 extends the table)."""
    from probprune.theory.trace_moments import entry_even_moments

    return entry_even_moments(method, law, a, q, 2)


def _fourth_order_state(dims, layer_moments):
    """The S9.12 recursion (THEORY §9.12 steps (2)-(3)) through all layers: {flag tuple f: [qA, qB, qC, qE]} with
    q* = E[(M1 M2^T)_(c1 c2) (M3 M4^T)_(c3 c4)] on the index patterns c1=c2!=c3=c4 (A), c1=c3!=c2=c4 (B),
    c1=c4!=c2=c3 (C) and all equal (E) of the output index; f records which of the four chains already holds an E.
    Shared by :func:`frobenius_fourth_moment` (contraction A) and :func:`trace_fourth_moment` (contraction C, §9.13)."""
    dims = [int(d) for d in dims]
    shape = np.broadcast_shapes(*[np.shape(x) for lm in layer_moments for x in lm])
    zero = np.zeros(shape)
    # state[f] = [qA, qB, qC, qE] for the flag tuple f (bitmask over the 4 chains)
    state = {0: [zero + 1.0, zero, zero, zero + 1.0]}  # M_0 = I: (I I^T)_(c1c2)(I I^T)_(c3c4) = d_c1c2 d_c3c4
    labels = [(l1, l2, l3, l4) for l1 in (0, 1) for l2 in (0, 1) for l3 in (0, 1) for l4 in (0, 1)]
    for k, lmk in enumerate(layer_moments):
        h2, e2, h4, e4 = lmk[:4]
        d = float(dims[k])
        m4 = (np.asarray(h4, float), np.asarray(e4, float))  # E x^4 of the label when all four agree, else 0
        if len(lmk) > 4:  # exchangeable, not independent, positions (exact-k): pair moments of two positions
            P2 = {(0, 0): np.asarray(lmk[4], float), (0, 1): np.asarray(lmk[5], float),
                  (1, 0): np.asarray(lmk[5], float), (1, 1): np.asarray(lmk[6], float)}
        else:  # i.i.d. entries: E[x_p^2 y_p'^2] = E x^2 E y^2
            m2 = (np.asarray(h2, float), np.asarray(e2, float))
            P2 = {(i, j): m2[i] * m2[j] for i in (0, 1) for j in (0, 1)}
        new: dict = {}
        for f, (qA, qB, qC, qE) in state.items():
            for L in labels:
                l1, l2, l3, l4 = L
                # two distinct positions, each used twice (same label at a position: disjoint supports)
                mA = P2[(l1, l3)] if (l1 == l2 and l3 == l4) else None
                mB = P2[(l1, l2)] if (l1 == l3 and l2 == l4) else None
                mC = P2[(l1, l2)] if (l1 == l4 and l2 == l3) else None
                mE = m4[l1] if (l1 == l2 == l3 == l4) else None
                if mA is None and mB is None and mC is None:
                    continue
                g = f | sum(1 << i for i, li in enumerate(L) if li == 1)
                nA = mA * (d * (d - 1) * qA + d * qE) if mA is not None else zero
                nB = mB * (d * (d - 1) * qB + d * qE) if mB is not None else zero
                nC = mC * (d * (d - 1) * qC + d * qE) if mC is not None else zero
                nE = d * (d - 1) * ((mA * qA if mA is not None else 0) + (mB * qB if mB is not None else 0)
                                    + (mC * qC if mC is not None else 0)) + (d * mE * qE if mE is not None else 0)
                acc = new.setdefault(g, [zero, zero, zero, zero])
                new[g] = [acc[0] + nA, acc[1] + nB, acc[2] + nC, acc[3] + nE]
        state = new
    return state, zero


def _contract(dims, state, zero, slot: int, kappa=None):
    """sum over output indices of the final state: d_l(d_l - 1) q[slot] + d_l qE, for the all-E flag tuple (or the
    signed sum over flag tuples with (-kappa)^(#chains without a Z) for the rescaled split, §9.12(R))."""
    dl = float(dims[-1])
    if kappa is None:
        st = state.get(15, [zero, zero, zero, zero])
        return dl * (dl - 1) * st[slot] + dl * st[3]
    kap = np.asarray(kappa, float)
    tot = zero
    for f, st in state.items():
        n0 = 4 - bin(f).count("1")
        tot = tot + (-kap) ** n0 * (dl * (dl - 1) * st[slot] + dl * st[3])
    return tot


def frobenius_fourth_moment(dims, layer_moments, kappa=None):
    """E||D||_F^4 exactly (THEORY §9.12) for a dense linear chain with independent layers, i.i.d. entries per layer
    with independent symmetric signs and disjoint supports of What_k and E_k. ``layer_moments[k]`` =
    (E what^2, E e^2, E what^4, E e^4) of layer k (arrays broadcast over batch axes), or with three pair moments
    appended for exchangeable (exact-k) layers (§9.12(K)). D = sum over label sequences with at least one E of
    prod_k (What_k or E_k); ||D||_F^4 = sum_(a, a') (DD^T)_(aa)(DD^T)_(a'a'): contraction of pattern A
    (:func:`_fourth_order_state`). ``kappa`` (array; rescaled random, S9.8c's split What = (1 + kappa) prod Y): labels
    are Y (kept) and Z (pruned), D = sum_(label sequences with a Z) prod - kappa prod Y, so a chain without a Z carries
    the coefficient -kappa: E||D||_F^4 = sum_f (-kappa)^(#chains without a Z) value(f) (exact; signed)."""
    state, zero = _fourth_order_state(dims, layer_moments)
    return _contract(dims, state, zero, 0, kappa)


def trace_fourth_moment(dims, layer_moments, kappa=None):
    """E tr((D D^T)^2) exactly (THEORY §9.13 S9.13): the same chain state as :func:`frobenius_fourth_moment`, contracted
    on pattern C: tr((DD^T)^2) = sum_(a, b) (DD^T)_(ab) (DD^T)_(ba), i.e. c1 = c4 = a, c2 = c3 = b. Same hypotheses and
    arguments as :func:`frobenius_fourth_moment` (every term >= 0 without kappa)."""
    state, zero = _fourth_order_state(dims, layer_moments)
    return _contract(dims, state, zero, 2, kappa)


def dense_second_moment(dims, layer_moments, kappa=None):
    """E||D||_F^2 of a dense chain from the same single-position moments (S9.11 for dense layers, c = prod d_k):
    c (prod(h2 + e2) - prod h2), plus kappa^2 c prod h2 for the rescaled split (the cross term of a chain with a Z
    and the all-Y chain vanishes: disjoint supports)."""
    c = float(np.prod([float(d) for d in dims]))
    h = [np.asarray(lm[0], float) for lm in layer_moments]
    w = [np.asarray(lm[0], float) + np.asarray(lm[1], float) for lm in layer_moments]
    diff = 0.0
    for k in range(len(h)):  # prod w - prod h as a telescoping sum of nonnegative terms (no cancellation)
        term = w[k] - h[k]
        for j in range(len(h)):
            term = term * (h[j] if j < k else (w[j] if j > k else 1.0))
        diff = diff + term
    out = c * diff
    if kappa is not None:
        out = out + np.asarray(kappa, float) ** 2 * c * np.prod(np.stack(np.broadcast_arrays(*h)), axis=0)
    return out


def frobenius_tail_threshold(m2, m4, delta):
    """THEORY §9.12 (C): the smallest of three deterministic thresholds x with P(||D||_F >= x) <= delta from
    mu = E||D||_F^2 and E||D||_F^4 (Y = ||D||_F^2, s2 = Var Y = m4 - mu^2): Markov on Y (x^2 = mu/delta), Markov on
    Y^2 (x^4 = m4/delta), Cantelli's one-sided Chebyshev P(Y >= mu + t) <= s2/(s2 + t^2) (x^2 = mu +
    sqrt(s2 (1 - delta)/delta)). Each is valid at delta, so is their minimum (§9.7)."""
    m2 = np.maximum(np.asarray(m2, float), 0.0)
    m4 = np.maximum(np.asarray(m4, float), m2 * m2)  # E Y^2 >= (E Y)^2 (guards rounding)
    d = np.asarray(delta, float)
    s2 = m4 - m2 * m2
    return np.minimum(np.minimum(np.sqrt(m2 / d), (m4 / d) ** 0.25), np.sqrt(m2 + np.sqrt(s2 * (1.0 - d) / d)))


def fourth_moment_bound(dims, half_widths, q, delta, method: str, law: str):
    """S9.12 (THEORY §9.12): linear dense FCN, threshold magnitude, Bernoulli random or rescaled random pruning:
    P(err >= x) <= P(||D||_F >= x) <= delta at x = :func:`frobenius_tail_threshold` of E||D||_F^2 and E||D||_F^4
    (Markov on ||D||_F^2 and ||D||_F^4, Cantelli). q has a trailing layer axis.
    Returns (x, E||D||_F^4)."""
    if method not in FOURTH_MOMENT_METHODS:
        raise ProbPruneError(f"S9.12 covers threshold magnitude and Bernoulli random pruning, not {method!r}")
    q = np.asarray(q, float)
    depth = len(dims) - 1
    if q.shape[-1] != depth:
        raise ProbPruneError(f"need one fraction per layer ({depth}), got shape {q.shape}")
    lm = [entry_fourth_moments(method, law, half_widths[k], q[..., k]) for k in range(depth)]
    if METHODS[method].rescaled:
        if np.any(q >= 1):
            raise ProbPruneError("rescaled random pruning needs q < 1")
        kappa = np.expm1(-np.sum(np.log1p(-q), axis=-1))  # prod (1 - q_k)^-1 - 1 (S9.8c)
    else:
        kappa = None
    m4 = frobenius_fourth_moment(dims, lm, kappa)
    return frobenius_tail_threshold(dense_second_moment(dims, lm, kappa), m4, delta), m4


def exact_k_fourth_moments(method: str, N: int, k: int, a, law: str = "uniform"):
    """Single- and pair-position moments of one layer of N i.i.d. entries pruned by an exact-k rule (THEORY §9.12(K)):
    (E what^2, E e^2, E what^4, E e^4, E[what_p^2 what_p'^2], E[what_p^2 e_p'^2], E[e_p^2 e_p'^2]), p != p'.
    random_exact (mask a uniform k-subset independent of W, either law): the position moments of w times the label
    probabilities k/N, k(k-1)/(N(N-1)), k(N-k)/(N(N-1)), (N-k)(N-k-1)/(N(N-1)). magnitude_exact (uniform law only):
    |w| = a u with uniform order statistics, E[u_(i)^2 u_(j)^2] = N!/(N+4)! i(i+1)(j+2)(j+3) (i < j),
    E u_(j)^2 = j(j+1)/((N+1)(N+2)), E u_(j)^4 = j(j+1)(j+2)(j+3)/((N+1)...(N+4)); the pruned set is the k smallest."""
    N, k = int(N), int(k)
    a = float(a)
    lw = LAWS.get(law) if isinstance(law, str) else None
    m = METHODS.get(method) if isinstance(method, str) else None
    mask_random = m is not None and m.exact_k_random
    # magnitude_exact needs |w|/a ~ U[0, 1] (closed-form order statistics); random_exact holds under either law
    if lw is None or not (lw.abs_uniform or mask_random):
        raise ProbPruneError(f"S9.12(K) covers random_exact (either law) and magnitude_exact (uniform law), not "
                             f"{method!r} under {law!r}")
    w2, w4 = lw.position_moments(a)
    if N < 2 or not 0 <= k <= N:
        raise ProbPruneError(f"S9.12(K) needs N >= 2 and 0 <= k <= N, got N={N}, k={k}")
    if mask_random:
        pk = k / N
        pp, pm, mm = k * (k - 1) / (N * (N - 1)), k * (N - k) / (N * (N - 1)), (N - k) * (N - k - 1) / (N * (N - 1))
        return ((1 - pk) * w2, pk * w2, (1 - pk) * w4, pk * w4, mm * w2 * w2, pm * w2 * w2, pp * w2 * w2)
    if m is None or not m.exact_k_magnitude:
        raise ProbPruneError(f"S9.12(K) does not cover {method!r}")
    j = np.arange(1, N + 1, dtype=float)
    u2 = j * (j + 1) / ((N + 1.0) * (N + 2.0))  # E u_(j)^2
    u4 = u2 * (j + 2) * (j + 3) / ((N + 3.0) * (N + 4.0))  # E u_(j)^4
    # E[u_(i)^2 u_(j)^2] = c i(i+1) (j+2)(j+3) for i < j, c = N!/(N+4)!
    c = 1.0 / ((N + 1.0) * (N + 2.0) * (N + 3.0) * (N + 4.0))
    f, g = j * (j + 1), (j + 2) * (j + 3)
    Fcum = np.concatenate([[0.0], np.cumsum(f)])  # Fcum[j-1] = sum_{i<j} f_i
    below = Fcum[:-1]  # sum_{i<j} i(i+1), for j = 1..N
    pair_all = c * g * below  # sum_{i<j} E[u_(i)^2 u_(j)^2], per j
    S_pp = float(np.sum(pair_all[:k]))  # i < j <= k
    # i <= k < j: c sum_{j>k} g_j sum_{i<=k} f_i
    S_pm = c * float(Fcum[k]) * float(np.sum(g[k:]))
    S_mm = float(np.sum(pair_all[k:])) - S_pm  # k < i < j
    e2 = a * a * float(np.sum(u2[:k])) / N
    h2 = a * a * float(np.sum(u2[k:])) / N
    e4 = a**4 * float(np.sum(u4[:k])) / N
    h4 = a**4 * float(np.sum(u4[k:])) / N
    nn = N * (N - 1.0)
    # sum over ordered pairs p != p' = 2 x unordered sums, divided by N(N-1)
    return (h2, e2, h4, e4, a**4 * 2 * S_mm / nn, a**4 * S_pm / nn, a**4 * 2 * S_pp / nn)


def exact_k_fourth_moment_bound(dims, half_widths, ks, delta, method: str, law: str = "uniform"):
    """S9.12(K) (THEORY §9.12): exact E||D||_F^4 for a linear dense FCN pruned by an exact-k rule (k_i per layer),
    x = :func:`frobenius_tail_threshold` (Markov / Cantelli). Returns (x, E||D||_F^4)."""
    dims = [int(d) for d in dims]
    lm = [exact_k_fourth_moments(method, dims[i] * dims[i + 1], int(ks[i]), half_widths[i], law)
          for i in range(len(dims) - 1)]
    m4 = frobenius_fourth_moment(dims, lm)
    return float(frobenius_tail_threshold(dense_second_moment(dims, lm), m4, delta)), float(m4)
