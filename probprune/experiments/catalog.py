"""The experiment catalogue: looking up and running registered experiments. Importing this module registers every
experiment module (through ``_load_all``); the experiment modules import only :mod:`probprune.experiments.base`,
so the registry has no import cycle."""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

from probprune.core.errors import ProbPruneError
from probprune.experiments import _load_all  # noqa: F401  (registers every experiment module)
from probprune.experiments.base import (REGISTRY, Context, Experiment, ExperimentResult, _fmt_seconds, _jsonable,
                                        default_out, setup_plotting)


def get(name: str) -> Experiment:
    if name not in REGISTRY:
        raise ProbPruneError(f"unknown experiment {name!r}; available: {', '.join(names())}")
    return REGISTRY[name]


def names() -> list[str]:
    return [e.name for e in sorted(REGISTRY.values(), key=lambda e: e.figure)]


def run_experiment(name: str, size: str = "small", config=None, out: str | Path | None = None,
                   quiet: bool = False) -> ExperimentResult:
    """Run one registered experiment. ``config`` (an instance of the experiment's config class) overrides the
    ``size`` preset (tests use tiny configs). Outputs go to ``<out or default>/<name>/``."""
    exp = get(name)
    cfg = config if config is not None else exp.config(size)
    if not isinstance(cfg, exp.config_cls):
        raise ProbPruneError(f"config for {name!r} must be a {exp.config_cls.__name__}")
    root = Path(out) if out is not None else default_out(size)
    out_dir = root / name
    out_dir.mkdir(parents=True, exist_ok=True)
    setup_plotting()
    ctx = Context(name, out_dir, quiet=quiet)
    ctx.log(f"start ({size}{', custom config' if config is not None else ''}) -> {out_dir}")
    t0 = time.perf_counter()
    summary = exp.func(cfg, ctx) or {}
    seconds = time.perf_counter() - t0
    for k in summary.get("numbers", {}):
        if not re.fullmatch(r"[A-Za-z]+", k):
            raise ProbPruneError(f"number macro name {k!r} must be letters only")
    cfg_dict = dataclasses.asdict(cfg)
    res = ExperimentResult(name, size if config is None else "custom", str(out_dir), cfg_dict, ctx.tables,
                           ctx.figures, summary, seconds)
    meta = {**res.as_dict(), "figure": exp.figure, "title": exp.title}
    (out_dir / "summary.json").write_text(json.dumps(_jsonable(meta), indent=2))
    ctx.log(f"done in {_fmt_seconds(seconds)}")
    return res
