"""proofs_check inside the test suite: the whole registry passes, every [D] statement of THEORY.md has a check, and
the code-to-proof bridge catches a perturbed constant in an implemented bound (mutation tests)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import proofs_check
from proofs_check import D_STATEMENTS, run_all
from proofs_check.__main__ import main
from proofs_check.runner import load_checks

THEORY = Path(__file__).resolve().parents[1] / "docs" / "THEORY.md"


#: the registry runs in this many parametrised parts so that pytest -n 2 spreads it over both workers (one module
#: fixture ran the whole registry once per worker that touched it: up to twice, and as one long item)
CHUNKS = 8


def _chunk_ids(i: int) -> list[str]:
    return [c.id for k, c in enumerate(load_checks()) if k % CHUNKS == i]


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_every_check_passes(chunk):
    from proofs_check._core import run_check
    from proofs_check.runner import _single_thread

    ids = set(_chunk_ids(chunk))
    with _single_thread():
        results = [run_check(c) for c in load_checks() if c.id in ids]
    bad = [(r.id, r.status, r.detail) for r in results if r.status != "PASS"]
    assert not bad, bad
    assert len(results) == len(ids)


def test_every_d_statement_is_covered():
    """Every [D] statement is covered by at least one registered check (each check passes in the parts above, so
    every statement's coverage is PASS); both kinds and all three methods are in use."""
    checks = load_checks()
    covered = {sid for c in checks for sid in c.covers}
    assert not [s.id for s in D_STATEMENTS if s.id not in covered]
    assert sum(len(_chunk_ids(i)) for i in range(CHUNKS)) == len(checks)
    kinds = [c.kind for c in checks]
    assert kinds.count("bridge") >= 10 and kinds.count("derivation") >= 30
    assert {c.method for c in checks} == {"symbolic", "numeric", "symbolic+numeric"}


def test_registry_metadata_is_consistent():
    checks = load_checks()
    ids = {s.id for s in D_STATEMENTS}
    for c in checks:
        assert set(c.covers) <= ids, (c.id, c.covers)
        assert re.fullmatch(r"§\d+(\.\d+)?", c.ref), c.ref
    assert len({c.id for c in checks}) == len(checks)


def _section_of_each_line(text: str):
    sec = "preamble"
    for line in text.splitlines():
        m = re.match(r"^#{2,3} (\d+(?:\.\d+)?)[ .]", line)
        if m:
            sec = m.group(1)
        yield sec, line


def test_statement_list_tracks_theory_md():
    """Every section of THEORY.md that carries a [D] label (all of §3) has at least one listed statement, and every
    listed reference exists in THEORY.md. Fails when THEORY.md gains a [D] section the list does not know."""
    text = THEORY.read_text(encoding="utf-8")
    sections = {sec for sec, _ in _section_of_each_line(text)}
    listed = {s.ref.lstrip("§") for s in D_STATEMENTS}
    assert listed <= sections, listed - sections
    labelled = {sec for sec, line in _section_of_each_line(text) if "[D]" in line}
    labelled |= {sec for sec in sections if sec.startswith("3.")}  # "## 3. Derived explicit bounds [D]"
    # sections that only *mention* [D] (the legend, the weight-law notes pointing to §3) are not statements
    labelled -= {"preamble", "1.3", "3"}
    assert labelled <= listed, f"[D] sections without a listed statement: {sorted(labelled - listed)}"


# ------------------------------------------------------------------------------------------------ mutation tests
def _status(check_id: str) -> str:
    rep = run_all(select=check_id)
    (r,) = [x for x in rep.results if x.id == check_id]
    return r.status


def test_mutation_beta_constant_fails_bridge(monkeypatch):
    import probprune.theory.apriori as bounds

    assert _status("bridge-beta") == "PASS"

    def beta_typo(s2, R, lam):  # 2 s2 lam -> 2.0001 s2 lam
        s2, R, lam = (np.asarray(x, float) for x in (s2, R, lam))
        h = R * lam / 3.0
        return h + np.sqrt(h * h + 2.0001 * s2 * lam)

    monkeypatch.setattr(bounds, "beta", beta_typo)
    assert _status("bridge-beta") == "FAIL"
    assert _status("bridge-apriori") == "FAIL"  # apriori_bound looks beta up at call time
    assert _status("bridge-eta-B") == "FAIL"
    # the pure derivation does not depend on the code
    assert _status("bernstein-solve") == "PASS"


def test_mutation_rr_closed_form_fails_bridge(monkeypatch):
    import probprune.budgets.apriori as budget

    orig = budget.equal_share_closed_form

    def typo(t, a, m, lam, method):
        if method == "random":  # 2 a lam/3 -> 2 a lam/3.01 in the jump and the formula
            t, a, m, lam = (np.asarray(x, float) for x in (t, a, m, lam))
            p = t * (3.01 * t - 2 * a * lam) / (2 * m * a * a * lam)
            return np.clip(np.where(t <= 2 * a * lam / 3.01, 0.0, p), 0.0, 1.0)
        return orig(t, a, m, lam, method)

    monkeypatch.setattr(budget, "equal_share_closed_form", typo)
    assert _status("bridge-budget-closed-form") == "FAIL"


def test_mutation_gaussian_g_fails_bridge(monkeypatch):
    import probprune.theory.apriori as bounds
    from scipy import stats

    monkeypatch.setattr(bounds, "gaussian_g",
                        lambda c: 2 * stats.norm.cdf(c) - 1 - 1.999 * np.asarray(c) * stats.norm.pdf(c))
    assert _status("bridge-gaussian") == "FAIL"


def test_mutation_product_form_fails_bridge(monkeypatch):
    import probprune.theory.apriori as bounds

    monkeypatch.setattr(bounds, "product_form",
                        lambda B, eta, Lip=1.0: Lip * np.prod(B, -1) * np.sum(np.asarray(eta) / B, -1))  # first order
    assert _status("bridge-product-form") == "FAIL"


def test_missing_implementation_is_reported(monkeypatch):
    import probprune.theory.apriori as bounds

    monkeypatch.delattr(bounds, "beta")
    rep = run_all(select="bridge-beta")
    (r,) = rep.results
    assert r.status == "FAIL" and "missing implementation" in r.detail


def test_missing_statement_makes_the_run_fail(monkeypatch):
    from proofs_check import runner
    from proofs_check.statements import DStatement

    fake = DStatement("no-such-check", "§3.1", "a statement nobody checks")
    monkeypatch.setattr(runner, "D_STATEMENTS", (*D_STATEMENTS, fake))
    rep = runner.run_all(select="norm-increase")
    assert "no-such-check" in rep.missing
    assert rep.partial and rep.ok  # a filtered run does not count coverage gaps
    rep.partial = False
    assert not rep.ok


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_json_and_exit_codes(capsys, monkeypatch):
    assert main(["--json", "--select", "norm-increase"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["checks"] == 1 and out["checks"][0]["status"] == "PASS"
    assert out["checks"][0]["ref"] == "§3.1" and out["checks"][0]["method"] == "symbolic"

    import probprune.theory.apriori as bounds

    monkeypatch.setattr(bounds, "beta", lambda s2, R, lam: 1.01 * (np.asarray(R) * lam / 3
                                                                   + np.sqrt((np.asarray(R) * lam / 3) ** 2
                                                                             + 2 * np.asarray(s2) * lam)))
    assert main(["--select", "bridge-beta"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_package_api():
    assert callable(proofs_check.run_all)
    assert len(proofs_check.D_IDS) == len(set(proofs_check.D_IDS)) >= 30
