"""Masks: ``dict[str, torch.BoolTensor]`` keyed by parameter FQN (state_dict key), True = kept (THEORY.md §5).

* :func:`maskable_parameters` defines the maskable set (default: ``.weight`` of Linear and Conv layers; optional
  biases; optional exclusion of the first / last weight layer).
* :func:`validate_mask` checks names, shapes and dtype and raises :class:`ProbPruneError` with one line.
* :func:`apply_mask` applies a mask either by an in-place ``weight *= mask`` (state_dict keys unchanged; the default)
  or through ``torch.nn.utils.parametrize`` (the mask is enforced in every forward; :func:`remove_mask_parametrizations`
  bakes the masked weights back and restores the original keys). ``torch.nn.utils.prune``'s hook reparametrisation,
  which renames keys to ``weight_orig``/``weight_mask``, is used only by the explicit export
  :func:`to_torch_prune` and read back by :func:`from_torch_prune`.
* :func:`save_mask` / :func:`load_mask` store masks as ``.pt`` files (format tag, FQN -> bool tensor, metadata).
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping

from probprune.core.errors import ProbPruneError

MASK_FORMAT = "probprune-mask-v1"


def maskable_parameters(
    model,
    include_bias: bool = False,
    exclude_first: bool = False,
    exclude_last: bool = False,
    layer_types: tuple | None = None,
) -> dict:
    """Ordered ``{FQN: Parameter}`` of the maskable tensors: weights of Linear / Conv1d/2d/3d modules in module
    order (plus their biases when ``include_bias``); ``exclude_first`` / ``exclude_last`` drop the first / last such
    layer (input and output layer)."""
    import torch.nn as nn

    types = layer_types or (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    layers = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, types)]
    if not layers:
        raise ProbPruneError("the model has no Linear or Conv layer to prune")
    if exclude_first:
        layers = layers[1:]
    if exclude_last:
        layers = layers[:-1]
    if not layers:
        raise ProbPruneError("excluding the first/last layer leaves nothing to prune")
    params = dict(model.named_parameters())
    out = {}
    for name, mod in layers:
        prefix = f"{name}." if name else ""
        for pname in ("weight", "bias") if include_bias else ("weight",):
            fqn = prefix + pname
            if fqn in params:
                out[fqn] = params[fqn]
            elif getattr(mod, pname, None) is not None and pname == "weight":
                # a parametrized module: its weight lives at parametrizations.weight.original
                orig = f"{prefix}parametrizations.weight.original"
                if orig in params:
                    out[fqn] = params[orig]
    return out


def _all_named_tensors(model) -> dict:
    """FQN -> tensor for parameters, with parametrized weights reported under their original FQN."""
    out = {}
    for k, v in model.named_parameters():
        if ".parametrizations." in k and k.endswith(".original"):
            k = k.replace(".parametrizations.", ".").rsplit(".original", 1)[0]
        out[k] = v
    return out


def validate_mask(model, mask: Mapping[str, object]) -> dict:
    """Check that ``mask`` is a dict of bool tensors whose keys are parameters of ``model`` with matching shapes.
    Returns the mask with every value converted to a CPU bool tensor."""
    import torch

    if not isinstance(mask, Mapping):
        raise ProbPruneError(f"a mask must be a dict FQN -> bool tensor, got {type(mask).__name__}")
    params = _all_named_tensors(model)
    out = {}
    for name, m in mask.items():
        if name not in params:
            close = [k for k in params if k.split(".")[-1] == str(name).split(".")[-1]][:4]
            raise ProbPruneError(f"mask for unknown parameter {name!r}" + (f"; parameters: {', '.join(close)}"
                                                                             if close else ""))
        if not isinstance(m, torch.Tensor):
            raise ProbPruneError(f"mask for {name!r} must be a tensor, got {type(m).__name__}")
        if tuple(m.shape) != tuple(params[name].shape):
            raise ProbPruneError(f"mask for {name!r} has shape {tuple(m.shape)}, parameter has "
                                 f"{tuple(params[name].shape)}")
        if m.dtype != torch.bool:
            if not bool(((m == 0) | (m == 1)).all()):
                raise ProbPruneError(f"mask for {name!r} must be 0/1 or bool")
            m = m != 0
        out[name] = m.detach().to("cpu")
    return out


def full_mask(model, **kw) -> dict:
    """The all-kept mask over the maskable set."""
    import torch

    return {k: torch.ones(v.shape, dtype=torch.bool) for k, v in maskable_parameters(model, **kw).items()}


def mask_and(a: Mapping, b: Mapping) -> dict:
    """Element-wise AND over the union of keys (a missing key means all-kept)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = out[k] & v if k in out else v.clone()
    return out


def is_nested(child: Mapping, parent: Mapping) -> bool:
    """True when ``child <= parent`` element-wise (every weight kept by ``child`` is kept by ``parent``)."""
    for k, v in child.items():
        if k in parent and bool((v & ~parent[k]).any()):
            return False
    return True


def count(mask: Mapping) -> tuple[int, int]:
    """(kept, total) over the mask's tensors."""
    kept = sum(int(v.sum()) for v in mask.values())
    total = sum(v.numel() for v in mask.values())
    return kept, total


