"""Statistics of the lottery-ticket study (experiments/lth_study.py): tidy arms, per-level means with 95% t-intervals
over seeds, and paired differences between arms (same seed, same level), so that a "win" is claimed only when the
paired interval excludes zero. Used by the study script and by the paper generator."""
from __future__ import annotations

import numpy as np
import pandas as pd

CONTROLS = ("ticket_density", "erk", "reinit")
ARMS = ("ticket", "ticket_late_rewind") + CONTROLS


def arms(df: pd.DataFrame) -> pd.DataFrame:
    """Tidy (seed, level, remaining, arm, es_test_acc, es_iter) rows from the per-seed CSVs: the ticket and each control
    of the rewind-to-init run, and the late-rewind ticket."""
    rows = []
    for _, r in df[df["run"] == "rewind_init"].iterrows():
        rows.append((r.seed, r.level, r.remaining, "ticket", r.es_test_acc, r.es_iter))
        for c in CONTROLS:
            if f"{c}_es_acc" in r:
                rows.append((r.seed, r.level, r.remaining, c, r[f"{c}_es_acc"], r[f"{c}_es_iter"]))
    for _, r in df[df["run"] == "rewind_late"].iterrows():
        rows.append((r.seed, r.level, r.remaining, "ticket_late_rewind", r.es_test_acc, r.es_iter))
    return pd.DataFrame(rows, columns=["seed", "level", "remaining", "arm", "es_test_acc", "es_iter"])


def t_interval(x) -> tuple[float, float, float]:
    """(mean, sd, half-width of the 95% t-interval) of a sample; NaN spread for one value."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    n = len(x)
    if n < 2:
        return float(np.mean(x)), float("nan"), float("nan")
    s = float(np.std(x, ddof=1))
    return float(np.mean(x)), s, float(stats.t.ppf(0.975, n - 1) * s / np.sqrt(n))


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds per (level, arm) of the test accuracy at early stopping and of the
    early-stopping iteration."""
    out = []
    for (lv, arm), g in arms(df).groupby(["level", "arm"], sort=True):
        row = {"level": int(lv), "arm": arm, "n_seeds": len(g), "remaining": float(g["remaining"].mean())}
        for col in ("es_test_acc", "es_iter"):
            m, s, h = t_interval(g[col])
            row |= {f"{col}_mean": m, f"{col}_sd": s, f"{col}_ci95": h}
        out.append(row)
    return pd.DataFrame(out)


def paired(df: pd.DataFrame, arm: str, other: str, col: str = "es_test_acc") -> pd.DataFrame:
    """Per level: the mean over seeds of (arm - other) and its 95% t-interval; ``sign`` is +1 / -1 when the interval
    excludes 0 (arm larger / smaller) and 0 when the two are not distinguishable."""
    t = arms(df)
    a = t[t.arm == arm].set_index(["seed", "level"])[col]
    b = t[t.arm == other].set_index(["seed", "level"])[col]
    d = (a - b).dropna().reset_index()
    out = []
    for lv, g in d.groupby("level"):
        m, _, h = t_interval(g[col])
        sign = 0 if not np.isfinite(h) or abs(m) <= h else int(np.sign(m))
        out.append({"level": int(lv), "diff_mean": m, "ci95": h, "n": len(g), "sign": sign})
    return pd.DataFrame(out)
