"""THEORY.md §12.9 (issue 19, SE): operator back-substitution, the lower ReLU slope with ties, and what the mixed
bound needs from the propagation.

Symbolic checks prove the slope inequality; numeric checks compare the dense and the sparse-operator
back-substitution on small CNN pairs with max pooling (bounds agree to 1e-9, both above sampled errors), the
floating-point allowance against gamma_n at the largest admitted width, and the hat-only propagator against the full
one (the mixed bound's inputs bit for bit)."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._core import register, require


def _pair(seed, pool="max", hw=6):
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph_pair
    from probprune.net.trace import from_torch

    torch.manual_seed(seed)
    P = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
    m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), P, nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                      nn.Flatten(), nn.Linear(4 * (hw // 2) ** 2, 3)).double().eval()
    g = from_torch(m, (1, hw, hw))
    rng = np.random.default_rng(seed)
    gh = g.with_masks({k: rng.random(w.shape) < 0.6 for k, w in g.weights.items()})
    F, Fh = lower_graph_pair(g, gh)
    return g, gh, F, Fh


@register("cnn-lower-slope", "ReLU(z) >= a z on [l, u] for every a in [0, 1] (tie-tolerant adaptive slope)",
          "§12.9", "symbolic+numeric", covers=["cnn-lower-slope"])
def _chk_slope():
    a = sp.Symbol("a", nonnegative=True)
    t = sp.Symbol("t", nonnegative=True)
    # z = t >= 0: ReLU(z) - a z = (1 - a) t >= 0 for a <= 1 (write a = 1 - c, c >= 0)
    c = sp.Symbol("c", nonnegative=True)
    require(sp.simplify((sp.Max(t, 0) - (1 - c) * t) - c * t) == 0, "z >= 0 case")
    # z = -t <= 0: ReLU(z) - a z = a t >= 0
    require(sp.simplify(sp.Max(-t, 0) + a * t - a * t) == 0, "z <= 0 case")
    rng = np.random.default_rng(930)
    z = rng.normal(size=100_000) * 10
    aa = rng.random(100_000)
    require(bool(np.all(np.maximum(z, 0) >= aa * z)), "sampled ReLU(z) >= a z")
    return "proved for z >= 0 and z <= 0; 1e5 samples"


@register("cnn-operator-backsub", "dense and sparse-operator back-substitution give the same bounds (1e-9) and "
          "both stay above sampled errors; gamma_n <= FP_REL at the largest admitted width", "§12.9", "numeric",
          covers=["cnn-operator-backsub"], kind="bridge")
def _chk_operators():
    import torch

    from probprune.certificates.lower import MAX_DENSE
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import FP_REL, CoupledPropagator, Region, region_error_bound

    u = 2.0 ** -53
    n = MAX_DENSE
    require(n * u / (1 - n * u) < FP_REL, "gamma_n exceeds the floating-point allowance")
    rng = np.random.default_rng(931)
    worst = 0.0
    for seed, pool in [(0, "max"), (1, "avg"), (2, "max")]:
        g, gh, F, Fh = _pair(seed, pool)
        for centred in (False, True):
            c = rng.random((1, F.n_in)) if centred else np.zeros((1, F.n_in))
            reg = Region(c, 0.7)
            pd = CoupledPropagator(F, Fh, reg, operators="dense")
            ps = CoupledPropagator(F, Fh, reg, operators="sparse")
            require(ps.n_sparse > 0, "no sparse operator used")
            ed, es = region_error_bound(F, Fh, reg, pd).eps[0], region_error_bound(F, Fh, reg, ps).eps[0]
            md, ms = lemma_a_mixed(F, Fh, reg, pd).eps, lemma_a_mixed(F, Fh, reg, ps).eps
            for x, y in ((ed, es), (md, ms)):
                worst = max(worst, abs(x - y) / max(abs(x), 1e-300))
            X = rng.normal(size=(4000, F.n_in))
            X *= 0.7 * rng.random((4000, 1)) ** (1 / F.n_in) / np.linalg.norm(X, axis=1, keepdims=True)
            X += c
            with torch.no_grad():
                xx = torch.as_tensor(X.reshape(-1, *g.input_shape))
                err = float((g.forward(xx) - gh.forward(xx)).norm(dim=1).max())
            require(min(ed, es, md, ms) >= err, f"bound {min(ed, es, md, ms)} below a sampled error {err}")
    require(worst <= 1e-9, f"dense and operator paths differ by {worst:.3g} relative")
    return f"3 CNN pairs x 2 regions: dense vs operator within {worst:.2g} relative; all >= sampled errors"


@register("cnn-mixed-schedule", "the mixed bound's beta / V from a hat-only propagator equal the full one's; "
          "beta by propagation only before stages with an error", "§12.9", "numeric",
          covers=["cnn-mixed-schedule"], kind="bridge")
def _chk_schedule():
    import torch

    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import CoupledPropagator, Region

    rng = np.random.default_rng(932)
    for seed in (3, 4):
        g, gh, F, Fh = _pair(seed, "max")
        reg = Region(np.zeros((1, F.n_in)), 1.0)
        full = CoupledPropagator(F, Fh, reg)
        hat = CoupledPropagator(F, Fh, reg, modes="hat")
        for a, b in zip(full.rel_h, hat.rel_h):
            require(all(bool(torch.equal(x, y)) for x, y in ((a.aL, b.aL), (a.aU, b.aU), (a.cL, b.cL), (a.cU, b.cU))),
                    "F_hat relaxations differ between modes")
        m1, m2 = lemma_a_mixed(F, Fh, reg, full), lemma_a_mixed(F, Fh, reg, hat)
        require(m1.eps == m2.eps and m1.V == m2.V and m1.beta == m2.beta, "mixed bound differs between modes")
        X = rng.normal(size=(4000, F.n_in))
        X *= rng.random((4000, 1)) ** (1 / F.n_in) / np.linalg.norm(X, axis=1, keepdims=True)
        with torch.no_grad():
            xx = torch.as_tensor(X.reshape(-1, *g.input_shape))
            err = float((g.forward(xx) - gh.forward(xx)).norm(dim=1).max())
            # beta_i >= sup ||shat_i|| on the samples
            S = X
            for i, st in enumerate(Fh.stages[:-1]):
                Z = S @ st.M.T + st.b
                S = np.where(st.relu, np.maximum(Z, 0.0), Z)
                require(float(np.linalg.norm(S, axis=1).max()) <= m1.beta[i] * (1 + 1e-12), f"beta_{i} too small")
        require(m1.eps >= err, f"mixed {m1.eps} below a sampled error {err}")
    return "2 max-pool CNN pairs: identical relaxations / mixed bound in both modes; beta_i and eps >= samples"


@register("cnn-mixed-cheap-pairs", "the mixed bound with single norms / scalar pair bounds / compose's pair bounds: "
          "ordered and above sampled errors", "§12.9", "numeric", covers=["cnn-mixed-cheap-pairs"], kind="bridge")
def _chk_cheap_pairs():
    import torch

    from probprune.certificates.compose import pair_bound
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region

    rng = np.random.default_rng(933)
    # a pair bound is >= the norm of A D B for sampled diagonal D in [0, I], and <= ||A|| ||B||
    for _ in range(5):
        A, B = rng.normal(size=(6, 7)), rng.normal(size=(7, 5))
        p = pair_bound(A, B)
        require(p <= np.linalg.norm(A, 2) * np.linalg.norm(B, 2) * (1 + 1e-6), "pair bound above the norm product")
        for _ in range(200):
            D = np.diag(rng.random(7) * (rng.random(7) < 0.7))
            require(np.linalg.norm(A @ D @ B, 2) <= p, "pair bound below a sampled ||A D B||")
    for seed, pool in [(6, "max"), (7, "avg")]:
        g, gh, F, Fh = _pair(seed, pool)
        reg = Region(np.zeros((1, F.n_in)), 1.0)
        e = {m: lemma_a_mixed(F, Fh, reg, pair_bounds=m).eps for m in ("full", "scalar", "none")}
        require(e["full"] <= e["scalar"] * (1 + 1e-9) <= e["none"] * (1 + 2e-9), f"not ordered: {e}")
        X = rng.normal(size=(4000, F.n_in))
        X *= rng.random((4000, 1)) ** (1 / F.n_in) / np.linalg.norm(X, axis=1, keepdims=True)
        with torch.no_grad():
            xx = torch.as_tensor(X.reshape(-1, *g.input_shape))
            err = float((g.forward(xx) - gh.forward(xx)).norm(dim=1).max())
        require(min(e.values()) >= err, f"mixed {min(e.values())} below a sampled error {err}")
    return "pair bounds >= 1000 sampled ||A D B||; 2 CNN pairs: full <= scalar <= none, all >= sampled errors"
