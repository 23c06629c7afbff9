"""``probprune experiment``: list and run the named experiments that regenerate the paper's figures (issue 7).

    probprune experiment list [--json]
    probprune experiment run NAME [--full] [--out DIR] [--json]
    probprune experiment run all  [--full] [--out DIR] [--json]
    probprune experiment paper [--results DIR] [--fallback DIR] [--paper DIR] [--json]   # write paper/generated/
"""
from __future__ import annotations

import time

import typer

from probprune.cli.app import app
from probprune.cli.common import check_output_path, emit, json_option, make_console
from probprune.core.errors import ProbPruneError

sub = typer.Typer(help="Named experiments: every figure and table of the paper, small (default) or --full size.",
                  no_args_is_help=True)
app.add_typer(sub, name="experiment")


@sub.command("list")
def list_cmd(as_json: bool = json_option()):
    """List the registered experiments (figure number, name, what it shows)."""
    from probprune.experiments import get, names

    data = {"experiments": [{"name": n, "figure": get(n).figure, "title": get(n).title,
                             "description": get(n).description} for n in names()]}

    def render(d):
        from rich.table import Table

        t = Table(title="probprune experiments (probprune experiment run NAME | all)")
        for c in ("fig", "name", "what it shows"):
            t.add_column(c)
        for e in d["experiments"]:
            t.add_row(str(e["figure"]), e["name"], e["description"])
        make_console().print(t)

    emit(data, as_json, render)


@sub.command("run")
def run_cmd(
    name: str = typer.Argument(..., help="experiment name (see `probprune experiment list`) or `all`"),
    full: bool = typer.Option(False, "--full", help="the paper's size instead of the small default"),
    out: str = typer.Option(None, "--out", help="output root (default results/figures, results/figures/full)"),
    as_json: bool = json_option(),
):
    """Run one experiment (or all): writes data.csv, figure.png/.pdf and summary.json into OUT/NAME/."""
    from probprune.experiments import names, run_experiment

    if name != "all" and name not in names():
        raise ProbPruneError(f"unknown experiment {name!r}; one of: all, {', '.join(names())}")
    check_output_path(out, "--out", kind="dir")
    todo = names() if name == "all" else [name]
    size = "full" if full else "small"
    t0 = time.perf_counter()
    results = []
    for n in todo:
        r = run_experiment(n, size=size, out=out)
        results.append({"name": r.name, "out_dir": r.out_dir, "seconds": round(r.seconds, 1),
                         "figures": r.figures, "tables": r.tables, "theory_held": r.summary.get("theory_held"),
                         "caption": r.summary.get("caption", ""), "numbers": r.summary.get("numbers", {})})
    data = {"size": size, "seconds": round(time.perf_counter() - t0, 1), "experiments": results}

    def render(d):
        from rich.table import Table

        t = Table(title=f"experiments ({d['size']}), {d['seconds']} s")
        for c in ("name", "seconds", "theory held", "output"):
            t.add_column(c)
        for e in d["experiments"]:
            th = e["theory_held"]
            t.add_row(e["name"], str(e["seconds"]), "-" if th is None else ("yes" if th else "[bold red]NO[/]"),
                      e["out_dir"])
        make_console().print(t)

    emit(data, as_json, render)


@sub.command("paper")
def paper_cmd(
    results: str = typer.Option("results/figures", "--results", help="results root the experiments wrote to"),
    fallback: str = typer.Option(None, "--fallback", help="second results root for experiments missing from "
                                 "--results (e.g. --results results/figures/full --fallback results/figures)"),
    paper: str = typer.Option("paper", "--paper", help="paper folder (writes PAPER/generated/)"),
    proofs: bool = typer.Option(True, "--proofs/--no-proofs", help="run `python -m proofs_check --json` too"),
    as_json: bool = json_option(),
):
    """Write the paper's generated inputs (numbers.tex, captions, figures, proofs-check table) from the results."""
    from pathlib import Path

    from probprune.experiments import names
    from probprune.experiments.paper import generate

    # checked before anything is written: the results roots must exist and hold at least one experiment's summary
    roots = [results] + ([fallback] if fallback is not None else [])
    for r, opt in zip(roots, ("--results", "--fallback")):
        if not Path(r).is_dir():
            raise ProbPruneError(f"{opt} {r} is not a folder (run `probprune experiment run all` first)")
    if not any((Path(r) / n / "summary.json").is_file() for r in roots for n in names()):
        raise ProbPruneError(f"no experiment results under {', '.join(map(str, roots))} (no <name>/summary.json); "
                             "run `probprune experiment run all` first")
    check_output_path(Path(paper) / "generated", "--paper", kind="dir")

    data = generate(results, paper, run_proofs=proofs, fallback=fallback)

    def render(d):
        typer.echo(f"wrote {d['generated']}: {len(d['figures'])} figures, {d['n_numbers']} number macros, "
                   f"{len(d['missing'])} experiments missing {d['missing']}")

    emit(data, as_json, render)
