"""Issue 18 items 1, 2, 4, 5 (H4): tensors checked before tracing, options refused before any work, own models
(cwd importable, full key mismatch, class count / widths from a state dict), files (umask, symlinks, version)."""
import json
import os
import stat
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from _cli import run_cli
from probprune.core.errors import ProbPruneError


def _one_error(code, out, err):
    lines = err.splitlines()
    assert code == 2, (code, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "internal error" not in err and "Traceback" not in err + out
    return lines[0]


# ------------------------------------------------------------------------------------------- 1. tensors up front
def _bn_net():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).eval()
    return m


@pytest.mark.parametrize("buf,value,msg", [
    ("running_var", float("nan"), "buffer '1.running_var' contains 5 NaN/inf"),
    ("running_var", float("inf"), "buffer '1.running_var' contains 5 NaN/inf"),
    ("running_var", -1.0, "buffer '1.running_var' of BatchNorm '1' has 5 negative value(s) (min -1)"),
    ("running_mean", float("nan"), "buffer '1.running_mean' contains 5 NaN/inf"),
])
def test_buffers_checked_before_tracing(buf, value, msg):
    from probprune.net import from_torch

    m = _bn_net()
    getattr(m[1], buf).fill_(value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a negative variance used to print a RuntimeWarning (sqrt) first
        with pytest.raises(ProbPruneError) as e:
            from_torch(m, (6,))
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_a_single_bad_entry_and_custom_buffers_are_named():
    from probprune.net import from_torch

    m = _bn_net()
    m[1].running_var[2] = -0.5  # one entry
    with pytest.raises(ProbPruneError, match=r"1 negative value\(s\) \(min -0.5\)"):
        from_torch(m, (6,))

    class WithBuffer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.register_buffer("scale", torch.tensor([1.0, float("inf")]))

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(ProbPruneError, match="buffer 'scale' contains 1 NaN/inf"):
        from_torch(WithBuffer(), (4,))
    m = _bn_net()
    with torch.no_grad():
        m[3].weight[0, 0] = float("nan")
    with pytest.raises(ProbPruneError, match="parameter '3.weight' contains 1 NaN/inf"):
        from_torch(m, (6,))
    assert from_torch(_bn_net(), (6,)).weight_nodes  # a healthy BatchNorm net still reads


def test_overflow_names_the_first_layer_whose_output_is_not_finite():
    """Weights x1e200 in float64: when the IR and the model disagree on the non-finite outputs, the message says the
    forward overflows and where (it used to say only 'non-finite outputs differ')."""
    import copy

    from probprune.net import from_torch
    from probprune.net.trace import check_reproduces

    m = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(1e200 * torch.eye(2, dtype=torch.float64))
        m[1].weight.copy_(1e200 * torch.ones(2, 2, dtype=torch.float64))
        m[2].weight.copy_(torch.tensor([[1.0, -1.0]], dtype=torch.float64))
    g = from_torch(m, (2,))  # identical NaN outputs: accepted
    m2 = copy.deepcopy(m)
    with torch.no_grad():
        m2[2].weight.copy_(torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    with pytest.raises(ProbPruneError) as e:
        check_reproduces(g, m2)
    assert "overflows float64 at layer '1' (Linear)" in str(e.value)
    assert "non-finite outputs differ" in str(e.value) and "scale the weights down" in str(e.value)


# ------------------------------------------------------------------------------------------- model files
@pytest.fixture
def model_files(tmp_path):
    torch.manual_seed(0)
    d = tmp_path / "in"
    d.mkdir()
    mlp = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    torch.save(mlp.state_dict(), d / "mlp_sd.pt")
    torch.save({}, d / "empty_dict.pt")
    m3 = nn.Sequential(nn.Linear(64, 12), nn.ReLU(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 3))
    torch.save(m3.state_dict(), d / "sd3.pt")
    torch.save(mlp, d / "module.pt")
    torch.jit.save(torch.jit.script(mlp), str(d / "ts.pt"))
    bn = _bn_net()
    bn[1].running_var.fill_(-1.0)
    torch.save(bn, d / "bn_neg.pt")
    huge = nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).double()
    with torch.no_grad():
        for p in huge.parameters():
            p.mul_(1e200)
    torch.save(huge, d / "huge.pt")
    return d


def test_torchscript_is_refused_without_a_warning(model_files):
    from probprune.net.io import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.load's 2-line UserWarning is silenced
        with pytest.raises(ProbPruneError, match="is a TorchScript archive"):
            load_model(str(model_files / "ts.pt"))


def test_state_dict_problems_are_named(model_files):
    from probprune.net.io import load_model

    sd = str(model_files / "mlp_sd.pt")
    with pytest.raises(ProbPruneError, match="does not match architecture 'lenet5': its first weight '0.weight' has "
                                             r"shape \(16, 64\) \(a Linear layer\)"):
        load_model(sd, arch="lenet5")
    with pytest.raises(ProbPruneError, match="holds an empty dict"):
        load_model(str(model_files / "empty_dict.pt"), arch="mlp:16")
    with pytest.raises(ProbPruneError, match="holds a whole module .* --arch lenet5 applies to state dicts only"):
        load_model(str(model_files / "module.pt"), arch="lenet5")


def test_full_key_mismatch_is_shown(model_files, tmp_path):
    from probprune.net.io import load_model

    with pytest.raises(ProbPruneError) as e:
        load_model(str(model_files / "sd3.pt"), arch="mlp:20")
    msg = str(e.value)
    assert "\n" not in msg
    # every mis-shaped key and every missing one, nothing cut off
    for part in ("0.weight (12, 64) vs (20, 64)", "0.bias (12,) vs (20,)", "unexpected keys 4.weight, 4.bias",
                 "2.weight (7, 12) vs (3, 20)", "2.bias (7,) vs (3,)"):
        assert part in msg, (part, msg)
    sd = {f"{i}.weight": torch.zeros(4, 4) for i in range(0, 40, 2)}
    torch.save(sd, tmp_path / "many.pt")
    with pytest.raises(ProbPruneError) as e:
        load_model(str(tmp_path / "many.pt"), arch="mlp:4")
    assert all(f"{i}.weight" in str(e.value) for i in range(4, 40, 2)), str(e.value)


def test_class_count_and_widths_from_the_state_dict(model_files):
    from probprune.net.io import load_model, load_model_and_arch

    m, arch = load_model_and_arch(str(model_files / "sd3.pt"), arch="mlp")
    assert arch == "mlp:12,7"
    assert m(torch.zeros(2, 64)).shape == (2, 3)
    ref = torch.load(model_files / "sd3.pt")
    assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items())
    m = load_model(str(model_files / "mlp_sd.pt"), arch="mlp:16")  # 10 classes read, not assumed
    assert m(torch.zeros(1, 64)).shape == (1, 10)
    with pytest.raises(ProbPruneError, match="unexpected keys"):  # explicit n_classes still wins
        load_model(str(model_files / "sd3.pt"), arch="mlp:12", n_classes=3)


