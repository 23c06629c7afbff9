"""The before/after grid of the TH registry refactor (issue 22 item 5): every number of a grid of a-priori bounds,
budgets, calibrated bounds and the §9 per-entry functions, written with float.hex so a comparison is bit-exact.

``python tests/th_golden_grid.py`` rewrites tests/data/registry_th_golden.json (run it only on the commit before a
refactor that must not change numbers); tests/test_registry_th.py recomputes the grid and compares."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("data") / "registry_th_golden.json"


def _enc(x):
    """JSON-able, bit-exact encoding (floats as hex; arrays as lists; strings and ints as they are)."""
    if isinstance(x, dict):
        return {str(k): _enc(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_enc(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_enc(v) for v in x.tolist()] if x.ndim else _enc(x.item())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x).hex()
    if x is None or isinstance(x, str):
        return x
    return str(x)


def grid(heavy: bool = True) -> dict:
    """The grid; ``heavy=False``: only the §9 per-entry functions (a second, fast part of the same file)."""
    from probprune.budgets.apriori import max_prunable
    from probprune.budgets.calibrated import calibrated_bound
    from probprune.net.templates import ConvLayer, cnn_spec, fcn_spec
    from probprune.theory import sharp
    from probprune.theory.apriori import apriori_bound, exact_k_bound, exact_k_magnitude_bound
    from probprune.theory.trace_moments import entry_even_moments

    out: dict = {}
    specs = {
        "relu": fcn_spec([12, 20, 20, 4], "relu"),
        "linear": fcn_spec([8, 10, 10, 3], "identity"),
        "cnn": cnn_spec((1, 6, 6), [ConvLayer(2, 3)], [3], "identity"),
    }
    for sn, spec in (specs.items() if heavy else ()):
        for law in ("uniform", "gaussian"):
            for method in ("magnitude", "random", "random_rescaled"):
                for st in ("best", "bernstein", "sharp"):
                    for q in (0.05, 0.3):
                        try:
                            r = apriori_bound(spec, q, 0.05, method, law, statement=st).as_dict()
                        except Exception as e:  # noqa: BLE001 - the error message is part of the behaviour
                            r = {"error": f"{type(e).__name__}: {e}"}
                        out[f"ab/{sn}/{law}/{method}/{st}/{q}"] = r
            for st in ("best", "bernstein"):
                for fn in (exact_k_bound, exact_k_magnitude_bound):
                    try:
                        r = fn(spec, 0.2, 0.05, law=law, statement=st).as_dict()
                    except Exception as e:  # noqa: BLE001
                        r = {"error": f"{type(e).__name__}: {e}"}
                    out[f"ek/{sn}/{law}/{fn.__name__}/{st}"] = r
    for sn in (("relu", "linear") if heavy else ()):
        for law in ("uniform", "gaussian"):
            for method in ("magnitude", "random", "random_rescaled"):
                for mode in ("uniform", "optimal", "equal_share"):
                    try:
                        r = max_prunable(specs[sn], 0.5, 0.05, method, mode, law).as_dict()
                    except Exception as e:  # noqa: BLE001
                        r = {"error": f"{type(e).__name__}: {e}"}
                    out[f"budget/{sn}/{law}/{method}/{mode}"] = r
    for method in (("magnitude", "random", "random_rescaled", "magnitude_exact", "random_exact") if heavy else ()):
        for law in ("uniform", "gaussian"):
            try:
                r = calibrated_bound(specs["linear"], 0.2, 0.1, 0.1, method, law, trials=40, seed=3).as_dict()
            except Exception as e:  # noqa: BLE001
                r = {"error": f"{type(e).__name__}: {e}"}
            out[f"cal/{method}/{law}"] = r
    # the §9 per-entry functions, directly
    qs = np.array([0.0, 1e-3, 0.2, 0.7, 0.999])
    k = np.arange(1.0, 6.0)
    kinds = ("full", "magnitude", "random", "random_rescaled", "kept_magnitude", "kept_random", "kept_rescaled")
    for law in ("uniform", "gaussian"):
        for kind in kinds:
            with np.errstate(all="ignore"):
                out[f"lmr/{law}/{kind}"] = sharp.log_moment_ratio(kind, law, qs[:, None], k)
        for kind in ("magnitude", "random", "random_rescaled"):
            out[f"err/{law}/{kind}"] = [sharp.error_norm_bound(7, 9, kind, law, qs[1:4], 0.3, 0.01)[0],
                                        list(sharp.error_norm_bound(7, 9, kind, law, qs[1:4], 0.3, 0.01)[1])]
            try:
                out[f"schur/{law}/{kind}"] = sharp.schur_bound(7, 9, kind, law, qs[1:4], 0.3, 0.01)
            except Exception as e:  # noqa: BLE001
                out[f"schur/{law}/{kind}"] = str(e)
            out[f"low/{law}/{kind}"] = sharp.error_norm_lower_bound(7, 9, kind, law, qs[1:4], 0.3, 0.01)
            out[f"even/{law}/{kind}"] = entry_even_moments(kind, law, 0.3, qs[1:4], 3)
            out[f"second/{law}/{kind}"] = sharp.entry_second_moments(kind, law, 0.3, q=qs[1:4])
        for kind in ("random_exact", "magnitude_exact"):
            out[f"second/{law}/{kind}"] = sharp.entry_second_moments(kind, law, 0.3, k=7, N=40)
            try:
                out[f"k4/{law}/{kind}"] = sharp.exact_k_fourth_moments(kind, 40, 7, 0.3, law)
            except Exception as e:  # noqa: BLE001
                out[f"k4/{law}/{kind}"] = str(e)
        out[f"full/{law}"] = list(sharp.full_norm_bound(7, 9, 0.3, 0.01, law))
        out[f"ekr/{law}"] = list(sharp.exact_k_random_bound(7, 9, law, 11, 0.3, 0.01))
        out[f"ekm/{law}"] = list(sharp.exact_k_magnitude_bound(7, 9, law, 11, 0.3, 0.01))
        out[f"ekmp/{law}"] = list(sharp.exact_k_magnitude_product_bound([5, 6, 4], [0.3, 0.4], [5, 3], 0.05, law))
        out[f"pm/{law}"] = list(sharp.product_moment_bound([5, 6, 4], [0.3, 0.4], np.array([0.2, 0.1]), 0.05,
                                                           "magnitude", law))
        out[f"ekps/{law}"] = sharp.exact_k_magnitude_pruned_second_moment(40, 7, 0.3, law)
    return json.loads(json.dumps(_enc(out)))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    g = grid()
    GOLDEN.write_text(json.dumps(g, indent=0, sort_keys=True) + "\n")
    print(len(g), "entries ->", GOLDEN, math.nan)
