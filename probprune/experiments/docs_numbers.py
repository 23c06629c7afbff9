"""Numbers in README.md and docs/*.md from committed result files (issue 18, item 6).

Every figure quoted in the README and the docs that comes from a run lives between markers::

    <!-- numbers:NAME -->                  a block (a table, a paragraph): the text up to the closing marker
    ...
    <!-- /numbers:NAME -->
    ... the ratio was <!--n:NAME-->3.4<!--/n--> ...     an inline value

and is rewritten from the committed results (``benchmarks/results/*.json``, ``experiments/results/...``,
``paper/generated/proofs_check.json``) by one function per number below. Nothing is copied by hand:

    python -m probprune.experiments.docs_numbers --write     # rewrite every marked block from the results
    python -m probprune.experiments.docs_numbers --check     # exit 1 and list the stale blocks (what the test runs)
    python -m probprune.experiments.docs_numbers --mc-summary results/mc/<hash> --name mc_linear
                                                            # condense a finished Monte Carlo run into
                                                            # experiments/results/mc_linear_summary.json

``tests/test_docs_numbers.py`` regenerates every file and asserts it is unchanged, so a stale figure fails the suite.
Result files may gain keys freely; a missing file or key is a :class:`ProbPruneError` naming both. Formatting: ratios
and times with 3 significant digits (thousands separated), fractions with 2 decimals."""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from probprune.core.errors import ProbPruneError
from probprune.core.registry import BASE_METHODS

ROOT = Path(__file__).resolve().parents[2]
#: files scanned for markers (a file without markers is left alone; docs/budgets.md, certificates.md and cli.md are
#: listed so that their owners only need to add markers)
DOC_FILES = ("README.md", "docs/montecarlo.md", "docs/proofs.md", "docs/experiments.md", "docs/pruning.md",
             "docs/lottery.md", "docs/budgets.md", "docs/certificates.md", "docs/cli.md")
BLOCK_RE = re.compile(r"(<!-- numbers:([A-Za-z0-9_.-]+) -->)(.*?)(<!-- /numbers:\2 -->)", re.S)
INLINE_RE = re.compile(r"(<!--n:([A-Za-z0-9_.-]+)-->)(.*?)(<!--/n-->)", re.S)
MC_SUMMARY = "experiments/results/{name}_summary.json"


# ------------------------------------------------------------------------------------------------ reading results
class Results:
    """Lazy, cached reader of the committed result files under ``root``; errors name the file and the key."""

    def __init__(self, root: Path | str = ROOT):
        self.root = Path(root)
        self._cache: dict[str, object] = {}

    def json(self, rel: str) -> dict:
        if rel not in self._cache:
            p = self.root / rel
            if not p.exists():
                raise ProbPruneError(f"result file {rel} is missing (the docs quote it); run the script that writes it")
            try:
                self._cache[rel] = json.loads(p.read_text())
            except json.JSONDecodeError as e:
                raise ProbPruneError(f"result file {rel} is not valid JSON: {e}") from None
        return self._cache[rel]  # type: ignore[return-value]

    def text(self, rel: str) -> str:
        p = self.root / rel
        if not p.exists():
            raise ProbPruneError(f"result file {rel} is missing (the docs quote it)")
        return p.read_text()

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def get(self, rel: str, *keys):
        """``json(rel)[k1][k2]...``; a missing key raises naming the file and the path."""
        o = self.json(rel)
        for i, k in enumerate(keys):
            try:
                o = o[k]
            except (KeyError, IndexError, TypeError):
                path = "".join(f"[{x!r}]" for x in keys[: i + 1])
                raise ProbPruneError(f"result file {rel} has no {path}; regenerate it or update "
                                     "probprune/experiments/docs_numbers.py") from None
        return o


