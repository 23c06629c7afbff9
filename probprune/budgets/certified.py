"""Certified budgets for a GIVEN network (THEORY §3.11 certificates inverted as in §3.9; search of §11.3; the auto
rule's certificate, min of Cert-D and the §12 certificates, inverted per §11.7: :func:`certified_budget` with
``certificate="auto"``, the default).

The question: how many weights may magnitude pruning remove, per layer, so that the certificate (Cert-D: a
deterministic upper bound on sup_{||x||<=1} ||F(x) - F_pruned(x)||) stays <= eps? (Or, for random pruning, the
largest Bernoulli fractions with Cert-R <= eps with probability >= 1 - delta.)

The search reads the traced :class:`probprune.net.Graph` directly: its weight nodes (``graph.weight_nodes``, each an
:class:`probprune.net.ops.Affine`: the weight as stored, masks act on it; norms of its effective, BatchNorm-folded
weight) give the per-layer curves (:class:`_Curves`), and the composition ``comp(norm_W, norm_What, norm_E) ->
certificate`` is Lemma A on the graph (:func:`graph_composition`: node-wise min, the certificate ``certify_graph``
reports; nondecreasing in every ||What_i|| and ||E_i||: all coefficients are >= 0).

Algorithm (THEORY §11.3): sort every layer's |w| once (exact-k magnitude pruning, ties by flat index); per-layer
curves k -> (||What_k||, ||E_k||) for every k at once from prefix sums of the sorted weights (lower-bound shapes,
§11.4) scaled by calibration ratios interpolated between measured points; allocate with a dynamic program over
shares of the separable surrogate sum_i ln(1 + e_i/w_i) (||What_i|| <= ||W_i|| + ||E_i||) with exact per-layer
inversion, keeping the allocation (over all budget levels) with the most weights whose composed value fits; refine
every layer to the integer (batched exponential + bisection search, slack spending) and exchange pairs of layers;
probe the candidate (Lanczos for wide dense layers, float32 FFT blocks for convolutions: every frequency at a
layer's first probe, its 16 largest afterwards; the certified norm itself for the rest), recalibrate and search
again until the measured candidate fits tightly; then certify it with the certified norms (conv blocks by Cholesky at the probe's estimate, §11.5). The reported certificate is always
computed from certified norms; all-zero pruning (certificate 0) is the last resort. Estimates affect only speed and
optimality, never soundness.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from probprune.core.errors import ProbPruneError, UnsupportedLayerError, check_delta, check_eps
from probprune.pruning.sampling import exact_k_order

_SHARES = 512  # share grid of the allocation DP


@dataclass(frozen=True)
class SearchResult:
    """Counts per layer (``k``), the certified norms at them and the certificate (<= eps), with the search log."""

    k: np.ndarray
    norm_W: np.ndarray
    norm_What: np.ndarray
    norm_E: np.ndarray
    certificate: float
    rounds: int
    evaluations: int
    timings: dict = field(default_factory=dict)
    statement: str = "THEORY.md §11.3 certified budget search"


def _running_group_max(vals2: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """For entries added one by one (in the given order) to groups (rows or columns), the largest group sum of
    ``vals2`` after each addition: out[j] = max_g sum_{t <= j, groups[t] = g} vals2[t]."""
    gmax = int(groups.max()) if groups.size else 0
    keys = groups.astype(np.uint16) if 0 <= gmax < 65536 else groups  # 16-bit keys: numpy's stable radix sort
    idx = np.argsort(keys, kind="stable")
    g = groups[idx]
    cs = np.cumsum(vals2[idx])
    first = np.ones(g.size, bool)
    first[1:] = g[1:] != g[:-1]
    base = np.maximum.accumulate(np.where(first, cs - vals2[idx], 0.0))
    run = np.empty_like(cs)
    run[idx] = cs - base
    return np.maximum.accumulate(run)


def _group_sums_at_times(vals2: np.ndarray, times: np.ndarray) -> np.ndarray:
    """out[t] = the sum of ``vals2`` over the additions up to time t of the group added at time t, when the groups are
    the rows of ``times`` (G, s): row g lists the addition times of group g's entries in increasing order (e.g. a
    row-wise sort of the matrix of times). One row-wise cumsum: no sort by group, no global cumsum minus bases."""
    C = np.cumsum(vals2[times], axis=1)
    run = np.empty(vals2.size)
    run[times.ravel()] = C.ravel()
    return run


class _Curves:
    """Per-layer magnitude-pruning curves k -> (||What_k||, ||E_k||), k = 0..N_i (THEORY §11.3).

    Each layer is sorted once (exact-k magnitude pruning, ties by flat index). ``exact``: the curves are the
    certified norms at every k (small nets). Otherwise a cheap *shape* for all k at once from prefix sums of the
    sorted weights: ||E_k|| ~ max(||E_k||_F / sqrt(min(m, n)), largest row and column norm of mat(E_k)) and
    ||What_k|| ~ u^T What_k v (u, v top singular vectors of mat(W)), all lower bounds for the matrix view, scaled by
    a calibration ratio interpolated between measured points (k = 0 and k = N are exact for free: ||E_N|| =
    ||What_0|| = ||W||; every probe the search makes adds a point). Only certified values enter a result."""

    def __init__(self, graph, w: np.ndarray, exact: bool, cand: np.ndarray | None = None, conv_method: str = "fft"):
        self.ops = [n.op for n in graph.weight_nodes]
        l = len(self.ops)
        self.w = np.asarray(w, float)
        self.exact = exact
        self.cand = np.ones(l, bool) if cand is None else np.asarray(cand, bool)
        self.conv_method = conv_method
        self.N = np.array([op.weight.size for op in self.ops], dtype=np.int64)
        self.flat = [np.asarray(op.weight, float).ravel() for op in self.ops]
        self.order = [exact_k_order(np.abs(f)) for f in self.flat]
        self.state_e: list = [None] * l
        self.state_h: list = [None] * l
        self.points: list[dict] = [dict() for _ in range(l)]  # k -> (wh, e) measured (estimate or certified)
        self._base: dict = {}
        self._arr: dict = {}
        self._env: dict = {}  # i -> (E array, the DP's surrogate envelope computed from it)
        self.evaluations = 0
        self.certified_evaluations = 0

    # -- tensors
    def pruned(self, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        f = self.flat[i]
        E = np.zeros_like(f)
        idx = self.order[i][:k]
        E[idx] = f[idx]
        shp = self.ops[i].weight.shape
        return (f - E).reshape(shp), E.reshape(shp)

    def certified(self, i: int, k: int) -> tuple[float, float]:
        op, cm = self.ops[i], self.conv_method
        if k == 0:
            return float(self.w[i]), 0.0
        Wh, E = self.pruned(i, k)
        self.certified_evaluations += 1
        p = self.points[i].get(k)
        if p is not None and not p[2] and not op.is_dense:  # conv: certify at the probe's estimate (§11.5)
            return float(norm_upper_at(op, Wh, p[0], cm)), float(norm_upper_at(op, E, p[1], cm))
        return float(norm_upper(op, Wh, cm)), float(norm_upper(op, E, cm))

    # -- curves
    def base(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._base:
            return self._base[i]
        N = int(self.N[i])
        if self.exact:
            c = [self.certified(i, k) for k in range(N + 1)]
            out = (np.array([x[0] for x in c]), np.array([x[1] for x in c]))
        else:
            W = np.asarray(self.ops[i].weight, float)
            M = W.reshape(W.shape[0], -1)
            m, n = M.shape
            o = self.order[i]
            v = self.flat[i][o]
            v2 = v * v
            fro2 = np.cumsum(v2)
            t = np.empty(N, np.int64)
            t[o] = np.arange(N)  # addition time of each entry
            t = t.reshape(m, n)
            run = np.maximum(_group_sums_at_times(v2, np.sort(t, axis=1)),  # rows, then columns
                             _group_sums_at_times(v2, np.sort(t.T, axis=1)))
            e2 = np.maximum(fro2 / min(m, n), np.maximum.accumulate(run))
            E = np.concatenate([[0.0], np.sqrt(e2)])
            u, vv = _top_singular_vectors(M)
            uWv = (u[:, None] * M * vv[None, :]).ravel()  # u_r W_rc v_c per entry, summed in the magnitude order
            H = np.concatenate([[0.0], np.cumsum(uWv[o])])
            H = np.abs(float(u @ M @ vv) - H)
            out = (H, E)
        self._base[i] = out
        return out

    def arrays(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(||What_k||, ||E_k||) for k = 0..N_i: exact, or the calibrated shape."""
        if i in self._arr:
            return self._arr[i]
        Hb, Eb = self.base(i)
        if self.exact:
            out = (Hb, Eb)
        else:
            N = int(self.N[i])
            w = float(self.w[i])
            pts = dict(self.points[i])
            ph = {0: w, **{k: p[0] for k, p in pts.items()}}
            pe = {N: w, **{k: p[1] for k, p in pts.items() if k}}
            out = (self._calibrated(Hb, ph), self._calibrated(Eb, pe))
        self._arr[i] = out
        return out

    @staticmethod
    def _calibrated(base: np.ndarray, pts: dict) -> np.ndarray:
        ks = np.array(sorted(k for k in pts if base[k] > 0), dtype=np.int64)
        if ks.size == 0:
            return base
        r = np.array([pts[k] / base[k] for k in ks])
        ratio = np.empty(base.size)  # np.interp(arange, ks, r), filled segment by segment (few knots, long arrays)
        ratio[:ks[0] + 1] = r[0]
        ratio[ks[-1]:] = r[-1]
        for a, b, ra, rb in zip(ks[:-1], ks[1:], r[:-1], r[1:]):
            ratio[a:b + 1] = np.linspace(ra, rb, b - a + 1)
        return base * ratio

    def probe(self, i: int, k: int) -> bool:
        """Measure layer i at count k (estimate if the layer has one, else certified) and add the point; returns
        whether the point is certified."""
        if self.exact:
            return True
        if k in self.points[i]:
            return self.points[i][k][2]
        op = self.ops[i]
        self.evaluations += 1
        if probed_by_certified_norm(op):
            h, e = self.certified(i, k)
            cert = True
        else:
            Wh, E = self.pruned(i, k)
            h, self.state_h[i] = norm_estimate(op, Wh, self.state_h[i])
            e, self.state_e[i] = norm_estimate(op, E, self.state_e[i]) if k else (0.0, None)
            cert = False
        self.set_point(i, k, float(h), float(e), cert)
        return cert

    def near_point(self, i: int, k: int, rtol: float) -> bool:
        """Is k bracketed by measured points within rtol * k on both sides (so the interpolated curve is accurate at
        k), or measured itself?"""
        if self.exact or k in self.points[i]:
            return True
        tol = max(1.0, rtol * k)
        return (any(0 < k - kk <= tol for kk in self.points[i]) and any(0 < kk - k <= tol for kk in self.points[i]))

    def set_point(self, i: int, k: int, h: float, e: float, cert: bool) -> None:
        self.points[i][k] = (h, e, cert)
        self._arr.pop(i, None)

    def value(self, i: int, k: int) -> tuple[float, float]:
        H, E = self.arrays(i)
        return float(H[k]), float(E[k])


