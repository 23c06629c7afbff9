"""Exact subset-sum solver: meet-in-the-middle (MITM), vectorised over many targets (THEORY.md §4.6).

Problem (§4.6): given coefficients c in R^n and a target z, find x in {0,1}^n

* ``mode="closest"``: minimising |z - c^T x|;
* ``mode="sparsest"``: minimising the number of terms 1^T x subject to |z - c^T x| <= eps; among the subsets
  with the fewest terms the one with the smallest error is returned (lexicographic objective). If no subset is
  within eps, the target is a *failure*: ``success`` is False and the closest subset is returned instead.

Both modes are solved **exactly** (up to float64 rounding of the sums, ~1e-15): the 2^n subset sums are split
as A + B with A the 2^floor(n/2) sums of the first half and B the 2^ceil(n/2) sums of the second; B is sorted
once per coefficient set and every (target, a) pair is answered with one binary search for z - a in B
(``torch.searchsorted``; both neighbours are checked). All targets that share one coefficient set (a row)
reuse that row's sorted B. For "sparsest" the half-sums are grouped by popcount; total size k = p + q is
tried in increasing order, each (p, q) pair searching z - A_p in the sorted B_q, and a target leaves the loop
as soon as one k succeeds, so small subsets are cheap. Cost: O(2^{n/2} (n + m)) per row for "closest".

Provenance: the algorithm is the textbook Horowitz-Sahni MITM, stated in §4.6 [D]; the popcount grouping for
the sparsest mode is derived here [D].

Layout of inputs: ``coeffs`` is (n,) (one shared set) or (R, n) (one set per row); ``targets`` is (m,) or
(R, m) and row r's targets use row r's coefficients. Subsets come back as boolean arrays (..., m, n).
"""
from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError, check_finite_array

MAX_N = 48  # 2^24 half-sums per row: the practical limit of MITM in memory
MODES = ("closest", "sparsest")
_CHUNK = 1 << 23  # max queries per searchsorted call (memory bound, ~ 200 MB of temporaries)


@dataclass(frozen=True)
class SubsetSumResult:
    """Result of a subset-sum solve. Arrays have the shape of ``targets`` (plus a last axis n for ``subset``).

    ``error`` = |target - achieved|; ``success`` = error <= eps (+ float tolerance ``tol``), all True in
    "closest" mode without eps; ``n_terms`` = subset sizes. ``method`` is "mitm", "brute" or "milp"."""

    subset: np.ndarray
    achieved: np.ndarray
    error: np.ndarray
    success: np.ndarray
    n_terms: np.ndarray
    mode: str
    eps: float | None
    n: int
    method: str
    tol: float = 0.0
    assumptions: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_failures(self) -> int:
        return int(np.size(self.success) - np.count_nonzero(self.success))

    def summary(self) -> dict:
        e = np.asarray(self.error)
        return {
            "mode": self.mode,
            "method": self.method,
            "n": self.n,
            "eps": self.eps,
            "targets": int(e.size),
            "successes": int(np.count_nonzero(self.success)),
            "failures": self.n_failures,
            "max_error": float(e.max()) if e.size else 0.0,
            "mean_error": float(e.mean()) if e.size else 0.0,
            "mean_terms": float(np.mean(self.n_terms)) if e.size else 0.0,
            "total_terms": int(np.sum(self.n_terms)),
        }


