"""``probprune lottery ...``: subset-sum lottery tickets (THEORY §4, issue 5).

* ``lottery subset-sum solve``: exact MITM (or MILP / brute force) subset sums for given or random instances;
* ``lottery subset-sum coverage``: Monte Carlo estimate of Lueker's coverage probability, n_min and C_hat;
* ``lottery subset-sum per-target``: per-target success rate and mean subset size;
* ``lottery widths``: required widths (Pensia, Malach, Orseau, counting lower bound) side by side;
* ``lottery construct --model PATH --eps E``: the Pensia construction for a saved bias-free ReLU model.
"""
from __future__ import annotations

import sys
import time
from typing import Optional

import numpy as np
import typer
from rich.table import Table

from probprune.cli.app import app
from probprune.cli.common import (DataChoice, LazyConsole, LogBase, Signs, SumLaw, SumMethod, SumMode, Tolerance, atomic_write,
                     check_finite, check_int, check_output_path, emit, json_option, parse_float_list,
                     parse_int_list, refuse_recurrent, val)
from probprune.core.errors import ProbPruneError, check_delta, check_seed

console = LazyConsole()
lottery = typer.Typer(help="Subset-sum lottery tickets: solver, Lueker coverage, widths, Pensia construction.",
                      no_args_is_help=True)
subset_sum = typer.Typer(help="Subset-sum solver and Lueker coverage estimates (THEORY §4.1, §4.6).",
                         no_args_is_help=True)
app.add_typer(lottery, name="lottery")
lottery.add_typer(subset_sum, name="subset-sum")


def _parse_ns(s: str) -> list[int]:
    """'5:40' (inclusive range), '5:40:5' (with step) or '5,10,15'."""
    s = s.replace(" ", "")
    if ":" in s:
        parts = s.split(":")
        try:
            a, b = int(parts[0]), int(parts[1])
            step = int(parts[2]) if len(parts) > 2 else 1
        except ValueError:
            raise ProbPruneError(f"--n must look like 5:40, 5:40:5 or 5,10,15; got {s!r}") from None
        if step < 1 or b < a:
            raise ProbPruneError(f"--n range {s!r} is empty")
        if a < 1:
            raise ProbPruneError(f"every n must be >= 1, got --n {s}")
        from probprune.subsetsum.lueker import MAX_COVERAGE_NS

        count = (b - a) // step + 1
        if count > MAX_COVERAGE_NS:  # refused before the list is built
            raise ProbPruneError(f"--n {s} gives {count:,} values of n, more than the {MAX_COVERAGE_NS:,} rows a "
                                 "coverage table takes; use a step (5:1000:5) or a comma list")
        return list(range(a, b + 1, step))
    return parse_int_list(s, "--n")


