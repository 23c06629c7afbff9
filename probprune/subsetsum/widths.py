"""Required widths of the random network in strong-lottery-ticket theorems (THEORY.md §4.3) and the counting lower
bound (§4.5).

No constant C and no log base is published numerically (§4.3, last line), so every formula takes C and the log base
as parameters and every result carries its provenance label:

* Pensia et al. 2020, Thm 1 [RC]: block i hidden width n_i = C * d_{i-1} * log(d_{i-1} d_i l / min(eps, delta)).
* Malach et al. 2020 [RC/PAPER-S]: a monomial C * d^a * l^b * eps^(-c); the d and l exponents follow the
  "O(d^4 l^2) wider" (width O(d^5 l^2)) readings [PAPER-S]; the eps exponent is [NR] and the default c = 2 is a
  placeholder chosen here, to be set by the user.
* Orseau et al. 2020 [RC]: per-weight blocks, not shared: n_i = C * d_{i-1} d_i * log(d_{i-1} d_i l / min(eps, delta))
  neurons (about d times Pensia's).
* da Cunha et al. 2022 (CNN) [RC]: n_i = C * log(k_i^2 c_{i-1} c_i l / min(eps, delta)); the 1x1 conv has
  2 n_i c_{i-1} channels.
* Counting lower bound [D] (§4.5): N >= d^2 log2(1/(4 eps)) prunable weights; for depth 2 (M_1 in R^{w x d},
  M_2 in R^{d x w}) width w >= (d/2) log2(1/(4 eps)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from probprune.core.errors import ProbPruneError, check_delta, check_positive


def _log(x, base):
    x = np.asarray(x, dtype=float)
    if base in ("e", None) or base == math.e:
        return np.log(x)
    b = float(base)
    if b <= 1:
        raise ProbPruneError(f"log base must be > 1 or 'e', got {base!r}")
    return np.log(x) / math.log(b)


def _check_eps(eps):
    e = np.asarray(eps, dtype=float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ProbPruneError(f"eps must be a finite number > 0, got {eps!r}")
    return e


def _check_dims(*ds):
    out = []
    for d in ds:
        a = np.asarray(d, dtype=float)
        if np.any(a < 1) or not np.all(np.isfinite(a)):
            raise ProbPruneError(f"widths/depths must be >= 1, got {d!r}")
        out.append(a)
    return out


@dataclass(frozen=True)
class WidthResult:
    """A width formula evaluated: ``width`` (per block or per layer, numpy), ``params`` of the random network where
    defined, the formula, its provenance label and the constants used."""

    name: str
    width: np.ndarray
    params: np.ndarray | None
    formula: str
    provenance: str
    constants: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return {
            "name": self.name, "width": np.asarray(self.width).tolist(),
            "params": None if self.params is None else np.asarray(self.params).tolist(),
            "formula": self.formula, "provenance": self.provenance, "constants": self.constants,
            "notes": list(self.notes),
        }


def pensia_block_width(d_prev, d, l, eps, delta, C: float = 1.0, log_base="e") -> WidthResult:
    """Pensia et al. Thm 1 [RC] (§4.3): n_i = C d_{i-1} log(d_{i-1} d_i l / min(eps, delta)).

    The random block has M_{2i-1} in R^{n_i x d_{i-1}} and M_{2i} in R^{d_i x n_i}: n_i (d_{i-1} + d_i) params."""
    d_prev, d, l = _check_dims(d_prev, d, l)
    eps = _check_eps(eps)
    delta = check_delta(delta)
    C = check_positive(C, "C")
    w = C * d_prev * _log(d_prev * d * l / np.minimum(eps, delta), log_base)
    return WidthResult("pensia", w, w * (d_prev + d),
                       "n_i = C * d_{i-1} * log(d_{i-1} d_i l / min(eps, delta))", "[RC]",
                       {"C": C, "log_base": str(log_base)},
                       ("abstract [PAPER-S]: 'a factor O(log(dl)) wider and twice as deep'",))


def malach_width(d, l, eps, C: float = 1.0, a: float = 5.0, b: float = 2.0, c: float = 2.0) -> WidthResult:
    """Malach et al. [RC]: width C d^a l^b eps^-c. Defaults a = 5, b = 2 ([PAPER-S] 'O(d^4 l^2) wider' / 'O(d^5 l^2)');
    the eps exponent is [NR]: the default c = 2 is a placeholder chosen here."""
    d, l = _check_dims(d, l)
    eps = _check_eps(eps)
    C = check_positive(C, "C")
    w = C * d ** a * l ** b * eps ** (-c)
    return WidthResult("malach", w, None, "width = C * d^a * l^b * eps^(-c)", "[RC]",
                       {"C": C, "a": a, "b": b, "c": c},
                       ("d, l exponents [PAPER-S]; eps exponent [NR], default c = 2 is a placeholder set here",))


def orseau_block_width(d_prev, d, l, eps, delta, C: float = 1.0, log_base="e") -> WidthResult:
    """Orseau et al. [RC]: per-weight (unshared) blocks: C d_{i-1} d_i log(d_{i-1} d_i l / min(eps, delta)) neurons."""
    d_prev, d, l = _check_dims(d_prev, d, l)
    eps = _check_eps(eps)
    delta = check_delta(delta)
    C = check_positive(C, "C")
    w = C * d_prev * d * _log(d_prev * d * l / np.minimum(eps, delta), log_base)
    return WidthResult("orseau", w, w * (d_prev + d),
                       "n_i = C * d_{i-1} * d_i * log(d_{i-1} d_i l / min(eps, delta))", "[RC]",
                       {"C": C, "log_base": str(log_base)},
                       ("[PAPER-S]: 'a logarithmic factor (in all variables but depth) number of neurons per weight'",
                        "weight law 'hyperbolic' (density ~ 1/|w|) [RC]"))


def da_cunha_conv_width(k, c_prev, c, l, eps, delta, C: float = 1.0, log_base="e") -> WidthResult:
    """da Cunha et al. 2022 [RC]: n_i = C log(k^2 c_{i-1} c_i l / min(eps, delta)); the 1x1 conv maps c_{i-1} to
    2 n_i c_{i-1} channels, the kxk conv maps those to c_i. ``params`` = 2 n_i c_{i-1} (c_{i-1} + k^2 c_i)."""
    k, c_prev, c, l = _check_dims(k, c_prev, c, l)
    eps = _check_eps(eps)
    delta = check_delta(delta)
    C = check_positive(C, "C")
    n = C * _log(k ** 2 * c_prev * c * l / np.minimum(eps, delta), log_base)
    hidden = 2 * n * c_prev
    return WidthResult("da_cunha", n, hidden * (c_prev + k ** 2 * c),
                       "n_i = C * log(k^2 c_{i-1} c_i l / min(eps, delta)); hidden channels 2 n_i c_{i-1}", "[RC]",
                       {"C": C, "log_base": str(log_base)}, ("[PAPER-S]: 'larger by a logarithmic factor'",))


def counting_lower_bound(d, eps) -> WidthResult:
    """§4.5 [D]: any random network whose prunings eps-approximate every x -> W x / 2 (||W|| <= 1, d x d) needs
    N >= d^2 log2(1/(4 eps)) prunable weights; depth 2 with M_1 (w x d), M_2 (d x w): w >= (d/2) log2(1/(4 eps)).
    Only meaningful for eps < 1/4 (else the bound is <= 0 and is returned as 0)."""
    (d,) = _check_dims(d)
    eps = _check_eps(eps)
    lg = np.maximum(np.log2(1.0 / (4.0 * eps)), 0.0)
    return WidthResult("counting_lower_bound", d / 2 * lg, d ** 2 * lg,
                       "N >= d^2 log2(1/(4 eps)); depth-2 width w >= (d/2) log2(1/(4 eps))", "[D]", {},
                       ("2^N prunings; (1/(4 eps))^{d^2} 2eps-separated targets in the operator-norm ball of radius 1/2",))


def compare_widths(d, l, eps, delta, C: float = 1.0, log_base="e", malach_exponents=(5.0, 2.0, 2.0)) -> list[dict]:
    """Tidy rows comparing the required hidden width of one block (square layers d -> d) under each formula and
    the lower bound, for broadcastable d, l, eps (one row per combination and formula)."""
    d_, l_, e_ = np.broadcast_arrays(np.asarray(d, float), np.asarray(l, float), np.asarray(eps, float))
    rows = []
    for dd, ll, ee in zip(d_.ravel(), l_.ravel(), e_.ravel()):
        ps = pensia_block_width(dd, dd, ll, ee, delta, C, log_base)
        ma = malach_width(dd, ll, ee, C, *malach_exponents)
        orr = orseau_block_width(dd, dd, ll, ee, delta, C, log_base)
        lb = counting_lower_bound(dd, ee)
        for r in (ps, ma, orr, lb):
            rows.append({"d": int(dd), "l": int(ll), "eps": float(ee), "formula": r.name,
                         "width": float(r.width), "provenance": r.provenance})
    return rows
