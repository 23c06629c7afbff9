"""Independent ground truths for the graph tests (not package code): exact error of linear graphs by the Jacobian,
many-restart PGD on the graph's own forward, brute-force window counts."""
from __future__ import annotations

import numpy as np
import torch


def jacobian(graph) -> np.ndarray:
    """The matrix of a linear (bias-free) graph: d_out x d_in, by autograd."""
    d_in = int(np.prod(graph.input_shape))
    x = torch.zeros(d_in, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: graph.forward(v.reshape(1, *graph.input_shape)).reshape(-1), x)
    return J.numpy()


def exact_linear_error(graph, pruned) -> float:
    """sup_{||x||<=1} ||F(x) - Fhat(x)|| = ||J - Jhat||_2 for bias-free linear graphs."""
    return float(np.linalg.norm(jacobian(graph) - jacobian(pruned), 2))


def pgd_error(graph, pruned, restarts: int = 96, iters: int = 80, seed: int = 0) -> float:
    """A lower bound on sup_{||x||<=1} ||F(x) - Fhat(x)||: projected normalized-gradient ascent from many random
    starts (and +-e_j for small inputs), every iterate feasible; the largest value seen."""
    g = torch.Generator().manual_seed(seed)
    shape = tuple(graph.input_shape)
    d = int(np.prod(shape))
    starts = [torch.randn((restarts, d), generator=g, dtype=torch.float64)]
    if d <= 64:
        eye = torch.eye(d, dtype=torch.float64)
        starts.append(torch.cat([eye, -eye]))
    x = torch.cat(starts)
    x = x / x.norm(dim=1, keepdim=True)
    best = 0.0
    for t in range(iters + 1):
        x = x.detach().requires_grad_(True)
        diff = graph.forward(x.reshape(-1, *shape)) - pruned.forward(x.reshape(-1, *shape))
        f = diff.reshape(len(x), -1).norm(dim=1)
        best = max(best, float(f.detach().max()))
        if t == iters:
            break
        (gr,) = torch.autograd.grad((f * f).sum(), x)
        gn = gr.norm(dim=1, keepdim=True).clamp_min(1e-300)
        step = 0.5 * (1e-3) ** (t / iters)
        x = x.detach() + step * gr / gn
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1.0)
    return best


def brute_force_window_count(pool, in_shape) -> int:
    """Largest number of windows of a max pool containing one input element: set that element to +1 and every
    other to -1 and count outputs equal to +1 (padding is -inf for max pools)."""
    n = int(np.prod(in_shape))
    best = 0
    for i in range(n):
        x = -torch.ones(n, dtype=torch.float64)
        x[i] = 1.0
        y = pool(x.reshape(1, *in_shape))
        best = max(best, int((y == 1.0).sum()))
    return best


def random_masks(graph, q: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {k: rng.random(w.shape) >= q for k, w in graph.weights.items()}
