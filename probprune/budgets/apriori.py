"""The budget: how many weights may be pruned, per layer, for an error budget (eps, delta) (THEORY §3.9 [D]).

For a network drawn from the weight law (a spec) the a-priori bound of :mod:`probprune.theory.apriori` is inverted; for a
given trained network the certificates of :mod:`probprune.certificates.lemma` are inverted (deterministic Cert-D for
magnitude pruning, Cert-R for random pruning).

Modes (THEORY §3.9):
- ``uniform``: the largest common fraction q* with bound(q*, ..., q*) <= eps (bisection, tolerance 1e-12);
- ``equal_share``: every pruned layer gets the same relative error rho = (1 + eps/(Lip prod B))^(1/l_p) - 1,
  solved per layer in closed form (RR; the magnitude cubic) or by bisection;
- ``optimal``: maximise sum_i q_i N_i subject to bound <= eps. Since the bound is Lip prod B (prod(1 + x_i) - 1),
  the constraint is the separable sum_i ln(1 + eta_i(q_i)/B_i) <= ln(1 + eps/(Lip prod B)); a dynamic program over
  a grid of shares of that log-budget gives the global optimum up to the grid, then the unused slack is spent.
  Always reported beside the best uniform allocation.

The delta split is fixed before inverting (equal split over the W events of every layer and the E events of every
candidate layer), as §3.9 requires, so the reported fractions satisfy the bound with that split.

Rules (THEORY §3.9b, issue 20): a budget says which pruning rule its numbers are about. Per layer it gives
- ``exact_k``: the count k_i covered by the exact-k statement (magnitude: prune exactly the k_i smallest |w|, as
  ``torch.nn.utils.prune.l1_unstructured`` does, THEORY §9.6; random: exactly k_i entries uniformly at random,
  §3.4 RR-mask / §9.5), and
- ``threshold`` t_i (magnitude: prune |w| < t_i, §3.4 RM) or ``bernoulli_p`` p_i (random: each entry pruned
  independently with probability p_i, R-Bern §3.4 RR) covered by the threshold / Bernoulli statement, whose pruned
  count is Binomial(N_i, q_i) (``expected_count`` = floor(q_i N_i)).
``rule`` (default "exact_k" wherever an exact-k statement exists) picks which of the two ``max_prunable`` reports;
``fraction`` / ``uniform_fraction`` are always the threshold (Bernoulli) statement's q_i.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from probprune.theory.apriori import (
    METHODS,
    DeltaAllocation,
    apriori_bound,
    check_spec_for_apriori,
)
from probprune.core.errors import ProbPruneError, check_delta, check_eps, check_fraction
from probprune.core.registry import BOUNDS as _BOUNDS
from probprune.core.registry import BUDGET_RULES as _BUDGET_RULES
from probprune.core.registry import LAWS as _LAWS
from probprune.core.registry import METHODS as _REGISTRY
from probprune.net.templates import NetSpec, fcn_spec


@dataclass(frozen=True)
class _ModeInputs:
    """What an allocation mode needs: the problem, the candidate layers, the common-fraction optimum ``q_uniform``
    and the tables ``T`` (with their delta allocation) it was found on."""

    spec: NetSpec
    eps: float
    delta: float
    method: str
    law: str
    cand: np.ndarray
    statement: str
    T: "_Terms"
    q_uniform: np.ndarray
    N: np.ndarray
    #: per-layer allocations the mode found besides the one it returns (the exact-k inversion scales each of them)
    directions: list = field(default_factory=list)


def _allocate_uniform(x: _ModeInputs):
    return x.q_uniform, x.T.alloc


def _allocate_equal_share(x: _ModeInputs):
    share = np.where(x.cand, x.T.C / x.cand.sum(), 0.0)
    return _refine_separable(x.T, x.spec, x.delta, x.method, x.law, x.statement, share), x.T.alloc


def _allocate_optimal(x: _ModeInputs):
    q, alloc = optimal_allocation(x.spec, x.eps, x.delta, x.method, x.law, x.cand, x.statement,
                                  directions=x.directions)
    if np.sum(q * x.N) < np.sum(x.q_uniform * x.N):  # the uniform optimum is exact; the optimal search is on tables
        return x.q_uniform, x.T.alloc
    return q, alloc


@dataclass(frozen=True)
class AllocationMode:
    """How a budget spreads eps over the layers (THEORY §3.9, §10.5): ``allocate(inputs) -> (q, allocation)``;
    ``per_layer``: the fractions differ per layer (the exact-k inversion also tries the scaled threshold
    allocation). ``certified_as``: the mode a certified budget of a given network searches for this one (§3.9,
    §11.3: the optimal or the uniform search; equal_share is an a-priori allocation, its certified counterpart the
    optimal search)."""

    name: str
    description: str
    allocate: Callable[[_ModeInputs], tuple]
    per_layer: bool = True
    certified_as: str | None = None


#: the allocation modes of :func:`max_prunable`, by name (registration order = ``MODES``)
ALLOCATION_MODES = {m.name: m for m in (
    AllocationMode("optimal", "per-layer fractions maximising the pruned count (§10.5; never below uniform)",
                   _allocate_optimal, certified_as="optimal"),
    AllocationMode("uniform", "one common fraction on the candidate layers (§3.9)", _allocate_uniform,
                   per_layer=False, certified_as="uniform"),
    AllocationMode("equal_share", "each candidate layer gets an equal share of the budget (§3.9)",
                   _allocate_equal_share, certified_as="optimal"),
)}
MODES = tuple(ALLOCATION_MODES)


def _mode(mode: str) -> AllocationMode:
    if mode not in ALLOCATION_MODES:
        raise ProbPruneError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    return ALLOCATION_MODES[mode]


#: pruning rules a budget can be about (THEORY §3.9b): exact-k counts, or the threshold (magnitude) / Bernoulli
#: (random) rule whose count is Binomial
RULES = tuple(_BUDGET_RULES)  # ("exact_k", "threshold", "bernoulli"): the registry's budget rules


@dataclass(frozen=True)
class LayerBudget:
    name: str
    n_weights: int
    fraction: float
    max_prunable: int
    eta: float | None = None
    B: float | None = None
    #: the exact-k count covered by the exact-k statement (None when the budget has no exact-k inversion)
    exact_k: int | None = None
    #: magnitude: the threshold t_i (prune |w| < t_i) covered by the threshold statement; random: None
    threshold: float | None = None
    #: random: the Bernoulli probability p_i covered by the Bernoulli statement; magnitude: None
    bernoulli_p: float | None = None


@dataclass(frozen=True)
class BudgetResult:
    """Largest prunable fraction and count per layer for (eps, delta). ``eps_achieved`` is the bound evaluated at the
    reported fractions (<= eps). ``uniform_fraction``/``uniform_total`` give the best uniform allocation."""

    eps: float
    delta: float | None
    method: str
    mode: str
    layers: tuple[LayerBudget, ...]
    eps_achieved: float
    uniform_fraction: float
    uniform_total: int
    source: str  # "a-priori" | "certificate"
    statement: str
    assumptions: tuple[str, ...] = ()
    paper_hypotheses_violated: tuple[str, ...] = ()
    #: the rule ``max_prunable`` is about (RULES; None for budgets built before §3.9b, e.g. certified budgets) and,
    #: per rule, the statement that covers it with the bound evaluated at the reported allocation
    rule: str | None = None
    rule_statements: dict = field(default_factory=dict)
    #: uniform totals per rule (THEORY §3.9b): {"exact_k": ..., "threshold"/"bernoulli": expected count}
    uniform_totals: dict = field(default_factory=dict)

    @property
    def total_prunable(self) -> int:
        return int(sum(L.max_prunable for L in self.layers))

    @property
    def total_weights(self) -> int:
        return int(sum(L.n_weights for L in self.layers))

    @property
    def fractions(self) -> np.ndarray:
        return np.array([L.fraction for L in self.layers])

    def as_dict(self) -> dict:
        def layer(L):
            d = {"name": L.name, "n_weights": L.n_weights, "max_prunable": L.max_prunable, "fraction": L.fraction,
                 "eta": L.eta, "B": L.B}
            if self.rule is not None:
                d |= {"exact_k": L.exact_k, "threshold": L.threshold, "bernoulli_p": L.bernoulli_p,
                      "expected_count": int(math.floor(L.fraction * L.n_weights + 1e-9))}
            return d

        return {
            "eps": self.eps,
            "delta": self.delta,
            "method": self.method,
            "mode": self.mode,
            "source": self.source,
            "statement": self.statement,
            "rule": self.rule,
            "rule_statements": dict(self.rule_statements),
            "layers": [layer(L) for L in self.layers],
            "total_prunable": self.total_prunable,
            "total_weights": self.total_weights,
            "total_fraction": self.total_prunable / self.total_weights,
            "eps_achieved": self.eps_achieved,
            "uniform": {"fraction": self.uniform_fraction, "total_prunable": self.uniform_total}
            | ({"rule": self.rule, "totals_by_rule": dict(self.uniform_totals)} if self.rule is not None else {}),
            "assumptions": list(self.assumptions),
            "paper_hypotheses_violated": list(self.paper_hypotheses_violated),
        }


# --------------------------------------------------------------------------------------------- generic inverses
def _max_q(method: str) -> float:
    """The largest fraction searched: the registered method's ``max_fraction`` (1 for unknown names)."""
    m = _REGISTRY.get(method) if isinstance(method, str) else None
    return 1.0 if m is None else m.max_fraction


