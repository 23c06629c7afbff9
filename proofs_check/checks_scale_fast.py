"""Faster certified conv norms (THEORY.md §11.6): per-block herk Grams certified by Cholesky at a common guess, with
eigenvalues only where the factorisation fails; checked against the SVD of every block and of the explicit
convolution operator, for guesses that are absent, too small, close and too large."""
from __future__ import annotations

import numpy as np

from ._core import import_attr, register, require
from .checks_conv import conv_operator


@register("scale-cholesky-search", "11.6: every block's value (eigenvalue or Cholesky at the common guess) >= its "
          "exact lambda_max (SVD) for absent/small/close/large guesses, ties and zero blocks; wide conv blocks >= the "
          "explicit operator norm and within 1e-7 of the all-eigenvalue bound", "§11.6", "numeric",
          covers=["norm-cholesky-search"])
def _chk_cholesky_search():
    torch = __import__("torch")
    block_top = import_attr("probprune.theory.norms", "_block_top_cpu")
    norms = __import__("probprune.theory.norms", fromlist=["SMALL_BLOCK"])
    rng = np.random.default_rng(116)
    n = 0
    for trial in range(24):
        B = int(rng.integers(1, 12))
        m, k = (int(x) for x in rng.integers(1, 40, 2))
        F = rng.standard_normal((B, m, k)) + 1j * rng.standard_normal((B, m, k))
        if trial % 4 == 1:
            F[:] = F[0]  # ties
        elif trial % 4 == 2:
            F[::2] = 0.0  # zero blocks
        F = F / max(np.abs(F).max(), 1e-300)
        lam = np.linalg.svd(F, compute_uv=False)[:, 0] ** 2
        for g in (None, 0.5, 1.0 + 1e-6, 2.0):
            mu0 = None if g is None else float(lam.max()) * g
            if mu0 == 0.0:
                mu0 = None
            bound = block_top(torch.from_numpy(F), mu0)[0]
            require(bool(np.all(bound >= lam)), f"block value below exact lambda_max (trial {trial}, guess {g})")
            if g is None:
                require(bound.max() <= lam.max() * (1 + 1e-7) + 1e-300, "no-guess bound loose")
            n += 1
    for co, ci, H, s, p, d in ((40, 34, 4, 1, 1, 1), (36, 48, 5, 2, 1, 2), (64, 33, 3, 1, 0, 1)):
        W = rng.standard_normal((co, ci, 3, 3)) * 10.0 ** rng.integers(-100, 100)
        T, _, _ = conv_operator(W, H, H, (s, s), (p, p), (d, d))
        ex = float(np.linalg.svd(T, compute_uv=False)[0]) if T.size else 0.0
        v = norms.conv_norm_fft_upper(W, (H, H), s, p, d)
        old, norms.SMALL_BLOCK = norms.SMALL_BLOCK, 10 ** 9
        try:
            ref = norms.conv_norm_fft_upper(W, (H, H), s, p, d)  # every block by its eigenvalue (11.1)
        finally:
            norms.SMALL_BLOCK = old
        require(v >= ex, f"wide conv {co}x{ci} below the explicit operator norm")
        require(abs(v / ref - 1) <= 1e-7, f"wide conv {co}x{ci}: {v} vs eigenvalue bound {ref}")
        n += 1
    return f"{n} block sets / convolutions"
