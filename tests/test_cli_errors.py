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


# ----------------------------------------------------------------------------------------------------------------
# Issue 18 (H4): options refused before any work, model files, output paths. Each: exit 2, one `error:` line,
# nothing written, no "internal error".
@pytest.fixture(scope="module")
def h4_inputs(inputs):
    torch.manual_seed(0)
    torch.save({}, inputs / "h4_empty_dict.pt")
    torch.save(nn.Sequential(nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).state_dict(), inputs / "h4_mlp_sd.pt")
    bn = nn.Sequential(nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10)).eval()
    bn[1].running_var.fill_(-1.0)
    torch.save(bn, inputs / "h4_bn_neg.pt")
    bn[1].running_var.fill_(float("nan"))
    torch.save(bn, inputs / "h4_bn_nan.pt")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))),
                       str(inputs / "h4_ts.pt"))
    return inputs


H4_CASES = [
    (["prune", "--method", "magnitude", "--sampling", "threshold", "--threshold", "0.1", "--fraction", "0.5",
      "--dataset", "digits"], "--fraction does not apply with --sampling threshold"),
    (["prune", "--method", "random", "--scope", "global", "--fraction", "0.5", "--dataset", "digits"],
     "--scope does not apply to random"),
    (["prune", "--method", "structured", "--scheme", "erk", "--fraction", "0.5", "--dataset", "digits"], "--scheme"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--seed", "-5"], "--seed"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--save-mask", "/proc/m.pt"],
     "/proc"),
    (["lth", "--dataset", "digits", "--out", "/proc/x.csv"], "/proc"),
    (["lth", "--dataset", "digits", "--strategy", "global", "--rate-output", "0.2"], "--rate-output"),
    (["lth", "--dataset", "digits", "--seed", "99999999999999999999"], "--seed"),
    (["train", "--out", "/proc/x.pt", "--dataset", "digits"], "/proc"),
    (["train", "--out", "", "--dataset", "digits"], "--out is empty"),
    (["budget", "--model", "{h4}/h4_empty_dict.pt", "--arch", "mlp:16"], "empty dict"),
    (["budget", "--model", "{h4}/h4_mlp_sd.pt", "--arch", "lenet5"], "does not match architecture 'lenet5'"),
    (["budget", "--model", "{h4}/h4_ts.pt"], "TorchScript"),
    (["budget", "--model", M64, "--arch", "lenet5"], "applies to state dicts only"),
    (["certify", "--model", "{h4}/h4_bn_neg.pt", "--fraction", "0.1"], "running_var"),
    (["certify", "--model", "{h4}/h4_bn_nan.pt", "--fraction", "0.1"], "running_var"),
    (["lottery", "construct", "--model", M64, "--eps", "0.1", "--units-per-input", "1000000"], "of memory"),
    (["lottery", "construct", "--model", M64, "--eps", "0.1", "--seed", "-1"], "--seed"),
    (["lottery", "subset-sum", "coverage", "--n", "5:1000000"], "values of n"),
    (["lottery", "subset-sum", "coverage", "--eps", "0"], "--eps"),
    (["lottery", "subset-sum", "per-target", "--trials", "100000000000"], "of memory"),
    (["experiment", "run", "nope"], "unknown experiment"),
    (["experiment", "run", "all", "--out", "/proc/figs"], "/proc"),
]


@pytest.mark.parametrize("argv,msg", H4_CASES, ids=[_id(c) for c in H4_CASES])
def test_h4_bad_input_is_one_error_line(argv, msg, files, h4_inputs, capsys):
    root, subs = files
    subs = {**subs, "{h4}": str(h4_inputs)}
    before = _snapshot(root)
    code, out, err = _run(_subst(argv, subs), capsys)
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err + out
    assert msg in err, err
    assert _snapshot(root) == before, "files left behind"

