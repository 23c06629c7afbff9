"""S9.15 (THEORY §9.15): Lemma A's sum bounded in one event by the exact Schatten moments of each layer's matrices.

For a bias-free dense network with activations satisfying (H-act) (ReLU included), Lemma A (§3.1) bounds
err <= Lip sum_i ||E_i|| prod_{j<i} ||W_j|| prod_{j>i} ||What_j|| (A-fwd; A-bwd swaps W and What). Every summand is a
product of norms of matrices from *different* layers, hence of independent random variables, so by Minkowski's
inequality ||A-fwd||_{L^r} <= Lip sum_i ||E_i||_r prod ||W_j||_r prod ||What_j||_r (r = 2p), and each factor is at most
(E tr((X X^T)^p))^(1/(2p)) (s_1^(2p) <= tr). For a matrix with i.i.d. symmetric entries that trace moment is an
exact polynomial in the entry moments (:func:`matrix_trace_moment`); Markov's inequality on A-fwd^(2p) then gives
one threshold at the full delta: no union over 2l - 1 norm events.

The trace moment of one n x m matrix: tr((X X^T)^p) = sum over row indices i_1..i_p and column indices j_1..j_p of
prod_s X[i_s, j_s] X[i_(s+1), j_s] (cyclic). Grouping the index tuples by their equality patterns (a set partition
pi of the p row slots with r blocks, rho of the p column slots with c blocks; (n)_r (m)_c tuples each), the
expectation of a tuple is prod over its distinct positions of E x^(multiplicity), zero when a multiplicity is odd
(symmetric entries). :func:`walk_table` tabulates, once per p, the number of pattern pairs per
(r, c, sorted multiplicities).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.theory.trace_moments import entry_even_moments, set_partitions

#: orders p of S9.15 (the table at p = 6 has 44 classes from Bell(6)^2 = 41,209 pattern pairs, built in ~0.5 s once)
LEMMA_ORDERS = (1, 2, 3, 4, 5, 6)
#: methods whose pruned matrices keep i.i.d. symmetric entries (threshold rule, Bernoulli masks)
LEMMA_METHODS = ("magnitude", "random", "random_rescaled")


@lru_cache(maxsize=None)
def walk_table(p: int) -> tuple:
    """((r, c, multiplicities), count) for the closed walks of tr((X X^T)^p) (THEORY §9.15 step 3): count = number of
    pairs (row pattern with r blocks, column pattern with c blocks) whose 2p positions (pi(s), rho(s)) and
    (pi(s+1), rho(s)) have the given sorted multiplicities, all even (the others have expectation 0)."""
    if p < 1:
        raise ProbPruneError(f"S9.15 needs p >= 1, got {p}")
    parts = set_partitions(p)
    table: Counter = Counter()
    for pi in parts:
        r = max(pi) + 1
        for rho in parts:
            mult: Counter = Counter()
            for s in range(p):
                mult[(pi[s], rho[s])] += 1
                mult[(pi[(s + 1) % p], rho[s])] += 1
            ms = tuple(sorted(mult.values()))
            if all(m % 2 == 0 for m in ms):
                table[(r, max(rho) + 1, ms)] += 1
    return tuple(sorted(table.items()))


def _falling(d: int, s: int) -> float:
    out = 1.0
    for i in range(s):
        out *= max(d - i, 0)
    return out


@lru_cache(maxsize=None)
def _class_arrays(p: int):
    """walk_table(p) as arrays: counts, r, c and the exponent of each moment E x^(2j), j = 1..p, per class."""
    rows = walk_table(p)
    counts = np.array([cnt for _, cnt in rows], float)
    r = np.array([k[0] for k, _ in rows])
    c = np.array([k[1] for k, _ in rows])
    expo = np.zeros((len(rows), p))
    for i, ((_, _, ms), _) in enumerate(rows):
        for m in ms:
            expo[i, m // 2 - 1] += 1
    return counts, r, c, expo


@lru_cache(maxsize=1024)
def _coefficients(n_rows: int, n_cols: int, p: int) -> np.ndarray:
    counts, r, c, _ = _class_arrays(p)
    return counts * np.array([_falling(n_rows, ri) * _falling(n_cols, ci) for ri, ci in zip(r, c)])


def matrix_trace_moment(n_rows: int, n_cols: int, even_moments, p: int):
    """E tr((X X^T)^p) exactly for an n_rows x n_cols matrix with i.i.d. symmetric entries (THEORY §9.15 step 3).
    ``even_moments[j - 1]`` = E x^(2j) for j = 1..p (scalars or broadcasting arrays; sympy symbols pass through)."""
    if len(even_moments) < p:
        raise ProbPruneError(f"S9.15 at p={p} needs the entry moments up to order {2 * p}")
    coef = _coefficients(int(n_rows), int(n_cols), p)
    _, _, _, expo = _class_arrays(p)
    if any(hasattr(m, "free_symbols") for m in even_moments[:p]):  # symbolic (proofs_check)
        total = 0
        for k, e in zip(coef, expo):
            term = int(k) if float(k).is_integer() else k
            for j, ej in enumerate(e):
                term = term * even_moments[j] ** int(ej)
            total = total + term
        return total
    mom = np.stack(np.broadcast_arrays(*[np.asarray(m, float) for m in even_moments[:p]]))  # (p, *batch)
    out = _trace_moment_rows(int(n_rows), int(n_cols), mom.reshape(p, -1), p).reshape(mom.shape[1:])
    return float(out) if np.ndim(out) == 0 else out


def _trace_moment_rows(n_rows: int, n_cols: int, mom: np.ndarray, p: int) -> np.ndarray:
    """matrix_trace_moment for moments given as a (p, N) float array (row j - 1 = E x^(2j)); returns (N,)."""
    coef = _coefficients(n_rows, n_cols, p)
    expo_f = _class_arrays(p)[3]
    mom = mom[:p]
    # prod_j mom_j^e_j per class through logs (the moments are > 0; an exact 0 moment zeroes its classes)
    with np.errstate(divide="ignore"):
        logs = np.log(mom)
    pos = mom > 0.0
    terms = np.exp(expo_f @ np.where(pos, logs, 0.0))  # (classes, N)
    if not pos.all():
        terms = np.where((expo_f @ (~pos).astype(float)) > 0, 0.0, terms)
    return coef @ terms


def _moment_norms(n_rows: int, n_cols: int, moments: dict, keys, p: int, shape) -> dict:
    """m_p(X) = (E tr((XX^T)^p))^(1/(2p)) for the matrices ``keys`` of one layer, whose entry moments ``moments[key]``
    (E x^(2j), j = 1..>= p, broadcasting to ``shape``) come from :func:`layer_entry_moments`: one table contraction
    for all of them."""
    nb = int(np.prod(shape)) if shape else 1
    rows = np.concatenate([np.stack([np.broadcast_to(np.asarray(x, float), shape).reshape(-1)
                                     for x in moments[key][:p]]) for key in keys], axis=1)
    vals = _trace_moment_rows(int(n_rows), int(n_cols), rows, p) ** (1.0 / (2 * p))
    return {key: vals[i * nb:(i + 1) * nb].reshape(shape) for i, key in enumerate(keys)}


def layer_entry_moments(method: str, law: str, a, q, p: int) -> dict:
    """Even moments E x^(2j), j = 1..p, of one entry of W, What and E = W - What (THEORY §9.15 hypotheses):
    threshold magnitude and Bernoulli random from S9.13's table (:func:`entry_even_moments`, disjoint supports);
    rescaled random (What = W (1 - B)/(1 - q)): E what^(2j) = (1 - q)^(1 - 2j) E w^(2j),
    E e^(2j) = E w^(2j) (q + (1 - q) (q / (1 - q))^(2j)). Returns {"W": [...], "What": [...], "E": [...]}."""
    if method not in LEMMA_METHODS:
        raise ProbPruneError(f"S9.15 covers threshold magnitude, Bernoulli random and rescaled random pruning "
                             f"(i.i.d. entries), not {method!r}")
    base = "random" if method == "random_rescaled" else method
    em = entry_even_moments(base, law, a, q, p)
    w = [em[2 * j] + em[2 * j + 1] for j in range(p)]
    if method != "random_rescaled":
        return {"W": w, "What": [em[2 * j] for j in range(p)], "E": [em[2 * j + 1] for j in range(p)]}
    q = np.asarray(q, float)
    what = [w[j] * (1.0 - q) ** (-(2 * j + 1)) for j in range(p)]
    e = [w[j] * (q + (1.0 - q) * (q / (1.0 - q)) ** (2 * (j + 1))) for j in range(p)]
    return {"W": w, "What": what, "E": e}


@dataclass(frozen=True)
class LemmaMomentBound:
    """S9.15's threshold (THEORY §9.15): P(err > eps) <= delta. ``per_order`` = {p: (x_fwd, x_bwd)}; ``order`` and
    ``direction`` say which gave eps; ``norms`` = {p: {"W", "E" (and "What" for rescaled random): per-layer (E tr((XX^T)^p))^(1/(2p))}}."""

    eps: object
    order: object
    direction: object
    per_order: dict
    norms: dict
    statement: str = "THEORY §9.15 S9.15 Lemma A in one event by exact layer trace moments"


def unroll(e, before, after):
    """Lemma A's sum (THEORY §3.1): sum_i e_i prod_{j<i} before_j prod_{j>i} after_j, last axis = layer, vectorised
    over leading axes (the one implementation; ``theory.apriori.lemma_a`` and S9.15 use it)."""
    e, before, after = (np.asarray(x, float) for x in (e, before, after))
    ones = np.ones_like(e[..., :1])
    pre = np.cumprod(np.concatenate([ones, before[..., :-1]], axis=-1), axis=-1)
    suf = np.cumprod(np.concatenate([ones, after[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return np.sum(e * pre * suf, axis=-1)


def _layers(xs) -> np.ndarray:
    """per-layer values (scalars or batch arrays) stacked on a last layer axis"""
    return np.stack(np.broadcast_arrays(*[np.asarray(x, float) for x in xs]), axis=-1)


def lemma_moment_bound(dims, half_widths, q, delta: float, method: str, law: str, lip: float = 1.0,
                       orders=LEMMA_ORDERS) -> LemmaMomentBound:
    """S9.15 (THEORY §9.15): for a bias-free dense chain d_0 -> ... -> d_l with (H-act) activations (Lipschitz
    product ``lip``), independent layers, i.i.d. weights from ``law`` with half-widths ``half_widths`` and threshold
    magnitude / Bernoulli / rescaled random pruning at fractions q (trailing layer axis), with probability >= 1 -
    delta: err <= eps = min over p in ``orders`` and over A-fwd / A-bwd of
    delta^(-1/(2p)) lip sum_i m_p(E_i) prod_{j<i} m_p(W_j) prod_{j>i} M_p(What_j), m_p(X) = (E tr((XX^T)^p))^(1/(2p)),
    M_p(What_j) = m_p(W_j) >= m_p(What_j) for threshold magnitude and Bernoulli random (so that eps is nondecreasing
    in every q_i), m_p(What_j) for rescaled random (already nondecreasing).
    Each candidate is a deterministic threshold at the full delta, so the minimum is too (§9.7)."""
    dims = [int(x) for x in dims]
    depth = len(dims) - 1
    q = np.asarray(q, float)
    if q.shape[-1:] != (depth,):
        raise ProbPruneError(f"need one fraction per layer ({depth}), got shape {q.shape}")
    if len(half_widths) != depth:
        raise ProbPruneError(f"need one half-width per layer ({depth}), got {len(half_widths)}")
    delta = float(delta)
    pmax = max(orders)
    moms = [layer_entry_moments(method, law, half_widths[k], q[..., k], pmax) for k in range(depth)]
    best, best_p, best_dir = np.inf, None, None
    per_order, norms = {}, {}
    keys = ("W", "What", "E") if method == "random_rescaled" else ("W", "E")
    shape = np.broadcast_shapes(*[np.shape(x) for k in range(depth) for key in keys for x in moms[k][key]])
    for p in orders:
        per_layer = [_moment_norms(dims[k + 1], dims[k], moms[k], keys, p, shape) for k in range(depth)]
        m = {key: [nm[key] for nm in per_layer] for key in keys}
        scale = lip * delta ** (-1.0 / (2 * p))
        # threshold / Bernoulli: m_p(What) <= m_p(W) (dominated entry moments, nonnegative coefficients) is used in
        # its place so that eps is nondecreasing in every q_i (the budget inversions rely on it, §9.15)
        hat = m["What"] if method == "random_rescaled" else m["W"]
        E_, W_, H_ = _layers(m["E"]), _layers(m["W"]), _layers(hat)
        xf = scale * unroll(E_, W_, H_)
        xb = scale * unroll(E_, H_, W_)
        per_order[p] = (xf, xb)
        norms[p] = m
        x = np.minimum(xf, xb)
        x = np.where(np.isfinite(x), x, np.inf)  # overflow (huge half-widths): no candidate at this p, never NaN
        better = x < best
        best_p = np.where(better, p, best_p if best_p is not None else p)
        best_dir = np.where(better, np.where(xf <= xb, "fwd", "bwd"), best_dir if best_dir is not None else "fwd")
        best = np.minimum(best, x)
    if np.ndim(best) == 0:
        best, best_p, best_dir = float(best), int(best_p), str(best_dir)
    return LemmaMomentBound(best, best_p, best_dir, per_order, norms)


def layer_moment_norms(n_rows: int, n_cols: int, method: str, law: str, a, q, orders=LEMMA_ORDERS) -> dict:
    """{p: {"W", "What", "E": m_p(X) = (E tr((XX^T)^p))^(1/(2p))}} of one layer at fractions q (any shape), for every
    p in ``orders`` from one computation of the entry moments (THEORY §9.15)."""
    mom = layer_entry_moments(method, law, a, q, max(orders))
    shape = np.broadcast_shapes(*[np.shape(x) for v in mom.values() for x in v])
    return {p: _moment_norms(n_rows, n_cols, mom, tuple(mom), p, shape) for p in orders}
