"""THEORY §12.11, Statement 12.52 (issue 19, helper TG): a convolution applied to the identity rows of a fresh state
block is built by placing the kernel's entries (lower._Conv2dLin.on_identity); the lowered chains are entry by entry
equal to those of the convolution path (USE_CONV_ON_IDENTITY False), on hypothesis-generated CNNs with strides,
padding, dilation, rectangular kernels, max pooling and residual additions, and they reproduce the torch forward."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probprune.certificates.lower as LW
from probprune.certificates.lower import lower_graph_pair
from probprune.net.trace import from_torch


def _lower_both(g, gh):
    old = LW.USE_CONV_ON_IDENTITY
    try:
        LW.USE_CONV_ON_IDENTITY = False
        a = lower_graph_pair(g, gh)
        LW.USE_CONV_ON_IDENTITY = True
        b = lower_graph_pair(g, gh)
    finally:
        LW.USE_CONV_ON_IDENTITY = old
    return a, b


def _same(a, b):
    for x, y in zip(a[0].stages + a[1].stages, b[0].stages + b[1].stages):
        assert x.M.shape == y.M.shape and np.array_equal(x.M, y.M), x.name
        assert np.array_equal(x.b, y.b), x.name
        if x.dM is not None:
            assert np.array_equal(x.dM, y.dM) and np.array_equal(x.db, y.db), x.name


class _Res(nn.Module):
    def __init__(self, c, k, s, p, d, pool):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.head = nn.Sequential(nn.Conv2d(c, c + 1, k, stride=s, padding=p, dilation=d), nn.ReLU(),
                                  nn.MaxPool2d(2, ceil_mode=True) if pool else nn.Identity(), nn.Flatten(),
                                  nn.LazyLinear(3))

    def forward(self, x):
        h = self.stem(x)
        return self.head(torch.relu(h + self.body(h)))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), c=st.integers(1, 3), kh=st.integers(1, 4), kw=st.integers(1, 4),
       s=st.integers(1, 2), d=st.integers(1, 2), pool=st.booleans(), res=st.booleans(), bias=st.booleans())
def test_conv_on_identity_equals_the_convolution(seed, c, kh, kw, s, d, pool, res, bias):
    torch.manual_seed(seed)
    hw = 9
    p = (min(kh // 2, 1), min(kw // 2, 1))
    if res:
        m = _Res(c, (kh, kw), s, p, d, pool)
    else:
        m = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=bias), nn.ReLU(),
                          nn.Conv2d(c, c + 1, (kh, kw), stride=s, padding=p, dilation=d, bias=bias), nn.ReLU(),
                          nn.MaxPool2d(2, ceil_mode=True) if pool else nn.Identity(), nn.Flatten(), nn.LazyLinear(3))
    m(torch.zeros(1, 1, hw, hw))
    m = m.double().eval()
    g = from_torch(m, (1, hw, hw))
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < 0.6 for k, w in g.weights.items()})
    a, b = _lower_both(g, gh)
    _same(a, b)
    F, Fh = b
    x = rng.normal(size=(5, F.n_in))
    for chain, net in ((F, g), (Fh, gh)):
        s_ = x
        for st_ in chain.stages:
            z = s_ @ st_.M.T + st_.b
            s_ = np.where(st_.relu, np.maximum(z, 0.0), z) if st_ is not chain.stages[-1] else z
        with torch.no_grad():
            ref = net.forward(torch.as_tensor(x.reshape(5, 1, hw, hw))).numpy().reshape(5, -1)
        assert np.allclose(s_, ref, rtol=1e-10, atol=1e-10)
