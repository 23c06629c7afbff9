"""Mixed certificate (THEORY.md §12.3, Statement 12.8 [D]): the backward unrolling of Statement 12.3 with the
*activation-dependent* factors bounded by bound propagation on F_hat over the region, and only the slope products
bounded by norms / pair bounds:

    F(x) - F_hat(x) = sum_i P_i(x) v_i(x),   P_i = M_L S_{L-1} ... M_{i+1} S_i,   v_i = E_i shat_{i-1}(x) + (b_i - bhat_i)

    ||F(x) - F_hat(x)|| <= sum_i min( Pi_i V_i ,  pi_i beta_{i-1} + Pi_i ||b_i - bhat_i|| )

with V_i >= sup_R ||v_i|| from CROWN on F_hat with the rows of E_i as specification (Statements 12.5-12.6; exact
trust-region bound for i = 1, where v_1 = E_1 x + db_1 is affine), Pi_i the best grouping bound (Statement 12.3) of
sup_S ||M_L S ... S M_{i+1}||, pi_i the same with the factor E_i appended, and beta_{i-1} >= sup_R ||shat_{i-1}||
(the smaller of the norm recursion and bound propagation).

Anchored form (Statement 12.9), a third candidate per term: v_i(x) = w_i + E_i (shat_{i-1}(x) - shat_{i-1}(x0)) with
w_i = v_i(x0), and shat_{i-1}(x) - shat_{i-1}(x0) = Shat Mhat_{i-1} ... Shat Mhat_1 (x - x0) (slopes in [0, I]):
sup ||P_i v_i|| <= g(M_L, ..., M_{i+1}, w_i) + g(M_L, ..., M_{i+1}, E_i, Mhat_{i-1}, ..., Mhat_1) ||x - x0||_max,
g the grouping bound."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.compose import (StageNorms, _pair_cache, chain_product_bound, collapse_blocks,
                                            lip_blocks, stage_norms)
from probprune.certificates.lower import Chain, stage_diff
from probprune.certificates.propagate import CoupledPropagator, Region, l2_sup_from_linear, trs_dual_bound


@dataclass(frozen=True)
class MixedResult:
    eps: float
    terms: tuple[float, ...]  # per stage i: the bound used for sup ||P_i v_i||
    V: tuple[float, ...]  # sup ||v_i|| bounds
    Pi: tuple[float, ...]  # slope-product bounds
    beta: tuple[float, ...]  # sup ||shat_i|| bounds (i = 0..L-2)


def _sup_l2_rows(prop: CoupledPropagator, stage: int, C: np.ndarray, offset: np.ndarray) -> float:
    """:func:`_sup_l2_rows_impl` under certify_chains' deadline: not started when it is predicted to end past it
    (issue 19 UA, the hard wall). Seconds predicted x compose.STEP_SAFETY: the per-row rate of the last query at this
    stage; else the rate of the largest query so far (rows x (stage + 1), its fixed costs weigh least there); before
    the first query, the back-substitution (2 x rows) at the per-row rates measured while the propagator was built,
    x 1.5 for the memo key and the concretisation. Memoised on the propagator by content (stage, its modes, the
    fingerprints of C and the offset): "auto" runs the mixed bound in several pair modes on one propagator, and the
    sups V_i and beta_i do not depend on the mode."""
    import time

    from probprune.certificates.compose import _STEPS, STEP_SAFETY, check_deadline, fingerprint

    memo = prop.__dict__.setdefault("_rows_memo", {})
    key = (stage, prop.modes, fingerprint(C), fingerprint(offset))
    if key in memo:
        return memo[key]
    hist = _STEPS.get()
    if hist is None:
        hist = {}
    rows = float(C.shape[0])
    work = rows * (stage + 1)
    rate = getattr(prop, "_query_rate", None)  # (work, seconds) of the largest query so far
    if ("query", stage) in hist:
        predicted = hist[("query", stage)] * rows
    elif rate is not None:
        predicted = rate[1] * work / rate[0]
    else:
        predicted = 1.5 * 2.0 * rows * sum(hist.get(("backsub", j), 0.0) for j in range(stage + 2))
    check_deadline(STEP_SAFETY * predicted)
    t = time.perf_counter()
    out = _sup_l2_rows_impl(prop, stage, C, offset)
    dt = time.perf_counter() - t
    hist[("query", stage)] = dt / max(rows, 1.0)
    if rate is None or work >= rate[0]:
        prop._query_rate = (work, dt)
    memo[key] = out
    return out


def _sup_l2_rows_impl(prop: CoupledPropagator, stage: int, C: np.ndarray, offset: np.ndarray) -> float:
    """sup over the region (single centre) of ||C shat_stage(x) + offset||_2 (Statements 12.5-12.6)."""
    import torch

    Ct = torch.as_tensor(np.vstack([C, -C]), dtype=torch.float64)
    Lx, const, mag = prop._backward_upper(stage, None, Ct, "hat", start_act=True)
    off = torch.as_tensor(np.concatenate([offset, -offset]), dtype=torch.float64)
    const = const + off
    mag = mag + off.abs()
    r = l2_sup_from_linear(prop, Lx, const, mag, C.shape[0])
    return float(r.eps[0])


PAIR_MODES = ("full", "scalar", "none")
#: pair_bounds="scalar": segments through max-pool blocks (Statement 12.41) of at most this many factors (cost)
SCALAR_POOL_SEGMENT_LEN = 4


def _scalar_pair_cache(mats: dict):
    """Pair bounds by Statement 12.2 with the scalar multiplier only (compose.scalar_pair_bound; no diagonal
    multipliers, no longer segments): any valid pair bound may enter the grouping of Statement 12.3 (§12.9, Statement
    12.33). Memoised by content: the "full" mode reuses the values of its pairs above compose.DIAG_MAX_DIM."""
    from functools import lru_cache

    from probprune.certificates.compose import check_deadline, fingerprint_memo, scalar_pair_bound

    fp = fingerprint_memo(mats)

    @lru_cache(maxsize=None)
    def pb(kind_a, i, kind_b, j):
        check_deadline()
        # a pair not cached and predicted past the deadline is +inf: single norms there, the others go on
        return scalar_pair_bound(mats[(kind_a, i)], mats[(kind_b, j)], fp((kind_a, i)), fp((kind_b, j)),
                                 skip_if_late=True)

    pb.fp = fp
    return pb


def lemma_a_mixed(F: Chain, Fhat: Chain, region: Region, prop: CoupledPropagator | None = None,
                  norms: StageNorms | None = None, max_pair_dim: int = 4096, pair_bounds: str = "full",
                  anchored_beta: bool = False, pool_segments: bool | None = None, long_segment_dim: int = 0,
                  propagation: bool = True) -> MixedResult:
    """Statement 12.8 for one region (one centre). ``pair_bounds``: "full" (compose's pair and segment bounds,
    Statements 12.2 and 12.10), "scalar" (Statement 12.2 with the scalar multiplier only) or "none" (products of
    single norms): the slope products Pi_i are then looser but cost seconds instead of minutes on CNNs (§12.9,
    Statement 12.33); every choice is an upper bound. ``anchored_beta``: beta_i also by Statement 12.40;
    ``pool_segments``: segments through max-pool blocks by Statement 12.41 (THEORY §12.10); default (None): on with
    "full", off with "scalar" (LeNet-5 digits q = 0.6, scalar: 112.3 -> 105.0 with segments of <= 4 factors, 103.3
    with <= 5, but 3.4 s -> 8.5 / 10.0 s: the cheap mode stays cheap);
    ``long_segment_dim`` (with "full"): Statement 12.10 segments of factors up to this size (0: compose.SEGMENT_MAX_DIM;
    residual nets carry 2x-wide stages: resnet_bn_digits q = 0.6, 2048: 135.0 -> 97.7 in 49 s instead of 23 s).
    ``propagation`` False (Statement 12.51, THEORY §12.11): no bound propagation at all (``prop`` unused, none built):
    V_i = +inf for i > 1 (V_1 is the exact trust-region bound of the affine v_1) and beta by the norm recursion
    (with Statement 12.17 at max-pool blocks; Statement 12.40 if ``anchored_beta``); every term then comes from the
    trust-region, the norm-recursion or the anchored candidate. Term by term never below the propagated variant."""
    if region.centers.shape[0] != 1:
        raise ProbPruneError("lemma_a_mixed takes a region with one centre")
    if pair_bounds not in PAIR_MODES:
        raise ProbPruneError(f"pair_bounds must be one of {', '.join(PAIR_MODES)}, got {pair_bounds!r}")
    if pair_bounds == "none":
        max_pair_dim = 0
    if pool_segments is None:
        pool_segments = pair_bounds == "full"
    pool_segments = bool(pool_segments) and bool(getattr(F, "lip_blocks", ()))  # no max pooling: one pass
    if propagation:
        prop = prop or CoupledPropagator(F, Fhat, region, modes="hat")  # the mixed bound queries F_hat only
    n = norms or stage_norms(F, Fhat)
    L = F.depth
    dims_ok = all(max(s.M.shape) <= max_pair_dim for s in F.stages)
    pb = lambda *a: math.inf  # noqa: E731  (replaced below when pair bounds are used)
    single = {("M", i): n.M[i] for i in range(L)}
    single.update({("E", i): n.E[i] for i in range(L)})
    x0, r = region.centers[0], region.radius
    r2 = r if region.norm == "l2" else r * math.sqrt(F.n_in)  # l2 radius of the region around x0
    # anchored at x0 (Statement 12.9): shat_{i-1}(x0) by a forward pass of F_hat
    s_at = [x0]
    for st in Fhat.stages[:-1]:
        z = st.M @ s_at[-1] + st.b
        s_at.append(np.where(st.relu, np.maximum(z, 0.0), z))
    diffs = [stage_diff(F, Fhat, i) for i in range(L)]
    w = [diffs[i][0] @ s_at[i] + diffs[i][1] for i in range(L)]
    if dims_ok and pair_bounds == "full":
        pb = _pair_cache(F, Fhat, {("w", i): w[i][:, None] for i in range(L)}, pool_segments=pool_segments,
                         segment_max_dim=long_segment_dim or None)
    elif dims_ok:
        mats = {("w", i): w[i][:, None] for i in range(L)}
        for i, (st, sth) in enumerate(zip(F.stages, Fhat.stages)):
            mats[("M", i)], mats[("E", i)], mats[("H", i)] = st.M, diffs[i][0], sth.M
        pb = _scalar_pair_cache(mats)
        if pool_segments and F.lip_blocks:  # Statement 12.41 segments through max-pool blocks (one pass per start)
            from probprune.certificates.compose import _pool_segment_fn

            pb.pool_segment = _pool_segment_fn(F, mats, pb.fp, max_len=SCALAR_POOL_SEGMENT_LEN)
    single.update({("H", i): n.Mhat[i] for i in range(L)})
    single.update({("w", i): float(np.linalg.norm(w[i])) * (1 + 1e-12) for i in range(L)})
    # beta_{i}: sup ||shat_i||, i = -1 (the input) .. L-2
    beta_in = float(np.linalg.norm(x0)) + (r if region.norm == "l2" else r * math.sqrt(F.n_in))
    beta = []
    blocks = lip_blocks(F, n)
    rec = beta_in
    has_err = [bool(np.any(E)) or bool(np.any(db)) for E, db in diffs]
    for i in range(L - 1):
        rec = n.Mhat[i] * rec + n.bias_hat[i]
        for a, (b, Lb) in blocks.items():
            if i == b:  # Statement 12.17
                rec = min(rec, Lb * (beta[a - 1] if a > 0 else beta_in))
        if anchored_beta:  # Statement 12.40: ||shat_i(x0)|| + g(Mhat_i, ..., Mhat_1) rho
            hs = collapse_blocks([("H", j) for j in range(i, -1, -1)], blocks, single)
            rec = min(rec, float(np.linalg.norm(s_at[i + 1])) * (1 + 1e-12) + chain_product_bound(hs, single, pb) * r2)
        k = F.stages[i].n_out
        # beta_i enters only the term of stage i + 1 (and, through the recursion, later ones): propagate it where
        # stage i + 1 carries an error (inside max-pool trees and carried blocks E = 0: the norm recursion and
        # Statement 12.17 suffice there, §12.9)
        if propagation and has_err[i + 1] and k <= 4096:
            rec = min(rec, _sup_l2_rows(prop, i, np.eye(k), np.zeros(k)))
        beta.append(rec)
    pool_seg = getattr(pb, "pool_segment", None)
    if pool_seg is not None:  # first pass without the max-pool segments of Statement 12.41 (cheap, kept on a deadline)
        pb.pool_segment = None

    def term(i, V=None):
        E, db = diffs[i]
        prefix = collapse_blocks([("M", j) for j in range(L - 1, i, -1)], blocks, single)
        Pi = chain_product_bound(prefix, single, pb) if prefix else 1.0
        if V is None and i == 0:
            if region.norm == "l2":
                V = trs_dual_bound(E, E @ x0 + db, r)
            else:
                V = float(np.linalg.norm(E @ x0 + db)) + r * float(np.abs(E).sum(1).max()) * math.sqrt(E.shape[0])
        elif V is None:
            V = _sup_l2_rows(prop, i - 1, E, db) if propagation and E.shape[0] <= 4096 else math.inf
        b_prev = beta_in if i == 0 else beta[i - 1]
        alt = (chain_product_bound(prefix + [("E", i)], single, pb) * b_prev if n.E[i] > 0 else 0.0) + Pi * n.bias_diff[i]
        anchored = (chain_product_bound(prefix + [("w", i)], single, pb)
                    + (chain_product_bound(prefix + [("E", i)] + collapse_blocks(
                        [("H", j) for j in range(i - 1, -1, -1)], blocks, single), single, pb)
                       * r2 if n.E[i] > 0 else 0.0))
        return min(Pi * V if math.isfinite(V) else math.inf, alt, anchored), V, Pi

    terms, Vs, Pis = [], [], []
    live = [i for i in range(L) if np.any(diffs[i][0]) or np.any(diffs[i][1])]
    for i in range(L):
        if i not in live:
            terms.append(0.0), Vs.append(0.0), Pis.append(float("nan"))
            continue
        t_i, V, Pi = term(i)
        terms.append(t_i), Vs.append(V), Pis.append(Pi)
    if pool_seg is not None:
        # second pass with them: each term is an upper bound of its own sup (Statement 12.8's proof), so the smaller
        # of the two passes is kept term by term; past the deadline the terms not reached keep their first-pass value
        from probprune.certificates.compose import TimeLimitReached

        pb.pool_segment = pool_seg
        better = {}
        for i in sorted(live, key=lambda j: -terms[j]):  # the largest terms first: past the deadline the terms
            try:  # finished so far are kept
                better[i] = term(i, Vs[i])
            except TimeLimitReached:
                break
        for i, (t_i, _, Pi) in better.items():
            terms[i] = min(terms[i], t_i)
            Pis[i] = min(Pis[i], Pi)
    return MixedResult(float(sum(terms)) * (1 + 1e-9), tuple(terms), tuple(Vs), tuple(Pis), tuple(beta))
