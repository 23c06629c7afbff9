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
