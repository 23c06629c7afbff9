"""Plain-JSON conversion shared by the library (experiment summaries) and the CLI (``--json`` output).

:func:`jsonable` turns enums, numpy scalars/arrays, tuples and paths into JSON types. Non-finite floats become
``None``; when a ``nonfinite`` dict is given, each one is recorded there under its JSON pointer (``"/a/0"``) as
``"nan"``, ``"inf"`` or ``"-inf"`` (the CLI prints that dict as the top-level ``"nonfinite"`` key, docs/cli.md).
Library modules use this module, never ``probprune.cli`` (the CLI sits on top of the library, not beside it).

Every JSON result carries ``probprune_version`` (:func:`versioned`, :func:`dumps`): the CLI envelope
(``probprune.cli.common.to_json``) and the JSON files the library writes through :func:`dumps`.
"""
from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(x: Any, path: str = "", nonfinite: dict | None = None):
    """``x`` with every value converted to a JSON type (see the module docstring)."""
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, dict):
        return {str(k): jsonable(v, f"{path}/{k}", nonfinite) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, f"{path}/{i}", nonfinite) for i, v in enumerate(x)]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), path, nonfinite)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        if math.isfinite(v):
            return v
        if nonfinite is not None:
            nonfinite[path or "/"] = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def package_version() -> str:
    """The installed package's version (``probprune.__version__``)."""
    from probprune import __version__

    return __version__


def versioned(obj: dict) -> dict:
    """``obj`` (a dict) with ``probprune_version`` added (after a leading ``schema`` key when there is one)."""
    head = {"schema": obj["schema"]} if "schema" in obj else {}
    return {**head, "probprune_version": package_version(),
            **{k: v for k, v in obj.items() if k not in ("schema", "probprune_version")}}


def dumps(obj: dict, **kwargs) -> str:
    """JSON text of ``jsonable(versioned(obj))``: the one writer for JSON result files."""
    return json.dumps(jsonable(versioned(obj)), **kwargs)


__all__ = ["jsonable", "versioned", "dumps", "package_version"]
