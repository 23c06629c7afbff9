"""Shared CLI helpers: JSON vs rich-table output, parsing of comma lists, loading models."""
from __future__ import annotations

import json
import math
from typing import Any, Callable

import numpy as np
import typer

from ..errors import ProbPruneError


def _jsonable(x: Any):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(x, (np.bool_,)):
        return bool(x)
    return x


def emit(data: dict, as_json: bool, render: Callable[[dict], None]) -> None:
    """Print ``data`` as JSON (machine use) or through ``render`` (rich tables for people)."""
    if as_json:
        typer.echo(json.dumps(_jsonable(data), indent=2))
    else:
        render(data)


def parse_int_list(s: str, name: str) -> list[int]:
    try:
        return [int(v) for v in s.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ProbPruneError(f"{name} must be a comma-separated list of integers, got {s!r}") from None


def parse_float_list(s: str, name: str) -> list[float]:
    try:
        return [float(v) for v in s.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ProbPruneError(f"{name} must be a comma-separated list of numbers, got {s!r}") from None
