"""Named experiments that regenerate every figure of the paper (issue 7).

Public API::

    from probprune.experiments import names, get, run_experiment
    names()                                     # registered experiments in figure order
    res = run_experiment("fraction_scaling")    # small size -> results/figures/fraction_scaling/
    res = run_experiment("coverage", size="full", out="results/paper")

Each experiment writes ``data.csv`` (tidy, one row per trial or point), ``figure.png`` + ``figure.pdf`` and
``summary.json`` (config, numbers quoted by the paper, generated caption) into ``<out>/<name>/``.
"""
from probprune.experiments.base import REGISTRY, Context, Experiment, ExperimentResult, default_out, register
from probprune.experiments.catalog import get, names, run_experiment

__all__ = ["REGISTRY", "Context", "Experiment", "ExperimentResult", "default_out", "get", "names", "register",
           "run_experiment"]