_MYMODELS = '''
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())
'''


def test_module_from_the_current_folder_unpickles(tmp_path, monkeypatch):
    """A module saved from ./mymodels.py loads when probprune runs from that folder (the console script does not
    put the current folder on sys.path by itself); from elsewhere the message says what to do."""
    from probprune.net.io import load_model, read_network

    name = "mymodels_h4_test"
    (tmp_path / f"{name}.py").write_text(_MYMODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        mod = __import__(name)
        torch.save(mod.Net(), tmp_path / "net.pt")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
    path_before = list(sys.path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path), os.getcwd())])
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    with pytest.raises(ProbPruneError, match=f"class from module '{name}'.*run probprune from the folder that holds "
                                             f"{name}.py"):
        load_model(str(tmp_path / "net.pt"))
    monkeypatch.chdir(tmp_path)
    sp = list(sys.path)
    try:
        m, g = read_network("net.pt")
        assert type(m).__name__ == "Net" and len(g.weight_nodes) == 2
    finally:
        sys.modules.pop(name, None)
    assert sys.path == sp  # restored
    assert path_before  # (monkeypatch restores the original list)


# ------------------------------------------------------------------------------------------- CLI: one line each
@pytest.fixture
def in_tmp(tmp_path, monkeypatch, model_files):
    monkeypatch.chdir(tmp_path)
    return model_files


def _snap(root):
    return sorted(str(p) for p in Path(root).rglob("*"))


