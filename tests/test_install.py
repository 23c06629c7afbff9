"""Issue 13: the package works outside its clone. Build a wheel from the sources (offline, no build isolation),
install it non-editable into a temporary venv, and run `probprune budget --json`, `python -m proofs_check --json`
and `probprune mc plan mc_linear` from a folder outside the repository.

The temporary venv gets the project venv's site-packages as a plain path (a ``.pth`` line), so the dependencies
(torch, scipy, ...) resolve offline; ``.pth`` files inside that folder are not processed, so the project's editable
install is invisible and ``import probprune`` must find the installed wheel (asserted).
"""
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("probprune", "proofs_check", "pyproject.toml", "README.md")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    st = pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in this venv")
    if int(st.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {st.__version__} < 77 (the SPDX license string needs 77+)")
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # a copy, so the build leaves no build/ folder in the clone
        p = ROOT / name
        if p.is_dir():
            shutil.copytree(p, src / name, symlinks=False,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(p, src / name)
    wheels = tmp / "wheels"
    env = _env()
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
                        "-w", str(wheels), str(src)], capture_output=True, text=True, env=env, cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = wheels.glob("probprune-*.whl")
    venv = tmp / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    py = venv / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index", "-q",
                        str(whl)], capture_output=True, text=True, env=env, cwd=tmp)
    assert r.returncode == 0, r.stderr[-2000:]
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True).stdout.strip()
    deps = sysconfig.get_paths()["purelib"]  # the project venv: torch, scipy, typer, hypothesis, ...
    Path(purelib, "zz_probprune_test_deps.pth").write_text(deps + "\n")
    work = tmp / "elsewhere"
    work.mkdir()
    return venv, work, env


def _run(installed, *cmd, timeout=600):
    venv, work, env = installed
    exe = [str(venv / "bin" / cmd[0])] if cmd[0] == "probprune" else [str(venv / "bin" / "python"), *cmd[:1]]
    args = list(cmd[1:])
    return subprocess.run(exe + args, capture_output=True, text=True, env=env, cwd=work, timeout=timeout)


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_clone(installed):
    venv, work, env = installed
    r = subprocess.run([str(venv / "bin" / "python"), "-c",
                        "import probprune, proofs_check, probprune.configs as c; "
                        "print(probprune.__file__); print(proofs_check.__file__); print(c.names())"],
                       capture_output=True, text=True, env=env, cwd=work)
    assert r.returncode == 0, r.stderr
    files = r.stdout.splitlines()
    assert all(str(venv) in f and str(ROOT) not in f for f in files[:2]), files
    assert "mc_linear" in files[2] and "mc_relu" in files[2]

    r = _run(installed, "probprune", "--version")
    assert r.returncode == 0 and r.stdout.startswith("probprune ")

    r = _run(installed, "probprune", "mc", "plan", "mc_linear")
    assert r.returncode == 0, r.stderr
    assert "288000 rows" in r.stdout

    r = _run(installed, "probprune", "budget", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["schema"] == "probprune.budget/1" and d["total_prunable"] > 0 and "trained" in d

    r = _run(installed, "-m", "proofs_check", "--json")
    rep = json.loads(r.stdout)
    s = rep["summary"]
    assert "ModuleNotFoundError" not in r.stdout + r.stderr
    assert s["error"] == 0 and s["checks"] >= 62, s
    assert not list(work.iterdir()) or all(p.name == "results" for p in work.iterdir())


@pytest.mark.slow
def test_installed_usage_error_is_one_line(installed):
    r = _run(installed, "probprune", "budget", "--eps", "abc")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error:")
