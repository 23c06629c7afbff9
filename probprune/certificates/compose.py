"""Norm-based certificates on exactly composed stages (THEORY.md §12.1-§12.2 [D]).

* ``lemma_a_composed``: Lemma A (fwd and bwd, with bias terms) applied to the chain's stages, whose matrices are
  the exact compositions of the linear operations between activations (§12.1), with the bias *difference* term
  that composition creates (a bias followed by a pruned linear map) (Statement 12.1).
* ``pair_bound``: sup over diagonal D in [0, I] of ||A D B|| <= t sqrt(lambda_max(B^T (2tI - A^T A)^{-1} B)) for any
  t > ||A||^2 / 2 (Statement 12.2, an S-procedure certificate in the style of LipSDP with a scalar multiplier).
* ``lemma_a_pairs``: the backward unrolling F - F_hat = sum_i M_L S_{L-1} ... M_{i+1} S_i (E_i shat_{i-1} + db_i)
  with ReLU slopes S_j in [0, I], each partial product bounded by the best grouping of its factors into single
  norms and pair bounds (Statement 12.3).
Every norm is a certified upper bound (float64 Gram eigenvalue with a rounding allowance, x (1 + 1e-9)).

Speed (issues 19/22): the pair/segment bounds and stage norms are memoised by content fingerprints of their factors
(:func:`_cached`; ``bound_cache(False)`` disables it), S-procedure prefix states are resumed (``_STATE``), the scalar
multipliers are chosen on Krylov estimates and the bound is the LAPACK eigenvalue at the chosen multiplier.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.theory.norms import spectral_norm_upper
from probprune.certificates.lower import Chain, stage_diff

#: a soft deadline (time.perf_counter() value) for the long searches (pair and segment bounds, the mixed bound):
#: set by certify_chains(..., time_limit=) through :func:`deadline`; past it they raise :class:`TimeLimitReached`
_DEADLINE: contextvars.ContextVar = contextvars.ContextVar("probprune_tight_deadline", default=None)


class TimeLimitReached(Exception):
    """The component ran past the caller's time limit (caught by certify_chains; the component is skipped)."""


#: measured seconds per unit of work of the loop steps (:class:`StepClock`) by step kind, shared by the stages of one
#: certify_chains call (``deadline(..., steps=)``): the first step of a loop is predicted from the same kind's last one
_STEPS: contextvars.ContextVar = contextvars.ContextVar("probprune_tight_steps", default=None)


@contextlib.contextmanager
def deadline(t_end: float | None, steps: dict | None = None):
    """Within the block, :func:`check_deadline` and :class:`StepClock` stop work at ``t_end`` (a time.perf_counter()
    value; None: no deadline). ``steps``: the step-time history to use (a dict kept by the caller across blocks; None:
    a fresh one)."""
    tok = _DEADLINE.set(t_end)
    tok2 = _STEPS.set(None if t_end is None else ({} if steps is None else steps))
    try:
        yield
    finally:
        _STEPS.reset(tok2)
        _DEADLINE.reset(tok)


def check_deadline(predicted: float = 0.0) -> None:
    """Raise :class:`TimeLimitReached` past the deadline, or when a computation predicted to take ``predicted``
    seconds (and not interruptible inside) would end past it."""
    t_end = _DEADLINE.get()
    if t_end is not None and time.perf_counter() + predicted > t_end:
        raise TimeLimitReached()


#: pair bounds left out of the current stage because they were predicted to end past the deadline (a list set by
#: the caller with :func:`count_pair_skips`; None: not counted)
_SKIPS: contextvars.ContextVar = contextvars.ContextVar("probprune_pair_skips", default=None)


@contextlib.contextmanager
def count_pair_skips():
    """Within the block, pair bounds skipped by :func:`pair_fits` are recorded; yields the list of their shapes."""
    out: list = []
    tok = _SKIPS.set(out)
    try:
        yield out
    finally:
        _SKIPS.reset(tok)


def pair_fits(A, B) -> bool:
    """False where the pair bound sup ||A D B|| (not interruptible inside) is predicted to end past the deadline: the
    searches then leave that pair out (the grouping of Statement 12.3 uses the single norms there: an infinite pair
    bound is a valid choice, Statement 12.33) and go on with the others, instead of stopping the whole stage."""
    t_end = _DEADLINE.get()
    if t_end is None:
        return True
    if time.perf_counter() + predicted_pair_seconds(A.shape[1], A.shape[0], B.shape[1]) <= t_end:
        return True
    skips = _SKIPS.get()
    if skips is not None:
        skips.append((tuple(A.shape), tuple(B.shape)))
    return False


STEP_SAFETY = 1.25  # StepClock: measured step rates x this (steps of one kind vary by ~20% on a loaded machine)


class StepClock:
    """Deadline checks between the steps of one loop (the hard wall of certify_chains' time limit, issue 19 UA): a
    step cannot be stopped inside, so :meth:`check` (called before each step, with the step's ``work``, e.g. its
    number of rows) raises :class:`TimeLimitReached` when the step is predicted to end past the deadline, instead of
    starting it and overrunning by one step. Prediction: max(``predicted``, rate x work) with the rate (seconds per
    unit of work) measured on the previous step of this loop, or, for its first step, on the last step of the same
    ``kind`` in this certify_chains call (none: 0); a ``kind`` given to :meth:`check` names that step alone (steps
    of a loop that differ, e.g. one per stage): its own history comes first. Without a deadline: no-op."""

    __slots__ = ("t", "kind", "work", "rate")

    def __init__(self, kind=None) -> None:
        self.t = 0.0
        self.kind = kind
        self.work = None  # work of the step started at the previous check (None: no step yet)
        self.rate = None

    def check(self, predicted: float = 0.0, work: float = 1.0, kind=None) -> None:
        if _DEADLINE.get() is None:
            return
        now = time.perf_counter()
        hist = _STEPS.get()
        if hist is None:
            hist = {}
        if self.work is not None and self.work > 0:  # the step since the previous check, measured
            self.rate = (now - self.t) / self.work
            if self.kind is not None:
                hist[self.kind] = self.rate
        if kind is not None:
            self.kind = kind
            rate = hist.get(kind, self.rate or 0.0)
        else:
            rate = self.rate if self.rate is not None else hist.get(self.kind, 0.0)
        self.t, self.work = now, float(work)
        check_deadline(max(float(predicted), STEP_SAFETY * rate * float(work)))


PAIR_COST_EIGHS = 3.0  # one pair bound (Statement 12.2/12.10 with m = 2, not interruptible inside) is predicted to
# cost this many dense eigendecompositions (np.linalg.eigh) of its middle dimension d (the Gram matrix it decomposes);
# measured at load 5.3 (TB): resnet_bn_mnist16 d = 2048: 1.7 of them, d = 1024: 1.3 and 1.9; cnn_avgpool_mnist5k
# d = 864: 5.3 (an S-procedure Gram on the larger side)
PAIR_COST_MIN_DIM = 512  # ... predicted only above this middle dimension (cheap below)


@functools.lru_cache(maxsize=1)
def _eigh256_seconds() -> float:
    """Seconds of np.linalg.eigh of a 256 x 256 symmetric matrix on this machine (the fastest of three, measured once
    per process: robust to a scheduling hiccup)."""
    X = np.random.default_rng(0).standard_normal((256, 256))
    X = X + X.T
    ts = []
    for _ in range(3):
        t = time.perf_counter()
        np.linalg.eigh(X)
        ts.append(time.perf_counter() - t)
    return min(ts)


def predicted_pair_seconds(d: int, rows: int | None = None, cols: int | None = None) -> float:
    """Predicted seconds of one pair bound sup ||A D B|| with middle dimension ``d`` (A: rows x d, B: d x cols):
    PAIR_COST_EIGHS x eigh(k) extrapolated (k^3) from :func:`_eigh256_seconds`, where k is the largest dense matrix
    the bound decomposes: d alone (shapes not given: the S-procedure chain steps), or max(min(rows, d), min(d, cols))
    (:func:`pair_bound`: the Gram of A on its smaller side, Statement 12.2b, and the scaled Gram of the second factor
    on its smaller side); 0 for k <= PAIR_COST_MIN_DIM. A prediction, used only to decide whether to start."""
    k = d if rows is None or cols is None else max(min(rows, d), min(d, cols))
    if k <= PAIR_COST_MIN_DIM:
        return 0.0
    return PAIR_COST_EIGHS * _eigh256_seconds() * (k / 256.0) ** 3


