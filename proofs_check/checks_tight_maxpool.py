"""THEORY.md §12.7-§12.8 (issue 19): max pooling as a ReLU tree, power-of-two rescaling of a chain, the difference
composed from parameter differences, and what may differ between F and F_hat.

Symbolic checks prove the identities; numeric checks compare the lowering with torch's own max pooling and the
certificates with exact sups (linear networks, exact rational products) and sampled errors."""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._core import register, require, sym_zero
from .ground_truth import exact_linear_error


@register("tight-maxpool-identity", "max(a, b) = b + ReLU(a - b); any pairing tree of a window gives its max",
          "§12.7", "symbolic+numeric", covers=["tight-maxpool"])
def _chk_max_identity():
    b = sp.Symbol("b", real=True)
    t = sp.Symbol("t", nonnegative=True)
    sym_zero(b + sp.Max(t, 0) - sp.Max(b + t, b), "a = b + t >= b: b + ReLU(a - b) = a = max(a, b)")
    sym_zero(b + sp.Max(-t, 0) - sp.Max(b - t, b), "a = b - t <= b: b + ReLU(a - b) = b = max(a, b)")
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph
    from probprune.net.trace import from_torch

    rng = np.random.default_rng(713)
    n = 0
    for k, s, p, d, ceil in [(2, 2, 0, 1, False), (3, 2, 1, 1, False), (2, 1, 0, 1, True), (3, 1, 1, 2, False),
                             (3, 3, 0, 1, True)]:
        m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil), nn.Flatten()).double()
        C = lower_graph(from_torch(m, (1, 7, 7)))
        X = rng.normal(size=(64, 1, 7, 7))
        with torch.no_grad():
            ref = m(torch.as_tensor(X)).numpy()
        require(np.allclose(C.forward(X), ref, atol=1e-12), f"max-pool tree differs from torch (k={k}, s={s})")
        n += 1
    return f"identity proved; lowering = torch max pooling on 64 inputs x {n} configurations"


@register("tight-maxpool-sound", "tight certificates (propagate; composed, pairs, mixed with the Lipschitz block) "
          "through max pooling >= sampled errors", "§12.7", "numeric", covers=["tight-maxpool", "tight-maxpool-block"])
def _chk_max_sound():
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.net.trace import from_torch

    rng = np.random.default_rng(714)
    worst = np.inf
    for trial in range(3):
        torch.manual_seed(trial)
        pool = nn.MaxPool2d(2) if trial != 1 else nn.MaxPool2d(3, stride=1, padding=1)  # overlapping: c_max = 9
        m = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), pool, nn.Flatten()).double()
        with torch.no_grad():
            k = m(torch.zeros(1, 1, 6, 6, dtype=torch.float64)).shape[1]
        m = nn.Sequential(*m, nn.Linear(k, 3)).double()
        g = from_torch(m, (1, 6, 6))
        gh = g.with_masks({k: rng.random(w.shape) >= 0.5 for k, w in g.weights.items()})
        F, Fh = lower_graph_pair(g, gh)
        require(F.lip_blocks, "no Lipschitz block recorded for the max pool")
        eps = min(certify_chains(F, Fh, m_).eps for m_ in ("propagate", "composed", "pairs", "mixed"))
        X = rng.normal(size=(3000, 36))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        X *= rng.random((3000, 1)) ** (1 / 36)
        with torch.no_grad():
            xx = torch.as_tensor(X.reshape(-1, 1, 6, 6))
            err = float((g.forward(xx) - gh.forward(xx)).norm(dim=1).max())
        require(err <= eps, f"certificate {eps} below a sampled error {err}")
        worst = min(worst, eps / max(err, 1e-300))
    return f"3 CNNs: certificate / sampled max >= {worst:.3g} >= 1"


@register("tight-scaling-check", "diagonal power-of-two rescaling: ReLU(c t) = c ReLU(t); certificates at 1e+-170 "
          ">= the exact sup", "§12.8", "symbolic+numeric", covers=["tight-scaling"])
