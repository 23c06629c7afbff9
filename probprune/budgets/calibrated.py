"""Calibrated statements for a known weight law (THEORY.md §10 [D]): simulation instead of concentration inequalities.

The a-priori bounds of :mod:`probprune.theory.apriori` hold with probability >= 1 - delta over the weights (and masks) for
*every* law in their class. When the law is known exactly (the paper's U[-a_i, a_i], or the Gaussian analogue) one
can draw T independent networks (and masks) from it, compute for each a *certified* upper bound U_t on its error
err = sup_{||x||<=1} ||F(x) - F_pruned(x)|| (the exact sup for linear networks, §6; Cert-D otherwise, §3.11), and
report the k-th smallest U_(k) with k the smallest rank such that binom.cdf(k - 1, T, 1 - delta) >= 1 - gamma
(§10.1). The statement is different from the analytic one and is labelled so everywhere:

    with confidence >= 1 - gamma over the simulation, P(err > U_(k)) <= delta over a fresh draw.

A budget search over fractions looks at the simulation, so the budget functions use a fixed grid of candidate
fractions and a union bound over the whole grid (gamma / |grid| per point, §10.2); whatever point the search returns,
the statement holds at it.

Also here: the *empirical* uniform budget (the largest uniform fraction whose measured error is <= eps in at least
1 - delta of the draws; a point estimate, no confidence, measured exactly for linear nets and by PGD, a lower bound,
otherwise) and the scale of the network's output sup ||F|| used by relative tolerances (§10.3).

Measurement code is :mod:`probprune.mc.measure` (batched exact linear error, certified operator norms, Cert-D, PGD).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import numpy as np
from scipy import stats

from probprune.theory.apriori import broadcast_fractions
from probprune.core.errors import ProbPruneError, check_delta, check_eps
from probprune.core.registry import BUDGET_RULES as _BUDGET_RULES
from probprune.core.registry import LAWS as _LAWS
from probprune.core.registry import METHODS as _REGISTRY
from probprune.core.stats import coverage_rank, order_statistic
from probprune.net.templates import NetSpec, sample_weights

#: the methods the calibrated simulation prunes: the data-free families (a batched score on stacked draws; the
#: registry's FAMILIES), the i.i.d. rules first, then their exact-k variants
CAL_METHODS = tuple(m.name for m in sorted((m for m in _REGISTRY.values() if m.family_model.batched_score is not None),
                                           key=lambda m: m.exact_of is not None))
STATEMENT = ("calibrated (THEORY.md §10.1): with confidence >= 1 - gamma over the simulation, "
             "P(err > eps) <= delta for a fresh network (and mask) drawn from the law")
#: THEORY §10.1c: the confidence is for ONE run fixed in advance; choosing among runs needs the adjusted rank
SELECTION_WARNING = ("the confidence 1 - gamma holds for one calibrated run (seed, T, rank) fixed in advance; choosing "
                     "among several runs (e.g. the smallest eps over seeds) voids it: use runs=R, which takes rank "
                     "k(T, delta, gamma/R) in each run and then allows the smallest (Bonferroni, THEORY §10.1c)")


def _cal_method(method: str):
    """The registry's entry of a calibrated method (CAL_METHODS); ProbPruneError naming the choices otherwise."""
    if method not in CAL_METHODS:
        raise ProbPruneError(f"unknown method {method!r}; use one of {', '.join(CAL_METHODS)}")
    return _REGISTRY[method]


def _law_check(spec: NetSpec, assume_law: bool, what: str) -> list[str]:
    """The calibrated statements simulate the weight law: a spec read from a model is refused unless assume_law
    (THEORY §3.0; :func:`probprune.theory.apriori.check_law_origin`)."""
    from probprune.theory.apriori import check_law_origin

    return check_law_origin(spec, assume_law, what)


# --------------------------------------------------------------------------------------------- order statistics
def _check_gamma(gamma) -> float:
    try:
        g = float(gamma)
    except (TypeError, ValueError):
        raise ProbPruneError(f"gamma must be a number in (0, 1), got {gamma!r}") from None
    if not (0.0 < g < 1.0):
        raise ProbPruneError(f"gamma must be in (0, 1), got {gamma!r}")
    return g


def order_statistic_rank(T: int, delta: float, gamma: float) -> int:
    """Smallest k in 1..T with binom.cdf(k - 1, T, 1 - delta) >= 1 - gamma (THEORY §10.1 [D]): then the k-th smallest
    of T i.i.d. draws of U is >= the (1 - delta)-quantile of U with probability >= 1 - gamma. Raises when no k <= T
    works, i.e. when T < ln(gamma)/ln(1 - delta) (:func:`min_trials`)."""
    T = int(T)
    delta = check_delta(delta)
    gamma = _check_gamma(gamma)
    if T < 1:
        raise ProbPruneError("the calibrated statement needs at least one trial")
    ks = np.arange(1, T + 1)
    ok = stats.binom.cdf(ks - 1, T, 1.0 - delta) >= 1.0 - gamma
    if not ok.any():
        raise ProbPruneError(f"calibrated statement: {T} trials cannot certify the (1 - {delta:g})-quantile with "
                             f"confidence 1 - {gamma:.3g}; need at least {min_trials(delta, gamma)} trials")
    return int(ks[np.argmax(ok)])