# --------------------------------------------------------------------------------------------- solve
@subset_sum.command("solve")
def solve_cmd(
    coeffs: Optional[str] = typer.Option(None, help="comma-separated coefficients (else drawn: --n, --law)"),
    targets: Optional[str] = typer.Option(None, help="comma-separated targets (else --n-targets drawn U[-1/2, 1/2])"),
    n: int = typer.Option(21, "--n", help="number of random coefficients when --coeffs is not given"),
    law: SumLaw = typer.Option("uniform", help="law of random coefficients: uniform (U[-1,1]) | product (v|u|)"),
    n_targets: int = typer.Option(5, help="number of random targets when --targets is not given"),
    eps: Optional[float] = typer.Option(None, help="tolerance (required for --mode sparsest)"),
    mode: SumMode = typer.Option("closest", help="closest (min |error|) | sparsest (fewest terms with |error| <= eps)"),
    method: SumMethod = typer.Option("mitm", help="mitm (exact, default) | milp (scipy/HiGHS) | brute (n <= 16)"),
    seed: int = typer.Option(0, help="seed for random coefficients/targets"),
    as_json: bool = json_option(),
):
    """Solve subset-sum instances: approximate each target by a subset sum of the coefficients."""
    from probprune.subsetsum.lueker import sample_summands
    from probprune.subsetsum.milp import solve_milp
    from probprune.subsetsum.solver import brute_force, solve

    import torch  # noqa: F401  (imported before the clock starts: the solver's searches run in torch)

    law, mode, method = val(law), val(mode), val(method)
    check_seed(seed, "--seed")
    rng = np.random.default_rng(seed)
    if n < 1:
        raise ProbPruneError(f"--n must be >= 1, got {n}")
    check_int(n_targets, "--n-targets", 1)
    from probprune.core.errors import check_memory
    from probprune.subsetsum.solver import MAX_N

    if coeffs is None and method in ("mitm", "brute") and n > MAX_N:  # refused before drawing n coefficients
        raise ProbPruneError(f"--n {n} coefficients is beyond the exact solvers' limit of {MAX_N} (--method milp "
                             "takes more)")
    check_memory(8.0 * 4 * ((n if coeffs is None else 0) + (n_targets if targets is None else 0)),
                 "the drawn coefficients and targets")
    if eps is not None:
        check_finite(eps, "--eps", lo=0)
    c = np.array(parse_float_list(coeffs, "--coeffs")) if coeffs is not None else sample_summands(law, n, rng)
    z = np.array(parse_float_list(targets, "--targets")) if targets is not None else rng.uniform(-0.5, 0.5, n_targets)
    if c.size == 0:
        raise ProbPruneError("--coeffs is empty: give comma-separated numbers (or omit it to draw --n of them)")
    if z.size == 0:
        raise ProbPruneError("--targets is empty: give comma-separated numbers (or omit it to draw --n-targets)")
    fn = {"mitm": solve, "milp": solve_milp, "brute": brute_force}.get(method)
    if fn is None:
        raise ProbPruneError(f"--method must be mitm, milp or brute, got {method!r}")
    t0 = time.perf_counter()
    res = fn(c, z, eps=eps, mode=mode)
    secs = time.perf_counter() - t0
    data = {
        **res.summary(), "seconds": secs, "coefficients": c.tolist(),
        "rows": [{"target": float(z[i]), "achieved": float(res.achieved[i]), "error": float(res.error[i]),
                  "success": bool(res.success[i]), "n_terms": int(res.n_terms[i]),
                  "subset": np.flatnonzero(res.subset[i]).tolist()} for i in range(z.size)],
    }

    def render(d):
        t = Table(title=f"subset sum ({d['method']}, {d['mode']}, n={d['n']}, eps={d['eps']})")
        for col in ("target", "achieved", "error", "ok", "terms", "subset (indices)"):
            t.add_column(col, justify="right" if col != "subset (indices)" else "left")
        for r in d["rows"]:
            t.add_row(f"{r['target']:.6g}", f"{r['achieved']:.6g}", f"{r['error']:.3e}", "yes" if r["success"]
                      else "NO", str(r["n_terms"]), ",".join(map(str, r["subset"])))
        console.print(t)
        console.print(f"  {d['successes']}/{d['targets']} within eps; max error {d['max_error']:.3e}; "
                      f"{d['seconds']:.3f} s")

    emit(data, as_json, render)


