"""Tight certificates (THEORY §12): every bound >= an independent ground truth (exact sup for linear nets, a
many-restart PGD attack on the torch modules for ReLU nets), refusal where assumptions fail."""
import copy
import itertools

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.measure import attack
from probprune.core.errors import ProbPruneError, UnsupportedLayerError
from probprune.net.zoo import mlp
from probprune.certificates.tight import certify_chains, certify_tight
from probprune.certificates.compose import pair_bound
from probprune.certificates.lower import lower_pair, lower_torch, pruned_copy
from probprune.certificates.propagate import trs_dual_bound
from probprune.certificates.stability import certified_stability, region_sup_error


@pytest.fixture(autouse=True)
def _scalar_multipliers(monkeypatch, request):
    """Scalar S-procedure multipliers in the heavier tests (speed); the diagonal ones are tested on their own."""
    if "diag" not in request.node.name:
        monkeypatch.setattr("probprune.certificates.compose.DIAG_STEPS", 0)


def pgd_sup_error(model, pruned, center, radius=1.0, norm="l2", restarts=64, iters=60, seed=0) -> float:
    """Ground truth from below: the package's one PGD (:func:`probprune.measure.attack.pgd_sup_error`) on float64 copies of
    the torch modules, over {x : ||x - center|| <= radius} in ``norm``."""
    F, Fh = (copy.deepcopy(x).double().eval() for x in (model, pruned))
    c = np.asarray(center, float)
    return attack.pgd_sup_error(F, Fh, c.shape, restarts, iters, seed, center=c, radius=radius, norm=norm).value


def _rand_masks(model, rng, keep):
    return {k: rng.random(tuple(p.shape)) < keep for k, p in model.named_parameters() if k.endswith("weight")}


def _exact_linear_sup(model, pruned, shape):
    """Independent ground truth for bias-free linear nets: ||J_F - J_Fhat||_2 via autograd Jacobians."""
    x = torch.zeros(1, *shape, dtype=torch.float64)
    F, Fh = model.double(), pruned.double()
    J = torch.autograd.functional.jacobian(lambda z: F(z) - Fh(z), x).reshape(-1, int(np.prod(shape)))
    return float(torch.linalg.matrix_norm(J, 2))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(2, 9), min_size=2, max_size=4), seed=st.integers(0, 10_000),
       keep=st.floats(0.2, 0.9))
def test_linear_nets_exact_sup(widths, seed, keep):
    torch.manual_seed(seed)
    mods = [nn.Linear(a, b, bias=False) for a, b in zip(widths[:-1], widths[1:])]
    m = nn.Sequential(*mods)
    mh = pruned_copy(m, _rand_masks(m, np.random.default_rng(seed), keep))
    exact = _exact_linear_sup(m, mh, (widths[0],))
    c = certify_tight(m, mh, (widths[0],))
    assert "sdp" in c.components  # small: "auto" includes the SDP certificate (§12.6)
    for k in ("composed_fwd", "composed_bwd", "pairs", "mixed", "propagate", "sdp"):
        assert c.components[k] >= exact * (1 - 1e-9) - 1e-12, (k, c.components[k], exact)
    # consecutive linear maps are composed into one stage: the composed bound is the exact sup
    assert c.components["composed_fwd"] <= exact * (1 + 1e-6) + 1e-12


def test_linear_cnn_composition_exact():
    torch.manual_seed(3)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, bias=False), nn.AvgPool2d(2), nn.Flatten(),
                      nn.Linear(3 * 4 * 4, 5, bias=False))
    mh = pruned_copy(m, _rand_masks(m, np.random.default_rng(1), 0.6))
    exact = _exact_linear_sup(m, mh, (1, 8, 8))
    c = certify_tight(m, mh, (1, 8, 8), method="composed")
    assert exact * (1 - 1e-9) <= c.eps <= exact * (1 + 1e-6)
    assert c.stages[0]["composition_gain"] >= 1 - 1e-9  # product of op norms >= composed norm


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(widths=st.lists(st.integers(2, 8), min_size=3, max_size=4), seed=st.integers(0, 10_000),
       keep=st.floats(0.3, 0.9), bias=st.booleans())
