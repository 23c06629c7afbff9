"""``python -m proofs_check [--json] [--select ID] [--kind derivation|bridge] [--statements]``."""
from __future__ import annotations

import argparse
import json
import sys

from .runner import run_all

STATUS_STYLE = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red", "SKIP": "yellow", "MISSING": "bold red"}


def summary_line(rep) -> str:
    s = rep.summary()
    return (f"{s['checks']} checks: {s['pass']} pass, {s['fail']} fail, {s['error']} error, {s['skip']} skip "
            f"({s['by_kind'].get('derivation', 0)} derivation, {s['by_kind'].get('bridge', 0)} bridge; "
            + ", ".join(f"{v} {k}" for k, v in sorted(s["by_method"].items()))
            + f"). [D] statements covered: {s['d_statements_covered']}/{s['d_statements']}"
            + (f", MISSING: {', '.join(s['d_statements_missing'])}" if s["d_statements_missing"] and not rep.partial
               else "")
            + f". {s['seconds']:.1f} s. " + ("OK" if rep.ok else "FAILED"))


def markdown(rep) -> str:
    """The report as two Markdown tables (checks; [D]-statement coverage) plus the summary line."""
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    out = ["| check | statement | ref | kind | method | status |", "|---|---|---|---|---|---|"]
    for r in rep.results:
        out.append(f"| {r.id} | {esc(r.statement)} | {r.ref} | {r.kind} | {r.method} | {r.status} |")
    out += ["", "| [D] statement | ref | checks | status |", "|---|---|---|---|"]
    for c in rep.coverage:
        out.append(f"| {c['id']}: {esc(c['statement'])} | {c['ref']} | {', '.join(c['checks']) or '-'} | {c['status']} |")
    out += ["", summary_line(rep)]
    return "\n".join(out)


def _render(rep, show_statements: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console(width=200)
    t = Table(title="proofs_check: derived statements of docs/THEORY.md", show_lines=False)
    for col in ("check", "statement", "ref", "kind", "method", "status", "s", "detail"):
        t.add_column(col, overflow="fold")
    for r in rep.results:
        t.add_row(r.id, escape(r.statement), r.ref, r.kind, r.method, f"[{STATUS_STYLE[r.status]}]{r.status}[/]",
                  f"{r.seconds:.2f}", escape(r.detail))
    con.print(t)
    if show_statements or (rep.missing and not rep.partial):
        t2 = Table(title="[D] statements of THEORY.md and the checks that cover them")
        for col in ("id", "ref", "statement", "checks", "status"):
            t2.add_column(col, overflow="fold")
        for c in rep.coverage:
            t2.add_row(c["id"], c["ref"], escape(c["statement"]), ", ".join(c["checks"]) or "-",
                       f"[{STATUS_STYLE[c['status']]}]{c['status']}[/]")
        con.print(t2)
    line = summary_line(rep)
    con.print(escape(line), style="green" if rep.ok else "bold red")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m proofs_check", description=__doc__)
    ap.add_argument("--json", action="store_true", help="print the full report as JSON")
    ap.add_argument("--select", help="run only checks whose id contains this string (coverage gaps then not errors)")
    ap.add_argument("--kind", choices=("derivation", "bridge"), help="run only one kind of check")
    ap.add_argument("--statements", action="store_true", help="also print the [D]-statement coverage table")
    ap.add_argument("--markdown", action="store_true", help="print both tables as Markdown (for docs and the paper)")
    args = ap.parse_args(argv)
    rep = run_all(select=args.select, kind=args.kind)
    if args.json:
        print(json.dumps(rep.as_dict(), indent=2))
    elif args.markdown:
        print(markdown(rep))
    else:
        _render(rep, args.statements)
    return 0 if rep.ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
        sys.exit(0)
