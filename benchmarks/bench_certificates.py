"""Benchmark (issue 12, tight part): old Cert-D vs the tighter certificates of THEORY §12 on small trained
networks, each against the best of a many-restart PGD attack; certified prediction stability at 3 pruning levels.

Networks (tiny training on the offline data, cached under $PROBPRUNE_BENCH_CACHE or /tmp): MLPs on digits / mnist5k /
MNIST-1D, CNNs with average pooling on digits / mnist5k, a residual CNN with BatchNorm on digits, and LeNet-5 with
max pooling (old Cert-D only: the tight certificates refused max pooling before issue 19; ``--subset`` runs the issue-19 subset). Per-layer magnitude pruning at
fractions 0.3 / 0.6 / 0.9. Writes benchmarks/results/certificates.json.

Metrics:
* ball: sup_{||x||_2 <= 1} ||F(x) - F_hat(x)|| (the paper's metric): old Cert-D / PGD and new / PGD, where new is
  the smaller of ``certify --bound auto`` and the cross-network SDP (§12.6; run where the lifted problem has at most
  sdp.MAX_DIM coordinates: the MLPs on digits and MNIST-1D; refused, and recorded, elsewhere);
* data region: sup over the l2 ball of radius 0.02 sqrt(d) around each of the first N_REGION test inputs:
  new / PGD, and the Lemma-A bound over the smallest origin-centred ball containing the region (the best a
  whole-ball certificate can say there) / PGD;
* stability: fraction of N_STAB (100; 40 for the residual net, whose CROWN passes cost ~1.6 s per input here) test
  inputs whose prediction is certified unchanged at radius 0 (point check) and on the data-region ball.
"""
from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

N_REGION = 8
N_STAB = 100
N_STAB_LARGE = 40  # for chains with a stage wider than 800 (the residual net: CROWN cost per input)
FRACTIONS = (0.3, 0.6, 0.9)


def _trained(name, dsname, images, build, epochs, cache):
    """The benchmark's trained network (seed 0), from the cache folder or trained once and cached."""
    import torch

    from probprune.net.data import load_dataset
    from probprune.net.train import train

    ds = load_dataset(dsname, seed=0, images=images)
    model = build(0)
    path = os.path.join(cache, f"{name}.pt")
    if os.path.exists(path):
        model.load_state_dict(torch.load(path))
    else:
        train(model, ds, epochs=epochs, seed=0)
        torch.save(model.state_dict(), path)
    return ds, model


def _nets():
    import torch
    import torch.nn as nn

    from probprune.net.zoo import lenet5, lenet_300_100, mlp

    class ResNetBN(nn.Module):
        def __init__(self, c=8, n_classes=10):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
            self.pool = nn.AvgPool2d(2)
            self.fc = nn.Linear(c * 4 * 4, n_classes)

        def forward(self, x):
            h = self.stem(x)
            h = torch.relu(h + self.body(h))
            return self.fc(torch.flatten(self.pool(h), 1))

    def cnn_digits(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                             nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(16 * 2 * 2, 10))

    def cnn_mnist(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 6, 5, stride=2), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
                             nn.Linear(6 * 6 * 6, 32), nn.ReLU(), nn.Linear(32, 10))

    def resnet(seed):
        torch.manual_seed(seed)
        return ResNetBN()

    # name, dataset, images, builder, epochs
    return [
        ("mlp_digits_64-64-32", "digits", False, lambda s: mlp((64, 64, 32, 10), seed=s), 8),
        ("lenet300-100_mnist5k", "mnist5k", False, lambda s: lenet_300_100(seed=s), 2),
        ("mlp_mnist1d_40-100-100", "mnist1d", False, lambda s: mlp((40, 100, 100, 10), seed=s), 15),
        ("cnn_avgpool_digits", "digits", True, cnn_digits, 10),
        ("cnn_avgpool_mnist5k", "mnist5k", True, cnn_mnist, 3),
        ("resnet_bn_digits", "digits", True, resnet, 10),
        ("lenet5_maxpool_digits", "digits", True, lambda s: lenet5((1, 8, 8), seed=s), 8),
    ]


def _magnitude_masks(model, q):
    out = {}
    for k, p in model.named_parameters():
        if k.endswith("weight") and p.dim() >= 2:
            a = p.detach().abs().numpy()
            out[k] = a >= np.quantile(a, q)
    return out


