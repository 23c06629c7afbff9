"""Refine phase of the certified budget (helper TA, issue 22 item 2): on the trained digits MLP of
``bench_budget_ratio.py --trained``, the uniform certified budget at eps-rel 0.1 with ``refine=None`` (the auto rule's
mixed certificate inverted) and with ``refine="sdp"`` (then the SCS SDP of THEORY §12.6 grows the allocation; the
returned allocation is certified by ``certify --bound sdp``), against the same PGD-measured empirical uniform fraction.
Writes benchmarks/results/budget_refine_ta.json. Usage: python benchmarks/bench_refine_ta.py [evaluations] [seconds]"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def main(evals: int = 4, seconds: float = 1100.0, name: str = "digits_mlp", seed: int = 0, rel: float = 0.1) -> dict:
    import torch

    import bench_budget_ratio as bbr
    from probprune.budgets.certified import certified_budget, magnitude_masks
    from probprune.budgets.task import network_output_scale
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.measure.attack import pgd_sup_error
    from probprune.net import from_torch as graph_from_torch
    from probprune.net.templates import from_torch as parsed_from_torch

    torch.set_num_threads(1)
    out = {"network": name, "seed": seed, "eps_rel": rel, "loadavg_start": os.getloadavg(), "rows": {},
           "target": bbr.TRAINED_TARGETS[name], "previous_run_after_ratio": bbr.PREVIOUS_RUN_AFTER[name]}
    model, shape, acc, desc = bbr.trained_networks(seed)[name]
    g = graph_from_torch(model, shape)
    eps = rel * network_output_scale(parsed_from_torch(model, None)).upper
    out.update(description=desc, test_accuracy=acc, eps=eps)
    emp = bbr.empirical_uniform_fraction(g, eps, False, seed)
    out["empirical"] = emp
    for key, refine in (("auto", None), ("refine_sdp", "sdp")):
        t = time.perf_counter()
        r = certified_budget(g, eps, mode="uniform", refine=refine, refine_evaluations=evals,
                             refine_time_limit=seconds)
        row = {"certificate": r.certificate, "uniform_fraction": r.uniform_fraction, "uniform_total": r.uniform_total,
               "eps_achieved": r.eps_achieved, "seconds": time.perf_counter() - t,
               "ratio": r.uniform_fraction / emp["fraction"], "refine": r.certificate_detail.get("refine"),
               "loadavg": os.getloadavg()}
        counts = [L.max_prunable for L in r.layers]
        gh = g.with_masks(magnitude_masks(g, counts))
        row["pgd_at_allocation"] = pgd_sup_error(g.forward, gh.forward, shape, restarts=bbr.PGD_RESTARTS,
                                                 steps=bbr.PGD_STEPS, seed=seed, homogeneous=False).value
        if refine is not None and r.certificate == f"tight:{refine}":  # what certify --bound sdp computes, again
            F, Fh = lower_graph_pair(g, gh)
            t = time.perf_counter()
            row["certify_bound_sdp"] = certify_chains(F, Fh, refine, 1.0).eps
            row["certify_bound_sdp_seconds"] = time.perf_counter() - t
            row["certify_matches"] = row["certify_bound_sdp"] == r.eps_achieved
        out["rows"][key] = row
        print(key, json.dumps(row, default=str), flush=True)
    out["meets_target_with_refine"] = out["rows"]["refine_sdp"]["ratio"] >= out["target"]
    out["loadavg_end"] = os.getloadavg()
    p = Path(__file__).parent / "results" / "budget_refine_ta.json"
    p.write_text(json.dumps(out, indent=1, default=str))
    return out


if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    a = sys.argv[1:]
    main(int(a[0]) if a else 4, float(a[1]) if len(a) > 1 else 1100.0)
