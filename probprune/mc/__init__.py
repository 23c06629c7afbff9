"""Monte Carlo validation of the pruning bounds (THEORY.md §6): batched trials, statistics, resumable runs.

Public API::

    from probprune.mc import MCConfig, load_config, run, load_run, summarize
    cfg = MCConfig(widths=(32, 64), depths=(2, 3), n_trials=1000)
    res = run(cfg)                   # results/mc/<hash>/chunks/*.csv, resumable
    cfg, rows, complete = load_run(res.run_dir)
    table = summarize(rows)          # violation rate + Clopper-Pearson + verdict + looseness per configuration
"""
from probprune.mc.config import MCConfig, from_dict, load_config
from probprune.mc.report import fraction_fits, report, summarize, width_fits
from probprune.mc.runner import load_run, plan, run, run_dir_for
from probprune.mc.stats import ConfigVerdict, config_verdict, cp_lower, cp_upper, fit_power_law, looseness_summary
from probprune.mc.trials import MeasurementBug, evaluate_unit

__all__ = [
    "MCConfig", "from_dict", "load_config", "run", "load_run", "plan", "run_dir_for", "summarize", "report",
    "fraction_fits", "width_fits", "cp_lower", "cp_upper", "config_verdict", "ConfigVerdict", "fit_power_law",
    "looseness_summary", "evaluate_unit", "MeasurementBug",
]