def test_relu_nets_above_pgd(widths, seed, keep, bias):
    m = mlp(widths, bias=bias, seed=seed)
    mh = pruned_copy(m, _rand_masks(m, np.random.default_rng(seed), keep))
    c = certify_tight(m, mh, (widths[0],))
    lb = pgd_sup_error(m, mh, np.zeros(widths[0]), 1.0, restarts=64, iters=60, seed=seed)
    assert "sdp" in c.components
    for k in ("composed_fwd", "composed_bwd", "pairs", "mixed", "propagate", "sdp"):
        assert c.components[k] >= lb * (1 - 1e-9), (k, c.components[k], lb)
    # data-region bound around a random centre, small radius
    x0 = np.random.default_rng(seed).normal(size=(2, widths[0]))
    for norm in ("l2", "linf"):
        ub = region_sup_error(*lower_pair(m, mh, (widths[0],)), x0, 0.3, norm)
        for i in range(2):
            lbi = pgd_sup_error(m, mh, x0[i], 0.3, norm, restarts=32, iters=40, seed=seed)
            assert ub[i] >= lbi * (1 - 1e-9), (norm, ub[i], lbi)


def test_diag_chain_bound_vs_exhaustive_vertices_and_certificate():
    from probprune.certificates.compose import sproc_chain_bound

    rng = np.random.default_rng(4)
    for _ in range(3):
        A, B, C = rng.normal(size=(3, 6)), rng.normal(size=(6, 5)), rng.normal(size=(5, 3))
        vmax = max(np.linalg.norm((A * np.array(d1)) @ (B * np.array(d2)) @ C, 2)
                   for d1 in itertools.product((0.0, 1.0), repeat=6) for d2 in itertools.product((0.0, 1.0), repeat=5))
        assert vmax <= sproc_chain_bound([A, B, C], diag_steps=20) <= np.prod([np.linalg.norm(X, 2) for X in (A, B, C)])
    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    mh = pruned_copy(m, _rand_masks(m, np.random.default_rng(1), 0.6))
    c = certify_tight(m, mh, (5,))
    assert c.eps >= pgd_sup_error(m, mh, np.zeros(5), 1.0, restarts=64, iters=60)


def test_pair_bound_vs_exhaustive_vertices():
    rng = np.random.default_rng(0)
    for _ in range(5):
        A, B = rng.normal(size=(4, 8)), rng.normal(size=(8, 5))
        vmax = max(np.linalg.norm(A * np.array(d) @ B, 2) for d in itertools.product((0.0, 1.0), repeat=8))
        pb = pair_bound(A, B)
        assert vmax <= pb <= np.linalg.norm(A, 2) * np.linalg.norm(B, 2) * (1 + 1e-6)


def test_trs_dual_bound():
    rng = np.random.default_rng(1)
    for _ in range(5):
        M, g = rng.normal(size=(3, 6)), rng.normal(size=3)
        u = rng.normal(size=(20000, 6))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        sampled = np.linalg.norm(u @ M.T + g, axis=1).max()
        b = trs_dual_bound(M, g, 1.0)
        assert b >= sampled
        assert b <= np.linalg.norm(g) + np.linalg.norm(M, 2) + 1e-9  # never worse than the triangle bound
    assert abs(trs_dual_bound(M, g, 0.0) - np.linalg.norm(g)) < 1e-9 * np.linalg.norm(g) + 1e-15


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                                  nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3))
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(3 * 3 * 3, 4)

    def forward(self, x):
        h = self.stem(x)
        h = torch.relu(h + self.body(h))
        h = self.pool(h)
        return self.fc(torch.flatten(h, 1))


def _res_model(seed=0):
    torch.manual_seed(seed)
    m = _Res()
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def test_residual_bn_lowering_and_certificate():
    m = _res_model()
    C = lower_torch(m, (1, 6, 6))
    x = torch.randn(7, 1, 6, 6)
    np.testing.assert_allclose(C.forward(x.double().numpy()), m.double()(x.double()).detach().numpy(), atol=1e-10)
    m = m.float()
    mh = pruned_copy(m, _rand_masks(m, np.random.default_rng(0), 0.7))
    c = certify_tight(m, mh, (1, 6, 6))
    lb = pgd_sup_error(m, mh, np.zeros((1, 6, 6)), 1.0, restarts=64, iters=60)
    assert c.eps >= lb
    for k in ("composed_fwd", "composed_bwd", "pairs", "mixed", "propagate"):
        assert c.components[k] >= lb


