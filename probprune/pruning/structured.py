"""Structured neuron / filter pruning by L1 or L2 norm (Li et al., ICLR 2017) and dead-weight accounting
(THEORY.md §5). Mask-based: pruned rows (neurons) / filters are masked as whole rows of the weight (and of the bias,
so the unit outputs sigma(0) = 0 for a zero-at-zero activation), never physically removed.

Dead downstream weights: when unit c of layer l is masked (whole row, and the bias masked or absent or zero), every
weight of layer l+1 that reads unit c (column c of a Linear; input-channel slice c of a Conv; the H*W block of
columns of channel c after a Flatten) multiplies an identically-zero input. These are counted separately
("dead") and reported next to the explicitly masked count. Assumption: the weight layers form a chain in module order
(as in ``nn.Sequential`` LeNet / MLP models), the activation has sigma(0) = 0 and pooling maps 0 to 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError, check_fraction
from probprune.pruning.masks import maskable_parameters
from probprune.pruning.sampling import exact_k_prune_mask, pruned_count

NORMS = ("l1", "l2")


def _weight_layers(model):
    import torch.nn as nn

    return [(f"{n}." if n else "", m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def unit_scores(model, norm: str = "l1") -> dict:
    """Norm of each output unit's incoming weights: ``{weight FQN: tensor[n_out]}`` (rows of a Linear, filters of a
    Conv)."""
    if norm not in NORMS:
        raise ProbPruneError(f"unknown norm {norm!r}; use 'l1' or 'l2'")
    p = 1 if norm == "l1" else 2
    return {k: v.detach().reshape(v.shape[0], -1).norm(p=p, dim=1).float().cpu()
            for k, v in maskable_parameters(model).items()}


@dataclass(frozen=True)
class StructuredResult:
    """A structured mask and its accounting. ``removed_units``: {layer: indices}; ``masked``: explicitly masked weight
    entries (biases not included); ``dead``: further weight entries made dead downstream."""

    mask: dict
    removed_units: dict
    masked: dict
    dead: dict
    norm: str
    sparsity: float
    scope: str
    rounding: str = "floor"
    assumptions: tuple = field(default=(
        "weight layers form a chain in module order",
        "activation and pooling map 0 to 0 (e.g. ReLU, max-pool)",
    ))

    @property
    def total_masked(self) -> int:
        return int(sum(self.masked.values()))

    @property
    def total_dead(self) -> int:
        return int(sum(self.dead.values()))


def structured_mask(model, sparsity: float, norm: str = "l1", scope: str = "layer", exclude_first: bool = False,
                    rounding: str = "floor", mask_bias: bool = True) -> StructuredResult:
    """Mask the ``pruned_count(sparsity, n_units)`` lowest-norm units of every hidden weight layer (``scope="layer"``)
    or the lowest-norm units over all hidden layers together (``scope="global"``, norms compared as they are).
    The output layer is never unit-pruned (that would delete classes). Returns weights' (and biases') masks plus the
    explicit and dead counts."""
    import torch

    s = float(check_fraction(sparsity, "sparsity", upper_open=True))
    if scope not in ("layer", "global"):
        raise ProbPruneError(f"unknown scope {scope!r}; use 'layer' or 'global'")
    sc = unit_scores(model, norm)
    names = list(sc)
    hidden = names[:-1]
    if exclude_first:
        hidden = hidden[1:]
    if not hidden:
        raise ProbPruneError("structured pruning needs at least one hidden weight layer")
    removed = {}
    if scope == "layer":
        for k in hidden:
            kk = pruned_count(s, sc[k].numel(), rounding)
            removed[k] = torch.nonzero(exact_k_prune_mask(sc[k], kk)).flatten().tolist()
    else:
        allsc = torch.cat([sc[k].double() for k in hidden])
        kk = pruned_count(s, allsc.numel(), rounding)
        P = exact_k_prune_mask(allsc, kk)
        offs = np.cumsum([0] + [sc[k].numel() for k in hidden])
        for j, k in enumerate(hidden):
            removed[k] = torch.nonzero(P[offs[j]:offs[j + 1]]).flatten().tolist()
    params = dict(model.named_parameters())
    mask = {}
    for k in names:
        m = torch.ones(params[k].shape, dtype=torch.bool)
        if k in removed and removed[k]:
            m[removed[k]] = False
        mask[k] = m
        bname = k[: -len("weight")] + "bias"
        if mask_bias and k in removed and bname in params:
            bm = torch.ones(params[bname].shape, dtype=torch.bool)
            bm[removed[k]] = False
            mask[bname] = bm
    masked = {k: int((~mask[k]).sum()) for k in names}
    dead = dead_downstream(model, mask)
    return StructuredResult(mask, removed, masked, dead, norm, s, scope, rounding)


def dead_units(model, mask) -> dict:
    """Units whose output is identically 0: their whole weight row is masked and their bias is absent, masked or
    zero. ``{weight FQN: bool tensor[n_out]}``."""
    params = dict(model.named_parameters())
    out = {}
    for prefix, mod in _weight_layers(model):
        k = prefix + "weight"
        if k not in mask:
            continue
        row_dead = ~mask[k].reshape(mask[k].shape[0], -1).any(dim=1)
        b = params.get(prefix + "bias")
        if b is not None:
            bmask = mask.get(prefix + "bias")
            bzero = (b.detach() == 0).cpu()
            if bmask is not None:
                bzero = bzero | ~bmask
            row_dead = row_dead & bzero
        out[k] = row_dead
    return out


def dead_downstream(model, mask) -> dict:
    """Per weight FQN, the number of entries still kept by ``mask`` that read an identically-zero unit of the
    previous weight layer (see module docstring)."""
    layers = _weight_layers(model)
    du = dead_units(model, mask)
    out = {}
    for i, (prefix, mod) in enumerate(layers):
        k = prefix + "weight"
        out[k] = 0
        if i == 0:
            continue
        pk = layers[i - 1][0] + "weight"
        if pk not in du or not bool(du[pk].any()):
            continue
        w = getattr(mod, "weight")
        keep = mask.get(k)
        if keep is None:
            import torch

            keep = torch.ones(w.shape, dtype=torch.bool)
        c_prev = du[pk].numel()
        if w.dim() == 2:
            n_in = w.shape[1]
            if n_in % c_prev:
                raise ProbPruneError(f"cannot map {c_prev} units of {pk!r} onto {n_in} inputs of {k!r}")
            hw = n_in // c_prev
            cols = du[pk].repeat_interleave(hw)  # channel-major flatten: channel c -> columns c*hw..(c+1)*hw-1
            out[k] = int(keep[:, cols].sum())
        else:
            if w.shape[1] != c_prev:
                raise ProbPruneError(f"{k!r} expects {w.shape[1]} input channels, {pk!r} has {c_prev} filters")
            out[k] = int(keep[:, du[pk]].sum())
    return out