def main() -> dict:
    import torch

    from probprune.certificates.lemma import certify_graph
    from probprune.net.data import load_dataset
    from probprune.core.errors import ProbPruneError
    from probprune.net.trace import from_torch as graph_from_torch
    from probprune.measure.attack import pgd_sup_error as pgd
    from probprune.certificates.tight import certify_chains
    from probprune.certificates.compose import lemma_a_composed
    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.stability import certified_stability, region_sup_error
    from probprune.net.train import evaluate, train

    def pgd_sup_error(model, mh, center, radius, norm, restarts, iters, seed):  # the package's one PGD, float64
        F, Fh = (copy.deepcopy(x).double().eval() for x in (model, mh))
        c = np.asarray(center, float)
        return pgd(F, Fh, c.shape, restarts, iters, seed, center=c, radius=radius, norm=norm).value

    torch.set_num_threads(1)
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    os.makedirs(cache, exist_ok=True)
    rows, nets_out = [], []
    t_all = time.perf_counter()
    for name, dsname, images, build, epochs in _nets():
        ds, model = _trained(name, dsname, images, build, epochs, cache)
        model.eval()
        acc = float(evaluate(model, ds.X_test, ds.y_test))
        shape = tuple(ds.input_shape)
        d = int(np.prod(shape))
        radius = 0.02 * np.sqrt(d)
        Xr = ds.X_test[:N_REGION].double().numpy().reshape(N_REGION, -1)
        n_stab = N_STAB
        Xs = None
        net = {"name": name, "dataset": dsname, "test_accuracy": acc, "epochs": epochs,
               "parameters": int(sum(p.numel() for p in model.parameters())), "region_l2_radius": radius,
               "fractions": []}
        print(f"{name}: acc {acc:.3f}", flush=True)
        for q in FRACTIONS:
            masks = _magnitude_masks(model, q)
            mh = pruned_copy(model, masks)
            r = {"fraction": q}
            t = time.perf_counter()
            g = graph_from_torch(model, shape)
            r["old_cert_d"] = float(certify_graph(g, g.with_masks(masks)).eps)
            r["old_seconds"] = time.perf_counter() - t
            r["pgd_ball"] = pgd_sup_error(model, mh, np.zeros(shape), 1.0, "l2", restarts=128, iters=100, seed=1)
            r["old_over_pgd"] = r["old_cert_d"] / r["pgd_ball"]
            try:
                t = time.perf_counter()
                F, Fh = lower_pair(model, mh, shape)
                c = certify_chains(F, Fh, "auto", 1.0)
                r["new_seconds"] = time.perf_counter() - t
                r["new_eps"] = c.eps
                r["new_method"] = c.method
                r["new_components"] = c.components
                r["new_over_pgd"] = c.eps / r["pgd_ball"]
                r["stages"] = list(c.stages)
                # the cross-network SDP (§12.6) where the lifted problem is small enough (explicit --bound sdp)
                try:
                    t = time.perf_counter()
                    sc = certify_chains(F, Fh, "sdp", 1.0)  # as `certify --bound sdp`: CROWN intervals + SDP
                    r["sdp_seconds"] = time.perf_counter() - t
                    r["sdp_eps"] = sc.eps
                    r["sdp_over_pgd"] = sc.eps / r["pgd_ball"]
                    r["sdp_lifted_dim"] = sc.stages[-1]["lifted_dim"]
                    r["sdp_solver_status"] = sc.stages[-1]["solver_status"]
                    r["auto_eps"] = c.eps
                    if sc.eps < c.eps:
                        r["new_eps"], r["new_method"] = sc.eps, "sdp"
                        r["new_over_pgd"] = sc.eps / r["pgd_ball"]
                except ProbPruneError as e:
                    r["sdp_refused"] = str(e)
                # data regions
                t = time.perf_counter()
                ub = region_sup_error(F, Fh, Xr, radius, "l2")
                r["region_seconds"] = time.perf_counter() - t
                lb = np.array([pgd_sup_error(model, mh, Xr[i].reshape(shape), radius, "l2", restarts=32, iters=60,
                                             seed=2) for i in range(len(Xr))])
                enclosing = np.array([min(lemma_a_composed(F, Fh, float(np.linalg.norm(x)) + radius)) for x in Xr])
                r["region_new_over_pgd_median"] = float(np.median(ub / lb))
                r["region_new_over_pgd_max"] = float(np.max(ub / lb))
                r["region_enclosing_ball_lemma_a_over_pgd_median"] = float(np.median(enclosing / lb))
                r["region_pgd_median"] = float(np.median(lb))
                r["region_new_median"] = float(np.median(ub))
                r["region_sound"] = bool(np.all(ub >= lb))
                # stability
                if Xs is None:
                    n_stab = N_STAB if max(st.n_out for st in F.stages) <= 800 else N_STAB_LARGE
                    Xs = ds.X_test[:n_stab].double().numpy().reshape(n_stab, -1)
                    net["n_stability_inputs"] = n_stab
                t = time.perf_counter()
                s0 = certified_stability(F, Fh, Xs, 0.0)
                s1 = certified_stability(F, Fh, Xs, radius, "l2")
                r["stability_seconds"] = time.perf_counter() - t
                r["stable_point"] = s0.fraction
                r["stable_region"] = s1.fraction
                r["F_robust_region"] = float(np.mean(s1.F_robust))
                r["pruned_accuracy"] = float(evaluate(mh, ds.X_test, ds.y_test))
            except ProbPruneError as e:
                r["new_refused"] = str(e)
            r["sound_ball"] = bool(r["pgd_ball"] <= r["old_cert_d"] and r.get("new_eps", np.inf) >= r["pgd_ball"])
            net["fractions"].append(r)
            rows.append((name, r))
            print(f"  q={q}: old/pgd {r['old_over_pgd']:.2f} new/pgd {r.get('new_over_pgd', float('nan')):.2f} "
                  f"sdp/pgd {r.get('sdp_over_pgd', float('nan')):.2f} "
                  f"region new/pgd {r.get('region_new_over_pgd_median', float('nan')):.2f} "
                  f"stable {r.get('stable_point', float('nan')):.2f}/{r.get('stable_region', float('nan')):.2f}",
                  flush=True)
        nets_out.append(net)
    ok = [r for _, r in rows if "new_eps" in r]
    per_net_old = {}
    per_net_new = {}
    for n, r in rows:
        if "new_eps" in r:
            per_net_old.setdefault(n, []).append(r["old_over_pgd"])
            per_net_new.setdefault(n, []).append(r["new_over_pgd"])
    summary = {
        "ball_old_over_pgd_median": statistics.median(r["old_over_pgd"] for r in ok),
        "ball_new_over_pgd_median": statistics.median(r["new_over_pgd"] for r in ok),
        "ball_median_of_network_medians_old": statistics.median(statistics.median(v) for v in per_net_old.values()),
        "ball_median_of_network_medians_new": statistics.median(statistics.median(v) for v in per_net_new.values()),
        "region_new_over_pgd_median": statistics.median(r["region_new_over_pgd_median"] for r in ok),
        "region_enclosing_lemma_a_over_pgd_median": statistics.median(
            r["region_enclosing_ball_lemma_a_over_pgd_median"] for r in ok),
        "target_median": 2.0,
        "ball_new_without_sdp_over_pgd_median": statistics.median(r.get("auto_eps", r["new_eps"]) / r["pgd_ball"]
                                                                  for r in ok),
        "networks_with_sdp": sorted({n for n, r in rows if "sdp_eps" in r}),
        "all_sound": bool(all(r["sound_ball"] for _, r in rows) and all(r["region_sound"] for r in ok)),
        "stability_by_fraction": {
            str(q): {"point_median": statistics.median(r["stable_point"] for r in ok if r["fraction"] == q),
                     "region_median": statistics.median(r["stable_region"] for r in ok if r["fraction"] == q)}
            for q in FRACTIONS},
        "networks_certified_by_new": sorted({n for n, r in rows if "new_eps" in r}),
        "networks_refused_by_new": sorted({n for n, r in rows if "new_refused" in r}),
    }
    out = {"benchmark": "certificates", "summary": summary, "networks": nets_out,
           "seconds_total": time.perf_counter() - t_all,
           "environment": {"python": sys.version.split()[0], "platform": platform.platform(),
                           "torch_threads": torch.get_num_threads(), "load_avg": os.getloadavg()},
           "settings": {"pgd_ball": "128 restarts x 100 iterations", "pgd_region": "32 restarts x 60 iterations",
                        "n_region": N_REGION, "n_stability": N_STAB, "fractions": FRACTIONS,
                        "pruning": "per-layer magnitude (weights of Linear/Conv)"}}
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "certificates.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps(summary, indent=1, default=float))
    return out


