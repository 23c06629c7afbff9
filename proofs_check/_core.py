"""Registry, result types and small helpers shared by every check module.

A *check* is a zero-argument function that either returns a short detail string (success) or raises
:class:`ProofFailure` (the statement or the code disagrees with the derivation). Any other exception is reported
as ERROR (a bug in the check or in the code under test); a bridge whose target module is absent is reported as
SKIP when the target is optional and as FAIL when it is required.
"""
from __future__ import annotations

import importlib
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np


class ProofFailure(AssertionError):
    """The checked statement does not hold (or the implementation differs from the derivation)."""


class MissingImplementation(Exception):
    """A bridge target (function in ``probprune``) does not exist."""


@dataclass(frozen=True)
class Check:
    id: str
    statement: str
    ref: str  # THEORY.md section, e.g. "§3.3"
    method: str  # "symbolic", "numeric" or "symbolic+numeric"
    kind: str  # "derivation" (math only) or "bridge" (code equals the derivation)
    covers: tuple[str, ...]  # ids of the [D] statements (see statements.py) this check establishes
    func: Callable[[], str | None] = field(repr=False, compare=False)
    optional: bool = False  # bridge to a module that may legitimately be absent -> SKIP instead of FAIL


@dataclass
class CheckResult:
    id: str
    statement: str
    ref: str
    method: str
    kind: str
    covers: tuple[str, ...]
    status: str  # PASS | FAIL | ERROR | SKIP
    detail: str
    seconds: float

    def as_dict(self) -> dict:
        d = asdict(self)
        d["covers"] = list(self.covers)
        return d


REGISTRY: list[Check] = []

METHODS = ("symbolic", "numeric", "symbolic+numeric")
KINDS = ("derivation", "bridge")


def register(id: str, statement: str, ref: str, method: str, covers: Iterable[str] = (), kind: str = "derivation",
             optional: bool = False):
    """Decorator: add a check to :data:`REGISTRY`."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(fn):
        if any(c.id == id for c in REGISTRY):
            raise ValueError(f"duplicate check id {id!r}")
        REGISTRY.append(Check(id, statement, ref, method, kind, tuple(covers), fn, optional))
        return fn

    return deco


def run_check(chk: Check) -> CheckResult:
    t0 = time.perf_counter()
    try:
        detail = chk.func() or "ok"
        status = "PASS"
    except ProofFailure as exc:
        status, detail = "FAIL", str(exc).splitlines()[0] if str(exc) else "failed"
    except MissingImplementation as exc:
        status = "SKIP" if chk.optional else "FAIL"
        detail = f"missing implementation: {exc}"
    except AssertionError as exc:  # e.g. raised inside hypothesis-driven helpers
        status, detail = "FAIL", (str(exc).strip().splitlines() or ["assertion failed"])[0]
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        status, detail = "ERROR", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return CheckResult(chk.id, chk.statement, chk.ref, chk.method, chk.kind, chk.covers, status, detail,
                       time.perf_counter() - t0)


# ------------------------------------------------------------------------------------------------ helpers
def require(cond, msg: str) -> None:
    """Raise :class:`ProofFailure` with ``msg`` unless ``cond`` is true."""
    if not bool(cond):
        raise ProofFailure(msg)


def sym_zero(expr, what: str) -> None:
    """Require a sympy expression to simplify to exactly 0."""
    import sympy as sp

    e = sp.simplify(sp.expand(expr))
    if e != 0:  # perfect squares under a square root: factor the radicands, then let sympy take the root
        e = sp.simplify(e.replace(lambda x: isinstance(x, sp.Pow) and x.exp == sp.Rational(1, 2),
                                  lambda x: sp.sqrt(sp.factor(x.base))))
    require(e == 0, f"{what}: residual {e} != 0")


def sym_positive(expr, what: str) -> None:
    """Require sympy to *prove* positivity from the symbols' assumptions (is_positive is True)."""
    import sympy as sp

    e = sp.simplify(expr)
    require(e.is_positive is True, f"{what}: sympy cannot prove {e} > 0")


def close(a, b, rtol: float = 1e-10, atol: float = 1e-12, what: str = "values") -> float:
    """Require ``a`` and ``b`` (arrays) to agree; return the max relative deviation."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    require(a.shape == b.shape or a.size == b.size, f"{what}: shape {a.shape} != {b.shape}")
    a, b = a.reshape(-1), b.reshape(-1)
    bad = ~np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=False)
    if np.any(bad):
        k = int(np.argmax(bad))
        raise ProofFailure(f"{what}: {a[k]!r} != {b[k]!r} (index {k}, {int(bad.sum())} of {a.size} differ)")
    scale = np.maximum(np.abs(b), atol)
    return float(np.max(np.abs(a - b) / scale)) if a.size else 0.0


def hypothesis_cases(fn, *strategies, max_examples: int = 150) -> int:
    """Run ``fn`` on hypothesis-generated cases (derandomised: reproducible, no example database).

    ``fn`` should raise AssertionError/ProofFailure on a counterexample; hypothesis shrinks it and re-raises.
    Returns the number of examples requested.
    """
    from hypothesis import HealthCheck, given, settings

    test = settings(max_examples=max_examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)(given(*strategies)(fn))
    try:
        test()
    except AssertionError as exc:
        raise ProofFailure(f"hypothesis counterexample: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    return max_examples


def import_attr(module: str, name: str):
    """Import ``module.name`` or raise :class:`MissingImplementation` with a one-line reason."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise MissingImplementation(f"module {module} not found ({exc.name})") from None
    if not hasattr(mod, name):
        raise MissingImplementation(f"{module}.{name} not found")
    return getattr(mod, name)
