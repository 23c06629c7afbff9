"""Issue 13: progress as plain lines when stderr is not a terminal, tables not cut when stdout is redirected,
atomic writes that leave nothing behind on failure."""
import json
import re

import pytest

from _cli import run_cli
from probprune.cli.common import atomic_write, check_output_path
from probprune.core.errors import ProbPruneError
from probprune.core.progress import PlainProgress, progress_bar


def _run(argv, capsys):
    return run_cli(capsys, argv)


def test_plain_progress_lines(capsys):
    p = PlainProgress(total=4, desc="work", interval=0.0, unit="step")
    for _ in range(4):
        p.update(1)
    p.set_postfix(acc="0.9")
    p.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("work: 1/4 step (25%)") and lines[-1].startswith("work: 4/4 step (100%)")
    assert len(lines) == 4  # no duplicate final line


def test_progress_bar_styles(monkeypatch, capsys):
    monkeypatch.setenv("PROBPRUNE_PROGRESS", "plain")
    with progress_bar(2, "x", interval=0) as b:
        b.update(2)
    assert "x: 2/2" in capsys.readouterr().err
    with progress_bar(2, "y", enabled=False) as b:
        b.update(2)
    monkeypatch.setenv("PROBPRUNE_PROGRESS", "off")
    with progress_bar(2, "z") as b:
        b.update(2)
    assert capsys.readouterr().err == ""


def test_train_and_lth_show_plain_progress_when_not_a_tty(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PROBPRUNE_PROGRESS_INTERVAL", "0")
    out = tmp_path / "sub" / "m.pt"
    code, stdout, err = _run(["train", "--out", str(out), "--arch", "mlp:8", "--dataset", "digits", "--epochs", "2"],
                             capsys)
    assert code == 0 and out.is_file() and "saved mlp:8" in stdout
    assert re.search(r"train mlp:8: 1/2 epoch \(50%\)", err) and re.search(r"train mlp:8: 2/2 epoch", err)
    code, stdout, err = _run(["lth", "--dataset", "digits", "--arch", "mlp:8", "--levels", "1", "--epochs", "1"],
                             capsys)
    assert code == 0 and "IMP levels: 2/2 level (100%)" in err
    # --json: no progress
    code, stdout, err = _run(["train", "--out", str(out), "--arch", "mlp:8", "--dataset", "digits", "--epochs", "1",
                              "--json"], capsys)
    assert code == 0 and err == "" and json.loads(stdout)["schema"] == "probprune.train/1"


def test_tables_are_not_cut_when_redirected(capsys):
    code, out, _ = _run(["bound", "--fraction", "0.05", "--widths", "20,30,5"], capsys)
    assert code == 0
    assert any(len(line) > 100 for line in out.splitlines())
    assert any("sup_(||x||<=1) ||F(x) - F_pruned(x)|| <= eps   (Lip = 1)" in line for line in out.splitlines())


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "new" / "f.bin"

    def bad(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, bad)
    assert not target.exists() and [p.name for p in (tmp_path / "new").iterdir()] == []
    atomic_write(target, lambda tmp: open(tmp, "w").write("ok"))
    assert target.read_text() == "ok"


def test_check_output_path(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert check_output_path(tmp_path / "a" / "b" / "c.pt", "--out") == tmp_path / "a" / "b" / "c.pt"
    assert not (tmp_path / "a").exists()  # nothing created by the check
    with pytest.raises(ProbPruneError, match="is a folder"):
        check_output_path(tmp_path, "--out")
    with pytest.raises(ProbPruneError, match="not a folder"):
        check_output_path(f / "c.pt", "--out")
    with pytest.raises(ProbPruneError, match="is a file"):
        check_output_path(f, "--save-masks", kind="dir")
