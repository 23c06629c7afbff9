"""Benchmark (issues 12 and 19): old Cert-D vs the tighter certificates of THEORY §12 on trained networks, each
against the best of a many-restart PGD attack.

Networks (trained once with seed 0 and cached under $PROBPRUNE_BENCH_CACHE or /tmp/probprune_bench_cache): 3 MLPs
(digits, mnist5k, MNIST-1D), 5 CNNs with max or average pooling on 8x8 (digits), 16x16 (mnist5k resized) and 28x28
(mnist5k) inputs, 2 residual CNNs with BatchNorm (8x8, 16x16). Per-layer magnitude pruning at fractions
0.3 / 0.6 / 0.9. Writes benchmarks/results/certificates.json.

Resumable: every finished (network, fraction) is stored in <cache>/results_issue19/<network>.json and not recomputed;
``--aggregate`` writes certificates.json from whatever is stored (the unfinished rows are listed in it).

Metrics:
* ball: sup_{||x||_2 <= 1} ||F(x) - F_hat(x)|| (the paper's metric): old Cert-D / PGD and new / PGD, where new is
  ``certify --bound auto`` with the default 10 s time limit of the issue (every component that finished in time) and,
  where the lifted problem has at most SDP_BENCH_DIM coordinates, the smaller of it and the cross-network SDP (§12.6);
  PGD: 128 restarts x 100 iterations (the package's one attack, float64);
* data region: sup over the l2 ball of radius 0.02 sqrt(d) around each of the first N_REGION test inputs:
  new (coupled propagation, §12.4) / PGD (32 restarts x 60 iterations), and the Lemma-A bound over the smallest
  origin-centred ball containing the region / PGD.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import platform
import statistics
import sys
import time

import numpy as np

N_REGION = 8
FRACTIONS = (0.3, 0.6, 0.9)
TIME_LIMIT = 10.0  # issue 19: auto <= 10 s per certificate
MIXED_LIMIT = 60.0  # the mixed bound (§12.3) once more without the 10 s limit of auto, stopped after this many s
SDP_BENCH_DIM = 300  # explicit SDP (§12.6) in the benchmark only up to this many lifted coordinates (minutes above)
RESULTS_DIR = "results_issue19"


def _dataset(dsname, images):
    """load_dataset, or "mnist5k16": mnist5k images resized to 1x16x16 (bilinear, antialiased)."""
    import torch.nn.functional as tF

    from probprune.net.data import load_dataset

    if dsname != "mnist5k16":
        return load_dataset(dsname, seed=0, images=images)
    ds = load_dataset("mnist5k", seed=0, images=True)
    rs = lambda X: tF.interpolate(X, size=(16, 16), mode="bilinear", antialias=True,  # noqa: E731
                                  align_corners=False).contiguous()
    return dataclasses.replace(ds, name="mnist5k16", X_train=rs(ds.X_train), X_test=rs(ds.X_test),
                               input_shape=(1, 16, 16), source=ds.source + ", resized to 16x16 (bilinear, antialias)")


def _trained(name, dsname, images, build, epochs, cache):
    """The benchmark's trained network (seed 0), from the cache folder or trained once and cached."""
    import torch

    from probprune.net.train import train

    ds = _dataset(dsname, images)
    model = build(0)
    path = os.path.join(cache, f"{name}.pt")
    if os.path.exists(path):
        model.load_state_dict(torch.load(path))
    else:
        train(model, ds, epochs=epochs, seed=0)
        torch.save(model.state_dict(), path)
    return ds, model


