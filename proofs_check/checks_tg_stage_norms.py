"""THEORY.md §12.11 (issue 19, helper TG): certified norms of sparse stage matrices (Statement 12.50).

Numeric: (a) the block decomposition (identity stage breaks, max-pool tree levels, permuted block-diagonal matrices
with one-row, one-column and small dense blocks) and (b) the sparse Gram + Lanczos guess + Cholesky certificate (a
random sparse convolution-like banded matrix) against the exact norm (LAPACK SVD): every bound >= the exact norm and
within 1e-7 of it; the dense path below the size threshold is bit-identical to spectral_norm_upper."""
from __future__ import annotations

import numpy as np

from ._core import register, require


def tg_stage_norm_cases(seed: int = 5011):
    """(name, matrix) test matrices on the sparse paths of Statement 12.50 (all with smaller side > 512)."""
    rng = np.random.default_rng(seed)
    n = 600
    out = [("identity", np.eye(n))]
    # a max-pool tree level: [a - b; b] per pair of window candidates (rows), pairs of columns
    P = np.zeros((n, n))
    for j in range(n // 2):
        P[2 * j, 2 * j], P[2 * j, 2 * j + 1], P[2 * j + 1, 2 * j + 1] = 1.0, -1.0, 1.0
    out.append(("pool-level", P))
    # permuted block diagonal: one-row blocks, one-column blocks, 3x4 dense blocks, zero rows/columns
    B = np.zeros((700, 640))
    r = c = 0
    while r + 4 <= 690 and c + 5 <= 630:
        kind = rng.integers(3)
        if kind == 0:
            B[r, c:c + 3] = rng.normal(size=3)
            r, c = r + 1, c + 3
        elif kind == 1:
            B[r:r + 3, c] = rng.normal(size=3)
            r, c = r + 3, c + 1
        else:
            B[r:r + 3, c:c + 4] = rng.normal(size=(3, 4))
            r, c = r + 3, c + 4
    B[5:8, 7] *= 40.0  # one dominant block
    out.append(("block-diagonal", B[rng.permutation(700)][:, rng.permutation(640)]))
    # one connected sparse block: a banded (convolution-like) matrix, about 2 % nonzero
    C = np.zeros((640, 576))
    for i in range(640):
        j0 = (i * 576) // 640
        cols = np.arange(max(0, j0 - 6), min(576, j0 + 6))
        C[i, cols] = rng.normal(size=cols.size)
    out.append(("banded", C))
    return out


@register("tg-stage-norm-sparse", "Statement 12.50: block / sparse-Cholesky stage norm >= exact ||M||_2, within 1e-7",
          "§12.11", "numeric", covers=["tg-stage-norm-sparse"])
def _chk_stage_norms():
    from probprune.certificates.compose import stage_norm_upper
    from probprune.theory.norms import spectral_norm_upper

    worst = 0.0
    names = []
    for name, M in tg_stage_norm_cases():
        ex = float(np.linalg.norm(M, 2))
        ub = stage_norm_upper(M)
        require(ub >= ex, f"{name}: bound {ub!r} < exact {ex!r}")
        require(ub <= ex * (1 + 1e-7), f"{name}: bound {ub!r} more than 1e-7 above exact {ex!r}")
        worst = max(worst, ub / ex - 1)
        names.append(name)
    small = np.random.default_rng(5012).normal(size=(40, 300))
    require(stage_norm_upper(small) == spectral_norm_upper(small), "dense path not bit-identical")
    return f"{', '.join(names)}: bound >= exact SVD norm, at most {worst:.1e} above; dense path identical"


@register("tg-mixed-noprop", "Statement 12.51: mixed bound without propagation >= propagated variant (term by term) "
          ">= sampled sup ||F - F_hat||", "§12.11", "numeric", covers=["tg-mixed-noprop"])
def _chk_mixed_noprop():
    import torch
    import torch.nn as nn

    from probprune.certificates.compose import bound_cache
    from probprune.certificates.lower import lower_graph_pair
    from probprune.certificates.mixed import lemma_a_mixed
    from probprune.certificates.propagate import Region
    from probprune.net.trace import from_torch

    n = 0
    for seed in (5021, 5022, 5023):
        torch.manual_seed(seed)
        m = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 5),
                          nn.ReLU(), nn.Linear(5, 3)).double().eval()
        g = from_torch(m, (1, 4, 4))
        rng = np.random.default_rng(seed)
        gh = g.with_masks({k: rng.random(w.shape) < 0.6 for k, w in g.weights.items()})
        F, Fh = lower_graph_pair(g, gh)
        reg = Region(np.zeros((1, F.n_in)), 1.0)
        for mode in ("none", "scalar"):
            with bound_cache(False):
                a = lemma_a_mixed(F, Fh, reg, pair_bounds=mode)
                b = lemma_a_mixed(F, Fh, reg, None, pair_bounds=mode, propagation=False)
            require(all(tb >= ta * (1 - 1e-12) for ta, tb in zip(a.terms, b.terms)),
                    f"seed {seed} {mode}: a term without propagation below the propagated one")
            X = rng.normal(size=(4000, F.n_in))
            X /= np.linalg.norm(X, axis=1, keepdims=True)
            X *= rng.random((4000, 1)) ** (1 / F.n_in)
            with torch.no_grad():
                t = torch.as_tensor(X.reshape(-1, 1, 4, 4))
                err = float(np.linalg.norm((g.forward(t) - gh.forward(t)).numpy(), axis=1).max())
            require(b.eps >= err, f"seed {seed} {mode}: {b.eps} below a sampled error {err}")
            n += 1
    return f"{n} (net, mode) pairs: no-propagation terms >= propagated terms, eps >= sampled sup"


@register("tg-conv-identity", "Statement 12.52: conv of a fresh block's identity rows = kernel entries placed by "
          "unfold (entry by entry equal to the convolution)", "§12.11", "numeric", covers=["tg-conv-identity"])
def _chk_conv_identity():
    import torch

    from probprune.certificates.lower import _Conv2dLin

    class _Op:
        def __init__(self, stride, padding, dilation, out_shape):
            self.stride, self.padding, self.dilation, self.out_shape = stride, padding, dilation, out_shape

    rng = np.random.default_rng(5031)
    n = 0
    for ci, co, kh, kw, s, p, d, H, W in [(1, 2, 3, 3, 1, 1, 1, 5, 6), (2, 3, 2, 3, 2, (1, 0), 1, 7, 5),
                                          (3, 2, 3, 1, (1, 2), 1, (2, 1), 6, 6), (2, 2, 1, 1, 1, 0, 1, 4, 4)]:
        Wt = torch.as_tensor(rng.normal(size=(co, ci, kh, kw)))
        k = ci * H * W
        with torch.no_grad():
            ref = torch.nn.functional.conv2d(torch.eye(k, dtype=torch.float64).reshape(k, ci, H, W), Wt,
                                             stride=s, padding=p, dilation=d)
        for off, extra in ((0, 0), (3, 5)):
            lin = _Conv2dLin(Wt, _Op(s, p, d, tuple(ref.shape[1:])))
            got = lin.on_identity(k + extra, off, (ci, H, W))
            full = torch.zeros((k + extra,) + tuple(ref.shape[1:]), dtype=torch.float64)
            full[off:off + k] = ref
            require(got is not None and torch.equal(got, full), f"case {n}: placed kernel != convolution")
            n += 1
    return f"{n} (kernel, stride, padding, dilation, offset) cases: placed kernel equals the convolution entry by entry"
