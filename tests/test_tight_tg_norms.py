"""THEORY §12.11, Statement 12.50 (issue 19, helper TG): certified stage norms of sparse stage matrices.

(1) the block decomposition and the sparse Gram + Cholesky path against the exact SVD norm (>= it, within 1e-7);
(2) the Cholesky path is really taken on a connected sparse matrix, and a guess below lambda_max falls back to the
dense bound; (3) the dense path (small or dense matrices) is bit-identical to spectral_norm_upper; (4) on
hypothesis-generated max-pool CNNs with >= 16x16 inputs (stage matrices on the sparse paths) the composed and mixed
certificates are >= a many-restart PGD attack and the composed bound is within 1e-7 of the dense-norm one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import probprune.certificates.compose as C
from probprune.certificates.lower import lower_graph_pair
from probprune.certificates.tight import certify_chains
from probprune.measure.attack import pgd_sup_error
from probprune.net.trace import from_torch
from probprune.theory.norms import spectral_norm_upper
from proofs_check.checks_tg_stage_norms import tg_stage_norm_cases


@pytest.mark.parametrize("seed", [1, 2])
def test_sparse_stage_norms_bound_the_exact_norm(seed):
    for name, M in tg_stage_norm_cases(seed):
        ex = float(np.linalg.norm(M, 2))
        ub = C.stage_norm_upper(M)
        assert ex <= ub <= ex * (1 + 1e-7), (name, ub, ex)


def test_connected_sparse_block_uses_the_cholesky_certificate(monkeypatch):
    M = dict(tg_stage_norm_cases(3))["banded"]
    ex = float(np.linalg.norm(M, 2))

    def no_dense(*a, **k):
        raise AssertionError("dense fallback used")

    monkeypatch.setattr(C, "spectral_norm_upper", no_dense)
    assert ex <= C.stage_norm_upper(M) <= ex * (1 + 1e-7)


def test_low_guess_falls_back_to_the_dense_bound(monkeypatch):
    import scipy.sparse.linalg as sla

    M = dict(tg_stage_norm_cases(4))["banded"]
    monkeypatch.setattr(sla, "eigsh", lambda *a, **k: np.array([1e-3]))  # far below lambda_max: Cholesky fails
    assert C.stage_norm_upper(M) == spectral_norm_upper(M)


def test_dense_and_small_paths_are_unchanged():
    rng = np.random.default_rng(7)
    for M in (rng.normal(size=(30, 700)), rng.normal(size=(600, 600)), np.eye(300), rng.normal(size=(1, 5))):
        assert C.stage_norm_upper(M) == spectral_norm_upper(M)
    assert C.stage_norm_upper(np.zeros((600, 600))) == 0.0
    huge = np.eye(600) * 2.0 ** 500  # outside [2^-400, 2^400]: the dense (scaled) bound
    assert C.stage_norm_upper(huge) == spectral_norm_upper(huge)


def _cnn(seed, ch, two, bias):
    torch.manual_seed(seed)
    layers = [nn.Conv2d(1, ch, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]
    n = ch * 8 * 8
    if two:
        layers += [nn.Conv2d(ch, ch, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2)]
        n = ch * 4 * 4
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(n, 3, bias=bias)).double().eval()


@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), ch=st.integers(3, 4), two=st.booleans(), bias=st.booleans(),
       keep=st.floats(0.3, 0.9))
def test_maxpool_cnn_certificates_above_attack_with_sparse_norms(seed, ch, two, bias, keep):
    m = _cnn(seed, ch, two, bias)
    shape = (1, 16, 16)
    g = from_torch(m, shape)
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < keep for k, w in g.weights.items()})
    F, Fh = lower_graph_pair(g, gh)
    assert max(min(s.M.shape) for s in F.stages) > C.SPARSE_NORM_MIN_DIM  # the sparse paths are exercised
    att = pgd_sup_error(g.forward, gh.forward, shape, 128, 60, seed).value
    with C.bound_cache(False):
        c = certify_chains(F, Fh, "auto", 1.0, time_limit=None)
        old = C.SPARSE_NORM_MIN_DIM
        try:
            C.SPARSE_NORM_MIN_DIM = 10 ** 9  # every norm by the dense 11.1 bound
            d = certify_chains(F, Fh, "composed", 1.0)
        finally:
            C.SPARSE_NORM_MIN_DIM = old
    for k, v in c.components.items():
        assert v >= att * (1 - 1e-9), (k, v, att)
    for k in ("composed_fwd", "composed_bwd"):
        assert abs(c.components[k] - d.components[k]) <= 1e-7 * d.components[k], (k, c.components[k], d.components[k])


def test_one_maxpool_cnn_above_attack_fast():
    """default-run version of the test above: one fixed 16x16 max-pool CNN, composed and mixed_none."""
    m = _cnn(11, 4, False, True)
    shape = (1, 16, 16)
    g = from_torch(m, shape)
    rng = np.random.default_rng(11)
    gh = g.with_masks({k: rng.random(w.shape) < 0.6 for k, w in g.weights.items()})
    F, Fh = lower_graph_pair(g, gh)
    att = pgd_sup_error(g.forward, gh.forward, shape, 64, 60, 11).value
    with C.bound_cache(False):
        c = certify_chains(F, Fh, "composed", 1.0)
    for v in c.components.values():
        assert v >= att * (1 - 1e-9)


def test_sparse_fingerprint_is_a_content_key():
    rng = np.random.default_rng(9)
    M = np.zeros((1100, 1000))
    idx = rng.choice(M.size, 5000, replace=False)
    M.flat[idx] = rng.normal(size=idx.size)
    assert M.size >= C.FINGERPRINT_SPARSE_MIN
    assert C.fingerprint(M) == C.fingerprint(M.copy()) == C.fingerprint(np.asfortranarray(M))
    M2 = M.copy()
    M2.flat[idx[7]] *= 1 + 2 ** -50
    assert C.fingerprint(M2) != C.fingerprint(M)
    M3 = M.copy()
    M3.flat[idx[7]] = 0.0
    M3.flat[(idx[7] + 1) % M.size] = M.flat[idx[7]] if M.flat[(idx[7] + 1) % M.size] == 0 else 0.0
    assert C.fingerprint(M3) != C.fingerprint(M)  # a value moved to another position
    D = rng.normal(size=M.shape)  # dense: the byte hash, another message length
    assert C.fingerprint(D) != C.fingerprint(M)