def density(mask: Mapping) -> float:
    k, t = count(mask)
    return k / t if t else 1.0


# ------------------------------------------------------------------------------------------------ application
def _mask_module():
    import torch
    import torch.nn as nn

    class MaskParametrization(nn.Module):
        """``W -> W * mask`` (a registered buffer); used by :func:`apply_mask(..., how="parametrize")`."""

        def __init__(self, mask):
            super().__init__()
            self.register_buffer("mask", mask.to(torch.bool))

        def forward(self, w):
            return w * self.mask.to(w.dtype)

    return MaskParametrization


def _module_and_attr(model, fqn: str):
    mod_name, _, attr = fqn.rpartition(".")
    try:
        mod = model.get_submodule(mod_name) if mod_name else model
    except AttributeError:
        raise ProbPruneError(f"no module {mod_name!r} for parameter {fqn!r}") from None
    return mod, attr


def apply_mask(model, mask: Mapping, how: str = "multiply") -> None:
    """Apply ``mask`` to ``model`` in place.

    ``how="multiply"`` (default): ``weight.mul_(mask)`` once; state_dict keys are unchanged. During training use
    ``probprune.net.train.train(..., masks=mask)`` to keep the pruned weights at zero.
    ``how="parametrize"``: registers ``W -> W * mask`` via ``torch.nn.utils.parametrize`` so the mask holds in every
    forward pass, also under any optimiser. This adds ``parametrizations.<name>.original`` keys to the state_dict
    until :func:`remove_mask_parametrizations` is called; saved masks always use the plain FQN.
    """
    import torch
    from torch.nn.utils import parametrize

    mask = validate_mask(model, mask)
    if how == "multiply":
        params = _all_named_tensors(model)
        with torch.no_grad():
            for k, m in mask.items():
                params[k].mul_(m.to(params[k].dtype))
    elif how == "parametrize":
        P = _mask_module()
        for k, m in mask.items():
            mod, attr = _module_and_attr(model, k)
            if parametrize.is_parametrized(mod, attr):
                for p in mod.parametrizations[attr]:
                    if isinstance(p, P) or type(p).__name__ == "MaskParametrization":
                        p.mask.copy_(p.mask & m)  # nested re-pruning respects the earlier mask
                        break
                continue
            parametrize.register_parametrization(mod, attr, P(m))
    else:
        raise ProbPruneError(f"unknown mask application {how!r}; use 'multiply' or 'parametrize'")


def remove_mask_parametrizations(model) -> None:
    """Bake masked weights in and remove the parametrizations (state_dict keys return to ``<module>.weight``)."""
    from torch.nn.utils import parametrize

    for _, mod in list(model.named_modules()):
        if parametrize.is_parametrized(mod):
            for attr in list(mod.parametrizations.keys()):
                parametrize.remove_parametrizations(mod, attr, leave_parametrized=True)


# ------------------------------------------------------------------------------------------------ files
def save_mask(mask: Mapping, path, meta: Mapping | None = None) -> None:
    """Save a mask to a ``.pt`` file: ``{"format": "probprune-mask-v1", "masks": {FQN: bool}, "meta": {...}}``."""
    import torch

    payload = {"format": MASK_FORMAT, "masks": {k: v.detach().cpu().bool() for k, v in mask.items()},
               "meta": dict(meta or {})}
    d = os.path.dirname(os.fspath(path))
    if d:
        os.makedirs(d, exist_ok=True)
    torch.save(payload, path)


def load_mask(path, model=None) -> dict:
    """Load a mask saved by :func:`save_mask` (validated against ``model`` when given)."""
    import torch

    if not os.path.exists(path):
        raise FileNotFoundError(f"mask file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or foreign file
        raise ProbPruneError(f"cannot read mask file {path}: {type(exc).__name__}") from None
    if not isinstance(payload, dict) or payload.get("format") != MASK_FORMAT:
        raise ProbPruneError(f"{path} is not a probprune mask file (format {MASK_FORMAT})")
    mask = dict(payload["masks"])
    return validate_mask(model, mask) if model is not None else mask


# ------------------------------------------------------------------------------------------------ torch.nn.utils.prune
def to_torch_prune(model, mask: Mapping) -> None:
    """Export: ``torch.nn.utils.prune.custom_from_mask`` for every tensor of ``mask`` (torch then renames the keys to
    ``<name>_orig`` / ``<name>_mask``; call ``prune.remove`` to make it permanent). Existing torch-prune masks are
    combined by torch (re-pruning respects the earlier mask)."""
    from torch.nn.utils import prune

    mask = validate_mask(model, mask)
    for k, m in mask.items():
        mod, attr = _module_and_attr(model, k)
        prune.custom_from_mask(mod, attr, m)


def from_torch_prune(model) -> dict:
    """Import: read every ``<module>.<name>_mask`` buffer left by ``torch.nn.utils.prune`` as ``{"<module>.<name>":
    bool}``."""
    out = {}
    for name, buf in model.named_buffers():
        if name.endswith("_mask"):
            out[name[: -len("_mask")]] = buf.detach().cpu().bool()
    if not out:
        raise ProbPruneError("the model has no torch.nn.utils.prune masks (no '*_mask' buffers)")
    return out
