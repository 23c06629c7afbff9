"""Monte Carlo coverage of the sharper a-priori bounds (THEORY §9): for each configuration, T >= 1000 networks are drawn
from the weight law, pruned, and the exact error (linear nets: spectral norm of the product difference, §6) or the
exact norms of W_i / E_i are compared with the bound; the bound is refuted when the one-sided Clopper-Pearson lower
limit of the violation rate exceeds its delta (probprune.mc.stats, §6). Corners: deep narrow nets, fractions near 0
and 1, delta near 0 and 1, per-layer fractions, Gaussian law with exact-k random pruning, exact-k magnitude."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from probprune.theory import sharp
from probprune.theory.apriori import apriori_bound
from probprune.mc.stats import cp_lower
from probprune.net.templates import fcn_spec, sample_weights

ALPHA = 0.001  # fixed seeds: deterministic; a small alpha keeps a grid of checks from flagging by chance


def _mask(rng, w, method, q, law, a):
    """Pruned-entry indicator for stacked weights w (T, d_out, d_in)."""
    T = w.shape[0]
    if method in ("magnitude", "magnitude_exact", "random_exact"):
        if method == "magnitude":
            tau = q * a if law == "uniform" else stats.norm.ppf((1 + q) / 2) * a
            return np.abs(w) < tau
        k = int(np.floor(q * w[0].size))
        score = np.abs(w) if method == "magnitude_exact" else rng.random(w.shape)
        flat = score.reshape(T, -1)
        P = np.zeros(flat.shape, bool)
        if k > 0:
            idx = np.argpartition(flat, k - 1, axis=1)[:, :k]
            np.put_along_axis(P, idx, True, axis=1)
        return P.reshape(w.shape)
    return rng.random(w.shape) < q


def _draw(spec, law, method, q, T, seed):
    rng = np.random.default_rng(seed)
    W = sample_weights(spec, rng, law, n=T)
    qs = np.broadcast_to(np.asarray(q, float), (spec.depth,))
    Wh = []
    for w, L, qi in zip(W, spec.layers, qs):
        P = _mask(rng, w, method, qi, law, L.half_width)
        wh = np.where(P, 0.0, w)
        if method == "random_rescaled":
            wh = wh / (1 - qi)
        Wh.append(wh)
    return W, Wh


def _exact_error(W, Wh):
    A, B = W[0], Wh[0]
    for w, wh in zip(W[1:], Wh[1:]):
        A, B = w @ A, wh @ B
    return np.linalg.norm(A - B, 2, axis=(1, 2))


def _check(viol: np.ndarray, delta: float, what: str):
    V, T = int(np.sum(viol)), int(viol.size)
    lo = cp_lower(V, T, ALPHA)
    assert lo <= delta, f"{what}: {V}/{T} violations, CP lower {lo:.4f} > delta {delta}"
    return V / T


#: extra failure probabilities checked on the same draws as a corner's own delta: a corner at delta near 1 alone
#: accepts a bound that is violated by up to ~90% of the draws, so it could not catch a bound too small by a factor
LADDER = (0.5, 0.2, 0.05)


def _coverage(widths, law, method, q, delta, T=1000, seed=0, statement="best", ladder=()):
    spec = fcn_spec(widths, "identity")
    W, Wh = _draw(spec, law, method, q, T, seed)
    err = _exact_error(W, Wh)
    for d in sorted(set(ladder) - {delta}):
        rd = apriori_bound(spec, q, d, method, law, statement=statement)
        _check(err > rd.eps, d, f"{widths} {law} {method} q={q} delta={d} eps (ladder)")
    r = apriori_bound(spec, q, delta, method, law, statement=statement)
    tag = f"{widths} {law} {method} q={q} delta={delta}"
    rate = _check(err > r.eps, delta, tag + " eps")
    # each term at its own failure probability
    nW = np.stack([np.linalg.norm(w, 2, axis=(1, 2)) for w in W], -1)
    nE = np.stack([np.linalg.norm(w - wh, 2, axis=(1, 2)) for w, wh in zip(W, Wh)], -1)
    dW = np.broadcast_to(r.allocation.delta_W, (spec.depth,))
    dE = np.broadcast_to(np.asarray(r.allocation.delta_E) + np.asarray(r.allocation.delta_T), (spec.depth,))
    for i in range(spec.depth):
        _check(nW[:, i] > r.B[i], float(dW[i]), tag + f" B_{i}")
        if r.eta[i] > 0:
            _check(nE[:, i] > r.eta[i], float(dE[i]), tag + f" eta_{i}")
    return rate, r


# ------------------------------------------------------------------------------------------- default (small)
@pytest.mark.parametrize("widths,law,method,q,delta", [
    ([4, 4, 4, 4, 4, 4, 4, 4], "uniform", "magnitude", 0.5, 0.9),  # deep narrow, delta near 1
    ([8, 8, 8], "gaussian", "random_exact", 0.3, 0.5),  # Gaussian law with exact-k random pruning
    ([6, 10, 4, 5], "uniform", "magnitude_exact", [0.05, 0.5, 0.95], 0.5),  # per-layer fractions, exact-k magnitude
    ([5, 20, 3], "gaussian", "magnitude", 0.999, 0.99),  # fraction near 1
    ([12, 3, 12], "uniform", "random", 0.002, 0.9),  # fraction near 0 (no jump at 0+)
    ([5, 20, 3], "gaussian", "magnitude", 1.0, 0.5),  # everything pruned (c = inf corner)
])
def test_sharp_bound_covers_small(widths, law, method, q, delta):
    """Each corner at its own delta and, on the same draws, at delta in LADDER (0.5, 0.2, 0.05)."""
    _coverage(widths, law, method, q, delta, T=1000, seed=11, ladder=LADDER)


def test_the_coverage_check_refutes_a_bound_that_is_too_small():
    """The check can fail: on the deep narrow corner's draws, a "bound" at the empirical 80% error quantile is
    refuted at delta = 0.05 and the empirical median at delta = 0.2 and 0.05, while the corner's own delta (0.9)
    accepts even the median: only the LADDER makes that corner able to fail."""
    spec = fcn_spec([4, 4, 4, 4, 4, 4, 4, 4], "identity")
    W, Wh = _draw(spec, "uniform", "magnitude", 0.5, 1000, 11)
    err = _exact_error(W, Wh)
    with pytest.raises(AssertionError, match="CP lower"):
        _check(err > np.quantile(err, 0.8), 0.05, "80% quantile")
    for d in LADDER[1:]:
        with pytest.raises(AssertionError, match="CP lower"):
            _check(err > np.median(err), d, "median")
    _check(err > np.median(err), 0.9, "median at the corner's delta")  # passes: delta 0.9 alone cannot fail here
