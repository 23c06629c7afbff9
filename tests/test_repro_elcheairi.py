"""El Cheairi, Gamarnik & Mazumder App. C reproduction (issue 14): tiny run; the certificates must bound the
measured errors of the same pruned networks (checks that can fail)."""
from pathlib import Path

import numpy as np
import pandas as pd

from probprune.experiments import run_experiment
from probprune.experiments.repro_elcheairi import ElCheairiConfig, _forward


def test_tiny_elcheairi_run(tmp_path, monkeypatch):
    cfg = ElCheairiConfig(widths=(8, 16), draws=3, epochs=1)
    res = run_experiment("elcheairi", config=cfg, out=tmp_path, quiet=True)
    df = pd.read_csv(Path(res.out_dir) / "data.csv")
    assert set(df["dataset"]) == {"digits", "diabetes"} and len(df) == 2 * 2 * 3
    # kept fraction 0.1 + 0.9 * 0.3 = 0.37 per weight; the smallest net (diabetes, 10-8-8-1: 152 weights)
    # has binomial standard deviation sqrt(0.37 * 0.63 / 152) = 0.039, so 4 sigma = 0.157
    assert (abs(df["kept_fraction"] - 0.37) < 0.157).all()
    # lower estimate of the sup error from data <= Cert-D; the measured metric <= its Cert-D bound
    assert (df["max_err_over_xnorm"] <= df["cert_d"] * (1 + 1e-9)).all()
    assert (df["metric_M"] <= df["M_bound_cert_d"] * (1 + 1e-9)).all()
    assert (df["cert_r"] > 0).all() and res.summary["theory_held"] is True
    assert "California Housing" in res.summary["regression_dataset_note"]


def test_forward_is_positively_homogeneous():
    """The homogeneity argument behind 'M <= c^(-2m) cert^2 E||x||^2': bias-free ReLU nets scale with ||x||."""
    rng = np.random.default_rng(0)
    Ws = [rng.normal(size=(7, 5)), rng.normal(size=(3, 7))]
    X = rng.normal(size=(4, 5))
    assert np.allclose(_forward(Ws, 2.5 * X), 2.5 * _forward(Ws, X))
