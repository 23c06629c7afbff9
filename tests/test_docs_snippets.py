"""Issue 13: the README's Python snippets and the docs' snippets marked ``<!-- runnable -->`` run as scripts
(``python snippet.py`` in a fresh folder, as a user would paste them), including the ``__main__`` guard where
worker processes are started and loading a ``probprune train`` file."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
RUNNABLE = re.compile(r"<!--\s*runnable\s*-->\s*\n```python\n(.*?)^```", re.S | re.M)
SPAWNS = re.compile(r"\bworkers\s*=\s*([2-9]|\d\d)|\brun_experiment\(|\bscheduler\s*=")


def snippets():
    out = []
    for i, code in enumerate(FENCE.findall((ROOT / "README.md").read_text())):
        out.append(pytest.param(code, id=f"README.md#{i}"))
    for md in sorted((ROOT / "docs").glob("*.md")):
        for i, code in enumerate(RUNNABLE.findall(md.read_text())):
            out.append(pytest.param(code, id=f"docs/{md.name}#{i}"))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with `lenet.pt` made by `probprune train` (the file the snippets load), 1 epoch."""
    d = tmp_path_factory.mktemp("snippets")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "probprune.cli", "train", "--out", "lenet.pt", "--epochs", "1"],
                       cwd=d, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    return d


def test_there_are_snippets_and_a_guarded_worker_example():
    codes = [p.values[0] for p in snippets()]
    assert len(codes) >= 3
    assert any("load_model(" in c and "lenet.pt" in c for c in codes)
    assert any(SPAWNS.search(c) for c in codes)


@pytest.mark.parametrize("code", snippets())
def test_snippet_compiles_and_guards_workers(code):
    compile(code, "snippet.py", "exec")
    if SPAWNS.search(code):
        assert 'if __name__ == "__main__":' in code, "a snippet that starts workers needs the __main__ guard"


@pytest.mark.slow
@pytest.mark.parametrize("code", snippets())
def test_snippet_runs_as_a_script(code, workdir, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(code)
    for f in workdir.iterdir():
        (tmp_path / f.name).symlink_to(f)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