# ---------------------------------------------------------------------------------------------- bound cache
#: the pair/segment bounds (Statements 12.2, 12.10) are pure functions of their factor matrices and of the module
#: parameters below: a budget search evaluates many F_hat for one F, and "auto" runs pairs and mixed on the same
#: factors, so the values are memoised by a content fingerprint (BLAKE2b of shape and float64 bytes) of every factor
#: and the parameters. A hit returns the float computed earlier for bit-identical inputs (never a value for another
#: matrix); LRU, at most CACHE_SIZE floats. ``bound_cache(False)`` turns it off (benchmarks' "before", tests).
CACHE_SIZE = 4096
_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_ON: contextvars.ContextVar = contextvars.ContextVar("probprune_compose_cache", default=True)
CACHE_STATS = {"hits": 0, "misses": 0}


@contextlib.contextmanager
def bound_cache(enabled: bool = True):
    """Enable (default) or disable the content-keyed bound cache inside the block."""
    tok = _CACHE_ON.set(bool(enabled))
    try:
        yield
    finally:
        _CACHE_ON.reset(tok)


def clear_bound_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
        _STATE.clear()
        _STATE_USED[0] = 0
        CACHE_STATS.update(hits=0, misses=0)


FINGERPRINT_SPARSE_MIN = 1 << 20  # matrices with at least this many entries and at most 1/8 nonzero are hashed by
# their nonzero entries (positions and values) instead of all their bytes (a 2048 x 2048 stage: ~40 ms -> ~10 ms)


def fingerprint(M) -> bytes:
    """Content fingerprint of a matrix: BLAKE2b-160 of its shape and its float64 bytes (C order); for a large sparse
    matrix (FINGERPRINT_SPARSE_MIN), of its shape, a marker, the flat positions of its nonzero entries and their
    float64 bytes (an injective encoding of the same content: equal fingerprints for equal matrices; the sparse
    message is at most 2 x size + 40 bytes long and the dense one 8 x size, so for one shape the two kinds of message
    never coincide, and a collision needs a BLAKE2b collision as before; -0.0 counts as zero, which no bound
    distinguishes)."""
    a = np.ascontiguousarray(M, dtype=np.float64)
    h = hashlib.blake2b(repr(a.shape).encode(), digest_size=20)
    if a.size >= FINGERPRINT_SPARSE_MIN:
        flat = a.reshape(-1)
        nz = np.flatnonzero(flat)
        if nz.size * 8 <= flat.size:
            h.update(b"|sparse|" + repr(int(nz.size)).encode() + b"|")
            h.update(memoryview(nz.astype(np.int64, copy=False)).cast("B"))
            vals = np.ascontiguousarray(flat[nz])
            h.update(memoryview(vals).cast("B"))
            return h.digest()
    if a.size:
        h.update(memoryview(a.reshape(-1)).cast("B"))
    return h.digest()


def fingerprint_memo(mats: dict):
    """k -> fingerprint(mats[k]), each computed once (the pair searches ask for the same factor many times)."""
    fps: dict = {}

    def fp(k):
        if k not in fps:
            fps[k] = fingerprint(mats[k])
        return fps[k]
    return fp


def _cached(key: tuple, compute):
    """compute() memoised under ``key`` (a tuple of fingerprints and parameters) while the cache is on."""
    if not _CACHE_ON.get():
        return compute()
    with _CACHE_LOCK:
        v = _CACHE.get(key)
        if v is not None:
            _CACHE.move_to_end(key)
            CACHE_STATS["hits"] += 1
            return v
    v = compute()
    with _CACHE_LOCK:
        CACHE_STATS["misses"] += 1
        _CACHE[key] = v
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return v


def _cache_has(key: tuple) -> bool:
    """Whether :func:`_cached` would answer ``key`` from the cache (False while the cache is off)."""
    if not _CACHE_ON.get():
        return False
    with _CACHE_LOCK:
        return key in _CACHE


#: the S-procedure state G_k after a prefix X_1..X_k of a chain (Statement 12.10) is, like the bounds, a pure
#: function of the prefix's factors and the parameters: kept (byte-bounded LRU) so that a segment resumes where an
#: earlier call on the same prefix stopped (the F-only prefixes of every F_hat of a search; a pair followed by the
#: segment that extends it). Resuming from the stored array repeats the same floating-point operations.
STATE_BYTES = 32 << 20
_STATE: OrderedDict = OrderedDict()
_STATE_USED = [0]


def _state_get(key: tuple):
    with _CACHE_LOCK:
        G = _STATE.get(key)
        if G is not None:
            _STATE.move_to_end(key)
        return G


def _state_put(key: tuple, G: np.ndarray) -> None:
    if G.nbytes > STATE_BYTES // 4:
        return
    G = np.array(G, dtype=float, copy=True)
    G.setflags(write=False)
    with _CACHE_LOCK:
        old = _STATE.pop(key, None)
        if old is not None:
            _STATE_USED[0] -= old.nbytes
        _STATE[key] = G
        _STATE_USED[0] += G.nbytes
        while _STATE_USED[0] > STATE_BYTES and _STATE:
            _STATE_USED[0] -= _STATE.popitem(last=False)[1].nbytes


PAIR_REL = 1e-6  # relative allowance on the pair bound's eigen-computations (THEORY §12.2)
DIAG_STEPS = 20  # Adam steps for the diagonal multipliers of Statement 12.10 in certificates (0: scalar only)
DIAG_MAX_DIM = 256  # the diagonal multipliers only where the Gram matrix G_k is at most this size (cost)
SEGMENT_MAX_DIM = 1000  # longer S-procedure segments only for factors up to this size (cost); pairs always


@dataclass(frozen=True)
class StageNorms:
    """Per-stage certified norms of the chains F and F_hat (§12.1)."""

    M: np.ndarray
    Mhat: np.ndarray
    E: np.ndarray
    bias: np.ndarray
    bias_hat: np.ndarray
    bias_diff: np.ndarray
    factor_product: np.ndarray  # product of the per-operation norms composed into the stage (nan if unknown)


def _norm_upper(M: np.ndarray) -> float:
    """:func:`stage_norm_upper` (M) memoised by the content fingerprint of M (the stage matrices of F recur in every
    evaluation of a budget search, and "auto" computes the stage norms in composed and again in mixed)."""
    return _cached(("norm", fingerprint(M)), lambda: stage_norm_upper(M))


SPARSE_NORM_MIN_DIM = 512  # stage_norm_upper: the sparse paths only where the smaller side exceeds this ...
SPARSE_NORM_MAX_DENSITY = 0.25  # ... and at most this fraction of the entries is nonzero (else the dense 11.1 bound)


