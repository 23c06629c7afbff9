"""Issue 13: every command x bad inputs -> exit status 2, exactly one stderr line starting ``error:``, no traceback,
no file left behind; with ``--json`` also a JSON error object on stdout. In-process through
:func:`probprune.cli.main` (fast), a few through a subprocess (the console script as users run it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from probprune.cli import main
from _cli import run_cli

# placeholders replaced by the files of the ``files`` fixture
M64, M784, ZERO, NAN, LSTM, CORRUPT, SD, FILE, DIR, MISSING = (
    "{m64}", "{m784}", "{zero}", "{nan}", "{lstm}", "{corrupt}", "{sd}", "{file}", "{dir}", "{missing}")

CASES = [
    # --- root / usage errors
    ([], "missing command"),
    (["--jsn"], "No such option"),
    (["nonsense"], "No such command"),
    (["--json", "true"], "No such option"),
    # --- budget
    (["budget", "--eps", "abc"], "--eps"),
    (["budget", "--json", "true"], "unexpected extra argument"),
    (["budget", "--eps", "0", "--no-trained-demo"], "eps"),
    (["budget", "--eps", "nan", "--no-trained-demo"], "eps"),
    (["budget", "--delta", "1.5", "--no-trained-demo"], "delta"),
    (["budget", "--method", "foo"], "--method"),
    (["budget", "--mode", "bar"], "--mode"),
    (["budget", "--activation", "relu6"], "--activation"),
    (["budget", "--widths", "784,x", "--no-trained-demo"], "--widths"),
    (["budget", "--K", "-1", "--no-trained-demo"], "--K"),
    (["budget", "--model", MISSING], "not found"),
    (["budget", "--model", ZERO], "all zero"),
    (["budget", "--model", M64, "--method", "random_rescaled"], "random_rescaled"),
    (["budget", "--model", M64, "--mode", "equal_share"], "equal_share"),
    (["budget", "--model", SD], "--arch"),
    (["budget", "--model", CORRUPT], "cannot read model file"),
    (["budget", "--model", DIR], "directory"),
    (["budget", "--model", M64, "--input-shape", "0,1"], "--input-shape"),
    # --- bound
    (["bound"], "Missing option '--fraction'"),
    (["bound", "--fraction", "abc"], "--fraction"),
    (["bound", "--fraction", "1.5"], "fraction"),
    (["bound", "--fraction", "0.1", "--delta", "0"], "delta"),
    (["bound", "--fraction", "0.1", "--method", "nope"], "--method"),
    (["bound", "--fraction", "0.1", "--widths", "5"], "widths"),
    (["bound", "--fraction", "0.1", "--K", "nan"], "--K"),
    (["bound", "--fraction", "0.1", "--law", "cauchy"], "--law"),
    # --- certify
    (["certify", "--fraction", "0.1"], "Missing option '--model'"),
    (["certify", "--model", MISSING, "--fraction", "0.1"], "not found"),
    (["certify", "--model", M784, "--fraction", "0.1", "--dataset", "digits"], "expects (784,)"),
    (["certify", "--model", M64, "--fraction", "0.1", "--conv-norm", "foo"], "--conv-norm"),
    (["certify", "--model", M64, "--fraction", "2"], "fraction"),
    (["certify", "--model", M64, "--fraction", "0.1", "--method", "random", "--delta", "2"], "delta"),
    (["certify", "--model", NAN, "--fraction", "0.1"], "NaN"),
    (["certify", "--model", LSTM, "--fraction", "0.1"], ""),  # refused by the graph reader (message its own)
    (["lottery", "construct", "--model", LSTM, "--eps", "0.1"], "LSTM"),
    (["certify", "--model", M64, "--fraction", "0.1", "--dataset", "cifar10"], "--dataset"),
    # --- width
    (["width", "--eps", "1", "--fraction", "0.1", "--d-ref", "0"], "--d-ref"),
    (["width", "--eps", "1", "--fraction", "0.1", "--gamma", "nan"], "--gamma"),
    (["width", "--eps", "0", "--fraction", "0.1"], "eps"),
    (["width", "--eps", "1", "--fraction", "0.1", "--alpha", "0.5"], "--C"),
    (["width", "--eps", "1"], "Missing option '--fraction'"),
    # --- train (output paths are checked before any training)
    (["train", "--out", f"{FILE}/m.pt", "--dataset", "digits"], "not a folder"),
    (["train", "--out", DIR, "--dataset", "digits"], "is a folder"),
    (["train", "--out", "m.pt", "--epochs", "0", "--dataset", "digits"], "--epochs"),
    (["train", "--out", "m.pt", "--dataset", "cifar10"], "--dataset"),
    (["train", "--out", "m.pt", "--dataset", "digits", "--arch", "resnet"], "resnet"),
    (["train", "--dataset", "digits"], "Missing option '--out'"),
    # --- prune
    (["prune", "--method", "magnitude", "--dataset", "digits"], "--fraction"),
    (["prune", "--method", "magnitude", "--fraction", "1", "--dataset", "digits"], "--fraction"),
    (["prune", "--method", "obs", "--fraction", "0.5"], "--method"),
    (["prune", "--method", "magnitude", "--sampling", "threshold", "--threshold", "-1", "--dataset", "digits"],
     "--threshold"),
    (["prune", "--method", "snip", "--fraction", "0.5", "--batch-for-scores", "0", "--dataset", "digits"],
     "--batch-for-scores"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--model", NAN, "--dataset", "digits"], "NaN"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--model", LSTM, "--dataset", "digits"], "LSTM"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--model", M784, "--dataset", "digits"], "784"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--model", MISSING, "--dataset", "digits"], "not found"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--save-model", f"{FILE}/x.pt"],
     "not a folder"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--save-mask", DIR], "is a folder"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--lr", "nan"], "--lr"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--epochs", "-1"], "--epochs"),
    # --- lth
    (["lth", "--dataset", "digits", "--retrain", "restart"], "--retrain"),
    (["lth", "--dataset", "digits", "--fraction", "1.5"], "--fraction"),
    (["lth", "--dataset", "digits", "--controls", "foo"], "--controls"),
    (["lth", "--dataset", "digits", "--save-masks", FILE], "is a file"),
    (["lth", "--dataset", "digits", "--out", DIR], "is a folder"),
    (["lth", "--dataset", "digits", "--levels", "-1"], "--levels"),
    (["lth", "--dataset", "digits", "--rate-hidden", "1.2"], "--rate-hidden"),
    # --- mc
    (["mc"], "missing command"),
    (["mc", "plan"], "Missing argument"),
    (["mc", "plan", "nope"], "no config file or shipped config"),
    (["mc", "plan", "mc_linear", "--set", "widths"], "widths"),
    (["mc", "plan", "mc_linear", "--n-trials", "0"], "--n-trials"),
    (["mc", "plan", f"{DIR}/missing.yaml"], "not found"),
    (["mc", "run", "mc_linear", "--workers", "0"], "--workers"),
    (["mc", "run", "mc_linear", "--out", FILE], "is a file"),
    (["mc", "report", MISSING], "run folder"),
    (["mc", "report", DIR, "--alpha", "2"], "--alpha"),
    # --- lottery
    (["lottery"], "missing command"),
    (["lottery", "widths", "--log-base", "7"], "--log-base"),
    (["lottery", "widths", "--d", "0"], "--d"),
    (["lottery", "widths", "--eps", "2"], "--eps"),
    (["lottery", "subset-sum", "solve", "--coeffs", ""], "--coeffs"),
    (["lottery", "subset-sum", "solve", "--n-targets", "0"], "--n-targets"),
    (["lottery", "subset-sum", "solve", "--mode", "fastest"], "--mode"),
    (["lottery", "subset-sum", "coverage", "--trials", "0"], "--trials"),
    (["lottery", "subset-sum", "per-target", "--eps", "inf"], "--eps"),
    (["lottery", "construct", "--model", M64, "--eps", "0.1", "--data", "mnist5k"], "expects (64,)"),
    (["lottery", "construct", "--model", M64, "--eps", "0.1", "--out", f"{FILE}/x.pt"], "not a folder"),
    (["lottery", "construct", "--model", MISSING, "--eps", "0.1"], "not found"),
    (["lottery", "construct", "--model", M64, "--eps", "-0.1"], "--eps"),
    # --- experiment
    (["experiment"], "missing command"),
    (["experiment", "run", "nope"], "unknown experiment"),
    (["experiment", "run", "coverage", "--out", FILE], "is a file"),
    (["experiment", "paper", "--results", MISSING], "not a folder"),
    (["experiment", "paper", "--results", DIR], "no experiment results"),
]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Model files and paths, made once."""
    torch.manual_seed(0)
    inputs = tmp_path_factory.mktemp("inputs")
    m64 = nn.Sequential(nn.Linear(64, 16, bias=False), nn.ReLU(), nn.Linear(16, 10, bias=False))
    torch.save(m64, inputs / "m64.pt")
    torch.save(nn.Sequential(nn.Linear(784, 8, bias=False), nn.ReLU(), nn.Linear(8, 10, bias=False)),
               inputs / "m784.pt")
    z = nn.Sequential(nn.Linear(64, 16, bias=False), nn.ReLU(), nn.Linear(16, 10, bias=False))
    with torch.no_grad():
        z[2].weight.zero_()
    torch.save(z, inputs / "zero.pt")
    n = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with torch.no_grad():
        n[0].weight[0, 0] = float("nan")
    torch.save(n, inputs / "nan.pt")
    torch.save(nn.Sequential(nn.LSTM(64, 8)), inputs / "lstm.pt")
    (inputs / "corrupt.pt").write_bytes(b"not a torch file")
    torch.save(m64.state_dict(), inputs / "sd.pt")
    (inputs / "file.txt").write_text("a file")
    (inputs / "dir").mkdir()
    return inputs


