"""Run a Monte Carlo sweep: plan chunks, execute them on a local process pool or a Dask cluster, write one CSV per
finished chunk atomically, resume after an interruption (THEORY §6 protocol; ANCHORS.md: hashed run folders,
resume).

Layout of a run folder ``<out_root>/<config hash>/``::

    config.json            canonical config (+ its hash); written before any work
    chunks/s<seed>_g<group>_b<block>.csv   one finished chunk each (written to a temp file, then os.replace)
    trials.csv             all chunks concatenated in plan order, written when every chunk is done

Ctrl-C (SIGINT): local workers ignore SIGINT (they are started with it ignored and their initializer ignores it
again); the parent cancels pending chunks and terminates the workers at once, so the command exits within about a
second keeping every finished chunk.

Resume: a chunk whose CSV exists is skipped; a chunk that was running when the process died left at most a
``.tmp-*`` file, which is deleted and redone. So rows are never duplicated or lost. Every row depends only on
(config, seed, trial index) (:mod:`probprune.mc.trials`), so the same config gives identical rows on any scheduler.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from probprune.core.errors import ProbPruneError
from probprune.mc.config import MCConfig
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


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_chunk(chunks: Path, unit: Unit, df: pd.DataFrame) -> None:
    _atomic_write_text(chunks / f"{unit.name}.csv", df.to_csv(index=False, float_format="%.17g"))


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

    def as_dict(self) -> dict:
        return {"run_dir": str(self.run_dir), "chunks": self.n_units, "chunks_done_before": self.n_done_before,
                "chunks_ran": self.n_ran, "complete": self.complete, "seconds": round(self.seconds, 3)}


def prepare(cfg: MCConfig, out_root: str | Path = DEFAULT_ROOT) -> tuple[Path, list[Unit], list[Unit]]:
    """Validate everything (bounds computed once), create the run folder, write config.json, clean temp files;
    returns (run_dir, all units, units still to run)."""
    check_bounds(cfg)
    run_dir = run_dir_for(cfg, out_root)
    chunks = run_dir / "chunks"
    chunks.mkdir(parents=True, exist_ok=True)
    cfg_path = run_dir / "config.json"
    payload = {"hash": cfg.hash, "config": cfg.to_dict()}
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old.get("hash") != cfg.hash:
            raise ProbPruneError(f"{run_dir} holds a different config (hash {old.get('hash')})")
    else:
        _atomic_write_text(cfg_path, json.dumps(payload, indent=2, sort_keys=True))
    for tmp in chunks.glob(".tmp-*"):
        tmp.unlink(missing_ok=True)
    units = plan(cfg)
    todo = [u for u in units if not (chunks / f"{u.name}.csv").exists()]
    return run_dir, units, todo


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
    (for tests and partial runs). Finished chunks are on disk the moment they finish."""
    t_start = time.perf_counter()
    run_dir, units, todo = prepare(cfg, out_root)
    chunks = run_dir / "chunks"
    n_before = len(units) - len(todo)
    if max_chunks is not None:
        todo = todo[: max(0, int(max_chunks))]
    bar = None
    if progress:
        from probprune.core.progress import progress_bar

        total = sum(u.n_networks for u in units)
        done = total - sum(u.n_networks for u in units if not (chunks / f"{u.name}.csv").exists())
        bar = progress_bar(total, f"mc {cfg.hash[:8]}", initial=done, unit="net")

    def finished(unit: Unit, df: pd.DataFrame):
        _write_chunk(chunks, unit, df)
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
    complete = all((chunks / f"{u.name}.csv").exists() for u in units)
    if complete:
        merge(run_dir, units)
    return RunResult(run_dir, len(units), n_before, n_ran, complete, time.perf_counter() - t_start)


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
            n += 1
    except BrokenProcessPool:
        _terminate_pool(ex)
        raise ProbPruneError(
            f"a worker process died; {n} chunk(s) finished in this session are saved in {run_dir}; "
            "run the same command again to resume") from None
    except BaseException:
        _terminate_pool(ex)
        raise
    ex.shutdown(wait=True)
    return n


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
def read_chunks(run_dir: str | Path, units: Iterable[Unit] | None = None) -> pd.DataFrame:
    """All finished chunks of a run as one DataFrame (plan order when ``units`` is given, else file-name order)."""
    run_dir = Path(run_dir)
    chunks = run_dir / "chunks"
    if not chunks.is_dir():
        raise FileNotFoundError(f"not a Monte Carlo run folder (no chunks/): {run_dir}")
    files = [chunks / f"{u.name}.csv" for u in units] if units is not None else sorted(chunks.glob("s*_g*_b*.csv"))
    frames = [pd.read_csv(f) for f in files if f.exists()]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)


def merge(run_dir: Path, units: list[Unit]) -> Path:
    df = read_chunks(run_dir, units)
    out = run_dir / "trials.csv"
    _atomic_write_text(out, df.to_csv(index=False, float_format="%.17g"))
    return out


def load_run(run_dir: str | Path) -> tuple[MCConfig, pd.DataFrame, bool]:
    """(config, rows, complete) of a run folder."""
    from probprune.mc.config import from_dict

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"not a Monte Carlo run folder (no config.json): {run_dir}")
    try:
        cfg = from_dict(json.loads(cfg_path.read_text())["config"])
    except (KeyError, json.JSONDecodeError) as e:
        raise ProbPruneError(f"{cfg_path} is corrupt: {e}") from None
    units = plan(cfg)
    df = read_chunks(run_dir, units)
    complete = all((run_dir / "chunks" / f"{u.name}.csv").exists() for u in units)
    return cfg, df, complete