def equal_share_closed_form(t, a, m, lam, method: str):
    """Closed forms of THEORY §3.9 for the uniform law (t = target eta_i/sqrt(r_i)):
    RR: p = t(3t - 2 a lam)/(2 m a^2 lam), 0 if t <= 2 a lam/3; magnitude: the unique positive root q of
    (2 lam m a^2/3) q^3 + (2 lam a t/3) q - t^2 = 0 (Cardano; one real root since the cubic is increasing). Clipped
    to [0, 1]."""
    t, a, m, lam = (np.asarray(x, float) for x in (t, a, m, lam))
    form = _CLOSED_FORMS.get(method) if isinstance(method, str) else None
    if form is None:
        raise ProbPruneError(f"no closed form for method {method!r}")
    return form(t, a, m, lam)


def _closed_form_bernoulli(t, a, m, lam):
    """RR (THEORY §3.9): p = t(3t - 2 a lam)/(2 m a^2 lam), 0 if t <= 2 a lam/3, clipped to [0, 1]."""
    p = t * (3 * t - 2 * a * lam) / (2 * m * a * a * lam)
    return np.clip(np.where(t <= 2 * a * lam / 3, 0.0, p), 0.0, 1.0)


def _closed_form_threshold(t, a, m, lam):
    """RM (THEORY §3.9): the positive root of (2 lam m a^2/3) q^3 + (2 lam a t/3) q - t^2 = 0 (Cardano)."""
    A = 2 * lam * m * a * a / 3
    Bc = 2 * lam * a * t / 3
    # q^3 + P q + Q = 0 with P = Bc/A > 0, Q = -t^2/A
    P, Q = Bc / A, -t * t / A
    disc = np.sqrt((Q / 2) ** 2 + (P / 3) ** 3)
    q = np.cbrt(-Q / 2 + disc) + np.cbrt(-Q / 2 - disc)
    return np.clip(q, 0.0, 1.0)