def stage_norm_upper(M: np.ndarray) -> float:
    """Certified upper bound on ||M||_2 of a stage matrix (THEORY §12.11, Statement 12.50 [D]). Small or dense
    matrices: ``spectral_norm_upper`` (§11.1) as before. Large sparse ones (convolutions, max-pool tree levels,
    identity stage breaks): (a) the bipartite row/column graph of the nonzero entries splits M into independent
    blocks (||M|| = max over blocks); blocks with one row or one column get §11.1 with its 1 x 1 Gram (the squared
    Euclidean norm, no eigensolver), the other small blocks §11.1 batched by shape; (b) one large block: its Gram
    formed as a sparse product, a Lanczos guess mu of lambda_max, and the Cholesky certificate of §11.5 at mu plus the
    Gram allowance of §11.1 (within ~1e-9 of the dense bound; the dense bound where the factorisation fails)."""
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.size == 0:
        return spectral_norm_upper(M)
    m, n = M.shape
    if min(m, n) <= SPARSE_NORM_MIN_DIM:
        return spectral_norm_upper(M)
    nz = np.count_nonzero(M)
    if nz == 0:
        return 0.0
    if nz > SPARSE_NORM_MAX_DENSITY * M.size or not np.all(np.isfinite(M)):
        return spectral_norm_upper(M)
    amax = float(np.abs(M).max())
    if not (2.0 ** -400 <= amax <= 2.0 ** 400):  # outside the range where 11.1 needs no scaling: the dense bound
        return spectral_norm_upper(M)
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from probprune.theory.norms import SAFETY, gram_allowance

    S = sp.csr_matrix(M)
    r, c = S.nonzero()
    # bipartite graph: rows 0..m-1, columns m..m+n-1
    Gb = sp.coo_matrix((np.ones(r.size), (r, c + m)), shape=(m + n, m + n))
    ncomp, lab = connected_components(Gb, directed=False)
    if ncomp == 1 or np.bincount(lab).max() > min(m, n):
        return _sparse_block_norm_upper(S)
    rlab, clab = lab[:m], lab[m:]
    nrow = np.bincount(rlab, minlength=ncomp)
    ncol = np.bincount(clab, minlength=ncomp)
    best = 0.0
    # one-row / one-column blocks: ||v||^2 (the 1 x 1 Gram, 11.1 with m = 1) + 11.1's allowance, vectorised
    sq = (np.asarray(S.multiply(S).sum(axis=1)).ravel())  # per row (sum of squares, one inner product each)
    rowsq_by_comp = np.bincount(rlab, weights=sq, minlength=ncomp)
    vec = (nrow == 1) | (ncol == 1)
    live = (nrow > 0) & (ncol > 0)
    if np.any(vec & live):
        lam = rowsq_by_comp + gram_allowance(rowsq_by_comp, nrow, ncol)
        best = max(best, float(np.sqrt(lam[vec & live].max())) * (1 + SAFETY))
    other = np.flatnonzero(~vec & live)
    if other.size:
        rows_of = [[] for _ in range(ncomp)]
        cols_of = [[] for _ in range(ncomp)]
        for i, l in enumerate(rlab):
            if not vec[l]:
                rows_of[l].append(i)
        for j, l in enumerate(clab):
            if not vec[l]:
                cols_of[l].append(j)
        by_shape: dict = {}
        for l in other:
            by_shape.setdefault((len(rows_of[l]), len(cols_of[l])), []).append(l)
        for (a, b), ls in by_shape.items():
            if max(a, b) > 256:  # a large block: the single-block path
                for l in ls:
                    best = max(best, _sparse_block_norm_upper(sp.csr_matrix(M[np.ix_(rows_of[l], cols_of[l])])))
                continue
            B = np.stack([M[np.ix_(rows_of[l], cols_of[l])] for l in ls])  # (nb, a, b)
            G = B @ np.swapaxes(B, 1, 2) if a <= b else np.swapaxes(B, 1, 2) @ B
            lam = np.maximum(np.linalg.eigvalsh((G + np.swapaxes(G, 1, 2)) / 2)[:, -1], 0.0)
            fro2 = np.einsum("bij,bij->b", B, B)
            lam = lam + gram_allowance(fro2, a, b)
            best = max(best, float(np.sqrt(lam.max())) * (1 + SAFETY))
    return best


def _sparse_block_norm_upper(S) -> float:
    """Statement 12.50 (b): ||S||_2 for one sparse block (scipy CSR, entries in [2^-400, 2^400] in magnitude):
    Gram Ghat = fl(S S^T) or fl(S^T S) by a sparse product, mu = Lanczos estimate x (1 + 1e-9), Cholesky of
    fl(mu I - Ghat) => lambda_max(Ghat) <= mu + cholesky_slack (§11.5), + §11.1's Gram allowance. Falls back to the
    dense §11.1 bound where the factorisation fails twice."""
    import scipy.sparse as sp
    from scipy.sparse.linalg import eigsh

    from probprune.theory.norms import SAFETY, cholesky_top_upper, gram_allowance

    m, n = S.shape
    G = (S @ S.T) if m <= n else (S.T @ S)
    d = G.shape[0]
    allowance = gram_allowance(float(S.multiply(S).sum()), m, n)
    Gd = G.toarray()
    Gd = (Gd + Gd.T) / 2  # exact (the product is symmetric up to the order of its sums; averaging two values)
    try:
        est = float(eigsh(sp.csr_matrix(Gd), k=1, which="LA", v0=np.ones(d), tol=1e-12,
                          return_eigenvectors=False)[0])
    except Exception:  # noqa: BLE001 (ARPACK no convergence: the dense bound)
        est = None
    if est is not None and math.isfinite(est) and est > 0:
        mu = est * (1 + 1e-9)
        for _ in range(2):
            top = cholesky_top_upper(Gd, mu)
            if top is not None:
                return math.sqrt(top + allowance) * (1 + SAFETY)
            mu = mu * (1 + 1e-6)
    return spectral_norm_upper(S.toarray())


def stage_norms(F: Chain, Fhat: Chain) -> StageNorms:
    if not F.same_structure(Fhat):
        raise ProbPruneError("F and F_hat must be chains of the same structure")
    nM, nMh, nE, bb, bbh, bd, fp = [], [], [], [], [], [], []
    for i, (s, sh) in enumerate(zip(F.stages, Fhat.stages)):
        nM.append(_norm_upper(s.M))
        nMh.append(_norm_upper(sh.M))
        D, dbi = stage_diff(F, Fhat, i)
        nE.append(_norm_upper(D) if np.any(D) else 0.0)
        bb.append(float(np.linalg.norm(s.b)) * (1 + 1e-12))
        bbh.append(float(np.linalg.norm(sh.b)) * (1 + 1e-12))
        bd.append(float(np.linalg.norm(dbi)) * (1 + 1e-12))
        fp.append(float(np.prod(s.factor_norms)) if s.factor_norms else float("nan"))
    return StageNorms(*(np.array(v) for v in (nM, nMh, nE, bb, bbh, bd, fp)))


def lemma_a_composed(F: Chain, Fhat: Chain, radius: float = 1.0, norms: StageNorms | None = None
                     ) -> tuple[float, float]:
    """Statement 12.1: (A-fwd, A-bwd) on the composed stages over ||x|| <= radius, ReLU (L = 1, sigma(0) = 0):
    Delta_i <= ||E_i|| h_{i-1} + ||Mhat_i|| Delta_{i-1} + ||b_i - bhat_i||, h_i <= ||M_i|| h_{i-1} + ||b_i||
    (fwd; bwd swaps the roles of M and Mhat), h_0 = radius, Delta_0 = 0."""
    n = norms or stage_norms(F, Fhat)

    blocks = {a: (b, L) for a, b, L in getattr(F, "lip_blocks", ())
              if all(n.E[i] == 0 and n.bias_diff[i] == 0 for i in range(a, b + 1))}

    def run(first, bfirst, second):
        h, D = float(radius), 0.0
        i = 0
        while i < len(first):
            if i in blocks:  # Statement 12.17: a parameter-free L-Lipschitz block with value 0 at 0 (max pooling)
                last, L = blocks[i]
                D, h = L * D, L * h
                i = last + 1
                continue
            D = n.E[i] * h + second[i] * D + n.bias_diff[i]
            h = first[i] * h + bfirst[i]
            i += 1
        return D

    return float(run(n.M, n.bias, n.Mhat)), float(run(n.Mhat, n.bias_hat, n.M))


def _top_eig(K: np.ndarray) -> float:
    """Largest eigenvalue of a symmetric matrix (LAPACK syevr, top eigenvalue only; backward stable; the full
    symmetric eigensolver where syevr's subset mode reports an internal error, as it does on some block-structured
    matrices of Statement 12.41)."""
    from scipy.linalg import eigh

    m = K.shape[0]
    try:
        return float(eigh(K, eigvals_only=True, subset_by_index=[m - 1, m - 1], check_finite=False)[0])
    except np.linalg.LinAlgError:
        return float(np.linalg.eigvalsh(K)[-1])


