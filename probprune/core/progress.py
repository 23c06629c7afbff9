"""Progress reporting for long commands: a tqdm bar on a terminal, periodic plain-text lines otherwise.

``tqdm(..., disable=None)`` prints nothing when stderr is not a terminal, so a job whose stderr goes to a log file
showed no progress at all. :func:`progress_bar` returns an object with tqdm's small API (``update``,
``set_postfix``, ``close``, context manager) that, when stderr is not a tty, writes one plain line
``<desc>: <n>/<total> (<pct>%) <elapsed>s [postfix]`` at most every ``interval`` seconds and a final line on close.
``PROBPRUNE_PROGRESS=plain|tty|off`` forces a style (tests use ``plain``).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any


class PlainProgress:
    """tqdm-compatible subset writing periodic plain lines to a stream (stderr by default)."""

    def __init__(self, total: int | None = None, desc: str = "", initial: int = 0, interval: float = 5.0,
                 file=None, unit: str = "it"):
        self.total, self.desc, self.n, self.interval, self.unit = total, desc, int(initial), float(interval), unit
        self.file = file if file is not None else sys.stderr
        self.t0 = time.monotonic()
        self._last = -float("inf")
        self._postfix = ""
        self._closed = False

    def _line(self) -> str:
        el = time.monotonic() - self.t0
        if self.total:
            s = f"{self.desc}: {self.n}/{self.total} {self.unit} ({100.0 * self.n / self.total:.0f}%) {el:.0f}s"
        else:
            s = f"{self.desc}: {self.n} {self.unit} {el:.0f}s"
        return s + (f" [{self._postfix}]" if self._postfix else "")

    def _emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            print(self._line(), file=self.file, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        self._emit(force=bool(self.total) and self.n >= self.total)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        d = dict(ordered_dict or {}, **kw)
        self._postfix = ", ".join(f"{k}={v}" for k, v in d.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if not (self.total and self.n >= self.total and self._last > -float("inf")):
                self._emit(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _Null(PlainProgress):
    def _emit(self, force: bool = False) -> None:
        pass


def progress_bar(total: int | None = None, desc: str = "", *, initial: int = 0, unit: str = "it",
                 enabled: bool = True, interval: float | None = None, leave: bool = False):
    """A progress reporter on stderr: tqdm when stderr is a terminal, :class:`PlainProgress` lines otherwise,
    nothing when ``enabled`` is false (e.g. ``--json``) or ``PROBPRUNE_PROGRESS=off``."""
    style = os.environ.get("PROBPRUNE_PROGRESS", "").lower()
    if not enabled or style == "off":
        return _Null(total, desc, initial)
    tty = sys.stderr.isatty() if style not in ("plain", "tty") else style == "tty"
    if tty:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, initial=initial, unit=unit, file=sys.stderr, leave=leave,
                    dynamic_ncols=True)
    if interval is None:
        interval = float(os.environ.get("PROBPRUNE_PROGRESS_INTERVAL", "10"))
    return PlainProgress(total, desc, initial, interval=interval, unit=unit)