def min_trials(delta: float, gamma: float) -> int:
    """Smallest T for which a rank exists: (1 - delta)^T <= gamma, T = ceil(ln gamma / ln(1 - delta)) (§10.1)."""
    t = math.log(gamma) / math.log1p(-delta)
    T = math.ceil(t - 1e-12)
    return T if (1.0 - delta) ** T <= gamma else T + 1


def rank_coverage(k: int, T: int, delta: float) -> float:
    """P(U_(k) >= the (1 - delta)-quantile) lower bound: binom.cdf(k - 1, T, 1 - delta) (§10.1)."""
    return float(stats.binom.cdf(k - 1, T, 1.0 - delta))


# --------------------------------------------------------------------------------------------- draws and pruning
def _torch():
    import torch

    return torch


def draw_stacks(spec: NetSpec, law: str, T: int, seed: int, chunk: int = 50, masks: bool = True
                ) -> Iterator[tuple[list, list | None]]:
    """T independent networks from the law, in chunks of ``chunk`` (float64 torch stacks (n, *weight_shape)), with
    uniform mask scores U (same shapes) when ``masks``. Chunk c uses ``np.random.default_rng([seed, c])``: the same
    (seed, T, chunk) always gives the same draws, so repeated evaluations at different fractions share them."""
    torch = _torch()
    for c, a in enumerate(range(0, T, chunk)):
        n = min(chunk, T - a)
        rng = np.random.default_rng([int(seed), c])
        W = [torch.from_numpy(w) for w in sample_weights(spec, rng, law, n=n)]
        U = [torch.from_numpy(rng.random((n, *L.weight_shape))) for L in spec.layers] if masks else None
        yield W, U


def prune_stack(spec: NetSpec, W: Sequence, U: Sequence | None, fractions, method: str, law: str) -> list:
    """Pruned copies of stacked weights, per-layer fractions (THEORY §1.5-1.6): each layer goes through
    :func:`probprune.mc.trials.prune_batched` (the Monte Carlo engine's rules, whose exact-k methods use the one
    exact-k rule :func:`probprune.pruning.sampling.exact_k_prune_mask`), so the results are identical to the MC
    code's: magnitude = threshold form |w| < q a_i (Gaussian: |w| < c s_i with 2 Phi(c) - 1 = q); random = R-Bern
    (U < p); random_rescaled = R-Bern with kept weights / (1 - p); magnitude_exact / random_exact = exactly
    floor(q N_i) entries of smallest |w| / smallest U (ties by flat index)."""
    from dataclasses import replace

    from probprune.mc.trials import prune_batched

    if method not in CAL_METHODS:
        raise ProbPruneError(f"unknown method {method!r}; use one of {', '.join(CAL_METHODS)}")
    meth = _REGISTRY[method]
    if meth.random_mask and U is None:
        raise ProbPruneError("random pruning needs mask scores")
    q = np.broadcast_to(np.asarray(fractions, float), (spec.depth,))
    if meth.rescaled and bool(np.any(q >= 1)):
        raise ProbPruneError("random_rescaled needs p < 1")
    out = []
    for i, (L, w) in enumerate(zip(spec.layers, W)):
        qi = float(q[i])
        if qi <= 0:
            out.append(w.clone())
            continue
        layer = replace(spec, layers=(L,), K=None)  # one-layer view: per-layer fractions through the MC rules
        (wh,), _ = prune_batched(layer, [w], [None if U is None else U[i]], method, qi, law)
        out.append(wh)
    return out


def _product_from_output(spec: NetSpec, W: Sequence):
    """W_l ... W_1 for stacked FCN weights, multiplied from the output side (d_l x d_i intermediate products: cheap
    when the output is narrow); the same matrix as :func:`probprune.mc.measure.product`."""
    torch = _torch()
    mats = [w.reshape(w.shape[0], L.d_out, L.d_in) for w, L in zip(W, spec.layers)]
    P = mats[-1]
    for M in reversed(mats[:-1]):
        P = torch.bmm(P, M)
    return P


def linear_error_upper(spec: NetSpec, W: Sequence, What: Sequence, P=None):
    """err = ||W_l...W_1 - What_l...What_1|| for linear FCNs (§6), as the package's one certified spectral norm
    (:func:`probprune.theory.norms.matrix_norm_upper`, batched torch, THEORY §11.1 [D]: power-of-two scaling, Gram eigenvalue
    plus rounding allowance, x (1 + 1e-9)) of the float64 product difference, so an upper bound of its exact norm
    for any weight scale. Shape (n,). ``P`` may pass a cached product of W."""
    from probprune.mc.measure import is_linear_fcn
    from probprune.theory.norms import matrix_norm_upper

    if not is_linear_fcn(spec):
        raise ProbPruneError("the exact error is only available for FCNs with identity activations")
    P = _product_from_output(spec, W) if P is None else P
    return matrix_norm_upper(P - _product_from_output(spec, What)).cpu()


