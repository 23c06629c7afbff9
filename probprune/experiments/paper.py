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

from ..errors import ProbPruneError
from .base import get, names


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


def generate(results: str | Path = "results/figures", paper: str | Path = "paper", run_proofs: bool = True,
             fallback: str | Path | None = None) -> dict:
    """``fallback``: a second results root used for experiments missing from ``results`` (e.g. full-size results
    first, small-size ones for the rest); the experiments table records each figure's size."""
    results, paper = Path(results), Path(paper)
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
        captions.append(f"\\newcommand{{\\{cap}}}{{{text}{verdict}}}")
        src = f.parent / "figure.pdf"
        if src.exists():
            shutil.copyfile(src, gen / "figures" / f"{n}.pdf")
            figures.append(f"figures/{n}.pdf")
        total_s += float(s.get("seconds", 0.0))
        rows.append((exp.figure, n, s.get("size", "?"), float(s.get("seconds", 0.0)), held))
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
        lines = [r"\begin{longtable}{@{}p{0.23\linewidth}p{0.05\linewidth}p{0.15\linewidth}>{\raggedright\arraybackslash}p{0.37\linewidth}l@{}}",
                 r"\toprule check & ref & method & statement & status\\ \midrule \endhead"]
        for c in pr["checks"]:
            st = c["status"] if c["status"] == "PASS" else f"\\textbf{{{c['status']}}}"
            lines.append(f"\\texttt{{\\footnotesize {tex_escape(c['id'])}}} & {tex_escape(c['ref'])} & {tex_escape(c['method']).replace('+', '+ ')} & "
                         f"{tex_escape(c['statement'])} & {st}\\\\")
        lines += [r"\bottomrule", r"\end{longtable}"]
        (gen / "proofs_table.tex").write_text("\n".join(lines) + "\n")
    else:
        for k in ("proofsChecks", "proofsPass", "proofsFail", "proofsError", "proofsSkip", "proofsStatements",
                  "proofsCovered", "proofsSymbolic", "proofsNumeric", "proofsBoth"):
            numbers[k] = "n/a"
        (gen / "proofs_table.tex").write_text("(proofs\\_check was not run.)\n")

    (gen / "summary.tex").write_text(_summary_paragraph(numbers, {r[1]: r[4] for r in rows}) + "\n")
    t = [r"\begin{tabular}{@{}rllrl@{}}", r"\toprule fig. & experiment & size & seconds & theory held\\ \midrule"]
    for fig, n, size, sec, held in sorted(rows):
        held_s = {True: "yes", False: r"\textbf{no}", None: "--"}[held]
        t.append(f"{fig} & \\texttt{{{tex_escape(n)}}} & {size} & {sec:.0f} & {held_s}\\\\")
    t += [r"\bottomrule", r"\end{tabular}"]
    (gen / "experiments_table.tex").write_text("\n".join(t) + "\n")
    nums = ["% generated by `probprune experiment paper` from " + " then ".join(map(str, roots)) + "; do not edit"]
    nums += [f"\\newcommand{{\\{k}}}{{{v}}}" for k, v in sorted(numbers.items())]
    (gen / "numbers.tex").write_text("\n".join(nums) + "\n")
    (gen / "captions.tex").write_text("% generated by `probprune experiment paper`; do not edit\n"
                                      + "\n".join(captions) + "\n")
    return {"generated": str(gen), "figures": figures, "n_numbers": len(numbers), "missing": missing,
            "numbers": numbers}


def macro_names(paper: str | Path = "paper") -> set[str]:
    """Names of the macros defined in ``paper/generated/numbers.tex``."""
    import re

    f = Path(paper) / "generated" / "numbers.tex"
    return set(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}", f.read_text())) if f.exists() else set()


def _summary_paragraph(numbers: dict, held: dict) -> str:
    """The paper's result summary, written from the experiments' verdicts and numbers (never by hand)."""
    apriori = [n for n in ("fraction_scaling", "bound_bracket", "coverage") if n in held]
    parts = []
    if apriori:
        bad = [n.replace("_", r"\_") for n in apriori if held[n] is False]
        if not bad:
            parts.append("On networks drawn from the assumed law the derived bounds held in every trial "
                         "(Figures~\\ref{fig:fraction}--\\ref{fig:coverage}).")
        else:
            parts.append("On networks drawn from the assumed law the theory did \\textbf{not} hold in: "
                         + ", ".join(bad) + ".")
    if "figOneLooseMin" in numbers and "figTwoBoundLooseMax" in numbers:
        parts.append(f"The bounds are loose: {numbers['figOneLooseMin']} to {numbers['figOneLooseMax']} times the "
                     f"exact error of linear networks and {numbers['figTwoBoundLooseMin']} to "
                     f"{numbers['figTwoBoundLooseMax']} times the PGD lower bound of ReLU networks.")
    if "figFourRatioMin" in numbers:
        parts.append(f"The networks tolerate {numbers['figFourRatioMin']} to {numbers['figFourRatioMax']} times the "
                     "guaranteed prunable fraction (Figure~\\ref{fig:budget}).")
    if "figSevenSpecRatioMax" in numbers:
        parts.append(f"On trained networks the spectral norm of a layer is up to {numbers['figSevenSpecRatioMax']} "
                     "times that of its own entries randomly permuted, so independence fails "
                     "(Figure~\\ref{fig:trained}); the per-network certificate still applies there, at "
                     f"{numbers['figSevenCertPgdMin']} to {numbers['figSevenCertPgdMax']} times the PGD worst case.")
    return "\\paragraph{Summary.} " + (" ".join(parts) if parts else "No experiment results were available.")
