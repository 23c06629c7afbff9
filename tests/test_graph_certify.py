"""Cert-D on graphs is an upper bound (THEORY §8): exact errors for linear graphs (Jacobian), many-restart PGD for
ReLU graphs, every case of issue 10's Why list, and the Monte Carlo engine's certificate equals certify's."""
import copy
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from _graph_helpers import exact_linear_error, pgd_error, random_masks
from probprune.certificates.lemma import certify, certify_graph, certify_parsed, certify_random_graph
from probprune.core.errors import ProbPruneError
from probprune.net import Graph, from_torch
from probprune.net.templates import fcn_spec, sample_weights


def _seed(s):
    torch.manual_seed(s)
    np.random.seed(s)


def _cert_and_truth(model, shape, q=0.4, seed=0, linear=False, **kw):
    g = from_torch(model, shape)
    gh = g.with_masks(random_masks(g, q, seed))
    c = certify_graph(g, gh, **kw)
    truth = exact_linear_error(g, gh) if linear else pgd_error(g, gh, seed=seed)
    return c, truth


# ------------------------------------------------------------------------------------------- issue 10, Why list
def test_pool_before_activation_keeps_its_factor():
    """conv -> MaxPool2d(3, stride=1) -> ReLU: the centre of a 5x5 map is in 9 windows; pruning the 1x1 conv to zero
    gives the exact error 3 (x = e_centre). The certificate must be >= 3 (the old chain reading gave 1)."""
    m = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.MaxPool2d(3, stride=1), nn.ReLU(), nn.Flatten(),
                      nn.Linear(9, 9, bias=False))
    with torch.no_grad():
        m[0].weight.fill_(1.0)
        m[4].weight.copy_(torch.eye(9))
    g = from_torch(m, (1, 5, 5))
    gh = g.with_masks({"0.weight": np.zeros((1, 1, 1, 1))})
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[0, 0, 2, 2] = 1.0
    err_at_centre = float((g.forward(x) - gh.forward(x)).norm())
    assert err_at_centre == pytest.approx(3.0)
    c = certify_graph(g, gh)
    assert c.eps >= 3.0 and c.eps == pytest.approx(3.0, rel=1e-6)  # tight here


@pytest.mark.parametrize("pools", [
    [nn.AvgPool2d(2, stride=1), nn.AvgPool2d(2, stride=1)],
    [nn.MaxPool2d(2, stride=1), nn.AvgPool2d(3, stride=1, padding=1)],
    [nn.AvgPool2d(2, divisor_override=1)],
    [nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False), nn.MaxPool2d(2, ceil_mode=True)],
], ids=["avg-avg", "max-avg", "sum-pool", "ceil-modes"])
def test_pool_chains_are_certified_above_the_true_error(pools):
    _seed(3)
    for lin in (True, False):
        if lin and any(isinstance(p, nn.MaxPool2d) for p in pools):
            continue
        body = [nn.Conv2d(2, 3, 3, padding=1, bias=False)] + ([] if lin else [nn.ReLU()]) + pools
        m = nn.Sequential(*body, nn.Flatten(), nn.LazyLinear(4, bias=False))
        m(torch.zeros(1, 2, 8, 8))  # materialise the lazy layer
        c, truth = _cert_and_truth(m, (2, 8, 8), linear=lin)
        assert truth <= c.eps * (1 + 1e-9), (truth, c.eps)


class _Residual(nn.Module):
    def __init__(self, act=True, bias=False):
        super().__init__()
        self.f1, self.f2, self.out = nn.Linear(6, 6, bias=bias), nn.Linear(6, 6, bias=bias), nn.Linear(6, 3, bias=bias)
        self.act = act

    def forward(self, x):
        h = self.f1(x)
        h = F.relu(h) if self.act else h
        h = x + self.f2(h)  # residual x + f(x)
        h = torch.relu(h) if self.act else h
        return self.out(2.0 * h)  # constant gain


class _SeqSkip(nn.Sequential):
    """An nn.Sequential subclass whose forward adds a skip connection (registration order is NOT what runs)."""

    def forward(self, x):
        h = x
        for i, m in enumerate(self):
            h = m(h) + h if i == 1 else m(h)
        return h


def test_residual_gain_and_functional_activation_linear_exact():
    _seed(4)
    for s in range(3):
        c, truth = _cert_and_truth(_Residual(act=False), (6,), seed=s, linear=True)
        assert truth <= c.eps * (1 + 1e-9)