@dataclass
class _Chunk:
    W: list
    U: list | None
    P: object = None  # product of W (linear nets)
    nW: object = None  # operator-norm upper bounds of W (non-linear nets)


class DrawSet:
    """T draws from the law, evaluated at any fractions with common random numbers (chunks are regenerated when they
    do not fit in ``cache_elems`` float64 entries)."""

    def __init__(self, spec: NetSpec, law: str, T: int, seed: int, masks: bool, chunk: int = 50,
                 cache_elems: int = 30_000_000):
        if law not in _LAWS:
            raise ProbPruneError(f"unknown weight law {law!r}; use uniform or gaussian")
        self.spec, self.law, self.T, self.seed, self.masks, self.chunk = spec, law, int(T), int(seed), masks, chunk
        per = spec.n_weights * (2 if masks else 1)
        self._cache = [_Chunk(W, U) for W, U in draw_stacks(spec, law, T, seed, chunk, masks)] \
            if per * self.T <= cache_elems else None
        self.memo: dict = {}  # (what, method, fractions) -> per-draw values, shared by the budget searches

    def chunks(self) -> Iterator[_Chunk]:
        if self._cache is not None:
            yield from self._cache
        else:
            for W, U in draw_stacks(self.spec, self.law, self.T, self.seed, self.chunk, self.masks):
                yield _Chunk(W, U)

    def map(self, fn: Callable[[_Chunk], np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(fn(c), float) for c in self.chunks()])


def certified_errors(ds: DrawSet, fractions, method: str) -> tuple[np.ndarray, str]:
    """Per draw a certified upper bound on err at ``fractions``: the exact sup (certified norm, §11.1) for linear
    FCNs, Cert-D (Lemma A with certified operator norms, §3.11) otherwise. Returns (values (T,), kind)."""
    from probprune.mc.measure import cert_d, is_linear_fcn, operator_norms_upper

    spec = ds.spec
    key = ("cert", method, tuple(np.broadcast_to(np.asarray(fractions, float), (spec.depth,)).tolist()))
    if key in ds.memo:
        return ds.memo[key]
    linear = is_linear_fcn(spec)
    if not linear and not spec.zero_at_zero:
        raise ProbPruneError("the calibrated certificate (Cert-D) needs sigma(0) = 0 (H-act)")

    def one(c: _Chunk):
        What = prune_stack(spec, c.W, c.U, fractions, method, ds.law)
        if linear:
            if c.P is None and ds._cache is not None:
                c.P = _product_from_output(spec, c.W)
            return linear_error_upper(spec, c.W, What, c.P).numpy()
        if c.nW is None:
            nW = operator_norms_upper(spec, c.W).numpy()
            if ds._cache is not None:
                c.nW = nW
        else:
            nW = c.nW
        nWh = operator_norms_upper(spec, What).numpy()
        nE = operator_norms_upper(spec, [w - wh for w, wh in zip(c.W, What)]).numpy()
        return cert_d(spec, nW, nWh, nE)

    ds.memo[key] = (ds.map(one), ("exact sup (linear network, certified norm §11.1)" if linear
                                  else "Cert-D (Lemma A with certified operator norms, §3.11)"))
    return ds.memo[key]


def measured_errors(ds: DrawSet, fractions, method: str, pgd: dict | None = None) -> tuple[np.ndarray, str]:
    """Per draw the measured err: exact for linear FCNs, else the multi-start PGD lower bound of
    :func:`probprune.mc.measure.pgd_lower_bound` (seeded per draw). Returns (values (T,), kind)."""
    torch = _torch()
    from probprune.mc.measure import is_linear_fcn, pgd_lower_bound

    spec = ds.spec
    if is_linear_fcn(spec):
        return certified_errors(ds, fractions, method)[0] / (1.0 + 1e-9), "exact sup (linear network)"
    kw = dict(n_random=8, iters=30, basis=False, svd_start=True) | (pgd or {})
    counter = iter(range(ds.T))

    def one(c: _Chunk):
        What = prune_stack(spec, c.W, c.U, fractions, method, ds.law)
        gens = [torch.Generator().manual_seed(ds.seed * 1_000_003 + next(counter)) for _ in range(c.W[0].shape[0])]
        return pgd_lower_bound(spec, c.W, What, generators=gens, **kw).numpy()

    return ds.map(one), (f"PGD lower bound ({kw['n_random']} random starts + SVD start, {kw['iters']} iterations; "
                         "a lower bound on err, so the empirical budget is optimistic)")


