"""Sparsity accounting (THEORY.md §5, "Sparsity accounting"): requested vs realised sparsity per tensor and overall
(over the maskable set and over all parameters), compression ratio, parameters and FLOPs (multiply-accumulates of the
weight layers) before/after, dead downstream weights, rounding rule, sampling mode, seeds, and neuron-wise sparsity
(fraction of each neuron's incoming weights pruned, as in seed 001's neuron-pruning analysis).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Mapping

import numpy as np

from probprune.pruning.structured import dead_downstream


def flops_multiplicity(model, input_shape=None) -> dict:
    """For each Linear/Conv weight FQN, the number of times each weight is used per input example (1 for Linear,
    H_out*W_out for Conv2d), measured with forward hooks on one zero input of ``input_shape``. Without
    ``input_shape`` only Linear-only models are supported (multiplicity 1)."""
    import torch
    import torch.nn as nn

    mods = [(f"{n}." if n else "", m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d,
                                                                                         nn.Conv2d))]
    if input_shape is None:
        if any(not isinstance(m, nn.Linear) for _, m in mods):
            return {}
        return {p + "weight": 1 for p, _ in mods}
    mult = {}
    hooks = []
    for p, m in mods:
        def hook(mod, inp, out, p=p):
            mult[p + "weight"] = int(np.prod(out.shape[2:])) if out.dim() > 2 else 1
        hooks.append(m.register_forward_hook(hook))
    try:
        p0 = next(model.parameters())
        with torch.no_grad():
            model(torch.zeros((1, *tuple(input_shape)), dtype=p0.dtype))
    finally:
        for h in hooks:
            h.remove()
    return mult


@dataclass
class PruneReport:
    """One pruning result's accounting. ``rows``: one per masked tensor; totals as attributes."""

    method: str
    rows: list
    requested_sparsity: float | None
    realised_sparsity_maskable: float
    realised_sparsity_all: float
    maskable_params: int
    maskable_kept: int
    total_params: int
    total_nonzero: int
    compression_ratio: float
    flops_dense: int | None
    flops_pruned: int | None
    dead_downstream: int
    effective_kept: int
    rounding: str = "floor"
    sampling: str = "exact"
    scheme: str | None = None
    maskable_set: str = "weights of Linear/Conv layers"
    seeds: dict = field(default_factory=dict)
    neuron_sparsity: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def neuron_sparsity(mask: Mapping) -> dict:
    """Per weight tensor: fraction of each output neuron's (row's / filter's) incoming weights pruned, summarised
    (mean, min, quartiles, max, number of neurons with all / none of their inputs pruned) plus the raw values."""
    out = {}
    for k, m in mask.items():
        if m.dim() < 2:
            continue
        f = 1.0 - m.reshape(m.shape[0], -1).float().mean(dim=1).numpy()
        out[k] = {
            "n_neurons": int(f.size), "mean": float(f.mean()), "min": float(f.min()),
            "q25": float(np.quantile(f, 0.25)), "median": float(np.median(f)), "q75": float(np.quantile(f, 0.75)),
            "max": float(f.max()), "fully_pruned": int((f >= 1.0).sum()), "untouched": int((f <= 0.0).sum()),
            "values": f.round(6).tolist(),
        }
    return out


def sparsity_report(model, mask: Mapping, requested=None, method: str = "", sampling: str = "exact",
                    rounding: str = "floor", scheme: str | None = None, seeds: Mapping | None = None,
                    input_shape=None, maskable_set: str = "weights of Linear/Conv layers",
                    extra: Mapping | None = None) -> PruneReport:
    """Account for ``mask`` on ``model``. ``requested``: overall requested sparsity (float) or per-tensor dict.
    Parameters not in the mask count as dense; FLOPs need ``input_shape`` for conv nets."""
    params = {k: v for k, v in model.named_parameters()}
    mult = flops_multiplicity(model, input_shape)
    dead = dead_downstream(model, mask)
    rows = []
    for k, m in mask.items():
        n = m.numel()
        kept = int(m.sum())
        req = requested.get(k) if isinstance(requested, Mapping) else requested
        mu = mult.get(k)
        rows.append({
            "name": k, "shape": list(m.shape), "numel": n, "kept": kept, "pruned": n - kept,
            "requested_sparsity": None if req is None else float(req),
            "realised_sparsity": (n - kept) / n if n else 0.0,
            "dead_downstream": int(dead.get(k, 0)),
            "flops_dense": None if mu is None else n * mu, "flops_pruned": None if mu is None else kept * mu,
        })
    m_total = sum(r["numel"] for r in rows)
    m_kept = sum(r["kept"] for r in rows)
    total = sum(v.numel() for v in params.values())
    nonzero = total - (m_total - m_kept)
    if isinstance(requested, Mapping):
        req_all = sum(float(requested[k]) * mask[k].numel() for k in requested if k in mask) / max(m_total, 1)
    else:
        req_all = None if requested is None else float(requested)
    have_flops = all(r["flops_dense"] is not None for r in rows if r["name"].endswith("weight"))
    fd = sum(r["flops_dense"] for r in rows if r["flops_dense"] is not None) if have_flops else None
    fp = sum(r["flops_pruned"] for r in rows if r["flops_pruned"] is not None) if have_flops else None
    if have_flops:  # weight layers not in the mask are dense
        for k, mu in mult.items():
            if k not in mask and k in params:
                fd += params[k].numel() * mu
                fp += params[k].numel() * mu
    n_dead = int(sum(dead.values()))
    return PruneReport(
        method=method, rows=rows, requested_sparsity=req_all,
        realised_sparsity_maskable=(m_total - m_kept) / max(m_total, 1),
        realised_sparsity_all=(total - nonzero) / max(total, 1),
        maskable_params=m_total, maskable_kept=m_kept, total_params=total, total_nonzero=nonzero,
        compression_ratio=total / max(nonzero, 1), flops_dense=fd, flops_pruned=fp,
        dead_downstream=n_dead, effective_kept=m_kept - n_dead,
        rounding=rounding, sampling=sampling, scheme=scheme, maskable_set=maskable_set,
        seeds=dict(seeds or {}), neuron_sparsity=neuron_sparsity(mask), extra=dict(extra or {}),
    )