#: method -> its closed form of THEORY §3.9 (uniform law, equal share of the budget)
_CLOSED_FORMS = {"random": _closed_form_bernoulli, "magnitude": _closed_form_threshold}


# --------------------------------------------------------------------------------------------- a-priori budget
def _candidates(spec: NetSpec, prunable) -> np.ndarray:
    if prunable is None:
        return np.ones(spec.depth, bool)
    names = [L.name for L in spec.layers]
    mask = np.zeros(spec.depth, bool)
    for p in prunable:
        if isinstance(p, (int, np.integer)):
            if not (0 <= p < spec.depth):
                raise ProbPruneError(f"layer index {p} out of range 0..{spec.depth - 1}")
            mask[p] = True
        elif p in names:
            mask[names.index(p)] = True
        else:
            raise ProbPruneError(f"unknown layer {p!r}; layers are {names}")
    if not mask.any():
        raise ProbPruneError("no prunable layer selected")
    return mask


def _dp_allocate(gain: np.ndarray) -> np.ndarray:
    """Separable knapsack over a share grid: gain[i, k] = N_i q_i(share k/G). Returns the share index per layer
    maximising sum_i gain[i, k_i] subject to sum_i k_i <= G (exact dynamic program on the grid)."""
    l, G1 = gain.shape
    best = gain[0].copy()
    choice = np.zeros((l, G1), int)
    choice[0] = np.arange(G1)
    k = np.arange(G1)
    j = np.arange(G1)
    valid = j[None, :] <= k[:, None]
    idx = np.where(valid, k[:, None] - j[None, :], 0)
    for i in range(1, l):
        tot = np.where(valid, best[idx] + gain[i][None, :], -np.inf)
        choice[i] = np.argmax(tot, axis=1)
        best = tot[k, choice[i]]
    # backtrack from the best total budget used
    kk = int(np.argmax(best))
    out = np.zeros(l, int)
    for i in range(l - 1, 0, -1):
        out[i] = choice[i][kk]
        kk -= out[i]
    out[0] = kk
    return out


def max_prunable(
    spec: NetSpec,
    eps: float,
    delta: float,
    method: str = "magnitude",
    mode: str = "optimal",
    law: str = "uniform",
    prunable: Sequence[int | str] | None = None,
    statement: str = "best",
    rule: str | None = None,
    assume_law: bool = False,
) -> BudgetResult:
    """Largest prunable fraction per layer such that the a-priori bound (THEORY §3.4/§3.6/§3.12, and §9 through
    :func:`probprune.theory.apriori.apriori_bound`'s ``statement``, default its tightest valid one) is <= eps with
    probability >= 1 - delta (THEORY §3.9, §10.5). ``prunable`` restricts pruning to some layers (names or indices).

    Rules (THEORY §3.9b): the threshold (magnitude) / Bernoulli (random) statement is inverted for the fractions q_i
    (``fraction``, ``threshold`` t_i, ``bernoulli_p``); the exact-k statement (§9.5-9.6) is inverted for the counts
    ``exact_k`` (:func:`exact_k_counts`). ``rule`` (default: "exact_k" where an exact-k statement exists for the
    method, law and statement mode, else "threshold"/"bernoulli") says which count ``max_prunable`` reports.
    A spec read from a model is refused unless ``assume_law=True`` (THEORY §3.0)."""
    eps = float(check_eps(eps))
    delta = check_delta(delta)
    if method not in METHODS:
        raise ProbPruneError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if mode not in MODES:
        raise ProbPruneError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    notes = check_spec_for_apriori(spec, assume_law)
    spec = replace(spec, origin="law")  # checked (or assumed, noted) above; the internal evaluations are law statements
    rule = _resolve_rule(method, law, statement, rule)
    counted = _BUDGET_RULES[rule].counted  # rule exact_k: max_prunable reports the exact-k counts
    cand = _candidates(spec, prunable)
    N = np.array([L.N for L in spec.layers], float)
    T_c = _terms(spec, eps, delta, method, law, cand, statement)
    q_uni = _uniform_sup(spec, eps, delta, method, law, cand, T_c.alloc, statement=statement)
    q_uniform = np.where(cand, q_uni, 0.0)
    inputs = _ModeInputs(spec, eps, delta, method, law, cand, statement, T_c, q_uniform, N)
    q, alloc = ALLOCATION_MODES[mode].allocate(inputs)
    fin = _ab(statement, spec, q, delta, method, law, allocation=alloc)
    eps_ach = float(fin.eps)
    if eps_ach > eps * (1 + 1e-9):  # never report an allocation that violates the budget
        raise RuntimeError(f"internal error: allocation bound {eps_ach} exceeds eps {eps}")
    res_eta, B = np.asarray(fin.eta, float), np.asarray(fin.B, float)
    uni_total_thr = int(sum(math.floor(q_uni * L.N + 1e-9) for L, c in zip(spec.layers, cand) if c))
    meth, wlaw = _REGISTRY[method], _LAWS[law]
    thr_name = meth.sampling  # the rule of the fractions: "threshold" (magnitude) or "bernoulli" (random)
    rule_st = {thr_name: f"{fin.statement} at the fractions q_i (eps = {eps_ach:.6g})"}
    ks = uni_ks = None
    if _exact_method(method) is not None and _has_exact_statement(method, law, statement):
        dirs = [q] + [d for d in inputs.directions if d is not None and not np.array_equal(d, q)]
        ek = exact_k_counts(spec, eps, delta, method, law, cand, np.array(dirs), mode, statement)
        ks, uni_ks = ek.counts, ek.uniform_counts
        rule_st["exact_k"] = f"{ek.statement} at the counts k_i (eps = {ek.eps_achieved:.6g})"
        notes.append(f"exact_k: counts certified by the exact-k statement ({ek.how})")
    elif counted:
        raise ProbPruneError(f"no exact-k statement for method {method!r} with law {law!r} and statement "
                             f"{statement!r}; use rule='{thr_name}'")
    a = np.array([L.half_width for L in spec.layers])
    thr = _threshold(q, a, law) if meth.is_threshold else None
    layers = tuple(
        LayerBudget(L.name, L.N, float(qi), int(ks[i]) if counted else int(math.floor(qi * L.N + 1e-9)),
                    float(e), float(b), None if ks is None else int(ks[i]),
                    None if thr is None else float(thr[i]), None if meth.is_threshold else float(qi))
        for i, (L, qi, e, b) in enumerate(zip(spec.layers, q, res_eta, B))
    )
    notes.append(f"delta split equally over {int(alloc.n_events)} events (the W events of every layer and the E events "
                 f"of the {int(np.sum(alloc.delta_E > 0))} pruned layers), fixed before inversion (§3.8-3.9)")
    if counted:
        notes.append("rule exact_k: max_prunable = k_i, prune exactly the k_i "
                     + ("entries of layer i chosen uniformly at random" if meth.random_mask
                        else "smallest |w| of layer i (torch.nn.utils.prune.l1_unstructured)")
                     + "; covered by the exact-k statement")
    else:
        notes.append(f"rule {rule}: max_prunable = floor(q_i N_i), the expected count; the realised count is "
                     "Binomial(N_i, q_i); covered by the " + thr_name + " statement, NOT by exact-k pruning")
    notes.append(wlaw.threshold_text + ": prune |w| < t_i (covered by the threshold statement)" if meth.is_threshold
                 else
                 "bernoulli_p = q_i: prune each entry independently with probability p_i (covered by the Bernoulli "
                 "statement)")
    return BudgetResult(
        eps, delta, method, mode, layers, float(eps_ach), q_uni,
        int(sum(uni_ks)) if (counted and uni_ks is not None) else uni_total_thr,
        "a-priori", f"THEORY.md §3.9/§10.5 inversion of {apriori_bound.__module__}.apriori_bound ({method}, {law}; "
        f"{fin.statement})",
        tuple(notes), tuple(spec.paper_hypotheses()), rule, rule_st,
        {thr_name: uni_total_thr} | ({"exact_k": int(sum(uni_ks))} if uni_ks is not None else {}),
    )