# --------------------------------------------------------------------------------------------- calibrated bound
@dataclass(frozen=True)
class CalibratedBound:
    """The calibrated statement at fixed fractions: with confidence >= 1 - gamma, P(err > eps) <= delta."""

    eps: float
    delta: float
    gamma: float
    trials: int
    rank: int
    coverage: float  # binom.cdf(rank - 1, T, 1 - delta) >= 1 - gamma
    method: str
    law: str
    fractions: np.ndarray
    per_draw: np.ndarray = field(repr=False)
    per_draw_kind: str = ""
    seed: int = 0
    statement: str = STATEMENT
    provenance: str = "[D] THEORY.md §10.1 (exact binomial order statistic; draws i.i.d. from the known law)"
    assumptions: tuple[str, ...] = ()
    #: multi-run mode (THEORY §10.1c): R runs with seeds seed..seed+R-1, rank k(T, delta, gamma/R) each; eps = min
    runs: int = 1
    run_eps: tuple[float, ...] = ()
    selection: str = SELECTION_WARNING

    @property
    def seeds(self) -> list[int]:
        return [self.seed + r for r in range(self.runs)]

    def as_dict(self) -> dict:
        u = np.sort(self.per_draw)
        return {"eps": self.eps, "delta": self.delta, "gamma": self.gamma, "trials": self.trials, "rank": self.rank,
                "coverage": self.coverage, "method": self.method, "law": self.law,
                "fractions": [float(x) for x in self.fractions], "per_draw_kind": self.per_draw_kind,
                "per_draw_median": float(np.median(u)), "per_draw_max": float(u[-1]), "seed": self.seed,
                "runs": self.runs, "seeds": self.seeds, "run_eps": [float(x) for x in (self.run_eps or (self.eps,))],
                "selection": self.selection,
                "statement": self.statement, "provenance": self.provenance, "assumptions": list(self.assumptions)}


def _law_notes(spec: NetSpec, law: str, method: str, T: int, seed: int) -> list[str]:
    return [f"{T} networks drawn i.i.d. from the law ({law}, half-widths/scales "
            f"{[round(L.half_width, 6) for L in spec.layers]}), seed {seed}; masks drawn with them",
            f"pruning: {method} (the same rule as the Monte Carlo trials, THEORY §1.5-1.6)",
            "a fresh network is drawn from the same law, independently of the simulation",
            "inputs in the unit l2 ball; error = sup over the ball (§1.4)"]


def _check_runs(runs) -> int:
    if isinstance(runs, bool) or not isinstance(runs, (int, np.integer)) or int(runs) < 1:
        raise ProbPruneError(f"runs must be a positive integer, got {runs!r}")
    return int(runs)


def calibrated_bound(spec: NetSpec, fractions, delta: float = 0.05, gamma: float = 0.05, method: str = "magnitude",
                     law: str = "uniform", trials: int = 300, seed: int = 0, runs: int = 1,
                     assume_law: bool = False) -> CalibratedBound:
    """Calibrated eps at fixed (per-layer) fractions (THEORY §10.1 [D]): the rank-k order statistic of T certified
    per-draw upper bounds, k = :func:`order_statistic_rank` (T, delta, gamma). The result records seed, T and k; the
    confidence is for this one run. ``runs=R`` (THEORY §10.1c): R independent runs (seeds seed..seed+R-1), each at
    rank k(T, delta, gamma/R), and eps = the smallest of the R values, which is valid with confidence 1 - gamma
    (union bound over the runs). A spec read from a model is refused unless ``assume_law`` (THEORY §3.0)."""
    delta = check_delta(delta)
    gamma = _check_gamma(gamma)
    runs = _check_runs(runs)
    law_note = _law_check(spec, assume_law, "the calibrated bound")
    q, _ = broadcast_fractions(spec, fractions, upper_open=_cal_method(method).rescaled)
    k = order_statistic_rank(trials, delta, gamma / runs)
    vals, per = [], []
    for r in range(runs):
        ds = DrawSet(spec, law, trials, seed + r, masks=_cal_method(method).random_mask)
        U, kind = certified_errors(ds, q, method)
        vals.append(order_statistic(U, k))
        per.append(U)
    best = int(np.argmin(vals))
    notes = law_note + _law_notes(spec, law, method, trials, seed)
    if runs > 1:
        notes.append(f"{runs} runs (seeds {seed}..{seed + runs - 1}), rank {k} of {trials} each at gamma/{runs} "
                     f"(Bonferroni, §10.1c); eps is the smallest run value (run {best}, seed {seed + best})")
    return CalibratedBound(vals[best], delta, gamma, int(trials), k, rank_coverage(k, trials, delta), method, law, q,
                           per[best], kind, int(seed), assumptions=tuple(notes), runs=runs, run_eps=tuple(vals))


# --------------------------------------------------------------------------------------------- uniform budgets
def fraction_grid(q_min: float = 1e-6, depth: int = 8, hi: float = 1.0) -> np.ndarray:
    """The fixed candidate fractions of the calibrated and empirical budget searches: 0 and a geometric dyadic grid
    q_j = q_min (hi/q_min)^(j/2^depth), j = 0..2^depth (ratio (hi/q_min)^(2^-depth) between neighbours: 5.5% at the
    defaults)."""
    j = np.arange(2 ** depth + 1)
    return np.concatenate([[0.0], q_min * (hi / q_min) ** (j / 2 ** depth)])


