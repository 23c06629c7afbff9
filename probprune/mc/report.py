"""Summaries of a Monte Carlo run (THEORY §6 statistics, §3.10 scaling laws).

* :func:`summarize` — one row per configuration (network, activation, law, method, fraction, delta): T, certified
  violations V_c, not-certified-satisfied V_u, Clopper-Pearson limits, verdict (refuted / consistent / inconclusive),
  looseness bound/LB and bound/UB (median, 10% and 90% quantiles), mean errors, component exceedance rates.
* :func:`fraction_fits` — exponent of the mean error vs the pruned fraction per (network, activation, law, method)
  (theory: 3/2 magnitude, 1/2 random, first order, §3.10), also for the bound.
* :func:`width_fits` — exponent of the mean error and of the bound vs the hidden width for grid networks (theory: the
  error's c_arch does not depend on width, exponent ~ 0; the Bernstein bound grows like (ln n)^{l/2}).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from probprune.core.errors import ProbPruneError
from probprune.mc.stats import config_verdict, fit_power_law, looseness_summary

CONFIG_KEYS = ["network", "activation", "law", "method", "fraction", "delta"]


def summarize(df: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    if df.empty:
        raise ProbPruneError("the run has no finished trials yet")
    rows = []
    for key, g in df.groupby(CONFIG_KEYS, sort=False, dropna=False):
        d = dict(zip(CONFIG_KEYS, key))
        T = len(g)
        d.update(depth=int(g["depth"].iloc[0]), width=int(g["width"].iloc[0]), T=T,
                 bound=float(g["bound"].iloc[0]), mean_lb=float(g["err_lb"].mean()),
                 mean_ub=float(g["err_ub"].replace(np.inf, np.nan).mean()),
                 max_lb=float(g["err_lb"].max()), lb_method=str(g["lb_method"].iloc[0]),
                 mean_avg_err=float(g["avg_err"].mean()) if g["avg_err"].notna().any() else float("nan"),
                 mean_rel_E=float(g["rel_E"].mean()), mean_realized=float(g["realized_fraction"].mean()))
        if np.isnan(d["bound"]):
            d.update(V_c=0, V_u=0, rate_lower=float("nan"), rate_upper=float("nan"), verdict="no_bound")
        else:
            V_c = int((g["verdict"] == "violated").sum())
            V_u = int((g["verdict"] != "satisfied").sum())
            v = config_verdict(V_c, V_u, T, d["delta"], alpha)
            d.update(V_c=V_c, V_u=V_u, rate_lower=v.rate_lower, rate_upper=v.rate_upper, verdict=v.verdict)
            def exceed(col):
                v = g[col]
                return float((v[v.notna()] > 1).mean()) if v.notna().any() else float("nan")

            d.update(W_exceed=exceed("max_W_over_B"), E_exceed=exceed("max_E_over_eta"))
        lo = looseness_summary(g["looseness_lb"])
        lu = looseness_summary(g["looseness_ub"])
        d.update(loose_lb_median=lo.median, loose_lb_q10=lo.q10, loose_lb_q90=lo.q90,
                 loose_ub_median=lu.median, loose_ub_q10=lu.q10, loose_ub_q90=lu.q90)
        rows.append(d)
    return pd.DataFrame(rows)


def _theory_exponent(method: str) -> float:
    """The theory slope drawn next to a fit: the registry family's exponent (1.5 magnitude, 0.5 random; THEORY §3.4);
    0.5 for the lib_* methods, as this report has always written for them."""
    from probprune.core.registry import error_exponent

    return error_exponent(method, 0.5)


def fraction_fits(df: pd.DataFrame) -> pd.DataFrame:
    """log-log least squares of mean error (LB; exact for linear nets) and of the bound vs the fraction, over
    fractions > 0, per (network, activation, law, method)."""
    rows = []
    one = df[df["delta"] == df["delta"].min()]
    for key, g in one.groupby(["network", "activation", "law", "method"], sort=False):
        m = g[g["fraction"] > 0].groupby("fraction").agg(err=("err_lb", "mean"), bound=("bound", "first"))
        if len(m) < 2:
            continue
        d = dict(zip(["network", "activation", "law", "method"], key))
        fe = fit_power_law(m.index.values, m["err"].values)
        d.update(fractions=list(map(float, m.index.values)), err_exponent=fe.exponent, err_exponent_se=fe.stderr,
                 err_r2=fe.r2, theory=_theory_exponent(key[3]))
        if m["bound"].notna().all():
            fb = fit_power_law(m.index.values, m["bound"].values)
            d.update(bound_exponent=fb.exponent)
        rows.append(d)
    return pd.DataFrame(rows)


def width_fits(df: pd.DataFrame) -> pd.DataFrame:
    """log-log fits of mean error and bound vs hidden width (grid FCNs), per (depth, activation, law, method,
    fraction), at the smallest delta."""
    rows = []
    grid = df[(df["width"] > 0) & (df["delta"] == df["delta"].min())]
    for key, g in grid.groupby(["depth", "activation", "law", "method", "fraction"], sort=False):
        m = g.groupby("width").agg(err=("err_lb", "mean"), bound=("bound", "first"))
        if len(m) < 2 or key[4] <= 0:
            continue
        d = dict(zip(["depth", "activation", "law", "method", "fraction"], key))
        fe = fit_power_law(m.index.values, m["err"].values)
        d.update(widths=list(map(int, m.index.values)), mean_err=list(map(float, m["err"].values)),
                 err_exponent=fe.exponent, err_exponent_se=fe.stderr)
        if m["bound"].notna().all():
            d.update(bound=list(map(float, m["bound"].values)),
                     bound_exponent=fit_power_law(m.index.values, m["bound"].values).exponent)
        rows.append(d)
    return pd.DataFrame(rows)


def report(df: pd.DataFrame, alpha: float = 0.05) -> dict:
    s = summarize(df, alpha)
    return {
        "configurations": s,
        "refuted": s[s["verdict"] == "refuted"],
        "fraction_fits": fraction_fits(df),
        "width_fits": width_fits(df),
        "verdict_counts": s["verdict"].value_counts().to_dict(),
    }
