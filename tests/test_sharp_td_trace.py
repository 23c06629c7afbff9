"""S9.13 (THEORY §9.13): exact Schatten moments E tr((DD^T)^p), p = 2, 3, of D = prod W - prod What for linear dense
networks, and their Markov thresholds. Exactness against sampling on tiny chains; coverage: T networks drawn from the
law, pruned by each rule the statement covers, exact error (spectral norm of D) against the bound, refuted when the
one-sided Clopper-Pearson lower limit of the violation rate exceeds delta (as in tests/test_sharp_second_moment.py);
apriori_bound takes and names it; rules it does not cover are refused (fail closed)."""
from __future__ import annotations

import numpy as np
import pytest

from probprune.core.errors import ProbPruneError
from probprune.mc.stats import cp_lower
from probprune.net.templates import fcn_spec
from probprune.theory import sharp, trace_moments as tm
from probprune.theory.apriori import apriori_bound
from sharp_sampling import dense_product_difference as _dense_D

ALPHA = 0.001


@pytest.mark.parametrize("law", ["uniform", "gaussian"])
@pytest.mark.parametrize("method", ["magnitude", "random", "random_rescaled"])
def test_trace_moments_exact_against_sampling(method, law):
    spec, D = _dense_D([3, 4, 2, 3], method, law, 0.4, 100_000, [31, len(method), law == "gaussian"])
    G = D @ D.transpose(0, 2, 1)
    emp = {2: np.einsum("tab,tba->t", G, G), 3: np.einsum("tab,tbc,tca->t", G, G, G)}
    _, vals = tm.trace_moment_bound(spec.widths, [L.half_width for L in spec.layers], np.full(3, 0.4), 0.05,
                                    method, law)
    for p in (2, 3):
        assert abs(emp[p].mean() - float(vals[p])) <= 5 * emp[p].std() / np.sqrt(emp[p].size), (p, emp[p].mean(),
                                                                                                  vals[p])


def test_p2_equals_the_s912_state_contracted_on_c():
    lm = [tm.entry_even_moments("magnitude", "uniform", 0.3, 0.2, 2) for _ in range(3)]
    assert tm.trace_moment([5, 4, 6, 3], lm, 2) == pytest.approx(sharp.trace_fourth_moment([5, 4, 6, 3], lm),
                                                                 rel=1e-12)
    q = np.array([[0.01] * 3, [0.3] * 3])  # batch axis: the same as one call per row
    lmb = [tm.entry_even_moments("random", "gaussian", 0.2, q[:, k], 3) for k in range(3)]
    got = tm.trace_moment([5, 4, 6, 3], lmb, 3)
    for i in range(2):
        one = [tm.entry_even_moments("random", "gaussian", 0.2, q[i, k], 3) for k in range(3)]
        assert got[i] == pytest.approx(tm.trace_moment([5, 4, 6, 3], one, 3), rel=1e-12)


@pytest.mark.parametrize("widths,method,q", [([32, 32, 32, 32], "magnitude", 0.01), ([32, 32, 32], "random", 0.03),
                                             ([48, 48, 48], "random", 0.3), ([24, 40, 16], "magnitude", 0.1),
                                             ([32, 32, 32], "random_rescaled", 0.1)])
def test_trace_moment_coverage(widths, method, q):
    T = 1500
    spec, D = _dense_D(widths, method, "uniform", q, T, [32, len(widths), int(q * 100)])
    err = np.linalg.norm(D, 2, axis=(1, 2))
    for delta in (0.05, 0.2, 0.5):
        x, _ = tm.trace_moment_bound(spec.widths, [L.half_width for L in spec.layers], np.full(spec.depth, q),
                                     delta, method, "uniform")
        assert cp_lower(int(np.sum(err > float(x))), T, ALPHA) <= delta, f"{widths} {method} q={q} delta={delta}"
        b = apriori_bound(spec, q, delta, method)
        assert b.eps <= float(x) * (1 + 1e-12)
        assert cp_lower(int(np.sum(err > b.eps)), T, ALPHA) <= delta


def test_trace_moment_taken_and_named_on_wide_families():
    spec = fcn_spec([128] * 4, "identity")
    for method in ("magnitude", "random", "random_rescaled"):
        b = apriori_bound(spec, 0.03, 0.05, method)
        assert b.eps_source == "trace-moment" and "§9.13" in b.as_dict()["eps_statement"], method
    b = apriori_bound(spec, 0.03, 0.05, "magnitude", statement="bernstein")
    assert b.eps_source != "trace-moment"  # the old statement alone


def test_trace_moment_refuses_what_it_does_not_cover():
    with pytest.raises(ProbPruneError):
        tm.trace_moment_bound([4, 4, 4], [1.0, 1.0], np.full(2, 0.1), 0.05, "magnitude_exact", "uniform")
    with pytest.raises(ProbPruneError):
        tm.trace_moment([4, 4], [tm.entry_even_moments("random", "uniform", 1.0, 0.1, 4)], 4)
    with pytest.raises(ProbPruneError):
        tm.trace_moment([4, 4], [tm.entry_even_moments("random", "uniform", 1.0, 0.1, 2)], 3)  # moments too short
    with pytest.raises(ProbPruneError):
        tm.trace_moment_bound([4, 4, 4], [1.0, 1.0], np.full(3, 0.1), 0.05, "random", "uniform")  # wrong q length
    with pytest.raises(ProbPruneError):
        tm.entry_even_moments("random", "laplace", 1.0, 0.1, 2)