def _largest_ok(grid: np.ndarray, ok: Callable[[float], bool]) -> int:
    """Bisection for the largest index j >= 1 with ok(grid[j]) (0 if ok(grid[1]) fails); assumes ok is true then false
    for the search to be maximal, but the returned index always satisfies ok (index 0 is q = 0)."""
    if not ok(grid[1]):
        return 0
    if ok(grid[-1]):
        return len(grid) - 1
    lo, hi = 1, len(grid) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(grid[mid]):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class UniformBudget:
    """A uniform fraction on the candidate layers, with the counts per layer. ``kind`` is "calibrated" (statement
    §10.2: with confidence >= 1 - gamma, P(err > eps) <= delta at this fraction) or "empirical" (point estimate:
    measured err <= eps in >= 1 - delta of the T draws; no confidence; a PGD lower bound for non-linear nets)."""

    kind: str
    eps: float
    delta: float
    fraction: float
    layers: tuple[tuple[str, int, int], ...]  # (name, n_weights, max_prunable)
    trials: int
    quantile_at_fraction: float  # the order statistic (calibrated) or empirical quantile at the fraction
    rank: int
    gamma: float | None
    grid_points: int
    per_draw_kind: str
    method: str
    law: str
    seed: int
    statement: str
    assumptions: tuple[str, ...] = ()
    half_widths: tuple[float, ...] = ()  # a_i (s_i) of the layers, for the magnitude threshold t_i (THEORY §3.9b)

    @property
    def rule(self) -> str:
        """The pruning rule the statement is about (THEORY §3.9b): exact_k for the exact-k methods, threshold for
        magnitude (prune |w| < q a_i), bernoulli for random and rescaled random."""
        return _REGISTRY[self.method].sampling_model.rule

    @property
    def total_prunable(self) -> int:
        return int(sum(c for _, _, c in self.layers))

    @property
    def total_weights(self) -> int:
        return int(sum(n for _, n, _ in self.layers))

    def as_dict(self) -> dict:
        rule = _BUDGET_RULES[self.rule]  # the rule's sampling model (THEORY §3.9b)

        def layer(i, n, N, c):
            d = {"name": n, "n_weights": N, "max_prunable": c, "fraction": self.fraction if c else 0.0}
            if rule.counted:  # exact_k: the count
                d[rule.budget_field] = c
            elif rule.fraction_given:  # bernoulli: the probability
                d[rule.budget_field] = self.fraction if c else 0.0
            elif self.half_widths:  # threshold: t_i under the law
                q = self.fraction if c else 0.0
                d[rule.budget_field] = float(_LAWS[self.law].threshold(q, self.half_widths[i]))
            return d

        return {"kind": self.kind, "eps": self.eps, "delta": self.delta, "gamma": self.gamma,
                "fraction": self.fraction, "total_prunable": self.total_prunable, "total_weights": self.total_weights,
                "rule": self.rule,
                "selection": SELECTION_WARNING if self.kind == "calibrated" else "empirical: not a guarantee",
                "layers": [layer(i, n, N, c) for i, (n, N, c) in enumerate(self.layers)],
                "trials": self.trials, "rank": self.rank, "quantile_at_fraction": self.quantile_at_fraction,
                "grid_points": self.grid_points, "per_draw_kind": self.per_draw_kind, "method": self.method,
                "law": self.law, "seed": self.seed, "statement": self.statement,
                "assumptions": list(self.assumptions)}


def _cand_mask(spec: NetSpec, prunable) -> np.ndarray:
    from probprune.budgets.apriori import _candidates

    return _candidates(spec, prunable)


def _layers(spec: NetSpec, cand: np.ndarray, q: float):
    return tuple((L.name, L.N, int(math.floor(q * L.N + 1e-9)) if c else 0) for L, c in zip(spec.layers, cand))