def model_sha1(model) -> str:
    """SHA-1 of a model's state (parameter and buffer names, shapes, float32 bytes): the stored rows name the network
    they were measured on, so a cache trained by other code is detected instead of mixed in."""
    import hashlib

    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(v.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def _check_model(net: dict, model, path: str) -> None:
    """Refuse rows measured on another model than the cached one (stale cache or changed training code)."""
    sha = model_sha1(model)
    if net.get("model_sha1", sha) != sha:
        raise SystemExit(f"error: {path} was measured on model {net['model_sha1'][:12]}, the cache holds "
                         f"{sha[:12]}; move the stale results away and rerun")
    net["model_sha1"] = sha


def _nets():
    import torch
    import torch.nn as nn

    from probprune.net.zoo import lenet5, lenet_300_100, mlp

    class ResNetBN(nn.Module):
        def __init__(self, c=8, n_classes=10, pool=2, side=8):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU())
            self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                                      nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c))
            self.pool = nn.AvgPool2d(pool)
            self.fc = nn.Linear(c * (side // pool) ** 2, n_classes)

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

    def cnn_max16(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(6, 12, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(12 * 4 * 4, 10))

    def vgg_max16(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(16 * 4 * 4, 10))

    def resnet(seed):
        torch.manual_seed(seed)
        return ResNetBN()

    def resnet16(seed):
        torch.manual_seed(seed)
        return ResNetBN(c=4, pool=4, side=16)

    # name, family, dataset, images, builder, epochs (cheap networks first: the run is resumable, the last may not finish)
    return [
        ("mlp_digits_64-64-32", "mlp", "digits", False, lambda s: mlp((64, 64, 32, 10), seed=s), 8),
        ("mlp_mnist1d_40-100-100", "mlp", "mnist1d", False, lambda s: mlp((40, 100, 100, 10), seed=s), 15),
        ("lenet300-100_mnist5k", "mlp", "mnist5k", False, lambda s: lenet_300_100(seed=s), 2),
        ("cnn_avgpool_digits", "cnn", "digits", True, cnn_digits, 10),
        ("lenet5_maxpool_digits", "cnn", "digits", True, lambda s: lenet5((1, 8, 8), seed=s), 8),
        ("resnet_bn_digits", "residual", "digits", True, resnet, 10),
        ("cnn_avgpool_mnist5k", "cnn", "mnist5k", True, cnn_mnist, 3),
        ("cnn_maxpool_mnist16", "cnn", "mnist5k16", True, cnn_max16, 3),
        ("resnet_bn_mnist16", "residual", "mnist5k16", True, resnet16, 3),
        ("vgg_maxpool_mnist16", "cnn", "mnist5k16", True, vgg_max16, 3),
    ]


def graph_masks(model, g, q):
    """The per-layer magnitude masks of the benchmark (:func:`_magnitude_masks`) for the weights of the traced
    graph ``g``."""
    return {k: v for k, v in _magnitude_masks(model, q).items() if k in g.weight_names}


def _magnitude_masks(model, q):
    out = {}
    for k, p in model.named_parameters():
        if k.endswith("weight") and p.dim() >= 2:
            a = p.detach().abs().numpy()
            out[k] = a >= np.quantile(a, q)
    return out


def _run_fraction(model, g, shape, q) -> dict:
    """One (network, fraction) row of the ball metric: old Cert-D, new auto within TIME_LIMIT, the mixed bound
    without the limit (diagnostic), PGD. The explicit SDP is added by :func:`_run_sdp` (second pass)."""
    from probprune.certificates.compose import TimeLimitReached, deadline
    from probprune.certificates.lemma import certify_graph
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region
    from probprune.certificates.tight import certify_chains, unscale
    from probprune.core.errors import ProbPruneError
    from probprune.measure.attack import pgd_sup_error as pgd

    masks = graph_masks(model, g, q)
    gh = g.with_masks(masks)
    r = {"fraction": q, "load_avg_start": os.getloadavg()}
    t = time.perf_counter()
    r["old_cert_d"] = float(certify_graph(g, gh).eps)
    r["old_seconds"] = time.perf_counter() - t
    t = time.perf_counter()
    r["pgd_ball"] = float(pgd(g.forward, gh.forward, shape, 128, 100, 1).value)
    r["pgd_seconds"] = time.perf_counter() - t
    r["old_over_pgd"] = r["old_cert_d"] / r["pgd_ball"]
    try:
        t = time.perf_counter()
        F, Fh = lower_graph_pair(g, gh)
        c = certify_chains(F, Fh, "auto", 1.0, time_limit=TIME_LIMIT, clock_start=t)  # the limit covers the lowering
        r["new_seconds"] = r["auto_seconds"] = time.perf_counter() - t
        r["new_eps"] = r["auto_eps"] = c.eps
        r["new_method"] = r["auto_method"] = c.method
        r["new_components"] = c.components
        r["skipped"] = next((s for s in c.stages if s.get("stage") == "skipped components"), {})
        r["new_over_pgd"] = r["auto_over_pgd"] = c.eps / r["pgd_ball"]
        if "mixed" not in c.components:  # what auto would give if mixed ran in time (diagnostic column)
            try:
                t = time.perf_counter()
                with deadline(time.perf_counter() + MIXED_LIMIT):
                    mx = lemma_a_mixed(F, Fh, Region(np.zeros((1, F.n_in)), 1.0))
                r["mixed_seconds"] = time.perf_counter() - t
                r["mixed_eps"] = unscale(mx.eps, F.scale_exp)
                r["mixed_over_pgd"] = r["mixed_eps"] / r["pgd_ball"]
            except TimeLimitReached:
                r["mixed_stopped"] = f"stopped after {MIXED_LIMIT} s"
            except (ProbPruneError, np.linalg.LinAlgError, ArithmeticError) as e:
                r["mixed_error"] = f"{type(e).__name__}: {e}"[:200]
        else:
            r["mixed_eps"] = c.components["mixed"]
            r["mixed_over_pgd"] = r["mixed_eps"] / r["pgd_ball"]
        r["best_eps"] = min(c.eps, r.get("mixed_eps", np.inf))
        r["best_over_pgd"] = r["best_eps"] / r["pgd_ball"]
    except ProbPruneError as e:
        r["new_refused"] = str(e)
    r["sound_ball"] = bool(r["pgd_ball"] <= min(r["old_cert_d"], r.get("new_eps", np.inf), r.get("best_eps", np.inf)))
    return r


def _run_sdp(model, g, r) -> None:
    """The explicit cross-network SDP (§12.6) of one stored row where the lifted problem is small (second pass)."""
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.sdp import lifted_dim
    from probprune.certificates.tight import certify_chains
    from probprune.core.errors import ProbPruneError

    masks = graph_masks(model, g, r["fraction"])
    F, Fh = lower_graph_pair(g, g.with_masks(masks))
    if lifted_dim(F) > SDP_BENCH_DIM or "sdp" in r.get("new_components", {}):
        r["sdp_not_run"] = f"lifted dimension {lifted_dim(F)} > {SDP_BENCH_DIM}" if lifted_dim(F) > SDP_BENCH_DIM \
            else "auto included the SDP"
        return
    try:
        t = time.perf_counter()
        sc = certify_chains(F, Fh, "sdp", 1.0)
        r["sdp_seconds"] = time.perf_counter() - t
        r["sdp_eps"], r["sdp_over_pgd"] = sc.eps, sc.eps / r["pgd_ball"]
        r["sdp_lifted_dim"] = sc.stages[-1]["lifted_dim"]
        if sc.eps < r["new_eps"]:
            r["new_eps"], r["new_method"], r["new_over_pgd"] = sc.eps, "sdp", sc.eps / r["pgd_ball"]
        r["best_eps"] = min(r["best_eps"], sc.eps)
        r["best_over_pgd"] = r["best_eps"] / r["pgd_ball"]
        r["sound_ball"] = bool(r["sound_ball"] and sc.eps >= r["pgd_ball"])
    except ProbPruneError as e:
        r["sdp_refused"] = str(e)


def _run_region(model, g, shape, ds, r) -> None:
    """The data-region metric of one stored row (second pass of :func:`run`, after every ball row)."""
    from probprune.certificates.compose import lemma_a_composed
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.stability import region_sup_error
    from probprune.measure.attack import pgd_sup_error as pgd

    masks = graph_masks(model, g, r["fraction"])
    gh = g.with_masks(masks)
    F, Fh = lower_graph_pair(g, gh)
    d = int(np.prod(shape))
    radius = 0.02 * np.sqrt(d)
    Xr = ds.X_test[:N_REGION].double().numpy().reshape(N_REGION, -1)
    t = time.perf_counter()
    ub = region_sup_error(F, Fh, Xr, radius, "l2")
    r["region_seconds"] = time.perf_counter() - t
    lb = np.array([pgd(g.forward, gh.forward, shape, 32, 60, 2, center=Xr[i].reshape(shape), radius=radius).value
                   for i in range(len(Xr))])
    enclosing = np.array([min(lemma_a_composed(F, Fh, float(np.linalg.norm(x)) + radius)) for x in Xr])
    r["region_new_over_pgd_median"] = float(np.median(ub / lb))
    r["region_new_over_pgd_max"] = float(np.max(ub / lb))
    r["region_enclosing_ball_lemma_a_over_pgd_median"] = float(np.median(enclosing / lb))
    r["region_sound"] = bool(np.all(ub >= lb))


def run(names=None, cache=None) -> None:
    """Compute (resumably) every (network, fraction) row not stored yet; ``names`` restricts the networks. Pass 1:
    the ball metric for every network (the acceptance numbers); pass 2: the explicit SDP where small; pass 3: the
    data-region metric of the stored rows."""
    import torch

    from probprune.core.errors import ProbPruneError
    from probprune.net.train import evaluate
    from probprune.net.trace import from_torch as graph_from_torch

    torch.set_num_threads(1)
    cache = cache or os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    rdir = os.path.join(cache, RESULTS_DIR)
    os.makedirs(rdir, exist_ok=True)

    def save(net, path):
        with open(path + ".tmp", "w") as f:
            json.dump(net, f, indent=1, default=float)
        os.replace(path + ".tmp", path)

    done_flag = {"sdp": lambda r: "sdp_seconds" in r or "sdp_not_run" in r or "sdp_refused" in r,
                 "region": lambda r: "region_seconds" in r or "region_error" in r}
    for pass_ in ("ball", "sdp", "region"):
        for name, family, dsname, images, build, epochs in _nets():
            if names and name not in names:
                continue
            path = os.path.join(rdir, f"{name}.json")
            net = json.load(open(path)) if os.path.exists(path) else None
            if pass_ == "ball" and net is not None and len(net["fractions"]) == len(FRACTIONS):
                continue
            if pass_ != "ball" and (net is None or all(done_flag[pass_](r) or "new_eps" not in r
                                                       for r in net["fractions"])):
                continue
            t = time.perf_counter()
            ds, model = _trained(name, dsname, images, build, epochs, cache)
            model.eval()
            if net is None:
                net = {"name": name, "family": family, "dataset": dsname, "input_shape": list(ds.input_shape),
                       "test_accuracy": float(evaluate(model, ds.X_test, ds.y_test)), "epochs": epochs,
                       "parameters": int(sum(p.numel() for p in model.parameters())), "fractions": [],
                       "train_or_load_seconds": time.perf_counter() - t}
            _check_model(net, model, path)
            model = model.double().eval()
            shape = tuple(ds.input_shape)
            g = graph_from_torch(model, shape)
            print(f"{name} ({pass_}): acc {net['test_accuracy']:.3f}", flush=True)
            if pass_ == "sdp":
                for r in net["fractions"]:
                    if done_flag["sdp"](r) or "new_eps" not in r:
                        continue
                    _run_sdp(model, g, r)
                    save(net, path)
                    print(f"  q={r['fraction']}: sdp/pgd {r.get('sdp_over_pgd', float('nan')):.2f} "
                          f"({r.get('sdp_seconds', float('nan')):.1f} s) {r.get('sdp_not_run', '')}", flush=True)
                continue
            if pass_ == "region":
                for r in net["fractions"]:
                    if done_flag["region"](r) or "new_eps" not in r:
                        continue
                    try:
                        _run_region(model, g, shape, ds, r)
                    except ProbPruneError as e:
                        r["region_error"] = str(e)
                    save(net, path)
                    print(f"  q={r['fraction']}: region new/pgd {r.get('region_new_over_pgd_median', float('nan')):.2f}"
                          f" ({r.get('region_seconds', float('nan')):.1f} s)", flush=True)
                continue
            done = {f["fraction"] for f in net["fractions"]}
            for q in FRACTIONS:
                if q in done:
                    continue
                r = _run_fraction(model, g, shape, q)
                r["code"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                           cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
                net["fractions"].append(r)
                save(net, path)
                print(f"  q={q}: old/pgd {r['old_over_pgd']:.2f} new/pgd {r.get('new_over_pgd', float('nan')):.2f} "
                      f"best/pgd {r.get('best_over_pgd', float('nan')):.2f} (mixed {r.get('mixed_seconds', 0):.1f} s) "
                      f"({r.get('new_method')}, auto {r.get('auto_seconds', float('nan')):.1f} s) "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)


FAST_LIMIT = 30.0  # seconds for each fast mixed variant per row


def run_fast(names=None, cache=None) -> None:
    """Diagnostic pass (own folder, so it can run beside :func:`run`): the mixed bound with cheap slope products
    (``pair_bounds`` "none": single norms; "scalar": Statement 12.2 with the scalar multiplier only; §12.9,
    Statement 12.33) for every (network, fraction), each stopped after FAST_LIMIT s. ``aggregate`` reports
    min(auto, fast mixed): what auto would give with the fast mixed bound inserted before the pair search."""
    import torch

    from probprune.certificates.compose import TimeLimitReached, deadline
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region
    from probprune.certificates.tight import unscale
    from probprune.core.errors import ProbPruneError
    from probprune.net.trace import from_torch as graph_from_torch

    torch.set_num_threads(1)
    cache = cache or os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    fdir = os.path.join(cache, RESULTS_DIR + "_fast")
    os.makedirs(fdir, exist_ok=True)
    for name, family, dsname, images, build, epochs in _nets():
        if names and name not in names:
            continue
        path = os.path.join(fdir, f"{name}.json")
        done = json.load(open(path)) if os.path.exists(path) else {}
        if all(str(q) in done for q in FRACTIONS):
            continue
        ds, model = _trained(name, dsname, images, build, epochs, cache)
        model = model.double().eval()
        shape = tuple(ds.input_shape)
        g = graph_from_torch(model, shape)
        for q in FRACTIONS:
            if str(q) in done:
                continue
            masks = graph_masks(model, g, q)
            t = time.perf_counter()
            F, Fh = lower_graph_pair(g, g.with_masks(masks))
            row = {"lower_seconds": time.perf_counter() - t, "load_avg_start": os.getloadavg()}
            for mode in ("none", "scalar"):
                t = time.perf_counter()
                try:
                    with deadline(time.perf_counter() + FAST_LIMIT):
                        mx = lemma_a_mixed(F, Fh, Region(np.zeros((1, F.n_in)), 1.0), pair_bounds=mode)
                    row[f"mixed_{mode}_eps"] = unscale(mx.eps, F.scale_exp)
                except TimeLimitReached:
                    row[f"mixed_{mode}_stopped"] = f"stopped after {FAST_LIMIT} s"
                except (ProbPruneError, np.linalg.LinAlgError, ArithmeticError) as e:
                    row[f"mixed_{mode}_error"] = f"{type(e).__name__}: {e}"[:200]
                row[f"mixed_{mode}_seconds"] = time.perf_counter() - t
            done[str(q)] = row
            with open(path + ".tmp", "w") as f:
                json.dump(done, f, indent=1, default=float)
            os.replace(path + ".tmp", path)
            print(f"{name} q={q}: " + ", ".join(f"{m} {row.get(f'mixed_{m}_eps', float('nan')):.4g} "
                                                 f"({row[f'mixed_{m}_seconds']:.1f} s)" for m in ("none", "scalar")),
                  flush=True)


def rescore_auto(names=None, cache=None, force: bool = False) -> None:
    """Recompute only the new ``auto`` certificate (TIME_LIMIT) of every stored row with the code of this tree (the
    merged speed-ups of compose.py, the operator propagation and the auto order), keeping the row's PGD value: the
    fields ``merged_auto_*`` (eps, seconds, method, over_pgd, code commit, load). Resumable per row. The time limit
    counts from before the lowering (``clock_start``), so ``merged_auto_seconds`` (lowering + certificate) is what
    the limit bounds. ``force`` (``--force``): rescore rows scored by another commit too; their earlier
    ``merged_*`` fields are kept as ``prev_merged_*`` (once: the first earlier value stays)."""
    import torch

    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.core.errors import ProbPruneError
    from probprune.net.trace import from_torch as graph_from_torch

    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                            capture_output=True, text=True).stdout.strip()
    cache = cache or os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    rdir = os.path.join(cache, RESULTS_DIR)
    for name, family, dsname, images, build, epochs in _nets():
        if names and name not in names:
            continue
        path = os.path.join(rdir, f"{name}.json")
        if not os.path.exists(path):
            continue
        net = json.load(open(path))
        todo = [r for r in net["fractions"] if "new_eps" in r and ("merged_auto_eps" not in r or (
            force and r.get("merged_code") != commit))]
        if not todo:
            continue
        ds, model = _trained(name, dsname, images, build, epochs, cache)
        _check_model(net, model, path)
        model = model.double().eval()
        g = graph_from_torch(model, tuple(ds.input_shape))
        for r in todo:
            masks = graph_masks(model, g, r["fraction"])
            load = os.getloadavg()[0]
            if "merged_auto_eps" in r and "prev_merged_auto_eps" not in r:
                for k in [k for k in r if k.startswith("merged_")]:
                    r["prev_" + k] = r[k]
            t = time.perf_counter()
            try:
                F, Fh = lower_graph_pair(g, g.with_masks(masks))
                c = certify_chains(F, Fh, "auto", 1.0, time_limit=TIME_LIMIT, clock_start=t)
            except ProbPruneError as e:
                r["merged_auto_refused"] = str(e)
                continue
            r.update({"merged_auto_seconds": time.perf_counter() - t, "merged_auto_eps": c.eps,
                      "merged_auto_method": c.method, "merged_auto_over_pgd": c.eps / r["pgd_ball"],
                      "merged_auto_components": c.components, "merged_code": commit, "merged_load_start": load,
                      "merged_skipped": next((x for x in c.stages if x.get("stage") == "skipped components"), {})})
            if c.eps < r["pgd_ball"]:
                r["sound_ball"] = False
            with open(path + ".tmp", "w") as f:
                json.dump(net, f, indent=1, default=float)
            os.replace(path + ".tmp", path)
            print(f"{name} q={r['fraction']}: merged auto/pgd {r['merged_auto_over_pgd']:.2f} ({c.method}, "
                  f"{r['merged_auto_seconds']:.1f} s; before {r['new_over_pgd']:.2f}, {r['auto_seconds']:.1f} s) "
                  f"load {load:.1f}", flush=True)


def aggregate(cache=None) -> dict:
    """benchmarks/results/certificates.json from the stored rows (whatever finished; the rest listed)."""
    import torch

    cache = cache or os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    rdir = os.path.join(cache, RESULTS_DIR)
    nets_out, missing = [], []
    for name, family, *_ in _nets():
        path = os.path.join(rdir, f"{name}.json")
        net = json.load(open(path)) if os.path.exists(path) else {"name": name, "family": family, "fractions": []}
        done = {f["fraction"] for f in net["fractions"]}
        missing += [f"{name} q={q}" for q in FRACTIONS if q not in done]
        if net["fractions"]:
            nets_out.append(net)
    for n in nets_out:  # rows rescored with this tree's auto (--rescore-auto): "new" is that; the helper branch's
        for r in n["fractions"]:  # earlier run is kept as branch_*
            if "merged_auto_eps" not in r or "new_eps" not in r:
                continue
            r["merged_new_eps"] = min(r["merged_auto_eps"], r.get("sdp_eps", float("inf")))
            r["merged_new_over_pgd"] = r["merged_new_eps"] / r["pgd_ball"]
            for k in ("new_eps", "new_over_pgd", "auto_eps", "auto_over_pgd", "auto_seconds", "new_method"):
                r["branch_" + k] = r.get(k)
            r.update({"new_eps": r["merged_new_eps"], "new_over_pgd": r["merged_new_over_pgd"],
                      "auto_eps": r["merged_auto_eps"], "auto_over_pgd": r["merged_auto_over_pgd"],
                      "auto_seconds": r["merged_auto_seconds"], "new_method": r["merged_auto_method"]})
            r["best_eps"] = min(r.get("best_eps", float("inf")), r["new_eps"])
            r["best_over_pgd"] = r["best_eps"] / r["pgd_ball"]
    fdir = os.path.join(rdir + "_fast")
    for n in nets_out:  # merge the fast-mixed diagnostic pass (run_fast)
        fp = os.path.join(fdir, f"{n['name']}.json")
        fast = json.load(open(fp)) if os.path.exists(fp) else {}
        for r in n["fractions"]:
            fr = fast.get(str(r["fraction"]))
            if fr is None or "new_eps" not in r:
                continue
            r["fast"] = fr
            cands = [fr[k] for k in ("mixed_none_eps", "mixed_scalar_eps") if k in fr]
            if cands:
                r["auto_plus_fast_eps"] = min([r["new_eps"]] + cands)
                r["auto_plus_fast_over_pgd"] = r["auto_plus_fast_eps"] / r["pgd_ball"]
                r["fast_seconds"] = sum(fr.get(f"mixed_{m}_seconds", 0.0) for m in ("none", "scalar"))
                r["best_eps"] = min([r["best_eps"]] + cands)
                r["best_over_pgd"] = r["best_eps"] / r["pgd_ball"]
                if min(cands) < r["pgd_ball"]:
                    r["sound_ball"] = False
    rows = [(n["name"], n["family"], r) for n in nets_out for r in n["fractions"]]
    for _, _, r in rows:  # what `certify` prints by default: the minimum of Cert-D and the tight certificate
        if "new_eps" in r:
            r["cli_eps"] = min(r["old_cert_d"], r["new_eps"])
            r["cli_over_pgd"] = r["cli_eps"] / r["pgd_ball"]
    ok = [r for _, _, r in rows if "new_eps" in r]
    med = lambda v: statistics.median(v) if v else float("nan")  # noqa: E731
    per_net_old, per_net_new, fam = {}, {}, {}
    for n, f, r in rows:
        if "new_eps" in r:
            per_net_old.setdefault(n, []).append(r["old_over_pgd"])
            per_net_new.setdefault(n, []).append(r["new_over_pgd"])
            fam.setdefault(f, []).append(r)
    auto_t = [r["auto_seconds"] for r in ok]
    summary = {
        "ball_old_over_pgd_median": med([r["old_over_pgd"] for r in ok]),
        "ball_new_over_pgd_median": med([r["new_over_pgd"] for r in ok]),
        "ball_new_without_sdp_over_pgd_median": med([r["auto_over_pgd"] for r in ok]),
        "ball_median_of_network_medians_old": med([med(v) for v in per_net_old.values()]),
        "ball_median_of_network_medians_new": med([med(v) for v in per_net_new.values()]),
        "ball_best_over_pgd_median": med([r["best_over_pgd"] for r in ok]),
        "ball_cli_over_pgd_median": med([r["cli_over_pgd"] for r in ok]),
        "ball_auto_plus_fast_over_pgd_median": med([r["auto_plus_fast_over_pgd"] for r in ok
                                                    if "auto_plus_fast_over_pgd" in r]),
        "rows_with_fast": sum("auto_plus_fast_over_pgd" in r for r in ok),
        "ball_auto_plus_fast_note": "min(auto within 10 s, mixed with cheap slope products (pair_bounds none / "
                                    "scalar, Statement 12.33)); fast_seconds per row = their extra time",
        "ball_cli_note": "cli = min(old Cert-D, new): what `certify` prints by default",
        "rows_new_worse_than_old": sorted(f"{n} q={r['fraction']}" for n, _, r in rows
                                          if "new_eps" in r and r["new_eps"] > r["old_cert_d"]),
        "ball_best_note": "best = min(auto within 10 s, SDP where run, the mixed bound without the time limit "
                          "(mixed_seconds per row, stopped at 60 s), the fast mixed variants): every valid bound "
                          "computed, whatever its time",
        "ball_new_over_pgd_min": min((r["new_over_pgd"] for r in ok), default=float("nan")),
        "ball_new_over_pgd_max": max((r["new_over_pgd"] for r in ok), default=float("nan")),
        "per_family": {f: {"new_over_pgd_median": med([r["new_over_pgd"] for r in v]),
                           "old_over_pgd_median": med([r["old_over_pgd"] for r in v]),
                           "best_over_pgd_median": med([r["best_over_pgd"] for r in v]),
                           "cli_over_pgd_median": med([r["cli_over_pgd"] for r in v]),
                           "auto_plus_fast_over_pgd_median": med([r["auto_plus_fast_over_pgd"] for r in v
                                                                  if "auto_plus_fast_over_pgd" in r]),
                           "auto_seconds_max": max(r["auto_seconds"] for r in v), "rows": len(v),
                           "target": 2.5, "met": med([r["new_over_pgd"] for r in v]) <= 2.5}
                       for f, v in sorted(fam.items())},
        "merged_auto": {
            "note": "auto (10 s) recomputed by --rescore-auto with the merged code (compose.py bound cache and prefix "
                    "states, operator propagation, auto order composed -> joint (chains without max pooling, half the "
                    "time left) -> mixed_scalar -> mixed -> pairs) on the same rows and "
                    "PGD values (the first fraction of each network with a cold bound cache, the later ones reuse F-only pair "
                    "bounds, as a budget search does)",
            "rows": sum("merged_auto_eps" in r for r in ok),
            "over_pgd_median": med([r["merged_auto_over_pgd"] for r in ok if "merged_auto_eps" in r]),
            "new_over_pgd_median": med([r["merged_new_over_pgd"] for r in ok if "merged_auto_eps" in r]),
            "branch_new_over_pgd_median": med([r["branch_new_over_pgd"] for r in ok if "merged_auto_eps" in r]),
            "new_note": "new = min(merged auto, the explicit SDP where the lifted problem is <= SDP_BENCH_DIM); the "
                        "summary's new_* / auto_* fields are these merged values wherever a row was rescored, the "
                        "helper branch's pre-merge run is kept per row as branch_*",
            "cli_over_pgd_median": med([min(r["old_cert_d"], r["merged_auto_eps"]) / r["pgd_ball"] for r in ok
                                        if "merged_auto_eps" in r]),
            "seconds_median": med([r["merged_auto_seconds"] for r in ok if "merged_auto_eps" in r]),
            "seconds_max": max((r["merged_auto_seconds"] for r in ok if "merged_auto_eps" in r), default=float("nan")),
            "per_family": {f: {"over_pgd_median": med([r["merged_auto_over_pgd"] for r in v if "merged_auto_eps" in r]),
                               "new_over_pgd_median": med([r["merged_new_over_pgd"] for r in v
                                                           if "merged_auto_eps" in r]),
                               "seconds_max": max((r["merged_auto_seconds"] for r in v if "merged_auto_eps" in r),
                                                  default=float("nan")),
                               "target": 2.5} for f, v in sorted(fam.items())},
            "min_over_pgd": min((r["merged_auto_over_pgd"] for r in ok if "merged_auto_eps" in r),
                                default=float("nan")),
            "target_median": 2.0, "target_seconds": TIME_LIMIT},
        "tb_auto_before": {  # the rows' earlier auto (kept by --rescore-auto --force) next to the new one
            "note": "prev_merged_*: auto as scored before the TB changes (time limit on the certificate only, lowering "
                    "not counted; composed + full coupled propagation before the mixed bounds); the summary's "
                    "merged_auto / auto_seconds are the new code (limit counted from before the lowering)",
            "rows": sum("prev_merged_auto_eps" in r for r in ok),
            "seconds_median": med([r["prev_merged_auto_seconds"] for r in ok if "prev_merged_auto_eps" in r]),
            "seconds_max": max((r["prev_merged_auto_seconds"] for r in ok if "prev_merged_auto_eps" in r),
                               default=float("nan")),
            "over_pgd_median": med([r["prev_merged_auto_over_pgd"] for r in ok if "prev_merged_auto_eps" in r]),
            "per_family": {f: {"over_pgd_median": med([r["prev_merged_auto_over_pgd"] for r in v
                                                       if "prev_merged_auto_eps" in r]),
                               "seconds_max": max((r["prev_merged_auto_seconds"] for r in v
                                                   if "prev_merged_auto_eps" in r), default=float("nan"))}
                           for f, v in sorted(fam.items())},
            "per_network": {n: {"seconds": [round(r["prev_merged_auto_seconds"], 2) for r in v],
                                "over_pgd": [round(r["prev_merged_auto_over_pgd"], 3) for r in v],
                                "seconds_new": [round(r["merged_auto_seconds"], 2) for r in v],
                                "over_pgd_new": [round(r["merged_auto_over_pgd"], 3) for r in v],
                                "method_new": [r["merged_auto_method"] for r in v]}
                            for n, v in ((nm, [r for nn, _, r in rows if nn == nm and "prev_merged_auto_eps" in r
                                               and "merged_auto_eps" in r]) for nm in per_net_new) if v},
        },
        "region_new_over_pgd_median": med([r["region_new_over_pgd_median"] for r in ok
                                           if "region_new_over_pgd_median" in r]),
        "region_enclosing_lemma_a_over_pgd_median": med([r["region_enclosing_ball_lemma_a_over_pgd_median"]
                                                         for r in ok if "region_new_over_pgd_median" in r]),
        "auto_seconds_median": med(auto_t), "auto_seconds_max": max(auto_t, default=float("nan")),
        "target_median": 2.0, "target_per_family": 2.5, "target_auto_seconds": TIME_LIMIT,
        "target_median_met": med([r["new_over_pgd"] for r in ok]) <= 2.0,
        "networks_with_sdp": sorted({n for n, _, r in rows if "sdp_eps" in r or r.get("new_method") == "sdp"
                                     or "sdp" in r.get("new_components", {})}),
        "all_sound": bool(all(r["sound_ball"] for _, _, r in rows) and all(r.get("region_sound", True) for r in ok)),
        "networks_certified_by_new": sorted({n for n, _, r in rows if "new_eps" in r}),
        "networks_refused_by_new": sorted({n for n, _, r in rows if "new_refused" in r}),
        "rows_finished": len(rows), "rows_not_finished": missing,
        "sdp_pass_not_finished": [f"{n} q={r['fraction']}" for n, _, r in rows if "new_eps" in r and not (
            "sdp_seconds" in r or "sdp_not_run" in r or "sdp_refused" in r)],
        "region_pass_not_finished": [f"{n} q={r['fraction']}" for n, _, r in rows if "new_eps" in r and not (
            "region_seconds" in r or "region_error" in r)],
    }
    for n in nets_out:  # docs_numbers reads sdp_over_pgd of the SDP networks: where auto included the SDP, that
        for r in n["fractions"]:  # component is the SDP's value
            if "sdp_over_pgd" not in r and "sdp" in r.get("new_components", {}):
                r["sdp_over_pgd"] = r["new_components"]["sdp"] / r["pgd_ball"]
    out = {"benchmark": "certificates (issue 19 acceptance run; resumable, rows_not_finished lists what did not finish)",
           "summary": summary, "networks": nets_out,
           "environment": {"python": sys.version.split()[0], "platform": platform.platform(),
                           "torch_threads": 1, "torch": torch.__version__,
                           "load_avg_at_aggregation": os.getloadavg(),
                           "note": "2-core machine shared by 5 jobs; per-row load averages in load_avg_start"},
           "settings": {"pgd_ball": "128 restarts x 100 iterations", "pgd_region": "32 restarts x 60 iterations",
                        "n_region": N_REGION, "fractions": FRACTIONS, "auto_time_limit_s": TIME_LIMIT,
                        "sdp_bench_dim": SDP_BENCH_DIM, "pruning": "per-layer magnitude (weights of Linear/Conv)"}}
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    with open(os.path.join(os.path.dirname(__file__), "results", "certificates.json"), "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(json.dumps(summary, indent=1, default=float))
    return out


def main() -> dict:
    run()
    return aggregate()


def main_subset(names=("lenet5_maxpool_digits",), time_limit: float = 10.0,
                out_name: str = "certificates_issue19_subset.json") -> dict:
    """Issue 19 SUBSET run (before the resumable full run above): the ball metric only, for the
    named networks of :func:`_nets`: old Cert-D, the tight certificate ``auto`` under ``time_limit`` (max pooling is
    now lowered as a ReLU tree, §12.7), each over the best of a 128-restart x 100-iteration PGD. Writes
    benchmarks/results/<out_name>; nothing else."""
    import torch

    from probprune.certificates.lemma import certify_graph
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.measure.attack import pgd_sup_error as pgd
    from probprune.net.trace import from_torch as graph_from_torch
    from probprune.net.train import evaluate

    torch.set_num_threads(1)
    cache = os.environ.get("PROBPRUNE_BENCH_CACHE", "/tmp/probprune_bench_cache")
    os.makedirs(cache, exist_ok=True)
    nets_out = []
    for name, _family, dsname, images, build, epochs in _nets():
        if name not in names:
            continue
        ds, model = _trained(name, dsname, images, build, epochs, cache)
        model = model.double().eval()
        shape = tuple(ds.input_shape)
        net = {"name": name, "test_accuracy": float(evaluate(model.float(), ds.X_test, ds.y_test)), "fractions": []}
        model = model.double()
        g = graph_from_torch(model, shape)
        for q in FRACTIONS:
            masks = graph_masks(model, g, q)
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


USAGE = ("usage: bench_certificates.py [--aggregate | --rescore-auto [--force] [NET ...] | --fast [NET ...] | "
         "--only NET ... | --subset [NET ...]]\n  no option: the full resumable run (hours cold), then --aggregate")

if __name__ == "__main__":
    from probprune.core.threads import limit_threads

    limit_threads()  # an entry point: one BLAS thread unless the user chose (2 BLAS threads made auto 3x slower)
    flags = [a for a in sys.argv[1:] if a.startswith("-")]
    if any(f in ("-h", "--help") for f in flags):
        print(USAGE)
        sys.exit(0)
    unknown = [f for f in flags if f not in ("--aggregate", "--rescore-auto", "--force", "--fast", "--only", "--subset")]
    if unknown:  # never start the long default run on a typo
        print(f"error: unknown option {unknown[0]}\n{USAGE}", file=sys.stderr)
        sys.exit(2)
    if "--aggregate" in sys.argv:
        aggregate()
    elif "--rescore-auto" in sys.argv:  # the new auto of this tree on the stored rows (same PGD values)
        rescore_auto(tuple(a for a in sys.argv[1:] if not a.startswith("--")), force="--force" in sys.argv)
    elif "--fast" in sys.argv:  # the fast-mixed diagnostic pass (its own folder; may run beside --only)
        run_fast(tuple(a for a in sys.argv[1:] if not a.startswith("--")))
    elif "--only" in sys.argv:  # run (resumably) the named networks, no aggregation
        run(tuple(a for a in sys.argv[1:] if not a.startswith("--")))
    elif "--subset" in sys.argv:
        sel = tuple(a for a in sys.argv[1:] if not a.startswith("--")) or ("lenet5_maxpool_digits",)
        main_subset(sel, out_name="certificates_issue19_subset.json" if sel == ("lenet5_maxpool_digits",)
                    else f"certificates_issue19_subset_{'_'.join(sel)}.json")
    else:
        main()
