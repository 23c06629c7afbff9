"""Lueker's lemma, measured (THEORY.md §4.1).

Event A_n(eps) for one draw X_1..X_n: every z in [-r, r] (r = 1, or 1/2 for da Cunha et al.'s form) has a
subset S with |z - sum_S X| <= eps, i.e. [-r, r] is contained in U_n = union_S [sum S - eps, sum S + eps].

U_n is computed **exactly** by the interval recursion of §4.1 step 1:
U_0 = [-eps, eps], U_k = merge(U_{k-1} union (U_{k-1} + X_k)). Since U_{k-1} is contained in U_k, one
recursion over n_max summands gives the first k at which the event holds, hence A_n for every n <= n_max (the
events for different n then share draws: each is still an unbiased estimate, the curve is correlated across n).
Intervals that cannot reach [-r, r] with any subset of the *remaining* summands of the draw are dropped,
which is exact (such an interval never meets [-r, r] for any later prefix either).

Estimates (§4.1 steps 2-3): P(A_n) with Clopper-Pearson intervals (probprune.core.stats, scipy.stats.beta); n_min(eps, gamma) = the
smallest n whose one-sided lower confidence bound is >= gamma; the calibrated constant
C_hat = n_min / log(1/eps), reported for the natural log and for log base 2. The **per-target** success rate
(one fixed z ~ U[-r, r] per draw) is a different, much weaker quantity and is reported in separate columns.

Summand laws (§4.1): "uniform" U[-1, 1]; "product" v*|u| with u, v i.i.d. U[-1, 1] (density -ln|z|/2, the law of
the Pensia construction's candidates c_k, §4.2 step 4).

Provenance: the lemma is [RC] (no published numeric C); the recursion, the estimator and the containment facts are
[D].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError, check_memory, check_positive
from probprune.core.stats import clopper_pearson_interval, clopper_pearson_lower

LAWS = ("uniform", "product")

#: size guards of :func:`estimate_coverage` (checked before any draw): rows of the table (values of n), and summands
#: drawn in all (trials x max n; about 10 ns each for the draw and the reach sums, so 1e9 is minutes)
MAX_COVERAGE_NS = 10_000
MAX_COVERAGE_DRAWS = 10**9


def check_coverage_plan(n_count: int, n_max: int, trials: int) -> None:
    """Refuse a coverage plan too large to run, with the estimate in the message: more than
    :data:`MAX_COVERAGE_NS` values of n, more than :data:`MAX_COVERAGE_DRAWS` summands drawn, or one draw's arrays
    (about 6 x 8 bytes per summand) beyond the memory limit (:func:`probprune.core.errors.check_memory`)."""
    if n_count > MAX_COVERAGE_NS:
        raise ProbPruneError(f"{n_count:,} values of n is more than the {MAX_COVERAGE_NS:,} rows a coverage table "
                             "takes; use a step (5:1000:5) or a comma list")
    draws = float(n_max) * float(trials)
    if draws > MAX_COVERAGE_DRAWS:
        raise ProbPruneError(f"{trials:,} trials x n up to {n_max:,} draws {draws:.3g} summands, more than the "
                             f"{MAX_COVERAGE_DRAWS:.0e} a run takes (about 10 ns each); lower --trials or the largest n")
    check_memory(48.0 * n_max, f"one coverage draw of {n_max:,} summands")


def _uniform_summands(size, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=size)


def _product_summands(size, rng: np.random.Generator) -> np.ndarray:
    u = rng.uniform(-1.0, 1.0, size=size)
    v = rng.uniform(-1.0, 1.0, size=size)
    return v * np.abs(u)


#: summand law -> its sampler (the names of :data:`LAWS`)
SUMMAND_SAMPLERS = {"uniform": _uniform_summands, "product": _product_summands}


def sample_summands(law: str, size, rng: np.random.Generator) -> np.ndarray:
    """Draw summands from ``law``: "uniform" = U[-1, 1]; "product" = v*|u|, u, v i.i.d. U[-1, 1] (§4.1)."""
    if law not in SUMMAND_SAMPLERS:
        raise ProbPruneError(f"unknown summand law {law!r}; use one of {LAWS}")
    return SUMMAND_SAMPLERS[law](size, rng)


def _merge(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of closed intervals [lo_i, hi_i] as sorted disjoint intervals (touching intervals merge)."""
    order = np.argsort(lo, kind="stable")
    lo, hi = lo[order], hi[order]
    run = np.maximum.accumulate(hi)
    start = np.r_[True, lo[1:] > run[:-1]]
    starts = np.flatnonzero(start)
    ends = np.r_[starts[1:] - 1, lo.size - 1]
    return lo[starts], run[ends]


