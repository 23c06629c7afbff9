"""Shared CLI helpers: the option vocabulary (Enum choices), JSON vs rich-table output with one versioned schema
style, output-path checks before work and atomic writes, comma-list parsing, deprecation notes.

JSON output (docs/cli.md): every command prints one object ``{"schema": "probprune.<command path>/1", ...}``
(e.g. ``probprune.budget/1``, ``probprune.mc.run/1``); non-finite floats are written as ``null`` and listed in a
top-level ``"nonfinite": {"<json pointer>": "nan" | "inf" | "-inf"}`` (absent when there are none). Errors with
``--json`` print ``{"schema": "probprune.error/1", "error": "...", "command": "..."}`` on stdout besides the
one ``error:`` line on stderr.
"""
from __future__ import annotations

import enum
import json
import math
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import typer

from probprune.core import registry as _registry
from probprune.core.errors import ProbPruneError
from probprune.core.jsonio import jsonable, package_version

SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------- vocabulary
def _enum(name: str, values) -> type[enum.Enum]:
    return enum.Enum(name, {v: v for v in values}, type=str)


# (kept literal so that `probprune --help` does not import torch; tests/test_cli_vocabulary.py checks them against
# the library's own tuples)
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "hardtanh", "identity", "sigmoid")
Activation = _enum("Activation", ACTIVATIONS)
Law = _enum("Law", ("uniform", "gaussian"))
BudgetMethod = _enum("BudgetMethod", ("magnitude", "random", "random_rescaled"))
#: the methods with an a-priori statement in probprune.core.registry (registry.py imports no torch)
BoundMethod = _enum("BoundMethod", tuple(m.name for m in _registry.METHODS.values() if m.apriori is not None))
BudgetMode = _enum("BudgetMode", ("optimal", "uniform", "equal_share"))
CertMethod = _enum("CertMethod", ("magnitude", "random"))
ConvNorm = _enum("ConvNorm", ("fft", "kernel"))
Dataset = _enum("Dataset", ("mnist5k", "digits", "mnist1d"))
PruneMethod = _enum("PruneMethod", ("magnitude", "random", "snip", "grad", "structured"))
Scope = _enum("Scope", ("layer", "global"))
Scheme = _enum("Scheme", ("uniform", "er", "erk", "snip_ratio"))
Sampling = _enum("Sampling", ("exact", "bernoulli", "threshold"))
Rounding = _enum("Rounding", ("floor", "round", "ceil"))
NeuronNorm = _enum("NeuronNorm", ("l1", "l2"))
Strategy = _enum("Strategy", ("layerwise", "global"))
Retrain = _enum("Retrain", ("rewind", "lr_rewind", "finetune"))
Optimizer = _enum("Optimizer", ("adam", "sgd"))
SumLaw = _enum("SumLaw", ("uniform", "product"))
SumMode = _enum("SumMode", ("closest", "sparsest"))
SumMethod = _enum("SumMethod", ("mitm", "milp", "brute"))
LogBase = _enum("LogBase", ("e", "2", "10"))
Tolerance = _enum("Tolerance", ("theorem", "per-weight"))
Signs = _enum("Signs", ("random", "assigned"))
DataChoice = _enum("DataChoice", ("auto", "mnist5k", "digits", "mnist1d", "none"))
CONTROLS = ("uniform", "erk", "reinit", "ticket_density")


def val(x):
    """The plain value of an Enum option (or ``x`` itself)."""
    return x.value if isinstance(x, enum.Enum) else x


def json_option(help: str = "machine-readable JSON on stdout (schema: docs/cli.md)"):
    return typer.Option(False, "--json/--no-json", help=help, metavar="")


