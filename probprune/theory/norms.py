"""Certified operator-norm upper bounds for certificates (THEORY §3.11, §3.5, §11).

One implementation, in torch (float64, any device; the GPU when present), with numpy wrappers:

- dense: ``matrix_norm_upper`` (batched over leading axes) / ``spectral_norm_upper`` (one matrix): each matrix is
  scaled by a power of two 2^e >= its max-abs entry (exact, no rounding), the smaller Gram matrix is formed and its
  largest eigenvalue computed (LAPACK, backward stable), a rounding allowance is added and the scale restored
  (THEORY §11.1 [D]). Entries of size 1e-200 or 1e200 neither underflow nor overflow.
- conv: ``conv_norm_fft_upper``: the operator norm of the periodic (circular) extension of the conv on the padded
  grid, max over frequencies of the largest singular value of the c_out x c_in block K^(omega) (Sedghi, Gupta &
  Long, ICLR 2019), computed with ``rfftn`` over the non-redundant half of the frequencies and a Gram eigenvalue per
  block, with FFT and Gram rounding allowances. It upper-bounds the zero-padded conv with any stride, dilation
  (dilated kernel), groups (max over groups) and 1-D or 2-D kernels (THEORY §11.2 [D]).
- ``conv_norm_kernel_bound``: Lemma C (THEORY §3.5), sqrt(r) ||mat(W)||.

Lower estimates (``matrix_norm_estimate``, ``power_iteration_norm``) approach the norm from below: they guide
searches and are displayed beside certificates, never used in one.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from probprune.core.errors import ProbPruneError, check_finite_array
from probprune.net.templates import LayerSpec, as_matrix

SAFETY = 1e-9  # final relative pad: absorbs the rounding of fro2, sqrt and the allowance arithmetic (§11.1)
EPS = float(np.finfo(float).eps)  # 2^-52 = 2u
BLOCK_ELEMS = 1 << 24  # batch chunk for Gram blocks (elements of the stacked Gram matrices)
SMALL_BLOCK = 32  # blocks with min(m, n) up to this go through batched torch eigenvalues (the per-block loop of
# §11.6 costs more in call overhead than it saves there)


def default_device():
    """The device certified norms run on: CUDA when torch sees one, else CPU (same code path)."""
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _pow2_scale(t):
    """Per-batch power of two 2^e with max|t| <= 2^e < 2 max|t| (1 where max|t| = 0); dividing by it is exact."""
    import torch

    amax = t.abs().amax(dim=(-2, -1))
    _, e = torch.frexp(amax.to(torch.float64))
    s = torch.ldexp(torch.ones_like(amax, dtype=torch.float64), e)
    return torch.where(amax > 0, s, torch.ones_like(s))


def _gram_top_upper(M):
    """Certified upper bound on ||M||_2^2 for a batch M (B, m, n) of scaled matrices (max-abs entry <= 1), real or
    complex float64: lambda_max(fl(Gram)) + (k + m + n + 10) eps ||M||_F^2 + 4 (m + n) k 2^-1074 (THEORY §11.1)."""
    import torch

    B, m, n = M.shape
    k = max(m, n)  # inner dimension of the smaller Gram
    out = torch.empty(B, dtype=torch.float64, device=M.device)
    step = max(1, BLOCK_ELEMS // max(1, min(m, n) ** 2))
    for b0 in range(0, B, step):
        Mb = M[b0:b0 + step]
        G = Mb @ Mb.mH if m <= n else Mb.mH @ Mb
        lam = torch.linalg.eigvalsh(G)[:, -1].clamp_min(0.0)
        fro2 = (Mb.real ** 2).sum(dim=(-2, -1)) + ((Mb.imag ** 2).sum(dim=(-2, -1)) if Mb.is_complex() else 0.0)
        out[b0:b0 + step] = lam + (k + m + n + 10) * EPS * fro2 + 4 * (m + n) * k * 2.0 ** -1074
    return out


def gram_allowance(fro2, m, n):
    """THEORY §11.1, the one formula: the rounding allowance of the top eigenvalue of a computed Gram of an m x n
    matrix with ||M||_F^2 = fro2, (k + m + n + 10) eps fro2 + 4 (m + n) k 2^-1074, k = max(m, n) (arrays broadcast)."""
    k = np.maximum(m, n)
    return (k + m + n + 10) * EPS * fro2 + 4 * (m + n) * k * 2.0 ** -1074


def cholesky_top_upper(G: np.ndarray, mu: float) -> float | None:
    """THEORY §11.5 on a dense symmetric numpy G: if fl(mu I - G) factorises (scipy Cholesky) with a finite factor,
    lambda_max(G) <= mu + :func:`cholesky_slack`; None when it does not."""
    from scipy.linalg import cholesky

    d = G.shape[0]
    A = -G
    A[np.diag_indices(d)] += mu
    try:
        R = cholesky(A, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(np.diag(R))):
        return None
    return mu + float(cholesky_slack(float(np.sum(R * R)), float(np.abs(np.diag(A)).max()), d))


def cholesky_slack(rf2, diag_max, d: int):
    """THEORY §11.5 (Cholesky at a guess), the one formula: if fl(mu I - G) (d x d, Hermitian, mu any real) factorises
    with computed factor R, then lambda_min(mu I - G) >= -slack, slack = gamma_{4(d+1)} 1.01 ||R||_F^2 + eps max|A_ii|
    (Cholesky's backward error plus the rounding of the shifted diagonal; gamma and eps in units of 2u = 2^-52,
    generous for complex flops). ``rf2`` = ||R||_F^2 and ``diag_max`` = max|A_ii| (floats or tensors)."""
    gam = 4 * (d + 1) * EPS / (1 - 4 * (d + 1) * EPS)
    return gam * 1.01 * rf2 + EPS * diag_max


def _gram_top_upper_hint(M, mu: float):
    """Certified upper bound on max over the batch of ||M_b||_2^2 (scaled blocks as in :func:`_gram_top_upper`)
    from a guess ``mu`` (THEORY §11.5 [D]): where the Cholesky factorisation of fl(mu I - G_b) runs to completion,
    lambda_max(G_b) <= mu + gamma ||R_b||_F^2 + u max|A_ii| (+ the Gram allowance of §11.1); blocks where it fails
    fall back to the eigenvalue bound. About 3x cheaper than eigenvalues for large blocks."""
    import torch

    B, m, n = M.shape
    k = max(m, n)
    d = min(m, n)
    best = 0.0
    step = max(1, BLOCK_ELEMS // max(1, d * d))
    eye = torch.eye(d, dtype=M.dtype, device=M.device)
    for b0 in range(0, B, step):
        Mb = M[b0:b0 + step]
        G = Mb @ Mb.mH if m <= n else Mb.mH @ Mb
        fro2 = (Mb.real ** 2).sum(dim=(-2, -1)) + ((Mb.imag ** 2).sum(dim=(-2, -1)) if Mb.is_complex() else 0.0)
        slack = (k + m + n + 10) * EPS * fro2 + 4 * (m + n) * k * 2.0 ** -1074
        A = mu * eye - G
        R, info = torch.linalg.cholesky_ex(A)
        ok = (info == 0) & torch.isfinite(R.real if R.is_complex() else R).all(dim=(-2, -1))
        if bool(ok.any()):
            rf2 = ((R.real ** 2).sum(dim=(-2, -1)) + ((R.imag ** 2).sum(dim=(-2, -1)) if R.is_complex() else 0.0))
            diag = torch.diagonal(A, dim1=-2, dim2=-1).abs().amax(dim=-1)
            diag = diag.real if diag.is_complex() else diag
            bound = mu + cholesky_slack(rf2, diag, d) + slack
            best = max(best, float(bound[ok].max()))
        if not bool(ok.all()):
            lam = torch.linalg.eigvalsh(G[~ok])[:, -1].clamp_min(0.0) + slack[~ok]
            best = max(best, float(lam.max()))
    return best


def _block_grams_cpu(F):
    """Lower triangles of MINUS the smaller Gram matrix of every block of a CPU tensor F (B, m, n) (numpy, one BLAS
    herk / syrk per block with alpha = -1: half the flops of a general product, no copy of the block; the negation
    is exact). The C-ordered block is the Fortran-ordered X = F_b^T, and herk forms X^H X = conj(F_b F_b^H) (m <= n)
    or X X^H = conj(F_b^H F_b): the Gram of conj(F_b), which has the singular values of F_b (THEORY §11.6)."""
    from scipy.linalg import blas

    Fn = F.resolve_conj().numpy()
    _, m, n = Fn.shape
    cplx = np.iscomplexobj(Fn)
    herk = {np.dtype(np.complex128): blas.zherk, np.dtype(np.complex64): blas.cherk,
            np.dtype(np.float64): blas.dsyrk, np.dtype(np.float32): blas.ssyrk}[Fn.dtype]
    trans = (2 if cplx else 1) if m <= n else 0
    return [herk(-1.0, Fn[b].T, trans=trans, lower=1) for b in range(Fn.shape[0])]


def _block_top_cpu(F, mu0: float | None = None, certified: bool = True, margin: float = 1e-9):
    """Per-block upper bounds on lambda_max(F_b F_b^H) for a CPU batch F (B, m, n) of scaled blocks (max-abs entry
    <= 1), by Cholesky at a common guess mu with the eigenvalue bound only where needed (THEORY §11.6 [D]).

    mu starts at ``mu0`` or, without one, at the top eigenvalue of the block ranked first by a two-step power
    estimate (times 1 + ``margin``); every other block is certified by Cholesky of fl(mu I - G_b) (§11.5); the blocks
    where it fails get the eigenvalue bound (§11.1) one at a time, highest ranked first, each raising mu, until all
    pass (after 64 rounds, all failing blocks get eigenvalues). ``certified=False`` (float32 estimates): no
    rounding allowances, and the values are lambda for eigenvalue blocks and mu for Cholesky blocks. Returns
    (bounds (B,), eigenvalue (B,) (NaN where not computed), ranking proxy (B,))."""
    import torch
    from scipy.linalg import blas, eigh, lapack

    B, m, n = F.shape
    d, k = min(m, n), max(m, n)
    negG = _block_grams_cpu(F)
    dt = negG[0].dtype
    potrf = {np.dtype(np.complex128): lapack.zpotrf, np.dtype(np.complex64): lapack.cpotrf,
             np.dtype(np.float64): lapack.dpotrf, np.dtype(np.float32): lapack.spotrf}[dt]
    hemv = {np.dtype(np.complex128): blas.zhemv, np.dtype(np.complex64): blas.chemv,
            np.dtype(np.float64): blas.dsymv, np.dtype(np.float32): blas.ssymv}[dt]
    if certified:
        Fr = torch.view_as_real(F) if F.is_complex() else F
        fro2 = (torch.linalg.vector_norm(Fr.reshape(B, -1), dim=1).to(torch.float64) ** 2).numpy()
        slack = (k + m + n + 10) * EPS * fro2 * (1 + 1e-12) + 4 * (m + n) * k * 2.0 ** -1074
    else:
        slack = np.zeros(B)
    proxy = np.zeros(B)
    if B > 1:  # ranking only (which block's eigenvalue to compute first): ||G^2 v|| / ||G v|| <= lambda_max
        v0 = np.random.default_rng(0).standard_normal(d).astype(dt)
        for b in range(B):
            y1 = hemv(1.0, negG[b], v0, lower=1)
            n1 = float(np.linalg.norm(y1))
            proxy[b] = float(np.linalg.norm(hemv(1.0, negG[b], y1, lower=1))) / n1 if n1 > 0 else 0.0
    order = [int(b) for b in np.argsort(-proxy, kind="stable")]
    bound = np.full(B, np.nan)
    lam = np.full(B, np.nan)

    def eig(b):  # lambda_max(G_b) = -lambda_min(-G_b)
        v = -float(eigh(negG[b], lower=True, eigvals_only=True, subset_by_index=[0, 0], check_finite=False)[0])
        lam[b] = v
        bound[b] = max(v, 0.0) + slack[b]
        return v

    if mu0 is not None and math.isfinite(mu0) and mu0 > 0:
        mu = float(mu0)
    else:
        mu = eig(order[0]) * (1 + margin)
    pending = [b for b in order if np.isnan(bound[b])]
    rounds = 0
    while pending:
        failed = []
        for b in pending:
            if not mu > 0:
                failed.append(b)
                continue
            A = negG[b].copy(order="F")  # -G exactly; the diagonal addition is the only rounding in fl(mu I - G)
            A.flat[::d + 1] += mu
            amax = float(np.abs(A.flat[::d + 1].real).max())
            R, info = potrf(A, lower=1, clean=1, overwrite_a=1)
            rf2 = float(np.vdot(R, R).real) if info == 0 else math.inf
            if math.isfinite(rf2):
                bound[b] = mu + cholesky_slack(rf2, amax, d) + slack[b] if certified else mu
            else:
                failed.append(b)
        if not failed:
            break
        rounds += 1
        if rounds >= 64:  # pathological: give the rest eigenvalues
            for b in failed:
                eig(b)
            break
        mu = max(mu, eig(failed[0]) * (1 + margin))
        pending = failed[1:]
    return bound, lam, proxy


def block_top_estimate_cpu(F):
    """ESTIMATE (no allowance; float32 blocks in the searches) of max_b lambda_max(F_b F_b^H): §11.6's procedure with
    a 1e-4 relative margin, so that every block within 1e-4 of the largest gets its eigenvalue computed. Returns
    (the largest computed eigenvalue, per-block eigenvalues (NaN where not computed), ranking proxy)."""
    _, lam, proxy = _block_top_cpu(F, None, certified=False, margin=1e-4)
    return float(np.nanmax(lam)), lam, proxy


def matrix_norm_upper(M):
    """Certified upper bounds on the spectral norms of a batch of real matrices (torch tensor (..., m, n), any
    device), float64; THEORY §11.1 [D]. Returns a float64 tensor of shape (...)."""
    import torch

    M = torch.as_tensor(M)
    if M.dim() < 2:
        raise ProbPruneError(f"matrix_norm_upper needs (..., m, n), got shape {tuple(M.shape)}")
    M = M.to(torch.float64)
    lead, (m, n) = M.shape[:-2], M.shape[-2:]
    if m == 0 or n == 0 or M.numel() == 0:
        return torch.zeros(lead, dtype=torch.float64, device=M.device)
    if not bool(torch.isfinite(M).all()):
        raise ProbPruneError("matrix has NaN or infinite entries")
    Mb = M.reshape(-1, m, n)
    s = _pow2_scale(Mb)
    lam = _gram_top_upper(Mb / s[:, None, None])
    out = torch.sqrt(lam) * s * (1.0 + SAFETY)
    return torch.where(Mb.abs().amax(dim=(-2, -1)) > 0, out, torch.zeros_like(out)).reshape(lead)  # 0 is exact


def spectral_norm_upper(M) -> float:
    """A certified upper bound on ||M||_2 of one matrix (THEORY §11.1 [D]): power-of-two scaling, Gram eigenvalue
    with rounding allowance, x (1 + 1e-9). Power iteration is never used here."""
    import torch

    M = check_finite_array(M, "matrix")
    if M.size == 0:
        return 0.0
    M = as_matrix(M)
    if default_device().type != "cpu":
        return float(matrix_norm_upper(torch.from_numpy(np.ascontiguousarray(M)).to(default_device())).cpu())
    # CPU: the same bound (§11.1) with LAPACK syevr for the top eigenvalue only (scipy), faster than all of them
    from scipy.linalg import eigh

    amax = max(float(M.max()), -float(M.min()))
    if amax == 0.0:
        return 0.0
    # scale only outside [2^-400, 2^400]: inside, the Gram neither overflows nor loses more than the allowance's
    # absolute underflow term (§11.1), and skipping the copy keeps this as fast as the unscaled bound
    s = 1.0 if 2.0 ** -400 <= amax <= 2.0 ** 400 else math.ldexp(1.0, math.frexp(amax)[1])
    Ms = M if s == 1.0 else M / s  # exact
    m, n = Ms.shape
    G = Ms @ Ms.T if m <= n else Ms.T @ Ms
    d = G.shape[0]
    lam = max(float(eigh(G, eigvals_only=True, subset_by_index=[d - 1, d - 1], check_finite=False)[0]), 0.0)
    fro2 = float(np.einsum("ij,ij->", Ms, Ms))
    lam += gram_allowance(fro2, m, n)
    return math.sqrt(lam) * s * (1.0 + SAFETY)


def _tuple(v, d: int, what: str) -> tuple[int, ...]:
    t = (int(v),) * d if np.ndim(v) == 0 else tuple(int(x) for x in v)
    if len(t) != d:
        raise ProbPruneError(f"conv {what} must have {d} entries for a {d}-D kernel, got {v!r}")
    return t


def dilate_kernel(W, dilation: Sequence[int]):
    """The dilated kernel: W with (dilation - 1) zeros between taps along each spatial axis (torch tensor)."""
    import torch

    d = tuple(dilation)
    if all(x == 1 for x in d):
        return W
    ks = W.shape[2:]
    eff = tuple(di * (k - 1) + 1 for di, k in zip(d, ks))
    out = torch.zeros(W.shape[:2] + eff, dtype=W.dtype, device=W.device)
    idx = (slice(None), slice(None)) + tuple(slice(None, None, di) for di in d)
    out[idx] = W
    return out


def conv_fft_blocks(W, in_spatial: Sequence[int], padding=0, dilation=1, groups: int = 1, dtype=None):
    """The frequency blocks K^(omega) of the periodic extension on the padded grid, non-redundant half only
    (the ``rfftn`` frequencies; the other half are complex conjugates with the same singular values), as a tensor
    (groups * n_freq, c_out/groups, c_in/groups), plus the grid. W: (c_out, c_in/groups, *k), 1-D or 2-D."""
    import torch

    W = torch.as_tensor(W)
    if dtype is not None:
        W = W.to(dtype)
    d = W.dim() - 2
    if d not in (1, 2):
        raise ProbPruneError(f"conv kernel must be 3-D or 4-D (c_out, c_in/groups, *k), got shape {tuple(W.shape)}")
    pad = _tuple(padding, d, "padding")
    dil = _tuple(dilation, d, "dilation")
    ins = _tuple(in_spatial, d, "input size")
    if groups < 1 or W.shape[0] % groups:
        raise ProbPruneError(f"groups={groups} must divide c_out={W.shape[0]}")
    if any(p < 0 for p in pad) or any(x < 1 for x in dil):
        raise ProbPruneError("conv norm: padding must be >= 0 and dilation >= 1 (zero padding only)")
    Wd = dilate_kernel(W, dil)
    grid = tuple(max(i + 2 * p, k) for i, p, k in zip(ins, pad, Wd.shape[2:]))
    co, cig = W.shape[0], W.shape[1]
    # direct DFT of the (small) kernel by one matrix product per axis (the same sums as before, axis 0 first), laid
    # out so that the output comes out as (freq, c_out, c_in) without a transposing copy: taps first, channels last
    cplx = torch.complex128 if Wd.dtype == torch.float64 else torch.complex64
    P = co * cig
    X = Wd.permute(*range(2, 2 + d), 0, 1).reshape(*Wd.shape[2:], P)  # (*taps, P), real
    twid = []
    for ax in range(d):
        G_ax, k_ax = grid[ax], Wd.shape[2 + ax]
        nf = G_ax // 2 + 1 if ax == d - 1 else G_ax
        ang = (-2.0 * math.pi / G_ax) * torch.outer(torch.arange(nf, dtype=torch.float64, device=W.device),
                                                     torch.arange(k_ax, dtype=torch.float64, device=W.device))
        twid.append(torch.polar(torch.ones_like(ang), ang))  # (nf, k_ax), float64 twiddles
    T0 = twid[0]
    X0 = X.reshape(X.shape[0], -1)  # (k_0, rest)
    F = torch.complex(T0.real.to(Wd.dtype) @ X0, T0.imag.to(Wd.dtype) @ X0)  # (nf_0, rest): real tap sums
    if d == 2:
        T1 = twid[1].to(cplx)
        F = torch.matmul(T1, F.reshape(F.shape[0], Wd.shape[3], P))  # (nf_0, nf_1, P)
    F = F.reshape(-1, groups, co // groups, cig)
    if groups > 1:
        F = F.permute(1, 0, 2, 3)
    F = F.reshape(-1, co // groups, cig).contiguous()
    return F, grid


def conv_norm_fft_upper(W, in_spatial: Sequence[int], stride=1, padding=0, dilation=1, groups: int = 1,
                        device=None, hint: float | None = None) -> float:
    """Certified upper bound on the operator norm of a zero-padded conv (THEORY §11.2 [D]): the norm of its
    periodic extension on the grid in + 2 padding (at least the dilated kernel size), max over groups and over
    the rfft frequencies of the block's largest singular value, with rounding allowances. Valid for every stride
    (the strided output is a restriction of the stride-1 output), dilation and groups; 1-D and 2-D kernels.
    ``stride`` is accepted and checked but does not change the bound. ``hint``: an estimate of the norm (e.g.
    :func:`conv_norm_fft_estimate`); then the blocks are certified by Cholesky factorisations at
    (hint (1 + 1e-6))^2 instead of eigenvalues (§11.5; same guarantee, at most ~1e-6 relative looser, faster)."""
    import torch

    W = check_finite_array(W, "conv kernel") if not isinstance(W, torch.Tensor) else W
    W = torch.as_tensor(W, dtype=torch.float64).to(device or default_device())
    _tuple(stride, max(1, W.dim() - 2), "stride")
    if W.numel() == 0:
        return 0.0
    amax = float(W.abs().max())
    if amax == 0:
        return 0.0
    _, e = math.frexp(amax)
    s = math.ldexp(1.0, e)
    Ws = W / s  # exact
    F, grid = conv_fft_blocks(Ws, in_spatial, padding, dilation, groups)
    mu0 = (hint / s * (1 + 1e-6)) ** 2 if hint is not None and hint > 0 and math.isfinite(hint) else None
    if F.device.type == "cpu" and min(F.shape[1:]) > SMALL_BLOCK:  # per-block herk + Cholesky at a common
        lam_max = float(_block_top_cpu(F, mu0)[0].max())  # guess, eigenvalues only where needed (§11.6)
    elif mu0 is not None:
        lam_max = _gram_top_upper_hint(F, mu0)
    else:
        lam_max = float(_gram_top_upper(F).max())
    fro_w = float(torch.linalg.vector_norm(Ws)) * (1 + 1e-12)
    keff = dilate_kernel(Ws[:1, :1], _tuple(dilation, W.dim() - 2, "dilation")).shape[2:]
    K = math.prod(keff)
    dft_err = 8 * (K + 8 + 16 * max(keff)) * EPS * math.sqrt(K) * fro_w  # direct DFT sums of K taps (§11.2)
    return (math.sqrt(lam_max) + dft_err) * s * (1.0 + SAFETY)


def conv_norm_fft_estimate(W, in_spatial: Sequence[int], padding=0, dilation=1, groups: int = 1,
                           device=None) -> float:
    """An ESTIMATE (float32 / complex64, no allowance) of the periodic-extension norm that ``conv_norm_fft_upper``
    bounds: same blocks, about 3x cheaper, relative error ~1e-6. For searches only, never in a certificate."""
    import torch

    W = torch.as_tensor(np.asarray(W) if not isinstance(W, torch.Tensor) else W).to(device or default_device())
    amax = float(W.abs().max()) if W.numel() else 0.0
    if amax == 0:
        return 0.0
    Ws = (W.to(torch.float64) / amax).to(torch.float32)
    F, _ = conv_fft_blocks(Ws, in_spatial, padding, dilation, groups)
    if F.device.type == "cpu" and min(F.shape[1:]) > SMALL_BLOCK:  # §11.6's search, float32, no allowance
        return math.sqrt(max(block_top_estimate_cpu(F)[0], 0.0)) * amax
    B, m, n = F.shape
    best = 0.0
    step = max(1, BLOCK_ELEMS // max(1, min(m, n) ** 2))
    for b0 in range(0, B, step):
        Fb = F[b0:b0 + step]
        G = Fb @ Fb.mH if m <= n else Fb.mH @ Fb
        best = max(best, float(torch.linalg.eigvalsh(G)[:, -1].max()))
    return math.sqrt(max(best, 0.0)) * amax


def conv_norm_kernel_bound(W, layer: LayerSpec) -> float:
    """Lemma C (THEORY §3.5 [D]): ||T_W|| <= sqrt(r)·||mat(W)||."""
    return math.sqrt(layer.r) * spectral_norm_upper(as_matrix(W))


def conv_norm_fft(W, layer: LayerSpec, hint: float | None = None) -> float:
    """``conv_norm_fft_upper`` for a conv :class:`LayerSpec` (groups 1, zero padding)."""
    W = check_finite_array(W, "conv kernel")
    if W.ndim != 4:
        raise ProbPruneError(f"conv kernel must be 4-D (c_out, c_in, k_h, k_w), got shape {W.shape}")
    return conv_norm_fft_upper(W, layer.in_shape[1:], layer.stride, layer.padding, layer.dilation, hint=hint)


def layer_operator_norm_upper(layer: LayerSpec, W, conv_method: str = "fft", hint: float | None = None) -> float:
    """A certified upper bound on the operator norm of one weight layer (dense: §11.1; conv: min of the FFT bound
    §11.2 and Lemma C §3.5, or Lemma C alone). ``hint``: a norm estimate for the conv FFT blocks (§11.5)."""
    W = np.asarray(W, float)
    if layer.is_dense:
        return spectral_norm_upper(W.reshape(layer.d_out, layer.d_in))
    W = W.reshape(layer.weight_shape)
    if conv_method not in CONV_NORMS:
        raise ProbPruneError(f"unknown conv norm method {conv_method!r}; use 'fft' or 'kernel'")
    return CONV_NORMS[conv_method](W, layer, hint)


#: conv norm method -> a certified upper bound on a conv layer's operator norm (W, layer, hint): "fft" = the smaller
#: of the FFT block bound (§11.2) and Lemma C (§3.5), "kernel" = Lemma C alone
CONV_NORMS = {
    "fft": lambda W, layer, hint: min(conv_norm_fft(W, layer, hint), conv_norm_kernel_bound(W, layer)),
    "kernel": lambda W, layer, hint: conv_norm_kernel_bound(W, layer),
}


# --------------------------------------------------------------------------------------------- lower estimates
def matrix_norm_estimate(M, v0=None, iters: int = 30, rtol: float = 1e-4):
    """A LOWER estimate of ||M||_2 for a batch of (real or complex) matrices (torch (..., m, n)): power iteration
    on M^H M from ``v0`` (warm start) or a fixed-seed random start, stopping when the estimate changes by < rtol.
    Returns (estimate (...), last vector). ||M v|| / ||v|| <= ||M|| for every v: never use it in a certificate."""
    import torch

    M = torch.as_tensor(M)
    lead, n = M.shape[:-2], M.shape[-1]
    Mb = M.reshape(-1, *M.shape[-2:])
    if v0 is None:
        g = torch.Generator(device="cpu").manual_seed(0)
        v = torch.randn(Mb.shape[0], n, 1, generator=g, dtype=torch.float64).to(Mb.device, Mb.dtype)
    else:
        v = v0.reshape(Mb.shape[0], n, 1).to(Mb.dtype)
    est = torch.zeros(Mb.shape[0], dtype=torch.float64, device=Mb.device)
    for _ in range(iters):
        vn = torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True)
        v = v / torch.where(vn > 0, vn, torch.ones_like(vn))
        y = Mb @ v
        new = torch.linalg.vector_norm(y, dim=(1, 2)).to(torch.float64)
        v = Mb.mH @ y
        done = bool(((new - est).abs() <= rtol * new).all())
        est = torch.maximum(est, new)
        if done:
            break
    return est.reshape(lead), v


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