# --------------------------------------------------------------------------------------------- coverage
@subset_sum.command("coverage")
def coverage_cmd(
    n: str = typer.Option("5:40", "--n", help="values of n: 5:40, 5:40:5 or 5,10,20"),
    eps: float = typer.Option(0.01, help="cover radius eps"),
    law: SumLaw = typer.Option("uniform", help="uniform (U[-1,1]) | product (v|u|, u,v ~ U[-1,1])"),
    trials: int = typer.Option(1000, help="independent draws"),
    seed: int = typer.Option(0),
    gamma: float = typer.Option(0.95, help="n_min: smallest n with one-sided CP lower bound >= gamma"),
    confidence: float = typer.Option(0.95, help="Clopper-Pearson confidence"),
    half_range: float = typer.Option(1.0, help="cover [-r, r]: 1 (Pensia/Lueker) or 0.5 (da Cunha et al.)"),
    as_json: bool = json_option(),
):
    """P(every z in [-r, r] is within eps of a subset sum of n samples) by the exact interval recursion (§4.1)."""
    from probprune.core.progress import progress_bar
    from probprune.subsetsum.lueker import estimate_coverage

    law = val(law)
    ns = _parse_ns(n)
    check_int(trials, "--trials", 1)
    check_seed(seed, "--seed")
    check_finite(eps, "--eps", lo=0, lo_open=True)
    from probprune.subsetsum.lueker import check_coverage_plan

    if not ns or min(ns) < 1:
        raise ProbPruneError(f"--n must give values of n >= 1, got {n!r}")
    check_coverage_plan(len(set(ns)), max(ns), trials)
    check_finite(gamma, "--gamma", lo=0, hi=1, lo_open=True, hi_open=True)
    check_finite(confidence, "--confidence", lo=0, hi=1, lo_open=True, hi_open=True)
    check_finite(half_range, "--half-range", lo=0, lo_open=True)
    with progress_bar(trials, "draws", unit="draw", enabled=not as_json and trials >= 200) as bar:
        res = estimate_coverage(ns, eps, law, trials, seed, confidence, gamma, half_range, progress=bar.update)
    data = res.as_dict()

    def render(d):
        t = Table(title=f"Lueker coverage, law={d['law']}, eps={d['eps']}, [-{d['half_range']:g}, "
                        f"{d['half_range']:g}], {d['trials']} draws")
        for col in ("n", "P(cover all z)", f"{d['confidence']:.0%} CI", "lower (1-sided)", "per-target P"):
            t.add_column(col, justify="right")
        for r in d["rows"]:
            t.add_row(str(r["n"]), f"{r['p_hat']:.4f}", f"[{r['ci_low']:.4f}, {r['ci_high']:.4f}]",
                      f"{r['lower_1s']:.4f}", f"{r['per_target_p']:.4f}")
        console.print(t)
        if d["n_min"] is None:
            console.print(f"  n_min(gamma={d['gamma']}) > {d['rows'][-1]['n']}: raise --n")
        else:
            console.print(f"  n_min(gamma={d['gamma']}) = {d['n_min']};  C_hat = n_min/ln(1/eps) = "
                          f"{d['C_hat_ln']:.3f}  (= {d['C_hat_log2']:.3f} with log2)")

    emit(data, as_json, render)


@subset_sum.command("per-target")
def per_target_cmd(
    n: int = typer.Option(15, "--n", help="number of summands"),
    eps: float = typer.Option(0.01),
    law: SumLaw = typer.Option("uniform", help="uniform | product"),
    trials: int = typer.Option(10000),
    seed: int = typer.Option(0),
    as_json: bool = json_option(),
):
    """Per-target success rate (one z ~ U[-1,1] per draw) and mean smallest-subset size (exact sparsest solver)."""
    from probprune.subsetsum.lueker import per_target_stats

    law = val(law)
    check_int(n, "--n", 1)
    check_int(trials, "--trials", 1)
    check_finite(eps, "--eps", lo=0, lo_open=True)
    check_seed(seed, "--seed")

    d = per_target_stats(n, eps, law, trials, seed).as_dict()

    def render(d):
        console.print(f"law={d['law']} n={d['n']} eps={d['eps']} trials={d['trials']}: success {d['success']:.4f} "
                      f"[{d['ci_low']:.4f}, {d['ci_high']:.4f}], mean smallest subset {d['mean_subset_size']:.3f}")

    emit(d, as_json, render)


# --------------------------------------------------------------------------------------------- widths
@lottery.command("widths")
def widths_cmd(
    d: str = typer.Option("10,100,1000", help="layer widths d (square layers d -> d)"),
    depth: str = typer.Option("2", help="depths l"),
    eps: str = typer.Option("0.01", help="target errors"),
    delta: float = typer.Option(0.05),
    C: float = typer.Option(1.0, "--C", help="constant in every formula (none is published)"),
    log_base: LogBase = typer.Option("e", help="base of the logarithms"),
    as_json: bool = json_option(),
):
    """Required hidden width per block: Pensia [RC], Malach [RC], Orseau [RC] and the counting lower bound [D]."""
    from probprune.subsetsum.widths import compare_widths

    log_base = val(log_base)
    ds, ls, es = parse_int_list(d, "--d"), parse_int_list(depth, "--depth"), parse_float_list(eps, "--eps")
    for vals, nm in ((ds, "--d"), (ls, "--depth")):
        if not vals or any(v < 1 for v in vals):
            raise ProbPruneError(f"{nm} must be a comma list of integers >= 1, got {vals}")
    if not es or any(not (0 < e < 1) for e in es):
        raise ProbPruneError(f"--eps must be a comma list of numbers in (0, 1), got {es}")
    check_delta(delta)
    check_finite(C, "--C", lo=0, lo_open=True)
    base = "e" if log_base == "e" else float(log_base)
    rows = []
    for dd in ds:
        for ll in ls:
            for ee in es:
                rows += compare_widths(dd, ll, ee, delta, C, base)
    data = {"delta": delta, "C": C, "log_base": log_base, "rows": rows}

    def render(dd):
        t = Table(title=f"required width of one block (C={C}, log base {log_base}, delta={delta})")
        for col in ("d", "l", "eps", "formula", "width", "provenance"):
            t.add_column(col, justify="right")
        for r in dd["rows"]:
            t.add_row(str(r["d"]), str(r["l"]), f"{r['eps']:g}", r["formula"], f"{r['width']:.4g}", r["provenance"])
        console.print(t, markup=False)

    emit(data, as_json, render)


