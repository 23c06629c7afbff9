"""From scores or densities to 0/1 masks (THEORY.md §5): exact top-k by score (layer-wise or global), threshold,
and random masks with an explicit sampling mode.

Rounding rule (recorded in every report): the number of pruned entries is ``floor(s * N)`` by default
(``rounding="floor"``; RigL's rule). ``"round"`` is round-half-to-even (torch.nn.utils.prune), ``"ceil"`` rounds up.
Ties in score are broken by flat index (stable sort: among equal scores the lower index is pruned first), so the
pruned count is exact and every kept score is >= every pruned score.

Sampling modes for random masks: ``"exact"`` (``floor((1 - d) N)`` zeros at positions of a seeded permutation, i.e.
top-k of i.i.d. uniform scores), ``"bernoulli"`` (each entry kept independently with probability d; realised
density has sd sqrt(d(1-d)/N)). ``"threshold"`` applies to score-based pruning (prune score < tau; count random).
"""
from __future__ import annotations

import math
from typing import Mapping

from probprune.core.errors import ProbPruneError, check_fraction

ROUNDING = ("floor", "round", "ceil")
SAMPLING = ("exact", "bernoulli", "threshold")


def pruned_count(sparsity: float, n: int, rounding: str = "floor") -> int:
    """Number of entries to prune out of ``n`` for a requested sparsity, under the named rounding rule."""
    s = float(check_fraction(sparsity, "sparsity"))
    x = s * n
    if rounding == "floor":
        k = math.floor(x + 1e-9 * max(1.0, x))  # guard against 0.3*10 = 2.9999999999999996
    elif rounding == "round":
        k = round(x)
    elif rounding == "ceil":
        k = math.ceil(x - 1e-9 * max(1.0, x))
    else:
        raise ProbPruneError(f"unknown rounding {rounding!r}; use one of {', '.join(ROUNDING)}")
    return int(min(max(k, 0), n))


def _prev_pruned(prev_mask, name, shape):
    import torch

    if prev_mask is None or name not in prev_mask:
        return torch.zeros(shape, dtype=torch.bool)
    pm = prev_mask[name]
    if tuple(pm.shape) != tuple(shape):
        raise ProbPruneError(f"previous mask for {name!r} has shape {tuple(pm.shape)}, scores have {tuple(shape)}")
    return ~pm.bool()


def exact_k_prune_mask(scores, k: int, forced_pruned=None):
    """The package's one exact-k pruning rule (THEORY §1.5 exact-k, §1.6 R-exact, §5).

    ``scores``: a torch tensor or numpy array of shape (..., N): one problem per row of the last axis (e.g. one flat
    weight tensor, or n stacked trials). Returns the **prune** mask (bool, same shape/type family: True = pruned) with
    exactly ``k`` entries pruned per row: first every ``forced_pruned`` entry (bool, same shape; e.g. pruned by a
    previous IMP round), then the lowest scores. Ties are broken by flat index: a stable ascending sort, so among
    equal scores the lower index is pruned first; hence every kept score is >= every pruned (non-forced) score.
    Magnitude exact-k is ``exact_k_prune_mask(|W|, k)``; R-exact is the same on i.i.d. uniform scores."""
    import numpy as np
    import torch

    as_numpy = not isinstance(scores, torch.Tensor)
    s = torch.as_tensor(np.asarray(scores) if as_numpy else scores).to(torch.float64).clone()
    n = s.shape[-1] if s.dim() else 1
    k = int(k)
    if not 0 <= k <= n:
        raise ProbPruneError(f"exact-k pruning needs 0 <= k <= {n}, got k={k}")
    if forced_pruned is not None:
        s[torch.as_tensor(np.asarray(forced_pruned) if as_numpy else forced_pruned, dtype=torch.bool)] = -math.inf
    order = torch.sort(s, dim=-1, stable=True).indices[..., :k]
    pruned = torch.zeros(s.shape, dtype=torch.bool)
    pruned.scatter_(-1, order, True)
    return pruned.numpy() if as_numpy else pruned


def bernoulli_keep_mask(rng, shape, p):
    """The package's one Bernoulli pruning draw on numpy (THEORY §1.6 R-Bern): each entry pruned independently with
    probability ``p`` (a number, or an array broadcasting against ``shape``): kept iff u >= p for u ~ U[0, 1) drawn
    by ``rng.random(shape)`` (a ``numpy.random.Generator``; one draw per entry, so the same seed gives the same
    mask everywhere). Returns the bool **keep** mask."""
    return rng.random(shape) >= p


def exact_k_order(scores):
    """The order of :func:`exact_k_prune_mask` for one flat numpy score vector: indices by increasing score, ties by
    flat index (the stable order), so ``exact_k_order(s)[:k]`` are the entries exact-k pruning removes. Computed as
    the faster unstable sort with the runs of equal scores re-sorted by index (the same result as a stable sort)."""
    import numpy as np

    a = np.asarray(scores, float).ravel()
    o = np.argsort(a)
    s = a[o]
    eq = s[1:] == s[:-1]
    if eq.any():  # runs of equal scores: put each run's indices in increasing order (the stable order)
        j = np.flatnonzero(eq)
        pos = np.union1d(j, j + 1)  # every position in a run of ties (sorted, so s[pos] is nondecreasing)
        op = o[pos]
        o[pos] = op[np.lexsort((op, s[pos]))]
    return o


def magnitude_pruned(W, k: int):
    """Layer-wise exact-k magnitude pruning of one tensor (THEORY §1.5 / §5): the weights with the ``k`` smallest |w|
    zeroed, ties by flat index (:func:`exact_k_prune_mask` on |W|). Returns the pruned weights (float64, W's shape)."""
    import numpy as np

    flat = np.asarray(W, float).ravel()
    out = flat.copy()
    out[exact_k_prune_mask(np.abs(flat), k)] = 0.0
    return out.reshape(np.shape(W))