def _exact_method(method: str) -> str | None:
    """The exact-k method of ``method`` (the registry's ``exact_variant``), None when there is none."""
    m = _REGISTRY.get(method) if isinstance(method, str) else None
    ex = None if m is None else m.exact_variant
    return None if ex is None else ex.name


def _has_exact_statement(method: str, law: str, statement: str) -> bool:
    """An exact-k statement covers the method's exact-k variant in this statement mode: with "bernstein" only a
    matrix-Bernstein one proved for the law (RR-mask: exact-k random, uniform law; exact-k magnitude has none, §9.6)."""
    em = _exact_method(method)
    if em is None:
        return False
    if statement == "bernstein":
        st = _BOUNDS[_REGISTRY[em].apriori]
        return st.bernstein and law in st.laws
    return True


def _resolve_rule(method: str, law: str, statement: str, rule: str | None) -> str:
    thr = _REGISTRY[method].sampling  # "threshold" (magnitude) or "bernoulli" (random)
    if rule is None:
        return "exact_k" if _has_exact_statement(method, law, statement) else thr
    if rule not in RULES:
        raise ProbPruneError(f"unknown rule {rule!r}; use one of {', '.join(RULES)}")
    if rule not in ("exact_k", thr):
        raise ProbPruneError(f"rule {rule!r} does not apply to {method} pruning; use 'exact_k' or '{thr}'")
    return rule


def _threshold(q, a, law: str):
    """The magnitude threshold of fraction q: q a (uniform, §1.5), Phi^-1((1+q)/2) s (Gaussian, §3.12); the law's
    :meth:`~probprune.core.registry.WeightLaw.threshold`."""
    q = np.asarray(q, float)
    return _LAWS[law].threshold(q, a)


@dataclass(frozen=True)
class ExactKCounts:
    """Counts k_i covered by the exact-k statement (THEORY §3.9b): ``eps_achieved`` is the exact-k bound evaluated
    at them (<= eps); ``uniform_counts`` the best common-fraction exact-k allocation."""

    counts: tuple[int, ...]
    eps_achieved: float
    uniform_counts: tuple[int, ...]
    statement: str
    how: str