class _ScaledGram:
    """lambda_max(Y^T diag(w) Y) for one n x m matrix Y and many weight vectors w >= 0 (the S-procedure steps of
    Statements 12.2 / 12.10 for different multipliers t). The nonzero spectrum of Y^T W Y equals that of
    W^{1/2} (Y Y^T) W^{1/2}: with P = Y Y^T formed once (n <= m), each w costs O(n^2) to form the n x n matrix instead
    of O(n^2 m). ``fixed`` (> 0, n > m): the first ``fixed`` rows share one weight w[0] (the thin pair bound,
    Statement 12.2b), so their Gram C = Y[:fixed]^T Y[:fixed] is formed once. ``exact(w)``: the LAPACK top eigenvalue
    (what a bound is made of). ``estimate(w)``: a Krylov (Rayleigh-Ritz, :func:`_krylov_top`) estimate warm-started
    at the previous top Ritz vector, only to choose t in the scalar minimisation (the bound is then evaluated with
    ``exact`` at the chosen t)."""

    LANCZOS_MIN = 96  # smaller matrices: exact eigenvalues are as cheap as Lanczos

    def __init__(self, Y: np.ndarray, fixed: int = 0):
        self.Y = Y
        n, m = Y.shape
        self.P = Y @ Y.T if n <= m else None
        self.fixed = int(fixed) if self.P is None else 0
        self.C = Y[:self.fixed].T @ Y[:self.fixed] if self.fixed else None
        self.v0 = None

    def matrix(self, w: np.ndarray) -> np.ndarray:
        if self.P is not None:
            r = np.sqrt(w)
            K = self.P * r[:, None] * r[None, :]
        elif self.fixed:
            k = self.fixed
            K = w[0] * self.C + (self.Y[k:] * w[k:, None]).T @ self.Y[k:]
        else:
            K = (self.Y * w[:, None]).T @ self.Y
        return (K + K.T) / 2

    def exact(self, w: np.ndarray) -> float:
        return _top_eig(self.matrix(w))

    def estimate(self, w: np.ndarray) -> float:
        if min(self.Y.shape) < self.LANCZOS_MIN:
            return _top_eig(self.matrix(w))
        if self.P is not None:
            r = np.sqrt(w)
            P = self.P
            val, self.v0 = _krylov_top(lambda v: r * (P @ (r * v)), P.shape[0], self.v0)
        else:  # m x m operator Y^T diag(w) Y by two products with Y (O(nm) per step, not O(n m^2) to form it)
            Y = self.Y
            val, self.v0 = _krylov_top(lambda v: Y.T @ (w * (Y @ v)), Y.shape[1], self.v0)
        return val


def _eigh_kept(G: np.ndarray, key: tuple | None):
    """np.linalg.eigh(G), kept in the state store under ``key`` (a content key of G) while the bound cache is on:
    the Gram matrices of F-only factors (and of F-only prefix states) recur in every evaluation of a search."""
    on = key is not None and _CACHE_ON.get()
    if on:
        lam, V = _state_get(("eig-lam",) + key), _state_get(("eig-V",) + key)
        if lam is not None and V is not None:
            return lam, V
    lam, V = np.linalg.eigh(G)
    if on:
        _state_put(("eig-lam",) + key, lam)
        _state_put(("eig-V",) + key, V)
    return lam, V


def _krylov_top(matvec, n: int, v0, dim: int = 10) -> tuple[float, np.ndarray]:
    """ESTIMATE of lambda_max(K) (K symmetric, given by ``matvec``): Rayleigh-Ritz on the Krylov space of dimension
    ``dim`` from v0 (the previous top Ritz vector: warm start; a fixed vector if None), Gram-Schmidt against the
    basis. A lower estimate, used only to choose a multiplier; returns (value, Ritz vector)."""
    v = np.ones(n) / math.sqrt(n) if v0 is None else v0 / max(np.linalg.norm(v0), 1e-300)
    m = min(dim, n)
    Q = np.empty((n, m))
    KQ = np.empty((n, m))
    k = 0
    for k in range(m):
        Q[:, k] = v
        KQ[:, k] = matvec(v)
        if k == m - 1:
            break
        u = KQ[:, k] - Q[:, :k + 1] @ (Q[:, :k + 1].T @ KQ[:, k])
        u -= Q[:, :k + 1] @ (Q[:, :k + 1].T @ u)
        nu = float(np.linalg.norm(u))
        if nu <= 1e-12 * max(1.0, float(np.linalg.norm(KQ[:, k]))):
            break
        v = u / nu
    Qk, KQk = Q[:, :k + 1], KQ[:, :k + 1]
    T = Qk.T @ KQk
    lam, U = np.linalg.eigh((T + T.T) / 2)
    return float(lam[-1]), Qk @ U[:, -1]


def _scalar_sproc(lam: np.ndarray, V: np.ndarray, X: np.ndarray, slack: float):
    """The scalar S-procedure step of Statements 12.2 / 12.10 on a state with eigenpairs (lam, V) and the next factor
    X: the eigenvalues lifted by ``slack`` (every one moved up, so Q below is <= the true 2tI - G), X in the
    eigenbasis, its scaled Gram and the weights t^2 / (2t - lam) of the multiplier t = lmax/2 (1 + e^s).
    Returns (lam, VX, SG, lmax, weights)."""
    lam = np.maximum(lam, 0.0) + slack
    VX = V.T @ X
    SG = _ScaledGram(VX)
    lmax = float(lam[-1])

    def weights(logs):
        t = lmax / 2 * (1 + math.exp(logs))
        return t * t / (2 * t - lam)

    return lam, VX, SG, lmax, weights


def pair_bound(A: np.ndarray, B: np.ndarray, _fpA: bytes | None = None) -> float:
    """Statement 12.2: an upper bound on sup_{D diagonal, 0 <= D <= I} ||A D B||_2, minimised over the scalar
    multiplier t > ||A||^2 / 2 (any such t gives a valid bound; the minimisation only picks a good one: it runs on
    Krylov estimates, and the bound is the LAPACK eigenvalue at the chosen t, :class:`_ScaledGram`). Where A has
    fewer rows than columns (p < n), the same bound in its thin form (Statement 12.2b): the eigendecomposition of the
    p x p matrix A A^T instead of the n x n A^T A (a 1024 x 2048 factor: one eigh of 1024, not of 2048)."""
    from scipy.optimize import minimize_scalar

    A = np.asarray(A, float)
    B = np.asarray(B, float)
    if A.shape[1] != B.shape[0]:
        raise ProbPruneError(f"pair_bound: shapes {A.shape} and {B.shape} do not compose")
    if not np.any(A) or not np.any(B):
        return 0.0
    if A.shape[0] < A.shape[1]:
        lmax, SG, weights = _thin_pair(A, B, _fpA)
    else:
        G = A.T @ A
        lam, V = _eigh_kept(G, ("AtA", _fpA) if _fpA is not None else None)
        slack = (A.shape[0] + 10) * np.finfo(float).eps * float(np.einsum("ij,ij->", A, A))
        lam, _, SG, lmax, weights = _scalar_sproc(lam, V, B, slack)

    res = minimize_scalar(lambda x: SG.estimate(weights(x)), bounds=(-12.0, 6.0), method="bounded",
                          options={"xatol": 1e-3})
    val = SG.exact(weights(0.0))
    if res.success and float(res.x) != 0.0:
        val = min(val, SG.exact(weights(float(res.x))))
    return math.sqrt(max(val, 0.0)) * (1 + PAIR_REL)


def scalar_pair_bound(A: np.ndarray, B: np.ndarray, fpA: bytes, fpB: bytes, skip_if_late: bool = False) -> float:
    """:func:`pair_bound` (Statement 12.2, scalar multiplier) memoised by the factors' content fingerprints, under
    the deadline (not started when predicted to end past it): one value shared by the mixed bound's "scalar" and
    "full" modes, whose pair bounds above DIAG_MAX_DIM are this same computation. ``skip_if_late``: a value not in
    the cache and predicted to end past the deadline is returned as +inf (:func:`pair_fits`; not cached) instead of
    stopping the caller."""
    key = ("pair-scalar", fpA, fpB, PAIR_REL)
    if skip_if_late and not _cache_has(key) and not pair_fits(A, B):
        return math.inf

    def compute():
        check_deadline(predicted_pair_seconds(A.shape[1], A.shape[0], B.shape[1]))
        return pair_bound(A, B, fpA)

    return _cached(key, compute)


def _thin_pair(A: np.ndarray, B: np.ndarray, _fpA: bytes | None):
    """Statement 12.2b (A is p x n with p < n): with A A^T = U diag(lam) U^T (eigenvalues padded up by a rounding
    allowance, as in 12.2) and W = U^T A B, for t > lam_max / 2
    t^2 B^T (2tI - A^T A)^{-1} B <= (t / 2) (B^T B + W^T diag(1 / (2t - lam)) W)   (push-through identity),
    i.e. Y^T diag(w) Y with Y = [B; W] and w = (t/2, ..., t/2, (t/2) / (2t - lam)). Returns (lam_max, the scaled
    Gram of Y, weights(log s)) with t = lam_max / 2 (1 + e^s), as :func:`_scalar_sproc`."""
    n = A.shape[1]
    H = A @ A.T
    lam, U = _eigh_kept((H + H.T) / 2, ("AAt", _fpA) if _fpA is not None else None)
    # the Gram's inner dimension is n here (m in 12.2's A^T A): the same allowance with the roles exchanged
    slack = (n + 10) * np.finfo(float).eps * float(np.einsum("ij,ij->", A, A))
    lam = np.maximum(lam, 0.0) + slack
    SG = _ScaledGram(np.vstack([B, U.T @ (A @ B)]), fixed=n)
    lmax = float(lam[-1])

    def weights(logs):
        t = lmax / 2 * (1 + math.exp(logs))
        return np.concatenate([np.full(n, t / 2), (t / 2) / (2 * t - lam)])

    return lmax, SG, weights


