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


# seeds: numpy's Generator and torch.manual_seed both take a 64-bit value; anything outside is refused, not wrapped
SEED_MAX = 2**63 - 1


def check_seed(seed, name: str = "seed") -> int:
    """A seed in [0, 2**63 - 1] (numpy and torch accept it as given, so the same seed gives the same numbers)."""
    try:
        s = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise ProbPruneError(f"{name} must be an integer in [0, {SEED_MAX}], got {seed!r}") from None
    if s != seed or not (0 <= s <= SEED_MAX):
        raise ProbPruneError(f"{name} must be an integer in [0, {SEED_MAX}], got {seed!r}")
    return s


# memory guard: refuse before allocating rather than die with MemoryError half-way (the machine's RAM, less a margin)
def memory_limit_bytes() -> int:
    """Usable memory for one allocation plan: PROBPRUNE_MEMORY_LIMIT (bytes) if set, else 80% of the physical RAM."""
    import os

    env = os.environ.get("PROBPRUNE_MEMORY_LIMIT")
    if env:
        return int(float(env))
    try:
        return int(0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 16 * 2**30


def check_memory(nbytes: float, what: str) -> float:
    """Refuse a plan whose estimated peak memory ``nbytes`` exceeds :func:`memory_limit_bytes`, naming the estimate."""
    limit = memory_limit_bytes()
    if not math.isfinite(float(nbytes)) or nbytes > limit:
        raise ProbPruneError(f"{what} needs about {human_bytes(nbytes)} of memory, more than the "
                             f"{human_bytes(limit)} available (set PROBPRUNE_MEMORY_LIMIT to change the limit)")
    return float(nbytes)


def human_bytes(n: float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} B"  # pragma: no cover
