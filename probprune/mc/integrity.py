"""Integrity of a Monte Carlo run folder: a manifest of every finished chunk (row count + sha256 of the file's bytes),
verification by ``probprune mc report`` and by resume (issue 18 item 3).

``<run_dir>/manifest.json`` (schema ``probprune.mc_manifest/1``)::

    {"schema": ..., "config_hash": ..., "chunks": {"s0_g0000_b000000": {"rows": 96, "sha256": "...", "bytes": ...}},
     "table": {"rows": ..., "sha256": ..., "bytes": ...}}       # trials.csv, once the run is complete

The runner writes a chunk file atomically (temp file + ``os.replace``) and then rewrites the manifest atomically with
the chunk's record, both with Ctrl-C deferred, so a record always describes a complete file. Verification of a chunk
of the plan gives one status:

* ``ok``         recorded; the file's sha256 and the recorded row count match; the file parses with the expected
                 columns and the expected number of rows (units x methods x fractions x deltas);
* ``unsealed``   a run written before checksums existed (no manifest, config.json without ``integrity``): the file
                 parses with the expected columns and row count, but there is no checksum to compare;
* ``not_run``    no file and no record (a run not finished yet: the run is incomplete, nothing is wrong);
* ``missing``    recorded, but the file is gone;
* ``damaged``    checksum mismatch, unparsable, wrong columns or wrong row count;
* ``extra``      a chunk file the manifest does not record (a run that has a manifest), or a chunk file that is not
                 in the plan of this config at all.

``report`` refuses (one line listing them) when any chunk is missing, damaged or extra, or when the manifest of a run
that had one is gone or unreadable; resume recomputes exactly those chunks (same seeds, so the same rows and bytes)
and adds checksums to the chunks of an old run that verify by row count. A run is complete only when every chunk of
the plan is ``ok`` (or ``unsealed``): then every row is there.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from probprune.core.errors import ProbPruneError

SCHEMA = "probprune.mc_manifest/1"
MANIFEST = "manifest.json"
TABLE = "trials.csv"
CHUNK_RE = re.compile(r"^s\d+_g\d{4,}_b\d{6,}\.csv$")
BAD = ("missing", "damaged", "extra")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temp file next to ``path``, fsync, then ``os.replace`` (readers never see half a file)."""
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def sigint_deferred():
    """Hold a Ctrl-C (SIGINT) that arrives inside the block and deliver it at its end, so that a chunk file and its
    manifest record are written together (a no-op outside the main thread, where signals are not delivered)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    old = signal.signal(signal.SIGINT, lambda s, f: got.append(s))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if got:
            if callable(old):
                old(signal.SIGINT, None)
            elif old == signal.SIG_DFL:
                raise KeyboardInterrupt


@dataclass(frozen=True)
class Record:
    """What the manifest says about one file: row count, sha256 of its bytes, size in bytes."""

    rows: int
    sha256: str
    bytes: int

    @staticmethod
    def of(data: bytes, rows: int) -> "Record":
        return Record(int(rows), sha256_hex(data), len(data))

    def as_dict(self) -> dict:
        return {"rows": self.rows, "sha256": self.sha256, "bytes": self.bytes}


class ManifestDamaged(ProbPruneError):
    """manifest.json exists but cannot be read (not JSON, wrong schema, another config's hash)."""


@dataclass
class Manifest:
    """The run's manifest (mutable; only the process that runs the sweep writes it)."""

    config_hash: str
    chunks: dict = field(default_factory=dict)  # name -> Record
    table: Record | None = None

    @staticmethod
    def path(run_dir: Path) -> Path:
        return Path(run_dir) / MANIFEST

    @classmethod
    def load(cls, run_dir: Path, config_hash: str) -> "Manifest | None":
        """The manifest of ``run_dir``, or None when there is none; :class:`ManifestDamaged` when unreadable."""
        p = cls.path(run_dir)
        if not p.exists():
            return None
        try:
            d = json.loads(p.read_bytes())
            if not isinstance(d, dict) or d.get("schema") != SCHEMA:
                raise ValueError(f"schema is not {SCHEMA}")
            if d.get("config_hash") != config_hash:
                raise ValueError(f"it is for config {d.get('config_hash')!r}")
            chunks = {str(k): Record(int(v["rows"]), str(v["sha256"]), int(v["bytes"])) for k, v in d["chunks"].items()}
            t = d.get("table")
            table = None if t is None else Record(int(t["rows"]), str(t["sha256"]), int(t["bytes"]))
        except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
            raise ManifestDamaged(f"{p} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
                from None
        return cls(config_hash, chunks, table)

    def save(self, run_dir: Path) -> None:
        d = {"schema": SCHEMA, "config_hash": self.config_hash,
             "chunks": {k: self.chunks[k].as_dict() for k in sorted(self.chunks)},
             "table": None if self.table is None else self.table.as_dict()}
        atomic_write_bytes(self.path(run_dir), json.dumps(d, indent=0, sort_keys=True).encode())


@dataclass(frozen=True)
class ChunkCheck:
    name: str
    status: str  # ok | unsealed | not_run | missing | damaged | extra
    reason: str = ""
    record: Record | None = None


def check_chunk_bytes(data: bytes, expected_rows: int, columns: Iterable[str], record: Record | None,
                      parse: bool = True):
    """(status, reason, DataFrame or None) of one chunk file's bytes against its record (None: no checksum known).
    ``parse=False`` skips parsing when the checksum matches (the recorded bytes were written from a frame of the
    recorded row count)."""
    import pandas as pd

    if record is not None:
        if sha256_hex(data) != record.sha256:
            return "damaged", "checksum mismatch", None
        if record.rows != expected_rows:
            return "damaged", f"manifest says {record.rows} rows, the plan {expected_rows}", None
        if not parse:
            return "ok", "", None
    try:
        df = pd.read_csv(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - any parser failure means the bytes are not a chunk
        return "damaged", f"unparsable: {type(e).__name__}", None
    if list(df.columns) != list(columns):
        return "damaged", "wrong columns", None
    if len(df) != expected_rows:
        return "damaged", f"{len(df)} rows, expected {expected_rows}", None
    return ("ok" if record is not None else "unsealed"), "", df


@dataclass
class Verification:
    """Result of verifying a run folder against its plan and manifest."""

    run_dir: Path
    sealed: bool  # the run has (or must have) a manifest with checksums
    manifest_problem: str  # "" or why the manifest cannot be used
    checks: list  # ChunkCheck per unit of the plan, in plan order
    extras: list  # ChunkCheck(status="extra") for chunk files outside the plan / not recorded
    table_problem: str = ""
    frames: dict = field(default_factory=dict)  # name -> DataFrame of readable chunks (when read)
    expected_rows: int = 0

    @property
    def problems(self) -> list:
        return [c for c in self.checks if c.status in BAD] + list(self.extras)

    @property
    def complete(self) -> bool:
        return not self.manifest_problem and all(c.status in ("ok", "unsealed") for c in self.checks)

    @property
    def n_verified(self) -> int:
        return sum(c.status == "ok" for c in self.checks)

    @property
    def n_unsealed(self) -> int:
        return sum(c.status == "unsealed" for c in self.checks)

    def refusal(self) -> str | None:
        """One line naming every missing / damaged / extra file, or None when the run may be reported."""
        parts = []
        if self.manifest_problem:
            parts.append(self.manifest_problem)
        table_kind, _, table_reason = self.table_problem.partition(": ")  # "missing" | "damaged: <reason>" | ""
        for kind in BAD:
            items = [c for c in self.problems if c.status == kind]
            if table_kind == kind:
                items = items + [ChunkCheck(TABLE, kind, table_reason)]
            if items:
                shown = [f"{c.name}" + (f" ({c.reason})" if c.reason else "") for c in items[:8]]
                more = f" and {len(items) - 8} more" if len(items) > 8 else ""
                parts.append(f"{len(items)} {kind}: " + ", ".join(shown) + more)
        if not parts:
            return None
        return (f"run {self.run_dir} failed verification: " + "; ".join(parts)
                + "; run `probprune mc run` with the same config to recompute them")

    def summary(self) -> dict:
        counts = {}
        for c in self.checks:
            counts[c.status] = counts.get(c.status, 0) + 1
        return {"checksums": "verified" if self.sealed else "absent (run written before chunk checksums; "
                "`probprune mc run` on the same config adds them)",
                "chunks": len(self.checks), "chunk_status": counts, "extra": [c.name for c in self.extras],
                "rows_expected": self.expected_rows}


def verify(run_dir: Path, config_hash: str, units, expected_rows, columns, sealed: bool, read: bool = True,
           check_table: bool = True) -> tuple[Verification, Manifest | None]:
    """Verify every chunk of ``units`` (objects with ``.name``) in ``run_dir/chunks`` against the manifest.
    ``expected_rows(unit)`` is the plan's row count of a chunk. ``sealed``: the run was created with a manifest
    (config.json has ``integrity``): a missing manifest is then a problem, not an old run. ``read``: keep the parsed
    frames of readable chunks. Returns (verification, manifest or None)."""
    run_dir = Path(run_dir)
    chunks_dir = run_dir / "chunks"
    problem = ""
    try:
        man = Manifest.load(run_dir, config_hash)
    except ManifestDamaged as e:
        man, problem = None, str(e)
    if man is None and sealed and not problem:
        problem = f"{Manifest.path(run_dir)} is missing"
    if man is not None:
        sealed = True
    v = Verification(run_dir, sealed, problem, [], [])
    recs = man.chunks if man is not None else {}
    names = set()
    total = 0
    for u in units:
        names.add(u.name)
        exp = int(expected_rows(u))
        total += exp
        f = chunks_dir / f"{u.name}.csv"
        rec = recs.get(u.name)
        if not f.exists():
            v.checks.append(ChunkCheck(u.name, "missing" if rec is not None else "not_run", "", rec))
            continue
        if man is None and sealed:  # manifest gone or unreadable: nothing can be verified
            v.checks.append(ChunkCheck(u.name, "extra", "no manifest record"))
            continue
        if man is not None and rec is None:
            v.checks.append(ChunkCheck(u.name, "extra", "not in the manifest"))
            continue
        status, reason, df = check_chunk_bytes(f.read_bytes(), exp, columns, rec, parse=read)
        v.checks.append(ChunkCheck(u.name, status, reason, rec))
        if df is not None and read:
            v.frames[u.name] = df
    v.expected_rows = total
    if chunks_dir.is_dir():
        for f in sorted(chunks_dir.iterdir()):
            if CHUNK_RE.match(f.name) and f.name[:-4] not in names:
                v.extras.append(ChunkCheck(f.name[:-4], "extra", "not in the plan of this config"))
    if check_table and man is not None:
        t = run_dir / TABLE
        if t.exists():
            if man.table is None:
                v.table_problem = "damaged: not in the manifest"
            elif sha256_hex(t.read_bytes()) != man.table.sha256:
                v.table_problem = "damaged: checksum mismatch"
        elif man.table is not None:
            v.table_problem = "missing"
    return v, man
