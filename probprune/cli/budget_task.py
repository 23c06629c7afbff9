"""Rendering of ``probprune budget`` / ``bound`` results for issue 11 part B: relative tolerances (``--eps-rel``),
the calibrated statement (``--calibrated``), the empirical budget (``--empirical``) and certified accuracy
(``--max-acc-drop``). THEORY.md §10. The numbers come from the library (:mod:`probprune.api`,
:mod:`probprune.budgets.task`); this module only renders them."""
from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.table import Table


# --------------------------------------------------------------------------------------------- rendering
def render_eps_rel(console: Console, er: Optional[dict], what: str) -> None:
    if not er:
        return
    low = er.get("lower_median", er.get("lower"))
    console.print(f"  eps = {er['eps_rel']:g} x {what} sup_(||x||<=1) ||F(x)|| upper bound {er['upper']:.5g} = "
                  f"{er['eps']:.5g}  (lower estimate of sup||F|| {low:.5g}: eps is {er['eps_over_lower'] or float('nan'):.3g} "
                  f"of it; for a bias-free net pruning everything costs sup||F|| >= {low:.5g}, §10.3)", markup=False)


def render_spec_extras(console: Console, d: dict) -> None:
    rows = [("analytic (§3.4/§9, w.p. >= 1 - delta)", d["uniform"]["fraction"], d["uniform"]["total_prunable"], "")]
    if "calibrated" in d:
        c = d["calibrated"]
        rows.append((f"calibrated (§10.2, conf. 1 - {c['gamma']:g}, T = {c['trials']})", c["fraction"],
                     c["total_prunable"], f"rank {c['rank']}/{c['trials']}, err quantile {c['quantile_at_fraction']:.4g}"))
    if "empirical" in d:
        e = d["empirical"]
        rows.append((f"empirical (measured, T = {e['trials']}, not a guarantee)", e["fraction"], e["total_prunable"],
                     e["per_draw_kind"][:40]))
    if len(rows) == 1:
        return
    t = Table(title=f"Uniform budgets at eps = {d['eps']:.5g}, delta = {d['delta']:g}: guaranteed beside empirical")
    for col in ("statement", "fraction", "weights", "note"):
        t.add_column(col, justify="left" if col in ("statement", "note") else "right")
    for r in rows:
        t.add_row(r[0], f"{r[1]:.4%}", f"{r[2]:,}", r[3])
    console.print(t)
    if "empirical" in d and d["empirical"].get("ratio_analytic_over_empirical") is not None:
        e = d["empirical"]
        msg = f"  guaranteed / empirical: analytic {e['ratio_analytic_over_empirical']:.3g}"
        if e.get("ratio_calibrated_over_empirical") is not None:
            msg += f", calibrated {e['ratio_calibrated_over_empirical']:.3g}"
        console.print(msg, markup=False)


def render_trained_extras(console: Console, d: dict) -> None:
    render_eps_rel(console, d.get("eps_rel"), "its certified")
    ca = d.get("certified_accuracy")
    if ca:
        console.print(f"  predictions at this allocation ({ca['n']} test inputs, scaled into the ball by 1/{ca['input_scale']:.4g}): "
                      f"accuracy {ca['accuracy']:.2%}; certified unchanged-and-correct {ca['certified_accuracy']:.2%}; "
                      f"measured accuracy of the pruned net {ca['pruned_accuracy']:.2%}  (margin > sqrt(2) x certified error, §10.4)",
                      markup=False)
    ab = d.get("max_acc_drop")
    if ab:
        chk = ab["check"]
        console.print(f"  certified accuracy may drop by at most {ab['max_acc_drop_points']:g} points: "
                      f"max prunable {ab['budget']['total_prunable']:,} of {ab['budget']['total_weights']:,} weights "
                      f"(tolerance on the scaled net {ab['eps_needed']:.4g}); certified accuracy there "
                      f"{chk['certified_accuracy']:.2%} (accuracy {chk['accuracy']:.2%}, pruned measured "
                      f"{chk['pruned_accuracy']:.2%})", markup=False)
    e = d.get("empirical")
    if e:
        r = e.get("ratio_certified_over_empirical")
        console.print(f"  empirical uniform fraction (PGD-measured error <= eps): {e['fraction']:.4%}"
                      + (f"; certified / empirical = {r:.3g}" if r is not None else ""), markup=False)