def calibrated_uniform_budget(spec: NetSpec, eps: float, delta: float = 0.05, gamma: float = 0.05,
                              method: str = "magnitude", law: str = "uniform", trials: int = 300, seed: int = 0,
                              prunable=None, q_min: float = 1e-6, depth: int = 8,
                              draws: DrawSet | None = None, pilot_trials: int | None = 100, ladder: int = 8,
                              ladder_ratio: float = 1.03, assume_law: bool = False) -> UniformBudget:
    """The largest candidate fraction q (same q on the candidate layers) whose calibrated eps is <= eps (THEORY §10.2
    [D]). The candidates are fixed before the main simulation, and each gets confidence 1 - gamma/|candidates| (union
    bound), so the returned q satisfies "with confidence >= 1 - gamma, P(err(q) > eps) <= delta" whatever the search
    looked at. Candidates: with ``pilot_trials`` (default), an independent pilot simulation (seed + 7919) locates q_p,
    the largest grid fraction whose pilot rank statistic is <= eps, and the candidates are the ``ladder`` fractions
    q_p r^(1-j), j = 0..ladder-1 (r = ``ladder_ratio``; one step above q_p, the rest below); without a pilot, the
    whole geometric grid (2^depth + 1 points, q_min..1). A spec read from a model is refused unless ``assume_law``."""
    eps = float(check_eps(eps))
    delta = check_delta(delta)
    gamma = _check_gamma(gamma)
    law_note = _law_check(spec, assume_law, "the calibrated budget")
    cand = _cand_mask(spec, prunable)
    hi = _cal_method(method).max_fraction
    grid = fraction_grid(q_min, depth, hi)
    masks = _cal_method(method).random_mask
    pilot_note = None
    if pilot_trials:
        pk = order_statistic_rank(pilot_trials, delta, gamma)
        pds = DrawSet(spec, law, pilot_trials, seed + 7919, masks=masks)
        pmemo: dict[float, float] = {}

        def pquant(q: float) -> float:
            if q not in pmemo:
                pmemo[q] = float(np.sort(certified_errors(pds, np.where(cand, q, 0.0), method)[0])[pk - 1])
            return pmemo[q]

        jp = _largest_ok(grid, lambda q: pquant(q) <= eps)
        qp = float(grid[jp]) if jp > 0 else float(grid[1])
        cands = np.minimum(hi, qp * ladder_ratio ** (1 - np.arange(ladder)))
        cands = np.unique(cands[cands > 0])[::-1]  # descending
        pilot_note = (f"candidates fixed by an independent pilot of {pilot_trials} draws (seed {seed + 7919}): "
                      f"q_p = {qp:.6g}, ladder of {len(cands)} fractions q_p x {ladder_ratio:g}^(1-j)")
    else:
        cands = grid[1:][::-1]
    n_pts = len(cands)  # q = 0 needs no statement (err = 0)
    g_pt = gamma / n_pts
    k = order_statistic_rank(trials, delta, g_pt)
    ds = draws or DrawSet(spec, law, trials, seed, masks=masks)
    memo: dict[float, float] = {}

    def quant(q: float) -> float:
        if q not in memo:
            U, _ = certified_errors(ds, np.where(cand, q, 0.0), method)
            memo[q] = order_statistic(U, k)
        return memo[q]

    asc = np.concatenate([[0.0], cands[::-1]])
    j = _largest_ok(asc, lambda q: quant(q) <= eps)
    q = float(asc[j])
    kind = "exact sup (linear network)" if _is_linear(spec) else "Cert-D (§3.11)"
    notes = law_note + _law_notes(spec, law, method, trials, seed) + [
        pilot_note or f"search over a fixed grid of {n_pts} fractions (geometric, {q_min:g}..{hi:g})",
        SELECTION_WARNING,
        f"union bound over the {n_pts} candidates: confidence 1 - gamma/{n_pts} = {1 - g_pt:.6g} each, rank {k} "
        f"of {trials}",
        "the same fraction in every candidate layer (calibrated budgets are uniform)"]
    return UniformBudget("calibrated", eps, delta, q, _layers(spec, cand, q), int(trials), memo.get(q, 0.0), k, gamma,
                         n_pts, kind, method, law, int(seed), STATEMENT + " (§10.2, union bound over the candidates)",
                         tuple(notes), tuple(L.half_width for L in spec.layers))


def _is_linear(spec: NetSpec) -> bool:
    from probprune.mc.measure import is_linear_fcn

    return is_linear_fcn(spec)


def empirical_uniform_budget(spec: NetSpec, eps: float, delta: float = 0.05, method: str = "magnitude",
                             law: str = "uniform", trials: int = 200, seed: int = 1, prunable=None,
                             q_min: float = 1e-6, depth: int = 9, pgd: dict | None = None,
                             draws: DrawSet | None = None, assume_law: bool = False) -> UniformBudget:
    """What is actually safe (not a guarantee): the largest grid fraction q whose *measured* error (exact for linear
    nets, a PGD lower bound otherwise) is <= eps in at least ceil((1 - delta) T) of T draws, i.e. the empirical
    (1 - delta)-quantile of err is <= eps. Seeded separately from the calibrated draws by default. It simulates the
    law, so a spec read from a model is refused unless ``assume_law``."""
    eps = float(check_eps(eps))
    delta = check_delta(delta)
    law_note = _law_check(spec, assume_law, "the empirical budget over draws from the law")
    cand = _cand_mask(spec, prunable)
    hi = _cal_method(method).max_fraction
    grid = fraction_grid(q_min, depth, hi)
    k = coverage_rank(trials, delta)
    ds = draws or DrawSet(spec, law, trials, seed, masks=_cal_method(method).random_mask)
    memo: dict[float, float] = {}
    kinds: list[str] = []

    def quant(q: float) -> float:
        if q not in memo:
            e, kd = measured_errors(ds, np.where(cand, q, 0.0), method, pgd)
            kinds.append(kd)
            memo[q] = float(np.sort(e)[k - 1])
        return memo[q]

    j = _largest_ok(grid, lambda q: quant(q) <= eps)
    q = float(grid[j])
    notes = law_note + _law_notes(spec, law, method, trials, seed) + [
        f"measured error <= eps in >= {k} of {trials} draws (empirical (1 - {delta:g})-quantile); no confidence level",
        f"grid of {len(grid) - 1} fractions (geometric, {q_min:g}..{hi:g})"]
    return UniformBudget("empirical", eps, delta, q, _layers(spec, cand, q), int(trials), memo.get(q, 0.0), k, None,
                         len(grid) - 1, kinds[0] if kinds else "", method, law, int(seed),
                         "empirical: measured error within eps in at least 1 - delta of the draws (not a guarantee)",
                         tuple(notes), tuple(L.half_width for L in spec.layers))