# ------------------------------------------------------------------------------------------------------------------
# H1 (issue 18 for budget / bound / certify / width / train; issue 22's "options that do not apply"): every case is
# refused before any work, with one `error:` line, exit 2, nothing written, and no "internal error".
H1_CASES = [
    (["budget", "--no-trained-demo", "--calibrated", "--trials", "0"], "--trials"),
    (["budget", "--no-trained-demo", "--calibrated", "--trials", "1"], "needs at least"),
    (["budget", "--model", M64, "--calibrated"], "answers the question"),
    (["budget", "--model", M64, "--widths", "10,10", "--activation", "tanh", "--law", "gaussian"], "--widths"),
    (["budget", "--model", M64, "--K", "2"], "--K"),
    (["budget", "--no-trained-demo", "--max-acc-drop", "1"], "--max-acc-drop"),
    (["budget", "--widths", "10,10", "--max-acc-drop", "1"], "--max-acc-drop"),
    (["budget", "--model", M64, "--arch", "lenet5"], "applies to state dicts only"),
    (["budget", "--model", "{empty}", "--arch", "mlp:16"], "empty dict"),
    (["budget", "--model", SD, "--arch", "lenet5"], "does not match architecture"),
    (["certify", "--model", SD, "--arch", "conv2", "--fraction", "0.1"], "does not match architecture"),
    (["budget", "--model", M64, "--dataset", "mnist5k", "--max-acc-drop", "1"], "expects (64,)"),
    (["budget", "--model", M64, "--max-acc-drop", "101"], "--max-acc-drop"),
    (["budget", "--model", M64, "--trials", "5"], "--trials"),
    (["budget", "--arch", "lenet5", "--no-trained-demo"], "--arch"),
    (["budget", "--no-trained-demo", "--certificate", "sdp"], "--certificate"),
    (["budget", "--seed", "99999999999999999999"], "--seed"),
    (["budget", "--seed", "-1", "--no-trained-demo"], "--seed"),
    (["budget", "--model", M64, "--time-limit", "0"], "time_limit"),
    (["certify", "--model", M64, "--fraction", "0.1", "--radius-norm", "linf"], "--radius"),
    (["certify", "--model", M64, "--fraction", "0.1", "--radius", "0.1", "--n-inputs", "0"], "--n-inputs"),
    (["certify", "--model", M64, "--fraction", "0.1", "--method", "random", "--seed", "-5"], "seed"),
    (["certify", "--model", M64, "--fraction", "0.1", "--seed", "99999999999999999999"], "seed"),
    (["certify", "--model", M64, "--fraction", "0.1", "--radius", "nan"], "--radius"),
    (["certify", "--model", M64, "--fraction", "0.1", "--time-limit", "-1"], "time_limit"),
    (["certify", "--model", M64, "--fraction", "0.1", "--bound", "best"], "--bound"),
    (["bound", "--fraction", "0.1", "--calibrated", "--trials", "0"], "--trials"),
    (["bound", "--fraction", "0.1", "--trials", "100"], "--calibrated"),
    (["bound", "--fraction", "0.1", "--seed", "99999999999999999999"], "--seed"),
    (["train", "--out", "", "--dataset", "digits"], "--out"),
    (["train", "--out", "m.pt", "--dataset", "digits", "--seed", "-3"], "--seed"),
]


def _h1_files(files, tmp_path_factory):
    root, subs = files
    d = tmp_path_factory.mktemp("h1_inputs")
    torch.save({}, d / "empty.pt")
    return root, dict(subs, **{"{empty}": str(d / "empty.pt")})


@pytest.mark.parametrize("argv,msg", H1_CASES, ids=[_id(c) for c in H1_CASES])
def test_h1_refused_before_work(argv, msg, files, capsys, tmp_path_factory):
    root, subs = _h1_files(files, tmp_path_factory)
    before = _snapshot(root)
    code, out, err = _run(_subst(argv, subs), capsys)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert msg in err and "internal error" not in err and "Traceback" not in err + out, err
    assert _snapshot(root) == before, "files left behind"


H1_MEMORY = [
    ["budget", "--widths", "784,1000000000,10"],  # the default --eps-rel simulates the law
    ["budget", "--widths", "784,100000,10", "--empirical"],
    ["budget", "--widths", "784,100000,10", "--eps", "1", "--empirical"],
    ["bound", "--widths", "784,100000,10", "--fraction", "0.1", "--calibrated"],
    ["train", "--out", "m.pt", "--arch", "mlp:100000000", "--dataset", "digits"],
]


@pytest.mark.parametrize("argv", H1_MEMORY, ids=[" ".join(a)[:60] for a in H1_MEMORY])
def test_h1_memory_guards(argv, files, capsys, monkeypatch):
    """Sizes estimated before allocating (the limit pinned at 8 GiB so the test is the same on every machine)."""
    import time

    monkeypatch.setenv("PROBPRUNE_MEMORY_LIMIT", str(8 * 2**30))
    root, _ = files
    before = _snapshot(root)
    t0 = time.perf_counter()
    code, out, err = _run(argv, capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "memory" in err and "internal error" not in err, err
    assert time.perf_counter() - t0 < 30 and _snapshot(root) == before


def test_h1_train_out_in_an_unwritable_folder_refused_before_training(capsys, tmp_path, monkeypatch):
    """`train --out /proc/x.pt`: os.access passes for root; a probe file is created first, so nothing trains."""
    import probprune.net.train as T

    def no_training(*a, **k):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(T, "train", no_training)
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(["train", "--out", "/proc/x.pt", "--dataset", "digits"], capsys)
    assert code == 2 and len(err.splitlines()) == 1 and "--out" in err and "internal error" not in err, err

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


# ------------------------------------------------------------------------------------------------ budget --refine
REFINE_CASES = [
    (["budget", "--refine", "sdp"], "applies to --model"),
    (["budget", "--refine-evals", "3"], "add --refine METHOD"),
    (["budget", "--refine-seconds", "5"], "add --refine METHOD"),
]


@pytest.mark.parametrize("argv,msg", REFINE_CASES, ids=[_id(c) for c in REFINE_CASES])
def test_budget_refine_usage_is_one_error_line(argv, msg, files, capsys):
    root, subs = files
    before = _snapshot(root)
    code, out, err = _run(_subst(argv, subs), capsys)
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert msg in err and "internal error" not in err, err
    assert _snapshot(root) == before


def test_api_budget_refine_unknown_method_is_refused():
    import probprune.api as api
    from probprune.core.errors import ProbPruneError

    with pytest.raises(ProbPruneError, match="--refine must be one of"):
        api.budget([4, 3, 2], eps=0.1, refine="bogus")
