"""Lower bounds by attack (ground truth for the certificates' tests and benchmark; never used in a certificate).

``pgd_sup_error``: many-restart projected gradient ascent of ||F(x) - F_hat(x)||_2 over an l2 ball or l_inf box,
on the torch modules themselves (independent of the lowering used by the certificates). Every value returned is
attained at a point of the region, so it is a lower bound on the sup.
"""
from __future__ import annotations

import copy

import numpy as np

from ..errors import ProbPruneError


def _project(x, c, r, norm):
    import torch

    d = x - c
    if norm == "l2":
        nrm = d.flatten(1).norm(dim=1).clamp(min=1e-300)
        f = torch.clamp(r / nrm, max=1.0)
        return c + d * f.view(-1, *([1] * (d.dim() - 1)))
    return c + d.clamp(-r, r)


def pgd_sup_error(model, pruned_model, center, radius: float = 1.0, norm: str = "l2", restarts: int = 64,
                  iters: int = 100, seed: int = 0, extra_starts=None) -> float:
    """max over restarts of ||F(x) - F_hat(x)||_2 at the PGD end points (and along the path), x in the region.
    ``center`` has the model's input shape (one sample, no batch axis)."""
    import torch

    if norm not in ("l2", "linf"):
        raise ProbPruneError(f"norm must be 'l2' or 'linf', got {norm!r}")
    F = copy.deepcopy(model).double().eval()
    Fh = copy.deepcopy(pruned_model).double().eval()
    for p in list(F.parameters()) + list(Fh.parameters()):
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    c = torch.as_tensor(np.asarray(center, float), dtype=torch.float64).unsqueeze(0)
    shape = c.shape[1:]
    n = int(np.prod(shape))
    if radius == 0:
        with torch.no_grad():
            return float((F(c) - Fh(c)).norm())
    z = torch.randn(restarts, n, generator=g, dtype=torch.float64)
    if norm == "l2":
        z = z / z.norm(dim=1, keepdim=True) * radius * torch.rand(restarts, 1, generator=g, dtype=torch.float64) ** (1 / n)
    else:
        z = (torch.rand(restarts, n, generator=g, dtype=torch.float64) * 2 - 1) * radius
    x = c + z.view(restarts, *shape)
    if extra_starts is not None:
        x = torch.cat([x, torch.as_tensor(np.asarray(extra_starts, float)).view(-1, *shape)])
    x = _project(x, c, radius, norm)
    best = 0.0
    step0 = 0.25 * radius if norm == "l2" else 0.25 * radius
    for it in range(iters):
        x = x.detach().requires_grad_(True)
        err = (F(x) - Fh(x)).flatten(1).norm(dim=1)
        best = max(best, float(err.detach().max()))
        (gr,) = torch.autograd.grad(err.sum(), x)
        step = step0 * (1 - it / iters) + 1e-3 * radius
        with torch.no_grad():
            if norm == "l2":
                gn = gr.flatten(1).norm(dim=1).clamp(min=1e-300).view(-1, *([1] * len(shape)))
                x = x + step * gr / gn
            else:
                x = x + step * gr.sign()
            x = _project(x, c, radius, norm)
    with torch.no_grad():
        err = (F(x) - Fh(x)).flatten(1).norm(dim=1)
        best = max(best, float(err.max()))
    return best