def exact_k_counts(spec: NetSpec, eps: float, delta: float, method: str, law: str, cand, q_threshold,
                   mode: str = "optimal", statement: str = "best", iters: int = 40) -> ExactKCounts:
    """Invert the exact-k statement (THEORY §3.9b): (i) the largest common fraction u on the candidate layers with
    exact_k_bound(floor(u N_i)) <= eps (bisection on evaluated points); (ii) for modes other than uniform, the
    threshold allocation q scaled, s q with the largest s found by bisection; the allocation with more weights wins.
    Every reported allocation was evaluated by the exact-k bound and is <= eps (fail closed: all zero otherwise)."""
    from probprune.theory.apriori import apriori_bound as _bound

    em = _exact_method(method)
    cand = np.asarray(cand, bool)
    N = np.array([L.N for L in spec.layers], float)
    memo: dict = {}

    def ev(qv):
        key = tuple(int(math.floor(x * n + 1e-9)) for x, n in zip(qv, N))
        if key not in memo:
            if not any(key):
                memo[key] = (0.0, "")
            else:
                r = _bound(spec, np.array(key, float) / N, delta, em, law, statement=statement)
                memo[key] = (float(r.eps), r.statement)
        return key, memo[key]

    def sup(direction, hi):
        lo_s, hi_s = 0.0, hi
        k, (e, _) = ev(direction * hi)
        if e <= eps:
            return hi
        for _ in range(iters):
            mid = 0.5 * (lo_s + hi_s)
            k, (e, _) = ev(direction * mid)
            if e <= eps:
                lo_s = mid
            else:
                hi_s = mid
        return lo_s

    u = sup(cand.astype(float), 1.0)
    uni_key, (uni_eps, uni_st) = ev(cand * u)
    best_key, best_eps, how = uni_key, uni_eps, f"best common fraction {u:.6g}"
    for qt in np.atleast_2d(np.asarray(q_threshold, float)):  # one or several threshold allocations (directions)
        if _mode(mode).per_layer and qt.max() > 0:
            s = sup(qt / qt.max(), 1.0)
            key, (e, _) = ev(qt / qt.max() * s)
            if sum(k * 1 for k in key) > sum(best_key):
                best_key, best_eps, how = key, e, f"threshold allocation scaled to max fraction {s:.6g}"
    if best_eps > eps * (1 + 1e-12):  # fail closed
        best_key, best_eps = tuple(0 for _ in N), 0.0
    st = ev(np.array(best_key) / N)[1][1] or uni_st or f"exact-k ({em})"
    return ExactKCounts(tuple(int(k) for k in best_key), float(best_eps), tuple(int(k) for k in uni_key), st, how)


_FINE_GRID = 1024
_DP_GRID = 256
_MAX_SUBSET_ENUM = 6
_Q_TABLE = 4096


@dataclass(frozen=True)
class _Terms:
    """Tables of the a-priori bound's per-layer terms for one pruned set S (THEORY §3.9, §10.5): the default delta
    split of :func:`probprune.theory.apriori.apriori_bound` for a pruning supported on S, B_i, the log-share
    g_i(q) = ln(1 + eta_i(q)/B_i) on a fine geometric table of q (running maximum, so that inverting it is sound even
    if a term were not monotone), and the log-budget C = ln(1 + eps/(Lip prod B))."""

    S: np.ndarray
    alloc: DeltaAllocation
    B: np.ndarray
    qs: np.ndarray
    g: np.ndarray
    C: float


def _ab(statement: str, *args, **kw):
    """apriori_bound with the statement mode (passed only when not the default, for older bounds modules)."""
    if statement != "best":
        kw["statement"] = statement
    return apriori_bound(*args, **kw)


def _ab_terms(statement: str, *args, **kw):
    """:func:`_ab` for the term tables, which read only B, eta and the allocation: the whole-network minimums
    (S9.8-S9.15, THEORY §9.7), whose eps these callers never read, are not computed."""
    return _ab(statement, *args, whole_network=False, **kw)


def _q_table(hi: float) -> np.ndarray:
    return np.concatenate([[0.0], np.geomspace(1e-7, hi, _Q_TABLE)])


def _default_alloc(spec: NetSpec, delta: float, method: str, law: str, S: np.ndarray, statement: str = "best") -> DeltaAllocation:
    """The split apriori_bound uses by default for fractions supported on S (events of the pruned layers only)."""
    return _ab_terms(statement, spec, np.where(S, 0.5 * _max_q(method), 0.0), delta, method, law).allocation


def _row(alloc: DeltaAllocation, k: int = 0) -> DeltaAllocation:
    """Row k of a batched allocation (arrays (M, depth), n_events (M,))."""
    def r(x):
        x = np.asarray(x)
        return x[k].copy() if x.ndim == 2 else x
    ne = np.asarray(alloc.n_events)
    return DeltaAllocation(alloc.delta, r(alloc.delta_W), r(alloc.delta_E), r(alloc.delta_T),
                           ne[k] if ne.ndim else ne)