def main_subset(names=("lenet5_maxpool_digits",), time_limit: float = 10.0,
                out_name: str = "certificates_issue19_subset.json") -> dict:
    """Issue 19 SUBSET run (the machine is shared; the full run above does not fit): the ball metric only, for the
    named networks of :func:`_nets`: old Cert-D, the tight certificate ``auto`` under ``time_limit`` (max pooling is
    now lowered as a ReLU tree, §12.7), each over the best of a 128-restart x 100-iteration PGD. Writes
    benchmarks/results/<out_name>; nothing else."""
    import torch

    from probprune.certificates.lemma import certify_graph
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.measure.attack import pgd_sup_error as pgd
    from probprune.net.data import load_dataset
    from probprune.net.trace import from_torch as graph_from_torch
    from probprune.net.train import evaluate, train

    torch.set_num_threads(1)
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    os.makedirs(cache, exist_ok=True)
    nets_out = []
    for name, dsname, images, build, epochs in _nets():
        if name not in names:
            continue
        ds, model = _trained(name, dsname, images, build, epochs, cache)
        model = model.double().eval()
        shape = tuple(ds.input_shape)
        net = {"name": name, "test_accuracy": float(evaluate(model.float(), ds.X_test, ds.y_test)), "fractions": []}
        model = model.double()
        g = graph_from_torch(model, shape)
        for q in FRACTIONS:
            masks = {k: v for k, v in _magnitude_masks(model, q).items() if k in g.weight_names}
            gh = g.with_masks(masks)
            r = {"fraction": q}
            t = time.perf_counter()
            r["old_cert_d"] = float(certify_graph(g, gh).eps)
            r["old_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            r["pgd_ball"] = float(pgd(g.forward, gh.forward, shape, 128, 100, 1).value)
            r["pgd_seconds"] = time.perf_counter() - t
            t = time.perf_counter()
            F, Fh = lower_graph_pair(g, gh)
            c = certify_chains(F, Fh, "auto", 1.0, time_limit=time_limit)
            r["new_seconds"] = time.perf_counter() - t
            r["new_eps"], r["new_method"] = c.eps, c.method
            r["new_components"] = c.components
            r["skipped"] = next((s for s in c.stages if s.get("stage") == "skipped components"), {})
            r["old_over_pgd"] = r["old_cert_d"] / r["pgd_ball"]
            r["new_over_pgd"] = c.eps / r["pgd_ball"]
            r["sound"] = bool(r["pgd_ball"] <= min(r["old_cert_d"], c.eps))
            print(f"{name} q={q}: old/pgd {r['old_over_pgd']:.2f} new/pgd {r['new_over_pgd']:.2f} "
                  f"({c.method}, {r['new_seconds']:.1f} s)", flush=True)
            net["fractions"].append(r)
        nets_out.append(net)
    allr = [r for n in nets_out for r in n["fractions"]]
    out = {"benchmark": "certificates (issue 19 SUBSET: ball metric only, not the full benchmark)",
           "networks": nets_out,
           "summary": {"new_over_pgd_median": statistics.median(r["new_over_pgd"] for r in allr),
                       "old_over_pgd_median": statistics.median(r["old_over_pgd"] for r in allr),
                       "new_seconds_max": max(r["new_seconds"] for r in allr), "all_sound": all(r["sound"] for r in allr),
                       "targets": {"median_over_pgd": 2.0, "per_family": 2.5, "auto_seconds": 10.0}},
           "settings": {"pgd_ball": "128 restarts x 100 iterations", "time_limit_s": time_limit,
                        "fractions": FRACTIONS, "pruning": "per-layer magnitude"},
           "environment": {"python": sys.version.split()[0], "load_avg": os.getloadavg()}}
    with open(os.path.join(os.path.dirname(__file__), "results", out_name), "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps(out["summary"], indent=1, default=float))
    return out


if __name__ == "__main__":
    if "--subset" in sys.argv:
        sel = tuple(a for a in sys.argv[1:] if not a.startswith("--")) or ("lenet5_maxpool_digits",)
        main_subset(sel, out_name="certificates_issue19_subset.json" if sel == ("lenet5_maxpool_digits",)
                    else f"certificates_issue19_subset_{'_'.join(sel)}.json")
    else:
        main()