@pytest.fixture
def files(inputs, tmp_path, monkeypatch):
    """(folders to watch, placeholder -> path); the command runs in a fresh empty working folder."""
    monkeypatch.chdir(tmp_path)
    subs = {"{m64}": "m64.pt", "{m784}": "m784.pt", "{zero}": "zero.pt", "{nan}": "nan.pt", "{lstm}": "lstm.pt",
            "{corrupt}": "corrupt.pt", "{sd}": "sd.pt", "{file}": "file.txt", "{dir}": "dir",
            "{missing}": "missing.pt"}
    return (inputs, tmp_path), {k: str(inputs / v) for k, v in subs.items()}


def _subst(argv, subs):
    out = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        out.append(a)
    return out


def _snapshot(roots):
    return sorted(str(p) for root in roots for p in Path(root).rglob("*"))


def _run(argv, capsys):
    return run_cli(capsys, argv)


def _id(case):
    return " ".join(case[0])[:60] or "<no args>"


@pytest.mark.parametrize("argv,msg", CASES, ids=[_id(c) for c in CASES])
def test_bad_input_is_one_error_line(argv, msg, files, capsys):
    root, subs = files
    before = _snapshot(root)
    code, out, err = _run(_subst(argv, subs), capsys)
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    assert msg in err, err
    assert _snapshot(root) == before, "files left behind"