# --------------------------------------------------------------------------------------------- construct
@lottery.command("construct")
def construct_cmd(
    model: str = typer.Option(..., help="saved bias-free ReLU torch model (module or state dict)"),
    eps: float = typer.Option(..., help="target sup error on the unit ball (tolerance 'theorem') or per weight"),
    arch: Optional[str] = typer.Option(None, help="architecture for a state dict (mlp:500, lenet5, ...)"),
    input_shape: Optional[str] = typer.Option(None, help="C,H,W for conv models"),
    delta: float = typer.Option(0.05, help="failure probability in the width formula"),
    C: float = typer.Option(3.0, "--C", help="width constant: n' = ceil(C ln(d_in d_out l / min(eps, delta)))"),
    units_per_input: Optional[int] = typer.Option(None, help="override n' (units per input and sign)"),
    tolerance: Tolerance = typer.Option("theorem", help="theorem (eps'_i of §4.2 step 6) | per-weight (eps per entry)"),
    signs: Signs = typer.Option("random", help="random (faithful U[-1,1]) | assigned"),
    mode: SumMode = typer.Option("sparsest", help="sparsest (fewest kept weights) | closest"),
    seed: int = typer.Option(0),
    rescale: bool = typer.Option(False, help="divide each W_i by max(1, ||W_i||) first (approximates f / scale; "
                                             "same predictions); needed when a weight exceeds 1"),
    data: DataChoice = typer.Option("auto", help="dataset to compare outputs/accuracy (auto: by input size)"),
    sup: bool = typer.Option(True, help="measure the sup error on the unit ball by PGD (small inputs only)"),
    out: Optional[str] = typer.Option(None, help="save the pruned network (torch.save of the module) here"),
    allow_failures: bool = typer.Option(False, help="exit 0 even if some weights miss their tolerance"),
    as_json: bool = json_option(),
):
    """Pensia et al. construction: prune a random network of twice the depth to approximate MODEL (THEORY §4.2)."""
    import torch

    from probprune.net.io import INPUT_DIM_TO_DATASET, load_model
    from probprune.net.templates import from_torch
    from probprune.core.progress import progress_bar
    from probprune.subsetsum.construction import construct, evaluate_on_data, sup_error_lower_bound

    tolerance, signs, mode, data = val(tolerance), val(signs), val(mode), val(data)
    check_finite(eps, "--eps", lo=0, lo_open=True)
    check_delta(delta)
    check_finite(C, "--C", lo=0, lo_open=True)
    if units_per_input is not None:
        check_int(units_per_input, "--units-per-input", 1)
    check_seed(seed, "--seed")
    check_output_path(out, "--out")
    shape = tuple(parse_int_list(input_shape, "--input-shape")) if input_shape else None
    target = load_model(model, arch=arch, input_shape=shape).double().eval()
    refuse_recurrent(target, model)
    if data not in ("auto", "none"):  # an explicit dataset must fit the model: checked before the work
        from probprune.net.data import load_dataset

        in0 = from_torch(target, shape).spec.input_shape
        ds0 = load_dataset(data, seed=0, images=len(in0) == 3)
        if tuple(ds0.input_shape) != tuple(in0):
            raise ProbPruneError(f"--data {data} gives inputs of shape {tuple(ds0.input_shape)}, but {model} expects "
                                 f"{tuple(in0)}")
    from probprune.subsetsum.construction import ConstructionConfig, check_construction_plan

    plan = ConstructionConfig(eps=eps, delta=delta, C=C, units_per_input=units_per_input, tolerance=tolerance,
                              signs=signs, mode=mode, seed=seed, rescale=rescale)
    plan.validate()
    check_construction_plan(from_torch(target, shape).spec, plan)  # memory estimated before the progress line
    with progress_bar(None, "entries solved", unit="w", enabled=not as_json) as bar:
        c = construct(target, eps=eps, delta=delta, C=C, units_per_input=units_per_input, tolerance=tolerance,
                      signs=signs, mode=mode, seed=seed, input_shape=shape, progress=bar.update, rescale=rescale)
    rep = c.report
    target = c.effective_target if c.effective_target is not None else target
    in_shape = c.target.spec.input_shape
    d0 = int(np.prod(in_shape))
    if sup and d0 <= 1024 and rep.params_before <= 5_000_000:
        rep.measured["sup_error_lower_bound"] = sup_error_lower_bound(target, c.model, in_shape, iters=100, seed=seed)
    ds_name = INPUT_DIM_TO_DATASET.get(d0) if data == "auto" else (None if data in (None, "none") else data)
    if ds_name is not None:
        from probprune.net.data import load_dataset

        ds = load_dataset(ds_name, seed=0, images=len(in_shape) == 3)
        if tuple(ds.input_shape) == tuple(in_shape):
            rep.measured["test_data"] = {"dataset": ds_name, **evaluate_on_data(target, c.model, ds.X_test, ds.y_test)}
    if out and (not rep.failures or allow_failures):  # a failed command writes nothing
        atomic_write(out, lambda tmp: torch.save(c.model, tmp))
        rep.measured["saved_to"] = out
    d = rep.as_dict()

    def render(d):
        t = Table(title=f"Pensia construction (eps={eps}, tolerance={tolerance}, signs={signs}, mode={mode})")
        for col in ("layer", "kind", "d_in->d_out", "units/input", "tol eps'", "entries", "failures", "max err",
                    "mean terms", "||E||", "||W||", "kept / random"):
            t.add_column(col, justify="right")
        for L in d["layers"]:
            t.add_row(L["name"], L["kind"], f"{L['d_in']}->{L['d_out']}", str(L["units_per_input"]),
                      f"{L['tol']:.3e}", f"{L['entries']:,}", str(L["failures"]), f"{L['max_error']:.3e}",
                      f"{L['mean_terms']:.2f}", f"{L['norm_E']:.3e}", f"{L['norm_W']:.3f}",
                      f"{L['params_kept']:,} / {L['params_random']:,}")
        console.print(t)
        console.print(f"  params: random network {d['params_before']:,} -> kept {d['params_after']:,} "
                      f"({d['kept_over_target']:.2f}x the target's {d['target_params']:,}); {d['seconds']:.1f} s")
        if d["output_scale"] != 1.0:
            console.print(f"  rescaled target: g approximates f / {d['output_scale']:.4g} (same argmax predictions)")
        console.print(f"  composed bound (realized ||E_i||): sup_(||x||<=1) ||f - g|| <= {d['bound_realized']:.4e}")
        if d["bound_tolerance"] is not None:
            console.print(f"  composed bound from the tolerances: {d['bound_tolerance']:.4e} (eps = {eps})")
        m = d["measured"]
        if "sup_error_lower_bound" in m:
            console.print(f"  measured sup error on the unit ball (PGD lower bound): {m['sup_error_lower_bound']:.4e}")
        if "test_data" in m:
            td = m["test_data"]
            console.print(f"  {td['dataset']} test: target acc {td['acc_target']:.4f}, constructed acc "
                          f"{td['acc_constructed']:.4f}, max ||f-g|| {td['max_output_dev']:.3e}, "
                          f"max ||f-g||/||x|| {td['max_dev_over_norm']:.3e}")
        for h in d["hypotheses_violated"]:
            console.print(f"  note: {h}", markup=False)
        if d["failures"]:
            console.print(f"  FAILURES: {d['failures']} entries missed their tolerance (first listed):", style="red")
            for f in d["failure_list"][:10]:
                console.print(f"    {f}", markup=False)

    emit(d, as_json, render)
    if rep.failures and not allow_failures:
        typer.echo(f"error: {rep.failures} weight(s) missed their tolerance (listed above); raise --C or "
                   "--units-per-input, or pass --allow-failures", err=True)
        sys.exit(2)  # (typer.Exit's code is dropped by click with standalone_mode=False, so exit directly)
