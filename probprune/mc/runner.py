"""Run a Monte Carlo sweep: plan chunks, execute them on a local process pool or a Dask cluster, write one CSV per
finished chunk atomically, resume after an interruption (THEORY §6 protocol; ANCHORS.md: hashed run folders,
resume).

Layout of a run folder ``<out_root>/<config hash>/``::

    config.json            canonical config (+ its hash, + ``integrity``: the manifest schema); written before any work
    manifest.json          row count and sha256 of every finished chunk (and of trials.csv), :mod:`probprune.mc.integrity`
    chunks/s<seed>_g<group>_b<block>.csv   one finished chunk each (written to a temp file, then os.replace)
    trials.csv             all chunks concatenated in plan order, written when every chunk is done

Ctrl-C (SIGINT): local workers ignore SIGINT (they are started with it ignored and their initializer ignores it
again); the parent cancels pending chunks and terminates the workers at once, so the command exits within about a
second keeping every finished chunk.

Resume: every chunk is verified against the manifest (:func:`probprune.mc.integrity.verify`); a verified chunk is
skipped; a missing, damaged or unrecorded chunk file is deleted and recomputed (same seeds, so the same bytes); a chunk
that was running when the process died left at most a ``.tmp-*`` file, which is deleted and redone. A chunk file and
its manifest record are written together with Ctrl-C deferred. So rows are never duplicated, lost or silently
damaged; "complete" means every chunk of the plan verified. Every row depends only on
(config, seed, trial index) (:mod:`probprune.mc.trials`), so the same config gives identical rows on any scheduler.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from probprune.core.errors import ProbPruneError
from probprune.mc.config import MCConfig
from probprune.mc.integrity import (TABLE, Manifest, Record, Verification, atomic_write_bytes, check_chunk_bytes,
                                    sigint_deferred, verify)
from probprune.mc.integrity import SCHEMA as INTEGRITY
from probprune.mc.memory import check_run_memory
from probprune.mc.trials import COLUMNS, check_bounds, evaluate_unit, groups, n_blocks, unit_trials

DEFAULT_ROOT = Path("results/mc")


@dataclass(frozen=True)
class Unit:
    seed: int
    group: int
    block: int
    n_networks: int

    @property
    def name(self) -> str:
        return f"s{self.seed}_g{self.group:04d}_b{self.block:06d}"


def plan(cfg: MCConfig) -> list[Unit]:
    """All chunks of the sweep in a fixed order (seed, group, block)."""
    out = []
    for s in cfg.seeds:
        for g in groups(cfg):
            for b in range(n_blocks(cfg)):
                out.append(Unit(s, g.index, b, len(unit_trials(cfg, b))))
    return out


def run_dir_for(cfg: MCConfig, out_root: str | Path = DEFAULT_ROOT) -> Path:
    return Path(out_root) / cfg.hash


def chunk_bytes(df: pd.DataFrame) -> bytes:
    """The bytes of a chunk file (and of trials.csv): CSV, no index, floats with 17 significant digits."""
    return df.to_csv(index=False, float_format="%.17g").encode()


def expected_rows(cfg: MCConfig, unit: Unit) -> int:
    """Rows of a complete chunk: networks x methods x fractions x deltas."""
    return unit.n_networks * len(cfg.methods) * len(cfg.fractions) * len(cfg.deltas)


def _run_unit(args) -> pd.DataFrame:
    """Top-level (picklable) worker entry point."""
    cfg, unit = args
    return evaluate_unit(cfg, unit.seed, unit.group, unit.block)


@dataclass
class RunResult:
    run_dir: Path
    n_units: int
    n_done_before: int
    n_ran: int
    complete: bool
    seconds: float
    repaired: tuple = ()  # "name (why)" of chunks found missing / damaged / extra and recomputed or removed
    notes: tuple = ()

    def as_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "chunks": self.n_units, "chunks_done_before": self.n_done_before,
                "chunks_ran": self.n_ran, "complete": self.complete, "seconds": round(self.seconds, 3),
                "repaired": list(self.repaired), "notes": list(self.notes)}


@dataclass(frozen=True)
class Prepared:
    run_dir: Path
    units: list
    todo: list
    manifest: Manifest
    repaired: tuple
    notes: tuple


def _verify(cfg: MCConfig, run_dir: Path, units: list[Unit], read: bool):
    sealed = False
    cfg_path = run_dir / "config.json"
    if cfg_path.exists():
        try:
            sealed = json.loads(cfg_path.read_text()).get("integrity") == INTEGRITY
        except (ValueError, AttributeError):
            sealed = False
    return verify(run_dir, cfg.hash, units, lambda u: expected_rows(cfg, u), COLUMNS, sealed, read=read)


def prepare(cfg: MCConfig, out_root: str | Path = DEFAULT_ROOT, workers: int = 1) -> Prepared:
    """Validate everything (memory estimate, bounds computed once), create the run folder, write config.json and the
    manifest, clean temp files, verify the chunks already there: the verified ones are done, missing / damaged /
    unrecorded ones are deleted and go back on the to-do list, chunk files outside the plan are deleted; chunks of a
    run written before checksums that verify by row count get their checksums now."""
    check_run_memory(cfg, workers)
    check_bounds(cfg)
    run_dir = run_dir_for(cfg, out_root)
    chunks = run_dir / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    payload = {"hash": cfg.hash, "config": cfg.to_dict(), "integrity": INTEGRITY}
    fresh = not cfg_path.exists()
    if not fresh:
        try:
            old = json.loads(cfg_path.read_text())
        except ValueError as e:
            raise ProbPruneError(f"{cfg_path} is corrupt: {e}") from None
        if old.get("hash") != cfg.hash:
            raise ProbPruneError(f"{run_dir} holds a different config (hash {old.get('hash')})")
    for tmp in list(chunks.glob(".tmp-*")) + list(run_dir.glob(".tmp-*")):
        tmp.unlink(missing_ok=True)
    units = plan(cfg)
    v, man = _verify(cfg, run_dir, units, read=False)
    repaired, notes = [], []
    if v.manifest_problem:
        notes.append(v.manifest_problem + ": no chunk can be verified, every chunk is recomputed")
    if man is None:
        man = Manifest(cfg.hash)
    for u, c in zip(units, v.checks):
        if c.status == "ok":
            continue
        if c.status == "unsealed":  # an old run: verified by row count; seal it now
            man.chunks[c.name] = Record.of((chunks / f"{c.name}.csv").read_bytes(), expected_rows(cfg, u))
            continue
        if c.status in ("missing", "damaged", "extra"):
            repaired.append(f"{c.name} ({c.status}{': ' + c.reason if c.reason else ''})")
            (chunks / f"{c.name}.csv").unlink(missing_ok=True)
        man.chunks.pop(c.name, None)
    todo = [u for u, c in zip(units, v.checks) if c.status not in ("ok", "unsealed")]
    for c in v.extras:
        repaired.append(f"{c.name} (extra: {c.reason})")
        (chunks / f"{c.name}.csv").unlink(missing_ok=True)
        man.chunks.pop(c.name, None)
    n_sealed = v.n_unsealed
    if n_sealed:
        notes.append(f"{n_sealed} chunk(s) of a run written before chunk checksums verified by row count; "
                     "checksums added")
    if todo:
        man.table = None
        (run_dir / TABLE).unlink(missing_ok=True)  # a table is only there when every chunk is
    man.save(run_dir)
    if fresh or not v.sealed or n_sealed:
        atomic_write_bytes(cfg_path, json.dumps(payload, indent=2, sort_keys=True).encode())
    return Prepared(run_dir, units, todo, man, tuple(repaired), tuple(notes))


def run(
    cfg: MCConfig,
    out_root: str | Path = DEFAULT_ROOT,
    workers: int = 2,
    scheduler: str | None = None,
    progress: bool = True,
    max_chunks: int | None = None,
    on_chunk: Callable[[Unit], None] | None = None,
) -> RunResult:
    """Run (or resume) the sweep. ``workers`` local processes (<= 1: in this process) unless ``scheduler`` (a Dask
    scheduler address such as ``tcp://127.0.0.1:8786``) is given. ``max_chunks`` stops after that many chunks
    (for tests and partial runs). Finished chunks are on disk, with their manifest record, the moment they finish."""
    t_start = time.perf_counter()
    p = prepare(cfg, out_root, workers=1 if scheduler else max(1, int(workers)))
    run_dir, units, todo, man = p.run_dir, p.units, p.todo, p.manifest
    chunks = run_dir / "chunks"
    n_before = len(units) - len(todo)
    pending = {u.name for u in todo}
    if max_chunks is not None:
        todo = todo[: max(0, int(max_chunks))]
    bar = None
    if progress:
        from probprune.core.progress import progress_bar

        total = sum(u.n_networks for u in units)
        done = total - sum(u.n_networks for u in units if u.name in pending)
        bar = progress_bar(total, f"mc {cfg.hash[:8]}", initial=done, unit="net")

    def finished(unit: Unit, df: pd.DataFrame):
        data = chunk_bytes(df)
        with sigint_deferred():  # the chunk file and its record land together
            atomic_write_bytes(chunks / f"{unit.name}.csv", data)
            man.chunks[unit.name] = Record.of(data, len(df))
            man.save(run_dir)
        pending.discard(unit.name)
        if bar is not None:
            bar.update(unit.n_networks)
        if on_chunk is not None:
            on_chunk(unit)

    n_ran = 0
    try:
        if scheduler:
            n_ran = _run_dask(cfg, todo, scheduler, finished)
        elif workers <= 1 or len(todo) <= 1:
            for u in todo:
                finished(u, _run_unit((cfg, u)))
                n_ran += 1
        else:
            n_ran = _run_pool(cfg, todo, workers, finished, run_dir)
    finally:
        if bar is not None:
            bar.close()
    complete = not pending
    if complete:
        merge(run_dir, units, cfg, man)
    return RunResult(run_dir, len(units), n_before, n_ran, complete, time.perf_counter() - t_start, p.repaired,
                     p.notes)


def _ignore_sigint() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle (it terminates the workers)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _terminate_pool(ex) -> None:
    """Cancel pending chunks and stop the pool's worker processes now (terminate, then kill after 1 s)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        try:
            if p.is_alive():
                p.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    deadline = time.monotonic() + 1.0
    for p in procs:
        try:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(0.5)
        except (OSError, ValueError, AttributeError, AssertionError):
            pass


def _run_pool(cfg, todo, workers, finished, run_dir) -> int:
    import multiprocessing as mp
    import signal
    import threading
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    n = 0
    futs: dict = {}
    saved: set = set()
    ex = ProcessPoolExecutor(max_workers=int(workers), mp_context=mp.get_context("spawn"), initializer=_ignore_sigint)
    main_thread = threading.current_thread() is threading.main_thread()
    try:
        # start the workers with SIGINT ignored (inherited through spawn), so that Ctrl-C reaching the whole process
        # group never interrupts a worker halfway through its start-up; the parent handles it
        old = signal.signal(signal.SIGINT, signal.SIG_IGN) if main_thread else None
        try:
            futs = {ex.submit(_run_unit, (cfg, u)): u for u in todo}
        finally:
            if main_thread:
                signal.signal(signal.SIGINT, old)
        for f in as_completed(futs):
            finished(futs[f], f.result())
            saved.add(f)
            n += 1
    except BrokenProcessPool:
        _terminate_pool(ex)
        n += _salvage(futs, saved, finished)
        raise ProbPruneError(
            f"a worker process died; {n} chunk(s) finished in this session are saved in {run_dir}; "
            "run the same command again to resume") from None
    except BaseException:
        _terminate_pool(ex)
        _salvage(futs, saved, finished)
        raise
    ex.shutdown(wait=True)
    return n


def _salvage(futs: dict, saved: set, finished) -> int:
    """On the way out (Ctrl-C, a dead worker): write the chunks that workers already finished but the parent had not
    written yet, so an interruption loses only chunks that were still being computed."""
    k = 0
    for f, u in futs.items():
        if f in saved or not f.done() or f.cancelled():
            continue
        try:
            if f.exception(timeout=0) is not None:
                continue
            df = f.result(timeout=0)
        except Exception:  # noqa: BLE001 - a future the dying pool failed: nothing to keep
            continue
        finished(u, df)
        saved.add(f)
        k += 1
    return k


def _run_dask(cfg, todo, scheduler, finished) -> int:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:  # pragma: no cover
        raise ProbPruneError("--scheduler needs dask[distributed] installed") from None
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise ProbPruneError(f"cannot connect to the Dask scheduler at {scheduler}: {e}") from None
    n = 0
    try:
        futs = [client.submit(_run_unit, (cfg, u), key=f"probprune-mc-{cfg.hash[:12]}-{u.name}", pure=False)
                for u in todo]
        by_key = {f.key: u for f, u in zip(futs, todo)}
        for f in as_completed(futs):
            finished(by_key[f.key], f.result())
            n += 1
    except BaseException:
        try:
            client.cancel(futs)
        except Exception:  # pragma: no cover (best effort on the way out)
            pass
        raise
    finally:
        client.close()
    return n


# ------------------------------------------------------------------------------------------------ reading
def merge(run_dir: Path, units: list[Unit], cfg: MCConfig, man: Manifest) -> Path:
    """Write trials.csv from the chunks in plan order, each verified against its manifest record, and record the
    table's checksum."""
    frames = []
    for u in units:
        rec = man.chunks.get(u.name)
        f = run_dir / "chunks" / f"{u.name}.csv"
        data = f.read_bytes() if f.exists() else b""
        status, reason, df = check_chunk_bytes(data, expected_rows(cfg, u), COLUMNS, rec)
        if status != "ok" or rec is None:
            raise ProbPruneError(f"chunk {u.name} changed during the run ({reason or 'no record'}); run the same "
                                 "command again to recompute it")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    data = chunk_bytes(df)
    out = run_dir / TABLE
    with sigint_deferred():
        atomic_write_bytes(out, data)
        man.table = Record.of(data, len(df))
        man.save(run_dir)
    return out


def read_config(run_dir: str | Path) -> MCConfig:
    from probprune.mc.config import from_dict

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"not a Monte Carlo run folder (no config.json): {run_dir}")
    try:
        return from_dict(json.loads(cfg_path.read_text())["config"])
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProbPruneError):
            raise
        raise ProbPruneError(f"{cfg_path} is corrupt: {e}") from None


def verify_run(run_dir: str | Path) -> tuple[MCConfig, pd.DataFrame, Verification]:
    """(config, rows of the verified chunks in plan order, verification) of a run folder; raises ProbPruneError with
    one line listing every missing, damaged or extra chunk (:mod:`probprune.mc.integrity`)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if not (run_dir / "chunks").is_dir():
        raise ProbPruneError(f"not a Monte Carlo run folder (no chunks/): {run_dir}")
    units = plan(cfg)
    v, _ = _verify(cfg, run_dir, units, read=True)
    why = v.refusal()
    if why:
        raise ProbPruneError(why)
    frames = [v.frames[u.name] for u in units if u.name in v.frames]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
    return cfg, df, v


def load_run(run_dir: str | Path) -> tuple[MCConfig, pd.DataFrame, bool]:
    """(config, rows, complete) of a run folder, every chunk verified (:func:`verify_run`); ``complete`` when every
    chunk of the plan is there."""
    cfg, df, v = verify_run(run_dir)
    return cfg, df, v.complete
