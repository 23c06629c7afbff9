"""Rates, not only constants (issue 20 item 4; THEORY §9.10): on one LeNet-300-100 layer (300 x 784, the paper's
uniform law, a = 1), the S9.10 lower bound L(q), the measured ||E|| (median of draws) and the default upper bound U(q)
(§9.1/§9.4, per-term minimum) at fractions q in [0.01, 0.3]; fitted log-log slopes of each against the theory's rate
(q^(3/2) magnitude, p^(1/2) random), and the ratios ||E|| / L and U / ||E||. Writes benchmarks/results/rates.json.

    python benchmarks/bench_rates.py
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np

from probprune.core.threads import limit_threads
from probprune.theory import sharp

OUT = Path(__file__).resolve().parent / "results" / "rates.json"
D1, D2, DELTA, DRAWS, SEED = 300, 784, 0.05, 5, 0
QS = (0.01, 0.03, 0.1, 0.3)
RATE = {"magnitude": 1.5, "random": 0.5}


def error(rng, kind: str, q: float) -> float:
    W = rng.uniform(-1.0, 1.0, (D1, D2))
    if kind == "magnitude":
        E = W * (np.abs(W) < q)  # threshold rule, a = 1
    else:
        E = W * (rng.random(W.shape) < q)  # Bernoulli(p) mask independent of W
    return float(np.linalg.norm(E, 2))


def main() -> dict:
    limit_threads()
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    out = {"benchmark": "rates", "layer": [D1, D2], "law": "uniform, a = 1", "delta": DELTA, "draws": DRAWS,
           "seed": SEED, "fractions": list(QS), "kinds": {}}
    for kind, rate in RATE.items():
        L = np.array([float(sharp.error_norm_lower_bound(D1, D2, kind, "uniform", q, 1.0, DELTA)) for q in QS])
        U = np.array([float(sharp.error_norm_bound(D1, D2, kind, "uniform", q, 1.0, DELTA)[0]) for q in QS])
        E = np.array([np.median([error(rng, kind, q) for _ in range(DRAWS)]) for q in QS])
        slope = lambda y: float(np.polyfit(np.log(QS), np.log(y), 1)[0])  # noqa: E731
        out["kinds"][kind] = {"rate": rate, "lower": L.tolist(), "measured_median": E.tolist(), "upper": U.tolist(),
                              "slope_lower": slope(L), "slope_measured": slope(E), "slope_upper": slope(U),
                              "measured_over_lower": (E / L).tolist(), "upper_over_measured": (U / E).tolist(),
                              "lower_holds": bool(np.all(L <= E)), "upper_holds": bool(np.all(E <= U))}
    out["seconds"] = time.perf_counter() - t0
    out["platform"] = platform.platform()
    OUT.write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    r = main()
    for k, v in r["kinds"].items():
        print(f"{k}: slopes lower {v['slope_lower']:.3f} measured {v['slope_measured']:.3f} upper {v['slope_upper']:.3f}"
              f" (rate {v['rate']}); measured/lower {min(v['measured_over_lower']):.2f}-{max(v['measured_over_lower']):.2f}"
              f", upper/measured {min(v['upper_over_measured']):.2f}-{max(v['upper_over_measured']):.2f}")
