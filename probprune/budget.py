"""The budget: how many weights may be pruned, per layer, for an error budget (eps, delta) (THEORY §3.9 [D]).

For a network drawn from the weight law (a spec) the a-priori bound of :mod:`probprune.bounds` is inverted; for a
given trained network the certificates of :mod:`probprune.certificates` are inverted (deterministic Cert-D for
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
Counts: ``max_prunable = floor(q_i N_i)`` is the expected count under the threshold rule and R-Bern; the realised
count is Binomial(N_i, q_i).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .bounds import (
    METHODS,
    DeltaAllocation,
    apriori_bound,
    check_spec_for_apriori,
    error_bound,
    norm_bound,
)
from .errors import ProbPruneError, check_delta, check_eps, check_fraction
from .networks import NetSpec, fcn_spec

MODES = ("optimal", "uniform", "equal_share")
_GRID = 512


@dataclass(frozen=True)
class LayerBudget:
    name: str
    n_weights: int
    fraction: float
    max_prunable: int
    eta: float | None = None
    B: float | None = None


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
        return {
            "eps": self.eps,
            "delta": self.delta,
            "method": self.method,
            "mode": self.mode,
            "source": self.source,
            "statement": self.statement,
            "layers": [
                {"name": L.name, "n_weights": L.n_weights, "max_prunable": L.max_prunable, "fraction": L.fraction,
                 "eta": L.eta, "B": L.B}
                for L in self.layers
            ],
            "total_prunable": self.total_prunable,
            "total_weights": self.total_weights,
            "total_fraction": self.total_prunable / self.total_weights,
            "eps_achieved": self.eps_achieved,
            "uniform": {"fraction": self.uniform_fraction, "total_prunable": self.uniform_total},
            "assumptions": list(self.assumptions),
            "paper_hypotheses_violated": list(self.paper_hypotheses_violated),
        }


# --------------------------------------------------------------------------------------------- generic inverses
def _bisect_sup(pred: Callable[[np.ndarray], np.ndarray], shape, hi: float = 1.0, iters: int = 60) -> np.ndarray:
    """Vectorised sup{q in [0, hi] : pred(q)} for predicates monotone (true then false) in q; 0 if pred fails on
    (0, hi]. Tolerance hi * 2^-iters (< 1e-12 at 60 iterations with hi <= 1)."""
    lo = np.zeros(shape)
    h = np.full(shape, hi)
    ok_hi = pred(h)
    for _ in range(iters):
        mid = 0.5 * (lo + h)
        ok = pred(mid)
        lo = np.where(ok, mid, lo)
        h = np.where(ok, h, mid)
    return np.where(ok_hi, hi, lo)


def _max_q(method: str) -> float:
    return 1.0 - 1e-9 if method == "random_rescaled" else 1.0


def invert_eta(spec: NetSpec, alloc: DeltaAllocation, method: str, law: str, targets: np.ndarray) -> np.ndarray:
    """Per layer, the largest q with eta_i(q) <= target_i (THEORY §3.9; vectorised bisection). ``targets`` has
    shape (..., depth)."""
    targets = np.asarray(targets, float)

    def pred(q):
        eta = error_bound(spec, q, np.broadcast_to(alloc.delta_E, q.shape), method, law,
                          delta_T=np.broadcast_to(alloc.delta_T, q.shape))
        return eta <= targets

    return _bisect_sup(pred, targets.shape, hi=_max_q(method))


def equal_share_closed_form(t, a, m, lam, method: str):
    """Closed forms of THEORY §3.9 for the uniform law (t = target eta_i/sqrt(r_i)):
    RR: p = t(3t - 2 a lam)/(2 m a^2 lam), 0 if t <= 2 a lam/3; magnitude: the unique positive root q of
    (2 lam m a^2/3) q^3 + (2 lam a t/3) q - t^2 = 0 (Cardano; one real root since the cubic is increasing). Clipped
    to [0, 1]."""
    t, a, m, lam = (np.asarray(x, float) for x in (t, a, m, lam))
    if method == "random":
        p = t * (3 * t - 2 * a * lam) / (2 * m * a * a * lam)
        return np.clip(np.where(t <= 2 * a * lam / 3, 0.0, p), 0.0, 1.0)
    if method == "magnitude":
        A = 2 * lam * m * a * a / 3
        Bc = 2 * lam * a * t / 3
        # q^3 + P q + Q = 0 with P = Bc/A > 0, Q = -t^2/A
        P, Q = Bc / A, -t * t / A
        disc = np.sqrt((Q / 2) ** 2 + (P / 3) ** 3)
        q = np.cbrt(-Q / 2 + disc) + np.cbrt(-Q / 2 - disc)
        return np.clip(q, 0.0, 1.0)
    raise ProbPruneError(f"no closed form for method {method!r}")


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
) -> BudgetResult:
    """Largest prunable fraction per layer such that the a-priori bound (THEORY §3.4/§3.6/§3.12) is <= eps with
    probability >= 1 - delta (THEORY §3.9). ``prunable`` restricts pruning to some layers (names or indices)."""
    eps = float(check_eps(eps))
    delta = check_delta(delta)
    if method not in METHODS:
        raise ProbPruneError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if mode not in MODES:
        raise ProbPruneError(f"unknown mode {mode!r}; use one of {', '.join(MODES)}")
    notes = check_spec_for_apriori(spec)
    cand = _candidates(spec, prunable)
    truncation = law == "gaussian" and method != "magnitude"
    alloc = DeltaAllocation.equal_split(delta, cand, truncation=truncation)
    B = norm_bound(spec, alloc.delta_W, law)
    Lip = spec.Lip
    C = math.log1p(eps / (Lip * float(np.prod(B))))
    N = np.array([L.N for L in spec.layers], float)
    hi = _max_q(method)

    # uniform: largest common q on the candidate layers
    def pred_uniform(qs):
        Q = np.where(cand[None, :], qs[:, None], 0.0)
        eta = error_bound(spec, Q, np.broadcast_to(alloc.delta_E, Q.shape), method, law,
                          delta_T=np.broadcast_to(alloc.delta_T, Q.shape))
        return np.sum(np.log1p(eta / B), axis=-1) <= C

    q_uni = float(_bisect_sup(lambda x: pred_uniform(np.atleast_1d(x)), (1,), hi=hi)[0])
    q_uniform = np.where(cand, q_uni, 0.0)

    if mode == "uniform":
        q = q_uniform
    elif mode == "equal_share":
        rho = math.expm1(C / cand.sum())
        targets = np.where(cand, rho * B, 0.0)
        q = np.where(cand, invert_eta(spec, alloc, method, law, targets), 0.0)
    else:
        q, alloc, B = optimal_allocation(spec, eps, delta, method, law, cand)
        if np.sum(q * N) < np.sum(q_uniform * N):  # the grid can only lose to the exact uniform optimum by rounding
            q = q_uniform
            alloc = DeltaAllocation.equal_split(delta, cand, truncation=truncation)
            B = norm_bound(spec, alloc.delta_W, law)
    eps_ach = apriori_bound(spec, q, delta, method, law, allocation=alloc).eps
    if eps_ach > eps * (1 + 1e-9):  # never report an allocation that violates the budget
        raise RuntimeError(f"internal error: allocation bound {eps_ach} exceeds eps {eps}")
    res_eta = error_bound(spec, q, alloc.delta_E, method, law, delta_T=alloc.delta_T)
    layers = tuple(
        LayerBudget(L.name, L.N, float(qi), int(math.floor(qi * L.N + 1e-9)), float(e), float(b))
        for L, qi, e, b in zip(spec.layers, q, res_eta, B)
    )
    notes.append(f"delta split equally over {int(alloc.n_events)} events (the W events of every layer and the E events "
                 f"of the {int(np.sum(alloc.delta_E > 0))} pruned layers), fixed before inversion (§3.8-3.9)")
    notes.append("max_prunable = floor(q_i N_i), the expected count; the realised count is Binomial(N_i, q_i)")
    return BudgetResult(
        eps, delta, method, mode, layers, float(eps_ach), q_uni,
        int(sum(math.floor(q_uni * L.N + 1e-9) for L, c in zip(spec.layers, cand) if c)),
        "a-priori", f"THEORY.md §3.9 inversion of {apriori_bound.__module__}.apriori_bound ({method}, {law})",
        tuple(notes), tuple(spec.paper_hypotheses()),
    )


_FINE_GRID = 2048
_MAX_SUBSET_ENUM = 6


def _solve_pruned_set(spec: NetSpec, eps: float, delta: float, method: str, law: str, S: np.ndarray, N: np.ndarray,
                      grid: int = _FINE_GRID, polish_rounds: int = 3):
    """max sum_i N_i q_i s.t. sum_{i in S} ln(1 + eta_i(q_i)/B_i) <= C with the delta split over the events of S only
    (THEORY §3.9, §10.5). Fine share DP (``grid`` shares) for the first layers, exact inversion (bisection to 1e-12) of
    every share, the unused log-budget spent, then pairwise exchange: for every pair (i, j) the split of their joint
    share is re-optimised on a fine 1-D grid with exact inversion. Returns (q, allocation, B, value)."""
    truncation = law == "gaussian" and method != "magnitude"
    alloc = DeltaAllocation.equal_split(delta, S, truncation=truncation)
    B = norm_bound(spec, alloc.delta_W, law)
    C = math.log1p(eps / (spec.Lip * float(np.prod(B))))
    idx = np.flatnonzero(S)

    def inv(shares: np.ndarray) -> np.ndarray:  # shares (..., depth) -> q (..., depth), exact per-layer inversion
        t = np.where(S, B * np.expm1(np.maximum(shares, 0.0)), 0.0)
        return np.where(S, invert_eta(spec, alloc, method, law, t), 0.0)

    if len(idx) == 1:  # one pruned layer: the whole log-budget, inverted exactly
        q = inv(np.where(S, C, 0.0))
        return q, alloc, B, float(np.sum(q * N))
    xs = np.linspace(0.0, C, grid + 1)
    qgrid = inv(np.broadcast_to(xs[:, None], (grid + 1, spec.depth)))
    k = _dp_allocate((N[None, :] * qgrid).T)
    x = np.where(S, xs[k], 0.0)
    # spend what the grid left: the whole remaining log-budget to the layer where it buys the most weights
    for _ in range(polish_rounds + 1):
        q = inv(x)
        eta = error_bound(spec, q, alloc.delta_E, method, law, delta_T=alloc.delta_T)
        x = np.where(S, np.log1p(eta / B), 0.0)  # the share actually used (<= the granted share)
        slack = C - x.sum()
        if slack > 1e-15:
            tries = x[None, :] + slack * np.eye(spec.depth)
            qt = inv(tries)
            gain = np.where(S, (qt * N).sum(1), -np.inf)
            j = int(np.argmax(gain))
            x = tries[j]
        if len(idx) < 2:
            continue
        for a in range(len(idx)):
            for b in range(a + 1, len(idx)):
                i, j = idx[a], idx[b]
                tot = x[i] + x[j]
                t = np.linspace(0.0, tot, grid + 1)
                cand_x = np.broadcast_to(x, (grid + 1, spec.depth)).copy()
                cand_x[:, i] = t
                cand_x[:, j] = tot - t
                val = (inv(cand_x) * N).sum(1)
                x = cand_x[int(np.argmax(val))]
    q = inv(x)
    return q, alloc, B, float(np.sum(q * N))


def optimal_allocation(spec: NetSpec, eps: float, delta: float, method: str, law: str, cand: np.ndarray):
    """The ``optimal`` mode of :func:`max_prunable` (THEORY §3.9, §10.5 [D]): the best over the pruned sets S subset of the
    candidate layers (all of them when there are at most 6 candidates; otherwise the candidates, then repeatedly the
    layers the optimum actually prunes) of :func:`_solve_pruned_set`, whose delta split covers the E events of S only.
    Returns (q, allocation, B)."""
    cand = np.asarray(cand, bool)
    N = np.array([L.N for L in spec.layers], float)
    ci = np.flatnonzero(cand)
    if len(ci) <= _MAX_SUBSET_ENUM:
        subsets = []
        for r in range(1, len(ci) + 1):
            for comb in itertools.combinations(ci, r):
                S = np.zeros(spec.depth, bool)
                S[list(comb)] = True
                subsets.append(S)
        sols = [_solve_pruned_set(spec, eps, delta, method, law, S, N) for S in subsets]
    else:
        sols = [_solve_pruned_set(spec, eps, delta, method, law, cand, N)]
        while True:
            S = sols[-1][0] > 0
            if not S.any() or np.array_equal(S, sols[-1][1].delta_E > 0):
                break
            sols.append(_solve_pruned_set(spec, eps, delta, method, law, S, N))
    q, alloc, B, _ = max(sols, key=lambda s: s[3])
    if not np.any(q > 0):  # nothing prunable: report the all-candidates split
        truncation = law == "gaussian" and method != "magnitude"
        alloc = DeltaAllocation.equal_split(delta, cand, truncation=truncation)
        B = norm_bound(spec, alloc.delta_W, law)
    return q, alloc, B


def _spend_slack(spec, alloc, method, law, B, C, q, cand, N, rounds: int = 3):
    """Give the log-budget left unused by the grid to the layer where it buys the most weights."""
    for _ in range(rounds):
        eta = error_bound(spec, q, alloc.delta_E, method, law, delta_T=alloc.delta_T)
        used = np.log1p(eta / B)
        slack = C - used.sum()
        if slack <= 1e-15:
            break
        tgt = B * np.expm1(used + slack)
        cand_q = invert_eta(spec, alloc, method, law, np.where(cand, tgt, 0.0))
        gain = np.where(cand, (cand_q - q) * N, -np.inf)
        i = int(np.argmax(gain))
        if gain[i] <= 0:
            break
        q = q.copy()
        q[i] = cand_q[i]
    return q


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
    (THEORY §1.5 / §5). Returns the pruned weights."""
    from .pruning.sampling import exact_k_prune_mask  # the one exact-k rule

    flat = np.asarray(W, float).ravel()
    out = flat.copy()
    out[exact_k_prune_mask(np.abs(flat), k)] = 0.0
    return out.reshape(np.shape(W))



# the certified budget of a given network lives in probprune.budget_certified (THEORY §11.3); re-exported here
from .budget_certified import certified_budget  # noqa: E402,F401
