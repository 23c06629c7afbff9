"""Figure: required hidden width of one block (square layers d -> d) against d, depth l and eps for the Pensia,
Malach and Orseau width formulas (THEORY §4.3, all [RC] shapes with C = 1) and the counting lower bound (§4.5, [D]).

Usage: python experiments/lottery_widths.py [--C 1] [--delta 0.05]
Writes experiments/results/lottery_widths.png and lottery_widths.csv.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--C", type=float, default=1.0)
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "lottery_widths"))
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    import seaborn as sns

    from probprune.subsetsum.widths import compare_widths

    panels = {
        "d": dict(d=np.array([4, 8, 16, 32, 64, 128, 256, 512, 1024]), l=2, eps=0.01),
        "l": dict(d=100, l=np.array([1, 2, 4, 8, 16, 32]), eps=0.01),
        "eps": dict(d=100, l=2, eps=np.array([0.2, 0.1, 0.03, 0.01, 1e-3, 1e-4, 1e-5])),
    }
    frames = []
    for axis, kw in panels.items():
        df = pd.DataFrame(compare_widths(kw["d"], kw["l"], kw["eps"], args.delta, args.C))
        df["panel"] = axis
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    df["label"] = df["formula"] + " " + df["provenance"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out + ".csv", index=False)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (axis, xlab) in zip(axes, (("d", "layer width d (l = 2, eps = 0.01)"),
                                       ("l", "depth l (d = 100, eps = 0.01)"),
                                       ("eps", "eps (d = 100, l = 2)"))):
        sub = df[df["panel"] == axis]
        sns.lineplot(data=sub, x=axis, y="width", hue="label", marker="o", ax=ax)
        ax.set(xscale="log", yscale="log", xlabel=xlab, ylabel="hidden width of one block")
        if axis == "eps":
            ax.invert_xaxis()
        ax.legend(fontsize=6)
    fig.suptitle(f"Required width (C = {args.C}, natural log, delta = {args.delta}); Malach eps-exponent 2 is a "
                 "placeholder [NR]", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out + ".png", dpi=130)
    print(f"wrote {args.out}.png and .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
