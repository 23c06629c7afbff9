"""Registries of behaviour (issue 22, TE): every pruning method's behaviour is its family's score / cut-off and its
sampling model's rule; laws carry their sampler; density schemes, network kinds and sign schemes are tables."""
import math

import numpy as np
import pytest
import torch

from probprune.core import registry
from probprune.core.errors import ProbPruneError


def test_every_method_names_a_family_and_a_sampling_model():
    for m in registry.METHODS.values():
        assert m.family_model is registry.FAMILIES[m.family]
        assert m.sampling_model is registry.SAMPLINGS[m.sampling]
        assert m.random_mask == (m.family == "random")
    assert tuple(registry.FAMILIES) == tuple(dict.fromkeys(m.family for m in registry.METHODS.values()))
    assert registry.SAMPLINGS["exact"].counted and registry.SAMPLINGS["exact"].no_rounding is None
    assert not registry.SAMPLINGS["threshold"].fraction_given


def test_batched_masks_equal_the_rules_written_out():
    """Threshold |w| < tau(q) a (uniform law: tau = q; Gaussian: Phi^-1((1+q)/2)), Bernoulli u < p, exact-k of |w| / u
    (k = floor(q N) per network), written out here independently of the registry."""
    from scipy.stats import norm

    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 5, 7, generator=g, dtype=torch.float64)
    u = torch.rand(3, 5, 7, generator=g, dtype=torch.float64)
    q, a = 0.3, 1.7
    M = registry.METHODS
    assert torch.equal(M["magnitude"].prune_batched(w, u, q, a, "uniform"), w.abs() < q * a)
    assert torch.equal(M["magnitude"].prune_batched(w, u, q, a, "gaussian"), w.abs() < norm.ppf((1 + q) / 2) * a)
    for name in ("random", "random_rescaled"):
        assert torch.equal(M[name].prune_batched(w, u, q, a), u < q)
    k = math.floor(q * 35)
    for name, score in (("magnitude_exact", w.abs()), ("random_exact", u)):
        P = M[name].prune_batched(w, u, q, a).reshape(3, -1)
        assert (P.sum(1) == k).all()
        s = score.reshape(3, -1)
        for r in range(3):  # the pruned entries are the k lowest scores
            assert s[r][P[r]].max() <= s[r][~P[r]].min()
    with pytest.raises(ProbPruneError, match="no batched data-free mask"):
        M["snip"].prune_batched(w, u, q, a)


def test_laws_sample_with_their_own_sampler():
    for law, draw in (("uniform", lambda r: r.uniform(-2.0, 2.0, size=(4, 3))),
                      ("gaussian", lambda r: r.normal(0.0, 2.0, size=(4, 3)))):
        got = registry.LAWS[law].sample(np.random.default_rng(5), 2.0, (4, 3))
        np.testing.assert_array_equal(got, draw(np.random.default_rng(5)))


def test_error_exponent_from_the_family():
    assert registry.error_exponent("magnitude") == registry.error_exponent("magnitude_exact") == 1.5
    assert registry.error_exponent("random_rescaled") == 0.5
    assert registry.error_exponent("snip") is None
    assert registry.error_exponent("lib_magnitude_layer", 0.5) == 0.5


def test_registry_kinds_are_tables():
    assert set(registry.table("activation")) >= {"relu", "identity"}
    with pytest.raises(ProbPruneError, match="unknown registry kind 'optimizer'; choices: method, law, bound, activation"):
        registry.table("optimizer")


def test_density_schemes_table():
    from probprune.pruning import densities as D

    assert tuple(D.SCHEME_TABLE) == D.SCHEMES
    assert D.scheme("ERK").name == "erk" and D.scheme("snip-ratio").needs_batch
    with pytest.raises(ProbPruneError, match="unknown density scheme 'xyz'; use one of uniform, er, erk, snip_ratio"):
        D.scheme("xyz")
    with pytest.raises(ProbPruneError, match="unknown density scheme 'snip_ratio'"):
        D.allocate("snip_ratio", {"a": (4, 4)}, 0.5)
    shapes = {"a": (8, 4), "b": (4, 8)}
    assert D.allocate("uniform", shapes, 0.5).densities == {"a": 0.5, "b": 0.5}


def test_network_kinds_and_fixed_groups(tmp_path):
    import torch.nn as nn

    from probprune.mc import MCConfig
    from probprune.mc.trials import FIXED_LAW, NETWORK_KINDS, bound_setting, groups

    assert NETWORK_KINDS["model"].fixed and not NETWORK_KINDS["fcn"].fixed
    torch.manual_seed(0)
    p = tmp_path / "m.pt"
    torch.save(nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 2)).double(), p)
    cfg = MCConfig(archs=((4, 3, 2),), models=(str(p),), methods=("random",), fractions=(0.2,), deltas=(0.1,),
                   n_trials=2, batch_size=2)
    gs = groups(cfg)
    law_g, model_g = gs[0], gs[-1]
    assert model_g.law == FIXED_LAW and law_g.law == "uniform"
    with pytest.raises(ProbPruneError, match="read from a file, not a law template"):
        model_g.network.spec("relu", 1.0)
    spec, fixed, graph = bound_setting(cfg, model_g)  # a chain file: its chain view and weights
    assert graph is None and fixed is not None and spec.widths == (4, 5, 2)
    assert bound_setting(cfg, law_g)[1:] == (None, None)


def test_sign_schemes_and_block_kinds():
    from probprune.subsetsum.construction import BLOCK_KINDS, SIGN_SCHEMES, ConstructionConfig

    assert SIGN_SCHEMES["random"].units(3, False) == 6 and SIGN_SCHEMES["assigned"].units(3, False) == 3
    assert SIGN_SCHEMES["assigned"].units(3, True) == 6
    assert BLOCK_KINDS["linear"].flat and not BLOCK_KINDS["conv"].flat
    with pytest.raises(ProbPruneError, match="signs must be 'random' or 'assigned'"):
        ConstructionConfig(signs="mixed").validate()