def test_residual_gain_functional_relu_and_sequential_subclass_vs_pgd():
    _seed(5)
    models = [(_Residual(act=True, bias=True), (6,)),
              (_SeqSkip(nn.Linear(5, 5), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 2)), (5,))]
    for m, shape in models:
        for s in range(2):
            c, lb = _cert_and_truth(m, shape, seed=s)
            assert lb <= c.eps * (1 + 1e-9), (type(m).__name__, lb, c.eps)
            assert lb > 0


def test_sequential_subclass_skip_is_read_from_forward():
    _seed(6)
    m = _SeqSkip(nn.Linear(5, 5, bias=False), nn.Linear(5, 5, bias=False), nn.Linear(5, 2, bias=False))
    g = from_torch(m, (5,))
    assert any(n.kind == "add" for n in g.nodes)
    gh = g.with_masks(random_masks(g, 0.5, 0))
    assert exact_linear_error(g, gh) <= certify_graph(g, gh).eps * (1 + 1e-9)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_tiny_and_huge_weights(scale):
    _seed(7)
    m = nn.Sequential(nn.Linear(5, 4, bias=False)).double()  # float32 cannot hold 1e+-200
    with torch.no_grad():
        m[0].weight.mul_(scale)
    c, truth = _cert_and_truth(m, (5,), q=0.5, linear=True)
    assert c.eps > 0 and np.isfinite(c.eps)
    assert truth <= c.eps * (1 + 1e-9) and c.eps <= truth * 1.001
    deep = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 3, bias=False)).double()
    with torch.no_grad():
        for p in deep.parameters():
            p.mul_(scale)
    g = from_torch(deep, (5,))
    gh = g.with_masks(random_masks(g, 0.5, 1))
    with pytest.raises(ProbPruneError, match="flows float64"):  # 1e-400 / 1e400: refused, never 0 / inf / NaN
        certify_graph(g, gh)


def test_check_reproduces_accepts_identical_nan_outputs():
    """An identical forward pass whose outputs are NaN (overflow to +-inf, then inf - inf) is not 'different': NaN
    never equals NaN under ==, so the comparison must treat NaN as equal to NaN (on some BLAS builds the 1e200 case
    above produces NaN rather than inf)."""
    from probprune.net.trace import check_reproduces

    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(1e200 * torch.eye(2, dtype=torch.float64))
        m[1].weight.copy_(1e200 * torch.ones(2, 2, dtype=torch.float64))
        m[2].weight.copy_(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    g = from_torch(m, (2,))  # traces and checks: every output is inf - inf = NaN in both
    x = torch.randn(3, 2, dtype=torch.float64)
    assert bool(torch.isnan(m(x)).all()) and bool(torch.isnan(g.forward(x)).all())
    assert check_reproduces(g, m) == 0.0
    # a pass that differs in its NaN pattern is still refused
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        m2[2].weight.copy_(torch.tensor([[1.0, 1.0]], dtype=torch.float64))  # +-inf, not NaN
    with pytest.raises(ProbPruneError, match="non-finite outputs differ"):
        check_reproduces(g, m2)


# ------------------------------------------------------------------------------------------- linear graphs: exact
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), depth=st.integers(1, 3), width=st.integers(2, 7), q=st.floats(0.05, 0.9),
       # gains whose products would underflow float64 are refused (fail closed, tested above), not certified
       gain=st.one_of(st.just(0.0), st.floats(-2, 2).filter(lambda g: abs(g) >= 1e-3)))
def test_random_linear_residual_graphs_exact(seed, depth, width, q, gain):
    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = nn.Linear(4, width, bias=False)
            self.blocks = nn.ModuleList([nn.Linear(width, width, bias=False) for _ in range(depth)])
            self.out = nn.Linear(width, 3, bias=False)

        def forward(self, x):
            h = self.inp(x)
            for i, b in enumerate(self.blocks):
                h = h + gain * b(h) if i % 2 == 0 else torch.add(h, b(h), alpha=gain)
            return self.out(h)

    c, truth = _cert_and_truth(Net(), (4,), q=q, seed=seed, linear=True)
    assert truth <= c.eps * (1 + 1e-9)


