"""Issue 22 item 5: no string switches on strategy names outside the registry (helper UB).

Names map to strategy objects (probprune.core.registry: methods, laws, sampling models / budget rules, layer kinds,
activations; budgets.apriori.ALLOCATION_MODES); the library asks those objects instead of comparing a name to a
spelled string. The pattern is the issue's grep, over the whole package (cli/ included) but the registry itself.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import probprune
from probprune.core import registry
from probprune.core.errors import ProbPruneError

ROOT = Path(probprune.__file__).resolve().parent
PATTERN = re.compile(
    r'(==|!=) *"(magnitude|random|bernoulli|gaussian|rademacher|uniform|threshold|exact_k|exact-k|rescaled|optimal'
    r'|equal_share|relu|identity|linear|tanh)"|in \("(magnitude|random|gaussian|uniform|relu|optimal)')


def _hits() -> list[str]:
    out = []
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT.parent).as_posix()
        if rel.endswith("core/registry.py"):  # the command line too: it asks the registry (SAMPLINGS.fraction_given)
            continue
        for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if PATTERN.search(line):
                out.append(f"{rel}:{i}: {line.strip()}")
    return out


def test_no_string_switches_outside_the_registry():
    hits = _hits()
    assert not hits, "string switches on strategy names (ask the registry instead):\n" + "\n".join(hits)


def test_pattern_finds_a_planted_switch():
    assert PATTERN.search('    if law == "uniform":')
    assert PATTERN.search('for m in ("magnitude", "random"):')
    assert not PATTERN.search("    if registry.LAWS[law].bounded:")


def test_budget_rules_are_the_sampling_models():
    assert tuple(registry.BUDGET_RULES) == ("exact_k", "threshold", "bernoulli")
    assert registry.budget_rule("exact_k") is registry.SAMPLINGS["exact"]
    assert [registry.BUDGET_RULES[r].budget_field for r in registry.BUDGET_RULES] == ["exact_k", "threshold",
                                                                                       "bernoulli_p"]
    for m in registry.METHODS.values():  # each method's sampling model names the rule of its budgets
        assert registry.budget_rule(m.sampling_model.rule) is m.sampling_model
    with pytest.raises(ProbPruneError, match="unknown rule 'topk'; use one of exact_k, threshold, bernoulli"):
        registry.budget_rule("topk")


def test_cert_r_method_and_budget_certificate():
    assert {s: registry.cert_r_method(s).name for s in ("bernoulli", "rescaled", "exact")} == {
        "bernoulli": "random", "rescaled": "random_rescaled", "exact": "random_exact"}
    with pytest.raises(ProbPruneError, match="unknown sampling 'x'; use bernoulli, rescaled or exact"):
        registry.cert_r_method("x")
    assert {m.name: m.budget_certificate for m in registry.METHODS.values() if m.budget_certificate} == {
        "magnitude": "lemma-a", "random": "cert-r"}
    assert registry.BASE_METHODS == ("magnitude", "random")


def test_layer_kinds():
    assert [k for k, v in registry.LAYER_KINDS.items() if v.dense] == ["linear"]
    with pytest.raises(ProbPruneError, match="unknown layer kind"):
        registry.layer_kind("lstm")
    from probprune.net.templates import fcn_spec

    assert fcn_spec([4, 3, 2], "relu", 1.0).layers[0].is_dense


def test_laws_carry_their_bernstein_terms():
    """The formulas moved from theory.apriori into the laws: spot values against the closed forms of §3.4/§3.12."""
    from scipy import stats

    from probprune.theory.bernstein import beta

    U, G = registry.LAWS["uniform"], registry.LAWS["gaussian"]
    assert U.bounded and not G.bounded
    m, q, a, N = np.array([8.0]), np.array([0.3]), np.array([0.5]), np.array([64.0])
    pr, dT = q > 0, np.array([0.01])
    s2, R = registry.ENTRY_MODELS["magnitude"].bernstein(U, m, q, a, N, pr, dT)
    assert s2 == m * q**3 * a * a / 3.0 and R == q * a
    s2, R = registry.ENTRY_MODELS["random_rescaled"].bernstein(G, m, q, a, N, pr, dT)
    u = np.sqrt(2.0 * np.log(N / dT))
    assert s2 == m * q * a * a / (1.0 - q) and R == a * u * max(1.0, 0.3 / 0.7)
    c = stats.norm.ppf(0.65)
    g = 2 * stats.norm.cdf(c) - 1 - 2 * c * stats.norm.pdf(c)
    s2, _ = registry.ENTRY_MODELS["magnitude"].bernstein(G, m, q, a, N, pr, dT)
    assert np.isclose(s2, m * a * a * g, rtol=1e-14)
    B = U.bernstein_norm_bound(m, np.array([10.0]), a, 1.0, 5.0, 5.0, np.array([0.01]))
    assert B == beta(m * a * a / 3.0, a, np.log(10.0 / 0.01))
