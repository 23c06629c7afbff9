"""First-order SDP solver (THEORY.md §12.6b, Statement 12.12b): the certified float64 step gives an upper bound at ANY
multipliers, so the first-order solve (Adam on the penalised dual, Lanczos eigenvectors) can only make it looser.

Numeric checks against independent ground truths: exhaustive polar-grid search of the 2-d input disc for tiny ReLU
nets, the spectral norm of the product difference for linear nets; the certified step at random (indefinite) dual
points; the subgradient formula of the penalised dual function by finite differences; form (ii) refused at a point
whose Q11 is not negative definite."""
from __future__ import annotations

import numpy as np

from ._core import register, require


def _grid_sup(F, Fh, n=301):
    a = np.linspace(0, 2 * np.pi, 4 * n, endpoint=False)
    ring = np.stack([np.cos(a), np.sin(a)], 1)
    P = np.concatenate([ring * r for r in np.linspace(0, 1, n // 4)] + [ring])
    return float(np.linalg.norm(F.forward(P) - Fh.forward(P), axis=1).max())


@register("tight-sdp-fo", "first-order SDP (§12.6b): certified step >= the exhaustive sup of tiny ReLU nets and >= "
          "the spectral norm of the product difference of linear nets, at the solver's point and at random "
          "multipliers; subgradient of the penalised dual = (V2 u^T G_k u, 1 - V2 u_0^2); form (ii) refused when "
          "Q11 is not negative definite", "§12.6", "numeric", covers=["tight-sdp-fo"])
def _chk_sdp_fo():
    import torch
    import torch.nn as nn

    from probprune.certificates.lower import lower_pair, pruned_copy
    from probprune.certificates.sdp import _certify_schur, _v2, build_qcqp
    from probprune.certificates.sdp_fo import DualOperator, _top_eig, certify_point, sdp_fo_certificate
    from probprune.net.zoo import mlp

    rng = np.random.default_rng(1212)
    n_nets = 0
    for trial in range(4):
        widths = [2, int(rng.integers(3, 6)), int(rng.integers(3, 6)), 2]
        m = mlp(widths, bias=bool(trial % 2), seed=int(rng.integers(1 << 30)))
        mh = pruned_copy(m, {k: rng.random(tuple(p.shape)) < 0.6 for k, p in m.named_parameters()
                             if k.endswith("weight")})
        F, Fh = lower_pair(m, mh, (2,))
        truth = _grid_sup(F, Fh)
        c = sdp_fo_certificate(F, Fh, iters=40)
        require(c.eps >= truth * (1 - 1e-9), f"first-order SDP {c.eps} below the exhaustive sup {truth}")
        N, AD, G, Gabs, tpr, kinds, fam, box, _ = build_qcqp(F, Fh, np.zeros(2), 1.0)
        for _ in range(2):  # random dual points, t = 0 or random: still upper bounds
            lam = np.where(kinds == "ineq", rng.random(len(kinds)), rng.normal(size=len(kinds)))
            b, _, _, _ = certify_point(AD, G, Gabs, tpr, kinds, fam, box, lam, float(rng.normal()))
            require(np.sqrt(b) >= truth * (1 - 1e-9), "certified step at random multipliers below the sup")
        require(_certify_schur(AD, G, Gabs, tpr, np.zeros(len(kinds)), kinds, box) is None,
                "form (ii) accepted a point with Q11 = C11 (not negative definite)")
        # subgradient by finite differences along a random direction (simple top eigenvalue almost surely)
        op = DualOperator(AD, G)
        V2 = _v2(box)
        lam = np.where(kinds == "ineq", rng.random(len(kinds)), rng.normal(size=len(kinds)))
        t = float(rng.normal())
        th, u = _top_eig(op, lam, t, None)
        if th > 0:
            d = rng.normal(size=len(kinds))
            dt = float(rng.normal())
            h = 1e-6
            th2, _ = _top_eig(op, lam + h * d, t + h * dt, None)
            fd = (h * dt + V2 * (th2 - th)) / h
            an = V2 * float(op.quad(u) @ d) + (1 - V2 * u[0] ** 2) * dt
            require(abs(fd - an) <= 1e-3 * (1 + abs(an)), f"subgradient formula {an} vs finite difference {fd}")
        n_nets += 1
    # linear nets: the exact sup is the spectral norm of the product difference
    torch.manual_seed(5)
    for _ in range(2):
        m = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False))
        mh = pruned_copy(m, {k: rng.random(tuple(p.shape)) < 0.6 for k, p in m.named_parameters()})
        P = [l.weight.detach().double().numpy() for l in m]
        Ph = [l.weight.detach().double().numpy() for l in mh]
        exact = float(np.linalg.norm(P[1] @ P[0] - Ph[1] @ Ph[0], 2))
        F, Fh = lower_pair(m, mh, (4,))
        c = sdp_fo_certificate(F, Fh, iters=60)
        require(c.eps >= exact * (1 - 1e-12), f"first-order SDP {c.eps} below the exact linear sup {exact}")
    return f"{n_nets} tiny ReLU pairs vs exhaustive grid, 2 linear pairs, random dual points, subgradient"
