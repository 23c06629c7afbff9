"""The compiled closest-pair kernel of the MITM subset-sum solver returns exactly the torch path's arrays (errors,
subset indices; ties included), on sorted (>= 32 targets) and unsorted half sums, and through ``solve``."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.subsetsum import solver as S

pytest.importorskip("numba")


def _both(C, Z):
    n1 = C.shape[1] // 2
    A = S.half_sums(C[:, :n1])
    Bs, Bo = S._sorted_b(S.half_sums(C[:, n1:]))
    return S._closest_rows(A, Bs, Bo, Z), S._closest_rows_torch(A, Bs, Bo, Z)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), R=st.integers(1, 4), n=st.integers(1, 14), m=st.sampled_from([1, 3, 31, 32, 40]),
       dup=st.booleans())
def test_kernel_equals_torch_path(seed, R, n, m, dup):
    rng = np.random.default_rng(seed)
    C = rng.uniform(-0.49, 0.65, (R, n))
    if dup:  # exact ties: repeated and zero coefficients, targets on achievable sums
        C = np.round(C * 4) / 4
    Z = rng.uniform(-0.5, 0.7, (R, m))
    if dup:
        Z = np.round(Z * 4) / 4
    (e1, a1, b1), (e2, a2, b2) = _both(C, Z)
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(b1, b2)


@pytest.mark.parametrize("mode", ["closest", "sparsest"])
def test_solve_same_outputs_with_and_without_kernel(mode, monkeypatch):
    rng = np.random.default_rng(1)
    C = rng.uniform(-0.49, 0.65, (6, 15))
    Z = rng.uniform(-0.49, 0.65, (6, 33))
    a = S.solve(C, Z, eps=0.01, mode=mode, on_uncoverable="report")
    monkeypatch.setattr(S, "_KERNEL", [None])
    b = S.solve(C, Z, eps=0.01, mode=mode, on_uncoverable="report")
    for f in ("subset", "achieved", "error", "success", "n_terms"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
