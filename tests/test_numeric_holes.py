"""Issue 19, numeric holes U1-U4 and the LinAlgError: every certificate path scales its arithmetic or refuses.

Ground truths are independent of the package: the exact sup error of bias-free linear networks from products in
exact rational arithmetic (fractions), and many-restart PGD for ReLU networks."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from _graph_helpers import pgd_error
from proofs_check.ground_truth import exact_linear_error
from probprune.certificates.lemma import certify_graph, certify_parsed
from probprune.certificates.lower import lower_graph_pair, pruned_copy
from probprune.certificates.tight import certify_chains
from probprune.core.errors import ProbPruneError
from probprune.net.trace import from_torch

TIGHT = ("auto", "composed", "pairs", "mixed", "propagate")


def _lin_net(scales, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for s in scales:
        lay = nn.Linear(n, n, bias=False).double()
        with torch.no_grad():
            lay.weight.copy_(torch.randn(n, n, generator=g, dtype=torch.float64) * s)
        layers.append(lay)
    return nn.Sequential(*layers)


@pytest.mark.parametrize("scales,seed", [((1e-170, 1e-170, 1e170, 1e170), 0), ((1e-160, 1e160, 1e-160, 1e160), 1),
                                         ((1e160, 1e160, 1e-160, 1e-160), 2), ((1e-160, 1e-160, 1e160, 1e160), 3)])
def test_u1_underflow_in_composition(scales, seed):
    m = _lin_net(scales, seed=seed)
    g = from_torch(m, (4,))
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) >= 0.5 for k, w in g.weights.items()})
    exact = exact_linear_error(g, gh)
    assert exact > 1.0
    F, Fh = lower_graph_pair(g, gh)
    for meth in TIGHT:
        eps = certify_chains(F, Fh, meth).eps
        assert eps >= exact * (1 - 1e-12), (meth, eps, exact)
        assert eps <= exact * 1.01  # linear net: the composed certificate is exact up to allowances


def test_u2_error_below_the_networks_resolution_is_refused_by_the_tight_path():
    m = _lin_net((1e43, 1e43, 1e43), n=2)
    with torch.no_grad():
        m[0].weight[0, 0] = 1e-127
    g = from_torch(m, (2,))
    gh = g.with_masks({"0.weight": np.array([[0, 1], [1, 1]])})
    exact = exact_linear_error(g, gh)
    assert 0 < exact < 1e-40
    with pytest.raises(ProbPruneError, match="underflow"):
        lower_graph_pair(g, gh)
    assert certify_graph(g, gh).eps >= exact  # Cert-D (its own scaling) still certifies


def test_u2_small_error_with_exact_difference_composition():
    """The error is composed from the weight differences, not as M - Mhat of two rounded products: an error of
    1e-12 of the network's scale survives (the subtraction of the products would lose it entirely)."""
    m = _lin_net((1e3, 1e3, 1e3), n=3, seed=5)
    with torch.no_grad():
        m[0].weight[0, 0] = 1e-9
    g = from_torch(m, (3,))
    mask = np.ones((3, 3))
    mask[0, 0] = 0
    gh = g.with_masks({"0.weight": mask})
    exact = exact_linear_error(g, gh)
    F, Fh = lower_graph_pair(g, gh)
    for meth in TIGHT:
        eps = certify_chains(F, Fh, meth).eps
        assert exact * (1 - 1e-9) <= eps <= exact * 1.01, (meth, eps, exact)


def _bn_net():
    torch.manual_seed(4)
    m = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double().eval()
    with torch.no_grad():
        m[1].running_mean.normal_()
        m[1].running_var.uniform_(0.5, 2)
        m[1].weight.normal_()
        m[1].bias.uniform_(0.5, 1.0)  # channels on near the origin: a changed gamma shows
    return m


@pytest.mark.parametrize("what", ["bias", "gamma", "beta", "running_mean", "act"])
def test_u3_every_parameter_buffer_and_op_is_compared(what):
    m = _bn_net()
    g = from_torch(m, (3,))
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        if what == "bias":
            m2[0].bias.zero_()
        elif what == "gamma":
            m2[1].weight[:2] = 0
        elif what == "beta":
            m2[1].bias[0] += 1.0
        elif what == "running_mean":
            m2[1].running_mean[1] += 1.0
    if what == "act":
        m2[2] = nn.Tanh()
    gh = from_torch(m2, (3,))
    attack = pgd_error(g, gh, restarts=64, iters=60)
    assert attack > 1e-3
    with pytest.raises(ProbPruneError, match="differ"):  # Cert-D assumes only the weights change: named refusal
        certify_graph(g, gh)
    if what == "act":
        with pytest.raises(ProbPruneError, match="act"):
            lower_graph_pair(g, gh)
        return
    F, Fh = lower_graph_pair(g, gh)  # the tight path composes parameter differences exactly
    for meth in TIGHT:
        assert certify_chains(F, Fh, meth).eps >= attack * (1 - 1e-9), meth


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 4, bias=False)
        self.fc2 = nn.Linear(4, 4, bias=False)
        self.fc2.weight = self.fc1.weight

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_u4_tied_weights_are_masked_by_storage():
    torch.manual_seed(3)
    m = _Tied().double()
    g = from_torch(m, (4,)).with_ties_from(m)
    assert [nd.op.storage for nd in g.weight_nodes] == ["", "fc1.weight"]
    mask = {"fc1.weight": np.random.default_rng(0).random((4, 4)) >= 0.5}
    gh = g.with_masks(mask)
    ref = from_torch(pruned_copy(m, mask).double(), (4,))  # torch's own semantics: one tensor, pruned once
    x = torch.randn(7, 4, dtype=torch.float64)
    assert torch.allclose(gh.forward(x), ref.forward(x))
    attack = pgd_error(g, gh, restarts=64, iters=60)
    assert certify_parsed(g, mask).eps >= attack
    F, Fh = lower_graph_pair(g, gh)
    for meth in TIGHT:
        assert certify_chains(F, Fh, meth).eps >= attack * (1 - 1e-9), meth
    with pytest.raises(ProbPruneError, match="share one tensor"):
        g.with_masks({"fc1.weight": mask["fc1.weight"], "fc2.weight": ~mask["fc1.weight"]})