# ------------------------------------------------------------------------------------------------ formatting
def sig(x: float, n: int = 3) -> str:
    """``n`` significant digits, thousands separated, no exponent: 24628.7 -> 24,600; 6.3085 -> 6.31; 0.0488 -> 0.0488."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    d = n - 1 - int(math.floor(math.log10(abs(x))))
    r = round(x, d)
    if d <= 0:
        return f"{int(r):,}"
    return f"{r:,.{d}f}"


def ratio(x: float) -> str:
    return sig(x) + "x"


def frac2(x: float) -> str:
    return f"{x:.2f}"


def seconds(x: float) -> str:
    return sig(x) + " s"


def rng(lo: float, hi: float, f: Callable[[float], str] = sig) -> str:
    a, b = f(lo), f(hi)
    return a if a == b else f"{a}-{b}"


def target_verdict(value: float, target: float, lower_is_better: bool = True) -> str:
    met = value <= target if lower_is_better else value >= target
    return "met" if met else "missed"


# ------------------------------------------------------------------------------------------------ tightness.json
TIGHT = "benchmarks/results/tightness.json"


def tight_linear(r: Results, which: str) -> dict:
    """bound / exact sup error over the linear families: ``which`` in old_default, new_default, calibrated."""
    return r.get(TIGHT, "linear_summary", which)


def tight_relu(r: Results, which: str) -> dict:
    return r.get(TIGHT, "relu_summary", which)


def tight_grid(r: Results, kind: str) -> str:
    g = r.get(TIGHT, "grid", kind)
    w, dp, q = g["widths"], g["depths"], g["fractions"]
    return (f"widths {min(w)}-{max(w)}, depth {min(dp)}-{max(dp)}, {' + '.join(g['methods'])}, "
            f"q {min(q):g}-{max(q):g}, delta {r.get(TIGHT, 'delta'):g}")


# ------------------------------------------------------------------------------------------------ budget_ratio.json
BUDGET_RATIO = "benchmarks/results/budget_ratio.json"
BUDGET_RATIO_TRAINED = "benchmarks/results/budget_ratio_trained.json"


def trained_budget_rows(r: Results) -> list[str]:
    """Results-table rows from budget_ratio_trained.json (bench_budget_ratio.py --trained): certified / empirical
    (PGD-measured) uniform fraction at eps = 0.1 x the certified sup||F||, Cert-D inversion (before) and the auto
    inversion (after), per trained network."""
    out = []
    for i, row in enumerate(r.get(BUDGET_RATIO_TRAINED, "rows")):
        emp = float(row["empirical"]["fraction"])
        b, a = (float(row[k]["uniform_fraction"]) / emp if emp > 0 else float("nan") for k in ("before", "after"))
        t = row.get("target")
        what = (f"certified / empirical uniform fraction at `--eps-rel 0.1`, trained {row['network']} "
                f"(inverted: {row['after'].get('certificate', '?')})")
        out.append(f"| {what} | {frac2(b)} | **{frac2(a)}** | "
                   + ("" if t is None else f">= {t:g}, {target_verdict(a, t, False)}")
                   + (" | `bench_budget_ratio.py --trained` -> `budget_ratio_trained.json` |" if i == 0 else " | same |"))
    return out


def budget_ratio_row(r: Results, method: str, rel: float = 0.1, file: str = BUDGET_RATIO) -> dict:
    """The row of ``file`` for ``method`` at relative tolerance ``rel`` (guaranteed / empirical uniform budget)."""
    rows = [x for x in r.get(file, "rows") if x.get("method") == method and abs(x.get("rel", -1) - rel) < 1e-12]
    if not rows:
        raise ProbPruneError(f"result file {file} has no row with method {method!r} and rel {rel}")
    return rows[0]


def budget_ratio_network(r: Results, file: str = BUDGET_RATIO) -> str:
    return str(r.get(file, "network"))


# ------------------------------------------------------------------------------------------------ certificates.json
CERTS = "benchmarks/results/certificates.json"
CERTS_AUTO30 = "benchmarks/results/certificates_auto30.json"  # bench_auto_limit.py 30: auto with --time-limit 30


def cert_summary(r: Results, key: str) -> float:
    return r.get(CERTS, "summary", key)


def cert_grid(r: Results) -> tuple[int, int]:
    return len(r.get(CERTS, "networks")), len(r.get(CERTS, "settings", "fractions"))


def cert_sdp_range(r: Results, field: str) -> tuple[float, float]:
    """min and max of ``field`` (old_over_pgd before, sdp_over_pgd now) over the networks the SDP ran on."""
    names = set(cert_summary(r, "networks_with_sdp"))
    vals = [f[field] for n in r.get(CERTS, "networks") if n["name"] in names for f in n["fractions"]
            if f.get(field) is not None]
    if not vals:
        raise ProbPruneError(f"result file {CERTS} has no {field!r} for the SDP networks")
    return min(vals), max(vals)


# ------------------------------------------------------------------------------------------------ scale.json
SCALE = "benchmarks/results/scale.json"
MODEL_LABELS = {"lenet": "LeNet-300-100", "vgg11": "VGG-11", "vgg16": "VGG-16", "resnet18": "ResNet-18",
                "mlp1000": "MLP-1000"}


def scale_targets(r: Results) -> list[str]:
    """Models of scale.json that have a time target, LeNet first then by weight count."""
    s = r.get(SCALE, "summary")
    names = [m for m, v in s.items() if v.get("target_seconds") is not None]
    return sorted(names, key=lambda m: (m != "lenet", r.get(SCALE, "models", m, "weights")))


def scale_before(r: Results, model: str) -> str:
    ob = r.get(SCALE, "models", model).get("old_budget")
    if ob is None:
        return "-"
    if ob.get("seconds") is None:
        return "refused"
    return ("" if ob.get("measured") else "~") + seconds(ob["seconds"]) + ("" if ob.get("measured") else "*")


def scale_now(r: Results, model: str) -> float:
    return r.get(SCALE, "summary", model, "budget_seconds")


def scale_target(r: Results, model: str) -> float:
    return r.get(SCALE, "summary", model, "target_seconds")


def scale_load(r: Results, models: list[str]) -> tuple[float, float]:
    loads = [r.get(SCALE, "models", m, "loadavg_start")[0] for m in models if m != "lenet"]
    return min(loads), max(loads)


# ------------------------------------------------------------------------------------------------ subsetsum.json
SUBSET = "benchmarks/results/subsetsum.json"


def subset_speed(r: Results, mode: str) -> float:
    return r.get(SUBSET, "solver_vs_milp", mode, "speed_ratio")


# ------------------------------------------------------------------------------------------------ budget.json
BUDGET = "benchmarks/results/budget.json"


def budget_ms(r: Results, key: str) -> float:
    if key == "bound":
        return r.get(BUDGET, "baseline_single_bound_eval", "median_ms")
    return r.get(BUDGET, key, "median_ms")


# ------------------------------------------------------------------------------------------------ proofs_check.json
PROOFS = "paper/generated/proofs_check.json"


def proofs_summary(r: Results) -> dict:
    return r.get(PROOFS, "summary")


# ------------------------------------------------------------------------------------------------ figures (experiments)
def figure_number(r: Results, experiment: str, macro: str) -> str:
    """A number an experiment wrote into its committed summary (the paper's macro of the same name)."""
    v = r.get(f"experiments/results/figures/{experiment}/summary.json", "summary", "numbers", macro)
    return str(v)


def figure_caption(r: Results, experiment: str) -> str:
    """An experiment's committed caption, with its theory verdict where it states one."""
    s = r.get(f"experiments/results/figures/{experiment}/summary.json", "summary")
    held = s.get("theory_held")
    return s["caption"] + ("" if held is None else f" Theory held: {'yes' if held else 'no'}.")


# ------------------------------------------------------------------------------------------------ lottery tickets
LTH = "experiments/results/lth/summary.md"  # written by experiments/lth_study.py


def lth_rows(r: Results) -> dict[str, list[str]]:
    """``weights remaining`` -> the row's cells, from the committed LTH table."""
    out = {}
    for line in r.text(LTH).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0].isdigit():
            out[cells[1]] = cells
    if not out:
        raise ProbPruneError(f"result file {LTH} has no table rows")
    return out


PENSIA = "experiments/results/pensia_repro.json"


def pensia_run(r: Results, variant: str, mode: str) -> dict:
    runs = [x for x in r.get(PENSIA, "runs") if x.get("variant") == variant and x.get("mode") == mode]
    if not runs:
        raise ProbPruneError(f"result file {PENSIA} has no run with variant {variant!r} and mode {mode!r}")
    return runs[0]


def _fmt_value(v) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return sig(v)
    return str(v)


def pensia_value(r: Results, *path: str) -> str:
    """``pensia.<variant>.<mode>.<field>`` (a run), ``pensia.published.<field>``, ``pensia.target.<field>`` or
    ``pensia.gadget.<field>`` of experiments/results/pensia_repro.json: ints with thousands separators, floats with
    3 significant digits."""
    if len(path) == 3:
        run = pensia_run(r, path[0], path[1])
        if path[2] not in run:
            raise ProbPruneError(f"result file {PENSIA}: the {path[0]}/{path[1]} run has no {path[2]!r}")
        return _fmt_value(run[path[2]])
    if len(path) == 2:
        return _fmt_value(r.get(PENSIA, path[0], path[1]))
    raise ProbPruneError(f"pensia marker needs <variant>.<mode>.<field> or <section>.<field>, got {'.'.join(path)!r}")


# ------------------------------------------------------------------------------------------------ Monte Carlo summary
def mc_summary(r: Results, name: str = "mc_linear") -> dict:
    return r.json(MC_SUMMARY.format(name=name))


