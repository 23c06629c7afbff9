"""Issue 19 item 5 (regression): hypothesis-generated small CNNs with max pooling (one or two conv/pool blocks,
several pool geometries, with and without bias, balls at the origin and around a data-like centre). Every tight
certificate, through the dense and through the sparse-operator back-substitution (§12.9), is >= a strong attack
(many-restart PGD, the package's one attack)."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.certificates import propagate as P
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.tight import certify_chains
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch

POOLS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1)]


def _cnn(seed, hw, ch, pool, bias, two_blocks, scale):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, ch, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(**pool)]
    if two_blocks:
        layers += [nn.Conv2d(ch, ch, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
    body = nn.Sequential(*layers, nn.Flatten()).double()
    with torch.no_grad():
        n = body(torch.zeros(1, 1, hw, hw, dtype=torch.float64)).shape[1]
        m = nn.Sequential(*layers, nn.Flatten(), nn.Linear(n, 3, bias=bias)).double().eval()
        for p in m.parameters():
            p.mul_(scale)
    return m


def _check(seed, hw, ch, pool, bias, two, keep, centred, scale, restarts, steps, methods):
    m = _cnn(seed, hw, ch, pool, bias, two, scale)
    shape = (1, hw, hw)
    g = from_torch(m, shape)
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    F, Fh = lower_graph_pair(g, gh)
    c = rng.random(shape) if centred else None
    radius = 0.5 if centred else 1.0
    att = pgd_sup_error(g.forward, gh.forward, shape, restarts, steps, seed, center=c, radius=radius).value
    for sparse in (False, True):
        with mock.patch.object(P, "SPARSE_MIN_SIZE", 0 if sparse else P.SPARSE_MIN_SIZE):
            for meth in methods:
                if centred and meth in ("composed", "pairs"):
                    continue  # origin-centred ball only
                eps = certify_chains(F, Fh, meth, radius, None if c is None else c.reshape(-1)).eps
                assert eps >= att * (1 - 1e-9), (meth, sparse, eps, att)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hw=st.integers(4, 6), ch=st.integers(1, 3), pool=st.sampled_from(POOLS),
       bias=st.booleans(), keep=st.floats(0.3, 0.9), centred=st.booleans(), scale=st.sampled_from([0.5, 1.0, 3.0]))
def test_cnn_maxpool_certificates_dominate_pgd(seed, hw, ch, pool, bias, keep, centred, scale):
    _check(seed, hw, ch, pool, bias, False, keep, centred, scale, 128, 60, ("composed", "propagate", "mixed"))


@pytest.mark.slow
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hw=st.integers(4, 8), ch=st.integers(1, 4), pool=st.sampled_from(POOLS),
       bias=st.booleans(), keep=st.floats(0.2, 0.95), centred=st.booleans(), scale=st.sampled_from([0.5, 1.0, 3.0]))
def test_two_block_cnn_maxpool_every_method_dominates_pgd(seed, hw, ch, pool, bias, keep, centred, scale):
    _check(seed, hw, ch, pool, bias, True, keep, centred, scale, 256, 100,
           ("auto", "composed", "pairs", "propagate", "mixed"))
