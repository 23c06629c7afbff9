"""Scores for unstructured pruning (THEORY.md §5). Higher score = more important = kept first.

All functions return ``{FQN: float tensor}`` over a maskable set (default :func:`.masks.maskable_parameters`).

* :func:`magnitude_scores`: |w|.
* :func:`random_scores`: i.i.d. U(0, 1) from **one** seeded generator over all tensors in order, so scores are
  comparable across layers (never per-group integer ranks; cf. Torch-Pruning #498).
* :func:`snip_scores`: SNIP (Lee, Ajanthan & Torr 2019), |w * dL/dw| / sum_k |w_k dL/dw_k| on one mini-batch.
* :func:`grad_magnitude_scores`: |w * dL/dw| on (trained) weights over a batch (ShrinkBench's MagGrad).
Gradients are computed on the loss of the masked network when ``mask`` is given; pruned entries get score 0.
"""
from __future__ import annotations

from typing import Mapping

from probprune.core.errors import ProbPruneError
from probprune.pruning.masks import maskable_parameters


def _names(model, names, **kw):
    params = maskable_parameters(model, **kw)
    if names is None:
        return params
    missing = [n for n in names if n not in params]
    if missing:
        raise ProbPruneError(f"not a maskable parameter: {missing[0]!r}")
    return {n: params[n] for n in names}


def magnitude_scores(model, names=None, **kw) -> dict:
    """|w| for each maskable tensor."""
    return {k: v.detach().abs().float().cpu() for k, v in _names(model, names, **kw).items()}


def random_scores(shapes: Mapping[str, tuple], seed: int) -> dict:
    """I.i.d. U(0, 1) scores from one ``torch.Generator`` seeded with ``seed``, drawn tensor by tensor in order."""
    import torch

    g = torch.Generator().manual_seed(int(seed))
    return {k: torch.rand(tuple(s), generator=g) for k, s in shapes.items()}


def _weight_times_grad(model, X, y, names, mask):
    import torch
    import torch.nn.functional as F

    params = _names(model, names)
    backup = None
    if mask:
        backup = {k: params[k].detach().clone() for k in mask if k in params}
        with torch.no_grad():
            for k, m in mask.items():
                if k in params:
                    params[k].mul_(m.to(params[k].dtype))
    was = model.training
    model.eval()  # deterministic (dropout off) single-batch gradient
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    out = {}
    for k, p in params.items():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        out[k] = (p.detach() * g).abs().float().cpu()
    model.zero_grad(set_to_none=True)
    model.train(was)
    if backup:
        with torch.no_grad():
            for k, v in backup.items():
                params[k].copy_(v)
    if mask:
        for k, m in mask.items():
            if k in out:
                out[k] = out[k] * m
    return out


def snip_scores(model, X, y, names=None, mask: Mapping | None = None, normalize: bool = True) -> dict:
    """SNIP connection sensitivity at the current (initial) weights on one batch (X, y): |w * g|, normalised to sum
    to 1 over all maskable tensors when ``normalize`` (the ranking is unchanged by normalisation)."""
    s = _weight_times_grad(model, X, y, names, mask)
    if normalize:
        tot = float(sum(float(v.sum()) for v in s.values()))
        if tot > 0:
            s = {k: v / tot for k, v in s.items()}
    return s


def grad_magnitude_scores(model, X, y, names=None, mask: Mapping | None = None) -> dict:
    """|w * dL/dw| on the current (typically trained) weights, gradient of the mean loss over (X, y)."""
    return _weight_times_grad(model, X, y, names, mask)
