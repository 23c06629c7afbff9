"""S9.13 (THEORY §9.13): exact Schatten moments E tr((D D^T)^p) of the product difference D = prod W - prod What of a
linear dense network, and the Markov threshold ||D|| <= (E tr((D D^T)^p) / delta)^(1/(2p)).

The recursion generalises S9.12's (THEORY §9.12 steps (2)-(3)) from four chains to 2p chains: the state is, per set
partition pi of the 2p chain slots (the pattern of the current row indices c_1..c_2p) and per tuple of 'has an E yet'
flags f, the number Q_f(pi) = E[prod_i (M^(2i) M^(2i+1)T)_(c_2i, c_2i+1)] (the same for every index tuple of pattern pi,
by exchangeability of the rows). One layer maps Q to
    Q'_g(pi_a) = sum_(pi_c) (d)_(|pi_c|) sum_(f, l: f OR l = g) w(pi_a meet pi_c, l) Q_f(pi_c),
with (d)_s = d(d-1)...(d-s+1) the number of index tuples of pattern pi_c and w the expectation of the layer's entries
at the positions (a_j, c_j): the blocks of the meet are the distinct positions; a block contributes E x_l^(|b|) if its
size is even and its labels agree, else the whole term is 0 (symmetric signs; disjoint supports of What and E).
p = 2 reproduces S9.12's state (patterns A, B, C, E); p = 3 has 203 patterns and 64 flag tuples.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse

from probprune.core.errors import ProbPruneError
from probprune.core.registry import LAWS, METHODS

#: orders p with a precomputed transfer structure (Bell(2p) patterns: 15, 203)
TRACE_ORDERS = (2, 3)
#: apriori_bound evaluates S9.13 only for at most this many fraction vectors per call (p = 3 costs about 2 ms per
#: vector and layer on the shared machine; the budget searches' 4,097-point tables skip it, see THEORY §9.13)
TRACE_BATCH_MAX = 256


def _canon(labels) -> tuple:
    """restricted-growth form of a labelling (blocks numbered by first occurrence)."""
    seen: dict = {}
    return tuple(seen.setdefault(x, len(seen)) for x in labels)


def set_partitions(n: int) -> list[tuple]:
    """all set partitions of n slots as restricted growth strings."""
    out = [()]
    for _ in range(n):
        out = [r + (b,) for r in out for b in range((max(r) + 2) if r else 1)]
    return out


@lru_cache(maxsize=4)
def _structure(p: int):
    """the p-dependent, layer-independent part of the recursion: the patterns, for every group key
    (exponent vector of the 2p moments, |pi_c|) a sparse 0/1-count matrix on the states (pattern, flags), the initial
    state and the final contraction's (pattern, |sigma|) list."""
    n = 2 * p
    F = 1 << n
    parts = set_partitions(n)
    index = {pi: i for i, pi in enumerate(parts)}
    S = len(parts) * F
    groups: dict = {}
    for ia, pa in enumerate(parts):
        for ic, pc in enumerate(parts):
            meet = _canon(list(zip(pa, pc)))
            nb = max(meet) + 1
            sizes = [0] * nb
            for m in meet:
                sizes[m] += 1
            if any(z % 2 for z in sizes):
                continue
            s = max(pc) + 1
            for lab in range(1 << nb):  # one label per block (disjoint supports)
                mask = sum(1 << j for j in range(n) if (lab >> meet[j]) & 1)
                expo = [0] * (2 * p)  # moment index: label * p + (size/2 - 1)
                for b in range(nb):
                    expo[((lab >> b) & 1) * p + sizes[b] // 2 - 1] += 1
                key = (tuple(expo), s)
                groups.setdefault(key, []).append((ia, ic, mask))
    full = {}
    flags = np.arange(F)
    for key, entries in groups.items():
        e = np.array(entries)  # (ia, ic, mask): state (ia, f | mask) <- (ic, f) for every flag tuple f
        r = (e[:, 0:1] * F + (flags[None, :] | e[:, 2:3])).ravel()
        c = (e[:, 1:2] * F + flags[None, :]).ravel()
        full[key] = sparse.csr_matrix((np.ones(r.size), (r, c)), shape=(S, S))
    q0 = np.zeros(S)
    for pi, i in index.items():
        if all(pi[2 * j] == pi[2 * j + 1] for j in range(p)):
            q0[i * F] = 1.0  # M_0 = I, no chain has an E yet
    final = []  # tr((DD^T)^p) = sum_a prod_i (DD^T)_(a_i a_(i+1)): slot 2i <- a_i, slot 2i+1 <- a_(i+1 mod p)
    for sig in set_partitions(p):
        pi = _canon([sig[j // 2] if j % 2 == 0 else sig[(j // 2 + 1) % p] for j in range(n)])
        final.append((index[pi] * F, max(sig) + 1))  # state of the pattern with flag tuple 0; + f for others
    # keep only the live states: reachable from the start and reaching a final state (structural nonzeros; a
    # dropped state is identically 0 or never contracted, so nothing changes)
    A = sum((abs(M) > 0).astype(np.float64) for M in full.values()).tocsr()
    fw = q0 > 0
    while True:
        nxt = fw | ((A @ fw.astype(np.float64)) > 0)
        if nxt.sum() == fw.sum():
            break
        fw = nxt
    bw = np.zeros(S, bool)
    for i, _ in final:
        bw[i:i + F] = True
    while True:
        nxt = bw | ((A.T @ bw.astype(np.float64)) > 0)
        if nxt.sum() == bw.sum():
            break
        bw = nxt
    live = np.flatnonzero(fw & bw)
    pos = -np.ones(S, int)
    pos[live] = np.arange(live.size)
    mats = {k: M[live][:, live].tocsr() for k, M in full.items()}
    mats = {k: M for k, M in mats.items() if M.nnz}
    final_live = [(np.array([pos[i + f] for f in range(F)]), s) for i, s in final]
    return live.size, F, mats, q0[live], final_live


def _falling(d: float, s: int) -> float:
    out = 1.0
    for j in range(s):
        out *= d - j
    return out


def trace_moment(dims, layer_moments, p: int, kappa=None, with_abs: bool = False):
    """E tr((D D^T)^p) exactly (THEORY §9.13 S9.13) for a dense linear chain d_0 -> ... -> d_l with independent layers,
    i.i.d. entries per layer with independent symmetric signs and disjoint supports of What_k and E_k.
    ``layer_moments[k]`` = (E what^2, E e^2, E what^4, E e^4, ..., E what^(2p), E e^(2p)) (scalars or arrays that
    broadcast: batch axes), the sequence of :func:`entry_even_moments`. ``kappa`` (rescaled random, S9.8c/S9.12(R)):
    labels Y/Z, a chain without a Z carries -kappa (exact; a signed sum over flag tuples). With ``with_abs`` also
    returns the sum of the absolute values of the signed terms (rounding guard for the signed case)."""
    if p not in TRACE_ORDERS:
        raise ProbPruneError(f"S9.13 is implemented for p in {TRACE_ORDERS}, got p={p}")
    dims = [int(x) for x in dims]
    if len(layer_moments) != len(dims) - 1:
        raise ProbPruneError(f"need {len(dims) - 1} layers of moments, got {len(layer_moments)}")
    for lm in layer_moments:
        if len(lm) < 2 * p:
            raise ProbPruneError(f"S9.13 at p={p} needs the entry moments up to order {2 * p}")
    arrays = [np.asarray(x, float) for lm in layer_moments for x in lm[:2 * p]]
    if kappa is not None:
        arrays.append(np.asarray(kappa, float))
    shape = np.broadcast_shapes(*[x.shape for x in arrays])
    nb = int(np.prod(shape)) if shape else 1
    flat = lambda x: np.broadcast_to(np.asarray(x, float), shape).reshape(nb)  # noqa: E731
    n_live, F, mats, q0, final = _structure(p)
    Q = np.repeat(q0[:, None], nb, axis=1)
    for k, lm in enumerate(layer_moments):
        mom = [flat(lm[2 * j]) for j in range(p)] + [flat(lm[2 * j + 1]) for j in range(p)]  # h_2.., e_2..
        d = float(dims[k])
        new = np.zeros_like(Q)
        for (expo, s), M in mats.items():
            c = np.full(nb, _falling(d, s))
            for e, m in zip(expo, mom):
                if e:
                    c = c * m**e
            if np.any(c != 0.0):
                new += (M @ Q) * c[None, :]
        Q = new
    dl = float(dims[-1])
    per_flag = np.zeros((F, nb))  # value of each flag tuple (states not live are 0)
    for idx, s in final:
        ok = idx >= 0
        per_flag[ok] += _falling(dl, s) * Q[idx[ok]]
    if kappa is None:
        tot, ab = per_flag[F - 1], np.abs(per_flag[F - 1])
    else:
        kap = flat(kappa)
        n0 = np.array([2 * p - bin(f).count("1") for f in range(F)])
        terms = (-kap[None, :]) ** n0[:, None] * per_flag
        tot, ab = terms.sum(axis=0), np.abs(terms).sum(axis=0)
    tot, ab = tot.reshape(shape), ab.reshape(shape)
    if not shape:
        tot, ab = float(tot), float(ab)
    return (tot, ab) if with_abs else tot


#: relative rounding margin added to a signed (rescaled) trace moment: the terms are summed in float64
SIGNED_MARGIN = 1e-12


def trace_moment_bound(dims, half_widths, q, delta, method: str, law: str, orders=TRACE_ORDERS):
    """S9.13 (THEORY §9.13): P(||prod W - prod What|| >= x) <= delta at x = min_p (E tr((DD^T)^p) / delta)^(1/(2p))
    over p in ``orders`` (each deterministic, §9.7), for a linear dense FCN pruned by threshold magnitude, Bernoulli
    random or rescaled random pruning (S9.12(R)'s split; the signed sum gets a relative rounding margin).
    q has a trailing layer axis. Returns (x, {p: E tr((DD^T)^p)})."""
    entry = _entry_model(method)
    if entry is None:
        raise ProbPruneError(f"S9.13 covers threshold magnitude, Bernoulli random and rescaled random pruning, "
                             f"not {method!r}")
    q = np.asarray(q, float)
    depth = len(dims) - 1
    if q.shape[-1] != depth:
        raise ProbPruneError(f"need one fraction per layer ({depth}), got shape {q.shape}")
    d = np.asarray(delta, float)
    pmax = max(orders)
    lm = [entry_even_moments(method, law, half_widths[k], q[..., k], pmax) for k in range(depth)]
    kappa = None
    if METHODS[method].rescaled:
        if np.any(q >= 1):
            raise ProbPruneError("rescaled random pruning needs q < 1")
        kappa = np.expm1(-np.sum(np.log1p(-q), axis=-1))
    x = np.inf
    vals = {}
    for p in orders:
        v, ab = trace_moment(dims, lm, p, kappa, with_abs=True)
        v = np.maximum(np.asarray(v) + SIGNED_MARGIN * np.asarray(ab), 0.0) if kappa is not None else np.asarray(v)
        vals[p] = v
        x = np.minimum(x, (v / d) ** (1.0 / (2 * p)))
    return (float(x) if np.ndim(x) == 0 else x), vals


def _entry_model(method):
    """The registry's i.i.d. entry model of ``method`` (threshold magnitude, Bernoulli random, rescaled random), or
    None for any other name."""
    m = METHODS.get(method) if isinstance(method, str) else None
    return None if m is None else m.entry_model


def entry_even_moments(method: str, law: str, a, q, p: int):
    """(E what^2, E e^2, E what^4, E e^4, ..., E what^(2p), E e^(2p)) of one entry, e = w - what (THEORY §9.12 table F
    extended to order 2p, §9.13). Uniform U[-a, a]: E w^(2j) = a^(2j)/(2j+1); threshold magnitude (prune |w| < q a):
    E e^(2j) = q^(2j+1) E w^(2j); Bernoulli random and the rescaled split's Z: E e^(2j) = q E w^(2j). Gaussian
    N(0, a^2): E w^(2j) = (2j-1)!! a^(2j), magnitude E[g^(2j) 1{|g| < c}] = (2j-1)!! P(chi2_(2j+1) < c^2) a^(2j),
    2 Phi(c) - 1 = q. what-moments are w-moments minus e-moments (disjoint supports). Arrays broadcast. The law's
    moments (``WeightLaw.even_moment``, ``truncated_even_moment``) and the rule's pruned moment
    (``EntryModel.even_pruned``) are the registry's."""
    a = np.asarray(a, float)
    q = np.asarray(q, float)
    entry = _entry_model(method)
    if entry is None:
        raise ProbPruneError(f"S9.12/S9.13 do not cover the pruning rule {method!r}")
    lw = LAWS.get(law) if isinstance(law, str) else None
    if lw is None:
        raise ProbPruneError(f"unknown weight law {law!r}")
    out = []
    for j in range(1, p + 1):
        w = lw.even_moment(j, a)
        e = entry.even_pruned(lw, j, q, w)
        out += [w - e, e]
    return tuple(out)
