"""Layer-wise density allocation for random pruning (THEORY.md §5): uniform, ER, ERK (RigL's exact algorithm with
dense capping and ties), SNIP-ratio. Densities are keep fractions d_l (1 - sparsity).

Provenance: ERK follows RigL's ``get_sparsities_erdos_renyi`` (Evci et al. 2020, google-research/rigl
``sparse_utils.py``) as transcribed in THEORY.md §5; ER ignores kernel dimensions; SNIP-ratio follows
Liu et al. 2022 (VITA-Group/Random_Pruning): SNIP on an xavier_normal re-initialised copy, one batch.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from probprune.core.errors import ProbPruneError, check_fraction

SCHEMES = ("uniform", "er", "erk", "snip_ratio")


@dataclass(frozen=True)
class DensityAllocation:
    """Per-layer keep densities and the quantities of the allocation.

    ``raw``: the unnormalised ER/ERK probabilities; ``eps``: the scale factor (d_l = eps * raw_l off the dense set);
    ``dense``: layers capped at density 1; ``custom``: layers with user-fixed densities; ``target_zeros``:
    sum over budgeted layers of floor(S * N_l); ``custom_in_budget``: whether custom layers count in the budget."""

    scheme: str
    sparsity: float
    densities: dict
    raw: dict = field(default_factory=dict)
    eps: float | None = None
    dense: tuple = ()
    custom: dict = field(default_factory=dict)
    target_zeros: int = 0
    custom_in_budget: bool = False
    erk_power_scale: float = 1.0

    def expected_zeros(self, shapes: Mapping[str, tuple]) -> float:
        return float(sum((1.0 - self.densities[k]) * int(np.prod(s)) for k, s in shapes.items()))


def _check(shapes, sparsity):
    if not shapes:
        raise ProbPruneError("no layers to allocate densities to")
    s = float(check_fraction(sparsity, "sparsity", upper_open=True))
    return s


def uniform_densities(shapes: Mapping[str, tuple], sparsity: float) -> DensityAllocation:
    """d_l = 1 - S for every layer."""
    s = _check(shapes, sparsity)
    zeros = sum(math.floor(s * int(np.prod(sh))) for sh in shapes.values())
    return DensityAllocation("uniform", s, {k: 1.0 - s for k in shapes}, target_zeros=int(zeros))


def _raw(shape, scheme, power):
    shape = tuple(int(v) for v in shape)
    if scheme == "er":
        n_out, n_in = shape[0], shape[1] if len(shape) > 1 else 1
        return (n_in + n_out) / (n_in * n_out)
    return (sum(shape) / float(np.prod(shape))) ** power


def erk_densities(
    shapes: Mapping[str, tuple],
    sparsity: float,
    erk_power_scale: float = 1.0,
    custom: Mapping[str, float] | None = None,
    custom_in_budget: bool = False,
    kernel: bool = True,
) -> DensityAllocation:
    """ERK (``kernel=True``) or ER (``kernel=False``) densities with RigL's dense capping.

    Loop: with the current dense set, solve eps from
    sum_{l not dense} eps raw_l N_l = sum_{l not dense} (N_l - z_l) - sum_{l dense} z_l, z_l = floor(S N_l);
    if eps * max raw > 1, make **all** layers attaining the max raw dense together and repeat.
    ``custom``: FQN -> fixed density; such layers are excluded from both sides (RigL) unless ``custom_in_budget``,
    in which case their kept weights are charged to the global budget sum_l floor(S N_l) over all layers.
    Invariant: sum_l (1 - d_l) N_l = sum_l floor(S N_l) over the budgeted layers (float exact before rounding).
    """
    s = _check(shapes, sparsity)
    custom = dict(custom or {})
    for k, d in custom.items():
        if k not in shapes:
            raise ProbPruneError(f"custom density for unknown layer {k!r}")
        check_fraction(d, f"custom density of {k}")
    if erk_power_scale < 0 or not math.isfinite(erk_power_scale):
        raise ProbPruneError(f"erk_power_scale must be a finite number >= 0, got {erk_power_scale}")
    scheme = "erk" if kernel else "er"
    N = {k: int(np.prod(sh)) for k, sh in shapes.items()}
    z = {k: math.floor(s * N[k]) for k in shapes}
    raw = {k: _raw(sh, scheme, erk_power_scale) for k, sh in shapes.items() if k not in custom}
    if not raw:
        raise ProbPruneError("every layer has a custom density: nothing to allocate")
    dense: set[str] = set()
    while True:
        rhs, div = 0.0, 0.0
        for k in raw:
            if k in dense:
                rhs -= z[k]
            else:
                rhs += N[k] - z[k]
                div += raw[k] * N[k]
        if custom_in_budget:
            for k, d in custom.items():
                rhs += (N[k] - z[k]) - d * N[k]
        free = [k for k in raw if k not in dense]
        if not free:
            break
        if div <= 0:
            raise ProbPruneError("degenerate ERK allocation (all raw probabilities are 0)")
        eps = rhs / div
        if eps < 0:
            raise ProbPruneError("the custom densities use more weights than the global budget allows")
        pmax = max(raw[k] for k in free)
        if eps * pmax > 1.0:
            dense |= {k for k in free if raw[k] == pmax}
        else:
            break
    dens = {}
    for k in shapes:
        if k in custom:
            dens[k] = float(custom[k])
        elif k in dense:
            dens[k] = 1.0
        else:
            dens[k] = float(eps * raw[k])
    budget = [k for k in shapes if k not in custom or custom_in_budget]
    return DensityAllocation(scheme, s, dens, raw=raw, eps=float(eps) if free else None,
                             dense=tuple(k for k in shapes if k in dense), custom=custom,
                             target_zeros=int(sum(z[k] for k in budget)), custom_in_budget=custom_in_budget,
                             erk_power_scale=float(erk_power_scale))


def er_densities(shapes, sparsity, custom=None, custom_in_budget=False) -> DensityAllocation:
    """ER: raw_l = (n_in + n_out) / (n_in n_out) (kernel dimensions ignored), with dense capping."""
    return erk_densities(shapes, sparsity, custom=custom, custom_in_budget=custom_in_budget, kernel=False)


def snip_ratio_densities(model, X, y, sparsity: float, seed: int = 0, names=None) -> DensityAllocation:
    """SNIP-ratio: SNIP scores on a copy of ``model`` re-initialised with xavier_normal (seeded; biases zero), one
    batch (X, y); global top-k with k = sum N - floor(S sum N) kept; d_l = fraction of layer l kept."""
    import torch

    from probprune.pruning.masks import maskable_parameters
    from probprune.pruning.sampling import global_topk_mask
    from probprune.pruning.scores import snip_scores

    s = float(check_fraction(sparsity, "sparsity", upper_open=True))
    clone = copy.deepcopy(model)
    params = maskable_parameters(clone)
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for k, p in params.items():
            fan_out, fan_in = p.shape[0], int(np.prod(p.shape[1:]))
            std = math.sqrt(2.0 / (fan_in + fan_out))
            p.copy_(torch.randn(p.shape, generator=g) * std)
        for name, p in clone.named_parameters():
            if name.endswith("bias"):
                p.zero_()
    sc = snip_scores(clone, X, y, names=names)
    mask = global_topk_mask(sc, s)
    dens = {k: float(m.float().mean()) for k, m in mask.items()}
    zeros = sum(math.floor(s * m.numel()) for m in mask.values())
    return DensityAllocation("snip_ratio", s, dens, target_zeros=int(zeros))


@dataclass(frozen=True)
class DensityScheme:
    """A density scheme of random pruning (THEORY §5): ``allocate(shapes, sparsity, **kw)`` (None for ``snip_ratio``,
    which needs a model and a batch: :func:`snip_ratio_densities`); ``options``: the keyword options it reads
    (custom densities, the ERK exponent); ``needs_batch``: it scores a data batch."""

    name: str
    allocate: object = None
    options: tuple[str, ...] = ()
    needs_batch: bool = False


def _uniform_allocate(shapes, sparsity, **kw):
    return uniform_densities(shapes, sparsity)


#: scheme name -> its strategy (the names of :data:`SCHEMES`, in that order)
SCHEME_TABLE: Mapping[str, DensityScheme] = {
    "uniform": DensityScheme("uniform", _uniform_allocate),
    "er": DensityScheme("er", lambda shapes, sparsity, **kw: er_densities(shapes, sparsity, **kw),
                        ("custom", "custom_in_budget")),
    "erk": DensityScheme("erk", lambda shapes, sparsity, **kw: erk_densities(shapes, sparsity, **kw),
                         ("custom", "custom_in_budget", "erk_power_scale")),
    "snip_ratio": DensityScheme("snip_ratio", needs_batch=True),
}
assert tuple(SCHEME_TABLE) == SCHEMES


def scheme(name: str) -> DensityScheme:
    """The strategy of a density scheme name (case and '-' folded); ProbPruneError listing the schemes otherwise."""
    key = str(name).lower().replace("-", "_")
    if key not in SCHEME_TABLE:
        raise ProbPruneError(f"unknown density scheme {key!r}; use one of {', '.join(SCHEMES)}")
    return SCHEME_TABLE[key]


def allocate(scheme_name: str, shapes: Mapping[str, tuple], sparsity: float, **kw) -> DensityAllocation:
    """Dispatch by scheme name: ``uniform`` | ``er`` | ``erk`` (``snip_ratio`` needs a model and a batch: call
    :func:`snip_ratio_densities`)."""
    entry = scheme(scheme_name)
    if entry.allocate is None:
        raise ProbPruneError(f"unknown density scheme {entry.name!r}; use one of {', '.join(SCHEMES)}")
    return entry.allocate(shapes, sparsity, **kw)