def test_no_linalg_error_reaches_the_user_at_extreme_scales():
    g0 = torch.Generator().manual_seed(1)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for lay, s in zip([m[0], m[2], m[4]], [1e150, 1e-150, 1e150]):
            lay.weight.copy_(torch.randn(lay.weight.shape, generator=g0, dtype=torch.float64) * s)
            lay.bias.copy_(torch.randn(lay.bias.shape, generator=g0, dtype=torch.float64) * s)
    g = from_torch(m, (4,))
    rng = np.random.default_rng(0)
    gh = g.with_masks({k: rng.random(w.shape) >= 0.5 for k, w in g.weights.items()})
    attack = pgd_error(g, gh, restarts=64, iters=60)
    F, Fh = lower_graph_pair(g, gh)
    for meth in TIGHT:
        assert certify_chains(F, Fh, meth).eps >= attack * (1 - 1e-9), meth


def test_linalg_failure_in_a_component_is_skipped_under_auto(monkeypatch):
    from probprune.certificates import tight

    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    g = from_torch(m, (3,))
    gh = g.with_masks({"0.weight": np.random.default_rng(0).random((4, 3)) >= 0.5})
    F, Fh = lower_graph_pair(g, gh)

    def boom(*a, **k):
        raise np.linalg.LinAlgError("Eigenvalues did not converge")

    monkeypatch.setattr(tight, "sdp_certificate", boom)
    c = certify_chains(F, Fh, "auto")
    assert "sdp" not in c.components and any(s.get("stage") == "skipped components" for s in c.stages)
    with pytest.raises(ProbPruneError, match="failed numerically"):
        certify_chains(F, Fh, "sdp")


def test_time_limit_keeps_a_certificate():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    g = from_torch(m, (3,))
    gh = g.with_masks({"0.weight": np.random.default_rng(0).random((4, 3)) >= 0.5})
    F, Fh = lower_graph_pair(g, gh)
    c = certify_chains(F, Fh, "auto", time_limit=1e-9)
    assert math.isfinite(c.eps) and "mixed" not in c.components
    with pytest.raises(ProbPruneError, match="time_limit"):
        certify_chains(F, Fh, "auto", time_limit=-1)


def test_deadline_stops_the_long_searches():
    from probprune.certificates.compose import TimeLimitReached, deadline, lemma_a_pairs

    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    g = from_torch(m, (3,))
    gh = g.with_masks({"0.weight": np.random.default_rng(0).random((4, 3)) >= 0.5})
    F, Fh = lower_graph_pair(g, gh)
    with pytest.raises(TimeLimitReached):
        with deadline(0.0):  # long past
            lemma_a_pairs(F, Fh, 1.0)
    assert math.isfinite(lemma_a_pairs(F, Fh, 1.0))  # the deadline is scoped


def test_region_bounds_are_unscaled():
    from probprune.certificates.stability import region_sup_error

    g0 = torch.Generator().manual_seed(2)
    m = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for lay, s in zip([m[0], m[2]], [1e-100, 1e-100]):
            lay.weight.copy_(torch.randn(lay.weight.shape, generator=g0, dtype=torch.float64) * s)
            lay.bias.copy_(torch.randn(lay.bias.shape, generator=g0, dtype=torch.float64) * s * s)
    g = from_torch(m, (4,))
    gh = g.with_masks({"0.weight": np.random.default_rng(1).random((6, 4)) >= 0.5})
    F, Fh = lower_graph_pair(g, gh)
    assert F.scale_exp != 0
    c = np.random.default_rng(3).normal(size=4)
    ub = region_sup_error(F, Fh, c[None, :], 0.5)[0]
    # sampled lower bound (PGD's squared objective would underflow at this scale)
    rng = np.random.default_rng(4)
    u = rng.normal(size=(4000, 4))
    u *= 0.5 * rng.random((4000, 1)) ** 0.25 / np.linalg.norm(u, axis=1, keepdims=True)
    x = torch.as_tensor(c + u)
    att = float(((g.forward(x) - gh.forward(x)) * 2.0 ** 600).norm(dim=1).max()) * 2.0 ** -600  # no underflow in the norm
    assert 1e-250 < att <= ub <= 100 * att