def cover_indices(x: np.ndarray, eps: float, half_range: float = 1.0, targets=None) -> tuple[int, np.ndarray]:
    """Exact interval recursion for one draw ``x`` (n_max,).

    Returns (k_cover, k_hit): k_cover = the smallest k with [-r, r] inside U_k (n_max + 1 if never), and for each
    target z in ``targets`` (each in [-r, r]) the smallest k with z in U_k (n_max + 1 if never)."""
    x = np.asarray(x, dtype=float)
    n = x.size
    r = float(half_range)
    tz = np.atleast_1d(np.asarray([] if targets is None else targets, dtype=float))
    if np.any(np.abs(tz) > r):
        raise ProbPruneError(f"targets must lie in [-{r:g}, {r:g}] (the recursion drops sums that cannot reach it)")
    k_hit = np.full(tz.size, n + 1, dtype=np.int64)
    # reach of the remaining summands after step k: [neg_rem[k], pos_rem[k]]
    pos_rem = np.r_[np.cumsum(np.maximum(x, 0)[::-1])[::-1], 0.0]
    neg_rem = np.r_[np.cumsum(np.minimum(x, 0)[::-1])[::-1], 0.0]
    lo = np.array([-eps])
    hi = np.array([eps])
    k_cover = n + 1

    def check(k, lo, hi):
        nonlocal k_cover
        if k_cover > n:
            i = np.searchsorted(lo, -r, side="right") - 1
            if i >= 0 and hi[i] >= r:
                k_cover = k
        if tz.size:
            todo = k_hit > n
            if np.any(todo):
                j = np.searchsorted(lo, tz[todo], side="right") - 1
                inside = (j >= 0) & (hi[np.maximum(j, 0)] >= tz[todo])
                idx = np.flatnonzero(todo)[inside]
                k_hit[idx] = k

    check(0, lo, hi)
    for k in range(1, n + 1):
        if k_cover <= n and not np.any(k_hit > n):
            break
        lo, hi = _merge(np.r_[lo, lo + x[k - 1]], np.r_[hi, hi + x[k - 1]])
        # drop intervals that cannot meet [-r, r] with any subset of x[k:]
        keep = (hi + pos_rem[k] >= -r) & (lo + neg_rem[k] <= r)
        lo, hi = lo[keep], hi[keep]
        check(k, lo, hi)
    return k_cover, k_hit


