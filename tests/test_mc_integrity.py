"""Monte Carlo run integrity (issue 18 item 3; probprune.mc.integrity): every chunk has its row count and sha256 in
the run's manifest; `mc report` refuses a run with a missing, damaged or extra chunk (exit 2, one line naming it);
resume recomputes exactly those chunks and the final table is byte-identical to an undamaged run's. Also: runs
written before checksums, a lost manifest, a damaged trials.csv, Ctrl-C between a chunk and its record, and the
memory estimate that refuses a sweep before anything is created."""
import json
import os
import shutil
import signal

import pytest

from probprune.cli import main
from probprune.core.errors import ProbPruneError
from probprune.mc import MCConfig, load_run, run
from probprune.mc.integrity import MANIFEST, Manifest, sigint_deferred
from probprune.mc.runner import plan

CFG = MCConfig(widths=(6,), depths=(2,), activations=("identity",), methods=("magnitude", "random"),
               fractions=(0.2, 0.5), deltas=(0.1,), n_trials=12, batch_size=4)
VICTIM = "s0_g0000_b000001"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One complete run (3 chunks of 16 rows) and the bytes of its final table."""
    root = tmp_path_factory.mktemp("mc_ok")
    r = run(CFG, out_root=root, workers=1, progress=False)
    assert r.complete
    return r.run_dir, (r.run_dir / "trials.csv").read_bytes()


def _copy(finished, tmp_path):
    src, table = finished
    dst = tmp_path / "runs" / CFG.hash
    shutil.copytree(src, dst)
    return dst, table


def _cli(argv, capsys):
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _report_refuses(run_dir, capsys, *expect):
    code, out, err = _cli(["mc", "report", str(run_dir)], capsys)
    assert code == 2, (code, out, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    for e in expect:
        assert e in err, err
    assert "complete" not in out
    return err


def _resume(run_dir, table, capsys, n_ran=1):
    code, out, err = _cli(["mc", "run", "--out", str(run_dir.parent), "--workers", "1", "--no-progress", "--json",
                           _cfg_file(run_dir)], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["run"]["complete"] and d["complete"] and d["run"]["chunks_ran"] == n_ran, d["run"]
    assert d["n_rows"] == d["n_rows_expected"] == 48
    assert (run_dir / "trials.csv").read_bytes() == table  # byte-identical to the undamaged run
    code, out, err = _cli(["mc", "report", str(run_dir), "--json"], capsys)
    assert code == 0 and json.loads(out)["complete"] and json.loads(out)["integrity"]["checksums"] == "verified"
    return d


def _cfg_file(run_dir):
    import yaml

    p = run_dir.parent.parent / "cfg.yaml"
    p.write_text(yaml.safe_dump(CFG.to_dict()))
    return str(p)


def _drop_a_row(p):
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join(lines[:5] + lines[6:]))


def _truncate(p):
    b = p.read_bytes()
    p.write_bytes(b[: len(b) // 2])


def _garbage(p):
    p.write_bytes(os.urandom(len(p.read_bytes())))


def _one_digit(p):  # parses, right row count, right columns: only the checksum sees it
    b = p.read_bytes()
    i = b.index(b"0.", b.index(b"\n") + 1) + 2
    p.write_bytes(b[:i] + (b"1" if b[i:i + 1] != b"1" else b"2") + b[i + 1:])


@pytest.mark.parametrize("damage,kind,why", [
    (_garbage, "damaged", ""),
    (lambda p: p.unlink(), "missing", ""),
    (_truncate, "damaged", "checksum mismatch"),
    (_drop_a_row, "damaged", "checksum mismatch"),
    (_one_digit, "damaged", "checksum mismatch"),
], ids=["garbage", "deleted", "truncated", "row_removed", "one_digit"])
def test_damaged_chunk_refused_by_report_and_repaired_by_resume(finished, tmp_path, capsys, damage, kind, why):
    run_dir, table = _copy(finished, tmp_path)
    damage(run_dir / "chunks" / f"{VICTIM}.csv")
    err = _report_refuses(run_dir, capsys, f"1 {kind}: {VICTIM}", why)
    assert "s0_g0000_b000000" not in err and "s0_g0000_b000002" not in err
    with pytest.raises(ProbPruneError, match=VICTIM):  # the library refuses too
        load_run(run_dir)
    d = _resume(run_dir, table, capsys)
    assert d["run"]["repaired"] == [f"{VICTIM} ({kind}" + (f": {why})" if why else (": checksum mismatch)"
                                                                                     if kind == "damaged" else ")"))]


def test_extra_chunk_and_damaged_table(finished, tmp_path, capsys):
    run_dir, table = _copy(finished, tmp_path)
    shutil.copy(run_dir / "chunks" / f"{VICTIM}.csv", run_dir / "chunks" / "s7_g0000_b000000.csv")
    (run_dir / "trials.csv").write_bytes(table[:-200])
    _report_refuses(run_dir, capsys, "1 extra: s7_g0000_b000000 (not in the plan of this config)",
                    "1 damaged: trials.csv (checksum mismatch)")
    d = _resume(run_dir, table, capsys, n_ran=0)
    assert not (run_dir / "chunks" / "s7_g0000_b000000.csv").exists()
    assert any("s7_g0000_b000000" in r for r in d["run"]["repaired"])
    (run_dir / "trials.csv").unlink()
    _report_refuses(run_dir, capsys, "1 missing: trials.csv")
    _resume(run_dir, table, capsys, n_ran=0)


def test_unrecorded_chunk_is_extra_and_recomputed(finished, tmp_path, capsys):
    """A chunk file without its manifest record (e.g. copied in from elsewhere) is not trusted."""
    run_dir, table = _copy(finished, tmp_path)
    man = Manifest.load(run_dir, CFG.hash)
    del man.chunks[VICTIM]
    man.save(run_dir)
    _report_refuses(run_dir, capsys, f"1 extra: {VICTIM} (not in the manifest)")
    _resume(run_dir, table, capsys)


def test_lost_or_damaged_manifest_refused_then_everything_recomputed(finished, tmp_path, capsys):
    run_dir, table = _copy(finished, tmp_path)
    (run_dir / MANIFEST).unlink()
    _report_refuses(run_dir, capsys, "manifest.json is missing")
    _resume(run_dir, table, capsys, n_ran=3)
    (run_dir / MANIFEST).write_text("{not json")
    _report_refuses(run_dir, capsys, "manifest.json is damaged")
    _resume(run_dir, table, capsys, n_ran=3)


def test_run_written_before_checksums(finished, tmp_path, capsys):
    """An old run (no manifest, config.json without 'integrity'): report verifies row counts and says the checksums
    are absent; a chunk with a row removed is refused; resume recomputes it and adds the checksums."""
    run_dir, table = _copy(finished, tmp_path)
    (run_dir / MANIFEST).unlink()
    c = json.loads((run_dir / "config.json").read_text())
    del c["integrity"]
    (run_dir / "config.json").write_text(json.dumps(c))
    code, out, err = _cli(["mc", "report", str(run_dir), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert d["complete"] and d["integrity"]["checksums"].startswith("absent") and d["n_rows"] == 48
    code, out, _ = _cli(["mc", "report", str(run_dir)], capsys)
    assert code == 0 and "checksums absent" in out
    _drop_a_row(run_dir / "chunks" / f"{VICTIM}.csv")
    _report_refuses(run_dir, capsys, f"1 damaged: {VICTIM} (15 rows, expected 16)")
    d = _resume(run_dir, table, capsys)
    assert any("checksums added" in n for n in d["run"]["notes"])
    assert set(Manifest.load(run_dir, CFG.hash).chunks) == {u.name for u in plan(CFG)}


def test_incomplete_run_is_reported_as_incomplete_not_refused(tmp_path, capsys):
    r = run(CFG, out_root=tmp_path, workers=1, progress=False, max_chunks=1)
    assert not r.complete
    code, out, err = _cli(["mc", "report", str(r.run_dir), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert not d["complete"] and d["n_rows"] == 16 and d["n_rows_expected"] == 48
    assert d["integrity"]["chunk_status"] == {"ok": 1, "not_run": 2}


def test_sigint_inside_a_chunk_write_is_delivered_after_it(tmp_path):
    """Ctrl-C between a chunk file and its manifest record would leave an unrecorded chunk: it is held until both
    are written, then raised."""
    written = []
    with pytest.raises(KeyboardInterrupt):
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            written.append("chunk")
            written.append("record")
    assert written == ["chunk", "record"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ------------------------------------------------------------------------------------------ memory estimate
def test_memory_estimate_refuses_before_anything_is_created(tmp_path, monkeypatch):
    from probprune.mc.memory import check_run_memory, chunk_memory

    big = MCConfig(widths=(200_000,), depths=(2,), n_trials=50, batch_size=50)
    with pytest.raises(ProbPruneError, match=r"needs about .* of memory"):
        run(big, out_root=tmp_path, workers=1, progress=False)
    assert not list(tmp_path.iterdir())
    # the limit scales with the concurrent chunks: one chunk fits, two do not
    est = chunk_memory(CFG).total
    monkeypatch.setenv("PROBPRUNE_MEMORY_LIMIT", str(int(1.5 * est)))
    check_run_memory(CFG, 1)
    with pytest.raises(ProbPruneError, match="2 chunks at once"):
        run(CFG, out_root=tmp_path, workers=2, progress=False)
    assert not list(tmp_path.iterdir())
    # the estimate grows with the chunk: batch_size and width
    assert chunk_memory(CFG.replace(batch_size=8)).weights > chunk_memory(CFG).weights
    assert chunk_memory(CFG.replace(widths=[12])).total > est


@pytest.mark.slow
def test_ctrl_c_keeps_chunks_that_workers_already_finished(tmp_path, monkeypatch, finished):
    """Ctrl-C while the parent writes the first chunk and the workers have finished the others: those are written
    (with their records) before the command exits; resume runs nothing and gives the same table."""
    import concurrent.futures as cf

    real = cf.as_completed

    def first_then_interrupt(fs):
        fs = list(fs)
        yield next(real(fs))
        cf.wait(fs)  # every other chunk is finished by the workers but not yet written by the parent
        raise KeyboardInterrupt

    monkeypatch.setattr(cf, "as_completed", first_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(CFG, out_root=tmp_path, workers=2, progress=False)
    monkeypatch.setattr(cf, "as_completed", real)
    run_dir = tmp_path / CFG.hash
    assert set(Manifest.load(run_dir, CFG.hash).chunks) == {u.name for u in plan(CFG)}
    r = run(CFG, out_root=tmp_path, workers=1, progress=False)
    assert r.complete and r.n_ran == 0 and r.n_done_before == 3
    assert (run_dir / "trials.csv").read_bytes() == finished[1]