def summarize_mc_run(run_dir: str | Path, name: str, partial: bool = False) -> dict:
    """Condense a finished Monte Carlo run (``probprune mc run``) into the committed summary the docs quote: one
    record per configuration (``probprune.mc.summarize``), the fraction and width fits, and run-wide extremes
    computed over every row (smallest bound / exact-error ratio, component-check maxima, Cert-D / exact).

    ``partial=True`` condenses an unfinished run: only networks whose trials are all present enter, the summary
    says ``complete: false`` and lists the networks planned but missing, and the docs print that."""
    import numpy as np

    from probprune.mc import fraction_fits, load_run, summarize, width_fits

    cfg, df, complete = load_run(run_dir)
    if not complete and not partial:
        raise ProbPruneError(f"{run_dir}: the run is not complete; finish it (`probprune mc run` resumes) first, "
                             "or pass --partial to condense the finished networks and say so")
    full = cfg.n_trials * len(cfg.seeds)
    per_net = df.groupby("network")["trial"].apply(lambda s: s.nunique() if len(s) else 0)
    done = sorted(n for n, k in per_net.items() if k == full)
    df = df[df["network"].isin(done)]
    if df.empty:
        raise ProbPruneError(f"{run_dir}: no network has all its {full} trials yet")
    planned = [str(x) for x in dict.fromkeys(df_all_networks(cfg))]
    s = summarize(df, cfg.alpha)
    one = df[df["delta"] == df["delta"].min()]
    per = []
    for (net, method, q), g in one.groupby(["network", "method", "fraction"], sort=False):
        per.append({"network": net, "method": method, "fraction": float(q),
                    "cert_over_exact_median": float(np.median(g["cert"] / g["err_lb"]))})
    rec = lambda frame: json.loads(frame.to_json(orient="records"))  # noqa: E731  (NaN -> null)
    return {
        "name": name,
        "config_hash": cfg.hash,
        "command": f"probprune mc run experiments/{name}.yaml",
        "complete": complete,
        "networks_planned": planned,
        "networks_missing": [n for n in planned if n not in done],
        "rows": int(len(df)),
        "networks": int(df.groupby(["seed", "network", "trial"]).ngroups),
        "configurations": int(len(s)),
        "verdict_counts": {k: int(v) for k, v in s["verdict"].value_counts().items()},
        "min_looseness": float(df["looseness_lb"].min()),
        "max_W_over_B": float(df["max_W_over_B"].max()),
        "max_E_over_eta": float(df["max_E_over_eta"].max()),
        "cert_over_exact": {"median": float(np.median(df["cert"] / df["err_lb"])),
                            "min": float((df["cert"] / df["err_lb"]).min()),
                            "max": float((df["cert"] / df["err_lb"]).max())},
        "per_setting": per,
        "config_summary": rec(s),
        "fraction_fits": rec(fraction_fits(df)),
        "width_fits": rec(width_fits(df)),
    }


def df_all_networks(cfg) -> list[str]:
    """Network names a config plans, in plan order (one trial-0 row per group, no measurement)."""
    from probprune.mc.trials import groups

    return [g.network.label for g in groups(cfg)]


def mc_looseness_medians(r: Results, name: str = "mc_linear") -> list[dict]:
    """Per (network, method, q): the median bound / exact error at the smallest delta."""
    s = mc_summary(r, name)["config_summary"]
    dmin = min(x["delta"] for x in s)
    return [x for x in s if x["delta"] == dmin]


def _net(n: str) -> str:
    return n.replace("fcn:", "")