JSON_CASES = [c for c in CASES if c[0] and c[0][0] in ("budget", "bound", "certify", "mc", "lottery", "prune")
              and "--json" not in c[0] and len(c[0]) > 1][::4]


@pytest.mark.parametrize("argv,msg", JSON_CASES, ids=[_id(c) for c in JSON_CASES])
def test_bad_input_with_json_gives_json_error(argv, msg, files, capsys):
    root, subs = files
    code, out, err = _run(_subst(argv, subs) + ["--json"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: ")
    d = json.loads(out)
    assert d["schema"] == "probprune.error/1" and d["error"] == err[len("error: "):].strip()


def test_internal_error_is_one_line(monkeypatch, capsys):
    """An unexpected exception inside a command: one line naming its type; PROBPRUNE_DEBUG=1 re-raises it."""
    import probprune.theory.apriori as bounds

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(bounds, "apriori_bound", boom)
    code, out, err = _run(["bound", "--fraction", "0.1"], capsys)
    assert code == 2 and err.splitlines() == [err.strip()] and "internal error: RuntimeError: boom" in err
    monkeypatch.setenv("PROBPRUNE_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["bound", "--fraction", "0.1"])


def test_version_and_help_exit_zero(capsys):
    from probprune import __version__

    code, out, err = _run(["--version"], capsys)
    assert code == 0 and out.strip() == f"probprune {__version__}" and err == ""
    code, out, _ = _run(["budget", "--help"], capsys)
    assert code == 0 and "random_rescaled" in out and "equal_share" in out and "--no-json" in out


@pytest.mark.parametrize("argv", [[], ["budget", "--eps", "abc"],
                                  pytest.param(["bound", "--fraction", "0.1", "--json", "true"], marks=pytest.mark.slow),
                                  pytest.param(["mc", "plan", "nope"], marks=pytest.mark.slow)])
def test_console_script_usage_errors(argv, tmp_path):
    """As users run it: the installed console script, one line, exit 2, no traceback."""
    exe = Path(sys.executable).parent / "probprune"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "probprune.cli"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(cmd + argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and p.stderr.startswith("error:"), p.stderr
    assert "Traceback" not in p.stderr + p.stdout and not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------- H3 (issue 18 item 3)
# Monte Carlo: sizes estimated before any work (the run folder is not created), and a damaged run refused by report.
MC_SIZE_CASES = [
    (["mc", "run", "mc_linear", "--set", "widths=[200000]", "--set", "depths=[2]", "--workers", "1",
      "--out", "{dir}/out"], "needs about"),
    (["mc", "run", "mc_linear", "--set", "widths=[200000]", "--out", "{dir}/out"], "2 chunks at once"),
    (["mc", "plan", "mc_linear", "--set", "widths=[200000]", "--set", "depths=[2]"], "needs about"),
    (["mc", "plan", "mc_relu", "--set", "widths=[100000]", "--json"], "PROBPRUNE_MEMORY_LIMIT"),
]


@pytest.mark.parametrize("argv,msg", MC_SIZE_CASES, ids=[_id(c) for c in MC_SIZE_CASES])
def test_mc_sweep_too_big_for_memory_is_refused_before_any_work(argv, msg, files, capsys):
    root, subs = files
    before = _snapshot(root)
    code, out, err = _run(_subst(argv, subs), capsys)
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "internal error" not in err, err
    assert msg in err and "of memory" in err, err
    assert _snapshot(root) == before, "files left behind"


def test_mc_report_on_a_damaged_run_is_one_error_line(files, capsys):
    from probprune.mc import MCConfig, run

    root, _ = files
    cfg = MCConfig(widths=(4,), depths=(2,), methods=("magnitude",), fractions=(0.2,), deltas=(0.1,), n_trials=4,
                   batch_size=2)
    r = run(cfg, out_root=root[1] / "mc", workers=1, progress=False)
    (r.run_dir / "chunks" / "s0_g0000_b000001.csv").write_bytes(b"\x00garbage\xff" * 40)
    before = _snapshot(root)
    code, out, err = _run(["mc", "report", str(r.run_dir)], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "1 damaged: s0_g0000_b000001 (checksum mismatch)" in err and "internal error" not in err, err
    assert _snapshot(root) == before
