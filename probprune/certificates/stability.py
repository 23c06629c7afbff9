"""Data-region certificates and certified prediction stability (THEORY.md §12.5 [D]).

For a test input x0, a radius r and a norm (l2 or l_inf), the region is R = {x : ||x - x0|| <= r}.

* ``region_sup_error``: an upper bound on sup_{x in R} ||F(x) - F_hat(x)||_2 (coupled propagation, §12.4).
* ``certified_stability``: x0 is *certified stable* when, with k = argmax F(x0), for every x in R and every j != k,
  F_k(x) > F_j(x) and F_hat_k(x) > F_hat_j(x): the pruned network's prediction provably equals the original one
  (and both equal k) everywhere in R. Lower bounds on the margins come from CROWN on F, CROWN on F_hat, and the
  coupled bound F_hat_k - F_hat_j >= (F_k - F_j) - (d_k - d_j) with d = F - F_hat; the largest lower bound is
  used. At r = 0 this is the point check argmax F_hat(x0) = argmax F(x0) (with a floating-point allowance).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probprune.core.errors import ProbPruneError
from probprune.certificates.lower import Chain
from probprune.certificates.propagate import CoupledPropagator, Region, region_error_bound


def _batches(F: Chain, n: int, budget_bytes: float = 2.5e8):
    width = max(max(s.n_out, s.n_in) for s in F.stages)
    per = 2 * min(width, 1024) * width * 8 * 3
    b = int(max(1, min(n, budget_bytes // per)))
    chunk = 1024
    return b, chunk


@dataclass(frozen=True)
class StabilityResult:
    """Per-input certified prediction stability (§12.5). ``certified[i]``: prediction provably unchanged on R_i."""

    certified: np.ndarray  # bool (B,)
    label: np.ndarray  # argmax F(x0)
    F_margin_lower: np.ndarray  # (B,) min_j lower bound of F_k - F_j on R
    Fhat_margin_lower: np.ndarray  # (B,) min_j lower bound of F_hat_k - F_hat_j on R
    F_robust: np.ndarray  # bool (B,): F alone certified constant on R (an upper limit for ``certified``)
    radius: float
    norm: str
    statement: str = "THEORY.md §12.5 certified prediction stability"

    @property
    def fraction(self) -> float:
        return float(np.mean(self.certified)) if len(self.certified) else float("nan")


def certified_stability(F: Chain, Fhat: Chain, X, radius: float, norm: str = "l2") -> StabilityResult:
    """Certified prediction stability of each row of X (flattened inputs) over its region (§12.5)."""
    X = np.asarray(X, float).reshape(-1, F.n_in)
    if F.n_out < 2:
        raise ProbPruneError("prediction stability needs at least two outputs (classes)")
    labels = np.argmax(F.forward(X), axis=1)
    n = F.n_out
    bsz, chunk = _batches(F, len(X))
    cert, fl, fhl, frob = [], [], [], []
    for a in range(0, len(X), bsz):
        xb = X[a:a + bsz]
        kb = labels[a:a + bsz]
        prop = CoupledPropagator(F, Fhat, Region(xb, float(radius), norm), chunk_rows=chunk)
        # rows j != k: C = e_j - e_k; upper of C . out is minus the lower bound of the margin out_k - out_j
        C = np.zeros((len(xb), n - 1, n))
        for i, k in enumerate(kb):
            others = [j for j in range(n) if j != k]
            C[i, np.arange(n - 1), others] = 1.0
            C[i, :, k] = -1.0
        mF = -prop.output_upper(None, C, mode="F")  # lower bounds of F_k - F_j
        mH = -prop.output_upper(None, C, mode="hat")  # lower bounds of F_hat_k - F_hat_j (CROWN on F_hat)
        dU = prop.output_upper(-C, None, mode="coupled")  # upper bounds of d_k - d_j
        mH = np.maximum(mH, mF - dU)
        fl.append(mF.min(1))
        fhl.append(mH.min(1))
        frob.append(mF.min(1) > 0)
        cert.append((mF.min(1) > 0) & (mH.min(1) > 0))
    cat = np.concatenate
    return StabilityResult(cat(cert), labels, cat(fl), cat(fhl), cat(frob), float(radius), norm)


def region_sup_error(F: Chain, Fhat: Chain, X, radius: float, norm: str = "l2") -> np.ndarray:
    """Per-input upper bounds on sup_{||x - x0|| <= r} ||F(x) - F_hat(x)||_2 (§12.4)."""
    X = np.asarray(X, float).reshape(-1, F.n_in)
    bsz, chunk = _batches(F, len(X))
    out = []
    for a in range(0, len(X), bsz):
        reg = Region(X[a:a + bsz], float(radius), norm)
        out.append(region_error_bound(F, Fhat, reg, CoupledPropagator(F, Fhat, reg, chunk_rows=chunk)).eps)
    eps = np.concatenate(out)
    if F.scale_exp or Fhat.scale_exp:  # chains lowered with power-of-two rescaling (§12.8, 12.14): unscale, round up
        from probprune.certificates.tight import unscale

        if F.scale_exp != Fhat.scale_exp:
            raise ProbPruneError("F and F_hat were lowered with different scalings; lower them together")
        eps = np.array([unscale(float(v), F.scale_exp) for v in eps])
    return eps
