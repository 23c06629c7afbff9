"""Experiment registry and the shared machinery every figure uses (issue 7).

An :class:`Experiment` couples a name, a frozen config dataclass (``small`` default instance: minutes on 2 CPU
cores; ``full``: the paper's size) and a function ``func(cfg, ctx) -> summary``. :func:`run_experiment` makes the
output folder ``<out>/<name>/`` (default ``results/figures/<name>/``, ``results/figures/full/<name>/`` for the full
size), hands the function a :class:`Context` that writes tidy tables (CSV, one row per trial/point), seaborn figures
(PNG + PDF) and progress lines on stderr, and saves ``summary.json`` (config, numbers, caption, timings).

``summary["numbers"]`` maps LaTeX macro names (letters only) to already formatted strings; the paper quotes numbers
only through these macros (``probprune.experiments.paper``). ``summary["caption"]`` is the result-dependent
caption text, ``summary["theory_held"]`` a bool (or None when the figure makes no claim).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from probprune.core.errors import ProbPruneError

DEFAULT_ROOT = Path("results") / "figures"
SIZES = ("small", "full")


@dataclass(frozen=True)
class Experiment:
    name: str
    figure: int
    title: str
    config_cls: type
    func: Callable[[Any, "Context"], dict]
    full: Any = None
    description: str = ""

    def config(self, size: str = "small"):
        if size not in SIZES:
            raise ProbPruneError(f"unknown size {size!r}; use 'small' or 'full'")
        return self.config_cls() if size == "small" else (self.full or self.config_cls())


REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    if exp.name in REGISTRY:
        raise ProbPruneError(f"experiment {exp.name!r} registered twice")
    REGISTRY[exp.name] = exp
    return exp


def _fmt_seconds(s: float) -> str:
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f}min"


class Context:
    """Output helpers for one experiment run."""

    def __init__(self, name: str, out_dir: Path, quiet: bool = False):
        self.name = name
        self.out_dir = Path(out_dir)
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.tables: list[str] = []
        self.figures: list[str] = []

    # progress ------------------------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{self.name} {_fmt_seconds(time.perf_counter() - self.t0)}] {msg}", file=sys.stderr, flush=True)

    def bar(self, total: int, desc: str):
        from tqdm import tqdm

        return tqdm(total=total, desc=f"{self.name}: {desc}", file=sys.stderr, disable=self.quiet,
                    dynamic_ncols=True, leave=False)

    # outputs --------------------------------------------------------------------------------------------
    def save_table(self, df, name: str = "data") -> Path:
        p = self.out_dir / f"{name}.csv"
        df.to_csv(p, index=False)
        self.tables.append(p.name)
        self.log(f"wrote {p} ({len(df)} rows)")
        return p

    def save_figure(self, fig, name: str = "figure") -> list[Path]:
        import matplotlib.pyplot as plt

        out = []
        for ext in ("png", "pdf"):
            p = self.out_dir / f"{name}.{ext}"
            kw = {"dpi": 150} if ext == "png" else {}
            fig.savefig(p, bbox_inches="tight", **kw)
            out.append(p)
            self.figures.append(p.name)
        plt.close(fig)
        self.log(f"wrote {out[0]} and .pdf")
        return out

    def subdir(self, name: str) -> Path:
        p = self.out_dir / name
        p.mkdir(parents=True, exist_ok=True)
        return p


def legend_below(ax, ncol: int = 2, fontsize: float = 7, **kw) -> None:
    """Put the axis legend below the plot (outside the data area; saved thanks to bbox_inches="tight").
    Uses the axis' own handles unless ``handles`` is given."""
    handles = kw.pop("handles", None)
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    else:
        labels = [h.get_label() for h in handles]
    if not handles:
        return
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.24), ncol=ncol, fontsize=fontsize,
              frameon=False, **kw)


def distinct_colors(n: int) -> list:
    """n clearly distinct colours (tab10, then tab20): no sequential palette whose ends are near-black or
    near-white (issue 14: four of six delta lines of coverage.png were near-black)."""
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i) for i in range(n)]


def setup_plotting() -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper", font_scale=1.0)


@dataclass
class ExperimentResult:
    name: str
    size: str
    out_dir: str
    config: dict
    tables: list
    figures: list
    summary: dict
    seconds: float

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def default_out(size: str) -> Path:
    return DEFAULT_ROOT if size == "small" else DEFAULT_ROOT / "full"


def _jsonable(x):
    from probprune.core.jsonio import jsonable

    return jsonable(x)


def fmt(x: float, digits: int = 2) -> str:
    """Format a number for the paper: ``digits`` significant digits, no exponent for moderate values."""
    import math

    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    ax = abs(x)
    if 1e-3 <= ax < 1e5:
        dec = max(0, digits - 1 - int(math.floor(math.log10(ax))))
        return f"{x:.{dec}f}"
    m, e = f"{x:.{digits - 1}e}".split("e")
    return f"\\ensuremath{{{m}\\times 10^{{{int(e)}}}}}"


def n_workers() -> int:
    """Worker processes for Monte Carlo sweeps: $PROBPRUNE_EXPERIMENT_WORKERS, else min(2, available cores)."""
    env = os.environ.get("PROBPRUNE_EXPERIMENT_WORKERS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ProbPruneError(f"PROBPRUNE_EXPERIMENT_WORKERS must be an integer, got {env!r}") from None
    try:
        return max(1, min(2, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover
        return 2