# --------------------------------------------------------------------------------------------- output scale
@dataclass(frozen=True)
class OutputScale:
    """sup_{||x||<=1} ||F(x)|| for networks from the law: ``upper`` is the calibrated (1 - delta)-quantile bound of a
    certified per-draw upper bound (exact for linear nets, Lip prod ||W_i|| otherwise; §10.3), ``lower_median`` the
    median of a per-draw lower estimate (exact / PGD), ``analytic_upper`` = Lip prod B_i (holds w.p. >= 1 - delta,
    §3.4)."""

    upper: float
    upper_median: float
    lower_median: float
    analytic_upper: float
    trials: int
    rank: int
    delta: float
    gamma: float
    upper_kind: str
    lower_kind: str
    #: THEORY §10.3b (median statement): with confidence >= 1 - gamma, a fresh draw has sup||F|| >= median_lower with
    #: probability >= 1/2; 0 when the draws are too few for that confidence
    median_lower: float = 0.0
    median_rank: int = 0
    vacuity: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def median_lower_rank(T: int, gamma: float) -> int:
    """The largest j in 1..T with binom.cdf(j - 1, T, 1/2) <= gamma (THEORY §10.3b): then the j-th smallest of T i.i.d.
    draws of Y is <= a median of Y with probability >= 1 - gamma; 0 when no j works (T too small)."""
    ks = np.arange(1, int(T) + 1)
    ok = stats.binom.cdf(ks - 1, int(T), 0.5) <= gamma
    return int(ks[ok].max()) if ok.any() else 0


def output_scale(spec: NetSpec, law: str = "uniform", delta: float = 0.05, gamma: float = 0.05, trials: int = 100,
                 seed: int = 2, pgd_trials: int = 8, assume_law: bool = False) -> OutputScale:
    """The scale of the network's output used by ``--eps-rel`` (THEORY §10.3): per draw an upper bound U_F >= sup||F||
    (the certified norm of W_l...W_1, §11.1, for linear nets; Lip prod ||W_i|| with certified norms otherwise), its
    calibrated (1 - delta) quantile bound (rank of §10.1) as ``upper``; a lower estimate (exact, or PGD on F against
    the zero network on the first ``pgd_trials`` draws). ``median_lower``: a lower confidence bound on the median of
    that lower estimate (§10.3b), the basis of the median (not certain) non-vacuity statement."""
    _law_check(spec, assume_law, "the output scale of the weight law")
    torch = _torch()
    from probprune.theory.apriori import DeltaAllocation, norm_bound
    from probprune.mc.measure import is_linear_fcn, operator_norms_upper, pgd_lower_bound

    k = order_statistic_rank(trials, delta, gamma)
    ds = DrawSet(spec, law, trials, seed, masks=False)
    linear = is_linear_fcn(spec)
    lips = float(np.prod([L.lip for L in spec.layers]))

    def up(c: _Chunk):
        if linear:
            from probprune.theory.norms import matrix_norm_upper  # the one certified norm (§11.1)

            return matrix_norm_upper(_product_from_output(spec, c.W)).cpu().numpy()
        return lips * np.prod(operator_norms_upper(spec, c.W).numpy(), axis=-1)

    U = ds.map(up)
    if linear:
        low = U / (1.0 + 1e-9)
        lk = "exact ||W_l...W_1|| (linear network)"
    else:
        first = next(iter(ds.chunks()))
        n = min(pgd_trials, first.W[0].shape[0])
        W = [w[:n] for w in first.W]
        gens = [torch.Generator().manual_seed(seed * 7919 + t) for t in range(n)]
        low = pgd_lower_bound(spec, W, [torch.zeros_like(w) for w in W], n_random=16, iters=40, basis=False,
                              generators=gens).numpy()
        lk = f"PGD lower bound of sup||F|| on {n} draws"
    alloc = DeltaAllocation.equal_split(delta, np.zeros(spec.depth, bool))
    analytic = lips * float(np.prod(norm_bound(spec, alloc.delta_W, law)))
    j = median_lower_rank(len(low), gamma)
    ml = float(np.sort(low)[j - 1]) if j > 0 else 0.0
    vac = (f"median statement (§10.3b): with confidence >= {1 - gamma:g}, for at least half of the networks drawn from "
           f"the law sup||F|| >= {ml:.6g} (rank {j} of {len(low)} lower estimates), so a tolerance eps < {ml:.6g} "
           "is not vacuous (pruning everything exceeds it) for at least half of the draws; it is not a statement "
           "about every draw" if j > 0 else
           f"too few lower estimates ({len(low)}) for a median statement at confidence {1 - gamma:g}")
    return OutputScale(order_statistic(U, k), float(np.median(U)), float(np.median(low)), analytic, int(trials), k,
                       delta, gamma, "exact ||prod W|| (linear)" if linear else "Lip prod ||W_i|| (certified norms)", lk,
                       ml, j, vac)


