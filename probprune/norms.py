"""Operator-norm upper bounds for certificates (THEORY §3.11, §3.5).

A certificate may only use *upper* bounds on spectral norms:
- dense layers: full float64 SVD, multiplied by (1 + 1e-9) (``spectral_norm_upper``);
- conv layers: either Lemma C's kernel-matrix bound sqrt(r)·||mat(W)|| (``conv_norm_kernel_bound``), or the exact
  operator norm of the periodic extension via the FFT (Sedghi, Gupta & Long, ICLR 2019;
  ``conv_norm_fft``) on a grid large enough that the zero-padded, strided operator is a restriction of it.
Power iteration approaches the norm from below; ``power_iteration_norm`` is for display beside a certificate only.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import ProbPruneError, check_finite_array
from .networks import LayerSpec, as_matrix

SAFETY = 1e-9


def spectral_norm_upper(M) -> float:
    """An upper bound on ||M||_2 in float64: sqrt of the largest eigenvalue of the smaller Gram matrix (LAPACK
    syevr, one eigenvalue), padded by a rounding allowance k·2^-52·||M||_F^2 for the Gram product and eigen-solver
    (k = inner dimension + 10), then multiplied by (1 + 1e-9). Several times faster than a full SVD and still a
    certified upper bound. Power iteration is never used here."""
    from scipy.linalg import eigh

    M = check_finite_array(M, "matrix")
    if M.size == 0:
        return 0.0
    M = as_matrix(M)
    G = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
    n = G.shape[0]
    lam = float(eigh(G, eigvals_only=True, subset_by_index=[n - 1, n - 1], check_finite=False)[0])
    fro2 = float(np.einsum("ij,ij->", M, M))
    slack = (max(M.shape) + 10) * np.finfo(float).eps * fro2
    return math.sqrt(max(lam, 0.0) + slack) * (1.0 + SAFETY)


def spectral_norm_upper_batched(M) -> np.ndarray:
    """Batched ``spectral_norm_upper`` over leading axes (float64 SVD, x (1 + 1e-9))."""
    M = np.asarray(M, float)
    return np.linalg.svd(M, compute_uv=False)[..., 0] * (1.0 + SAFETY)


def conv_norm_kernel_bound(W, layer: LayerSpec) -> float:
    """Lemma C (THEORY §3.5 [D]): ||T_W|| <= sqrt(r)·||mat(W)||."""
    return math.sqrt(layer.r) * spectral_norm_upper(as_matrix(W))


def conv_norm_fft(W, layer: LayerSpec) -> float:
    """Exact operator norm of the circular convolution with kernel W on a G_h x G_w grid (Sedghi et al. 2019),
    G = input size + 2·padding, which upper-bounds the zero-padded strided conv: the padded input embeds in the
    grid without wrap-around for every valid output position, and striding and the restriction to the real input
    select a sub-block of the operator, whose norm cannot exceed the full one. Dilation 1 only."""
    W = check_finite_array(W, "conv kernel")
    if W.ndim != 4:
        raise ProbPruneError(f"conv kernel must be 4-D (c_out, c_in, k_h, k_w), got shape {W.shape}")
    if layer.dilation != (1, 1):
        return conv_norm_kernel_bound(W, layer)
    _, h, w = layer.in_shape
    gh, gw = h + 2 * layer.padding[0], w + 2 * layer.padding[1]
    gh, gw = max(gh, W.shape[2]), max(gw, W.shape[3])
    F = np.fft.fft2(W, s=(gh, gw), axes=(2, 3))  # (c_out, c_in, gh, gw)
    F = np.transpose(F, (2, 3, 0, 1)).reshape(gh * gw, W.shape[0], W.shape[1])
    s = np.linalg.svd(F, compute_uv=False)
    return float(s[:, 0].max()) * (1.0 + SAFETY) if s.size else 0.0


def layer_operator_norm_upper(layer: LayerSpec, W, conv_method: str = "fft") -> float:
    """An upper bound on the operator norm of one weight layer (dense: SVD; conv: FFT or Lemma C)."""
    W = np.asarray(W, float)
    if layer.kind == "linear":
        return spectral_norm_upper(W.reshape(layer.d_out, layer.d_in))
    W = W.reshape(layer.weight_shape)
    if conv_method == "fft":
        return min(conv_norm_fft(W, layer), conv_norm_kernel_bound(W, layer))
    if conv_method == "kernel":
        return conv_norm_kernel_bound(W, layer)
    raise ProbPruneError(f"unknown conv norm method {conv_method!r}; use 'fft' or 'kernel'")


def power_iteration_norm(layer: LayerSpec, W, iters: int = 100, seed: int = 0) -> float:
    """A LOWER estimate of the operator norm by power iteration on the actual layer map (torch autograd for conv).
    Display only: never use it in a certificate."""
    import torch
    import torch.nn.functional as Fn

    rng = torch.Generator().manual_seed(seed)
    Wt = torch.as_tensor(np.asarray(W, float).reshape(layer.weight_shape), dtype=torch.float64)
    shape = layer.in_shape if layer.kind == "conv" else (layer.d_in,)
    x = torch.randn((1, *shape), generator=rng, dtype=torch.float64)
    x /= x.norm()

    def fwd(v):
        if layer.kind == "conv":
            return Fn.conv2d(v, Wt, stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
        return v @ Wt.T

    est = 0.0
    for _ in range(iters):
        x = x.detach().requires_grad_(True)
        y = fwd(x)
        est = float(y.detach().norm())
        (g,) = torch.autograd.grad(0.5 * (y * y).sum(), x)
        nrm = g.norm()
        if nrm == 0:
            break
        x = g / nrm
    return est