CLI_CASES = [
    (["budget", "--model", "{d}/mlp_sd.pt", "--arch", "lenet5"], "does not match architecture 'lenet5'"),
    (["budget", "--model", "{d}/empty_dict.pt", "--arch", "mlp:16"], "empty dict"),
    (["budget", "--model", "{d}/ts.pt"], "TorchScript"),
    (["certify", "--model", "{d}/bn_neg.pt", "--fraction", "0.1"], "negative value"),
    (["certify", "--model", "{d}/huge.pt", "--fraction", "0.1"], "forward overflows float64 at layer '2' (Linear)"),
    (["budget", "--model", "{d}/huge.pt"], "forward overflows float64 at layer '2' (Linear)"),
    (["prune", "--method", "magnitude", "--sampling", "threshold", "--threshold", "0.1", "--fraction", "0.5",
      "--dataset", "digits"], "--fraction does not apply with --sampling threshold"),
    (["prune", "--method", "random", "--scope", "global", "--fraction", "0.5", "--dataset", "digits"],
     "--scope does not apply to random pruning"),
    (["prune", "--method", "snip", "--scope", "layer", "--fraction", "0.5", "--dataset", "digits"],
     "snip ranks all weights globally"),
    (["prune", "--method", "magnitude", "--scheme", "erk", "--fraction", "0.5", "--dataset", "digits"],
     "--scheme does not apply to magnitude"),
    (["prune", "--method", "magnitude", "--norm", "l2", "--fraction", "0.5", "--dataset", "digits"],
     "--norm does not apply to magnitude"),
    (["prune", "--method", "random", "--scheme", "er", "--erk-power-scale", "2", "--fraction", "0.5",
      "--dataset", "digits"], "--erk-power-scale applies to --scheme erk only"),
    (["prune", "--method", "random", "--sampling", "bernoulli", "--rounding", "ceil", "--fraction", "0.5",
      "--dataset", "digits"], "--rounding does not apply with --sampling bernoulli"),
    (["prune", "--method", "snip", "--sampling", "bernoulli", "--fraction", "0.5", "--dataset", "digits"],
     "bernoulli applies to random pruning only"),
    (["prune", "--method", "grad", "--sampling", "threshold", "--threshold", "0.1", "--dataset", "digits"],
     "threshold applies to magnitude pruning only"),
    (["prune", "--method", "magnitude", "--batch-for-scores", "10", "--fraction", "0.5", "--dataset", "digits"],
     "--batch-for-scores does not apply"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--seed", "-1"], "--seed"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--data-seed",
      "99999999999999999999"], "--data-seed"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--save-mask", "/proc/x.pt"],
     "cannot create a file in folder /proc"),
    (["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits", "--model", "{d}/module.pt",
      "--arch", "lenet5"], "applies to state dicts only"),
    (["lth", "--dataset", "digits", "--strategy", "global", "--rate-hidden", "0.3"], "--strategy layerwise only"),
    (["lth", "--dataset", "digits", "--fraction", "0.5", "--global-rate", "0.3"], "does not apply with --fraction"),
    (["lth", "--dataset", "digits", "--global-rate", "0.3"], "--global-rate applies to --strategy global only"),
    (["lth", "--dataset", "digits", "--exclude-output"], "--exclude-output applies to --strategy global only"),
    (["lth", "--dataset", "digits", "--out", "/proc/x.csv"], "cannot create a file in folder /proc"),
    (["lth", "--dataset", "digits", "--out", ""], "--out is empty"),
    (["lth", "--dataset", "digits", "--seed", "99999999999999999999"], "--seed"),
    (["train", "--out", "/proc/x.pt", "--dataset", "digits"], "cannot create a file in folder /proc"),
    (["train", "--out", "", "--dataset", "digits"], "--out is empty"),
    (["lottery", "subset-sum", "coverage", "--n", "5:1000000"], "999,996 values of n"),
    (["lottery", "subset-sum", "coverage", "--n", "5:10000000000000"], "values of n"),
    (["lottery", "subset-sum", "coverage", "--n", "5,40", "--trials", "100000000"], "draws 4e+09 summands"),
    (["lottery", "subset-sum", "coverage", "--eps", "0"], "--eps"),
    (["lottery", "subset-sum", "coverage", "--seed", "-3"], "--seed"),
    (["lottery", "subset-sum", "per-target", "--trials", "100000000000"], "of memory"),
    (["lottery", "subset-sum", "solve", "--seed", "-5"], "--seed"),
    (["lottery", "subset-sum", "solve", "--n", "1000000000000"], "beyond the exact solvers' limit of 48"),
    (["lottery", "subset-sum", "solve", "--n", "30", "--method", "milp", "--n-targets", "1000000000000"],
     "the drawn coefficients and targets needs about"),
    (["lottery", "construct", "--model", "{d}/free64.pt", "--eps", "0.1", "--units-per-input", "1000000"],
     "the construction's random network needs about"),
    (["lottery", "construct", "--model", "{d}/free64.pt", "--eps", "0.1", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("argv,msg", CLI_CASES, ids=[" ".join(c[0])[:70] for c in CLI_CASES])
def test_cli_refuses_in_one_line_before_any_work(argv, msg, in_tmp, tmp_path, capsys):
    d = in_tmp
    free = nn.Sequential(nn.Linear(64, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    with torch.no_grad():
        for p in free.parameters():
            p.mul_(0.1)
    torch.save(free, d / "free64.pt")
    before = _snap(tmp_path)
    code, out, err = run_cli(capsys, [a.replace("{d}", str(d)) for a in argv])
    line = _one_error(code, out, err)
    assert msg in line, line
    assert _snap(tmp_path) == before, "files left behind"


def test_class_count_inferred_from_a_state_dict_by_the_cli(in_tmp, capsys):
    """A 3-class state dict with --arch mlp:W used to be refused (10 classes assumed): its widths and class count are
    read from the file (here the checks run up to the dataset, which has 10 classes: refused for that reason)."""
    code, out, err = run_cli(capsys, ["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits",
                                      "--model", str(in_tmp / "sd3.pt"), "--arch", "mlp", "--epochs", "0"])
    line = _one_error(code, out, err)
    assert "gives outputs of shape (3,), dataset digits has 10 classes" in line, line


# ------------------------------------------------------------------------------------------- 5. files
@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_outputs_get_the_users_umask(tmp_path, mask):
    from probprune.cli.common import atomic_write_text

    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "a" / "out.txt", "x")
        plain = tmp_path / "plain.txt"
        with open(plain, "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    got = stat.S_IMODE((tmp_path / "a" / "out.txt").stat().st_mode)
    assert got == 0o666 & ~mask == stat.S_IMODE(plain.stat().st_mode)
    os.chmod(tmp_path / "a" / "out.txt", 0o600)  # an existing file keeps its mode, as open(path, "w") does
    atomic_write_text(tmp_path / "a" / "out.txt", "y")
    assert stat.S_IMODE((tmp_path / "a" / "out.txt").stat().st_mode) == 0o600


def test_symlink_is_written_through_not_replaced(tmp_path):
    from probprune.cli.common import atomic_write_text, check_output_path

    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "t.csv"
    target.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert check_output_path(link, "--out") == link
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new" and link.read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["t.csv"]  # no temporary left
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere" / "x.csv")
    with pytest.raises(ProbPruneError, match="dangling symbolic link"):
        check_output_path(dangling, "--out")
    with pytest.raises(ProbPruneError, match="dangling symbolic link"):
        atomic_write_text(dangling, "x")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


def test_prune_save_mask_through_a_symlink(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("store").mkdir()
    Path("store/mask.pt").write_bytes(b"")
    Path("link.pt").symlink_to("store/mask.pt")
    code, out, err = run_cli(capsys, ["prune", "--method", "magnitude", "--fraction", "0.5", "--dataset", "digits",
                                      "--arch", "mlp:8", "--epochs", "0", "--save-mask", "link.pt", "--json"])
    assert code == 0, err
    assert Path("link.pt").is_symlink() and Path("store/mask.pt").stat().st_size > 0
    assert stat.S_IMODE(Path("store/mask.pt").stat().st_mode) == 0o666 & ~_current_umask()
    d = json.loads(out)
    from probprune import __version__

    assert d["probprune_version"] == __version__ and list(d)[:2] == ["schema", "probprune_version"]


def _current_umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_output_check_creates_and_removes_a_probe(tmp_path):
    """The write check creates a file next to the target (os.access says yes to root everywhere): /proc is refused,
    a writable folder passes and keeps nothing."""
    from probprune.cli.common import check_output_path

    with pytest.raises(ProbPruneError, match="cannot create a file in folder /proc"):
        check_output_path("/proc/x.pt", "--out")
    with pytest.raises(ProbPruneError, match="cannot create a file"):
        check_output_path("/proc/sub/dir", "--out", kind="dir")
    assert check_output_path(tmp_path / "new" / "deeper" / "x.pt", "--out") is not None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ProbPruneError, match="--out is empty"):
        check_output_path("", "--out")
    assert check_output_path(None, "--out") is None


def test_every_json_result_carries_the_version(capsys):
    from probprune import __version__
    from probprune.cli.common import to_json
    from probprune.core.jsonio import dumps, versioned

    d = json.loads(to_json({"a": 1, "probprune_version": "stale"}, "probprune.x/1"))
    assert list(d) == ["schema", "probprune_version", "a"] and d["probprune_version"] == __version__
    assert list(versioned({"schema": "s", "b": 2})) == ["schema", "probprune_version", "b"]
    assert json.loads(dumps({"x": float("nan")})) == {"probprune_version": __version__, "x": None}
    code, out, err = run_cli(capsys, ["lottery", "widths", "--d", "10", "--json"])
    assert code == 0 and json.loads(out)["probprune_version"] == __version__


@pytest.mark.slow
def test_console_script_loads_a_module_from_the_current_folder(tmp_path):
    """As users run it (the console script does not put the current folder on sys.path): a module saved from
    ./mymodels.py is certified when probprune runs from that folder."""
    import subprocess

    (tmp_path / "mymodels.py").write_text(_MYMODELS)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    p = subprocess.run([sys.executable, "-c", "import torch, mymodels; torch.save(mymodels.Net(), 'net.pt')"],
                       cwd=tmp_path, env={**env, "PYTHONPATH": f"{env['PYTHONPATH']}{os.pathsep}{tmp_path}"},
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    exe = Path(sys.executable).parent / "probprune"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from probprune.cli import main; main()"]
    p = subprocess.run(cmd + ["certify", "--model", "net.pt", "--fraction", "0.1", "--json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["probprune_version"]