def _top_singular_vectors(M: np.ndarray, iters: int = 200):
    """Top singular vector pair of M by power iteration (for the ||What_k|| shape only)."""
    import torch

    from probprune.theory.norms import matrix_norm_estimate

    m, n = M.shape
    if min(m, n) <= 1500:  # small side: the top eigenvector of the smaller Gram matrix (LAPACK)
        from scipy.linalg import eigh

        G = M.T @ M if n <= m else M @ M.T
        x = eigh(G, subset_by_index=[G.shape[0] - 1, G.shape[0] - 1])[1][:, 0]
        if n <= m:
            v, u = x, M @ x
        else:
            u, v = x, M.T @ x
        u = u / max(np.linalg.norm(u), 1e-300)
        v = v / max(np.linalg.norm(v), 1e-300)
        return u, v
    Mt = torch.from_numpy(np.ascontiguousarray(M))
    _, v = matrix_norm_estimate(Mt, iters=iters, rtol=1e-8)
    v = v.reshape(-1).numpy()
    v = v / max(np.linalg.norm(v), 1e-300)
    u = M @ v
    u = u / max(np.linalg.norm(u), 1e-300)
    return u, v


def _dp_levels(val: np.ndarray) -> np.ndarray:
    """Separable knapsack for every budget level at once. val[i, s] = weights of layer i with share s (nondecreasing
    in s); returns alloc[b, i], the share of layer i in an allocation maximising sum_i val[i, s_i] subject to
    sum_i s_i <= b, for every level b = 0..S (exact on the share grid)."""
    l, S1 = val.shape
    best = val[0].astype(float)
    choice = np.zeros((l, S1), dtype=np.int64)
    choice[0] = np.arange(S1)
    b = np.arange(S1)
    pad = np.full(2 * S1 - 1, -np.inf)
    for i in range(1, l):
        pad[S1 - 1:] = best  # pad[S1 - 1 + j] = best[j], -inf for j < 0
        win = np.lib.stride_tricks.sliding_window_view(pad, S1)[:, ::-1]  # win[b, s] = best[b - s] (a view)
        tot = win + val[i][None, :]  # tot[b, s] = best[b - s] + val[i, s], -inf where s > b
        choice[i] = np.argmax(tot, axis=1)
        best = tot[b, choice[i]]
    alloc = np.zeros((S1, l), dtype=np.int64)
    rem = b.copy()
    for i in range(l - 1, 0, -1):
        alloc[:, i] = choice[i][rem]
        rem = rem - alloc[:, i]
    alloc[:, 0] = rem
    return alloc


def _comp_batch(curves: _Curves, comp, K: np.ndarray) -> np.ndarray:
    """comp at a batch of count vectors K (B, l) (or one (l,)) from the curves; shape (B,) (or a float)."""
    Kb = np.atleast_2d(np.asarray(K, dtype=np.int64))
    hv = np.empty(Kb.shape, float)
    ev = np.empty(Kb.shape, float)
    for i in range(Kb.shape[1]):
        H, E = curves.arrays(i)
        hv[:, i], ev[:, i] = H[Kb[:, i]], E[Kb[:, i]]
    out = np.asarray(comp(curves.w, hv, ev), float).reshape(-1)
    return out if np.ndim(K) == 2 else float(out[0])


def _allocate(curves: _Curves, comp, eps: float, cand: np.ndarray, uniform: bool) -> np.ndarray:
    """Integer counts with comp(curves) <= eps: uniform (bisection on a common fraction) or optimal (DP over shares
    of the surrogate with exact per-layer inversion, best over budget levels, then refinement)."""
    l = len(cand)
    N = curves.N
    if uniform:
        fr = np.linspace(0.0, 1.0, 257)
        lo, hi = 0.0, 1.0
        while True:  # batched bisection: 257 fractions per call until the bracket is below a quarter weight
            K = np.where(cand[None, :], np.floor(fr[:, None] * N[None, :]).astype(np.int64), 0)
            ok = _comp_batch(curves, comp, K) <= eps
            if not ok.any():
                return np.zeros(l, np.int64)
            j = int(np.flatnonzero(ok)[-1])  # the largest feasible fraction scanned (curves need not be monotone)
            if j == len(fr) - 1 or (fr[j + 1] - fr[j]) * max(int(N.max()), 1) < 0.25:
                return K[j]
            fr = np.linspace(fr[j], fr[j + 1], 257)
    w = curves.w
    env = []
    for i in range(l):
        if not cand[i]:
            env.append(np.zeros(1))
            continue
        E = curves.arrays(i)[1]
        if curves._env.get(i, (None,))[0] is not E:  # cached with the arrays it was computed from
            curves._env[i] = (E, np.log1p(np.maximum.accumulate(E) / w[i]) if w[i] > 0
                              else np.where(E > 0, np.inf, 0.0))
        env.append(curves._env[i][1])
    gmax = sum(float(np.max(g[np.isfinite(g)])) for g in env)
    best = np.zeros(l, np.int64)
    if gmax > 0:
        shares = np.linspace(0.0, gmax, _SHARES + 1)
        kk = np.stack([np.clip(np.searchsorted(env[i], shares, side="right") - 1, 0, None) for i in range(l)])
        alloc = _dp_levels(kk.astype(float))
        ks = np.stack([kk[i][alloc[:, i]] for i in range(l)], axis=1)  # (S+1, l)
        ok = _comp_batch(curves, comp, ks) <= eps
        if ok.any():
            tot = np.where(ok, ks.sum(axis=1), -1)
            best = ks[int(np.argmax(tot))].copy()
    uni = _allocate(curves, comp, eps, cand, True)
    if uni.sum() > best.sum():
        best = uni
    return _refine(curves, comp, eps, cand, best)


def _raise_layer(curves, comp, eps, cand, K: np.ndarray, i: int, pts: int = 128) -> np.ndarray:
    """A large feasible count of layer i (others fixed): batched scan of offsets 1, 2, 4, ... up to N_i, then the
    bracket after the largest feasible point split into ``pts`` parts until it is one weight wide."""
    N = int(curves.N[i])
    if not cand[i] or K[i] >= N:
        return K
    lo = int(K[i])
    xs = np.unique(np.minimum(N, lo + (1 << np.arange(0, max(1, N - lo).bit_length() + 1))))
    while True:
        Kb = np.repeat(K[None, :], xs.size, axis=0)
        Kb[:, i] = xs
        ok = _comp_batch(curves, comp, Kb) <= eps
        if ok[-1]:
            lo = int(xs[-1])
            break
        if ok.any():
            f = int(np.flatnonzero(ok)[-1])  # the largest feasible count scanned, bracketed by the next one
            lo, hi = int(xs[f]), int(xs[f + 1])
        else:
            hi = int(xs[0])
        if hi - lo <= 1:
            break
        xs = np.unique(np.linspace(lo + 1, hi - 1, min(pts, hi - lo - 1)).round().astype(np.int64))
        xs = np.concatenate([xs, [hi]]) if xs[-1] != hi else xs
    out = K.copy()
    out[i] = min(lo, N)
    return out


def _refine(curves, comp, eps, cand, k, sweeps: int = 2) -> np.ndarray:
    """Slack spending to the integer: raise each layer's count as far as the composed certificate allows (largest
    layers first); in the first sweep also pairwise exchange (shrink a pruned layer j by 1/2 or 1/8 of its count,
    re-raise the others, keep if the total grows)."""
    N = curves.N
    k = k.copy()
    order = [int(i) for i in np.argsort(-N, kind="stable") if cand[i]]
    for sweep in range(sweeps):
        before = int(k.sum())
        for i in order:
            k = _raise_layer(curves, comp, eps, cand, k, i)
        for j in order if sweep == 0 else ():
            if k[j] == 0:
                continue
            for frac in (0.5, 0.125):
                K = k.copy()
                K[j] = int(k[j] * (1 - frac))
                for i in order:
                    if i != j:
                        K = _raise_layer(curves, comp, eps, cand, K, i)
                K = _raise_layer(curves, comp, eps, cand, K, j)
                if K.sum() > k.sum():
                    k = K
        if int(k.sum()) == before:
            break
    return k