def deprecated(old: str, new: str) -> None:
    """One-line deprecation note on stderr for an old option spelling that still works."""
    print(f"note: {old} is deprecated; use {new}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- checks
def check_int(x: int, name: str, minimum: int = 1) -> int:
    if x is None or int(x) < minimum:
        raise ProbPruneError(f"{name} must be an integer >= {minimum}, got {x}")
    return int(x)


def check_finite(x: float | None, name: str, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False) -> float | None:
    """A finite float in [lo, hi] (open ends as asked); None passes through."""
    if x is None:
        return None
    v = float(x)
    bad = not math.isfinite(v)
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        rng = ""
        if lo is not None or hi is not None:
            rng = (f" in {'(' if lo_open else '['}{'-inf' if lo is None else f'{lo:g}'}, "
                   f"{'inf' if hi is None else f'{hi:g}'}{')' if hi_open else ']'}")
        raise ProbPruneError(f"{name} must be a finite number{rng}, got {x}")
    return v


def check_output_path(path: str | os.PathLike | None, name: str, kind: str = "file") -> Path | None:
    """Check, before any work, that ``path`` can be written: a file (``kind="file"``) must not be an existing
    folder, a folder (``kind="dir"``) must not be an existing file, and the nearest existing folder must accept a
    new file: one temporary file is created there and removed (``os.access`` says yes to root even on a read-only
    or virtual file system such as /proc). Missing parent folders are created only when the output is written
    (:func:`atomic_write`), so a failed command leaves nothing behind. ``None`` means no output; an empty string is
    refused."""
    if path is None:
        return None
    if str(path) == "":
        raise ProbPruneError(f"{name} is empty: give a path")
    p = Path(path)
    if kind == "file" and p.is_dir():
        raise ProbPruneError(f"{name} {p} is a folder; give a file path")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise ProbPruneError(f"{name} {p} is a file; give a folder")
    if kind == "file" and p.is_symlink() and not p.exists():
        raise ProbPruneError(f"{name} {p} is a dangling symbolic link (to {os.readlink(p)}); remove it or give "
                             "another path")
    target = Path(os.path.realpath(p)) if kind == "file" and p.is_symlink() else p
    anc = target.parent if kind == "file" else target
    while not anc.exists():
        if anc == anc.parent:
            break
        anc = anc.parent
    if not anc.is_dir():
        raise ProbPruneError(f"{name} {p}: {anc} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".probprune-write-test-", dir=anc)
    except OSError as exc:
        raise ProbPruneError(f"{name} {p}: cannot create a file in folder {anc} "
                             f"({exc.strerror or type(exc).__name__})") from None
    os.close(fd)
    os.unlink(probe)
    return p


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` writes a temporary file in the target's folder, then ``os.replace``.
    A new file gets the user's umask (mode 0666 & ~umask, like ``open``; the temporary file alone would be 0600), an
    existing one keeps its mode.
    A symbolic link is written through (its target is replaced, the link stays a link). Missing parent folders are
    created (the one place the CLI creates output folders)."""
    p = Path(path)
    if p.is_symlink():
        if not p.exists():
            raise ProbPruneError(f"{p} is a dangling symbolic link (to {os.readlink(p)}); not writing through it")
        dest = Path(os.path.realpath(p))
    else:
        dest = p
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{dest.name}-", dir=dest.parent)
    os.close(fd)
    try:
        write(tmp)
        try:  # an existing file keeps its mode (as open(path, "w") would); a new one gets the umask's
            mode = stat.S_IMODE(dest.stat().st_mode)
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def w(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, w)


def refuse_recurrent(net, path: str) -> None:
    """Recurrent layers (LSTM, GRU, RNN) have no operator-norm bound in any engine: refuse naming the layer."""
    import torch.nn as nn

    from probprune.core.errors import UnsupportedLayerError

    for name, mod in net.named_modules():
        if isinstance(mod, nn.RNNBase):
            raise UnsupportedLayerError(f"layer {name or '<root>'!r} of {path} is a {type(mod).__name__}: recurrent "
                                        "layers are not supported")


# ---------------------------------------------------------------------------------------------- JSON
_jsonable = jsonable  # the library's converter (probprune/core/jsonio.py); library modules never import the CLI


def command_schema(command_path: str | None = None) -> str:
    """``probprune.<sub.command>/<version>`` for the running command (from the click context)."""
    if command_path is None:
        ctx = None
        for mod in ("typer._click.globals", "click.globals"):
            try:
                ctx = __import__(mod, fromlist=["get_current_context"]).get_current_context(silent=True)
            except ImportError:
                continue
            if ctx is not None:
                break
        command_path = ctx.command_path if ctx is not None else "probprune"
    parts = command_path.split()[1:] or ["probprune"]
    return f"probprune.{'.'.join(parts)}/{SCHEMA_VERSION}"


def to_json(data: dict, schema: str) -> str:
    """The CLI's JSON envelope: ``schema`` first, then ``probprune_version``, then the command's keys."""
    nonfinite: dict = {}
    body = _jsonable(data, "", nonfinite)
    out = {"schema": schema, "probprune_version": package_version(),
           **{k: v for k, v in body.items() if k not in ("schema", "probprune_version")}}
    if nonfinite:
        out["nonfinite"] = nonfinite
    return json.dumps(out, indent=2, allow_nan=False)


def emit(data: dict, as_json: bool, render: Callable[[dict], None]) -> None:
    """Print ``data`` as JSON (machine use; versioned schema, see module doc) or through ``render`` (rich tables)."""
    if as_json:
        typer.echo(to_json(data, command_schema()))
    else:
        render(data)


def make_console(stderr: bool = False):
    """A rich Console that does not cut tables to 80 columns when the output is redirected."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=int(os.environ.get("PROBPRUNE_WIDTH", "400")), soft_wrap=True)


class LazyConsole:
    """Module-level ``console`` that builds its Console at first use (so redirections made later count)."""

    def __getattr__(self, name):
        return getattr(make_console(), name)


# ---------------------------------------------------------------------------------------------- parsing
def parse_int_list(s: str, name: str) -> list[int]:
    try:
        return [int(v) for v in s.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ProbPruneError(f"{name} must be a comma-separated list of integers, got {s!r}") from None


def parse_float_list(s: str, name: str, finite: bool = True) -> list[float]:
    try:
        out = [float(v) for v in s.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ProbPruneError(f"{name} must be a comma-separated list of numbers, got {s!r}") from None
    if finite and not all(math.isfinite(v) for v in out):
        raise ProbPruneError(f"{name} must be finite numbers, got {s!r}")
    return out