# --------------------------------------------------------------------------------------------- empirical crossing CI
@dataclass(frozen=True)
class EmpiricalCrossing:
    """The empirical uniform budget with a distribution-free confidence interval for the crossing it estimates (the
    largest grid fraction whose true (1 - delta)-quantile of err is <= eps; not a guarantee about any network).
    ``fraction`` is the point estimate (empirical quantile, as :func:`empirical_uniform_budget`); with confidence
    >= ``confidence`` the true crossing lies in [``lower``, ``upper``] (grid fractions). ``within`` is
    max(fraction/lower, upper/fraction) - 1 (the half-width in relative terms)."""

    eps: float
    delta: float
    method: str
    trials: int
    seed: int
    fraction: float
    lower: float
    upper: float
    confidence: float
    ranks: tuple[int, int, int]  # (lower-quantile rank l, point rank k, upper-quantile rank u) of the order statistics
    evaluations: int

    @property
    def within(self) -> float:
        if self.fraction <= 0 or self.lower <= 0:
            return math.inf
        return max(self.fraction / self.lower, self.upper / self.fraction) - 1.0

    def as_dict(self) -> dict:
        return dict(self.__dict__) | {"within": self.within}


def quantile_rank_bracket(T: int, level: float, alpha: float) -> tuple[int, int]:
    """Ranks (l, u) of T i.i.d. draws with P(X_(l) > Q) <= alpha/2 and P(X_(u) < Q) <= alpha/2 for the level-quantile
    Q of a continuous law: #(X_i < Q) ~ Binomial(T, level), X_(u) < Q iff that count >= u, X_(l) > Q iff it is < l.
    l = 0 / u = T + 1 when T is too small (no bracket on that side)."""
    ks = np.arange(0, T + 2)
    cdf = stats.binom.cdf(ks - 1, T, level)  # P(count <= k - 1) = P(count < k)
    lo = ks[(cdf <= alpha / 2) & (ks >= 1)]
    hi = ks[(1.0 - cdf <= alpha / 2) & (ks <= T)]  # P(count >= u) <= alpha/2
    return (int(lo.max()) if lo.size else 0), (int(hi.min()) if hi.size else T + 1)


def empirical_crossing(spec: NetSpec, eps: float, delta: float = 0.05, method: str = "magnitude",
                       law: str = "uniform", trials: int = 1000, seed: int = 1, confidence: float = 0.95,
                       q_min: float = 1e-6, depth: int = 9, draws: DrawSet | None = None,
                       assume_law: bool = False) -> EmpiricalCrossing:
    """Empirical uniform budget (largest grid fraction whose empirical (1 - delta)-quantile of the exact error is
    <= eps; linear FCNs) and a confidence interval for the true crossing: with (l, u) from
    :func:`quantile_rank_bracket` at alpha = 1 - confidence, ``lower`` = the largest grid q with X_(u)(q) <= eps (there
    the true quantile is <= eps unless the upper event fails) and ``upper`` = the largest grid q with X_(l)(q) <= eps
    (at the next grid point the true quantile is > eps unless the lower event fails); each side uses one fraction's
    event, so both hold together with probability >= confidence if the quantile is non-decreasing in q. Common
    random numbers (one DrawSet) for every fraction."""
    eps = float(check_eps(eps))
    delta = check_delta(delta)
    _law_check(spec, assume_law, "the empirical crossing over draws from the law")
    if not _is_linear(spec):
        raise ProbPruneError("empirical_crossing needs the exact error: FCNs with identity activations only")
    if not 0.0 < float(confidence) < 1.0:
        raise ProbPruneError(f"confidence must be in (0, 1), got {confidence}")
    trials = int(trials)
    k = coverage_rank(trials, delta)
    l, u = quantile_rank_bracket(trials, 1.0 - delta, 1.0 - float(confidence))
    if l < 1 or u > trials:
        raise ProbPruneError(f"{trials} draws are too few for a {confidence:g} interval of the {1 - delta:g}-quantile")
    hi = _cal_method(method).max_fraction
    grid = fraction_grid(q_min, depth, hi)
    ds = draws or DrawSet(spec, law, trials, seed, masks=_cal_method(method).random_mask)
    memo: dict[float, np.ndarray] = {}

    def srt(q: float) -> np.ndarray:
        if q not in memo:
            memo[q] = np.sort(measured_errors(ds, np.full(spec.depth, q), method)[0])
        return memo[q]

    q_pt = float(grid[_largest_ok(grid, lambda q: srt(q)[k - 1] <= eps)])
    q_lo = float(grid[_largest_ok(grid, lambda q: srt(q)[u - 1] <= eps)])
    q_hi = float(grid[_largest_ok(grid, lambda q: srt(q)[l - 1] <= eps)])
    return EmpiricalCrossing(eps, delta, method, trials, int(ds.seed), q_pt, q_lo, q_hi, float(confidence),
                             (l, k, u), len(memo))