# --------------------------------------------------------------------------------------------- validation
def validate(coeffs, targets, eps, mode, on_uncoverable="raise"):
    """Shape/value checks shared by all solvers. Returns float64 arrays c (R, n), z (R, m), the batch shape flag
    and eps (float or None). Raises :class:`ProbPruneError` with a one-line message on bad input."""
    if mode not in MODES:
        raise ProbPruneError(f"mode must be one of {MODES}, got {mode!r}")
    if on_uncoverable not in ("raise", "report"):
        raise ProbPruneError(f"on_uncoverable must be 'raise' or 'report', got {on_uncoverable!r}")
    c = check_finite_array(coeffs, "coefficients")
    z = check_finite_array(targets, "targets")
    if c.ndim not in (1, 2):
        raise ProbPruneError(f"coefficients must be a vector (n,) or a matrix (rows, n), got shape {c.shape}")
    n = c.shape[-1]
    if n < 1:
        raise ProbPruneError("need n >= 1 coefficients, got n = 0")
    if n > MAX_N:
        raise ProbPruneError(f"n = {n} coefficients is beyond the exact MITM solver's limit of {MAX_N}")
    batched = c.ndim == 2
    if batched:
        if z.ndim == 1:
            if z.shape[0] != c.shape[0]:
                raise ProbPruneError(
                    f"targets shape {z.shape} does not match {c.shape[0]} coefficient rows; pass (rows, m)"
                )
            z = z[:, None]
            squeeze = True
        elif z.ndim == 2 and z.shape[0] == c.shape[0]:
            squeeze = False
        else:
            raise ProbPruneError(f"targets shape {z.shape} does not match coefficient rows {c.shape[0]}")
        C, Z = c, z
    else:
        if z.ndim > 1:
            raise ProbPruneError(f"with one coefficient vector, targets must be a scalar or a vector, got {z.shape}")
        squeeze = z.ndim == 0
        C, Z = c[None, :], np.atleast_1d(z)[None, :]
    if eps is not None:
        eps = float(np.asarray(eps))
        if not math.isfinite(eps) or eps <= 0:
            raise ProbPruneError(f"eps must be a finite number > 0, got {eps!r}")
    elif SOLVE_MODES[mode].needs_eps:
        raise ProbPruneError(f"mode {mode!r} needs a tolerance eps > 0")
    if on_uncoverable == "raise":
        lo = np.minimum(C, 0).sum(axis=1, keepdims=True) - (eps or 0.0)
        hi = np.maximum(C, 0).sum(axis=1, keepdims=True) + (eps or 0.0)
        bad = (Z < lo) | (Z > hi)
        if np.any(bad):
            r, k = np.argwhere(bad)[0]
            raise ProbPruneError(
                f"{int(bad.sum())} target(s) outside the coverable range: e.g. target {Z[r, k]:.6g} is outside "
                f"[{lo[r, 0]:.6g}, {hi[r, 0]:.6g}] (sum of negative / positive coefficients"
                f"{' -/+ eps' if eps else ''})"
            )
    return C, Z, batched, squeeze, eps


def _float_tol(C: np.ndarray, Z: np.ndarray) -> float:
    """Round-off allowance for comparing a recomputed |z - c^T x| with eps (a few ulps of the largest sum)."""
    scale = float(np.abs(C).sum(axis=1).max(initial=0.0) + np.abs(Z).max(initial=0.0))
    return 64 * np.finfo(float).eps * max(scale, 1.0)


# --------------------------------------------------------------------------------------------- half sums
def half_sums(c: np.ndarray) -> np.ndarray:
    """All 2^h subset sums of the last axis of ``c`` (..., h); index i's binary digits are the subset (bit j =
    coefficient j). Built by doubling, so each sum is an exact left-to-right float64 accumulation."""
    c = np.asarray(c, dtype=float)
    out = np.zeros(c.shape[:-1] + (1,))
    for j in range(c.shape[-1]):
        out = np.concatenate([out, out + c[..., j : j + 1]], axis=-1)
    return out


def _popcount(idx: np.ndarray) -> np.ndarray:
    idx = np.asarray(idx, dtype=np.int64)
    cnt = np.zeros(idx.shape, dtype=np.int64)
    x = idx.copy()
    while np.any(x):
        cnt += x & 1
        x >>= 1
    return cnt


