"""probprune.core.registry: one spelling per strategy, each method's declared sampling model is what the code does, and
every registered bound is a statement of docs/THEORY.md with an implementation."""
from __future__ import annotations

import math

import pytest
import torch

from probprune.core import registry
from probprune.core.errors import ProbPruneError


def test_one_spelling_per_strategy():
    for kind in ("method", "law", "bound", "activation"):
        tab = registry.table(kind)
        spellings = {}
        for name, entry in tab.items():
            for s in (name, *getattr(entry, "aliases", ())):
                key = registry._norm(s)
                assert spellings.setdefault(key, name) == name, f"{kind}: {s!r} names two entries"
                assert registry.canonical(kind, s) == name
                assert registry.canonical(kind, s.upper().replace("_", "-")) == name
        assert registry.choices(kind) == tuple(tab)


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ProbPruneError, match="unknown method 'rescaling'; choices: magnitude, magnitude_exact"):
        registry.canonical("method", "rescaling")
    with pytest.raises(ProbPruneError, match="unknown registry kind"):
        registry.table("optimizer")
    assert registry.normalize("method", "rescaled") == "random_rescaled"
    assert registry.normalize("method", "nonsense") == "nonsense"


def test_method_entries_are_consistent():
    from probprune.certificates.lemma import certify_random  # noqa: F401  (the sampling names below are its own)

    for m in registry.METHODS.values():
        assert m.sampling in ("threshold", "exact", "bernoulli")
        assert registry.method_for(m.family, m.sampling, m.rescaled) is m  # the sampling model identifies the method
        assert m.certificate in registry.BOUNDS
        assert m.apriori is None or m.apriori in registry.BOUNDS
        assert (m.cert_r_sampling is not None) == (m.family == "random")
        assert m.cert_r_sampling in (None, "bernoulli", "rescaled", "exact")
    with pytest.raises(ProbPruneError):
        registry.method_for("magnitude", "bernoulli")


def test_bounds_are_theory_statements_with_implementations():
    from proofs_check.statements import D_IDS

    for b in registry.BOUNDS.values():
        assert b.name in D_IDS, b.name
        assert callable(b.function)
    sharp = {i for i in D_IDS if i.startswith("sharp-S9.")}  # the §9 statements, each registered
    assert sharp and sharp <= set(registry.BOUNDS)


def test_registry_entries_work_in_the_modules_that_use_them():
    """Behaviour, not identity (the MC config's lists are the registry's by construction): every registered law,
    a-priori method and activation is accepted and computed by the bound, the sampler and the MC config, and the
    activation table gives the hand-written functions; unregistered names are refused everywhere."""
    import numpy as np

    from probprune.mc.config import MCConfig
    from probprune.net.templates import activation, fcn_spec, sample_weights
    from probprune.theory.apriori import apriori_bound

    spec = fcn_spec((20, 30, 10), "relu", 1.0)
    a = [L.half_width for L in spec.layers]
    for law in registry.choices("law"):
        r = apriori_bound(spec, 0.1, 0.05, "magnitude", law)
        assert r.law == law and math.isfinite(r.eps) and r.eps > 0
        W = sample_weights(spec, 0, law, n=200)
        beyond = [float(np.mean(np.abs(w) > ai)) for w, ai in zip(W, a)]
        # U[-a, a] never leaves [-a, a]; N(0, a^2) does about 31.7% of the time (2 (1 - Phi(1)))
        expect = 0.0 if law == "uniform" else 0.3173
        assert all(abs(b - expect) < 0.02 for b in beyond), (law, beyond)
        MCConfig(widths=(8,), depths=(2,), laws=(law,))
    for bad in ("cauchy", "laplace"):
        with pytest.raises(ProbPruneError):
            apriori_bound(spec, 0.1, 0.05, "magnitude", bad)
        with pytest.raises(ProbPruneError):
            MCConfig(widths=(8,), depths=(2,), laws=(bad,))
    for m in (m.name for m in registry.METHODS.values() if m.apriori == "thm-RM-RR"):
        r = apriori_bound(spec, 0.1, 0.05, m)
        assert r.method == m and math.isfinite(r.eps)
        MCConfig(widths=(8,), depths=(2,), methods=(m,))
    x = np.linspace(-3, 3, 25)
    ref = {"identity": x, "relu": np.maximum(x, 0), "leaky_relu": np.where(x >= 0, x, 0.01 * x), "tanh": np.tanh(x),
           "hardtanh": np.clip(x, -1, 1), "sigmoid": 1 / (1 + np.exp(-x))}
    assert set(registry.choices("activation")) == set(ref)
    for name in registry.choices("activation"):
        act = activation(name)
        assert act.name == name
        np.testing.assert_allclose(act.numpy(x), ref[name], rtol=1e-15, atol=0)
        MCConfig(widths=(8,), depths=(2,), activations=(name,))
    with pytest.raises(ProbPruneError):
        MCConfig(widths=(8,), depths=(2,), activations=("gelu",))