def sproc_chain_bound(mats: Sequence[np.ndarray], diag_steps: int = 20, diag_max_dim: int = DIAG_MAX_DIM,
                      _fps: Sequence[bytes] | None = None, xatol: float = 1e-2, scalar_too: bool = False) -> float:
    """Statement 12.10: sup over diagonal slopes S_k in [0, I] of ||X_1 S_1 X_2 S_2 ... X_m|| <= sqrt(lambda_max(G_m)),
    G_1 = X_1^T X_1, G_{k+1} = t_k^2 X_{k+1}^T (2 t_k I - G_k)^{-1} X_{k+1} for any t_k > lambda_max(G_k) / 2 (chosen
    greedily), or the diagonal-multiplier form G_{k+1} = X^T T (2T - G_k)^{-1} T X (``diag_steps`` > 0: Adam on
    log T from the best scalar t, kept only if better and 2T - G_k passes Cholesky with a margin).
    With m = 2 and diag_steps = 0 this is the pair bound of Statement 12.2. t_k is chosen on Krylov estimates; the
    last G_m is not needed: lambda_max(G_m) is computed on the smaller Gram side (:class:`_ScaledGram`). While the
    bound cache is on, the states G_k of prefixes are stored and reused (``_STATE``; ``_fps``: the factors'
    fingerprints if already computed). ``xatol``: tolerance of the scalar search (in log(2t/lambda_max - 1));
    ``scalar_too``: where the last step used diagonal multipliers, the bound is the smaller of that value and the
    scalar one at the chosen t (both valid)."""
    from scipy.optimize import minimize_scalar

    mats = [np.asarray(X, float) for X in mats]
    for a, b in zip(mats[:-1], mats[1:]):
        if a.shape[1] != b.shape[0]:
            raise ProbPruneError(f"sproc_chain_bound: shapes {a.shape} and {b.shape} do not compose")
    if any(not np.any(X) for X in mats):
        return 0.0
    use_state = _CACHE_ON.get() and len(mats) >= 2
    fps = (list(_fps) if _fps is not None else [fingerprint(X) for X in mats]) if use_state else None

    def skey(k):  # the state after the factors 0..k
        return ("G", tuple(fps[:k + 1]), int(diag_steps), int(diag_max_dim), float(xatol), PAIR_REL)

    G, start = None, 0
    if use_state:
        for k in range(len(mats) - 2, 0, -1):
            st = _state_get(skey(k))
            if st is not None:
                G, start = st, k
                break
    if G is None:
        G = mats[0].T @ mats[0]
    val = None
    clock = StepClock()
    for step in range(start, len(mats) - 1):
        # between the S-procedure steps (a stopped chain returns nothing; stored states stay valid): a step is
        # predicted by the pair-bound model of its middle dimension and by the last measured step of its shape
        X = mats[step + 1]
        d = X.shape[0]
        clock.check(predicted_pair_seconds(d), kind=("sproc", d, X.shape[1], 0 < diag_steps and d <= diag_max_dim))
        last = step == len(mats) - 2
        lam, V = _eigh_kept((G + G.T) / 2, skey(step) if use_state else None)
        slack = (G.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(G))
        lam, VX, SG, lmax, weights = _scalar_sproc(lam, V, X, slack)

        def est(logs):
            return SG.estimate(weights(logs))

        res = minimize_scalar(est, bounds=(-12.0, 6.0), method="bounded", options={"xatol": xatol})
        best = float(res.x) if res.success and float(res.fun) <= est(0.0) else 0.0
        t_scalar = lmax / 2 * (1 + math.exp(best))
        use_diag = 0 < diag_steps and G.shape[0] <= diag_max_dim
        # the last step's full G_m only to store it, where forming it is cheap (a later segment may extend the chain)
        keep_last = use_state and last and X.shape[1] <= 512 and X.shape[0] * X.shape[1] ** 2 <= 3e7
        if last:
            Gd = _diagonal_step(G, X, t_scalar, diag_steps, value_only=True, with_G=keep_last) if use_diag else None
            if keep_last and Gd is not None:
                Gd, G_last = Gd
            if Gd is None:
                w = weights(best)
                val = SG.exact(w)
                if keep_last:
                    G_last = (VX * w[:, None]).T @ VX
            else:
                val = min(Gd, SG.exact(weights(best))) if scalar_too else Gd
            if keep_last:
                _state_put(skey(step + 1), G_last)
        else:
            Gd = _diagonal_step(G, X, t_scalar, diag_steps) if use_diag else None
            w = weights(best)
            G = (VX * w[:, None]).T @ VX if Gd is None else Gd
            if use_state:
                _state_put(skey(step + 1), G)
    return math.sqrt(max(val, 0.0)) * (1 + PAIR_REL * len(mats))