def _terms(spec: NetSpec, eps: float, delta: float, method: str, law: str, S: np.ndarray, statement: str = "best") -> _Terms:
    """One vectorised apriori_bound call on the table: eta_i depends only on q_i (and the split), B_i not on q."""
    qs = _q_table(_max_q(method))
    Q = np.where(S[None, :], qs[1:, None], 0.0)  # every row pruned exactly on S: apriori_bound's own default split
    r = _ab_terms(statement, spec, Q, delta, method, law)
    alloc = _row(r.allocation)
    if not all(np.allclose(_row(r.allocation, k).delta_E, alloc.delta_E) for k in (len(Q) // 2, len(Q) - 1)):
        raise ProbPruneError("internal: the default delta split differs between fractions on the same pruned set")
    Bs = np.asarray(r.B, float).reshape(-1, spec.depth)
    B = Bs.max(axis=0)
    if not np.allclose(Bs, B[None, :], rtol=1e-12, atol=0.0):
        raise ProbPruneError("internal: the a-priori norm terms B_i depend on the fractions; the budget inversion "
                             "needs them fixed by the delta split (§3.9)")
    g = np.log1p(np.concatenate([np.zeros((1, spec.depth)), np.asarray(r.eta, float)]) / B)
    g = np.maximum.accumulate(np.where(S[None, :], g, 0.0), axis=0)
    C = math.log1p(eps / (spec.Lip * float(np.prod(B))))
    return _Terms(S, alloc, B, qs, g, C)


def _inv(T: _Terms, x) -> np.ndarray:
    """Per layer the largest table q with g_i(q) <= x_i (0 outside S); x has shape (..., depth)."""
    x = np.asarray(x, float)
    out = np.zeros(x.shape)
    for i in np.flatnonzero(T.S):
        idx = np.searchsorted(T.g[:, i], x[..., i] * (1 + 1e-15), side="right") - 1
        out[..., i] = T.qs[np.clip(idx, 0, len(T.qs) - 1)]
    return out


def _refine_separable(T: _Terms, spec: NetSpec, delta: float, method: str, law: str, statement: str, x,
                      rounds: int = 2) -> np.ndarray:
    """Per layer the largest q with g_i(q) <= x_i, refined between the table point :func:`_inv` returns and the next
    one by ``rounds`` vectorised evaluations of 4096 points each (eta_i depends on q_i only, so all layers refine in
    the same call; bracket ~2.4e-10 relative, as :func:`_uniform_sup`). Every returned q_i was evaluated."""
    x = np.asarray(x, float)
    lo = _inv(T, x)
    for _ in range(rounds):
        j = np.searchsorted(T.qs, lo, side="right")
        hi = np.where(j < len(T.qs), T.qs[np.minimum(j, len(T.qs) - 1)], lo) if _ == 0 else hi_next
        grid = lo[None, :] + (hi - lo)[None, :] * np.linspace(0.0, 1.0, _Q_TABLE + 1)[:, None]
        Q = np.where(T.S[None, :], grid, 0.0)
        r = _ab_terms(statement, spec, Q, delta, method, law, allocation=T.alloc)
        g = np.log1p(np.asarray(r.eta, float).reshape(Q.shape) / T.B[None, :])
        ok = np.where(T.S[None, :], g <= x[None, :] * (1 + 1e-15), True)
        # the largest grid point whose whole prefix is feasible (row 0 = lo is feasible by construction)
        k = np.minimum.accumulate(ok, axis=0).sum(axis=0) - 1
        k = np.clip(k, 0, _Q_TABLE)
        new_lo = grid[k, np.arange(grid.shape[1])]
        hi_next = grid[np.minimum(k + 1, _Q_TABLE), np.arange(grid.shape[1])]
        lo = np.where(T.S, new_lo, 0.0)
    return lo


def _used(T: _Terms, q: np.ndarray) -> np.ndarray:
    """g_i(q_i) for table points q (exact table lookup)."""
    out = np.zeros(q.shape)
    for i in np.flatnonzero(T.S):
        idx = np.searchsorted(T.qs, q[..., i], side="left")
        out[..., i] = T.g[np.clip(idx, 0, len(T.qs) - 1), i]
    return out


def _uniform_sup(spec, eps, delta, method, law, cand, alloc, statement: str = "best", rounds: int = 2) -> float:
    """The largest common fraction q on the candidate layers with apriori_bound <= eps (the full bound, including
    any non-separable statement it takes the minimum with): table, then ``rounds`` refinements with 4096 points
    (bracket 0.4% x 4096^-2 ~ 2.4e-10 relative); each round is one vectorised call."""
    qs = _q_table(_max_q(method))
    for _ in range(rounds + 1):
        Q = np.where(cand[None, :], qs[:, None], 0.0)
        e = np.asarray(_ab(statement, spec, Q, delta, method, law, allocation=alloc).eps, float)
        ok = np.flatnonzero(e <= eps)
        j = int(ok.max()) if len(ok) else 0
        lo = qs[j] if len(ok) else 0.0
        if j + 1 >= len(qs):
            return _extend_small_batches(spec, eps, delta, method, law, cand, alloc, statement, float(lo))
        qs = np.linspace(lo, qs[j + 1], _Q_TABLE + 1)
    return _extend_small_batches(spec, eps, delta, method, law, cand, alloc, statement, float(lo))


def _extend_small_batches(spec, eps, delta, method, law, cand, alloc, statement: str, lo: float,
                          rounds: int = 4) -> float:
    """Where apriori_bound has a candidate it evaluates only on small batches (S9.13, THEORY §9.13: linear dense FCNs,
    threshold / Bernoulli / rescaled random; skipped above ``TRACE_BATCH_MAX`` fraction vectors per call), search
    above ``lo`` with calls of at most that many points: a geometric table up to the method's maximum, then
    ``rounds - 1`` linear refinements between the last feasible point and the next (bracket ~ 255^-rounds). Every
    returned q was evaluated by the full bound (<= eps); otherwise ``lo`` is returned unchanged."""
    from probprune.theory.apriori import _is_linear_fcn
    from probprune.theory.trace_moments import TRACE_BATCH_MAX

    m = _REGISTRY.get(method) if isinstance(method, str) else None
    if statement == "bernstein" or m is None or m.entry is None or not _is_linear_fcn(spec):
        return lo
    hi = _max_q(method)
    if lo >= hi:
        return lo
    n = TRACE_BATCH_MAX - 1
    qs = np.concatenate([[lo], np.geomspace(max(lo, 1e-7), hi, n)])
    qs = np.maximum.accumulate(qs)
    for _ in range(rounds):
        Q = np.where(cand[None, :], qs[:, None], 0.0)
        e = np.asarray(_ab(statement, spec, Q, delta, method, law, allocation=alloc).eps, float)
        ok = np.flatnonzero(e <= eps)
        if not len(ok):
            return lo
        j = int(ok.max())
        lo = max(lo, float(qs[j]))
        if j + 1 >= len(qs):
            return lo
        qs = np.linspace(qs[j], qs[j + 1], n + 1)
    return lo


def _solve_pruned_set(spec: NetSpec, eps: float, delta: float, method: str, law: str, S: np.ndarray, N: np.ndarray, statement: str = "best",
                      grid: int = _FINE_GRID, polish_rounds: int = 3):
    """max sum_i N_i q_i s.t. sum_{i in S} g_i(q_i) <= C, delta split over the events of S only (THEORY §3.9, §10.5):
    a share DP (256 shares) with table inversion, the unused log-budget spent, pairwise exchange (the split of
    every pair's joint share re-optimised on a fine 1-D grid), and a last refinement between table points with exact
    evaluations (:func:`_refine`, for the winning set only). Returns (q, tables, value)."""
    T = _terms(spec, eps, delta, method, law, S, statement)
    idx = np.flatnonzero(S)
    if len(idx) == 1:
        x = np.where(S, T.C, 0.0)
    else:
        G = _DP_GRID  # coarse DP (O(l G^2)); the pairwise exchange below refines on ``grid`` points
        xs = np.linspace(0.0, T.C, G + 1)
        qgrid = _inv(T, np.broadcast_to(xs[:, None], (G + 1, spec.depth)))
        k = _dp_allocate((N[None, :] * qgrid).T)
        x = np.where(S, xs[k], 0.0)
        for _ in range(polish_rounds):
            x = np.where(S, _used(T, _inv(T, x)), 0.0)
            slack = T.C - x.sum()
            if slack > 0:
                tries = x[None, :] + slack * np.eye(spec.depth)[idx]
                x = tries[int(np.argmax((_inv(T, tries) * N).sum(1)))]
            for a in range(len(idx)):
                for b in range(a + 1, len(idx)):
                    i, j = idx[a], idx[b]
                    tot = x[i] + x[j]
                    t = np.linspace(0.0, tot, grid + 1)
                    cx = np.broadcast_to(x, (grid + 1, spec.depth)).copy()
                    cx[:, i], cx[:, j] = t, tot - t
                    x = cx[int(np.argmax((_inv(T, cx) * N).sum(1)))]
    q = _inv(T, x)
    return q, T, float(np.sum(q * N))


def _refine(spec, delta, method, law, T: _Terms, q: np.ndarray, N: np.ndarray, statement: str = "best"):
    """Refine between table points with exact evaluations: the remaining log-budget goes to the layer where it buys
    the most weights (65 points between q_i and the next table point, one vectorised apriori_bound call)."""
    idx = np.flatnonzero(T.S)
    used = _used(T, q)
    slack = T.C - used.sum()
    if slack > 0:
        nxt = np.array([T.qs[min(np.searchsorted(T.qs, q[i], side="right"), len(T.qs) - 1)] for i in range(spec.depth)])
        R = np.where(T.S[None, :], q[None, :] + np.linspace(0.0, 1.0, 65)[:, None] * (nxt - q)[None, :], 0.0)
        r = _ab_terms(statement, spec, R, delta, method, law, allocation=T.alloc)
        gR = np.log1p(np.asarray(r.eta, float) / T.B)
        best, gain = None, 0.0
        for i in idx:
            ok = np.flatnonzero(gR[:, i] <= used[i] + slack)
            if len(ok) and (R[ok.max(), i] - q[i]) * N[i] > gain:
                best, gain = (i, R[ok.max(), i]), (R[ok.max(), i] - q[i]) * N[i]
        if best is not None:
            q = q.copy()
            q[best[0]] = best[1]
    return q


def optimal_allocation(spec: NetSpec, eps: float, delta: float, method: str, law: str, cand: np.ndarray,
                       statement: str = "best", directions: list | None = None):
    """The ``optimal`` mode of :func:`max_prunable` (THEORY §3.9, §10.5 [D]): the best over the pruned sets S of the
    candidate layers (all of them when there are at most 6 candidates; otherwise the candidates, then repeatedly the
    layers the optimum actually prunes) of :func:`_solve_pruned_set`, whose delta split covers the E events of S only.
    Returns (q, allocation)."""
    cand = np.asarray(cand, bool)
    N = np.array([L.N for L in spec.layers], float)
    ci = np.flatnonzero(cand)
    if len(ci) <= _MAX_SUBSET_ENUM:
        sols = []
        for r in range(1, len(ci) + 1):
            for comb in itertools.combinations(ci, r):
                S = np.zeros(spec.depth, bool)
                S[list(comb)] = True
                sols.append(_solve_pruned_set(spec, eps, delta, method, law, S, N, statement=statement))
    else:
        sols = [_solve_pruned_set(spec, eps, delta, method, law, cand, N, statement=statement)]
        while True:
            S = sols[-1][0] > 0
            if not S.any() or np.array_equal(S, sols[-1][1].S):
                break
            sols.append(_solve_pruned_set(spec, eps, delta, method, law, S, N, statement=statement))
    q, T, _ = max(sols, key=lambda s: s[2])
    if np.any(q > 0):
        q = _refine(spec, delta, method, law, T, q, N, statement)
    q_lm = _lemma_moment_allocation(spec, eps, delta, method, law, cand, statement)
    if directions is not None:  # both optima: the exact-k inversion scales each (either may suit it better)
        directions.extend([q, q_lm])
    if q_lm is not None and np.sum(q_lm * N) > np.sum(q * N):
        return q_lm, _default_alloc(spec, delta, method, law, q_lm > 0, statement)
    if not np.any(q > 0):  # nothing prunable: report the all-candidates split
        return q, _default_alloc(spec, delta, method, law, cand, statement)
    return q, T.alloc


def _lemma_moment_allocation(spec: NetSpec, eps: float, delta: float, method: str, law: str, cand: np.ndarray,
                             statement: str = "best") -> np.ndarray | None:
    """The per-layer fractions that maximise the pruned count under S9.15 alone (THEORY §9.15, §10.5): with
    M_p(What) = m_p(W) the bound is x_p = Lip delta^(-1/(2p)) prod_j m_p(W_j) sum_i r_i(q_i), r_i = m_p(E_i)/m_p(W_i)
    nondecreasing, so for each p the allocation is a separable knapsack sum_i r_i(q_i) <= C_p, solved on the q table
    by a Lagrangian bisection and one greedy raise per layer. The best p's allocation is returned only if the full
    :func:`apriori_bound` at it is <= eps (fail closed; None otherwise or where S9.15 does not apply)."""
    from probprune.theory.lemma_moments import LEMMA_METHODS, LEMMA_ORDERS, layer_moment_norms

    m = _REGISTRY.get(method) if isinstance(method, str) else None
    # rescaled random: its What factor grows with q (not the separable form); S9.15 needs dense layers
    if statement == "bernstein" or method not in LEMMA_METHODS or m is None or m.rescaled or not spec.is_fcn:
        return None
    N = np.array([L.N for L in spec.layers], float)
    qs = _q_table(_max_q(method))
    dims = spec.widths
    best, best_total = None, -1.0
    norms = [layer_moment_norms(dims[i + 1], dims[i], method, law, L.half_width, qs)
             for i, L in enumerate(spec.layers)]
    for p in LEMMA_ORDERS:
        mW, r = [], []
        for i in range(spec.depth):
            nm = norms[i][p]
            mW.append(float(nm["W"][0]))
            r.append(np.maximum.accumulate(nm["E"] / nm["W"]))  # nondecreasing already; the running max keeps it so
        C = eps * delta ** (1.0 / (2 * p)) / (spec.Lip * float(np.prod(mW))) * (1 - 1e-9)
        if not np.isfinite(C) or C <= 0:
            continue

        def pick(lam):
            return np.array([int(np.argmax(N[i] * qs - lam * r[i])) if cand[i] else 0 for i in range(spec.depth)])

        def used(idx):
            return sum(r[i][j] for i, j in enumerate(idx))

        lo, hi = -30.0, 30.0  # log10 of the multiplier
        if used(pick(10.0**lo)) <= C:
            idx = pick(10.0**lo)
        else:
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if used(pick(10.0**mid)) <= C else (mid, hi)
            idx = pick(10.0**hi)
        if used(idx) > C:
            continue
        for i in np.argsort(-N):  # greedy: raise each layer as far as the slack allows
            if not cand[i]:
                continue
            rest = C - (used(idx) - r[i][idx[i]])
            j = int(np.searchsorted(r[i], rest, side="right")) - 1
            idx[i] = max(idx[i], min(j, len(qs) - 1))
        q = np.array([qs[j] for j in idx])
        if used(idx) <= C and float(np.sum(q * N)) > best_total:
            best, best_total = q, float(np.sum(q * N))
    if best is None or not np.any(best > 0):
        return None
    if float(_ab(statement, spec, best, delta, method, law).eps) > eps:
        return None
    return best


# --------------------------------------------------------------------------------------------- width inverse
@dataclass(frozen=True)
class WidthResult:
    """Smallest hidden width d at which the explicit bound guarantees (eps, delta) for the pruning schedule
    q(d) = q0 (d/d_ref)^(-gamma) in every layer. ``bounds`` lists (width, bound) pairs scanned."""

    width: int | None
    eps: float
    delta: float
    method: str
    schedule: str
    scanned: tuple[tuple[int, float], ...]
    note: str


def min_width(
    eps: float,
    delta: float,
    fraction: float,
    d0: int,
    dl: int,
    depth: int,
    method: str = "magnitude",
    K: float = 1.0,
    activation_name: str = "relu",
    gamma: float = 0.0,
    d_ref: int = 100,
    d_max: int = 1 << 20,
) -> WidthResult:
    """The inverse in width (THEORY §3.9-3.10 [D]): the smallest hidden width d (all l-1 hidden layers of width d,
    input d0, output dl, paper law with constant K) with apriori_bound(q(d)) <= eps, q(d) = fraction (d/d_ref)^-gamma.

    Note: at a fixed fraction (gamma = 0) the bound tends to c_arch-type constants times (ln n)^(l/2) (§3.10), so it
    first falls (the R·lam terms vanish) and later grows slowly; the feasible set of widths can be an interval. The
    scan reports the first feasible width on a geometric grid refined to the integer."""
    eps = float(check_eps(eps))
    delta = check_delta(delta)
    check_fraction(fraction)
    if depth < 1:
        raise ProbPruneError("depth must be >= 1")

    def bound_at(d: int) -> float:
        widths = [d0] + [d] * (depth - 1) + [dl]
        q = min(1.0, fraction * (d / d_ref) ** (-gamma)) if gamma else fraction
        return float(apriori_bound(fcn_spec(widths, activation_name, K), q, delta, method).eps)

    scanned = []
    prev = 1
    d = 1
    found = None
    while d <= d_max:
        b = bound_at(d)
        scanned.append((d, b))
        if b <= eps:
            found = d
            break
        prev = d
        d = max(d + 1, int(d * 1.25))
    if found is None:
        return WidthResult(None, eps, delta, method, f"q(d) = {fraction} (d/{d_ref})^-{gamma}", tuple(scanned),
                           f"no width up to {d_max} satisfies the bound")
    lo, hi = prev, found  # bound(lo) > eps >= bound(hi); bisect assuming local monotonicity, then verify
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bound_at(mid) <= eps:
            hi = mid
        else:
            lo = mid
    return WidthResult(hi, eps, delta, method, f"q(d) = {fraction} (d/{d_ref})^-{gamma}", tuple(scanned),
                       "first feasible width on a geometric scan, refined by bisection")


# --------------------------------------------------------------------------------------------- trained networks
def magnitude_prune_count(W: np.ndarray, k: int) -> np.ndarray:
    """Layer-wise exact-k magnitude pruning of one tensor: zero the k smallest |w|, ties broken by flat index
    (THEORY §1.5 / §5). Returns the pruned weights (``pruning.sampling.magnitude_pruned``, the one exact-k rule)."""
    from probprune.pruning.sampling import magnitude_pruned

    return magnitude_pruned(W, k)