def test_aliases_reach_one_spelling_in_results_and_config_hash():
    from probprune.theory.apriori import apriori_bound
    from probprune.mc.config import MCConfig
    from probprune.net.templates import fcn_spec

    spec = fcn_spec((20, 30, 10), "relu", 1.0)
    a = apriori_bound(spec, 0.1, 0.05, "rescaled", "normal")
    b = apriori_bound(spec, 0.1, 0.05, "random_rescaled", "gaussian")
    assert (a.method, a.law, a.eps) == (b.method, b.law, b.eps) == ("random_rescaled", "gaussian", b.eps)
    c1 = MCConfig(widths=(8,), depths=(2,), methods=("rescaled", "Random-Exact"), laws=("normal",), activations=("linear",))
    c2 = MCConfig(widths=(8,), depths=(2,), methods=("random_rescaled", "random_exact"), laws=("gaussian",),
                  activations=("identity",))
    assert c1.methods == ("random_rescaled", "random_exact") and c1.hash == c2.hash
    with pytest.raises(ProbPruneError, match="unknown method 'snip'"):  # a registry method the MC engine cannot run
        MCConfig(widths=(8,), depths=(2,), methods=("snip",))


def test_declared_sampling_model_is_what_the_mc_engine_does():
    """threshold: pruned iff |w| < q a_i; exact: exactly floor(q N_i) per layer; bernoulli: independent of W with
    count ~ Binomial(N_i, p); rescaled: kept weights / (1 - p)."""
    from probprune.mc.trials import prune_batched
    from probprune.net.templates import fcn_spec

    spec = fcn_spec((30, 40, 10), "relu", 1.0)
    g = torch.Generator().manual_seed(0)
    W = [(torch.rand(64, *L.weight_shape, generator=g, dtype=torch.float64) * 2 - 1) * L.half_width for L in spec.layers]
    U = [torch.rand(64, *L.weight_shape, generator=g, dtype=torch.float64) for L in spec.layers]
    q = 0.3
    for name in ("magnitude", "magnitude_exact", "random", "random_rescaled", "random_exact"):
        m = registry.method(name)
        Wh, _ = prune_batched(spec, W, U, name, q, "uniform")
        for L, w, wh in zip(spec.layers, W, Wh):
            P = (wh == 0) & (w != 0)
            counts = P.reshape(64, -1).sum(1).double()
            if m.sampling == "threshold":
                assert torch.equal(P, w.abs() < q * L.half_width)
            elif m.sampling == "exact":
                assert torch.all(counts == math.floor(q * L.N))
            else:  # bernoulli: mean q N, sd sqrt(q(1-q)N) per network; 64 networks
                sd = math.sqrt(q * (1 - q) * L.N)
                assert abs(float(counts.mean()) - q * L.N) < 5 * sd / 8
                assert float(counts.std()) > 0.5 * sd
            kept = ~P & (w != 0)
            scale = 1 / (1 - q) if m.rescaled else 1.0
            torch.testing.assert_close(wh[kept], w[kept] * scale, rtol=1e-15, atol=0)


def test_prune_api_records_the_registry_name_and_accepts_it():
    from probprune.net.zoo import mlp
    from probprune.pruning import prune

    m = mlp((6, 8, 3), seed=0)
    cases = ((("magnitude", 0.3), {}, "magnitude_exact"), (("magnitude", None), {"sampling": "threshold", "threshold": 0.1},
             "magnitude"), (("random", 0.3), {}, "random_exact"), (("random", 0.3), {"sampling": "bernoulli"}, "random"),
             (("structured", 0.3), {}, "structured"))
    for (meth, s), kw, expect in cases:
        r = prune(m, meth, s, apply=False, **kw)
        assert r.report.extra["registry_method"] == expect
        if expect.endswith("_exact"):  # the registry name gives the same mask
            r2 = prune(m, expect, s, apply=False)
            assert all(torch.equal(r.mask[k], r2.mask[k]) for k in r.mask)
    with pytest.raises(ProbPruneError, match="does not rescale"):
        prune(m, "random_rescaled", 0.3, apply=False)
