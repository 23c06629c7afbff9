"""Issue 18 item 6: every number the README and the docs quote from a run is generated from a committed result file
(probprune/experiments/docs_numbers.py). Regenerating must leave the files unchanged, so a stale figure fails here;
the quoted summaries are also recomputed independently from the per-row data of the same files."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from probprune.core.errors import ProbPruneError
from probprune.experiments import docs_numbers as D

ROOT = Path(__file__).resolve().parents[1]


def test_docs_are_generated_from_the_committed_results():
    stale = [c for c in D.render_all(ROOT) if c.changed]
    if stale:
        c = stale[0]
        i = len(os.path.commonprefix([c.old, c.new]))
        pytest.fail(f"{[s.path for s in stale]} quote numbers that differ from the committed results; run "
                    f"`python -m probprune.experiments.docs_numbers --write`. First difference in {c.path}: "
                    f"{c.old[max(0, i - 80):i + 80]!r} -> {c.new[max(0, i - 80):i + 80]!r}")


def test_markers_are_registered_and_every_block_is_quoted():
    used = set()
    for rel in D.DOC_FILES:
        used |= set(D.markers((ROOT / rel).read_text()))
    r = D.Results(ROOT)
    for name in used:
        D.value(name, r)  # an unknown marker raises
    assert set(D.BLOCKS) <= used, f"registered but quoted nowhere: {set(D.BLOCKS) - used}"
    for must in ("glance-table", "mc-linear-bullet", "proofs-line", "mc-linear-docs", "proofs-latest"):
        assert must in used


def test_a_changed_result_changes_the_docs_and_a_missing_key_names_it(tmp_path):
    """The mechanism can fail: a copy of the repository's results with one figure changed gives a different README."""
    for rel in D.DOC_FILES:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, tmp_path / rel)
    for d in ("benchmarks/results", "experiments/results", "paper/generated"):
        shutil.copytree(ROOT / d, tmp_path / d)
    assert not any(c.changed for c in D.render_all(tmp_path))
    t = json.loads((tmp_path / D.TIGHT).read_text())
    t["linear_summary"]["new_default"]["median"] = 2.5  # the target (3x) would now be met
    (tmp_path / D.TIGHT).write_text(json.dumps(t))
    readme = next(c for c in D.render_all(tmp_path) if c.path == "README.md")
    assert readme.changed and "**2.50x**" in readme.new and "<= 3x, met" in readme.new
    del t["linear_summary"]["new_default"]
    (tmp_path / D.TIGHT).write_text(json.dumps(t))
    with pytest.raises(ProbPruneError, match=r"tightness.json has no \['linear_summary'\]\['new_default'\]"):
        D.render_all(tmp_path)
    (tmp_path / D.TIGHT).unlink()
    with pytest.raises(ProbPruneError, match="tightness.json is missing"):
        D.render_all(tmp_path)


def test_quoted_summaries_equal_an_independent_recomputation_from_the_rows():
    r = D.Results(ROOT)
    t = r.json(D.TIGHT)
    lin = np.array([f["new_ratio"] for f in t["linear_families"]])
    assert D.tight_linear(r, "new_default")["median"] == pytest.approx(np.median(lin), rel=1e-12)
    assert D.tight_linear(r, "new_default")["p90"] == pytest.approx(np.percentile(lin, 90), rel=1e-12)
    assert D.tight_linear(r, "new_default")["n"] == len(lin)
    relu = [f["new_ratio"] for f in t["relu_families"]]
    assert D.tight_relu(r, "new_default")["median"] == pytest.approx(np.median(relu), rel=1e-12)
    c = r.json(D.CERTS)
    new = [f["new_over_pgd"] for n in c["networks"] for f in n["fractions"] if "new_over_pgd" in f]
    assert D.cert_summary(r, "ball_new_over_pgd_median") == pytest.approx(np.median(new), rel=1e-12)
    for row in r.get(D.BUDGET_RATIO, "rows"):  # guaranteed / empirical, from the fractions themselves
        if row["empirical"] > 0:
            assert row["ratio_analytic"] == pytest.approx(row["analytic"] / row["empirical"], rel=1e-9)
            assert row["ratio_calibrated"] == pytest.approx(row["calibrated"] / row["empirical"], rel=1e-9)


def test_proofs_summary_matches_the_registry():
    """The committed proofs_check.json must list every registered check and [D] statement (else it is stale)."""
    from proofs_check.runner import load_checks
    from proofs_check.statements import D_STATEMENTS

    s = D.proofs_summary(D.Results(ROOT))
    n_checks, n_stmt = len(load_checks()), len(D_STATEMENTS)
    assert (s["checks"], s["d_statements"]) == (n_checks, n_stmt), (
        f"paper/generated/proofs_check.json has {s['checks']} checks / {s['d_statements']} statements, the registry "
        f"{n_checks} / {n_stmt}: run `python -m proofs_check --json > paper/generated/proofs_check.json`")
    assert s["pass"] == s["checks"] and s["d_statements_covered"] == s["d_statements"] and s["ok"]


def test_mc_summary_is_of_the_committed_config_and_the_bound_held():
    from probprune.mc import load_config

    m = D.mc_summary(D.Results(ROOT), "mc_linear")
    cfg = load_config(str(ROOT / "experiments" / "mc_linear.yaml"))
    assert m["config_hash"] == cfg.hash
    assert m["rows"] == sum(int(x["T"]) for x in m["config_summary"])
    assert all(int(x["T"]) == cfg.n_trials * len(cfg.seeds) for x in m["config_summary"])  # whole networks only
    done = {x["network"] for x in m["config_summary"]}
    assert set(m["networks_missing"]) == set(m["networks_planned"]) - done
    if m["networks_missing"]:  # an unfinished run is said to be one, where its numbers are quoted
        assert not m["complete"]
        for rel in ("README.md", "docs/montecarlo.md"):
            assert "partial run" in (ROOT / rel).read_text(), rel
    assert sum(m["verdict_counts"].values()) == m["configurations"] == len(m["config_summary"])
    # the minimum looseness bound / exact error over every row agrees with the per-configuration V_u counts
    assert (m["min_looseness"] >= 1) == (sum(x["V_u"] for x in m["config_summary"]) == 0)


@pytest.mark.parametrize("x,s", [(24628.67, "24,600"), (6.3085, "6.31"), (0.0488, "0.0488"), (169.2, "169"),
                                 (1436.77, "1,440"), (10.72, "10.7"), (0.165, "0.165"), (1.0, "1.00")])
def test_significant_digits(x, s):
    assert D.sig(x) == s


def test_cli_check_is_clean():
    assert D.main(["--check"]) == 0
