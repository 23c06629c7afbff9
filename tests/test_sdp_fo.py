"""First-order SDP certificate (THEORY §12.6b, Statement 12.12b): an upper bound on the exact sup (linear nets: the
spectral norm of the product difference; tiny ReLU nets: exhaustive grid search on a 2-d input disc), valid at ANY
multipliers (random ones, a solve stopped after one step), never below the SCS SDP's lower side, refused / skipped
by name above its size or memory limit, wired into certify_chains ("sdp" above sdp.MAX_DIM, "auto" within the time
limit)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.certificates.lower import lower_pair, pruned_copy
from probprune.certificates.sdp import _certify_schur, build_qcqp, sdp_certificate
from probprune.certificates.sdp_fo import DualOperator, certify_point, sdp_fo_certificate
from probprune.certificates.tight import certify_chains
from probprune.core.errors import ProbPruneError
from probprune.net.zoo import mlp


def _pair(widths, bias, seed, keep):
    m = mlp(widths, bias=bias, seed=seed)
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(tuple(p.shape)) < keep for k, p in m.named_parameters() if k.endswith("weight")}
    return m, pruned_copy(m, masks)


def _grid_sup(F, Fh, n=401):
    """Exhaustive lower bound on sup_{||x|| <= 1} ||F - F_hat|| for 2-d inputs: a dense polar grid of the disc plus
    its boundary (F - F_hat is piecewise affine, so the grid converges to the sup)."""
    a = np.linspace(0, 2 * np.pi, 4 * n, endpoint=False)
    rr = np.linspace(0, 1, n // 4)
    P = np.concatenate([np.stack([np.cos(a), np.sin(a)], 1) * r for r in rr] + [np.stack([np.cos(a), np.sin(a)], 1)])
    return float(np.linalg.norm(F.forward(P) - Fh.forward(P), axis=1).max())


def test_single_affine_stage_is_near_exact():
    m, mh = _pair([6, 5], False, 3, 0.5)
    F, Fh = lower_pair(m, mh, (6,))
    exact = float(np.linalg.norm(F.stages[0].M - Fh.stages[0].M, 2))
    c = sdp_fo_certificate(F, Fh, iters=200)
    assert exact * (1 - 1e-12) <= c.eps <= exact * 1.05, (c.eps, exact)


def test_linear_nets_above_spectral_norm_of_product_difference():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6, bias=False), nn.Linear(6, 4, bias=False), nn.Linear(4, 3, bias=False))
    mh = pruned_copy(m, {k: torch.rand(p.shape).numpy() < 0.6 for k, p in m.named_parameters()})
    P = [l.weight.detach().double().numpy() for l in m]
    Ph = [l.weight.detach().double().numpy() for l in mh]
    exact = float(np.linalg.norm(P[2] @ P[1] @ P[0] - Ph[2] @ Ph[1] @ Ph[0], 2))
    F, Fh = lower_pair(m, mh, (5,))
    c = sdp_fo_certificate(F, Fh, iters=100)
    assert c.eps >= exact * (1 - 1e-12)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(3, 6), min_size=2, max_size=3), seed=st.integers(0, 10_000),
       keep=st.floats(0.3, 0.9), bias=st.booleans())
def test_tiny_relu_nets_above_exhaustive_sup(widths, seed, keep, bias):
    m, mh = _pair([2] + widths + [2], bias, seed, keep)
    F, Fh = lower_pair(m, mh, (2,))
    c = sdp_fo_certificate(F, Fh, iters=60)
    assert c.eps >= _grid_sup(F, Fh) * (1 - 1e-9)


def test_any_multipliers_give_a_valid_bound():
    """Statement 12.12b: random multipliers and t = 0 (an 'indefinite' dual point) still give an upper bound; form (ii)
    is refused (None) when Q11 is not negative definite."""
    m, mh = _pair([2, 5, 4, 2], True, 7, 0.5)
    F, Fh = lower_pair(m, mh, (2,))
    N, AD, G, Gabs, tpr, kinds, fam, box, _ = build_qcqp(F, Fh, np.zeros(2), 1.0)
    truth = _grid_sup(F, Fh)
    rng = np.random.default_rng(0)
    for _ in range(3):
        lam = np.where(kinds == "ineq", rng.random(len(kinds)), rng.normal(size=len(kinds)))
        b, form, b1, b2 = certify_point(AD, G, Gabs, tpr, kinds, fam, box, lam, 0.0)
        assert np.sqrt(b) >= truth * (1 - 1e-9) and b == min(b1, b2)
    assert _certify_schur(AD, G, Gabs, tpr, np.zeros(len(kinds)), kinds, box) is None  # Q11 = C11 is PSD, not < 0
    one = sdp_fo_certificate(F, Fh, iters=1)
    assert one.eps >= truth * (1 - 1e-9) and one.iterations == 1


def test_dual_operator_matches_dense_lagrangian():
    m, mh = _pair([3, 4, 4, 2], True, 2, 0.6)
    F, Fh = lower_pair(m, mh, (3,))
    N, AD, G, Gabs, tpr, kinds, fam, box, _ = build_qcqp(F, Fh, np.zeros(3), 1.0)
    lam = np.random.default_rng(1).random(len(kinds))
    op = DualOperator(AD, G)
    Q = AD.T @ AD + (G @ lam).reshape(N, N)
    assert np.allclose(op.dense(lam, 0.0), (Q + Q.T) / 2, atol=1e-12)
    u = np.random.default_rng(2).normal(size=N)
    assert np.allclose(op.quad(u), G.T @ np.outer(u, u).ravel())


def test_close_to_scs_on_a_small_net():
    """Both are certified upper bounds of the same relaxation; the first-order solve is a looser guess of the dual
    optimum (measured ratio on this net recorded in the assertion)."""
    m, mh = _pair([4, 6, 6, 2], True, 11, 0.6)
    F, Fh = lower_pair(m, mh, (4,))
    scs = sdp_certificate(F, Fh)
    fo = sdp_fo_certificate(F, Fh, iters=400)
    assert fo.eps >= scs.eps * 0.5  # sanity: same problem
    assert fo.eps <= scs.eps * 1.5, (fo.eps, scs.eps)


def test_refusals_and_skips_are_named(monkeypatch):
    m, mh = _pair([30, 40, 10], True, 0, 0.5)
    F, Fh = lower_pair(m, mh, (30,))
    with pytest.raises(ProbPruneError, match="lifted problem has 111 coordinates"):
        sdp_fo_certificate(F, Fh, max_dim=100)
    with pytest.raises(ProbPruneError, match="radius"):
        sdp_fo_certificate(F, Fh, float("inf"))
    monkeypatch.setenv("PROBPRUNE_MEMORY_LIMIT", "1000")
    with pytest.raises(ProbPruneError, match="first-order SDP"):
        sdp_fo_certificate(F, Fh)
    # auto (lifted dim 111 < SDP_AUTO_DIM runs SCS): a net above SDP_AUTO_DIM gets the first-order SDP, skipped by name
    m2, mh2 = _pair([40, 70, 10], True, 0, 0.5)  # lifted dim 181
    F2, Fh2 = lower_pair(m2, mh2, (40,))
    assert "sdp_fo" not in certify_chains(F2, Fh2, "auto").components  # off by default (SDP_FO_IN_AUTO)
    cert = certify_chains(F2, Fh2, "auto", sdp_fo=True)
    skipped = [s for s in cert.stages if s["stage"] == "skipped components"]
    assert "sdp_fo" not in cert.components and skipped and "first-order SDP" in skipped[0]["sdp_fo"]
    monkeypatch.delenv("PROBPRUNE_MEMORY_LIMIT")
    cert = certify_chains(F2, Fh2, "auto", sdp_fo=True)
    assert "sdp_fo" in cert.components and cert.eps == min(cert.components.values())
    assert any(s["stage"].startswith("sdp first-order") for s in cert.stages)


def test_auto_time_limit_skips_by_name():
    m, mh = _pair([40, 70, 10], True, 1, 0.5)
    F, Fh = lower_pair(m, mh, (40,))
    import probprune.certificates.tight as tight

    old = tight.SDP_FO_AUTO_MIN_SECONDS
    tight.SDP_FO_AUTO_MIN_SECONDS = 1e9  # no time left for it under any limit
    try:
        cert = certify_chains(F, Fh, "auto", time_limit=30.0, sdp_fo=True)
    finally:
        tight.SDP_FO_AUTO_MIN_SECONDS = old
    skipped = [s for s in cert.stages if s["stage"] == "skipped components"][0]
    assert "time limit" in skipped["sdp_fo"] and "sdp_fo" not in cert.components
    cert = certify_chains(F, Fh, "auto", time_limit=3.0, sdp_fo=True)  # runs within the limit (stopped early)
    info = [s for s in cert.stages if s["stage"].startswith("sdp first-order")]
    assert "sdp_fo" in cert.components and info and info[0]["iterations"] >= 1


def test_method_sdp_uses_first_order_above_max_dim(monkeypatch):
    import probprune.certificates.tight as tight

    monkeypatch.setattr(tight, "SDP_FO_ITERS", 15)  # a short solve: any dual point is certified (Statement 12.12b)
    m, mh = _pair([64, 330, 10], True, 0, 0.5)  # lifted dim 725 > sdp.MAX_DIM
    F, Fh = lower_pair(m, mh, (64,))
    cert = certify_chains(F, Fh, "sdp")
    assert set(cert.components) >= {"sdp_fo"} and "sdp" not in cert.components
    big = nn.Sequential(nn.Linear(4, 7000), nn.ReLU(), nn.Linear(7000, 2))
    Fb, Fbh = lower_pair(big, pruned_copy(big, {"0.weight": np.ones((7000, 4), bool)}), (4,))
    with pytest.raises(ProbPruneError, match="lifted problem has 14005 coordinates"):
        certify_chains(Fb, Fbh, "sdp")


def test_large_problem_path_of_the_certified_step(monkeypatch):
    """Above DENSE_SIGMA_DIM the norm multiplier comes from lambda_max(Q11) of the re-indexed lower-right block
    (_drop_first) and form (i) runs only as a fallback: same validity, form (ii) accepted at a solver point."""
    import probprune.certificates.sdp_fo as fo

    m, mh = _pair([2, 5, 4, 2], True, 3, 0.6)
    F, Fh = lower_pair(m, mh, (2,))
    N, AD, G, Gabs, tpr, kinds, fam, box, _ = build_qcqp(F, Fh, np.zeros(2), 1.0)
    lam = np.where(kinds == "ineq", np.random.default_rng(4).random(len(kinds)), 0.0)
    dense = certify_point(AD, G, Gabs, tpr, kinds, fam, box, lam, 0.0)
    sub = fo._drop_first(G, N)
    Q11 = (G @ lam).reshape(N, N)[1:, 1:]
    assert np.allclose((sub @ lam).reshape(N - 1, N - 1), Q11)
    monkeypatch.setattr(fo, "DENSE_SIGMA_DIM", 0)
    large = certify_point(AD, G, Gabs, tpr, kinds, fam, box, lam, 0.0)
    truth = _grid_sup(F, Fh)
    assert np.isfinite(large[3]) and large[2] == np.inf and large[1] == "schur (ii)"
    assert np.sqrt(large[0]) >= truth * (1 - 1e-9) and large[0] >= dense[3] * (1 - 1e-9)