def search_certified_counts(
    curves: "_Curves",
    comp: Callable[[np.ndarray, np.ndarray, np.ndarray], float],
    eps: float,
    uniform: bool = False,
    rounds: int = 8,
    slack_tol: float = 5e-3,
    accept_tol: float = 1e-2,
    target_margin: float = 1e-3,
    probe_rtol: float = 1e-2,
) -> SearchResult:
    """The largest magnitude-pruning counts per layer with comp(certified norms) <= eps (THEORY §11.3).

    ``curves``: the per-layer curves of the graph's weight nodes (:class:`_Curves`: the certified norms of the
    unpruned layers, which layers may be pruned, exact or calibrated curves; a second search reuses the calibration
    points of the first); ``comp``: the certificate from per-layer norm bounds (nondecreasing in the pruned and
    error norms, :func:`graph_composition`); ``uniform``: one common fraction; ``rounds``: search/probe/certify rounds;
    ``slack_tol``: certify once the measured candidate is within this relative distance of eps; ``accept_tol``:
    stop once the certificate is (another round re-certifies every changed layer); ``target_margin``: search for eps (1 - margin) (estimates sit slightly below certified norms);
    ``probe_rtol``: a layer is not probed again when measured points bracket its count within this relative
    distance."""
    import time

    eps = float(check_eps(eps))
    t0 = time.perf_counter()
    l = len(curves.N)
    cand = curves.cand
    w = curves.w
    timings = {"norm_W": time.perf_counter() - t0, "search": 0.0, "probe": 0.0, "certify": 0.0}
    best = (np.zeros(l, np.int64), w.copy(), np.zeros(l), 0.0)  # no pruning: certificate 0
    # searched-for value: estimates are a little below the certified norms; when every prunable layer is probed by
    # its certified norm (curves.exact, or no estimator) the probes are the certificate's own values: search for eps
    all_cert = curves.exact or all(probed_by_certified_norm(op) for op, c in zip(curves.ops, cand) if c)
    eps_t = eps if all_cert else eps * (1 - target_margin)

    def certify(k):
        t = time.perf_counter()
        hc, ec = w.copy(), np.zeros(l)
        for i in range(l):
            if k[i]:
                pt = curves.points[i].get(int(k[i]))
                if curves.exact or (pt is not None and pt[2]):  # already certified values
                    hc[i], ec[i] = curves.value(i, int(k[i]))
                else:
                    hc[i], ec[i] = curves.certified(i, int(k[i]))
                    curves.set_point(i, int(k[i]), hc[i], ec[i], True)
        timings["certify"] += time.perf_counter() - t
        return hc, ec, float(comp(w, hc, ec))

    pending = None  # the best candidate that fits on the probes, not yet certified
    log: list = []
    timings["log"] = log
    r = 0
    eps_a = eps_t  # the allocation's target: certified probes that overshoot lower it by half the overshoot
    for r in range(1, rounds + 1):
        t1 = time.perf_counter()
        k = _allocate(curves, comp, eps_a, cand, uniform)
        t2 = time.perf_counter()
        timings["search"] += t2 - t1
        if k.sum() <= max(best[0].sum(), -1 if pending is None else pending.sum() - 1):
            break
        for i in range(l):  # probe the candidate (adds calibration points), unless bracketed by points within 1%
            if k[i] and not curves.near_point(i, int(k[i]), probe_rtol):
                curves.probe(i, int(k[i]))
        timings["probe"] += time.perf_counter() - t2
        v = _comp_batch(curves, comp, k)
        log.append(("probe", int(k.sum()), v))
        if v > eps_t:
            if all_cert:  # the probes are certified values: aim lower by half the overshoot, within slack_tol
                eps_a = min(eps_a, eps_t * (1 - min(slack_tol, 0.5 * (v / eps_t - 1))))
            continue  # the measured values do not fit: search again on the recalibrated curves
        if pending is None or k.sum() > pending.sum():
            pending = k.copy()
        if v < eps_a * (1 - slack_tol) and r < rounds:
            continue  # room left on the measured values: search again before paying for certification
        hc, ec, val = certify(pending)
        log.append(("certify", int(pending.sum()), val))
        if val <= eps:
            best = (pending, hc, ec, val) if pending.sum() > best[0].sum() else best
            pending = None
            if val >= eps * (1 - accept_tol):  # another round would re-certify every changed layer
                break
        pending = None
    if pending is not None:
        hc, ec, val = certify(pending)
        if val <= eps and pending.sum() > best[0].sum():
            best = (pending, hc, ec, val)
    k, hc, ec, val = best
    timings["total"] = time.perf_counter() - t0
    return SearchResult(k, w, hc, ec, val, r, curves.evaluations + curves.certified_evaluations, timings)


class _CertRCurves(_Curves):
    """Cert-R curves (THEORY §3.11): at fraction p = k/N_i the closed-form Cert-R bounds on ||What_i|| and ||E_i||
    with probability delta_layer per pruned layer (``certificates._cert_r_layer``, Bernoulli masks). The shape for
    all k is interpolated from a grid of fractions; probes are exact and are the certificate's own values."""

    def __init__(self, graph, w, cand, delta_layer: float, n_grid: int = 32):
        from probprune.certificates.lemma import weight_layer_specs

        super().__init__(graph, w, exact=False, cand=cand)
        self.specs = [weight_layer_specs(op)[0] for op in self.ops]  # the matrix/conv view (one group: see the caller)
        self.delta_layer, self.n_grid = delta_layer, n_grid

    def _exact(self, i: int, k: int) -> tuple[float, float]:
        from probprune.certificates.lemma import _cert_r_layer

        if k == 0:
            return float(self.w[i]), 0.0
        L = self.specs[i]
        We = self.ops[i].effective_weight(np.asarray(self.ops[i].weight, float))
        return _cert_r_layer(L, We.reshape(L.weight_shape), float(self.w[i]), k / self.N[i], self.delta_layer,
                             "bernoulli")

    def base(self, i: int):
        if i not in self._base:
            N = int(self.N[i])
            ks = np.unique(np.round(np.linspace(0, 1, self.n_grid + 1) * N).astype(np.int64))
            v = np.array([self._exact(i, int(k)) for k in ks])
            kk = np.arange(N + 1)
            self._base[i] = (np.interp(kk, ks, v[:, 0]), np.interp(kk, ks, v[:, 1]))
        return self._base[i]

    def certified(self, i: int, k: int) -> tuple[float, float]:
        return self._exact(i, k)

    def probe(self, i: int, k: int) -> bool:
        if k not in self.points[i]:
            self.evaluations += 1
            self.set_point(i, k, *self._exact(i, k), True)
        return True


# ------------------------------------------------------------------------------ per-layer norms of a weight node
def _dense_estimator(T, state):
    """Estimate of ||T||_2 for a dense layer (searches only): the top singular value by Lanczos (ARPACK ``svds``,
    residual tolerance 1e-6, fixed start vector), or the exact SVD for small matrices."""
    from scipy.sparse.linalg import svds

    M = np.asarray(T, float).reshape(np.shape(T)[0], -1)
    if min(M.shape) <= 2 or M.size <= 20_000:
        return float(np.linalg.norm(M, 2)) if M.size else 0.0, None
    if not np.any(M):
        return 0.0, None
    v0 = np.random.default_rng(0).standard_normal(min(M.shape))
    return float(svds(M, k=1, tol=1e-6, v0=v0, return_singular_vectors=False)[0]), None


_TOP_FREQS = 16  # frequencies kept by a warm conv estimate (the largest of the last full evaluation)


