"""Experiment configs shipped with the package (package data), addressable by name.

``probprune mc plan mc_linear`` finds ``probprune/configs/mc_linear.yaml`` whether probprune runs from its clone or
from an installed wheel; ``experiments/mc_linear.yaml`` in the clone is a link to the same file (old path).
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from probprune.core.errors import ProbPruneError

SUFFIXES = (".yaml", ".yml", ".toml")


def names() -> list[str]:
    """Names of the shipped configs (file names without suffix), sorted."""
    root = resources.files(__name__)
    return sorted(p.name.rsplit(".", 1)[0] for p in root.iterdir() if p.name.endswith(SUFFIXES))


def path(name: str) -> Path:
    """The file of the shipped config ``name`` (``mc_linear`` or ``mc_linear.yaml``)."""
    root = resources.files(__name__)
    stem = name[: -len(s)] if (s := next((s for s in SUFFIXES if name.endswith(s)), "")) else name
    for suf in SUFFIXES:
        p = root / f"{stem}{suf}"
        if p.is_file():
            return Path(str(p))
    raise ProbPruneError(f"no config file or shipped config named {name!r}; shipped: {', '.join(names())}")


def resolve(name_or_path: str | Path) -> Path:
    """An existing file path as given, else the shipped config of that name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise ProbPruneError(f"config {p} is a folder, not a config file")
    if len(p.parts) > 1:
        raise FileNotFoundError(f"config file not found: {p}")
    return path(str(name_or_path))
