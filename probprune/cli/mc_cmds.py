"""``probprune mc``: Monte Carlo validation of the bounds (THEORY.md §6).

CONFIG is a .yaml/.yml/.toml file or the name of a shipped config (``mc_linear``, ``mc_relu``: probprune/configs).

    probprune mc plan CONFIG            validate a sweep, show its hash, chunks and trial counts
    probprune mc run CONFIG             run or resume it (results/mc/<hash>/), then print the report
    probprune mc report RUN_DIR         violation rates with Clopper-Pearson limits, verdicts, looseness, fits
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from probprune.cli.app import app
from probprune.cli.common import check_int, check_output_path, emit, json_option, make_console
from probprune.core.errors import ProbPruneError

mc_app = typer.Typer(help="Monte Carlo validation: measured error of pruned random networks vs the bounds.",
                     no_args_is_help=True)
app.add_typer(mc_app, name="mc")


def _load(config: Path, sets: Optional[List[str]], n_trials: Optional[int], batch_size: Optional[int]):
    from probprune.configs import resolve
    from probprune.mc.config import load_config, parse_override

    config = resolve(config)
    if n_trials is not None:
        check_int(n_trials, "--n-trials", 1)
    if batch_size is not None:
        check_int(batch_size, "--batch-size", 1)
    ov = dict(parse_override(s) for s in (sets or []))
    if n_trials is not None:
        ov["n_trials"] = n_trials
    if batch_size is not None:
        ov["batch_size"] = batch_size
    return load_config(config, ov)


def _fmt(x, nd=3):
    try:
        import math

        x = float(x)
        if math.isnan(x):
            return "-"
        if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e4):
            return f"{x:.{nd}g}"
        return f"{x:.{nd}f}" if abs(x) < 10 else f"{x:.{max(nd - 2, 1)}f}"
    except (TypeError, ValueError):
        return str(x)


def _net(label: str) -> str:
    return label.replace("fcn:", "") if label.startswith("fcn:") else label[:40]


def _report_data(run_dir: Path, alpha: Optional[float]) -> dict:
    from probprune.mc.report import report
    from probprune.mc.runner import verify_run

    cfg, df, v = verify_run(run_dir)  # refuses (one line) on any missing, damaged or extra chunk
    rep = report(df, alpha if alpha is not None else cfg.alpha)
    s = rep["configurations"]
    return {
        "run_dir": str(run_dir),
        "config_hash": cfg.hash,
        "complete": v.complete,
        "n_rows": int(len(df)),
        "n_rows_expected": int(v.expected_rows),
        "integrity": v.summary(),
        "alpha": alpha if alpha is not None else cfg.alpha,
        "verdict_counts": rep["verdict_counts"],
        "refuted": rep["refuted"].to_dict(orient="records"),
        "configurations": s.to_dict(orient="records"),
        "fraction_fits": rep["fraction_fits"].to_dict(orient="records"),
        "width_fits": rep["width_fits"].to_dict(orient="records"),
    }


def _render_report(d: dict) -> None:
    from rich.table import Table

    con = make_console()
    err = make_console(stderr=True)
    status = "complete" if d["complete"] else "INCOMPLETE (resume with `probprune mc run` on the same config)"
    ig = d["integrity"]
    seal = (f"{ig['chunks']} chunks verified (sha256)" if ig["checksums"] == "verified" and d["complete"]
            else f"checksums {ig['checksums']}" if ig["checksums"] != "verified" else "finished chunks verified (sha256)")
    con.print(f"[bold]Monte Carlo run[/bold] {d['run_dir']}  ({d['n_rows']} of {d['n_rows_expected']} rows, "
              f"{status}; {seal}); one-sided Clopper-Pearson at alpha = {d['alpha']}", soft_wrap=True)
    t = Table(title="violation rate vs delta per configuration (THEORY §6)", show_lines=False)
    for c in ("network", "act", "law", "method", "q", "delta", "T", "bound", "mean err", "LB kind", "V_c", "V_u",
              "CP low(V_c)", "CP up(V_u)", "verdict", "bound/LB med [q10,q90]", "bound/UB med"):
        t.add_column(c, justify="right" if c not in ("network", "act", "law", "method", "verdict", "LB kind") else "left")
    for r in d["configurations"]:
        v = r["verdict"]
        style = {"refuted": "bold white on red", "consistent": "green", "inconclusive": "yellow"}.get(v, "dim")
        t.add_row(_net(r["network"]), r["activation"], r["law"], r["method"], _fmt(r["fraction"]),
                  _fmt(r["delta"]), str(r["T"]), _fmt(r["bound"]), _fmt(r["mean_lb"], 4), r["lb_method"],
                  str(r["V_c"]), str(r["V_u"]), _fmt(r["rate_lower"], 4), _fmt(r["rate_upper"], 4),
                  f"[{style}]{v}[/{style}]",
                  f"{_fmt(r['loose_lb_median'])} [{_fmt(r['loose_lb_q10'])},{_fmt(r['loose_lb_q90'])}]",
                  _fmt(r["loose_ub_median"]))
    con.print(t)
    if d["fraction_fits"]:
        f = Table(title="error ~ fraction^k (log-log least squares; theory first order: 3/2 magnitude, 1/2 random)")
        for c in ("network", "act", "law", "method", "fractions", "k (error)", "se", "r2", "theory", "k (bound)"):
            f.add_column(c)
        for r in d["fraction_fits"]:
            f.add_row(_net(r["network"]), r["activation"], r["law"], r["method"],
                      ",".join(_fmt(x, 2) for x in r["fractions"]), _fmt(r["err_exponent"]),
                      _fmt(r["err_exponent_se"]), _fmt(r["err_r2"], 4), _fmt(r["theory"], 2),
                      _fmt(r.get("bound_exponent", float("nan"))))
        con.print(f)
    if d["width_fits"]:
        w = Table(title="growth with hidden width: mean error ~ width^k and bound ~ width^k")
        for c in ("depth", "act", "law", "method", "q", "widths", "mean error", "k (error)", "bound", "k (bound)"):
            w.add_column(c)
        for r in d["width_fits"]:
            w.add_row(str(r["depth"]), r["activation"], r["law"], r["method"], _fmt(r["fraction"]),
                      ",".join(map(str, r["widths"])), ",".join(_fmt(x, 4) for x in r["mean_err"]),
                      _fmt(r["err_exponent"]), ",".join(_fmt(x) for x in r.get("bound", [])),
                      _fmt(r.get("bound_exponent", float("nan"))))
        con.print(w)
    counts = ", ".join(f"{k}: {v}" for k, v in d["verdict_counts"].items())
    con.print(f"verdicts: {counts}")
    if d["refuted"]:
        err.print("[bold white on red]" + "!" * 78 + "[/]")
        err.print(f"[bold white on red] BOUND REFUTED in {len(d['refuted'])} configuration(s): the certified "
                  "violation rate exceeds delta beyond its Clopper-Pearson interval [/]")
        for r in d["refuted"]:
            err.print(f"[bold red]  {r['network']} {r['activation']} {r['law']} {r['method']} q={r['fraction']} "
                      f"delta={r['delta']}: V_c={r['V_c']}/{r['T']}, CP lower {r['rate_lower']:.4f} > delta[/]")
        err.print("[bold white on red]" + "!" * 78 + "[/]")


@mc_app.command("plan")
def plan_cmd(
    config: str = typer.Argument(..., help="sweep config: a .yaml/.yml/.toml file or a shipped name (mc_linear, "
                                           "mc_relu)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a config key: key=value (YAML value)"),
    n_trials: Optional[int] = typer.Option(None, help="override n_trials"),
    batch_size: Optional[int] = typer.Option(None, help="override batch_size (networks per chunk)"),
    out: Path = typer.Option(Path("results/mc"), help="root folder of run folders"),
    json_: bool = json_option(),
):
    """Validate a sweep and show its hash, run folder, chunks and notes, without running anything."""
    from probprune.mc.memory import check_run_memory
    from probprune.mc.runner import plan, run_dir_for
    from probprune.mc.trials import check_bounds, groups

    cfg = _load(config, set_, n_trials, batch_size)
    mem = check_run_memory(cfg, 1)  # refuses a sweep whose single chunk does not fit, naming the estimate
    notes = check_bounds(cfg)
    units = plan(cfg)
    n_nets = sum(u.n_networks for u in units)
    g = groups(cfg)
    rows_per_net = len(cfg.methods) * len(cfg.fractions) * len(cfg.deltas)
    d = {"hash": cfg.hash, "run_dir": str(run_dir_for(cfg, out)), "groups": len(g), "chunks": len(units),
         "networks": n_nets, "rows": n_nets * rows_per_net, "chunk_memory_bytes": int(mem.total),
         "chunk_memory_group": mem.group, "notes": notes, "config": cfg.to_dict()}

    def render(d):
        from probprune.core.errors import human_bytes

        typer.echo(f"config hash {d['hash']} -> {d['run_dir']}")
        typer.echo(f"{d['groups']} network groups, {d['chunks']} chunks, {d['networks']} networks, {d['rows']} rows")
        typer.echo(f"memory: about {human_bytes(d['chunk_memory_bytes'])} per chunk at once (largest group "
                   f"{d['chunk_memory_group']}); `mc run --workers W` needs W times that")
        for n in d["notes"]:
            typer.echo(f"note: {n}")

    emit(d, json_, render)


@mc_app.command("run")
def run_cmd(
    config: str = typer.Argument(..., help="sweep config: a .yaml/.yml/.toml file or a shipped name (mc_linear, "
                                           "mc_relu)"),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="override a config key: key=value (YAML value)"),
    n_trials: Optional[int] = typer.Option(None, help="override n_trials"),
    batch_size: Optional[int] = typer.Option(None, help="override batch_size (networks per chunk)"),
    workers: int = typer.Option(2, help="local worker processes (1 = run in this process)"),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address, e.g. tcp://127.0.0.1:8786"),
    out: Path = typer.Option(Path("results/mc"), help="root folder of run folders"),
    max_chunks: Optional[int] = typer.Option(None, help="stop after this many chunks (resume later)"),
    progress: bool = typer.Option(True, help="progress on stderr (a bar on a terminal, plain lines otherwise)"),
    json_: bool = json_option(),
):
    """Run (or resume) a Monte Carlo sweep; finished chunks are saved as they finish. Prints the report."""
    from probprune.mc.runner import run

    check_int(workers, "--workers", 1)
    if max_chunks is not None:
        check_int(max_chunks, "--max-chunks", 0)
    check_output_path(out, "--out", kind="dir")
    cfg = _load(config, set_, n_trials, batch_size)
    try:
        res = run(cfg, out_root=out, workers=workers, scheduler=scheduler, progress=progress and not json_,
                  max_chunks=max_chunks)
    except KeyboardInterrupt:
        # typer turns KeyboardInterrupt into a *returned* exit code in non-standalone mode, which
        # probprune.cli.main ignores; exit here so Ctrl-C gives status 130 and the resume hint.
        import sys

        typer.echo("interrupted: finished chunks are saved in "
                   f"{out / cfg.hash}; run the same command again to resume", err=True)
        sys.exit(130)
    d = {"run": res.as_dict()}
    d.update(_report_data(res.run_dir, None))

    def render(d):
        r = d["run"]
        typer.echo(f"run folder {r['run_dir']}: {r['chunks_ran']} chunk(s) run now, {r['chunks_done_before']} "
                   f"resumed, {r['chunks']} total, {r['seconds']} s")
        if r["repaired"]:
            typer.echo(f"recomputed or removed {len(r['repaired'])} chunk file(s) that failed verification: "
                       + ", ".join(r["repaired"]))
        for n in r["notes"]:
            typer.echo(f"note: {n}")
        _render_report(d)

    emit(d, json_, render)


def _markdown(d: dict) -> str:
    def table(header, rows):
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
        return "\n".join(out)

    lines = [f"Run `{d['run_dir']}` ({d['n_rows']} of {d['n_rows_expected']} rows, "
             f"{'complete' if d['complete'] else 'incomplete'}); "
             f"one-sided Clopper-Pearson at alpha = {d['alpha']}.", ""]
    rows = []
    for r in d["configurations"]:
        v = r["verdict"]
        rows.append([_net(r["network"]), r["activation"], r["method"], _fmt(r["fraction"]), _fmt(r["delta"]), r["T"],
                     _fmt(r["bound"]), _fmt(r["mean_lb"], 4), f"{r['V_c']}/{r['V_u']}",
                     f"{_fmt(r['rate_lower'], 4)} / {_fmt(r['rate_upper'], 4)}",
                     f"**{v.upper()}**" if v == "refuted" else v,
                     f"{_fmt(r['loose_lb_median'])} [{_fmt(r['loose_lb_q10'])}, {_fmt(r['loose_lb_q90'])}]"])
    lines.append(table(["network", "act", "method", "q", "delta", "T", "bound", "mean err", "V_c/V_u",
                        "CP low / up", "verdict", "bound/err median [q10, q90]"], rows))
    if d["fraction_fits"]:
        lines += ["", table(["network", "act", "method", "fractions", "error exponent (se)", "theory", "bound exponent"],
                            [[_net(r["network"]), r["activation"], r["method"],
                              ", ".join(_fmt(x, 2) for x in r["fractions"]),
                              f"{_fmt(r['err_exponent'])} ({_fmt(r['err_exponent_se'])})", _fmt(r["theory"], 2),
                              _fmt(r.get("bound_exponent", float("nan")))] for r in d["fraction_fits"]])]
    if d["width_fits"]:
        lines += ["", table(["depth", "act", "method", "q", "widths", "mean error", "error exponent", "bound",
                             "bound exponent"],
                            [[r["depth"], r["activation"], r["method"], _fmt(r["fraction"]),
                              ", ".join(map(str, r["widths"])), ", ".join(_fmt(x, 4) for x in r["mean_err"]),
                              _fmt(r["err_exponent"]), ", ".join(_fmt(x) for x in r.get("bound", [])),
                              _fmt(r.get("bound_exponent", float("nan")))] for r in d["width_fits"]])]
    return "\n".join(lines)


@mc_app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="a run folder results/mc/<hash>"),
    alpha: Optional[float] = typer.Option(None, help="confidence level of the one-sided CP limits (default: config)"),
    markdown: bool = typer.Option(False, "--markdown/--no-markdown", help="GitHub markdown tables (for docs)"),
    json_: bool = json_option(),
):
    """Violation rates with one-sided Clopper-Pearson limits, verdicts, looseness and scaling fits of a run."""
    if alpha is not None:
        from probprune.cli.common import check_finite

        check_finite(alpha, "--alpha", lo=0, hi=1, lo_open=True, hi_open=True)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"not a Monte Carlo run folder: {run_dir}") if not run_dir.exists() else \
            ProbPruneError(f"{run_dir} is a file, not a Monte Carlo run folder")
    d = _report_data(run_dir, alpha)
    if markdown and not json_:
        typer.echo(_markdown(d))
        if d["refuted"]:
            _render_report({**d, "configurations": [], "fraction_fits": [], "width_fits": []})
        return
    emit(d, json_, _render_report)