# ------------------------------------------------------------------------------------------------ blocks
def block_glance_table(r: Results) -> str:
    lin_o, lin_n, cal = (tight_linear(r, k) for k in ("old_default", "new_default", "calibrated"))
    rel_o, rel_n = tight_relu(r, "old_default"), tight_relu(r, "new_default")
    tl, tr = r.get(TIGHT, "targets", "linear_default_median"), r.get(TIGHT, "targets", "relu_default_median")
    rows = [
        "| what | before | now | target | script / result |",
        "|---|---:|---:|---:|---|",
        f"| a-priori bound / exact sup error, {lin_n['n']} linear families ({tight_grid(r, 'linear')}), median (p90) "
        f"| {ratio(lin_o['median'])} ({ratio(lin_o['p90'])}) | **{ratio(lin_n['median'])}** ({ratio(lin_n['p90'])}) "
        f"| <= {tl:g}x, {target_verdict(lin_n['median'], tl)} | `bench_tightness.py` -> `tightness.json` |",
        f"| same, calibrated statement (§10.1, T draws, gamma 0.05) | - | **{ratio(cal['median'])}** "
        f"({ratio(cal['p90'])}) | | same |",
        f"| a-priori bound / best PGD, {rel_n['n']} ReLU families, median | {ratio(rel_o['median'])} "
        f"| **{ratio(rel_n['median'])}** | <= {tr:g}x, {target_verdict(rel_n['median'], tr)} | same |",
    ]
    files = [(BUDGET_RATIO, "bench_budget_ratio.py", "budget_ratio.json")]
    for file, script, out in files:
        net = budget_ratio_network(r, file)
        before = r.get(file, "before_issue_at_10pct") if "before_issue_at_10pct" in r.json(file) else {}
        first = True
        for method in BASE_METHODS:
            row = budget_ratio_row(r, method, 0.1, file)
            a, c, t = row["ratio_analytic"], row["ratio_calibrated"], row.get("target")
            tgt = "" if t is None else (f">= {t:g}: {target_verdict(a, t, False)} / {target_verdict(c, t, False)}")
            what = (f"guaranteed / empirical uniform budget, {net}, {row['rel']:.0%} relative error, {method}: "
                    "analytic / calibrated") if first else f"same, {method} pruning: analytic / calibrated"
            b = before.get(method)
            rows.append(f"| {what} | {'-' if b is None else f'{b:g}'} | **{frac2(a)} / {frac2(c)}** | {tgt} "
                        f"| `{script}` -> `{out}` |" if first else
                        f"| {what} | {'-' if b is None else f'{b:g}'} | **{frac2(a)} / {frac2(c)}** | {tgt} | same |")
            first = False
    if r.exists(BUDGET_RATIO_TRAINED):
        rows += trained_budget_rows(r)
    n_net, n_frac = cert_grid(r)
    tc = cert_summary(r, "target_median")
    rows += [
        f"| certificate / best PGD on the unit ball, {n_net} trained nets x {n_frac} fractions, median over the "
        f"{len(cert_summary(r, 'networks_certified_by_new'))} certified ({len(cert_summary(r, 'networks_refused_by_new'))} refused) "
        f"| {ratio(cert_summary(r, 'ball_old_over_pgd_median'))} | **{ratio(cert_summary(r, 'ball_new_over_pgd_median'))}** "
        f"({ratio(cert_summary(r, 'ball_new_without_sdp_over_pgd_median'))} without the SDP) "
        f"| <= {tc:g}x, {target_verdict(cert_summary(r, 'ball_new_over_pgd_median'), tc)} "
        "| `bench_certificates.py` -> `certificates.json` |",
    ]
    if r.get(CERTS, "summary").get("networks_with_sdp"):
        so, sn = cert_sdp_range(r, "old_over_pgd"), cert_sdp_range(r, "sdp_over_pgd")
        n_sdp = len(cert_summary(r, 'networks_with_sdp'))
        rows.append(f"| same, the {'MLP' if n_sdp == 1 else f'{n_sdp} MLPs'} small enough for the cross-network "
                    f"SDP (§12.6, `--bound sdp`) | {rng(*so)}x | **{rng(*sn)}x** | <= {tc:g}x there | same |")
    fam = r.get(CERTS, "summary").get("per_family") or {}
    if fam:  # issue 19: the median within each family, and auto's time
        parts = [f"{k} {ratio(v['new_over_pgd_median'])} ({target_verdict(v['new_over_pgd_median'], v['target'])})"
                 for k, v in sorted(fam.items())]
        olds = " / ".join(ratio(v["old_over_pgd_median"]) for k, v in sorted(fam.items()))
        tf = next(iter(fam.values()))["target"]
        rows.append(f"| same, median within each family ({' / '.join(sorted(fam))}) | {olds} | **{'; '.join(parts)}** "
                    f"| <= {tf:g}x each | same |")
        ts = cert_summary(r, "target_auto_seconds")
        rows.append(f"| `auto` time per certificate, max over the rows (lowering included) | - "
                    f"| **{seconds(cert_summary(r, 'auto_seconds_max'))}** | <= {seconds(ts)}, "
                    f"{target_verdict(cert_summary(r, 'auto_seconds_max'), ts)} | same |")
    if r.exists(CERTS_AUTO30):  # what a longer time limit buys (same rows and PGD values)
        s30 = r.get(CERTS_AUTO30, "summary")
        lim = f"{s30['limit_s']:g}"
        now, before = s30[f"auto_{lim}s_over_pgd"], s30["auto_10s_over_pgd"]
        keys = ["overall"] + sorted(k for k in now if k != "overall")
        rows.append(f"| same with `--time-limit {lim}`, median {' / '.join(keys)} "
                    f"| {' / '.join(ratio(before[k]) for k in keys)} (10 s) "
                    f"| **{' / '.join(ratio(now[k]) for k in keys)}** (max {seconds(s30[f'auto_{lim}s_seconds_max'])}) "
                    f"| <= {s30['targets']['overall']:g}x / {s30['targets']['per_family']:g}x each "
                    "| `bench_auto_limit.py 30` -> `certificates_auto30.json` |")
    rows += [
        f"| same on l2 balls around test inputs (data region), median | - "
        f"| **{ratio(cert_summary(r, 'region_new_over_pgd_median'))}** | | same |",
    ]
    models = scale_targets(r)
    labels = " / ".join(MODEL_LABELS.get(m, m) for m in models)
    met = sum(scale_now(r, m) <= scale_target(r, m) for m in models)
    tgts = " / ".join(seconds(scale_target(r, m)) for m in models)
    rows.append(f"| certified budget time, {labels} (32x32x3, load {rng(*scale_load(r, models), f=lambda x: f'{x:.1f}')}) "
                f"| {' / '.join(scale_before(r, m) for m in models)} "
                f"| **{' / '.join(seconds(scale_now(r, m)) for m in models)}** "
                f"| {tgts}: {met} of {len(models)} met | `bench_scale.py` -> `scale.json` |")
    rows.append(f"| subset-sum solver vs HiGHS MILP (same outputs asserted), closest / sparsest | - "
                f"| **{ratio(subset_speed(r, 'pensia'))} / {ratio(subset_speed(r, 'sparsest'))}** | "
                "| `bench_subsetsum.py` -> `subsetsum.json` |")
    return "\n".join(rows)


def mc_partial_note(r: Results, name: str = "mc_linear") -> str:
    """'' for a complete run; else which networks are in the summary and which did not finish."""
    m = mc_summary(r, name)
    if m["complete"] and not m.get("networks_missing"):
        return ""
    miss = m.get("networks_missing", [])
    done = len(m.get("networks_planned", [])) - len(miss)
    return (f"partial run: {done} of {len(m.get('networks_planned', []))} networks finished on the shared machine "
            f"(not yet: {', '.join(_net(x) for x in miss)}; `probprune mc run` resumes it)")


