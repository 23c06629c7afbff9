"""Experiments (issue 7): registry, tiny-size runs of every experiment through the API, CLI, paper generation and
the paper-number rule (every number quoted in paper/main.tex comes from a generated macro)."""
from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from probprune.core.errors import ProbPruneError
from probprune.experiments import get, names, run_experiment
from probprune.experiments.base import fmt
from probprune.experiments.mc_figures import (BracketConfig, BudgetConfig, CoverageConfig, FractionScalingConfig,
                                              _empirical_max_fraction)
from probprune.experiments.paper import generate, tex_escape
from probprune.experiments.theory_figures import SubsetSumConfig, WidthConditionConfig
from probprune.experiments.trained import LotteryConfig, TrainedConfig

ROOT = Path(__file__).resolve().parents[1]
# registry order = the paper's figure order (the law, trained networks, lottery tickets, subset sum)
EXPECTED = ["fraction_scaling", "bound_bracket", "coverage", "budget_curves", "width_condition", "trained",
            "elcheairi", "lottery", "imp_variants", "random_width", "subset_sum", "edge_popup"]
THEORY_TINY = ["fraction_scaling", "bound_bracket", "coverage", "budget_curves", "width_condition", "subset_sum"]

TINY = {
    "fraction_scaling": FractionScalingConfig(widths=(8, 16), fractions=(0.05, 0.2, 0.4), n_trials=4),
    "bound_bracket": BracketConfig(widths=(8, 16), depths=(2,), n_trials=2, pgd_iters=5),
    "coverage": CoverageConfig(width=8, deltas=(0.05, 0.5), n_trials=20),
    "budget_curves": BudgetConfig(width=16, eps=(0.1, 1.0), fractions=(0.01, 0.1, 0.5), n_trials=6),
    "width_condition": WidthConditionConfig(eps=(0.5, 1.0), deltas=(0.01, 0.1)),
    "subset_sum": SubsetSumConfig(cover_eps=(0.1,), cover_ns=(4, 8, 12, 16), cover_trials=20, laws=("uniform",),
                                  width_ds=(4, 16), width_eps=(0.1,), solve_ns=(4, 8), solve_targets=20,
                                  construct_ns=(8,), construct_widths=(3, 4, 2)),
    "trained": TrainedConfig(models=("lenet_300_100",), epochs=1, max_train=300, acc_sparsities=(0.5, 0.9),
                             err_sparsities=(0.1,), pgd_starts=4, pgd_iters=3, avg_inputs=50),
    "lottery": LotteryConfig(levels=1, epochs=1, max_train=200),
}


def test_registry_lists_every_figure_in_order():
    assert names() == EXPECTED
    for i, n in enumerate(names(), start=1):
        e = get(n)
        assert e.figure == i
        small, full = e.config("small"), e.config("full")
        assert dataclasses.is_dataclass(small) and type(full) is type(small)
        assert small != full, f"{n}: the full size must differ from the small size"
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(small, dataclasses.fields(small)[0].name, None)


def test_unknown_experiment_and_size_raise():
    with pytest.raises(ProbPruneError, match="unknown experiment"):
        get("nope")
    with pytest.raises(ProbPruneError, match="unknown size"):
        get("coverage").config("huge")
    with pytest.raises(ProbPruneError, match="config for"):
        run_experiment("coverage", config=BracketConfig())


#: a macro value: a finite number, LaTeX scientific notation, or "n/a" (a quantity a tiny run cannot form, said so)
NUMBER = re.compile(r"-?[0-9][0-9,]*(\.[0-9]+)?|\\ensuremath\{-?[0-9.]+\\times 10\^\{-?[0-9]+\}\}|n/a")
NOT_FINITE = re.compile(r"\b(nan|inf)\b")