def test_stability_sound_by_sampling():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3))
    mh = pruned_copy(m, _rand_masks(m, np.random.default_rng(0), 0.8))
    F, Fh = lower_pair(m, mh, (6,))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)) * 2
    s0 = certified_stability(F, Fh, X, 0.0)
    np.testing.assert_array_equal(s0.certified, np.argmax(F.forward(X), 1) == np.argmax(Fh.forward(X), 1))
    s = certified_stability(F, Fh, X, 0.1, "l2")
    assert np.all(s.certified <= s0.certified) and np.all(s.certified <= s.F_robust)
    for i in np.flatnonzero(s.certified):
        u = rng.normal(size=(500, 6))
        u *= 0.1 * rng.random((500, 1)) ** (1 / 6) / np.linalg.norm(u, axis=1, keepdims=True)
        pts = X[i] + u
        assert np.all(np.argmax(F.forward(pts), 1) == s.label[i])
        assert np.all(np.argmax(Fh.forward(pts), 1) == s.label[i])


def test_refusals():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(UnsupportedLayerError):  # max pooling with indices: refused (by the reader or the lowering)
        lower_torch(m, (1, 8, 8))
    with pytest.raises(UnsupportedLayerError, match="(?i)sigmoid"):  # named by the graph reader
        lower_torch(nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 2)), (3,))
    a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    b = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(ProbPruneError, match="structure"):
        lower_pair(a, b, (3,))
    F, Fh = lower_pair(a, pruned_copy(a, {}), (3,))
    with pytest.raises(ProbPruneError, match="origin"):
        certify_chains(F, Fh, method="composed", center=np.ones(3))
    with pytest.raises(ProbPruneError, match="method"):
        certify_chains(F, Fh, method="lipsdp")


def test_graph_lowering_matches_torch_lowering():
    from probprune.net.trace import from_torch as graph_from_torch
    from probprune.certificates.lower import lower_graph, lower_graph_pair

    m = _res_model(1).double()
    g = graph_from_torch(m, (1, 6, 6))
    Cg, Ct = lower_graph(g), lower_torch(m, (1, 6, 6))
    x = np.random.default_rng(0).normal(size=(5, 36))
    np.testing.assert_allclose(Cg.forward(x), Ct.forward(x), atol=1e-9)
    masks = {k: v for k, v in _rand_masks(m, np.random.default_rng(2), 0.6).items() if k in g.weight_names}
    F, Fh = lower_graph_pair(g, g.with_masks(masks))
    Ft, Fht = lower_pair(m, pruned_copy(m, masks), (1, 6, 6))
    np.testing.assert_allclose(F.forward(x) - Fh.forward(x), Ft.forward(x) - Fht.forward(x), atol=1e-9)
    lenet = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2))
    lenet = lenet.double()
    C = lower_graph(graph_from_torch(lenet, (1, 8, 8)))  # max pooling lowered exactly as a ReLU tree (§12.7)
    xx = torch.randn(4, 1, 8, 8, dtype=torch.float64)
    np.testing.assert_allclose(C.forward(xx.numpy()), lenet(xx).detach().numpy(), atol=1e-12)


def test_one_pgd_regions_against_exact_linear():
    """probprune.measure.attack.pgd_sup_error over a ball/box around a centre: a feasible lower bound, close to the exact sup
    for linear maps (l2 ball at 0: r ||A - B||_2; l_inf box: the max over the box's vertices, a convex function)."""
    rng = np.random.default_rng(5)
    A, B = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    D = A - B
    f, fh = (lambda x: x @ torch.from_numpy(A).T), (lambda x: x @ torch.from_numpy(B).T)
    c = rng.normal(size=5)
    r = attack.pgd_sup_error(f, fh, (5,), 16, 60, 0, radius=0.4)
    exact = 0.4 * np.linalg.norm(D, 2)
    assert exact * (1 - 1e-3) <= r.value <= exact * (1 + 1e-12) and np.linalg.norm(r.x) <= 0.4 * (1 + 1e-12)
    r = attack.pgd_sup_error(f, fh, (5,), 16, 60, 0, center=c, radius=0.3, norm="linf")
    verts = c + 0.3 * np.array(list(itertools.product((-1.0, 1.0), repeat=5)))
    exact = np.linalg.norm(verts @ D.T, axis=1).max()
    assert exact * (1 - 1e-3) <= r.value <= exact * (1 + 1e-12) and np.abs(r.x - c).max() <= 0.3 * (1 + 1e-12)
    assert abs(r.value - np.linalg.norm(D @ r.x)) <= 1e-12 * r.value  # the value is attained at the returned x
    with pytest.raises(ProbPruneError, match="homogeneous"):
        attack.pgd_sup_error(f, fh, (5,), 4, 5, 0, center=c, homogeneous=True)
    with pytest.raises(ProbPruneError, match="norm"):
        attack.pgd_sup_error(f, fh, (5,), 4, 5, 0, norm="l1")
