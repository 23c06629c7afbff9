"""Errors and input validation shared by the whole package.

Every user-facing check raises :class:`ProbPruneError` (a ``ValueError``) with a one-line message,
so the API raises a ValueError and the CLI turns it into one readable line and exit code 2.
"""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np


class ProbPruneError(ValueError):
    """A user error: bad argument, unsupported layer, corrupt file, violated hypothesis."""


class UnsupportedLayerError(ProbPruneError):
    """A torch module that the bounds or the pruning library cannot map."""


class HypothesisError(ProbPruneError):
    """Inputs that violate a theorem's hypotheses (the message says which)."""


def check_eps(eps) -> np.ndarray:
    e = np.asarray(eps, dtype=float)
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ProbPruneError(f"eps must be a finite number > 0, got {eps!r}")
    return e


def check_delta(delta) -> float:
    try:
        d = float(delta)
    except (TypeError, ValueError):
        raise ProbPruneError(f"delta must be a number in (0, 1), got {delta!r}") from None
    if not (0.0 < d < 1.0):
        raise ProbPruneError(f"delta must be in (0, 1), got {delta!r}")
    return d


def check_fraction(q, name: str = "fraction", upper_open: bool = False) -> np.ndarray:
    a = np.asarray(q, dtype=float)
    hi_ok = (a < 1.0) if upper_open else (a <= 1.0)
    if not np.all(np.isfinite(a)) or np.any(a < 0.0) or not np.all(hi_ok):
        rng = "[0, 1)" if upper_open else "[0, 1]"
        raise ProbPruneError(f"{name} must be in {rng}, got {q!r}")
    return a


def check_positive(x, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise ProbPruneError(f"{name} must be a positive number, got {x!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ProbPruneError(f"{name} must be a positive number, got {x!r}")
    return v


def check_finite_array(a, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ProbPruneError(f"{name} contains {bad} NaN/inf value(s)")
    return arr


def check_widths(widths: Iterable[int]) -> tuple[int, ...]:
    try:
        w = tuple(int(x) for x in widths)
    except (TypeError, ValueError):
        raise ProbPruneError(f"widths must be integers, got {widths!r}") from None
    if len(w) < 2:
        raise ProbPruneError(f"widths need at least an input and an output size, got {w}")
    if any(x < 1 for x in w):
        raise ProbPruneError(f"every width must be >= 1, got {w}")
    return w
