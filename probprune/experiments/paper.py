"""Write the paper's generated inputs from experiment results (issue 7).

``generate(results, paper)`` reads ``<results>/<name>/summary.json`` of every registered experiment and writes into
``<paper>/generated/``:

* ``numbers.tex`` — one ``\\newcommand`` per number the paper quotes (each experiment's ``summary["numbers"]``, plus
  run metadata and the proofs-check counts). The paper's text quotes numbers only through these macros; a test
  (``tests/test_experiments.py``) fails if ``paper/main.tex`` contains a literal number outside a small allowed list.
* ``captions.tex`` — ``\\capFig<Name>`` macros holding each figure's result-dependent caption (written by the
  experiment from its own results) and whether the theory held.
* ``figures/<name>.pdf`` — copies of the experiment figures.
* ``experiments_table.tex``, ``proofs_table.tex`` — tables (the latter from ``python -m proofs_check --json``).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from probprune.core.errors import ProbPruneError
from probprune.experiments.base import fmt
from probprune.experiments.catalog import get, names


def _macro(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", "_").split("_"))


def tex_escape(s: str) -> str:
    """Escape LaTeX specials in plain text (ids, statements from proofs_check)."""
    rep = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
           "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "§": r"\S{}",
           "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}"}
    return "".join(rep.get(c, c) for c in str(s))


def _proofs(paper_gen: Path, run: bool) -> dict:
    cache = paper_gen / "proofs_check.json"
    if run:
        p = subprocess.run([sys.executable, "-m", "proofs_check", "--json"], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2])
        try:
            data = json.loads(p.stdout)
        except json.JSONDecodeError:
            raise ProbPruneError(f"proofs_check did not return JSON (exit {p.returncode}): {p.stderr[-300:]}") from None
        cache.write_text(json.dumps(data, indent=1))
    elif cache.exists():
        data = json.loads(cache.read_text())
    else:
        return {}
    return data


EXPORT_MAX_BYTES = 400_000  # larger tables (e.g. histogram samples) stay in results/ and are listed as omitted


def config_hash(config: dict) -> str:
    """sha256 of the experiment config (sorted JSON), first 16 hex digits: names the exact run."""
    import hashlib

    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def export_summary(run_dir: Path, dest: Path, name: str, size: str) -> dict:
    """Copy one experiment's auditable outputs into ``dest/name/``: ``summary.json`` with a ``provenance`` block
    (the command, the config hash) and every CSV up to :data:`EXPORT_MAX_BYTES`. ``results/`` is git-ignored; the
    export folder (``experiments/results/figures/``) is committed, so every figure's numbers can be audited."""
    s = json.loads((run_dir / "summary.json").read_text())
    out = dest / name
    out.mkdir(parents=True, exist_ok=True)
    copied, omitted = [], []
    for f in sorted(run_dir.glob("*.csv")):
        if f.stat().st_size <= EXPORT_MAX_BYTES:
            shutil.copyfile(f, out / f.name)
            copied.append(f.name)
        else:
            omitted.append(f"{f.name} ({f.stat().st_size} bytes)")
    cmd = f"probprune experiment run {name}" + (" --full" if size == "full" else "")
    s["figure"], s["title"] = get(name).figure, get(name).title  # the paper's current numbering
    s["provenance"] = {"command": cmd if size in ("small", "full") else f"{cmd} (custom config)",
                       "config_hash": config_hash(s.get("config", {})), "size": size,
                       "tables": copied, "tables_omitted": omitted}
    (out / "summary.json").write_text(json.dumps(s, indent=1, sort_keys=True))
    return s["provenance"]