def _check_outputs(res):
    """What every experiment must deliver, checked for content and not only presence: a PNG that decodes and shows
    plotted (coloured) data, a complete PDF, finite numbers (the paper's macros) and caption, a data table with no
    empty column."""
    import matplotlib.image as mpimg

    out = Path(res.out_dir)
    for f in ("figure.png", "figure.pdf", "summary.json", "data.csv"):
        assert (out / f).stat().st_size > 0, f
    img = mpimg.imread(out / "figure.png")[..., :3]
    assert img.shape[0] >= 200 and img.shape[1] >= 300, img.shape
    coloured = float(((img.max(-1) - img.min(-1)) > 0.15).mean())
    assert coloured > 0.003, f"figure.png shows no plotted data (coloured pixels {coloured:.4%})"
    pdf = (out / "figure.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-1024:], "figure.pdf is not a complete PDF"
    s = json.loads((out / "summary.json").read_text())
    assert s["name"] == res.name and s["summary"]["caption"]
    assert not NOT_FINITE.search(s["summary"]["caption"]), s["summary"]["caption"]
    for k, v in s["summary"]["numbers"].items():
        assert re.fullmatch(r"[A-Za-z]+", k)
        assert isinstance(v, str) and all(NUMBER.fullmatch(x.strip()) for x in v.split(", ")), (k, v)
    df = pd.read_csv(out / "data.csv")
    assert len(df) > 0
    empty = [c for c in df.columns if df[c].isna().all()]
    assert not empty, f"data.csv columns with no value: {empty}"
    return s


def test_output_check_refuses_a_blank_figure_a_nan_number_and_an_empty_column(tmp_path):
    """_check_outputs can fail: built from a committed experiment's outputs, it passes, and each broken copy fails."""
    import types

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    src = ROOT / "experiments" / "results" / "figures" / "coverage"
    out = tmp_path / "coverage"
    out.mkdir()
    (out / "summary.json").write_text((src / "summary.json").read_text())
    (out / "data.csv").write_text((src / "data.csv").read_text())
    (out / "figure.png").write_bytes((ROOT / "docs" / "figures" / "coverage.png").read_bytes())
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.set(xlabel="delta", ylabel="violation rate", title="empty axes")  # axes, labels, no data
    fig.savefig(out / "figure.pdf")
    res = types.SimpleNamespace(out_dir=str(out), name="coverage")
    _check_outputs(res)
    fig.savefig(out / "figure.png", dpi=150)
    plt.close(fig)
    with pytest.raises(AssertionError, match="no plotted data"):
        _check_outputs(res)
    (out / "figure.png").write_bytes((ROOT / "docs" / "figures" / "coverage.png").read_bytes())
    s = json.loads((src / "summary.json").read_text())
    k = next(iter(s["summary"]["numbers"]))
    s["summary"]["numbers"][k] = "nan"
    (out / "summary.json").write_text(json.dumps(s))
    with pytest.raises(AssertionError):
        _check_outputs(res)
    (out / "summary.json").write_text((src / "summary.json").read_text())
    df = pd.read_csv(src / "data.csv")
    df[df.columns[0]] = np.nan
    df.to_csv(out / "data.csv", index=False)
    with pytest.raises(AssertionError, match="no value"):
        _check_outputs(res)


@pytest.fixture(autouse=True)
def _one_worker(monkeypatch):
    monkeypatch.setenv("PROBPRUNE_EXPERIMENT_WORKERS", "1")  # no process pool start-up in tiny runs


@pytest.mark.parametrize("name", THEORY_TINY)
def test_tiny_runs_theory_experiments(name, tmp_path):
    res = run_experiment(name, config=TINY[name], out=tmp_path, quiet=True)
    s = _check_outputs(res)
    df = pd.read_csv(Path(res.out_dir) / "data.csv")
    if name == "fraction_scaling":
        # the derived bound must hold for every drawn network (a failure here is a finding, not a flaky test)
        assert (df["error"] <= df["bound"]).all()
        # the verdict follows the data: bound held in every trial AND the fitted slopes of the widest net within
        # 0.2 of 3/2 and 1/2; the slopes are refitted here with numpy from the per-trial table
        big = df[df["width"] == df["width"].max()]
        slopes = {m: np.polyfit(np.log(g.groupby("fraction")["error"].mean().index),
                                np.log(g.groupby("fraction")["error"].mean().values), 1)[0]
                  for m, g in big.groupby("method")}
        fits = pd.read_csv(Path(res.out_dir) / "fits.csv")
        fb = fits[fits["width"] == fits["width"].max()].set_index("method")["exponent"]
        assert np.isclose(slopes["magnitude"], fb["magnitude"]) and np.isclose(slopes["random"], fb["random"])
        slopes_ok = abs(slopes["magnitude"] - 1.5) <= 0.2 and abs(slopes["random"] - 0.5) <= 0.2
        assert s["summary"]["theory_held"] == (bool((df["error"] <= df["bound"]).all()) and slopes_ok)
        assert set(df["method"]) == {"magnitude", "random"}
        assert len(df) == 2 * 3 * 2 * 4  # widths x fractions x methods x trials
    if name == "bound_bracket":
        assert (df["pgd_lower"] <= df["cert_upper"] * (1 + 1e-9)).all()
    if name == "coverage":
        summ = pd.read_csv(Path(res.out_dir) / "summary.csv")
        assert set(summ["delta"]) == {0.05, 0.5} and (summ["T"] == 20).all()
        assert (summ["rate_lower"] <= summ["rate"]).all() and (summ["rate"] <= summ["rate_upper"]).all()
    if name == "budget_curves":
        assert set(df["source"]) == {"guaranteed (theory)", "empirical (MC)"}
        assert df["fraction"].between(0, 1).all()
    if name == "width_condition":
        got = df.dropna(subset=["min_width"])
        # a larger error budget never needs a wider network
        for (m, d), g in got.groupby(["method", "delta"]):
            w = g.sort_values("eps")["min_width"].values
            assert (np.diff(w) <= 0).all(), (m, d, w)
    if name == "subset_sum":
        cons = pd.read_csv(Path(res.out_dir) / "construction.csv")
        assert (cons["sup_error_pgd"] <= cons["bound_realized"] * (1 + 1e-9)).all()


def test_weight_diagnostics_detect_dependence():
    """i.i.d. weights: spectral norm ~ that of a shuffled copy; a rank-one-plus-noise matrix (dependent entries):
    much larger. KS distance to the uniform law small for uniform weights, large for a two-point law."""
    from probprune.experiments.trained import _weights_diagnostics
    from probprune.net.templates import ParsedModel, fcn_spec

    spec = fcn_spec([60, 50, 40], "relu")
    pm = lambda W: ParsedModel(spec, W, [None, None], ["0.weight", "2.weight"])  # noqa: E731
    for seed in range(5):  # thresholds hold for every seed, not one
        rng = np.random.default_rng(seed)
        iid = [rng.uniform(-1, 1, (50, 60)), rng.uniform(-1, 1, (40, 50))]
        u, v = rng.normal(size=(50, 1)), rng.normal(size=(1, 60))
        dep = [u @ v + 0.1 * rng.normal(size=(50, 60)), np.sign(rng.normal(size=(40, 50)))]
        d_iid, _ = _weights_diagnostics("iid", pm(iid), pm(iid), rng)
        d_dep, _ = _weights_diagnostics("dep", pm(dep), pm(iid), rng)
        # shuffling an i.i.d. matrix leaves its law unchanged: the ratio is 1 up to the fluctuation of the largest
        # singular value (Tracy-Widom scale n^(-2/3) relative, a few percent here); rank one + noise: ratio
        # ~ ||u|| ||v|| / (||noise|| + ...) >> 1
        assert all(0.8 < r["spec_ratio"] < 1.25 for r in d_iid), seed
        assert d_dep[0]["spec_ratio"] > 3, seed
        # KS with the scale fitted: the 0.1% critical value of the Lilliefors-type statistic for n >= 2000 is below
        # 1.95/sqrt(n) = 0.045; the two-point law +-1 is at distance 0.5 - (sqrt3 - 1)/(2 sqrt3) = 0.29 from it
        assert all(r["ks_uniform"] < 1.95 / np.sqrt(r["n_weights"]) for r in d_iid), seed
        assert d_dep[1]["ks_uniform"] > 0.2, seed


@pytest.mark.slow
@pytest.mark.parametrize("name", ["trained", "lottery"])
def test_tiny_runs_trained_experiments(name, tmp_path):
    res = run_experiment(name, config=TINY[name], out=tmp_path, quiet=True)
    _check_outputs(res)
    out = Path(res.out_dir)
    if name == "trained":
        e = pd.read_csv(out / "errors.csv")
        piv = e.pivot_table(index=["method", "sparsity"], columns="quantity", values="value")
        assert (piv["PGD worst-case (lower bound)"] <= piv["Cert-D upper bound"] * (1 + 1e-9)).all()
        diag = pd.read_csv(out / "diagnostics.csv")
        assert len(diag) == 3 and (diag["ks_uniform"].between(0, 1)).all()
    else:
        df = pd.read_csv(out / "data.csv")
        assert set(df["method"]) == {"IMP (lottery ticket)", "random, uniform densities", "random, ERK densities",
                                     "random, SNIP-ratio densities", "random, ticket's per-layer densities"}
        ns = pd.read_csv(out / "neuron_sparsity.csv")
        assert ns["pruned_fraction"].between(0, 1).all()


def test_empirical_max_fraction_interpolates_first_crossing():
    q = np.array([0.01, 0.1, 1.0])
    quant = np.array([0.01, 0.1, 1.0])
    assert _empirical_max_fraction(q, quant, 0.001) == 0.0
    assert _empirical_max_fraction(q, quant, 2.0) == 1.0
    assert np.isclose(_empirical_max_fraction(q, quant, np.sqrt(0.1 * 1.0)), np.sqrt(0.1))


def test_fmt_and_escape():
    assert fmt(1.4537, 3) == "1.45" and fmt(0.0734, 2) == "0.073" and fmt(475.2) == "475" and fmt(0) == "0"
    assert "ensuremath" in fmt(1.2e-7) and fmt(float("nan")) == "n/a"
    assert tex_escape("a_b 5%") == r"a\_b 5\%"


def test_cli_list_and_errors():
    exe = [sys.executable, "-m", "probprune.cli"] if (ROOT / "probprune" / "cli" / "__main__.py").exists() else \
        [str(Path(sys.executable).parent / "probprune")]
    p = subprocess.run(exe + ["experiment", "list", "--json"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert [e["name"] for e in json.loads(p.stdout)["experiments"]] == EXPECTED
    p = subprocess.run(exe + ["experiment", "run", "nope"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2 and p.stderr.startswith("error: unknown experiment")


# ----------------------------------------------------------------------------------------------- paper rules
ALLOWED_TOKENS = ("LeNet-300-100", "mnist5k")
LAYOUT_UNITS = r"(?:\\linewidth|\\textwidth|pt|cm|mm|em|ex|in)"


def literal_numbers(tex: str) -> list[str]:
    """Numbers written literally in the paper's text (not from generated macros), after removing what is allowed:
    comments, the bibliography, \\cite/\\ref/\\label/\\input/\\includegraphics arguments, \\usepackage options,
    layout lengths, section references (\\S3.4), years, single digits (indices, exponents such as 3/2) and the
    named model tokens."""
    t = re.sub(r"(?<!\\)%.*", "", tex)
    t = re.sub(r"\\begin\{thebibliography\}.*?\\end\{thebibliography\}", "", t, flags=re.S)
    t = re.sub(r"\\(?:cite|ref|label|input|includegraphics|usepackage|documentclass|eqref|newtheorem)\*?"
               r"(?:\[[^\]]*\])?\{[^}]*\}", "", t)
    t = re.sub(r"\\documentclass\[[^\]]*\]", "", t)
    t = re.sub(r"\[[^\]]*margin=[^\]]*\]", "", t)
    t = re.sub(r"\d+(?:\.\d+)?\s*" + LAYOUT_UNITS, "", t)
    t = re.sub(r"\\S~?\d+(?:\.\d+)*", "", t)
    for tok in ALLOWED_TOKENS:
        t = t.replace(tok, "")
    out = []
    for m in re.finditer(r"(?<![A-Za-z\\])\d+(?:\.\d+)?", t):
        s = m.group(0)
        if "." not in s and (len(s) == 1 or (len(s) == 4 and 1900 <= int(s) <= 2099)):
            continue
        out.append(s)
    return out


def test_number_rule_catches_literals():
    assert literal_numbers(r"the bound is 0.37 and 12 times looser") == ["0.37", "12"]
    assert literal_numbers(r"ICML 2021, see \S3.4, exponent $q^{3/2}$, \cite{x1}, width=0.6\linewidth") == []
    assert literal_numbers("% 0.5 in a comment\n\\figOneMagExp") == []


def test_paper_quotes_no_literal_numbers():
    tex = (ROOT / "paper" / "main.tex").read_text()
    bad = literal_numbers(tex)
    assert not bad, f"paper/main.tex quotes numbers not produced by a script: {bad}"


def test_paper_macros_are_generated(tmp_path):
    """Every number macro used by main.tex is written by the generator from experiment summaries, and the
    committed paper/generated/numbers.tex defines them all."""
    tex = (ROOT / "paper" / "main.tex").read_text()
    used = set(re.findall(r"\\((?:fig[A-Z]|exp[A-Z]|proofs[A-Z]|lth[A-Z]|pensia[A-Z])[A-Za-z]*)", tex))
    assert used, "the paper should quote generated numbers"
    committed = set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}",
                               (ROOT / "paper" / "generated" / "numbers.tex").read_text()))
    assert used <= committed, f"macros missing from paper/generated/numbers.tex: {sorted(used - committed)}"
    caps = set(re.findall(r"\\(capFig[A-Za-z]+)", tex))
    gen_caps = set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}",
                              (ROOT / "paper" / "generated" / "captions.tex").read_text()))
    assert caps <= gen_caps and len(caps) == len(EXPECTED)
    # macros the generator emits from a (fake) results folder: experiment numbers come only from summaries
    res = tmp_path / "results"
    (res / "coverage").mkdir(parents=True)
    (res / "coverage" / "summary.json").write_text(json.dumps(
        {"summary": {"numbers": {"figThreeTrials": "7"}, "caption": "cap 5% ok", "theory_held": True},
         "seconds": 1.0, "size": "small"}))
    out = generate(res, tmp_path / "paper", run_proofs=False)
    assert out["numbers"]["figThreeTrials"] == "7" and "coverage" not in out["missing"]
    caps_txt = (tmp_path / "paper" / "generated" / "captions.tex").read_text()
    assert r"cap 5\% ok Theory held: yes." in caps_txt


def test_generate_prefers_results_then_fallback(tmp_path):
    """Full-size results first, small-size ones for the missing experiments; the table records each size."""
    full, small = tmp_path / "full", tmp_path / "small"
    for root, name, size, val in ((full, "coverage", "full", "2000"), (small, "coverage", "small", "200"),
                                  (small, "lottery", "small", "4")):
        (root / name).mkdir(parents=True)
        key = "figThreeTrials" if name == "coverage" else "figEightLevels"
        (root / name / "summary.json").write_text(json.dumps(
            {"summary": {"numbers": {key: val}, "caption": "c", "theory_held": None}, "seconds": 1.0, "size": size}))
    out = generate(full, tmp_path / "paper", run_proofs=False, fallback=small)
    assert out["numbers"]["figThreeTrials"] == "2000" and out["numbers"]["figEightLevels"] == "4"
    assert out["numbers"]["expSize"] == "full/small"
    table = (tmp_path / "paper" / "generated" / "experiments_table.tex").read_text()
    assert "coverage} & full" in table and "lottery} & small" in table
