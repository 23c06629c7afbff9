"""THEORY §9 through the package API: the default statement is the tightest valid one, the result says which statement
produced each term, refusals name the operation, vectorisation, continuity at p = 0+, and the CLI default."""
from __future__ import annotations

import json

import numpy as np
import pytest

from probprune.theory import sharp
from probprune.theory.apriori import apriori_bound, exact_k_bound, exact_k_magnitude_bound
from probprune.cli import main
from probprune.core.errors import ProbPruneError
from probprune.net.templates import fcn_spec


@pytest.mark.parametrize("act", ["identity", "relu"])
@pytest.mark.parametrize("law", ["uniform", "gaussian"])
@pytest.mark.parametrize("method", ["magnitude", "random", "random_rescaled"])
def test_best_is_never_looser_and_names_its_terms(act, law, method):
    spec = fcn_spec([30, 50, 20, 10], act)
    best = apriori_bound(spec, 0.1, 0.05, method, law)
    old = apriori_bound(spec, 0.1, 0.05, method, law, statement="bernstein")
    assert best.eps <= old.eps * (1 + 1e-12)
    assert np.all(best.B <= old.B * (1 + 1e-12))
    ts = best.term_statements
    assert len(ts) == 3 and all(set(t) == {"B", "eta"} and t["B"] and t["eta"] for t in ts)
    d = best.as_dict()
    assert "eps" in d and "eps_statement" in d and "B_statement" in d["layers"][0]
    json.dumps(d, default=float)


def test_gain_on_lenet_shape_and_linear_product_statement():
    spec = fcn_spec([784, 300, 100, 10], "identity")
    best = apriori_bound(spec, 0.1, 0.05, "magnitude")
    old = apriori_bound(spec, 0.1, 0.05, "magnitude", statement="bernstein")
    # S9.12 (exact Frobenius moments + Cantelli) and S9.13 (exact Schatten moments) beat S9.8 here since issue 20;
    # all are linear-net product statements
    assert best.eps_source in ("product-moment", "fourth-moment", "trace-moment") and best.eps < old.eps / 20
    assert best.eps <= apriori_bound(spec, 0.1, 0.05, "magnitude").eps
    assert np.all(best.B / old.B < 0.4)  # ||W|| bounds: S9.1 vs matrix Bernstein


def test_vectorised_matches_loop():
    spec = fcn_spec([20, 40, 10], "identity")
    Q = np.array([[0.01, 0.2], [0.0, 0.3], [0.5, 0.0]])
    vec = apriori_bound(spec, Q, 0.05, "random").eps
    loop = [apriori_bound(spec, q, 0.05, "random").eps for q in Q]
    np.testing.assert_allclose(vec, loop, rtol=1e-12)


def test_no_jump_at_zero_for_random_pruning():
    spec = fcn_spec([50, 50, 10])
    old = apriori_bound(spec, 1e-9, 0.05, "random", statement="bernstein")
    new = apriori_bound(spec, 1e-9, 0.05, "random")
    assert old.eps > 0.01  # §3.9: RR's jump eta(0+) = 2 a lam / 3
    assert new.eps == 0.0 and all(t["eta"].startswith("THEORY §9.4") for t in new.term_statements)
    assert apriori_bound(spec, 0.0, 0.05, "random").eps == 0.0


def test_gaussian_exact_k_random_has_its_own_bound():
    spec = fcn_spec([40, 60, 10])
    r = exact_k_bound(spec, 0.1, 0.05, law="gaussian")
    assert np.isfinite(r.eps) and r.eps > 0 and r.law == "gaussian" and "RR-mask" not in r.statement
    assert apriori_bound(spec, 0.1, 0.05, "random_exact", "gaussian").eps == r.eps
    with pytest.raises(ProbPruneError, match="Gaussian law has no matrix-Bernstein"):
        exact_k_bound(spec, 0.1, 0.05, law="gaussian", statement="bernstein")
    # the uniform law keeps the RR-mask candidate and is never looser than it
    u = exact_k_bound(spec, 0.1, 0.05)
    assert u.eps <= exact_k_bound(spec, 0.1, 0.05, statement="bernstein").eps * (1 + 1e-12)


def test_exact_k_magnitude_bound_and_refusals():
    spec = fcn_spec([40, 60, 10])
    r = exact_k_magnitude_bound(spec, [0.2, 0.05], 0.05)
    assert np.isfinite(r.eps) and r.eps > 0 and r.method == "magnitude_exact"
    with pytest.raises(ProbPruneError, match="not monotone"):
        apriori_bound(spec, 0.1, 0.05, "magnitude_exact", statement="bernstein")
    with pytest.raises(ProbPruneError, match="unknown statement"):
        apriori_bound(spec, 0.1, 0.05, statement="tightest")
    with pytest.raises(ProbPruneError, match="disjoint supports"):
        sharp.product_moment_bound([3, 4], [1.0], np.array([0.2]), 0.1, "random_rescaled", "uniform")


def test_moment_bound_monotone_in_delta_and_fraction():
    s2 = [sharp.dominating_variance("magnitude", "uniform", q) for q in (0.05, 0.1, 0.3)]
    x = [float(sharp.moment_bound(50, 80, s, 0.1, 0.05)[0]) for s in s2]
    assert x[0] <= x[1] <= x[2]
    xd = [float(sharp.moment_bound(50, 80, s2[1], 0.1, d)[0]) for d in (0.5, 0.05, 1e-6)]
    assert xd[0] <= xd[1] <= xd[2]


def test_cli_bound_default_is_best(capsys):
    def run(*argv):
        with pytest.raises(SystemExit) as exc:
            main(list(argv))
            raise SystemExit(0)
        return exc.value.code or 0, capsys.readouterr().out

    code, out = run("bound", "--widths", "100,200,10", "--fraction", "0.1", "--json")
    d = json.loads(out)
    code2, out2 = run("bound", "--widths", "100,200,10", "--fraction", "0.1", "--statement", "bernstein", "--json")
    d2 = json.loads(out2)
    assert code == code2 == 0 and d["eps"] < d2["eps"] and "§9" in d["statement"]
    code3, out3 = run("bound", "--widths", "100,200,10", "--fraction", "0.1", "--method", "random_exact", "--law",
                      "gaussian", "--json")
    assert code3 == 0 and json.loads(out3)["law"] == "gaussian"


def test_corners_are_finite_and_never_nan():
    """q in {0, 1e-6, 0.5, 0.999, 1}: every statement mode gives a finite eps (a NaN candidate, e.g. inf * 0 at the
    Gaussian q = 1 corner, is never chosen)."""
    import warnings

    for act in ("identity", "relu"):
        spec = fcn_spec([20, 30, 10], act)
        for law in ("uniform", "gaussian"):
            for m in ("magnitude", "random", "random_rescaled", "random_exact", "magnitude_exact"):
                for q in (0.0, 1e-6, 0.5, 0.999, 1.0):
                    if m == "random_rescaled" and q >= 1:
                        continue
                    with warnings.catch_warnings():
                        warnings.simplefilter("error")
                        r = apriori_bound(spec, q, 0.05, m, law)
                    assert np.isfinite(r.eps) and r.eps >= 0, (act, law, m, q, r.eps)