def lth_table(folder: Path, gen: Path, levels=(0, 3, 6, 9, 12, 15, 18, 21)) -> dict:
    """The lottery-ticket study (``python experiments/lth_study.py``: >= 5 seeds, early stopping on a validation
    split, down to <= 1% of the weights, ticket-density control, late rewinding) as ``generated/lth_table.tex``:
    test accuracy at the early-stopping epoch, mean and 95% t-interval over seeds; and the paired comparisons the text
    quotes (a level counts as a win or a loss only when the paired 95% interval excludes zero)."""
    import pandas as pd

    from probprune.experiments.lth_stats import paired, summarize

    df = pd.concat([pd.read_csv(f) for f in sorted(folder.glob("seed*.csv"))], ignore_index=True)
    s = summarize(df)
    arms = ("ticket", "ticket_late_rewind", "ticket_density", "erk", "reinit")
    last = int(s["level"].max())
    lines = [r"\begin{tabular}{@{}rrlllll@{}}",
             r"\toprule level & remaining & ticket & ticket, late rewind & random, ticket's densities & random, ERK & "
             r"ticket's mask, re-init\\ \midrule"]

    def cell(g, arm):
        if arm not in g.index:
            return ""
        m, h = g.loc[arm, "es_test_acc_mean"], g.loc[arm, "es_test_acc_ci95"]
        return f"{100 * m:.1f} $\\pm$ {100 * h:.1f}" if pd.notna(h) else f"{100 * m:.1f}"

    for L in sorted(set(levels) | {last}):
        g = s[s["level"] == L].set_index("arm")
        if g.empty:
            continue
        lines.append(f"{L} & {100 * g['remaining'].iloc[0]:.2f}\\% & " + " & ".join(cell(g, a) for a in arms) + r"\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    (gen / "lth_table.tex").write_text("\n".join(lines) + "\n")
    g = s[s["level"] == last].set_index("arm")
    g0 = s[s["level"] == 0].set_index("arm")
    acc = paired(df, "ticket", "ticket_density")
    acc = acc[acc["level"] > 0]
    late = paired(df, "ticket_late_rewind", "ticket")
    late = late[late["level"] > 0]
    it = paired(df, "ticket", "ticket_density", col="es_iter")
    it = it[it["level"] > 0]
    dense_iter = float(g0.loc["ticket", "es_iter_mean"])
    tk = s[(s["arm"] == "ticket") & (s["level"] > 0)]
    L = acc[acc["level"] == last].iloc[0]
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    return {"lthSeeds": str(int(df["seed"].nunique())), "lthLevels": str(last),
            "lthEpochs": str(int(df["epochs"].iloc[0])),
            "lthLastRemaining": f"{100 * g['remaining'].iloc[0]:.2f}",
            "lthDenseAcc": pct(g0.loc["ticket", "es_test_acc_mean"]),
            "lthLastAcc": pct(g.loc["ticket", "es_test_acc_mean"]),
            "lthLastLate": pct(g.loc["ticket_late_rewind", "es_test_acc_mean"]),
            "lthLastTicketDensity": pct(g.loc["ticket_density", "es_test_acc_mean"]),
            "lthLastErk": pct(g.loc["erk", "es_test_acc_mean"]),
            "lthLastReinit": pct(g.loc["reinit", "es_test_acc_mean"]),
            "lthLastDiff": pct(L["diff_mean"]), "lthLastDiffCi": pct(L["ci95"]),
            "lthWins": str(int((acc["sign"] > 0).sum())), "lthLosses": str(int((acc["sign"] < 0).sum())),
            "lthTies": str(int((acc["sign"] == 0).sum())), "lthCompared": str(len(acc)),
            "lthLateWins": str(int((late["sign"] > 0).sum())), "lthLateLosses": str(int((late["sign"] < 0).sum())),
            "lthFaster": str(int((it["sign"] < 0).sum())), "lthSlower": str(int((it["sign"] > 0).sum())),
            "lthDenseIter": f"{dense_iter:.0f}",
            "lthEarlierThanDense": str(int((tk["es_iter_mean"] < dense_iter).sum())),
            "lthValImages": "500", "lthTestImages": "1,500", "lthTrainImages": "3,000", "lthHiddenRate": "20",
            "lthOutputRate": "10", "lthCi": "95"}


def pensia_table(js: Path, gen: Path) -> dict:
    """Pensia et al. Exp. 1 (``python experiments/pensia_repro.py``) next to the published run, as
    ``generated/pensia_table.tex``."""
    d = json.loads(js.read_text())
    pub = d["published"]
    lines = [r"\begin{tabular}{@{}p{0.3\linewidth}rrrrl@{}}",
             r"\toprule run & kept coeff. & kept/target & outside $\varepsilon$ & solve (s) & test acc.\\ \midrule",
             f"published (Gurobi, 36 cores, full MNIST) & {pub['coefficients_after']:,} & {pub['kept_over_target']:.2f} "
             f"& 0 & {pub['solve_seconds']:,} & not measured\\\\"]
    label = {"row": "coefficients per row (their code)", "weight": "coefficients per weight"}
    for r in d["runs"]:
        lines.append(f"ours, {label.get(r['variant'], r['variant'])}, {r['mode']} & {r['coefficients_after']:,} & "
                     f"{r['kept_over_target']:.2f} & {r['failures']} & {r['solve_seconds']:.0f} & "
                     f"{r['approx_test_acc']:.3f}\\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    (gen / "pensia_table.tex").write_text("\n".join(lines) + "\n")
    closest = [r for r in d["runs"] if r["variant"] == "row" and r["mode"] == "closest"]
    c = closest[0] if closest else d["runs"][0]
    return {"pensiaTargetAcc": f"{d['target']['test_acc']:.3f}", "pensiaPubSeconds": f"{pub['solve_seconds']:,}",
            "pensiaOurSeconds": f"{c['solve_seconds']:.0f}", "pensiaOurAcc": f"{c['approx_test_acc']:.3f}",
            "pensiaEpochs": str(d["setup"].get("epochs", "n/a")),
            "pensiaCoefficients": str(d["setup"].get("n_coefficients", "n/a"))}


def tightness_tex(bench: Path, gen: Path) -> dict:
    """The tightness story from the benchmark results of the sharper-bounds and certificate work (issues 11-12),
    when they exist: ``budget_ratio.json`` (guaranteed / empirical uniform budget, LeNet-300-100 shape, exact
    errors) and ``certificates.json`` (certificate / 128-restart PGD on trained networks). Writes
    ``generated/tightness.tex`` defining ``\\tightnessParagraph``; returns its number macros. Nothing is written when
    neither file exists (the paper then omits the paragraph)."""
    parts, nums = [], {}
    f = bench / "tightness.json"
    if f.exists():
        d = json.loads(f.read_text())
        lin, relu = d.get("linear_summary", {}), d.get("relu_summary", {})
        if "new_default" in lin and "old_default" in lin:
            # the full ranges over every family of the benchmark (the abstract and the summary quote these)
            nums.update(tightLinMin=fmt(lin["new_default"]["min"], 2), tightLinMax=fmt(lin["new_default"]["max"], 2))
            if "new_default" in relu:
                nums.update(tightReluMin=fmt(relu["new_default"]["min"], 2),
                            tightReluMax=fmt(relu["new_default"]["max"], 2))
            nums.update(tightLinOld=fmt(lin["old_default"]["median"], 2), tightLinNew=fmt(lin["new_default"]["median"], 2),
                        tightLinNewPninety=fmt(lin["new_default"]["p90"], 2),
                        tightLinNewMin=fmt(lin["new_default"]["min"], 2),
                        tightLinFamilies=str(lin["new_default"].get("n", "n/a")))
            g = d.get("grid", {}).get("linear", {})
            grid = (f"widths up to {max(g['widths'])}, depth up to {max(g['depths'])}, fractions up to "
                    f"{max(g['fractions']):g}; " if {"widths", "depths", "fractions"} <= set(g) else "")
            txt = ("\\paragraph{Bound against exact error.} Over \\tightLinFamilies{} families of linear networks "
                   f"drawn from the assumed law ({grid}"
                   "\\texttt{benchmarks/bench\\_tightness.py}) the median ratio of the bound to the exact error is "
                   "\\tightLinNew{} with the sharper statements of THEORY \\S9 (90th percentile \\tightLinNewPninety, "
                   "smallest \\tightLinNewMin), against \\tightLinOld{} for the Bernstein bound of "
                   "Section~\\ref{sec:derived}")
            if "calibrated" in lin:
                nums["tightLinCal"] = fmt(lin["calibrated"]["median"], 3)
                txt += "; a bound calibrated by simulation (THEORY \\S10) reaches \\tightLinCal"
            if "new_default" in relu:
                nums.update(tightReluNew=fmt(relu["new_default"]["median"], 2),
                            tightReluOld=fmt(relu.get("old_default", {}).get("median", float("nan")), 2))
                txt += (". On ReLU networks the ratio to the PGD lower bound is \\tightReluNew{} "
                        "(Bernstein: \\tightReluOld)")
            parts.append(txt + ". An error in a constant larger than these ratios would now show up as a violation "
                         "in the tests; at the ratios of the Bernstein bound it could not.")
    f = bench / "budget_ratio.json"
    if f.exists():
        d = json.loads(f.read_text())
        rows = {(r["method"], round(float(r["rel"]), 4)): r for r in d.get("rows", [])}
        r_m, r_r = rows.get(("magnitude", 0.1)), rows.get(("random", 0.1))
        if r_m and r_r:
            def ratio(r, k):
                v = r.get(k)
                return fmt(v, 2) if v is not None else "n/a (empirical budget 0)"

            nums.update(tightBudgetMagOld=ratio(r_m, "ratio_analytic_bernstein_baseline"),
                        tightBudgetMagNew=ratio(r_m, "ratio_analytic"), tightBudgetMagCal=ratio(r_m, "ratio_calibrated"),
                        tightBudgetRandOld=ratio(r_r, "ratio_analytic_bernstein_baseline"),
                        tightBudgetRandNew=ratio(r_r, "ratio_analytic"),
                        tightBudgetRandCal=ratio(r_r, "ratio_calibrated"), tightBudgetTrials=str(d.get("trials", "n/a")))
            parts.append(
                "\\paragraph{Guaranteed against empirical budget.} For the LeNet-300-100 shape under the assumed law "
                "(linear activations, so the error is exact) at a relative error of one tenth, the guaranteed uniform "
                "budget is \\tightBudgetMagNew{} (magnitude) and \\tightBudgetRandNew{} (random) times the empirical one "
                "(the Bernstein bound of Section~\\ref{sec:derived}: \\tightBudgetMagOld{} and \\tightBudgetRandOld{}); "
                "the budget calibrated from \\tightBudgetTrials{} simulated networks reaches \\tightBudgetMagCal{} and "
                "\\tightBudgetRandCal{} (\\texttt{benchmarks/bench\\_budget\\_ratio.py}).")
    f = bench / "budget_ratio_trained.json"
    if f.exists():  # the certified budget beside what the trained network tolerates (issue 21 item 6)
        rows = json.loads(f.read_text()).get("rows", [])
        names = {"lenet_300_100": "LeNet-300-100 (MNIST 5k)", "digits_mlp": "a digits MLP",
                 "digits_cnn_maxpool": "a digits CNN with max pooling",
                 "digits_residual_bn": "a residual digits net with BatchNorm"}
        cells = []
        for i, r in enumerate(rows):
            emp = float(r["empirical"]["fraction"])
            if emp <= 0:
                continue
            key = "tightTrained" + "ABCDEFGH"[i]
            nums[key + "Cert"] = fmt(100 * float(r["after"]["uniform_fraction"]), 3)
            nums[key + "Emp"] = fmt(100 * emp, 3)
            nums[key + "Ratio"] = fmt(float(r["after"]["uniform_fraction"]) / emp, 2)
            nums[key + "Before"] = fmt(float(r["before"]["uniform_fraction"]) / emp, 2)
            cert = str(r["after"].get("certificate", "")).replace("tight:", "").replace("lemma-a", "Cert-D")
            cells.append(f"{names.get(r['network'], r['network'])}: \\{key}Cert\\% certified against "
                         f"\\{key}Emp\\% tolerated (ratio \\{key}Ratio, Cert-D alone \\{key}Before; certificate "
                         f"inverted: {cert})")
        if cells:
            parts.append("\\paragraph{Certified budget against what the network tolerates.} At a tolerance of one tenth "
                         "of the certified $\\sup_{\\|x\\|\\le1}\\|F(x)\\|$, the largest uniform fraction of "
                         "weights that the tightest certificate lets us prune (\\texttt{probprune budget --model}, "
                         "THEORY \\S11.7) beside the largest fraction whose many-restart PGD error stays within the "
                         "tolerance, on trained networks (\\texttt{bench\\_budget\\_ratio.py --trained}): "
                         + "; ".join(cells) + ". Where the empirical fraction is 1 the tolerance exceeds the error of "
                         "pruning everything, because the certified scale of a network with biases is loose.")
    f = bench / "rates.json"
    if f.exists():  # rates, not only constants (THEORY §9.10; benchmarks/bench_rates.py)
        d = json.loads(f.read_text())
        k = d["kinds"]
        for kind, tag in (("magnitude", "Mag"), ("random", "Rand")):
            v = k[kind]
            nums.update({f"rate{tag}Lower": fmt(v["slope_lower"], 3), f"rate{tag}Measured": fmt(v["slope_measured"], 3),
                         f"rate{tag}Upper": fmt(v["slope_upper"], 3),
                         f"rate{tag}GapLo": fmt(min(v["measured_over_lower"]), 3),
                         f"rate{tag}GapHi": fmt(max(v["measured_over_lower"]), 3),
                         f"rate{tag}UpLo": fmt(min(v["upper_over_measured"]), 3),
                         f"rate{tag}UpHi": fmt(max(v["upper_over_measured"]), 3)})
        nums.update(rateQmin=fmt(min(d["fractions"]), 2), rateQmax=fmt(max(d["fractions"]), 2))
        parts.append("\\paragraph{Rates, not only constants.} A lower bound from the largest row and column norm of the "
                     "error matrix (THEORY \\S9.10, \\texttt{benchmarks/bench\\_rates.py}, one LeNet-300-100 layer, "
                     "fractions \\rateQmin{} to \\rateQmax) grows with log-log slope \\rateMagLower{} for magnitude "
                     "and \\rateRandLower{} for random pruning, the rates $3/2$ and $1/2$ of the theory; the measured "
                     "$\\|E\\|$ has slopes \\rateMagMeasured{} and \\rateRandMeasured{} and stays \\rateMagGapLo{} to "
                     "\\rateMagGapHi{} times above the lower bound. The default upper bound has slopes only "
                     "\\rateMagUpper{} and \\rateRandUpper{} on this range and is \\rateMagUpLo{} to \\rateMagUpHi{} "
                     "times the truth (magnitude): at small fractions the upper bounds lose the rate, not only a "
                     "constant.")
    f = bench / "certificates.json"
    if f.exists():
        cj = json.loads(f.read_text())
        sm = cj.get("summary", {})
        ratios = [fr["new_over_pgd"] for net in cj.get("networks", []) for fr in net.get("fractions", [])
                  if fr.get("new_over_pgd") is not None]
        if ratios:  # the closest any certificate came to its attack (a ratio below 1 would be a violation)
            nums["tightCertMinRatio"] = fmt(min(ratios), 3)
        if "ball_new_over_pgd_median" in sm:
            nums.update(tightCertOld=fmt(sm.get("ball_old_over_pgd_median", float("nan")), 2),
                        tightCertNew=fmt(sm["ball_new_over_pgd_median"], 2),
                        tightCertRegion=fmt(sm.get("region_new_over_pgd_median", float("nan")), 2),
                        tightCertSound="yes" if sm.get("all_sound") else "\\textbf{no}")
            txt = ("\\paragraph{Certificate against attack.} On trained networks the median ratio of the certificate to "
                   "a many-restart PGD attack on the ball is \\tightCertNew{} with the tighter certificates (Lemma A "
                   "alone: \\tightCertOld{}), and \\tightCertRegion{} on small regions around data; every certificate "
                   "was above its attack: \\tightCertSound{} (\\texttt{benchmarks/bench\\_certificates.py}).")
            if "ball_new_without_sdp_over_pgd_median" in sm and sm.get("networks_with_sdp"):
                nums.update(tightCertNoSdp=fmt(sm["ball_new_without_sdp_over_pgd_median"], 2),
                            tightCertSdpNets=str(len(sm["networks_with_sdp"])))
                txt += (" The median includes a cross-network semidefinite relaxation (THEORY \\S12.6; multipliers "
                        "from a numerical solver, the bound re-certified in floating point) on the \\tightCertSdpNets{} "
                        "networks small enough for it; without it the median is \\tightCertNoSdp.")
            parts.append(txt)
    if parts:
        body = " ".join(parts)
        (gen / "tightness.tex").write_text("% generated by `probprune experiment paper` from benchmarks/results; do not edit\n"
                                           + "\\newcommand{\\tightnessParagraph}{" + body + "}\n")
    elif (gen / "tightness.tex").exists():
        (gen / "tightness.tex").unlink()
    return nums


def generate(results: str | Path = "results/figures", paper: str | Path = "paper", run_proofs: bool = True,
             fallback: str | Path | None = None, export: str | Path | None = "auto") -> dict:
    """``fallback``: a second results root used for experiments missing from ``results`` (e.g. full-size results
    first, small-size ones for the rest); the experiments table records each figure's size. ``export``: where the
    auditable summaries go (``"auto"``: ``<paper>/../experiments/results/figures``; None: not exported); the
    committed LTH table and Pensia reproduction are read from ``<export>/..``."""
    results, paper = Path(results), Path(paper)
    exp_root = (paper.resolve().parent / "experiments" / "results" / "figures") if export == "auto" else \
        (Path(export) if export is not None else None)
    roots = [results] + ([Path(fallback)] if fallback is not None else [])
    gen = paper / "generated"
    (gen / "figures").mkdir(parents=True, exist_ok=True)
    numbers: dict[str, str] = {}
    captions: list[str] = []
    rows, figures, missing = [], [], []
    total_s = 0.0
    for n in names():
        exp = get(n)
        f = next((r / n / "summary.json" for r in roots if (r / n / "summary.json").exists()),
                 results / n / "summary.json")
        cap = "capFig" + _macro(n)
        if not f.exists():
            missing.append(n)
            captions.append(f"\\newcommand{{\\{cap}}}{{(Figure not generated: run \\texttt{{probprune experiment "
                            f"run {tex_escape(n)}}}.)}}")
            continue
        s = json.loads(f.read_text())
        summ = s.get("summary", {})
        for k, v in summ.get("numbers", {}).items():
            if k in numbers:
                raise ProbPruneError(f"number macro {k!r} defined by two experiments")
            numbers[k] = str(v)
        held = summ.get("theory_held")
        verdict = {True: " Theory held: yes.", False: " Theory held: \\textbf{no}.", None: ""}[held]
        text = re.sub(r"(?<!\\)%", r"\\%", summ.get("caption", ""))  # a bare % would comment out the rest
        text = re.sub(r"(?<!\\)#", r"\\#", text)  # a bare # is a macro parameter inside \newcommand
        captions.append(f"\\newcommand{{\\{cap}}}{{{text}{verdict}}}")
        src = f.parent / "figure.pdf"
        if not src.exists() and (gen / "figures" / f"{n}.pdf").exists():
            figures.append(f"figures/{n}.pdf")  # the committed figure of this exported run
        if src.exists():
            shutil.copyfile(src, gen / "figures" / f"{n}.pdf")
            figures.append(f"figures/{n}.pdf")
        total_s += float(s.get("seconds", 0.0))
        if exp_root is not None and f.parent.resolve() != (exp_root / n).resolve():
            prov = export_summary(f.parent, exp_root, n, s.get("size", "?"))
        else:  # regenerating from the committed exports themselves: their provenance stands
            prov = s.get("provenance") or {"config_hash": config_hash(s.get("config", {}))}
        rows.append((exp.figure, n, s.get("size", "?"), float(s.get("seconds", 0.0)), held, prov["config_hash"]))
    numbers["expTotalSeconds"] = f"{total_s:.0f}"
    numbers["expTotalMinutes"] = f"{total_s / 60:.1f}"
    sizes = sorted({r[2] for r in rows})
    numbers["expSize"] = "/".join(sizes) if sizes else "none"
    numbers["expHeld"] = str(sum(1 for r in rows if r[4] is True))
    numbers["expClaims"] = str(sum(1 for r in rows if r[4] is not None))
    numbers["expCount"] = str(len(rows))

    pr = _proofs(gen, run_proofs)
    if pr:
        sm = pr["summary"]
        numbers.update(proofsChecks=str(sm["checks"]), proofsPass=str(sm["pass"]), proofsFail=str(sm["fail"]),
                       proofsError=str(sm["error"]), proofsSkip=str(sm["skip"]),
                       proofsStatements=str(sm["d_statements"]), proofsCovered=str(sm["d_statements_covered"]),
                       proofsSymbolic=str(sm["by_method"].get("symbolic", 0)),
                       proofsNumeric=str(sm["by_method"].get("numeric", 0)),
                       proofsBoth=str(sm["by_method"].get("symbolic+numeric", 0)))
        lines = [r"\begin{longtable}{@{}>{\raggedright\arraybackslash}p{0.23\linewidth}p{0.05\linewidth}p{0.15\linewidth}>{\raggedright\arraybackslash}p{0.37\linewidth}l@{}}",
                 r"\toprule check & ref & method & statement & status\\ \midrule \endhead"]
        for c in pr["checks"]:
            st = c["status"] if c["status"] == "PASS" else f"\\textbf{{{c['status']}}}"
            # break points inside long ids and identifiers (the table overflowed by up to 24 pt)
            cid = tex_escape(c["id"]).replace("-", "-\\allowbreak{}")
            stmt = tex_escape(c["statement"]).replace("\\_", "\\_\\allowbreak{}").replace("(", "(\\allowbreak{}")
            lines.append(f"\\texttt{{\\footnotesize {cid}}} & {tex_escape(c['ref'])} & {tex_escape(c['method']).replace('+', '+ ')} & "
                         f"{stmt} & {st}\\\\")
        lines += [r"\bottomrule", r"\end{longtable}"]
        (gen / "proofs_table.tex").write_text("\n".join(lines) + "\n")
    else:
        for k in ("proofsChecks", "proofsPass", "proofsFail", "proofsError", "proofsSkip", "proofsStatements",
                  "proofsCovered", "proofsSymbolic", "proofsNumeric", "proofsBoth"):
            numbers[k] = "n/a"
        (gen / "proofs_table.tex").write_text("(proofs\\_check was not run.)\n")

    if exp_root is not None:
        committed = exp_root.parent
        if any((committed / "lth").glob("seed*.csv")):
            numbers.update(lth_table(committed / "lth", gen))
        if (committed / "pensia_repro.json").exists():
            numbers.update(pensia_table(committed / "pensia_repro.json", gen))
        numbers.update(tightness_tex(paper.resolve().parent / "benchmarks" / "results", gen))
    (gen / "summary.tex").write_text(_summary_paragraph(numbers, {r[1]: r[4] for r in rows}) + "\n")
    t = [r"\begin{tabular}{@{}rllrll@{}}",
         r"\toprule fig. & experiment & size & seconds & theory held & config hash\\ \midrule"]
    for fig, n, size, sec, held, h in sorted(rows):
        held_s = {True: "yes", False: r"\textbf{no}", None: "--"}[held]
        # the paper's own figure number (labels follow the convention fig:<name>), not the registry's order
        t.append(f"\\ref{{fig:{n}}} & \\texttt{{{tex_escape(n)}}} & {size} & {sec:.0f} & {held_s} & "
                 f"\\texttt{{{h[:8]}}}\\\\")
    t += [r"\bottomrule", r"\end{tabular}"]
    (gen / "experiments_table.tex").write_text("\n".join(t) + "\n")
    nums = ["% generated by `probprune experiment paper` from " + " then ".join(map(str, roots)) + "; do not edit"]
    nums += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in sorted(numbers.items())]
    (gen / "numbers.tex").write_text("\n".join(nums) + "\n")
    (gen / "captions.tex").write_text("% generated by `probprune experiment paper`; do not edit\n"
                                      + "\n".join(captions) + "\n")
    return {"generated": str(gen), "figures": figures, "n_numbers": len(numbers), "missing": missing,
            "numbers": numbers}


def _summary_paragraph(numbers: dict, held: dict) -> str:
    """The paper's result summary, written from the experiments' verdicts and numbers (never by hand)."""
    apriori = [n for n in ("fraction_scaling", "bound_bracket", "coverage") if n in held]
    parts = []
    if apriori:
        bad = [n.replace("_", r"\_") for n in apriori if held[n] is False]
        if not bad:
            parts.append("On networks drawn from the assumed law the derived bounds held in every trial "
                         "(Figures~\\ref{fig:fraction_scaling}--\\ref{fig:coverage}).")
        else:
            parts.append("On networks drawn from the assumed law the theory did \\textbf{not} hold in: "
                         + ", ".join(bad) + ".")
    if "tightLinMin" in numbers and "tightReluMax" in numbers:
        parts.append(f"The a-priori bounds (the default per-term minimum of Section~\\ref{{sec:derived}}) are loose: "
                     f"{numbers['tightLinMin']} to {numbers['tightLinMax']} times the exact error over every family of "
                     f"linear networks in the benchmark and {numbers['tightReluMin']} to {numbers['tightReluMax']} "
                     "times the PGD lower bound of ReLU networks.")
    if "figFourRatioMin" in numbers:
        parts.append(f"The networks tolerate {numbers['figFourRatioMin']} to {numbers['figFourRatioMax']} times the "
                     "guaranteed prunable fraction (Figure~\\ref{fig:budget_curves}).")
    if "figSevenSpecRatioMax" in numbers:
        parts.append(f"On trained networks the spectral norm of a layer is up to {numbers['figSevenSpecRatioMax']} "
                     "times that of its own entries randomly permuted, so independence fails "
                     "(Figure~\\ref{fig:trained}); the per-network certificate still applies there: Cert-D (Lemma A with "
                     f"certified norms, the certificate of that figure) at {numbers['figSevenCertPgdMin']} to "
                     f"{numbers['figSevenCertPgdMax']} times the PGD worst case"
                     + (f", the tighter certificates of \\S12 at a median of {numbers['tightCertNew']} times on the "
                        "benchmark's trained networks." if "tightCertNew" in numbers else "."))
    return "\\paragraph{Summary.} " + (" ".join(parts) if parts else "No experiment results were available.")