def test_linear_conv_graphs_exact_grouped_1d_bn():
    _seed(8)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv1d(2, 4, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm1d(4, affine=True)
            self.c2 = nn.Conv1d(4, 4, 3, padding="same", groups=2, bias=False)
            self.pool = nn.AvgPool1d(2)
            self.fc = nn.Linear(4 * 4, 3, bias=False)

        def forward(self, x):
            h = self.bn(self.c1(x))
            h = h + self.c2(h)
            return self.fc(self.pool(h).flatten(1))

    m = Net()
    m.bn.running_var.uniform_(0.5, 2.0)
    m.bn.weight.data.uniform_(0.5, 2.0)
    m.bn.bias.data.zero_()  # running_mean 0, beta 0: no shift, the network is linear
    for s in range(3):
        c, truth = _cert_and_truth(m, (2, 8), seed=s, linear=True)
        assert truth <= c.eps * (1 + 1e-9)


class _CatPermuteMean(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.a = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.b = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(10, 3, bias=False)
        self.act = act

    def forward(self, x):
        h = torch.cat([self.a(x), self.b(x)], dim=1)
        h = F.relu(h) if self.act else h
        h = h.permute(0, 2, 3, 1).transpose(1, 2).mean(dim=1).sum(1)
        return self.fc(torch.cat([h, 0.5 * h], 1))


class _Arith(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(5, 5, bias=False), nn.Linear(5, 3, bias=False)

    def forward(self, x):
        h = self.a(x)
        h = (2 * h - h / 4 + (-h)) * 0.5 + 1.0  # gains, a negation, a constant shift
        h = torch.sub(h, self.a(x), alpha=0.5) - 1.0
        return self.b(torch.add(h, 3.0))


def test_gains_shifts_and_subtractions():
    _seed(16)
    g = from_torch(_Arith(), (5,))
    kinds = [n.kind for n in g.nodes]
    assert kinds.count("shift") == 3 and kinds.count("gain") >= 4 and kinds.count("add") >= 2
    for s in range(3):
        gh = g.with_masks(random_masks(g, 0.4, s))
        # biases-free but shifted: F(x) - Fhat(x) is affine; its sup over the ball by PGD and the exact linear part
        assert pgd_error(g, gh, seed=s) <= certify_graph(g, gh).eps * (1 + 1e-9)


def test_concat_permute_mean_sum_graphs():
    _seed(15)
    for s in range(3):
        c, truth = _cert_and_truth(_CatPermuteMean(False), (2, 4, 4), seed=s, linear=True)
        assert truth <= c.eps * (1 + 1e-9)
    c, lb = _cert_and_truth(_CatPermuteMean(True), (2, 4, 4), seed=0)
    assert 0 < lb <= c.eps * (1 + 1e-9)


# ------------------------------------------------------------------------------------------- ReLU graphs: PGD
def _train_briefly(m, shape, steps=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn((64, *shape), generator=g)
    y = torch.randint(0, 3, (64,), generator=g)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(m(X), y).backward()
        opt.step()
    return m.eval()


def _cnn(position):
    conv = [nn.Conv2d(1, 3, 3, padding=1)]
    pool = nn.MaxPool2d(2) if position != "avg" else nn.AvgPool2d(3, stride=1, padding=1)
    if position == "before-act":
        body = conv + [pool, nn.ReLU()]
    elif position == "two":
        body = conv + [nn.ReLU(), nn.MaxPool2d(2, stride=1), nn.AvgPool2d(2)]
    else:
        body = conv + [nn.ReLU(), pool]
    m = nn.Sequential(*body, nn.Conv2d(3, 2, 3, stride=2, groups=1), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3))
    m(torch.zeros(1, 1, 8, 8))
    return m


@pytest.mark.parametrize("position", ["before-act", pytest.param("after-act", marks=pytest.mark.slow),
                                      pytest.param("two", marks=pytest.mark.slow),
                                      pytest.param("avg", marks=pytest.mark.slow)])
def test_trained_cnns_with_every_pooling_position_vs_pgd(position):
    _seed(9)
    m = _train_briefly(_cnn(position), (1, 8, 8))
    c, lb = _cert_and_truth(m, (1, 8, 8), q=0.3)
    assert lb <= c.eps * (1 + 1e-9), (position, lb, c.eps)


def test_trained_1d_cnn_with_grouped_conv_vs_pgd():
    _seed(14)
    m = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(3, stride=1, padding=1),
                      nn.Conv1d(4, 4, 3, stride=2, groups=2), nn.LeakyReLU(0.1), nn.AvgPool1d(2, ceil_mode=True),
                      nn.Flatten(), nn.Linear(12, 3))
    m = _train_briefly(m, (2, 12))
    c, lb = _cert_and_truth(m, (2, 12), q=0.3)
    assert lb <= c.eps * (1 + 1e-9) and lb > 0


def test_trained_mlp_vs_pgd():
    _seed(10)
    m = _train_briefly(nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(), nn.Linear(12, 3)),
                       (10,))
    for method_q in (0.2, 0.6):
        c, lb = _cert_and_truth(m, (10,), q=method_q)
        assert lb <= c.eps * (1 + 1e-9)


class _Block(nn.Module):
    def __init__(self, c, groups=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False, groups=groups)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return F.relu(out)


class _ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.layer1 = nn.Sequential(_Block(4), _Block(4, groups=2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer1(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def test_resnet_block_with_batchnorm_vs_pgd():
    _seed(11)
    m = _train_briefly(_ResNet(), (1, 6, 6), steps=10)
    g = from_torch(m, (1, 6, 6))
    assert sum(n.op.folded for n in g.weight_nodes) == 5 and sum(n.kind == "add" for n in g.nodes) == 2
    c, lb = _cert_and_truth(m, (1, 6, 6), q=0.3)
    assert lb <= c.eps * (1 + 1e-9) and lb > 0
    assert any("BatchNorm" in a for a in c.assumptions)


# ------------------------------------------------------------------------------------------- chain consistency
def test_chain_certificates_agree_across_entry_points():
    _seed(12)
    m = nn.Sequential(nn.Linear(7, 9), nn.ReLU(), nn.Linear(9, 4))
    g = from_torch(m)
    masks = random_masks(g, 0.4, 2)
    c_graph = certify_parsed(g, masks)
    W = [g.weights[k] for k in g.weight_names]
    Wh = [w * masks[k] for k, w in zip(g.weight_names, W)]
    from probprune.net.templates import from_torch as parsed_from_torch

    p = parsed_from_torch(m)
    c_spec = certify(p.spec, W, Wh, p.biases)
    assert c_graph.eps == pytest.approx(c_spec.eps, rel=1e-12)
    assert c_graph.fwd == pytest.approx(c_spec.fwd, rel=1e-12) and c_graph.bwd == pytest.approx(c_spec.bwd, rel=1e-12)
    assert c_graph.eps <= min(c_graph.fwd, c_graph.bwd) * (1 + 1e-15)


def test_monte_carlo_cert_column_equals_certify():
    """For the same network and mask the MC engine's certificate (measure.cert_d on its batched norms) equals
    `probprune certify`'s (certificates.certify on the graph): one Lemma A, same norm guarantee."""
    from probprune.mc import measure as M

    spec = fcn_spec([6, 10, 8, 3], "relu")
    W = [torch.from_numpy(w) for w in sample_weights(spec, 5, n=3)]
    rng = np.random.default_rng(0)
    Wh = [w * torch.from_numpy(rng.random(tuple(w.shape)) > 0.3) for w in W]
    nW, nWh = M.operator_norms_upper(spec, W).numpy(), M.operator_norms_upper(spec, Wh).numpy()
    nE = M.operator_norms_upper(spec, [a - b for a, b in zip(W, Wh)]).numpy()
    cert = M.cert_d(spec, nW, nWh, nE)
    for k in range(3):
        c = certify(spec, [w[k].numpy() for w in W], [w[k].numpy() for w in Wh])
        assert cert[k] == pytest.approx(c.eps, rel=1e-9)
        # and given the same norms the two Lemma A evaluations are identical
        assert float(M.lemma_a_batched(c.norm_W, c.norm_What, c.norm_E, [1.0, 1.0, 1.0])) == c.eps


def test_cert_r_on_graphs_holds_over_masks():
    _seed(13)
    m = _Residual(act=False)
    g = from_torch(m, (6,))
    cr = certify_random_graph(g, 0.3, 0.1)
    exceed = 0
    for s in range(30):
        gh = g.with_masks(random_masks(g, 0.3, 100 + s))
        exceed += exact_linear_error(g, gh) > cr.eps
    assert exceed == 0 and cr.kind == "Cert-R"


def test_cert_r_on_grouped_convolutions_holds_over_masks():
    _seed(17)
    m = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Conv2d(4, 4, 3, groups=2, bias=False),
                      nn.Flatten(), nn.Linear(4 * 4 * 4, 3, bias=False))
    g = from_torch(m, (2, 6, 6))
    cr = certify_random_graph(g, 0.3, 0.1)
    exceed = sum(exact_linear_error(g, g.with_masks(random_masks(g, 0.3, 200 + s))) > cr.eps for s in range(20))
    assert exceed == 0 and np.isfinite(cr.eps)
