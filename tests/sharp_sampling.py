"""Sampling helpers shared by the §9 moment tests (S9.11-S9.14): the product difference D of a linear dense net
drawn and pruned by the rule itself, and the unit-kernel operators of a layer built with torch's own conv2d (an
independent construction of the composed map, never the code under test)."""
from __future__ import annotations

import numpy as np
from scipy import stats

from probprune.net.templates import fcn_spec, sample_weights


def prune_draws(rng, W, spec, method, law, q):
    """The pruned weights of stacked draws W (one array per layer of ``spec``): threshold magnitude (|w| below
    q a_i, or the Gaussian quantile), Bernoulli random, rescaled random (kept weights / (1 - q)); masks from ``rng``."""
    out = []
    for w, L in zip(W, spec.layers):
        if method == "magnitude":
            thr = q * L.half_width if law == "uniform" else stats.norm.ppf((1 + q) / 2) * L.half_width
            m = np.abs(w) < thr
        else:
            m = rng.random(w.shape) < q
        out.append(np.where(m, 0.0, w) / ((1 - q) if method == "random_rescaled" else 1.0))
    return out


def dense_product_difference(widths, method, law, q, T, seed):
    """(spec, D) with D = prod W - prod What, shape (T, d_L, d_0): T draws of a linear dense net under ``law``
    pruned by ``method`` (threshold magnitude, Bernoulli random, rescaled random) at fraction ``q``."""
    rng = np.random.default_rng(seed)
    spec = fcn_spec(widths, "identity")
    W = sample_weights(spec, rng, law, n=T)
    P = Ph = None
    for w, wh in zip(W, prune_draws(rng, W, spec, method, law, q)):
        P = w if P is None else w @ P
        Ph = wh if Ph is None else wh @ Ph
    return spec, P - Ph


def unit_kernel_ops(L):
    """Unit-kernel operators of a layer (n_theta, d_out_flat, d_in_flat), conv layers through torch's conv2d."""
    import torch
    import torch.nn.functional as Fn

    if L.kind == "linear":
        return np.eye(L.N).reshape(L.N, L.d_out, L.d_in)
    C, H, W = L.in_shape
    d_in = C * H * W
    X = torch.eye(d_in, dtype=torch.float64).reshape(d_in, C, H, W)
    out = []
    for idx in np.ndindex(*L.weight_shape):
        k = torch.zeros(L.weight_shape, dtype=torch.float64)
        k[idx] = 1.0
        out.append(Fn.conv2d(X, k, stride=L.stride, padding=L.padding).reshape(d_in, -1).numpy().T)
    return np.stack(out)
