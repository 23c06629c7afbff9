"""The network graph: fx tracing, forward reproduction, BatchNorm folding, pooling facts, refusals (THEORY §8)."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from _graph_helpers import brute_force_window_count, jacobian
from probprune.core.errors import ProbPruneError, UnsupportedLayerError
from probprune.net import Graph, from_torch
from probprune.net import ops as O
from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec, from_torch as parsed_from_torch, sample_weights, to_torch


def _x(shape, n=5, seed=0):
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_sequential_chain_and_weight_names():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 3))
    g = from_torch(m)
    assert g.is_chain and g.weight_names == ("0.weight", "3.weight") and g.input_shape == (6,)
    x = _x((6,))
    assert torch.allclose(g.forward(x), m.double()(x))
    gz = g.with_masks({"0.weight": np.zeros((8, 6))})
    assert np.all(gz.weights["0.weight"] == 0) and np.all(g.weights["0.weight"] != 0)


def test_from_spec_matches_to_torch():
    spec = cnn_spec((2, 9, 9), [ConvLayer(3, 3, 1, 1, ("max", 2, 2)), ConvLayer(4, 2, 2, 0, ("avg", 2, 1))], [5, 3])
    W = sample_weights(spec, 1)
    g = Graph.from_spec(spec, W)
    x = _x((2, 9, 9))
    assert torch.allclose(g.forward(x), to_torch(spec, W)(x))


class _Functional(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(5, 7), nn.Linear(7, 7), nn.Linear(7, 2)

    def forward(self, x):
        h = F.relu(self.a(x))
        h = torch.tanh(self.b(h)) + h.relu() * 0.5
        h = F.leaky_relu(h, 0.2) - torch.sigmoid(h) / 4
        return self.c(h.view(h.size(0), -1))


def test_functional_activations_gains_and_views_are_traced():
    g = from_torch(_Functional())
    kinds = [n.kind for n in g.nodes]
    assert kinds.count("act") == 5 and kinds.count("add") == 2 and kinds.count("gain") == 2
    acts = {n.op.act.name: n.op.act.lipschitz for n in g.nodes if n.kind == "act"}
    assert acts == {"relu": 1.0, "tanh": 1.0, "leaky_relu": 1.0, "sigmoid": 0.25}
    assert not g.is_chain


def test_batchnorm_folded_into_preceding_layer_and_kept_otherwise():
    torch.manual_seed(1)

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.bn = nn.BatchNorm2d(2)
            self.bn2 = nn.BatchNorm2d(2)
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            h = self.bn2(x + self.bn(self.conv(x)))
            return self.fc(torch.flatten(h, 1))

    m = Res()
    for bn in (m.bn, m.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
    g = from_torch(m, (2, 4, 4))
    conv = next(n for n in g.weight_nodes if n.op.fqn == "conv.weight")
    assert conv.op.folded and conv.op.bn_fqn.startswith("bn")
    assert sum(isinstance(n.op, O.ChannelAffine) for n in g.nodes) == 1  # bn2 follows an addition
    x = _x((2, 4, 4))
    assert torch.allclose(g.forward(x), m.double()(x))
    # masks act on the layer's own weights; folding is re-applied
    gm = g.with_masks({"conv.weight": np.zeros((2, 2, 3, 3))})
    assert np.all(gm.node(conv.name).op.effective_weight() == 0)


POOLS = [
    nn.MaxPool2d(3, stride=1), nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), nn.MaxPool2d(2, dilation=2),
    nn.MaxPool2d((3, 2), stride=(1, 2), padding=(1, 0)),
]


@pytest.mark.parametrize("pool", POOLS, ids=repr)
def test_max_pool_window_count_is_exact(pool):
    in_shape = (1, 7, 6)
    m = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), pool)
    with torch.no_grad():
        m[0].weight.fill_(1.0)
    g = from_torch(m, in_shape)
    node = next(n for n in g.nodes if n.kind == "maxpool")
    assert node.op.c_max == brute_force_window_count(pool.double(), in_shape)
    assert node.op.P >= np.sqrt(node.op.c_max)


AVG = [
    nn.AvgPool2d(2), nn.AvgPool2d(3, stride=1), nn.AvgPool2d(2, divisor_override=1),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True), nn.AdaptiveAvgPool2d(1),
    nn.AdaptiveAvgPool2d((2, 3)),
]


@pytest.mark.parametrize("pool", AVG, ids=repr)
def test_average_pool_norm_bound_is_above_the_exact_norm(pool):
    in_shape = (1, 7, 6)
    m = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), pool)
    with torch.no_grad():
        m[0].weight.fill_(1.0)
    g = from_torch(m, in_shape)
    node = next(n for n in g.nodes if n.kind == "avgpool")
    exact = np.linalg.norm(jacobian(g), 2)
    assert exact <= node.op.P
    if isinstance(pool, nn.AvgPool2d) and pool.divisor_override == 1:
        assert node.op.P >= 2.0 - 1e-9  # a sum pool over 2x2 windows is not a mean pool


def test_one_dimensional_layers():
    m = nn.Sequential(nn.Conv1d(2, 4, 3, padding="same", groups=2), nn.ReLU(), nn.MaxPool1d(3, stride=1, padding=1),
                      nn.AvgPool1d(2), nn.Flatten(), nn.Linear(4 * 5, 2))
    g = from_torch(m, (2, 10))
    x = _x((2, 10))
    assert torch.allclose(g.forward(x), m.double()(x))
    assert g.weight_nodes[0].op.layer == "conv1d" and g.weight_nodes[0].op.groups == 2


class _Custom(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


class _UsesCustom(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        return _Custom.apply(self.l(x))


class _Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        h = self.l(x)
        if h.sum() > 0:
            return h
        return -h


class _LSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.l = nn.Linear(4, 2)

    def forward(self, x):
        return self.l(self.lstm(x)[0][:, -1])


class _Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(4, 1, batch_first=True)
        self.l = nn.Linear(4, 2)

    def forward(self, x):
        return self.l(self.att(x, x, x)[0].flatten(1))


class _Product(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        return self.l(x) * x


class _InplaceAlias(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 4)

    def forward(self, x):
        h = self.l(x)
        y = torch.relu_(h)  # mutates h: the model computes 2 relu(h), a functional reading h + relu(h)
        return h + y


class _BatchMix(nn.Module):
    def __init__(self, how):
        super().__init__()
        self.l = nn.Linear(4, 4)
        self.how = how

    def forward(self, x):
        h = self.l(x)
        if self.how == "cat":
            return torch.cat([h, h], 0)
        if self.how == "mean":
            return h.mean(0, keepdim=True)
        return h.transpose(0, 1)


@pytest.mark.parametrize("model, shape, needle", [
    (_BatchMix("cat"), (4,), "concatenation along the batch axis"),
    (_BatchMix("mean"), (4,), "reduction over the batch axis"),
    (_BatchMix("t"), (4,), "moves the batch axis"),
    (_UsesCustom(), (4,), "custom autograd Function '_Custom'"),
    (_Branchy(), (4,), "data-dependent control flow"),
    (_LSTM(), (3, 4), "'lstm' (LSTM)"),
    (_Attn(), (1, 4), "'att' (MultiheadAttention)"),
    (_Product(), (4,), "multiplication of two tensors"),
    (nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)), (4,), "'1' (GELU)"),
    (nn.Sequential(nn.Linear(4, 4), nn.Hardtanh(-2, 2), nn.Linear(4, 2)), (4,), "Hardtanh with bounds"),
    (nn.Sequential(nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular")), (1, 4, 4), "padding_mode='circular'"),
], ids=["cat-batch", "mean-batch", "transpose-batch", "autograd-fn", "control-flow", "lstm", "attention", "product", "gelu", "hardtanh", "circular"])
def test_unsupported_operations_are_refused_by_name(model, shape, needle):
    with pytest.raises(UnsupportedLayerError) as e:
        from_torch(model, shape)
    assert needle in str(e.value)


def test_autograd_function_patch_is_restored():
    assert _Custom.apply(torch.ones(2)).tolist() == [2.0, 2.0]
    with pytest.raises(UnsupportedLayerError):
        from_torch(_UsesCustom(), (4,))
    assert _Custom.apply(torch.ones(2)).tolist() == [2.0, 2.0]


def test_forward_mismatch_is_an_error_not_a_certificate():
    with pytest.raises(ProbPruneError, match="IR does not reproduce the model's forward"):
        from_torch(_InplaceAlias(), (4,))


def test_chain_view_refuses_graphs_naming_the_node():
    with pytest.raises(UnsupportedLayerError, match="not a chain"):
        parsed_from_torch(_Functional())
    m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(UnsupportedLayerError, match="activation that does not directly follow"):
        parsed_from_torch(m, (1, 6, 6))
    p = parsed_from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert p.graph is not None and p.spec.widths == (3, 4, 2)


def test_wrong_input_shape_is_a_clean_error():
    with pytest.raises(ProbPruneError, match="input_shape"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2)), (1, 5, 5))


def _lemma_a_closed_forms(nW, nWh, nE):
    """THEORY §3.1 Lemma A for a bias-free chain with L_i = 1, written out (not the package's recursion):
    A-fwd = sum_i ||E_i|| prod_{j<i} ||W_j|| prod_{j>i} ||What_j||, A-bwd = sum_i ||E_i|| prod_{j<i} ||What_j|| prod_{j>i} ||W_j||."""
    l = len(nW)
    fwd = sum(nE[i] * np.prod(nW[:i]) * np.prod(nWh[i + 1:]) for i in range(l))
    bwd = sum(nE[i] * np.prod(nWh[:i]) * np.prod(nW[i + 1:]) for i in range(l))
    return fwd, bwd


def test_graph_lemma_equals_lemma_a_written_out_and_bounds_the_exact_error():
    """The graph recursion against the closed forms of Lemma A (independent of the per-node rules it shares with
    lemma_a_general), on random norms; then on a real pruned linear chain against the exact sup error
    ||W3 W2 W1 - What3 What2 What1|| (and equal to ||E|| for one layer, where Lemma A is exact)."""
    from probprune.net import lemma_a_graph

    spec = fcn_spec([6, 9, 7, 3], "relu")
    g = Graph.from_spec(spec, sample_weights(spec, 3))
    rng = np.random.default_rng(0)
    for _ in range(5):
        norms = {L.name: tuple(rng.uniform(0.1, 2, 3)) + (0.0,) for L in spec.layers}
        nW, nWh, nE = (np.array([norms[L.name][k] for L in spec.layers]) for k in range(3))
        fwd, bwd = _lemma_a_closed_forms(nW, nWh, nE)
        r = lemma_a_graph(g, norms)
        assert r.Df == pytest.approx(fwd, rel=1e-12) and r.Db == pytest.approx(bwd, rel=1e-12)
        assert r.D <= min(fwd, bwd) * (1 + 1e-12)
    for widths in ([5, 4], [6, 9, 7, 3], [4, 8, 8, 8, 2]):
        spec = fcn_spec(widths, "identity")
        W = [np.asarray(w, float) for w in sample_weights(spec, 11)]
        Wh = [np.where(np.abs(w) < 0.4 * np.abs(w).max(), 0.0, w) for w in W]
        sv = lambda m: float(np.linalg.norm(m, 2))  # noqa: E731
        norms = {L.name: (sv(w), sv(wh), sv(w - wh), 0.0) for L, w, wh in zip(spec.layers, W, Wh)}
        A, B = W[0], Wh[0]
        for w, wh in zip(W[1:], Wh[1:]):
            A, B = w @ A, wh @ B
        exact = sv(A - B)
        D = lemma_a_graph(Graph.from_spec(spec, W), norms).D
        assert D >= exact * (1 - 1e-12)
        if len(widths) == 2:
            assert D == pytest.approx(exact, rel=1e-12)


class _FunctionalPool(nn.Module):
    def __init__(self, kind, args, kwargs):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.kind, self.args, self.kwargs = kind, args, kwargs

    def forward(self, x):
        h = self.conv(x)
        if self.kind == "max":
            return F.max_pool2d(h, *self.args, **self.kwargs)
        return F.avg_pool2d(h, *self.args, **self.kwargs)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["max", "avg"]), k=st.integers(1, 3), s=st.integers(1, 3), p=st.integers(0, 1),
       d=st.integers(1, 2), ceil=st.booleans(), positional=st.integers(0, 4))
def test_functional_pool_arguments_are_read_positionally_or_by_keyword(kind, k, s, p, d, ceil, positional):
    p = min(p, k // 2)
    names = ["kernel_size", "stride", "padding", "dilation", "ceil_mode"] if kind == "max" else [
        "kernel_size", "stride", "padding", "ceil_mode"]
    vals = {"kernel_size": k, "stride": s, "padding": p, "dilation": d, "ceil_mode": ceil}
    names = [n for n in names if n in vals]
    args = tuple(vals[n] for n in names[:positional + 1])
    kwargs = {n: vals[n] for n in names[positional + 1:]}
    m = _FunctionalPool(kind, args, kwargs)
    with torch.no_grad():
        m.conv.weight.fill_(1.0)
    in_shape = (1, 6, 5)
    try:
        m(torch.zeros(1, *in_shape))
    except RuntimeError:
        return  # torch rejects the configuration
    g = from_torch(m, in_shape)
    node = g.nodes[-1]
    if kind == "max":
        pool = lambda x: F.max_pool2d(x, *args, **kwargs)  # noqa: E731
        assert node.op.c_max == brute_force_window_count(pool, in_shape)
    else:
        assert np.linalg.norm(jacobian(g), 2) <= node.op.P


class _DefaultArgs(nn.Module):
    def __init__(self):
        super().__init__()
        self.l, self.o = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x, mask=None, scale: float = 2.0):
        h = F.relu(self.l(x))
        if mask is not None:
            h = h * mask
        return self.o(h * scale)


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.l = nn.Linear(4, 2)

    def forward(self, x, y):
        return self.l(x) + self.l(y)


def test_forward_arguments_with_defaults_are_read_as_model_x_runs_them():
    g = from_torch(_DefaultArgs(), (4,))
    assert [n.kind for n in g.nodes] == ["input", "affine", "act", "gain", "affine"]
    with pytest.raises(UnsupportedLayerError, match="more than one input"):
        from_torch(_TwoInputs(), (4,))