def bits_to_subset(bits: np.ndarray, n: int) -> np.ndarray:
    """int64 bit masks -> boolean array (..., n)."""
    bits = np.asarray(bits, dtype=np.int64)
    return ((bits[..., None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def _closest_rows(A, Bs, Bo, Z):
    """Exact closest subset for rows (see :func:`_closest_rows_torch`): the compiled kernel
    :func:`_closest_kernel` (numba, one thread, a two-pointer merge over the sorted half sums) when numba is
    installed, else the vectorised torch path. Both return the same arrays (asserted in the tests)."""
    kernel = _numba_kernel()
    if kernel is None:
        return _closest_rows_torch(A, Bs, Bo, Z)
    R, m = Z.shape
    nA = A.shape[1]
    if m >= 32:  # the same A order as the torch path (ties resolve identically)
        perm = np.argsort(A, axis=1)
        At = np.ascontiguousarray(np.take_along_axis(A, perm, axis=1))
        Aperm = perm.astype(np.int64)
    else:
        At = np.ascontiguousarray(A, dtype=float)
        Aperm = np.broadcast_to(np.arange(nA, dtype=np.int64), (R, nA))
    err = np.empty((R, m))
    ia = np.empty((R, m), dtype=np.int64)
    ib = np.empty((R, m), dtype=np.int64)
    kernel(At, np.ascontiguousarray(Aperm), np.ascontiguousarray(Bs.numpy()), np.ascontiguousarray(Bo.numpy()),
           np.ascontiguousarray(Z, dtype=float), m >= 32, err, ia, ib)
    return err, ia, ib


_KERNEL: list = []


def _numba_kernel():
    """The compiled closest-pair kernel, or None when numba is not installed (compiled once per process; cached on
    disk by numba)."""
    if _KERNEL:
        return _KERNEL[0]
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; the torch path remains correct without it
        _KERNEL.append(None)
        return None

    @numba.njit(cache=True, nogil=True)
    def _closest_kernel(At, Aperm, Bs, Bo, Z, a_sorted, err, ia, ib):  # pragma: no cover - compiled
        R, m = Z.shape
        nA = At.shape[1]
        K2 = Bs.shape[1]
        for r in range(R):
            for t in range(m):
                z = Z[r, t]
                best_hi = np.inf
                best_lo = np.inf
                a_hi = 0
                a_lo = 0
                p_hi = 0
                p_lo = 0
                pos = K2 - 1
                for a in range(nA):
                    q = z - At[r, a]
                    if a_sorted and a > 0:
                        # q decreases with a: move the insertion point down (two-pointer merge)
                        while Bs[r, pos - 1] >= q:
                            pos -= 1
                    else:
                        lo, hi = 0, K2  # left insertion point: first index with Bs >= q
                        while lo < hi:
                            mid = (lo + hi) >> 1
                            if Bs[r, mid] < q:
                                lo = mid + 1
                            else:
                                hi = mid
                        pos = lo
                    dhi = Bs[r, pos] - q
                    dlo = q - Bs[r, pos - 1]
                    if a == 0 or dhi < best_hi:
                        best_hi, a_hi, p_hi = dhi, a, pos
                    if a == 0 or dlo < best_lo:
                        best_lo, a_lo, p_lo = dlo, a, pos
                if best_lo <= best_hi:
                    err[r, t] = best_lo
                    ia[r, t] = Aperm[r, a_lo]
                    ib[r, t] = Bo[r, p_lo - 1]
                else:
                    err[r, t] = best_hi
                    ia[r, t] = Aperm[r, a_hi]
                    ib[r, t] = Bo[r, p_hi]

    _KERNEL.append(_closest_kernel)
    return _closest_kernel


def _closest_rows_torch(A, Bs, Bo, Z):
    """Exact closest subset for rows: A (R, 2^n1) half sums (numpy), Bs/Bo the sorted B padded with -inf/+inf
    sentinels and its original indices (torch, R x (2^n2 + 2)), Z (R, m) targets. Returns (err, ia, ib) numpy
    arrays (R, m). For each (target, a) the nearest b to z - a is one of the two neighbours of the insertion
    point; the sentinels make both always valid, so the two one-sided distances are reduced separately.
    Chunks over rows/targets to bound memory."""
    import torch

    R, m = Z.shape
    nA = A.shape[1]
    err = np.empty((R, m))
    ia = np.empty((R, m), dtype=np.int64)
    ib = np.empty((R, m), dtype=np.int64)
    # sorting A makes the queries z - a monotone along the last axis: cache-friendly binary searches
    if m >= 32:
        perm = np.argsort(A, axis=1)
        At = torch.from_numpy(np.take_along_axis(A, perm, axis=1))
        Aperm = torch.from_numpy(perm.astype(np.int64))
    else:  # too few targets per row for the locality to pay for the sort
        At = torch.from_numpy(np.ascontiguousarray(A))
        Aperm = torch.arange(nA, dtype=torch.int64).expand(R, nA)
    tchunk = max(1, min(m, _CHUNK // nA))
    rchunk = max(1, _CHUNK // (nA * tchunk))
    for r0 in range(0, R, rchunk):
        r1 = min(R, r0 + rchunk)
        rr = r1 - r0
        for t0 in range(0, m, tchunk):
            t1 = min(m, t0 + tchunk)
            tt = t1 - t0
            z = torch.from_numpy(np.ascontiguousarray(Z[r0:r1, t0:t1]))
            q = (z[:, :, None] - At[r0:r1, None, :]).reshape(rr, -1)  # (r, t*nA)
            bs = Bs[r0:r1]
            pos = _searchsorted(bs, q)  # in [1, K+1] thanks to the -inf sentinel
            dhi = (torch.gather(bs, 1, pos) - q).numpy().reshape(rr, tt, nA)  # >= 0
            dlo = (q - torch.gather(bs, 1, pos - 1)).numpy().reshape(rr, tt, nA)  # >= 0
            pos = pos.numpy().reshape(rr, tt, nA)
            # reductions in numpy: torch's min(dim) has a ~ms fixed cost per call that dominates small batches
            a_hi = dhi.argmin(axis=2)[..., None]
            a_lo = dlo.argmin(axis=2)[..., None]
            d_hi = np.take_along_axis(dhi, a_hi, 2)[..., 0]
            d_lo = np.take_along_axis(dlo, a_lo, 2)[..., 0]
            use_lo = d_lo <= d_hi
            a = np.where(use_lo, a_lo[..., 0], a_hi[..., 0])
            jb = np.where(use_lo, np.take_along_axis(pos, a_lo, 2)[..., 0] - 1,
                          np.take_along_axis(pos, a_hi, 2)[..., 0])
            err[r0:r1, t0:t1] = np.where(use_lo, d_lo, d_hi)
            ia[r0:r1, t0:t1] = np.take_along_axis(Aperm[r0:r1].numpy(), a, 1)
            ib[r0:r1, t0:t1] = np.take_along_axis(Bo[r0:r1].numpy(), jb, 1)
    return err, ia, ib


def _searchsorted(bs, q):
    """Batched ``torch.searchsorted``; small calls run on one thread (torch's parallel version costs ~10 ms of
    thread wake-up per call on a busy machine, 1000x the work of a small batch)."""
    import torch

    if q.numel() >= (1 << 17):
        return torch.searchsorted(bs, q)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.searchsorted(bs, q)
    finally:
        torch.set_num_threads(n)


def _sorted_b(B, idx=None):
    """Sort each row of B (optionally the columns ``idx``), pad with -inf/+inf sentinels; return (values, original
    column index) as torch tensors. Sentinel indices are 0 and never selected (their distance is inf)."""
    import torch

    Bv = np.asarray(B if idx is None else B[:, idx], dtype=float)
    R, K = Bv.shape
    perm = np.argsort(Bv, axis=1)  # numpy's quicksort: several times faster than torch.sort here; ties are harmless
    base = np.arange(K, dtype=np.int64) if idx is None else np.asarray(idx, np.int64)
    vals = np.empty((R, K + 2))
    vals[:, 0], vals[:, -1] = -math.inf, math.inf
    vals[:, 1:-1] = np.take_along_axis(Bv, perm, axis=1)
    order = np.zeros((R, K + 2), dtype=np.int64)
    order[:, 1:-1] = base[perm]
    return torch.from_numpy(vals), torch.from_numpy(order)


def _mitm_block(C: np.ndarray, Z: np.ndarray, eps, mode: str):
    """Solve a block of rows by the mode's MITM (:data:`SOLVE_MODES`). Returns bits (R, m) int64 of the chosen
    subsets and found (R, m) bool (sparsest)."""
    return SOLVE_MODES[mode].mitm(C, Z, eps)


def _mitm_closest(C: np.ndarray, Z: np.ndarray, eps):
    """Closest: the sorted half-sums of the two halves, one search per target."""
    R, n = C.shape
    n1 = n // 2
    A = half_sums(C[:, :n1])  # (R, 2^n1)
    B = half_sums(C[:, n1:])  # (R, 2^n2)
    Bs, Bo = _sorted_b(B)
    _, ia, ib = _closest_rows(A, Bs, Bo, Z)
    return ia | (ib << n1), np.ones(Z.shape, dtype=bool)


def _mitm_sparsest(C: np.ndarray, Z: np.ndarray, eps):
    """Sparsest: half-sums grouped by popcount, built lazily from index combinations (most targets stop at a small
    total size k, so only the small groups are ever enumerated); increasing k, early exit per target."""
    import torch

    R, n = C.shape
    n1 = n // 2
    n2 = n - n1
    CA, CB = C[:, :n1], C[:, n1:]
    A_groups: dict = {}
    B_groups: dict = {}

    def get_a(p):
        if p not in A_groups:
            A_groups[p] = _group_sums(CA, p)
        return A_groups[p]

    def get_b(q):
        if q not in B_groups:
            B_groups[q] = _sorted_b(_group_sums(CB, q))
        return B_groups[q]

    m = Z.shape[1]
    found = np.zeros((R, m), dtype=bool)
    bits = np.zeros((R, m), dtype=np.int64)
    for k in range(n + 1):
        rows = np.flatnonzero(~found.all(axis=1))
        if rows.size == 0:
            break
        rows_t = torch.from_numpy(rows)
        Zr = Z[rows]
        best = np.full((rows.size, m), np.inf)
        bbits = np.zeros((rows.size, m), dtype=np.int64)
        for p in range(max(0, k - n2), min(k, n1) + 1):
            q = k - p
            Ap = get_a(p)[rows]
            Bs, Bo = get_b(q)
            err, ja, ib = _closest_rows(Ap, Bs.index_select(0, rows_t), Bo.index_select(0, rows_t), Zr)
            better = err < best
            best = np.where(better, err, best)
            bbits = np.where(better, _combos(n1, p)[1][ja] | (_combos(n2, q)[1][ib] << n1), bbits)
        ok = (best <= eps) & ~found[rows]
        sub_found = found[rows]
        sub_bits = bits[rows]
        sub_found |= ok
        sub_bits = np.where(ok, bbits, sub_bits)
        found[rows] = sub_found
        bits[rows] = sub_bits
    if not found.all():
        # failures: return the closest subset (and report success=False)
        rows = np.flatnonzero(~found.all(axis=1))
        Bs, Bo = _sorted_b(half_sums(CB[rows]))
        _, ia, ib = _closest_rows(half_sums(CA[rows]), Bs, Bo, Z[rows])
        cb = ia | (ib << n1)
        sub = bits[rows]
        bits[rows] = np.where(found[rows], sub, cb)
    return bits, found


def _brute_closest(err: np.ndarray, pop: np.ndarray, eps):
    return err.argmin(axis=2), np.ones(err.shape[:2], dtype=bool)


def _brute_sparsest(err: np.ndarray, pop: np.ndarray, eps):
    feasible = err <= eps
    found = feasible.any(axis=2)
    # lexicographic (popcount, error): key = popcount * big + error on feasible entries
    key = np.where(feasible, pop[None, None, :] * (err.max() + 1.0) * 2 + err, np.inf)
    return np.where(found, key.argmin(axis=2), err.argmin(axis=2)), found


@dataclass(frozen=True)
class SolveMode:
    """An objective of the subset-sum solvers (module doc): ``mitm(C, Z, eps)`` and ``brute(err, pop, eps)`` return
    (bits, found) for a block of rows; ``needs_eps``: the objective is constrained by the tolerance;
    ``success_needs_found``: a target counts as solved only where a feasible subset was found."""

    name: str
    mitm: object
    brute: object
    needs_eps: bool = False
    success_needs_found: bool = False


#: mode name -> its objective (the names of :data:`MODES`)
SOLVE_MODES = {"closest": SolveMode("closest", _mitm_closest, _brute_closest),
               "sparsest": SolveMode("sparsest", _mitm_sparsest, _brute_sparsest, needs_eps=True,
                                     success_needs_found=True)}


@functools.lru_cache(maxsize=256)
def _combos(h: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """All q-subsets of range(h): index matrix (C(h, q), q) and their bit masks (C(h, q),)."""
    combos = list(itertools.combinations(range(h), q))
    idx = np.array(combos, dtype=np.int64).reshape(len(combos), q)
    bits = (np.int64(1) << idx).sum(axis=1) if q else np.zeros(1, dtype=np.int64)
    return idx, bits


def _group_sums(Ch: np.ndarray, q: int) -> np.ndarray:
    """Sums of all q-subsets of each row of Ch (R, h), in the order of ``_combos(h, q)``: (R, C(h, q))."""
    idx, _ = _combos(Ch.shape[1], q)
    out = np.zeros((Ch.shape[0], idx.shape[0]))
    for t in range(q):
        out += Ch[:, idx[:, t]]
    return out


def _finish(C, Z, bits, found, eps, mode, method, batched, squeeze, tol, extra=(), use_found=None):
    n = C.shape[1]
    subset = bits_to_subset(bits, n)  # (R, m, n)
    achieved = np.einsum("rmn,rn->rm", subset.astype(float), C)
    err = np.abs(Z - achieved)
    if eps is None:
        success = np.ones(Z.shape, dtype=bool)
    else:
        success = err <= eps + tol
        if SOLVE_MODES[mode].success_needs_found if use_found is None else use_found:
            success &= found
    n_terms = subset.sum(axis=-1)
    if not batched:
        subset, achieved, err, success, n_terms = subset[0], achieved[0], err[0], success[0], n_terms[0]
    if squeeze:
        subset, achieved, err, success, n_terms = (
            subset[..., 0, :], achieved[..., 0], err[..., 0], success[..., 0], n_terms[..., 0])
    return SubsetSumResult(subset, achieved, err, success, n_terms, mode, eps, n, method, tol, tuple(extra))


def solve(coeffs, targets, eps: float | None = None, mode: str = "closest", on_uncoverable: str = "raise",
          row_block: int | None = None, progress=None) -> SubsetSumResult:
    """Exact MITM subset sum (§4.6) for many targets.

    Parameters: ``coeffs`` (n,) shared by all targets, or (R, n) one set per row; ``targets`` scalar/(m,) or
    (R,)/(R, m); ``eps`` tolerance (required for "sparsest"; in "closest" mode it only sets ``success``);
    ``on_uncoverable``: "raise" (default) rejects targets outside [sum of negatives - eps, sum of positives + eps],
    which no subset can reach; "report" returns them as failures. ``row_block``: rows per batch (memory);
    ``progress``: optional callable(rows_done) for progress bars.

    Returns :class:`SubsetSumResult`. Exact: no subset is closer (closest) / sparser-then-closer (sparsest), up to
    float64 rounding of the sums."""
    import torch

    C, Z, batched, squeeze, eps = validate(coeffs, targets, eps, mode, on_uncoverable)
    R, n = C.shape
    tol = _float_tol(C, Z)
    n1 = n // 2
    if row_block is None:
        per_row = (1 << (n - n1)) * 3 + (1 << n1) * max(1, Z.shape[1]) * 4
        row_block = int(max(1, min(R, (_CHUNK * 4) // max(per_row, 1))))
    bits = np.zeros(Z.shape, dtype=np.int64)
    found = np.zeros(Z.shape, dtype=bool)
    with torch.inference_mode():
        for r0 in range(0, R, row_block):
            r1 = min(R, r0 + row_block)
            b, f = _mitm_block(C[r0:r1], Z[r0:r1], eps, mode)
            bits[r0:r1], found[r0:r1] = b, f
            if progress is not None:
                progress(r1 - r0)
    return _finish(C, Z, bits, found, eps, mode, "mitm", batched, squeeze, tol,
                   ("exact meet-in-the-middle (THEORY §4.6)",))


def brute_force(coeffs, targets, eps: float | None = None, mode: str = "closest",
                on_uncoverable: str = "raise") -> SubsetSumResult:
    """Reference solver: enumerate all 2^n subsets (n <= 16), same objectives and result type as :func:`solve`."""
    C, Z, batched, squeeze, eps = validate(coeffs, targets, eps, mode, on_uncoverable)
    R, n = C.shape
    if n > 16:
        raise ProbPruneError(f"brute force is limited to n <= 16, got n = {n}")
    tol = _float_tol(C, Z)
    S = half_sums(C)  # (R, 2^n), index = bit mask
    pop = _popcount(np.arange(S.shape[1]))
    err = np.abs(Z[:, :, None] - S[:, None, :])  # (R, m, 2^n)
    bits, found = SOLVE_MODES[mode].brute(err, pop, eps)
    return _finish(C, Z, bits.astype(np.int64), found, eps, mode, "brute", batched, squeeze, tol,
                   ("exhaustive enumeration of all 2^n subsets",))
