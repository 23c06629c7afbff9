"""Cross-network SDP certificate (THEORY §12.6, Statements 12.10-12.11): an upper bound on the exact sup (bias-free
linear nets: spectral norm of the difference; biased linear nets: the trust-region value), on a many-restart PGD
attack (ReLU nets, with and without biases, around the origin and around a data point), never below; refused above
its size limit; no looser than the other certificates on the small nets where it runs."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.measure import attack
from probprune.core.errors import ProbPruneError
from probprune.net.zoo import mlp
from probprune.certificates.tight import certify_chains
from probprune.certificates.lower import lower_pair, pruned_copy
from probprune.certificates.propagate import trs_dual_bound
from probprune.certificates.sdp import build_qcqp, sdp_certificate


def _mlp(widths, bias, seed):
    return mlp(widths, bias=bias, seed=seed)  # the package's one MLP builder (probprune.net.zoo)


def _pair(widths, bias, seed, keep):
    m = _mlp(widths, bias, seed)
    rng = np.random.default_rng(seed)
    masks = {k: rng.random(tuple(p.shape)) < keep for k, p in m.named_parameters() if k.endswith("weight")}
    mh = pruned_copy(m, masks)
    return m, mh


def _pgd(m, mh, n_in, center=None, radius=1.0, restarts=128, iters=100, seed=0):
    F, Fh = (copy.deepcopy(x).double().eval() for x in (m, mh))
    c = np.zeros(n_in) if center is None else np.asarray(center, float)
    return attack.pgd_sup_error(F, Fh, (n_in,), restarts, iters, seed, center=c, radius=radius).value


def test_linear_exact_sup_and_biased_difference():
    m, mh = _pair([5, 4], False, 3, 0.5)  # one affine stage: F(x) - F_hat(x) = E x
    F, Fh = lower_pair(m, mh, (5,))
    E = F.stages[0].M - Fh.stages[0].M
    exact = float(np.linalg.norm(E, 2))  # the exact sup on the unit ball
    c = sdp_certificate(F, Fh)
    assert exact * (1 - 1e-12) <= c.eps <= exact * (1 + 1e-6)  # a single quadratic: the relaxation is exact
    # a bias difference: sup ||E x + db|| (lower: strong PGD; upper reference: the trust-region dual bound)
    m2 = _mlp([5, 4], True, 3)
    mh2 = copy.deepcopy(mh)
    mh2[0].bias = nn.Parameter(m2[0].bias.detach() * 0.5)
    m2[0].weight = nn.Parameter(m[0].weight.detach().clone())
    F2, Fh2 = lower_pair(m2, mh2, (5,))
    c2 = sdp_certificate(F2, Fh2)
    db = F2.stages[0].b - Fh2.stages[0].b
    assert np.any(db != 0)
    assert c2.eps >= _pgd(m2, mh2, 5, restarts=256, iters=200) * (1 - 1e-12)
    assert c2.eps <= trs_dual_bound(E, db, 1.0) * (1 + 1e-6)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(2, 6), min_size=3, max_size=4), seed=st.integers(0, 10_000),
       keep=st.floats(0.3, 0.9), bias=st.booleans())
def test_relu_nets_above_strong_pgd(widths, seed, keep, bias):
    m, mh = _pair(widths, bias, seed, keep)
    F, Fh = lower_pair(m, mh, (widths[0],))
    c = sdp_certificate(F, Fh)
    lb = _pgd(m, mh, widths[0], seed=seed)
    assert c.eps >= lb * (1 - 1e-9), (c.eps, lb)
    # around a data point
    x0 = np.random.default_rng(seed).normal(size=widths[0])
    c2 = sdp_certificate(F, Fh, 0.5, x0)
    lb2 = _pgd(m, mh, widths[0], x0, 0.5, restarts=64, iters=60, seed=seed)
    assert c2.eps >= lb2 * (1 - 1e-9), (c2.eps, lb2)


def test_tighter_than_mixed_on_a_small_trained_like_net():
    m, mh = _pair([6, 8, 8, 3], True, 11, 0.6)
    F, Fh = lower_pair(m, mh, (6,))
    c = certify_chains(F, Fh, "auto")
    lb = _pgd(m, mh, 6, restarts=256, iters=150)
    assert c.components["sdp"] >= lb * (1 - 1e-9)
    assert c.components["sdp"] <= c.components["mixed"] * (1 + 1e-9)
    assert c.eps == min(c.components.values())


def test_constraints_hold_at_real_points():
    """Every lifted constraint g_k(v) >= 0 (= 0) at v built from actual inputs in the ball (the QCQP is a valid
    description of the network pair)."""
    m, mh = _pair([4, 5, 5, 2], True, 5, 0.5)
    F, Fh = lower_pair(m, mh, (4,))
    N, AD, G, Gabs, tpr, kinds, fam, box, dscale = build_qcqp(F, Fh, np.zeros(4), 1.0)
    rng = np.random.default_rng(0)
    for _ in range(200):
        x = rng.normal(size=4)
        x *= rng.random() ** 0.25 / np.linalg.norm(x)
        v = [np.ones(1), x]
        s, sh = x, x
        for a, b in zip(F.stages[:-1], Fh.stages[:-1]):
            s = np.maximum(a.M @ s + a.b, 0)
            sh = np.maximum(b.M @ sh + b.b, 0)
            v += [s, sh]
        v = np.concatenate(v) / dscale  # the scaled lifted vector
        g = G.T @ np.outer(v, v).ravel()
        tol = 1e-9 * (1 + np.abs(Gabs.T @ np.abs(np.outer(v, v)).ravel()))
        assert np.all(g[kinds == "ineq"] >= -tol[kinds == "ineq"])
        assert np.all(np.abs(g[kinds == "eq"]) <= tol[kinds == "eq"])
        assert np.all(np.abs(v) <= box * (1 + 1e-9) + 1e-12)
        assert np.isclose(v @ (AD.T @ AD) @ v, np.sum((F.forward(x) - Fh.forward(x)) ** 2))


def test_refused_above_max_dim_and_bad_radius():
    m, mh = _pair([30, 40, 10], True, 0, 0.5)
    F, Fh = lower_pair(m, mh, (30,))
    with pytest.raises(ProbPruneError, match="lifted problem has 111 coordinates"):
        sdp_certificate(F, Fh, max_dim=100)
    with pytest.raises(ProbPruneError, match="radius"):
        sdp_certificate(F, Fh, float("nan"))


def test_cli_refuses_sdp_above_its_size(capsys, tmp_path):
    """`certify --bound sdp` on a network whose lifted problem is too large even for the first-order solver (§12.6b):
    exit 2, one error line naming the size."""
    from _cli import run_cli

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 6000), nn.ReLU(), nn.Linear(6000, 10))
    p = tmp_path / "big.pt"
    torch.save(m, p)
    code, out, err = run_cli(capsys, ["certify", "--model", str(p), "--fraction", "0.5", "--bound", "sdp"])
    assert code == 2 and "lifted problem has 12065 coordinates" in err and "above max_dim" in err
    assert err.strip().startswith("error:") and "Traceback" not in err


@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(2, 8), min_size=3, max_size=5), seed=st.integers(0, 10**6),
       keep=st.floats(0.2, 0.95), bias=st.booleans(), around_data=st.booleans(), radius=st.floats(0.05, 3.0))
def test_sdp_above_strong_pgd_many(widths, seed, keep, bias, around_data, radius):
    """More hypothesis cases (the 60-case stress run of the closing note): the SDP certificate through the entry
    point (CROWN intervals) is >= a 256-restart PGD, on origin balls and on balls around random points."""
    m, mh = _pair(widths, bias, seed, keep)
    F, Fh = lower_pair(m, mh, (widths[0],))
    c = np.random.default_rng(seed).normal(size=widths[0]) if around_data else None
    cert = certify_chains(F, Fh, "sdp", radius, c)
    lb = _pgd(m, mh, widths[0], c, radius, restarts=256, iters=150, seed=seed)
    assert cert.eps >= lb * (1 - 1e-9), (cert.eps, lb)


class _TinyRes(nn.Module):
    """conv -> BN -> ReLU, a residual block with BatchNorm, average pooling, linear head (1 x 4 x 4 input)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1), nn.ReLU(),
                                  nn.Conv2d(1, 1, 3, padding=1), nn.BatchNorm2d(1))
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        h = self.stem(x)
        h = torch.relu(h + self.body(h))
        return self.fc(torch.flatten(self.pool(h), 1))


def test_residual_bn_pool_net_above_pgd():
    """A residual block with BatchNorm and average pooling: the lowered chain carries identity coordinates, which
    the SDP handles as equalities (Statement 12.11 (c)); the certificate stays above a strong PGD."""
    torch.manual_seed(4)
    m = _TinyRes()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    m = m.double().eval()
    rng = np.random.default_rng(4)
    masks = {k: rng.random(tuple(p.shape)) < 0.6 for k, p in m.named_parameters()
             if k.endswith("weight") and p.dim() >= 2}
    mh = pruned_copy(m, masks)
    F, Fh = lower_pair(m, mh, (1, 4, 4))
    assert not all(st.relu.all() for st in F.stages[:-1])  # carried identity coordinates are present
    c = certify_chains(F, Fh, "sdp")
    Fm, Fhm = copy.deepcopy(m), copy.deepcopy(mh)
    lb = attack.pgd_sup_error(Fm, Fhm, (1, 4, 4), 256, 150, 0).value
    assert c.eps >= lb * (1 - 1e-9), (c.eps, lb)