def _chk_scaling():
    t = sp.Symbol("t", nonnegative=True)
    c = sp.Symbol("c", positive=True)
    sym_zero(sp.Max(c * t, 0) - c * sp.Max(t, 0), "positive homogeneity of ReLU, argument >= 0")
    sym_zero(sp.Max(-c * t, 0) - c * sp.Max(-t, 0), "positive homogeneity of ReLU, argument <= 0")
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.net.trace import from_torch

    g0 = torch.Generator().manual_seed(5)
    layers = []
    for s in (1e-170, 1e-170, 1e170, 1e170):
        lay = nn.Linear(4, 4, bias=False).double()
        with torch.no_grad():
            lay.weight.copy_(torch.randn(4, 4, generator=g0, dtype=torch.float64) * s)
        layers.append(lay)
    g = from_torch(nn.Sequential(*layers), (4,))
    rng = np.random.default_rng(0)
    gh = g.with_masks({k: rng.random(w.shape) >= 0.5 for k, w in g.weights.items()})
    exact = exact_linear_error(g, gh)
    F, Fh = lower_graph_pair(g, gh)
    for meth in ("composed", "propagate", "mixed"):
        eps = certify_chains(F, Fh, meth).eps
        require(exact * (1 - 1e-12) <= eps <= exact * 1.001, f"{meth}: {eps} vs exact {exact}")
    return f"homogeneity proved; 1e+-170 linear net: exact {exact:.6g}, certificates within 0.1% above"


@register("tight-diff-exact-check", "W v + c - (What vh + ch) = What d + (W - What) v + (c - ch); BN form",
          "§12.8", "symbolic+numeric", covers=["tight-diff-exact"])
def _chk_diff():
    W, Wh, v, vh, c, ch, s, sh, b, bh, t_, th = sp.symbols("W Wh v vh c ch s sh b bh t th", real=True)
    d = v - vh
    sym_zero(sp.expand(W * v + c - (Wh * vh + ch) - (Wh * d + (W - Wh) * v + (c - ch))), "difference identity")
    sym_zero(sp.expand(s * W - sh * Wh - (s * (W - Wh) + (s - sh) * Wh)), "BN weight difference")
    sym_zero(sp.expand(s * b + t_ - (sh * bh + th) - (s * (b - bh) + (s - sh) * bh + (t_ - th))), "BN bias difference")
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.tight import certify_chains
    from probprune.net.trace import from_torch

    g0 = torch.Generator().manual_seed(6)
    layers = []
    for _ in range(3):
        lay = nn.Linear(3, 3, bias=False).double()
        with torch.no_grad():
            lay.weight.copy_(torch.randn(3, 3, generator=g0, dtype=torch.float64) * 1e3)
        layers.append(lay)
    m = nn.Sequential(*layers)
    with torch.no_grad():
        m[0].weight[0, 0] = 1e-9
    g = from_torch(m, (3,))
    mask = np.ones((3, 3))
    mask[0, 0] = 0
    gh = g.with_masks({"0.weight": mask})
    exact = exact_linear_error(g, gh)
    F, Fh = lower_graph_pair(g, gh)
    eps = certify_chains(F, Fh, "composed").eps
    require(exact * (1 - 1e-9) <= eps <= exact * 1.001, f"{eps} vs exact {exact}")
    return f"identities proved; error 1e-12 of the scale: exact {exact:.4g}, composed {eps:.4g}"


@register("tight-what-differs-check", "certify_graph refuses pruned graphs that differ beyond weights; ties by "
          "storage", "§12.8", "numeric", covers=["tight-what-differs"])
def _chk_differs():
    import copy

    import torch
    import torch.nn as nn

    from probprune.certificates.lemma import certify_graph
    from probprune.core.errors import ProbPruneError
    from probprune.net.trace import from_torch

    torch.manual_seed(7)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double().eval()
    g = from_torch(m, (3,))
    refused = 0
    for change in ("bias", "gamma", "act"):
        m2 = copy.deepcopy(m)
        with torch.no_grad():
            if change == "bias":
                m2[0].bias.add_(0.5)
            if change == "gamma":
                m2[1].weight[0] = 0.0
        if change == "act":
            m2[2] = nn.Tanh()
        try:
            certify_graph(g, from_torch(m2, (3,)))
        except ProbPruneError:
            refused += 1
    require(refused == 3, f"only {refused} of 3 differences refused")

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, bias=False)
            self.b = nn.Linear(3, 3, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    t = Tied().double()
    gt = from_torch(t, (3,)).with_ties_from(t)
    mk = np.random.default_rng(1).random((3, 3)) >= 0.5
    gh = gt.with_masks({"a.weight": mk})
    require(all(np.array_equal(n.op.weight, t.a.weight.detach().numpy() * mk) for n in gh.weight_nodes),
            "tied weight masked in one use only")
    return "bias, BatchNorm gamma and activation differences refused by name; tied weights masked by storage"