def _block_top_eig(F) -> "object":
    """Largest eigenvalue of F_b F_b^H for every block b of a (B, m, n) complex tensor (Gram eigvalsh, chunked)."""
    import torch

    from probprune.theory.norms import BLOCK_ELEMS

    B, m, n = F.shape
    step = max(1, BLOCK_ELEMS // max(1, min(m, n) ** 2))
    out = []
    for b0 in range(0, B, step):
        Fb = F[b0:b0 + step]
        out.append(torch.linalg.eigvalsh(Fb @ Fb.mH if m <= n else Fb.mH @ Fb)[:, -1])
    return torch.cat(out)


def _cholesky_search(F) -> bool:
    """Use §11.6's Cholesky search (CPU, blocks wider than ``norms.SMALL_BLOCK``) rather than all eigenvalues."""
    from probprune.theory.norms import SMALL_BLOCK

    return F.device.type == "cpu" and min(F.shape[1:]) > SMALL_BLOCK and F.shape[0] > 1


def _conv_estimate_warm(W: np.ndarray, in_spatial, padding, dilation, state, top: int = _TOP_FREQS):
    """ESTIMATE (float32) of the periodic-extension conv norm for the search's probes (never in a certificate):
    the first call evaluates every frequency block (as ``norms.conv_norm_fft_estimate``) and keeps the ``top``
    frequencies with the largest block norms as ``state``; later calls for the same layer (nearby pruning counts)
    evaluate only those frequencies, by a direct DFT of the kernel at them. A lower estimate when the maximising
    frequency leaves the set; the certificate is computed from certified norms regardless (§11.3)."""
    import torch

    from probprune.theory.norms import block_top_estimate_cpu, conv_fft_blocks, dilate_kernel

    Wt = torch.as_tensor(np.asarray(W, float))
    amax = float(Wt.abs().max()) if Wt.numel() else 0.0
    if amax == 0:
        return 0.0, state
    Ws = (Wt / amax).to(torch.float32)
    if state is None or Wt.dim() != 4:
        F, grid = conv_fft_blocks(Ws, in_spatial, padding, dilation)
        if _cholesky_search(F):  # §11.6's search (float32): eigenvalues of the largest blocks only
            best, vals, proxy = block_top_estimate_cpu(F)
            rank = np.where(np.isnan(vals), np.minimum(proxy, best * (1 - 1e-9)), vals)  # computed first, then proxy
            lam_max, lam = best, torch.from_numpy(rank)
        else:
            lam = _block_top_eig(F)
            lam_max = float(lam.max())
        sel = torch.topk(lam, min(top, lam.numel())).indices if Wt.dim() == 4 else None
        return math.sqrt(max(lam_max, 0.0)) * amax, (grid, sel) if sel is not None else None
    (gh, gw), sel = state
    d = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
    Wd = dilate_kernel(Ws, d)
    kh, kw = Wd.shape[2:]
    fh = (sel // (gw // 2 + 1)).to(torch.float64)
    fw = (sel % (gw // 2 + 1)).to(torch.float64)
    ang = -2.0 * math.pi * (fh[:, None, None] * torch.arange(kh, dtype=torch.float64)[None, :, None] / gh
                            + fw[:, None, None] * torch.arange(kw, dtype=torch.float64)[None, None, :] / gw)
    T = torch.polar(torch.ones_like(ang), ang).to(torch.complex64)  # (S, kh, kw)
    F = torch.einsum("oiab,sab->soi", Wd.to(torch.complex64), T).contiguous()
    lam_max = block_top_estimate_cpu(F)[0] if _cholesky_search(F) else float(_block_top_eig(F).max())
    return math.sqrt(max(lam_max, 0.0)) * amax, state


def _conv_estimate(op, We: np.ndarray, state=None):
    """Estimate (float32) of the certified conv norm of a graph weight node: the FFT blocks of every group, warm
    (:func:`_conv_estimate_warm`: only the leading frequencies of the layer's first probe), for the search's probes
    only. Returns (estimate, state)."""
    from probprune.certificates.lemma import weight_layer_specs

    specs = weight_layer_specs(op)
    co = We.shape[0] // len(specs)
    state = state if state is not None else [None] * len(specs)
    vals, new = [], []
    for j, L in enumerate(specs):
        v, st = _conv_estimate_warm(We[j * co:(j + 1) * co].reshape(L.weight_shape), L.in_shape[1:], L.padding,
                                    L.dilation, state[j])
        vals.append(v)
        new.append(st)
    return max(vals), new


def norm_upper(op, T: np.ndarray, conv_method: str = "fft") -> float:
    """Certified upper bound on the operator norm of weight node ``op`` (:class:`probprune.net.ops.Affine`) with
    weights ``T`` as stored (same shape as ``op.weight``; masks act on it): ``graph_weight_norm`` of the effective,
    BatchNorm-folded weight (what ``certify_graph`` uses). Every reported certificate is built from these."""
    from probprune.certificates.lemma import graph_weight_norm

    return graph_weight_norm(op, op.effective_weight(np.asarray(T, float).reshape(op.weight.shape)), conv_method)


def norm_upper_at(op, T: np.ndarray, hint: float, conv_method: str = "fft") -> float:
    """The same certified bound as :func:`norm_upper` (max over groups of min(FFT, Lemma C)), computed faster given an
    estimate ``hint`` of it (conv blocks by Cholesky at the estimate, THEORY §11.5)."""
    from probprune.certificates.lemma import weight_layer_specs
    from probprune.theory.norms import layer_operator_norm_upper

    We = op.effective_weight(np.asarray(T, float).reshape(op.weight.shape))
    specs = weight_layer_specs(op)
    co = We.shape[0] // len(specs)
    return max(layer_operator_norm_upper(L, We[j * co:(j + 1) * co].reshape(L.weight_shape), conv_method, hint=hint)
               for j, L in enumerate(specs))


def probed_by_certified_norm(op) -> bool:
    """Does the search probe weight node ``op`` by its certified norm itself (no estimate)? Dense layers up to 1500
    wide: a LAPACK top eigenvalue is as cheap as Lanczos there, and a certified probe needs no second evaluation."""
    return op.is_dense and min(op.weight.shape) <= 1500


def norm_estimate(op, T: np.ndarray, state=None):
    """A cheap ESTIMATE of :func:`norm_upper` for the search's probes (never in a certificate), warm-started from
    ``state``: dense layers by Lanczos (:func:`_dense_estimator`), convolutions by float32 FFT blocks
    (:func:`_conv_estimate`). Returns (estimate, state)."""
    We = op.effective_weight(np.asarray(T, float).reshape(op.weight.shape))
    if op.is_dense:
        return _dense_estimator(We, state)
    return _conv_estimate(op, We, state)


def prunable_mask(graph, prunable: Sequence[int | str] | None = None) -> np.ndarray:
    """Which weight nodes of ``graph`` the budget may prune: ``prunable`` names (FQN) or indices (topological order of
    ``graph.weight_nodes``); None: all."""
    names = list(graph.weight_names)
    cand = np.ones(len(names), bool)
    if prunable is not None:
        cand[:] = False
        for q in prunable:
            if isinstance(q, (int, np.integer)) and 0 <= q < len(names):
                cand[q] = True
            elif q in names:
                cand[names.index(q)] = True
            else:
                raise ProbPruneError(f"unknown layer {q!r}; layers are {names}")
        if not cand.any():
            raise ProbPruneError("no prunable layer selected")
    return cand


def graph_composition(graph, form: str = "D") -> Callable:
    """``comp(norm_W, norm_What, norm_E)``: Lemma A on ``graph`` (THEORY §8.2, ``net.lemma.lemma_a_graph``) from
    per-layer norm bounds (arrays over the weight nodes; leading batch axes allowed), biases entering through each
    node's ``bias_map_norm``. ``form`` "D": the node-wise min of the forward and backward recursions (Cert-D, what
    ``certify_graph`` reports); "Df": the forward recursion (the form Cert-R uses)."""
    from probprune.net.lemma import lemma_a_graph

    if form not in ("D", "Df"):
        raise ProbPruneError(f"unknown composition form {form!r}; use 'D' or 'Df'")
    names = list(graph.weight_names)
    cmap = [n.op.bias_map_norm() for n in graph.weight_nodes]

    def comp(w, wh, e):
        wh, e = np.asarray(wh, float), np.asarray(e, float)
        norms = {nm: (w[i], wh[..., i], e[..., i], cmap[i]) for i, nm in enumerate(names)}
        return getattr(lemma_a_graph(graph, norms), form)

    return comp


def weight_norms(graph, conv_method: str = "fft") -> np.ndarray:
    """Certified ||W_i|| of every weight node (:func:`norm_upper` at the stored weights)."""
    return np.array([norm_upper(op, np.asarray(op.weight, float), conv_method)
                     for op in (n.op for n in graph.weight_nodes)])


# --------------------------------------------------------------------------------------------- tight inversion
CERTIFICATES = ("auto", "lemma-a")  # what a magnitude budget inverts: the auto rule's certificate, or Cert-D only
TIGHT_EVALUATIONS = 6  # default tight-certificate evaluations per search (uniform, optimal); each costs seconds
REFINE_STEPS: tuple = ()  # per-layer raise factors after the optimal scale search (_refine_layers); off by default:
# on LeNet-300-100 the steps (1.25, 1.08) spent 2 of 11 tight evaluations to add 16 weights (0.01%)
REFERENCE_PREDICTED = True  # optimal mode: the uniform reference takes one tight evaluation at the scale predicted
# from the optimal allocation's tight/Cert-D ratio (_predicted_scale; a second if that one is above eps) instead of a
# search to SCALE_RTOL from Cert-D's uniform fraction (two evaluations or more): on LeNet-300-100 one evaluation less
# for a uniform reference below the searched one; mode="uniform" (where the uniform fraction is the answer) searches
REFERENCE_SEARCHED_MAX_WEIGHTS = 50_000  # optimal mode up to this many prunable weights: the uniform reference is
# searched as in uniform mode (FINAL_RTOL, its own choice between the mixed and the joint bound) and returned when it
# prunes more than the scaled Cert-D shape: on issue 22's residual digits net (12,928 weights) the optimal search
# (mixed, chosen at Cert-D's allocation) certified 3,575 weights where the uniform one (joint) certifies 4,122
TIGHT_TIME_LIMIT = 30.0  # default seconds for the tight search (the allocation found by then is certified and returned)


def magnitude_masks(graph, counts, _orders: dict | None = None) -> dict:
    """Layer-wise exact-k magnitude masks of a graph's weight layers (True = kept): the ``counts[i]`` smallest |w| of
    layer i pruned, ties by flat index (the package's one exact-k rule, ``pruning.sampling.exact_k_prune_mask``; the
    same order as the search's curves). ``counts``: one count per weight node (topological order) or a dict FQN ->
    count (missing: 0)."""
    from probprune.pruning.sampling import exact_k_prune_mask

    nodes = list(graph.weight_nodes)
    if isinstance(counts, dict):
        unknown = set(counts) - {n.op.fqn for n in nodes}
        if unknown:
            raise ProbPruneError(f"counts for unknown parameter(s): {sorted(unknown)}")
        counts = [int(counts.get(n.op.fqn, 0)) for n in nodes]
    if len(counts) != len(nodes):
        raise ProbPruneError(f"need {len(nodes)} counts (one per weight layer), got {len(counts)}")
    out = {}
    for n, k in zip(nodes, counts):
        W = np.asarray(n.op.weight, float)
        if _orders is None:
            out[n.op.fqn] = ~exact_k_prune_mask(np.abs(W.ravel()), int(k)).reshape(W.shape)
            continue
        # the same rule from a stored order (exact_k_order = the stable order of exact_k_prune_mask): one sort per
        # layer for all the allocations of one tight phase
        from probprune.pruning.sampling import exact_k_order

        if not 0 <= int(k) <= W.size:
            raise ProbPruneError(f"exact-k pruning needs 0 <= k <= {W.size}, got k={int(k)}")
        if n.op.fqn not in _orders:
            _orders[n.op.fqn] = exact_k_order(np.abs(W.ravel()))
        keep = np.ones(W.size, dtype=bool)
        keep[_orders[n.op.fqn][:int(k)]] = False
        out[n.op.fqn] = keep.reshape(W.shape)
    return out


@dataclass(frozen=True)
class AllocationCertificate:
    """The certificate of one allocation under the auto rule (what ``probprune certify --bound auto`` prints): the
    smaller of Cert-D (``lemma_a_eps``, THEORY §3.11/§8.2) and the §12 certificates (``tight_eps``, the minimum of
    ``certify_chains(..., "auto")`` on the lowered pair); ``certificate`` names the one that gave ``eps``
    ("tight:<method>" or "lemma-a"); ``tight_refused``: why the §12 certificates did not apply (None if they did)."""

    eps: float
    certificate: str
    lemma_a_eps: float
    tight_eps: float | None
    tight_components: dict
    tight_refused: str | None

    def as_dict(self) -> dict:
        return {"eps": self.eps, "certificate": self.certificate, "lemma_a_eps": self.lemma_a_eps,
                "tight_eps": self.tight_eps, "tight_components": dict(self.tight_components),
                "tight_refused": self.tight_refused}


def tight_refusal(graph) -> str | None:
    """Why the §12 certificates cannot be applied to ``graph`` at its size (None: they can): an operation the lowering
    refuses (max pooling until §12 covers it, non-ReLU activations: named by the lowering itself), or a dense stage
    matrix above ``lower.MAX_DENSE`` entries estimated *before* lowering (input size x widest value), so that large
    networks (VGG, ResNet shapes) are never densified. Returns the reason, or None with F lowered (see
    :func:`_lower_F`)."""
    return _lower_F(graph)[1]


def _lower_F(graph, op_norms: bool = True):
    """(F, None) with F the §12 lowering of ``graph``, or (None, reason). ``op_norms`` False: without the
    per-operation diagnostic norms (``Stage.factor_norms``, one dense SVD per operation; no certificate value uses
    them, the stage matrices are the same arrays): what the certified budget's tight phase lowers."""
    from probprune.certificates.lower import MAX_DENSE, lower_graph

    n_in = int(np.prod(graph.input_shape))
    widest = max(int(np.prod(n.out_shape)) for n in graph.nodes)
    if max(n_in, widest) * widest > MAX_DENSE:
        return None, (f"the exact composition would need dense stage matrices of about {max(n_in, widest) * widest:,}"
                      f" entries (> {MAX_DENSE:,}); the §12 certificates are not applied at this size")
    try:
        return lower_graph(graph, "F", op_norms=op_norms), None
    except ProbPruneError as e:
        return None, str(e)


SEARCH_JOINT_STEPS = 15  # the joint bound's Adam steps per recursion step in the budget search's probes (§12.12)
SEARCH_E2E_WORK = 200.0  # ... and its end-to-end steps (Statements 12.62-12.63): joint.e2e_steps_for(F, 100, this),
# as auto's (the final certification), so that the search and the final rule agree: none on LeNet-300-100, 95 on the
# residual digits net (1.5 s a probe), 100 on the digits MLP


def _tight_eps(F, graph, masks: dict, method: str, Fh=None, lean: bool = False, joint: bool | None = None,
               joint_steps: int | None = None, joint_e2e: int | None = None):
    """(eps, method, components) of ``certify_chains`` (§12) on (F, the masked graph lowered), or (inf, reason, {})
    when the pruned network does not lower to the same structure or the certificate refuses (fail closed: the
    allocation is then judged by Cert-D alone). ``Fh``: the lowering of the masked graph if already computed."""
    from probprune.certificates.lower import lower_graph
    from probprune.certificates.tight import certify_chains, pool_pair_for

    try:
        gh = graph.with_masks(masks) if Fh is None or method == "joint" else None
        Fh = lower_graph(gh, "F_hat") if Fh is None else Fh
        if not F.same_structure(Fh):
            return math.inf, "F and F_hat lower to chains of different structure", {}
        # the explicit joint bound on max-pool networks runs on Statement 12.64's lowering, as `certify --bound joint`
        pool = pool_pair_for(graph, gh, "joint") if method == "joint" else None
        tc = certify_chains(F, Fh, method, 1.0, scalar_if_mixed_fails=lean, joint=joint, joint_steps=joint_steps,
                            joint_e2e=joint_e2e, pool_pair=pool)
    except (ProbPruneError, np.linalg.LinAlgError, FloatingPointError) as e:  # fail closed: Cert-D judges alone
        return math.inf, f"{type(e).__name__}: {e}", {}
    if not math.isfinite(tc.eps):
        return math.inf, "non-finite tight certificate", {}
    return float(tc.eps), tc.method, dict(tc.components)


def _lowered_memo(F, graph, memo: dict | None):
    """(masks, F_hat) at counts, memoised in ``memo`` (one tight phase: the final certification revisits the
    allocations its search evaluated) keyed by the counts tuple; F_hat None where the lowering fails (fail closed in
    :func:`_tight_eps`)."""
    from probprune.certificates.lower import lower_graph

    def get(counts):
        key = tuple(int(x) for x in counts)
        if memo is not None and key in memo:
            return memo[key]
        masks = magnitude_masks(graph, counts, None if memo is None else memo.setdefault("_orders", {}))
        try:
            Fh = lower_graph(graph.with_masks(masks), "F_hat", op_norms=False) if F is not None else None
        except (ProbPruneError, np.linalg.LinAlgError, FloatingPointError):
            Fh = None
        if memo is not None:
            memo[key] = (masks, Fh)
        return masks, Fh

    return get


def certify_allocation(graph, counts, conv_method: str = "fft", F=None, tight_method: str = "auto",
                       _memo: dict | None = None, _lean: bool = False, _joint: bool | None = None
                       ) -> AllocationCertificate:
    """The auto rule at one magnitude allocation (layer-wise exact-k counts, :func:`magnitude_masks`): Cert-D
    (``certify_graph``) and, where the network lowers (:func:`tight_refusal`), the §12 certificates
    (``certify_chains(F, F_hat, tight_method)``, "auto" = the minimum of every §12 method that applies at this
    size); the smaller is reported, as ``probprune certify --bound auto`` does. ``F``: the lowering of ``graph`` if
    already computed."""
    from probprune.certificates.lemma import certify_graph

    refused = None
    if F is None:
        F, refused = _lower_F(graph)
    masks, Fh = _lowered_memo(F, graph, _memo)(counts)
    d = float(certify_graph(graph, masks, conv_method).eps)
    if F is None:
        return AllocationCertificate(d, "lemma-a", d, None, {}, refused)
    # Fh None: it lowers (or names why)
    t, how, comps = _tight_eps(F, graph, masks, tight_method, Fh, lean=_lean, joint=_joint)
    if not math.isfinite(t):
        return AllocationCertificate(d, "lemma-a", d, None, {}, how)
    if t < d:
        return AllocationCertificate(t, f"tight:{how}", d, t, comps, None)
    return AllocationCertificate(d, "lemma-a", d, t, comps, None)


def _counts_at(t: float, shape: np.ndarray, N: np.ndarray) -> np.ndarray:
    """Counts with per-layer fractions min(1, t shape_i) (floor to the integer)."""
    return np.floor(np.minimum(1.0, t * shape) * N + 1e-9).astype(np.int64)


FINAL_RULE_EVALS = 3  # evaluations of the final auto rule below a searched allocation it rejects (§11.7)
SCALE_RTOL = 0.02  # the scale searches stop when the feasible/infeasible bracket is within this relative width
FINAL_RTOL = 0.005  # ... for a uniform budget's own search (its fraction is the answer; the uniform reference of an
# optimal budget keeps SCALE_RTOL)
P0 = 1.5  # first-step exponent of a scale search (value ~ t^p): the log-log slopes of the mixed certificate measured
# along uniform scales were 1.47 on LeNet-300-100 (fractions 0.12-0.23) and 1.5-2.0 on the digits MLP (0.26-0.35); at
# 1.3 the first step overshot eps on both and cost one more evaluation


def _scale_search(value, shape: np.ndarray, N: np.ndarray, t_lo: float, eps: float, max_evals: int,
                  deadline: float, rtol: float = SCALE_RTOL, margin: float = 2e-3, p0: float = P0,
                  t_first: float | None = None, accept_feasible: bool = False,
                  hi_point: tuple[float, float] | None = None):
    """Largest t with value(counts(t)) <= eps found with at most ``max_evals`` evaluations of ``value`` (a tight
    certificate, seconds each): counts(t) = floor(min(1, t shape_i) N_i); t_lo is known to be feasible (Cert-D). The
    next t comes from a log-log secant through the two evaluated points nearest the target (a power law t^p0 from
    the first point), kept strictly inside the bracket (feasible lo, infeasible hi); stops when the bracket is within
    ``rtol`` or a feasible value is at least eps (1 + rtol)^-p (p the fitted exponent: the value's t is then within
    about ``rtol`` of the largest feasible t); the target is eps min(1 - margin, (1 + rtol / 2)^-p), the middle of
    that window. Any evaluated allocation with value <= eps is sound; the search is only for size.
    ``p0``: the exponent of the first step (e.g. the one fitted by an earlier search on the same network).
    ``t_first``: evaluate there first instead of at t_lo (a predicted scale, :func:`_predicted_scale`; t_lo stays the
    known-feasible end of the bracket); ``accept_feasible``: stop at the first evaluated t with value <= eps (a
    reference allocation, not searched to ``rtol``); ``hi_point``: a scale t > t_lo and its value > eps, evaluated
    before (the bracket's infeasible end and a secant point; not evaluated again, not in ``log``).
    Returns (t, counts, value at counts or None if not evaluated, log); ``log`` entries are ("tight", total, t,
    value), and the exponent fitted between the first evaluated point and the last feasible one (the widest span:
    a secant between two nearby points is noisy) is in ``_scale_search.last_p`` (p0 if none was fitted)."""
    import time

    t_max = 1.0 / float(shape[shape > 0].min()) if np.any(shape > 0) else 0.0
    pts: dict = {}
    log = []
    lo, v_lo, hi = t_lo, None, None
    seeded = []  # (t, value) known before the search: the secant uses them, the log does not list them
    if hi_point is not None and hi_point[0] > t_lo and hi_point[1] > eps:
        hi = float(hi_point[0])
        seeded.append((hi, float(hi_point[1])))
    t = t_lo if t_first is None else float(min(max(t_first, t_lo), t_max if hi is None else hi))
    _scale_search.last_p = p0
    n_bad = 0  # infeasible evaluations in a row: the certificate is not monotone in t (the joint bound's multipliers
    # are searched), so after each the target moves further below eps (margin x 2^n_bad): on the digits MLP five
    # evaluations in a row landed 0.4-4% above eps and the search returned its start
    for _ in range(max_evals):
        # the tolerance is on the scale t (the fraction): with value ~ t^p, a feasible value >= eps (1 + rtol)^-p is
        # within rtol of the largest feasible t, and the next point aims at the middle of that window
        p_cur = min(max(_scale_search.last_p, 0.5), 4.0)
        shrink = min(margin * (2 ** n_bad - 1), 0.1)  # 0, 0.2%, 0.6%, 1.4%, 3% ... after infeasible evaluations
        target = eps * min(1 - margin, (1 + rtol / 2) ** -p_cur) * (1 - shrink)
        if time.perf_counter() > deadline:
            break
        k = _counts_at(t, shape, N)
        key = tuple(int(x) for x in k)
        if key in pts:
            break
        v = value(k)
        pts[key] = v
        log.append(("tight", int(k.sum()), float(t), v))
        n_bad = n_bad + 1 if v > eps else 0
        if v <= eps:
            if t >= lo:
                lo, v_lo = t, v
        elif hi is None or t < hi:
            hi = t
        if lo >= t_max or (hi is not None and hi <= lo * (1 + rtol)) or (v_lo is not None and v_lo >= eps * (1 + rtol) ** -p_cur):
            break
        if accept_feasible and v <= eps:
            break
        # next point: secant in log-log through the evaluated points nearest the target
        ev = sorted((tt, vv) for (tt, vv) in [(e[2], e[3]) for e in log] + seeded
                    if math.isfinite(vv) and vv > 0 and tt > 0)
        if len(ev) >= 2:
            below = [e for e in ev if e[1] <= target]
            above = [e for e in ev if e[1] > target]
            a = below[-1] if below else ev[0]
            b = above[0] if above else ev[-1]
            if a[0] == b[0]:
                a, b = ev[-2], ev[-1]
            p = math.log(b[1] / a[1]) / math.log(b[0] / a[0]) if b[1] != a[1] and b[0] != a[0] else p0
            if math.isfinite(p) and p > 0.2:
                _scale_search.last_p = p
            if math.isfinite(p) and 0 <= p < 0.2 and max(a[1], b[1]) <= target:
                nt = math.inf  # a plateau below the target (e.g. a layer fully pruned): go to the top of the bracket
            elif math.isfinite(p) and p < 0 and v_lo is not None and v_lo > 0:
                # the value fell as t grew: the joint bound's searched multipliers, not a plateau (issue 22's
                # digits CNN under --refine joint: 9.46 at t = 0.284, 6.75 at 0.338, then a jump to t = 1.02,
                # 824); the power law with the last fitted exponent from the largest feasible point instead
                nt = lo * (target / v_lo) ** (1.0 / min(max(_scale_search.last_p, 0.5), 4.0))
            else:
                p = p if (math.isfinite(p) and p > 0.2) else p0
                nt = a[0] * (target / a[1]) ** (1.0 / p)
        elif v_lo is not None and v_lo > 0:
            nt = lo * (target / v_lo) ** (1.0 / p0)
        elif len(ev) == 1:  # one evaluated point, above eps (a predicted first point): the power law from it
            nt = ev[0][0] * (target / ev[0][1]) ** (1.0 / p0)
        else:  # from t = 0: the larger of 1e-3 and the smallest t that prunes one weight
            t_one = float(np.min(1.0 / (shape[shape > 0] * N[shape > 0]))) * (1 + 1e-9) if np.any(shape > 0) else 1.0
            nt = 2 * lo if lo > 0 else min(t_max, max(1e-3, t_one))
        up = t_max if hi is None else hi
        if lo > 0:  # strictly inside the bracket, at least a relative rtol / 2 from either end
            nt = min(max(nt, lo * (1 + rtol / 2)), up / (1 + rtol / 2) if hi is not None else up)
        else:
            nt = min(max(nt, 0.0), up)
        if hi is not None and not (lo < nt < hi):
            nt = math.sqrt(max(lo, 1e-12) * hi)
        t = float(min(nt, t_max))
    k = _counts_at(lo, shape, N)
    if log and v_lo is not None and lo > log[0][2] > 0 and v_lo > log[0][3] > 0:
        p = math.log(v_lo / log[0][3]) / math.log(lo / log[0][2])
        if math.isfinite(p) and p > 0.2:
            _scale_search.last_p = p
    return lo, k, pts.get(tuple(int(x) for x in k)), log


def _predicted_scale(curves: "_Curves", comp: Callable, shape: np.ndarray, N: np.ndarray, t_lo: float, ratio: float,
                     target: float) -> float:
    """The largest scale t >= t_lo (on a geometric grid, refined once) at which ``ratio`` x the Cert-D curve value
    (``comp`` on the search's calibrated curves, :func:`_comp_batch`: estimates, no certified norm) of the counts
    floor(min(1, t shape_i) N_i) is <= ``target``: a first guess for a tight scale search (:func:`_scale_search`'s
    ``t_first``), where ``ratio`` is a tight/Cert-D ratio measured at another allocation. Only a guess: the
    allocation is certified by the tight certificate itself."""
    t_max = 1.0 / float(shape[shape > 0].min()) if np.any(shape > 0) else 0.0
    lo, hi = max(float(t_lo), 1e-9), t_max
    if not (hi > lo and ratio > 0 and math.isfinite(ratio)):
        return float(t_lo)
    for _ in range(2):
        ts = np.geomspace(lo, hi, 129)
        v = ratio * _comp_batch(curves, comp, np.stack([_counts_at(t, shape, N) for t in ts]))
        ok = np.flatnonzero(v <= target)
        if ok.size == 0:
            return float(t_lo)
        j = int(ok[-1])
        if j == ts.size - 1:
            return float(ts[-1])
        lo, hi = float(ts[j]), float(ts[j + 1])
    return lo


def _refine_layers(value, k: np.ndarray, N: np.ndarray, cand: np.ndarray, eps: float, max_evals: int,
                   deadline: float, steps=(1.25, 1.08)):
    """Per-layer refinement of a feasible allocation (largest layers first): raise one layer's fraction by each
    factor in ``steps`` and keep it if ``value`` stays <= eps. Returns (counts, value or None, log)."""
    import time

    log, v_best, used = [], None, 0
    order = [int(i) for i in np.argsort(-N, kind="stable") if cand[i]]
    for f in steps:
        for i in order:
            if used >= max_evals or time.perf_counter() > deadline:
                return k, v_best, log
            if k[i] >= N[i]:
                continue
            K = k.copy()
            K[i] = min(int(N[i]), max(int(k[i]) + 1, int(math.floor(k[i] * f)) if k[i] else int(math.ceil(0.01 * N[i]))))
            v = value(K)
            used += 1
            log.append(("refine", int(K.sum()), i, v))
            if v <= eps:
                k, v_best = K, v
    return k, v_best, log


@functools.lru_cache(maxsize=None)
def _result_class():
    """:class:`CertifiedBudgetResult`, built on first use: a :class:`~probprune.budgets.apriori.BudgetResult` (every
    existing key kept) with the name of the certificate inverted and its details (``budgets.apriori`` re-exports this
    module, so the base class is imported lazily to keep the import graph acyclic)."""
    from probprune.budgets.apriori import BudgetResult

    @dataclass(frozen=True)
    class CertifiedBudgetResult(BudgetResult):
        """A certified budget: ``certificate`` names the certificate inverted at the returned allocation ("tight:mixed",
        "lemma-a", "cert-r", ...); ``eps_achieved`` is its value there (<= eps); ``certificate_detail`` carries the
        Cert-D value, the §12 components, the uniform allocation's certificate, the search log and any refusal."""

        certificate: str = "lemma-a"
        certificate_detail: dict = field(default_factory=dict)

        def as_dict(self) -> dict:
            return super().as_dict() | {"certificate": self.certificate,
                                        "certificate_detail": dict(self.certificate_detail)}

    CertifiedBudgetResult.__module__ = __name__
    CertifiedBudgetResult.__qualname__ = "CertifiedBudgetResult"
    return CertifiedBudgetResult


def __getattr__(name):  # ``certified.CertifiedBudgetResult``: the class, built on first use (:func:`_result_class`)
    if name == "CertifiedBudgetResult":
        return _result_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _searched_certificate(entry, eps: float) -> dict | None:
    """The certificate of the uniform reference allocation (optimal mode, not the one returned) from the value the
    tight search computed there (``entry`` = (value, method): ``certify_chains(F, F_hat, method)``, what
    ``certify --bound <method>`` prints at that allocation; the auto rule's value there is <= it when its <method>
    component finishes within its time limit), instead of a second certification with the full auto rule (THEORY
    §11.8; the returned allocation is always certified with it, §11.7). None when the search did not evaluate it or
    the value is above eps."""
    if entry is None or not entry[0] <= eps:
        return None
    v, how = entry
    return {"eps": v, "certificate": f"tight:{how}", "lemma_a_eps": None, "tight_eps": v, "tight_components": {how: v},
            "tight_refused": None, "source": f"the tight search's value (certify --bound {how.split('_')[0]} at this "
                                              "allocation, THEORY §11.8)"}


def _tight_phase(graph, cand: np.ndarray, eps: float, mode: str, k_d: np.ndarray, k_uni_d, eps_d: float, conv_method: str,
                 max_evals: int, deadline: float, steps: dict, tight_method: str = "auto", refine: str | None = None,
                 refine_evaluations: int = 4, refine_time_limit: float = 60.0, curves: "_Curves | None" = None,
                 comp: Callable | None = None):
    """The "auto" inversion (see :func:`certified_budget`) after the Cert-D search: returns (counts, uniform counts,
    certificate value, certificate name, detail). Optimal mode: the optimal scale search first, then the uniform
    reference (with ``REFERENCE_PREDICTED``: from the scale predicted by the Cert-D search's ``curves``/``comp``)."""
    import time

    t0 = time.perf_counter()
    N = np.array([n.op.weight.size for n in graph.weight_nodes], dtype=np.int64)
    F, refused = _lower_F(graph, op_norms=False)  # the budget reports no per-operation diagnostics
    detail: dict = {"lemma_a_search": {"total_prunable": int(k_d.sum()), "eps_achieved": eps_d,
                                       "uniform_total": int(k_uni_d.sum()) if k_uni_d is not None else -1}}
    if F is None:
        detail["tight_refused"] = refused
        detail["note"] = f"Cert-D inverted: the §12 certificates refuse this network ({refused})"
        if refine is not None:
            detail["refine"] = {"method": refine, "skipped": "the §12 certificates refuse this network"}
        steps["tight"] = time.perf_counter() - t0
        return k_d, k_uni_d, eps_d, "lemma-a", detail
    # the search probes with one §12 method ("auto": mixed, the strongest of the cheap ones; the SDP costs seconds to
    # minutes a call); the returned allocation is certified with ``tight_method`` itself (auto: what certify prints)
    # (auto) the first probe also computes the joint bound (§12.12) where auto would run it, and the search goes on
    # with the smaller of the two; "joint": None until decided, then whether the final certification runs it
    from probprune.certificates.tight import CERTIFY_AUTO_TIME_LIMIT, joint_auto_skip

    # the joint bound joins the search where certify's auto would start it within its default time limit
    state = {"method": "mixed" if tight_method == "auto" else tight_method, "evaluations": 0,
             "joint": None if tight_method == "auto" and F is not None
             and joint_auto_skip(F, CERTIFY_AUTO_TIME_LIMIT) is None else False}
    memo: dict = {}  # counts -> (masks, F_hat lowered): the final certification revisits evaluated allocations
    if curves is not None:  # the exact-k orders the Cert-D curves sorted (the same rule, exact_k_order of |w|)
        memo["_orders"] = {op.fqn: o for op, o in zip(curves.ops, curves.order)}
    lowered = _lowered_memo(F, graph, memo)

    searched: dict = {}  # counts -> (value, method) of every search evaluation (each a §12 certificate there)

    from probprune.certificates.joint import e2e_steps_for
    from probprune.certificates.tight import JOINT_E2E_STEPS

    search_e2e = e2e_steps_for(F, JOINT_E2E_STEPS, SEARCH_E2E_WORK)  # JOINT_E2E_STEPS: auto's cap

    def value(k):  # the §12 certificate at counts k (the method that won at the first evaluation)
        if not np.any(k):
            return 0.0  # nothing pruned: F_hat = F
        state["evaluations"] += 1
        masks, Fh = lowered(k)
        # the search's joint bound: SEARCH_JOINT_STEPS greedy steps, search_e2e end-to-end ones (Statement 12.62)
        v, how, _ = _tight_eps(F, graph, masks, state["method"], Fh,
                               joint_steps=SEARCH_JOINT_STEPS if state["method"] == "joint" else None,
                               joint_e2e=search_e2e)
        if state["joint"] is None:  # first probe: the joint bound too; the smaller method leads the search
            vj, howj, _ = _tight_eps(F, graph, masks, "joint", Fh, joint_steps=SEARCH_JOINT_STEPS,
                                     joint_e2e=search_e2e)
            state["joint"] = bool(math.isfinite(vj) and vj < v)
            if state["joint"]:
                v, how, state["method"] = vj, howj, "joint"
        if math.isfinite(v):
            searched[tuple(int(x) for x in k)] = (float(v), how)
        if state["method"] == "auto" and math.isfinite(v):
            state["method"] = how.split("_")[0] if how.startswith(("composed", "mixed")) else how
        return v

    log: list = []
    cands = [k_d] + ([k_uni_d] if k_uni_d is not None else [])
    k_uni = k_uni_d
    p_fit = P0
    from probprune.budgets.apriori import ALLOCATION_MODES

    uniform_mode = not ALLOCATION_MODES[mode].per_layer  # "uniform": one common fraction; else "optimal"
    reference_searched = not uniform_mode and int(N[cand].sum()) <= REFERENCE_SEARCHED_MAX_WEIGHTS
    uniform_kw: dict = {"rtol": FINAL_RTOL if uniform_mode else SCALE_RTOL}
    k_opt = k_d
    if not uniform_mode and max_evals > 0:  # optimal: Cert-D's allocation scaled (first: it is the answer)
        q = np.where(cand, k_d / N, 0.0)
        if q.max() > 0:
            shape = q / q.max()
            _, ko, v_o, lg = _scale_search(value, shape, N, float(q.max()), eps, max_evals, deadline)
            p_fit = _scale_search.last_p  # the uniform reference starts from the exponent fitted here
            log += [("optimal",) + e for e in lg]
            if REFINE_STEPS:
                ko, _, lg = _refine_layers(value, ko, N, cand, eps, max_evals - len(lg), deadline, REFINE_STEPS)
                log += [("optimal",) + e for e in lg]
            k_opt = ko
            if REFERENCE_PREDICTED and not reference_searched and k_uni_d is not None and curves is not None \
                    and v_o is not None:
                # the uniform reference: one evaluation at the scale the Cert-D curve predicts with the tight/Cert-D
                # ratio just measured at the optimal allocation (a second only if that one is above eps)
                cd = float(_comp_batch(curves, comp, ko))
                if cd > 0 and v_o > 0:
                    q0 = float(np.max(np.where(cand, k_uni_d / N, 0.0)))
                    target = eps * min(1 - 2e-3, (1 + SCALE_RTOL / 2) ** -min(max(p_fit, 0.5), 4.0))
                    uniform_kw = {"rtol": SCALE_RTOL, "accept_feasible": True,
                                  "t_first": _predicted_scale(curves, comp, cand.astype(float), N, q0, v_o / cd,
                                                              target)}
        cands.append(k_opt)
    if reference_searched:
        # a small net: the uniform reference is searched (a candidate: optimal >= uniform) and chooses its own method
        uniform_kw = {"rtol": FINAL_RTOL}
        if state["joint"] is False and tight_method == "auto" and joint_auto_skip(F, CERTIFY_AUTO_TIME_LIMIT) is None:
            state["joint"], state["method"] = None, "mixed"
    if k_uni_d is not None and max_evals > 0:  # uniform: one common fraction, from Cert-D's uniform fraction
        q0 = float(np.max(np.where(cand, k_uni_d / N, 0.0)))
        shape = cand.astype(float)
        _, ku, _, lg = _scale_search(value, shape, N, q0, eps, max_evals, deadline, p0=p_fit, **uniform_kw)
        log += [("uniform",) + e for e in lg]
        if ku.sum() > k_uni_d.sum():
            k_uni = ku
            cands.append(ku)
    # the returned allocation: the largest candidate, certified once more with the full auto rule
    order = sorted(range(len(cands)), key=lambda j: -int(cands[j].sum()))
    finals: dict = {}  # counts -> the full rule's certificate there (each allocation certified once)

    def final_rule(k) -> AllocationCertificate:
        key = tuple(int(x) for x in k)
        if key not in finals:
            finals[key] = certify_allocation(graph, k, conv_method, F, tight_method, _memo=memo, _lean=True,
                                             _joint=False if state["joint"] is False else None)
        return finals[key]

    pick, ac = None, None
    for j in order:
        ac = final_rule(cands[j])
        if ac.eps <= eps:
            pick = cands[j]
            break
    if pick is None:  # cannot happen (Cert-D's allocation is feasible); fail closed
        raise RuntimeError("internal error: no certified allocation")
    top = cands[order[0]]
    if max_evals > 0 and top.sum() > pick.sum():
        # the search certified its largest allocation with one §12 method (the joint bound with SEARCH_JOINT_STEPS
        # Adam steps), but the final auto rule, what certify prints, is above eps there (its joint bound ends its
        # Adam steps on time): search the scale of that allocation's shape once more with the final rule itself
        # (a uniform budget's layers are then its uniform allocation, not Cert-D's)
        q_top = np.where(cand, top / N, 0.0)
        shape = q_top / q_top.max()
        q_pick = np.where(cand, pick / N, 0.0)
        # the known-feasible end: the pick's scale where it lies on the same shape (uniform mode), else 0
        t_lo = float(q_pick.max()) if np.allclose(q_pick * q_top.max(), q_top * q_pick.max(), atol=2.0 / N.min()) \
            else 0.0
        v_hi = float(final_rule(top).eps)  # computed by the candidate loop (rejected there)
        p = min(max(_scale_search.last_p, 0.5), 4.0)
        _, kf, _, lg = _scale_search(lambda k: final_rule(k).eps, shape, N, t_lo, eps, FINAL_RULE_EVALS, deadline,
                                     rtol=FINAL_RTOL, p0=p, hi_point=(float(q_top.max()), v_hi),
                                     t_first=float(q_top.max()) * (eps * (1 - 2e-3) / v_hi) ** (1.0 / p))
        log += [("final_rule",) + e for e in lg]
        if kf.sum() > pick.sum() and final_rule(kf).eps <= eps:  # fail closed: the full rule at exactly kf
            pick, ac = kf, final_rule(kf)
    if uniform_mode:  # the answer is the allocation the final rule certified: layers, total and fraction agree
        k_uni = pick
    elif k_uni is not None and finals.get(tuple(int(x) for x in k_uni), ac).eps > eps:  # (ac: the pick's, <= eps)
        # the reference the search certified is above eps by the full rule: the largest uniform allocation the full
        # rule certified instead (the pick where it is uniform, else Cert-D's uniform one: the full rule <= Cert-D)
        q_pick = np.where(cand, pick / N, 0.0)
        k_uni = pick if np.all(np.abs(_counts_at(q_pick.max(), cand.astype(float), N) - pick) <= 1) else k_uni_d
    uni_at = ac.as_dict() if k_uni is not None else None
    if k_uni is not None and k_uni is not pick:
        uni_at = _searched_certificate(searched.get(tuple(int(x) for x in k_uni)), eps)
        if uni_at is None:  # not evaluated by the search (or above eps there): the auto rule, once
            uni_cert = final_rule(k_uni)
            if uni_cert.eps > eps:  # fail closed (k_uni here is Cert-D's uniform allocation or searched <= eps)
                raise RuntimeError("internal error: uniform allocation exceeds eps")
            uni_at = uni_cert.as_dict()
    detail.update({"at_allocation": ac.as_dict(),
                   "uniform_at_allocation": uni_at,
                   "uniform_counts": [int(x) for x in k_uni] if k_uni is not None else None,
                   "search_method": state["method"], "tight_evaluations": state["evaluations"],
                   "uniform_reference": ("one tight evaluation at the scale predicted from the optimal allocation's "
                                         "tight/Cert-D ratio (accepted if <= eps; not searched to the scale tolerance)"
                                         if uniform_kw.get("accept_feasible") else
                                         f"scale search to a relative tolerance {uniform_kw['rtol']} on the fraction")
                   if k_uni_d is not None else None,
                   "log": [tuple(None if isinstance(x, float) and not math.isfinite(x) else x for x in e) for e in log]})
    eps_out, name_out = float(ac.eps), ac.certificate
    if refine is not None:
        ref = _refine_phase(F, graph, memo, pick, N, cand, eps, refine, refine_evaluations, refine_time_limit)
        detail["refine"] = ref["detail"]
        if ref["counts"] is not None:
            if uniform_mode or (k_uni is not None and k_uni is pick):
                k_uni = ref["counts"]
                detail["uniform_at_allocation"] = ref["detail"]["at_allocation"]
            pick, eps_out, name_out = ref["counts"], ref["eps"], f"tight:{refine}"
            detail["at_allocation"] = ref["detail"]["at_allocation"]
    steps["tight"] = time.perf_counter() - t0
    steps["tight_evaluations"] = state["evaluations"]
    return pick, k_uni, eps_out, name_out, detail


#: what the refine phase may invert (certify --bound)
REFINE_METHODS = ("sdp", "mixed", "joint", "pairs", "propagate", "composed")
REFINE_MAX_DIM = 700  # the sdp refine phase runs only up to this many lifted coordinates (SCS, sdp.MAX_DIM)


def _refine_phase(F, graph, memo: dict, k: np.ndarray, N: np.ndarray, cand: np.ndarray, eps: float, method: str,
                  max_evals: int, time_limit: float) -> dict:
    """Optional last phase of the tight inversion: grow the returned allocation (its per-layer fractions scaled by a
    common factor, :func:`_scale_search` from the allocation itself) with one explicit §12 method (``certify --bound
    <method>``: ``certify_chains(F, F_hat, method)``), at most ``max_evals`` evaluations and ``time_limit`` seconds.
    Fail closed: an allocation is returned only if that method's value *at it* was computed and is <= eps, and it
    prunes more than ``k``; the value reported is that method's (so ``certify --bound <method>`` prints it). Skipped
    (with the reason) above REFINE_MAX_DIM lifted coordinates."""
    import time

    from probprune.certificates.sdp_fo import lifted_dim

    out = {"counts": None, "eps": None, "detail": {"method": method}}
    dim = lifted_dim(F)
    out["detail"]["lifted_dim"] = dim
    if method == "sdp" and dim > REFINE_MAX_DIM:  # the other methods refuse by their own size limits
        out["detail"]["skipped"] = f"lifted dimension {dim} > {REFINE_MAX_DIM}"
        return out
    q = np.where(cand, k / N, 0.0)
    if q.max() <= 0:
        out["detail"]["skipped"] = "nothing pruned"
        return out
    lowered = _lowered_memo(F, graph, memo)
    t0 = time.perf_counter()

    def value(kk):
        masks, Fh = lowered(kk)
        return _tight_eps(F, graph, masks, method, Fh)[0]

    t, kr, v, lg = _scale_search(value, q / q.max(), N, float(q.max()), eps, max_evals, t0 + time_limit,
                                 rtol=FINAL_RTOL)
    out["detail"].update({"evaluations": len(lg), "seconds": time.perf_counter() - t0,
                          "log": [tuple(None if isinstance(x, float) and not math.isfinite(x) else x for x in e)
                                  for e in lg]})
    if v is None or not math.isfinite(v) or v > eps or kr.sum() <= k.sum():
        out["detail"]["kept"] = "the auto allocation (the refine method found no larger allocation <= eps)"
        return out
    out.update(counts=kr, eps=float(v))
    out["detail"]["at_allocation"] = {"eps": float(v), "certificate": f"tight:{method}",
                                      "note": f"certify --bound {method} at this allocation"}
    return out


def certified_budget(
    model,
    eps: float,
    method: str = "magnitude",
    mode: str = "optimal",
    delta: float | None = None,
    conv_method: str = "fft",
    prunable: Sequence[int | str] | None = None,
    rounds: int = 8,
    exact_search: bool | None = None,
    timings: dict | None = None,
    uniform_reference: bool | None = None,
    certificate: str = "auto",
    tight_evaluations: int = TIGHT_EVALUATIONS,
    time_limit: float | None = TIGHT_TIME_LIMIT,
    tight_method: str = "auto",
    refine: str | None = None,
    refine_evaluations: int = 4,
    refine_time_limit: float = 60.0,
):
    """Budget for a GIVEN network from its certificate (THEORY §3.11, search §11.3). ``model``: a
    :class:`~probprune.net.templates.ParsedModel` (a chain) or a :class:`probprune.net.Graph` (any traced model):

    - magnitude: layer-wise exact-k magnitude pruning; the largest counts with Cert-D <= eps (deterministic; the
      certificate of ``certify_graph`` from certified norms);
    - random: Bernoulli keep/prune with probability p_i = k_i/N_i drawn after the weights; the largest p_i with
      Cert-R <= eps with probability >= 1 - delta over the mask (delta split over the layers actually pruned).

    ``mode``: "optimal" or "uniform" (one common fraction); the best uniform allocation is always reported beside
    the optimal one. ``rounds``: search/probe/certify rounds; ``exact_search``: search on certified norms at every
    count (default for nets with at most 4,000 weights); ``timings``: a dict that receives the per-step seconds;
    ``uniform_reference``: also certify the best uniform allocation (default: for nets with at most 2,000,000
    weights; when skipped, ``uniform_fraction`` is NaN and ``uniform_total`` is -1, and a note says so).

    ``certificate`` (magnitude): "auto" inverts the certificate the auto rule reports at the allocation (THEORY
    §11.7: the smaller of Cert-D and the §12 certificates, :func:`certify_allocation`; what
    ``certify --bound auto`` prints), "lemma-a" inverts Cert-D only. With "auto" the Cert-D search above gives the
    shape of the allocation (and a feasible start: the auto value is <= Cert-D); candidates along a common scale of the
    per-layer fractions are then certified with the §12 method that won at the start (``tight_evaluations``
    evaluations per search, ``time_limit`` seconds in all), and the returned allocation is certified once more with
    the full auto rule (§11.7). In the optimal mode the uniform reference beside it takes one evaluation at a
    predicted scale (``REFERENCE_PREDICTED``) and keeps that evaluation's value (§11.8). Where the §12 certificates refuse the network (max
    pooling, other activations, too large to densify: :func:`tight_refusal`) Cert-D is inverted and a note says why.
    ``tight_method``: the §12 method ("auto": every method that applies at this size, the minimum, as ``certify``
    prints; or one of ``certificates.tight.TIGHT_METHODS``, e.g. "propagate", cheaper). ``refine`` (None: off; one of
    ``REFINE_METHODS``, e.g. "sdp"): after the search, grow the allocation with that §12 method alone
    (:func:`_refine_phase`: ``refine_evaluations`` evaluations, ``refine_time_limit`` seconds, networks up to
    ``REFINE_MAX_DIM`` lifted coordinates); where it certifies a larger allocation, that one is returned and
    ``certificate`` is "tight:<refine>" (``certify --bound <refine>`` prints its value). The result
    (:class:`CertifiedBudgetResult`) names the certificate inverted and its value at the allocation."""
    import time

    from probprune.budgets.apriori import ALLOCATION_MODES, LayerBudget
    from probprune.certificates.lemma import certify_random_graph
    from probprune.core.registry import METHODS

    t0 = time.perf_counter()
    eps = float(check_eps(eps))
    meth = METHODS.get(method) if isinstance(method, str) else None
    if meth is None or meth.budget_certificate is None:
        raise ProbPruneError("certified budgets support method 'magnitude' (Cert-D) or 'random' (Cert-R)")
    random = meth.random_mask  # Cert-R over the Bernoulli mask; else Cert-D (the k smallest |w|)
    if random:
        delta = check_delta(delta)
    am = ALLOCATION_MODES.get(mode) if isinstance(mode, str) else None
    if am is None or am.certified_as != mode:
        raise ProbPruneError("certified budgets support mode 'optimal' or 'uniform'")
    uniform_mode = not am.per_layer
    if certificate not in CERTIFICATES:
        raise ProbPruneError(f"unknown certificate {certificate!r}; choose from {', '.join(CERTIFICATES)}")
    from probprune.certificates.tight import TIGHT_METHODS as _TIGHT_METHODS

    if tight_method not in _TIGHT_METHODS:
        raise ProbPruneError(f"unknown tight_method {tight_method!r}; choose from {', '.join(_TIGHT_METHODS)}")
    if refine is not None and refine not in REFINE_METHODS:
        raise ProbPruneError(f"unknown refine method {refine!r}; choose from {', '.join(REFINE_METHODS)}")
    if refine is not None and (random or certificate != "auto"):
        raise ProbPruneError("refine applies to magnitude budgets with certificate 'auto'")
    if int(refine_evaluations) < 0 or not (math.isfinite(refine_time_limit) and refine_time_limit > 0):
        raise ProbPruneError("refine_evaluations must be >= 0 and refine_time_limit a positive number of seconds")
    if int(tight_evaluations) < 0:
        raise ProbPruneError(f"tight_evaluations must be >= 0, got {tight_evaluations}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ProbPruneError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if hasattr(model, "weight_nodes"):
        graph, has_bias = model, any(n.op.effective_bias() is not None for n in model.weight_nodes)
    else:
        from probprune.net import Graph

        graph = Graph.from_spec(model.spec, model.weights, model.biases, model.names or None)
        has_bias = model.has_bias
    cand = prunable_mask(graph, prunable)
    nW = weight_norms(graph, conv_method)
    ops = [n.op for n in graph.weight_nodes]
    N = np.array([op.weight.size for op in ops])
    if exact_search is None:
        exact_search = int(N.sum()) <= 4000
    t1 = time.perf_counter()
    steps = {"build_and_norm_W": t1 - t0}

    if uniform_reference is None:
        uniform_reference = int(N.sum()) <= 2_000_000
    uniform_reference = uniform_reference or uniform_mode
    if not random:
        curves = _Curves(graph, nW, exact_search, cand, conv_method)
        comp = graph_composition(graph, "D")
        runs = []
        if uniform_reference:
            uni = search_certified_counts(curves, comp, eps, uniform=True, rounds=rounds)
            runs.append(uni)
        if uniform_mode:
            res = uni
        else:
            res = search_certified_counts(curves, comp, eps, rounds=rounds)
            runs.append(res)
        if uniform_reference and res.k.sum() < uni.k.sum():
            res = uni
        k, eps_ach = res.k, res.certificate
        k_uni = uni.k if uniform_reference else None
        for key in ("search", "probe", "certify"):
            steps[key] = sum(x.timings[key] for x in runs)
        steps["rounds"] = sum(x.rounds for x in runs)
        steps["log"] = [entry for x in runs for entry in x.timings["log"]]
        steps["probes"] = curves.evaluations
        steps["certified_evaluations"] = curves.certified_evaluations
        steps["curves"] = time.perf_counter() - t1 - sum(steps[x] for x in ("search", "probe", "certify"))
        steps["total"] = time.perf_counter() - t0
    else:
        names = list(graph.weight_names)
        for op, c in zip(ops, cand):
            if c and getattr(op, "groups", 1) != 1:
                raise UnsupportedLayerError(f"Cert-R budget for the grouped convolution {op.fqn!r} is not supported "
                                            "(certify_random_graph handles a given p; the budget search does not)")

        def cert_r(K):
            return certify_random_graph(graph, {nm: kk / n for nm, kk, n in zip(names, K, N)}, delta, "bernoulli",
                                        conv_method).eps

        def best_r(uniform):
            n_assumed, best = int(cand.sum()), np.zeros(len(ops), np.int64)
            comp_fwd = graph_composition(graph, "Df")
            while n_assumed >= 1:
                curves = _CertRCurves(graph, nW, cand, delta / n_assumed)
                K = search_certified_counts(curves, comp_fwd, eps, uniform=uniform, rounds=rounds).k
                if K.sum() > best.sum():
                    best = K  # certified below with the actual split (never larger than the assumed one)
                n_pr = int(np.count_nonzero(K))
                if n_pr >= n_assumed or n_pr == 0:
                    break
                n_assumed = n_pr  # fewer layers pruned: each gets a larger share of delta; search again
            return best

        k_uni = best_r(True)
        k = k_uni if uniform_mode else best_r(False)
        if k.sum() < k_uni.sum():
            k = k_uni
        t2 = time.perf_counter()
        steps["search"] = t2 - t1
        eps_ach = cert_r(k) if k.any() else 0.0
        steps["certify"] = time.perf_counter() - t2
    cert_name, cert_detail = meth.budget_certificate, {}
    if not random and certificate == "auto":
        k, k_uni, eps_ach, cert_name, cert_detail = _tight_phase(
            graph, cand, eps, mode, k, k_uni, float(eps_ach), conv_method, int(tight_evaluations),
            (t0 + time_limit) if time_limit is not None else math.inf, steps, tight_method, refine,
            int(refine_evaluations), float(refine_time_limit), curves, comp)
    q = k / N
    q_uni = float(np.max(np.where(cand, k_uni / N, 0.0))) if k_uni is not None else float("nan")
    if eps_ach > eps:  # never report an allocation that violates the budget
        raise RuntimeError(f"internal error: certified allocation {eps_ach} exceeds eps {eps}")
    steps["total"] = time.perf_counter() - t0
    if timings is not None:
        timings.update(steps)
    out_layers = tuple(LayerBudget(op.fqn, int(op.weight.size), float(qi), int(ki)) for op, qi, ki in zip(ops, q, k))
    notes = ["a given network: no distributional assumption on the weights",
             "Cert-D: deterministic, layer-wise exact-k magnitude pruning (ties by flat index); every reported "
             "certificate uses certified operator norms (THEORY §11)" if not random
             else f"Cert-R: probability >= 1 - {delta} over the Bernoulli mask, conditional on the weights; delta "
                  "split over the layers actually pruned"]
    if has_bias:
        notes.append("biases are kept (not pruned) and enter the certificate through Lemma A's general form")
    if k_uni is None:
        notes.append("best uniform allocation not computed (uniform_reference=False): uniform_total = -1")
    if cert_detail.get("note"):
        notes.append(cert_detail["note"])
    if str(cert_detail.get("uniform_reference") or "").startswith("one tight evaluation"):
        notes.append("uniform allocation (a reference beside the optimal one): certified <= eps with one tight "
                     "evaluation at a predicted scale, not searched to tolerance (mode='uniform' searches it)")
    statement = "THEORY.md §3.11 (Cert-D / Cert-R) inverted per §3.9, search §11.3"
    if cert_name.startswith("tight:"):
        statement = ("THEORY.md §12 certificates (auto rule: min with Cert-D §3.11) inverted: Cert-D search §11.3 for "
                     "the shape, §12 certificates on the candidates")
    return _result_class()(eps, delta if random else None, method, mode, out_layers, float(eps_ach), q_uni,
                           int(k_uni.sum()) if k_uni is not None else -1, "certificate", statement, tuple(notes),
                           certificate=cert_name, certificate_detail=cert_detail)