def clopper_pearson(x, T, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper-Pearson interval for x successes in T trials, THEORY §6 (the package's one implementation,
    :func:`probprune.core.stats.clopper_pearson_interval`)."""
    return clopper_pearson_interval(x, T, confidence)


def cp_lower_one_sided(x, T, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound, THEORY §6: 0 if x == 0 else beta.ppf(alpha, x, T - x + 1)
    (:func:`probprune.core.stats.clopper_pearson_lower`)."""
    return clopper_pearson_lower(x, T, alpha)


@dataclass(frozen=True)
class CoverageResult:
    """Monte Carlo estimate of P(A_n(eps)) for n in ``ns`` (one row per n; tidy) plus n_min and C_hat."""

    law: str
    eps: float
    half_range: float
    trials: int
    seed: int
    confidence: float
    gamma: float
    rows: tuple[dict, ...]
    n_min: int | None
    C_hat_ln: float | None
    C_hat_log2: float | None
    statement: str = "Lueker's lemma (THEORY §4.1) [RC]; estimator [D]"
    assumptions: tuple[str, ...] = field(default_factory=tuple)


    def as_dict(self) -> dict:
        return {
            "law": self.law, "eps": self.eps, "half_range": self.half_range, "trials": self.trials,
            "seed": self.seed, "confidence": self.confidence, "gamma": self.gamma, "n_min": self.n_min,
            "C_hat_ln": self.C_hat_ln, "C_hat_log2": self.C_hat_log2, "statement": self.statement,
            "assumptions": list(self.assumptions), "rows": list(self.rows),
        }


def estimate_coverage(ns, eps: float, law: str = "uniform", trials: int = 1000, seed: int = 0,
                      confidence: float = 0.95, gamma: float = 0.95, half_range: float = 1.0,
                      progress=None) -> CoverageResult:
    """Estimate P(A_n(eps)) for each n in ``ns`` from ``trials`` draws of max(ns) summands each (§4.1).

    Columns per n: covered (count), p_hat, ci_low/ci_high (two-sided CP at ``confidence``), lower_1s (one-sided
    CP lower bound at 1 - confidence), and the per-target success (target z ~ U[-r, r], one per draw) with its
    CI. n_min = smallest n in ``ns`` with lower_1s >= gamma (None if none); C_hat = n_min / log(1/eps)."""
    eps = float(check_positive(eps, "eps"))
    ns = sorted({int(v) for v in np.atleast_1d(ns)})
    if not ns or ns[0] < 1:
        raise ProbPruneError(f"every n must be >= 1, got {ns}")
    check_coverage_plan(len(ns), ns[-1], int(trials))
    if law not in LAWS:
        raise ProbPruneError(f"unknown summand law {law!r}; use one of {LAWS}")
    trials = int(trials)
    if trials < 1:
        raise ProbPruneError(f"trials must be >= 1, got {trials}")
    if not (0.0 < confidence < 1.0) or not (0.0 < gamma < 1.0):
        raise ProbPruneError("confidence and gamma must be in (0, 1)")
    r = check_positive(half_range, "half_range")
    if eps >= r:
        raise ProbPruneError(f"eps = {eps} must be smaller than the half range {r}")
    n_max = ns[-1]
    rng = np.random.default_rng(seed)
    kc = np.empty(trials, dtype=np.int64)
    kh = np.empty(trials, dtype=np.int64)
    for t in range(trials):
        x = sample_summands(law, n_max, rng)
        z = rng.uniform(-r, r)
        kc[t], hit = cover_indices(x, eps, r, targets=[z])
        kh[t] = hit[0]
        if progress is not None:
            progress(1)
    rows = []
    alpha = 1.0 - confidence
    for n in ns:
        c = int(np.count_nonzero(kc <= n))
        h = int(np.count_nonzero(kh <= n))
        lo, hi = clopper_pearson(c, trials, confidence)
        tlo, thi = clopper_pearson(h, trials, confidence)
        rows.append({
            "law": law, "eps": eps, "n": n, "trials": trials, "covered": c, "p_hat": c / trials,
            "ci_low": float(lo), "ci_high": float(hi), "lower_1s": float(cp_lower_one_sided(c, trials, alpha)),
            "per_target_hits": h, "per_target_p": h / trials, "per_target_ci_low": float(tlo),
            "per_target_ci_high": float(thi),
        })
    n_min = next((row["n"] for row in rows if row["lower_1s"] >= gamma), None)
    C_ln = None if n_min is None else n_min / math.log(1.0 / eps)
    C_l2 = None if n_min is None else n_min / math.log2(1.0 / eps)
    return CoverageResult(
        law, eps, r, trials, int(seed), float(confidence), float(gamma), tuple(rows), n_min, C_ln, C_l2,
        assumptions=(
            f"target interval [-{r:g}, {r:g}]",
            "one draw of max(n) summands per trial; events for smaller n use its prefix",
            "n_min uses the one-sided Clopper-Pearson lower bound at level 1 - confidence",
            "C_hat_ln = n_min / ln(1/eps); C_hat_log2 = n_min / log2(1/eps)",
            "per-target columns: one z ~ U[-r, r] per trial, hit when z is in U_n",
        ),
    )


@dataclass(frozen=True)
class PerTargetStats:
    """Per-target success rate and mean subset size with the sparsest exact solver (compare Burkholz's code, §4.1)."""

    law: str
    n: int
    eps: float
    trials: int
    success: float
    ci_low: float
    ci_high: float
    mean_subset_size: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def per_target_stats(n: int, eps: float, law: str = "uniform", trials: int = 10000, seed: int = 0,
                     half_range: float = 1.0, confidence: float = 0.95) -> PerTargetStats:
    """One fresh draw of n summands and one z ~ U[-r, r] per trial, solved exactly in "sparsest" mode: the
    fraction within eps and the mean size of the smallest eps-subset (over the successes)."""
    from probprune.subsetsum.solver import solve

    if int(n) < 1:
        raise ProbPruneError(f"n must be >= 1, got {n}")
    eps = float(check_positive(eps, "eps"))
    check_memory(4 * 8.0 * float(trials) * float(n), f"{int(trials):,} trials of {int(n)} summands")
    rng = np.random.default_rng(seed)
    X = sample_summands(law, (int(trials), int(n)), rng)
    z = rng.uniform(-half_range, half_range, size=int(trials))
    res = solve(X, z, eps=eps, mode="sparsest", on_uncoverable="report")
    s = int(np.count_nonzero(res.success))
    lo, hi = clopper_pearson(s, trials, confidence)
    size = float(res.n_terms[res.success].mean()) if s else float("nan")
    return PerTargetStats(law, int(n), eps, int(trials), s / trials, float(lo), float(hi), size)