def _diag_factor(Gs: np.ndarray, T: np.ndarray, margin: float):
    """Lower Cholesky factor of 2 diag(T) - Gs - margin I, or None if it does not factorise."""
    from scipy.linalg import cholesky

    A = 2 * np.diag(T) - Gs - margin * np.eye(Gs.shape[0])
    try:
        return cholesky(A, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None


def _diag_objective(Gs: np.ndarray, X: np.ndarray, T: np.ndarray, margin: float, grad: bool = True):
    """(lambda_max(X^T T (2T - Gs - margin I)^{-1} T X), its gradient in log T or None); (None, None) where the
    matrix 2T - Gs - margin I does not factorise. Gradient by Danskin's theorem: with q the top unit eigenvector,
    z = X q and u = (2T - Gs - margin I)^{-1} T z, d lambda / d log T_j = T_j (2 z_j u_j - 2 u_j^2)."""
    from scipy.linalg import cho_solve, eigh, solve_triangular

    L = _diag_factor(Gs, T, margin)
    if L is None:
        return None, None
    Y = solve_triangular(L, T[:, None] * X, lower=True, check_finite=False)  # G' = Y^T Y
    small = Y.shape[0] <= Y.shape[1]
    K = Y @ Y.T if small else Y.T @ Y
    d = K.shape[0]
    lam, vec = eigh((K + K.T) / 2, subset_by_index=[d - 1, d - 1], check_finite=False)
    lam = float(lam[0])
    if not grad:
        return lam, None
    q = Y.T @ vec[:, 0] if small else vec[:, 0]  # top eigenvector of G' (unnormalised when small)
    q = q / max(np.linalg.norm(q), 1e-300)
    z = X @ q
    u = cho_solve((L, True), T * z, check_finite=False)
    return lam, T * (2 * z * u - 2 * u * u)


def adam_log_multipliers(evaluate, t0: float, n: int, steps: int, stop: float = math.inf, lr: float = 0.05,
                         lr_end: float = 1.0, recover: bool = False):
    """Adam (Kingma & Ba; step ``lr``, default 0.05, betas 0.9 / 0.999) on log T for a diagonal S-procedure multiplier
    T (Statements 12.10, 12.60), from T = t0 1. ``evaluate(T, grad)`` returns (value, gradient in log T or None,
    payload), or None where T is not admissible (then back to the best T, half the step); ``t0`` may be a vector (the
    start T itself) and ``lr`` a vector (a step per coordinate). Each of the ``steps``
    iterations evaluates the current T; the loop also ends at time ``stop`` (time.perf_counter()). ``lr_end`` < 1:
    the step decays from ``lr`` to ``lr_end`` x ``lr`` (cosine) over the ``steps`` iterations or, where ``stop`` is
    predicted to come first (from the first step's time, measured once), over the steps predicted to fit: a count,
    so that where the time does not bind the result does not depend on the machine's speed. ``recover``: after an
    inadmissible T the momentum restarts and the halved step grows back (x 1.5 per admissible step, up to the
    schedule's) instead of staying halved for the rest of the run. Returns
    ((value, T, payload) at t0 1, (value, T, payload) of the smallest value seen), or None if t0 1 is not admissible."""
    logt = np.log(np.broadcast_to(np.asarray(t0, float), (n,))).copy()  # t0: a scalar or a start vector
    first = evaluate(np.exp(logt), False)
    if first is None:
        return None
    start = best = (first[0], np.exp(logt), first[2])
    b1, b2, eps_a = 0.9, 0.999, 1e-8
    m1, m2, it = np.zeros(n), np.zeros(n), 0
    t_start = time.perf_counter()
    horizon = steps  # the decay's length in steps (fewer where the first step predicts that stop comes first)
    cut = 1.0  # the step's factor after inadmissible points (recover: it grows back)
    for j in range(steps):
        if time.perf_counter() > stop:
            break
        T = np.exp(logt)
        e = evaluate(T, True)
        if e is None:  # left the feasible set: back to the best point, smaller steps
            logt = np.log(best[1])
            cut *= 0.5
            if recover:
                m1 = np.zeros(n)
            continue
        if recover:
            cut = min(1.0, cut * 1.5)
        v, g, payload = e
        if v < best[0]:
            best = (v, T, payload)
        it += 1
        m1 = b1 * m1 + (1 - b1) * g
        m2 = b2 * m2 + (1 - b2) * g * g
        if it == 1 and lr_end < 1 and math.isfinite(stop):
            dt = time.perf_counter() - t_start
            if dt > 0 and (stop - t_start) / dt < steps:
                horizon = max(1, int((stop - t_start) / dt))
        decay = lr_end + (1 - lr_end) * 0.5 * (1 + math.cos(math.pi * min(j / horizon, 1.0)))
        logt = logt - cut * decay * lr * (m1 / (1 - b1 ** it)) / (np.sqrt(m2 / (1 - b2 ** it)) + eps_a)
    return start, best


def _diagonal_step(G: np.ndarray, X: np.ndarray, t0: float, steps: int, value_only: bool = False,
                   with_G: bool = False):
    """One step of Statement 12.10 with a diagonal multiplier T (LipSDP-Neuron style): G' = X^T T (2T - G)^{-1} T X,
    valid whenever 2T - G > 0. T starts at t0 I and is improved by Adam on log T (lambda_max of G' as objective,
    gradient by Danskin: with q the top eigenvector of G', z = X q and u = (2T - G)^{-1} T z,
    d lambda / d log T_j = T_j (2 z_j u_j - 2 u_j^2)); the best T whose 2T - G passes a Cholesky test with a margin is
    used (the final G' is recomputed from that verified factor). Returns G' (``value_only``: its largest eigenvalue,
    from the smaller Gram side; with ``with_G`` the pair (value, G')) or None (no improvement)."""
    from scipy.linalg import solve_triangular

    Gs = (G + G.T) / 2
    n = Gs.shape[0]
    margin = 1e-9 * float(np.linalg.norm(Gs)) + 1e-300

    def evaluate(T, grad: bool):
        v, g = _diag_objective(Gs, X, T, margin, grad)
        return None if v is None else (v, g, None)

    found = adam_log_multipliers(evaluate, t0, n, steps)
    if found is None:
        return None
    (v0, _, _), (best_v, T, _) = found
    if best_v >= v0 * (1 - 1e-6):
        return None
    L = _diag_factor(Gs, T, margin)  # verified positive definite above (Cholesky)
    if L is None:
        return None
    Y = solve_triangular(L, T[:, None] * X, lower=True, check_finite=False)
    if value_only:  # lambda_max(Y^T Y) on the smaller side
        v = _top_eig(Y @ Y.T if Y.shape[0] <= Y.shape[1] else Y.T @ Y)
        return (v, Y.T @ Y) if with_G else v
    return Y.T @ Y


POOL_GAMMAS = (1.0,)  # exponents gamma of T = alpha diag(G)^gamma tried at a max-pool step (Statement 12.41;
# (0, 0.5, 1) measured on LeNet-5 q = 0.6: 89.85 in 13 s against 90.38 in 5 s for (1,) alone)
POOL_SHRINKS = (0.0,)  # window shapes s tried at a max-pool step (0: Q_j = I; 0.5/0.75/0.9 measured: no gain, 3x time)
POOL_MAX_STATES = 9  # alternatives kept along a segment (the smallest lambda_max; 9 = all for two blocks)
POOL_SEGMENT_MAX_DIM = 1024  # segments through a max-pool block only for factors up to this size (cost; at 4096 the
# 16x16 max-pool CNN of the benchmark took 161 s instead of 35 s for 11.92 -> 11.33)


def block_windows(F: Chain, first: int, last: int) -> np.ndarray:
    """The 0/1 incidence matrix J (block outputs x block inputs) of a max-pool block (stages first..last, Statement
    12.17): J_ji = 1 iff input i can reach output j, i.e. the support of |M_last| ... |M_first| (products of absolute
    values; any slope product over the block is supported inside it). Statement 12.41."""
    A = np.abs(F.stages[last].M)
    for j in range(last - 1, first - 1, -1):
        A = A @ np.abs(F.stages[j].M)
    return (A > 0).astype(float)


def _pool_lift(G: np.ndarray, J: np.ndarray, gamma: float, shrink: float, d: np.ndarray | None = None) -> np.ndarray:
    """Statement 12.41: a diagonal T = alpha diag(G)^gamma with T >= G (alpha = lambda_max(D^-1/2 G D^-1/2) for
    D = diag(G)^gamma, padded up by a rounding allowance and multiplied by 1 + 1e-9; coordinates with G_jj = 0 get
    D_jj = the largest diagonal), lifted to the block's input: sum_j T_j Q_j on the coordinates of window j, with
    Q_j = (1/(K s)) 11^T/K + ((K - 1)/(K (1 - s))) (I - 11^T/K), K = |window j|, s = max(shrink, 1/K) in (0, 1)
    (Q_j >= e_i e_i^T for every i in the window; s = 1/K gives Q_j = I). ``d`` > 0: use D = diag(d) instead of
    diag(G)^gamma (any positive D is valid: alpha is computed for it)."""
    Gs = (G + G.T) / 2
    g = np.clip(np.diag(Gs).copy(), 0.0, None)
    gmax = float(g.max()) if g.size else 0.0
    n_in = J.shape[1]
    if gmax <= 0.0:
        return np.zeros((n_in, n_in))
    g = np.where(g > 0, g, gmax)
    d = g ** gamma if d is None else np.asarray(d, float)
    r = 1.0 / np.sqrt(d)
    K = Gs * r[:, None] * r[None, :]
    slack = (K.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(K))
    alpha = (max(_top_eig((K + K.T) / 2), 0.0) + slack) * (1 + 1e-9)
    t = alpha * d
    out = np.zeros((n_in, n_in))
    for j in range(J.shape[0]):
        idx = np.flatnonzero(J[j])
        k = idx.size
        if k == 0:
            continue
        if k == 1:
            out[idx[0], idx[0]] += t[j]
            continue
        sh = max(float(shrink), 1.0 / k)
        a_mean = 1.0 / (k * sh)  # on the mean direction (projector 11^T / k)
        b_rest = (k - 1) / (k * (1.0 - sh))  # on its complement
        Q = b_rest * np.eye(k) + (a_mean - b_rest) * np.ones((k, k)) / k
        out[np.ix_(idx, idx)] += t[j] * Q
    return out * (1 + 1e-12)


POOL_OPT_STEPS = 8  # L-BFGS iterations choosing the diagonal D of T = alpha D at a max-pool step (0: off;
# LeNet-5 q = 0.6, load 3: 0 -> 90.38 in 2.5 s, 8 -> 77.62 in 5.8 s, 20 -> 76.11 in 8.1 s, 40 -> 75.44 in 18 s)


def _opt_pool_weights(G: np.ndarray, J: np.ndarray, X: np.ndarray) -> np.ndarray:
    """A GUESS of the diagonal D (T = alpha(D) D >= G, alpha(D) = lambda_max(D^-1/2 G D^-1/2)) minimising
    alpha(D) lambda_max(X^T diag(J^T d) X), the state after the block and the next factor (Statement 12.41 with the
    exact diagonal-state step): L-BFGS on log d from d = diag(G), gradients by Danskin's theorem. The bound is then
    computed for the returned d by :func:`_pool_lift` (any d > 0 is valid)."""
    from scipy.optimize import minimize

    Gs = (G + G.T) / 2
    g = np.clip(np.diag(Gs).copy(), 0.0, None)
    if not g.size or g.max() <= 0:
        return np.ones(G.shape[0])
    g = np.where(g > 0, g, g.max())

    def fg(logd):
        d = np.exp(logd)
        r = 1.0 / np.sqrt(d)
        la, pa = np.linalg.eigh(Gs * r[:, None] * r[None, :])
        a, p = float(la[-1]), pa[:, -1]
        c = J.T @ d
        K = (X * c[:, None]).T @ X
        lm, qm = np.linalg.eigh((K + K.T) / 2)
        m, q = float(lm[-1]), qm[:, -1]
        Xq2 = (X @ q) ** 2
        dm = d * (J @ Xq2)  # d m / d log d_j
        da = -p * (Gs @ (r * p)) * r  # d alpha / d log d_j  (= -p_j (G R p)_j d_j^{-1/2})
        return a * m, a * dm + m * da

    x0 = np.log(g)
    try:
        res = minimize(fg, x0, jac=True, method="L-BFGS-B", bounds=[(v - 20, v + 20) for v in x0],
                       options={"maxiter": POOL_OPT_STEPS})
        x = res.x if np.all(np.isfinite(res.x)) else x0
    except (np.linalg.LinAlgError, ValueError):
        x = x0
    return np.exp(x)


def pool_chain_prefix_bounds(mats: Sequence, xatol: float = 1e-2, min_len: int = 2) -> list:
    """Statement 12.41 (with 12.10): sup over diagonal slopes in [0, I] between neighbours and over every slope
    assignment inside the max-pool blocks of ||X_1 S X_2 S ... X_m||, where a factor given as ("pool", J) stands for a
    max-pool block with window incidence J (its slope product has rows that are probability vectors supported on the
    windows, Statement 12.17). Matrix steps are Statement 12.10's scalar step; at a block the state G (a quadratic
    form on the block's output) becomes sum_j T_j Q_j (:func:`_pool_lift`, a form on the block's input after the slope
    before it) for a diagonal T = diag(t) >= G; several (T, Q) are tried and the minimum over the alternatives is
    taken at the end (at most POOL_MAX_STATES kept). Any choice is valid. Returns the bounds of the prefixes
    X_1..X_j for j = min_len..m in one pass (each prefix's bound is the same recursion stopped there)."""
    from scipy.optimize import minimize_scalar

    def is_pool(X):
        return isinstance(X, tuple) and X[0] == "pool"

    zero = [(not is_pool(X)) and not np.any(X) for X in mats]
    if any(zero):  # a zero factor: every prefix containing it is 0; the shorter ones are computed on the rest
        z = zero.index(True)
        head = pool_chain_prefix_bounds(mats[:z], xatol, min_len) if z >= min_len else []
        return head + [0.0] * (len(mats) - max(z + 1, min_len) + 1)

    def step(G, X):
        """Statement 12.10's scalar step through a slope diagonal in [0, I] and the factor X; for a diagonal state
        diag(c), c >= 0, the exact sup_D (D y)^T diag(c) (D y) <= y^T diag(c) y gives X^T diag(c) X."""
        c = np.diag(G)
        if np.all(c >= 0) and not np.any(G - np.diag(c)):
            return (X * c[:, None]).T @ X
        Gs = (G + G.T) / 2
        lam, V = np.linalg.eigh(Gs)
        slack = (G.shape[0] + 10) * np.finfo(float).eps * float(np.linalg.norm(G))
        lam, VX, SG, lmax, weights = _scalar_sproc(lam, V, X, slack)

        res = minimize_scalar(lambda x: SG.estimate(weights(x)), bounds=(-12.0, 6.0), method="bounded",
                              options={"xatol": xatol})
        best = float(res.x) if res.success and float(res.fun) <= SG.estimate(weights(0.0)) else 0.0
        w = weights(best)
        return (VX * w[:, None]).T @ VX

    def lookahead(k):
        """the first factor after position k that is not an exact identity (None: a block or the end first)."""
        for X in mats[k + 1:]:
            if is_pool(X):
                return None
            X = np.asarray(X, float)
            if not (X.shape[0] == X.shape[1] and np.array_equal(X, np.eye(X.shape[0]))):
                return X
        return None

    def advance(states, k):
        X = mats[k]
        if not is_pool(X):
            return [step(G, np.asarray(X, float)) for G in states]
        Xn = lookahead(k) if POOL_OPT_STEPS > 0 else None
        if Xn is not None:  # D chosen for the state after the next factor (started at gamma = 1)
            return [_pool_lift(G, X[1], 1.0, 0.0, d=_opt_pool_weights(G, X[1], Xn)) for G in states]
        return [_pool_lift(G, X[1], gm, sh) for G in states for gm in POOL_GAMMAS for sh in POOL_SHRINKS]

    X0 = mats[0]
    if is_pool(X0):  # a leading block: ||P y||^2 <= sum_j max_{i in window j} y_i^2 <= y^T (sum_j Q_j) y
        J = X0[1]
        states = [_pool_lift(np.eye(J.shape[0]), J, 0.0, sh) for sh in POOL_SHRINKS]
    else:
        X0 = np.asarray(X0, float)
        states = [X0.T @ X0]
    out = []
    clock = StepClock()
    for k in range(1, len(mats)):
        X = mats[k - 1]  # between the steps of a max-pool segment (a stopped segment returns nothing)
        d = X[1].shape[1] if is_pool(X) else np.shape(X)[1]
        clock.check(predicted_pair_seconds(d), kind=("pool", d, is_pool(mats[k])))
        states = advance(states, k)
        if len(states) > POOL_MAX_STATES:  # keep the best alternatives so far (any subset is valid)
            vals = [_top_eig((G + G.T) / 2) for G in states]
            states = [states[i] for i in np.argsort(vals)[:POOL_MAX_STATES]]
        if k >= min_len - 1:
            val = min(_top_eig((G + G.T) / 2) for G in states)
            out.append(math.sqrt(max(val, 0.0)) * (1 + PAIR_REL * (k + 1)))
    return out


def pool_chain_bound(mats: Sequence, xatol: float = 1e-2) -> float:
    """Statement 12.41: the bound of the whole product X_1 .. X_m (see :func:`pool_chain_prefix_bounds`)."""
    return pool_chain_prefix_bounds(mats, xatol, min_len=len(mats))[-1]


def _pair_cache(F: Chain, Fhat: Chain, extra: dict | None = None, pool_segments: bool = False,
                segment_max_dim: int | None = None):
    """Pair bounds between named factors: ("M", i) = M_i, ("E", i) = M_i - Mhat_i, ("H", i) = Mhat_i, and any
    ``extra`` factors (e.g. ("w", i): a vector as a one-column matrix). Values are memoised per call (lru_cache) and
    across calls by the content fingerprints of the factors (:func:`_cached`): the same matrices give the same float.
    ``segment_max_dim``: the largest factor dimension of a longer segment (default SEGMENT_MAX_DIM); ``pool_segments``:
    segments through max-pool blocks (Statement 12.41)."""
    seg_dim = SEGMENT_MAX_DIM if segment_max_dim is None else int(segment_max_dim)
    mats = {}
    for i, (s, sh) in enumerate(zip(F.stages, Fhat.stages)):
        mats[("M", i)] = s.M
        mats[("E", i)] = stage_diff(F, Fhat, i)[0]
        mats[("H", i)] = sh.M
    mats.update(extra or {})
    fp = fingerprint_memo(mats)

    @lru_cache(maxsize=None)
    def pb(kind_a, i, kind_b, j):
        check_deadline()
        A, B = mats[(kind_a, i)], mats[(kind_b, j)]

        if not (DIAG_STEPS > 0 and A.shape[1] <= DIAG_MAX_DIM):  # wider: no diagonal multipliers (cost)
            return scalar_pair_bound(A, B, fp((kind_a, i)), fp((kind_b, j)), skip_if_late=True)

        def compute():  # (not cached: a pair bound cannot be stopped inside, do not start one that cannot end)
            check_deadline(predicted_pair_seconds(A.shape[1], A.shape[0], B.shape[1]))
            # Statement 12.10 with m = 2: the scalar pair bound of Statement 12.2 at the chosen t and the diagonal
            # multipliers started there, the smaller of the two (the state after the pair is reused by segments)
            return sproc_chain_bound([A, B], diag_steps=DIAG_STEPS, _fps=(fp((kind_a, i)), fp((kind_b, j))),
                                     scalar_too=True)

        return _cached(("pair", fp((kind_a, i)), fp((kind_b, j)), DIAG_STEPS, DIAG_MAX_DIM, PAIR_REL), compute)

    @lru_cache(maxsize=None)
    def seg(keys: tuple):
        check_deadline()
        ms = [mats[k] for k in keys]
        if any(max(m.shape) > seg_dim for m in ms):
            return math.inf

        def compute():
            fs = [fp(k) for k in keys]
            b = sproc_chain_bound(ms, diag_steps=0, _fps=fs)
            if DIAG_STEPS > 0 and any(m.shape[1] <= DIAG_MAX_DIM for m in ms[:-1]):  # else the same scalar bound
                b = min(b, sproc_chain_bound(ms, diag_steps=DIAG_STEPS, _fps=fs))
            return b

        return _cached(("segment", tuple(fp(k) for k in keys), DIAG_STEPS, DIAG_MAX_DIM, PAIR_REL), compute)

    pb.segment = seg
    pb.pool_segment = _pool_segment_fn(F, mats, fp) if pool_segments else None
    return pb


def _pool_segment_fn(F: Chain, mats: dict, fp, max_len: int = 0):
    """Segments through max-pool blocks ("B", first) by Statement 12.41 (:func:`pool_chain_bound`), memoised per
    call and by content (the factors' fingerprints and the block's window incidence). ``max_len`` > 0: segments of at
    most that many factors (the cheap variant)."""
    ends = {a: b for a, b, _ in getattr(F, "lip_blocks", ())}
    wins: dict = {}

    def factor(k):
        if k[0] == "B":
            if k not in wins:
                J = block_windows(F, k[1], ends[k[1]])
                wins[k] = (J, fingerprint(J))
            return ("pool", wins[k][0]), wins[k][1]
        return mats[k], fp(k)

    @lru_cache(maxsize=None)
    def pseg(keys: tuple):
        """bounds of the segments keys[:j+1], j = 1..len(keys)-1 (one pass, Statement 12.41)."""
        check_deadline()
        fs = [factor(k) for k in keys]
        big = [max(X[1].shape if isinstance(X, tuple) else X.shape) > POOL_SEGMENT_MAX_DIM for X, _ in fs]
        if any(big):  # only the prefixes before the first too-large factor
            cut = big.index(True)
            fs = fs[:cut]
        if max_len:
            fs = fs[:max_len]
        if len(fs) < 2:
            return [math.inf] * (len(keys) - 1)
        vals = _cached(("pool-segment", tuple(f for _, f in fs), POOL_GAMMAS, POOL_SHRINKS, POOL_MAX_STATES,
                        POOL_OPT_STEPS, PAIR_REL), lambda: tuple(pool_chain_prefix_bounds([X for X, _ in fs])))
        return list(vals) + [math.inf] * (len(keys) - 1 - len(vals))

    return pseg


def chain_product_bound(factors: list[tuple[str, int]], single: dict, pb) -> float:
    """Best grouping of a product of factors (left to right, ReLU slopes between neighbours) into single norms and
    adjacent pair bounds: f(k) = min(single_k f(k+1), pair_{k,k+1} f(k+2)) (Statement 12.3)."""
    n = len(factors)
    f = [1.0] * (n + 2)

    def mul(a: float, b: float) -> float:  # a zero factor makes the product zero, also against an inf bound
        return 0.0 if a == 0.0 or b == 0.0 else a * b

    seg = getattr(pb, "segment", None)
    pseg = getattr(pb, "pool_segment", None)
    for k in range(n - 1, -1, -1):
        best = mul(single[factors[k]], f[k + 1])
        if k + 1 < n and factors[k][0] != "B" and factors[k + 1][0] != "B":
            best = min(best, mul(pb(factors[k][0], factors[k][1], factors[k + 1][0], factors[k + 1][1]), f[k + 2]))
        if seg is not None:  # longer segments by the S-procedure chain bound (Statement 12.10)
            for j in range(k + 2, n):
                if any(fk[0] == "B" for fk in factors[k:j + 1]):
                    break
                best = min(best, mul(seg(tuple(factors[k:j + 1])), f[j + 1]))
        if pseg is not None and any(fk[0] == "B" for fk in factors[k:]):  # through max-pool blocks (12.41)
            row = pseg(tuple(factors[k:]))
            for j in range(k + 1, n):
                if any(fk[0] == "B" for fk in factors[k:j + 1]):
                    best = min(best, mul(row[j - k - 1], f[j + 1]))
        f[k] = best
    return f[0]


def lip_blocks(F: Chain, n: StageNorms) -> dict:
    """{first: (last, L)} for the parameter-free Lipschitz blocks of the chain (max pooling, Statement 12.17)."""
    return {a: (b, L) for a, b, L in getattr(F, "lip_blocks", ())
            if all(n.E[i] == 0 and n.bias_diff[i] == 0 for i in range(a, b + 1))}


def collapse_blocks(factors: list, blocks: dict, single: dict) -> list:
    """Replace every run ("M" or "H", last) ... (same kind, first) of a block's stages (descending, as in the
    unrolling) by one factor ("B", first) of norm L (Statement 12.17: the slope product over a max-pool block has
    rows that are probability vectors over windows, norm <= sqrt(c_max), for ANY slopes); no pair bound across it."""
    if not blocks:
        return factors
    ends = {b: (a, L) for a, (b, L) in blocks.items()}
    out, k = [], 0
    while k < len(factors):
        kind, j = factors[k]
        if kind in ("M", "H") and j in ends:
            a, L = ends[j]
            run = [(kind, t) for t in range(j, a - 1, -1)]
            if factors[k:k + len(run)] == run:
                out.append(("B", a))
                single[("B", a)] = L
                k += len(run)
                continue
        out.append(factors[k])
        k += 1
    return out


def lemma_a_pairs(F: Chain, Fhat: Chain, radius: float = 1.0, norms: StageNorms | None = None,
                  max_pair_dim: int = 4096) -> float:
    """Statement 12.3: ||F(x) - F_hat(x)|| <= sum_i pi_i (||E_i|| beta_{i-1} + ||b_i - bhat_i||) with pi_i a bound
    on sup_S ||M_L S M_{L-1} ... M_{i+1} S_i|| (pairs where they pay), and the E-term sharpened by pairing E_i
    with M_{i+1}: sup ||M_{i+1} S E_i shat|| <= pair(M_{i+1}, E_i) beta_{i-1}. beta_i bounds ||shat_i||."""
    n = norms or stage_norms(F, Fhat)
    L = F.depth
    dims_ok = all(s.M.shape[1] <= max_pair_dim and s.M.shape[0] <= max_pair_dim for s in F.stages)
    pb = _pair_cache(F, Fhat) if dims_ok else (lambda *a: math.inf)
    single = {("M", i): n.M[i] for i in range(L)}
    single.update({("E", i): n.E[i] for i in range(L)})
    blocks = lip_blocks(F, n)
    beta = [float(radius)]
    for i in range(L - 1):
        beta.append(n.Mhat[i] * beta[-1] + n.bias_hat[i])
        for a, (b, Lb) in blocks.items():
            if i == b:  # ||shat|| after a block: L times before it (Statement 12.17)
                beta[-1] = min(beta[-1], Lb * beta[a])
    total = 0.0
    for i in range(L):
        prefix = collapse_blocks([("M", j) for j in range(L - 1, i, -1)], blocks, single)
        if n.E[i] > 0:
            total += chain_product_bound(prefix + [("E", i)], single, pb) * beta[i]
        if n.bias_diff[i] > 0:
            total += (chain_product_bound(prefix, single, pb) if prefix else 1.0) * n.bias_diff[i]
    return float(total) * (1 + 1e-9)


@dataclass(frozen=True)
class ComposedResult:
    """Norm-based certificates on the composed chain (§12.1-§12.3), with per-stage diagnostics."""

    fwd: float
    bwd: float
    pairs: float
    norms: StageNorms
    stage_names: tuple[str, ...]
    stage_ops: tuple[tuple[str, ...], ...]

    @property
    def eps(self) -> float:
        return min(self.fwd, self.bwd, self.pairs)


def certify_composed(F: Chain, Fhat: Chain, radius: float = 1.0, pairs: bool = True) -> ComposedResult:
    n = stage_norms(F, Fhat)
    fwd, bwd = lemma_a_composed(F, Fhat, radius, n)
    pr = lemma_a_pairs(F, Fhat, radius, n) if pairs else math.inf
    return ComposedResult(fwd, bwd, pr, n, tuple(s.name for s in F.stages), tuple(s.ops for s in F.stages))