def block_mc_linear_bullet(r: Results) -> str:
    m = mc_summary(r, "mc_linear")
    meds = [x["loose_lb_median"] for x in mc_looseness_medians(r)]
    vc = m["verdict_counts"]
    note = mc_partial_note(r)
    verdict = (f"**consistent in all {m['configurations']} configurations{' finished' if note else ''}, no violation**"
               if vc.get("consistent", 0) == m["configurations"] else
               "**verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(vc.items())) + f" of {m['configurations']}**")
    return (f"{verdict}; the bound / exact-error ratio was never below {sig(m['min_looseness'])} in any trial, "
            f"and its per-configuration median (smallest delta) runs from {sig(min(meds))} to {sig(max(meds))}"
            + (f" ({note})" if note else ""))


def block_mc_exponents(r: Results) -> str:
    fits = mc_summary(r, "mc_linear")["fraction_fits"]
    mag = [f["err_exponent"] for f in fits if f["method"].startswith("magnitude")]
    ran = [f["err_exponent"] for f in fits if f["method"].startswith("random")]
    return (f"fitted exponents of error vs fraction {rng(min(mag), max(mag), lambda x: f'{x:.2f}')} for magnitude "
            f"(theory 3/2) and {rng(min(ran), max(ran), lambda x: f'{x:.2f}')} for random (theory 1/2)")


def block_proofs_line(r: Results) -> str:
    s = proofs_summary(r)
    return (f"{s['checks']} checks, {s['pass']} pass, every [D] statement of THEORY.md covered "
            f"({s['d_statements_covered']}/{s['d_statements']}), {s['by_kind'].get('bridge', 0)} code-to-proof bridges")


def block_proofs_latest(r: Results) -> str:
    """docs/proofs.md "Latest run": both tables and the summary line, as `python -m proofs_check --markdown` prints."""
    d = r.json(PROOFS)
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    out = ["| check | statement | ref | kind | method | status |", "|---|---|---|---|---|---|"]
    for c in d["checks"]:
        out.append(f"| {c['id']} | {esc(c['statement'])} | {c['ref']} | {c['kind']} | {c['method']} | {c['status']} |")
    out += ["", "| [D] statement | ref | checks | status |", "|---|---|---|---|"]
    for s in d["d_statements"]:
        out.append(f"| {s['id']}: {esc(s.get('statement', ''))} | {s.get('ref', '')} | {', '.join(s.get('checks', []))} "
                   f"| {s.get('status', '')} |")
    s = d["summary"]
    bk, bm = s["by_kind"], s["by_method"]
    out += ["", f"{s['checks']} checks: {s['pass']} pass, {s['fail']} fail, {s['error']} error, {s['skip']} skip "
                f"({', '.join(f'{v} {k}' for k, v in bk.items())}; {', '.join(f'{v} {k}' for k, v in bm.items())}). "
                f"[D] statements covered: {s['d_statements_covered']}/{s['d_statements']}. {s['seconds']:.1f} s. "
                f"{'OK' if s['ok'] else 'NOT OK'}"]
    return "\n".join(out)


def block_budget_speed(r: Results) -> str:
    return (f"a LeNet-300-100 budget query takes about {sig(budget_ms(r, 'magnitude/optimal'), 2)} ms in `optimal` "
            f"mode and {sig(budget_ms(r, 'magnitude/uniform'), 1)} ms in `uniform` mode on this 2-core machine while "
            f"other jobs ran; one bound evaluation takes {sig(budget_ms(r, 'bound'), 1)} ms")


LTH_LEVELS = ("100.00%", "13.52%", "4.47%", "1.85%", "0.96%")


def block_lth_table(r: Results) -> str:
    """Columns of experiments/results/lth/summary.md: level, remaining, ticket, late rewind, ticket's densities, ERK,
    re-init (test accuracy at the early-stopping epoch, mean ± 95% t-interval over seeds)."""
    rows = lth_rows(r)
    out = ["| weights remaining | ticket (rewind to init) | ticket (late rewind) | random, ticket's densities "
           "| random, ERK | ticket's mask, re-init |", "|---:|---:|---:|---:|---:|---:|"]
    for lv in LTH_LEVELS:
        c = rows.get(lv)
        if c is None:
            raise ProbPruneError(f"result file {LTH} has no level with {lv} weights remaining")
        if lv == "100.00%":
            out.append(f"| 100% (dense) | {c[2]} | | | | |")
        else:
            out.append(f"| {lv} | {c[2]} | {c[3]} | {c[4]} | {c[5]} | {c[6]} |")
    return "\n".join(out)


def block_pensia_table(r: Results) -> str:
    p = r.get(PENSIA, "published")
    tgt = r.get(PENSIA, "target", "test_acc")
    out = ["| run | coefficients before → kept | kept / target | weights outside ε | solve time wall (CPU) "
           "| test acc. of the approximated net |", "|---|---|---|---|---|---|",
           f"| **published** ({p['solver'].split(',')[0]}, {p['solver'].split(',')[-1].strip()}; full MNIST) "
           f"| {p['coefficients_before']:,} → {p['coefficients_after']:,} | {p['kept_over_target']:.2f}× "
           f"| 0 (\"all within ε\") | {p['solve_seconds']:,} s ≈ {p['solve_seconds'] / 3600:.1f} h "
           f"| never measured ({p['target_test_acc'] * 100:.2f}% printed = target's) |"]
    labels = {("row", "closest"): "ours, their quirk (coefficients per row), closest (their objective)",
              ("weight", "closest"): "ours, faithful (coefficients per weight), closest",
              ("row", "sparsest"): "ours, per row, sparsest (fewest coefficients within ε)",
              ("weight", "sparsest"): "ours, per weight, sparsest"}
    for (v, m), lab in labels.items():
        x = pensia_run(r, v, m)
        out.append(f"| {lab} | {x['coefficients_before']:,} → {x['coefficients_after']:,} "
                   f"| {x['kept_over_target']:.2f}× | {x['failures']} (max error {x['max_error']:.4f}) "
                   f"| {x['solve_seconds']:.0f} s ({x['solve_cpu_seconds']:.0f} s) "
                   f"| **{x['approx_test_acc']:.3f}** (target {tgt:.3f}) |")
    return "\n".join(out)


def block_lth_table_full(r: Results) -> str:
    """docs/pruning.md: the committed LTH table as written by experiments/lth_study.py."""
    return r.text(LTH).strip()


def block_pensia_table_full(r: Results) -> str:
    """docs/lottery.md: the Exp. 1 table plus the full two-layer gadget row."""
    g = r.get(PENSIA, "gadget")
    return block_pensia_table(r) + (
        f"\n| full two-layer gadget (§4.2), {g['units_per_input']} units per input and sign, {g['mode']}, per-weight ε "
        f"| random net {g['params_before']:,} → kept {g['params_after']:,} | {g['kept_over_target']:.2f}× "
        f"| {g['failures']} (max error {g['max_error']:.4f}) | {g['seconds']:.0f} s ({g['cpu_seconds']:.0f} s) "
        f"| **{g['acc_constructed']:.3f}** (target {g['acc_target']:.3f}; {g['prediction_agreement']:.1%} same "
        "predictions) |")


MC_BENCH = "benchmarks/results/mc.json"


def block_mc_bench_table(r: Results) -> str:
    """docs/montecarlo.md: the batched engine against the per-trial loop (benchmarks/results/mc.json)."""
    mm = r.get(MC_BENCH, "matmul_gflops_float64_1024")
    out = ["| workload | widths | trials | engine s | user loop s | speedup | engine GFLOP/s (% of matmul) |",
           "|---|---|---|---|---|---|---|"]
    for x in r.get(MC_BENCH, "results"):
        if x["workload"] == "relu_pgd":
            what, gf = "ReLU PGD lower bound", f"{x['engine_gflops']:.2f} ({x['engine_gflops'] / mm:.0%})"
        else:
            what, gf = "linear exact + Cert-D norms", f"{x['engine_gflops_matmul_part']:.2f} (SVD-bound)"
        out.append(f"| {what} | {'-'.join(map(str, x['widths']))} | {x['trials']} | {x['engine_s']:.3f} "
                   f"| {x['user_loop_s']:.3f} | {x['speedup']:.1f}× | {gf} |")
    return "\n".join(out)


def _v_mc_bench_machine(r: Results) -> str:
    return (f"**{r.get(MC_BENCH, 'matmul_gflops_float64_1024'):.1f} GFLOP/s**, with a load average of "
            f"{r.get(MC_BENCH, 'load_average_1min'):.1f} on {r.get(MC_BENCH, 'cpu_count')} cores")


def _v_mc_bench_verdict(r: Results) -> str:
    """Which workloads of mc.json meet the >= 10x speed-up target, and the ranges of the others."""
    res = r.get(MC_BENCH, "results")
    met = [x for x in res if x["speedup"] >= 10]
    miss = [x for x in res if x["speedup"] < 10]
    kind = {"relu_pgd": "PGD", "linear_exact": "linear nets"}
    out = []
    if met:
        out.append("met for " + ", ".join(f"{kind.get(x['workload'], x['workload'])} {'-'.join(map(str, x['widths']))} "
                                         f"({x['speedup']:.1f}×)" for x in met))
    for w in dict.fromkeys(x["workload"] for x in miss):
        s = [x["speedup"] for x in miss if x["workload"] == w]
        out.append(f"not met for {kind.get(w, w)}: {rng(min(s), max(s), lambda v: f'{v:.1f}')}×")
    return "; ".join(out)


def block_mc_linear_docs(r: Results) -> str:
    """docs/montecarlo.md: verdict, looseness, component checks and Cert-D of the linear acceptance run."""
    m = mc_summary(r, "mc_linear")
    meds = mc_looseness_medians(r)
    lo, hi = min(meds, key=lambda x: x["loose_lb_median"]), max(meds, key=lambda x: x["loose_lb_median"])
    desc = lambda x: f"depth {x['depth']}, width {x['width']}, {x['method']} q = {x['fraction']:g}"  # noqa: E731
    vc = m["verdict_counts"]
    s = m["config_summary"]
    cp = max(x["rate_upper"] for x in s)
    ok = vc.get("consistent", 0) == m["configurations"]
    note = mc_partial_note(r)
    head = (f"**Verdict: consistent in all {m['configurations']} configurations{' finished' if note else ''}; "
            "no violation.**" if ok else "**Verdicts: " + ", ".join(f"{k}: {v}" for k, v in sorted(vc.items())) + ".**")
    if note:
        head = f"**This is a {note}.** " + head
    viol = sum(x["V_u"] for x in s)
    return "\n".join([
        f"{head} Of the {m['rows']:,} (trial, bound) pairs of {m['networks']:,} networks, {viol:,} were not certified "
        f"satisfied (exact error above the bound); the largest one-sided 95% CP upper limit of a violation rate is "
        f"{cp:.4f}.",
        "",
        "Other observations:",
        f"- **Looseness.** The bound / exact error ratio is never below {sig(m['min_looseness'])} in any trial. The "
        f"per-configuration median (smallest delta) runs from {sig(lo['loose_lb_median'])} ({desc(lo)}) to "
        f"{sig(hi['loose_lb_median'])} ({desc(hi)}).",
        f"- **Component checks (§6).** The largest ‖W_i‖/B_i seen was {m['max_W_over_B']:.3f} and the largest "
        f"‖E_i‖/η_i was {m['max_E_over_eta']:.3f}.",
        f"- **Cert-D vs the exact error.** The median ratio is {sig(m['cert_over_exact']['median'], 2)} (range "
        f"{sig(m['cert_over_exact']['min'], 2)}–{sig(m['cert_over_exact']['max'], 3)}). For linear nets this looseness "
        "comes from Lemma A alone.",
    ])


def block_mc_linear_table(r: Results) -> str:
    """The per-(network, method, q) table of the linear acceptance run (what experiments/mc_summary.py prints)."""
    m = mc_summary(r, "mc_linear")
    s = m["config_summary"]
    deltas = sorted({x["delta"] for x in s})
    head = ["network", "method", "q", "T", "mean err", "max err"]
    head += [f"bound / verdict (V_u, CP up) at delta={d:g}" for d in deltas]
    head += ["bound/err median", "mean rel E (limit)", "W, E exceed"]
    out = [f"<details><summary>{len(s) // len(deltas)} rows (all {len(s)} configurations)</summary>", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple, dict] = {}
    for x in s:
        groups.setdefault((x["network"], x["method"], x["fraction"]), {})[x["delta"]] = x
    for (net, method, q), g in groups.items():
        r0 = g[deltas[0]]
        cells = [_net(net), method, f"{q:g}", str(int(r0["T"])), f"{r0['mean_lb']:.4g}", f"{r0['max_lb']:.4g}"]
        for d in deltas:
            x = g[d]
            v = x["verdict"] if x["verdict"] != "refuted" else "**REFUTED**"
            cells.append(f"{x['bound']:.3g} / {v} ({int(x['V_u'])}, {x['rate_upper']:.4f})")
        lim = q ** 1.5 if method.startswith("magnitude") else math.sqrt(q)
        cells += [f"{r0['loose_lb_median']:.1f}", f"{r0['mean_rel_E']:.4f} ({lim:.4f})",
                  f"{max(x['W_exceed'] for x in g.values()):.3f}, {max(x['E_exceed'] for x in g.values()):.3f}"]
        out.append("| " + " | ".join(cells) + " |")
    vc = m["verdict_counts"]
    out += ["", f"{len(s)} configurations ({'complete' if m['complete'] else 'INCOMPLETE'} run), verdicts: "
            + ", ".join(f"{k}: {v}" for k, v in vc.items()), "", "</details>"]
    return "\n".join(out)


def _fits_by_width(fits: list[dict], method: str) -> tuple[int, list[tuple[int, float]]]:
    """(depth, [(width, exponent)]) for the shallowest depth: how the exponent moves with width."""
    def shape(n):
        w = _net(n).split("-")
        return len(w) - 1, int(w[1])
    rows = [(shape(f["network"]), f["err_exponent"]) for f in fits if f["method"] == method]
    depth = min(d for (d, _), _ in rows)
    return depth, sorted((w, e) for (d, w), e in rows if d == depth)


def block_mc_fraction_fits(r: Results) -> str:
    m = mc_summary(r, "mc_linear")
    fits = m["fraction_fits"]
    out = ["| network | act | method | fractions | error exponent (se) | theory | bound exponent |",
           "|---|---|---|---|---|---|---|"]
    for f in fits:
        out.append(f"| {_net(f['network'])} | {f['activation']} | {f['method']} "
                   f"| {', '.join(f'{q:.2f}' for q in f['fractions'])} | {f['err_exponent']:.3f} "
                   f"({sig(f['err_exponent_se'], 2)}) | {f['theory']:.2f} | {f['bound_exponent']:.3f} |")
    mag = [f for f in fits if f["method"].startswith("magnitude")]
    ran = [f for f in fits if f["method"].startswith("random")]
    e = lambda fs, k: rng(min(f[k] for f in fs), max(f[k] for f in fs), lambda x: f"{x:.2f}")  # noqa: E731
    out += ["", "Measured exponents:", f"- magnitude: {e(mag, 'err_exponent')};", f"- random: {e(ran, 'err_exponent')}."]
    depth, wm = _fits_by_width(fits, "magnitude")
    _, wr = _fits_by_width(fits, "random")
    arrow = lambda xs: " → ".join(f"{x:.3f}" for _, x in xs)  # noqa: E731
    out += ["", f"With {depth} weight layers, magnitude goes {arrow(wm)} and random goes {arrow(wr)} for "
                f"w = {' → '.join(str(w) for w, _ in wm)}."]
    # the finite-width gap of the layer norms, at the narrowest shallowest net and the smallest fraction
    s = [x for x in m["config_summary"] if x["delta"] == min(y["delta"] for y in m["config_summary"])]
    w0 = min(x["width"] for x in s)
    d0 = min(x["depth"] for x in s)
    q0 = min(x["fraction"] for x in s)
    at = {x["method"]: x["mean_rel_E"] for x in s if (x["width"], x["depth"], x["fraction"]) == (w0, d0, q0)}
    if "magnitude" in at and "random" in at:
        out += ["", f"The measured ‖E_i‖/‖W_i‖ against its Bai–Yin limit at w = {w0}, depth {d0}, q = {q0:g}: "
                    f"{at['magnitude']:.4f} against q^{{3/2}} = {q0 ** 1.5:.4f} (magnitude), {at['random']:.3f} against "
                    f"√p = {math.sqrt(q0):.3f} (random)."]
    out += ["", f"The bound's own exponents: magnitude {e(mag, 'bound_exponent')}, random {e(ran, 'bound_exponent')}."]
    return "\n".join(out)


def block_mc_width_fits(r: Results) -> str:
    fits = mc_summary(r, "mc_linear")["width_fits"]
    ee = [f["err_exponent"] for f in fits]
    be = [f["bound_exponent"] for f in fits]
    ws = sorted({w for f in fits for w in f["widths"]})
    out = [f"At fixed depth and fraction, the mean exact error against the width has exponents {min(ee):+.2f} to "
           f"{max(ee):+.2f} over w = {ws[0]}…{ws[-1]} (§3.10: c_arch does not depend on width under the paper's "
           f"scaling). The bound's fitted width exponents over the same range: {min(be):+.2f} to {max(be):+.2f}.", "",
           "| depth | act | method | q | widths | mean error | error exponent | bound | bound exponent |",
           "|---|---|---|---|---|---|---|---|---|"]
    for f in fits:
        out.append(f"| {f['depth']} | {f['activation']} | {f['method']} | {f['fraction']:.3f} "
                   f"| {', '.join(map(str, f['widths']))} | {', '.join(f'{x:.4f}' for x in f['mean_err'])} "
                   f"| {f['err_exponent']:.3f} | {', '.join(sig(x, 4) for x in f['bound'])} | {f['bound_exponent']:.3f} |")
    return "\n".join(out)


def _lth_acc(cell: str) -> float:
    return float(cell.split("±")[0])


def _v_lth_within(r: Results) -> str:
    """The sparsest level at which the ticket's mean accuracy is within 0.5 points of the dense network's."""
    rows = sorted(lth_rows(r).values(), key=lambda c: -float(c[1].rstrip("%")))
    dense = _lth_acc(rows[0][2])
    return [c for c in rows if dense - _lth_acc(c[2]) <= 0.5][-1][1]


def _v_lth_gap(r: Results) -> str:
    rows = sorted(lth_rows(r).values(), key=lambda c: -float(c[1].rstrip("%")))
    gap = _lth_acc(rows[0][2]) - _lth_acc(rows[-1][2])
    return f"{abs(gap):.1f} points {'below' if gap >= 0 else 'above'} dense at {rows[-1][1]}"


def _v_lth_beats(r: Results) -> str:
    """Levels at which the ticket is ahead of the random mask with its own per-layer densities by a paired 95%
    interval over seeds that excludes 0 (lth_stats.paired), out of the pruned levels."""
    import pandas as pd

    from probprune.experiments.lth_stats import paired

    files = sorted((r.root / "experiments" / "results" / "lth").glob("seed*.csv"))
    if not files:
        raise ProbPruneError("experiments/results/lth/ has no seed*.csv (run experiments/lth_study.py)")
    d = paired(pd.concat([pd.read_csv(f) for f in files], ignore_index=True), "ticket", "ticket_density")
    d = d[d["level"] > 0]
    wins, ties = int((d["sign"] > 0).sum()), int((d["sign"] == 0).sum())
    return (f"at {wins} of {len(d)} pruned levels (paired 95% interval over seeds excluding 0; "
            f"not distinguishable at {ties})")


def _v_pensia_failures(r: Results) -> str:
    return f"{pensia_run(r, 'weight', 'closest')['failures']} of {r.get(PENSIA, 'target', 'weights'):,}"


def _v_mc_size(r: Results) -> str:
    m = mc_summary(r, "mc_linear")
    pruned = len({(x["network"], x["method"], x["fraction"]) for x in m["config_summary"]})
    per_net = pruned // max(1, len({x["network"] for x in m["config_summary"]}))
    planned = len(m.get("networks_planned", [])) or 1
    done_groups = len({x["network"] for x in m["config_summary"]})
    of = "" if done_groups == planned else f" (of {planned} network groups planned, {done_groups} finished)"
    return (f"{m['networks']:,} networks, {m['networks'] * per_net:,} pruned networks, {m['configurations']} "
            f"configurations, {m['rows']:,} rows{of}")


# ------------------------------------------------------------------------------------------------ computed examples
WIDTH_EXAMPLE = (1, 1738, 897_793)  # 784-d-d-10, magnitude q = 0.05, delta = 0.05 (README, monotonicity in width)


def width_example(statement: str) -> list[float]:
    """Not a stored result but the library's own deterministic value: apriori_bound of 784-d-d-10 (ReLU, paper law
    K = 1) at q = 0.05, delta = 0.05 for the widths of WIDTH_EXAMPLE, under ``statement``."""
    from probprune.net.templates import fcn_spec
    from probprune.theory.apriori import apriori_bound

    return [float(apriori_bound(fcn_spec([784, d, d, 10], "relu"), 0.05, 0.05, "magnitude", statement=statement).eps)
            for d in WIDTH_EXAMPLE]


def lenet_bound(statement: str) -> float:
    """The library's apriori_bound for the `probprune bound` example: 784-300-100-10 ReLU, magnitude q = 0.05,
    delta = 0.05, under ``statement``."""
    from probprune.net.templates import fcn_spec
    from probprune.theory.apriori import apriori_bound

    return float(apriori_bound(fcn_spec([784, 300, 100, 10], "relu"), 0.05, 0.05, "magnitude", statement=statement).eps)


def _v_width_bernstein(r: Results) -> str:
    e = width_example("bernstein")
    d = WIDTH_EXAMPLE
    return f"bound {sig(e[0])} at d = {d[0]:,}, {sig(e[1])} near d = {d[1]:,}, {sig(e[2])} at d = {d[2]:,}"


def _v_width_best(r: Results) -> str:
    e = width_example("best")
    return f"{sig(e[0])}, {sig(e[1])} and {sig(e[2])}"


# ------------------------------------------------------------------------------------------------ inline values
def _v_budget_rank(r: Results) -> str:
    row = budget_ratio_row(r, "random", 0.1)
    return f"rank {row['calibrated_rank']} of {r.get(BUDGET_RATIO, 'trials')}"


def _v_all_sound(r: Results) -> str:
    return "true" if cert_summary(r, "all_sound") else "**false**"


BLOCKS: dict[str, Callable[[Results], str]] = {
    "glance-table": block_glance_table,
    "mc-linear-bullet": block_mc_linear_bullet,
    "mc-exponents": block_mc_exponents,
    "proofs-line": block_proofs_line,
    "proofs-latest": block_proofs_latest,
    "budget-speed": block_budget_speed,
    "lth-table": block_lth_table,
    "pensia-table": block_pensia_table,
    "pensia-table-full": block_pensia_table_full,
    "lth-table-full": block_lth_table_full,
    "mc-bench-table": block_mc_bench_table,
    "width-example-bernstein": _v_width_bernstein,
    "width-example-best": _v_width_best,
    "lenet-bound-best": lambda r: sig(lenet_bound("best"), 2),
    "lenet-bound-bernstein": lambda r: sig(lenet_bound("bernstein")),
    "mc-bench-machine": _v_mc_bench_machine,
    "mc-bench-verdict": _v_mc_bench_verdict,
    "mc-linear-docs": block_mc_linear_docs,
    "mc-linear-table": block_mc_linear_table,
    "mc-fraction-fits": block_mc_fraction_fits,
    "mc-width-fits": block_mc_width_fits,
    "budget-rank": _v_budget_rank,
    "all-sound": _v_all_sound,
    "lenet-budget-s": lambda r: seconds(scale_now(r, "lenet")),
    "mc-linear-size": _v_mc_size,
    "lth-within": _v_lth_within,
    "lth-gap": _v_lth_gap,
    "lth-beats": _v_lth_beats,
    "pensia-weight-failures": _v_pensia_failures,
    "pensia-row-closest-s": lambda r: f"{pensia_run(r, 'row', 'closest')['solve_seconds']:.0f} s",
    "pensia-published-s": lambda r: f"{r.get(PENSIA, 'published', 'solve_seconds'):,} s",
    "cert-sdp-now": lambda r: (rng(*cert_sdp_range(r, "sdp_over_pgd")) + "x"
                               if r.get(CERTS, "summary").get("networks_with_sdp") else "no network in this run"),
    "proofs-d-count": lambda r: str(proofs_summary(r)["d_statements"]),
    "proofs-seconds": lambda r: seconds(proofs_summary(r)["seconds"]),
    "mc-linear-hash": lambda r: mc_summary(r, "mc_linear")["config_hash"],
}


def value(name: str, r: Results) -> str:
    """The text of one marker: a registered block, or ``fig.<experiment>.<macro>`` (a committed figure number)."""
    if name in BLOCKS:
        return BLOCKS[name](r)
    if name.startswith("caption."):
        return figure_caption(r, name.split(".", 1)[1])
    if name.startswith("pensia."):
        return pensia_value(r, *name.split(".")[1:])
    if name.startswith("fig."):
        parts = name.split(".")
        if len(parts) == 3:
            return figure_number(r, parts[1], parts[2])
    raise ProbPruneError(f"unknown numbers marker {name!r}; registered: {', '.join(BLOCKS)}, fig.<experiment>.<macro>, "
                         "caption.<experiment>, pensia.<...>")


# ------------------------------------------------------------------------------------------------ rewriting
def render_text(text: str, r: Results) -> str:
    """``text`` with every marked block and inline value regenerated."""
    def block(m: re.Match) -> str:
        body = value(m.group(2), r)
        inner = m.group(3)
        if inner.startswith("\n"):  # a block on its own lines keeps them, indented like its opening marker
            line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
            indent = line if not line.strip() else ""
            body = "\n" + "\n".join(indent + x if x else x for x in body.split("\n")) + "\n" + indent
        return m.group(1) + body + m.group(4)

    def inline(m: re.Match) -> str:
        return m.group(1) + value(m.group(2), r) + m.group(4)

    return INLINE_RE.sub(inline, BLOCK_RE.sub(block, text))


@dataclass(frozen=True)
class Change:
    path: str
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new


def render_all(root: Path | str = ROOT, files=DOC_FILES) -> list[Change]:
    root = Path(root)
    r = Results(root)
    out = []
    for rel in files:
        p = root / rel
        if p.exists():
            old = p.read_text()
            out.append(Change(rel, old, render_text(old, r)))
    return out


def markers(text: str) -> list[str]:
    return [m.group(2) for m in BLOCK_RE.finditer(text)] + [m.group(2) for m in INLINE_RE.finditer(text)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m probprune.experiments.docs_numbers", description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", action="store_true", help="rewrite the marked blocks of README.md and docs/*.md")
    g.add_argument("--check", action="store_true", help="exit 1 if any marked block is stale")
    g.add_argument("--mc-summary", metavar="RUN_DIR", help="condense a finished Monte Carlo run into "
                   "experiments/results/<name>_summary.json")
    ap.add_argument("--name", default="mc_linear", help="name of the Monte Carlo summary (default mc_linear)")
    ap.add_argument("--partial", action="store_true", help="with --mc-summary: condense an unfinished run's complete "
                    "networks (the summary and the docs say so)")
    a = ap.parse_args(argv)
    try:
        if a.mc_summary:
            s = summarize_mc_run(a.mc_summary, a.name, partial=a.partial)
            dest = ROOT / MC_SUMMARY.format(name=a.name)
            dest.write_text(json.dumps(s, indent=1) + "\n")
            print(f"wrote {dest.relative_to(ROOT)} ({s['configurations']} configurations, {s['rows']} rows)")
            return 0
        changes = render_all()
    except (ProbPruneError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = [c for c in changes if c.changed]
    if a.write:
        for c in stale:
            (ROOT / c.path).write_text(c.new)
        print(f"rewrote {len(stale)} file(s): {', '.join(c.path for c in stale) or 'none changed'}")
        return 0
    for c in stale:
        print(f"stale: {c.path}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
