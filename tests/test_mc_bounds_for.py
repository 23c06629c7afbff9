"""probprune.mc.trials.bound_for: every method with an a-priori statement in probprune.core.registry gets its bound in
MC runs, including exact-k random under the Gaussian law (THEORY §9.5) and exact-k magnitude (§9.6); checked on
small linear nets, whose error the engine measures exactly (spectral norm of the product difference)."""
import math

import numpy as np
import pytest

from probprune.theory.apriori import exact_k_bound, exact_k_magnitude_bound
from probprune.mc import MCConfig
from probprune.mc.trials import bound_for, evaluate_unit, groups
from probprune.net.templates import fcn_spec


def test_bound_for_exact_k_methods_are_the_section9_bounds():
    spec = fcn_spec((12, 16, 6), "identity", 1.0)
    for law in ("uniform", "gaussian"):
        r, why = bound_for(spec, "random_exact", 0.3, 0.1, law)
        assert why == "" and r.eps == exact_k_bound(spec, 0.3, 0.1, law=law).eps and math.isfinite(r.eps)
        m, why = bound_for(spec, "magnitude_exact", 0.3, 0.1, law)
        assert why == "" and m.eps == exact_k_magnitude_bound(spec, 0.3, 0.1, law=law).eps and math.isfinite(m.eps)
    assert bound_for(spec, "lib_magnitude_layer", 0.3, 0.1, "uniform")[0] is None


@pytest.mark.parametrize("law,method", [("gaussian", "random_exact"), ("uniform", "magnitude_exact"),
                                        ("gaussian", "magnitude_exact")])
def test_exact_k_configs_report_a_finite_bound_and_no_violation(law, method):
    """200 linear 12-16-6 nets (exact error): a finite bound on every row, every trial satisfied (none violated)."""
    cfg = MCConfig(widths=(16,), depths=(2,), input_dim=12, output_dim=6, activations=("identity",), laws=(law,),
                   methods=(method,), fractions=(0.3,), deltas=(0.1,), n_trials=200, batch_size=200)
    g = groups(cfg)[0]
    df = evaluate_unit(cfg, 0, g.index, 0)
    assert len(df) == 200 and np.isfinite(df["bound"]).all() and (df["bound"] > 0).all()
    assert (df["verdict"] != "no_bound").all() and (df["verdict"] != "violated").all()
    assert (df["err_ub"] <= df["bound"]).all()
