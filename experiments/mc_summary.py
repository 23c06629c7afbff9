"""Condensed markdown summary of a Monte Carlo run (used for docs/montecarlo.md).

    python experiments/mc_summary.py results/mc/<hash>

One row per (network, method, fraction): mean and max exact/LB error, the bound at every delta with its verdict
(V_c/V_u and the one-sided CP upper limit of V_u/T), the median looseness bound/err at the smallest delta, the
mean ||E_i||/||W_i|| against the large-width limit (q^{3/2} magnitude, p^{1/2} random; THEORY §3.10) and the
component-check exceedance rates."""
from __future__ import annotations

import sys

import numpy as np

from probprune.mc import load_run, summarize


def main(run_dir: str) -> None:
    cfg, df, complete = load_run(run_dir)
    s = summarize(df, cfg.alpha)
    deltas = sorted(s["delta"].unique())
    head = ["network", "method", "q", "T", "mean err", "max err"]
    head += [f"bound / verdict (V_u, CP up) at delta={d:g}" for d in deltas]
    head += ["bound/err median", "mean rel E (limit)", "W, E exceed"]
    pgd = (df["lb_method"] == "pgd").any()
    has_avg = df["avg_err"].notna().any()
    if pgd:
        head += ["Cert-D/LB median"]
    if has_avg:
        head += ["mean avg err (data)"]
    one = df[df["delta"] == df["delta"].min()]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for (net, method, q), g in s.groupby(["network", "method", "fraction"], sort=False):
        r0 = g[g["delta"] == deltas[0]].iloc[0]
        cells = [net.replace("fcn:", ""), method, f"{q:g}", str(int(r0["T"])), f"{r0['mean_lb']:.4g}",
                 f"{r0['max_lb']:.4g}"]
        for d in deltas:
            r = g[g["delta"] == d].iloc[0]
            v = r["verdict"] if r["verdict"] != "refuted" else "**REFUTED**"
            cells.append(f"{r['bound']:.3g} / {v} ({int(r['V_u'])}, {r['rate_upper']:.4f})")
        lim = q ** 1.5 if method.startswith("magnitude") else np.sqrt(q)
        cells += [f"{r0['loose_lb_median']:.1f}", f"{r0['mean_rel_E']:.4f} ({lim:.4f})",
                  f"{max(g['W_exceed']):.3f}, {max(g['E_exceed']):.3f}"]
        raw = one[(one["network"] == net) & (one["method"] == method) & (one["fraction"] == q)]
        if pgd:
            cells.append(f"{np.median(raw['err_ub'] / raw['err_lb']):.2f}")
        if has_avg:
            cells.append(f"{raw['avg_err'].mean():.4g}")
        print("| " + " | ".join(cells) + " |")
    print()
    print(f"{len(s)} configurations ({'complete' if complete else 'INCOMPLETE'} run), verdicts: "
          + ", ".join(f"{k}: {v}" for k, v in s["verdict"].value_counts().items()))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python experiments/mc_summary.py RUN_DIR")
    main(sys.argv[1])
