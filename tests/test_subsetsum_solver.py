"""Exact MITM subset-sum solver (THEORY §4.6): against brute force (n <= 16) and the HiGHS MILP optimum; bad input."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probprune.core.errors import ProbPruneError
from probprune.subsetsum.milp import solve_milp
from probprune.subsetsum.solver import brute_force, half_sums, solve

FLOATS = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


def _check_consistent(res, c, z):
    """achieved = subset . c and error = |z - achieved| for every target (no stale bookkeeping)."""
    C = np.broadcast_to(np.asarray(c, float), res.subset.shape)
    ach = (res.subset * C).sum(axis=-1)
    np.testing.assert_allclose(res.achieved, ach, atol=1e-12)
    np.testing.assert_allclose(res.error, np.abs(np.asarray(z) - ach), atol=1e-12)
    np.testing.assert_array_equal(res.n_terms, res.subset.sum(axis=-1))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(c=st.lists(FLOATS, min_size=1, max_size=16), z=st.lists(st.floats(-0.6, 0.6), min_size=1, max_size=6),
       eps=st.sampled_from([0.3, 0.05, 0.01, 1e-3]))
def test_mitm_equals_brute_force(c, z, eps):
    c, z = np.array(c), np.array(z)
    for mode in ("closest", "sparsest"):
        a = solve(c, z, eps=eps, mode=mode, on_uncoverable="report")
        b = brute_force(c, z, eps=eps, mode=mode, on_uncoverable="report")
        np.testing.assert_allclose(a.error, b.error, atol=1e-12)
        np.testing.assert_array_equal(a.success, b.success)
        if mode == "sparsest":
            np.testing.assert_array_equal(a.n_terms[a.success], b.n_terms[b.success])
            assert np.all(a.error[a.success] <= eps + 1e-12)
        _check_consistent(a, c, z)


def test_mitm_batched_rows_equal_brute_force():
    rng = np.random.default_rng(3)
    C = rng.uniform(-1, 1, (9, 14))
    Z = rng.uniform(-0.5, 0.5, (9, 4))
    for mode in ("closest", "sparsest"):
        a = solve(C, Z, eps=0.01, mode=mode)
        b = brute_force(C, Z, eps=0.01, mode=mode)
        assert a.error.shape == (9, 4) and a.subset.shape == (9, 4, 14)
        np.testing.assert_allclose(a.error, b.error, atol=1e-12)
        np.testing.assert_array_equal(a.n_terms[a.success], b.n_terms[b.success])
    # one target per row given as a vector (R,)
    a = solve(C, Z[:, 0], eps=0.01, mode="closest")
    assert a.error.shape == (9,)
    np.testing.assert_allclose(a.error, brute_force(C, Z[:, 0], mode="closest").error, atol=1e-12)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n=st.integers(1, 10), eps=st.sampled_from([0.05, 0.01]))
def test_mitm_equals_milp_optimum(seed, n, eps):
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, n)
    z = rng.uniform(-0.5, 0.5, 3)
    # closest: MITM is exact, so never worse than the MILP's (feasible) answer; HiGHS is optimal up to its 1e-6 gap
    a = solve(c, z, mode="closest", on_uncoverable="report")
    m = solve_milp(c, z, mode="closest", on_uncoverable="report")
    assert np.all(a.error <= m.error + 1e-12)
    # HiGHS: absolute gap 1e-6 plus integrality tolerance 1e-6 per variable (scaled by |c|), not settable via scipy
    assert np.all(m.error - a.error <= 1e-6 * (2 + np.abs(c).sum()))
    # sparsest: same success pattern, same optimal number of terms, both within eps
    a = solve(c, z, eps=eps, mode="sparsest", on_uncoverable="report")
    m = solve_milp(c, z, eps=eps, mode="sparsest", on_uncoverable="report")
    np.testing.assert_array_equal(a.success, m.success)
    np.testing.assert_array_equal(a.n_terms[a.success], m.n_terms[m.success])
    assert np.all(a.error[a.success] <= eps + 1e-12) and np.all(m.error[m.success] <= eps + 1e-9)


def test_pensia_formulation_eps_constraint_failure_reported():
    c = np.array([0.5, 0.3])
    m = solve_milp(c, [0.65], eps=0.01, mode="closest", eps_constraint=True, on_uncoverable="report")
    a = solve(c, [0.65], eps=0.01, mode="closest", on_uncoverable="report")
    assert not m.success[0] and not a.success[0]
    assert a.error[0] == pytest.approx(0.15)  # sums 0, 0.3, 0.5, 0.8


def test_sparsest_prefers_fewest_terms_then_smallest_error():
    c = np.array([0.30, 0.2, 0.1, 0.301])
    res = solve(c, [0.3], eps=0.01, mode="sparsest")
    assert res.n_terms[0] == 1 and res.subset[0, 0]  # exact single term 0.30 beats 0.301 and 0.2 + 0.1
    res = solve(c, [0.3], eps=0.01, mode="closest")
    assert res.error[0] <= 1e-15


def test_uncoverable_targets_reported_as_failures():
    c = np.array([0.2, 0.1])
    res = solve(c, [0.5, 0.25], eps=0.01, mode="sparsest", on_uncoverable="report")
    assert list(res.success) == [False, False]
    assert res.n_failures == 2
    assert res.achieved[0] == pytest.approx(0.3)  # the closest subset is returned for a failure


def test_half_sums_bit_order():
    s = half_sums(np.array([[1.0, 10.0, 100.0]]))[0]
    assert s.tolist() == [0, 1, 10, 11, 100, 101, 110, 111]


@pytest.mark.parametrize("kw, msg", [
    (dict(coeffs=[0.1, 0.2], targets=[0.1], eps=0.0, mode="sparsest"), "eps"),
    (dict(coeffs=[0.1, 0.2], targets=[0.1], eps=-1.0, mode="closest"), "eps"),
    (dict(coeffs=[], targets=[0.1], eps=0.1, mode="closest"), "n >= 1"),
    (dict(coeffs=[0.1, 0.2], targets=[5.0], eps=0.1, mode="closest"), "coverable range"),
    (dict(coeffs=[0.1, 0.2], targets=[-0.5], eps=0.1, mode="sparsest"), "coverable range"),
    (dict(coeffs=[0.1, np.nan], targets=[0.1], eps=0.1, mode="closest"), "NaN"),
    (dict(coeffs=[0.1, 0.2], targets=[0.1], eps=None, mode="sparsest"), "needs a tolerance"),
    (dict(coeffs=[0.1, 0.2], targets=[0.1], eps=0.1, mode="fastest"), "mode"),
    (dict(coeffs=np.ones(49) * 0.01, targets=[0.1], eps=0.1, mode="closest"), "limit"),
    (dict(coeffs=np.ones((3, 4)) * 0.1, targets=np.zeros((2, 1)), eps=0.1, mode="closest"), "rows"),
])
def test_bad_input(kw, msg):
    with pytest.raises(ProbPruneError, match=msg):
        solve(**kw)
    if kw["coeffs"] is not None and np.size(kw["coeffs"]) <= 16:
        with pytest.raises(ProbPruneError):
            brute_force(**kw)


def test_milp_bad_input():
    with pytest.raises(ProbPruneError, match="eps"):
        solve_milp([0.1, 0.2], [0.1], eps=0.0, mode="sparsest")
    with pytest.raises(ProbPruneError, match="coverable"):
        solve_milp([0.1, 0.2], [3.0], eps=0.1)