def _bottom_k_mask(flat_scores, k: int, forced_pruned):
    """Keep-mask (flat) pruning ``k`` entries: :func:`exact_k_prune_mask` negated."""
    return ~exact_k_prune_mask(flat_scores, k, forced_pruned)


def layerwise_topk_mask(scores: Mapping, sparsity, prev_mask: Mapping | None = None,
                        rounding: str = "floor") -> dict:
    """Per tensor, prune the ``pruned_count(s_l, N_l)`` lowest-scoring entries. ``sparsity`` is a number or a dict
    FQN -> fraction of the **whole** tensor to prune. With ``prev_mask`` the previously pruned entries stay pruned
    (they count towards the target); asking for less than what is already pruned raises."""
    out = {}
    for name, sc in scores.items():
        s = sparsity[name] if isinstance(sparsity, Mapping) else sparsity
        n = sc.numel()
        k = pruned_count(s, n, rounding)
        forced = _prev_pruned(prev_mask, name, sc.shape).reshape(-1)
        if int(forced.sum()) > k:
            raise ProbPruneError(f"{name!r}: requested sparsity {float(s):.4g} is below the {int(forced.sum())}/{n} "
                                 "entries already pruned by the previous mask")
        out[name] = _bottom_k_mask(sc.reshape(-1), k, forced).reshape(sc.shape)
    return out


def layerwise_count_mask(scores: Mapping, counts: Mapping[str, int], prev_mask: Mapping | None = None) -> dict:
    """Per tensor, prune exactly ``counts[name]`` entries **in addition to** those pruned by ``prev_mask`` (IMP)."""
    out = {}
    for name, sc in scores.items():
        forced = _prev_pruned(prev_mask, name, sc.shape).reshape(-1)
        k = int(forced.sum()) + int(counts.get(name, 0))
        if k > sc.numel():
            raise ProbPruneError(f"{name!r}: cannot prune {k} of {sc.numel()} entries")
        out[name] = _bottom_k_mask(sc.reshape(-1), k, forced).reshape(sc.shape)
    return out


def global_topk_mask(scores: Mapping, sparsity: float | None = None, prev_mask: Mapping | None = None,
                     rounding: str = "floor", extra_count: int | None = None) -> dict:
    """Concatenate the scores of all tensors (in dict order) and prune the ``pruned_count(s, sum N)`` lowest.
    With ``extra_count`` instead of ``sparsity``: prune that many entries beyond those pruned by ``prev_mask``."""
    import torch

    names = list(scores)
    flats = [scores[n].reshape(-1) for n in names]
    forced = torch.cat([_prev_pruned(prev_mask, n, scores[n].shape).reshape(-1) for n in names])
    allsc = torch.cat([f.double() for f in flats])
    total = allsc.numel()
    if extra_count is not None:
        k = int(forced.sum()) + int(extra_count)
        if k > total:
            raise ProbPruneError(f"cannot prune {k} of {total} entries")
    else:
        if sparsity is None:
            raise ProbPruneError("global_topk_mask needs sparsity or extra_count")
        k = pruned_count(sparsity, total, rounding)
        if int(forced.sum()) > k:
            raise ProbPruneError(f"requested sparsity {float(sparsity):.4g} is below the fraction already pruned "
                                 f"({int(forced.sum())}/{total})")
    keep = _bottom_k_mask(allsc, k, forced)
    out, i = {}, 0
    for n, f in zip(names, flats):
        out[n] = keep[i: i + f.numel()].reshape(scores[n].shape)
        i += f.numel()
    return out


def threshold_mask(scores: Mapping, tau: float, prev_mask: Mapping | None = None) -> dict:
    """Prune every entry with score < ``tau`` (``sampling="threshold"``; the count is whatever falls below)."""
    out = {}
    for name, sc in scores.items():
        forced = _prev_pruned(prev_mask, name, sc.shape)
        out[name] = (sc >= tau) & ~forced
    return out


def random_mask(shapes: Mapping[str, tuple], densities: Mapping[str, float] | float, seed: int,
                sampling: str = "exact", rounding: str = "floor") -> dict:
    """Random mask with per-tensor keep densities. ``"exact"``: ``pruned_count(1 - d, N)`` zeros at the positions of
    a seeded permutation (top-k of i.i.d. uniform scores from one generator). ``"bernoulli"``: keep each entry
    independently with probability d."""
    import torch

    from probprune.pruning.scores import random_scores

    if sampling not in _RANDOM_MASKS:
        raise ProbPruneError(f"unknown sampling {sampling!r} for random masks; use 'exact' or 'bernoulli'")
    dens = {k: (densities[k] if isinstance(densities, Mapping) else densities) for k in shapes}
    for k, d in dens.items():
        check_fraction(d, f"density of {k}")
    return _RANDOM_MASKS[sampling](random_scores(shapes, seed), dens, rounding)


def _bernoulli_keep(u, dens, rounding):
    """Bernoulli: keep where u < d (each entry independently)."""
    return {k: u[k] < float(dens[k]) for k in dens}


def _exact_keep(u, dens, rounding):
    """exact: the top (1 - d) share of the uniform scores pruned (a seeded permutation)."""
    return layerwise_topk_mask(u, {k: 1.0 - float(d) for k, d in dens.items()}, rounding=rounding)


#: the sampling model of a random mask (the names of ``probprune.core.registry.SAMPLINGS`` that a density drives;
#: this module sits below the registry, which imports it) -> the keep-mask from the uniform scores
_RANDOM_MASKS = {"exact": _exact_keep, "bernoulli": _bernoulli_keep}
