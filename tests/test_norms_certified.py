"""Certified operator norms (THEORY §11.1-11.2): >= the exact norm (SVD of the explicit operator) for random
matrices and convolutions with stride, padding, dilation, groups and 1-D kernels, at tiny and huge scales; equal
(to rounding) to the full complex SVD over all frequencies; estimates below the certified values."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.theory import norms
from probprune.core.errors import ProbPruneError
from proofs_check.checks_conv import conv_operator


def _exact(M):
    return float(np.linalg.svd(np.asarray(M, float), compute_uv=False)[0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), m=st.integers(1, 30), n=st.integers(1, 30),
       scale=st.sampled_from([1e-300, 1e-200, 1e-20, 1.0, 1e20, 1e200, 1e300]))
def test_dense_upper_bound_at_any_scale(seed, m, n, scale):
    rng = np.random.default_rng(seed)
    M0 = rng.standard_normal((m, n))
    ex = _exact(M0) * scale  # SVD of the unscaled matrix, scaled back (exact up to rounding of one product)
    ub = norms.spectral_norm_upper(M0 * scale)
    assert ub >= ex * (1 - 1e-15)
    assert ub <= ex * (1 + 1e-6)


def test_dense_mixed_magnitudes_and_zero():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((20, 15)) * np.logspace(-300, 0, 15)[None, :]
    assert norms.spectral_norm_upper(M) >= _exact(M)
    assert norms.spectral_norm_upper(np.zeros((3, 4))) == 0.0
    with pytest.raises(ProbPruneError):
        norms.spectral_norm_upper(np.array([[1.0, np.nan]]))


def test_batched_torch_equals_numpy_and_upper():
    rng = np.random.default_rng(1)
    M = rng.standard_normal((5, 7, 9)) * np.array([1e-150, 1e-3, 1.0, 1e5, 1e150])[:, None, None]
    b = norms.matrix_norm_upper(torch.from_numpy(M)).numpy()
    for i in range(5):
        assert b[i] == pytest.approx(norms.spectral_norm_upper(M[i]), rel=1e-14)
        assert b[i] >= _exact(M[i] / np.abs(M[i]).max()) * np.abs(M[i]).max() * (1 - 1e-15)


CONV_CASES = [  # (kernel, stride, padding, dilation, (H, W))
    ((3, 3), (1, 1), (0, 0), (1, 1), (7, 6)),
    ((3, 3), (2, 2), (1, 1), (1, 1), (7, 7)),
    ((3, 3), (1, 1), (2, 2), (2, 2), (6, 5)),
    ((5, 3), (3, 1), (0, 1), (1, 2), (9, 6)),
    ((1, 1), (2, 2), (0, 0), (1, 1), (5, 5)),
    ((4, 4), (2, 2), (3, 3), (1, 1), (4, 4)),
]


@pytest.mark.parametrize("k,s,p,d,hw", CONV_CASES)
@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_conv_upper_bound_vs_explicit_operator(k, s, p, d, hw, scale):
    rng = np.random.default_rng(hash((k, s, p, d)) % 1000)
    W = rng.standard_normal((4, 3, *k))
    T, _, _ = conv_operator(W, *hw, s, p, d)
    ex = _exact(T) * scale
    ub = norms.conv_norm_fft_upper(W * scale, hw, s, p, d)
    assert ub >= ex * (1 - 1e-15)


def test_conv_groups_is_max_over_groups_and_upper():
    rng = np.random.default_rng(2)
    g, co, ci = 3, 2, 2
    W = rng.standard_normal((g * co, ci, 3, 3))
    ub = norms.conv_norm_fft_upper(W, (5, 5), 1, 1, 1, groups=g)
    per = [norms.conv_norm_fft_upper(W[j * co:(j + 1) * co], (5, 5), 1, 1, 1) for j in range(g)]
    assert ub == pytest.approx(max(per), rel=1e-12)
    ex = max(_exact(conv_operator(W[j * co:(j + 1) * co], 5, 5, (1, 1), (1, 1))[0]) for j in range(g))
    assert ub >= ex
    with pytest.raises(ProbPruneError):
        norms.conv_norm_fft_upper(W, (5, 5), 1, 1, 1, groups=4)


@pytest.mark.parametrize("k,s,p,d,L", [(3, 1, 1, 1, 9), (5, 2, 0, 1, 11), (3, 1, 2, 2, 8)])
def test_conv1d_upper_bound(k, s, p, d, L):
    rng = np.random.default_rng(3)
    W = rng.standard_normal((3, 2, k))
    T, _, _ = conv_operator(W[:, :, None, :], 1, L, (1, s), (0, p), (1, d))
    assert norms.conv_norm_fft_upper(W, (L,), s, p, d) >= _exact(T)


def test_rfft_half_equals_full_complex_svd():
    """The previous implementation (fft2 over all frequencies + full complex SVD) gives the same value."""
    rng = np.random.default_rng(4)
    for co, ci, h in [(6, 5, 7), (8, 8, 6), (3, 7, 5)]:
        W = rng.standard_normal((co, ci, 3, 3))
        gh = gw = h + 2
        F = np.fft.fft2(W, s=(gh, gw), axes=(2, 3))
        F = np.transpose(F, (2, 3, 0, 1)).reshape(gh * gw, co, ci)
        full = float(np.linalg.svd(F, compute_uv=False)[:, 0].max())
        new = norms.conv_norm_fft_upper(W, (h, h), 1, 1)
        assert new == pytest.approx(full, rel=1e-8)
        assert new >= full


def test_estimates_are_close_and_below():
    rng = np.random.default_rng(5)
    W = rng.standard_normal((16, 8, 3, 3))
    ub = norms.conv_norm_fft_upper(W, (8, 8), 1, 1)
    est = norms.conv_norm_fft_estimate(W, (8, 8), 1)
    assert est == pytest.approx(ub, rel=1e-4)
    M = rng.standard_normal((40, 30))
    e, _ = norms.matrix_norm_estimate(torch.from_numpy(M), iters=500, rtol=1e-12)
    assert float(e) <= _exact(M) * (1 + 1e-12)
    assert float(e) == pytest.approx(_exact(M), rel=1e-4)


def test_layer_operator_norm_upper_dilated_uses_fft():
    from probprune.net.templates import LayerSpec, activation

    rng = np.random.default_rng(6)
    W = rng.standard_normal((4, 3, 3, 3))
    L = LayerSpec("c", "conv", 4, 27, 1.0, activation("relu"), 1.0, kernel=(3, 3), padding=(2, 2), dilation=(2, 2),
                  in_shape=(3, 6, 6), out_shape=(4, 6, 6))
    ub = norms.layer_operator_norm_upper(L, W)
    T, _, _ = conv_operator(W, 6, 6, (1, 1), (2, 2), (2, 2))
    assert _exact(T) <= ub <= norms.conv_norm_kernel_bound(W, L)


@pytest.mark.parametrize("factor", [1.0, 0.5, 2.0])
def test_cholesky_hint_is_upper_bound(factor):
    rng = np.random.default_rng(7)
    W = rng.standard_normal((5, 4, 3, 3))
    T, _, _ = conv_operator(W, 6, 6, (1, 1), (1, 1))
    est = norms.conv_norm_fft_estimate(W, (6, 6), 1)
    v = norms.conv_norm_fft_upper(W, (6, 6), 1, 1, hint=est * factor)
    assert v >= _exact(T)
    if factor == 1.0:
        assert v <= norms.conv_norm_fft_upper(W, (6, 6), 1, 1) * (1 + 1e-5)


# ---------------------------------------------------------------- §11.6: herk + Cholesky at a common guess (CPU path)
@pytest.mark.parametrize("k,s,p,d,hw", CONV_CASES)
@pytest.mark.parametrize("scale", [1e-200, 1.0, 1e200])
def test_conv_upper_bound_cholesky_search_path(monkeypatch, k, s, p, d, hw, scale):
    """Every block through §11.6 (the small-block threshold lowered to 0): still >= the explicit operator's norm, and
    within 1e-7 of the eigenvalue path."""
    rng = np.random.default_rng(hash((k, s, p, d)) % 1000)
    W = rng.standard_normal((4, 3, *k))
    T, _, _ = conv_operator(W, *hw, s, p, d)
    ex = _exact(T) * scale
    ref = norms.conv_norm_fft_upper(W * scale, hw, s, p, d)
    monkeypatch.setattr(norms, "SMALL_BLOCK", 0)
    ub = norms.conv_norm_fft_upper(W * scale, hw, s, p, d)
    assert ub >= ex * (1 - 1e-15)
    assert ub == pytest.approx(ref, rel=1e-7)
    est = norms.conv_norm_fft_estimate(W * scale, hw, p, d)
    assert est == pytest.approx(ref, rel=1e-4)
    hinted = norms.conv_norm_fft_upper(W * scale, hw, s, p, d, hint=est)
    assert hinted >= ex * (1 - 1e-15) and hinted <= ref * (1 + 1e-5)


@pytest.mark.parametrize("co,ci,hw,s,p,d,groups", [(40, 36, (4, 4), 1, 1, 1, 1), (48, 34, (5, 4), 2, 1, 2, 1),
                                                  (72, 35, (4, 3), 1, 1, 1, 2)])
def test_conv_wide_blocks_vs_explicit_operator(co, ci, hw, s, p, d, groups):
    """Blocks wider than the small-block threshold (the default CPU path of §11.6), with groups, stride, dilation."""
    rng = np.random.default_rng(co + ci)
    W = rng.standard_normal((co, ci, 3, 3))
    cg = co // groups
    ex = max(_exact(conv_operator(W[j * cg:(j + 1) * cg], *hw, (s, s), (p, p), (d, d))[0]) for j in range(groups))
    ub = norms.conv_norm_fft_upper(W, hw, s, p, d, groups=groups)
    assert ex * (1 - 1e-15) <= ub
    F, _ = norms.conv_fft_blocks(torch.as_tensor(W), hw, p, d, groups)
    full = float(np.linalg.svd(F.numpy(), compute_uv=False)[:, 0].max())  # every rfft block, LAPACK SVD
    assert ub == pytest.approx(full, rel=1e-7) and ub >= full


def _blocks(rng, B, m, n, kind):
    F = rng.standard_normal((B, m, n)) + 1j * rng.standard_normal((B, m, n))
    if kind == "ties":
        F[:] = F[0]  # identical blocks: every block attains the maximum
    elif kind == "zeros":
        F[1::2] = 0.0
    elif kind == "spread":
        F *= np.linspace(0.2, 1.0, B)[:, None, None]
    return F / np.abs(F).max()


@pytest.mark.parametrize("kind", ["random", "ties", "zeros", "spread"])
@pytest.mark.parametrize("mu_factor", [None, 0.3, 0.999, 1.0 + 1e-6, 3.0])
def test_block_top_cpu_bounds_every_block(kind, mu_factor):
    """§11.6: every block's value >= its exact lambda_max (complex SVD), whatever the starting guess; without a guess
    (or with a close one) the maximum is within 1e-7 of the exact one."""
    rng = np.random.default_rng(11)
    for m, n in [(40, 50), (50, 40), (45, 45)]:
        F = _blocks(rng, 9, m, n, kind)
        lam = np.linalg.svd(F, compute_uv=False)[:, 0] ** 2
        mu0 = None if mu_factor is None else float(lam.max()) * mu_factor
        bound, eig, _ = norms._block_top_cpu(torch.from_numpy(F), mu0)
        assert np.all(bound >= lam)
        if mu_factor is None or mu_factor < 1.01:  # a guess above the maximum is the bound (up to rounding)
            assert bound.max() == pytest.approx(lam.max(), rel=1e-7 if mu_factor is None or mu_factor < 1 else 2e-6)
        ev, evlam, _ = norms.block_top_estimate_cpu(torch.from_numpy(F.astype(np.complex64)))
        assert ev == pytest.approx(lam.max(), rel=1e-5)
